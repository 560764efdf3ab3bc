//! The rule builder: matches and actions in the order they are written, each producing the
//! expressions `nft` itself would produce, including the implicit protocol checks (`meta
//! nfproto ipv4` before `ip daddr` in an `inet` table, `meta l4proto tcp` before `tcp dport`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::expr::{
    CmpOp, CtKey, Expr, FIB_F_DADDR, FibResult, MetaKey, NAT_RANGE_PROTO_SPECIFIED, NatKind, PayloadBase,
    RTN_LOCAL, Reg, Verdict,
};
use super::object::{Family, KeyType, SetElement};

/// Longest comment accepted: the limit of the `nft` tool (`NFTNL_UDATA_COMMENT_MAXLEN`), so
/// every ruleset written here can be saved and restored with `nft -f`.
pub const COMMENT_MAX_LEN: usize = 128;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Layer 4 protocols with ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Proto {
    Tcp = 6,
    Udp = 17,
    Sctp = 132,
}

impl L4Proto {
    /// Parses `tcp`, `udp` or `sctp` (case-insensitive), as CNI port mappings spell them.
    pub fn parse(s: &str) -> Option<L4Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(L4Proto::Tcp),
            "udp" => Some(L4Proto::Udp),
            "sctp" => Some(L4Proto::Sctp),
            _ => None,
        }
    }
}

/// A packet field usable as (part of) a set key in [`Rule::lookup`] and [`Rule::vmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    IpSaddr,
    IpDaddr,
    Ip6Saddr,
    Ip6Daddr,
    L4Proto,
    Dport(L4Proto),
    /// `th dport`: the destination port of any transport header, with no protocol check
    /// (key it together with [`Field::L4Proto`]).
    ThDport,
    Sport(L4Proto),
    IifName,
    OifName,
    EtherSaddr,
    Mark,
}

impl Field {
    /// The set key type matching this field.
    pub fn key_type(self) -> KeyType {
        match self {
            Field::IpSaddr | Field::IpDaddr => KeyType::Ipv4Addr,
            Field::Ip6Saddr | Field::Ip6Daddr => KeyType::Ipv6Addr,
            Field::L4Proto => KeyType::InetProto,
            Field::Dport(_) | Field::Sport(_) | Field::ThDport => KeyType::InetService,
            Field::IifName | Field::OifName => KeyType::IfName,
            Field::EtherSaddr => KeyType::EtherAddr,
            Field::Mark => KeyType::Mark,
        }
    }
}

/// Where a new rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At the end (the default).
    Append,
    /// At the start.
    Insert,
    /// Right after the rule with this handle.
    After(u64),
    /// Right before the rule with this handle.
    Before(u64),
}

/// A rule under construction. Build it with the match and action methods, then add it to a
/// [`super::Batch`]. Mistakes (an IPv6 address in an `ip` table, a 20-character interface
/// name) are recorded and reported when the batch is encoded, so the builder chains cleanly.
///
/// ```
/// use cni_net::nft::{Family, Rule};
/// let rule = Rule::new(Family::Ip, "cni_hostport", "hostports")
///     .fib_daddr_local()
///     .tcp_dport(8080)
///     .dnat("10.222.0.5".parse().unwrap(), Some(80))
///     .comment("3f1c0e2b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
    pub position: Position,
    /// The `meta nfproto` already checked, so it is emitted once per rule.
    nfproto: Option<u8>,
    /// The `meta l4proto` already checked.
    l4proto: Option<u8>,
    pub(crate) invalid: Option<String>,
    /// Anonymous constant sets this rule looks up (`ip daddr { a, b }`), added in the same
    /// batch right before the rule; their lookups carry the index here as a provisional set id.
    pub(crate) anon_sets: Vec<AnonSet>,
    /// The layer 4 protocol the rule's `nft_compat` matches and targets may assume
    /// (`NFTA_RULE_COMPAT`): xtables extensions such as `multiport` check it, as they check
    /// `-p` in an iptables rule.
    pub(crate) compat_proto: Option<u8>,
}

