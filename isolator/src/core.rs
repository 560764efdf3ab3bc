//! The `network/cni` isolator's lifecycle as an asynchronous core: recover,
//! prepare, isolate, status, usage, cleanup (Mesos's
//! `NetworkCniIsolatorProcess`).
//!
//! The slow calls are `async` and run on the runtime of whoever owns the
//! core ([`crate::Isolator`] blocks on them, the C ABI spawns them and calls
//! back); the quick ones (`prepare`, `status`) are plain functions. Calls
//! for different containers run concurrently. A container's networks are
//! attached and detached concurrently (one future per network, each plugin
//! exec an awaited child process), and a call returns only when all of them
//! have finished. Calls of one container never overlap
//! ([`crate::container_calls`]): a DEL never races an ADD, and a `cleanup`
//! that arrives during an `isolate` cancels it, waits for it to stop and
//! then detaches everything it attached.
//!
//! Cancellation: every slow call runs under a child token of the core's
//! shutdown token ([`Core::shutdown`]); a cancelled call kills its running
//! plugins and fails with [`Error::Cancelled`].

use crate::attach::{AttachRequest, PluginRunner};
use crate::configs::{ConfigDir, NetworkConfig, SkippedConfig};
use crate::container_calls::ContainerCalls;
use crate::error::{Error, Result};
use crate::files;
use crate::netns_pin;
use crate::netns_socket;
use crate::options::{Options, find_setup_helper};
use crate::paths;
use crate::plugin_exec::PluginExec;
use crate::setup::{InThreadError, SetupFlags, run_helper, run_on_this_thread};
use crate::threads::NamespaceThreads;
use crate::types::{
    ContainerClass, ContainerConfig, ContainerId, ContainerState, ContainerStatus, ContainerType, IpAddress,
    LaunchInfo, Namespace, NetworkInfo, Protocol, ResourceStatistics,
};
use cni::CniResult;
use futures_util::future::{join, join_all};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Networks whose name contains this stay in the host netns (Mesos's test hook).
pub const MESOS_TEST_NETWORK: &str = "__MESOS_TEST__";

/// One network of one container.
#[derive(Clone, Debug)]
struct ContainerNetwork {
    name: String,
    ifname: String,
    network_info: NetworkInfo,
    result: Option<CniResult>,
}

/// What the isolator keeps per container.
#[derive(Clone, Debug, Default)]
struct Info {
    networks: Vec<ContainerNetwork>,
    rootfs: Option<PathBuf>,
    hostname: Option<String>,
    /// A nested container in its parent's network namespace.
    joins_parent: bool,
    cni_args: Vec<(String, String)>,
}

/// Where the container's network namespace comes from at isolate time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsSource {
    /// The namespace of a running process (Mesos: the launched container).
    Pid(i32),
    /// An existing namespace file (`/var/run/netns/x`).
    Path(PathBuf),
    /// A new, empty namespace created for the container.
    New,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Containers whose state was rebuilt.
    pub recovered: Vec<ContainerId>,
    /// Unknown orphans that were detached and removed.
    pub cleaned: Vec<ContainerId>,
    /// Containers that could not be recovered or cleaned; their state is
    /// left on disk (message per container).
    pub failed: Vec<(String, String)>,
    /// Things worth knowing (a missing or corrupt `network.info`).
    pub warnings: Vec<String>,
}

