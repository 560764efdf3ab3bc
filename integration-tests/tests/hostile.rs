//! Hostile input to the plugins, as root, in throw-away namespaces: every
//! bad container ID, interface name, network name, namespace, CNI_PATH,
//! stdin and port gets a CNI error JSON with a spec code and a non-zero
//! exit, and changes nothing: the "host" namespace's links, addresses,
//! routes, nftables and iptables state and the IPAM data dir are the same
//! before and after. Where Go's reference plugin accepts what we refuse,
//! the case says so. Addresses: 10.222.0.0/16 only.

use rcni_test_support::{
    Invocation, Netns, Outcome, TempDir, assert_same_host, exec, rcni_plugin, sh, without_counters,
    write_executable,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A "host" namespace where the plugins run, with its own data dir.
struct World {
    host: Netns,
    dir: TempDir,
    /// Wrapper scripts that exec a plugin inside `host`.
    bin: PathBuf,
}

impl World {
    fn new() -> World {
        let host = Netns::with_lo_up();
        let dir = TempDir::new();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in [
            "bridge",
            "host-local",
            "portmap",
            "loopback",
            "mesos-cni-port-mapper",
        ] {
            host.wrapper(&bin.join(name), &rcni_plugin(name));
        }
        World { host, dir, bin }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn bridge_conf(&self) -> Value {
        json!({"cniVersion":"1.0.0","name":"hostile","type":"bridge","bridge":"hbr0","isGateway":true,
               "ipMasq":true,
               "ipam":{"type":"host-local","ranges":[[{"subnet":"10.222.77.0/24"}]],
                       "dataDir": self.data_dir()}})
    }

    fn portmap_conf(&self, mappings: Value) -> Value {
        json!({"cniVersion":"1.0.0","name":"hostile","type":"portmap","backend":"nftables",
               "capabilities":{"portMappings":true},
               "runtimeConfig":{"portMappings":mappings},
               "prevResult":{"cniVersion":"1.0.0",
                   "interfaces":[{"name":"eth0","sandbox":self.host.path()}],
                   "ips":[{"address":"10.222.77.2/24","interface":0}]}})
    }

    fn invocation(&self, command: &str, cid: &str, netns: &str, ifname: &str, conf: &Value) -> Invocation {
        let mut inv = Invocation::new(command, cid, netns, ifname, conf);
        inv.path = Some(self.bin.display().to_string());
        inv
    }

    fn run(&self, plugin: &str, inv: &Invocation) -> Outcome {
        exec(&self.bin.join(plugin), inv)
    }

    /// Everything a plugin could have changed.
    fn snapshot(&self) -> String {
        let ns = self.host.name();
        let mut out = String::new();
        // Links by name and master, addresses, routes: not the carrier, DAD or
        // link-down flags, which settle by themselves after a valid DEL.
        for line in sh("ip", &["-n", ns, "-o", "link", "show"]).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let master = words.iter().position(|w| *w == "master").map(|i| words[i + 1]);
            out.push_str(&format!("link {} master {master:?}\n", words[1]));
        }
        for line in sh("ip", &["-n", ns, "-o", "addr", "show"]).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if !words[3].starts_with("fe80:") {
                out.push_str(&format!("addr {} {}\n", words[1], words[3]));
            }
        }
        // IPv6 link-local addresses and routes come and go with DAD by themselves.
        for line in sh("ip", &["-n", ns, "route", "show", "table", "all"]).lines() {
            if line.contains("fe80:") {
                continue;
            }
            out.push_str(&line.replace(" linkdown", ""));
            out.push('\n');
        }
        for line in sh("ip", &["netns", "exec", ns, "nft", "list", "ruleset"]).lines() {
            out.push_str(&without_counters(line));
            out.push('\n');
        }
        let ipt = Command::new("ip")
            .args(["netns", "exec", ns, "iptables-save"])
            .output()
            .unwrap();
        // Counters and the header's date change by themselves.
        for line in String::from_utf8_lossy(&ipt.stdout).lines() {
            if !line.starts_with('#') {
                out.push_str(&line.replace(|c: char| c.is_ascii_digit(), "N"));
                out.push('\n');
            }
        }
        out.push_str(&format!("{:?}", tree(&self.data_dir())));
        out
    }
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Asserts a spec error (one of `codes`) with a message, a non-zero exit and no change.
#[track_caller]
fn refused(w: &World, before: &str, what: &str, out: &Outcome, codes: &[u64]) {
    assert_ne!(out.status, 0, "{what}: succeeded: {}", out.stdout);
    let code = out.code();
    assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "{what}: code {code:?}, wanted one of {codes:?}: stdout={} stderr={}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.json["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no msg"
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    assert_same_host(what, before, &w.snapshot());
}

#[test]
#[ignore = "needs root"]
fn hostile_environment_is_refused_and_changes_nothing() {
    let w = World::new();
    let c = Netns::new();
    let conf = w.bridge_conf();
    let netns = c.path().display().to_string();
    // A valid ADD and DEL first, so the bridge and the data dir exist and the
    // comparison is against a settled host.
    w.run("bridge", &w.invocation("ADD", "ok", &netns, "eth0", &conf))
        .assert_ok();
    w.run("bridge", &w.invocation("DEL", "ok", &netns, "eth0", &conf))
        .assert_ok();
    let before = w.snapshot();
    let long = "a".repeat(10 * 1024);

    for cid in ["../x", "a/b", "a\nb", "a b", "-a", long.as_str()] {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let out = w.run("bridge", &w.invocation(cmd, cid, &netns, "eth0", &conf));
            refused(&w, &before, &format!("{cmd} container id {cid:.20?}"), &out, &[4]);
        }
    }
    let out = w.run("bridge", &w.invocation("ADD", "", &netns, "eth0", &conf));
    refused(&w, &before, "empty container id", &out, &[3, 4]);

    for ifname in ["../x", "a/b", "a\nb", "a b", ".", "..", "a:b", long.as_str()] {
        let out = w.run("bridge", &w.invocation("ADD", "c1", &netns, ifname, &conf));
        refused(&w, &before, &format!("ifname {ifname:.20?}"), &out, &[4]);
    }

    for name in ["../escape", "a/b", "a\nb", "", long.as_str()] {
        let mut bad = conf.clone();
        bad["name"] = json!(name);
        let out = w.run("bridge", &w.invocation("ADD", "c1", &netns, "eth0", &bad));
        refused(&w, &before, &format!("network name {name:.20?}"), &out, &[4, 7]);
    }
    assert!(!w.dir.path().join("escape").exists());

    let file = w.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for (what, ns) in [
        ("a regular file", file.display().to_string()),
        ("a directory", w.dir.path().display().to_string()),
        ("missing", w.dir.path().join("missing").display().to_string()),
        ("relative", "netns".to_string()),
        (
            "the plugin's own (host) namespace",
            w.host.path().display().to_string(),
        ),
    ] {
        let out = w.run("bridge", &w.invocation("ADD", "c1", &ns, "eth0", &conf));
        refused(&w, &before, &format!("CNI_NETNS {what}"), &out, &[4, 8]);
    }
}

