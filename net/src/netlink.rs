//! A small blocking `NETLINK_ROUTE` socket: one request at a time, ACKs and dumps handled,
//! kernel errors mapped to [`Error::Kernel`] with the errno and the extended-ack message.
//!
//! The socket is bound to the network namespace of the thread that called [`Socket::new`] and
//! stays there, whatever namespace the thread moves to later (see [`crate::netns`]).

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::error::{Error, Result};
use crate::transport::{Message, Transport};

/// How many times a dump is retried when the kernel flags it as interrupted (`NLM_F_DUMP_INTR`).
pub const DUMP_INTR_RETRIES: u32 = crate::transport::DUMP_RETRIES;

/// Socket receive buffer asked of the kernel, so big dumps are not dropped with `ENOBUFS`.
const SO_RCVBUF_SIZE: usize = 1024 * 1024;

/// A blocking rtnetlink socket on the crate's one netlink transport
/// ([`crate::transport`]): this module encodes requests and decodes answers with
/// `netlink-packet-route`, the transport sends, receives and checks them.
#[derive(Debug)]
pub struct Socket {
    transport: Transport,
}

impl Socket {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace, with strict
    /// checking of requests on and extended acks on where the kernel has them.
    pub fn new() -> Result<Self> {
        let mut transport = Transport::open(NETLINK_ROUTE, SO_RCVBUF_SIZE)?;
        transport
            .socket_mut()
            .set_netlink_get_strict_chk(true)
            .map_err(Error::Socket)?;
        Ok(Socket { transport })
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
        let seq = self.transport.next_seq();
        let bytes = encode(msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        let mut replies = Vec::new();
        self.transport.request(&bytes, seq, &mut |m| {
            if let Some(inner) = decode(m)? {
                replies.push(inner);
            }
            Ok(())
        })?;
        Ok(replies)
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_DUMP` and collects every message of the multipart
    /// answer. A dump the kernel flags as interrupted by concurrent changes is restarted, up to
    /// [`DUMP_INTR_RETRIES`] times.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        let all = self.transport.dump(
            &|seq| encode(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP, seq),
            &mut decode,
        )?;
        Ok(all.into_iter().flatten().collect())
    }

    /// Joins the multicast group `group` (an `RTNLGRP_*` number): the kernel's notifications
    /// arrive beside the replies and are skipped by requests, read by
    /// [`Socket::recv_notifications`].
    pub fn subscribe(&mut self, group: u32) -> Result<()> {
        self.transport
            .socket_mut()
            .add_membership(group)
            .map_err(Error::Socket)
    }

    /// Reads one datagram (blocking) and returns every message in it, whatever its sequence
    /// number: for a subscribed socket, the kernel's notifications.
    pub fn recv_notifications(&mut self) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        self.transport.recv(&mut |m| {
            if let Some(inner) = decode(m)? {
                out.push(inner);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The bytes of `msg` as a request with an ACK (and `flags`), numbered as this socket's
    /// next request, for sending through the raw descriptor.
    pub(crate) fn encode_request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let seq = self.transport.next_seq();
        encode(msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq)
    }
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.transport.as_raw_fd()
    }
}

/// The bytes of `msg` as one netlink message with `flags` and sequence number `seq`.
fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut packet = NetlinkMessage::from(msg);
    packet.header.flags = flags;
    packet.header.sequence_number = seq;
    packet.finalize();
    let mut out = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut out);
    out
}

/// The route message `m` carries; None for netlink's own message types.
fn decode(m: &Message<'_>) -> Result<Option<RouteNetlinkMessage>> {
    let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(m.bytes).map_err(Error::Decode)?;
    Ok(match packet.payload {
        NetlinkPayload::InnerMessage(inner) => Some(inner),
        _ => None,
    })
}
