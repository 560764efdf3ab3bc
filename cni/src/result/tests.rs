//! Edge cases of parsing and conversion. The version-by-version matrix lives
//! in `cni/tests/golden_results.rs`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use super::*;
use serde_json::json;

fn parse(v: Value) -> CniResult {
    CniResult::from_value(&v).unwrap()
}

fn code(r: crate::Result<impl std::fmt::Debug>) -> u32 {
    r.unwrap_err().code.0
}

/// A 1.1.0 result with the IPv6 address listed first and two IPv4 addresses.
fn dual_stack() -> Value {
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "mtu": 1450, "sandbox": "/var/run/netns/c1",
             "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"}
        ],
        "ips": [
            {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
            {"interface": 1, "address": "10.1.0.5/16"},
            {"interface": 1, "address": "10.2.0.5/16", "gateway": "10.2.0.1"},
            {"interface": 1, "address": "fd01::5/64", "gateway": "fd01::1"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.2.0.1", "mtu": 1400, "advmss": 1360, "priority": 5,
             "table": 0, "scope": 0},
            {"dst": "::/0"},
            {"dst": "192.168.0.0/16", "table": 100}
        ],
        "dns": {"nameservers": ["10.1.0.1"]}
    })
}

#[test]
fn dual_stack_to_020_keeps_first_address_of_each_family() {
    let out = convert(&dual_stack(), "0.2.0").unwrap();
    assert_eq!(out["ip4"]["ip"], "10.1.0.5/16");
    assert_eq!(out["ip6"]["ip"], "fd00::5/64");
    assert_eq!(out["ip6"]["gateway"], "fd00::1");
}

#[test]
fn gateway_at_020_is_the_first_address_gateway_not_any_later_one() {
    // The first IPv4 address has no gateway; the second one's is not borrowed.
    let out = convert(&dual_stack(), "0.2.0").unwrap();
    assert!(out["ip4"].get("gateway").is_none());
}

#[test]
fn routes_at_020_split_by_family_of_dst_with_only_dst_and_gw() {
    let out = convert(&dual_stack(), "0.1.0").unwrap();
    assert_eq!(out["cniVersion"], "0.1.0");
    assert_eq!(
        out["ip4"]["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.2.0.1"}, {"dst": "192.168.0.0/16"}])
    );
    assert_eq!(out["ip6"]["routes"], json!([{"dst": "::/0"}]));
}

#[test]
fn ipv6_only_to_020_has_only_ip6_and_drops_ipv4_routes() {
    let v = json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "2001:db8::2/64", "gateway": "2001:db8::1"}],
        "routes": [{"dst": "::/0"}, {"dst": "0.0.0.0/0", "gw": "192.0.2.1"}]
    });
    let out = convert(&v, "0.2.0").unwrap();
    assert_eq!(
        out,
        json!({
            "cniVersion": "0.2.0",
            "ip6": {"ip": "2001:db8::2/64", "gateway": "2001:db8::1", "routes": [{"dst": "::/0"}]},
            "dns": {}
        })
    );
}

#[test]
fn no_ips_to_020_fails_like_libcni() {
    let v = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}]});
    let err = convert(&v, "0.2.0").unwrap_err();
    assert_eq!(err.code.0, 999);
    assert_eq!(err.msg, "cannot convert: no valid IP addresses");
    assert_eq!(code(convert(&v, "0.1.0")), 999);
    // A plugin's own empty result, built for 0.3+, fails the same way.
    assert_eq!(code(CniResult::new("1.1.0").to_value("0.2.0")), 999);
}

#[test]
fn legacy_result_without_ips_stays_legacy() {
    // libcni only checks for addresses when converting down from 0.3+.
    let v = json!({"cniVersion": "0.2.0", "dns": {"domain": "example.org"}});
    let out = convert(&v, "0.1.0").unwrap();
    assert_eq!(
        out,
        json!({"cniVersion": "0.1.0", "dns": {"domain": "example.org"}})
    );
    assert_eq!(
        convert(&v, "0.4.0").unwrap(),
        json!({"cniVersion": "0.4.0", "dns": {"domain": "example.org"}})
    );
}

#[test]
fn interface_index_survives_every_0_3_plus_version() {
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let out = convert(&dual_stack(), version).unwrap();
        for ip in out["ips"].as_array().unwrap() {
            assert_eq!(ip["interface"], 1, "at {version}");
        }
    }
}

