//! Removing stale UDP conntrack entries of published ports, so that a UDP
//! "connection" created before the DNAT rule existed (or towards a container
//! that is gone) does not keep blackholing the port.
//!
//! Done in-process over ctnetlink ([`cni_net::conntrack`]), one dump per
//! family, and scoped to the destination, unlike Go's (which removes every
//! UDP entry with that destination port, outgoing DNS from the host included):
//! - on ADD, entries whose original destination is the published port on the
//!   `hostIP`, or on any local address of the host when there is none;
//! - on DEL, entries towards the published port that were translated to this
//!   container's address and port (or, without the container's address, as on ADD).

use crate::iptables_backend::net_family;
use crate::mapping::{IpFamily, PortMapping, Protocol};
use cni_net::conntrack::{FlowTuple, IPPROTO_UDP};
use cni_net::detach::Sockets;
use cni_net::nft::NetfilterSocket;
use std::net::IpAddr;

/// One set of entries to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleFlow {
    /// Address family.
    pub family: IpFamily,
    /// The published port (original destination port).
    pub host_port: u16,
    /// The published address; `None` for any local address.
    pub host_ip: Option<IpAddr>,
    /// After translation: the container's address and port, when known.
    pub container: Option<(IpAddr, u16)>,
}

impl StaleFlow {
    /// Whether an entry (its original and reply tuples) is one to remove;
    /// `is_local` says whether an address is one of the host's.
    pub fn matches(
        &self,
        original: &FlowTuple,
        reply: Option<&FlowTuple>,
        is_local: &dyn Fn(IpAddr) -> bool,
    ) -> bool {
        if original.protocol != IPPROTO_UDP || original.dport != self.host_port {
            return false;
        }
        if IpFamily::of(original.dst) != self.family {
            return false;
        }
        let to_published = match self.host_ip {
            Some(ip) => original.dst == ip,
            None => is_local(original.dst),
        };
        if !to_published {
            return false;
        }
        match self.container {
            None => true,
            Some((ip, port)) => reply.is_some_and(|r| r.src == ip && r.sport == port),
        }
    }
}

/// The UDP flows of `mappings` in `family`, towards `container` (address and the
/// mapping's port) when it is known.
pub fn udp_flows(mappings: &[PortMapping], family: IpFamily, container: Option<IpAddr>) -> Vec<StaleFlow> {
    mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp && m.applies_to(family))
        .map(|m| StaleFlow {
            family,
            host_port: m.host_port,
            host_ip: m.destination(),
            container: container.map(|ip| (ip, m.container_port)),
        })
        .collect()
}

/// Removes the entries; failures are logged to stderr, never fatal (as in Go).
pub fn remove(sockets: &mut Sockets, flows: &[StaleFlow]) {
    if flows.is_empty() || table_is_empty() {
        return;
    }
    if let Err(e) = remove_flows(sockets, flows) {
        eprintln!("portmap: failed to delete stale UDP conntrack entries: {e}");
    }
}

