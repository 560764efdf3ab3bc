//! Our index of the reservations: which addresses an attachment holds,
//! without reading every reservation file as Go does on every call.
//!
//! It is one file, `.rcni-index` in the store directory: a 64-byte header
//! and an open-addressing hash table of 32-byte slots, read and written in
//! place with pread/pwrite, so a call touches a page or two whatever the
//! number of reservations. A slot maps the hash of a reservation's content
//! (`containerid\r\nifname`, or a legacy bare ID) to its address; every hit
//! is confirmed by reading that one reservation file, so a hash collision
//! costs a read, never a wrong answer.
//!
//! The files stay the truth. The header records the directory [`Stamp`] the
//! table was last in step with and a dirty flag, set before we change
//! anything and cleared when we are done. If the flag is set (we were killed)
//! or the directory's stamp changed (someone else, such as the Go plugin,
//! created or removed a file), the table is rebuilt from the files.

use crate::store::{INDEX_FILE, Stamp};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const MAGIC: &[u8; 8] = b"RCNIHL01";
const HEADER_LEN: u64 = 64;
const SLOT_LEN: u64 = 32;
const MIN_SLOTS: u64 = 256;
/// Slots read per probe step: 4 KiB.
const CHUNK_SLOTS: u64 = 128;
const INDEX_TEMP: &str = ".rcni-index.tmp";

const EMPTY: u8 = 0;
const LIVE: u8 = 1;
const DELETED: u8 = 2;

/// The key of a reservation: a stable 64-bit hash of its trimmed content.
/// (std's hasher is not stable across releases; this file outlives binaries.)
pub fn key_of(content: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser, so the low bits used for the slot are well mixed.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// One live slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Slot number, for [`Index::remove`].
    pub slot: u64,
    /// Hash of the reservation's content.
    pub key: u64,
    /// The reserved address.
    pub ip: IpAddr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Header {
    slots: u64,
    live: u64,
    deleted: u64,
    stamp: Stamp,
    dirty: bool,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.slots.to_le_bytes());
        b[16..24].copy_from_slice(&self.live.to_le_bytes());
        b[24..32].copy_from_slice(&self.deleted.to_le_bytes());
        b[32..40].copy_from_slice(&self.stamp.dev.to_le_bytes());
        b[40..48].copy_from_slice(&self.stamp.ino.to_le_bytes());
        b[48..56].copy_from_slice(&self.stamp.sec.to_le_bytes());
        // nsec < 10^9 fits in 32 bits.
        b[56..60].copy_from_slice(&(self.stamp.nsec as u32).to_le_bytes());
        b[60] = u8::from(self.dirty);
        b
    }

    fn decode(b: &[u8; HEADER_LEN as usize]) -> Option<Header> {
        if &b[0..8] != MAGIC {
            return None;
        }
        let u =
            |r: std::ops::Range<usize>| -> Option<u64> { Some(u64::from_le_bytes(b[r].try_into().ok()?)) };
        Some(Header {
            slots: u(8..16)?,
            live: u(16..24)?,
            deleted: u(24..32)?,
            stamp: Stamp {
                dev: u(32..40)?,
                ino: u(40..48)?,
                sec: i64::from_le_bytes(b[48..56].try_into().ok()?),
                nsec: i64::from(u32::from_le_bytes(b[56..60].try_into().ok()?)),
            },
            dirty: b[60] != 0,
        })
    }
}

fn encode_slot(key: u64, state: u8, ip: IpAddr) -> [u8; SLOT_LEN as usize] {
    let mut s = [0u8; SLOT_LEN as usize];
    s[0..8].copy_from_slice(&key.to_le_bytes());
    s[8] = state;
    match ip {
        IpAddr::V4(v4) => {
            s[9] = 4;
            s[16..20].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            s[9] = 6;
            s[16..32].copy_from_slice(&v6.octets());
        }
    }
    s
}

fn decode_slot(s: &[u8]) -> Option<(u8, u64, IpAddr)> {
    let key = u64::from_le_bytes(s.get(0..8)?.try_into().ok()?);
    let ip = match s.get(9)? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(s.get(16..20)?).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(s.get(16..32)?).ok()?)),
    };
    Some((*s.get(8)?, key, ip))
}

