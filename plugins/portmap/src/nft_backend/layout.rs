//! The nftables layout as data: Go's table and base chains, our per-group maps and sets with
//! the rules that use them, and the map and set elements of one attachment.

use super::conditions::{Condition, parse_conditions};
use crate::config::PortMapConf;
use crate::mapping::{Attachment, IpFamily, PortMapping, Protocol};
use cni::Result;
use cni_net::nft::{
    self, Batch, Chain, ChainType, Field, Hook, KeyType, MapData, SET_F_INTERVAL, Set, SetElement, Table,
    Value,
};
use ipnetwork::IpNetwork;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Go's table name, in both families.
pub const TABLE: &str = "cni_hostport";
/// Go's chains.
pub const HOSTPORTS_ALL: &str = "hostports_all";
/// Go's legacy hostIP chain; holds our groups' rules.
pub const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
/// Go's per-rule DNAT chain (left to Go).
pub const HOSTPORTS: &str = "hostports";
/// Go's postrouting chain.
pub const MASQUERADING: &str = "masquerading";
/// Comment of the entry rules in `prerouting` and `output`.
pub const ENTRY_COMMENT: &str = "rcni hostports";
/// Comments of the two jumps in [`HOSTPORTS_ALL`].
pub const ALL_COMMENTS: [&str; 2] = ["rcni hostip_hostports", "rcni hostports"];
/// Where a group's rule comments start: `rcni <group id> <what>`.
const GROUP_COMMENT_PREFIX: &str = "rcni ";

/// The nf_tables family of an IP family.
pub fn nft_family(f: IpFamily) -> nft::Family {
    match f {
        IpFamily::V4 => nft::Family::Ip,
        IpFamily::V6 => nft::Family::Ip6,
    }
}

fn addr_type(f: IpFamily) -> KeyType {
    match f {
        IpFamily::V4 => KeyType::Ipv4Addr,
        IpFamily::V6 => KeyType::Ipv6Addr,
    }
}

/// The attachment's tag, first word of its elements' comments: `cni-dn-` and 21 hex digits
/// of Go's hash of network and container (Go's per-container chain name, lower case).
pub fn attachment_tag(att: &Attachment) -> String {
    format!("cni-dn-{}", &att.dnat_chain()[7..])
}

/// The comment of each of the attachment's elements: the tag, then the container ID (cut to
/// nft's 128-byte limit; the tag alone identifies the attachment).
pub fn element_comment(att: &Attachment) -> String {
    let mut c = format!("{} {}", attachment_tag(att), att.container_id);
    if c.len() > nft::COMMENT_MAX_LEN {
        let mut cut = nft::COMMENT_MAX_LEN;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
    }
    c
}

/// The tag and container ID of an element comment.
pub fn parse_element_comment(c: &str) -> Option<(&str, &str)> {
    c.split_once(' ').filter(|(tag, _)| tag.starts_with("cni-dn-"))
}

/// What a packet is looked up by: one published port.
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

    /// The key's fields, as the maps and sets start with them.
    pub fn values(&self) -> Vec<Value> {
        let mut v = Vec::with_capacity(3);
        if let Some(ip) = self.host_ip {
            v.push(Value::Ip(ip));
        }
        v.push(Value::Proto(self.protocol.number()));
        v.push(Value::Port(self.port));
        v
    }

    /// The register image of the key.
    pub fn bytes(&self) -> Vec<u8> {
        nft::concat_bytes(&self.values())
    }

    /// The key followed by a source address: a point of the masquerade sets.
    pub fn with_source(&self, source: IpAddr) -> Vec<u8> {
        let mut v = self.values();
        v.push(Value::Ip(source));
        nft::concat_bytes(&v)
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

/// The attachments whose configs match packets the same way share one group: its maps and
/// sets and the four rules that use them. Almost every host has one group (no conditions,
/// the default mark); a config with `conditionsV4`/`V6`, another `markMasqBit`, `snat: false`
/// or `masqAll` gets its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// 8 hex digits of a hash of what the group matches on.
    pub id: String,
    /// Family.
    pub family: IpFamily,
    /// Extra matches of every rule.
    pub conditions: Vec<Condition>,
    /// The masquerade mark when `snat` is on.
    pub mark: Option<u32>,
    /// Masquerade connections from anywhere (`masqAll`), not only from the container's subnet
    /// and localhost.
    pub masq_all: bool,
}

