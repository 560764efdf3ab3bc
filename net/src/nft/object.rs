//! Tables, chains and sets: the objects rules live in.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::expr::Verdict;

/// The family of a table (`NFPROTO_*`): which packets its base chains see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: IPv4 only.
    Ip,
    /// `ip6`: IPv6 only.
    Ip6,
    /// `inet`: IPv4 and IPv6; address matches get a `meta nfproto` check first.
    Inet,
    /// `bridge`: frames crossing a Linux bridge.
    Bridge,
    /// `netdev`: ingress/egress of one device.
    Netdev,
}

impl Family {
    /// The `NFPROTO_*` number sent in `nfgenmsg.nfgen_family`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    /// The family with this `NFPROTO_*` number.
    pub fn from_nfproto(n: u8) -> Option<Family> {
        Some(match n {
            1 => Family::Inet,
            2 => Family::Ip,
            5 => Family::Netdev,
            7 => Family::Bridge,
            10 => Family::Ip6,
            _ => return None,
        })
    }

    /// The name `nft` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Family {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            "bridge" => Family::Bridge,
            "netdev" => Family::Netdev,
            _ => {
                return Err(crate::Error::InvalidArgument(format!(
                    "unknown nftables family {s:?}"
                )));
            }
        })
    }
}

/// A table. Adding one that exists is not an error (the batch uses `NLM_F_CREATE` without
/// `NLM_F_EXCL`), so a plugin can "ensure" its table on every ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// Shown by `nft list` as `comment "..."` (table userdata, as `nft` stores it).
    pub comment: Option<String>,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Table {
            family,
            name: name.into(),
            comment: None,
        }
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`
    Filter,
    /// `nat`: only the first packet of a connection passes, the result applies to all.
    Nat,
    /// `route`: output chains that may change the routing decision.
    Route,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// Netfilter hooks (`enum nf_inet_hooks`; the bridge family uses the same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

impl Hook {
    pub fn from_u32(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// Standard base chain priorities (what `nft` calls `dstnat`, `srcnat`, ...).
pub mod priority {
    /// `raw` (ip, ip6, inet).
    pub const RAW: i32 = -300;
    /// `mangle` (ip, ip6, inet).
    pub const MANGLE: i32 = -150;
    /// `dstnat` (ip, ip6, inet).
    pub const DSTNAT: i32 = -100;
    /// `filter` (ip, ip6, inet).
    pub const FILTER: i32 = 0;
    /// `security` (ip, ip6, inet).
    pub const SECURITY: i32 = 50;
    /// `srcnat` (ip, ip6, inet).
    pub const SRCNAT: i32 = 100;
    /// `dstnat` in the bridge family.
    pub const BRIDGE_DSTNAT: i32 = -300;
    /// `filter` in the bridge family.
    pub const BRIDGE_FILTER: i32 = -200;
    /// `out` in the bridge family.
    pub const BRIDGE_OUT: i32 = 100;
    /// `srcnat` in the bridge family.
    pub const BRIDGE_SRCNAT: i32 = 300;
}

/// A base chain's default verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// What makes a chain a base chain: it is attached to a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Option<Policy>,
}

/// A chain: regular (only reached by jump/goto) or base (see [`Chain::base`]). Adding one that
/// exists with the same hook is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub base: Option<BaseChain>,
    pub comment: Option<String>,
}

impl Chain {
    /// A regular chain.
    pub fn new(family: Family, table: impl Into<String>, name: impl Into<String>) -> Self {
        Chain {
            family,
            table: table.into(),
            name: name.into(),
            base: None,
            comment: None,
        }
    }

    /// Attaches the chain to `hook` with `priority` (see [`priority`]).
    pub fn base(mut self, chain_type: ChainType, hook: Hook, priority: i32) -> Self {
        self.base = Some(BaseChain {
            chain_type,
            hook,
            priority,
            policy: None,
        });
        self
    }

    /// Sets the policy of a base chain (ignored on a regular chain).
    pub fn policy(mut self, policy: Policy) -> Self {
        if let Some(base) = &mut self.base {
            base.policy = Some(policy);
        }
        self
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// Types of set keys and map data, with the type numbers `nft` records so that it can print
/// elements (`ipv4_addr`, `inet_service`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    EtherAddr,
    /// `inet_proto`: an L4 protocol number.
    InetProto,
    /// `inet_service`: a port.
    InetService,
    Mark,
    IfName,
}

impl KeyType {
    /// nft's datatype number (`enum datatypes` of the nft tool; not kernel ABI, only used by
    /// `nft` to print the set).
    pub(crate) fn nft_type(self) -> u32 {
        match self {
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::EtherAddr => 9,
            KeyType::InetProto => 12,
            KeyType::InetService => 13,
            KeyType::Mark => 19,
            KeyType::IfName => 41,
        }
    }

    /// Length in bytes in a register.
    pub fn byte_len(self) -> usize {
        match self {
            KeyType::Ipv4Addr | KeyType::Mark => 4,
            KeyType::Ipv6Addr | KeyType::IfName => 16,
            KeyType::EtherAddr => 6,
            KeyType::InetProto => 1,
            KeyType::InetService => 2,
        }
    }

    /// True for types kept in host byte order (nft needs to know to print them).
    pub(crate) fn host_order(self) -> bool {
        matches!(self, KeyType::Mark | KeyType::IfName)
    }
}

/// What the elements of a map point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapData {
    /// A verdict map (`vmap`).
    Verdict,
    /// A data map of this type.
    Value(KeyType),
    /// A data map to a concatenation of two values (`ipv4_addr . inet_service`), as a NAT
    /// map needs: each field padded to 4 bytes, as in the registers.
    Pair(KeyType, KeyType),
}

/// `NFT_SET_ANONYMOUS`
pub const SET_F_ANONYMOUS: u32 = 0x1;
/// `NFT_SET_CONSTANT`
pub const SET_F_CONSTANT: u32 = 0x2;
/// `NFT_SET_INTERVAL`
pub const SET_F_INTERVAL: u32 = 0x4;
/// `NFT_SET_MAP`
pub const SET_F_MAP: u32 = 0x8;
/// `NFT_SET_CONCAT`
pub const SET_F_CONCAT: u32 = 0x80;

/// A named set or map, possibly with a concatenated key (`ipv4_addr . inet_service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub key: Vec<KeyType>,
    pub data: Option<MapData>,
    pub flags: u32,
    pub elements: Vec<SetElement>,
}

