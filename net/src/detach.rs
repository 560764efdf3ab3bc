//! Moving the kernel's slow garbage collection off the plugin's exit path.
//!
//! Two kernel operations make the calling process wait for RCU grace periods (10-20 ms on a
//! 2-core machine with `CONFIG_RCU_LAZY`) after the visible work is already done:
//!
//! - deleting a network device: the device is unlisted, its addresses and routes are gone and
//!   `RTM_DELLINK` is broadcast, then the same syscall runs `netdev_run_todo()`, which calls
//!   `rcu_barrier()` before freeing it;
//! - releasing the last reference to a `NETLINK_NETFILTER` socket: nf_tables flushes its
//!   deferred destroy work (the objects of earlier commits that deleted something), which
//!   waits for a grace period, even though the deletions were committed and visible long ago.
//!
//! A runtime waits for a plugin's exit, so both waits are part of every DEL it runs. Here the
//! waiting part is done by a forked child that keeps nothing but the one socket it needs (no
//! stdout, no lock files), so the plugin can answer and exit as soon as the change is visible.
//! The child is never waited for: it is reaped by whoever inherits it when the plugin exits.
//!
//! Only for short-lived plugin processes: a long-running caller would collect one zombie per
//! call. Everything is opt-in ([`defer_slow_releases`], [`delete_link_unlisted`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;

use crate::error::{Error, Result};
use crate::netlink::Socket;
use crate::netns::Netns;

/// `RTNLGRP_LINK`: link creation, change and deletion notifications.
const RTNLGRP_LINK: u32 = 1;
/// `NLMSG_ERROR`, the type of an ACK.
const NLMSG_ERROR: u16 = 2;
/// How long [`delete_link_unlisted`] waits for the kernel before reporting a failure.
const UNLIST_TIMEOUT: Duration = Duration::from_secs(30);

static DEFER: AtomicBool = AtomicBool::new(false);
static KEPT: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// From now on, netfilter sockets dropped by this process are kept open instead of closed,
/// until [`release_kept`] hands them to a child. Call it early in a plugin's DEL or GC.
pub fn defer_slow_releases() {
    DEFER.store(true, Ordering::SeqCst);
}

/// Runs `f` with [`defer_slow_releases`] on, then [`release_kept`]: the shape of a plugin
/// command whose netfilter sockets should not make the runtime wait.
pub fn with_deferred_releases<T>(f: impl FnOnce() -> T) -> T {
    defer_slow_releases();
    let out = f();
    release_kept();
    out
}

/// Takes a duplicate of `fd` into the kept set when deferral is on; false when it is off
/// (the caller then closes `fd` as usual).
pub(crate) fn keep_on_drop(fd: RawFd) -> bool {
    if !DEFER.load(Ordering::SeqCst) {
        return false;
    }
    // SAFETY: `fd` is an open descriptor owned by the caller for the duration of this call;
    // F_DUPFD_CLOEXEC creates a new descriptor that we own from here on.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return false;
    }
    // SAFETY: `dup` was just returned by fcntl and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(owned);
    true
}

/// Hands every kept socket to a child process that closes them (waiting for the kernel
/// there) and exits. Nothing kept: nothing happens. When the fork fails the sockets are
/// closed here, with the wait.
pub fn release_kept() {
    let fds = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    if !fds.is_empty() {
        hand_over(fds);
    }
}

/// Forks a child that keeps exactly `fds`, closes every other descriptor at once (stdout
/// included, so the runtime's read of our output ends with ours), waits out two RCU grace
/// periods and exits, dropping the last reference to `fds` in its own context. The parent
/// closes its copies right away.
///
/// Why wait before closing: nf_tables flushes its deferred destroy work on a netfilter
/// socket's release while holding its commit mutex, so every other writer on the host (the
/// next plugin's ADD) would queue behind that grace period. Once our own grace periods are
/// over, the destroy work queued by our commits has run on its own and the release is quick.
pub fn hand_over(fds: Vec<OwnedFd>) {
    let mut keep: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    keep.sort_unstable();
    // SAFETY: the child only makes async-signal-safe system calls (close_range, close, _exit)
    // on a vector allocated before the fork; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the freshly forked child, see above.
        unsafe {
            close_all_except(&keep);
            wait_grace_periods();
            libc::_exit(0);
        }
    }
    // Parent (or failed fork): our copies go; with a child they were not the last ones.
    drop(fds);
}

/// Waits for two RCU grace periods (`membarrier(MEMBARRIER_CMD_GLOBAL)` runs
/// `synchronize_rcu()`, holding no lock of ours), or 100 ms where membarrier is refused
/// (`nohz_full` kernels). Two, because work queued just before the first may start its own
/// wait a little after ours.
fn wait_grace_periods() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    for _ in 0..2 {
        // SAFETY: membarrier takes no pointers.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
        if rc != 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            // SAFETY: nanosleep reads a live timespec; the remainder pointer may be null.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            return;
        }
    }
}

