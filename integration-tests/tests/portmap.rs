//! portmap and mesos-cni-port-mapper end to end, as root, inside throw-away
//! namespaces: a "host" netns where the plugins run (`ip netns exec`), so the
//! real host's firewall is never touched, and container namespaces on a
//! bridge made by Go's bridge + host-local (10.222.0.0/16 only).

use rcni_test_support::{GO_PLUGIN_DIR, Invocation, Netns, TempDir, exec, go_plugin, rcni_plugin};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SUBNET: AtomicU32 = AtomicU32::new(0);

/// A script that runs `binary` inside the host namespace.
fn in_host(dir: &TempDir, host: &Netns, binary: &Path) -> PathBuf {
    let name = binary.file_name().unwrap().to_string_lossy().to_string();
    host.wrapper(&dir.path().join(format!("in-host-{name}")), binary)
}

struct World {
    dir: TempDir,
    host: Netns,
    bridge: String,
    subnet: String,
    gw: String,
    /// Our bridge + host-local instead of Go's.
    ours: bool,
    /// Also an IPv6 range (fd00:222:<n>::/64).
    v6: Option<(String, String)>,
}

impl World {
    fn new() -> World {
        let n = 100 + (std::process::id() % 50) * 2 + SUBNET.fetch_add(1, Ordering::Relaxed);
        let host = Netns::with_lo_up();
        World {
            dir: TempDir::new(),
            host,
            bridge: format!("pmbr{}", n),
            subnet: format!("10.222.{n}.0/24"),
            gw: format!("10.222.{n}.1"),
            ours: false,
            v6: None,
        }
    }

    /// With our bridge and host-local (target dir) as the chain's first plugin.
    fn with_our_bridge() -> World {
        World {
            ours: true,
            ..World::new()
        }
    }

    /// Dual stack: fd00:222:<n>::/64 too, without DAD delays in the namespaces.
    fn dual_stack() -> World {
        let w = World::new();
        let n = w.gw.split('.').nth(2).unwrap().to_string();
        w.host_sh("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
        World {
            v6: Some((format!("fd00:222:{n}::/64"), format!("fd00:222:{n}::1"))),
            ..w
        }
    }

    fn bridge_plugin(&self) -> (PathBuf, String) {
        if self.ours {
            let b = rcni_plugin("bridge");
            let dir = b.parent().unwrap().to_string_lossy().into_owned();
            (b, dir)
        } else {
            (go_plugin("bridge").unwrap(), GO_PLUGIN_DIR.into())
        }
    }

    fn bridge_conf(&self) -> Value {
        let mut ranges = vec![json!([{"subnet": self.subnet}])];
        if let Some((subnet, _)) = &self.v6 {
            ranges.push(json!([{"subnet": subnet}]));
        }
        json!({"cniVersion":"1.0.0","name":"pmtest","type":"bridge","bridge":self.bridge,"isGateway":true,
               "hairpinMode":true,"ipam":{"type":"host-local","ranges":ranges,
               "dataDir": self.dir.path().join("ipam")}})
    }

    /// Go's bridge: the container's interface and address.
    fn attach(&self, cid: &str, c: &Netns) -> Value {
        if self.v6.is_some() {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    c.name(),
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                ])
                .args(["net.ipv6.conf.default.accept_dad=0"])
                .status()
                .unwrap();
        }
        let (bridge, path) = self.bridge_plugin();
        let bridge = in_host(&self.dir, &self.host, &bridge);
        let mut inv = Invocation::new(
            "ADD",
            cid,
            c.path().to_str().unwrap(),
            "eth0",
            &self.bridge_conf(),
        );
        inv.path = Some(path);
        exec(&bridge, &inv).assert_ok().json.clone()
    }

    fn detach(&self, cid: &str, c: &Netns) {
        let (bridge, path) = self.bridge_plugin();
        let bridge = in_host(&self.dir, &self.host, &bridge);
        let mut inv = Invocation::new(
            "DEL",
            cid,
            c.path().to_str().unwrap(),
            "eth0",
            &self.bridge_conf(),
        );
        inv.path = Some(path);
        exec(&bridge, &inv).assert_ok();
    }

    fn portmap(
        &self,
        binary: &Path,
        verb: &str,
        cid: &str,
        c: &Netns,
        conf: &Value,
    ) -> rcni_test_support::Outcome {
        let wrapped = in_host(&self.dir, &self.host, binary);
        exec(
            &wrapped,
            &Invocation::new(verb, cid, c.path().to_str().unwrap(), "eth0", conf),
        )
    }

    fn host_sh(&self, script: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", self.host.name(), "sh", "-c", script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn pm_conf(backend: &str, prev: &Value) -> Value {
    json!({"cniVersion":"1.0.0","name":"pmtest","type":"portmap","backend":backend,"prevResult":prev,
           "runtimeConfig":{"portMappings":[
               {"hostPort":18080,"containerPort":80,"protocol":"tcp"},
               {"hostPort":15353,"containerPort":53,"protocol":"udp"}]}})
}

