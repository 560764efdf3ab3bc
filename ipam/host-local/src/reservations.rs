//! The reservations of one network: the Go-format store plus our index,
//! kept in step under the store's lock.
//!
//! Opening takes the lock and checks the index against the directory; a
//! stale index is rebuilt from the files (the only O(n) path, taken only
//! after someone else changed the directory or we were killed mid-way).
//! Every change marks the index dirty first and seals it when done, so a
//! crash at any point leaves either a current index or a rebuild.

use crate::index::{Entry, Index, key_of};
use crate::store::Store;
use cni::Error;
use std::io;
use std::net::IpAddr;
use std::path::Path;

/// Who holds an address: a container's interface (`CNI_CONTAINERID`, `CNI_IFNAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The container ID.
    pub container_id: String,
    /// The interface name in the container.
    pub ifname: String,
}

impl Attachment {
    /// A new attachment.
    pub fn new(container_id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }

    /// The content of its reservation files: `containerid\r\nifname`.
    pub fn content(&self) -> String {
        format!("{}\r\n{}", self.container_id.trim(), self.ifname)
    }

    /// The content of a file written before Go v0.8.0: the ID alone.
    pub fn legacy_content(&self) -> String {
        self.container_id.trim().to_string()
    }
}

/// Maps an I/O failure to the CNI error (code 5) naming what failed.
pub fn io_error(what: &str, dir: &Path, e: &io::Error) -> Error {
    Error::io(format!("{what} in {}", dir.display())).with_details(e.to_string())
}

/// The locked store and its index.
pub struct Reservations {
    store: Store,
    index: Index,
    changed: bool,
    /// A change failed half-way: the index may disagree with the files, so
    /// it is left dirty (never sealed) and the next call rebuilds it.
    poisoned: bool,
}

