//! Fixtures for the isolator tests (root only): a throw-away base dir with a
//! config dir, a plugin dir of mock plugins (shell scripts that log their
//! calls, like Mesos's mock plugin) and a runtime dir; container processes
//! in new namespaces; everything unmounted and removed on drop, even when
//! the test panics. Addresses: 10.222.0.0/16 and fd00:222::/48 only.
//!
//! The real host's network is never touched: [`Env::new`] moves the test
//! thread into a fresh "host" network namespace ([`HostNetns`]) for the
//! whole test. Every process the test or the isolator starts (plugins, the
//! setup helper, containers, the CLI) inherits the calling thread's netns,
//! and so does every thread the isolator spawns, so bridges, sysctls such
//! as `ip_forward` (bridge `isGateway`) and nftables tables (portmap) land
//! there and vanish with it. Mounts (the root dir, `ns` handles) still go to
//! the host's mount namespace and are undone on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use cni_isolator::{ContainerConfig, ContainerId, ContainerInfo, Isolator, NetworkInfo, Options};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared fixtures these tests use, for `use common::*` (not every test
/// file uses every one).
#[allow(unused_imports)]
pub use rcni_test_support::{
    HostSnapshot, TempDir, assert_same_host, go_plugin, sh, short_unique, target_bin_dir,
};

/// A throw-away network namespace that the calling thread stays in until
/// drop (with `lo` up, like a host's). Only the thread moves: other threads
/// of the test binary stay in the real host netns. The namespace is held
/// by a file descriptor only (nothing under `/run/netns` to leak if the
/// test is killed) and the kernel deletes it, with every bridge, sysctl and
/// nftables table in it, once the thread has left and the last process in
/// it is gone. Drop runs on panic too (the guard returns the thread first).
pub struct HostNetns {
    guard: Option<cni_net::netns::NetnsGuard>,
    ns: cni_net::Netns,
}

impl HostNetns {
    pub fn enter() -> HostNetns {
        // A short-lived thread unshares (namespaces are per thread) and
        // hands back a descriptor of its new namespace.
        let fd: OwnedFd = rcni_test_support::in_new_netns(|| {
            OwnedFd::from(std::fs::File::open(cni_net::netns::THREAD_SELF_NETNS).unwrap())
        });
        let ns = cni_net::Netns::from_fd(fd, "throw-away host netns");
        let mut sock = ns.socket().unwrap();
        let lo = sock.link_by_name("lo").unwrap();
        sock.set_link_up(lo.index).unwrap();
        let guard = ns.enter().expect("enter the throw-away host netns");
        HostNetns {
            guard: Some(guard),
            ns,
        }
    }

    /// The namespace's inode (as in `/proc/PID/ns/net`).
    pub fn ino(&self) -> u64 {
        self.ns.id().unwrap().ino
    }
}

impl Drop for HostNetns {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            // Aborts the process if the thread cannot go back (the guard's rule).
            let _ = g.restore();
        }
    }
}

/// One test's world.
pub struct Env {
    pub base: PathBuf,
    pub conf: PathBuf,
    pub plugins: PathBuf,
    pub runtime: PathBuf,
    pub log: PathBuf,
    links: Vec<String>,
    children: Vec<Child>,
    /// Holds `base`; removed after `drop` has unmounted what is under it.
    dir: TempDir,
    /// Dropped last, after the processes in it are gone.
    pub host: HostNetns,
}