/// TCP on 80 and UDP on 53 in the container: each answers "ok".
struct Listeners(Child);

impl Listeners {
    fn start(c: &Netns) -> Listeners {
        let py = r#"
import socket, threading
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); t.bind(("::", 80)); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", 53))
def udp():
    while True:
        d, a = u.recvfrom(100); u.sendto(b"ok", a)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    s, a = t.accept(); s.sendall(b"ok"); s.close()
"#;
        let mut child = Command::new("ip")
            .args(["netns", "exec", c.name(), "python3", "-c", py])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Both sockets are bound and listening once it says so.
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready", "the listeners did not start");
        Listeners(child)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects from inside `ns` to addr:port over TCP and UDP; true for each that answered.
fn reach(ns: &str, addr: &str, tcp_port: u16, udp_port: u16) -> (bool, bool) {
    let py = format!(
        r#"
import socket
try:
    s = socket.create_connection(("{addr}", {tcp_port}), timeout=1.5); print("tcp", s.recv(10) == b"ok")
except Exception: print("tcp False")
try:
    u = socket.socket(socket.AF_INET6 if ":" in "{addr}" else socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.5); u.sendto(b"x", ("{addr}", {udp_port}))
    print("udp", u.recvfrom(10)[0] == b"ok")
except Exception: print("udp False")
"#
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &py])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (text.contains("tcp True"), text.contains("udp True"))
}

/// Sends one UDP datagram from inside `ns` to addr:port (no answer awaited).
fn send_udp(ns: &str, addr: &str, port: u16) {
    let py = format!(
        "import socket\nu = socket.socket(socket.AF_INET6 if ':' in '{addr}' else socket.AF_INET, socket.SOCK_DGRAM)\nu.sendto(b'x', ('{addr}', {port}))"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &py])
        .status()
        .unwrap();
}

/// The conntrack entries of `ns` (the kernel's per-netns table) whose original
/// direction is UDP to `dport`, as (original destination, whether it was DNAT'ed).
fn udp_conntrack(ns: &str, dport: u16) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/nf_conntrack"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.get(2) == Some(&"udp")
                && words.iter().find(|w| w.starts_with("dport=")) == Some(&format!("dport={dport}").as_str())
        })
        .map(str::to_string)
        .collect()
}

/// Go's bridge sets up every world here; without it a test says so and returns.
fn go_bridge_missing() -> bool {
    if go_plugin("bridge").is_none() {
        panic!(
            "missing prerequisite: Go's bridge is not in {GO_PLUGIN_DIR} (scripts/test.sh installs what the tests need)"
        );
    }
    false
}

/// Go's portmap, the twin of the interoperability tests: missing, the test fails naming it.
fn go_portmap_missing() -> bool {
    assert!(
        go_plugin("portmap").is_some(),
        "missing prerequisite: Go's portmap is not in {GO_PLUGIN_DIR} (scripts/test.sh installs what the tests need)"
    );
    false
}

