//! The result cache against entries in Go libcni's format: rcni reads what
//! a Go runtime cached (DEL, GC) and lists attachments as libcni does.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "fixtures/support.rs"]
mod support;

use cni::runtime::{CachedAttachment, GcAttachment, NetworkList, ResultCache, Runtime, RuntimeConf};
use serde_json::{Value, json};
use std::time::Duration;
use support::{FakePlugins, TempDir};

const GO_ENTRY: &str = include_str!("fixtures/libcni-cache-v1.json");
const GO_LIST: &str = include_str!("fixtures/libcni-conflist.json");

fn runtime(fp: &FakePlugins) -> Runtime {
    fp.result_plugin("fake-bridge", "{}");
    fp.result_plugin("fake-portmap", "{}");
    Runtime::new(vec![fp.bin()])
        .with_cache_dir(fp.cache())
        .with_timeout(Some(Duration::from_secs(20)))
}

fn put_go_entry(cache: &std::path::Path, name: &str, text: &str) {
    let dir = cache.join("results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn go_entry_parses_field_for_field() {
    let e = CachedAttachment::from_json(GO_ENTRY.as_bytes()).unwrap();
    assert_eq!(
        (
            e.network_name.as_str(),
            e.container_id.as_str(),
            e.ifname.as_str()
        ),
        ("gonet", "goctr", "eth0")
    );
    assert_eq!(e.config, GO_LIST.as_bytes());
    assert_eq!(e.cni_args.len(), 2);
    assert_eq!(e.capability_args["portMappings"][0]["hostPort"], 8080);
    // Writing it back gives the same JSON (key order aside).
    let ours: Value = serde_json::from_slice(&e.to_json().unwrap()).unwrap();
    assert_eq!(ours, serde_json::from_str::<Value>(GO_ENTRY).unwrap());
}

#[test]
fn del_uses_a_go_cached_result_as_prev_result() {
    let fp = FakePlugins::new("cache-del-go");
    let rt = runtime(&fp);
    put_go_entry(&fp.cache(), "gonet-goctr-eth0", GO_ENTRY);
    let list = NetworkList::from_bytes(GO_LIST).unwrap();
    rt.del_list(&list, &RuntimeConf::new("goctr", None, "eth0"))
        .unwrap();
    let calls = fp.calls();
    assert_eq!(calls.len(), 2);
    let prev = &calls[0].config()["prevResult"];
    assert_eq!(prev["ips"][0]["address"], "10.22.0.5/16");
    assert_eq!(prev["interfaces"][0]["mac"], "0a:58:0a:16:00:05");
    assert!(!fp.cache().join("results/gonet-goctr-eth0").exists());
}

#[test]
fn del_reads_a_legacy_bare_result_file() {
    let fp = FakePlugins::new("cache-del-legacy");
    let rt = runtime(&fp);
    put_go_entry(
        &fp.cache(),
        "gonet-old-eth0",
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.22.0.9/16"}]}"#,
    );
    let list = NetworkList::from_bytes(GO_LIST).unwrap();
    rt.del_list(&list, &RuntimeConf::new("old", None, "eth0"))
        .unwrap();
    assert_eq!(
        fp.calls()[0].config()["prevResult"]["ips"][0]["address"],
        "10.22.0.9/16"
    );
}

#[test]
fn cached_result_is_converted_to_the_list_version() {
    let fp = FakePlugins::new("cache-convert");
    let rt = runtime(&fp);
    let entry = GO_ENTRY.replace(
        r#""result":{"cniVersion":"1.0.0""#,
        r#""result":{"cniVersion":"0.4.0""#,
    );
    let entry = entry.replace(r#""interface":0}"#, r#""interface":0,"version":"4"}"#);
    put_go_entry(&fp.cache(), "gonet-goctr-eth0", &entry);
    let list = NetworkList::from_bytes(GO_LIST).unwrap();
    let cached = rt
        .cached_result(&list, &RuntimeConf::new("goctr", None, "eth0"))
        .unwrap()
        .unwrap();
    assert_eq!(cached.ips[0].address.to_string(), "10.22.0.5/16");
    rt.del_list(&list, &RuntimeConf::new("goctr", None, "eth0"))
        .unwrap();
    let prev = &fp.calls()[0].config()["prevResult"];
    assert_eq!(prev["cniVersion"], "1.0.0");
    assert!(
        prev["ips"][0].get("version").is_none(),
        "1.0.0 has no ips[].version: {prev}"
    );
}

#[test]
fn gc_dels_a_go_cached_attachment_with_its_cached_arguments() {
    let fp = FakePlugins::new("cache-gc-go");
    let rt = runtime(&fp);
    put_go_entry(&fp.cache(), "gonet-goctr-eth0", GO_ENTRY);
    let list = NetworkList::from_bytes(GO_LIST.replace("1.0.0", "1.1.0")).unwrap();
    rt.gc_list(&list, Some(&[])).unwrap();
    let calls = fp.calls();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("fake-portmap", "DEL"),
            ("fake-bridge", "DEL"),
            ("fake-bridge", "GC"),
            ("fake-portmap", "GC")
        ]
    );
    let del = &calls[0];
    assert_eq!(del.env("CNI_CONTAINERID"), Some("goctr"));
    assert_eq!(del.env("CNI_NETNS"), Some("/var/run/netns/goctr"));
    assert_eq!(del.env("CNI_ARGS"), Some("IgnoreUnknown=1;K8S_POD_NAME=web-0"));
    let conf = del.config();
    assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(conf["prevResult"]["ips"][0]["gateway"], "10.22.0.1");
    assert_eq!(calls[2].config()["cni.dev/valid-attachments"], json!([]));
    assert!(!fp.cache().join("results/gonet-goctr-eth0").exists());
}

