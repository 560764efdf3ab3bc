//! Root-only tests of the bridge plugin in real namespaces. Each test makes a "host" netns (the
//! bridge, veth host ends and firewall rules live there, never in the real host) and container
//! namespaces, runs the plugins inside the host netns with `ip netns exec`, and removes all of
//! it on drop, even on panic. Addresses: 10.222.0.0/16 and fd00:222::/48 only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rcni_test_support::{
    GO_PLUGIN_DIR, Invocation, Netns, Outcome, TempDir, go_plugin, next_id, sh, short_unique, target_bin_dir,
};
use serde_json::{Value, json};

/// A bridge name unique in this process, short enough for `<bridge>.<vlan>` (the bridges live
/// in per-test host namespaces anyway).
fn bridge_name() -> String {
    format!("rcnibr{}", next_id())
}

/// The worlds here use Go's host-local; without it a test says so and returns.
/// Go's plugins are a prerequisite of these tests (scripts/test.sh installs them): without
/// them a test fails and says so, never passes without having run.
fn require_go_plugins() {
    assert!(
        go_plugin("host-local").is_some(),
        "Go plugins not installed in {GO_PLUGIN_DIR} (apt-get install containernetworking-plugins)"
    );
}

fn ours() -> PathBuf {
    target_bin_dir().join("bridge")
}

fn go(name: &str) -> PathBuf {
    go_plugin(name).expect("Go plugin")
}

/// CNI_PATH with our binaries first (our host-local when it is built), or Go's only.
fn path_ours_first() -> String {
    format!("{}:{GO_PLUGIN_DIR}", target_bin_dir().display())
}

/// Runs `plugin` inside the host netns `host` as a runtime would.
fn run(
    host: &Netns,
    plugin: &Path,
    command: &str,
    cid: &str,
    netns: &str,
    ifname: &str,
    cni_path: &str,
    config: &Value,
) -> Outcome {
    Invocation::new(command, cid, netns, ifname, config)
        .with_path(cni_path)
        .with_env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .run_in(host, plugin)
}

/// A test world: host netns, a host-local data dir, a bridge name.
struct World {
    host: Netns,
    data: TempDir,
    bridge: String,
}

impl World {
    fn new() -> World {
        let host = Netns::with_lo_up();
        World {
            host,
            data: TempDir::new(),
            bridge: bridge_name(),
        }
    }

