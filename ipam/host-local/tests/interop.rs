//! The Go plugin and ours on one store directory: Debian's Go host-local
//! 1.1.1 (spec up to 1.0.0) in `/usr/lib/cni`. Skipped when it is absent.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::thread;

fn dual(dir: &DataDir) -> Value {
    conf(
        "1.0.0",
        "mixed",
        dir,
        json!({"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "2001:db8:9::/64"}]]}),
    )
}

fn parallel(calls: Vec<(&'static str, &'static str, String)>, c: &Value) -> Vec<(String, Outcome)> {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(bin, verb, id)| {
            let c = c.clone();
            thread::spawn(move || {
                let r = Call::new(bin, verb, &id).run(&c);
                (id, r)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn sixteen_go_and_sixteen_rcni_adds_in_parallel_then_dels_by_the_other_leave_nothing() {
    if !go_available() {
        panic!("missing prerequisite: {GO} not installed (scripts/test.sh installs what the tests need)");
    }
    let dir = DataDir::new("mixed");
    let c = dual(&dir);
    for round in 0..3 {
        let mut calls = Vec::new();
        for i in 0..16 {
            calls.push((GO, "ADD", format!("go-{round}-{i}")));
            calls.push((OURS, "ADD", format!("rs-{round}-{i}")));
        }
        let replies = parallel(calls, &c);
        let mut seen = BTreeSet::new();
        for (id, r) in replies {
            let r = r.ok();
            let addrs = addresses(&r);
            assert_eq!(addrs.len(), 2, "{id}: {r}");
            for a in addrs {
                assert!(seen.insert(a.clone()), "{a} handed out twice");
                let ip = a.split('/').next().unwrap().to_string();
                assert_eq!(dir.reservations("mixed")[&ip], format!("{id}\r\neth0"));
            }
        }
        assert_eq!(dir.reservations("mixed").len(), 64);

        // Each implementation sees the other's reservations.
        Call::new(OURS, "CHECK", &format!("go-{round}-0")).run(&c).ok();
        Call::new(GO, "CHECK", &format!("rs-{round}-0")).run(&c).ok();

        // DELs by the other implementation, in parallel.
        let mut calls = Vec::new();
        for i in 0..16 {
            calls.push((OURS, "DEL", format!("go-{round}-{i}")));
            calls.push((GO, "DEL", format!("rs-{round}-{i}")));
        }
        for (id, r) in parallel(calls, &c) {
            assert!(r.success(), "DEL {id}: {}", r.stdout);
        }
        let left = dir.reservations("mixed");
        assert!(left.is_empty(), "round {round}: left behind {left:?}");
    }
    let files = dir.files("mixed");
    assert!(
        files
            .iter()
            .all(|f| f == "lock" || f.starts_with("last_reserved_ip.") || f == ".rcni-index"),
        "{files:?}"
    );
}

#[test]
fn round_robin_continues_across_implementations() {
    if !go_available() {
        panic!("missing prerequisite: {GO} not installed (scripts/test.sh installs what the tests need)");
    }
    let dir = DataDir::new("rr-mixed");
    let c = conf("1.0.0", "mixed", &dir, json!({"subnet": "10.9.0.0/24"}));
    let order = [(OURS, "a"), (GO, "b"), (OURS, "c"), (GO, "d"), (OURS, "e")];
    let got: Vec<String> = order
        .iter()
        .map(|(bin, id)| addresses(&Call::new(bin, "ADD", id).run(&c).ok())[0].clone())
        .collect();
    assert_eq!(
        got,
        [
            "10.9.0.2/24",
            "10.9.0.3/24",
            "10.9.0.4/24",
            "10.9.0.5/24",
            "10.9.0.6/24"
        ]
    );
    // Go refuses a duplicate of ours and we refuse a duplicate of Go's, with the same words.
    let (_, ours) = Call::new(OURS, "ADD", "b").run(&c).err();
    let (_, go) = Call::new(GO, "ADD", "a").run(&c).err();
    assert_eq!(
        ours,
        "failed to allocate for range 0: 10.9.0.3 has been allocated to b, duplicate allocation is not allowed"
    );
    assert_eq!(
        go,
        "failed to allocate for range 0: 10.9.0.2 has been allocated to a, duplicate allocation is not allowed"
    );
    // Same messages for the same bad configs.
    for bad in [
        json!({"subnet": "10.9.0.1/24"}),
        json!({"subnet": "10.9.0.0/31"}),
        json!({"subnet": "10.9.0.0/24", "rangeStart": "10.8.0.1"}),
        json!({"ranges": [[{"subnet": "10.0.0.0/8"}], [{"subnet": "10.9.0.0/16"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/8"}, {"subnet": "2001:db8::/64"}]]}),
        json!({}),
    ] {
        let bc = conf("1.0.0", "mixed", &dir, bad.clone());
        let (_, ours) = Call::new(OURS, "ADD", "z").run(&bc).err();
        let (_, go) = Call::new(GO, "ADD", "z").run(&bc).err();
        assert_eq!(ours, go, "{bad}");
    }
}
