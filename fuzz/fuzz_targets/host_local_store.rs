//! host-local's store files, as another writer (the Go plugin, a crash, a
//! hand edit) may leave them: reservation files (`containerid\r\nifname`, a
//! bare legacy ID, anything), `last_reserved_ip.<n>`, and entries of any name.
//!
//! Input: `content` alone, or `name \0 content`. The content becomes the
//! reservation file `10.0.0.5` and `last_reserved_ip.0`; with a name, also
//! the entry of that name (an address in any spelling, `lock`,
//! `.rcni-index`, a temporary file's name, junk). Then the store is read
//! the ways the plugin reads it (`owner_of`, `last_reserved`, `scan`, a
//! rebuild of the index, `held_by`, `release_held_by`), checking that what
//! is read is what the files hold.
#![no_main]

mod common;

use host_local::store::{LAST_RESERVED_PREFIX, Store};
use host_local::{Reservations, addr};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

const NETWORK: &str = "net";

/// What the plugin makes of a reservation file's bytes (Go's `TrimSpace`).
fn owner(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn check(data_dir: &Path, data: &[u8]) {
    let dir = data_dir.join(NETWORK);
    common::empty_dir(&dir);
    let (name, content) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            Some(common::component(Some(&data[..i]), "10.0.0.6")),
            &data[i + 1..],
        ),
        None => (None, data),
    };
    let five: IpAddr = "10.0.0.5".parse().expect("an address");
    std::fs::write(dir.join("10.0.0.5"), content).expect("write");
    std::fs::write(dir.join(format!("{LAST_RESERVED_PREFIX}0")), content).expect("write");
    if let Some(name) = name {
        // A name that is a directory already (none here) or otherwise
        // unwritable is simply not there.
        let _ = std::fs::write(dir.join(name), content);
    }
    let five_owner = owner(&std::fs::read(dir.join("10.0.0.5")).expect("read"));

    {
        let store = Store::open(data_dir, NETWORK, false)
            .expect("open the store")
            .expect("the store exists");
        assert_eq!(store.owner_of(five).expect("owner_of"), Some(five_owner.clone()));
        let text = std::fs::read(dir.join(format!("{LAST_RESERVED_PREFIX}0"))).expect("read");
        let last = store.last_reserved(0);
        let expected = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .map(addr::canonical);
        assert_eq!(last, expected, "last_reserved_ip.0 = {text:?}");
        if let Some(ip) = last {
            // What was read is written back as it is read again.
            store.set_last_reserved(1, ip).expect("set_last_reserved");
            assert_eq!(store.last_reserved(1), Some(ip));
        }
        let scanned = store.scan().expect("scan");
        let mut seen = HashSet::new();
        for (ip, who) in &scanned {
            assert!(seen.insert(*ip), "{ip} scanned twice");
            let file = ip.to_string();
            assert_eq!(
                addr::canonical(*ip).to_string(),
                file,
                "only canonical names are reservations"
            );
            assert_eq!(who, &owner(&std::fs::read(dir.join(&file)).expect("read")));
        }
        assert!(seen.contains(&five), "10.0.0.5 not scanned");
        assert!(
            std::fs::read_dir(&dir)
                .expect("list")
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .all(|n| !n.starts_with(".rcni-") || n == ".rcni-index"),
            "scan leaves no temporary file behind (names that are not UTF-8 are never ours)"
        );
    }

    // The index is rebuilt from these files; it must find what they hold.
    let mut res = Reservations::open(data_dir, NETWORK, false)
        .expect("open the reservations")
        .expect("the store exists");
    let held = res.held_by(&five_owner).expect("held_by");
    assert!(
        held.iter().any(|e| e.ip == five),
        "10.0.0.5 holds {five_owner:?} but the index does not say so"
    );
    assert_eq!(
        res.count(),
        res.entries().expect("entries").len() as u64,
        "count and entries differ"
    );
    let released = res.release_held_by(&five_owner).expect("release_held_by");
    assert_eq!(released, held.len());
    assert_eq!(res.owner_of(five).expect("owner_of"), None);
    assert!(res.held_by(&five_owner).expect("held_by").is_empty());
    res.close().expect("close");

    // Sealed: the next open uses the index as it is and agrees.
    let res = Reservations::open(data_dir, NETWORK, false)
        .expect("reopen")
        .expect("the store exists");
    assert!(res.held_by(&five_owner).expect("held_by").is_empty());
    res.close().expect("close");
}

fuzz_target!(|data: &[u8]| {
    check(common::scratch("host-local-store"), data);
});
