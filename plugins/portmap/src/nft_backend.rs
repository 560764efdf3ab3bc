//! The nftables backend: Go's tables (`ip cni_hostport`, `ip6 cni_hostport`)
//! and base chains, with a layout whose cost does not grow with the number
//! of containers.
//!
//! ```text
//! table ip cni_hostport {
//!   map rcni_hostip_ports { type ipv4_addr . inet_proto . inet_service : verdict }
//!   map rcni_ports        { type inet_proto . inet_service : verdict }
//!   chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump hostports_all }
//!   chain output     { type nat hook output priority dstnat;     fib daddr type local jump hostports_all }
//!   chain hostports_all { jump hostip_hostports; jump hostports }     # as Go's, re-made by Go's ADD
//!   chain hostip_hostports {                                           # never flushed by Go
//!     ip daddr . meta l4proto . th dport vmap @rcni_hostip_ports comment "rcni dispatch hostip"
//!     meta l4proto . th dport vmap @rcni_ports comment "rcni dispatch"
//!   }
//!   chain hostports { }                                                # Go's per-rule DNATs, if any
//!   chain masquerading { type nat hook postrouting priority srcnat; meta mark & M == M masquerade }
//!   chain cni-dn-<hash of network+container> {                         # one per attachment
//!     meta l4proto tcp th dport 8080 ip saddr 10.222.1.0/24 meta mark set mark | M  comment "tcp/8080 <cid>"
//!     meta l4proto tcp th dport 8080 ip saddr 127.0.0.1 meta mark set mark | M      comment "tcp/8080 <cid>"
//!     meta l4proto tcp th dport 8080 dnat to 10.222.1.2:80                           comment "tcp/8080 <cid>"
//!   }
//!   elements: rcni_ports { tcp . 8080 : jump cni-dn-<hash> }
//! }
//! ```
//!
//! - A packet finds its container with one hash lookup, whatever the number of containers.
//! - ADD, DEL and CHECK read only this attachment's chain (plus two chains of a few static
//!   rules) and change the ruleset with one atomic batch; the comments of the chain's rules
//!   name the map elements that lead to it, so DEL needs neither the netns nor the config.
//! - Only packets addressed to the host are looked at (`fib daddr type local`), never
//!   forwarded traffic (Go's GHSA-jv3w-x3r3-g6rm).
//! - Masquerading uses a mark, as Go's iptables layout does: only forwarded connections from
//!   the pod subnet (hairpin, neighbours) or from 127.0.0.1 are masqueraded.
//! - Two attachments cannot publish the same (address, protocol, port): the second ADD fails
//!   with a clear error instead of silently shadowing or being shadowed.

use crate::config::PortMapConf;
use crate::mapping::{Attachment, IpFamily, PortMapping, Protocol};
use cni::{Code, Error, Result};
use cni_net::nft::{
    self, Batch, Chain, ChainType, Expr, Hook, KeyType, MapData, MetaKey, NetfilterSocket, PayloadBase, Reg,
    RuleInfo, Set, SetElement, Table, Value, Verdict,
};
use ipnetwork::IpNetwork;
use std::fmt;
use std::net::IpAddr;

/// Go's table name, in both families.
pub const TABLE: &str = "cni_hostport";
/// Go's chains.
pub const HOSTPORTS_ALL: &str = "hostports_all";
/// Go's legacy hostIP chain; holds our two dispatch rules.
pub const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
/// Go's per-rule DNAT chain (left to Go).
pub const HOSTPORTS: &str = "hostports";
/// Go's postrouting chain.
pub const MASQUERADING: &str = "masquerading";
/// Map of (host address, protocol, port) to the attachment's chain.
pub const HOSTIP_MAP: &str = "rcni_hostip_ports";
/// Map of (protocol, port) to the attachment's chain.
pub const ANY_MAP: &str = "rcni_ports";
/// Comment of the dispatch rule through [`HOSTIP_MAP`].
pub const DISPATCH_HOSTIP_COMMENT: &str = "rcni dispatch hostip";
/// Comment of the dispatch rule through [`ANY_MAP`].
pub const DISPATCH_COMMENT: &str = "rcni dispatch";

