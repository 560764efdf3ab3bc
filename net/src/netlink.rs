//! A small blocking `NETLINK_ROUTE` socket: one request at a time, ACKs and dumps handled,
//! kernel errors mapped to [`Error::Kernel`] with the errno and the extended-ack message.
//!
//! The socket is bound to the network namespace of the thread that called [`Socket::new`] and
//! stays there, whatever namespace the thread moves to later (see [`crate::netns`]).

use netlink_packet_core::{Emitable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, Parseable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_sys::protocols::NETLINK_ROUTE;

use libc::{
    RTM_DELADDR, RTM_DELLINK, RTM_DELROUTE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK,
    RTM_NEWROUTE, RTM_SETLINK,
};

use crate::error::{Error, Result};
use crate::transport::{Message, NLMSG_HDRLEN, Transport, put_header};

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
        let (msg_type, payload) = encode(&msg)?;
        let seq = self.transport.next_seq();
        let bytes = frame(msg_type, &payload, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
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
        let (msg_type, payload) = encode(&msg)?;
        let all = self.transport.dump(
            &|seq| frame(msg_type, &payload, NLM_F_REQUEST | NLM_F_DUMP, seq),
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
    pub(crate) fn encode_request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<u8>> {
        let (msg_type, payload) = encode(&msg)?;
        let seq = self.transport.next_seq();
        Ok(frame(msg_type, &payload, NLM_F_REQUEST | NLM_F_ACK | flags, seq))
    }
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.transport.as_raw_fd()
    }
}

/// The `nlmsg_type` and the payload of `msg`, for the kinds of request this socket makes
/// (links, addresses, routes). Not `RouteNetlinkMessage`'s own emitter, for the reason
/// [`decode`] gives; any other kind is refused.
fn encode(msg: &RouteNetlinkMessage) -> Result<(u16, Vec<u8>)> {
    fn emitted(m: &impl Emitable) -> Vec<u8> {
        let mut out = vec![0u8; m.buffer_len()];
        m.emit(&mut out);
        out
    }
    use RouteNetlinkMessage as M;
    Ok(match msg {
        M::NewLink(m) => (RTM_NEWLINK, emitted(m)),
        M::DelLink(m) => (RTM_DELLINK, emitted(m)),
        M::GetLink(m) => (RTM_GETLINK, emitted(m)),
        M::SetLink(m) => (RTM_SETLINK, emitted(m)),
        M::NewAddress(m) => (RTM_NEWADDR, emitted(m)),
        M::DelAddress(m) => (RTM_DELADDR, emitted(m)),
        M::GetAddress(m) => (RTM_GETADDR, emitted(m)),
        M::NewRoute(m) => (RTM_NEWROUTE, emitted(m)),
        M::DelRoute(m) => (RTM_DELROUTE, emitted(m)),
        M::GetRoute(m) => (RTM_GETROUTE, emitted(m)),
        _ => {
            return Err(Error::InvalidArgument(
                "cni_net's route socket sends link, address and route messages only".to_string(),
            ));
        }
    })
}

/// One netlink message: `nlmsghdr` (type `msg_type`, `flags`, sequence number `seq`, port 0:
/// the kernel) and `payload`.
fn frame(msg_type: u16, payload: &[u8], flags: u16, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut out = Vec::with_capacity(len);
    put_header(&mut out, len, msg_type, flags, seq);
    out.extend_from_slice(payload);
    out
}

/// The route message `m` carries: links, addresses and routes, the only kinds this socket
/// asks for or subscribes to; None for anything else (netlink's own message types too).
///
/// Not `RouteNetlinkMessage`'s own parser: it dispatches to the parsers of every rtnetlink
/// family (traffic control with its filters and actions, neighbours, rules, ...), which then
/// all end up in every plugin binary, about a tenth of bridge's code, for messages the kernel
/// never sends us.
fn decode(m: &Message<'_>) -> Result<Option<RouteNetlinkMessage>> {
    let p = m.payload;
    let link = || LinkMessage::parse(p).map_err(Error::Decode);
    let address = || AddressMessage::parse(p).map_err(Error::Decode);
    let route = || RouteMessage::parse(p).map_err(Error::Decode);
    Ok(Some(match m.msg_type {
        RTM_NEWLINK => RouteNetlinkMessage::NewLink(link()?),
        RTM_DELLINK => RouteNetlinkMessage::DelLink(link()?),
        RTM_NEWADDR => RouteNetlinkMessage::NewAddress(address()?),
        RTM_DELADDR => RouteNetlinkMessage::DelAddress(address()?),
        RTM_NEWROUTE => RouteNetlinkMessage::NewRoute(route()?),
        RTM_DELROUTE => RouteNetlinkMessage::DelRoute(route()?),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use netlink_packet_core::NetlinkMessage;
    use netlink_packet_route::link::LinkAttribute;
    use netlink_packet_route::neighbour::NeighbourMessage;

    use super::*;

    #[test]
    fn frame_matches_the_crates_own_serialization() {
        let mut link = LinkMessage::default();
        link.header.index = 7;
        link.attributes.push(LinkAttribute::IfName("veth0".into()));
        let msg = RouteNetlinkMessage::SetLink(link);
        let (msg_type, payload) = encode(&msg).unwrap();
        let ours = frame(msg_type, &payload, NLM_F_REQUEST | NLM_F_ACK, 42);

        let mut theirs = NetlinkMessage::from(msg);
        theirs.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        theirs.header.sequence_number = 42;
        theirs.finalize();
        let mut want = vec![0u8; theirs.buffer_len()];
        theirs.serialize(&mut want);
        assert_eq!(ours, want);
    }

    #[test]
    fn decode_reads_back_links_addresses_and_routes_and_skips_the_rest() {
        for msg in [
            RouteNetlinkMessage::NewLink(LinkMessage::default()),
            RouteNetlinkMessage::DelAddress(AddressMessage::default()),
            RouteNetlinkMessage::NewRoute(RouteMessage::default()),
        ] {
            let (msg_type, payload) = encode(&msg).unwrap();
            let m = Message {
                msg_type,
                flags: 0,
                seq: 1,
                payload: &payload,
            };
            assert_eq!(decode(&m).unwrap(), Some(msg));
        }
        let other = Message {
            msg_type: libc::RTM_NEWNEIGH,
            flags: 0,
            seq: 1,
            payload: &[0u8; 12],
        };
        assert_eq!(decode(&other).unwrap(), None);
    }

    #[test]
    fn encode_refuses_other_kinds() {
        let msg = RouteNetlinkMessage::NewNeighbour(NeighbourMessage::default());
        assert!(encode(&msg).is_err());
    }
}
