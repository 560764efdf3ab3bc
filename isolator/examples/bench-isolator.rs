//! The isolator's own cost (DESIGN: attaching a container to one bridge
//! network costs no more than the plugins plus 2 ms; recovery of 1,000
//! containers under 1 s). Root; run by `scripts/bench-isolator`.
//!
//! `bench-isolator --plugins DIR [--setup-helper PATH] [--runs N] [--containers N] [--workers N]`
//!
//! - attach: `isolate()` of a container (a process in new net, mount and UTS
//!   namespaces) on a bridge + host-local network, minus the time spent in
//!   the plugin execs themselves (spawn to exit, measured by a timing
//!   wrapper around the exec layer). What is left is the isolator: pinning
//!   the netns, checkpoints, the hosts/hostname files, `lo` up, and the
//!   mount/UTS setup in the container (a thread; the setup helper, a
//!   process exec of its own, only where the kernel refuses the thread).
//! - detach: `cleanup()` minus its plugin execs (unmount, removal).
//! - recovery: `recover()` of N containers checkpointed in Mesos's layout.
//!
//! Everything runs in a new network namespace of this process (unshared
//! before any thread starts, so the plugins, the helper and the containers
//! inherit it): the bridge, its addresses (10.222.40.0/22) and sysctls
//! vanish with the process. Files go to a temporary directory, removed at
//! the end.

use cni::runtime::Invocation;
use cni_isolator::plugin_exec::{PluginExec, ProcessPlugins};
use cni_isolator::{
    ContainerConfig, ContainerId, ContainerInfo, ContainerState, Isolator, NetworkInfo, Options,
};
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs plugins as the isolator does (awaited child processes), adding up
/// the time of each exec.
#[derive(Default)]
struct TimedExec {
    spent: Mutex<Duration>,
}