/// The isolator's state and its asynchronous calls (see the module doc).
pub struct Core {
    options: Options,
    root: Option<PathBuf>,
    configs: Option<Mutex<ConfigDir>>,
    runner: Option<PluginRunner>,
    helper: Option<PathBuf>,
    infos: Mutex<HashMap<ContainerId, Info>>,
    calls: ContainerCalls,
    namespace_threads: NamespaceThreads,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("options", &self.options)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn ifname_order(ifname: &str) -> (u64, String) {
    let n = ifname
        .strip_prefix("eth")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    (n, ifname.to_string())
}

impl Core {
    /// Creates the isolator (Mesos's `create`): checks the options, scans
    /// the config dir, creates the root dir and makes it a shared mount of
    /// its own peer group. With neither a config dir nor a plugin dir it
    /// runs degraded: host networking only, like Mesos. Plugins run through
    /// `exec`.
    pub fn new(options: Options, exec: Arc<dyn PluginExec>) -> Result<Core> {
        let helper = find_setup_helper(options.setup_helper.as_deref());
        let (config_dir, plugins) = (options.config_dir.clone(), options.plugins_dir.clone());
        let (configs, runner, root) = match (config_dir, plugins.is_empty()) {
            (None, true) => (None, None, None),
            (Some(_), true) => {
                return Err(Error::Invalid(
                    "missing the CNI plugins dir (--network_cni_plugins_dir)".into(),
                ));
            }
            (None, false) => {
                return Err(Error::Invalid(
                    "missing the CNI config dir (--network_cni_config_dir)".into(),
                ));
            }
            (Some(dir), false) => {
                let configs = ConfigDir::load(&dir, &plugins)?;
                let root = options
                    .root_dir
                    .clone()
                    .ok_or_else(|| Error::Invalid("missing the isolator root dir".into()))?;
                paths::mkdir_all(&root)?;
                let root = std::fs::canonicalize(&root).map_err(|e| Error::io("resolve", &root, e))?;
                netns_pin::ensure_shared_root(&root)?;
                let runner = PluginRunner {
                    plugin_dirs: plugins,
                    timeout: options.plugin_timeout,
                    durable: options.durable_checkpoints,
                    exec,
                };
                (Some(Mutex::new(configs)), Some(runner), Some(root))
            }
        };
        let namespace_threads = NamespaceThreads::new(options.threads);
        Ok(Core {
            options,
            root,
            configs,
            runner,
            helper,
            infos: Mutex::new(HashMap::new()),
            calls: ContainerCalls::default(),
            namespace_threads,
            shutdown: CancellationToken::new(),
        })
    }

    /// Cancels every call in flight and every later one (the handle is
    /// going away): their plugins are killed and they fail with
    /// [`Error::Cancelled`]. What they had done stays on disk for recovery.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The error of a call stopped by `token`: by the handle's shutdown, or
    /// (for an isolate) by a cleanup of the container.
    fn cancelled(&self, call: &str, id: &ContainerId) -> Error {
        if self.shutdown.is_cancelled() {
            Error::Cancelled(format!(
                "{call} of container {id} was cancelled: the isolator is being destroyed"
            ))
        } else {
            Error::Cancelled(format!("{call} of container {id} was cancelled by its cleanup"))
        }
    }

    /// Containers with an isolate, cleanup or check running or waiting.
    pub fn busy_containers(&self) -> usize {
        self.calls.busy()
    }

    /// The root dir in use (`None` when degraded).
    pub fn root_dir(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Config files skipped at the last scan of the config dir.
    pub fn skipped_configs(&self) -> Vec<SkippedConfig> {
        self.configs
            .as_ref()
            .map(|c| lock(c).skipped().to_vec())
            .unwrap_or_default()
    }

    /// The networks the config dir defines now (after a rescan).
    pub fn networks(&self) -> Result<Vec<String>> {
        let Some(configs) = &self.configs else {
            return Ok(Vec::new());
        };
        let mut c = lock(configs);
        c.rescan()?;
        Ok(c.names())
    }

    /// The containers the isolator knows, sorted.
    pub fn containers(&self) -> Vec<ContainerId> {
        let mut ids: Vec<ContainerId> = lock(&self.infos).keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lookup(&self, name: &str) -> Result<NetworkConfig> {
        match &self.configs {
            Some(c) => lock(c).lookup(name),
            None => Err(Error::unknown_network(name)),
        }
    }

    fn root(&self) -> Result<&Path> {
        self.root
            .as_deref()
            .ok_or_else(|| Error::Invalid("CNI networks need a config dir and a plugins dir".into()))
    }

    fn runner(&self) -> Result<&PluginRunner> {
        self.runner
            .as_ref()
            .ok_or_else(|| Error::Invalid("CNI networks need a config dir and a plugins dir".into()))
    }

    /// Rebuilds state from the root dir (Mesos's `recover`). `states` are
    /// the containers the agent knows are alive, `orphans` the ones it will
    /// destroy itself; every other container directory is an unknown orphan
    /// and is cleaned up (DEL, unmount, remove) here. Beyond Mesos, one
    /// container's unreadable state never fails the whole recovery: it is
    /// reported in [`RecoveryReport::failed`] and left on disk.
    pub async fn recover(
        &self,
        states: &[ContainerState],
        orphans: &HashSet<ContainerId>,
    ) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let Some(root) = self.root.clone() else {
            return Ok(report);
        };
        for state in states {
            let name = state.container_id.to_string();
            if let Err(why) = state.container_id.validate() {
                report.failed.push((name, why));
                continue;
            }
            match self.recover_dir(&root, &name, &state.container_id, Some(state), &mut report) {
                Ok(true) => report.recovered.push(state.container_id.clone()),
                Ok(false) => {}
                Err(e) => report.failed.push((name, e.chain())),
            }
        }
        let mut orphans_found = Vec::new();
        for entry in paths::subdirs(&root)? {
            let Some(id) = ContainerId::parse(&entry) else {
                report
                    .failed
                    .push((entry.clone(), "not a container ID".to_string()));
                continue;
            };
            if lock(&self.infos).contains_key(&id) || states.iter().any(|s| s.container_id == id) {
                continue;
            }
            match self.recover_dir(&root, &entry, &id, None, &mut report) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    report.failed.push((entry, e.chain()));
                    continue;
                }
            }
            if orphans.contains(&id) {
                report.recovered.push(id);
            } else {
                orphans_found.push(id);
            }
        }
        // Unknown orphans are cleaned up concurrently; failures are only
        // reported (their state stays for the next attempt).
        let results = join_all(orphans_found.iter().map(|id| self.cleanup(id))).await;
        for (id, r) in orphans_found.into_iter().zip(results) {
            match r {
                Ok(()) => report.cleaned.push(id),
                Err(e) => report.failed.push((id.to_string(), e.chain())),
            }
        }
        Ok(report)
    }

