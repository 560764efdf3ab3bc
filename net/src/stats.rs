//! Link statistics (`IFLA_STATS64`, falling back to the 32-bit `IFLA_STATS`): what the Mesos
//! isolator reports as a container's `net_*` counters, read from the namespace the socket lives
//! in without `getifaddrs` or `/proc/net/dev`.

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use crate::error::Result;
use crate::netlink::Socket;

/// The counters of one link that a container runtime reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bad packets received.
    pub rx_errors: u64,
    /// Packets that could not be sent.
    pub tx_errors: u64,
    /// Packets received but dropped (no buffer space, for example).
    pub rx_dropped: u64,
    /// Packets dropped on the way out.
    pub tx_dropped: u64,
}

impl LinkStats {
    /// Adds `other`'s counters to these (saturating: counters never wrap back to small values).
    pub fn add(&mut self, other: &LinkStats) {
        self.rx_packets = self.rx_packets.saturating_add(other.rx_packets);
        self.tx_packets = self.tx_packets.saturating_add(other.tx_packets);
        self.rx_bytes = self.rx_bytes.saturating_add(other.rx_bytes);
        self.tx_bytes = self.tx_bytes.saturating_add(other.tx_bytes);
        self.rx_errors = self.rx_errors.saturating_add(other.rx_errors);
        self.tx_errors = self.tx_errors.saturating_add(other.tx_errors);
        self.rx_dropped = self.rx_dropped.saturating_add(other.rx_dropped);
        self.tx_dropped = self.tx_dropped.saturating_add(other.tx_dropped);
    }

    /// The counters carried by a link message, if it has any. `IFLA_STATS64` wins over
    /// `IFLA_STATS` (whose 32-bit counters wrap after 4 GiB).
    pub fn from_message(msg: &LinkMessage) -> Option<LinkStats> {
        let mut out = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Stats64(s) => {
                    return Some(LinkStats {
                        rx_packets: s.rx_packets,
                        tx_packets: s.tx_packets,
                        rx_bytes: s.rx_bytes,
                        tx_bytes: s.tx_bytes,
                        rx_errors: s.rx_errors,
                        tx_errors: s.tx_errors,
                        rx_dropped: s.rx_dropped,
                        tx_dropped: s.tx_dropped,
                    });
                }
                LinkAttribute::Stats(s) => {
                    out = Some(LinkStats {
                        rx_packets: s.rx_packets.into(),
                        tx_packets: s.tx_packets.into(),
                        rx_bytes: s.rx_bytes.into(),
                        tx_bytes: s.tx_bytes.into(),
                        rx_errors: s.rx_errors.into(),
                        tx_errors: s.tx_errors.into(),
                        rx_dropped: s.rx_dropped.into(),
                        tx_dropped: s.tx_dropped.into(),
                    });
                }
                _ => {}
            }
        }
        out
    }
}

/// One link's name and counters, from a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLinkStats {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Its counters (zero when the kernel sent none).
    pub stats: LinkStats,
}

impl Socket {
    /// The counters of every link in the socket's namespace (one `RTM_GETLINK` dump).
    pub fn link_stats(&mut self) -> Result<Vec<NamedLinkStats>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .map(|l| NamedLinkStats {
                index: l.header.index,
                name: l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                stats: LinkStats::from_message(l).unwrap_or_default(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{Stats, Stats64};

    #[test]
    fn stats64_wins_over_stats() {
        let mut msg = LinkMessage::default();
        let mut s32 = Stats::default();
        s32.rx_packets = 1;
        let mut s64 = Stats64::default();
        s64.rx_packets = 5_000_000_000;
        s64.tx_dropped = 3;
        msg.attributes.push(LinkAttribute::Stats(s32));
        msg.attributes.push(LinkAttribute::Stats64(s64));
        let got = LinkStats::from_message(&msg).unwrap_or_default();
        assert_eq!(got.rx_packets, 5_000_000_000);
        assert_eq!(got.tx_dropped, 3);
    }

    #[test]
    fn stats32_used_when_alone_and_sums_saturate() {
        let mut msg = LinkMessage::default();
        let mut s32 = Stats::default();
        s32.tx_bytes = 7;
        msg.attributes.push(LinkAttribute::Stats(s32));
        let mut total = LinkStats {
            tx_bytes: u64::MAX - 1,
            ..LinkStats::default()
        };
        total.add(&LinkStats::from_message(&msg).unwrap_or_default());
        assert_eq!(total.tx_bytes, u64::MAX);
        assert_eq!(LinkStats::from_message(&LinkMessage::default()), None);
    }
}