impl TimedExec {
    fn take(&self) -> Duration {
        std::mem::take(
            &mut *self
                .spent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl PluginExec for TimedExec {
    fn exec<'a>(
        &'a self,
        plugin: &'a Path,
        inv: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, cni::Result<Vec<u8>>> {
        Box::pin(async move {
            let t0 = Instant::now();
            let out = ProcessPlugins.exec(plugin, inv, cancel).await;
            *self
                .spent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += t0.elapsed();
            out
        })
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Args {
    plugins: PathBuf,
    helper: Option<PathBuf>,
    runs: usize,
    containers: usize,
    workers: usize,
}

fn args() -> Res<Args> {
    let mut a = Args {
        plugins: PathBuf::new(),
        helper: None,
        runs: 50,
        containers: 1000,
        workers: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--plugins" => a.plugins = value()?.into(),
            "--setup-helper" => a.helper = Some(value()?.into()),
            "--runs" => a.runs = value()?.parse()?,
            "--containers" => a.containers = value()?.parse()?,
            "--workers" => a.workers = value()?.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.plugins.as_os_str().is_empty() {
        return Err("--plugins DIR is required (bridge, host-local)".into());
    }
    Ok(a)
}

/// A process in new net, mount and UTS namespaces, as Mesos's launcher makes it.
fn container_process() -> Res<std::process::Child> {
    let child = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--uts",
            "--propagation",
            "unchanged",
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_ref() == Some(&ours)
        || !std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|e| e.to_string_lossy().contains("sleep"))
    {
        if Instant::now() > deadline {
            return Err("the container process did not start".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(child)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench-isolator: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let a = args()?;
    // Before any thread exists: the whole process moves.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    let mut sock = cni_net::netlink::Socket::new()?;
    let lo = sock.link_by_name("lo")?;
    sock.set_link_up(lo.index)?;

    let base = std::env::temp_dir().join(format!("rcni-bench-isolator-{}", std::process::id()));
    let result = bench(&a, &base);
    let root = base.join("run").join(cni_isolator::paths::CNI_DIR);
    for _ in 0..3 {
        let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn bench(a: &Args, base: &Path) -> Res<()> {
    let conf = base.join("net.d");
    std::fs::create_dir_all(&conf)?;
    std::fs::write(
        conf.join("bench.conf"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"rcnibench0","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.222.40.0/22","dataDir":"{}"}}}}"#,
            base.join("ipam").display()
        ),
    )?;
    let mut options = Options::new(
        &conf,
        &a.plugins.display().to_string(),
        base.join("run").join(cni_isolator::paths::CNI_DIR),
    );
    options.setup_helper = a.helper.clone();
    options.threads.workers = a.workers;
    options.plugin_timeout = Some(Duration::from_secs(30));
    let exec = Arc::new(TimedExec::default());
    let iso = Isolator::with_plugin_exec(options.clone(), exec.clone())?;
    let config = ContainerConfig {
        container_info: Some(ContainerInfo {
            network_infos: vec![NetworkInfo::named("bench")],
            ..ContainerInfo::default()
        }),
        ..ContainerConfig::default()
    };

    // attach / detach, after two warm-up rounds (page cache, bridge creation).
    let (mut attach, mut attach_plugins, mut detach, mut detach_plugins) = (vec![], vec![], vec![], vec![]);
    for i in 0..a.runs + 2 {
        let id = ContainerId::new(format!("b{i}"));
        iso.prepare(&id, &config)?;
        let mut child = container_process()?;
        let pid = i32::try_from(child.id())?;
        exec.take();
        let t0 = Instant::now();
        let attached = iso.isolate(&id, pid);
        let took = t0.elapsed();
        let plugins = exec.take();
        attached?;
        let t0 = Instant::now();
        let detached = iso.cleanup(&id);
        let took_del = t0.elapsed();
        let plugins_del = exec.take();
        let _ = child.kill();
        let _ = child.wait();
        detached?;
        if i >= 2 {
            attach.push(ms(took));
            attach_plugins.push(ms(plugins));
            detach.push(ms(took_del));
            detach_plugins.push(ms(plugins_del));
        }
    }
    let overhead: Vec<f64> = attach.iter().zip(&attach_plugins).map(|(t, p)| t - p).collect();
    let del_overhead: Vec<f64> = detach.iter().zip(&detach_plugins).map(|(t, p)| t - p).collect();
    println!(
        "attach (isolate, bridge+host-local, {} runs): median {:.2} ms, plugins {:.2} ms, isolator overhead {:.2} ms",
        a.runs,
        median(&mut attach),
        median(&mut attach_plugins),
        median(&mut overhead.clone())
    );
    println!(
        "detach (cleanup): median {:.2} ms, plugins {:.2} ms, isolator overhead {:.2} ms",
        median(&mut detach),
        median(&mut detach_plugins),
        median(&mut del_overhead.clone())
    );

    // Recovery of N containers in Mesos's layout (their namespaces are
    // gone; the agent knows them all, so no DEL runs).
    let root = base.join("run").join(cni_isolator::paths::CNI_DIR);
    let network_conf = r#"{"args":{"org.apache.mesos":{"network_info":{"name":"bench"}}},"cniVersion":"1.0.0","name":"bench","type":"bridge"}"#;
    let info = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.222.41.2/22","gateway":"10.222.40.1"}]}"#;
    let mut states = Vec::new();
    for i in 0..a.containers {
        let c = format!("r{i}");
        let dir = root.join(&c);
        std::fs::create_dir_all(dir.join("bench/eth0"))?;
        std::fs::write(dir.join("ns"), "")?;
        std::fs::write(dir.join("hostname"), &c)?;
        std::fs::write(dir.join("bench/network.conf"), network_conf)?;
        std::fs::write(dir.join("bench/eth0/network.info"), info)?;
        states.push(ContainerState {
            container_id: ContainerId::new(c),
            network_infos: vec![NetworkInfo::named("bench")],
        });
    }
    let fresh = Isolator::with_plugin_exec(options, exec.clone())?;
    let t0 = Instant::now();
    let report = fresh.recover(&states, &HashSet::new())?;
    let took = t0.elapsed();
    if report.recovered.len() != a.containers || !report.failed.is_empty() {
        return Err(format!(
            "recovery: {} recovered, failed {:?}",
            report.recovered.len(),
            report.failed
        )
        .into());
    }
    println!(
        "recovery of {} containers: {:.1} ms (plugin execs: {:.1} ms)",
        a.containers,
        ms(took),
        ms(exec.take())
    );
    Ok(())
}