#[test]
fn version_at_040_comes_from_the_address_family() {
    let out = convert(&dual_stack(), "0.4.0").unwrap();
    let versions: Vec<_> = out["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["version"].clone())
        .collect();
    assert_eq!(versions, ["6", "4", "4", "6"]);
    // Go's 0.4 key order: version, interface, address, gateway.
    let keys: Vec<_> = out["ips"][0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["version", "interface", "address", "gateway"]);
}

#[test]
fn wrong_version_in_input_is_recomputed() {
    let v = json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.2/24"}]});
    assert_eq!(convert(&v, "0.3.1").unwrap()["ips"][0]["version"], "4");
    assert!(convert(&v, "1.0.0").unwrap()["ips"][0].get("version").is_none());
}

#[test]
fn interface_1_1_fields_dropped_at_040_kept_at_1_x() {
    let out = convert(&dual_stack(), "0.4.0").unwrap();
    assert_eq!(
        out["interfaces"][1],
        json!({"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/c1"})
    );
    // 1.0.0 and 1.1.0 are one Go type, so libcni keeps them at 1.0.0.
    let out = convert(&dual_stack(), "1.0.0").unwrap();
    assert_eq!(out["interfaces"][1]["mtu"], 1450);
    assert_eq!(out["interfaces"][1]["pciID"], "0000:00:1f.6");
    assert_eq!(out["interfaces"][1]["socketPath"], "/run/vhost.sock");
}

#[test]
fn route_1_1_fields_survive_040_but_not_020() {
    let out = convert(&dual_stack(), "0.4.0").unwrap();
    assert_eq!(
        out["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.2.0.1", "mtu": 1400, "advmss": 1360, "priority": 5,
               "table": 0, "scope": 0})
    );
    assert_eq!(out["routes"][2], json!({"dst": "192.168.0.0/16", "table": 100}));
}

#[test]
fn input_at_040_loses_interface_1_1_fields_like_gos_type() {
    let v = json!({"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "mtu": 9000, "pciID": "x"}]});
    let r = parse(v);
    assert_eq!(r.interfaces, vec![Interface::new("eth0")]);
}

#[test]
fn round_trip_1_1_is_lossless_including_unknown_keys_and_order() {
    let mut v = dual_stack();
    let obj = v.as_object_mut().unwrap();
    obj.insert("x-vendor".into(), json!({"z": 1, "a": [true]}));
    obj.insert("annotation".into(), json!("kept"));
    let text = serde_json::to_string(&v).unwrap();
    let out = CniResult::from_slice(text.as_bytes())
        .unwrap()
        .to_value("1.1.0")
        .unwrap();
    assert_eq!(serde_json::to_string(&out).unwrap(), text);
}

#[test]
fn unknown_keys_survive_every_version() {
    let mut v = dual_stack();
    v.as_object_mut().unwrap().insert("x-vendor".into(), json!(7));
    for version in crate::version::SUPPORTED_VERSIONS {
        let out = convert(&v, version).unwrap();
        assert_eq!(out["x-vendor"], 7, "at {version}");
        assert_eq!(out.as_object().unwrap().keys().next_back().unwrap(), "x-vendor");
    }
}

#[test]
fn keys_of_the_other_shape_are_neither_kept_nor_emitted() {
    let v = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}], "ip4": {"ip": "10.9.9.9/8"}});
    let r = parse(v);
    assert!(r.extra.is_empty());
    assert_eq!(
        convert(
            &json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}], "ip4": 1}),
            "0.2.0"
        )
        .unwrap()["ip4"]["ip"],
        "10.0.0.2/24"
    );
    // Nor can a caller's `extra` override what the model writes.
    let mut r = CniResult::new("1.1.0");
    r.extra.insert("ips".into(), json!("bogus"));
    r.extra.insert("cniVersion".into(), json!("9.9.9"));
    assert_eq!(r.to_value("1.0.0").unwrap(), json!({"cniVersion": "1.0.0"}));
}

#[test]
fn empty_dns_is_omitted_at_1_x_and_printed_at_040_and_020() {
    let v = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}});
    assert!(convert(&v, "1.1.0").unwrap().get("dns").is_none());
    assert_eq!(convert(&v, "0.4.0").unwrap()["dns"], json!({}));
    assert_eq!(convert(&v, "0.3.0").unwrap()["dns"], json!({}));
    assert_eq!(convert(&v, "0.2.0").unwrap()["dns"], json!({}));
    // An empty domain counts as empty, as Go's omitempty string does.
    let v = json!({"cniVersion": "1.1.0", "dns": {"domain": ""}});
    assert!(convert(&v, "1.0.0").unwrap().get("dns").is_none());
}

