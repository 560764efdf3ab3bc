//! Conntrack entries over ctnetlink: list them and delete the ones that match, through a
//! [`NetfilterSocket`]. Messages are built and parsed with `netlink-packet-netfilter`.
//!
//! portmap needs this for UDP: a conntrack entry made before a port mapping existed (a client
//! retrying towards the host port) keeps steering packets past the new DNAT rule until it
//! expires, which blackholes the mapping (containernetworking/plugins#123). Deleting the
//! entries of the host port on ADD, and of the container on DEL, fixes that.
//!
//! The kernel has no "delete by filter" request, so this dumps the entries of one family and
//! deletes the matching ones by their original tuple; an entry that expired in between is
//! not an error.
//!
//! ```no_run
//! # fn main() -> cni_net::Result<()> {
//! use cni_net::Family;
//! use cni_net::nft::NetfilterSocket;
//!
//! let mut nf = NetfilterSocket::new()?;
//! // What Go's portmap does on ADD: every UDP entry towards host port 5353, whatever address.
//! let deleted = nf.delete_udp_flows(Family::V4, None, 5353)?;
//! # let _ = deleted; Ok(()) }
//! ```

use std::net::IpAddr;

use netlink_packet_core::{DefaultNla, Emitable, Nla, ParseableParametrized};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};

use crate::addr::Family;
use crate::error::{Error, Result};
use crate::nft::NetfilterSocket;

/// `NFNL_SUBSYS_CTNETLINK`.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_GET`.
const IPCTNL_MSG_CT_GET: u8 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const IPCTNL_MSG_CT_DELETE: u8 = 2;
/// `CTA_ZONE`: entries in another zone must be deleted with their zone.
const CTA_ZONE: u16 = 18;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;

fn ct_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | u16::from(msg)
}

fn af(family: Family) -> u8 {
    match family {
        Family::V4 => libc::AF_INET as u8,
        Family::V6 => libc::AF_INET6 as u8,
    }
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// `IPPROTO_*`.
    pub protocol: u8,
    /// Ports (0 for protocols without ports).
    pub sport: u16,
    pub dport: u16,
}

/// A conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// As the first packet saw it.
    pub original: FlowTuple,
    /// As replies are expected (after NAT: the DNAT target is the reply's source).
    pub reply: Option<FlowTuple>,
    pub mark: Option<u32>,
    /// The raw `CTA_ZONE` attribute, kept to delete the entry in its zone.
    zone: Option<DefaultNla>,
}

/// Which entries to delete: all given fields must match the original direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// `IPPROTO_*` (None: any).
    pub protocol: Option<u8>,
    /// Original destination address (None: any).
    pub dst: Option<IpAddr>,
    /// Original destination port (None: any).
    pub dport: Option<u16>,
    /// Original source address (None: any).
    pub src: Option<IpAddr>,
}

impl FlowFilter {
    pub fn matches(&self, flow: &Flow) -> bool {
        let o = &flow.original;
        self.protocol.is_none_or(|p| p == o.protocol)
            && self.dst.is_none_or(|d| d == o.dst)
            && self.dport.is_none_or(|p| p == o.dport)
            && self.src.is_none_or(|s| s == o.src)
    }
}

impl NetfilterSocket {
    /// Every conntrack entry of `family` in this socket's namespace.
    pub fn conntrack_flows(&mut self, family: Family) -> Result<Vec<Flow>> {
        self.conntrack_dump(family, &[])
    }

    /// The entries of `family` whose original protocol is `protocol` and original
    /// destination port is `dport`, filtered by the kernel (`CTA_FILTER`, Linux 5.10+): it
    /// still walks its table, but only matching entries are copied out and decoded, so the
    /// cost of looking for a published port's stale entries no longer grows with everything
    /// else the host tracks. A kernel that refuses the filter gets a full dump, filtered here.
    pub fn conntrack_flows_to_port(&mut self, family: Family, protocol: u8, dport: u16) -> Result<Vec<Flow>> {
        use crate::nft::wire::Attrs;
        const CTA_TUPLE_ORIG: u16 = 1;
        const CTA_TUPLE_PROTO: u16 = 2;
        const CTA_PROTO_NUM: u16 = 1;
        const CTA_PROTO_DST_PORT: u16 = 3;
        const CTA_FILTER: u16 = 25;
        const CTA_FILTER_ORIG_FLAGS: u16 = 1;
        // The kernel's CTA_FILTER_F_CTA_PROTO_NUM | CTA_FILTER_F_CTA_PROTO_DST_PORT.
        const FLAGS: u32 = (1 << 3) | (1 << 5);
        let mut a = Attrs::new();
        a.nest(CTA_TUPLE_ORIG, |a| {
            a.nest(CTA_TUPLE_PROTO, |a| {
                a.put(CTA_PROTO_NUM, &[protocol]);
                a.put(CTA_PROTO_DST_PORT, &dport.to_be_bytes());
            });
        });
        a.nest(CTA_FILTER, |a| a.put(CTA_FILTER_ORIG_FLAGS, &FLAGS.to_ne_bytes()));
        let wanted = |f: &Flow| f.original.protocol == protocol && f.original.dport == dport;
        match self.conntrack_dump(family, &a.buf) {
            Ok(flows) => Ok(flows.into_iter().filter(wanted).collect()),
            Err(e)
                if matches!(
                    e.errno(),
                    Some(nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP)
                ) =>
            {
                Ok(self.conntrack_flows(family)?.into_iter().filter(wanted).collect())
            }
            Err(e) => Err(e),
        }
    }

