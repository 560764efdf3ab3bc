//! One allocation range: a subnet, the first and last address handed out,
//! and the gateway that is never handed out.
//!
//! Defaults and checks are Go host-local's (`Range.Canonicalize`), with its
//! messages, so a config the Go plugin accepts works here and a config it
//! refuses is refused with the same words.

use crate::addr::{self, Family};
use cni::Error;
use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// A range as written in the config (`ranges[][]`, the legacy top-level
/// fields, or `runtimeConfig.ipRanges`). Addresses stay text until
/// [`RangeConf::canonicalize`], so a bad one gets a message naming it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    /// The subnet in CIDR form; required.
    #[serde(default)]
    pub subnet: Option<String>,
    /// First address to hand out (inclusive).
    #[serde(default)]
    pub range_start: Option<String>,
    /// Last address to hand out (inclusive).
    #[serde(default)]
    pub range_end: Option<String>,
    /// The gateway: returned in the result, never allocated.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A validated range with every default filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The subnet, network address and prefix.
    pub subnet: IpNetwork,
    /// First address handed out, inclusive.
    pub start: IpAddr,
    /// Last address handed out, inclusive.
    pub end: IpAddr,
    /// The gateway; skipped by the allocator.
    pub gateway: IpAddr,
}

/// Parses an address the way Go's `net.ParseIP` + canonicalisation does:
/// an IPv4-mapped IPv6 address is IPv4.
pub(crate) fn parse_ip(text: &str) -> Result<IpAddr, Error> {
    text.trim()
        .parse::<IpAddr>()
        .map(addr::canonical)
        .map_err(|_| Error::decoding(format!("invalid IP address: {text}")))
}

fn parse_subnet(text: &str) -> Result<IpNetwork, Error> {
    // ipnetwork reads a bare address as a /32 or /128; Go's ParseCIDR needs the prefix.
    if !text.contains('/') {
        return Err(Error::decoding(format!("invalid CIDR address: {text}")));
    }
    text.trim()
        .parse::<IpNetwork>()
        .map_err(|_| Error::decoding(format!("invalid CIDR address: {text}")))
}

impl RangeConf {
    /// A range with only a subnet, as tests and the legacy fields build it.
    pub fn subnet(subnet: &str) -> RangeConf {
        RangeConf {
            subnet: Some(subnet.to_string()),
            ..RangeConf::default()
        }
    }

    /// Fills in the defaults and validates, as Go's `Range.Canonicalize`.
    /// The caller prefixes the message with the range set's index.
    pub fn canonicalize(&self) -> Result<Range, Error> {
        let text = self
            .subnet
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::invalid_config("invalid CIDR address: (missing subnet)"))?;
        let parsed = parse_subnet(text)?;
        let family = Family::of(parsed.ip());
        let prefix = parsed.prefix();
        if u32::from(prefix) > family.bits() - 2 {
            return Err(Error::invalid_config(format!(
                "Network {parsed} too small to allocate from"
            )));
        }
        if addr::is_v4_mapped(parsed.ip()) {
            return Err(Error::invalid_config("IPNet IP and Mask version mismatch"));
        }
        let network = parsed.network();
        if network != parsed.ip() {
            return Err(Error::invalid_config(format!(
                "Network has host bits set. For a subnet mask of length {prefix} the network address is {network}"
            )));
        }
        let subnet = IpNetwork::new(network, prefix)
            .map_err(|e| Error::invalid_config(format!("invalid subnet {text}: {e}")))?;
        let net = addr::to_u128(network);
        let gateway = match self.gateway.as_deref().filter(|s| !s.is_empty()) {
            None => addr::from_u128(family, net + 1),
            Some(g) => {
                let g = parse_ip(g)?;
                // Go accepts a gateway outside the subnet (it only returns it), but a
                // gateway of the other family would make a result no runtime can use.
                if Family::of(g) != family {
                    return Err(Error::invalid_config(format!(
                        "gateway {g} is not of the family of network {subnet}"
                    )));
                }
                g
            }
        };
        let mut range = Range {
            subnet,
            start: addr::from_u128(family, net + 1),
            end: last_address(subnet),
            gateway,
        };
        let given_start = match self.range_start.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_ip(s)?),
            None => None,
        };
        let given_end = match self.range_end.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_ip(s)?),
            None => None,
        };
        // Go checks rangeStart against the subnet and a given rangeEnd, then rangeEnd
        // against the subnet and the (possibly defaulted) rangeStart.
        if let Some(start) = given_start {
            let after_end = given_end.is_some_and(|end| addr::to_u128(start) > addr::to_u128(end));
            if !in_subnet(subnet, start) || after_end {
                return Err(Error::invalid_config(format!(
                    "RangeStart {start} not in network {subnet}"
                )));
            }
            range.start = start;
        }
        if let Some(end) = given_end {
            if !in_subnet(subnet, end) || addr::to_u128(end) < addr::to_u128(range.start) {
                return Err(Error::invalid_config(format!(
                    "RangeEnd {end} not in network {subnet}"
                )));
            }
            range.end = end;
        }
        if addr::to_u128(range.start) > addr::to_u128(range.end) {
            // Only reachable with a rangeStart past the default end (the IPv4
            // broadcast address): Go would then hand out addresses beyond the range.
            return Err(Error::invalid_config(format!(
                "RangeStart {} is after RangeEnd {} in network {subnet}",
                range.start, range.end
            )));
        }
        Ok(range)
    }
}

