//! A range set: the ranges one address per container is taken from (one set
//! per family for dual stack), and the round-robin order the allocator tries
//! their addresses in.

use crate::addr::{self, Family};
use crate::range::{Range, RangeConf};
use cni::Error;
use std::fmt;
use std::net::IpAddr;

/// Validated ranges of one family that do not overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    /// Validates a set as Go's `RangeSet.Canonicalize`: not empty, each range
    /// valid, one family, no overlaps (messages are Go's).
    pub fn canonicalize(confs: &[RangeConf]) -> Result<RangeSet, Error> {
        if confs.is_empty() {
            return Err(Error::invalid_config("empty range set"));
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(confs.len());
        for conf in confs {
            let r = conf.canonicalize()?;
            if let Some(first) = ranges.first()
                && first.family() != r.family()
            {
                return Err(Error::invalid_config("mixed address families"));
            }
            ranges.push(r);
        }
        for (i, r1) in ranges.iter().enumerate() {
            for r2 in &ranges[i + 1..] {
                if r1.overlaps(r2) {
                    return Err(Error::invalid_config(format!("subnets {r1} and {r2} overlap")));
                }
            }
        }
        Ok(RangeSet { ranges })
    }

    /// The ranges, in config order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// The family of every range in the set.
    pub fn family(&self) -> Family {
        self.ranges[0].family()
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// Whether any range holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of one set overlaps any range of the other.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// How many addresses the set can hand out (gateways excluded).
    pub fn capacity(&self) -> u128 {
        self.ranges
            .iter()
            .map(Range::capacity)
            .fold(0u128, u128::saturating_add)
    }

    /// Whether `ip` is one the allocator could hand out: in a range, and not that range's gateway.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        self.range_for(ip)
            .is_some_and(|r| r.gateway != addr::canonical(ip))
    }

    /// The round-robin order: from just after `last_reserved` when the set
    /// holds it, else from the first range's start; each address once, the
    /// gateways skipped, wrapping from the last range to the first.
    pub fn candidates(&self, last_reserved: Option<IpAddr>) -> Candidates<'_> {
        let from_last = last_reserved.and_then(|ip| {
            let ip = addr::canonical(ip);
            self.ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|idx| (idx, addr::to_u128(ip)))
        });
        match from_last {
            Some((idx, cur)) => Candidates {
                set: self,
                idx,
                cur: Some(cur),
                first: None,
                done: false,
            },
            None => Candidates {
                set: self,
                idx: 0,
                cur: None,
                first: None,
                done: false,
            },
        }
    }
}

impl fmt::Display for RangeSet {
    /// `start-end,start-end`, as in Go's messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The addresses to try, in Go's round-robin order (see [`RangeSet::candidates`]).
/// Yields each allocatable address at most once, then `None` for good.
#[derive(Clone, Debug)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    /// The position last returned (or the last reserved address before the first call).
    cur: Option<u128>,
    /// The first position visited; meeting it again ends the walk.
    first: Option<u128>,
    done: bool,
}

