//! The isolator as a blocking, thread-safe API (the CLI, tests, Rust
//! callers): a [`Core`] and the tokio runtime it runs on, owned together.
//!
//! Every method blocks the calling thread until done (`Runtime::block_on`:
//! the call's future runs on the caller's thread, its plugin execs and
//! netlink on the runtime's I/O driver) and may be called from many threads
//! at once. Not from inside an async runtime: `block_on` panics there; use
//! [`Isolator::core`] and await its methods on [`Isolator::runtime`] instead.

use crate::core::Core;
use crate::error::Result;
use crate::options::Options;
use crate::plugin_exec::{PluginExec, ProcessPlugins, SyncExec};
use crate::threads::build_runtime;
use crate::types::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, LaunchInfo, ResourceStatistics,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub use crate::core::{MESOS_TEST_NETWORK, NetnsSource, RecoveryReport};

/// The isolator: a [`Core`] with a runtime of its own.
pub struct Isolator {
    core: Arc<Core>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Isolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

impl Isolator {
    /// Creates the isolator (see [`Core::new`]) and its runtime, whose
    /// threads start in the namespaces of the calling thread.
    pub fn new(options: Options) -> Result<Isolator> {
        Self::with_plugin_exec(options, Arc::new(ProcessPlugins))
    }

    /// Like [`Isolator::new`], running plugins through a synchronous `exec`
    /// (on the blocking pool; its execs cannot be cancelled).
    pub fn with_exec(options: Options, exec: Arc<dyn cni::runtime::Exec>) -> Result<Isolator> {
        Self::with_plugin_exec(options, Arc::new(SyncExec(exec)))
    }

    /// Like [`Isolator::new`], running plugins through `exec`.
    pub fn with_plugin_exec(options: Options, exec: Arc<dyn PluginExec>) -> Result<Isolator> {
        let runtime = build_runtime(options.threads)?;
        let core = Arc::new(Core::new(options, exec)?);
        Ok(Isolator { core, runtime })
    }

    /// The asynchronous core.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The runtime the core runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The root dir in use (`None` when degraded).
    pub fn root_dir(&self) -> Option<&Path> {
        self.core.root_dir()
    }

    /// Config files skipped at the last scan of the config dir.
    pub fn skipped_configs(&self) -> Vec<crate::configs::SkippedConfig> {
        self.core.skipped_configs()
    }

    /// The networks the config dir defines now (after a rescan).
    pub fn networks(&self) -> Result<Vec<String>> {
        self.core.networks()
    }

    /// The containers the isolator knows, sorted.
    pub fn containers(&self) -> Vec<ContainerId> {
        self.core.containers()
    }

    /// See [`Core::recover`].
    pub fn recover(
        &self,
        states: &[ContainerState],
        orphans: &HashSet<ContainerId>,
    ) -> Result<RecoveryReport> {
        self.runtime.block_on(self.core.recover(states, orphans))
    }

    /// See [`Core::prepare`].
    pub fn prepare(&self, id: &ContainerId, config: &ContainerConfig) -> Result<Option<LaunchInfo>> {
        self.core.prepare(id, config)
    }

    /// See [`Core::set_cni_args`].
    pub fn set_cni_args(&self, id: &ContainerId, args: Vec<(String, String)>) -> Result<()> {
        self.core.set_cni_args(id, args)
    }

    /// See [`Core::isolate`].
    pub fn isolate(&self, id: &ContainerId, pid: i32) -> Result<()> {
        self.runtime.block_on(self.core.isolate(id, pid))
    }

    /// See [`Core::isolate_with`].
    pub fn isolate_with(&self, id: &ContainerId, source: NetnsSource, pid: Option<i32>) -> Result<()> {
        self.runtime.block_on(self.core.isolate_with(id, source, pid))
    }

    /// See [`Core::status`].
    pub fn status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.core.status(id)
    }

    /// See [`Core::usage`].
    pub fn usage(&self, id: &ContainerId) -> Result<ResourceStatistics> {
        self.runtime.block_on(self.core.usage(id))
    }

    /// See [`Core::check`].
    pub fn check(&self, id: &ContainerId) -> Result<()> {
        self.runtime.block_on(self.core.check(id))
    }

    /// See [`Core::cleanup`].
    pub fn cleanup(&self, id: &ContainerId) -> Result<()> {
        self.runtime.block_on(self.core.cleanup(id))
    }
}