    /// Rebuilds one container from `<root>/<name>`. `Ok(false)`: nothing on disk.
    fn recover_dir(
        &self,
        root: &Path,
        name: &str,
        id: &ContainerId,
        state: Option<&ContainerState>,
        report: &mut RecoveryReport,
    ) -> Result<bool> {
        let dir = paths::container_dir(root, name);
        if !dir.is_dir() {
            return Ok(false);
        }
        let corrupt = |why: String| Error::Corrupt {
            container: name.to_string(),
            why,
        };
        let mut networks = Vec::new();
        for network in paths::subdirs(&dir)? {
            let ifaces = paths::subdirs(&paths::network_dir(root, name, &network))?;
            let ifname = match ifaces.as_slice() {
                [] => continue,
                [one] => one.clone(),
                _ => {
                    return Err(corrupt(format!(
                        "more than one interface for network {network:?}"
                    )));
                }
            };
            let network_info = state
                .and_then(|s| {
                    s.network_infos
                        .iter()
                        .find(|n| n.name.as_deref() == Some(network.as_str()))
                })
                .cloned()
                .unwrap_or_else(|| NetworkInfo::named(&network));
            let info_path = paths::network_info_path(root, name, &network, &ifname);
            let result = match std::fs::read(&info_path) {
                Ok(bytes) => match cni::runtime::PluginResult::from_stdout(&bytes, cni::version::IMPLICIT) {
                    Ok(r) => Some(r.result),
                    Err(e) => {
                        report
                            .warnings
                            .push(format!("{}: unreadable, ignored: {e}", info_path.display()));
                        None
                    }
                },
                Err(_) => {
                    report.warnings.push(format!(
                        "{} does not exist (the agent stopped during ADD)",
                        info_path.display()
                    ));
                    None
                }
            };
            networks.push(ContainerNetwork {
                name: network,
                ifname,
                network_info,
                result,
            });
        }
        networks.sort_by_key(|n| ifname_order(&n.ifname));
        lock(&self.infos).insert(
            id.clone(),
            Info {
                networks,
                ..Info::default()
            },
        );
        Ok(true)
    }

