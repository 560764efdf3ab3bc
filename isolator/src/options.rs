//! The isolator's options: the agent flags `network/cni` reads.

use crate::files::DefaultDns;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options mirroring the Mesos agent flags.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--network_cni_config_dir`.
    pub config_dir: Option<PathBuf>,
    /// `--network_cni_plugins_dir`, already split at `:`.
    pub plugins_dir: Vec<PathBuf>,
    /// The isolator root: `<runtime_dir or work_dir>/isolators/network/cni`
    /// (see [`Options::root_dir_for`]).
    pub root_dir: Option<PathBuf>,
    /// `--network_cni_metrics` (Mesos default: true).
    pub metrics: bool,
    /// The CNI part of `--default_container_dns`.
    pub default_dns: DefaultDns,
    /// Limit per plugin exec (Mesos has none); `None` waits for ever.
    pub plugin_timeout: Option<Duration>,
    /// fsync `network.conf` before ADD (set it with a persistent root dir,
    /// `--network_cni_root_dir_persist`, so DEL can run after a power loss).
    pub durable_checkpoints: bool,
    /// The `cni-isolator-setup` binary (Mesos: `<launcher_dir>/mesos-containerizer`),
    /// run only when the kernel refuses the setup thread (see [`crate::setup`]).
    /// `None`: next to the current executable, then `$PATH`.
    pub setup_helper: Option<PathBuf>,
    /// The threads of the asynchronous core (see [`crate::threads`]).
    pub threads: ThreadLimits,
}

/// How many threads the asynchronous core may use; 0 takes the default.
/// The process's thread count stays within the sum (plus the host's own),
/// whatever the number of calls in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadLimits {
    /// tokio worker threads (default [`ThreadLimits::DEFAULT_WORKERS`]).
    pub workers: usize,
    /// tokio's blocking pool (conflist chains, the setup helper, fsyncs;
    /// default [`ThreadLimits::DEFAULT_BLOCKING`]).
    pub blocking: usize,
    /// Short-lived threads that enter a container's namespaces (netlink
    /// sockets, mount/UTS setup) at once (default [`ThreadLimits::DEFAULT_NAMESPACE`]).
    pub namespace: usize,
}

impl ThreadLimits {
    /// Plugin execs are child processes and netlink is non-blocking, so two
    /// workers only ever wait.
    pub const DEFAULT_WORKERS: usize = 2;
    /// The blocking pool's cap.
    pub const DEFAULT_BLOCKING: usize = 8;
    /// The namespace threads' cap.
    pub const DEFAULT_NAMESPACE: usize = 4;

    /// The limits with defaults filled in.
    pub fn resolved(self) -> ThreadLimits {
        let or = |v: usize, d: usize| if v == 0 { d } else { v };
        ThreadLimits {
            workers: or(self.workers, Self::DEFAULT_WORKERS),
            blocking: or(self.blocking, Self::DEFAULT_BLOCKING),
            namespace: or(self.namespace, Self::DEFAULT_NAMESPACE),
        }
    }

    /// The most threads the core runs at once.
    pub fn total(self) -> usize {
        let r = self.resolved();
        r.workers + r.blocking + r.namespace
    }
}

impl Options {
    /// Options with Mesos's defaults (metrics on) for the given dirs.
    pub fn new(config_dir: impl Into<PathBuf>, plugins_dir: &str, root_dir: impl Into<PathBuf>) -> Self {
        Options {
            config_dir: Some(config_dir.into()),
            plugins_dir: split_path(plugins_dir),
            root_dir: Some(root_dir.into()),
            metrics: true,
            ..Options::default()
        }
    }

    /// `<work_dir>/isolators/network/cni` with `--network_cni_root_dir_persist`
    /// (so DEL can still run after a reboot), else under `runtime_dir`.
    pub fn root_dir_for(runtime_dir: &Path, work_dir: &Path, persist: bool) -> PathBuf {
        let base = if persist { work_dir } else { runtime_dir };
        base.join(crate::paths::CNI_DIR)
    }
}

/// Splits a `:`-separated search path, dropping empty entries.
pub fn split_path(path: &str) -> Vec<PathBuf> {
    path.split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Finds `cni-isolator-setup`: the explicit path, else next to the running
/// binary (and its parent, for test binaries in `target/*/deps`), else `$PATH`.
pub fn find_setup_helper(explicit: Option<&Path>) -> Option<PathBuf> {
    const NAME: &str = "cni-isolator-setup";
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(NAME);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(NAME))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_dir_and_path_split() {
        assert_eq!(
            Options::root_dir_for(Path::new("/run/m"), Path::new("/var/lib/m"), false),
            Path::new("/run/m/isolators/network/cni")
        );
        assert_eq!(
            Options::root_dir_for(Path::new("/run/m"), Path::new("/var/lib/m"), true),
            Path::new("/var/lib/m/isolators/network/cni")
        );
        assert_eq!(
            split_path("/a::/b"),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