/// An anonymous set (or verdict map) bound to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnonSet {
    pub(crate) key: Vec<KeyType>,
    pub(crate) verdict_map: bool,
    pub(crate) elements: Vec<SetElement>,
}

/// Name of every anonymous set: the kernel replaces `%d` with a free number.
pub(crate) const ANON_SET_NAME: &str = "__set%d";

impl Rule {
    /// An empty rule for `chain` of `table`.
    pub fn new(family: Family, table: impl Into<String>, chain: impl Into<String>) -> Self {
        Rule {
            family,
            table: table.into(),
            chain: chain.into(),
            exprs: Vec::new(),
            comment: None,
            position: Position::Append,
            nfproto: None,
            l4proto: None,
            invalid: None,
            anon_sets: Vec::new(),
            compat_proto: None,
        }
    }

    /// Declares the layer 4 protocol for the rule's `nft_compat` expressions (what
    /// iptables-nft sends for a rule with `-p PROTO`); see [`Expr::Match`].
    pub fn compat_proto(mut self, proto: u8) -> Self {
        self.compat_proto = Some(proto);
        self
    }

    fn invalid(mut self, why: String) -> Self {
        self.invalid.get_or_insert(why);
        self
    }

    /// Appends a raw expression (for what the builder does not cover).
    pub fn expr(mut self, expr: Expr) -> Self {
        self.exprs.push(expr);
        self
    }

    fn load_cmp(mut self, load: Expr, op: CmpOp, data: Vec<u8>) -> Self {
        self.exprs.push(load);
        self.exprs.push(Expr::Cmp {
            sreg: Reg::R1,
            op,
            data,
        });
        self
    }

    /// Adds the check that the packet is IPv4/IPv6 where the table family does not imply it.
    fn need_nfproto(mut self, nfproto: u8) -> Self {
        let implied = match self.family {
            Family::Ip => Some(NFPROTO_IPV4),
            Family::Ip6 => Some(NFPROTO_IPV6),
            _ => None,
        };
        if let Some(implied) = implied {
            if implied != nfproto {
                let what = if nfproto == NFPROTO_IPV4 {
                    "an IPv4"
                } else {
                    "an IPv6"
                };
                let family = self.family;
                return self.invalid(format!("{what} match in a table of family {family}"));
            }
            return self;
        }
        if self.nfproto == Some(nfproto) {
            return self;
        }
        self.nfproto = Some(nfproto);
        match self.family {
            Family::Bridge => {
                // `ether type ip`/`ip6`, as nft emits it in the bridge family.
                let ethertype: u16 = if nfproto == NFPROTO_IPV4 { 0x0800 } else { 0x86dd };
                let load = Expr::Payload {
                    base: PayloadBase::LinkLayer,
                    offset: 12,
                    len: 2,
                    dreg: Reg::R1,
                };
                self.load_cmp(load, CmpOp::Eq, ethertype.to_be_bytes().to_vec())
            }
            Family::Netdev => {
                let ethertype: u16 = if nfproto == NFPROTO_IPV4 { 0x0800 } else { 0x86dd };
                let load = Expr::Meta {
                    key: MetaKey::Protocol,
                    dreg: Reg::R1,
                };
                self.load_cmp(load, CmpOp::Eq, ethertype.to_be_bytes().to_vec())
            }
            _ => {
                let load = Expr::Meta {
                    key: MetaKey::NfProto,
                    dreg: Reg::R1,
                };
                self.load_cmp(load, CmpOp::Eq, vec![nfproto])
            }
        }
    }

    fn need_l4proto(mut self, proto: u8) -> Self {
        if self.l4proto == Some(proto) {
            return self;
        }
        self.l4proto = Some(proto);
        self.load_cmp(
            Expr::Meta {
                key: MetaKey::L4Proto,
                dreg: Reg::R1,
            },
            CmpOp::Eq,
            vec![proto],
        )
    }

