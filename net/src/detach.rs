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
//! waiting part is done by a child process that keeps nothing but the one socket it needs (no
//! stdout, no lock files), so the plugin can answer and exit as soon as the change is visible.
//! The child is never waited for: it is reaped by whoever inherits it when the plugin exits.
//!
//! Only for short-lived plugin processes: a long-running caller would collect one zombie per
//! call. Everything is opt-in: a command owns its sockets in a [`Sockets`] made with
//! [`Sockets::detached`] (or [`Sockets::in_place`] where no child may be left), and deletes
//! links with [`delete_link_unlisted`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;

use crate::error::{Error, Result};
use crate::netlink::Socket;
use crate::netns::Netns;
use crate::nft::NetfilterSocket;

/// `RTNLGRP_LINK`: link creation, change and deletion notifications.
const RTNLGRP_LINK: u32 = 1;
/// `NLMSG_ERROR`, the type of an ACK.
const NLMSG_ERROR: u16 = 2;
/// How long [`delete_link_unlisted`] waits for the kernel before reporting a failure.
const UNLIST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`Sockets`] closes what it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// In a forked child that nobody waits for, after the answer: for a plugin process.
    Detached,
    /// Right away, waiting for the kernel: for long-running callers and tests, which would
    /// collect one zombie per call otherwise.
    InPlace,
}

/// The owner of one plugin command's netfilter socket and of every other socket whose
/// release may make the command wait (see the module doc). Made where the command starts,
/// passed down by `&mut`, and released when it is done: explicitly with
/// [`Sockets::release`], or when dropped.
///
/// One netfilter socket serves the whole command (nftables changes and listings, conntrack,
/// the probes): every socket more would be one more release to wait for.
#[derive(Debug)]
pub struct Sockets {
    release: Release,
    netfilter: Option<NetfilterSocket>,
    kept: Vec<OwnedFd>,
}

impl Sockets {
    /// Sockets released by a detached child ([`Release::Detached`]).
    pub fn detached() -> Self {
        Sockets::new(Release::Detached)
    }

    /// Sockets closed in place ([`Release::InPlace`]).
    pub fn in_place() -> Self {
        Sockets::new(Release::InPlace)
    }

    /// Sockets released as `release` says.
    pub fn new(release: Release) -> Self {
        Sockets {
            release,
            netfilter: None,
            kept: Vec::new(),
        }
    }

    /// The command's netfilter socket, opened on first use in the calling thread's network
    /// namespace (a plugin's host namespace: the one it was started in).
    pub fn netfilter(&mut self) -> Result<&mut NetfilterSocket> {
        let sock = match self.netfilter.take() {
            Some(sock) => sock,
            None => NetfilterSocket::new()?,
        };
        Ok(self.netfilter.insert(sock))
    }

    /// Takes another socket whose release should not be waited for.
    pub fn keep(&mut self, fd: OwnedFd) {
        self.kept.push(fd);
    }

    /// Releases everything now (what dropping does), as [`Sockets::new`] was told.
    pub fn release(self) {}

