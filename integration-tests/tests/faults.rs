//! Faults: the plugins of a bridge + host-local + portmap chain are aborted
//! at every named step of ADD and DEL (`RCNI_FAULT`, honoured by debug
//! builds only, see `cni::fault`), as if killed right there with nothing
//! undone. Then a DEL of the chain (or, separately, the runtime removing the
//! namespace and a GC with no valid attachment) must leave the "host"
//! namespace exactly as it was before the ADD: no link, address, route,
//! reservation, rule, chain or set element of that container. Also a
//! `kill -9` of the chain's plugins at random moments. Root only; runs in
//! throw-away namespaces; addresses in 10.222.0.0/16.

use rcni_test_support::{
    Invocation, Netns, Outcome, TempDir, assert_same_host, exec, rcni_plugin, sh, without_counters,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every ADD step, in the order the chain reaches them.
const ADD_STEPS: &[&str] = &[
    "bridge.add.bridge",
    "bridge.add.veth",
    "bridge.add.port",
    "bridge.add.spoofcheck",
    "host-local.after-link",
    "host-local.after-index",
    "bridge.add.ipam",
    "bridge.add.addresses",
    "bridge.add.gateway",
    "bridge.add.masquerade",
    "bridge.add.done",
    "portmap.add.rules",
];

/// Every DEL step.
const DEL_STEPS: &[&str] = &[
    "portmap.del.rules",
    "host-local.after-unlink",
    "bridge.del.ipam",
    "bridge.del.masquerade",
];

struct World {
    host: Netns,
    dir: TempDir,
    bin: PathBuf,
    backend: &'static str,
    /// Which of the steps the chain passed (a fault point not reached would
    /// make its test prove nothing).
    n: u8,
}

impl World {
    fn new(backend: &'static str, n: u8) -> World {
        let host = Netns::with_lo_up();
        let dir = TempDir::new();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["bridge", "host-local", "portmap"] {
            host.wrapper(&bin.join(name), &rcni_plugin(name));
        }
        World {
            host,
            dir,
            bin,
            backend,
            n,
        }
    }

    fn bridge_conf(&self, prev: Option<&Value>) -> Value {
        let mut c = json!({"cniVersion":"1.1.0","name":"faults","type":"bridge","bridge":format!("fbr{}", self.n),
            "isGateway":true,"ipMasq":true,"macspoofchk":true,
            "ipam":{"type":"host-local","ranges":[[{"subnet":format!("10.222.{}.0/24", 80 + self.n)}]],
                    "dataDir": self.dir.path().join("ipam")}});
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        c
    }

    fn portmap_conf(&self, prev: Option<&Value>) -> Value {
        let mut c = json!({"cniVersion":"1.1.0","name":"faults","type":"portmap","backend":self.backend,
            "capabilities":{"portMappings":true},
            "runtimeConfig":{"portMappings":[
                {"hostPort":18000 + u16::from(self.n),"containerPort":80,"protocol":"tcp"},
                {"hostPort":18000 + u16::from(self.n),"containerPort":80,"protocol":"udp"}]}});
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        c
    }

    fn run(
        &self,
        plugin: &str,
        command: &str,
        cid: &str,
        c: &Netns,
        conf: &Value,
        fault: Option<&str>,
    ) -> Outcome {
        let mut inv = Invocation::new(command, cid, &c.path().display().to_string(), "eth0", conf);
        inv.path = Some(self.bin.display().to_string());
        if let Some(f) = fault {
            inv.env.push(("RCNI_FAULT".into(), f.into()));
        }
        exec(&self.bin.join(plugin), &inv)
    }

    /// The chain's ADD; the result, or the outcome of the plugin that failed.
    fn add(&self, cid: &str, c: &Netns, fault: Option<&str>) -> Result<Value, Box<Outcome>> {
        let out = self.run("bridge", "ADD", cid, c, &self.bridge_conf(None), fault);
        if out.status != 0 {
            return Err(Box::new(out));
        }
        let prev = out.json.clone();
        let out = self.run("portmap", "ADD", cid, c, &self.portmap_conf(Some(&prev)), fault);
        if out.status != 0 {
            return Err(Box::new(out));
        }
        Ok(out.json)
    }

    /// The chain's DEL, in reverse order, as libcni runs it.
    fn del(&self, cid: &str, c: &Netns, prev: Option<&Value>, fault: Option<&str>) -> Vec<Outcome> {
        vec![
            self.run("portmap", "DEL", cid, c, &self.portmap_conf(prev), fault),
            self.run("bridge", "DEL", cid, c, &self.bridge_conf(prev), fault),
        ]
    }

    /// The chain's GC with no valid attachment.
    fn gc(&self) {
        for (plugin, mut conf) in [
            ("portmap", self.portmap_conf(None)),
            ("bridge", self.bridge_conf(None)),
        ] {
            conf["cni.dev/valid-attachments"] = json!([]);
            let mut inv = Invocation::new("GC", "", "", "", &conf);
            inv.container_id = None;
            inv.netns = None;
            inv.ifname = None;
            inv.path = Some(self.bin.display().to_string());
            exec(&self.bin.join(plugin), &inv).assert_ok();
        }
    }

    /// Everything of the host namespace a container could leave behind.
    fn snapshot(&self) -> String {
        let ns = self.host.name();
        let mut out = String::new();
        for line in sh("ip", &["-n", ns, "-o", "link", "show"]).lines() {
            out.push_str(&format!("link {}\n", line.split_whitespace().nth(1).unwrap()));
        }
        for line in sh("ip", &["-n", ns, "-o", "addr", "show"]).lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if !w[3].starts_with("fe80:") {
                out.push_str(&format!("addr {} {}\n", w[1], w[3]));
            }
        }
        for line in sh("ip", &["-n", ns, "route", "show", "table", "all"]).lines() {
            if !line.contains("fe80:") {
                out.push_str(&line.replace(" linkdown", ""));
                out.push('\n');
            }
        }
        // nft without handles or counters; iptables without counters.
        for line in sh("ip", &["netns", "exec", ns, "nft", "list", "ruleset"]).lines() {
            out.push_str(&without_counters(line));
            out.push('\n');
        }
        let ipt = Command::new("ip")
            .args(["netns", "exec", ns, "iptables-save"])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&ipt.stdout).lines() {
            if !line.starts_with('#') {
                out.push_str(&line.replace(|c: char| c.is_ascii_digit(), "N"));
                out.push('\n');
            }
        }
        out.push_str(&format!("{:?}\n", reservations(&self.dir.path().join("ipam"))));
        out
    }
}

