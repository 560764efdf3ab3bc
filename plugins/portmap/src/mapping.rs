//! The mapping model: published ports, the container addresses they lead to,
//! and the names that identify one attachment's firewall objects.

use cni::CniResult;
use cni_net::hash::sha512_hex;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// A transport protocol a port can be published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses a protocol name, case-insensitively (Go passes it to iptables,
    /// which is case-insensitive too). Empty means tcp, Mesos's default.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The lower-case name (iptables `-p`, nftables keyword).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The protocol of an IP protocol number, when it is one with ports we publish.
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

/// One published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The host address it is published on; `None` means every address.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// Whether the mapping applies to containers of `family`: a `hostIP` of
    /// the other family skips it, as in Go.
    pub fn applies_to(&self, family: IpFamily) -> bool {
        self.host_ip.is_none_or(|ip| IpFamily::of(ip) == family)
    }

    /// The destination address to match, `None` for any (an unspecified
    /// `hostIP` such as `0.0.0.0` means any address of its family).
    pub fn destination(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// The container's addresses that ports are forwarded to: the first IPv4
/// and the first IPv6 address of the previous result that belong to the
/// container's interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerAddrs {
    /// IPv4 address with the pod subnet's prefix length.
    pub v4: Option<IpNetwork>,
    /// IPv6 address with its prefix length.
    pub v6: Option<IpNetwork>,
}

impl ContainerAddrs {
    /// Picks the addresses as Go does: an address whose `interface` index is
    /// valid must point at `ifname` inside a sandbox; one without an index
    /// (or with an index out of range) is taken as is.
    pub fn from_result(result: &CniResult, ifname: &str) -> ContainerAddrs {
        let mut out = ContainerAddrs::default();
        for ip in &result.ips {
            let slot = if ip.is_ipv4() { &mut out.v4 } else { &mut out.v6 };
            if slot.is_some() {
                continue;
            }
            if let Some(iface) = ip.interface.and_then(|i| result.interfaces.get(i))
                && (iface.name != ifname || iface.sandbox.as_deref().is_none_or(str::is_empty))
            {
                continue;
            }
            *slot = Some(ip.address);
        }
        out
    }

    /// The addresses present, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.v4.iter().chain(self.v6.iter()).copied()
    }
}

/// One attachment: a container on a network. Everything portmap creates for
/// it is named or tagged from these two strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// Container ID.
    pub container_id: String,
}

impl Attachment {
    /// An attachment.
    pub fn new(network: impl Into<String>, container_id: impl Into<String>) -> Self {
        Attachment {
            network: network.into(),
            container_id: container_id.into(),
        }
    }

    /// Go's `MustFormatChainNameWithPrefix`: `CNI-` + prefix + the hex
    /// SHA-512 of network name and container ID, cut to 28 characters.
    pub fn chain_name(&self, prefix: &str) -> String {
        let hash = sha512_hex(format!("{}{}", self.network, self.container_id).as_bytes(), 128);
        let mut name = format!("CNI-{prefix}{hash}");
        name.truncate(28);
        name
    }

    /// The per-container iptables DNAT chain, `CNI-DN-<21 hex>`.
    pub fn dnat_chain(&self) -> String {
        self.chain_name("DN-")
    }

    /// The legacy per-container SNAT chain of old Go versions, `CNI-SN-<21 hex>`.
    pub fn old_snat_chain(&self) -> String {
        self.chain_name("SN-")
    }

    /// Go's iptables comment for the DNAT entry rules (cut to 255 bytes).
    pub fn iptables_comment(&self) -> String {
        trim_comment(format!(
            "dnat name: \"{}\" id: \"{}\"",
            self.network, self.container_id
        ))
    }
}

/// iptables comments hold at most 255 bytes; Go cuts longer ones to 253 + `...`.
pub fn trim_comment(mut s: String) -> String {
    if s.len() <= 255 {
        return s;
    }
    let mut cut = 253;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("...");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_gos() {
        let a = Attachment::new(
            "testNetName",
            "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y",
        );
        // The expected values are from Go's portmap_iptables_test.go.
        assert_eq!(a.dnat_chain(), "CNI-DN-bfd599665540dd91d5d28");
        assert_eq!(a.dnat_chain().len(), 28);
        assert_eq!(a.old_snat_chain().len(), 28);
        assert!(a.old_snat_chain().starts_with("CNI-SN-"));
    }

    #[test]
    fn comment_is_gos() {
        let a = Attachment::new("net", "cid");
        assert_eq!(a.iptables_comment(), r#"dnat name: "net" id: "cid""#);
        let long = Attachment::new("n", "x".repeat(300));
        let c = long.iptables_comment();
        assert_eq!(c.len(), 256);
        assert!(c.ends_with("..."));
    }

    #[test]
    fn container_addresses_come_from_the_sandbox_interface() {
        let prev: serde_json::Value = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0"},
                {"name": "veth1"},
                {"name": "eth0", "sandbox": "/var/run/netns/x"}
            ],
            "ips": [
                {"address": "10.222.0.1/24", "interface": 0},
                {"address": "10.222.5.2/24", "interface": 2},
                {"address": "10.222.5.3/24", "interface": 2},
                {"address": "fd00:222::1/64", "interface": 1},
                {"address": "fd00:222::5/64", "interface": 7}
            ]
        });
        let r = CniResult::from_value(&prev).unwrap();
        let a = ContainerAddrs::from_result(&r, "eth0");
        assert_eq!(a.v4, Some("10.222.5.2/24".parse().unwrap()));
        // an index out of range is taken as is, as in Go
        assert_eq!(a.v6, Some("fd00:222::5/64".parse().unwrap()));
        assert_eq!(ContainerAddrs::from_result(&r, "eth1").v4, None);
    }

    #[test]
    fn host_ip_family_filters_mappings() {
        let m = |ip: Option<&str>| PortMapping {
            host_port: 1,
            container_port: 1,
            protocol: Protocol::Tcp,
            host_ip: ip.map(|s| s.parse().unwrap()),
        };
        assert!(m(None).applies_to(IpFamily::V6));
        assert!(!m(Some("10.222.0.1")).applies_to(IpFamily::V6));
        assert!(m(Some("0.0.0.0")).applies_to(IpFamily::V4));
        assert_eq!(m(Some("0.0.0.0")).destination(), None);
        assert!(!m(Some("::")).applies_to(IpFamily::V4));
        assert_eq!(
            m(Some("fd00:222::1")).destination(),
            Some("fd00:222::1".parse().unwrap())
        );
    }
}