    /// Decides the container's networks and namespaces (Mesos's `prepare`).
    /// `None`: the container stays in the host's namespaces.
    pub fn prepare(&self, id: &ContainerId, config: &ContainerConfig) -> Result<Option<LaunchInfo>> {
        // The ID names a directory below the root and is the plugins'
        // CNI_CONTAINERID: check it before anything is kept or written.
        id.validate().map_err(Error::Invalid)?;
        if lock(&self.infos).contains_key(id) {
            return Err(Error::Invalid(format!(
                "container {id} has already been prepared"
            )));
        }
        let is_debug = config.container_class == Some(ContainerClass::Debug);
        let wants_networks = config
            .container_info
            .as_ref()
            .is_some_and(|c| !c.network_infos.is_empty());
        let joins_parent = id.has_parent() && (is_debug || !wants_networks);
        let mut info = Info {
            rootfs: config.rootfs.clone(),
            joins_parent,
            ..Info::default()
        };
        if joins_parent {
            if let Some(parent) = lock(&self.infos).get(id.root()) {
                info.networks = parent.networks.clone();
            }
        } else if let Some(container) = &config.container_info {
            if container.container_type != ContainerType::Mesos {
                return Err(Error::Invalid(
                    "can only prepare CNI networks for a MESOS container".into(),
                ));
            }
            info.hostname = container.hostname.clone();
            for network_info in &container.network_infos {
                let Some(name) = &network_info.name else {
                    continue;
                };
                self.lookup(name)?;
                if info.networks.iter().any(|n| &n.name == name) {
                    return Err(Error::Invalid(format!(
                        "attempted to join CNI network {name:?} multiple times"
                    )));
                }
                info.networks.push(ContainerNetwork {
                    name: name.clone(),
                    ifname: format!("eth{}", info.networks.len()),
                    network_info: network_info.clone(),
                    result: None,
                });
            }
        }

        if info.networks.is_empty() {
            if info.rootfs.is_some() {
                lock(&self.infos).insert(id.clone(), info);
            }
            return Ok(None);
        }
        let test_network = info.networks.iter().any(|n| n.name.contains(MESOS_TEST_NETWORK));
        let mut launch = LaunchInfo {
            environment: vec![("LIBPROCESS_IP".into(), "0.0.0.0".into())],
            ..LaunchInfo::default()
        };
        if joins_parent {
            launch.enter_namespaces = vec![Namespace::Net, Namespace::Uts];
            if !is_debug {
                launch.clone_namespaces = vec![Namespace::Mount];
            }
        } else if test_network {
            launch.clone_namespaces = vec![Namespace::Mount, Namespace::Uts];
        } else {
            launch.clone_namespaces = vec![Namespace::Mount, Namespace::Net, Namespace::Uts];
        }
        if !(joins_parent && is_debug) {
            lock(&self.infos).insert(id.clone(), info);
        }
        Ok(Some(launch))
    }

    /// Sets `CNI_ARGS` for a prepared container's ADDs (an rcni extension;
    /// Mesos passes none).
    pub fn set_cni_args(&self, id: &ContainerId, args: Vec<(String, String)>) -> Result<()> {
        let mut infos = lock(&self.infos);
        let info = infos
            .get_mut(id)
            .ok_or_else(|| Error::Invalid(format!("container {id} is not prepared")))?;
        info.cni_args = args;
        Ok(())
    }

    /// Attaches the container whose first process is `pid` (Mesos's `isolate`).
    pub async fn isolate(&self, id: &ContainerId, pid: i32) -> Result<()> {
        self.isolate_with(id, NetnsSource::Pid(pid), Some(pid)).await
    }

    /// [`Core::isolate`] with the namespace from `source`. Without a
    /// `pid` nothing is bound into a mount namespace and no hostname is
    /// set (the files are still written, for whoever starts the process).
    ///
    /// A `cleanup` of the container arriving meanwhile cancels it: running
    /// plugins are killed, nothing more is done, and this fails with
    /// [`Error::Cancelled`]; the cleanup then detaches what was attached.
    pub async fn isolate_with(&self, id: &ContainerId, source: NetnsSource, pid: Option<i32>) -> Result<()> {
        let cancel = self.shutdown.child_token();
        let _turn = self.calls.isolate(id, cancel.clone()).await;
        let result = if cancel.is_cancelled() {
            Err(self.cancelled("isolate", id))
        } else {
            self.isolate_turn(id, source, pid, &cancel).await
        };
        match result {
            Err(e) if cancel.is_cancelled() && !matches!(e, Error::Cancelled(_)) => {
                let why = self.cancelled("isolate", id);
                Err(Error::Cancelled(format!("{why} ({})", e.chain())))
            }
            other => other,
        }
    }

