//! The fixtures' own promises: unique names, and removal on drop even when
//! the test panics.

use super::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

#[test]
fn names_are_unique_and_carry_the_pid() {
    let pid = std::process::id();
    let (a, b) = (unique_name("rcni-x"), unique_name("rcni-x"));
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("rcni-x-{pid}-")), "{a}");
    let s = short_unique("rib");
    assert!(s.starts_with(&format!("rib{}x", pid % 100_000)), "{s}");
    assert!(s.len() <= 15, "{s}");
}

#[test]
fn temp_dir_is_removed_on_drop_even_on_panic() {
    let mut seen = None;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let d = TempDir::named("rcni-ts");
        std::fs::write(d.join("f"), "x").unwrap();
        seen = Some(d.path().to_path_buf());
        panic!("the test fails");
    }));
    assert!(r.is_err());
    let seen = seen.unwrap();
    assert!(!seen.exists(), "{} is left", seen.display());
}

#[test]
fn counters_are_left_out_and_differences_named() {
    assert_eq!(
        without_counters("counter packets 12 bytes 3400 masquerade"),
        "counter packets bytes masquerade"
    );
    assert_same_host("same", "a\nb\n", "a\nb\n");
    let r = catch_unwind(|| assert_same_host("differs", "a\nb\n", "a\nc\n"));
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("\"b\"") && msg.contains("\"c\""), "{msg}");
}

#[test]
fn a_plugin_reply_is_parsed() {
    let dir = TempDir::new();
    let plugin = dir.join("plugin");
    write_executable(
        &plugin,
        "#!/bin/sh\nn=$(wc -c)\necho \"{\\\"code\\\":7,\\\"msg\\\":\\\"$CNI_COMMAND $CNI_IFNAME $n\\\"}\"\nexit 1\n",
    );
    let out = Invocation::new("ADD", "c", "/nonexistent", "eth9", &serde_json::json!({"a": 1})).run(&plugin);
    assert_eq!(out.exit_code(), Some(1));
    assert_eq!(out.err(), (7, "ADD eth9 7".to_string()));
}

#[test]
#[ignore = "needs root"]
fn netns_is_deleted_on_drop_even_on_panic() {
    let mut seen = None;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let ns = Netns::with_lo_up();
        assert!(ns.link_is_up("lo"));
        seen = Some(ns.name().to_string());
        panic!("the test fails");
    }));
    assert!(r.is_err());
    let name = seen.unwrap();
    assert!(name.starts_with("rcni-t-"), "{name}");
    let list = sh("ip", &["netns", "list"]);
    assert!(
        !list.lines().any(|l| l.split(' ').next() == Some(&name)),
        "{name} is left: {list}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_new_netns_is_not_the_callers() {
    let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    let theirs = in_new_netns(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap());
    use std::os::unix::fs::MetadataExt;
    assert_ne!(ours.ino(), theirs.ino());
}