#[test]
#[ignore = "needs root"]
fn hostile_stdin_and_config_are_refused_and_change_nothing() {
    let w = World::new();
    let c = Netns::new();
    let conf = w.bridge_conf();
    let netns = c.path().display().to_string();
    w.run("bridge", &w.invocation("ADD", "ok", &netns, "eth0", &conf))
        .assert_ok();
    w.run("bridge", &w.invocation("DEL", "ok", &netns, "eth0", &conf))
        .assert_ok();
    let before = w.snapshot();
    let text = serde_json::to_string(&conf).unwrap();
    let big = {
        let mut v = conf.clone();
        v["padding"] = json!("x".repeat(100 * 1024 * 1024));
        serde_json::to_vec(&v).unwrap()
    };
    let stdins: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", text.as_bytes()[..text.len() / 2].to_vec()),
        ("not JSON", b"\xff\xfe garbage".to_vec()),
        ("an array", b"[]".to_vec()),
        (
            "wrong types",
            br#"{"cniVersion":1,"name":[],"type":{},"bridge":7,"ipam":"x"}"#.to_vec(),
        ),
        ("100 MB", big),
    ];
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        for (what, stdin) in &stdins {
            let mut inv = w.invocation("ADD", "c1", &netns, "eth0", &conf);
            inv.stdin = stdin.clone();
            let out = w.run(plugin, &inv);
            if *what == "100 MB" && plugin != "bridge" {
                // Only the bridge's config has a bridge to make; the others may accept padding.
                continue;
            }
            refused(&w, &before, &format!("{plugin}: stdin {what}"), &out, &[4, 6, 7]);
        }
    }

    // An IPAM type that is a path, and CNI_PATH entries that are relative or empty: a plugin
    // planted in the working directory must never run.
    let cwd = TempDir::new();
    let marker = cwd.path().join("ran");
    let planted = cwd.path().join("host-local");
    write_executable(
        &planted,
        &format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    );
    for ipam_type in ["../host-local", "/bin/true", "./host-local", ".."] {
        let mut bad = conf.clone();
        bad["ipam"]["type"] = json!(ipam_type);
        let out = w.run("bridge", &w.invocation("ADD", "c1", &netns, "eth0", &bad));
        refused(&w, &before, &format!("ipam type {ipam_type:?}"), &out, &[7]);
    }
    for path in [".", "", "relative/dir", ":.:"] {
        let mut inv = w.invocation("ADD", "c1", &netns, "eth0", &conf);
        inv.path = Some(path.to_string());
        let out = exec_in(&w.bin.join("bridge"), &inv, cwd.path());
        refused(&w, &before, &format!("CNI_PATH {path:?}"), &out, &[4, 7, 999]);
        assert!(
            !marker.exists(),
            "CNI_PATH {path:?}: a plugin in the working directory ran"
        );
    }
}

