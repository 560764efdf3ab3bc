//! Network namespaces: open a handle, run code with the current thread inside one, and always
//! come back.
//!
//! Namespaces belong to threads, not processes. Everything here acts on the **calling thread**
//! and names the current namespace through `/proc/thread-self/ns/net` (`/proc/self` would show
//! the main thread's namespace). Things that follow the thread while it is inside: new sockets,
//! `/proc/sys` (see [`crate::sysctl`]) and `/proc/thread-self/net`.
//!
//! A netlink socket stays bound to the namespace it was **created** in, even after the thread
//! leaves. So a plugin opens the container-side socket inside the container namespace
//! ([`Netns::socket`]) and then uses it from the host namespace:
//!
//! ```no_run
//! # fn main() -> cni_net::Result<()> {
//! let container = cni_net::Netns::open("/var/run/netns/c1")?;
//! let mut inside = container.socket()?; // talks to the container's links from here on
//! let lo = inside.link_by_name("lo")?;
//! inside.set_link_up(lo.index)?;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};
use crate::netlink::Socket;

/// Where the calling thread's network namespace is visible.
pub const THREAD_SELF_NETNS: &str = "/proc/thread-self/ns/net";

/// Identity of a namespace: device and inode of its nsfs file. Two handles refer to the same
/// namespace exactly when their ids are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file.
    pub ino: u64,
}

/// An open network namespace (a file descriptor on an nsfs file such as `/var/run/netns/x`
/// or `/proc/PID/ns/net`). Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::NetnsOpen {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the calling thread's current network namespace (`/proc/thread-self/ns/net`).
    pub fn current() -> Result<Self> {
        Self::open(THREAD_SELF_NETNS)
    }

    /// Wraps an already open namespace descriptor; `path` is only used in messages.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> Self {
        Netns {
            file: File::from(fd),
            path: path.into(),
        }
    }

    /// The path the handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's identity.
    pub fn id(&self) -> Result<NetnsId> {
        let meta = self.file.metadata().map_err(|source| Error::NetnsOpen {
            path: self.path.clone(),
            source,
        })?;
        Ok(NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Moves the calling thread into this namespace until the returned guard is restored or
    /// dropped. Prefer [`Netns::run`], which also reports a failed return.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let original = Netns::current()?;
        let original_id = original.id()?;
        let entered = self.id()? != original_id;
        if entered {
            setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| Error::Setns {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(NetnsGuard {
            original,
            original_id,
            entered,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` with the calling thread inside this namespace and switches back afterwards,
    /// also when `f` panics. The process aborts if the thread cannot be brought back to its
    /// original namespace (compared by inode): nothing after that could be trusted.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let guard = self.enter()?;
        let out = f();
        guard.restore()?;
        Ok(out)
    }

    /// Opens a netlink route socket inside this namespace. The socket keeps acting on this
    /// namespace after the thread is back in its own.
    pub fn socket(&self) -> Result<Socket> {
        self.run(Socket::new)?
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Runs `f` with the calling thread inside the namespace at `path` (see [`Netns::run`]).
pub fn in_netns<T>(path: impl AsRef<Path>, f: impl FnOnce() -> T) -> Result<T> {
    Netns::open(path)?.run(f)
}

/// The identity of the calling thread's current network namespace.
pub fn current_id() -> Result<NetnsId> {
    let meta = std::fs::metadata(THREAD_SELF_NETNS).map_err(|source| Error::NetnsOpen {
        path: THREAD_SELF_NETNS.into(),
        source,
    })?;
    Ok(NetnsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Returned by [`Netns::enter`]: switches the thread back to its original namespace when
/// restored or dropped. It cannot leave the thread (it is neither `Send` nor `Sync`).
///
/// If switching back fails while dropping (during a panic, or when the guard was not
/// [`restored`](NetnsGuard::restore)), the process is aborted: a thread stuck in the wrong
/// namespace would silently change the wrong network.
#[derive(Debug)]
#[must_use = "the thread switches back when the guard is dropped"]
pub struct NetnsGuard {
    original: Netns,
    original_id: NetnsId,
    entered: bool,
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Switches back and checks that the thread is in its original namespace again.
    ///
    /// A failure here aborts the process, as in `Drop`: the caller could not
    /// recover from an error safely, since everything it did next (an undo
    /// list, an IPAM DEL, firewall changes) would act on the wrong namespace.
    pub fn restore(mut self) -> Result<()> {
        let entered = std::mem::replace(&mut self.entered, false);
        if entered && let Err(e) = setns(self.original.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            stuck(&self.original.path, &e.to_string());
        }
        match current_id() {
            Ok(id) if id == self.original_id => Ok(()),
            Ok(_) => stuck(&self.original.path, "the thread is in another namespace"),
            Err(e) => stuck(&self.original.path, &e.to_string()),
        }
    }
}

/// The thread cannot be brought back to its namespace: abort rather than act
/// on the wrong network.
fn stuck(original: &std::path::Path, why: &str) -> ! {
    eprintln!(
        "cni-net: cannot return the thread to its network namespace {} ({why}); aborting",
        original.display()
    );
    std::process::abort()
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if self.entered && setns(self.original.file.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
            eprintln!("cni-net: cannot return the thread to its original network namespace; aborting");
            std::process::abort();
        }
    }
}
