//! Typed route operations on a [`Socket`]: add, delete, list, look up.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteProtocol, RouteScope, RouteType,
};

use crate::addr::{Family, Scope};
use crate::error::{Error, Result};
use crate::netlink::Socket;

/// The main routing table (`RT_TABLE_MAIN`), where routes go when no table is given.
pub const MAIN_TABLE: u32 = 254;
/// The local table (`RT_TABLE_LOCAL`): local and broadcast routes of the host's addresses.
pub const LOCAL_TABLE: u32 = 255;

/// Route type (`RTN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouteKind {
    /// A gateway or direct route.
    #[default]
    Unicast,
    /// Accept locally (a local address).
    Local,
    /// Accept locally as broadcast, send as broadcast.
    Broadcast,
    /// Accept locally as broadcast, send as unicast.
    Anycast,
    /// Multicast.
    Multicast,
    /// Drop silently.
    Blackhole,
    /// Drop with "destination unreachable".
    Unreachable,
    /// Drop with "administratively prohibited".
    Prohibit,
    /// Another value.
    Other(u8),
}

impl From<RouteType> for RouteKind {
    fn from(kind: RouteType) -> Self {
        match kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::Anycast => RouteKind::Anycast,
            RouteType::Multicast => RouteKind::Multicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            other => RouteKind::Other(other.into()),
        }
    }
}

impl From<RouteKind> for RouteType {
    fn from(kind: RouteKind) -> Self {
        match kind {
            RouteKind::Unicast => RouteType::Unicast,
            RouteKind::Local => RouteType::Local,
            RouteKind::Broadcast => RouteType::Broadcast,
            RouteKind::Anycast => RouteType::Anycast,
            RouteKind::Multicast => RouteType::Multicast,
            RouteKind::Blackhole => RouteType::BlackHole,
            RouteKind::Unreachable => RouteType::Unreachable,
            RouteKind::Prohibit => RouteType::Prohibit,
            RouteKind::Other(raw) => RouteType::from(raw),
        }
    }
}

/// A route, to add or delete, or as listed.
///
/// ```
/// use cni_net::route::Route;
/// let default_via = Route { gateway: Some("10.222.0.1".parse().unwrap()), ..Route::new("0.0.0.0/0".parse().unwrap()) };
/// assert_eq!(default_via.table, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNetwork,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output link index.
    pub oif: Option<u32>,
    /// Routing table; the main table when `None`.
    pub table: Option<u32>,
    /// Priority (metric).
    pub priority: Option<u32>,
    /// Scope. When `None`: `link` for a unicast route without gateway, `universe` otherwise,
    /// as `ip route add` chooses.
    pub scope: Option<Scope>,
    /// Preferred source address (`src`).
    pub src: Option<IpAddr>,
    /// Path MTU (`mtu` metric).
    pub mtu: Option<u32>,
    /// Advertised TCP MSS (`advmss` metric).
    pub advmss: Option<u32>,
    /// Route type.
    pub kind: RouteKind,
}

