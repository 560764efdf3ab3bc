//! `cni-isolator`: the Mesos `network/cni` isolator as a standalone tool.
//! Runs a command on CNI networks, or attaches/detaches containers started
//! elsewhere, with the same state layout as a Mesos agent.

mod args;
mod launch;
mod records;

use args::{Attach, Cmd, Global};
use cni_isolator::{
    ContainerConfig, ContainerId, ContainerInfo, ContainerState, Error, Isolator, NetnsSource, NetworkInfo,
    Options,
};
use records::Record;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const HELP: &str = "\
cni-isolator: run processes on CNI networks the way the Mesos agent's network/cni isolator does.

USAGE
  cni-isolator [FLAGS] run --network NAME[,NAME...] [--hostname H] [--publish [NET:]HOST:CONTAINER[/PROTO]] -- CMD ARGS...
  cni-isolator [FLAGS] attach --network NAME[,NAME...] [--id ID] [--pid PID | --netns PATH] [--hostname H]
  cni-isolator [FLAGS] detach ID
  cni-isolator [FLAGS] status [ID]        networks and addresses (all containers without ID)
  cni-isolator [FLAGS] list               the containers under --root-dir
  cni-isolator [FLAGS] usage ID           rx/tx packets, bytes, errors, drops of the CNI interfaces
  cni-isolator [FLAGS] check ID           CNI CHECK on every network (cniVersion 0.4.0 and later)
  cni-isolator [FLAGS] networks           the networks --config-dir defines, and the files skipped
  cni-isolator [FLAGS] gc                 detach containers whose process is gone

WHAT run DOES
  Starts CMD in new network, mount and UTS namespaces, ADDs it to every --network (eth0, eth1, ...
  in order, concurrently), writes its hostname (--hostname or the container ID), /etc/hosts (every
  address) and /etc/resolv.conf (the plugin's DNS, else --default-container-dns, else the host's),
  binds them over /etc inside its mount namespace, brings lo up, prints the addresses, runs CMD,
  and DELs everything when CMD exits. --publish passes a port mapping to network NET (without
  NET: the first one) as the portMappings capability and Mesos's port_mappings (for
  mesos-cni-port-mapper); repeat it for more ports or networks.

FLAGS (mirroring the Mesos agent's)
  --config-dir DIR            network configs, .conf/.json/.conflist  [/etc/cni/net.d]
  --plugins-dir DIR[:DIR]     CNI plugin search path                  [/opt/cni/bin:/usr/lib/cni]
  --root-dir DIR              state base; the isolator's state is DIR/isolators/network/cni, so a
                              Mesos agent's --runtime_dir works here too   [/var/run/rcni]
  --plugin-timeout DURATION   kill a plugin exec after this (30s, 500ms, 0 = never)   [60s]
  --default-container-dns JSON  ContainerDNSInfo, e.g.
                              '{\"mesos\":[{\"network_mode\":\"CNI\",\"dns\":{\"nameservers\":[\"10.222.0.1\"]}}]}'
  --no-metrics                usage reports nothing (--network_cni_metrics=false)
  --setup-helper PATH         the cni-isolator-setup binary  [next to this binary, then PATH]
  --id ID                     container ID for run/attach  [random]
  --cni-args 'K=V;K=V'        CNI_ARGS for the plugins
  --json                      machine-readable output

EXAMPLE
  sudo cni-isolator --config-dir ./net.d run --network demo --publish 8080:80 -- \\
      busybox httpd -f -p 80
";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(launch::HOLD_ARG) {
        std::process::exit(launch::hold_and_exec(&argv[1..]));
    }
    let (global, cmd) = match args::parse(&argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cni-isolator: {e}");
            std::process::exit(2);
        }
    };
    let code = match dispatch(&global, cmd) {
        Ok(code) => code,
        Err(e) => {
            if global.json {
                let msg = serde_json::json!({"error": e.chain(), "code": e.cni_code().map(|c| c.0)});
                println!("{msg}");
            } else {
                eprintln!("cni-isolator: {}", e.chain());
            }
            1
        }
    };
    std::process::exit(code);
}

