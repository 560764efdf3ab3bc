//! Running conflists against fake plugin scripts: what each plugin gets on
//! stdin and in its environment, in which order, and what is cached.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "fixtures/support.rs"]
mod support;

use cni::Code;
use cni::runtime::{GcAttachment, NetworkList, Runtime, RuntimeConf};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::FakePlugins;

const BRIDGE_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/netns/c1"}],"ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":1}]}"#;
const PORTMAP_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/netns/c1"}],"ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":1}],"dns":{"nameservers":["10.22.0.1"]}}"#;

fn list(version: &str) -> NetworkList {
    NetworkList::from_bytes(format!(
        r#"{{"cniVersion":"{version}","name":"podnet","plugins":[
            {{"type":"fake-bridge","bridge":"cni0","ipam":{{"type":"host-local","subnet":"10.22.0.0/16"}}}},
            {{"type":"fake-portmap","capabilities":{{"portMappings":true,"bandwidth":false,"ips":true}},"snat":true}},
            {{"type":"fake-tuning"}}]}}"#
    ))
    .unwrap()
}

fn setup(tag: &str) -> (FakePlugins, Runtime) {
    let fp = FakePlugins::new(tag);
    fp.result_plugin("fake-bridge", BRIDGE_RESULT);
    fp.result_plugin("fake-portmap", PORTMAP_RESULT);
    fp.result_plugin("fake-tuning", PORTMAP_RESULT);
    let rt = Runtime::new(vec![fp.root.path().join("empty"), fp.bin()])
        .with_cache_dir(fp.cache())
        .with_timeout(Some(Duration::from_secs(20)));
    (fp, rt)
}

fn attachment(cid: &str) -> RuntimeConf {
    let mut rt = RuntimeConf::new(cid, Some("/run/netns/c1".into()), "eth0");
    rt.args = vec![("IgnoreUnknown".into(), "1".into())];
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    rt.capability_args
        .insert("bandwidth".into(), json!({"ingressRate": 1000}));
    rt.capability_args
        .insert("mac".into(), json!("aa:bb:cc:dd:ee:ff"));
    rt
}

#[test]
fn add_injects_name_version_prev_result_and_filtered_runtime_config() {
    let (fp, runtime) = setup("list-add");
    let l = list("1.0.0");
    let result = runtime.add_list(&l, &attachment("c1")).unwrap();
    assert_eq!(result.dns.nameservers, ["10.22.0.1"]);

    let calls = fp.calls();
    let order: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("fake-bridge", "ADD"),
            ("fake-portmap", "ADD"),
            ("fake-tuning", "ADD")
        ]
    );

    let bridge = calls[0].config();
    assert_eq!(bridge["name"], "podnet");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(
        bridge["ipam"]["subnet"], "10.22.0.0/16",
        "the plugin's own keys pass through"
    );
    assert!(
        bridge.get("prevResult").is_none(),
        "the first plugin gets no prevResult"
    );
    assert!(
        bridge.get("runtimeConfig").is_none(),
        "no capabilities, no runtimeConfig"
    );

    let portmap = calls[1].config();
    assert_eq!(
        portmap["prevResult"],
        serde_json::from_str::<Value>(BRIDGE_RESULT).unwrap()
    );
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
        "enabled and supplied only: bandwidth is disabled, ips not supplied, mac not declared"
    );
    assert_eq!(portmap["capabilities"]["portMappings"], true);
    assert_eq!(portmap["snat"], true);

    let tuning = calls[2].config();
    assert_eq!(tuning["prevResult"]["dns"]["nameservers"][0], "10.22.0.1");

    for c in &calls {
        assert_eq!(c.env("CNI_CONTAINERID"), Some("c1"));
        assert_eq!(c.env("CNI_IFNAME"), Some("eth0"));
        assert_eq!(c.env("CNI_NETNS"), Some("/run/netns/c1"));
        assert_eq!(c.env("CNI_ARGS"), Some("IgnoreUnknown=1"));
        let path = format!(
            "{}:{}",
            fp.root.path().join("empty").display(),
            fp.bin().display()
        );
        assert_eq!(c.env("CNI_PATH"), Some(path.as_str()));
    }
}

#[test]
fn add_caches_in_libcni_layout_with_private_modes() {
    let (fp, runtime) = setup("list-cache");
    let l = list("1.0.0");
    runtime.add_list(&l, &attachment("c1")).unwrap();
    let results = fp.cache().join("results");
    let file = results.join("podnet-c1-eth0");
    assert_eq!(
        std::fs::metadata(&results).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let entry: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["containerId"], "c1");
    assert_eq!(entry["ifName"], "eth0");
    assert_eq!(entry["networkName"], "podnet");
    assert_eq!(entry["netns"], "/run/netns/c1");
    assert_eq!(entry["cniArgs"], json!([["IgnoreUnknown", "1"]]));
    assert_eq!(entry["capabilityArgs"]["mac"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(entry["result"]["dns"]["nameservers"][0], "10.22.0.1");
    let config = cni::runtime::cache::base64_decode(entry["config"].as_str().unwrap()).unwrap();
    assert_eq!(config, l.bytes());
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&results).unwrap().count(), 1);
}