#[test]
#[ignore = "needs root"]
fn nftables_ports_reach_container_from_host_localhost_and_neighbour_then_del_leaves_nothing() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let (c1, c2) = (Netns::new(), Netns::new());
    let prev = w.attach("pm-c1", &c1);
    w.attach("pm-c2", &c2);
    let conf = pm_conf("nftables", &prev);
    let pm = rcni_plugin("portmap");
    let out = w.portmap(&pm, "ADD", "pm-c1", &c1, &conf);
    out.assert_ok();
    assert_eq!(
        out.json["ips"], prev["ips"],
        "the previous result is passed through"
    );
    w.portmap(&pm, "CHECK", "pm-c1", &c1, &conf).assert_ok();
    let _l = Listeners::start(&c1);
    assert_eq!(
        reach(w.host.name(), &w.gw, 18080, 15353),
        (true, true),
        "from the host"
    );
    assert_eq!(
        reach(w.host.name(), "127.0.0.1", 18080, 15353),
        (true, true),
        "from localhost"
    );
    assert_eq!(
        reach(c2.name(), &w.gw, 18080, 15353),
        (true, true),
        "from a neighbour"
    );
    assert_eq!(reach(c1.name(), &w.gw, 18080, 15353), (true, true), "hairpin");

    w.portmap(&pm, "DEL", "pm-c1", &c1, &conf).assert_ok();
    w.portmap(&pm, "DEL", "pm-c1", &c1, &conf).assert_ok();
    assert_eq!(
        reach(w.host.name(), &w.gw, 18080, 15353),
        (false, false),
        "after DEL"
    );
    let ruleset = w.host_sh("nft list ruleset");
    assert!(!ruleset.contains("cni-dn-"), "{ruleset}");
    assert!(
        !ruleset.contains("18080") && !ruleset.contains("15353"),
        "{ruleset}"
    );
    assert!(
        w.portmap(&pm, "CHECK", "pm-c1", &c1, &conf).status != 0,
        "CHECK after DEL fails"
    );
    w.detach("pm-c1", &c1);
    w.detach("pm-c2", &c2);
}

#[test]
#[ignore = "needs root"]
fn nftables_second_container_on_a_taken_port_is_refused_and_undone() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let (c1, c2) = (Netns::new(), Netns::new());
    let p1 = w.attach("pm-a", &c1);
    let p2 = w.attach("pm-b", &c2);
    let pm = rcni_plugin("portmap");
    w.portmap(&pm, "ADD", "pm-a", &c1, &pm_conf("nftables", &p1))
        .assert_ok();
    let out = w.portmap(&pm, "ADD", "pm-b", &c2, &pm_conf("nftables", &p2));
    assert_ne!(out.status, 0);
    assert!(
        out.json["msg"].as_str().unwrap().contains("already published"),
        "{}",
        out.stdout
    );
    let ruleset = w.host_sh("nft list ruleset");
    assert!(ruleset.contains(" pm-a\""), "{ruleset}");
    assert!(
        !ruleset.contains(" pm-b\""),
        "the failed ADD left nothing: {ruleset}"
    );
    // GC with only pm-b valid removes pm-a's rules.
    let gc = json!({"cniVersion":"1.1.0","name":"pmtest","type":"portmap","backend":"nftables",
                    "cni.dev/valid-attachments":[{"containerID":"pm-b","ifname":"eth0"}]});
    let wrapped = in_host(&w.dir, &w.host, &pm);
    let mut inv = Invocation::new("GC", "", "", "", &gc);
    inv.container_id = None;
    inv.netns = None;
    inv.ifname = None;
    exec(&wrapped, &inv).assert_ok();
    assert!(!w.host_sh("nft list ruleset").contains("cni-dn-"));
    w.detach("pm-a", &c1);
    w.detach("pm-b", &c2);
}

