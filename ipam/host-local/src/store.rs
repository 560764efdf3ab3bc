//! The store directory in Go host-local's exact format, so the Go plugin and
//! ours can share it, even at the same moment:
//!
//! - one file per reserved address, named by its text form, holding
//!   `containerid\r\nifname` with no trailing newline (files from before Go
//!   v0.8.0 hold only the container ID); mode 0600;
//! - `last_reserved_ip.<set index>`: where the round robin resumes;
//! - `lock`: taken with flock(2) around every read-modify-write. Go takes the
//!   same lock, so holding it gives a consistent view of the directory.
//!
//! Our additions are dot files, which Go never parses as addresses and whose
//! content never equals a `containerid\r\nifname` it looks for: `.rcni-index`
//! (see `index.rs`) and short-lived temporary files.
//!
//! A reservation is written to an unnamed file first (`O_TMPFILE`) and then
//! linked to its address name: `linkat(2)` fails with EEXIST like Go's O_EXCL
//! create, and the name only ever appears with its whole content, so a killed
//! plugin never leaves a half-written reservation behind (nor a temporary
//! file: an unnamed one vanishes with the process). Where `O_TMPFILE` is not
//! supported, a named temporary file plays the same part.

use crate::addr;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The flock(2) file, Go's name.
pub const LOCK_FILE: &str = "lock";
/// Prefix of the round-robin files, Go's name.
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Our index of the reservations (see `index.rs`).
pub const INDEX_FILE: &str = ".rcni-index";
/// Prefix of every file of ours besides the index; only temporary files use it.
const TEMP_PREFIX: &str = ".rcni-";
/// A reservation's content before it is linked to its address name.
const RESERVE_TEMP: &str = ".rcni-reserve";

/// Environment variable naming a point at which the plugin kills itself; used
/// by the crash-consistency tests only (see `crash_point`).
pub const CRASH_AT_ENV: &str = "RCNI_HOST_LOCAL_CRASH_AT";

/// What the directory looked like when our index last matched it: its
/// identity and modification time. Any create, unlink or rename in the
/// directory (Go's or anyone's) changes the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stamp {
    /// Device of the directory.
    pub dev: u64,
    /// Inode of the directory; a re-created directory has a new one.
    pub ino: u64,
    /// Modification time, seconds.
    pub sec: i64,
    /// Modification time, nanoseconds.
    pub nsec: i64,
}

/// The content of the reservation being made, before it has a name.
enum Prepared {
    /// An `O_TMPFILE` inode, linked through `/proc/self/fd`, and its content.
    Unnamed(File, Vec<u8>),
    /// `RESERVE_TEMP`, hard-linked, and its content.
    Named(Vec<u8>),
}

impl Prepared {
    fn content(&self) -> &[u8] {
        match self {
            Prepared::Unnamed(_, c) | Prepared::Named(c) => c,
        }
    }
}

/// The store directory of one network, locked for as long as this lives.
pub struct Store {
    dir: PathBuf,
    handle: File,
    _lock: File,
    crash_at: Option<String>,
    prepared: Option<Prepared>,
}

/// ELOOP from an `O_NOFOLLOW` open, said plainly.
fn refuse_symlink(e: io::Error, path: &Path) -> io::Error {
    // ELOOP for a file; ENOTDIR when `O_DIRECTORY` met the link.
    let link = e.raw_os_error() == Some(Errno::ELOOP as i32)
        || (e.raw_os_error() == Some(Errno::ENOTDIR as i32)
            && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()));
    if link {
        io::Error::other(format!(
            "{} is a symbolic link; refusing to follow it",
            path.display()
        ))
    } else {
        e
    }
}

fn temp_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