impl Set {
    /// A set of `key` (one type, or several for a concatenation).
    pub fn new(family: Family, table: impl Into<String>, name: impl Into<String>, key: &[KeyType]) -> Self {
        Set {
            family,
            table: table.into(),
            name: name.into(),
            key: key.to_vec(),
            data: None,
            flags: 0,
            elements: Vec::new(),
        }
    }

    /// Makes it a map to `data`.
    pub fn map(mut self, data: MapData) -> Self {
        self.data = Some(data);
        self.flags |= SET_F_MAP;
        self
    }

    /// Adds elements that are created together with the set.
    pub fn elements(mut self, elements: impl IntoIterator<Item = SetElement>) -> Self {
        self.elements.extend(elements);
        self
    }

    /// Length of the key: one field as is, concatenated fields each padded to 4 bytes.
    pub(crate) fn key_len(&self) -> usize {
        key_len(&self.key)
    }
}

pub(crate) fn key_len(key: &[KeyType]) -> usize {
    match key {
        [one] => one.byte_len(),
        many => many.iter().map(|k| k.byte_len().div_ceil(4) * 4).sum(),
    }
}

/// One value of a set key (or of a concatenation's field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Ip(IpAddr),
    Port(u16),
    Proto(u8),
    Mac([u8; 6]),
    Mark(u32),
    IfName(String),
    /// Bytes as they sit in the registers already (a key or data read back from the kernel).
    Raw(Vec<u8>),
}

impl Value {
    /// The bytes as they sit in a register.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Ip(IpAddr::V4(a)) => a.octets().to_vec(),
            Value::Ip(IpAddr::V6(a)) => a.octets().to_vec(),
            Value::Port(p) => p.to_be_bytes().to_vec(),
            Value::Proto(p) => vec![*p],
            Value::Mac(m) => m.to_vec(),
            Value::Mark(m) => m.to_ne_bytes().to_vec(),
            Value::IfName(name) => {
                let mut b = name.as_bytes().to_vec();
                b.resize(16, 0);
                b
            }
            Value::Raw(bytes) => bytes.clone(),
        }
    }
}

impl From<IpAddr> for Value {
    fn from(a: IpAddr) -> Self {
        Value::Ip(a)
    }
}

/// Data an element of a map points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    Verdict(Verdict),
    Value(Value),
    /// The two values of a [`MapData::Pair`] map.
    Pair(Value, Value),
}

/// An element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElement {
    pub key: Vec<Value>,
    /// The last key of a range, in an interval set of a concatenation (`10.0.0.0-10.0.0.255`
    /// in one field, equal start and end in the others).
    pub key_end: Option<Vec<Value>>,
    pub data: Option<ElementData>,
    /// nft's element comment (kept in the element's user data).
    pub comment: Option<String>,
}

impl SetElement {
    /// An element whose key is `key` (one value, or one per field of a concatenation).
    pub fn new(key: impl IntoIterator<Item = Value>) -> Self {
        SetElement {
            key: key.into_iter().collect(),
            key_end: None,
            data: None,
            comment: None,
        }
    }

    /// Makes it a range from `key` to `end` (field by field), for an interval set.
    pub fn range_end(mut self, end: impl IntoIterator<Item = Value>) -> Self {
        self.key_end = Some(end.into_iter().collect());
        self
    }

    /// Makes it a [`MapData::Pair`] map element.
    pub fn pair(mut self, first: Value, second: Value) -> Self {
        self.data = Some(ElementData::Pair(first, second));
        self
    }

    /// Attaches a comment (at most [`super::COMMENT_MAX_LEN`] bytes are kept).
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Makes it a verdict map element.
    pub fn verdict(mut self, verdict: Verdict) -> Self {
        self.data = Some(ElementData::Verdict(verdict));
        self
    }

    /// Makes it a data map element.
    pub fn value(mut self, value: Value) -> Self {
        self.data = Some(ElementData::Value(value));
        self
    }

    /// The key bytes: one field as is, concatenated fields each padded to 4 bytes.
    pub(crate) fn key_bytes(&self) -> Vec<u8> {
        concat_bytes(&self.key)
    }
}

/// The register image of `values`: one value as is, several each padded to 4 bytes (how the
/// kernel lays out a concatenated key or data).
pub fn concat_bytes(values: &[Value]) -> Vec<u8> {
    if let [one] = values {
        return one.bytes();
    }
    let mut out = Vec::new();
    for v in values {
        out.extend(v.bytes());
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    out
}