#[test]
fn gc_keeps_valid_attachments() {
    let fp = FakePlugins::new("cache-gc-keep");
    let rt = runtime(&fp);
    put_go_entry(&fp.cache(), "gonet-goctr-eth0", GO_ENTRY);
    let list = NetworkList::from_bytes(GO_LIST.replace("1.0.0", "1.1.0")).unwrap();
    let valid = [GcAttachment {
        container_id: "goctr".into(),
        ifname: "eth0".into(),
    }];
    rt.gc_list(&list, Some(&valid)).unwrap();
    assert!(fp.calls().iter().all(|c| c.command == "GC"));
    assert!(fp.cache().join("results/gonet-goctr-eth0").exists());
}

#[test]
fn attachments_skip_foreign_and_broken_files_and_are_sorted() {
    let dir = TempDir::named("rcni-cache-list");
    let cache = ResultCache::new(dir.path());
    assert!(
        cache.attachments(None, None).unwrap().is_empty(),
        "no results dir yet"
    );
    put_go_entry(dir.path(), "gonet-goctr-eth0", GO_ENTRY);
    put_go_entry(dir.path(), "gonet-broken-eth0", "{");
    put_go_entry(dir.path(), "gonet-legacy-eth0", r#"{"cniVersion":"0.4.0"}"#);
    put_go_entry(
        dir.path(),
        ".gonet-goctr-eth1.tmp-1-1",
        &GO_ENTRY.replace("\"eth0\"", "\"eth1\""),
    );
    let other = CachedAttachment {
        network_name: "other".into(),
        container_id: "a".into(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    cache.add(&other).unwrap();
    let mut second = other.clone();
    second.network_name = "gonet".into();
    second.container_id = "aaa".into();
    cache.add(&second).unwrap();

    let all: Vec<String> = cache
        .attachments(None, None)
        .unwrap()
        .into_iter()
        .map(|a| a.network_name + "/" + &a.container_id)
        .collect();
    assert_eq!(all, ["gonet/aaa", "gonet/goctr", "other/a"]);
    assert_eq!(cache.attachments(Some("gonet"), Some("goctr")).unwrap().len(), 1);
    assert_eq!(cache.attachments(Some("other"), None).unwrap().len(), 1);
}

#[test]
fn add_replaces_an_entry_atomically() {
    let dir = TempDir::named("rcni-cache-replace");
    let cache = ResultCache::new(dir.path());
    let mut e = CachedAttachment {
        network_name: "n".into(),
        container_id: "c".into(),
        ifname: "eth0".into(),
        result: Some(json!({"cniVersion": "1.0.0"})),
        ..Default::default()
    };
    cache.add(&e).unwrap();
    e.result = Some(json!({"cniVersion": "1.1.0"}));
    cache.add(&e).unwrap();
    assert_eq!(cache.get("n", "c", "eth0").unwrap().unwrap(), e);
    assert_eq!(std::fs::read_dir(cache.results_dir()).unwrap().count(), 1);
    cache.delete("n", "c", "eth0").unwrap();
    cache.delete("n", "c", "eth0").unwrap();
    assert!(cache.get("n", "c", "eth0").unwrap().is_none());
}

#[test]
fn result_is_read_even_when_the_cached_config_is_damaged() {
    let dir = TempDir::named("rcni-cache-damaged");
    let cache = ResultCache::new(dir.path());
    put_go_entry(
        dir.path(),
        "gonet-goctr-eth0",
        &GO_ENTRY.replace(r#""config":"eyJ"#, r#""config":"!!!"#),
    );
    assert!(cache.get("gonet", "goctr", "eth0").is_err());
    let result = cache.get_result("gonet", "goctr", "eth0").unwrap().unwrap();
    assert_eq!(result["ips"][0]["address"], "10.22.0.5/16");
}