impl Group {
    /// The group of `conf`'s attachments in `family`.
    pub fn of(conf: &PortMapConf, family: IpFamily) -> Result<Group> {
        let tokens = match family {
            IpFamily::V4 => &conf.conditions.v4,
            IpFamily::V6 => &conf.conditions.v6,
        };
        let conditions = parse_conditions(tokens, family)?;
        let mark = conf.snat.then(|| conf.mark());
        let masq_all = conf.snat && conf.masq_all;
        let identity = format!(
            "v1|{}|{mark:?}|{masq_all}|{}",
            nft_family(family).as_str(),
            tokens.join("\u{1f}")
        );
        let id = cni_net::hash::sha512_hex(identity.as_bytes(), 8);
        Ok(Group {
            id,
            family,
            conditions,
            mark,
            masq_all,
        })
    }

    /// The NAT map for keys with (`host_ip`) or without a host address.
    pub fn dnat_map(&self, host_ip: bool) -> String {
        format!("rcni_dnat{}_{}", if host_ip { "_hostip" } else { "" }, self.id)
    }

    /// The set of (key, source range) that are masqueraded.
    pub fn masq_set(&self, host_ip: bool) -> String {
        format!("rcni_masq{}_{}", if host_ip { "_hostip" } else { "" }, self.id)
    }

    /// The comment of one of the group's rules.
    fn comment(&self, what: &str) -> String {
        format!("{GROUP_COMMENT_PREFIX}{} {what}", self.id)
    }

    /// The group's maps and sets.
    pub fn sets(&self) -> Vec<Set> {
        let f = nft_family(self.family);
        let addr = addr_type(self.family);
        let mut out = Vec::new();
        for host_ip in [true, false] {
            let mut key = Vec::new();
            if host_ip {
                key.push(addr);
            }
            key.extend([KeyType::InetProto, KeyType::InetService]);
            out.push(
                Set::new(f, TABLE, self.dnat_map(host_ip), &key)
                    .map(MapData::Pair(addr, KeyType::InetService)),
            );
            if self.mark.is_some() {
                key.push(addr);
                let mut set = Set::new(f, TABLE, self.masq_set(host_ip), &key);
                set.flags |= SET_F_INTERVAL;
                out.push(set);
            }
        }
        out
    }

    /// The group's rules in [`HOSTIP_HOSTPORTS`], in order: the masquerade marks (they must
    /// come before the DNAT, which ends the chain), then the DNAT through the maps, keys with
    /// a host address first.
    pub fn rules(&self) -> Vec<LayoutRule> {
        let base: Vec<Match> = self.conditions.iter().cloned().map(Match::Condition).collect();
        let mut out = Vec::new();
        if let Some(mark) = self.mark {
            for host_ip in [true, false] {
                out.push(LayoutRule::new(
                    HOSTIP_HOSTPORTS,
                    base.clone(),
                    Action::MarkIfIn {
                        host_ip,
                        set: self.masq_set(host_ip),
                        mark,
                    },
                    Some(self.comment(if host_ip { "masq hostip" } else { "masq" })),
                ));
            }
        }
        for host_ip in [true, false] {
            out.push(LayoutRule::new(
                HOSTIP_HOSTPORTS,
                base.clone(),
                Action::DnatMap {
                    host_ip,
                    map: self.dnat_map(host_ip),
                },
                Some(self.comment(if host_ip { "dnat hostip" } else { "dnat" })),
            ));
        }
        out
    }
}

/// The ids of the groups whose rules `comments` (of [`HOSTIP_HOSTPORTS`]) hold.
pub fn group_ids(comments: &[Option<String>]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for c in comments.iter().flatten() {
        if let Some(rest) = c.strip_prefix(GROUP_COMMENT_PREFIX)
            && let Some((id, _)) = rest.split_once(' ')
            && id.len() == 8
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_string());
        }
    }
    ids
}