/// The reservation files of the data dir (names are addresses).
fn reservations(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(nets) = std::fs::read_dir(dir) else {
        return out;
    };
    for net in nets.flatten() {
        for f in std::fs::read_dir(net.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// An aborted plugin: killed by SIGABRT (through `ip netns exec`: 134), with
/// the fault point named on stderr, so the step was reached.
#[track_caller]
fn aborted_at(out: &Outcome, step: &str) {
    assert_ne!(out.status, 0, "{step}: the chain went through: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("aborting at {step}")),
        "{step} not reached: status {} stdout {} stderr {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// A first ADD and DEL, so the bridge, the tables and chains that stay by
/// design exist before the comparison starts.
fn settle(w: &World) {
    let c = Netns::new();
    let r = w.add("settle", &c, None).unwrap();
    for out in w.del("settle", &c, Some(&r), None) {
        out.assert_ok();
    }
}

fn abort_each_add_step_then(backend: &'static str, n: u8, clean: impl Fn(&World, &str, Netns)) {
    let w = World::new(backend, n);
    settle(&w);
    for (i, step) in ADD_STEPS.iter().enumerate() {
        let before = w.snapshot();
        let c = Netns::new();
        let cid = format!("c{i}");
        let err = w.add(&cid, &c, Some(step)).expect_err(step);
        aborted_at(&err, step);
        // A detached IPAM child may still be finishing: the runtime's DEL or
        // GC comes after the ADD returned, and so does ours, but give the
        // kernel a moment to reap.
        std::thread::sleep(Duration::from_millis(20));
        clean(&w, &cid, c);
        // A removed namespace is torn down by the kernel asynchronously (its
        // veth goes a moment after `ip netns del`): wait, within a bound, for
        // the host to settle before comparing.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut after = w.snapshot();
        while after != before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            after = w.snapshot();
        }
        assert_same_host(&format!("{backend}: abort at {step}"), &before, &after);
    }
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_add_step_then_del_leaves_nothing_nftables() {
    abort_each_add_step_then("nftables", 1, |w, cid, c| {
        for out in w.del(cid, &c, None, None) {
            out.assert_ok();
        }
    });
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_add_step_then_del_leaves_nothing_iptables() {
    abort_each_add_step_then("iptables", 2, |w, cid, c| {
        for out in w.del(cid, &c, None, None) {
            out.assert_ok();
        }
    });
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_add_step_then_gc_leaves_nothing() {
    for (backend, n) in [("nftables", 3), ("iptables", 4)] {
        abort_each_add_step_then(backend, n, |w, _cid, c| {
            // The runtime removes the namespace (and with it the veth pair), then collects.
            drop(c);
            w.gc();
        });
    }
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_del_step_then_del_again_leaves_nothing() {
    for (backend, n) in [("nftables", 5), ("iptables", 6)] {
        let w = World::new(backend, n);
        settle(&w);
        for (i, step) in DEL_STEPS.iter().enumerate() {
            let before = w.snapshot();
            let c = Netns::new();
            let cid = format!("d{i}");
            let r = w.add(&cid, &c, None).unwrap();
            let outs = w.del(&cid, &c, Some(&r), Some(step));
            let hit = outs
                .iter()
                .find(|o| o.stderr.contains("aborting at"))
                .expect(step);
            aborted_at(hit, step);
            for out in w.del(&cid, &c, Some(&r), None) {
                out.assert_ok();
            }
            assert_same_host(
                &format!("{backend}: abort at {step}, DEL again"),
                &before,
                &w.snapshot(),
            );
        }
    }
}

/// `kill -9` of the chain at random moments of ADD (the plugin and every
/// process it started), then a DEL: nothing left, over many tries.
#[test]
#[ignore = "needs root"]
fn kill_9_at_random_moments_then_del_leaves_nothing() {
    let w = World::new("nftables", 7);
    settle(&w);
    let mut seed: u64 = u64::from(std::process::id()) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let before = w.snapshot();
    let tries = 40;
    let mut killed = 0;
    for i in 0..tries {
        let c = Netns::new();
        let cid = format!("k{i}");
        let inv = Invocation::new(
            "ADD",
            &cid,
            &c.path().display().to_string(),
            "eth0",
            &w.bridge_conf(None),
        )
        .with_path(w.bin.display().to_string())
        .with_env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let conf = inv.stdin.clone();
        // Its own process group, so the kill reaches the IPAM child too.
        let mut child = inv
            .to_command(&w.bin.join("bridge"))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(&conf);
        }
        std::thread::sleep(Duration::from_micros(next() % 60_000));
        // The plugin's process group (its IPAM child has a group of its own and lives on, as
        // it would when a runtime kills the plugin).
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
        for out in w.del(&cid, &c, None, None) {
            out.assert_ok();
        }
        drop(c);
        assert_same_host(&format!("kill -9 try {i}"), &before, &w.snapshot());
    }
    eprintln!("kill -9: {killed} of {tries} ADDs killed before they finished");
    assert!(killed > 0, "no ADD was killed: the test proves nothing");
}

use std::os::unix::process::CommandExt;
