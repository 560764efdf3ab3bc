//! The Go plugin's own scenarios (host_local_test.go) and the rest of the
//! contract, run against the built binary with a data dir per test.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;

const VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn dual_stack(dir: &DataDir, version: &str, resolv: &str) -> Value {
    conf(
        version,
        "mynet",
        dir,
        json!({
            "resolvConf": resolv,
            "ranges": [
                [{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24"}],
                [{"subnet": "2001:db8:1::0/64"}]
            ],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "::/0"},
                {"dst": "192.168.0.0/16", "gw": "1.1.1.1"},
                {"dst": "2001:db8:2::0/64", "gw": "2001:db8:3::1"}
            ]
        }),
    )
}

#[test]
fn allocates_and_releases_addresses_with_add_del_at_every_version() {
    for version in VERSIONS {
        let dir = DataDir::new("adddel");
        let resolv = dir.0.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 192.0.2.3").unwrap();
        let c = dual_stack(&dir, version, resolv.to_str().unwrap());
        let r = Call::new(OURS, "ADD", "dummy").run(&c).ok();
        assert_eq!(r["cniVersion"], *version);
        if version.starts_with("0.1") || version.starts_with("0.2") {
            assert_eq!(r["ip4"]["ip"], "10.1.2.2/24", "{version}: {r}");
            assert_eq!(r["ip4"]["gateway"], "10.1.2.1");
            assert_eq!(r["ip6"]["ip"], "2001:db8:1::2/64");
            assert_eq!(r["ip6"]["gateway"], "2001:db8:1::1");
            let v4routes: Vec<&str> = r["ip4"]["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["dst"].as_str().unwrap())
                .collect();
            assert_eq!(v4routes, ["0.0.0.0/0", "192.168.0.0/16"]);
        } else {
            assert_eq!(addresses(&r), ["10.1.2.2/24", "2001:db8:1::2/64"], "{version}");
            assert_eq!(r["ips"][0]["gateway"], "10.1.2.1");
            assert_eq!(r["ips"][1]["gateway"], "2001:db8:1::1");
            assert!(
                r["ips"][0].get("interface").is_none(),
                "IPAM results name no interface"
            );
            if version.starts_with("0.") {
                assert_eq!(r["ips"][0]["version"], "4");
                assert_eq!(r["ips"][1]["version"], "6");
            } else {
                assert!(r["ips"][0].get("version").is_none());
            }
            assert_eq!(r["routes"][2], json!({"dst": "192.168.0.0/16", "gw": "1.1.1.1"}));
            assert_eq!(r["routes"].as_array().unwrap().len(), 4);
        }
        assert_eq!(r["dns"]["nameservers"], json!(["192.0.2.3"]));

        let store = dir.net("mynet");
        for ip in ["10.1.2.2", "2001:db8:1::2"] {
            let path = store.join(ip);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "dummy\r\neth0");
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            std::fs::read_to_string(store.join("last_reserved_ip.0")).unwrap(),
            "10.1.2.2"
        );
        assert_eq!(
            std::fs::read_to_string(store.join("last_reserved_ip.1")).unwrap(),
            "2001:db8:1::2"
        );
        assert!(store.join("lock").exists());

        if version >= &"0.4.0" {
            Call::new(OURS, "CHECK", "dummy").run(&c).ok();
        }
        Call::new(OURS, "DEL", "dummy").run(&c).ok();
        assert!(dir.reservations("mynet").is_empty(), "{version}");
        Call::new(OURS, "DEL", "dummy").run(&c).ok();
    }
}

#[test]
fn releases_per_interface_and_refuses_a_second_add_of_the_same_attachment() {
    let dir = DataDir::new("ifname");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    let a = Call::new(OURS, "ADD", "dummy").ifname("eth0").run(&c).ok();
    let b = Call::new(OURS, "ADD", "dummy").ifname("eth1").run(&c).ok();
    assert_eq!(addresses(&a), ["10.1.2.2/24"]);
    assert_eq!(addresses(&b), ["10.1.2.3/24"]);
    let (code, msg) = Call::new(OURS, "ADD", "dummy").ifname("eth0").run(&c).err();
    assert_eq!(
        msg,
        "failed to allocate for range 0: 10.1.2.2 has been allocated to dummy, duplicate allocation is not allowed"
    );
    assert_eq!(code, 999);
    Call::new(OURS, "DEL", "dummy").ifname("eth0").run(&c).ok();
    let left = dir.reservations("mynet");
    assert_eq!(left.keys().collect::<Vec<_>>(), ["10.1.2.3"]);
    assert_eq!(left["10.1.2.3"], "dummy\r\neth1");
    // Round robin: the released address is not handed out again right away.
    let again = Call::new(OURS, "ADD", "dummy").ifname("eth0").run(&c).ok();
    assert_eq!(addresses(&again), ["10.1.2.4/24"]);
}