/// Whether this netns's conntrack table holds no entry (or conntrack is not loaded): then
/// there is nothing to delete, and the dump is skipped. A dump walks the kernel's whole
/// hash table, every namespace's buckets (5 ms here with 262,144 buckets) even when empty.
fn table_is_empty() -> bool {
    match std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count") {
        Ok(n) => n.trim() == "0",
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn remove_flows(sockets: &mut Sockets, flows: &[StaleFlow]) -> cni_net::Result<usize> {
    remove_flows_on(sockets.netfilter()?, flows)
}

fn remove_flows_on(nf: &mut NetfilterSocket, flows: &[StaleFlow]) -> cni_net::Result<usize> {
    // The host's addresses, read only when a flow is published on every address.
    let mut local: Option<Vec<IpAddr>> = None;
    if flows.iter().any(|f| f.host_ip.is_none()) {
        let mut sock = cni_net::Socket::new()?;
        local = Some(
            sock.addresses(None, None)?
                .iter()
                .map(|a| a.address.ip())
                .collect(),
        );
    }
    let is_local = |ip: IpAddr| ip.is_loopback() || local.as_ref().is_some_and(|l| l.contains(&ip));
    let mut deleted = 0;
    for family in [IpFamily::V4, IpFamily::V6] {
        let wanted: Vec<&StaleFlow> = flows.iter().filter(|f| f.family == family).collect();
        if wanted.is_empty() {
            continue;
        }
        let fam = net_family(family);
        let mut ports: Vec<u16> = wanted.iter().map(|w| w.host_port).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut flows = Vec::new();
        for port in ports {
            flows.extend(nf.conntrack_flows_to_port(fam, IPPROTO_UDP, port)?);
        }
        for flow in flows {
            if !wanted
                .iter()
                .any(|w| w.matches(&flow.original, flow.reply.as_ref(), &is_local))
            {
                continue;
            }
            match nf.delete_flow(fam, &flow) {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16, protocol: u8) -> FlowTuple {
        FlowTuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol,
            sport,
            dport,
        }
    }

    fn local(ip: IpAddr) -> bool {
        ip == "10.222.7.1".parse::<IpAddr>().unwrap() || ip.is_loopback()
    }

    fn mapping(host_ip: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: 5353,
            container_port: 53,
            protocol: Protocol::Udp,
            host_ip: host_ip.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn add_removes_flows_to_the_published_port_on_local_addresses_only() {
        let f = udp_flows(&[mapping(None)], IpFamily::V4, None);
        assert_eq!(f.len(), 1);
        let f = f[0];
        let to_host = tuple("10.222.7.9", 4000, "10.222.7.1", 5353, IPPROTO_UDP);
        assert!(f.matches(&to_host, None, &local));
        assert!(f.matches(
            &tuple("127.0.0.1", 4000, "127.0.0.1", 5353, IPPROTO_UDP),
            None,
            &local
        ));
        // The host's own queries to a remote server on that port stay.
        assert!(!f.matches(
            &tuple("10.222.7.1", 4000, "192.0.2.1", 5353, IPPROTO_UDP),
            None,
            &local
        ));
        assert!(!f.matches(
            &tuple("10.222.7.9", 4000, "10.222.7.1", 5354, IPPROTO_UDP),
            None,
            &local
        ));
        assert!(!f.matches(&tuple("10.222.7.9", 4000, "10.222.7.1", 5353, 6), None, &local));
    }

    #[test]
    fn host_ip_and_container_narrow_the_match() {
        let f = udp_flows(&[mapping(Some("10.222.7.2"))], IpFamily::V4, None)[0];
        assert!(!f.matches(
            &tuple("10.222.7.9", 4000, "10.222.7.1", 5353, IPPROTO_UDP),
            None,
            &local
        ));
        assert!(f.matches(
            &tuple("10.222.7.9", 4000, "10.222.7.2", 5353, IPPROTO_UDP),
            None,
            &local
        ));
        let f = udp_flows(
            &[mapping(None)],
            IpFamily::V4,
            Some("10.222.7.5".parse().unwrap()),
        )[0];
        let orig = tuple("10.222.7.9", 4000, "10.222.7.1", 5353, IPPROTO_UDP);
        let to_us = tuple("10.222.7.5", 53, "10.222.7.9", 4000, IPPROTO_UDP);
        let to_other = tuple("10.222.7.6", 53, "10.222.7.9", 4000, IPPROTO_UDP);
        assert!(f.matches(&orig, Some(&to_us), &local));
        assert!(!f.matches(&orig, Some(&to_other), &local));
        assert!(!f.matches(&orig, None, &local));
    }

    #[test]
    fn tcp_and_other_family_mappings_have_no_flows() {
        let mut tcp = mapping(None);
        tcp.protocol = Protocol::Tcp;
        assert!(udp_flows(&[tcp], IpFamily::V4, None).is_empty());
        assert!(udp_flows(&[mapping(Some("fd00:222::1"))], IpFamily::V4, None).is_empty());
        assert_eq!(
            udp_flows(&[mapping(Some("fd00:222::1"))], IpFamily::V6, None).len(),
            1
        );
    }
}
