//! The one netlink transport of `cni-net`: a blocking socket that sends a request and reads
//! the kernel's answer, for both protocols rcni speaks (`NETLINK_ROUTE` in
//! [`crate::netlink::Socket`], `NETLINK_NETFILTER` in [`crate::nft::NetfilterSocket`]).
//!
//! What is protocol independent lives here once: numbering requests, reading whole datagrams
//! (growing the buffer for a larger one), skipping stale answers of an abandoned exchange,
//! ending an exchange at its ACK, error or `NLMSG_DONE`, restarting a dump the kernel flags as
//! interrupted, and turning an error into [`Error::Kernel`] with the errno and the
//! extended-ack text. The protocol modules only encode requests and decode payloads.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

use netlink_sys::SocketAddr;

use crate::error::{Error, KernelError, Result};

/// `NLMSG_ERROR`: an ACK (errno 0) or an error.
pub(crate) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub(crate) const NLMSG_DONE: u16 = 3;
/// Message types below this are netlink's own (`NOOP`, `ERROR`, `DONE`, `OVERRUN`).
const NLMSG_MIN_TYPE: u16 = 0x10;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_MULTIPART: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CAPPED`: an error message carries only the request's header, not its payload.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow the error.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: a human readable error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;

/// Appends an `nlmsghdr` to `out`: a message of `len` bytes in all (this header included),
/// addressed to port 0, the kernel.
pub(crate) fn put_header(out: &mut Vec<u8>, len: usize, msg_type: u16, flags: u16, seq: u32) {
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
}
/// Both flag bits of `nla_type` (`NLA_F_NESTED | NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = !(3 << 14);

/// Initial receive buffer. Dumps arrive in datagrams of at most 32 KiB (a page more on some
/// kernels); a larger one (a link with many VFs) is detected with `MSG_PEEK | MSG_TRUNC` and
/// the buffer grows for it.
const RECV_BUF_SIZE: usize = 64 * 1024;

/// How many times a dump is restarted when the kernel flags it as interrupted by a concurrent
/// change (`NLM_F_DUMP_INTR`).
pub const DUMP_RETRIES: u32 = 5;

/// How long one receive waits for the kernel before giving up, so a caller cannot hang on a
/// lost answer; a timeout surfaces as [`Error::Io`] with `EAGAIN`.
pub const RECV_TIMEOUT_SECS: i64 = 30;

/// `ERESTART` as userspace sees it (Linux errno 85); `nix` does not export it on every target.
pub(crate) const ERESTART: i32 = 85;

/// A netlink message of a received datagram.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) msg_type: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    /// What follows `nlmsghdr`.
    pub(crate) payload: &'a [u8],
}