#[test]
fn del_releases_legacy_files_holding_only_the_id() {
    let dir = DataDir::new("legacy");
    let c = conf("0.4.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    // First call creates the store; then a pre-v0.8.0 file appears behind our back.
    Call::new(OURS, "ADD", "other").run(&c).ok();
    std::fs::write(dir.net("mynet").join("10.1.2.77"), "dummy").unwrap();
    Call::new(OURS, "CHECK", "dummy").run(&c).ok();
    Call::new(OURS, "DEL", "dummy").run(&c).ok();
    assert!(!dir.net("mynet").join("10.1.2.77").exists());
    assert_eq!(
        dir.reservations("mynet").len(),
        1,
        "the other container keeps its address"
    );
}

#[test]
fn whitespace_around_file_contents_is_ignored() {
    let dir = DataDir::new("ws");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    Call::new(OURS, "ADD", "other").run(&c).ok();
    std::fs::write(dir.net("mynet").join("10.1.2.50"), "  dummy\r\neth0\n ").unwrap();
    let (_, msg) = Call::new(OURS, "ADD", "dummy").run(&c).err();
    assert!(msg.contains("10.1.2.50 has been allocated to dummy"), "{msg}");
    Call::new(OURS, "DEL", "dummy").run(&c).ok();
    assert!(!dir.net("mynet").join("10.1.2.50").exists());
}

#[test]
fn unknown_id_on_del_is_success_even_without_a_store() {
    let dir = DataDir::new("unknown");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    Call::new(OURS, "DEL", "nobody").run(&c).ok();
    Call::new(OURS, "ADD", "somebody").run(&c).ok();
    Call::new(OURS, "DEL", "nobody").run(&c).ok();
    assert_eq!(dir.reservations("mynet").len(), 1);
}

#[test]
fn requested_addresses_from_cni_args_args_and_runtime_config() {
    let dir = DataDir::new("req");
    let mut c = conf(
        "1.0.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}], [{"subnet": "2001:db8:1::/64"}]]}),
    );
    c["args"] = json!({"cni": {"ips": ["10.1.3.77/24"]}});
    c["runtimeConfig"] = json!({"ips": ["2001:db8:1::999"]});
    let r = Call::new(OURS, "ADD", "dummy")
        .args("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.2.88")
        .run(&c)
        .ok();
    assert_eq!(
        addresses(&r),
        ["10.1.2.88/24", "10.1.3.77/24", "2001:db8:1::999/64"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.net("mynet").join("last_reserved_ip.2")).unwrap(),
        "2001:db8:1::999"
    );

    // Taken.
    let (_, msg) = Call::new(OURS, "ADD", "other").args("IP=10.1.2.88").run(&c).err();
    assert_eq!(
        msg,
        "failed to allocate for range 0: requested IP address 10.1.2.88 is not available in range set 10.1.2.1-10.1.2.254"
    );
    // The gateway.
    let mut g = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    g["runtimeConfig"] = json!({"ips": ["10.1.2.1"]});
    let (code, msg) = Call::new(OURS, "ADD", "gw").run(&g).err();
    assert_eq!(
        (code, msg.as_str()),
        (
            7,
            "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"
        )
    );
    // Unknown CNI_ARGS key without IgnoreUnknown.
    let (code, _) = Call::new(OURS, "ADD", "x").args("FOO=bar").run(&g).err();
    assert_eq!(code, 4);
    // Nothing was left behind by the failures.
    assert_eq!(dir.reservations("mynet").len(), 3);
}

#[test]
fn requested_addresses_not_used_fail_and_release_everything() {
    let dir = DataDir::new("unused");
    let mut c = conf(
        "1.0.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]}),
    );
    c["args"] = json!({"cni": {"ips": ["10.1.2.88", "10.1.2.77"]}});
    let (code, msg) = Call::new(OURS, "ADD", "dummy").run(&c).err();
    assert_eq!(code, 7);
    assert_eq!(msg, "failed to allocate all requested IPs: 10.1.2.77");
    assert!(dir.reservations("mynet").is_empty());
    let mut out = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    out["runtimeConfig"] = json!({"ips": ["192.168.9.9"]});
    let (_, msg) = Call::new(OURS, "ADD", "dummy").run(&out).err();
    assert_eq!(msg, "failed to allocate all requested IPs: 192.168.9.9");
    assert!(dir.reservations("mynet").is_empty());
}

#[test]
fn ip_ranges_capability_is_prepended() {
    let dir = DataDir::new("ipranges");
    let mut c = conf(
        "1.0.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}]]}),
    );
    c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "2001:db8:9::/64"}]]});
    let r = Call::new(OURS, "ADD", "dummy").run(&c).ok();
    assert_eq!(addresses(&r), ["2001:db8:9::2/64", "10.1.2.2/24"]);
}