    fn addr_match(self, source: bool, net: IpNetwork, op: CmpOp) -> Self {
        let (nfproto, offset, bytes) = match net.network() {
            IpAddr::V4(a) => (NFPROTO_IPV4, if source { 12 } else { 16 }, a.octets().to_vec()),
            IpAddr::V6(a) => (NFPROTO_IPV6, if source { 8 } else { 24 }, a.octets().to_vec()),
        };
        let mut rule = self.need_nfproto(nfproto);
        let prefix = usize::from(net.prefix());
        let full = bytes.len() * 8;
        if prefix == 0 {
            // Any address of the family: the protocol check is the whole match.
            if op == CmpOp::Neq {
                return rule.invalid(format!("`!= {net}` can never match"));
            }
            return rule;
        }
        if prefix == full || prefix % 8 == 0 {
            // Whole bytes: compare only the prefix bytes, as nft does.
            let len = prefix / 8;
            let load = Expr::Payload {
                base: PayloadBase::Network,
                offset,
                len: len as u32,
                dreg: Reg::R1,
            };
            return rule.load_cmp(load, op, bytes[..len].to_vec());
        }
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let bits = prefix.saturating_sub(i * 8).min(8);
                if bits == 0 { 0 } else { 0xffu8 << (8 - bits) }
            })
            .collect();
        let load = Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: bytes.len() as u32,
            dreg: Reg::R1,
        };
        rule.exprs.push(load);
        rule.exprs.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            xor: vec![0; mask.len()],
            mask,
        });
        rule.exprs.push(Expr::Cmp {
            sreg: Reg::R1,
            op,
            data: bytes,
        });
        rule
    }

    /// `ip saddr NET` / `ip6 saddr NET` (the family follows the address; a host address is a /32
    /// or /128).
    pub fn saddr(self, net: impl Into<IpNetwork>) -> Self {
        self.addr_match(true, net.into(), CmpOp::Eq)
    }

    /// `ip saddr != NET` / `ip6 saddr != NET`.
    pub fn saddr_ne(self, net: impl Into<IpNetwork>) -> Self {
        self.addr_match(true, net.into(), CmpOp::Neq)
    }

    /// `ip daddr NET` / `ip6 daddr NET`.
    pub fn daddr(self, net: impl Into<IpNetwork>) -> Self {
        self.addr_match(false, net.into(), CmpOp::Eq)
    }

    /// `ip daddr != NET` / `ip6 daddr != NET`.
    pub fn daddr_ne(self, net: impl Into<IpNetwork>) -> Self {
        self.addr_match(false, net.into(), CmpOp::Neq)
    }

    /// `meta nfproto ipv4` (true) or `ipv6` (false): only packets of that IP version.
    pub fn ipv4_only(self, v4: bool) -> Self {
        self.need_nfproto(if v4 { NFPROTO_IPV4 } else { NFPROTO_IPV6 })
    }

    /// `meta l4proto P`.
    pub fn l4proto(self, proto: L4Proto) -> Self {
        self.need_l4proto(proto as u8)
    }

    /// `P dport PORT` (`tcp dport 8080`).
    pub fn dport(self, proto: L4Proto, port: u16) -> Self {
        let load = Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: Reg::R1,
        };
        self.need_l4proto(proto as u8)
            .load_cmp(load, CmpOp::Eq, port.to_be_bytes().to_vec())
    }

    /// `P sport PORT`.
    pub fn sport(self, proto: L4Proto, port: u16) -> Self {
        let load = Expr::Payload {
            base: PayloadBase::Transport,
            offset: 0,
            len: 2,
            dreg: Reg::R1,
        };
        self.need_l4proto(proto as u8)
            .load_cmp(load, CmpOp::Eq, port.to_be_bytes().to_vec())
    }

    /// `tcp dport PORT`.
    pub fn tcp_dport(self, port: u16) -> Self {
        self.dport(L4Proto::Tcp, port)
    }

    /// `udp dport PORT`.
    pub fn udp_dport(self, port: u16) -> Self {
        self.dport(L4Proto::Udp, port)
    }

    fn ifname_match(self, key: MetaKey, name: &str, op: CmpOp) -> Self {
        // "veth*" compares the prefix only, like nft's wildcard.
        let data = match name.strip_suffix('*') {
            Some(prefix) if !prefix.is_empty() => prefix.as_bytes().to_vec(),
            _ => {
                let mut b = name.as_bytes().to_vec();
                b.resize(16, 0);
                b
            }
        };
        if name.is_empty() || name.len() > 15 {
            return self.invalid(format!("interface name {name:?} is not 1 to 15 bytes"));
        }
        self.load_cmp(Expr::Meta { key, dreg: Reg::R1 }, op, data)
    }

    /// `iifname "NAME"` (`"veth*"` matches a prefix).
    pub fn iifname(self, name: &str) -> Self {
        self.ifname_match(MetaKey::IifName, name, CmpOp::Eq)
    }

    /// `iifname != "NAME"`.
    pub fn iifname_ne(self, name: &str) -> Self {
        self.ifname_match(MetaKey::IifName, name, CmpOp::Neq)
    }

    /// `oifname "NAME"`.
    pub fn oifname(self, name: &str) -> Self {
        self.ifname_match(MetaKey::OifName, name, CmpOp::Eq)
    }

    /// `oifname != "NAME"`.
    pub fn oifname_ne(self, name: &str) -> Self {
        self.ifname_match(MetaKey::OifName, name, CmpOp::Neq)
    }

    fn ether_saddr_match(self, mac: [u8; 6], op: CmpOp) -> Self {
        if !matches!(self.family, Family::Bridge | Family::Netdev) {
            let family = self.family;
            return self.invalid(format!(
                "ether saddr needs a bridge or netdev table, not {family}"
            ));
        }
        let load = Expr::Payload {
            base: PayloadBase::LinkLayer,
            offset: 6,
            len: 6,
            dreg: Reg::R1,
        };
        self.load_cmp(load, op, mac.to_vec())
    }

    /// `ether saddr MAC` (bridge and netdev tables).
    pub fn ether_saddr(self, mac: [u8; 6]) -> Self {
        self.ether_saddr_match(mac, CmpOp::Eq)
    }

    /// `ether saddr != MAC`: what macspoofchk drops.
    pub fn ether_saddr_ne(self, mac: [u8; 6]) -> Self {
        self.ether_saddr_match(mac, CmpOp::Neq)
    }

    /// `fib daddr type local`: the destination is one of this host's addresses (what portmap's
    /// DNAT needs so that forwarded traffic to other hosts is left alone).
    pub fn fib_daddr_local(mut self) -> Self {
        self.exprs.push(Expr::Fib {
            flags: FIB_F_DADDR,
            result: FibResult::AddrType,
            dreg: Reg::R1,
        });
        self.exprs.push(Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        });
        self
    }

    /// `meta mark & MASK == VALUE`.
    pub fn mark_masked(mut self, mask: u32, value: u32) -> Self {
        self.exprs.push(Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        });
        self.exprs.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: value.to_ne_bytes().to_vec(),
        });
        self
    }

    /// `ct state S1,S2`: any of the [`super::ct_state`] bits.
    pub fn ct_state(mut self, states: u32) -> Self {
        self.exprs.push(Expr::Ct {
            key: CtKey::State,
            dreg: Reg::R1,
        });
        self.exprs.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: states.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        });
        self
    }

    /// Emits the protocol checks, then loads `fields` into consecutive registers starting at
    /// `NFT_REG_1`, as nft lays out a concatenation.
    fn load_fields(mut self, fields: &[Field]) -> Self {
        for field in fields {
            self = match field {
                Field::IpSaddr | Field::IpDaddr => self.need_nfproto(NFPROTO_IPV4),
                Field::Ip6Saddr | Field::Ip6Daddr => self.need_nfproto(NFPROTO_IPV6),
                Field::Dport(p) | Field::Sport(p) => self.need_l4proto(*p as u8),
                _ => self,
            };
        }
        if fields.is_empty() {
            return self.invalid("a lookup needs at least one field".into());
        }
        let mut slot = 0u32;
        for field in fields {
            let dreg = if slot == 0 { Reg::R1 } else { Reg::r32(slot) };
            let payload = |base, offset, len| Expr::Payload {
                base,
                offset,
                len,
                dreg,
            };
            let load = match field {
                Field::IpSaddr => payload(PayloadBase::Network, 12, 4),
                Field::IpDaddr => payload(PayloadBase::Network, 16, 4),
                Field::Ip6Saddr => payload(PayloadBase::Network, 8, 16),
                Field::Ip6Daddr => payload(PayloadBase::Network, 24, 16),
                Field::Dport(_) | Field::ThDport => payload(PayloadBase::Transport, 2, 2),
                Field::Sport(_) => payload(PayloadBase::Transport, 0, 2),
                Field::EtherSaddr => payload(PayloadBase::LinkLayer, 6, 6),
                Field::L4Proto => Expr::Meta {
                    key: MetaKey::L4Proto,
                    dreg,
                },
                Field::IifName => Expr::Meta {
                    key: MetaKey::IifName,
                    dreg,
                },
                Field::OifName => Expr::Meta {
                    key: MetaKey::OifName,
                    dreg,
                },
                Field::Mark => Expr::Meta {
                    key: MetaKey::Mark,
                    dreg,
                },
            };
            self.exprs.push(load);
            slot += field.key_type().byte_len().div_ceil(4) as u32;
        }
        if slot > 16 {
            return self.invalid("concatenation longer than the 64-byte register file".into());
        }
        self
    }

    /// `FIELDS @set` (e.g. `ip saddr . tcp dport @allowed`): the key is in the named set.
    pub fn lookup(mut self, fields: &[Field], set: &str) -> Self {
        self = self.load_fields(fields);
        self.exprs.push(Expr::Lookup {
            set: set.into(),
            set_id: None,
            sreg: Reg::R1,
            dreg: None,
            invert: false,
        });
        self
    }

    /// `FIELDS != @set`.
    pub fn lookup_ne(mut self, fields: &[Field], set: &str) -> Self {
        self = self.load_fields(fields);
        self.exprs.push(Expr::Lookup {
            set: set.into(),
            set_id: None,
            sreg: Reg::R1,
            dreg: None,
            invert: true,
        });
        self
    }

    /// `FIELDS vmap @map`: the verdict is the map's value for the key (no verdict, i.e.
    /// continue, when the key is missing).
    pub fn vmap(mut self, fields: &[Field], map: &str) -> Self {
        self = self.load_fields(fields);
        self.exprs.push(Expr::Lookup {
            set: map.into(),
            set_id: None,
            sreg: Reg::R1,
            dreg: Some(Reg::VERDICT),
            invert: false,
        });
        self
    }

    fn anon_lookup(mut self, fields: &[Field], elements: Vec<SetElement>, verdict_map: bool) -> Self {
        if elements.is_empty() {
            return self.invalid("an anonymous set needs at least one element".into());
        }
        self = self.load_fields(fields);
        let index = self.anon_sets.len() as u32;
        self.anon_sets.push(AnonSet {
            key: fields.iter().map(|f| f.key_type()).collect(),
            verdict_map,
            elements,
        });
        self.exprs.push(Expr::Lookup {
            set: ANON_SET_NAME.into(),
            set_id: Some(index),
            sreg: Reg::R1,
            dreg: verdict_map.then_some(Reg::VERDICT),
            invert: false,
        });
        self
    }

    /// `FIELDS { e1, e2, ... }`: the key is one of `elements` (an anonymous constant set that
    /// lives and dies with the rule).
    pub fn lookup_in(self, fields: &[Field], elements: impl IntoIterator<Item = SetElement>) -> Self {
        self.anon_lookup(fields, elements.into_iter().collect(), false)
    }

    /// `FIELDS vmap { k1 : verdict1, ... }` with an anonymous verdict map (elements made with
    /// [`SetElement::verdict`]).
    pub fn vmap_in(self, fields: &[Field], elements: impl IntoIterator<Item = SetElement>) -> Self {
        self.anon_lookup(fields, elements.into_iter().collect(), true)
    }

    /// `meta mark set meta mark | BITS`.
    pub fn set_mark_bits(mut self, bits: u32) -> Self {
        self.exprs.push(Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        });
        self.exprs.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        });
        self.exprs.push(Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: Reg::R1,
        });
        self
    }

    /// `counter`.
    pub fn counter(mut self) -> Self {
        self.exprs.push(Expr::Counter);
        self
    }

    fn nat(mut self, kind: NatKind, addr: IpAddr, port: Option<u16>) -> Self {
        let (family, bytes) = match addr {
            IpAddr::V4(a) => (NFPROTO_IPV4, a.octets().to_vec()),
            IpAddr::V6(a) => (NFPROTO_IPV6, a.octets().to_vec()),
        };
        let mismatch = matches!(
            (self.family, family),
            (Family::Ip, NFPROTO_IPV6) | (Family::Ip6, NFPROTO_IPV4)
        );
        if mismatch || matches!(self.family, Family::Bridge | Family::Netdev) {
            let family = self.family;
            return self.invalid(format!("NAT to {addr} in a table of family {family}"));
        }
        self.exprs.push(Expr::ImmediateData {
            dreg: Reg::R1,
            data: bytes,
        });
        if let Some(port) = port {
            self.exprs.push(Expr::ImmediateData {
                dreg: Reg::R2,
                data: port.to_be_bytes().to_vec(),
            });
        }
        self.exprs.push(Expr::Nat {
            kind,
            family,
            addr: Some(Reg::R1),
            port: port.map(|_| Reg::R2),
            flags: if port.is_some() {
                NAT_RANGE_PROTO_SPECIFIED
            } else {
                0
            },
        });
        self
    }

    /// `dnat ip addr . port to FIELDS map @map`: DNAT to the address and port the map `map`
    /// (a [`super::MapData::Pair`] of address and port) holds for the key; the rule does not
    /// match when the key is missing. `nat_family` is the family of the addresses (`Ip` or
    /// `Ip6`).
    pub fn dnat_map(mut self, fields: &[Field], map: &str, nat_family: Family) -> Self {
        let (family, addr_regs) = match nat_family {
            Family::Ip => (NFPROTO_IPV4, 1),
            Family::Ip6 => (NFPROTO_IPV6, 4),
            other => return self.invalid(format!("NAT map to addresses of family {other}")),
        };
        self = self.load_fields(fields);
        // The data goes to the upper half of the register file, clear of any key up to 32 bytes.
        let addr = Reg::r32(8);
        self.exprs.push(Expr::Lookup {
            set: map.into(),
            set_id: None,
            sreg: Reg::R1,
            dreg: Some(addr),
            invert: false,
        });
        self.exprs.push(Expr::Nat {
            kind: NatKind::Dnat,
            family,
            addr: Some(addr),
            port: Some(Reg::r32(8 + addr_regs)),
            flags: NAT_RANGE_PROTO_SPECIFIED,
        });
        self
    }

    /// `dnat to ADDR[:PORT]` (`dnat ip to ...` in an inet table).
    pub fn dnat(self, addr: IpAddr, port: Option<u16>) -> Self {
        self.nat(NatKind::Dnat, addr, port)
    }

    /// `snat to ADDR[:PORT]`.
    pub fn snat(self, addr: IpAddr, port: Option<u16>) -> Self {
        self.nat(NatKind::Snat, addr, port)
    }

    /// `masquerade`.
    pub fn masquerade(mut self) -> Self {
        self.exprs.push(Expr::Masquerade);
        self
    }

    /// Ends the rule with `verdict`.
    pub fn verdict(mut self, verdict: Verdict) -> Self {
        self.exprs.push(Expr::Verdict(verdict));
        self
    }

    /// `accept`.
    pub fn accept(self) -> Self {
        self.verdict(Verdict::Accept)
    }

    /// `drop`.
    pub fn drop(self) -> Self {
        self.verdict(Verdict::Drop)
    }

    /// `return`.
    pub fn return_(self) -> Self {
        self.verdict(Verdict::Return)
    }

    /// `jump CHAIN`.
    pub fn jump(self, chain: impl Into<String>) -> Self {
        self.verdict(Verdict::Jump(chain.into()))
    }

    /// `goto CHAIN`.
    pub fn goto(self, chain: impl Into<String>) -> Self {
        self.verdict(Verdict::Goto(chain.into()))
    }

    /// `comment "TEXT"`, stored as `nft` stores it, so it can be found again with
    /// [`super::NetfilterSocket::rules`] and is shown by `nft list`.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        if text.len() > COMMENT_MAX_LEN || text.contains('\0') {
            return self.invalid(format!(
                "comment {text:?} is longer than {COMMENT_MAX_LEN} bytes or contains NUL"
            ));
        }
        self.comment = Some(text);
        self
    }

    /// Puts the rule at `position` instead of the end of the chain.
    pub fn position(mut self, position: Position) -> Self {
        self.position = position;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_ip_match_gets_one_nfproto_check() {
        let r = Rule::new(Family::Inet, "t", "c")
            .saddr("10.222.0.5".parse::<IpAddr>().unwrap())
            .daddr_ne("10.222.0.0/24".parse::<IpNetwork>().unwrap())
            .masquerade();
        assert_eq!(
            r.exprs,
            vec![
                Expr::Meta {
                    key: MetaKey::NfProto,
                    dreg: Reg::R1
                },
                Expr::Cmp {
                    sreg: Reg::R1,
                    op: CmpOp::Eq,
                    data: vec![2]
                },
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 12,
                    len: 4,
                    dreg: Reg::R1
                },
                Expr::Cmp {
                    sreg: Reg::R1,
                    op: CmpOp::Eq,
                    data: vec![10, 222, 0, 5]
                },
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 16,
                    len: 3,
                    dreg: Reg::R1
                },
                Expr::Cmp {
                    sreg: Reg::R1,
                    op: CmpOp::Neq,
                    data: vec![10, 222, 0]
                },
                Expr::Masquerade,
            ]
        );
    }

    #[test]
    fn unaligned_prefix_uses_bitwise_mask() {
        let r = Rule::new(Family::Ip, "t", "c").daddr("224.0.0.0/4".parse::<IpNetwork>().unwrap());
        assert_eq!(
            r.exprs,
            vec![
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 16,
                    len: 4,
                    dreg: Reg::R1
                },
                Expr::Bitwise {
                    sreg: Reg::R1,
                    dreg: Reg::R1,
                    mask: vec![0xf0, 0, 0, 0],
                    xor: vec![0; 4]
                },
                Expr::Cmp {
                    sreg: Reg::R1,
                    op: CmpOp::Eq,
                    data: vec![224, 0, 0, 0]
                },
            ]
        );
    }

    #[test]
    fn family_mismatch_and_long_names_are_recorded() {
        let r = Rule::new(Family::Ip, "t", "c").daddr("fd00::1".parse::<IpAddr>().unwrap());
        assert!(r.invalid.is_some());
        let r = Rule::new(Family::Bridge, "t", "c").iifname("a-very-long-interface");
        assert!(r.invalid.is_some());
        let r = Rule::new(Family::Inet, "t", "c").ether_saddr_ne([0; 6]);
        assert!(r.invalid.is_some());
        let r = Rule::new(Family::Ip, "t", "c").comment("x".repeat(129));
        assert!(r.invalid.is_some());
    }

    #[test]
    fn concatenation_uses_consecutive_32bit_registers() {
        let r = Rule::new(Family::Inet, "t", "c").vmap(&[Field::IpSaddr, Field::Dport(L4Proto::Tcp)], "m");
        assert_eq!(
            r.exprs[4..],
            [
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 12,
                    len: 4,
                    dreg: Reg::R1
                },
                Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: Reg(9)
                },
                Expr::Lookup {
                    set: "m".into(),
                    set_id: None,
                    sreg: Reg::R1,
                    dreg: Some(Reg::VERDICT),
                    invert: false
                },
            ]
        );
    }
}
