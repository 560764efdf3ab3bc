//! `conditionsV4`/`conditionsV6` for the nftables backend: the subset of nft syntax that
//! is matched in-process (address and interface matches, with `!=`).

use crate::mapping::IpFamily;
use cni::{Error, Result};
use cni_net::nft;
use ipnetwork::IpNetwork;
use std::fmt;

/// One match of an nftables condition we support in-process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `ip[6] saddr [!=] NET`.
    Saddr(IpNetwork, bool),
    /// `ip[6] daddr [!=] NET`.
    Daddr(IpNetwork, bool),
    /// `[meta] iifname [!=] NAME`.
    Iifname(String, bool),
    /// `[meta] oifname [!=] NAME`.
    Oifname(String, bool),
}

/// Parses `conditionsV4`/`conditionsV6` in nft syntax (a subset: address and
/// interface matches, with `!=`); anything else is a config error.
pub fn parse_conditions(tokens: &[String], family: IpFamily) -> Result<Vec<Condition>> {
    // Tokens may be whole phrases ("ip saddr 10.0.0.0/8"): split them all.
    let words: Vec<&str> = tokens.iter().flat_map(|t| t.split_whitespace()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    let bad = |why: &str| {
        Error::invalid_config(format!(
            "unsupported nftables condition {:?}: {why}",
            words.join(" ")
        ))
    };
    while i < words.len() {
        let w = words[i];
        let (field, next) = match w {
            "ip" | "ip6" => {
                let want = if family == IpFamily::V4 { "ip" } else { "ip6" };
                if w != want {
                    return Err(bad("address family does not match"));
                }
                (
                    words.get(i + 1).copied().ok_or_else(|| bad("missing field"))?,
                    i + 2,
                )
            }
            "meta" => (
                words.get(i + 1).copied().ok_or_else(|| bad("missing key"))?,
                i + 2,
            ),
            "iifname" | "oifname" => (w, i + 1),
            _ => return Err(bad("only ip/ip6 saddr/daddr and iifname/oifname are supported")),
        };
        let mut j = next;
        let neg = words.get(j) == Some(&"!=");
        if neg {
            j += 1;
        }
        let value = words.get(j).copied().ok_or_else(|| bad("missing value"))?;
        let cond = match field {
            "saddr" | "daddr" => {
                let net: IpNetwork = value.parse().map_err(|_| bad("bad address"))?;
                if IpFamily::of(net.ip()) != family {
                    return Err(bad("address family does not match"));
                }
                if field == "saddr" {
                    Condition::Saddr(net, neg)
                } else {
                    Condition::Daddr(net, neg)
                }
            }
            "iifname" | "oifname" => {
                let name = value.trim_matches('"').to_string();
                if name.is_empty() || name.len() > 15 {
                    return Err(bad("bad interface name"));
                }
                if field == "iifname" {
                    Condition::Iifname(name, neg)
                } else {
                    Condition::Oifname(name, neg)
                }
            }
            _ => return Err(bad("only ip/ip6 saddr/daddr and iifname/oifname are supported")),
        };
        out.push(cond);
        i = j + 1;
    }
    Ok(out)
}

impl Condition {
    /// Adds the match to `r`.
    pub fn apply(&self, r: nft::Rule) -> nft::Rule {
        match self {
            Condition::Saddr(n, false) => r.saddr(*n),
            Condition::Saddr(n, true) => r.saddr_ne(*n),
            Condition::Daddr(n, false) => r.daddr(*n),
            Condition::Daddr(n, true) => r.daddr_ne(*n),
            Condition::Iifname(n, false) => r.iifname(n),
            Condition::Iifname(n, true) => r.iifname_ne(n),
            Condition::Oifname(n, false) => r.oifname(n),
            Condition::Oifname(n, true) => r.oifname_ne(n),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ne = |neg: bool| if neg { "!= " } else { "" };
        let kw = |n: &IpNetwork| if n.is_ipv4() { "ip" } else { "ip6" };
        match self {
            Condition::Saddr(n, neg) => write!(f, "{} saddr {}{n}", kw(n), ne(*neg)),
            Condition::Daddr(n, neg) => write!(f, "{} daddr {}{n}", kw(n), ne(*neg)),
            Condition::Iifname(n, neg) => write!(f, "iifname {}\"{n}\"", ne(*neg)),
            Condition::Oifname(n, neg) => write!(f, "oifname {}\"{n}\"", ne(*neg)),
        }
    }
}