#[test]
fn exhaustion_names_the_range_and_status_reports_code_50() {
    let dir = DataDir::new("full");
    let c = conf(
        "1.1.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/29", "rangeStart": "10.1.2.2", "rangeEnd": "10.1.2.4"}]]}),
    );
    Call::new(OURS, "STATUS", "").run(&c).ok();
    for id in ["a", "b", "c"] {
        Call::new(OURS, "ADD", id).run(&c).ok();
    }
    let (code, msg) = Call::new(OURS, "ADD", "d").run(&c).err();
    assert_eq!(
        msg,
        "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.2-10.1.2.4"
    );
    assert_eq!(code, 999);
    let (code, msg) = Call::new(OURS, "STATUS", "").run(&c).err();
    assert_eq!(code, 50);
    assert!(msg.contains("10.1.2.2-10.1.2.4"), "{msg}");
    Call::new(OURS, "DEL", "b").run(&c).ok();
    Call::new(OURS, "STATUS", "").run(&c).ok();
    let r = Call::new(OURS, "ADD", "d").run(&c).ok();
    assert_eq!(
        addresses(&r),
        ["10.1.2.3/29"],
        "wraps around to the freed address"
    );
}

#[test]
fn round_robin_resumes_after_the_last_reserved_address_and_wraps() {
    let dir = DataDir::new("rr");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/29"}));
    let mut got = Vec::new();
    for i in 0..5 {
        let id = format!("c{i}");
        got.push(addresses(&Call::new(OURS, "ADD", &id).run(&c).ok())[0].clone());
    }
    assert_eq!(
        got,
        [
            "10.1.2.2/29",
            "10.1.2.3/29",
            "10.1.2.4/29",
            "10.1.2.5/29",
            "10.1.2.6/29"
        ]
    );
    Call::new(OURS, "DEL", "c1").run(&c).ok();
    Call::new(OURS, "DEL", "c3").run(&c).ok();
    assert_eq!(
        addresses(&Call::new(OURS, "ADD", "x").run(&c).ok()),
        ["10.1.2.3/29"]
    );
    assert_eq!(
        addresses(&Call::new(OURS, "ADD", "y").run(&c).ok()),
        ["10.1.2.5/29"]
    );
}

#[test]
fn check_fails_without_a_reservation_and_gates_versions() {
    let dir = DataDir::new("check");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    let (code, msg) = Call::new(OURS, "CHECK", "dummy").run(&c).err();
    assert_eq!(
        (code, msg.as_str()),
        (999, "host-local: Failed to find address added by container dummy")
    );
    Call::new(OURS, "ADD", "dummy").run(&c).ok();
    Call::new(OURS, "CHECK", "dummy").run(&c).ok();
    let old = conf("0.3.1", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    assert_eq!(Call::new(OURS, "CHECK", "dummy").run(&old).err().0, 1);
    assert_eq!(Call::new(OURS, "GC", "").run(&c).err().0, 1, "GC needs 1.1.0");
    assert_eq!(
        Call::new(OURS, "STATUS", "").run(&c).err().0,
        1,
        "STATUS needs 1.1.0"
    );
}

#[test]
fn gc_releases_what_is_not_a_valid_attachment() {
    let dir = DataDir::new("gc");
    let c = conf(
        "1.1.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8::/64"}]]}),
    );
    for id in ["keep", "drop1", "drop2"] {
        Call::new(OURS, "ADD", id).run(&c).ok();
    }
    Call::new(OURS, "ADD", "keep").ifname("net1").run(&c).ok();
    std::fs::write(dir.net("mynet").join("10.1.2.99"), "keep").unwrap(); // legacy, of a valid container
    std::fs::write(dir.net("mynet").join("10.1.2.98"), "gone").unwrap(); // legacy, of nobody
    // Without the key there is nothing to compare with: nothing is freed.
    Call::new(OURS, "GC", "").run(&c).ok();
    assert_eq!(dir.reservations("mynet").len(), 10);
    let mut g = c.clone();
    g["cni.dev/valid-attachments"] =
        json!([{"containerID": "keep", "ifname": "eth0"}, {"containerID": "other", "ifname": "eth0"}]);
    g["cni.dev/attachments"] = g["cni.dev/valid-attachments"].clone();
    Call::new(OURS, "GC", "").run(&g).ok();
    let left = dir.reservations("mynet");
    let owners: Vec<&str> = left.values().map(String::as_str).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        owners.iter().all(|o| *o == "keep\r\neth0" || *o == "keep"),
        "{owners:?}"
    );
    // An empty list frees everything.
    g["cni.dev/valid-attachments"] = json!([]);
    Call::new(OURS, "GC", "").run(&g).ok();
    assert!(dir.reservations("mynet").is_empty());
}