impl Reservations {
    /// Opens and locks the store of `network` under `data_dir` (creating it
    /// when `create`); `Ok(None)` when it does not exist and `create` is false.
    pub fn open(data_dir: &Path, network: &str, create: bool) -> Result<Option<Reservations>, Error> {
        check_network_name(network)?;
        let dir = data_dir.join(network);
        let err = |what: &str, e: &io::Error| io_error(what, &dir, e);
        let Some(store) =
            Store::open(data_dir, network, create).map_err(|e| err("cannot open the store", &e))?
        else {
            return Ok(None);
        };
        let now = store.stamp().map_err(|e| err("cannot stat the store", &e))?;
        if let Some(index) = Index::open_if_current(store.dir(), &now) {
            return Ok(Some(Reservations {
                store,
                index,
                changed: false,
                poisoned: false,
            }));
        }
        let files = store.scan().map_err(|e| err("cannot read the store", &e))?;
        let entries: Vec<(u64, IpAddr)> = files.iter().map(|(ip, owner)| (key_of(owner), *ip)).collect();
        let index = Index::create(store.dir(), &entries).map_err(|e| err("cannot write the index", &e))?;
        Ok(Some(Reservations {
            store,
            index,
            changed: true,
            poisoned: false,
        }))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    fn err(&self, what: &str, e: &io::Error) -> Error {
        io_error(what, self.store.dir(), e)
    }

    fn begin_change(&mut self) -> Result<(), Error> {
        if !self.changed {
            self.index
                .mark_dirty()
                .map_err(|e| io_error("cannot write the index", self.store.dir(), &e))?;
            self.changed = true;
        }
        Ok(())
    }

    /// The addresses whose reservation content is exactly `content`
    /// (trimmed, as Go compares), each confirmed by reading its file.
    pub fn held_by(&self, content: &str) -> Result<Vec<Entry>, Error> {
        let hits = self
            .index
            .lookup(key_of(content))
            .map_err(|e| self.err("cannot read the index", &e))?;
        let mut out = Vec::with_capacity(hits.len());
        for e in hits {
            let owner = self
                .store
                .owner_of(e.ip)
                .map_err(|err| self.err("cannot read a reservation", &err))?;
            if owner.as_deref() == Some(content) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Reserves the first free address `candidates` yields for `who`,
    /// records it as set `set`'s last reservation, and returns it.
    pub fn reserve_first(
        &mut self,
        who: &Attachment,
        set: usize,
        candidates: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Option<IpAddr>, Error> {
        self.begin_change()?;
        let content = who.content();
        self.store
            .prepare_reservation(content.as_bytes())
            .map_err(|e| self.err("cannot write a reservation", &e))?;
        let mut got = None;
        for ip in candidates {
            if self
                .store
                .try_reserve(ip)
                .map_err(|e| self.err("cannot reserve an address", &e))?
            {
                got = Some(ip);
                break;
            }
        }
        self.store.crash_point("after-link");
        // Nothing free: the prepared content stays for the caller's next try.
        let Some(ip) = got else { return Ok(None) };
        // Linked: that inode is the reservation now, never to be linked again.
        match self.record_reservation(&content, set, ip) {
            Ok(()) => Ok(Some(ip)),
            Err(e) => {
                // The ADD fails: take the address back so nothing leaks, and
                // leave the index for a rebuild, since it may hold the entry.
                self.poisoned = true;
                if let Err(undo) = self.store.release(ip) {
                    eprintln!("host-local: cannot take back {ip} after a failed reservation: {undo}");
                }
                Err(e)
            }
        }
    }

    /// Indexes a linked reservation and records it as set `set`'s last one.
    fn record_reservation(&mut self, content: &str, set: usize, ip: IpAddr) -> Result<(), Error> {
        let discarded = self.store.discard_reservation();
        let dir = self.store.dir().to_path_buf();
        self.index
            .insert(&dir, key_of(content), ip)
            .map_err(|e| self.err("cannot write the index", &e))?;
        self.store.crash_point("after-index");
        self.store
            .set_last_reserved(set, ip)
            .map_err(|e| self.err("cannot write the last reserved address", &e))?;
        discarded.map_err(|e| self.err("cannot remove a temporary file", &e))
    }

    /// The round-robin position of set `set`.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        self.store.last_reserved(set)
    }

    /// Deletes one reservation and forgets it; a file already gone is fine.
    pub fn release(&mut self, entry: &Entry) -> Result<(), Error> {
        self.begin_change()?;
        self.store
            .release(entry.ip)
            .map_err(|e| self.err("cannot remove a reservation", &e))?;
        self.store.crash_point("after-unlink");
        let removed = self.index.remove(entry);
        removed.map_err(|e| {
            self.poisoned = true;
            self.err("cannot write the index", &e)
        })
    }

    /// Releases every address held with exactly `content`; returns how many.
    pub fn release_held_by(&mut self, content: &str) -> Result<usize, Error> {
        let held = self.held_by(content)?;
        for e in &held {
            self.release(e)?;
        }
        Ok(held.len())
    }

    /// Every reservation in the index (one read of the table, no file reads).
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        self.index
            .entries()
            .map_err(|e| self.err("cannot read the index", &e))
    }

    /// Every reserved address `keep` accepts (one sequential read of the table, no file reads).
    pub fn addresses_where(&self, mut keep: impl FnMut(IpAddr) -> bool) -> Result<Vec<IpAddr>, Error> {
        let mut out = Vec::new();
        self.index
            .for_each(|e| {
                if keep(e.ip) {
                    out.push(e.ip);
                }
            })
            .map_err(|e| self.err("cannot read the index", &e))?;
        Ok(out)
    }

    /// How many reservations the index holds.
    pub fn count(&self) -> u64 {
        self.index.live()
    }

    /// The trimmed content of `ip`'s reservation file.
    pub fn owner_of(&self, ip: IpAddr) -> Result<Option<String>, Error> {
        self.store
            .owner_of(ip)
            .map_err(|e| self.err("cannot read a reservation", &e))
    }

    /// Seals the index if anything changed; then the lock is released.
    pub fn close(mut self) -> Result<(), Error> {
        self.seal()
    }

    fn seal(&mut self) -> Result<(), Error> {
        if !self.changed || self.poisoned {
            return Ok(());
        }
        self.store
            .discard_reservation()
            .map_err(|e| self.err("cannot remove a temporary file", &e))?;
        self.store.crash_point("before-seal");
        let stamp = self
            .store
            .seal()
            .map_err(|e| self.err("cannot stamp the store directory", &e))?;
        self.index
            .seal(stamp)
            .map_err(|e| self.err("cannot write the index", &e))?;
        self.changed = false;
        Ok(())
    }
}

impl Drop for Reservations {
    /// An early return (an error) still seals what was done; if even that
    /// fails, the index stays dirty and the next call rebuilds it.
    fn drop(&mut self) {
        if let Err(e) = self.seal() {
            eprintln!("host-local: {e}");
        }
    }
}

/// DEL without the index, for when it cannot be rebuilt (a full disk, say):
/// Go's way, a walk of every file. Releases the files holding the first of
/// `contents` that matches any, then removes the stale index so the next
/// call rebuilds it. Unlinking needs no space, so this works where a
/// rebuild does not, and a runtime's DEL is never stuck on our index.
pub fn release_by_scan(data_dir: &Path, network: &str, contents: &[String]) -> Result<(), Error> {
    check_network_name(network)?;
    let dir = data_dir.join(network);
    let err = |what: &str, e: &io::Error| io_error(what, &dir, e);
    let Some(store) = Store::open(data_dir, network, false).map_err(|e| err("cannot open the store", &e))?
    else {
        return Ok(());
    };
    let files = store.scan().map_err(|e| err("cannot read the store", &e))?;
    if let Err(e) = std::fs::remove_file(dir.join(crate::store::INDEX_FILE))
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(err("cannot remove the stale index", &e));
    }
    for content in contents {
        let mine: Vec<IpAddr> = files
            .iter()
            .filter(|(_, owner)| owner == content)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &mine {
            store
                .release(*ip)
                .map_err(|e| err("cannot remove a reservation", &e))?;
        }
        if !mine.is_empty() {
            break;
        }
    }
    Ok(())
}

/// The network name becomes a directory under `dataDir`: it must be one path
/// component, so it can never reach outside (code 7).
pub fn check_network_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Error::invalid_config(format!(
            "invalid network name {name:?}: it must be a single path component under dataDir"
        )));
    }
    Ok(())
}
