//! The process's netfilter socket: opened once, shared by the backend probe, the
//! nftables backend and conntrack, and never closed by hand.
//!
//! Why: releasing a netfilter socket makes the kernel first wait for the cleanup of every
//! nf_tables commit still pending on the host (`nft_rcv_nl_event` flushes the destroy work,
//! which waits for an RCU grace period): 5-15 ms measured here when the socket is closed
//! right after a commit, ours or any other process's. Kept in a static, the socket is
//! released by the kernel when the process exits, after the runtime has its result.

use cni_net::nft::NetfilterSocket;
use std::sync::Mutex;

static SHARED: Mutex<Option<NetfilterSocket>> = Mutex::new(None);

/// The shared socket (opened on first use). Give it back with [`give_back`].
pub fn take() -> cni_net::Result<NetfilterSocket> {
    let cached = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    match cached {
        Some(s) => Ok(s),
        None => NetfilterSocket::new(),
    }
}

/// Keeps `sock` for the next user, or for the kernel to release at exit.
pub fn give_back(sock: NetfilterSocket) {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(sock);
    } else {
        // A second socket (never the case today): dropped, which under
        // `releasing_detached` hands it to the detached child like the first.
        drop(sock);
    }
}

/// Runs `f` on the shared socket.
pub fn with<T>(f: impl FnOnce(&mut NetfilterSocket) -> cni_net::Result<T>) -> cni_net::Result<T> {
    let mut sock = take()?;
    let out = f(&mut sock);
    give_back(sock);
    out
}

/// Runs `f` with [`cni_net::detach::defer_slow_releases`] on, then drops the shared socket
/// and hands every kept socket to a child ([`cni_net::detach::release_kept`]): the kernel's
/// wait for nf_tables' deferred cleanup, due when the last netfilter socket of a process goes
/// after any recent deletion on the host, is not the runtime's. For ADD, DEL and GC.
pub fn releasing_detached<T>(f: impl FnOnce() -> T) -> T {
    cni_net::detach::defer_slow_releases();
    let out = f();
    let sock = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(sock);
    cni_net::detach::release_kept();
    out
}
