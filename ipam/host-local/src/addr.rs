//! Address arithmetic: addresses as integers, so ranges can be walked and
//! compared without allocating.

use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address (after [`canonical`]).
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) becomes IPv4, as Go's
/// `To4()` canonicalisation does; everything else is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True for `::ffff:a.b.c.d`.
pub fn is_v4_mapped(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// The address as an integer of its family's width.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The inverse of [`to_u128`]; IPv4 keeps the low 32 bits.
pub fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from((v & u128::from(u32::MAX)) as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// The subnet's last address (the IPv4 broadcast address), as an integer.
pub fn broadcast(subnet: IpNetwork) -> u128 {
    to_u128(subnet.broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trips() {
        for s in ["10.0.0.1", "255.255.255.255", "2001:db8::1", "::"] {
            let a = ip(s);
            assert_eq!(from_u128(Family::of(a), to_u128(a)), a);
        }
        assert_eq!(canonical(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert!(is_v4_mapped(ip("::ffff:10.1.2.3")) && !is_v4_mapped(ip("10.1.2.3")));
    }

    /// File names must be exactly Go's `net.IP.String()`, or the two
    /// implementations would not see each other's reservations.
    #[test]
    fn text_form_matches_go() {
        let cases = [
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("2001:db8::", "2001:db8::"),
            ("FE80::ABCD", "fe80::abcd"),
            ("::1.2.3.4", "::102:304"),
        ];
        for (input, go) in cases {
            assert_eq!(canonical(ip(input)).to_string(), go, "{input}");
        }
    }
}
