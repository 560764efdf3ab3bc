//! The on-disk layout of the Mesos `network/cni` isolator (`paths.cpp`),
//! kept exactly so that either implementation recovers the other's state:
//!
//! ```text
//! <root>/                      <runtime_dir|work_dir>/isolators/network/cni
//!   <containerId>/             dotted for a nested container with its own network
//!     ns                       bind mount of the container's netns (a plain file after a reboot)
//!     hostname  hosts  resolv.conf
//!     <networkName>/
//!       network.conf           the plugin's stdin, written before ADD
//!       <ifName>/network.info  the plugin's stdout from ADD
//! ```
//!
//! A conflist network keeps libcni's result cache under
//! `<ifName>/cache/` (the C++ isolator ignores it and removes it with the
//! directory).

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The root directory below `--runtime_dir` or `--work_dir`.
pub const CNI_DIR: &str = "isolators/network/cni";

/// The container directory.
pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// The pinned netns handle.
pub fn ns_path(root: &Path, id: &str) -> PathBuf {
    root.join(id).join("ns")
}

/// The network directory of one network.
pub fn network_dir(root: &Path, id: &str, network: &str) -> PathBuf {
    root.join(id).join(network)
}

/// The checkpointed plugin input.
pub fn network_conf_path(root: &Path, id: &str, network: &str) -> PathBuf {
    network_dir(root, id, network).join("network.conf")
}

/// The interface directory.
pub fn interface_dir(root: &Path, id: &str, network: &str, ifname: &str) -> PathBuf {
    network_dir(root, id, network).join(ifname)
}

/// The checkpointed plugin output.
pub fn network_info_path(root: &Path, id: &str, network: &str, ifname: &str) -> PathBuf {
    interface_dir(root, id, network, ifname).join("network.info")
}

/// Where a conflist network caches its result for DEL.
pub fn cache_dir(root: &Path, id: &str, network: &str, ifname: &str) -> PathBuf {
    interface_dir(root, id, network, ifname).join("cache")
}

/// The names of the entries of `dir` that are directories, sorted.
pub fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("stat entries of", dir, e))?
            .is_dir();
        if is_dir {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically: a temporary file in the same
/// directory, then a rename, so a crash of the process never leaves half a
/// `network.conf` or `network.info` behind. No fsync (Mesos's `os::write`
/// has none either): on this machine's ext4 the five fsyncs of one attach
/// cost ~32 ms, ten times the isolator's own work. Use
/// [`write_atomic_durable`] where a power loss must not lose the file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, false)
}

/// [`write_atomic`] plus an fsync before the rename (for a persistent root
/// dir, whose `network.conf` must survive a power loss so DEL can run after
/// the reboot).
pub fn write_atomic_durable(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, true)
}

fn write_file(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

/// Creates a directory and its parents.
pub fn mkdir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// Creates `dir` below `root` (with its parents) and checks that no part of
/// the path below `root` is a symbolic link: a link planted in the root dir
/// would otherwise carry the container's files and its netns bind mount out
/// of it (a bind mount follows links).
pub fn mkdir_below(root: &Path, dir: &Path) -> Result<()> {
    mkdir_all(dir)?;
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| Error::Invalid(format!("{} is not below {}", dir.display(), root.display())))?;
    let mut cur = root.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        let meta = std::fs::symlink_metadata(&cur).map_err(|e| Error::io("inspect", &cur, e))?;
        if !meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is a symbolic link or not a directory; refusing to use it",
                cur.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcni_test_support::TempDir;

    #[test]
    fn mkdir_below_refuses_planted_symlinks() {
        let dir = TempDir::named("rcni-paths");
        let base = dir.path();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("c1")).unwrap();
        let e = mkdir_below(&root, &root.join("c1").join("net").join("eth0")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        mkdir_below(&root, &root.join("c2").join("net")).unwrap();
        assert!(root.join("c2").join("net").is_dir());
        assert!(mkdir_below(&root, &base.join("elsewhere")).is_err());
    }

    #[test]
    fn layout_matches_mesos() {
        let root = Path::new("/r");
        assert_eq!(ns_path(root, "c"), Path::new("/r/c/ns"));
        assert_eq!(
            network_conf_path(root, "c", "net"),
            Path::new("/r/c/net/network.conf")
        );
        assert_eq!(
            network_info_path(root, "c", "net", "eth0"),
            Path::new("/r/c/net/eth0/network.info")
        );
    }

    #[test]
    fn atomic_write_replaces() {
        let tmp = TempDir::named("rcni-iso-paths");
        let dir = tmp.join("d");
        mkdir_all(&dir).unwrap();
        let f = dir.join("x");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}