impl Store {
    /// Opens and locks `<data_dir>/<network>`. When the directory does not
    /// exist, it is created (mode 0755, as Go) if `create`, else `Ok(None)`.
    pub fn open(data_dir: &Path, network: &str, create: bool) -> io::Result<Option<Store>> {
        let dir = data_dir.join(network);
        // The network's directory must not be a symlink out of the data dir (checked
        // before anything is created in it), and nothing in it is opened through a
        // planted symlink: a dangling `lock` link would make `create` make a file
        // wherever it points.
        let open_dir = || {
            OpenOptions::new()
                .read(true)
                .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY).bits())
                .open(&dir)
        };
        let handle = match open_dir() {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                DirBuilder::new().recursive(true).mode(0o755).create(&dir)?;
                open_dir().map_err(|e| refuse_symlink(e, &dir))?
            }
            Err(e) => return Err(refuse_symlink(e, &dir)),
        };
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&lock_path)
            .map_err(|e| refuse_symlink(e, &lock_path))?;
        lock.lock()?;
        Ok(Some(Store {
            dir,
            handle,
            _lock: lock,
            // The crash-consistency tests' hook exists in debug builds only:
            // a stray variable must never make a production plugin exit.
            crash_at: if cfg!(debug_assertions) {
                std::env::var(CRASH_AT_ENV).ok().filter(|s| !s.is_empty())
            } else {
                None
            },
            prepared: None,
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Test hook: when `CRASH_AT_ENV` names this point, the process ends on
    /// the spot with status 137, running no destructor (nothing is sealed,
    /// no temporary file removed), as after a SIGKILL.
    pub fn crash_point(&self, point: &str) {
        if self.crash_at.as_deref() == Some(point) {
            std::process::exit(137);
        }
        // The workspace-wide fault points (`RCNI_FAULT=host-local.<point>`), for the
        // tests that abort a whole chain at each step.
        #[cfg(debug_assertions)]
        cni::fault::point(&format!("host-local.{point}"));
    }

    /// The directory's identity and modification time now.
    pub fn stamp(&self) -> io::Result<Stamp> {
        let m = self.handle.metadata()?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            sec: m.mtime(),
            nsec: m.mtime_nsec(),
        })
    }

    /// Makes the current state recognisable: sets the directory's mtime to
    /// one nanosecond before what our last change left, and returns that
    /// stamp. The kernel's clock for mtime is coarse (a tick, several ms),
    /// so a change by Go in the same tick could leave the mtime we saw; but
    /// any later change sets the mtime to "now", which is never this
    /// earlier, made-up value.
    pub fn seal(&self) -> io::Result<Stamp> {
        let now = self.stamp()?;
        let nanos = i128::from(now.sec) * 1_000_000_000 + i128::from(now.nsec) - 1;
        let nanos = u64::try_from(nanos).map_err(|_| io::Error::other("directory mtime before 1970"))?;
        self.handle
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))?;
        self.stamp()
    }

    fn path_of(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(addr::canonical(ip).to_string())
    }

    /// Writes a reservation's content to a fresh unnamed file, ready to be
    /// linked to candidate addresses; kept when it already holds `content`
    /// (a new inode is the dearest step of an ADD).
    pub fn prepare_reservation(&mut self, content: &[u8]) -> io::Result<()> {
        if self.prepared.as_ref().is_some_and(|p| p.content() == content) {
            return Ok(());
        }
        self.discard_reservation()?;
        let unnamed = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(OFlag::O_TMPFILE.bits())
            .open(&self.dir);
        match unnamed {
            Ok(mut f) => {
                f.write_all(content)?;
                self.prepared = Some(Prepared::Unnamed(f, content.to_vec()));
                Ok(())
            }
            // File systems without O_TMPFILE answer EOPNOTSUPP (old kernels: EISDIR or EINVAL).
            Err(e)
                if matches!(
                    Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL
                ) =>
            {
                self.prepare_named(content)
            }
            Err(e) => Err(e),
        }
    }

    /// The fallback: a named temporary file. A leftover from a killed run is
    /// unlinked, never truncated: it may share its inode with a reservation.
    fn prepare_named(&mut self, content: &[u8]) -> io::Result<()> {
        let temp = self.dir.join(RESERVE_TEMP);
        remove_if_exists(&temp)?;
        let mut f = temp_options().open(&temp)?;
        f.write_all(content)?;
        self.prepared = Some(Prepared::Named(content.to_vec()));
        Ok(())
    }

    /// Reserves `ip` with the prepared content; false when the address is taken.
    pub fn try_reserve(&mut self, ip: IpAddr) -> io::Result<bool> {
        let name = addr::canonical(ip).to_string();
        if let Some(Prepared::Unnamed(f, content)) = &self.prepared {
            let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
            let flags = AtFlags::AT_SYMLINK_FOLLOW;
            match nix::unistd::linkat(AT_FDCWD, proc_path.as_str(), &self.handle, name.as_str(), flags) {
                Ok(()) => return Ok(true),
                Err(Errno::EEXIST) => return Ok(false),
                // Without /proc the unnamed file cannot be linked: use a named one.
                Err(Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
                    let content = content.clone();
                    self.prepare_named(&content)?;
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        match self.prepared {
            Some(Prepared::Named(_)) => {
                match fs::hard_link(self.dir.join(RESERVE_TEMP), self.dir.join(&name)) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                }
            }
            _ => Err(io::Error::other("no reservation prepared")),
        }
    }

    /// Drops the prepared content (the unnamed file vanishes on close).
    pub fn discard_reservation(&mut self) -> io::Result<()> {
        match self.prepared.take() {
            Some(Prepared::Named(_)) => remove_if_exists(&self.dir.join(RESERVE_TEMP)),
            _ => Ok(()),
        }
    }

    /// The trimmed content of `ip`'s reservation (Go compares with
    /// `strings.TrimSpace`), `None` when there is none.
    pub fn owner_of(&self, ip: IpAddr) -> io::Result<Option<String>> {
        match fs::read(self.path_of(ip)) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `ip`'s reservation; false when it was already gone.
    pub fn release(&self, ip: IpAddr) -> io::Result<bool> {
        match fs::remove_file(self.path_of(ip)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The address in `last_reserved_ip.<set>`, if it holds one.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let text = fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"))).ok()?;
        text.trim().parse::<IpAddr>().ok().map(addr::canonical)
    }

    /// Rewrites `last_reserved_ip.<set>` in place, as Go does, but writing
    /// before truncating, so the file is never empty. Renaming a new file over
    /// it would need a new inode, which costs more than the whole rest of an
    /// ADD on ext4 (about 0.5 ms); a torn value only moves where the next
    /// round robin starts (an unparsable one restarts at the range start,
    /// in Go as here), it can never cause a duplicate.
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> io::Result<()> {
        let text = addr::canonical(ip).to_string();
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        // Never written through a symlink planted in its place.
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| refuse_symlink(e, &path))?;
        f.write_all_at(text.as_bytes(), 0)?;
        f.set_len(text.len() as u64)
    }

    /// Reads every reservation: (address, trimmed content). This is the
    /// O(n) walk Go does on every call; we do it only to rebuild the index
    /// after someone else changed the directory. Our stale temporary files
    /// are removed on the way (we hold the lock, so none is in use).
    pub fn scan(&self) -> io::Result<Vec<(IpAddr, String)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == LOCK_FILE || name.starts_with(LAST_RESERVED_PREFIX) || name == INDEX_FILE {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                remove_if_exists(&entry.path())?;
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else { continue };
            // Only names Go itself would produce for an address.
            if addr::canonical(ip).to_string() != name || entry.file_type()?.is_dir() {
                continue;
            }
            match fs::read(entry.path()) {
                Ok(bytes) => out.push((ip, String::from_utf8_lossy(&bytes).trim().to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcni_test_support::TempDir;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Symlinks planted in the store are never followed out of it: not the
    /// network directory, not `lock` (even dangling), not `last_reserved_ip.*`
    /// (the index: see its own tests); the files they point at stay as they were.
    #[test]
    fn planted_symlinks_are_never_followed() {
        use std::os::unix::fs::symlink;
        let d = TempDir::named("rcni-hl-store-symlinks");
        let outside = d.join("outside");
        fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("victim");
        fs::write(&victim, "precious").unwrap();

        // The network directory is a symlink out of the data dir.
        let data = d.join("data");
        fs::create_dir_all(&data).unwrap();
        symlink(&outside, data.join("linked")).unwrap();
        let e = Store::open(&data, "linked", true)
            .err()
            .expect("opened through a symlink");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(
            !outside.join(LOCK_FILE).exists(),
            "a lock file was made through the link"
        );

        // A dangling `lock` symlink: nothing is created where it points.
        let net = data.join("net");
        fs::create_dir_all(&net).unwrap();
        symlink(outside.join("made-by-lock"), net.join(LOCK_FILE)).unwrap();
        assert!(Store::open(&data, "net", true).is_err());
        assert!(!outside.join("made-by-lock").exists());
        fs::remove_file(net.join(LOCK_FILE)).unwrap();

        // `last_reserved_ip.0` points at the victim: the write fails, the victim stays.
        let store = Store::open(&data, "net", true).unwrap().unwrap();
        symlink(&victim, net.join(format!("{LAST_RESERVED_PREFIX}0"))).unwrap();
        let e = store.set_last_reserved(0, ip("10.222.0.9")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    /// The point of sealing: a change right after it, in the same clock
    /// tick, still changes the stamp.
    #[test]
    fn any_change_after_a_seal_changes_the_stamp() {
        let d = TempDir::named("rcni-hl-store-seal");
        let store = Store::open(d.path(), "net", true).unwrap().unwrap();
        for i in 0..200 {
            let sealed = store.seal().unwrap();
            assert_eq!(store.stamp().unwrap(), sealed);
            let name = store.dir().join(format!("f{i}"));
            if i % 2 == 0 {
                fs::write(&name, "x").unwrap();
            } else {
                fs::remove_file(store.dir().join(format!("f{}", i - 1))).unwrap();
            }
            assert_ne!(store.stamp().unwrap(), sealed, "change {i} went unseen");
        }
    }

    #[test]
    fn reservations_are_exclusive_and_whole_with_either_temporary_file() {
        let d = TempDir::named("rcni-hl-store-reserve");
        let mut store = Store::open(d.path(), "net", true).unwrap().unwrap();
        store.prepare_reservation(b"a\r\neth0").unwrap();
        assert!(store.try_reserve(ip("10.0.0.2")).unwrap());
        store.discard_reservation().unwrap();
        store.prepare_named(b"b\r\neth0").unwrap();
        assert!(!store.try_reserve(ip("10.0.0.2")).unwrap(), "taken");
        assert!(store.try_reserve(ip("10.0.0.3")).unwrap());
        store.discard_reservation().unwrap();
        assert_eq!(
            store.owner_of(ip("10.0.0.2")).unwrap().as_deref(),
            Some("a\r\neth0")
        );
        assert_eq!(
            store.owner_of(ip("10.0.0.3")).unwrap().as_deref(),
            Some("b\r\neth0")
        );
        let mut names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["10.0.0.2", "10.0.0.3", "lock"], "no temporary file left");
        let scanned = store.scan().unwrap();
        assert_eq!(scanned.len(), 2);
        assert!(store.release(ip("10.0.0.2")).unwrap());
        assert!(!store.release(ip("10.0.0.2")).unwrap());
    }

    #[test]
    fn last_reserved_is_rewritten_in_place() {
        let d = TempDir::named("rcni-hl-store-last");
        let store = Store::open(d.path(), "net", true).unwrap().unwrap();
        assert_eq!(store.last_reserved(0), None);
        store.set_last_reserved(0, ip("2001:db8::1234")).unwrap();
        store.set_last_reserved(0, ip("10.0.0.9")).unwrap();
        assert_eq!(
            fs::read_to_string(store.dir().join("last_reserved_ip.0")).unwrap(),
            "10.0.0.9"
        );
        assert_eq!(store.last_reserved(0), Some(ip("10.0.0.9")));
    }

    #[test]
    fn a_missing_store_is_not_created_unless_asked() {
        let d = TempDir::named("rcni-hl-store-missing");
        assert!(Store::open(d.path(), "net", false).unwrap().is_none());
        assert!(!d.join("net").exists());
    }
}