/// The nf_tables family of an IP family.
pub fn nft_family(f: IpFamily) -> nft::Family {
    match f {
        IpFamily::V4 => nft::Family::Ip,
        IpFamily::V6 => nft::Family::Ip6,
    }
}

/// The attachment's chain: `cni-dn-` and 21 hex digits of Go's hash.
pub fn attachment_chain(att: &Attachment) -> String {
    format!("cni-dn-{}", &att.dnat_chain()[7..])
}

/// A map element: what a packet is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The host address, or any.
    pub host_ip: Option<IpAddr>,
    /// Protocol.
    pub protocol: Protocol,
    /// Host port.
    pub port: u16,
}

impl Key {
    /// The key of a mapping.
    pub fn of(m: &PortMapping) -> Key {
        Key {
            host_ip: m.destination(),
            protocol: m.protocol,
            port: m.host_port,
        }
    }

    /// Parses the first word of a rule comment (`tcp/8080` or `tcp/8080/10.0.0.1`).
    pub fn parse(s: &str) -> Option<Key> {
        let mut parts = s.splitn(3, '/');
        let protocol = Protocol::parse(parts.next()?).filter(|_| !s.is_empty())?;
        let port = parts.next()?.parse().ok()?;
        let host_ip = match parts.next() {
            Some(ip) => Some(ip.parse().ok()?),
            None => None,
        };
        Some(Key {
            host_ip,
            protocol,
            port,
        })
    }

    /// The map the key lives in.
    pub fn map(&self) -> &'static str {
        if self.host_ip.is_some() {
            HOSTIP_MAP
        } else {
            ANY_MAP
        }
    }

    /// The map element, pointing at `chain`.
    pub fn element(&self, chain: &str) -> SetElement {
        self.element_key().verdict(Verdict::Jump(chain.to_string()))
    }

    fn element_key(&self) -> SetElement {
        let mut key = Vec::new();
        if let Some(ip) = self.host_ip {
            key.push(Value::Ip(ip));
        }
        key.push(Value::Proto(self.protocol.number()));
        key.push(Value::Port(self.port));
        SetElement::new(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.port)?;
        if let Some(ip) = self.host_ip {
            write!(f, "/{ip}")?;
        }
        Ok(())
    }
}

/// The comment of an attachment's rule: the key, then the container ID (cut to
/// nft's 128-byte limit).
pub fn rule_comment(key: &Key, att: &Attachment) -> String {
    let mut c = format!("{key} {}", att.container_id);
    if c.len() > nft::COMMENT_MAX_LEN {
        let mut cut = nft::COMMENT_MAX_LEN;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
    }
    c
}

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

/// A rule of the layout, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRule {
    /// Chain.
    pub chain: String,
    /// Matches, in order.
    pub matches: Vec<Match>,
    /// What it does.
    pub action: Action,
    /// Comment.
    pub comment: Option<String>,
}

/// A match of a layout rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `fib daddr type local`.
    DaddrLocal,
    /// `meta l4proto P th dport N` (as `P dport N`).
    Port(Protocol, u16),
    /// `ip[6] daddr A`.
    HostIp(IpAddr),
    /// `ip[6] saddr NET`.
    Source(IpNetwork),
    /// `meta mark & M == M`.
    Mark(u32),
    /// A user condition.
    Condition(Condition),
}

/// The action of a layout rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `jump CHAIN`.
    Jump(String),
    /// `dnat to A:P`.
    Dnat(IpAddr, u16),
    /// `meta mark set mark | M`.
    SetMark(u32),
    /// `masquerade`.
    Masquerade,
    /// `[ip daddr .] meta l4proto . th dport vmap @MAP`.
    Dispatch {
        /// With the host address in the key.
        host_ip: bool,
        /// The map.
        map: String,
    },
}