    fn conntrack_dump(&mut self, family: Family, request: &[u8]) -> Result<Vec<Flow>> {
        let replies = self.dump(ct_type(IPCTNL_MSG_CT_GET), af(family), request)?;
        let mut flows = Vec::with_capacity(replies.len());
        for reply in replies {
            let msg =
                ConntrackMessage::parse_with_param(reply.attrs.as_slice(), (reply.msg_type & 0xff) as u8)
                    .map_err(Error::Decode)?;
            if let ConntrackMessage::New(attrs) = msg
                && let Some(flow) = flow_from(&attrs)
            {
                flows.push(flow);
            }
        }
        Ok(flows)
    }

    /// Deletes the entries of `family` that match `filter`; returns how many were deleted.
    /// Entries that disappear before their delete are skipped.
    pub fn conntrack_delete(&mut self, family: Family, filter: &FlowFilter) -> Result<usize> {
        let flows = self.conntrack_flows(family)?;
        let mut deleted = 0;
        for flow in flows.iter().filter(|f| filter.matches(f)) {
            match self.delete_flow(family, flow) {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Deletes the UDP entries whose original destination port is `dport` and, when given,
    /// whose original destination address is `dst`.
    pub fn delete_udp_flows(&mut self, family: Family, dst: Option<IpAddr>, dport: u16) -> Result<usize> {
        let filter = FlowFilter {
            protocol: Some(IPPROTO_UDP),
            dst,
            dport: Some(dport),
            src: None,
        };
        self.conntrack_delete(family, &filter)
    }

    /// Deletes one entry by its original tuple (and zone).
    pub fn delete_flow(&mut self, family: Family, flow: &Flow) -> Result<()> {
        let o = &flow.original;
        let mut proto = vec![ProtoTuple::Protocol(Protocol::from(o.protocol))];
        if matches!(o.protocol, IPPROTO_TCP | IPPROTO_UDP | 132 | 136 | 33) {
            proto.push(ProtoTuple::SourcePort(o.sport));
            proto.push(ProtoTuple::DestinationPort(o.dport));
        }
        let mut attrs = vec![ConntrackAttribute::CtaTupleOrig(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(o.src),
                IPTuple::DestinationAddress(o.dst),
            ]),
            Tuple::Proto(proto),
        ])];
        if let Some(zone) = &flow.zone {
            attrs.push(ConntrackAttribute::Other(zone.clone()));
        }
        let msg = ConntrackMessage::Delete(attrs);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        self.request(ct_type(IPCTNL_MSG_CT_DELETE), 0, af(family), &buf)?;
        Ok(())
    }
}

fn tuple_from(tuples: &[Tuple]) -> Option<FlowTuple> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, 0, 0);
    for t in tuples {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(p) => protocol = Some(u8::from(*p)),
                        ProtoTuple::SourcePort(p) => sport = *p,
                        ProtoTuple::DestinationPort(p) => dport = *p,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(FlowTuple {
        src: src?,
        dst: dst?,
        protocol: protocol?,
        sport,
        dport,
    })
}

fn flow_from(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let mut original = None;
    let mut reply = None;
    let mut mark = None;
    let mut zone = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => original = tuple_from(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple_from(t),
            ConntrackAttribute::CtaMark(m) => mark = Some(*m),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => zone = Some(nla.clone()),
            _ => {}
        }
    }
    Some(Flow {
        original: original?,
        reply,
        mark,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(dst: &str, dport: u16, protocol: u8) -> Flow {
        Flow {
            original: FlowTuple {
                src: "10.222.0.9".parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol,
                sport: 40000,
                dport,
            },
            reply: None,
            mark: None,
            zone: None,
        }
    }

    #[test]
    fn filter_matches_protocol_port_and_optional_address() {
        let f = FlowFilter {
            protocol: Some(IPPROTO_UDP),
            dst: None,
            dport: Some(53),
            src: None,
        };
        assert!(f.matches(&flow("10.0.0.1", 53, IPPROTO_UDP)));
        assert!(!f.matches(&flow("10.0.0.1", 53, IPPROTO_TCP)));
        assert!(!f.matches(&flow("10.0.0.1", 54, IPPROTO_UDP)));
        let f = FlowFilter {
            dst: Some("10.0.0.2".parse().unwrap()),
            ..f
        };
        assert!(!f.matches(&flow("10.0.0.1", 53, IPPROTO_UDP)));
        assert!(f.matches(&flow("10.0.0.2", 53, IPPROTO_UDP)));
    }

    /// The delete request: CTA_TUPLE_ORIG { CTA_TUPLE_IP { v4 src, v4 dst }, CTA_TUPLE_PROTO
    /// { num, sport, dport } }, ports big endian, nests flagged, per nfnetlink_conntrack.h.
    #[test]
    fn delete_message_golden() {
        let f = flow("10.222.0.5", 53, IPPROTO_UDP);
        let o = f.original;
        let msg = ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(o.src),
                IPTuple::DestinationAddress(o.dst),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::from(o.protocol)),
                ProtoTuple::SourcePort(o.sport),
                ProtoTuple::DestinationPort(o.dport),
            ]),
        ])]);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            52, 0, 1, 0x80,
              20, 0, 1, 0x80,
                8, 0, 1, 0, 10, 222, 0, 9,
                8, 0, 2, 0, 10, 222, 0, 5,
              28, 0, 2, 0x80,
                5, 0, 1, 0, 17, 0, 0, 0,
                6, 0, 2, 0, 0x9c, 0x40, 0, 0,
                6, 0, 3, 0, 0, 53, 0, 0,
        ];
        assert_eq!(buf, want);
    }
}