#[test]
#[ignore = "needs root"]
fn iptables_backend_interoperates_with_go_portmap_both_ways() {
    if go_bridge_missing() || go_portmap_missing() {
        return;
    }
    let w = World::new();
    let c1 = Netns::new();
    let prev = w.attach("pm-go", &c1);
    let conf = pm_conf("iptables", &prev);
    let ours = rcni_plugin("portmap");
    let go = go_plugin("portmap").unwrap();
    let _l = Listeners::start(&c1);
    for (adder, deleter) in [(&ours, &go), (&go, &ours)] {
        w.portmap(adder, "ADD", "pm-go", &c1, &conf).assert_ok();
        assert_eq!(reach(w.host.name(), &w.gw, 18080, 15353), (true, true));
        assert_eq!(reach(w.host.name(), "127.0.0.1", 18080, 15353), (true, true));
        // Ours CHECKs what either made (Go 1.1.1's CHECK also wants IPv6 rules for a v4-only
        // container, a bug fixed in later Go versions).
        w.portmap(&ours, "CHECK", "pm-go", &c1, &conf).assert_ok();
        w.portmap(deleter, "DEL", "pm-go", &c1, &conf).assert_ok();
        let saved = w.host_sh("iptables-save -t nat");
        assert!(!saved.contains("CNI-DN-"), "{saved}");
        assert!(!saved.contains("pm-go"), "{saved}");
    }
    // Same rules, byte for byte.
    w.portmap(&go, "ADD", "pm-go", &c1, &conf).assert_ok();
    let by_go = w.host_sh("iptables-save -t nat | grep -v '^#'");
    w.portmap(&go, "DEL", "pm-go", &c1, &conf).assert_ok();
    w.portmap(&ours, "ADD", "pm-go", &c1, &conf).assert_ok();
    let by_us = w.host_sh("iptables-save -t nat | grep -v '^#'");
    w.portmap(&ours, "DEL", "pm-go", &c1, &conf).assert_ok();
    assert_eq!(by_go, by_us);
    w.detach("pm-go", &c1);
}

#[test]
#[ignore = "needs root"]
fn default_config_del_removes_what_go_portmap_made_on_iptables() {
    // A host switching from Go's portmap to ours: the config names no
    // backend, Go made iptables rules, and our DEL (nftables by default)
    // must still remove them.
    if go_bridge_missing() || go_portmap_missing() {
        return;
    }
    let w = World::new();
    let c1 = Netns::new();
    let prev = w.attach("pm-switch", &c1);
    let mut conf = pm_conf("iptables", &prev);
    conf.as_object_mut().unwrap().remove("backend");
    let (ours, go) = (rcni_plugin("portmap"), go_plugin("portmap").unwrap());
    w.portmap(&go, "ADD", "pm-switch", &c1, &conf).assert_ok();
    assert!(w.host_sh("iptables-save -t nat").contains("CNI-DN-"));
    w.portmap(&ours, "DEL", "pm-switch", &c1, &conf).assert_ok();
    let saved = w.host_sh("iptables-save -t nat");
    assert!(!saved.contains("CNI-DN-"), "{saved}");
    assert!(!saved.contains("pm-switch"), "{saved}");
    w.portmap(&ours, "DEL", "pm-switch", &c1, &conf).assert_ok();
    w.detach("pm-switch", &c1);
}

#[test]
#[ignore = "needs root"]
fn bad_input_is_an_error_json_not_a_panic() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let c1 = Netns::new();
    let pm = rcni_plugin("portmap");
    let no_prev = json!({"cniVersion":"1.0.0","name":"pmtest","type":"portmap",
                         "runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":1,"protocol":"tcp"}]}});
    w.portmap(&pm, "ADD", "x", &c1, &no_prev).assert_code(7);
    let bad = json!({"cniVersion":"1.0.0","name":"pmtest","type":"portmap","prevResult":{"cniVersion":"1.0.0"},
                     "runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":1,"protocol":"tcp"}]}});
    w.portmap(&pm, "ADD", "x", &c1, &bad).assert_code(7);
    let conflict = json!({"cniVersion":"1.0.0","name":"pmtest","type":"portmap","backend":"nftables",
                          "externalSetMarkChain":"KUBE-MARK-MASQ"});
    w.portmap(&pm, "DEL", "x", &c1, &conflict).assert_code(7);
}