#[test]
fn bad_input_gives_the_right_code() {
    let dir = DataDir::new("codes");
    let good = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    let cases: Vec<(Value, u64)> = vec![
        (json!({"cniVersion": "1.0.0", "name": "mynet", "type": "x"}), 7),
        (conf("1.0.0", "mynet", &dir, json!({})), 7),
        (conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.5/24"})), 7),
        (conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/31"})), 7),
        (
            conf(
                "1.0.0",
                "mynet",
                &dir,
                json!({"subnet": "10.1.2.0/24", "rangeStart": "10.9.0.1"}),
            ),
            7,
        ),
        (
            conf(
                "1.0.0",
                "mynet",
                &dir,
                json!({"ranges": [[{"subnet": "10.0.0.0/8"}], [{"subnet": "10.1.0.0/16"}]]}),
            ),
            7,
        ),
        (conf("1.0.0", "mynet", &dir, json!({"ranges": "nope"})), 6),
        (conf("1.0.0", "mynet", &dir, json!({"subnet": "not-a-cidr"})), 6),
        (
            conf("1.0.0", "../escape", &dir, json!({"subnet": "10.1.2.0/24"})),
            7,
        ),
        (conf("1.0.0", "a/b", &dir, json!({"subnet": "10.1.2.0/24"})), 7),
        (conf("1.0.0", "..", &dir, json!({"subnet": "10.1.2.0/24"})), 7),
        (conf("9.9.9", "mynet", &dir, json!({"subnet": "10.1.2.0/24"})), 1),
    ];
    for (c, want) in cases {
        let (code, msg) = Call::new(OURS, "ADD", "dummy").run(&c).err();
        assert_eq!(code, want, "{c}: {msg}");
    }
    let mut missing_resolv = good.clone();
    missing_resolv["ipam"]["resolvConf"] = json!("/nonexistent/resolv.conf");
    assert_eq!(Call::new(OURS, "ADD", "dummy").run(&missing_resolv).err().0, 5);
    // Nothing escaped the data dir, and nothing was reserved.
    assert!(!dir.0.path().parent().unwrap().join("escape").exists());
    assert!(dir.reservations("mynet").is_empty());
    let mut two_v4 = conf(
        "0.2.0",
        "mynet",
        &dir,
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]}),
    );
    let (code, msg) = Call::new(OURS, "ADD", "dummy").run(&two_v4).err();
    assert_eq!(
        (code, msg.as_str()),
        (
            7,
            "CNI version 0.2.0 does not support more than 1 address per family"
        )
    );
    two_v4["cniVersion"] = json!("0.3.0");
    Call::new(OURS, "ADD", "dummy").run(&two_v4).ok();
}

#[test]
#[ignore = "needs root"]
fn works_in_a_real_network_namespace() {
    let ns = Netns::new();
    let dir = DataDir::new("netns");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    let r = Call::new(OURS, "ADD", "dummy")
        .netns(ns.path().display().to_string())
        .run(&c)
        .ok();
    assert_eq!(addresses(&r), ["10.1.2.2/24"]);
    Call::new(OURS, "CHECK", "dummy")
        .netns(ns.path().display().to_string())
        .run(&c)
        .ok();
    // The plugin's own namespace is refused without CNI_NETNS_OVERRIDE.
    let (code, _) = Call::new(OURS, "ADD", "other")
        .netns("/proc/self/ns/net".into())
        .run(&c)
        .err();
    assert_eq!(code, 8);
    drop(ns);
    // DEL still releases when the namespace is gone.
    Call::new(OURS, "DEL", "dummy")
        .netns("/var/run/netns/rcni-hl-gone".into())
        .run(&c)
        .ok();
    assert!(dir.reservations("mynet").is_empty());
}