impl Env {
    pub fn new() -> Env {
        let host = HostNetns::enter();
        let dir = TempDir::named("rcni-iso");
        let base = dir.path().to_path_buf();
        let env = Env {
            host,
            dir,
            conf: base.join("conf"),
            plugins: base.join("plugins"),
            runtime: base.join("runtime"),
            log: base.join("calls.log"),
            base,
            links: Vec::new(),
            children: Vec::new(),
        };
        for d in [&env.conf, &env.plugins, &env.runtime] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&env.log, "").unwrap();
        env
    }

    /// The isolator root for this env.
    pub fn root(&self) -> PathBuf {
        Options::root_dir_for(&self.runtime, &self.base.join("work"), false)
    }

    pub fn options(&self) -> Options {
        let mut o = Options::new(
            &self.conf,
            &format!("{}:/usr/lib/cni", self.plugins.display()),
            self.root(),
        );
        o.setup_helper = Some(env!("CARGO_BIN_EXE_cni-isolator-setup").into());
        o.plugin_timeout = Some(Duration::from_secs(30));
        o
    }

    pub fn isolator(&self) -> Isolator {
        Isolator::new(self.options()).unwrap()
    }

    /// A mock plugin that logs `CMD id ifname netns=...` and its stdin, and
    /// prints `result` on ADD.
    pub fn mock_plugin(&self, name: &str, result: &str) {
        let body = format!(
            "#!/bin/sh\nin=$(cat)\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME netns=${{CNI_NETNS:-none}}\" >> {log}\n\
             printf '%s' \"$in\" > {base}/stdin.$CNI_COMMAND.$CNI_IFNAME\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then cat <<'EOF'\n{result}\nEOF\nfi\n",
            log = self.log.display(),
            base = self.base.display(),
        );
        self.script(name, &body);
    }

    /// A plugin with an arbitrary shell body.
    pub fn script(&self, name: &str, body: &str) {
        rcni_test_support::write_executable(&self.plugins.join(name), body);
    }

    /// Writes a config file.
    pub fn config(&self, file: &str, json: &str) {
        std::fs::write(self.conf.join(file), json).unwrap();
    }

    /// A mock network `name` using plugin `plugin` (cniVersion 0.2.0).
    pub fn mock_network(&self, name: &str, plugin: &str) {
        self.config(
            &format!("{name}.conf"),
            &format!(r#"{{"cniVersion":"0.2.0","name":"{name}","type":"{plugin}"}}"#),
        );
    }

    /// A bridge this test creates (deleted on drop).
    pub fn track_link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }

    /// The mock plugins' call log lines.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// What a mock plugin got on stdin.
    pub fn stdin_of(&self, command: &str, ifname: &str) -> String {
        std::fs::read_to_string(self.base.join(format!("stdin.{command}.{ifname}"))).unwrap()
    }

    /// A process in new net, mount and UTS namespaces (as Mesos's launcher
    /// clones it), killed on drop. Returns its pid.
    pub fn container_process(&mut self) -> i32 {
        self.spawn_in(&[
            "unshare",
            "--net",
            "--mount",
            "--uts",
            "--propagation",
            "unchanged",
            "sleep",
            "1000",
        ])
    }

    /// A process started with `argv` that ends up in another netns than ours.
    pub fn spawn_in(&mut self, argv: &[&str]) -> i32 {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        let ours = std::fs::metadata(cni_net::netns::THREAD_SELF_NETNS)
            .unwrap()
            .ino();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino())
                .unwrap_or(ours);
            if ns != ours && exe.to_string_lossy().contains("sleep") {
                return pid;
            }
            assert!(Instant::now() < deadline, "process did not enter its namespaces");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

/// Runs `args` inside the namespaces of `pid` (nsenter).
pub fn in_container(pid: i32, args: &[&str]) -> String {
    let t = pid.to_string();
    let mut full = vec!["-t", &t, "-m", "-u", "-n", "--"];
    full.extend_from_slice(args);
    sh("nsenter", &full)
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_all();
        let root = self.root();
        // Unmount every ns handle, then the root's self bind mounts.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let _ = nix::mount::umount2(&e.path().join("ns"), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for _ in 0..3 {
            let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
        }
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
        // `dir` removes `base` next, then `host` is left.
    }
}

/// A MESOS container joining `networks` in order.
pub fn config_for(networks: &[&str]) -> ContainerConfig {
    ContainerConfig {
        container_info: Some(ContainerInfo {
            network_infos: networks.iter().map(|n| NetworkInfo::named(*n)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn cid(s: &str) -> ContainerId {
    ContainerId::parse(s).unwrap()
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// A pre-0.3 result like Mesos's mock plugin prints.
pub const V020_RESULT: &str = r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.222.3.4/24","gateway":"10.222.3.1"},"dns":{"nameservers":["10.222.0.53"],"domain":"mesos.test","search":["a.test","b.test"],"options":["ndots:2"]}}"#;