#[test]
#[ignore = "needs root"]
fn mesos_port_mapper_runs_its_delegate_and_tags_rules() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let c1 = Netns::new();
    let mapper = in_host(&w.dir, &w.host, &rcni_plugin("mesos-cni-port-mapper"));
    let _l = Listeners::start(&c1);
    // No backend given: Mesos's iptables layout, as the binary it stands in for.
    for backend in ["iptables", "nftables", "default"] {
        let mut delegate = w.bridge_conf();
        delegate["cniVersion"] = json!("0.3.1");
        let mut conf = json!({"name":"pmtest","type":"mesos-cni-port-mapper","chain":"MESOS-PM-TEST","backend":backend,
            "excludeDevices":["eth9","eth8"],"delegate":delegate,
            "args":{"org.apache.mesos":{"network_info":{"port_mappings":[
                {"host_port":18080,"container_port":80},{"host_port":15353,"container_port":53,"protocol":"udp"}]}}}});
        if backend == "default" {
            conf.as_object_mut().unwrap().remove("backend");
        }
        let mut inv = Invocation::new("ADD", "mesos-c1", c1.path().to_str().unwrap(), "eth0", &conf);
        inv.path = Some(GO_PLUGIN_DIR.into());
        exec(&mapper, &inv).assert_ok();
        let in_iptables = w
            .host_sh("iptables-save -t nat")
            .contains("container_id: mesos-c1");
        assert_eq!(in_iptables, backend != "nftables", "{backend}");
        assert_eq!(
            reach(w.host.name(), &w.gw, 18080, 15353),
            (true, true),
            "{backend}"
        );
        inv.command = Some("DEL".into());
        exec(&mapper, &inv).assert_ok();
        assert_eq!(
            reach(w.host.name(), &w.gw, 18080, 15353),
            (false, false),
            "{backend}"
        );
        assert!(
            !w.host_sh("iptables-save -t nat")
                .contains("container_id: mesos-c1")
        );
        assert!(!w.host_sh("nft list ruleset").contains("cni-dn-"));
        inv.command = Some("CHECK".into());
        let out = exec(&mapper, &inv);
        assert_eq!((out.status, out.code()), (1, Some(104)));
    }
}

#[test]
#[ignore = "needs root"]
fn mesos_port_mapper_over_a_dual_stack_delegate_maps_both_families() {
    if go_bridge_missing() {
        return;
    }
    let w = World::dual_stack();
    let c1 = Netns::new();
    let mapper = in_host(&w.dir, &w.host, &rcni_plugin("mesos-cni-port-mapper"));
    let mut delegate = w.bridge_conf();
    delegate["cniVersion"] = json!("0.3.1");
    let conf = json!({"name":"pmtest","type":"mesos-cni-port-mapper","chain":"MESOS-PM-V6","delegate":delegate,
        "args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":18080,"container_port":80}]}}}});
    let mut inv = Invocation::new("ADD", "mesos-v6", c1.path().to_str().unwrap(), "eth0", &conf);
    inv.path = Some(GO_PLUGIN_DIR.into());
    exec(&mapper, &inv).assert_ok();
    assert!(
        w.host_sh("iptables-save -t nat")
            .contains("container_id: mesos-v6")
    );
    let v6 = w.host_sh("ip6tables-save -t nat");
    assert!(
        v6.contains("container_id: mesos-v6") && v6.contains("::1/128"),
        "{v6}"
    );
    inv.command = Some("DEL".into());
    exec(&mapper, &inv).assert_ok();
    assert!(!w.host_sh("iptables-save -t nat").contains("mesos-v6"));
    assert!(!w.host_sh("ip6tables-save -t nat").contains("mesos-v6"));
}

