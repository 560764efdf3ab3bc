//! A blocking `NETLINK_NETFILTER` socket: sends nf_tables batches and checks every ACK, runs
//! dumps, and carries ctnetlink requests for [`crate::conntrack`].

use std::os::fd::AsRawFd;

use netlink_sys::{SocketAddr, protocols::NETLINK_NETFILTER};

use super::batch::{Batch, EncodedBatch, NLM_F_ACK, NLM_F_REQUEST};
use super::wire::{self, NFGENMSG_LEN, NLMSG_HDRLEN, RawMessage, put_message};
use crate::error::{Error, KernelError, Result};
use crate::netns::Netns;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_MULTIPART: u16 = 0x2;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Receive buffer: nf_tables dumps come in datagrams of up to 32 KiB (a page more on some
/// kernels); larger datagrams are detected with `MSG_TRUNC` and the buffer grows.
const RECV_BUF_SIZE: usize = 64 * 1024;
const SO_RCVBUF_SIZE: usize = 4 * 1024 * 1024;

/// How often a batch is sent again when the kernel answers `EAGAIN`, `EINTR` or `ERESTART`:
/// a module being loaded or a concurrent transaction changed the generation under it. Nothing
/// was applied in that case, so sending it again is safe.
pub const BATCH_RETRIES: u32 = 3;
/// How often a dump is restarted when the kernel flags it as interrupted by a concurrent change.
pub const DUMP_RETRIES: u32 = 5;

/// How long one receive waits for the kernel before giving up.
pub const RECV_TIMEOUT_SECS: i64 = 30;

/// `ERESTART` as userspace sees it (Linux errno 85); `nix` does not export it on every target.
const ERESTART: i32 = 85;

/// A netfilter netlink socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct NetfilterSocket {
    socket: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// A reply message copied out of the receive buffer: its type and its payload after `nfgenmsg`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) msg_type: u16,
    pub(crate) family: u8,
    pub(crate) attrs: Vec<u8>,
}

impl Drop for NetfilterSocket {
    /// With [`crate::detach::defer_slow_releases`] on, the socket is kept (as a duplicate)
    /// for [`crate::detach::release_kept`] instead of making this process wait for
    /// nf_tables' deferred destroy work when it is closed.
    fn drop(&mut self) {
        crate::detach::keep_on_drop(self.socket.as_raw_fd());
    }
}