impl fmt::Display for LayoutRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        for m in &self.matches {
            words.push(match m {
                Match::DaddrLocal => "fib daddr type local".into(),
                Match::Port(p, n) => format!("{} dport {n}", p.as_str()),
                Match::HostIp(ip) => format!("{} daddr {ip}", ip_kw(*ip)),
                Match::Source(net) => {
                    if net.prefix() == if net.is_ipv4() { 32 } else { 128 } {
                        format!("{} saddr {}", ip_kw(net.ip()), net.ip())
                    } else {
                        format!("{} saddr {}/{}", ip_kw(net.ip()), net.network(), net.prefix())
                    }
                }
                Match::Mark(m) => format!("meta mark & {m:#010x} == {m:#010x}"),
                Match::Condition(c) => match c {
                    Condition::Saddr(n, neg) => format!("{} saddr {}{n}", ip_kw(n.ip()), ne(*neg)),
                    Condition::Daddr(n, neg) => format!("{} daddr {}{n}", ip_kw(n.ip()), ne(*neg)),
                    Condition::Iifname(n, neg) => format!("iifname {}\"{n}\"", ne(*neg)),
                    Condition::Oifname(n, neg) => format!("oifname {}\"{n}\"", ne(*neg)),
                },
            });
        }
        words.push(match &self.action {
            Action::Jump(c) => format!("jump {c}"),
            Action::Dnat(ip, p) => match ip {
                IpAddr::V4(_) => format!("dnat to {ip}:{p}"),
                IpAddr::V6(_) => format!("dnat to [{ip}]:{p}"),
            },
            Action::SetMark(m) => format!("meta mark set meta mark | {m:#010x}"),
            Action::Masquerade => "masquerade".into(),
            Action::Dispatch { host_ip, map } => {
                let daddr = if *host_ip { "ip daddr . " } else { "" };
                format!("{daddr}meta l4proto . th dport vmap @{map}")
            }
        });
        if let Some(c) = &self.comment {
            words.push(format!("comment {c:?}"));
        }
        write!(f, "{}", words.join(" "))
    }
}

fn ip_kw(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

fn ne(neg: bool) -> &'static str {
    if neg { "!= " } else { "" }
}

impl LayoutRule {
    fn new(chain: &str, matches: Vec<Match>, action: Action, comment: Option<String>) -> Self {
        LayoutRule {
            chain: chain.to_string(),
            matches,
            action,
            comment,
        }
    }

    /// The in-process rule for table `TABLE` of `family`.
    pub fn to_nft(&self, family: IpFamily) -> nft::Rule {
        let mut r = nft::Rule::new(nft_family(family), TABLE, self.chain.as_str());
        for m in &self.matches {
            r = match m {
                Match::DaddrLocal => r.fib_daddr_local(),
                Match::Port(p, n) => r
                    .expr(Expr::Meta {
                        key: MetaKey::L4Proto,
                        dreg: Reg::R1,
                    })
                    .expr(Expr::Cmp {
                        sreg: Reg::R1,
                        op: nft::CmpOp::Eq,
                        data: vec![p.number()],
                    })
                    .expr(Expr::Payload {
                        base: PayloadBase::Transport,
                        offset: 2,
                        len: 2,
                        dreg: Reg::R1,
                    })
                    .expr(Expr::Cmp {
                        sreg: Reg::R1,
                        op: nft::CmpOp::Eq,
                        data: n.to_be_bytes().to_vec(),
                    }),
                Match::HostIp(ip) => r.daddr(*ip),
                Match::Source(net) => r.saddr(*net),
                Match::Mark(m) => r.mark_masked(*m, *m),
                Match::Condition(c) => match c {
                    Condition::Saddr(n, false) => r.saddr(*n),
                    Condition::Saddr(n, true) => r.saddr_ne(*n),
                    Condition::Daddr(n, false) => r.daddr(*n),
                    Condition::Daddr(n, true) => r.daddr_ne(*n),
                    Condition::Iifname(n, false) => r.iifname(n),
                    Condition::Iifname(n, true) => r.iifname_ne(n),
                    Condition::Oifname(n, false) => r.oifname(n),
                    Condition::Oifname(n, true) => r.oifname_ne(n),
                },
            };
        }
        r = match &self.action {
            Action::Jump(c) => r.jump(c.as_str()),
            Action::Dnat(ip, p) => r.dnat(*ip, Some(*p)),
            Action::SetMark(m) => r.set_mark_bits(*m),
            Action::Masquerade => r.masquerade(),
            Action::Dispatch { host_ip, map } => {
                let mut slot = 0;
                if *host_ip {
                    let (offset, len) = match family {
                        IpFamily::V4 => (16, 4),
                        IpFamily::V6 => (24, 16),
                    };
                    r = r.expr(Expr::Payload {
                        base: PayloadBase::Network,
                        offset,
                        len,
                        dreg: Reg::R1,
                    });
                    slot = len / 4;
                }
                let reg = |s: u32| if s == 0 { Reg::R1 } else { Reg::r32(s) };
                r.expr(Expr::Meta {
                    key: MetaKey::L4Proto,
                    dreg: reg(slot),
                })
                .expr(Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: reg(slot + 1),
                })
                .expr(Expr::Lookup {
                    set: map.clone(),
                    set_id: None,
                    sreg: Reg::R1,
                    dreg: Some(Reg::VERDICT),
                    invert: false,
                })
            }
        };
        if let Some(c) = &self.comment {
            r = r.comment(c.as_str());
        }
        r
    }
}