/// The names of a group's maps and sets from its id alone (for DEL and GC, which may not
/// have the config that made it).
pub fn group_names(id: &str) -> Group {
    Group {
        id: id.to_string(),
        family: IpFamily::V4,
        conditions: Vec::new(),
        mark: None,
        masq_all: false,
    }
}

/// One attachment's elements for one container address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentElements {
    /// The keys, in the order of the config.
    pub keys: Vec<Key>,
    /// (map or set name, element).
    pub elements: Vec<(String, SetElement)>,
}

/// What one attachment adds to `group`'s maps and sets for `container`: per key, the NAT
/// element to the container's address and port, and with snat the masquerade ranges (the
/// container's subnet, or everything with `masqAll`; and 127.0.0.1 in IPv4 so that
/// `localhost:port` works).
pub fn attachment_elements(
    conf: &PortMapConf,
    group: &Group,
    att: &Attachment,
    container: IpNetwork,
) -> AttachmentElements {
    let comment = element_comment(att);
    let mut keys: Vec<Key> = Vec::new();
    let mut elements = Vec::new();
    for m in conf.mappings.iter().filter(|m| m.applies_to(group.family)) {
        let key = Key::of(m);
        if keys.contains(&key) {
            continue; // the first mapping of a key wins, as in the rules Go writes
        }
        keys.push(key);
        let host_ip = key.host_ip.is_some();
        elements.push((
            group.dnat_map(host_ip),
            SetElement::new(key.values())
                .pair(Value::Ip(container.ip()), Value::Port(m.container_port))
                .comment(comment.clone()),
        ));
        if group.mark.is_none() {
            continue;
        }
        let mut sources = vec![source_range(group, container)];
        if group.family == IpFamily::V4 && !group.masq_all {
            let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
            sources.push((lo, lo));
        }
        for (first, last) in sources {
            let mut start = key.values();
            start.push(Value::Ip(first));
            let mut end = key.values();
            end.push(Value::Ip(last));
            elements.push((
                group.masq_set(host_ip),
                SetElement::new(start).range_end(end).comment(comment.clone()),
            ));
        }
    }
    AttachmentElements { keys, elements }
}

/// The source range masqueraded for `container`: its subnet, or every address.
fn source_range(group: &Group, container: IpNetwork) -> (IpAddr, IpAddr) {
    if group.masq_all {
        return match group.family {
            IpFamily::V4 => (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into()),
            IpFamily::V6 => (Ipv6Addr::UNSPECIFIED.into(), Ipv6Addr::from(u128::MAX).into()),
        };
    }
    match container {
        IpNetwork::V4(n) => (n.network().into(), n.broadcast().into()),
        IpNetwork::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let first = u128::from(n.network());
            (Ipv6Addr::from(first).into(), Ipv6Addr::from(first | mask).into())
        }
    }
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
    /// `masquerade`.
    Masquerade,
    /// `[ip daddr .] meta l4proto . th dport . ip saddr @SET meta mark set mark | M`.
    MarkIfIn {
        /// With the host address in the key.
        host_ip: bool,
        /// The set.
        set: String,
        /// The mark bit(s).
        mark: u32,
    },
    /// `dnat ip to [ip daddr .] meta l4proto . th dport map @MAP`.
    DnatMap {
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
                Match::Mark(m) => format!("meta mark & {m:#010x} == {m:#010x}"),
                Match::Condition(c) => c.to_string(),
            });
        }
        let daddr = |host_ip: bool| if host_ip { "ip daddr . " } else { "" };
        words.push(match &self.action {
            Action::Jump(c) => format!("jump {c}"),
            Action::Masquerade => "masquerade".into(),
            Action::MarkIfIn { host_ip, set, mark } => format!(
                "{}meta l4proto . th dport . ip saddr @{set} meta mark set meta mark | {mark:#010x}",
                daddr(*host_ip)
            ),
            Action::DnatMap { host_ip, map } => {
                format!("dnat to {}meta l4proto . th dport map @{map}", daddr(*host_ip))
            }
        });
        if let Some(c) = &self.comment {
            words.push(format!("comment {c:?}"));
        }
        write!(f, "{}", words.join(" "))
    }
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
                Match::Mark(m) => r.mark_masked(*m, *m),
                Match::Condition(c) => c.apply(r),
            };
        }
        let (daddr, saddr) = match family {
            IpFamily::V4 => (Field::IpDaddr, Field::IpSaddr),
            IpFamily::V6 => (Field::Ip6Daddr, Field::Ip6Saddr),
        };
        let key = |host_ip: bool| {
            let mut k = Vec::with_capacity(4);
            if host_ip {
                k.push(daddr);
            }
            k.extend([Field::L4Proto, Field::ThDport]);
            k
        };
        r = match &self.action {
            Action::Jump(c) => r.jump(c.as_str()),
            Action::Masquerade => r.masquerade(),
            Action::MarkIfIn { host_ip, set, mark } => {
                let mut fields = key(*host_ip);
                fields.push(saddr);
                r.lookup(&fields, set).set_mark_bits(*mark)
            }
            Action::DnatMap { host_ip, map } => r.dnat_map(&key(*host_ip), map, nft_family(family)),
        };
        if let Some(c) = &self.comment {
            r = r.comment(c.as_str());
        }
        r
    }
}