impl NetfilterSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut socket = netlink_sys::Socket::new(NETLINK_NETFILTER).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(Error::Socket)?;
        // Optional: old kernels lack extended acks and nothing depends on them.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(SO_RCVBUF_SIZE);
        let nf = NetfilterSocket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        };
        nf.set_recv_timeout(RECV_TIMEOUT_SECS);
        Ok(nf)
    }

    /// Opens a socket inside `netns` (the calling thread enters it and comes back).
    pub fn new_in(netns: &Netns) -> Result<Self> {
        netns.run(NetfilterSocket::new)?
    }

    /// Bounds every wait for the kernel, so a plugin cannot hang on a lost answer; a timeout
    /// surfaces as [`Error::Io`] with `EAGAIN`. Best effort: without it waits are unbounded.
    fn set_recv_timeout(&self, secs: i64) {
        let tv = libc::timeval {
            // `as _`: time_t is i64 on glibc and deprecated as a name on musl.
            tv_sec: secs as _,
            tv_usec: 0,
        };
        // SAFETY: the fd is a valid open socket owned by `self.socket`; the option value points
        // to a live timeval and its exact size is passed.
        let _ = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Applies `batch` as one transaction. Every message asks for an ACK; when one fails the
    /// error names that message ("add rule inet t c (message 3 of 5)") and carries the errno
    /// and the kernel's extended-ack text. The kernel rolls the whole batch back in that case.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_once(batch) {
                Err(Error::Kernel(k))
                    if attempt < BATCH_RETRIES
                        && matches!(k.errno as i32, libc::EAGAIN | libc::EINTR | ERESTART) =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn apply_once(&mut self, batch: &Batch) -> Result<()> {
        let first = self.seq.wrapping_add(1).max(1);
        let encoded = batch.encode(first)?;
        self.seq = first.wrapping_add(encoded.descriptions.len() as u32 + 1);
        self.ensure_send_buffer(encoded.bytes.len());
        self.send(&encoded.bytes)?;
        self.collect_acks(&encoded)
    }

    /// Reads one ACK or error per message of the batch. Errors for the batch as a whole (a
    /// refused `BATCH_BEGIN`) end the wait at once.
    fn collect_acks(&mut self, enc: &EncodedBatch) -> Result<()> {
        let n = enc.descriptions.len() as u32;
        let begin = enc.first_seq;
        let mut answered = vec![false; n as usize];
        let mut remaining = n;
        let mut first_error: Option<(u32, i32, Option<String>)> = None;
        while remaining > 0 {
            self.recv_datagram()?;
            for msg in wire::messages(&self.buf) {
                let msg = msg.map_err(Error::UnexpectedReply)?;
                if msg.msg_type != NLMSG_ERROR {
                    continue;
                }
                let (code, ext) = parse_error(&msg);
                let index = msg.seq.wrapping_sub(begin);
                if msg.seq == begin || index == n + 1 {
                    if code != 0 {
                        let what = if msg.seq == begin {
                            "the batch"
                        } else {
                            "the end of the batch"
                        };
                        return Err(kernel_error(-code, format!("{what} was refused"), ext));
                    }
                    continue;
                }
                if index == 0 || index > n || answered[(index - 1) as usize] {
                    continue; // a stale answer to an earlier, abandoned request
                }
                answered[(index - 1) as usize] = true;
                remaining -= 1;
                if code != 0 && first_error.as_ref().is_none_or(|(i, _, _)| index < *i) {
                    first_error = Some((index, code, ext));
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((index, code, ext)) => {
                let what = &enc.descriptions[(index - 1) as usize];
                Err(kernel_error(
                    -code,
                    format!("{what} (message {index} of {n} in the batch)"),
                    ext,
                ))
            }
        }
    }

    /// Grows the socket's send buffer for a big batch: the kernel refuses a datagram larger
    /// than it with `EMSGSIZE`, and a batch must go in one datagram.
    fn ensure_send_buffer(&self, len: usize) {
        const DEFAULT_SNDBUF: usize = 128 * 1024;
        if len < DEFAULT_SNDBUF {
            return;
        }
        let size = (len * 2).min(i32::MAX as usize) as libc::c_int;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: the fd is a valid open socket owned by `self.socket`; the option value
            // points to a live c_int and its exact size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    self.socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                return;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let sent = self.socket.send(bytes, 0).map_err(Error::Io)?;
        if sent != bytes.len() {
            return Err(Error::UnexpectedReply(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Sends one request (`msg_type` with `nfgenmsg` family and `res_id`) with `NLM_F_ACK`
    /// and returns the messages answered before the ACK.
    pub(crate) fn request(
        &mut self,
        msg_type: u16,
        flags: u16,
        family: u8,
        attrs: &[u8],
    ) -> Result<Vec<Reply>> {
        let seq = self.next_seq();
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len());
        put_message(
            &mut out,
            msg_type,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
            attrs,
        );
        self.send(&out)?;
        let mut replies = Vec::new();
        loop {
            self.recv_datagram()?;
            for msg in wire::messages(&self.buf) {
                let msg = msg.map_err(Error::UnexpectedReply)?;
                if msg.seq != seq {
                    continue;
                }
                match msg.msg_type {
                    NLMSG_ERROR => {
                        let (code, ext) = parse_error(&msg);
                        if code != 0 {
                            return Err(Error::Kernel(KernelError {
                                errno: nix::errno::Errno::from_raw(-code),
                                message: ext,
                            }));
                        }
                        return Ok(replies);
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push(to_reply(&msg)?),
                }
            }
        }
    }

    /// Runs a dump (`NLM_F_DUMP`) and returns every message of it, restarting it when the
    /// kernel flags it as interrupted.
    pub(crate) fn dump(&mut self, msg_type: u16, family: u8, attrs: &[u8]) -> Result<Vec<Reply>> {
        for _ in 0..DUMP_RETRIES {
            let (replies, interrupted) = self.dump_once(msg_type, family, attrs)?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Err(Error::DumpInterrupted(DUMP_RETRIES))
    }

    fn dump_once(&mut self, msg_type: u16, family: u8, attrs: &[u8]) -> Result<(Vec<Reply>, bool)> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        put_message(
            &mut out,
            msg_type,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
            attrs,
        );
        self.send(&out)?;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv_datagram()?;
            for msg in wire::messages(&self.buf) {
                let msg = msg.map_err(Error::UnexpectedReply)?;
                if msg.seq != seq {
                    continue;
                }
                interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
                match msg.msg_type {
                    NLMSG_DONE => {
                        let code = msg
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code < 0 {
                            return Err(Error::kernel(-code, None));
                        }
                        return Ok((replies, interrupted));
                    }
                    NLMSG_ERROR => {
                        let (code, ext) = parse_error(&msg);
                        if code != 0 {
                            return Err(Error::Kernel(KernelError {
                                errno: nix::errno::Errno::from_raw(-code),
                                message: ext,
                            }));
                        }
                        return Ok((replies, interrupted));
                    }
                    _ => {
                        replies.push(to_reply(&msg)?);
                        if msg.flags & NLM_F_MULTIPART == 0 {
                            return Ok((replies, interrupted));
                        }
                    }
                }
            }
        }
    }

    /// Reads the next datagram into `self.buf` whole, growing the buffer when it is larger.
    fn recv_datagram(&mut self) -> Result<()> {
        self.buf.clear();
        let want = self.recv_retrying(libc::MSG_PEEK | libc::MSG_TRUNC)?;
        self.buf.clear();
        if want > self.buf.capacity() {
            self.buf.reserve(want);
        }
        let got = self.recv_retrying(0)?;
        if got > self.buf.len() {
            return Err(Error::UnexpectedReply(format!(
                "datagram of {got} bytes truncated"
            )));
        }
        Ok(())
    }

    fn recv_retrying(&mut self, flags: libc::c_int) -> Result<usize> {
        loop {
            match self.socket.recv(&mut self.buf, flags) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other.map_err(Error::Io),
            }
        }
    }
}

fn to_reply(msg: &RawMessage<'_>) -> Result<Reply> {
    if msg.payload.len() < NFGENMSG_LEN {
        return Err(Error::UnexpectedReply(format!(
            "message type {:#x} without nfgenmsg",
            msg.msg_type
        )));
    }
    Ok(Reply {
        msg_type: msg.msg_type,
        family: msg.payload[0],
        attrs: msg.payload[NFGENMSG_LEN..].to_vec(),
    })
}

/// The errno (negative, 0 for an ACK) and extended-ack text of an `NLMSG_ERROR`.
fn parse_error(msg: &RawMessage<'_>) -> (i32, Option<String>) {
    let Some(code) = msg.payload.get(..4) else {
        return (-libc::EPROTO, None);
    };
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if msg.flags & NLM_F_ACK_TLVS == 0 {
        return (code, None);
    }
    let rest = &msg.payload[4..];
    let request_len = if msg.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        rest.get(..4).map_or(0, |b| {
            wire::align4(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        })
    };
    let text = rest.get(request_len..).and_then(|tlvs| {
        wire::attrs(tlvs)
            .find(|(kind, _)| *kind == NLMSGERR_ATTR_MSG)
            .map(|(_, v)| wire::string(v))
    });
    (code, text.filter(|t| !t.trim().is_empty()))
}

fn kernel_error(errno: i32, context: String, ext: Option<String>) -> Error {
    let message = match ext {
        Some(ext) => format!("{context}: {ext}"),
        None => context,
    };
    Error::Kernel(KernelError {
        errno: nix::errno::Errno::from_raw(errno),
        message: Some(message),
    })
}
