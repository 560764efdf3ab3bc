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
    spawn_child(Job {
        keep,
        work: Work::Release,
    });
    // Our copies go; with a child they were not the last ones (without one, the wait is ours).
    drop(fds);
}

/// What a detached child does. It lives in leaked memory: a child started with `CLONE_VM`
/// reads it after the parent has moved on (and maybe exited).
struct Job {
    /// The descriptors the child keeps, sorted ascending; it closes all others at once.
    keep: Vec<RawFd>,
    work: Work,
}

enum Work {
    /// Wait out the grace periods, then exit, releasing `keep`.
    Release,
    /// Send `request` on `sock`, then report the errno of the kernel's ACK on `status`.
    DeleteLink {
        sock: RawFd,
        status: RawFd,
        request: Vec<u8>,
    },
}

/// Starts a child process for `job` that nobody waits for; false when none could be started.
///
/// On x86_64 the child shares our memory (`clone(CLONE_VM)` on a stack of its own): no page
/// tables are copied and the parent takes no copy-on-write faults afterwards, 0.1-0.2 ms a
/// fork cost here. Such a child runs only raw system calls ([`sys`]), never libc or Rust
/// runtime code: it shares the calling thread's TLS. Elsewhere it is a plain fork.
fn spawn_child(job: Job) -> bool {
    let job: &'static Job = Box::leak(Box::new(job));
    #[cfg(target_arch = "x86_64")]
    if spawn_sharing_memory(job) {
        return true;
    }
    // SAFETY: the forked child runs only system calls on memory allocated before the fork and
    // leaves with _exit; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the freshly forked child, see above.
        unsafe {
            run_job(job);
            libc::_exit(0);
        }
    }
    pid > 0
}

/// `clone(CLONE_VM)` of [`child_main`] on a fresh 64 KiB stack (never unmapped: the child may
/// outlive every other user of this address space).
#[cfg(target_arch = "x86_64")]
fn spawn_sharing_memory(job: &'static Job) -> bool {
    const STACK: usize = 64 * 1024;
    // SAFETY: an anonymous private mapping; no memory of ours is passed.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the top of the mapping just made; the stack grows down from it.
    let top = unsafe { stack.cast::<u8>().add(STACK) }.cast::<libc::c_void>();
    let arg = (job as *const Job).cast_mut().cast::<libc::c_void>();
    // SAFETY: `child_main` runs on its own stack and only reads `job`, which is leaked; with
    // SIGCHLD as its exit signal the child is reaped like a forked one.
    let pid = unsafe { libc::clone(child_main, top, libc::CLONE_VM | libc::SIGCHLD, arg) };
    if pid <= 0 {
        // SAFETY: the mapping made above, unused since no child started.
        unsafe { libc::munmap(stack, STACK) };
        return false;
    }
    true
}

/// The entry of a `CLONE_VM` child; its return value is its exit status.
#[cfg(target_arch = "x86_64")]
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `Job` of `spawn_sharing_memory`.
    unsafe { run_job(&*arg.cast::<Job>()) };
    0
}

/// The child's work: keep only `job.keep`, then do `job.work`.
///
/// # Safety
/// Only in a detached child; raw system calls only (see [`spawn_child`]).
unsafe fn run_job(job: &Job) {
    // SAFETY: we are that child.
    unsafe { close_all_except(&job.keep) };
    match &job.work {
        Work::Release => wait_grace_periods(),
        Work::DeleteLink {
            sock,
            status,
            request,
        } => delete_link_in_child(*sock, *status, request),
    }
}

/// A system call without libc (no errno, no TLS): the result, or minus the errno.
#[cfg(target_arch = "x86_64")]
fn sys(n: libc::c_long, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    let ret: isize;
    // SAFETY: the Linux x86_64 system call convention; the callers pass valid arguments for
    // `n` (descriptors, and pointers to buffers alive for the call).
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A system call through libc, in a forked child (its errno is its own).
#[cfg(not(target_arch = "x86_64"))]
fn sys(n: libc::c_long, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    // SAFETY: as the callers pass valid arguments for `n`.
    let r = unsafe { libc::syscall(n, a1, a2, a3, a4, a5, a6) } as isize;
    if r < 0 {
        // SAFETY: errno of this (forked, single-threaded) process.
        -(unsafe { *libc::__errno_location() } as isize)
    } else {
        r
    }
}

/// Waits for two RCU grace periods (`membarrier(MEMBARRIER_CMD_GLOBAL)` runs
/// `synchronize_rcu()`, holding no lock of ours), or 100 ms where membarrier is refused
/// (`nohz_full` kernels). Two, because work queued just before the first may start its own
/// wait a little after ours.
fn wait_grace_periods() {
    const MEMBARRIER_CMD_GLOBAL: usize = 1;
    for _ in 0..2 {
        if sys(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0, 0, 0, 0) != 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            sys(
                libc::SYS_nanosleep,
                (&pause as *const libc::timespec) as usize,
                0,
                0,
                0,
                0,
                0,
            );
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
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

/// `close_range(2)`, falling back to closing one by one below 4096 on kernels before 5.9.
fn close_range(first: u32, last: u32) {
    if sys(libc::SYS_close_range, first as usize, last as usize, 0, 0, 0, 0) != 0 {
        for fd in first..=last.min(4095) {
            sys(libc::SYS_close, fd as usize, 0, 0, 0, 0, 0);
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
fn delete_link_in_child(sock: RawFd, status: RawFd, request: &[u8]) {
    let fd = |f: RawFd| f as usize;
    let mut code: i32 = 0;
    let sent = sys(
        libc::SYS_sendto,
        fd(sock),
        request.as_ptr() as usize,
        request.len(),
        0,
        0,
        0,
    );
    if sent < 0 {
        code = sent as i32;
    } else {
        let mut buf = [0u8; 512];
        loop {
            let n = sys(
                libc::SYS_recvfrom,
                fd(sock),
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
                0,
                0,
            );
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n < 0 {
                code = n as i32;
            } else if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
                code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            }
            break;
        }
    }
    sys(
        libc::SYS_sendto,
        fd(status),
        (&code as *const i32) as usize,
        4,
        libc::MSG_NOSIGNAL as usize,
        0,
        0,
    );
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