/// Comment of the entry rules in `prerouting` and `output`.
pub const ENTRY_COMMENT: &str = "rcni hostports";
/// Comments of the two jumps in [`HOSTPORTS_ALL`].
pub const ALL_COMMENTS: [&str; 2] = ["rcni hostip_hostports", "rcni hostports"];

/// The static rules of the shared chains that Go's ADD re-makes whole, by chain.
pub fn static_rules(family: IpFamily) -> Vec<LayoutRule> {
    let _ = family;
    vec![
        LayoutRule::new(
            "prerouting",
            vec![Match::DaddrLocal],
            Action::Jump(HOSTPORTS_ALL.into()),
            Some(ENTRY_COMMENT.into()),
        ),
        LayoutRule::new(
            "output",
            vec![Match::DaddrLocal],
            Action::Jump(HOSTPORTS_ALL.into()),
            Some(ENTRY_COMMENT.into()),
        ),
        LayoutRule::new(
            HOSTPORTS_ALL,
            vec![],
            Action::Jump(HOSTIP_HOSTPORTS.into()),
            Some(ALL_COMMENTS[0].into()),
        ),
        LayoutRule::new(
            HOSTPORTS_ALL,
            vec![],
            Action::Jump(HOSTPORTS.into()),
            Some(ALL_COMMENTS[1].into()),
        ),
    ]
}

/// The two dispatch rules in [`HOSTIP_HOSTPORTS`].
pub fn dispatch_rules() -> Vec<LayoutRule> {
    vec![
        LayoutRule::new(
            HOSTIP_HOSTPORTS,
            vec![],
            Action::Dispatch {
                host_ip: true,
                map: HOSTIP_MAP.into(),
            },
            Some(DISPATCH_HOSTIP_COMMENT.into()),
        ),
        LayoutRule::new(
            HOSTIP_HOSTPORTS,
            vec![],
            Action::Dispatch {
                host_ip: false,
                map: ANY_MAP.into(),
            },
            Some(DISPATCH_COMMENT.into()),
        ),
    ]
}

/// The comment of the masquerade rule for `mark`.
pub fn masq_comment(mark: u32) -> String {
    format!("rcni masquerade mark {mark:#x}")
}

/// The masquerade rule for `mark`.
pub fn masq_rule(mark: u32) -> LayoutRule {
    LayoutRule::new(
        MASQUERADING,
        vec![Match::Mark(mark)],
        Action::Masquerade,
        Some(masq_comment(mark)),
    )
}

/// One attachment's rules and map elements for one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRules {
    /// `cni-dn-<hash>`.
    pub chain: String,
    /// Its rules.
    pub rules: Vec<LayoutRule>,
    /// The map keys that lead to it.
    pub keys: Vec<Key>,
}

