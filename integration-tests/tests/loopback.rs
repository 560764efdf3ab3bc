//! The loopback plugin against the real kernel, every bad input, and side
//! by side with Debian's Go loopback.

use rcni_test_support::{Invocation, Netns, Outcome, exec, go_plugin, rcni_plugin};
use serde_json::{Value, json};

const VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn config(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lo-net", "type": "loopback"})
}

fn ours(inv: &Invocation) -> Outcome {
    exec(&rcni_plugin("loopback"), inv)
}

fn inv(command: &str, ns: &Netns, version: &str) -> Invocation {
    Invocation::new(
        command,
        "ctr-1",
        &ns.path().display().to_string(),
        "eth0",
        &config(version),
    )
}

#[test]
#[ignore = "needs root"]
fn add_brings_lo_up_and_reports_its_addresses_in_every_version() {
    for v in VERSIONS {
        let ns = Netns::new();
        assert!(!ns.link_is_up("lo"));
        let out = ours(&inv("ADD", &ns, v));
        out.assert_ok();
        assert!(ns.link_is_up("lo"), "{v}: lo is not up");
        let r = &out.json;
        assert_eq!(r["cniVersion"], *v);
        if *v == "0.1.0" || *v == "0.2.0" {
            assert_eq!(r["ip4"]["ip"], "127.0.0.1/8", "{v}: {r}");
            assert_eq!(r["ip6"]["ip"], "::1/128", "{v}: {r}");
            assert!(r.get("interfaces").is_none());
        } else {
            assert_eq!(r["interfaces"][0]["name"], "lo");
            assert_eq!(r["interfaces"][0]["mac"], "00:00:00:00:00:00");
            assert_eq!(r["interfaces"][0]["sandbox"], ns.path().display().to_string());
            assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
            assert_eq!(r["ips"][0]["interface"], 0);
            assert_eq!(r["ips"][1]["address"], "::1/128");
            let has_version = r["ips"][0].get("version").is_some();
            assert_eq!(has_version, v.starts_with("0."), "{v}: {r}");
        }
    }
}

#[test]
#[ignore = "needs root"]
fn add_passes_prev_result_through() {
    let ns = Netns::new();
    let mut c = config("1.0.0");
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.222.1.5/24", "gateway": "10.222.1.1"}]});
    c["prevResult"] = prev.clone();
    let mut i = inv("ADD", &ns, "1.0.0");
    i.stdin = serde_json::to_vec(&c).unwrap();
    let out = ours(&i);
    out.assert_ok();
    assert_eq!(out.json, prev);
    assert!(ns.link_is_up("lo"));
}

#[test]
#[ignore = "needs root"]
fn del_brings_lo_down_and_is_idempotent() {
    let ns = Netns::new();
    ours(&inv("ADD", &ns, "1.0.0")).assert_ok();
    ours(&inv("DEL", &ns, "1.0.0")).assert_ok();
    assert!(!ns.link_is_up("lo"));
    let again = ours(&inv("DEL", &ns, "1.0.0"));
    again.assert_ok();
    assert!(again.stdout.is_empty(), "DEL prints nothing: {}", again.stdout);
}

#[test]
#[ignore = "needs root"]
fn del_succeeds_when_the_netns_is_empty_or_gone() {
    let ns = Netns::new();
    let mut i = inv("DEL", &ns, "1.0.0");
    i.netns = None;
    ours(&i).assert_ok();
    i.netns = Some("/var/run/netns/rcni-does-not-exist".into());
    ours(&i).assert_ok();
}

#[test]
#[ignore = "needs root"]
fn check_passes_when_up_and_fails_when_down() {
    let ns = Netns::new();
    let check = inv("CHECK", &ns, "1.0.0");
    let out = ours(&check);
    assert_ne!(out.status, 0, "CHECK must fail while lo is down");
    assert!(
        out.json["msg"].as_str().unwrap().contains("down"),
        "{}",
        out.stdout
    );
    ours(&inv("ADD", &ns, "1.0.0")).assert_ok();
    ours(&check).assert_ok();
}