#[test]
fn index_follows_changes_made_behind_its_back() {
    let dir = DataDir::new("behind");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    Call::new(OURS, "ADD", "a").run(&c).ok();
    let store = dir.net("mynet");
    // Another writer takes the next address and removes ours, within the same clock tick.
    std::fs::write(store.join("10.1.2.3"), "b\r\neth0").unwrap();
    std::fs::remove_file(store.join("10.1.2.2")).unwrap();
    let r = Call::new(OURS, "ADD", "c").run(&c).ok();
    assert_eq!(addresses(&r), ["10.1.2.4/24"]);
    Call::new(OURS, "CHECK", "b").run(&c).ok();
    assert!(
        Call::new(OURS, "CHECK", "a")
            .run(&c)
            .err()
            .1
            .contains("Failed to find")
    );
    Call::new(OURS, "DEL", "b").run(&c).ok();
    assert!(!store.join("10.1.2.3").exists());
    // The whole directory wiped (the usual leak workaround) and re-created.
    std::fs::remove_dir_all(&store).unwrap();
    let r = Call::new(OURS, "ADD", "d").run(&c).ok();
    assert_eq!(addresses(&r), ["10.1.2.2/24"]);
    assert!(
        Call::new(OURS, "CHECK", "c")
            .run(&c)
            .err()
            .1
            .contains("Failed to find")
    );
}

#[test]
fn many_reservations_keep_working_across_index_growth() {
    let dir = DataDir::new("grow");
    let c = conf("1.1.0", "mynet", &dir, json!({"subnet": "10.8.0.0/16"}));
    let store = dir.net("mynet");
    Call::new(OURS, "ADD", "first").run(&c).ok();
    // 3,000 reservations written as Go would, then one ADD rebuilds the index.
    for i in 0..3000u32 {
        let ip = format!("10.8.{}.{}", 100 + i / 250, 1 + i % 250);
        std::fs::write(store.join(ip), format!("pre{i}\r\neth0")).unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        let id = format!("new{i}");
        Call::new(OURS, "ADD", &id).run(&c).ok();
        ids.push(id);
    }
    for id in ["pre0", "pre1234", "pre2999", "new0", "new299", "first"] {
        Call::new(OURS, "CHECK", id).run(&c).ok();
        Call::new(OURS, "DEL", id).run(&c).ok();
        assert!(
            Call::new(OURS, "CHECK", id)
                .run(&c)
                .err()
                .1
                .contains("Failed to find"),
            "{id}"
        );
    }
    let left = dir.reservations("mynet");
    assert_eq!(left.len(), 3000 + 300 + 1 - 6);
    let mut owners: Vec<&String> = left.values().collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), left.len(), "one address per attachment");
}

#[test]
fn a_dense_stretch_after_wrap_around_is_skipped() {
    let dir = DataDir::new("dense");
    let c = conf("1.1.0", "mynet", &dir, json!({"subnet": "10.5.0.0/20"}));
    Call::new(OURS, "ADD", "first").run(&c).ok(); // 10.5.0.2
    let store = dir.net("mynet");
    // 3,000 addresses in a row right after the last reserved one, as Go would leave them.
    for i in 0..3000u32 {
        let n = 3 + i;
        std::fs::write(
            store.join(format!("10.5.{}.{}", n / 256, n % 256)),
            format!("pre{i}\r\neth0"),
        )
        .unwrap();
    }
    let r = Call::new(OURS, "ADD", "next").run(&c).ok();
    assert_eq!(addresses(&r), ["10.5.11.187/20"]); // 3 + 3000 = 3003 = 11 * 256 + 187
    // Free one address behind: the walk wraps past the end and finds it.
    Call::new(OURS, "DEL", "pre10").run(&c).ok();
    let mut got = Vec::new();
    // 4,093 allocatable (.0.2-.15.254), 3,001 taken: first, next and 2,999 of pre.
    for i in 0..(4093 - 3001) {
        let id = format!("fill{i}");
        got.push(addresses(&Call::new(OURS, "ADD", &id).run(&c).ok())[0].clone());
    }
    assert_eq!(got.last().unwrap(), "10.5.0.13/20", "pre10 held 10.5.0.13");
    let (_, msg) = Call::new(OURS, "ADD", "toomany").run(&c).err();
    assert!(
        msg.ends_with("no IP addresses available in range set: 10.5.0.1-10.5.15.254"),
        "{msg}"
    );
    let (code, _) = Call::new(OURS, "STATUS", "").run(&c).err();
    assert_eq!(code, 50);
}

#[test]
fn does_not_output_an_error_message_upon_initial_subnet_creation() {
    let dir = DataDir::new("quiet");
    let c = conf("1.0.0", "mynet", &dir, json!({"subnet": "10.1.2.0/24"}));
    let r = Call::new(OURS, "ADD", "testing").run(&c);
    assert!(r.success(), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
    let r = Call::new(OURS, "DEL", "testing").run(&c);
    assert!(r.success() && r.stderr.is_empty(), "stderr: {}", r.stderr);
}