/// What one attachment gets for one family.
pub fn attachment_rules(
    conf: &PortMapConf,
    att: &Attachment,
    container: IpNetwork,
) -> Result<AttachmentRules> {
    let family = IpFamily::of(container.ip());
    let chain = attachment_chain(att);
    let conditions = parse_conditions(
        match family {
            IpFamily::V4 => &conf.conditions.v4,
            IpFamily::V6 => &conf.conditions.v6,
        },
        family,
    )?;
    let mark = conf.mark();
    let mut rules = Vec::new();
    let mut keys: Vec<Key> = Vec::new();
    for m in conf.mappings.iter().filter(|m| m.applies_to(family)) {
        let key = Key::of(m);
        if !keys.contains(&key) {
            keys.push(key);
        }
        let comment = Some(rule_comment(&key, att));
        let mut base: Vec<Match> = conditions.iter().cloned().map(Match::Condition).collect();
        base.push(Match::Port(m.protocol, m.host_port));
        if let Some(ip) = key.host_ip {
            base.push(Match::HostIp(ip));
        }
        if conf.snat {
            let mut hairpin = base.clone();
            if !conf.masq_all {
                let subnet = IpNetwork::new(container.network(), container.prefix()).unwrap_or(container);
                hairpin.push(Match::Source(subnet));
            }
            rules.push(LayoutRule::new(
                &chain,
                hairpin,
                Action::SetMark(mark),
                comment.clone(),
            ));
            if family == IpFamily::V4 && !conf.masq_all {
                let mut local = base.clone();
                local.push(Match::Source(IpNetwork::from(IpAddr::from([127, 0, 0, 1]))));
                rules.push(LayoutRule::new(
                    &chain,
                    local,
                    Action::SetMark(mark),
                    comment.clone(),
                ));
            }
        }
        rules.push(LayoutRule::new(
            &chain,
            base,
            Action::Dnat(container.ip(), m.container_port),
            comment,
        ));
    }
    Ok(AttachmentRules { chain, rules, keys })
}

/// The keys an existing attachment chain's rules name in their comments.
pub fn keys_from_rules(rules: &[RuleInfo]) -> Vec<Key> {
    let mut keys = Vec::new();
    for r in rules {
        if let Some(k) = r
            .comment
            .as_deref()
            .and_then(|c| c.split(' ').next())
            .and_then(Key::parse)
            && !keys.contains(&k)
        {
            keys.push(k);
        }
    }
    keys
}

fn map_set(family: IpFamily, name: &str, host_ip: bool) -> Set {
    let mut key = Vec::new();
    if host_ip {
        key.push(match family {
            IpFamily::V4 => KeyType::Ipv4Addr,
            IpFamily::V6 => KeyType::Ipv6Addr,
        });
    }
    key.extend([KeyType::InetProto, KeyType::InetService]);
    // A hash map: the concat flag is only for interval (pipapo) sets.
    Set::new(nft_family(family), TABLE, name, &key).map(MapData::Verdict)
}

/// The shared chains an ADD makes sure of, with their hook when they are base chains.
const SHARED_CHAINS: [&str; 5] = [
    "prerouting",
    "output",
    HOSTPORTS_ALL,
    HOSTIP_HOSTPORTS,
    MASQUERADING,
];

/// What a listing of the shared chains found: whether the table exists, and the
/// comments of each shared chain's rules, in order (a missing chain lists as empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// The table exists.
    pub table: bool,
    /// Per chain of [`SHARED_CHAINS`], the comments of its rules.
    pub comments: Vec<(&'static str, Vec<Option<String>>)>,
}