fn in_subnet(subnet: IpNetwork, ip: IpAddr) -> bool {
    Family::of(ip) == Family::of(subnet.ip()) && subnet.contains(ip)
}

/// The last address of the subnet, minus the broadcast address for IPv4 (Go's `lastIP`).
fn last_address(subnet: IpNetwork) -> IpAddr {
    let family = Family::of(subnet.ip());
    let last = addr::broadcast(subnet);
    match family {
        Family::V4 => addr::from_u128(family, last - 1),
        Family::V6 => addr::from_u128(family, last),
    }
}

impl Range {
    /// The address family of the range.
    pub fn family(&self) -> Family {
        Family::of(self.subnet.ip())
    }

    /// Whether `ip` is an address this range may hand out (or was asked for):
    /// same family, inside the subnet, between start and end. The gateway is
    /// "contained"; the allocator skips it separately, as Go does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = addr::canonical(ip);
        if !in_subnet(self.subnet, ip) {
            return false;
        }
        let v = addr::to_u128(ip);
        addr::to_u128(self.start) <= v && v <= addr::to_u128(self.end)
    }

    /// Whether the two ranges share an address. Two intervals overlap exactly
    /// when one holds an endpoint of the other, which is Go's test.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.family() == other.family()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }

    /// How many addresses the allocator can hand out from this range.
    pub fn capacity(&self) -> u128 {
        let size = addr::to_u128(self.end) - addr::to_u128(self.start) + 1;
        if self.contains(self.gateway) {
            size - 1
        } else {
            size
        }
    }

    /// The address with the subnet's prefix, as the result carries it.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNetwork {
        // The prefix came from a valid network of the same family, so this cannot fail;
        // fall back to a host route rather than panic.
        IpNetwork::new(ip, self.subnet.prefix()).unwrap_or_else(|_| IpNetwork::from(ip))
    }
}

