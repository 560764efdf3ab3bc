//! Pinning a container's network namespace to `<root>/<id>/ns`, releasing
//! it, and making the root dir a shared mount of its own peer group.
//!
//! Why the root must be shared (as Mesos's `create` does): a container gets
//! a copy of the host's mounts, including other containers' `ns` bind
//! mounts. Its setup marks `/` as a slave, so when the host unmounts a
//! handle, the unmount propagates into every container's copy and the
//! namespace really goes away; with a private root those copies would keep
//! dead namespaces (and their veths) alive.

use crate::error::{Error, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bind-mounts the network namespace of process `pid` onto `target`
/// (created as an empty file first).
pub fn pin_pid_netns(pid: i32, target: &Path) -> Result<()> {
    pin_from(Path::new(&format!("/proc/{pid}/ns/net")), target)
}

/// Bind-mounts an existing namespace file (`/var/run/netns/x`, a
/// `/proc/PID/ns/net`) onto `target`.
pub fn pin_from(source: &Path, target: &Path) -> Result<()> {
    touch(target)?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        Error::sys(
            format!(
                "cannot bind-mount the network namespace {} to {}",
                source.display(),
                target.display()
            ),
            e,
        )
    })
}

/// Creates a new, empty network namespace pinned at `target`. A short-lived
/// thread unshares its network namespace (namespaces are per thread, so the
/// rest of the process is untouched), bind-mounts
/// `/proc/thread-self/ns/net` and exits.
pub fn pin_new_netns(target: &Path) -> Result<()> {
    let target: PathBuf = target.to_path_buf();
    let worker = std::thread::spawn(move || pin_new_netns_on_this_thread(&target));
    worker
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("the netns-creating thread panicked".into())))
}

/// The work of [`pin_new_netns`] on the calling thread, which ends up in
/// the new namespace: a short-lived thread of its own that exits after.
pub fn pin_new_netns_on_this_thread(target: &Path) -> Result<()> {
    touch(target)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("cannot create a network namespace (unshare)", e))?;
    mount(
        Some(Path::new("/proc/thread-self/ns/net")),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::sys(
            format!(
                "cannot bind-mount a new network namespace to {}",
                target.display()
            ),
            e,
        )
    })
}

/// True when `path` is a live namespace handle: a file on nsfs, which has
/// the device of `/proc/self/ns/net` (Mesos's check). After a reboot the
/// handle is a plain empty file on the root file system.
pub fn is_live_handle(path: &Path) -> bool {
    let (Ok(ns), Ok(own)) = (std::fs::metadata(path), std::fs::metadata("/proc/self/ns/net")) else {
        return false;
    };
    ns.dev() == own.dev()
}

/// Unmounts the handle if it is mounted. Lazy (`MNT_DETACH`), so a handle
/// that some process still has open does not fail the cleanup; the
/// namespace goes when the last user does.
pub fn unpin(path: &Path) -> Result<()> {
    if !is_live_handle(path) {
        return Ok(());
    }
    umount2(path, MntFlags::MNT_DETACH).map_err(|e| {
        Error::sys(
            format!("cannot unmount the network namespace handle {}", path.display()),
            e,
        )
    })
}

fn touch(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| Error::io("create", path, e))
}

/// One line of `/proc/self/mountinfo`, the fields we need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount ID.
    pub id: u32,
    /// Parent mount ID.
    pub parent: u32,
    /// Mount point (octal escapes decoded).
    pub mount_point: PathBuf,
    /// `shared:N` peer group, if shared.
    pub shared: Option<u32>,
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let (Ok(id), Ok(parent)) = (fields[0].parse(), fields[1].parse()) else {
            continue;
        };
        let mut shared = None;
        for f in fields[6..].iter().take_while(|f| **f != "-") {
            if let Some(n) = f.strip_prefix("shared:") {
                shared = n.parse().ok();
            }
        }
        out.push(MountEntry {
            id,
            parent,
            mount_point: PathBuf::from(unescape(fields[4])),
            shared,
        });
    }
    out
}

/// Decodes mountinfo's `\040`-style octal escapes.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What [`ensure_shared_root`] has to do for `root`, given the mount table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootMountAction {
    /// `root` is a shared mount point in its own peer group already.
    Nothing,
    /// `root` is a mount point but not suitably shared: make it private, then shared.
    Reshare,
    /// `root` is no mount point: bind it onto itself first.
    BindAndReshare,
}

/// Decides, like Mesos's `create`, whether the root needs a self bind mount
/// and a new peer group.
pub fn root_mount_action(root: &Path, mounts: &[MountEntry]) -> RootMountAction {
    let Some(entry) = mounts.iter().rev().find(|m| m.mount_point == root) else {
        return RootMountAction::BindAndReshare;
    };
    let Some(group) = entry.shared else {
        return RootMountAction::Reshare;
    };
    let parent_group = mounts
        .iter()
        .find(|m| m.id == entry.parent)
        .and_then(|m| m.shared);
    if parent_group == Some(group) {
        RootMountAction::Reshare
    } else {
        RootMountAction::Nothing
    }
}

/// Makes `root` (an existing, canonical directory) a shared mount with its
/// own peer group: `mount --bind R R` if needed, `--make-private`,
/// `--make-shared`.
///
/// Several isolators may start at once on one root (parallel `cni-isolator`
/// commands, an agent restarting while a CLI runs): each reads the mount
/// table and, without coordination, each would stack its own self bind
/// mount. So the whole read-decide-mount runs under an exclusive `flock` of
/// the root directory itself (a lock on its inode: nothing is written, and
/// the lock holds across the self bind mount, which shows the same inode).
pub fn ensure_shared_root(root: &Path) -> Result<()> {
    let dir = std::fs::File::open(root).map_err(|e| Error::io("open", root, e))?;
    dir.lock().map_err(|e| Error::io("lock", root, e))?;
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", Path::new("/proc/self/mountinfo"), e))?;
    let action = root_mount_action(root, &parse_mountinfo(&text));
    if action == RootMountAction::Nothing {
        return Ok(());
    }
    if action == RootMountAction::BindAndReshare {
        mount(Some(root), root, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::sys(format!("cannot bind-mount {} onto itself", root.display()), e))?;
    }
    for (flag, what) in [(MsFlags::MS_PRIVATE, "private"), (MsFlags::MS_SHARED, "shared")] {
        mount(None::<&str>, root, None::<&str>, flag, None::<&str>)
            .map_err(|e| Error::sys(format!("cannot make {} a {what} mount", root.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:1 /r /r rw,relatime shared:1 - ext4 /dev/sda1 rw
41 22 8:1 /s /s rw,relatime shared:7 - ext4 /dev/sda1 rw
42 22 8:1 /p /p rw,relatime - ext4 /dev/sda1 rw
43 22 0:4 net:[1] /x\\040y rw shared:9 - nsfs nsfs rw
";

    #[test]
    fn decides_like_mesos() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m[4].mount_point, Path::new("/x y"));
        assert_eq!(root_mount_action(Path::new("/r"), &m), RootMountAction::Reshare);
        assert_eq!(root_mount_action(Path::new("/s"), &m), RootMountAction::Nothing);
        assert_eq!(root_mount_action(Path::new("/p"), &m), RootMountAction::Reshare);
        assert_eq!(
            root_mount_action(Path::new("/q"), &m),
            RootMountAction::BindAndReshare
        );
    }
}