fn slot_offset(slot: u64) -> u64 {
    HEADER_LEN + slot * SLOT_LEN
}

/// The smallest power-of-two table that keeps `n` entries at most a third full
/// (the file is read by Go's directory walks, so it should not be much larger).
fn slots_for(n: u64) -> u64 {
    n.saturating_mul(3).max(MIN_SLOTS).next_power_of_two()
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("index {INDEX_FILE}: {what}"))
}

/// The open index of one store directory.
pub struct Index {
    file: File,
    header: Header,
}

impl Index {
    /// Opens the index when it is in step with the directory as `now`
    /// describes it; `None` means it must be rebuilt (missing, unreadable,
    /// dirty, or the directory changed since we last sealed it).
    pub fn open_if_current(dir: &Path, now: &Stamp) -> Option<Index> {
        // Written in place: never through a symlink planted in its place (then it is
        // rebuilt by a rename, which replaces the link itself).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(dir.join(INDEX_FILE))
            .ok()?;
        let mut buf = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut buf, 0).ok()?;
        let header = Header::decode(&buf)?;
        if header.dirty || header.stamp != *now || !header.slots.is_power_of_two() || header.slots < MIN_SLOTS
        {
            return None;
        }
        // The counts must fit the table (an absurd `live` would be allocated
        // for), and the table the file (checked: a huge `slots` must not wrap).
        if header.live.checked_add(header.deleted)? > header.slots {
            return None;
        }
        let table = header.slots.checked_mul(SLOT_LEN)?.checked_add(HEADER_LEN)?;
        if file.metadata().ok()?.len() != table {
            return None;
        }
        Some(Index { file, header })
    }

    /// Writes a new index holding `entries` (key, address) and opens it. The
    /// header is left dirty: [`Index::seal`] marks it current.
    pub fn create(dir: &Path, entries: &[(u64, IpAddr)]) -> io::Result<Index> {
        let slots = slots_for(entries.len() as u64);
        let mut table = vec![0u8; usize::try_from(slot_offset(slots)).map_err(|_| corrupt("too large"))?];
        let mask = slots - 1;
        for &(key, ip) in entries {
            let mut slot = key & mask;
            loop {
                let off = usize::try_from(slot_offset(slot)).map_err(|_| corrupt("too large"))?;
                if table[off + 8] == EMPTY {
                    table[off..off + SLOT_LEN as usize].copy_from_slice(&encode_slot(key, LIVE, ip));
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
        let header = Header {
            slots,
            live: entries.len() as u64,
            deleted: 0,
            stamp: Stamp::default(),
            dirty: true,
        };
        table[0..HEADER_LEN as usize].copy_from_slice(&header.encode());
        let temp = dir.join(INDEX_TEMP);
        match fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all_at(&table, 0)?;
        fs::rename(&temp, dir.join(INDEX_FILE))?;
        Ok(Index { file, header })
    }

    /// How many addresses the index holds.
    pub fn live(&self) -> u64 {
        self.header.live
    }

    /// Marks the index as being changed, so that a crash before [`Index::seal`]
    /// forces a rebuild.
    pub fn mark_dirty(&mut self) -> io::Result<()> {
        if !self.header.dirty {
            self.header.dirty = true;
            self.file.write_all_at(&self.header.encode(), 0)?;
        }
        Ok(())
    }

    /// Records that the index matches the directory as `stamp` describes it.
    pub fn seal(&mut self, stamp: Stamp) -> io::Result<()> {
        self.header.stamp = stamp;
        self.header.dirty = false;
        self.file.write_all_at(&self.header.encode(), 0)
    }

    /// Walks the probe sequence of `key` until an empty slot, calling `visit`
    /// with (slot, state, key, address); stops early when `visit` returns true.
    fn probe(&self, key: u64, mut visit: impl FnMut(u64, u8, u64, IpAddr) -> bool) -> io::Result<()> {
        let slots = self.header.slots;
        let mut slot = key & (slots - 1);
        let mut seen = 0u64;
        let mut buf = vec![0u8; (CHUNK_SLOTS * SLOT_LEN) as usize];
        while seen < slots {
            let n = CHUNK_SLOTS.min(slots - slot);
            let bytes = usize::try_from(n * SLOT_LEN).map_err(|_| corrupt("too large"))?;
            self.file.read_exact_at(&mut buf[..bytes], slot_offset(slot))?;
            for i in 0..n {
                let at = usize::try_from(i * SLOT_LEN).map_err(|_| corrupt("too large"))?;
                let (state, k, ip) =
                    decode_slot(&buf[at..at + SLOT_LEN as usize]).ok_or_else(|| corrupt("bad slot"))?;
                if state == EMPTY || visit(slot + i, state, k, ip) {
                    return Ok(());
                }
            }
            seen += n;
            slot = (slot + n) & (slots - 1);
        }
        Ok(())
    }

    /// The addresses recorded under `key`, with their slots.
    pub fn lookup(&self, key: u64) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.probe(key, |slot, state, k, ip| {
            if state == LIVE && k == key {
                out.push(Entry { slot, key, ip });
            }
            false
        })?;
        Ok(out)
    }

    /// Records `ip` under `key`. Grows (rewrites) the table when it would
    /// pass half full, so inserts stay O(1) amortized.
    pub fn insert(&mut self, dir: &Path, key: u64, ip: IpAddr) -> io::Result<()> {
        if (self.header.live + self.header.deleted + 1) * 2 > self.header.slots {
            let mut entries: Vec<(u64, IpAddr)> = self.entries()?.iter().map(|e| (e.key, e.ip)).collect();
            entries.push((key, ip));
            *self = Index::create(dir, &entries)?;
            return Ok(());
        }
        let mut free = None;
        self.probe(key, |slot, state, _, _| {
            if state == DELETED {
                free = Some((slot, true));
                return true;
            }
            false
        })?;
        let (slot, reuse) = match free {
            Some(f) => f,
            None => (self.first_empty(key)?, false),
        };
        self.file
            .write_all_at(&encode_slot(key, LIVE, ip), slot_offset(slot))?;
        self.header.live += 1;
        if reuse {
            // A header that undercounts the tombstones (one written by
            // someone else) must not underflow; the count only steers growth.
            self.header.deleted = self.header.deleted.saturating_sub(1);
        }
        Ok(())
    }

    fn first_empty(&self, key: u64) -> io::Result<u64> {
        let slots = self.header.slots;
        let mut slot = key & (slots - 1);
        let mut one = [0u8; SLOT_LEN as usize];
        for _ in 0..slots {
            self.file.read_exact_at(&mut one, slot_offset(slot))?;
            if one[8] == EMPTY {
                return Ok(slot);
            }
            slot = (slot + 1) & (slots - 1);
        }
        Err(corrupt("table full"))
    }

    /// Forgets a slot (a tombstone keeps later probe chains intact).
    pub fn remove(&mut self, entry: &Entry) -> io::Result<()> {
        self.file.write_all_at(&[DELETED], slot_offset(entry.slot) + 8)?;
        self.header.live = self.header.live.saturating_sub(1);
        self.header.deleted += 1;
        Ok(())
    }

    /// Calls `visit` with every live slot, reading the table sequentially in
    /// 64 KiB pieces (the whole table of 50,000 reservations is 8 MiB).
    pub fn for_each(&self, mut visit: impl FnMut(Entry)) -> io::Result<()> {
        const PIECE_SLOTS: u64 = 2048;
        let mut buf = vec![0u8; (PIECE_SLOTS * SLOT_LEN) as usize];
        let mut slot = 0u64;
        while slot < self.header.slots {
            let n = PIECE_SLOTS.min(self.header.slots - slot);
            let bytes = usize::try_from(n * SLOT_LEN).map_err(|_| corrupt("too large"))?;
            self.file.read_exact_at(&mut buf[..bytes], slot_offset(slot))?;
            for (i, raw) in buf[..bytes].chunks_exact(SLOT_LEN as usize).enumerate() {
                if let Some((LIVE, key, ip)) = decode_slot(raw) {
                    visit(Entry {
                        slot: slot + i as u64,
                        key,
                        ip,
                    });
                }
            }
            slot += n;
        }
        Ok(())
    }

    /// Every live slot, for GC and rehashing.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(usize::try_from(self.header.live).unwrap_or(0));
        self.for_each(|e| out.push(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcni_test_support::TempDir;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn insert_lookup_remove_and_grow() {
        let d = TempDir::named("rcni-hl-index-grow");
        let mut idx = Index::create(d.path(), &[]).unwrap();
        for n in 0..2000u32 {
            idx.insert(d.path(), key_of(&format!("c{}\r\neth0", n / 2)), ip(n))
                .unwrap();
        }
        assert_eq!(idx.live(), 2000);
        for n in (0..2000u32).step_by(2) {
            let hits = idx.lookup(key_of(&format!("c{}\r\neth0", n / 2))).unwrap();
            let mut ips: Vec<IpAddr> = hits.iter().map(|e| e.ip).collect();
            ips.sort();
            assert_eq!(ips, [ip(n), ip(n + 1)]);
        }
        let hits = idx.lookup(key_of("c7\r\neth0")).unwrap();
        for e in &hits {
            idx.remove(e).unwrap();
        }
        assert!(idx.lookup(key_of("c7\r\neth0")).unwrap().is_empty());
        assert_eq!(idx.entries().unwrap().len(), 1998);
        // Tombstones are reused.
        idx.insert(d.path(), key_of("x"), ip(9999)).unwrap();
        assert_eq!(idx.lookup(key_of("x")).unwrap()[0].ip, ip(9999));
    }

    #[test]
    fn only_a_sealed_index_with_the_same_stamp_is_current() {
        let d = TempDir::named("rcni-hl-index-seal");
        let mut idx = Index::create(d.path(), &[(key_of("a\r\neth0"), ip(1))]).unwrap();
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            sec: 3,
            nsec: 4,
        };
        assert!(
            Index::open_if_current(d.path(), &stamp).is_none(),
            "created dirty"
        );
        idx.seal(stamp).unwrap();
        let idx = Index::open_if_current(d.path(), &stamp).unwrap();
        assert_eq!(idx.lookup(key_of("a\r\neth0")).unwrap()[0].ip, ip(1));
        let other = Stamp { nsec: 5, ..stamp };
        assert!(Index::open_if_current(d.path(), &other).is_none());
        let mut idx = idx;
        idx.mark_dirty().unwrap();
        assert!(Index::open_if_current(d.path(), &stamp).is_none());
    }

    /// A sealed, current index moved away and replaced by a symlink to it:
    /// never opened (for writing) through the link; the next change rebuilds
    /// it with a rename, which replaces the link itself.
    #[test]
    fn a_planted_symlink_is_never_opened() {
        let d = TempDir::named("rcni-hl-index-symlink");
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            sec: 3,
            nsec: 4,
        };
        let mut idx = Index::create(d.path(), &[(key_of("a\r\neth0"), ip(1))]).unwrap();
        idx.seal(stamp).unwrap();
        drop(idx);
        let elsewhere = d.join("elsewhere");
        fs::rename(d.join(INDEX_FILE), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.join(INDEX_FILE)).unwrap();
        assert!(Index::open_if_current(d.path(), &stamp).is_none());
        let before = fs::read(&elsewhere).unwrap();
        Index::create(d.path(), &[(key_of("b\r\neth0"), ip(2))]).unwrap();
        assert_eq!(fs::read(&elsewhere).unwrap(), before, "written through the link");
        assert!(
            !fs::symlink_metadata(d.join(INDEX_FILE))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn ipv6_slots_round_trip() {
        let d = TempDir::named("rcni-hl-index-v6");
        let v6: IpAddr = "2001:db8::42".parse().unwrap();
        let idx = Index::create(d.path(), &[(7, v6), (7 + 256, ip(3))]).unwrap();
        let got: Vec<IpAddr> = idx.lookup(7).unwrap().iter().map(|e| e.ip).collect();
        assert_eq!(got, [v6]);
        assert_eq!(idx.entries().unwrap().len(), 2);
    }
}
