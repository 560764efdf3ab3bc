//! Typed address operations on a [`Socket`]: list, add, delete.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};

use crate::error::{Error, Result};
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

/// The `RTM_NEWADDR`/`RTM_DELADDR` body for `cidr` (an address with its prefix length, host bits
/// kept) on link `index`. IPv4 addresses with a prefix shorter than /31 get their broadcast
/// address, as `ip addr add ... brd +` and Go's netlink do.
pub fn address_message(index: u32, cidr: IpNetwork) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = Family::of(cidr.ip()).netlink();
    msg.header.prefix_len = cidr.prefix();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(cidr.ip()));
    msg.attributes.push(AddressAttribute::Address(cidr.ip()));
    if let IpNetwork::V4(v4) = cidr
        && v4.prefix() < 31
    {
        msg.attributes.push(AddressAttribute::Broadcast(v4.broadcast()));
    }
    msg
}

impl Socket {
    /// Adds `cidr` (host bits kept: `10.222.0.5/24`) to link `index`. An address that is
    /// already there is [`Error::Kernel`] with `EEXIST` ([`Error::is_exists`]).
    pub fn add_address(&mut self, index: u32, cidr: IpNetwork) -> Result<()> {
        let msg = address_message(index, cidr);
        self.request_with_flags(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Adds `cidr` to link `index` unless it is there already; true when it was added.
    pub fn add_address_if_missing(&mut self, index: u32, cidr: IpNetwork) -> Result<bool> {
        match self.add_address(index, cidr) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `cidr` from link `index`; false when it was not there (or the link is gone).
    pub fn delete_address(&mut self, index: u32, cidr: IpNetwork) -> Result<bool> {
        let msg = address_message(index, cidr);
        match self.request(RouteNetlinkMessage::DelAddress(msg)) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Addresses in the socket's namespace, of one link (`index`) and/or one family when given.
    pub fn addresses(&mut self, index: Option<u32>, family: Option<Family>) -> Result<Vec<Address>> {
        if index.is_some_and(|i| i == 0) {
            return Err(Error::InvalidArgument("link index 0".into()));
        }
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

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    #[test]
    fn ipv4_address_message_golden_bytes() {
        let msg = address_message(4, "10.222.0.5/24".parse().unwrap());
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // ifaddrmsg: AF_INET, /24, flags 0, scope 0, index 4
            &[2u8, 24, 0, 0][..], &4u32.to_ne_bytes(),
            // IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST
            &8u16.to_ne_bytes(), &2u16.to_ne_bytes(), &[10, 222, 0, 5],
            &8u16.to_ne_bytes(), &1u16.to_ne_bytes(), &[10, 222, 0, 5],
            &8u16.to_ne_bytes(), &4u16.to_ne_bytes(), &[10, 222, 0, 255],
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn point_to_point_and_ipv6_have_no_broadcast() {
        let msg = address_message(4, "10.222.0.5/31".parse().unwrap());
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Broadcast(_)))
        );
        let msg = address_message(4, "fd00:222::5/64".parse().unwrap());
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.attributes.len(), 2);
    }

    #[test]
    fn address_from_message_prefers_local_and_keeps_host_bits() {
        let msg = address_message(4, "10.222.0.5/24".parse().unwrap());
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = AddressMessage::parse(&buf[..]).unwrap();
        let addr = Address::from_message(&parsed).unwrap();
        assert_eq!(addr.address.to_string(), "10.222.0.5/24");
        assert_eq!(addr.index, 4);
        assert_eq!(addr.scope, Scope::Universe);
    }

    #[test]
    fn scope_round_trips_through_u8() {
        for scope in [
            Scope::Universe,
            Scope::Site,
            Scope::Link,
            Scope::Host,
            Scope::Nowhere,
            Scope::Other(7),
        ] {
            assert_eq!(Scope::from(u8::from(scope)), scope);
        }
    }
}
