//! The core's own netlink work inside a container's network namespace, over
//! `rtnetlink`: `lo` up after the ADDs, link counters for `usage`.
//!
//! A netlink socket stays bound to the namespace it was created in. So a
//! short-lived namespace thread ([`crate::threads::NamespaceThreads`])
//! enters the container's netns (`setns`), creates and binds a plain
//! `netlink_sys::Socket` (non-blocking) and exits; the socket comes back to
//! tokio, where [`NetnsRouteSocket`] registers it with the runtime's I/O
//! driver and `rtnetlink::from_socket` builds the connection on it. No tokio
//! thread calls `setns`. (rtnetlink's own `new_connection` opens its socket
//! on the calling thread, hence this; and the `AsyncSocket` is ours rather
//! than netlink-sys's `TokioSocket` so that the plugins' netlink-sys keeps
//! no tokio feature.)

use crate::error::{Error, Result};
use crate::threads::NamespaceThreads;
use futures_util::TryStreamExt;
use netlink_sys::{AsyncSocket, Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;

/// A netlink socket driven by tokio's I/O driver; created elsewhere (in
/// the namespace it must live in) and handed over.
pub struct NetnsRouteSocket(AsyncFd<Socket>);

impl NetnsRouteSocket {
    /// Registers a non-blocking socket with the current runtime.
    pub fn from_socket(socket: Socket) -> io::Result<NetnsRouteSocket> {
        socket.set_non_blocking(true)?;
        // SAFETY: the Socket owns its descriptor for its whole life (closed
        // on drop, never replaced), so `as_raw_fd` always names the same open
        // file while the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(NetnsRouteSocket(fd))
    }
}

impl AsyncSocket for NetnsRouteSocket {
    fn socket_ref(&self) -> &Socket {
        self.0.get_ref()
    }

    fn socket_mut(&mut self) -> &mut Socket {
        self.0.get_mut()
    }

    /// A socket in the calling thread's namespace (rtnetlink's
    /// `new_connection_with_socket`; the core never calls it).
    fn new(protocol: isize) -> io::Result<Self> {
        NetnsRouteSocket::from_socket(Socket::new(protocol)?)
    }

    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().send(buf, 0)) {
                return Poll::Ready(r);
            }
        }
    }

    fn poll_send_to(&self, cx: &mut Context<'_>, buf: &[u8], addr: &SocketAddr) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().send_to(buf, addr, 0)) {
                return Poll::Ready(r);
            }
        }
    }

    fn poll_recv<B: bytes::BufMut>(&self, cx: &mut Context<'_>, buf: &mut B) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().recv(buf, 0)) {
                return Poll::Ready(r.map(|_| ()));
            }
        }
    }

    fn poll_recv_from<B: bytes::BufMut>(
        &self,
        cx: &mut Context<'_>,
        buf: &mut B,
    ) -> Poll<io::Result<SocketAddr>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().recv_from(buf, 0)) {
                return Poll::Ready(r.map(|(_, addr)| addr));
            }
        }
    }

    fn poll_recv_from_full(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Vec<u8>, SocketAddr)>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().recv_from_full()) {
                return Poll::Ready(r);
            }
        }
    }
}

/// Opens a route socket inside the netns at `ns` on a namespace thread.
fn open_in(ns: PathBuf) -> io::Result<Socket> {
    let file = std::fs::File::open(&ns)?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.set_non_blocking(true)?;
    Ok(socket)
}

/// An rtnetlink handle whose socket lives in the netns at `ns`.
pub async fn route_handle_in(ns: &Path, threads: &NamespaceThreads) -> Result<rtnetlink::Handle> {
    let path = ns.to_path_buf();
    let socket = threads
        .run("rcni-netns", move || open_in(path))
        .await?
        .map_err(|e| Error::io("open a netlink socket in", ns, e))?;
    let socket = NetnsRouteSocket::from_socket(socket)
        .map_err(|e| Error::io("register the netlink socket of", ns, e))?;
    let (connection, handle, _) = rtnetlink::from_socket(socket);
    // Ends when the last handle is dropped.
    tokio::spawn(connection);
    Ok(handle)
}

/// Brings `lo` up inside the namespace at `ns` (Mesos runs `ip link set dev
/// lo up`, which needs iproute2 in the agent's PATH): one `RTM_SETLINK` by
/// name, on `handle`, a connection from [`route_handle_in`] for that
/// namespace (opened ahead, while the plugins run, so the namespace thread
/// costs the attach nothing).
pub async fn loopback_up(handle: rtnetlink::Handle, ns: &Path) -> Result<()> {
    let up = rtnetlink::LinkUnspec::new_with_name("lo").up().build();
    handle
        .link()
        .set(up)
        .execute()
        .await
        .map_err(|source| Error::RtNetlink {
            what: format!("cannot bring lo up in {}", ns.display()),
            source,
        })
}

/// The summed counters of the links named in `ifnames` inside `ns`.
pub async fn link_stats(
    ns: &Path,
    ifnames: &[String],
    threads: &NamespaceThreads,
) -> Result<cni_net::stats::LinkStats> {
    let what = format!("cannot read link statistics in {}", ns.display());
    let handle = route_handle_in(ns, threads).await?;
    let mut links = handle.link().get().execute();
    let mut total = cni_net::stats::LinkStats::default();
    let err = |source| Error::RtNetlink {
        what: what.clone(),
        source,
    };
    while let Some(link) = links.try_next().await.map_err(err)? {
        let named = link.attributes.iter().any(
            |a| matches!(a, netlink_packet_route::link::LinkAttribute::IfName(n) if ifnames.contains(n)),
        );
        if named && let Some(stats) = cni_net::stats::LinkStats::from_message(&link) {
            total.add(&stats);
        }
    }
    Ok(total)
}
