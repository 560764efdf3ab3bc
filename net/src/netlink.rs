//! A small blocking `NETLINK_ROUTE` socket: one request at a time, ACKs and dumps handled,
//! kernel errors mapped to [`Error::Kernel`] with the errno and the extended-ack message.
//!
//! The socket is bound to the network namespace of the thread that called [`Socket::new`] and
//! stays there, whatever namespace the thread moves to later (see [`crate::netns`]).

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// How many times a dump is retried when the kernel flags it as interrupted (`NLM_F_DUMP_INTR`).
pub const DUMP_INTR_RETRIES: u32 = 5;

/// Initial receive buffer. Dumps arrive in datagrams of at most 32 KiB; a larger single message
/// (a link with many VFs) is detected with `MSG_PEEK | MSG_TRUNC` and the buffer grows for it.
const RECV_BUF_SIZE: usize = 64 * 1024;

/// Socket receive buffer asked of the kernel, so big dumps are not dropped with `ENOBUFS`.
const SO_RCVBUF_SIZE: usize = 1024 * 1024;

/// `NLM_F_CAPPED`: the error message carries only the request's header, not its payload.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: a human readable error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// A blocking rtnetlink socket.
#[derive(Debug)]
pub struct Socket {
    socket: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace, with strict
    /// checking of requests on and extended acks on where the kernel has them.
    pub fn new() -> Result<Self> {
        let mut socket = netlink_sys::Socket::new(NETLINK_ROUTE).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(Error::Socket)?;
        socket.set_netlink_get_strict_chk(true).map_err(Error::Socket)?;
        // Optional features: old kernels lack them and nothing depends on them.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(SO_RCVBUF_SIZE);
        Ok(Socket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_ACK` and returns the messages the kernel answered
    /// with before its ACK (empty for most changes, the object for a `Get*` of one object).
    pub fn request(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        self.request_with_flags(msg, 0)
    }

    /// Like [`Socket::request`] with extra `NLM_F_*` flags (`NLM_F_CREATE | NLM_F_EXCL`, ...).
    pub fn request_with_flags(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        let mut replies = Vec::new();
        loop {
            let done = self.recv_batch(seq, &mut |header, payload| match payload {
                NetlinkPayload::Error(e) => match e.code {
                    None => Ok(true),
                    Some(code) => Err(Error::kernel(
                        -code.get(),
                        ext_ack_message(header.flags, &e.header, true),
                    )),
                },
                NetlinkPayload::InnerMessage(m) => {
                    replies.push(m);
                    Ok(false)
                }
                NetlinkPayload::Done(d) if d.code < 0 => Err(Error::kernel(
                    -d.code,
                    ext_ack_message(header.flags, &d.extended_ack, false),
                )),
                _ => Ok(false),
            })?;
            if done {
                return Ok(replies);
            }
        }
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_DUMP` and collects every message of the multipart
    /// answer. A dump the kernel flags as interrupted by concurrent changes is restarted, up to
    /// [`DUMP_INTR_RETRIES`] times.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_INTR_RETRIES {
            let (replies, interrupted) = self.dump_once(msg.clone())?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Err(Error::DumpInterrupted(DUMP_INTR_RETRIES))
    }

    fn dump_once(&mut self, msg: RouteNetlinkMessage) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let done = self.recv_batch(seq, &mut |header, payload| {
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match payload {
                    NetlinkPayload::Done(d) if d.code < 0 => Err(Error::kernel(
                        -d.code,
                        ext_ack_message(header.flags, &d.extended_ack, false),
                    )),
                    NetlinkPayload::Done(_) => Ok(true),
                    NetlinkPayload::Error(e) => match e.code {
                        None => Ok(true),
                        Some(code) => Err(Error::kernel(
                            -code.get(),
                            ext_ack_message(header.flags, &e.header, true),
                        )),
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        // A dump that fits one message may come without NLM_F_MULTIPART and
                        // without NLMSG_DONE.
                        Ok(header.flags & NLM_F_MULTIPART == 0)
                    }
                    _ => Ok(false),
                }
            })?;
            if done {
                return Ok((replies, interrupted));
            }
        }
    }

    /// Joins the multicast group `group` (an `RTNLGRP_*` number): the kernel's notifications
    /// arrive beside the replies and are skipped by requests, read by
    /// [`Socket::recv_notifications`].
    pub fn subscribe(&mut self, group: u32) -> Result<()> {
        self.socket.add_membership(group).map_err(Error::Socket)
    }

    /// Reads one datagram (blocking) and returns every message in it, whatever its sequence
    /// number: for a subscribed socket, the kernel's notifications.
    pub fn recv_notifications(&mut self) -> Result<Vec<RouteNetlinkMessage>> {
        self.recv_datagram()?;
        let mut out = Vec::new();
        for_each_message(&self.buf, |packet| {
            if let NetlinkPayload::InnerMessage(m) = packet.payload {
                out.push(m);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The bytes of `msg` as a request with an ACK (and `flags`), numbered as this socket's
    /// next request, for sending through the raw descriptor.
    pub(crate) fn encode_request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        self.encode(msg, NLM_F_REQUEST | NLM_F_ACK | flags).1
    }

    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16) -> (u32, Vec<u8>) {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut packet = NetlinkMessage::from(msg);
        packet.header.flags = flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        (self.seq, out)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        let (_, out) = self.encode(msg, flags);
        let sent = self.socket.send(&out, 0).map_err(Error::Io)?;
        if sent != out.len() {
            return Err(Error::UnexpectedReply(format!(
                "sent {sent} of {} bytes",
                out.len()
            )));
        }
        Ok(self.seq)
    }

    /// Receives one datagram and feeds each message with sequence number `seq` to `handle`,
    /// which returns true when the exchange is complete. Messages with another sequence number
    /// are left-overs of an earlier, abandoned exchange and are skipped.
    fn recv_batch(
        &mut self,
        seq: u32,
        handle: &mut dyn FnMut(&NetlinkHeader, NetlinkPayload<RouteNetlinkMessage>) -> Result<bool>,
    ) -> Result<bool> {
        self.recv_datagram()?;
        let mut done = false;
        for_each_message(&self.buf, |packet| {
            if packet.header.sequence_number != seq {
                return Ok(());
            }
            if done {
                return Err(Error::UnexpectedReply("message after the end of a reply".into()));
            }
            let (header, payload) = packet.into_parts();
            done = handle(&header, payload)?;
            Ok(())
        })?;
        Ok(done)
    }

    /// Reads the next datagram into `self.buf` whole, growing the buffer if it is larger.
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
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl Socket {
    fn recv_retrying(&mut self, flags: libc::c_int) -> Result<usize> {
        loop {
            match self.socket.recv(&mut self.buf, flags) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other.map_err(Error::Io),
            }
        }
    }
}

/// Decodes each message of the datagram `buf` and hands it to `f`, in order.
fn for_each_message(
    buf: &[u8],
    mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>) -> Result<()>,
) -> Result<()> {
    let mut offset = 0;
    while offset < buf.len() {
        let bytes = &buf[offset..];
        let len = NetlinkBuffer::new_checked(bytes).map_err(Error::Decode)?.length() as usize;
        f(NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len]).map_err(Error::Decode)?)?;
        offset += align4(len);
    }
    Ok(())
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Extracts `NLMSGERR_ATTR_MSG` from the payload of an `NLMSG_ERROR` (after the errno: the
/// original request, whole or capped to its header, then the TLVs) or of an `NLMSG_DONE` (the
/// TLVs right after the errno).
fn ext_ack_message(flags: u16, payload: &[u8], is_error: bool) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let tlvs = if is_error {
        let request_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            let len = payload.get(..4)?;
            align4(u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize)
        };
        payload.get(request_len..)?
    } else {
        payload
    };
    for nla in NlasIterator::new(tlvs) {
        let nla = nla.ok()?;
        if nla.kind() & netlink_packet_core::NLA_TYPE_MASK == NLMSGERR_ATTR_MSG {
            let text = nla.value();
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
    }
    None
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

    #[test]
    fn ext_ack_from_capped_error() {
        let mut payload = vec![0u8; NLMSG_HDRLEN];
        payload[..4].copy_from_slice(&40u32.to_ne_bytes());
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"Unknown device type\0"));
        let msg = ext_ack_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload, true);
        assert_eq!(msg.as_deref(), Some("Unknown device type"));
    }

    #[test]
    fn ext_ack_from_uncapped_error_skips_whole_request() {
        let mut payload = vec![0u8; 22];
        payload[..4].copy_from_slice(&22u32.to_ne_bytes());
        payload.resize(24, 0);
        payload.extend(nla(2, &7u32.to_ne_bytes()));
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"Invalid prefix\0"));
        let msg = ext_ack_message(NLM_F_ACK_TLVS, &payload, true);
        assert_eq!(msg.as_deref(), Some("Invalid prefix"));
    }

    #[test]
    fn ext_ack_from_done_and_absent_without_flag() {
        let payload = nla(NLMSGERR_ATTR_MSG, b"dump failed\0");
        assert_eq!(
            ext_ack_message(NLM_F_ACK_TLVS, &payload, false).as_deref(),
            Some("dump failed")
        );
        assert_eq!(ext_ack_message(0, &payload, false), None);
        assert_eq!(ext_ack_message(NLM_F_ACK_TLVS, &[1, 2], true), None);
    }
}
