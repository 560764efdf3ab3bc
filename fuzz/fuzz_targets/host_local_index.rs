//! host-local's own index file, `.rcni-index` (a 64-byte header and a hash
//! table of 32-byte slots), with any content: a torn write, a bit flip, a
//! file of another program. Opening it must either refuse it (so the plugin
//! rebuilds it from the reservation files) or give an index whose every
//! operation works or fails cleanly; whatever is inserted is then found,
//! whatever is removed is gone, and a sealed index opens again.
//!
//! The input is the file. The header's stamp is passed as the directory's
//! current one, so a well-formed header is accepted and the table read. A
//! header that declares 256 to 4096 slots has its table cut or padded with
//! zeros to the size it declares, so the fuzzer need not guess the length;
//! any other input is written as it is.
#![no_main]

mod common;

use host_local::index::{Index, key_of};
use host_local::store::{INDEX_FILE, Stamp};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::path::Path;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn check(dir: &Path, data: &[u8]) {
    common::empty_dir(dir);
    let mut file = data.to_vec();
    let mut stamp = Stamp::default();
    if data.len() >= 64 {
        stamp = Stamp {
            dev: u64_at(data, 32),
            ino: u64_at(data, 40),
            sec: u64_at(data, 48) as i64,
            nsec: i64::from(u32::from_le_bytes(data[56..60].try_into().expect("4 bytes"))),
        };
        let slots = u64_at(data, 8);
        if &data[0..8] == b"RCNIHL01" && slots.is_power_of_two() && (256..=4096).contains(&slots) {
            file.resize(64 + slots as usize * 32, 0);
        }
    }
    std::fs::write(dir.join(INDEX_FILE), &file).expect("write the index");
    let Some(mut idx) = Index::open_if_current(dir, &stamp) else {
        return;
    };

    // Reads: any answer or an error, never a panic.
    let entries = idx.entries();
    let mut visited = 0usize;
    let walked = idx.for_each(|_| visited += 1);
    if let (Ok(entries), Ok(())) = (&entries, &walked) {
        assert_eq!(entries.len(), visited, "entries and for_each disagree");
    }
    let _ = idx.live();
    let key = if data.len() >= 8 {
        u64_at(data, data.len() - 8)
    } else {
        key_of("fuzz\r\neth0")
    };
    if let Ok(entries) = &entries {
        for e in entries.iter().take(8) {
            let _ = idx.lookup(e.key);
        }
    }

    // Writes: what is inserted is found, what is removed is gone.
    if idx.mark_dirty().is_err() {
        return;
    }
    let ip: IpAddr = "10.0.0.7".parse().expect("an address");
    if idx.insert(dir, key, ip).is_err() {
        return;
    }
    let Ok(hits) = idx.lookup(key) else {
        panic!("lookup fails right after a successful insert");
    };
    let mine = hits
        .iter()
        .find(|e| e.ip == ip && e.key == key)
        .copied()
        .expect("an inserted entry is found");
    idx.remove(&mine).expect("remove");
    let after = idx.lookup(key).expect("lookup after remove");
    assert!(
        after.iter().all(|e| e.slot != mine.slot),
        "a removed slot is still found"
    );
    let live = idx.live();

    // Sealed, the index opens again as it was left.
    let sealed = Stamp {
        dev: 1,
        ino: 2,
        sec: 3,
        nsec: 4,
    };
    idx.seal(sealed).expect("seal");
    let again = Index::open_if_current(dir, &sealed).expect("a sealed index opens again");
    assert_eq!(again.live(), live);
}

fuzz_target!(|data: &[u8]| {
    check(common::scratch("host-local-index"), data);
});