/// Closes every descriptor of the calling process except `keep` (sorted ascending).
///
/// # Safety
/// Only for a forked child that owns nothing Rust will touch again.
unsafe fn close_all_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

/// `close_range(2)`, falling back to closing one by one below 4096 on kernels before 5.9.
fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors; it reads no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc != 0 {
        for fd in first..=last.min(4095) {
            // SAFETY: closing a descriptor number, open or not, touches no memory.
            unsafe { libc::close(fd as RawFd) };
        }
    }
}

/// Deletes the link `name` of `netns` and returns as soon as the kernel has unlisted it
/// (its `RTM_DELLINK` is seen), leaving the rest of the deletion (`rcu_barrier()` in
/// `netdev_run_todo()`, 10-20 ms) to a forked child. For a veth both ends are unlisted by then.
/// False when there was no such link.
pub fn delete_link_unlisted(netns: &Netns, name: &str) -> Result<bool> {
    let (monitor, deleter) = netns.run(|| Ok::<_, Error>((Socket::new()?, Socket::new()?)))??;
    let mut monitor = monitor;
    monitor.subscribe(RTNLGRP_LINK)?;
    let link = match monitor.link_by_name(name) {
        Ok(link) => link,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut request = LinkMessage::default();
    request.header.index = link.index;
    let mut deleter = deleter;
    let bytes = deleter.encode_request(RouteNetlinkMessage::DelLink(request), 0);
    let (ours, theirs) = status_pair()?;
    let keep = [deleter.as_raw_fd(), theirs.as_raw_fd()];
    // SAFETY: the child only makes async-signal-safe system calls on memory allocated before
    // the fork (`bytes`, `keep`) and on the stack, and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        drop((ours, theirs));
        return deleter.delete_link(link.index);
    }
    if pid == 0 {
        // SAFETY: see above; this is the child.
        unsafe { delete_in_child(&keep, &bytes) }
    }
    drop(theirs);
    drop(deleter);
    wait_unlisted(&mut monitor, &ours, link.index)
}

/// The child of [`delete_link_unlisted`]: sends the prepared `RTM_DELLINK`, reports the errno
/// of its ACK (0 for success) on the status socket and exits.
///
/// # Safety
/// Only in the freshly forked child; never returns.
unsafe fn delete_in_child(keep: &[RawFd; 2], request: &[u8]) -> ! {
    let [sock, status] = *keep;
    let mut sorted = *keep;
    sorted.sort_unstable();
    // SAFETY: raw system calls on descriptors we keep and on buffers that live for the
    // duration of each call.
    unsafe {
        close_all_except(&sorted);
        let mut code: i32 = 0;
        if libc::send(sock, request.as_ptr().cast(), request.len(), 0) < 0 {
            code = -*libc::__errno_location();
        } else {
            let mut buf = [0u8; 512];
            loop {
                let n = libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n < 0 {
                    if *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    code = -*libc::__errno_location();
                } else if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
                    code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
                }
                break;
            }
        }
        libc::send(status, (&code as *const i32).cast(), 4, libc::MSG_NOSIGNAL);
        libc::_exit(0);
    }
}

/// Waits until `monitor` sees link `index` deleted, or the child reports the outcome first.
fn wait_unlisted(monitor: &mut Socket, status: &OwnedFd, index: u32) -> Result<bool> {
    let deadline = Instant::now() + UNLIST_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::UnexpectedReply(format!(
                "link {index} was not deleted within {}s",
                UNLIST_TIMEOUT.as_secs()
            )));
        }
        let mut fds = [
            libc::pollfd {
                fd: monitor.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: status.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Io(err));
        }
        if fds[1].revents != 0 {
            return child_outcome(status);
        }
        if fds[0].revents != 0 {
            match monitor.recv_notifications() {
                Ok(msgs) => {
                    if msgs
                        .iter()
                        .any(|m| matches!(m, RouteNetlinkMessage::DelLink(l) if l.header.index == index))
                    {
                        return Ok(true);
                    }
                }
                // Notifications were dropped (ENOBUFS): ask whether the link is still there.
                Err(_) => match monitor.link_by_index(index) {
                    Err(e) if e.is_not_found() => return Ok(true),
                    _ => {}
                },
            }
        }
    }
}

/// Reads the child's report: the errno of the kernel's answer to the deletion.
fn child_outcome(status: &OwnedFd) -> Result<bool> {
    let mut code = [0u8; 4];
    // SAFETY: reading at most 4 bytes into a live 4-byte buffer.
    let n = unsafe { libc::recv(status.as_raw_fd(), code.as_mut_ptr().cast(), 4, 0) };
    if n != 4 {
        return Err(Error::UnexpectedReply(
            "the process deleting the link exited without an answer".into(),
        ));
    }
    match i32::from_ne_bytes(code) {
        0 => Ok(true),
        c if -c == libc::ENODEV => Ok(false),
        c => Err(Error::kernel(-c, None)),
    }
}

/// A connected pair of datagram sockets for the child's one-word report.
fn status_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into the live 2-element array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