#[test]
#[ignore = "needs root"]
fn stale_udp_conntrack_entries_of_the_published_port_go_on_add_and_on_del_and_no_others() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let c1 = Netns::new();
    let prev = w.attach("pm-ct", &c1);
    let conf = pm_conf("nftables", &prev);
    let pm = rcni_plugin("portmap");
    let _l = Listeners::start(&c1);
    // Before the mapping: a client's datagram to the host port makes an entry that would
    // steer later datagrams past the DNAT rule; one to another address's port 15353 (here the
    // container's, sent directly) must stay.
    // (conntrack runs in a netns only once a rule needs it: a filter chain with `ct state`.)
    w.host_sh(
        "nft add table ip pmtest && nft 'add chain ip pmtest out { type filter hook output priority 0; }' \
         && nft add rule ip pmtest out ct state new counter",
    );
    let cip = prev["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let elsewhere = cip.clone();
    send_udp(w.host.name(), &w.gw, 15353);
    send_udp(w.host.name(), &elsewhere, 15353);
    let before = udp_conntrack(w.host.name(), 15353);
    assert_eq!(before.len(), 2, "{before:?}");
    w.portmap(&pm, "ADD", "pm-ct", &c1, &conf).assert_ok();
    let after_add = udp_conntrack(w.host.name(), 15353);
    assert_eq!(after_add.len(), 1, "{after_add:?}");
    assert!(
        after_add[0].contains(&format!("dst={elsewhere} ")),
        "{after_add:?}"
    );
    // Through the mapping: an entry translated to the container.
    assert_eq!(reach(w.host.name(), &w.gw, 18080, 15353), (true, true));
    let cip = prev["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // (original destination, reply source) of each entry.
    let ends = |lines: &[String]| -> Vec<(String, String)> {
        lines
            .iter()
            .map(|l| {
                let field = |key: &str| -> Vec<String> {
                    l.split_whitespace()
                        .filter_map(|w| w.strip_prefix(key))
                        .map(str::to_string)
                        .collect()
                };
                (field("dst=")[0].clone(), field("src=")[1].clone())
            })
            .collect()
    };
    let translated = (w.gw.clone(), cip.clone());
    let entries = ends(&udp_conntrack(w.host.name(), 15353));
    assert!(entries.contains(&translated), "{entries:?}");
    w.portmap(&pm, "DEL", "pm-ct", &c1, &conf).assert_ok();
    let entries = ends(&udp_conntrack(w.host.name(), 15353));
    assert!(
        !entries.contains(&translated),
        "the translated entry is gone: {entries:?}"
    );
    assert!(entries.contains(&(cip.clone(), cip.clone())), "{entries:?}");
    w.detach("pm-ct", &c1);
}

#[test]
#[ignore = "needs root"]
fn nftables_ipv6_ports_reach_container_from_host_and_neighbour_then_del_leaves_nothing() {
    if go_bridge_missing() {
        return;
    }
    let w = World::dual_stack();
    let (c1, c2) = (Netns::new(), Netns::new());
    let prev = w.attach("pm6-c1", &c1);
    w.attach("pm6-c2", &c2);
    let gw6 = w.v6.as_ref().unwrap().1.clone();
    let conf = pm_conf("nftables", &prev);
    let pm = rcni_plugin("portmap");
    w.portmap(&pm, "ADD", "pm6-c1", &c1, &conf).assert_ok();
    w.portmap(&pm, "CHECK", "pm6-c1", &c1, &conf).assert_ok();
    let ruleset = w.host_sh("nft list table ip6 cni_hostport");
    assert!(
        ruleset.contains("pm6-c1\" : fd00:222:"),
        "a NAT element to the container: {ruleset}"
    );
    let _l = Listeners::start(&c1);
    assert_eq!(
        reach(w.host.name(), &gw6, 18080, 15353),
        (true, true),
        "v6 from the host"
    );
    assert_eq!(
        reach(c2.name(), &gw6, 18080, 15353),
        (true, true),
        "v6 from a neighbour"
    );
    assert_eq!(
        reach(w.host.name(), &w.gw, 18080, 15353),
        (true, true),
        "v4 still"
    );
    w.portmap(&pm, "DEL", "pm6-c1", &c1, &conf).assert_ok();
    assert_eq!(
        reach(w.host.name(), &gw6, 18080, 15353),
        (false, false),
        "after DEL"
    );
    let ruleset = w.host_sh("nft list ruleset");
    assert!(!ruleset.contains("cni-dn-"), "{ruleset}");
    w.detach("pm6-c1", &c1);
    w.detach("pm6-c2", &c2);
}

#[test]
#[ignore = "needs root"]
fn our_bridge_and_host_local_then_portmap_reach_from_host_localhost_and_neighbour() {
    if go_bridge_missing() {
        return;
    }
    let w = World::with_our_bridge();
    let (c1, c2) = (Netns::new(), Netns::new());
    let prev = w.attach("pmr-c1", &c1);
    w.attach("pmr-c2", &c2);
    let pm = rcni_plugin("portmap");
    for backend in ["nftables", "iptables"] {
        let conf = pm_conf(backend, &prev);
        w.portmap(&pm, "ADD", "pmr-c1", &c1, &conf).assert_ok();
        let _l = Listeners::start(&c1);
        assert_eq!(
            reach(w.host.name(), &w.gw, 18080, 15353),
            (true, true),
            "{backend}: host"
        );
        assert_eq!(
            reach(w.host.name(), "127.0.0.1", 18080, 15353),
            (true, true),
            "{backend}: localhost"
        );
        assert_eq!(
            reach(c2.name(), &w.gw, 18080, 15353),
            (true, true),
            "{backend}: neighbour"
        );
        assert_eq!(
            reach(c1.name(), &w.gw, 18080, 15353),
            (true, true),
            "{backend}: hairpin"
        );
        w.portmap(&pm, "DEL", "pmr-c1", &c1, &conf).assert_ok();
        assert_eq!(
            reach(w.host.name(), &w.gw, 18080, 15353),
            (false, false),
            "{backend}: after DEL"
        );
    }
    assert!(!w.host_sh("nft list ruleset").contains("cni-dn-"));
    assert!(!w.host_sh("iptables-save -t nat").contains("CNI-DN-"));
    w.detach("pmr-c1", &c1);
    w.detach("pmr-c2", &c2);
}

#[test]
#[ignore = "needs root"]
fn nftables_del_removes_only_its_own_elements_even_after_its_port_went_to_another() {
    if go_bridge_missing() {
        return;
    }
    let w = World::new();
    let (c1, c2) = (Netns::new(), Netns::new());
    let p1 = w.attach("pm-own-a", &c1);
    let p2 = w.attach("pm-own-b", &c2);
    let pm = rcni_plugin("portmap");
    let conf_a = pm_conf("nftables", &p1);
    let conf_b = pm_conf("nftables", &p2);
    w.portmap(&pm, "ADD", "pm-own-a", &c1, &conf_a).assert_ok();
    w.portmap(&pm, "DEL", "pm-own-a", &c1, &conf_a).assert_ok();
    // The ports go to b; a runtime retries a's DEL (with a's config, same ports).
    w.portmap(&pm, "ADD", "pm-own-b", &c2, &conf_b).assert_ok();
    w.portmap(&pm, "DEL", "pm-own-a", &c1, &conf_a).assert_ok();
    let ruleset = w.host_sh("nft list ruleset");
    assert!(
        ruleset.contains(" pm-own-b\""),
        "b's elements survive a's DEL: {ruleset}"
    );
    w.portmap(&pm, "CHECK", "pm-own-b", &c2, &conf_b).assert_ok();
    let _l = Listeners::start(&c2);
    assert_eq!(
        reach(w.host.name(), &w.gw, 18080, 15353),
        (true, true),
        "b still published"
    );
    // A DEL without port mappings finds b's elements by listing.
    let mut bare = conf_b.clone();
    bare.as_object_mut().unwrap().remove("runtimeConfig");
    w.portmap(&pm, "DEL", "pm-own-b", &c2, &bare).assert_ok();
    let ruleset = w.host_sh("nft list ruleset");
    assert!(!ruleset.contains("cni-dn-"), "{ruleset}");
    assert_eq!(
        reach(w.host.name(), &w.gw, 18080, 15353),
        (false, false),
        "after DEL"
    );
    w.detach("pm-own-a", &c1);
    w.detach("pm-own-b", &c2);
}
