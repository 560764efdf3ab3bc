//! Inputs the fuzz targets (fuzz/fuzz_targets/host_local_*.rs) found to
//! crash the plugin, kept as tests. Each is an `.rcni-index` that a bit
//! flip or another program could leave: opening it must refuse it (so the
//! index is rebuilt from the reservation files) or give an index whose
//! operations work; never a panic or an absurd allocation.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use host_local::index::{Index, key_of};
use host_local::store::{INDEX_FILE, Stamp};
use rcni_test_support::TempDir;
use std::net::IpAddr;

const STAMP: Stamp = Stamp {
    dev: 0xfd01,
    ino: 0x12_d687,
    sec: 0x6553_f100,
    nsec: 0x075b_cd15,
};

/// A header (not dirty, stamped `STAMP`) followed by `slots` empty slots
/// (or by `table_len` bytes when given).
fn index_file(slots: u64, live: u64, deleted: u64, table_len: Option<usize>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RCNIHL01");
    b.extend_from_slice(&slots.to_le_bytes());
    b.extend_from_slice(&live.to_le_bytes());
    b.extend_from_slice(&deleted.to_le_bytes());
    b.extend_from_slice(&STAMP.dev.to_le_bytes());
    b.extend_from_slice(&STAMP.ino.to_le_bytes());
    b.extend_from_slice(&STAMP.sec.to_le_bytes());
    b.extend_from_slice(&(STAMP.nsec as u32).to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.resize(64 + table_len.unwrap_or_else(|| slots as usize * 32), 0);
    b
}

/// Opens `file` as the index and, if accepted, uses it the way the plugin does.
fn open_and_use(tag: &str, file: &[u8]) -> Option<u64> {
    let d = TempDir::named(&format!("rcni-hl-fuzzreg-{tag}"));
    std::fs::write(d.join(INDEX_FILE), file).unwrap();
    let mut idx = Index::open_if_current(d.path(), &STAMP)?;
    let _ = idx.entries();
    let _ = idx.lookup(key_of("c\r\neth0"));
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    if idx.insert(d.path(), key_of("c\r\neth0"), ip).is_ok() {
        let hits = idx.lookup(key_of("c\r\neth0")).unwrap();
        let mine = hits.iter().find(|e| e.ip == ip).copied().unwrap();
        idx.remove(&mine).unwrap();
    }
    Some(idx.live())
}

/// fuzz/artifacts/host_local_index/crash-c9f16798…: a 256-slot table whose
/// header counts 0x4e4c_5400_0000_0002 live entries. `entries()` reserved
/// room for all of them: "capacity overflow", a panic (an abort in the
/// release build) on every later call, since the index was never rebuilt.
#[test]
fn a_header_counting_more_entries_than_slots_is_refused() {
    let file = index_file(256, 0x4e4c_5400_0000_0002, 0x31_3048_4349, None);
    assert_eq!(open_and_use("live", &file), None);
    let file = index_file(256, 200, 57, None);
    assert_eq!(open_and_use("sum", &file), None, "live + deleted > slots");
    let file = index_file(256, u64::MAX, 1, None);
    assert_eq!(open_and_use("wrap", &file), None, "live + deleted wraps");
}

/// Found next to the one above: a power-of-two slot count so large that the
/// table size (64 + 32 × slots) wraps. 2^59 slots made it 64, so a bare
/// 64-byte header was taken for a whole table (and the debug build panicked
/// on the overflow); every lookup then failed, with no rebuild.
#[test]
fn a_slot_count_whose_table_size_wraps_is_refused() {
    for shift in [59, 60, 63] {
        let file = index_file(1 << shift, 0, 0, Some(0));
        assert_eq!(
            open_and_use(&format!("wrap{shift}"), &file),
            None,
            "2^{shift} slots"
        );
    }
}

/// fuzz/artifacts/host_local_index/crash-3e669c21…: a table holding a tombstone
/// its header does not count (`deleted` 0). An insert that reused that slot
/// took one from `deleted`: "attempt to subtract with overflow" in a debug
/// build, a count of 2^64 - 1 in a release one.
#[test]
fn reusing_a_tombstone_the_header_does_not_count_works() {
    let d = TempDir::named("rcni-hl-fuzzreg-tombstone");
    let mut file = index_file(512, 3, 0, None);
    file[64 + 8] = 2; // slot 0: a tombstone
    std::fs::write(d.join(INDEX_FILE), &file).unwrap();
    let mut idx = Index::open_if_current(d.path(), &STAMP).unwrap();
    let key = 0x3b00_0000_0000_0000; // probes from slot 0
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    idx.insert(d.path(), key, ip).unwrap();
    let hits = idx.lookup(key).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].slot, hits[0].ip), (0, ip));
    assert_eq!(idx.live(), 4);
    idx.remove(&hits[0]).unwrap();
    assert!(idx.lookup(key).unwrap().is_empty());
}

/// What the plugin writes is still accepted.
#[test]
fn a_well_formed_index_is_still_used() {
    assert_eq!(open_and_use("ok", &index_file(256, 0, 0, None)), Some(0));
}