/// [`exec`] with a working directory.
fn exec_in(binary: &Path, inv: &Invocation, cwd: &Path) -> Outcome {
    // The fixture has no working-directory option: run through sh.
    let script = cwd.join(format!("run-{}", binary.file_name().unwrap().to_string_lossy()));
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\ncd {} && exec {} \"$@\"\n",
            cwd.display(),
            binary.display()
        ),
    );
    exec(&script, inv)
}

#[test]
#[ignore = "needs root"]
fn hostile_ports_are_refused_and_change_nothing() {
    let w = World::new();
    let c = Netns::new();
    let netns = c.path().display().to_string();
    let ok = w.portmap_conf(json!([{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]));
    w.run("portmap", &w.invocation("ADD", "ok", &netns, "eth0", &ok))
        .assert_ok();
    w.run("portmap", &w.invocation("DEL", "ok", &netns, "eth0", &ok))
        .assert_ok();
    let before = w.snapshot();
    let many: Vec<Value> = (1..=5000)
        .map(|p| json!({"hostPort": 20000 + p, "containerPort": 0, "protocol": "tcp"}))
        .collect();
    for (what, m) in [
        (
            "host port 0",
            json!([{"hostPort":0,"containerPort":80,"protocol":"tcp"}]),
        ),
        (
            "container port 0",
            json!([{"hostPort":18081,"containerPort":0,"protocol":"tcp"}]),
        ),
        (
            "negative",
            json!([{"hostPort":-1,"containerPort":80,"protocol":"tcp"}]),
        ),
        (
            "65536",
            json!([{"hostPort":65536,"containerPort":80,"protocol":"tcp"}]),
        ),
        (
            "a string",
            json!([{"hostPort":"80","containerPort":80,"protocol":"tcp"}]),
        ),
        (
            "protocol sctp-ish",
            json!([{"hostPort":18082,"containerPort":80,"protocol":"icmp"}]),
        ),
        ("5000 mappings, one bad", Value::Array(many)),
    ] {
        let conf = w.portmap_conf(m);
        let out = w.run("portmap", &w.invocation("ADD", "c1", &netns, "eth0", &conf));
        refused(&w, &before, &format!("portmap {what}"), &out, &[4, 6, 7]);
    }
}

#[test]
#[ignore = "needs root"]
fn port_mapper_refuses_container_ids_that_would_inject_rules() {
    let w = World::new();
    let netns = w.host.path().display().to_string();
    let conf = json!({"cniVersion":"0.3.0","name":"mesos","type":"mesos-cni-port-mapper","chain":"MESOS-TEST",
        "delegate":{"cniVersion":"0.3.0","name":"mesos","type":"bridge","bridge":"hbr1",
            "ipam":{"type":"host-local","subnet":"10.222.78.0/24","dataDir":w.data_dir()}},
        "args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":18090,"container_port":80}]}}}});
    let before = w.snapshot();
    let long = "a".repeat(300);
    for cid in [
        "c1\n-N EVIL\n-A PREROUTING -j EVIL",
        "c1\" -j ACCEPT -m comment --comment \"x",
        long.as_str(),
    ] {
        for cmd in ["ADD", "DEL"] {
            let out = w.run(
                "mesos-cni-port-mapper",
                &w.invocation(cmd, cid, &netns, "eth0", &conf),
            );
            refused(
                &w,
                &before,
                &format!("port mapper {cmd} {cid:.20?}"),
                &out,
                &[101],
            );
        }
    }
    let nat = sh(
        "ip",
        &["netns", "exec", w.host.name(), "iptables-save", "-t", "nat"],
    );
    assert!(!nat.contains("EVIL"), "{nat}");
}