impl Iterator for Candidates<'_> {
    /// The address and the index of its range in the set.
    type Item = (IpAddr, usize);

    fn next(&mut self) -> Option<(IpAddr, usize)> {
        if self.done {
            return None;
        }
        let ranges = &self.set.ranges;
        loop {
            let mut r = &ranges[self.idx];
            let pos = match self.cur {
                None => {
                    let start = addr::to_u128(r.start);
                    self.first = Some(start);
                    start
                }
                Some(cur) => {
                    let next = if cur == addr::to_u128(r.end) {
                        self.idx = (self.idx + 1) % ranges.len();
                        r = &ranges[self.idx];
                        addr::to_u128(r.start)
                    } else {
                        cur + 1
                    };
                    match self.first {
                        None => self.first = Some(next),
                        Some(first) if first == next => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    next
                }
            };
            self.cur = Some(pos);
            let ip = addr::from_u128(r.family(), pos);
            if ip != r.gateway {
                return Some((ip, self.idx));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(subnet: &str, start: Option<&str>, end: Option<&str>) -> RangeConf {
        RangeConf {
            subnet: Some(subnet.into()),
            range_start: start.map(Into::into),
            range_end: end.map(Into::into),
            gateway: None,
        }
    }

    fn walk(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(ip)).map(|(a, _)| a.to_string()).collect()
    }

    #[test]
    fn walks_from_start_skipping_gateway() {
        let set = RangeSet::canonicalize(&[RangeConf::subnet("10.0.0.0/29")]).unwrap();
        assert_eq!(
            walk(&set, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
    }

    #[test]
    fn resumes_after_last_reserved_and_wraps() {
        let set = RangeSet::canonicalize(&[RangeConf::subnet("10.0.0.0/29")]).unwrap();
        assert_eq!(
            walk(&set, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        assert_eq!(
            walk(&set, Some("10.0.0.6")),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        // A last address outside the set restarts at the first range's start.
        assert_eq!(walk(&set, Some("10.9.0.4"))[0], "10.0.0.2");
    }

    #[test]
    fn wraps_across_ranges() {
        let set = RangeSet::canonicalize(&[
            range("192.168.1.0/24", Some("192.168.1.250"), None),
            range("192.168.2.0/24", None, Some("192.168.2.3")),
        ])
        .unwrap();
        assert_eq!(
            walk(&set, Some("192.168.1.253")),
            [
                "192.168.1.254",
                "192.168.2.2",
                "192.168.2.3",
                "192.168.1.250",
                "192.168.1.251",
                "192.168.1.252",
                "192.168.1.253"
            ]
        );
    }

    #[test]
    fn single_gateway_range_is_empty() {
        let set =
            RangeSet::canonicalize(&[range("10.0.0.0/24", Some("10.0.0.1"), Some("10.0.0.1"))]).unwrap();
        assert!(walk(&set, None).is_empty());
        assert_eq!(set.capacity(), 0);
    }

    #[test]
    fn validation_messages_are_gos() {
        let e = RangeSet::canonicalize(&[]).unwrap_err();
        assert_eq!(e.msg, "empty range set");
        let e = RangeSet::canonicalize(&[RangeConf::subnet("10.1.0.0/22"), RangeConf::subnet("10.1.2.0/24")])
            .unwrap_err();
        assert_eq!(
            e.msg,
            "subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap"
        );
        let e = RangeSet::canonicalize(&[
            RangeConf::subnet("10.1.0.0/22"),
            RangeConf::subnet("2001:db8::/64"),
        ])
        .unwrap_err();
        assert_eq!(e.msg, "mixed address families");
    }

    #[test]
    fn display_and_lookup() {
        let set = RangeSet::canonicalize(&[
            range("192.168.1.0/24", Some("192.168.1.10"), Some("192.168.1.20")),
            RangeConf::subnet("192.168.2.0/24"),
        ])
        .unwrap();
        assert_eq!(
            set.to_string(),
            "192.168.1.10-192.168.1.20,192.168.2.1-192.168.2.254"
        );
        assert!(set.contains(ip("192.168.2.9")) && !set.contains(ip("192.168.1.9")));
        assert!(!set.is_allocatable(ip("192.168.2.1")) && set.is_allocatable(ip("192.168.1.10")));
        assert_eq!(set.capacity(), 11 + 253);
    }

    /// Deterministic pseudo-random property test: for random ranges and
    /// random starting points, the walk yields every allocatable address of
    /// the set exactly once, never the gateway, never outside the ranges, and
    /// in round-robin order (start just after the last reserved address).
    #[test]
    fn walk_is_a_permutation_of_the_allocatable_addresses() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let nranges = 1 + rand(3) as usize;
            let mut confs = Vec::new();
            for i in 0..nranges {
                let base = 10 * (i as u64 + 1);
                let start = rand(20);
                let end = start + rand(40);
                let gw = rand(64);
                confs.push(RangeConf {
                    subnet: Some(format!("10.{base}.0.0/26")),
                    range_start: Some(format!("10.{base}.0.{}", 1 + start)),
                    range_end: Some(format!("10.{base}.0.{}", 1 + end.min(61))),
                    gateway: Some(format!("10.{base}.0.{gw}")),
                });
            }
            let set = RangeSet::canonicalize(&confs).unwrap();
            let all: Vec<IpAddr> = set.candidates(None).map(|(a, _)| a).collect();
            let mut sorted = all.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), all.len(), "no duplicates");
            assert_eq!(all.len() as u128, set.capacity());
            assert!(all.iter().all(|a| set.is_allocatable(*a)));
            // Round robin: starting after any member, the walk is the same cycle rotated.
            let k = rand(all.len() as u64) as usize;
            let rotated: Vec<IpAddr> = set.candidates(Some(all[k])).map(|(a, _)| a).collect();
            let expected: Vec<IpAddr> = all[k + 1..].iter().chain(&all[..=k]).copied().collect();
            assert_eq!(rotated, expected);
        }
    }
}