#[test]
fn del_runs_in_reverse_with_the_cached_result() {
    let (fp, runtime) = setup("list-del");
    let l = list("1.0.0");
    runtime.add_list(&l, &attachment("c1")).unwrap();
    runtime.del_list(&l, &attachment("c1")).unwrap();
    let calls = fp.calls();
    let dels: Vec<_> = calls.iter().filter(|c| c.command == "DEL").collect();
    let order: Vec<&str> = dels.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(order, ["fake-tuning", "fake-portmap", "fake-bridge"]);
    for d in &dels {
        assert_eq!(
            d.config()["prevResult"],
            serde_json::from_str::<Value>(PORTMAP_RESULT).unwrap()
        );
    }
    assert_eq!(
        dels[1].config()["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(!fp.cache().join("results/podnet-c1-eth0").exists());
}

#[test]
fn del_stops_at_the_first_failure_and_keeps_the_cache() {
    let (fp, runtime) = setup("list-delfail");
    let l = list("1.0.0");
    runtime.add_list(&l, &attachment("c1")).unwrap();
    fp.plugin(
        "fake-portmap",
        r#"if [ "$CNI_COMMAND" = DEL ]; then echo '{"code":11,"msg":"xtables lock"}'; exit 1; fi"#,
    );
    let e = runtime.del_list(&l, &attachment("c1")).unwrap_err();
    assert_eq!(e.code, Code::TRY_AGAIN_LATER);
    assert_eq!(
        e.msg,
        r#"plugin type="fake-portmap" failed (delete): xtables lock"#
    );
    assert!(
        !fp.calls()
            .iter()
            .any(|c| c.plugin == "fake-bridge" && c.command == "DEL")
    );
    assert!(
        fp.cache().join("results/podnet-c1-eth0").exists(),
        "a retried DEL still has prevResult"
    );
}

#[test]
fn check_gives_every_plugin_the_cached_result() {
    let (fp, runtime) = setup("list-check");
    let l = list("1.0.0");
    runtime.add_list(&l, &attachment("c1")).unwrap();
    runtime.check_list(&l, &attachment("c1")).unwrap();
    let checks: Vec<_> = fp.calls().into_iter().filter(|c| c.command == "CHECK").collect();
    assert_eq!(checks.len(), 3);
    assert!(
        checks
            .iter()
            .all(|c| c.config()["prevResult"]["dns"]["nameservers"][0] == "10.22.0.1")
    );
    assert_eq!(
        runtime
            .check_list(&list("0.3.1"), &attachment("c1"))
            .unwrap_err()
            .code,
        Code::INCOMPATIBLE_VERSION
    );
}

#[test]
fn gc_dels_stale_attachments_then_gcs_every_plugin_with_both_keys() {
    let (fp, runtime) = setup("list-gc");
    let l = list("1.1.0");
    runtime.add_list(&l, &attachment("live")).unwrap();
    runtime.add_list(&l, &attachment("stale")).unwrap();
    fp.plugin(
        "fake-bridge",
        r#"if [ "$CNI_COMMAND" = GC ]; then echo '{"code":5,"msg":"store locked"}'; exit 1; fi"#,
    );
    let valid = [GcAttachment {
        container_id: "live".into(),
        ifname: "eth0".into(),
    }];
    let e = runtime.gc_list(&l, Some(&valid)).unwrap_err();
    assert_eq!(e.code, Code::IO_FAILURE);
    assert!(
        e.msg.contains("failed to GC plugin fake-bridge: store locked"),
        "{e}"
    );

    let calls = fp.calls();
    let after_adds = &calls[6..];
    let seen: Vec<(&str, &str, Option<&str>)> = after_adds
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str(), c.env("CNI_CONTAINERID")))
        .collect();
    assert_eq!(
        seen,
        [
            ("fake-tuning", "DEL", Some("stale")),
            ("fake-portmap", "DEL", Some("stale")),
            ("fake-bridge", "DEL", Some("stale")),
            ("fake-bridge", "GC", Some("")),
            ("fake-portmap", "GC", Some("")),
            ("fake-tuning", "GC", Some("")),
        ]
    );
    let expected = json!([{"containerID": "live", "ifname": "eth0"}]);
    for gc in after_adds.iter().filter(|c| c.command == "GC") {
        let conf = gc.config();
        assert_eq!(conf["cni.dev/valid-attachments"], expected);
        assert_eq!(conf["cni.dev/attachments"], expected);
        assert_eq!(conf["cniVersion"], "1.1.0");
        assert!(conf.get("prevResult").is_none() && conf.get("runtimeConfig").is_none());
    }
    assert!(fp.cache().join("results/podnet-live-eth0").exists());
    assert!(!fp.cache().join("results/podnet-stale-eth0").exists());
}

#[test]
fn status_reports_the_plugins_code() {
    let (fp, runtime) = setup("list-status");
    fp.plugin(
        "fake-portmap",
        r#"echo '{"code":50,"msg":"no iptables"}'; exit 1"#,
    );
    let e = runtime.status_list(&list("1.1.0")).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (Code::UNAVAILABLE, "no iptables"));
    let statuses: Vec<_> = fp.calls().into_iter().map(|c| (c.plugin, c.command)).collect();
    assert_eq!(statuses.len(), 2);
    runtime.status_list(&list("1.0.0")).unwrap();
    assert_eq!(fp.calls().len(), 2, "no STATUS below 1.1.0");
}

#[test]
fn lists_run_concurrently_from_threads() {
    let (fp, runtime) = setup("list-threads");
    let l = list("1.0.0");
    std::thread::scope(|s| {
        for i in 0..4 {
            let (runtime, l) = (&runtime, &l);
            s.spawn(move || {
                let cid = format!("ctr{i}");
                runtime.add_list(l, &attachment(&cid)).unwrap();
                runtime.del_list(l, &attachment(&cid)).unwrap();
            });
        }
    });
    assert!(
        runtime
            .cache
            .attachments(Some("podnet"), None)
            .unwrap()
            .is_empty()
    );
    // The log numbering of the scripts is not safe across concurrent calls;
    // only count files.
    let calls = std::fs::read_dir(fp.log()).unwrap().count();
    assert!(calls > 0);
}
