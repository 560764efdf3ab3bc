//! The isolator as a blocking, thread-safe API (the CLI, tests, Rust
//! callers): a [`Core`] and the tokio runtime it runs on, owned together.
//!
//! Every method blocks the calling thread until done and may be called from
//! many threads at once. The call's future is spawned onto the runtime's
//! workers, which also drive its I/O (plugin pipes and exits, netlink), so
//! an event wakes the task on the thread that saw it; the caller is woken
//! once, when the call is over. (Driving the future on the caller's thread
//! instead costs a cross-thread wake-up per event; a first, noisy
//! measurement had it about 2 ms slower per attach.) Not from inside an
//! async runtime: `block_on` panics there;
//! use [`Isolator::core`] and await its methods on [`Isolator::runtime`].

use crate::core::Core;
use crate::error::Result;
use crate::options::Options;
use crate::plugin_exec::{PluginExec, ProcessPlugins, SyncExec};
use crate::threads::build_runtime;
use crate::types::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, LaunchInfo, ResourceStatistics,
};
use std::collections::HashSet;
use std::future::Future;
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

    /// Runs `call` on the runtime's workers and waits for it. A panic in
    /// the call is resumed on the caller's thread.
    fn wait<T: Send + 'static>(&self, call: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        match self.runtime.block_on(self.runtime.spawn(call)) {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(crate::Error::Cancelled(format!("the call's task ended: {e}"))),
        }
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
        let (core, states, orphans) = (self.core.clone(), states.to_vec(), orphans.clone());
        self.wait(async move { core.recover(&states, &orphans).await })
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
        let (core, id) = (self.core.clone(), id.clone());
        self.wait(async move { core.isolate(&id, pid).await })
    }

    /// See [`Core::isolate_with`].
    pub fn isolate_with(&self, id: &ContainerId, source: NetnsSource, pid: Option<i32>) -> Result<()> {
        let (core, id) = (self.core.clone(), id.clone());
        self.wait(async move { core.isolate_with(&id, source, pid).await })
    }

    /// See [`Core::status`].
    pub fn status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.core.status(id)
    }

    /// See [`Core::usage`].
    pub fn usage(&self, id: &ContainerId) -> Result<ResourceStatistics> {
        let (core, id) = (self.core.clone(), id.clone());
        self.wait(async move { core.usage(&id).await })
    }

    /// See [`Core::check`].
    pub fn check(&self, id: &ContainerId) -> Result<()> {
        let (core, id) = (self.core.clone(), id.clone());
        self.wait(async move { core.check(&id).await })
    }

    /// See [`Core::cleanup`].
    pub fn cleanup(&self, id: &ContainerId) -> Result<()> {
        let (core, id) = (self.core.clone(), id.clone());
        self.wait(async move { core.cleanup(&id).await })
    }
}
