//! Typed address operations on a [`Socket`]: list, add, delete.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};

use crate::error::Result;
use crate::netlink::Socket;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    pub(crate) fn netlink(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

/// Scope of an address or route (`RT_SCOPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// `global`: valid everywhere.
    #[default]
    Universe,
    /// `site` (IPv6 only).
    Site,
    /// `link`: valid on this link only (directly connected routes, fe80::/10 addresses).
    Link,
    /// `host`: valid inside this host only (127.0.0.1, ::1).
    Host,
    /// `nowhere`: the destination does not exist.
    Nowhere,
    /// Another value.
    Other(u8),
}

impl From<u8> for Scope {
    fn from(raw: u8) -> Self {
        match raw {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            other => Scope::Other(other),
        }
    }
}

impl From<Scope> for u8 {
    fn from(scope: Scope) -> u8 {
        match scope {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(raw) => raw,
        }
    }
}

/// An address configured on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Index of the link the address is on.
    pub index: u32,
    /// The address with its prefix length (host bits kept: `10.222.0.5/24`).
    pub address: IpNetwork,
    /// Scope.
    pub scope: Scope,
    /// `IFA_LABEL` (IPv4 only).
    pub label: Option<String>,
    /// Duplicate address detection still running (`IFA_F_TENTATIVE`, IPv6).
    pub tentative: bool,
    /// Duplicate address detection failed (`IFA_F_DADFAILED`, IPv6).
    pub dad_failed: bool,
    /// Configured, not learnt (`IFA_F_PERMANENT`).
    pub permanent: bool,
}

impl Address {
    fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        // For IPv4 IFA_LOCAL is the address and IFA_ADDRESS a point-to-point peer; IPv6 has
        // only IFA_ADDRESS unless there is a peer.
        let ip = local.or(address)?;
        Some(Address {
            index: msg.header.index,
            address: IpNetwork::new(ip, msg.header.prefix_len).ok()?,
            scope: u8::from(msg.header.scope).into(),
            label,
            tentative: flags.contains(AddressFlags::Tentative),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
            permanent: flags.contains(AddressFlags::Permanent),
        })
    }
}

impl Socket {
    /// Addresses in the socket's namespace, of one link (`index`) and/or one family when given.
    pub fn addresses(&mut self, index: Option<u32>, family: Option<Family>) -> Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        msg.header.family = family.map_or(AddressFamily::Unspec, Family::netlink);
        msg.header.index = index.unwrap_or(0);
        let replies = self.dump(RouteNetlinkMessage::GetAddress(msg))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Address::from_message(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| family.is_none_or(|f| Family::of(a.address.ip()) == f))
            .collect())
    }
}