    fn conf(&self, version: &str, ranges: Value, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": "rcnitest",
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipam": {"type": "host-local", "dataDir": self.data.path(), "ranges": ranges},
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn reservations(&self) -> Vec<String> {
        let dir = self.data.path().join("rcnitest");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// Host-side veths (ports) that remain.
    fn host_veths(&self) -> Vec<String> {
        let links = self.host.ip_json(&["link", "show", "type", "veth"]);
        links
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn nft(&self) -> String {
        sh(
            "ip",
            &["netns", "exec", self.host.name(), "nft", "list", "ruleset"],
        )
    }

    fn iptables_nat(&self) -> String {
        sh(
            "ip",
            &["netns", "exec", self.host.name(), "iptables-save", "-t", "nat"],
        ) + &sh(
            "ip",
            &["netns", "exec", self.host.name(), "ip6tables-save", "-t", "nat"],
        )
    }
}

fn ping(from: &Netns, to: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", from.name(), "ping", "-c", "1", "-W", "3", to])
        .output()
        .expect("ping is installed");
    assert!(
        out.status.success(),
        "ping {to} from {}: {}",
        from.name(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn ips_of(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn v4() -> Value {
    json!([[{"subnet": "10.222.10.0/24"}]])
}
fn v6() -> Value {
    json!([[{"subnet": "fd00:222:10::/64"}]])
}
fn dual() -> Value {
    json!([[{"subnet": "10.222.11.0/24"}], [{"subnet": "fd00:222:11::/64"}]])
}

#[test]
#[ignore = "needs root"]
fn two_containers_ping_each_other_and_the_gateway_v4_v6_dual() {
    require_go_plugins();
    for (label, ranges) in [("v4", v4()), ("v6", v6()), ("dual", dual())] {
        let w = World::new();
        let conf = w.conf("1.0.0", ranges, json!({"isDefaultGateway": true}));
        let (c1, c2) = (Netns::new(), Netns::new());
        let path = GO_PLUGIN_DIR.to_string();
        let r1 = run(
            &w.host,
            &ours(),
            "ADD",
            "cid1",
            c1.path().to_str().unwrap(),
            "eth0",
            &path,
            &conf,
        );
        r1.assert_ok();
        let r2 = run(
            &w.host,
            &ours(),
            "ADD",
            "cid2",
            c2.path().to_str().unwrap(),
            "eth0",
            &path,
            &conf,
        );
        r2.assert_ok();
        let res = &r1.json;
        assert_eq!(res["interfaces"][0]["name"], w.bridge.as_str(), "{label}");
        assert!(
            res["interfaces"][1]["name"].as_str().unwrap().starts_with("veth"),
            "{label}"
        );
        assert_eq!(
            res["interfaces"][2]["sandbox"],
            c1.path().to_str().unwrap(),
            "{label}"
        );
        for ip in res["ips"].as_array().unwrap() {
            assert_eq!(ip["interface"], 2, "{label}");
            ping(&c1, ip["gateway"].as_str().unwrap());
        }
        for ip in ips_of(&r2.json) {
            ping(&c1, &ip);
        }
        // One TX and one RX queue at both ends (cni_net::link::veth_port_message), where the
        // kernel's default is one per CPU.
        let host_veth = res["interfaces"][1]["name"].as_str().unwrap();
        for (ns, dev) in [(&w.host, host_veth), (&c1, "eth0")] {
            let out = in_ns(ns, &format!("ip -d -j link show dev {dev}"));
            let link: Value = serde_json::from_str(&out).unwrap();
            let queues = (
                link[0]["num_tx_queues"].as_u64(),
                link[0]["num_rx_queues"].as_u64(),
            );
            assert_eq!(queues, (Some(1), Some(1)), "{label}: {dev}: {out}");
        }
        // The host end has no IPv6 address of its own (cni_net::Socket::set_port_up); the
        // container end has its link-local one.
        let host_v6 = in_ns(&w.host, &format!("ip -6 -o addr show dev {host_veth}"));
        assert_eq!(host_v6.trim(), "", "{label}");
        let ctr_v6 = in_ns(&c1, "ip -6 -o addr show dev eth0 scope link");
        assert!(ctr_v6.contains("fe80::"), "{label}: {ctr_v6}");
        // CHECK against the ADD result.
        let mut check = conf.clone();
        check["prevResult"] = r1.json.clone();
        run(
            &w.host,
            &ours(),
            "CHECK",
            "cid1",
            c1.path().to_str().unwrap(),
            "eth0",
            &path,
            &check,
        )
        .assert_ok();
        // Go's CHECK accepts our result too.
        run(
            &w.host,
            &go("bridge"),
            "CHECK",
            "cid1",
            c1.path().to_str().unwrap(),
            "eth0",
            &path,
            &check,
        )
        .assert_ok();
        for (cid, c) in [("cid1", &c1), ("cid2", &c2)] {
            run(
                &w.host,
                &ours(),
                "DEL",
                cid,
                c.path().to_str().unwrap(),
                "eth0",
                &path,
                &conf,
            )
            .assert_ok();
            run(
                &w.host,
                &ours(),
                "DEL",
                cid,
                c.path().to_str().unwrap(),
                "eth0",
                &path,
                &conf,
            )
            .assert_ok();
        }
        assert!(w.host_veths().is_empty(), "{label}: {:?}", w.host_veths());
        assert!(w.reservations().is_empty(), "{label}: {:?}", w.reservations());
    }
}

#[test]
#[ignore = "needs root"]
fn results_at_every_spec_version() {
    require_go_plugins();
    let w = World::new();
    for (i, version) in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
        .iter()
        .enumerate()
    {
        let c = Netns::new();
        let conf = w.conf(version, v4(), json!({}));
        let cid = format!("ver{i}");
        let r = run(
            &w.host,
            &ours(),
            "ADD",
            &cid,
            c.path().to_str().unwrap(),
            "eth0",
            GO_PLUGIN_DIR,
            &conf,
        );
        r.assert_ok();
        assert_eq!(r.json["cniVersion"], *version);
        if version.starts_with("0.1") || version.starts_with("0.2") {
            assert!(
                r.json["ip4"]["ip"].as_str().unwrap().starts_with("10.222.10."),
                "{}",
                r.stdout
            );
        } else {
            assert_eq!(r.json["interfaces"].as_array().unwrap().len(), 3, "{}", r.stdout);
        }
        run(
            &w.host,
            &ours(),
            "DEL",
            &cid,
            c.path().to_str().unwrap(),
            "eth0",
            GO_PLUGIN_DIR,
            &conf,
        )
        .assert_ok();
    }
    assert!(w.reservations().is_empty());
}

#[test]
#[ignore = "needs root"]
fn failing_add_after_ipam_undoes_everything() {
    require_go_plugins();
    let w = World::new();
    // The bridge already carries a different IPv4 address: the gateway cannot be set, after
    // IPAM allocated and the container was configured.
    sh(
        "ip",
        &["-n", w.host.name(), "link", "add", &w.bridge, "type", "bridge"],
    );
    sh(
        "ip",
        &[
            "-n",
            w.host.name(),
            "addr",
            "add",
            "10.222.99.1/24",
            "dev",
            &w.bridge,
        ],
    );
    let conf = w.conf(
        "1.0.0",
        v4(),
        json!({"ipMasq": true, "ipMasqBackend": "nftables", "macspoofchk": true}),
    );
    let c = Netns::new();
    let r = run(
        &w.host,
        &ours(),
        "ADD",
        "cidf",
        c.path().to_str().unwrap(),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    );
    assert_ne!(r.status, 0, "{}", r.stdout);
    assert!(
        r.json["msg"]
            .as_str()
            .unwrap()
            .contains("failed to set bridge addr"),
        "{}",
        r.stdout
    );
    assert!(
        r.json["details"]
            .as_str()
            .unwrap()
            .contains("already has an IP address different"),
        "{}",
        r.stdout
    );
    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
    assert!(w.reservations().is_empty(), "{:?}", w.reservations());
    let eth0 = Command::new("ip")
        .args(["-n", c.name(), "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(!eth0.status.success(), "eth0 is still in the container");
    assert!(!w.nft().contains("macspoofchk"), "{}", w.nft());
}

#[test]
#[ignore = "needs root"]
fn del_without_netns_releases_address_and_rules() {
    require_go_plugins();
    for backend in ["nftables", "iptables"] {
        let w = World::new();
        let conf = w.conf(
            "1.0.0",
            dual(),
            json!({"ipMasq": true, "ipMasqBackend": backend, "macspoofchk": true}),
        );
        let c = Netns::new();
        let netns_path = c.path().to_str().unwrap().to_string();
        run(
            &w.host,
            &ours(),
            "ADD",
            "cidn",
            &netns_path,
            "eth0",
            GO_PLUGIN_DIR,
            &conf,
        )
        .assert_ok();
        assert!(w.nft().contains("macspoofchk-cidn-eth0"));
        assert_eq!(w.reservations().len(), 2);
        drop(c); // the runtime deleted the netns first
        run(
            &w.host,
            &ours(),
            "DEL",
            "cidn",
            &netns_path,
            "eth0",
            GO_PLUGIN_DIR,
            &conf,
        )
        .assert_ok();
        run(&w.host, &ours(), "DEL", "cidn", "", "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
        assert!(w.reservations().is_empty(), "{backend}");
        let nft = w.nft();
        assert!(!nft.contains("macspoofchk"), "{backend}: {nft}");
        assert!(!nft.contains("id: cidn"), "{backend}: {nft}");
        assert!(
            !w.iptables_nat().contains("cidn"),
            "{backend}: {}",
            w.iptables_nat()
        );
    }
}

#[test]
#[ignore = "needs root"]
fn go_del_removes_ours_and_ours_removes_gos() {
    require_go_plugins();
    // Go 1.1.1 masquerades with iptables only.
    for (adder, deleter) in [(ours(), go("bridge")), (go("bridge"), ours())] {
        let w = World::new();
        let conf = w.conf(
            "1.0.0",
            dual(),
            json!({"ipMasq": true, "ipMasqBackend": "iptables", "macspoofchk": true}),
        );
        let c = Netns::new();
        let p = c.path().to_str().unwrap();
        run(&w.host, &adder, "ADD", "cidx", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
        assert!(
            w.iptables_nat().contains("id: \\\"cidx\\\""),
            "{}",
            w.iptables_nat()
        );
        run(&w.host, &deleter, "DEL", "cidx", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
        assert!(
            !w.iptables_nat().contains("cidx"),
            "{:?} -> {:?}: {}",
            adder,
            deleter,
            w.iptables_nat()
        );
        assert!(!w.nft().contains("macspoofchk-cidx"), "{}", w.nft());
        assert!(w.host_veths().is_empty());
        assert!(w.reservations().is_empty());
    }
}

#[test]
#[ignore = "needs root"]
fn our_bridge_over_go_static_and_go_bridge_over_our_host_local() {
    require_go_plugins();
    let w = World::new();
    let c = Netns::new();
    let p = c.path().to_str().unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "rcnitest", "type": "bridge", "bridge": w.bridge, "isGateway": true,
        "ipam": {"type": "static", "addresses": [{"address": "10.222.12.7/24", "gateway": "10.222.12.1"}]}
    });
    let r = run(&w.host, &ours(), "ADD", "cids", p, "eth0", GO_PLUGIN_DIR, &conf);
    r.assert_ok();
    assert_eq!(r.json["ips"][0]["address"], "10.222.12.7/24");
    ping(&c, "10.222.12.1");
    run(&w.host, &ours(), "DEL", "cids", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();

    if !target_bin_dir().join("host-local").exists() {
        eprintln!("our host-local is not built; skipping Go bridge over it");
        return;
    }
    let w = World::new();
    let conf = w.conf("1.0.0", v4(), json!({}));
    let r = run(
        &w.host,
        &go("bridge"),
        "ADD",
        "cidh",
        p,
        "eth0",
        &path_ours_first(),
        &conf,
    );
    r.assert_ok();
    assert_eq!(w.reservations().len(), 1);
    run(
        &w.host,
        &go("bridge"),
        "DEL",
        "cidh",
        p,
        "eth0",
        &path_ours_first(),
        &conf,
    )
    .assert_ok();
    assert!(w.reservations().is_empty());
}

#[test]
#[ignore = "needs root"]
fn l2_only_vlan_trunk_promisc_and_disabled_container_interface() {
    require_go_plugins();
    let w = World::new();
    let c = Netns::new();
    let p = c.path().to_str().unwrap();
    let probe = Command::new("ip")
        .args([
            "-n",
            w.host.name(),
            "link",
            "add",
            "rcniprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .output()
        .unwrap();
    let vlan_filtering = probe.status.success();
    let conf = if vlan_filtering {
        json!({"cniVersion": "1.0.0", "name": "rcnitest", "type": "bridge", "bridge": w.bridge,
            "vlan": 100, "vlanTrunk": [{"id": 101}, {"minID": 200, "maxID": 202}], "promiscMode": true})
    } else {
        eprintln!("this kernel has no bridge vlan filtering: VLAN checks skipped");
        json!({"cniVersion": "1.0.0", "name": "rcnitest", "type": "bridge", "bridge": w.bridge, "promiscMode": true})
    };
    let r = run(&w.host, &ours(), "ADD", "cidv", p, "eth0", GO_PLUGIN_DIR, &conf);
    r.assert_ok();
    assert!(
        r.json
            .get("ips")
            .is_none_or(|i| i.as_array().is_none_or(|a| a.is_empty()))
    );
    assert!(c.link_is_up("eth0"));
    let link = w.host.ip_json(&["-d", "link", "show", &w.bridge]);
    assert!(
        link[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "PROMISC")
    );
    if vlan_filtering {
        let port = r.json["interfaces"][1]["name"].as_str().unwrap().to_string();
        let vlans = sh(
            "ip",
            &[
                "netns",
                "exec",
                w.host.name(),
                "bridge",
                "-j",
                "vlan",
                "show",
                "dev",
                &port,
            ],
        );
        let vlans: Value = serde_json::from_str(&vlans).unwrap();
        let ids: Vec<(u64, bool)> = vlans[0]["vlans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let pvid = v["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "PVID"));
                (v["vlan"].as_u64().unwrap(), pvid)
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                (100, true),
                (101, false),
                (200, false),
                (201, false),
                (202, false)
            ]
        );
        assert_eq!(link[0]["linkinfo"]["info_data"]["vlan_filtering"], 1);
    }
    run(&w.host, &ours(), "DEL", "cidv", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();

    let mut disabled = conf.clone();
    disabled["disableContainerInterface"] = json!(true);
    run(
        &w.host,
        &ours(),
        "ADD",
        "cidd",
        p,
        "eth0",
        GO_PLUGIN_DIR,
        &disabled,
    )
    .assert_ok();
    assert!(!c.link_is_up("eth0"));
    run(
        &w.host,
        &ours(),
        "DEL",
        "cidd",
        p,
        "eth0",
        GO_PLUGIN_DIR,
        &disabled,
    )
    .assert_ok();
    let mut with_ipam = w.conf("1.0.0", v4(), json!({"disableContainerInterface": true}));
    with_ipam["bridge"] = json!(w.bridge);
    let r = run(
        &w.host,
        &ours(),
        "ADD",
        "cide",
        p,
        "eth0",
        GO_PLUGIN_DIR,
        &with_ipam,
    );
    r.assert_code(7);
}

#[test]
#[ignore = "needs root"]
fn mac_from_runtime_config_and_hairpin_and_isolation() {
    require_go_plugins();
    let w = World::new();
    let c = Netns::new();
    let p = c.path().to_str().unwrap();
    let conf = w.conf(
        "1.0.0",
        v4(),
        json!({"hairpinMode": true, "portIsolation": true, "runtimeConfig": {"mac": "0a:22:22:00:00:01"},
               "args": {"cni": {"mac": "0a:22:22:00:00:02"}}}),
    );
    let r = run(&w.host, &ours(), "ADD", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf);
    r.assert_ok();
    assert_eq!(r.json["interfaces"][2]["mac"], "0a:22:22:00:00:01");
    let port = r.json["interfaces"][1]["name"].as_str().unwrap().to_string();
    let info = sh(
        "ip",
        &[
            "netns",
            "exec",
            w.host.name(),
            "bridge",
            "-j",
            "-d",
            "link",
            "show",
            "dev",
            &port,
        ],
    );
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info[0]["hairpin"], true, "{info}");
    assert_eq!(info[0]["isolated"], true, "{info}");
    run(&w.host, &ours(), "DEL", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
}

#[test]
#[ignore = "needs root"]
fn gc_removes_masquerade_rules_of_attachments_not_valid() {
    require_go_plugins();
    let w = World::new();
    let conf = w.conf(
        "1.0.0",
        v4(),
        json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
    );
    let (c1, c2) = (Netns::new(), Netns::new());
    run(
        &w.host,
        &ours(),
        "ADD",
        "gc1",
        c1.path().to_str().unwrap(),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    let mut ipt = conf.clone();
    ipt["ipMasqBackend"] = json!("iptables");
    run(
        &w.host,
        &ours(),
        "ADD",
        "gc2",
        c2.path().to_str().unwrap(),
        "eth0",
        GO_PLUGIN_DIR,
        &ipt,
    )
    .assert_ok();
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["ipam"] = json!(null);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc1", "ifname": "eth0"}]);
    run(&w.host, &ours(), "GC", "", "", "", GO_PLUGIN_DIR, &gc).assert_ok();
    assert!(w.nft().contains("id: gc1"));
    assert!(!w.iptables_nat().contains("gc2"), "{}", w.iptables_nat());
    gc["cni.dev/valid-attachments"] = json!([]);
    run(&w.host, &ours(), "GC", "", "", "", GO_PLUGIN_DIR, &gc).assert_ok();
    assert!(!w.nft().contains("id: gc1"));
}

/// flannel host-gw: two hosts (netns) linked by a veth, each with its bridge and /24 of the
/// cluster's /16, a route to the other's subnet via the other host; a container on A reaches one
/// on B.
#[test]
#[ignore = "needs root"]
fn flannel_style_two_hosts() {
    require_go_plugins();
    let (a, b) = (World::new(), World::new());
    let link = short_unique("rcl");
    sh(
        "ip",
        &[
            "-n",
            a.host.name(),
            "link",
            "add",
            &link,
            "type",
            "veth",
            "peer",
            "name",
            &link,
            "netns",
            b.host.name(),
        ],
    );
    for (w, ip) in [(&a, "10.222.250.1/24"), (&b, "10.222.250.2/24")] {
        sh("ip", &["-n", w.host.name(), "addr", "add", ip, "dev", &link]);
        sh("ip", &["-n", w.host.name(), "link", "set", &link, "up"]);
    }
    sh(
        "ip",
        &[
            "-n",
            a.host.name(),
            "route",
            "add",
            "10.222.21.0/24",
            "via",
            "10.222.250.2",
        ],
    );
    sh(
        "ip",
        &[
            "-n",
            b.host.name(),
            "route",
            "add",
            "10.222.20.0/24",
            "via",
            "10.222.250.1",
        ],
    );
    let delegate = |w: &World, subnet: &str| {
        json!({
            "cniVersion": "0.3.1", "name": "rcnitest", "type": "bridge", "bridge": w.bridge,
            "isGateway": true, "ipMasq": false, "mtu": 1450, "hairpinMode": true, "isDefaultGateway": true,
            "ipam": {"type": "host-local", "dataDir": w.data.path(), "subnet": subnet,
                     "routes": [{"dst": "10.222.0.0/16"}]}
        })
    };
    let (ca, cb) = (Netns::new(), Netns::new());
    let ra = run(
        &a.host,
        &ours(),
        "ADD",
        "fa",
        ca.path().to_str().unwrap(),
        "eth0",
        GO_PLUGIN_DIR,
        &delegate(&a, "10.222.20.0/24"),
    );
    ra.assert_ok();
    let rb = run(
        &b.host,
        &ours(),
        "ADD",
        "fb",
        cb.path().to_str().unwrap(),
        "eth0",
        GO_PLUGIN_DIR,
        &delegate(&b, "10.222.21.0/24"),
    );
    rb.assert_ok();
    let mtu = ca.ip_json(&["link", "show", "eth0"])[0]["mtu"].as_u64();
    assert_eq!(mtu, Some(1450));
    ping(&ca, &ips_of(&rb.json)[0]);
    ping(&cb, &ips_of(&ra.json)[0]);
}

/// Handles of the rules of `inet cni_plugins_masquerade postrouting` in `host`.
fn postrouting_handles(host: &Netns) -> Vec<u64> {
    let out = sh(
        "ip",
        &[
            "netns",
            "exec",
            host.name(),
            "nft",
            "-j",
            "list",
            "chain",
            "inet",
            "cni_plugins_masquerade",
            "postrouting",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["rule"]["handle"].as_u64())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn masquerade_base_chain_is_written_only_when_missing_or_different() {
    require_go_plugins();
    let w = World::new();
    let conf = w.conf(
        "1.0.0",
        v4(),
        json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
    );
    let (c1, c2, c3) = (Netns::new(), Netns::new(), Netns::new());
    let p = |c: &Netns| c.path().to_str().unwrap().to_string();
    run(
        &w.host,
        &ours(),
        "ADD",
        "cidb1",
        &p(&c1),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    let first = postrouting_handles(&w.host);
    assert_eq!(first.len(), 3, "{}", w.nft());
    run(
        &w.host,
        &ours(),
        "ADD",
        "cidb2",
        &p(&c2),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    assert_eq!(
        postrouting_handles(&w.host),
        first,
        "a usual ADD leaves the base chain alone"
    );

    // Someone flushed the base chain: the next ADD writes it again.
    sh(
        "ip",
        &[
            "netns",
            "exec",
            w.host.name(),
            "nft",
            "flush",
            "chain",
            "inet",
            "cni_plugins_masquerade",
            "postrouting",
        ],
    );
    run(
        &w.host,
        &ours(),
        "ADD",
        "cidb3",
        &p(&c3),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    let again = postrouting_handles(&w.host);
    assert_eq!(again.len(), 3, "{}", w.nft());
    let nft = w.nft();
    assert!(nft.contains("goto masq_checks"), "{nft}");
    for cid in ["cidb1", "cidb2", "cidb3"] {
        assert!(nft.contains(&format!("id: {cid}")), "{cid}: {nft}");
    }

    // DEL and ADD again: one rule for the attachment.
    run(
        &w.host,
        &ours(),
        "DEL",
        "cidb3",
        &p(&c3),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    run(
        &w.host,
        &ours(),
        "ADD",
        "cidb3",
        &p(&c3),
        "eth0",
        GO_PLUGIN_DIR,
        &conf,
    )
    .assert_ok();
    assert_eq!(w.nft().matches("id: cidb3").count(), 1, "{}", w.nft());
    for (cid, c) in [("cidb1", &c1), ("cidb2", &c2), ("cidb3", &c3)] {
        run(&w.host, &ours(), "DEL", cid, &p(c), "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
    }
    let nft = w.nft();
    assert!(!nft.contains("id: cidb"), "{nft}");
    assert!(w.host_veths().is_empty());
    assert!(w.reservations().is_empty());
    // The conntrack pin stays with the table, one rule, written once (not per ADD): without
    // it the next ADD would make the kernel walk the whole conntrack table again.
    assert!(nft.contains("chain rcni_conntrack_pin"), "{nft}");
    assert_eq!(nft.matches("ct state established").count(), 1, "{nft}");
}

/// Runs `sh -c script` inside `ns` and returns its stdout.
fn in_ns(ns: &Netns, script: &str) -> String {
    sh("ip", &["netns", "exec", ns.name(), "sh", "-c", script])
}

#[test]
#[ignore = "needs root"]
fn check_fails_when_masquerade_rules_are_missing() {
    require_go_plugins();
    for backend in ["nftables", "iptables"] {
        let w = World::new();
        let conf = w.conf("1.0.0", dual(), json!({"ipMasq": true, "ipMasqBackend": backend}));
        let c = Netns::new();
        let p = c.path().to_str().unwrap();
        let added = run(&w.host, &ours(), "ADD", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf);
        added.assert_ok();
        let mut check = conf.clone();
        check["prevResult"] = added.json.clone();
        run(
            &w.host,
            &ours(),
            "CHECK",
            "cidm",
            p,
            "eth0",
            GO_PLUGIN_DIR,
            &check,
        )
        .assert_ok();

        // Remove the attachment's rules behind the plugin's back.
        if backend == "nftables" {
            in_ns(
                &w.host,
                "nft -a list chain inet cni_plugins_masquerade masq_checks \
                 | sed -n 's/.*id: cidm.* # handle \\([0-9]*\\)$/\\1/p' \
                 | while read h; do nft delete rule inet cni_plugins_masquerade masq_checks handle $h; done",
            );
        } else {
            in_ns(
                &w.host,
                "for t in iptables ip6tables; do \
                 { echo '*nat'; $t-save -t nat | sed -n 's/^-A POSTROUTING \\(.*cidm.*\\)$/-D POSTROUTING \\1/p'; \
                   echo COMMIT; } | $t-restore --noflush; done",
            );
        }
        assert!(!w.nft().contains("id: cidm"), "{}", w.nft());
        let failed = run(
            &w.host,
            &ours(),
            "CHECK",
            "cidm",
            p,
            "eth0",
            GO_PLUGIN_DIR,
            &check,
        );
        assert_ne!(failed.status, 0, "{backend}: CHECK passed without rules");
        assert!(
            failed.stdout.contains("masquerading"),
            "{backend}: {}",
            failed.stdout
        );

        // An altered base chain fails CHECK too (nftables).
        if backend == "nftables" {
            run(&w.host, &ours(), "DEL", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
            let again = run(&w.host, &ours(), "ADD", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf);
            again.assert_ok();
            check["prevResult"] = again.json.clone();
            run(
                &w.host,
                &ours(),
                "CHECK",
                "cidm",
                p,
                "eth0",
                GO_PLUGIN_DIR,
                &check,
            )
            .assert_ok();
            in_ns(&w.host, "nft flush chain inet cni_plugins_masquerade postrouting");
            let failed = run(
                &w.host,
                &ours(),
                "CHECK",
                "cidm",
                p,
                "eth0",
                GO_PLUGIN_DIR,
                &check,
            );
            assert_ne!(failed.status, 0, "CHECK passed with an empty postrouting");
        }
        run(&w.host, &ours(), "DEL", "cidm", p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
        assert!(!w.nft().contains("id: cidm"), "{}", w.nft());
        assert!(!w.iptables_nat().contains("cidm"), "{}", w.iptables_nat());
        assert!(w.host_veths().is_empty());
        assert!(w.reservations().is_empty());
    }
}

/// Runs one verb over a plugin chain as libcni does: ADD in order, each plugin getting the
/// previous result; CHECK in order and DEL in reverse, each getting the chain's ADD result.
/// Returns the last ADD result (Null for CHECK and DEL).
fn run_chain(
    w: &World,
    verb: &str,
    cid: &str,
    netns: &str,
    plugins: &[(PathBuf, Value)],
    added: Option<&Value>,
) -> Value {
    let mut prev = added.cloned();
    let order: Vec<&(PathBuf, Value)> = if verb == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    for (plugin, conf) in order {
        let mut stdin = conf.clone();
        if let Some(prev) = &prev {
            stdin["prevResult"] = prev.clone();
        }
        let out = run(
            &w.host,
            plugin,
            verb,
            cid,
            netns,
            "eth0",
            &path_ours_first(),
            &stdin,
        );
        assert_eq!(
            out.status,
            0,
            "{verb} {}: {} {}",
            plugin.display(),
            out.stdout,
            out.stderr
        );
        if verb == "ADD" {
            prev = Some(out.json);
        }
    }
    if verb == "ADD" {
        prev.unwrap_or(Value::Null)
    } else {
        Value::Null
    }
}

#[test]
#[ignore = "needs root"]
fn go_tuning_bandwidth_and_firewall_chained_after_our_bridge() {
    require_go_plugins();
    for name in ["tuning", "bandwidth", "firewall"] {
        assert!(
            go_plugin(name).is_some(),
            "Go {name} not installed in {GO_PLUGIN_DIR} (apt-get install containernetworking-plugins)"
        );
    }
    let w = World::new();
    // Debian's Go meta plugins speak up to spec 1.0.0.
    let meta = |v: Value| {
        let mut v = v;
        v["cniVersion"] = json!("1.0.0");
        v["name"] = json!("rcnitest");
        v
    };
    let plugins = vec![
        (
            ours(),
            w.conf(
                "1.0.0",
                dual(),
                json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
            ),
        ),
        (
            go("tuning"),
            meta(json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}})),
        ),
        (
            go("bandwidth"),
            meta(
                json!({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 80_000,
                        "egressRate": 8_000_000, "egressBurst": 80_000}),
            ),
        ),
        (
            go("firewall"),
            meta(json!({"type": "firewall", "backend": "iptables"})),
        ),
    ];
    let (c1, c2) = (Netns::new(), Netns::new());
    let (p1, p2) = (c1.path().to_str().unwrap(), c2.path().to_str().unwrap());
    let r1 = run_chain(&w, "ADD", "cidc1", p1, &plugins, None);
    let r2 = run_chain(&w, "ADD", "cidc2", p2, &plugins, None);
    let ips1 = ips_of(&r1);
    assert_eq!(ips1.len(), 2, "{r1}");

    // Each plugin did its part.
    assert_eq!(in_ns(&c1, "sysctl -n net.core.somaxconn").trim(), "512");
    let ifbs = w.host.ip_json(&["link", "show", "type", "ifb"]);
    assert_eq!(ifbs.as_array().map(Vec::len), Some(2), "{ifbs}");
    let filter = in_ns(&w.host, "iptables-save -t filter; ip6tables-save -t filter");
    for ip in &ips1 {
        assert!(filter.contains(ip.as_str()), "{ip}: {filter}");
    }
    assert!(w.nft().contains("id: cidc1"));
    for ip in ips_of(&r2) {
        ping(&c1, &ip);
    }

    run_chain(&w, "CHECK", "cidc1", p1, &plugins, Some(&r1));
    run_chain(&w, "DEL", "cidc1", p1, &plugins, Some(&r1));
    // DEL again: every plugin is idempotent.
    run_chain(&w, "DEL", "cidc1", p1, &plugins, Some(&r1));
    run_chain(&w, "DEL", "cidc2", p2, &plugins, Some(&r2));

    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
    assert!(w.reservations().is_empty(), "{:?}", w.reservations());
    let ifbs = w.host.ip_json(&["link", "show", "type", "ifb"]);
    assert_eq!(ifbs.as_array().map(Vec::len).unwrap_or(0), 0, "{ifbs}");
    let nft = w.nft();
    assert!(!nft.contains("id: cidc"), "{nft}");
    let all = in_ns(&w.host, "iptables-save; ip6tables-save");
    for ip in ips1.iter().chain(&ips_of(&r2)) {
        assert!(!all.contains(ip.as_str()), "{ip} left in iptables: {all}");
    }
}

#[test]
#[ignore = "needs root"]
fn our_bridge_over_our_host_local_at_every_spec_version() {
    let host_local = target_bin_dir().join("host-local");
    assert!(
        host_local.exists(),
        "{} is not built (cargo build --workspace)",
        host_local.display()
    );
    let ours_only = target_bin_dir().display().to_string();
    let w = World::new();
    for (i, version) in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let c = Netns::new();
        let p = c.path().to_str().unwrap();
        let conf = w.conf(
            version,
            dual(),
            json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
        );
        let cid = format!("own{i}");
        let r = run(&w.host, &ours(), "ADD", &cid, p, "eth0", &ours_only, &conf);
        r.assert_ok();
        assert_eq!(r.json["cniVersion"], *version, "{}", r.stdout);
        if version.starts_with("0.1") || version.starts_with("0.2") {
            assert!(
                r.json["ip4"]["ip"].as_str().unwrap().starts_with("10.222.11."),
                "{}",
                r.stdout
            );
            assert!(
                r.json["ip6"]["ip"].as_str().unwrap().starts_with("fd00:222:11:"),
                "{}",
                r.stdout
            );
        } else {
            assert_eq!(r.json["interfaces"].as_array().unwrap().len(), 3, "{}", r.stdout);
            assert_eq!(r.json["ips"].as_array().unwrap().len(), 2, "{}", r.stdout);
            for ip in r.json["ips"].as_array().unwrap() {
                assert_eq!(ip["interface"], 2, "{}", r.stdout);
                ping(&c, ip["gateway"].as_str().unwrap());
            }
        }
        assert_eq!(w.reservations().len(), 2, "{version}");
        if !matches!(*version, "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1") {
            let mut check = conf.clone();
            check["prevResult"] = r.json.clone();
            run(&w.host, &ours(), "CHECK", &cid, p, "eth0", &ours_only, &check).assert_ok();
        }
        if *version == "1.1.0" {
            run(&w.host, &ours(), "STATUS", "", "", "", &ours_only, &conf).assert_ok();
            let mut gc = conf.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": cid, "ifname": "eth0"}]);
            run(&w.host, &ours(), "GC", "", "", "", &ours_only, &gc).assert_ok();
            assert_eq!(w.reservations().len(), 2, "GC kept the valid attachment");
            assert!(w.nft().contains(&format!("id: {cid}")));
        }
        run(&w.host, &ours(), "DEL", &cid, p, "eth0", &ours_only, &conf).assert_ok();
        run(&w.host, &ours(), "DEL", &cid, p, "eth0", &ours_only, &conf).assert_ok();
        assert!(w.reservations().is_empty(), "{version}: {:?}", w.reservations());
        assert!(!w.nft().contains(&format!("id: {cid}")), "{version}: {}", w.nft());
    }
    assert!(w.host_veths().is_empty());
}

#[test]
#[ignore = "needs root"]
fn macspoofchk_for_two_containers_that_ping_then_del_leaves_only_the_base_chain() {
    require_go_plugins();
    let w = World::new();
    let conf = w.conf("1.0.0", v4(), json!({"macspoofchk": true}));
    let (c1, c2) = (Netns::new(), Netns::new());
    let (p1, p2) = (c1.path().to_str().unwrap(), c2.path().to_str().unwrap());
    run(&w.host, &ours(), "ADD", "cids1", p1, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
    let r2 = run(&w.host, &ours(), "ADD", "cids2", p2, "eth0", GO_PLUGIN_DIR, &conf);
    r2.assert_ok();
    let nft = w.nft();
    for id in ["cids1-eth0", "cids2-eth0"] {
        assert_eq!(
            nft.matches(&format!("macspoofchk-{id}")).count(),
            4,
            "{id}: {nft}"
        );
    }
    for ip in ips_of(&r2.json) {
        ping(&c1, &ip);
    }
    // A frame with another source MAC is dropped: change c1's MAC behind the plugin's back.
    in_ns(&c1, "ip link set eth0 address 02:00:00:de:ad:01");
    let out = Command::new("ip")
        .args(["netns", "exec", c1.name(), "ping", "-c", "1", "-W", "1"])
        .arg(&ips_of(&r2.json)[0])
        .output()
        .unwrap();
    assert!(!out.status.success(), "spoofed frames got through");
    for (cid, p) in [("cids1", p1), ("cids2", p2)] {
        run(&w.host, &ours(), "DEL", cid, p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
        run(&w.host, &ours(), "DEL", cid, p, "eth0", GO_PLUGIN_DIR, &conf).assert_ok();
    }
    let nft = w.nft();
    assert!(!nft.contains("macspoofchk"), "{nft}");
    assert!(!nft.contains("cni-br-iface"), "{nft}");
    assert!(nft.contains("chain PREROUTING"), "{nft}");
    assert!(w.host_veths().is_empty());
    assert!(w.reservations().is_empty());
}