/// The static rules of the shared chains that Go's ADD re-makes whole, by chain.
pub fn static_rules() -> Vec<LayoutRule> {
    let jump = |chain: &str, target: &str, comment: &str, matches: Vec<Match>| {
        LayoutRule::new(chain, matches, Action::Jump(target.into()), Some(comment.into()))
    };
    vec![
        jump(
            "prerouting",
            HOSTPORTS_ALL,
            ENTRY_COMMENT,
            vec![Match::DaddrLocal],
        ),
        jump("output", HOSTPORTS_ALL, ENTRY_COMMENT, vec![Match::DaddrLocal]),
        jump(HOSTPORTS_ALL, HOSTIP_HOSTPORTS, ALL_COMMENTS[0], vec![]),
        jump(HOSTPORTS_ALL, HOSTPORTS, ALL_COMMENTS[1], vec![]),
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

/// The shared chains an ADD makes sure of.
pub const SHARED_CHAINS: [&str; 5] = [
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
    /// The comments of `chain`'s rules.
    pub fn of(&self, chain: &str) -> &[Option<String>] {
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

/// The part of an ADD batch that makes sure of the table, chains, the group's maps, sets and
/// rules, and the masquerade rule, given what a listing found: nothing when all is there (the
/// usual case, so an ADD costs neither a hook registration nor a re-made base chain). Base
/// chains are created only when they list as empty; a shared chain whose rules differ from
/// ours is re-made whole (as Go's ADD does); a group's rules are added when missing, never
/// flushed (other groups' rules live in the same chain).
pub fn base_batch(batch: &mut Batch, group: &Group, seen: &Shared) {
    let family = group.family;
    let f = nft_family(family);
    if !seen.table {
        batch.add_table(Table::new(f, TABLE).comment("CNI portmap plugin"));
    }
    let statics = static_rules();
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
    let rules = group.rules();
    let missing: Vec<&LayoutRule> = rules
        .iter()
        .filter(|r| !seen.table || !seen.has(HOSTIP_HOSTPORTS, r.comment.as_deref().unwrap_or_default()))
        .collect();
    if !missing.is_empty() {
        if !all_remade {
            batch.add_chain(Chain::new(f, TABLE, HOSTIP_HOSTPORTS));
        }
        for set in group.sets() {
            batch.add_set(set);
        }
        for r in missing {
            batch.add_rule(r.to_nft(family));
        }
    }
    if let Some(mark) = group.mark
        && (!seen.table || !seen.has(MASQUERADING, &masq_comment(mark)))
    {
        if seen.of(MASQUERADING).is_empty() {
            batch.add_chain(base_chain(f, MASQUERADING));
        }
        batch.add_rule(masq_rule(mark).to_nft(family));
    }
}