#[test]
fn up_conversion_from_020_concatenates_routes_without_interfaces() {
    let v = json!({
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.1.0.0/16", "gw": "10.0.0.254", "mtu": 1300}]},
        "ip6": {"ip": "2001:db8::2/64", "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
        "dns": {"nameservers": ["10.0.0.1"]}
    });
    let out = convert(&v, "0.3.1").unwrap();
    assert_eq!(
        out,
        json!({
            "cniVersion": "0.3.1",
            "ips": [
                {"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
                {"version": "6", "address": "2001:db8::2/64"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "10.1.0.0/16", "gw": "10.0.0.254", "mtu": 1300},
                {"dst": "::/0", "gw": "2001:db8::1"}
            ],
            "dns": {"nameservers": ["10.0.0.1"]}
        })
    );
}

#[test]
fn missing_version_detects_shape_by_keys() {
    let legacy = parse(json!({"ip4": {"ip": "10.0.0.2/24"}}));
    assert_eq!(legacy.cni_version, "");
    assert_eq!(legacy.ips[0].address.to_string(), "10.0.0.2/24");
    let current = parse(json!({"ips": [{"address": "10.0.0.3/24"}]}));
    assert_eq!(current.ips[0].address.to_string(), "10.0.0.3/24");
    let nulled = parse(json!({"cniVersion": null, "ips": [{"address": "10.0.0.4/24"}]}));
    assert_eq!(nulled.ips.len(), 1);
    // Both present: `ips` wins, as a 0.3+ result it is.
    let both = parse(json!({"ips": [{"address": "10.0.0.5/24"}], "ip4": {"ip": "10.0.0.6/24"}}));
    assert_eq!(both.ips.len(), 1);
    assert_eq!(both.ips[0].address.to_string(), "10.0.0.5/24");
}

#[test]
fn newer_version_is_read_as_1_x() {
    let r = parse(json!({"cniVersion": "1.2.0", "ips": [{"address": "10.0.0.2/24"}]}));
    assert_eq!(r.cni_version, "1.2.0");
    assert_eq!(r.ips.len(), 1);
}

#[test]
fn malformed_input_is_code_6() {
    for bad in [
        json!([]),
        json!("0.4.0"),
        json!({"cniVersion": 4}),
        json!({"cniVersion": "four"}),
        json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.300/24"}]}),
        json!({"cniVersion": "1.1.0", "ips": [{"gateway": "10.0.0.1"}]}),
        json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "interface": -1}]}),
        json!({"cniVersion": "1.1.0", "routes": {"dst": "0.0.0.0/0"}}),
        json!({"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "gw": "nope"}]}),
        json!({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}}),
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}, "dns": "10.0.0.1"}),
    ] {
        assert_eq!(code(CniResult::from_value(&bad)), 6, "{bad}");
    }
    assert_eq!(code(CniResult::from_slice(b"{\"cniVersion\":")), 6);
}

#[test]
fn go_leniencies_are_accepted() {
    let r = parse(json!({
        "cniVersion": "0.4.0",
        "interfaces": null,
        "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": ""}],
        "routes": [{"dst": "0.0.0.0/0", "gw": ""}],
        "dns": {"nameservers": null}
    }));
    assert_eq!(r.ips[0].gateway, None);
    assert_eq!(r.routes[0].gw, None);
    assert!(r.interfaces.is_empty() && r.dns.is_empty());
    let r = parse(json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "routes": null}, "dns": null}));
    assert_eq!(r.ips.len(), 1);
}

#[test]
fn unsupported_output_version_is_code_1() {
    let r = parse(dual_stack());
    for v in ["0.5.0", "1.1", "2.0.0", "latest"] {
        assert_eq!(code(r.to_value(v)), 1, "{v}");
    }
}

#[test]
fn empty_output_version_means_0_1_0() {
    let out = parse(dual_stack()).to_value("").unwrap();
    assert_eq!(out["cniVersion"], "0.1.0");
    assert!(out.get("ip4").is_some());
}

#[test]
fn go_omitempty_rules_for_zero_and_empty_values() {
    let mut r = CniResult::new("1.1.0");
    r.interfaces.push(Interface {
        name: "eth0".into(),
        mac: Some(String::new()),
        mtu: Some(0),
        ..Interface::default()
    });
    let mut route = Route::new("0.0.0.0/0".parse().unwrap(), None);
    route.mtu = Some(0);
    route.table = Some(0);
    r.routes.push(route);
    assert_eq!(
        r.to_value("1.1.0").unwrap(),
        json!({"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}], "routes": [{"dst": "0.0.0.0/0", "table": 0}]})
    );
}

#[test]
fn helpers_build_a_plugin_result() {
    let mut r = CniResult::new("1.0.0");
    let host = r.push_interface(Interface::new("veth1234abcd"));
    let eth0 = r.push_interface(Interface {
        sandbox: Some("/var/run/netns/c1".into()),
        ..Interface::new("eth0")
    });
    assert_eq!((host, eth0), (0, 1));
    for address in ["fd00::2/64", "10.0.0.2/24", "10.0.1.2/24"] {
        r.ips.push(IpConfig {
            interface: Some(eth0),
            address: address.parse().unwrap(),
            gateway: None,
        });
    }
    let v4: Vec<_> = r.ips_v4().map(|ip| ip.address.to_string()).collect();
    assert_eq!(v4, ["10.0.0.2/24", "10.0.1.2/24"]);
    assert_eq!(r.ips_v6().count(), 1);
    assert_eq!(r.cni_version, "1.0.0");
}