impl Shared {
    fn of(&self, chain: &str) -> &[Option<String>] {
        self.comments
            .iter()
            .find(|(c, _)| *c == chain)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    fn has(&self, chain: &str, comment: &str) -> bool {
        self.of(chain).iter().any(|c| c.as_deref() == Some(comment))
    }
}

fn base_chain(f: nft::Family, name: &str) -> Chain {
    let chain = Chain::new(f, TABLE, name);
    match name {
        "prerouting" => chain.base(ChainType::Nat, Hook::Prerouting, nft::priority::DSTNAT),
        "output" => chain.base(ChainType::Nat, Hook::Output, nft::priority::DSTNAT),
        MASQUERADING => chain.base(ChainType::Nat, Hook::Postrouting, nft::priority::SRCNAT),
        _ => chain,
    }
}

/// The part of an ADD batch that makes sure of the table, chains, maps and static rules,
/// given what a listing found: nothing when all is there (the usual case, so an ADD costs
/// neither a hook registration nor a re-made base chain). Base chains are created only when
/// they list as empty; a shared chain whose rules differ from ours is re-made whole (as Go's
/// ADD does); the dispatch and masquerade rules are added when missing, never flushed.
pub fn base_batch(batch: &mut Batch, family: IpFamily, snat_mark: Option<u32>, seen: &Shared) {
    let f = nft_family(family);
    if !seen.table {
        batch.add_table(Table::new(f, TABLE).comment("CNI portmap plugin"));
    }
    let statics = static_rules(family);
    let mut all_remade = false;
    // hostports_all first: the entry rules jump to it.
    for chain in [HOSTPORTS_ALL, "prerouting", "output"] {
        let want: Vec<Option<String>> = statics
            .iter()
            .filter(|r| r.chain == chain)
            .map(|r| r.comment.clone())
            .collect();
        let have = seen.of(chain);
        if seen.table && have == want.as_slice() {
            continue;
        }
        if chain == HOSTPORTS_ALL {
            // Its jumps need their targets.
            for target in [HOSTPORTS, HOSTIP_HOSTPORTS] {
                batch.add_chain(Chain::new(f, TABLE, target));
            }
            all_remade = true;
        }
        if have.is_empty() {
            batch.add_chain(base_chain(f, chain));
        } else {
            batch.flush_chain(f, TABLE, chain);
        }
        for r in statics.iter().filter(|r| r.chain == chain) {
            batch.add_rule(r.to_nft(family));
        }
    }
    let dispatch = dispatch_rules();
    if dispatch
        .iter()
        .any(|r| !seen.table || !seen.has(HOSTIP_HOSTPORTS, r.comment.as_deref().unwrap_or_default()))
    {
        if !all_remade {
            batch.add_chain(Chain::new(f, TABLE, HOSTIP_HOSTPORTS));
        }
        batch.add_set(map_set(family, HOSTIP_MAP, true));
        batch.add_set(map_set(family, ANY_MAP, false));
        for r in &dispatch {
            if !seen.table || !seen.has(HOSTIP_HOSTPORTS, r.comment.as_deref().unwrap_or_default()) {
                batch.add_rule(r.to_nft(family));
            }
        }
    }
    if let Some(mark) = snat_mark
        && (!seen.table || !seen.has(MASQUERADING, &masq_comment(mark)))
    {
        if seen.of(MASQUERADING).is_empty() {
            batch.add_chain(base_chain(f, MASQUERADING));
        }
        batch.add_rule(masq_rule(mark).to_nft(family));
    }
}

/// Adds to `batch` the removal of an attachment chain and the elements that lead to it.
pub fn remove_attachment(batch: &mut Batch, family: IpFamily, chain: &str, keys: &[Key]) {
    let f = nft_family(family);
    for key in keys {
        batch.delete_elements(f, TABLE, key.map(), [key.element(chain)]);
    }
    // Deleting a chain deletes its rules.
    batch.delete_chain(f, TABLE, chain);
}

/// Adds to `batch` an attachment chain, its rules and its elements; `replace`: the chain
/// exists with rules, which are flushed first.
pub fn install_attachment(batch: &mut Batch, family: IpFamily, a: &AttachmentRules, replace: bool) {
    let f = nft_family(family);
    batch.add_chain(Chain::new(f, TABLE, a.chain.as_str()));
    if replace {
        batch.flush_chain(f, TABLE, a.chain.as_str());
    }
    for r in &a.rules {
        batch.add_rule(r.to_nft(family));
    }
    for key in &a.keys {
        batch.add_elements(f, TABLE, key.map(), [key.element(&a.chain)]);
    }
}

fn net_err(msg: impl Into<String>, e: cni_net::Error) -> Error {
    Error::from_chain(Code::INTERNAL, msg, &e)
}

fn is_enoent(e: &cni_net::Error) -> bool {
    e.is_not_found()
}

/// The nftables backend on the process's netfilter socket ([`crate::netfilter`]).
pub struct NftBackend {
    sock: std::mem::ManuallyDrop<NetfilterSocket>,
}

impl Drop for NftBackend {
    fn drop(&mut self) {
        // SAFETY: not used after this; `ManuallyDrop::take` moves the socket out once.
        let sock = unsafe { std::mem::ManuallyDrop::take(&mut self.sock) };
        crate::netfilter::give_back(sock);
    }
}

impl NftBackend {
    /// Takes the process's netfilter socket (opened on first use).
    pub fn new() -> Result<Self> {
        let sock = crate::netfilter::take().map_err(|e| net_err("cannot open a netfilter socket", e))?;
        Ok(NftBackend {
            sock: std::mem::ManuallyDrop::new(sock),
        })
    }