impl Route {
    /// A unicast route to `dst` with everything else unset.
    pub fn new(dst: IpNetwork) -> Self {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: None,
            priority: None,
            scope: None,
            src: None,
            mtu: None,
            advmss: None,
            kind: RouteKind::Unicast,
        }
    }

    fn family(&self) -> Family {
        Family::of(self.dst.ip())
    }

    fn effective_scope(&self) -> Scope {
        match self.scope {
            Some(scope) => scope,
            None if self.gateway.is_none() && self.kind == RouteKind::Unicast => Scope::Link,
            None if matches!(self.kind, RouteKind::Local) => Scope::Host,
            None => Scope::Universe,
        }
    }

    fn check(&self) -> Result<()> {
        for ip in self.gateway.iter().chain(self.src.iter()) {
            if Family::of(*ip) != self.family() {
                return Err(Error::InvalidArgument(format!(
                    "{ip} is not of the family of route {}",
                    self.dst
                )));
            }
        }
        if self.oif == Some(0) {
            return Err(Error::InvalidArgument("link index 0".into()));
        }
        Ok(())
    }

    fn from_message(msg: &RouteMessage) -> Option<Self> {
        let family = match msg.header.address_family {
            netlink_packet_route::AddressFamily::Inet => Family::V4,
            netlink_packet_route::AddressFamily::Inet6 => Family::V6,
            _ => return None,
        };
        let unspecified: IpAddr = match family {
            Family::V4 => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let mut dst = unspecified;
        let mut route = Route::new(IpNetwork::new(unspecified, 0).ok()?);
        route.table = Some(u32::from(msg.header.table));
        route.scope = Some(u8::from(msg.header.scope).into());
        route.kind = msg.header.kind.into();
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = ip_of(a)?,
                RouteAttribute::Gateway(a) => route.gateway = ip_of(a),
                RouteAttribute::PrefSource(a) => route.src = ip_of(a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Priority(p) => route.priority = Some(*p),
                RouteAttribute::Table(t) => route.table = Some(*t),
                RouteAttribute::Metrics(metrics) => {
                    for metric in metrics {
                        match metric {
                            RouteMetric::Mtu(mtu) => route.mtu = Some(*mtu),
                            RouteMetric::Advmss(mss) => route.advmss = Some(*mss),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        route.dst = IpNetwork::new(dst, msg.header.destination_prefix_length).ok()?;
        Some(route)
    }
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some((*ip).into()),
        RouteAddress::Inet6(ip) => Some((*ip).into()),
        _ => None,
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(ip) => RouteAddress::Inet(ip),
        IpAddr::V6(ip) => RouteAddress::Inet6(ip),
    }
}

fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(0)
}

/// The `RTM_NEWROUTE` body for `route` (protocol `boot`, as `ip route add` uses).
pub fn new_route_message(route: &Route) -> RouteMessage {
    let mut msg = route_key_message(route);
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::from(u8::from(route.effective_scope()));
    msg.header.kind = route.kind.into();
    let mut metrics = Vec::new();
    if let Some(mtu) = route.mtu {
        metrics.push(RouteMetric::Mtu(mtu));
    }
    if let Some(mss) = route.advmss {
        metrics.push(RouteMetric::Advmss(mss));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

/// The `RTM_DELROUTE` body for `route`: destination, table, and gateway, link, source and
/// priority when given. Scope `nowhere`, type and protocol unset, so any scope/type matches.
pub fn delete_route_message(route: &Route) -> RouteMessage {
    let mut msg = route_key_message(route);
    msg.header.scope = RouteScope::NoWhere;
    msg
}

fn route_key_message(route: &Route) -> RouteMessage {
    let table = route.table.unwrap_or(MAIN_TABLE);
    let mut msg = RouteMessage::default();
    msg.header.address_family = route.family().netlink();
    msg.header.destination_prefix_length = route.dst.prefix();
    msg.header.table = header_table(table);
    if route.dst.prefix() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_address(route.dst.network())));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(route_address(gw)));
    }
    if let Some(src) = route.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(route_address(src)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(priority) = route.priority {
        msg.attributes.push(RouteAttribute::Priority(priority));
    }
    msg.attributes.push(RouteAttribute::Table(table));
    msg
}

impl Socket {
    /// Adds `route`. One that exists already is [`Error::Kernel`] with `EEXIST`.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        route.check()?;
        self.request_with_flags(
            RouteNetlinkMessage::NewRoute(new_route_message(route)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds `route` as one more next hop when a route to the same destination, table and
    /// priority exists (`NLM_F_APPEND`: ECMP, as Go's `RouteAddEcmp`), else as a new route.
    pub fn append_route(&mut self, route: &Route) -> Result<()> {
        route.check()?;
        self.request_with_flags(
            RouteNetlinkMessage::NewRoute(new_route_message(route)),
            NLM_F_CREATE | netlink_packet_core::NLM_F_APPEND,
        )
        .map(drop)
    }

    /// Adds `route`, or replaces the route with the same destination, table and priority.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        route.check()?;
        self.request_with_flags(
            RouteNetlinkMessage::NewRoute(new_route_message(route)),
            NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes `route` (matched on destination, table and the fields that are set); false when
    /// there was no such route.
    pub fn delete_route(&mut self, route: &Route) -> Result<bool> {
        route.check()?;
        match self.request(RouteNetlinkMessage::DelRoute(delete_route_message(route))) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Routes of `family` in table `table`, or in every table when `None`. Cached and cloned
    /// routes are not included.
    pub fn routes(&mut self, family: Family, table: Option<u32>) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.netlink();
        if let Some(table) = table {
            msg.attributes.push(RouteAttribute::Table(table));
        }
        let replies = match self.dump(RouteNetlinkMessage::GetRoute(msg)) {
            Ok(replies) => replies,
            // Filtering on a table that does not exist.
            Err(e) if table.is_some() && e.errno() == Some(nix::errno::Errno::ENOENT) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(r),
                _ => None,
            })
            .filter(|r| table.is_none() || r.table == table)
            .collect())
    }

    /// Asks the kernel which link a packet to `dst` would leave by (`ip route get`) and returns
    /// that link's index.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<u32> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = Family::of(dst).netlink();
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(route_address(dst)));
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg))?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(oif) => Some(*oif),
                    _ => None,
                }),
                _ => None,
            })
            .ok_or_else(|| Error::UnexpectedReply(format!("no output link in the route to {dst}")))
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    fn round_trip(msg: &RouteMessage) -> RouteMessage {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        RouteMessage::parse(&buf[..]).unwrap()
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let route = Route {
            gateway: Some("10.222.0.1".parse().unwrap()),
            ..Route::new("0.0.0.0/0".parse().unwrap())
        };
        let msg = new_route_message(&route);
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.table, 254);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_)))
        );
    }

    #[test]
    fn ipv4_route_golden_bytes() {
        let route = Route {
            gateway: Some("10.222.1.1".parse().unwrap()),
            oif: Some(3),
            priority: Some(100),
            ..Route::new("10.222.2.9/24".parse().unwrap())
        };
        let msg = new_route_message(&route);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // rtmsg: AF_INET, dst /24, src /0, tos 0, table main, proto boot, scope universe, unicast; flags 0
            &[2u8, 24, 0, 0, 254, 3, 0, 1][..], &[0; 4],
            &8u16.to_ne_bytes(), &1u16.to_ne_bytes(), &[10, 222, 2, 0],   // RTA_DST (host bits cleared)
            &8u16.to_ne_bytes(), &5u16.to_ne_bytes(), &[10, 222, 1, 1],   // RTA_GATEWAY
            &8u16.to_ne_bytes(), &4u16.to_ne_bytes(), &3u32.to_ne_bytes(), // RTA_OIF
            &8u16.to_ne_bytes(), &6u16.to_ne_bytes(), &100u32.to_ne_bytes(), // RTA_PRIORITY
            &8u16.to_ne_bytes(), &15u16.to_ne_bytes(), &254u32.to_ne_bytes(), // RTA_TABLE
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn direct_route_gets_link_scope_and_metrics_round_trip() {
        let route = Route {
            oif: Some(2),
            table: Some(1000),
            mtu: Some(1300),
            advmss: Some(1260),
            ..Route::new("fd00:222:1::/64".parse().unwrap())
        };
        let msg = new_route_message(&route);
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(msg.header.table, 0, "tables over 255 only go in RTA_TABLE");
        let parsed = Route::from_message(&round_trip(&msg)).unwrap();
        assert_eq!(parsed.dst, route.dst);
        assert_eq!(parsed.oif, Some(2));
        assert_eq!(parsed.table, Some(1000));
        assert_eq!(parsed.mtu, Some(1300));
        assert_eq!(parsed.advmss, Some(1260));
        assert_eq!(parsed.scope, Some(Scope::Link));
    }

    #[test]
    fn delete_matches_any_scope_and_sends_no_metrics() {
        let route = Route {
            mtu: Some(1300),
            ..Route::new("10.222.3.0/24".parse().unwrap())
        };
        let msg = delete_route_message(&route);
        assert_eq!(msg.header.scope, RouteScope::NoWhere);
        assert_eq!(msg.header.protocol, RouteProtocol::Unspec);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Metrics(_)))
        );
    }

    #[test]
    fn mixed_families_are_rejected() {
        let route = Route {
            gateway: Some("fd00:222::1".parse().unwrap()),
            ..Route::new("10.222.0.0/16".parse().unwrap())
        };
        assert!(route.check().is_err());
    }
}