/// A blocking netlink socket bound to the namespace of the thread that opened it.
#[derive(Debug)]
pub(crate) struct Transport {
    socket: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Transport {
    /// Opens a socket of `protocol` in the calling thread's network namespace, with extended
    /// acks where the kernel has them, a receive buffer of `rcvbuf` bytes asked for (so big
    /// dumps are not dropped with `ENOBUFS`) and every receive bounded by
    /// [`RECV_TIMEOUT_SECS`].
    pub(crate) fn open(protocol: isize, rcvbuf: usize) -> Result<Self> {
        let mut socket = netlink_sys::Socket::new(protocol).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(Error::Socket)?;
        // Optional features: old kernels lack them and nothing depends on them.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(rcvbuf);
        let transport = Transport {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        };
        transport.set_timeval_option(libc::SO_RCVTIMEO, RECV_TIMEOUT_SECS);
        Ok(transport)
    }

    /// The socket, for options that belong to one protocol (strict checking, multicast groups).
    pub(crate) fn socket_mut(&mut self) -> &mut netlink_sys::Socket {
        &mut self.socket
    }

    /// The sequence number of the next request (never 0, which notifications carry).
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Counts `count` more sequence numbers as used (the rest of a batch numbered from
    /// [`Transport::next_seq`]).
    pub(crate) fn skip_seqs(&mut self, count: u32) {
        self.seq = self.seq.wrapping_add(count);
    }

    /// Gives up the socket's descriptor (closing it is then the new owner's business).
    pub(crate) fn into_fd(self) -> std::os::fd::OwnedFd {
        let fd = self.socket.into_raw_fd();
        // SAFETY: `into_raw_fd` handed us the open descriptor; nothing else owns it now.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    }

    /// Sends one datagram, whole.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let sent = self.socket.send(bytes, 0).map_err(Error::Io)?;
        if sent != bytes.len() {
            return Err(Error::UnexpectedReply(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Grows the socket's send buffer for a datagram of `len` bytes: the kernel refuses a
    /// datagram larger than it with `EMSGSIZE`, and an nf_tables batch must go in one.
    pub(crate) fn ensure_send_buffer(&self, len: usize) {
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

    /// Best effort: without it, waits are unbounded.
    fn set_timeval_option(&self, option: libc::c_int, secs: i64) {
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
                option,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
    }

    /// Sends `request` (numbered `seq`, asking for an ACK) and hands every answer to it before
    /// the ACK to `each`, in order. Ends at the ACK, at `NLMSG_DONE`, or with the kernel's error.
    pub(crate) fn request(
        &mut self,
        request: &[u8],
        seq: u32,
        each: &mut dyn FnMut(&Message<'_>) -> Result<()>,
    ) -> Result<()> {
        self.send(request)?;
        let mut done = false;
        while !done {
            self.recv(&mut |msg| {
                if msg.seq != seq {
                    return Ok(()); // a stale answer to an earlier, abandoned request
                }
                if done {
                    return Err(Error::UnexpectedReply("message after the end of a reply".into()));
                }
                match msg.msg_type {
                    NLMSG_ERROR | NLMSG_DONE => {
                        check_end(msg)?;
                        done = true;
                    }
                    t if t >= NLMSG_MIN_TYPE => each(msg)?,
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs a dump: `encode(seq)` gives the request (with `NLM_F_DUMP`), `decode` turns each
    /// message of the answer into a `T`. A dump the kernel flags as interrupted is started
    /// again, up to [`DUMP_RETRIES`] times.
    pub(crate) fn dump<T>(
        &mut self,
        encode: &dyn Fn(u32) -> Vec<u8>,
        decode: &mut dyn FnMut(&Message<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            self.send(&encode(seq))?;
            let mut out = Vec::new();
            let mut interrupted = false;
            let mut done = false;
            while !done {
                self.recv(&mut |msg| {
                    if msg.seq != seq || done {
                        return Ok(());
                    }
                    interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
                    match msg.msg_type {
                        NLMSG_ERROR | NLMSG_DONE => {
                            check_end(msg)?;
                            done = true;
                        }
                        t if t >= NLMSG_MIN_TYPE => {
                            out.push(decode(msg)?);
                            // A dump that fits one message may come without NLM_F_MULTIPART
                            // and without NLMSG_DONE.
                            done = msg.flags & NLM_F_MULTIPART == 0;
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            if !interrupted {
                return Ok(out);
            }
        }
        Err(Error::DumpInterrupted(DUMP_RETRIES))
    }

    /// Reads the next datagram (blocking) and hands each of its messages to `each`, in order,
    /// whatever their sequence number.
    pub(crate) fn recv(&mut self, each: &mut dyn FnMut(&Message<'_>) -> Result<()>) -> Result<()> {
        self.recv_datagram()?;
        for msg in messages(&self.buf) {
            each(&msg.map_err(Error::UnexpectedReply)?)?;
        }
        Ok(())
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

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The end of an exchange: an ACK or a clean `NLMSG_DONE` is fine, an error becomes
/// [`Error::Kernel`].
fn check_end(msg: &Message<'_>) -> Result<()> {
    let (code, ext) = if msg.msg_type == NLMSG_ERROR {
        parse_error(msg)
    } else {
        parse_done(msg)
    };
    if code < 0 {
        return Err(Error::Kernel(KernelError {
            errno: nix::errno::Errno::from_raw(-code),
            message: ext,
        }));
    }
    Ok(())
}

/// The errno (negative, 0 for an ACK) and extended-ack text of an `NLMSG_ERROR`: after the
/// errno comes the original request (whole, or capped to its header), then the TLVs.
pub(crate) fn parse_error(msg: &Message<'_>) -> (i32, Option<String>) {
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
            align4(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        })
    };
    (code, rest.get(request_len..).and_then(ext_ack_text))
}

/// The errno (negative, 0 for a clean end) and extended-ack text of an `NLMSG_DONE`: the TLVs
/// follow the errno directly.
fn parse_done(msg: &Message<'_>) -> (i32, Option<String>) {
    let Some(code) = msg.payload.get(..4) else {
        return (0, None);
    };
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if msg.flags & NLM_F_ACK_TLVS == 0 {
        return (code, None);
    }
    (code, ext_ack_text(&msg.payload[4..]))
}

/// `NLMSGERR_ATTR_MSG` among the extended-ack TLVs, trimmed; None when absent or empty.
fn ext_ack_text(tlvs: &[u8]) -> Option<String> {
    let mut rest = tlvs;
    while let Some(header) = rest.get(..4) {
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &rest[4..len];
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

/// Rounds `len` up to the netlink alignment of 4 bytes.
pub(crate) fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Splits a datagram into its netlink messages.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = std::result::Result<Message<'_>, String>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            rest = &[];
            return Some(Err(format!("netlink message of length {len} in a datagram")));
        }
        let msg = Message {
            msg_type: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
        out
    }

    fn message(msg_type: u16, flags: u16, payload: &[u8]) -> Message<'_> {
        Message {
            msg_type,
            flags,
            seq: 1,
            payload,
        }
    }

    #[test]
    fn ext_ack_from_capped_error() {
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        let mut request = vec![0u8; NLMSG_HDRLEN];
        request[..4].copy_from_slice(&40u32.to_ne_bytes());
        payload.extend(request);
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"Unknown device type\0"));
        let msg = message(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload);
        assert_eq!(parse_error(&msg), (-22, Some("Unknown device type".into())));
    }

    #[test]
    fn ext_ack_from_uncapped_error_skips_whole_request() {
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        let mut request = vec![0u8; 22];
        request[..4].copy_from_slice(&22u32.to_ne_bytes());
        request.resize(24, 0);
        payload.extend(request);
        payload.extend(nla(2, &7u32.to_ne_bytes()));
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"Invalid prefix\0"));
        let msg = message(NLMSG_ERROR, NLM_F_ACK_TLVS, &payload);
        assert_eq!(parse_error(&msg), (-22, Some("Invalid prefix".into())));
    }

    #[test]
    fn ext_ack_from_done_and_absent_without_flag() {
        let mut payload = (-5i32).to_ne_bytes().to_vec();
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"dump failed\0"));
        let with = message(NLMSG_DONE, NLM_F_ACK_TLVS, &payload);
        assert_eq!(parse_done(&with), (-5, Some("dump failed".into())));
        let without = message(NLMSG_DONE, 0, &payload);
        assert_eq!(parse_done(&without), (-5, None));
        let short = message(NLMSG_ERROR, NLM_F_ACK_TLVS, &[1, 2]);
        assert_eq!(parse_error(&short), (-libc::EPROTO, None));
    }

    #[test]
    fn errors_end_an_exchange_with_the_errno() {
        let payload = (-19i32).to_ne_bytes();
        let err = check_end(&message(NLMSG_ERROR, 0, &payload)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(check_end(&message(NLMSG_ERROR, 0, &0i32.to_ne_bytes())).is_ok());
        assert!(check_end(&message(NLMSG_DONE, 0, &[])).is_ok());
    }

    #[test]
    fn datagram_splits_into_aligned_messages() {
        let mut buf = Vec::new();
        for (t, body) in [(20u16, &b"abc"[..]), (21, &b"defgh"[..])] {
            let len = NLMSG_HDRLEN + body.len();
            buf.extend_from_slice(&(len as u32).to_ne_bytes());
            buf.extend_from_slice(&t.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&7u32.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(body);
            buf.resize(align4(buf.len()), 0);
        }
        let all: Vec<_> = messages(&buf).map(|m| m.unwrap()).collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].msg_type, all[0].payload), (20, &b"abc"[..]));
        assert_eq!(
            (all[1].msg_type, all[1].seq, all[1].payload),
            (21, 7, &b"defgh"[..])
        );
        assert!(
            messages(&[255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .next()
                .unwrap()
                .is_err()
        );
    }
}