    /// The rules of a chain; empty when the table or chain is missing.
    fn rules_or_empty(&mut self, family: IpFamily, chain: &str) -> Result<Vec<RuleInfo>> {
        match self.sock.rules(nft_family(family), TABLE, chain) {
            Ok(r) => Ok(r),
            Err(e) if is_enoent(&e) => Ok(Vec::new()),
            Err(e) => Err(net_err(format!("cannot list nftables chain {chain}"), e)),
        }
    }

    /// Lists the shared chains (one small dump each, whatever the number of containers).
    fn shared(&mut self, family: IpFamily, snat: bool) -> Result<Shared> {
        let mut seen = Shared {
            table: true,
            comments: Vec::new(),
        };
        for chain in SHARED_CHAINS {
            if chain == MASQUERADING && !snat {
                continue;
            }
            let rules = self.rules_or_empty(family, chain)?;
            if chain == "prerouting" && rules.is_empty() {
                // The first ADD of the host, or someone removed the chain: ask for the table.
                seen.table = self
                    .sock
                    .table_exists(nft_family(family), TABLE)
                    .map_err(|e| net_err("cannot list nftables tables", e))?;
                if !seen.table {
                    return Ok(seen);
                }
            }
            seen.comments
                .push((chain, rules.into_iter().map(|r| r.comment).collect()));
        }
        Ok(seen)
    }

    /// Sets up forwarding to `container` (one family) in one batch that cannot fail in
    /// normal operation: what the listings show is there is not sent again.
    pub fn add(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let wanted = attachment_rules(conf, att, container)?;
        let snat_mark = conf.snat.then(|| conf.mark());
        let seen = self.shared(family, snat_mark.is_some())?;
        let existing = if seen.table {
            self.rules_or_empty(family, &wanted.chain)?
        } else {
            Vec::new()
        };
        let mut batch = Batch::new();
        base_batch(&mut batch, family, snat_mark, &seen);
        // A repeated ADD replaces what the earlier one made: its elements that the new
        // config does not have go (the others are re-added as they are).
        let f = nft_family(family);
        for key in keys_from_rules(&existing) {
            if !wanted.keys.contains(&key) {
                batch.delete_elements(f, TABLE, key.map(), [key.element(&wanted.chain)]);
            }
        }
        install_attachment(&mut batch, family, &wanted, !existing.is_empty());
        self.sock.apply(&batch).map_err(|e| {
            let errno = e.errno().map(|n| n as i32);
            if errno == Some(EBUSY) || errno == Some(EEXIST) {
                let keys: Vec<String> = wanted.keys.iter().map(Key::to_string).collect();
                Error::new(
                    Code::INTERNAL,
                    format!(
                        "unable to publish ports {}: already published by another container",
                        keys.join(", ")
                    ),
                )
                .with_details(e.to_string())
            } else {
                net_err("unable to set up nftables rules for port mappings", e)
            }
        })
    }

    /// Removes the attachment's chain and elements in both families. Only what a listing
    /// shows is deleted, so nothing is sent for a family (or a container) without rules.
    pub fn del(&mut self, att: &Attachment) -> Result<()> {
        let chain = attachment_chain(att);
        for family in [IpFamily::V4, IpFamily::V6] {
            self.del_chain(family, &chain)?;
        }
        Ok(())
    }