    fn release_all(&mut self) {
        let mut fds = std::mem::take(&mut self.kept);
        if let Some(sock) = self.netfilter.take() {
            fds.push(sock.into_fd());
        }
        if fds.is_empty() {
            return;
        }
        match self.release {
            Release::Detached => hand_over(fds),
            Release::InPlace => drop(fds),
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        self.release_all();
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
    hand_over_after(fds, None);
}

/// [`hand_over`], with the child waiting, after it has closed every other descriptor, until
/// `gate` reads end-of-file (its writers are all closed) before its grace periods. For a
/// caller that must know the child's state without timing it, as the tests do: while the
/// gate's write end is open, the child is alive, holds `fds` and nothing else.
pub fn hand_over_gated(fds: Vec<OwnedFd>, gate: OwnedFd) {
    hand_over_after(fds, Some(gate));
}

fn hand_over_after(fds: Vec<OwnedFd>, gate: Option<OwnedFd>) {
    let mut keep: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    keep.extend(gate.as_ref().map(|g| g.as_raw_fd()));
    keep.sort_unstable();
    spawn_child(Job {
        keep,
        work: Work::Release {
            gate: gate.as_ref().map(|g| g.as_raw_fd()),
        },
    });
    // Our copies go; with a child they were not the last ones (without one, the wait is ours).
    drop((fds, gate));
}

/// What a detached child does.
struct Job {
    /// The descriptors the child keeps, sorted ascending; it closes all others at once.
    keep: Vec<RawFd>,
    work: Work,
}

enum Work {
    /// Wait for end-of-file on `gate` when there is one, then out the grace periods, then
    /// exit, releasing `keep`.
    Release { gate: Option<RawFd> },
    /// Send `request` on `sock`, then report the errno of the kernel's ACK on `status`.
    DeleteLink {
        sock: RawFd,
        status: RawFd,
        request: Vec<u8>,
    },
}

/// Forks a child process for `job` that nobody waits for; false when none could be started.
///
/// A plain fork: the child gets its own copy of our memory, so nothing it does can touch the
/// plugin's. The plugin may have threads, so the child makes only async-signal-safe calls
/// (close, sendto, recvfrom, membarrier, nanosleep) on memory prepared before the fork, and
/// leaves with `_exit`, never returning into Rust code. (An earlier child made by `clone` with a shared address space
/// saved 0.1-0.2 ms of page-table copying per call, at the price of sharing the plugin's
/// memory and TLS with code that must never allocate, format or panic.)
fn spawn_child(job: Job) -> bool {
    // SAFETY: fork has no memory-safety preconditions; in the child only `run_job` runs,
    // whose contract (async-signal-safe calls on memory allocated before the fork) holds
    // in a forked copy of a multi-threaded process, and it leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the freshly forked child, see above.
        unsafe {
            run_job(&job);
            libc::_exit(0);
        }
    }
    pid > 0
}

/// The child's work: keep only `job.keep`, then do `job.work`.
///
/// # Safety
/// Only in a freshly forked child of [`spawn_child`]: it closes descriptors that Rust objects
/// of the parent's copy still name, and makes only async-signal-safe calls.
unsafe fn run_job(job: &Job) {
    // SAFETY: we are that child.
    unsafe {
        close_all_except(&job.keep);
        match &job.work {
            Work::Release { gate } => {
                if let Some(gate) = *gate {
                    wait_for_eof(gate);
                }
                wait_grace_periods()
            }
            Work::DeleteLink {
                sock,
                status,
                request,
            } => delete_link_in_child(*sock, *status, request),
        }
    }
}

/// Waits for two RCU grace periods (`membarrier(MEMBARRIER_CMD_GLOBAL)` runs
/// `synchronize_rcu()`, holding no lock of ours), or 100 ms where membarrier is refused
/// (`nohz_full` kernels). Two, because work queued just before the first may start its own
/// wait a little after ours.
///
/// # Safety
/// As [`run_job`].
unsafe fn wait_grace_periods() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    for _ in 0..2 {
        // SAFETY: membarrier takes no pointers.
        if unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0) } != 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            // SAFETY: `pause` lives across the call; no remainder is asked for.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            return;
        }
    }
}

/// Reads `fd` until end-of-file or an error other than `EINTR`.
///
/// # Safety
/// As [`run_job`]; `fd` is a descriptor the child kept.
unsafe fn wait_for_eof(fd: RawFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: reading errno is async-signal-safe.
        if n == 0 || (n < 0 && unsafe { *libc::__errno_location() } != libc::EINTR) {
            return;
        }
    }
}

/// Closes every descriptor of the calling process except `keep` (sorted ascending).
///
/// # Safety
/// Only in a detached child ([`spawn_child`]), which owns nothing Rust will touch again.
unsafe fn close_all_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: forwarded contract.
            unsafe { close_range(from, fd - 1) };
        }
        from = fd + 1;
    }
    // SAFETY: forwarded contract.
    unsafe { close_range(from, u32::MAX) };
}

/// `close_range(2)`, falling back to closing one by one below 4096 on kernels before 5.9.
///
/// # Safety
/// As [`close_all_except`]: the descriptors closed must belong to nothing that is used again.
unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: close_range takes no pointers; see the contract for the descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
        for fd in first..=last.min(4095) {
            // SAFETY: as above.
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
    let bytes = deleter.encode_request(RouteNetlinkMessage::DelLink(request), 0)?;
    let (ours, theirs) = status_pair()?;
    let mut keep = vec![deleter.as_raw_fd(), theirs.as_raw_fd()];
    keep.sort_unstable();
    let work = Work::DeleteLink {
        sock: deleter.as_raw_fd(),
        status: theirs.as_raw_fd(),
        request: bytes,
    };
    if !spawn_child(Job { keep, work }) {
        drop((ours, theirs));
        return deleter.delete_link(link.index);
    }
    drop(theirs);
    drop(deleter);
    wait_unlisted(&mut monitor, &ours, link.index)
}

/// The child's half of [`delete_link_unlisted`]: sends the prepared `RTM_DELLINK`, then reports
/// the errno of its ACK (0 for success) on the status socket.
///
/// # Safety
/// As [`run_job`]; `sock` and `status` are descriptors the child kept.
unsafe fn delete_link_in_child(sock: RawFd, status: RawFd, request: &[u8]) {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    let mut code: i32 = 0;
    // SAFETY: `request` is alive for the call and its length is passed with it.
    let sent = unsafe { libc::send(sock, request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        code = -errno();
    } else {
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n < 0 {
                code = -errno();
            } else if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
                code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            }
            break;
        }
    }
    // SAFETY: `code` is alive for the call; 4 is its size.
    unsafe {
        libc::send(
            status,
            (&code as *const i32).cast(),
            std::mem::size_of::<i32>(),
            libc::MSG_NOSIGNAL,
        )
    };
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