fn options(g: &Global) -> cni_isolator::Result<Options> {
    let mut o = Options::new(
        &g.config_dir,
        &g.plugins_dir,
        Options::root_dir_for(&g.root_dir, &g.root_dir, false),
    );
    o.plugin_timeout = g.plugin_timeout;
    o.metrics = g.metrics;
    o.setup_helper = g.setup_helper.clone();
    if let Some(dns) = &g.default_dns {
        o.default_dns = cni_isolator::files::DefaultDns::parse(dns)?;
    }
    Ok(o)
}

fn dispatch(g: &Global, cmd: Cmd) -> cni_isolator::Result<i32> {
    match cmd {
        Cmd::Help => {
            print!("{HELP}");
            Ok(0)
        }
        Cmd::Version => {
            println!("cni-isolator {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Cmd::Networks => networks(g),
        Cmd::Run(a) => run(g, a),
        Cmd::Attach(a) => attach(g, a),
        Cmd::Detach(id) => detach(g, &id),
        Cmd::Status(id) => status(g, id.as_deref()),
        Cmd::List => status(g, None),
        Cmd::Usage(id) => usage(g, &id),
        Cmd::Check(id) => {
            let iso = recovered(g)?;
            iso.check(&parse_id(&id)?)?;
            println!("{id}: ok");
            Ok(0)
        }
        Cmd::Gc => gc(g),
    }
}

fn parse_id(id: &str) -> cni_isolator::Result<ContainerId> {
    ContainerId::parse(id).ok_or_else(|| Error::Invalid(format!("{id:?} is not a container ID")))
}

fn new_id() -> String {
    let mut bytes = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress(g: &Global, msg: &str) {
    if !g.json {
        eprintln!("{msg}");
    }
}

/// An isolator that knows every container on disk, cleaning none of them
/// (all are passed as known orphans).
fn recovered(g: &Global) -> cni_isolator::Result<Isolator> {
    let iso = Isolator::new(options(g)?)?;
    let recs = records::load_all(&g.root_dir);
    let states: Vec<ContainerState> = recs.iter().filter_map(Record::state).collect();
    let mut orphans = HashSet::new();
    if let Some(root) = iso.root_dir() {
        for name in cni_isolator::paths::subdirs(root)? {
            if let Some(id) = ContainerId::parse(&name) {
                orphans.insert(id);
            }
        }
    }
    let report = iso.recover(&states, &orphans)?;
    for (c, why) in &report.failed {
        eprintln!("cni-isolator: warning: cannot recover {c}: {why}");
    }
    Ok(iso)
}

fn networks(g: &Global) -> cni_isolator::Result<i32> {
    let iso = Isolator::new(options(g)?)?;
    let names = iso.networks()?;
    let skipped = iso.skipped_configs();
    if g.json {
        let skipped: Vec<_> = skipped
            .iter()
            .map(|s| serde_json::json!({"path": s.path, "reason": s.reason}))
            .collect();
        println!("{}", serde_json::json!({"networks": names, "skipped": skipped}));
        return Ok(0);
    }
    for n in &names {
        println!("{n}");
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(0)
}

fn container_config(a: &Attach) -> cni_isolator::Result<ContainerConfig> {
    let mut infos: Vec<NetworkInfo> = a.networks.iter().map(NetworkInfo::named).collect();
    for (network, mapping) in &a.publish {
        let info = match network {
            None => infos.first_mut(),
            Some(n) => infos.iter_mut().find(|i| i.name.as_deref() == Some(n.as_str())),
        };
        let Some(info) = info else {
            return Err(cni_isolator::Error::Invalid(format!(
                "--publish names network {:?}, which is not one of --network",
                network.as_deref().unwrap_or_default()
            )));
        };
        info.port_mappings.push(mapping.clone());
    }
    Ok(ContainerConfig {
        container_class: None,
        container_info: Some(ContainerInfo {
            hostname: a.hostname.clone(),
            network_infos: infos,
            ..ContainerInfo::default()
        }),
        rootfs: None,
    })
}

fn print_status(g: &Global, iso: &Isolator, id: &ContainerId) -> cni_isolator::Result<()> {
    let st = iso.status(id)?;
    if g.json {
        let ns = iso
            .root_dir()
            .map(|r| cni_isolator::paths::ns_path(r, &id.to_string()));
        println!(
            "{}",
            serde_json::json!({"id": id.to_string(), "netns": ns, "network_infos": st.network_infos})
        );
        return Ok(());
    }
    let mut line = id.to_string();
    for (i, ni) in st.network_infos.iter().enumerate() {
        let addrs: Vec<String> = ni
            .ip_addresses
            .iter()
            .filter_map(|a| a.ip_address.clone())
            .collect();
        line.push_str(&format!(
            "  eth{i}={}:{}",
            ni.name.as_deref().unwrap_or("?"),
            if addrs.is_empty() {
                "-".to_string()
            } else {
                addrs.join(",")
            }
        ));
    }
    println!("{line}");
    Ok(())
}

fn run(g: &Global, a: Attach) -> cni_isolator::Result<i32> {
    // Before the isolator starts its runtime threads, which inherit this thread's mask: a
    // SIGTERM must never reach a thread that lets it kill us before the cleanup.
    let forwarded = block_forwarded_signals();
    let iso = Isolator::new(options(g)?)?;
    let id = parse_id(&a.id.clone().unwrap_or_else(new_id))?;
    let t0 = Instant::now();
    let config = container_config(&a)?;
    let Some(launch) = iso.prepare(&id, &config)? else {
        return Err(Error::Invalid("no CNI network to attach to".into()));
    };
    iso.set_cni_args(&id, a.cni_args.clone())?;
    let mut held = launch::spawn_held(&a.command, &launch)
        .map_err(|e| Error::io("start", Path::new(&a.command[0]), e))?;
    let pid = i32::try_from(held.child.id()).unwrap_or(0);
    let rec = Record {
        id: id.to_string(),
        networks: config.container_info.map(|c| c.network_infos).unwrap_or_default(),
        pid: Some(pid),
        start_time: records::process_start_time(pid),
    };
    records::save(&g.root_dir, &rec)?;
    let signals = forwarded.and_then(|set| forward_signals(set, pid));
    if let Err(e) = iso.isolate(&id, pid) {
        let _ = held.child.kill();
        let _ = held.child.wait();
        let undo = iso.cleanup(&id);
        if undo.is_ok() {
            records::remove(&g.root_dir, &id.to_string());
        }
        return Err(e);
    }
    progress(
        g,
        &format!(
            "container {id} attached in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1000.0
        ),
    );
    print_status(g, &iso, &id)?;
    let _ = std::io::stdout().flush();
    held.release()
        .map_err(|e| Error::io("release", Path::new(&a.command[0]), e))?;
    let status = held
        .child
        .wait()
        .map_err(|e| Error::io("wait for", Path::new(&a.command[0]), e))?;
    drop(signals);
    let t1 = Instant::now();
    iso.cleanup(&id)?;
    records::remove(&g.root_dir, &id.to_string());
    progress(
        g,
        &format!(
            "container {id} detached in {:.1} ms",
            t1.elapsed().as_secs_f64() * 1000.0
        ),
    );
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread and every thread started after it (the
/// isolator's runtime and namespace threads among them), so that none of them is killed by
/// one: [`forward_signals`] then takes them. A signal that comes before the container is
/// started stays pending until then.
fn block_forwarded_signals() -> Option<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().ok()?;
    Some(set)
}

/// While the container runs, the signals blocked by [`block_forwarded_signals`] go to the
/// container instead of killing us before cleanup: a waiter thread forwards them.
fn forward_signals(set: nix::sys::signal::SigSet, pid: i32) -> Option<std::thread::JoinHandle<()>> {
    Some(std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let target = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(target, sig).is_err() {
                break;
            }
        }
    }))
}

fn attach(g: &Global, a: Attach) -> cni_isolator::Result<i32> {
    let iso = recovered(g)?;
    let id = parse_id(&a.id.clone().unwrap_or_else(new_id))?;
    if iso.containers().contains(&id) {
        return Err(Error::Invalid(format!("container {id} is already attached")));
    }
    let config = container_config(&a)?;
    if iso.prepare(&id, &config)?.is_none() {
        return Err(Error::Invalid("no CNI network to attach to".into()));
    }
    iso.set_cni_args(&id, a.cni_args.clone())?;
    let (source, setup_pid) = match (a.pid, &a.netns) {
        (Some(pid), _) => {
            let same = |kind: &str| {
                let ours = std::fs::metadata(format!("/proc/self/ns/{kind}"));
                let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{kind}"));
                matches!((ours, theirs), (Ok(x), Ok(y)) if std::os::unix::fs::MetadataExt::ino(&x)
                    == std::os::unix::fs::MetadataExt::ino(&y))
            };
            if same("net") {
                return Err(Error::Invalid(format!(
                    "process {pid} is in the host's network namespace; start it in its own (unshare -n)"
                )));
            }
            // Never bind files over the host's /etc.
            (NetnsSource::Pid(pid), (!same("mnt")).then_some(pid))
        }
        (None, Some(p)) => (NetnsSource::Path(p.clone()), None),
        (None, None) => (NetnsSource::New, None),
    };
    let rec = Record {
        id: id.to_string(),
        networks: config.container_info.map(|c| c.network_infos).unwrap_or_default(),
        pid: a.pid,
        start_time: a.pid.and_then(records::process_start_time),
    };
    records::save(&g.root_dir, &rec)?;
    if let Err(e) = iso.isolate_with(&id, source, setup_pid) {
        if iso.cleanup(&id).is_ok() {
            records::remove(&g.root_dir, &id.to_string());
        }
        return Err(e);
    }
    print_status(g, &iso, &id)?;
    if let Some(root) = iso.root_dir() {
        progress(
            g,
            &format!(
                "netns: {} (nsenter --net={} ...)",
                cni_isolator::paths::ns_path(root, &id.to_string()).display(),
                cni_isolator::paths::ns_path(root, &id.to_string()).display()
            ),
        );
    }
    Ok(0)
}

fn detach(g: &Global, id: &str) -> cni_isolator::Result<i32> {
    let iso = recovered(g)?;
    let cid = parse_id(id)?;
    if !iso.containers().contains(&cid) {
        records::remove(&g.root_dir, id);
        return Err(Error::Invalid(format!(
            "no container {id} under {}",
            g.root_dir.display()
        )));
    }
    iso.cleanup(&cid)?;
    records::remove(&g.root_dir, id);
    progress(g, &format!("container {id} detached"));
    Ok(0)
}

fn status(g: &Global, id: Option<&str>) -> cni_isolator::Result<i32> {
    let iso = recovered(g)?;
    let ids = match id {
        Some(id) => vec![parse_id(id)?],
        None => iso.containers(),
    };
    for id in &ids {
        print_status(g, &iso, id)?;
    }
    Ok(0)
}

fn usage(g: &Global, id: &str) -> cni_isolator::Result<i32> {
    let iso = recovered(g)?;
    let stats = iso.usage(&parse_id(id)?)?;
    if g.json {
        println!("{}", serde_json::to_string(&stats).unwrap_or_default());
    } else {
        let v = |x: Option<u64>| x.map_or("-".to_string(), |n| n.to_string());
        println!(
            "rx: {} packets {} bytes {} errors {} dropped\ntx: {} packets {} bytes {} errors {} dropped",
            v(stats.net_rx_packets),
            v(stats.net_rx_bytes),
            v(stats.net_rx_errors),
            v(stats.net_rx_dropped),
            v(stats.net_tx_packets),
            v(stats.net_tx_bytes),
            v(stats.net_tx_errors),
            v(stats.net_tx_dropped)
        );
    }
    Ok(0)
}

fn gc(g: &Global) -> cni_isolator::Result<i32> {
    let iso = Isolator::new(options(g)?)?;
    let Some(root) = iso.root_dir().map(Path::to_path_buf) else {
        return Ok(0);
    };
    let recs = records::load_all(&g.root_dir);
    let live: Vec<&Record> = recs
        .iter()
        .filter(|r| r.is_alive(&cni_isolator::paths::ns_path(&root, &r.id)))
        .collect();
    let states: Vec<ContainerState> = live.iter().filter_map(|r| r.state()).collect();
    let report = iso.recover(&states, &HashSet::new())?;
    for r in &recs {
        if !live.iter().any(|l| l.id == r.id) && !report.failed.iter().any(|(c, _)| c == &r.id) {
            records::remove(&g.root_dir, &r.id);
        }
    }
    for id in &report.cleaned {
        progress(g, &format!("removed {id}"));
    }
    for (c, why) in &report.failed {
        eprintln!("cni-isolator: cannot clean up {c}: {why}");
    }
    if g.json {
        let cleaned: Vec<String> = report.cleaned.iter().map(ToString::to_string).collect();
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|(c, w)| serde_json::json!({"id": c, "error": w}))
            .collect();
        println!("{}", serde_json::json!({"cleaned": cleaned, "failed": failed}));
    }
    Ok(if report.failed.is_empty() { 0 } else { 1 })
}
