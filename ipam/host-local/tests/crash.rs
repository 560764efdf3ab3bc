//! A plugin killed at any point leaves a store that both implementations
//! read correctly: no half-written reservation, no duplicate, and the next
//! call (ours or Go's) sees exactly what is on disk.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

fn net(dir: &DataDir) -> Value {
    conf(
        "1.0.0",
        "crash",
        dir,
        json!({"ranges": [[{"subnet": "10.7.0.0/24"}], [{"subnet": "2001:db8:7::/64"}]]}),
    )
}

/// Every reservation is whole, and no address belongs to two attachments'
/// results; returns the owners present.
fn assert_consistent(dir: &DataDir) -> BTreeSet<String> {
    let mut owners = BTreeSet::new();
    for (ip, content) in dir.reservations("crash") {
        let (id, ifname) = content
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("{ip}: torn content {content:?}"));
        assert!(!id.is_empty() && ifname == "eth0", "{ip}: {content:?}");
        owners.insert(id.to_string());
    }
    owners
}

#[test]
fn killed_at_each_step_of_add_and_del_leaves_a_consistent_store() {
    for point in ["after-link", "after-index", "before-seal"] {
        let dir = DataDir::new("crash-add");
        let c = net(&dir);
        Call::new(OURS, "ADD", "a").run(&c).ok();
        let r = Call::new(OURS, "ADD", "victim")
            .env("RCNI_HOST_LOCAL_CRASH_AT", point)
            .run(&c);
        assert!(!r.success(), "{point}: the hook must have fired");
        assert_consistent(&dir);
        // The next calls see the truth: a new container gets fresh addresses...
        let b = addresses(&Call::new(OURS, "ADD", "b").run(&c).ok());
        let held: Vec<String> = dir
            .reservations("crash")
            .into_iter()
            .filter(|(_, o)| o == "victim\r\neth0")
            .map(|(ip, _)| ip)
            .collect();
        for a in &b {
            assert!(
                !held.iter().any(|h| a.starts_with(&format!("{h}/"))),
                "{point}: {a} is also the victim's"
            );
        }
        // ...CHECK agrees with the files, and DEL frees whatever the victim got.
        let check = Call::new(OURS, "CHECK", "victim").run(&c);
        assert_eq!(check.success(), !held.is_empty(), "{point}");
        for id in ["a", "b", "victim"] {
            Call::new(OURS, "DEL", id).run(&c).ok();
        }
        assert!(dir.reservations("crash").is_empty(), "{point}");
        let files = dir.files("crash");
        assert!(
            !files
                .iter()
                .any(|f| f.starts_with(".rcni-") && f != ".rcni-index"),
            "{point}: {files:?}"
        );
    }
    for point in ["after-unlink", "before-seal"] {
        let dir = DataDir::new("crash-del");
        let c = net(&dir);
        Call::new(OURS, "ADD", "a").run(&c).ok();
        Call::new(OURS, "ADD", "victim").run(&c).ok();
        let r = Call::new(OURS, "DEL", "victim")
            .env("RCNI_HOST_LOCAL_CRASH_AT", point)
            .run(&c);
        assert!(!r.success(), "{point}");
        assert_consistent(&dir);
        // The DEL is repeated by the runtime and finishes the job.
        Call::new(OURS, "DEL", "victim").run(&c).ok();
        assert_eq!(
            assert_consistent(&dir),
            BTreeSet::from(["a".to_string()]),
            "{point}"
        );
        Call::new(OURS, "CHECK", "a").run(&c).ok();
        let r = Call::new(OURS, "ADD", "victim").run(&c).ok();
        assert_eq!(addresses(&r).len(), 2);
    }
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_store() {
    let dir = DataDir::new("sigkill");
    let c = net(&dir);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut killed = 0;
    for i in 0..60 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = format!("k{i}");
        let verb = if i % 3 == 2 { "DEL" } else { "ADD" };
        let target = if verb == "DEL" {
            format!("k{}", i - 1)
        } else {
            id.clone()
        };
        let call = Call::new(OURS, verb, &target);
        let mut child = call.command(&c).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(c.to_string().as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % 3000));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            killed += 1;
        }
        assert_consistent(&dir);
    }
    eprintln!("{killed} of 60 calls were killed before they ended");
    // Every owner on disk is found by CHECK; DEL of everything leaves nothing.
    let owners = assert_consistent(&dir);
    for id in &owners {
        Call::new(OURS, "CHECK", id).run(&c).ok();
    }
    let r = Call::new(OURS, "ADD", "last").run(&c).ok();
    let mine: BTreeSet<String> = addresses(&r).into_iter().collect();
    assert_eq!(mine.len(), 2);
    for id in owners.iter().chain(["last".to_string()].iter()) {
        Call::new(OURS, "DEL", id).run(&c).ok();
    }
    assert!(dir.reservations("crash").is_empty());
    if go_available() {
        // Go finds nothing of ours left either.
        assert!(
            Call::new(GO, "CHECK", "last")
                .run(&c)
                .err()
                .1
                .contains("Failed to find")
        );
    }
}