    async fn isolate_turn(
        &self,
        id: &ContainerId,
        source: NetnsSource,
        pid: Option<i32>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let Some(info) = lock(&self.infos).get(id).cloned() else {
            return Ok(());
        };
        if info.networks.is_empty() {
            // Host network with an image: the host's files, read-only.
            let Some(pid) = pid else { return Ok(()) };
            let existing = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
            return self
                .run_setup(SetupFlags {
                    pid,
                    rootfs: info.rootfs.clone(),
                    etc_hosts_path: existing("/etc/hosts"),
                    etc_hostname_path: existing("/etc/hostname"),
                    etc_resolv_conf: Some("/etc/resolv.conf".into()),
                    bind_readonly: true,
                    ..SetupFlags::default()
                })
                .await;
        }
        let root = self.root()?.to_path_buf();
        if info.joins_parent {
            let Some(pid) = pid else { return Ok(()) };
            let parent_dir = paths::container_dir(&root, &id.root().to_string());
            let mut resolv = parent_dir.join("resolv.conf");
            if !resolv.exists() {
                resolv = PathBuf::from("/etc/resolv.conf");
            }
            return self
                .run_setup(SetupFlags {
                    pid,
                    rootfs: info.rootfs.clone(),
                    etc_hosts_path: Some(parent_dir.join("hosts")),
                    etc_hostname_path: Some(parent_dir.join("hostname")),
                    etc_resolv_conf: Some(resolv),
                    bind_host_files: true,
                    ..SetupFlags::default()
                })
                .await;
        }

        let name = id.to_string();
        let dir = paths::container_dir(&root, &name);
        paths::mkdir_below(&root, &dir)?;
        let ns = paths::ns_path(&root, &name);
        if std::fs::symlink_metadata(&ns).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Invalid(format!(
                "{} is a symbolic link; refusing to mount over it",
                ns.display()
            )));
        }
        match &source {
            NetnsSource::Pid(pid) => netns_pin::pin_pid_netns(*pid, &ns)?,
            NetnsSource::Path(p) => netns_pin::pin_from(p, &ns)?,
            NetnsSource::New => {
                // unshare moves a thread: a namespace thread of its own.
                let target = ns.clone();
                self.namespace_threads
                    .run("rcni-netns-new", move || {
                        netns_pin::pin_new_netns_on_this_thread(&target)
                    })
                    .await??;
            }
        }
        cni::fault::point("isolator.isolate.pinned");
        if cancel.is_cancelled() {
            return Err(self.cancelled("isolate", id));
        }

        let runner = self.runner()?;
        let adds = join_all(info.networks.iter().map(|net| async {
            let config = self.lookup(&net.name)?;
            let req = AttachRequest {
                root: &root,
                container: &name,
                network: &net.name,
                ifname: &net.ifname,
                cni_args: &info.cni_args,
            };
            runner
                .add(&req, &config, &net.network_info, &ns, cancel)
                .await
                .map(|a| a.result)
        }));
        // The route socket for `lo` is opened in the container's netns (on a
        // namespace thread) while the plugins run.
        let route = netns_socket::route_handle_in(&ns, &self.namespace_threads);
        let (attached, route): (Vec<Result<CniResult>>, _) = join(adds, route).await;
        let mut errors = Vec::new();
        let mut networks = info.networks.clone();
        for (net, r) in networks.iter_mut().zip(attached) {
            match r {
                Ok(result) => net.result = Some(result),
                Err(e) => errors.push(e),
            }
        }
        if let Some(stored) = lock(&self.infos).get_mut(id) {
            stored.networks = networks.clone();
        }
        Error::collect(errors)?;
        if cancel.is_cancelled() {
            return Err(self.cancelled("isolate", id));
        }

        let hostname = info.hostname.clone().unwrap_or_else(|| name.clone());
        let addresses: Vec<IpAddr> = networks
            .iter()
            .filter_map(|n| n.result.as_ref())
            .flat_map(|r| r.ips.iter().map(|ip| ip.address.ip()))
            .collect();
        let hostname_path = dir.join("hostname");
        let hosts_path = dir.join("hosts");
        paths::write_atomic(&hostname_path, hostname.as_bytes())?;
        paths::write_atomic(&hosts_path, files::hosts_file(&hostname, &addresses).as_bytes())?;
        let mut dns = cni::result::Dns::default();
        for net in &networks {
            let from_plugin = net.result.as_ref().map(|r| &r.dns);
            if let Some(d) = self.options.default_dns.for_network(&net.name, from_plugin) {
                files::merge_dns(&mut dns, &d);
            }
        }
        let resolv_path = if dns.nameservers.is_empty() {
            let host = PathBuf::from("/etc/resolv.conf");
            if !host.exists() {
                return Err(Error::Invalid("cannot find the host's /etc/resolv.conf".into()));
            }
            host
        } else {
            let p = dir.join("resolv.conf");
            paths::write_atomic(&p, files::resolv_conf(&dns).as_bytes())?;
            p
        };

        cni::fault::point("isolator.isolate.files");
        if cancel.is_cancelled() {
            return Err(self.cancelled("isolate", id));
        }
        let loopback = async { netns_socket::loopback_up(route?, &ns).await };
        let Some(pid) = pid else {
            return loopback.await;
        };
        // `lo` up and the mount/UTS setup touch different namespaces: both at once.
        let setup = self.run_setup(SetupFlags {
            pid,
            hostname: Some(hostname),
            rootfs: info.rootfs.clone(),
            etc_hosts_path: Some(hosts_path),
            etc_hostname_path: Some(hostname_path),
            etc_resolv_conf: Some(resolv_path),
            bind_host_files: true,
            bind_readonly: false,
        });
        let (lo, setup) = join(loopback, setup).await;
        Error::collect([lo.err(), setup.err()].into_iter().flatten().collect())
    }

    /// The mount/UTS work in the container (see [`crate::setup`]): on a
    /// namespace thread of this process, or by the helper binary (awaited
    /// on the blocking pool) when the kernel refuses the thread the mount
    /// namespace.
    async fn run_setup(&self, flags: SetupFlags) -> Result<()> {
        let in_thread = flags.clone();
        let why = match self
            .namespace_threads
            .run("rcni-setup", move || run_on_this_thread(&in_thread))
            .await?
        {
            Ok(()) => return Ok(()),
            Err(InThreadError::Failed(msg)) => return Err(Error::Setup(msg)),
            Err(InThreadError::Unsupported(why)) => why,
        };
        let helper = self.helper.clone().ok_or_else(|| {
            Error::Setup(format!(
                "{why}; and cannot find the cni-isolator-setup helper (set Options::setup_helper)"
            ))
        })?;
        tokio::task::spawn_blocking(move || run_helper(&helper, &flags))
            .await
            .map_err(|e| Error::Setup(format!("the setup helper task failed: {e}")))?
    }

    /// The container's networks with their addresses (Mesos's `status`).
    /// Beyond Mesos every address is listed and IPv6 loses its prefix too.
    pub fn status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let infos = lock(&self.infos);
        let mut cur = id;
        let info = loop {
            match infos.get(cur) {
                Some(info) if info.joins_parent && cur.has_parent() => cur = id.root(),
                Some(info) => break info,
                None => match &cur.parent {
                    Some(parent) => cur = parent,
                    None => return Ok(ContainerStatus::default()),
                },
            }
        };
        let mut status = ContainerStatus::default();
        for net in &info.networks {
            let Some(result) = &net.result else { continue };
            let mut ni = net.network_info.clone();
            ni.ip_addresses = result
                .ips
                .iter()
                .map(|ip| IpAddress {
                    protocol: Some(if ip.is_ipv4() {
                        Protocol::IPv4
                    } else {
                        Protocol::IPv6
                    }),
                    ip_address: Some(ip.address.ip().to_string()),
                })
                .collect();
            status.network_infos.push(ni);
        }
        Ok(status)
    }

    /// The `net_*` counters of the container's CNI interfaces, read over
    /// netlink inside its namespace (Mesos's `usage`).
    pub async fn usage(&self, id: &ContainerId) -> Result<ResourceStatistics> {
        if !self.options.metrics {
            return Ok(ResourceStatistics::default());
        }
        let (owner, ifnames) = {
            let infos = lock(&self.infos);
            let Some(info) = infos.get(id) else {
                return Ok(ResourceStatistics::default());
            };
            let owner = if info.joins_parent {
                id.root().clone()
            } else {
                id.clone()
            };
            let ifnames: Vec<String> = info.networks.iter().map(|n| n.ifname.clone()).collect();
            (owner, ifnames)
        };
        if ifnames.is_empty() {
            return Ok(ResourceStatistics::default());
        }
        let ns = paths::ns_path(self.root()?, &owner.to_string());
        let total = netns_socket::link_stats(&ns, &ifnames, &self.namespace_threads).await?;
        Ok(ResourceStatistics {
            net_rx_packets: Some(total.rx_packets),
            net_rx_bytes: Some(total.rx_bytes),
            net_rx_errors: Some(total.rx_errors),
            net_rx_dropped: Some(total.rx_dropped),
            net_tx_packets: Some(total.tx_packets),
            net_tx_bytes: Some(total.tx_bytes),
            net_tx_errors: Some(total.tx_errors),
            net_tx_dropped: Some(total.tx_dropped),
        })
    }

    /// Runs CHECK for every network of the container whose config is 0.4.0
    /// or newer (older versions have no CHECK and are skipped; an rcni
    /// extension).
    pub async fn check(&self, id: &ContainerId) -> Result<()> {
        let _turn = self.calls.exclusive(id).await;
        let cancel = self.shutdown.child_token();
        let Some(info) = lock(&self.infos).get(id).cloned() else {
            return Err(Error::Invalid(format!("unknown container {id}")));
        };
        if info.joins_parent {
            return Ok(());
        }
        let root = self.root()?;
        let runner = self.runner()?;
        let name = id.to_string();
        let ns = paths::ns_path(root, &name);
        let mut errors = Vec::new();
        for net in &info.networks {
            let req = AttachRequest {
                root,
                container: &name,
                network: &net.name,
                ifname: &net.ifname,
                cni_args: &info.cni_args,
            };
            match runner.check(&req, &ns, &cancel).await {
                // Before 0.4.0 there is no CHECK: nothing to verify.
                Err(e) if e.cni_code() == Some(cni::Code::INCOMPATIBLE_VERSION) => {}
                Err(e) => errors.push(e),
                Ok(()) => {}
            }
        }
        Error::collect(errors)
    }

    /// Detaches the container and removes its state (Mesos's `cleanup`):
    /// DEL of every network concurrently, then unmount of the netns handle
    /// and removal of the container dir. If any DEL fails, the state stays
    /// (in memory and on disk) so a later cleanup or recovery retries it.
    ///
    /// An `isolate` of the container still running is cancelled and waited
    /// for first; then every network it attached, or was attaching, gets
    /// its DEL.
    pub async fn cleanup(&self, id: &ContainerId) -> Result<()> {
        let _turn = self.calls.cleanup(id).await;
        let cancel = self.shutdown.child_token();
        let result = self.cleanup_turn(id, &cancel).await;
        match result {
            Err(e) if cancel.is_cancelled() => Err(Error::Cancelled(format!(
                "{} ({})",
                self.cancelled("cleanup", id),
                e.chain()
            ))),
            other => other,
        }
    }

    async fn cleanup_turn(&self, id: &ContainerId, cancel: &CancellationToken) -> Result<()> {
        let Some(info) = lock(&self.infos).get(id).cloned() else {
            return Ok(());
        };
        if info.joins_parent || (info.networks.is_empty() && info.rootfs.is_some()) {
            lock(&self.infos).remove(id);
            return Ok(());
        }
        let root = self.root()?;
        let runner = self.runner()?;
        let name = id.to_string();
        let ns = paths::ns_path(root, &name);
        let detached: Vec<Result<()>> = join_all(info.networks.iter().map(|net| async {
            let req = AttachRequest {
                root,
                container: &name,
                network: &net.name,
                ifname: &net.ifname,
                cni_args: &info.cni_args,
            };
            runner.del(&req, &ns, cancel).await
        }))
        .await;
        Error::collect(detached.into_iter().filter_map(Result::err).collect())?;
        cni::fault::point("isolator.cleanup.del");
        netns_pin::unpin(&ns)?;
        cni::fault::point("isolator.cleanup.unpinned");
        let dir = paths::container_dir(root, &name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &dir, e)),
        }
        lock(&self.infos).remove(id);
        Ok(())
    }
}

/// Locks a mutex, taking over a poisoned one: the data is plain state that a
/// panicking thread cannot leave half-written in a way we rely on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