    fn del_chain(&mut self, family: IpFamily, chain: &str) -> Result<()> {
        let rules = self.rules_or_empty(family, chain)?;
        if rules.is_empty() {
            // Missing (our chains are never left empty: rules come in the batch that makes it).
            return Ok(());
        }
        let keys = keys_from_rules(&rules);
        let mut batch = Batch::new();
        remove_attachment(&mut batch, family, chain, &keys);
        match self.sock.apply(&batch) {
            Ok(()) => Ok(()),
            Err(e) if is_enoent(&e) => {
                // An element was already gone (removed by hand): element by element.
                let f = nft_family(family);
                for key in &keys {
                    let mut b = Batch::new();
                    b.delete_elements(f, TABLE, key.map(), [key.element(chain)]);
                    match self.sock.apply(&b) {
                        Ok(()) => {}
                        Err(e) if is_enoent(&e) => {}
                        Err(e) => return Err(net_err("cannot delete nftables map element", e)),
                    }
                }
                let mut b = Batch::new();
                b.delete_chain(f, TABLE, chain);
                match self.sock.apply(&b) {
                    Ok(()) => Ok(()),
                    Err(e) if is_enoent(&e) => Ok(()),
                    Err(e) => Err(net_err(format!("cannot delete nftables chain {chain}"), e)),
                }
            }
            Err(e) => Err(net_err(format!("cannot delete nftables chain {chain}"), e)),
        }
    }

    /// Verifies the attachment's rules of one family and the dispatch to them.
    pub fn check(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let wanted = attachment_rules(conf, att, container)?;
        let fail = |msg: String| Error::new(crate::CHECK_FAILED, msg);
        let rules = self.rules_or_empty(family, &wanted.chain)?;
        if rules.is_empty() {
            return Err(fail(format!(
                "nftables chain {} not found in table {TABLE}",
                wanted.chain
            )));
        }
        let mut want: Vec<String> = wanted.rules.iter().filter_map(|r| r.comment.clone()).collect();
        let mut have: Vec<String> = rules.iter().filter_map(|r| r.comment.clone()).collect();
        want.sort();
        have.sort();
        if want != have {
            return Err(fail(format!(
                "nftables chain {} has {} of the {} expected rules",
                wanted.chain,
                have.len(),
                want.len()
            )));
        }
        let dispatch = self.rules_or_empty(family, HOSTIP_HOSTPORTS)?;
        for c in [DISPATCH_HOSTIP_COMMENT, DISPATCH_COMMENT] {
            if !dispatch.iter().any(|r| r.comment.as_deref() == Some(c)) {
                return Err(fail(format!(
                    "nftables dispatch rule {c:?} missing in {HOSTIP_HOSTPORTS}"
                )));
            }
        }
        Ok(())
    }

    /// Removes the chains of `network`'s attachments whose container is not in `valid`.
    pub fn gc(&mut self, network: &str, valid: &[String]) -> Result<()> {
        for family in [IpFamily::V4, IpFamily::V6] {
            let chains = match self.sock.chains(nft_family(family), TABLE) {
                Ok(c) => c,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(net_err("cannot list nftables chains", e)),
            };
            for ch in chains.iter().filter(|c| c.name.starts_with("cni-dn-")) {
                let rules = self.rules_or_empty(family, &ch.name)?;
                let cid = rules.iter().find_map(|r| {
                    r.comment
                        .as_deref()
                        .and_then(|c| c.split_once(' '))
                        .map(|(_, cid)| cid)
                });
                let Some(cid) = cid else { continue };
                // The chain belongs to this network when its name is the hash of network + cid.
                if attachment_chain(&Attachment::new(network, cid)) != ch.name {
                    continue;
                }
                if !valid.iter().any(|v| v == cid) {
                    self.del_chain(family, &ch.name)?;
                }
            }
        }
        Ok(())
    }
}

/// What the kernel answers when a map key is taken by another element.
const EBUSY: i32 = 16;
const EEXIST: i32 = 17;

#[cfg(test)]
mod tests;