#[test]
#[ignore = "needs root"]
fn gc_and_status_succeed_and_change_nothing() {
    let ns = Netns::new();
    for verb in ["GC", "STATUS"] {
        let i = Invocation {
            command: Some(verb.into()),
            path: Some("/usr/lib/cni".into()),
            stdin: serde_json::to_vec(&config("1.1.0")).unwrap(),
            ..Default::default()
        };
        let out = ours(&i);
        out.assert_ok();
        assert!(out.stdout.is_empty());
    }
    assert!(!ns.link_is_up("lo"));
}

#[test]
fn version_lists_every_spec_version() {
    let out = ours(&Invocation {
        command: Some("VERSION".into()),
        ..Default::default()
    });
    out.assert_ok();
    assert_eq!(out.json["cniVersion"], "1.1.0");
    assert_eq!(out.json["supportedVersions"], json!(VERSIONS));
}

/// One bad input and the code it must get.
struct BadInput {
    what: &'static str,
    code: u64,
    /// Whether Go's 1.1.1 loopback gives the same code (spec 1.1.0 features
    /// and the netns checks it lacks are ours alone).
    go_agrees: bool,
    mutate: fn(&mut Invocation),
}

fn bad_inputs() -> Vec<BadInput> {
    fn set_stdin(i: &mut Invocation, s: &str) {
        i.stdin = s.as_bytes().to_vec();
    }
    vec![
        BadInput {
            what: "CNI_COMMAND unset",
            code: 4,
            go_agrees: false,
            mutate: |i| i.command = None,
        },
        BadInput {
            what: "unknown CNI_COMMAND",
            code: 4,
            go_agrees: true,
            mutate: |i| i.command = Some("FROB".into()),
        },
        BadInput {
            what: "missing CNI_CONTAINERID",
            code: 4,
            go_agrees: true,
            mutate: |i| i.container_id = None,
        },
        BadInput {
            what: "missing CNI_NETNS",
            code: 4,
            go_agrees: true,
            mutate: |i| i.netns = None,
        },
        BadInput {
            what: "missing CNI_IFNAME",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = None,
        },
        BadInput {
            what: "missing CNI_PATH",
            code: 4,
            go_agrees: true,
            mutate: |i| i.path = None,
        },
        BadInput {
            what: "container id with a space",
            code: 4,
            go_agrees: true,
            mutate: |i| i.container_id = Some("a b".into()),
        },
        BadInput {
            what: "container id starting with a dash",
            code: 4,
            go_agrees: true,
            mutate: |i| i.container_id = Some("-abc".into()),
        },
        BadInput {
            what: "interface name of 16 bytes",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = Some("a234567890abcdef".into()),
        },
        BadInput {
            what: "interface name '..'",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = Some("..".into()),
        },
        BadInput {
            what: "interface name with '/'",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = Some("a/b".into()),
        },
        BadInput {
            what: "interface name with ':'",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = Some("a:b".into()),
        },
        BadInput {
            what: "interface name with white space",
            code: 4,
            go_agrees: true,
            mutate: |i| i.ifname = Some("a b".into()),
        },
        BadInput {
            what: "invalid JSON",
            code: 6,
            go_agrees: true,
            mutate: |i| set_stdin(i, "{\"cniVersion\":"),
        },
        BadInput {
            what: "empty stdin",
            code: 6,
            go_agrees: true,
            mutate: |i| set_stdin(i, ""),
        },
        BadInput {
            what: "unsupported version",
            code: 1,
            go_agrees: true,
            mutate: |i| set_stdin(i, r#"{"cniVersion":"0.5.0","name":"n","type":"loopback"}"#),
        },
        BadInput {
            what: "network name with a slash",
            code: 7,
            go_agrees: false,
            mutate: |i| set_stdin(i, r#"{"cniVersion":"1.0.0","name":"a/b","type":"loopback"}"#),
        },
        BadInput {
            what: "missing network name",
            code: 7,
            go_agrees: false,
            mutate: |i| set_stdin(i, r#"{"cniVersion":"1.0.0","type":"loopback"}"#),
        },
        BadInput {
            what: "CHECK with a 0.3.1 config",
            code: 1,
            go_agrees: true,
            mutate: |i| {
                i.command = Some("CHECK".into());
                set_stdin(i, r#"{"cniVersion":"0.3.1","name":"n","type":"loopback"}"#)
            },
        },
        BadInput {
            what: "GC with a 1.0.0 config",
            code: 1,
            go_agrees: false,
            mutate: |i| i.command = Some("GC".into()),
        },
        BadInput {
            what: "STATUS with a 0.4.0 config",
            code: 1,
            go_agrees: false,
            mutate: |i| {
                i.command = Some("STATUS".into());
                set_stdin(i, r#"{"cniVersion":"0.4.0","name":"n","type":"loopback"}"#)
            },
        },
        BadInput {
            what: "CNI_NETNS is a regular file",
            code: 8,
            go_agrees: false,
            mutate: |i| i.netns = Some("/etc/hostname".into()),
        },
        BadInput {
            what: "CNI_NETNS is a procfs file",
            code: 8,
            go_agrees: false,
            mutate: |i| i.netns = Some("/proc/self/status".into()),
        },
        BadInput {
            what: "CNI_NETNS does not exist on ADD",
            code: 8,
            go_agrees: false,
            mutate: |i| i.netns = Some("/var/run/netns/rcni-does-not-exist".into()),
        },
        BadInput {
            what: "CNI_NETNS is the plugin's own namespace",
            code: 8,
            go_agrees: false,
            mutate: |i| i.netns = Some("/proc/self/ns/net".into()),
        },
        BadInput {
            what: "CNI_NETNS is the runtime's (host) namespace on DEL",
            code: 8,
            go_agrees: false,
            mutate: |i| {
                i.command = Some("DEL".into());
                i.netns = Some(format!("/proc/{}/ns/net", std::process::id()))
            },
        },
    ]
}

#[test]
#[ignore = "needs root"]
fn every_bad_input_gets_its_code_and_changes_nothing() {
    let ns = Netns::new();
    for bad in bad_inputs() {
        let mut i = inv("ADD", &ns, "1.0.0");
        (bad.mutate)(&mut i);
        let out = ours(&i);
        assert_ne!(out.status, 0, "{}: succeeded", bad.what);
        assert_eq!(
            out.code(),
            Some(bad.code),
            "{}: {} {}",
            bad.what,
            out.stdout,
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}: {}", bad.what, out.stderr);
        assert!(!ns.link_is_up("lo"), "{}: lo was touched", bad.what);
    }
    // The host's own lo is never touched by the refused DEL above.
    assert!(host_lo_is_up());
}

fn host_lo_is_up() -> bool {
    let out = std::process::Command::new("ip")
        .args(["-j", "link", "show", "lo"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

#[test]
#[ignore = "needs root"]
fn netns_override_allows_acting_on_the_own_namespace() {
    // Run the plugin inside a throw-away namespace so "its own" namespace
    // is that one, never the host's.
    let ns = Netns::new();
    let bin = rcni_plugin("loopback");
    let run = |override_: Option<&str>| {
        let mut inv = Invocation::new(
            "ADD",
            "c",
            &ns.path().display().to_string(),
            "eth0",
            &config("1.1.0"),
        )
        .with_path("/usr/lib/cni")
        .with_env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        if let Some(v) = override_ {
            inv = inv.with_env("CNI_NETNS_OVERRIDE", v);
        }
        let out = inv.run_in(&ns, &bin);
        (out.exit_code(), out.json)
    };
    let (status, json) = run(None);
    assert_eq!(status, Some(1));
    assert_eq!(json["code"], 8);
    assert!(!ns.link_is_up("lo"));
    let (status, _) = run(Some("true"));
    assert_eq!(status, Some(0));
    assert!(ns.link_is_up("lo"));
}

/// Drops what Go 1.1.1 prints differently without a difference in meaning:
/// an empty `dns` object.
fn normalize(mut v: Value) -> Value {
    if v.get("dns")
        .is_some_and(|d| d.as_object().is_some_and(|o| o.is_empty()))
    {
        v.as_object_mut().unwrap().remove("dns");
    }
    v
}

#[test]
#[ignore = "needs root"]
fn same_results_and_codes_as_go_loopback() {
    let Some(go) = go_plugin("loopback") else {
        panic!(
            "missing prerequisite: /usr/lib/cni/loopback is not installed (scripts/test.sh installs what the tests need)"
        );
    };
    // Results: Go 1.1.1 speaks up to 1.0.0 and never converts its result
    // down (it prints the 1.0 shape for every version), so compare at 1.0.0.
    let (a, b) = (Netns::new(), Netns::new());
    let mine = ours(&inv("ADD", &a, "1.0.0"));
    let theirs = exec(&go, &inv("ADD", &b, "1.0.0"));
    mine.assert_ok();
    theirs.assert_ok();
    let sandbox = |v: &Value| v["interfaces"][0]["sandbox"].clone();
    assert_eq!(sandbox(&mine.json), a.path().display().to_string());
    let strip = |mut v: Value| {
        v["interfaces"][0]["sandbox"] = Value::Null;
        normalize(v)
    };
    assert_eq!(strip(mine.json.clone()), strip(theirs.json.clone()));
    assert_eq!(a.link_is_up("lo"), b.link_is_up("lo"));
    for verb in ["CHECK", "DEL"] {
        let (m, t) = (ours(&inv(verb, &a, "1.0.0")), exec(&go, &inv(verb, &b, "1.0.0")));
        assert_eq!(
            (m.status, m.stdout.is_empty()),
            (t.status, t.stdout.is_empty()),
            "{verb}"
        );
    }
    assert!(!a.link_is_up("lo") && !b.link_is_up("lo"));

    // Every version Go 1.1.1 speaks: the same addresses and interfaces. Go
    // prints the 1.0 shape whatever the version (it never converts down), so
    // its output is read as 1.0.0 and converted with our converter first.
    for v in &VERSIONS[..6] {
        let (a, b) = (Netns::new(), Netns::new());
        let mine = ours(&inv("ADD", &a, v));
        let theirs = exec(&go, &inv("ADD", &b, v));
        mine.assert_ok();
        theirs.assert_ok();
        let mut go_json = theirs.json.clone();
        go_json["cniVersion"] = json!("1.0.0");
        go_json["interfaces"][0]["sandbox"] = json!(a.path().display().to_string());
        let go_at_v = cni::result::convert(&go_json, v).unwrap();
        assert_eq!(normalize(mine.json.clone()), normalize(go_at_v), "{v}");
    }

    for v in &VERSIONS[..6] {
        for bad in bad_inputs().into_iter().filter(|b| b.go_agrees) {
            let ns = Netns::new();
            let mut i = inv("ADD", &ns, v);
            (bad.mutate)(&mut i);
            let (m, t) = (ours(&i), exec(&go, &i));
            assert_eq!(
                m.code(),
                t.code(),
                "{v} {}: ours {} go {}",
                bad.what,
                m.stdout,
                t.stdout
            );
            assert_eq!(m.status != 0, t.status != 0, "{v} {}", bad.what);
        }
    }
}

#[test]
#[ignore = "needs root"]
fn go_and_rcni_loopback_undo_each_other() {
    let Some(go) = go_plugin("loopback") else {
        panic!(
            "missing prerequisite: /usr/lib/cni/loopback is not installed (scripts/test.sh installs what the tests need)"
        );
    };
    let ns = Netns::new();
    exec(&go, &inv("ADD", &ns, "1.0.0")).assert_ok();
    ours(&inv("CHECK", &ns, "1.0.0")).assert_ok();
    ours(&inv("DEL", &ns, "1.0.0")).assert_ok();
    assert!(!ns.link_is_up("lo"));
    ours(&inv("ADD", &ns, "1.0.0")).assert_ok();
    exec(&go, &inv("DEL", &ns, "1.0.0")).assert_ok();
    assert!(!ns.link_is_up("lo"));
}