impl fmt::Display for Range {
    /// `start-end`, as Go prints a range in its messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn conf(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeConf {
        RangeConf {
            subnet: Some(subnet.into()),
            range_start: start.map(Into::into),
            range_end: end.map(Into::into),
            gateway: gw.map(Into::into),
        }
    }

    #[test]
    fn defaults_for_ipv4_and_ipv6() {
        let r = RangeConf::subnet("192.0.2.0/24").canonicalize().unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("192.0.2.1"), ip("192.0.2.254"), ip("192.0.2.1"))
        );
        let r = RangeConf::subnet("192.0.2.0/25").canonicalize().unwrap();
        assert_eq!(r.end, ip("192.0.2.126"));
        let r = RangeConf::subnet("2001:db8:1::/64").canonicalize().unwrap();
        assert_eq!(r.start, ip("2001:db8:1::1"));
        assert_eq!(r.end, ip("2001:db8:1::ffff:ffff:ffff:ffff"));
        assert_eq!(r.gateway, ip("2001:db8:1::1"));
    }

    #[test]
    fn host_bits_are_refused_with_gos_message() {
        let e = RangeConf::subnet("192.0.2.1/24").canonicalize().unwrap_err();
        assert_eq!(
            e.msg,
            "Network has host bits set. For a subnet mask of length 24 the network address is 192.0.2.0"
        );
        let e = RangeConf::subnet("2001:db8:1::1/64").canonicalize().unwrap_err();
        assert_eq!(
            e.msg,
            "Network has host bits set. For a subnet mask of length 64 the network address is 2001:db8:1::"
        );
        let e = RangeConf::subnet("2001:db8:24:19ff::/63")
            .canonicalize()
            .unwrap_err();
        assert!(
            e.msg.ends_with("the network address is 2001:db8:24:19fe::"),
            "{}",
            e.msg
        );
        let e = RangeConf::subnet("192.168.127.0/23").canonicalize().unwrap_err();
        assert!(e.msg.ends_with("length 23 the network address is 192.168.126.0"));
    }

    #[test]
    fn tiny_networks_are_too_small() {
        for s in ["192.0.2.0/31", "192.0.2.0/32", "2001:db8::/127", "2001:db8::/128"] {
            let e = RangeConf::subnet(s).canonicalize().unwrap_err();
            assert_eq!(e.msg, format!("Network {s} too small to allocate from"));
            assert_eq!(e.code.0, 7);
        }
        assert!(RangeConf::subnet("192.0.2.0/30").canonicalize().is_ok());
        assert!(RangeConf::subnet("2001:db8::/126").canonicalize().is_ok());
    }

    #[test]
    fn start_and_end_must_be_inside() {
        let e = conf("192.0.2.0/24", Some("192.0.3.0"), None, None)
            .canonicalize()
            .unwrap_err();
        assert_eq!(e.msg, "RangeStart 192.0.3.0 not in network 192.0.2.0/24");
        let e = conf("192.0.2.0/24", None, Some("192.0.4.0"), None)
            .canonicalize()
            .unwrap_err();
        assert_eq!(e.msg, "RangeEnd 192.0.4.0 not in network 192.0.2.0/24");
        let e = conf("192.0.2.0/24", Some("192.0.2.50"), Some("192.0.2.40"), None)
            .canonicalize()
            .unwrap_err();
        assert_eq!(e.msg, "RangeStart 192.0.2.50 not in network 192.0.2.0/24");
        let e = conf("192.0.2.0/24", Some("2001:db8::1"), None, None)
            .canonicalize()
            .unwrap_err();
        assert!(e.msg.starts_with("RangeStart 2001:db8::1 not in network"));
    }

    #[test]
    fn all_fields_are_kept() {
        let r = conf(
            "192.0.2.0/24",
            Some("192.0.2.40"),
            Some("192.0.2.50"),
            Some("192.0.2.254"),
        )
        .canonicalize()
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("192.0.2.40"), ip("192.0.2.50"), ip("192.0.2.254"))
        );
        assert_eq!(r.to_string(), "192.0.2.40-192.0.2.50");
        assert_eq!(r.capacity(), 11);
    }

    #[test]
    fn contains_checks_family_subnet_and_bounds() {
        let r = conf(
            "192.0.2.0/24",
            Some("192.0.2.40"),
            Some("192.0.2.50"),
            Some("192.0.2.254"),
        )
        .canonicalize()
        .unwrap();
        assert!(r.contains(ip("192.0.2.40")) && r.contains(ip("192.0.2.50")));
        assert!(!r.contains(ip("192.0.2.39")) && !r.contains(ip("192.0.2.51")));
        assert!(!r.contains(ip("192.0.3.45")) && !r.contains(ip("2001:db8::1")));
        assert!(r.contains(ip("::ffff:192.0.2.45")), "v4-mapped is IPv4");
        let r6 = conf(
            "2001:db8:1::/64",
            Some("2001:db8:1::40"),
            Some("2001:db8:1::50"),
            None,
        )
        .canonicalize()
        .unwrap();
        assert!(r6.contains(ip("2001:db8:1::45")) && !r6.contains(ip("2001:db8:1::51")));
        assert!(!r6.contains(ip("192.0.2.45")));
    }

    #[test]
    fn missing_or_bad_subnet_fails() {
        assert!(RangeConf::default().canonicalize().is_err());
        assert_eq!(
            RangeConf::subnet("192.0.2.0").canonicalize().unwrap_err().code.0,
            6
        );
        assert_eq!(
            RangeConf::subnet("nonsense/24")
                .canonicalize()
                .unwrap_err()
                .code
                .0,
            6
        );
        let e = conf("192.0.2.0/24", None, None, Some("2001:db8::1"))
            .canonicalize()
            .unwrap_err();
        assert_eq!(e.code.0, 7);
    }

    #[test]
    fn capacity_skips_the_gateway_only_when_inside() {
        let r = RangeConf::subnet("192.0.2.0/29").canonicalize().unwrap();
        assert_eq!(r.capacity(), 5); // .1-.6 minus the gateway .1
        let r = conf("192.0.2.0/29", Some("192.0.2.2"), None, None)
            .canonicalize()
            .unwrap();
        assert_eq!(r.capacity(), 5);
    }
}
