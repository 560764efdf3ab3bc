//! The atomic batch: every change of one call, applied by the kernel as one transaction.

use super::expr::{Expr, NFTA_DATA_VALUE, Verdict};
use super::object::{
    Chain, ElementData, Family, MapData, SET_F_ANONYMOUS, SET_F_CONSTANT, Set, SetElement, Table,
    concat_bytes, key_len,
};
use super::rule::{ANON_SET_NAME, AnonSet, Position, Rule};
use super::wire::{Attrs, put_message};
use crate::error::{Error, Result};

pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

pub(crate) const NFT_MSG_NEWTABLE: u8 = 0;
pub(crate) const NFT_MSG_GETTABLE: u8 = 1;
const NFT_MSG_DELTABLE: u8 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u8 = 3;
pub(crate) const NFT_MSG_GETCHAIN: u8 = 4;
const NFT_MSG_DELCHAIN: u8 = 5;
pub(crate) const NFT_MSG_NEWRULE: u8 = 6;
pub(crate) const NFT_MSG_GETRULE: u8 = 7;
const NFT_MSG_DELRULE: u8 = 8;
const NFT_MSG_NEWSET: u8 = 9;
const NFT_MSG_DELSET: u8 = 11;
pub(crate) const NFT_MSG_NEWSETELEM: u8 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u8 = 13;
const NFT_MSG_DELSETELEM: u8 = 14;

pub(crate) use crate::transport::{NLM_F_ACK, NLM_F_REQUEST};
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_EXCL: u16 = 0x200;

/// nf_tables message type: subsystem in the high byte.
pub(crate) fn nft_type(msg: u8) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | u16::from(msg)
}

/// Userdata TLV type of a table, chain or rule comment (`NFTNL_UDATA_*_COMMENT`).
pub(crate) const UDATA_COMMENT: u8 = 0;

/// The userdata `nft` writes for a comment: one TLV (type u8, length u8, NUL-terminated text).
pub(crate) fn comment_udata(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 3);
    out.push(UDATA_COMMENT);
    out.push((text.len() + 1) as u8);
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    out
}

/// The longest element comment kept: the TLV's length byte counts the text and its NUL.
const ELEM_COMMENT_MAX: usize = 254;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads the comment back from a rule's, chain's, table's or set element's userdata.
pub(crate) fn comment_from_udata(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            return Some(super::wire::string(value));
        }
        udata = &udata[2 + len..];
    }
    None
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    AddTable(Table),
    DeleteTable {
        family: Family,
        name: String,
    },
    /// A chain; `exclusive`: fail with `EEXIST` when it exists.
    AddChain(Chain, bool),
    FlushChain {
        family: Family,
        table: String,
        chain: String,
    },
    DeleteChain {
        family: Family,
        table: String,
        chain: String,
    },
    AddRule(Rule),
    DeleteRule {
        family: Family,
        table: String,
        chain: String,
        handle: u64,
    },
    AddSet(Set),
    DeleteSet {
        family: Family,
        table: String,
        set: String,
    },
    AddElements {
        family: Family,
        table: String,
        set: String,
        elements: Vec<SetElement>,
    },
    DeleteElements {
        family: Family,
        table: String,
        set: String,
        elements: Vec<SetElement>,
    },
    FlushSet {
        family: Family,
        table: String,
        set: String,
    },
}

/// A list of changes applied atomically by [`super::NetfilterSocket::apply`]: either all of
/// them take effect or none does, and packets never see a half-applied state.
///
/// Adding a table, chain, set or element that exists is not an error (no `NLM_F_EXCL`), so a
/// batch can "ensure" the skeleton of a ruleset and then add rules. Deleting something that
/// does not exist fails the whole batch with `ENOENT`: list first, delete what was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

/// A batch encoded for the kernel, with a description of each message for error reports.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// Every message, `BATCH_BEGIN` and `BATCH_END` included.
    pub bytes: Vec<u8>,
    /// Sequence number of `BATCH_BEGIN`; message `i` of the batch has `first_seq + 1 + i`.
    pub first_seq: u32,
    /// One line per message between begin and end ("add rule inet t c", ...).
    pub descriptions: Vec<String>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `table` if it does not exist.
    pub fn add_table(&mut self, table: Table) -> &mut Self {
        self.ops.push(Op::AddTable(table));
        self
    }

    /// Deletes a table with everything in it.
    pub fn delete_table(&mut self, family: Family, name: impl Into<String>) -> &mut Self {
        self.ops.push(Op::DeleteTable {
            family,
            name: name.into(),
        });
        self
    }

    /// Adds `chain` if it does not exist (an existing base chain must have the same hook).
    pub fn add_chain(&mut self, chain: Chain) -> &mut Self {
        self.ops.push(Op::AddChain(chain, false));
        self
    }

    /// Creates a chain that must not exist yet (`NLM_F_EXCL`): the batch fails with `EEXIST`
    /// when another writer created it after the caller looked, as `iptables -N` does.
    pub fn create_chain(&mut self, chain: Chain) -> &mut Self {
        self.ops.push(Op::AddChain(chain, true));
        self
    }

    /// Deletes every rule of a chain.
    pub fn flush_chain(
        &mut self,
        family: Family,
        table: impl Into<String>,
        chain: impl Into<String>,
    ) -> &mut Self {
        self.ops.push(Op::FlushChain {
            family,
            table: table.into(),
            chain: chain.into(),
        });
        self
    }

    /// Deletes a chain and its rules; fails with `EBUSY` while a rule jumps to it.
    pub fn delete_chain(
        &mut self,
        family: Family,
        table: impl Into<String>,
        chain: impl Into<String>,
    ) -> &mut Self {
        self.ops.push(Op::DeleteChain {
            family,
            table: table.into(),
            chain: chain.into(),
        });
        self
    }

    /// Adds a rule (at the end of its chain unless [`Rule::position`] says otherwise).
    pub fn add_rule(&mut self, rule: Rule) -> &mut Self {
        self.ops.push(Op::AddRule(rule));
        self
    }

    /// Deletes the rule with `handle` (from [`super::NetfilterSocket::rules`]).
    pub fn delete_rule(
        &mut self,
        family: Family,
        table: impl Into<String>,
        chain: impl Into<String>,
        handle: u64,
    ) -> &mut Self {
        self.ops.push(Op::DeleteRule {
            family,
            table: table.into(),
            chain: chain.into(),
            handle,
        });
        self
    }

    /// Adds a set or map if it does not exist, then its elements.
    pub fn add_set(&mut self, set: Set) -> &mut Self {
        self.ops.push(Op::AddSet(set));
        self
    }

    /// Deletes a set (fails with `EBUSY` while a rule refers to it).
    pub fn delete_set(
        &mut self,
        family: Family,
        table: impl Into<String>,
        set: impl Into<String>,
    ) -> &mut Self {
        self.ops.push(Op::DeleteSet {
            family,
            table: table.into(),
            set: set.into(),
        });
        self
    }

    /// Adds elements to an existing set or map.
    pub fn add_elements(
        &mut self,
        family: Family,
        table: impl Into<String>,
        set: impl Into<String>,
        elements: impl IntoIterator<Item = SetElement>,
    ) -> &mut Self {
        let elements = elements.into_iter().collect();
        self.ops.push(Op::AddElements {
            family,
            table: table.into(),
            set: set.into(),
            elements,
        });
        self
    }

    /// Deletes elements (by key) from a set or map.
    pub fn delete_elements(
        &mut self,
        family: Family,
        table: impl Into<String>,
        set: impl Into<String>,
        elements: impl IntoIterator<Item = SetElement>,
    ) -> &mut Self {
        let elements = elements.into_iter().collect();
        self.ops.push(Op::DeleteElements {
            family,
            table: table.into(),
            set: set.into(),
            elements,
        });
        self
    }

    /// Deletes every element of a set or map.
    pub fn flush_set(
        &mut self,
        family: Family,
        table: impl Into<String>,
        set: impl Into<String>,
    ) -> &mut Self {
        self.ops.push(Op::FlushSet {
            family,
            table: table.into(),
            set: set.into(),
        });
        self
    }

    /// Encodes the batch, numbering messages from `first_seq`. Fails on a rule the builder
    /// marked invalid, naming it.
    pub fn encode(&self, first_seq: u32) -> Result<EncodedBatch> {
        let mut out = Vec::with_capacity(256 * (self.ops.len() + 2));
        let mut descriptions = Vec::with_capacity(self.ops.len());
        let mut seq = first_seq;
        let mut set_id = 0u32;
        put_message(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        let mut push =
            |out: &mut Vec<u8>, msg: u8, flags: u16, family: Family, attrs: Attrs, what: String| {
                seq = seq.wrapping_add(1);
                put_message(
                    out,
                    nft_type(msg),
                    NLM_F_REQUEST | NLM_F_ACK | flags,
                    seq,
                    family.nfproto(),
                    0,
                    &attrs.buf,
                );
                descriptions.push(what);
            };
        for op in &self.ops {
            match op {
                Op::AddTable(t) => {
                    let mut a = Attrs::new();
                    a.put_str(1, &t.name); // NFTA_TABLE_NAME
                    if let Some(c) = &t.comment {
                        check_comment(c)?;
                        a.put(6, &comment_udata(c)); // NFTA_TABLE_USERDATA
                    }
                    push(
                        &mut out,
                        NFT_MSG_NEWTABLE,
                        NLM_F_CREATE,
                        t.family,
                        a,
                        format!("add table {} {}", t.family, t.name),
                    );
                }
                Op::DeleteTable { family, name } => {
                    let mut a = Attrs::new();
                    a.put_str(1, name);
                    push(
                        &mut out,
                        NFT_MSG_DELTABLE,
                        0,
                        *family,
                        a,
                        format!("delete table {family} {name}"),
                    );
                }
                Op::AddChain(c, exclusive) => {
                    let a = encode_chain(c)?;
                    let what = format!("add chain {} {} {}", c.family, c.table, c.name);
                    let flags = if *exclusive {
                        NLM_F_CREATE | NLM_F_EXCL
                    } else {
                        NLM_F_CREATE
                    };
                    push(&mut out, NFT_MSG_NEWCHAIN, flags, c.family, a, what);
                }
                Op::FlushChain { family, table, chain } => {
                    let mut a = Attrs::new();
                    a.put_str(1, table); // NFTA_RULE_TABLE
                    a.put_str(2, chain); // NFTA_RULE_CHAIN
                    push(
                        &mut out,
                        NFT_MSG_DELRULE,
                        0,
                        *family,
                        a,
                        format!("flush chain {family} {table} {chain}"),
                    );
                }
                Op::DeleteChain { family, table, chain } => {
                    let mut a = Attrs::new();
                    a.put_str(1, table); // NFTA_CHAIN_TABLE
                    a.put_str(3, chain); // NFTA_CHAIN_NAME
                    push(
                        &mut out,
                        NFT_MSG_DELCHAIN,
                        0,
                        *family,
                        a,
                        format!("delete chain {family} {table} {chain}"),
                    );
                }
                Op::AddRule(r) => {
                    let what = format!("add rule {} {} {}", r.family, r.table, r.chain);
                    if let Some(why) = &r.invalid {
                        return Err(Error::InvalidArgument(format!("{what}: {why}")));
                    }
                    // Anonymous sets first, each with a batch-wide id the lookup refers to.
                    let mut ids = Vec::with_capacity(r.anon_sets.len());
                    for anon in &r.anon_sets {
                        set_id += 1;
                        ids.push(set_id);
                        let (a, elems) = encode_anon_set(r, anon, set_id)?;
                        push(
                            &mut out,
                            NFT_MSG_NEWSET,
                            NLM_F_CREATE,
                            r.family,
                            a,
                            format!("{what}: anonymous set"),
                        );
                        let elem_what = format!("{what}: anonymous set elements");
                        push(
                            &mut out,
                            NFT_MSG_NEWSETELEM,
                            NLM_F_CREATE,
                            r.family,
                            elems,
                            elem_what,
                        );
                    }
                    let (a, flags) = encode_rule(r, &ids);
                    push(&mut out, NFT_MSG_NEWRULE, NLM_F_CREATE | flags, r.family, a, what);
                }
                Op::DeleteRule {
                    family,
                    table,
                    chain,
                    handle,
                } => {
                    let mut a = Attrs::new();
                    a.put_str(1, table);
                    a.put_str(2, chain);
                    a.put_u64(3, *handle); // NFTA_RULE_HANDLE
                    let what = format!("delete rule {family} {table} {chain} handle {handle}");
                    push(&mut out, NFT_MSG_DELRULE, 0, *family, a, what);
                }
                Op::AddSet(s) => {
                    set_id += 1;
                    let a = encode_set(s, set_id)?;
                    push(
                        &mut out,
                        NFT_MSG_NEWSET,
                        NLM_F_CREATE,
                        s.family,
                        a,
                        format!("add set {} {} {}", s.family, s.table, s.name),
                    );
                    if !s.elements.is_empty() {
                        let a = encode_elements(&s.table, &s.name, &s.elements, key_len(&s.key))?;
                        let what = format!("add elements to {} {} {}", s.family, s.table, s.name);
                        push(&mut out, NFT_MSG_NEWSETELEM, NLM_F_CREATE, s.family, a, what);
                    }
                }
                Op::DeleteSet { family, table, set } => {
                    let mut a = Attrs::new();
                    a.put_str(1, table); // NFTA_SET_TABLE
                    a.put_str(2, set); // NFTA_SET_NAME
                    push(
                        &mut out,
                        NFT_MSG_DELSET,
                        0,
                        *family,
                        a,
                        format!("delete set {family} {table} {set}"),
                    );
                }
                Op::AddElements {
                    family,
                    table,
                    set,
                    elements,
                } => {
                    let a = encode_elements(table, set, elements, 0)?;
                    let what = format!("add elements to {family} {table} {set}");
                    push(&mut out, NFT_MSG_NEWSETELEM, NLM_F_CREATE, *family, a, what);
                }
                Op::DeleteElements {
                    family,
                    table,
                    set,
                    elements,
                } => {
                    let a = encode_elements(table, set, elements, 0)?;
                    let what = format!("delete elements from {family} {table} {set}");
                    push(&mut out, NFT_MSG_DELSETELEM, 0, *family, a, what);
                }
                Op::FlushSet { family, table, set } => {
                    let mut a = Attrs::new();
                    a.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
                    a.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
                    push(
                        &mut out,
                        NFT_MSG_DELSETELEM,
                        0,
                        *family,
                        a,
                        format!("flush set {family} {table} {set}"),
                    );
                }
            }
        }
        let end_seq = first_seq.wrapping_add(descriptions.len() as u32 + 1);
        put_message(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        Ok(EncodedBatch {
            bytes: out,
            first_seq,
            descriptions,
        })
    }
}

fn check_comment(text: &str) -> Result<()> {
    if text.len() > super::rule::COMMENT_MAX_LEN || text.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "comment {text:?} is too long or contains NUL"
        )));
    }
    Ok(())
}

fn encode_chain(c: &Chain) -> Result<Attrs> {
    let mut a = Attrs::new();
    a.put_str(1, &c.table); // NFTA_CHAIN_TABLE
    a.put_str(3, &c.name); // NFTA_CHAIN_NAME
    if let Some(base) = &c.base {
        a.nest(4, |a| {
            // NFTA_CHAIN_HOOK: NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY
            a.put_u32(1, base.hook as u32);
            a.put_u32(2, base.priority as u32);
        });
        if let Some(policy) = base.policy {
            let verdict = match policy {
                super::Policy::Accept => 1,
                super::Policy::Drop => 0,
            };
            a.put_u32(5, verdict); // NFTA_CHAIN_POLICY
        }
        a.put_str(7, base.chain_type.as_str()); // NFTA_CHAIN_TYPE
    }
    if let Some(comment) = &c.comment {
        check_comment(comment)?;
        a.put(12, &comment_udata(comment)); // NFTA_CHAIN_USERDATA
    }
    Ok(a)
}

/// The attributes of a NEWRULE and the position flag; `anon_ids` are the batch ids of the
/// rule's anonymous sets, replacing their indexes in the lookups.
fn encode_rule(r: &Rule, anon_ids: &[u32]) -> (Attrs, u16) {
    let mut a = Attrs::new();
    a.put_str(1, &r.table); // NFTA_RULE_TABLE
    a.put_str(2, &r.chain); // NFTA_RULE_CHAIN
    a.nest(4, |a| {
        // NFTA_RULE_EXPRESSIONS: one NFTA_LIST_ELEM per expression
        for e in &r.exprs {
            match e {
                Expr::Lookup {
                    set,
                    set_id: Some(index),
                    sreg,
                    dreg,
                    invert,
                } if set == ANON_SET_NAME => {
                    let bound = Expr::Lookup {
                        set: set.clone(),
                        set_id: anon_ids.get(*index as usize).copied(),
                        sreg: *sreg,
                        dreg: *dreg,
                        invert: *invert,
                    };
                    a.nest(1, |a| bound.encode(a));
                }
                e => a.nest(1, |a| e.encode(a)),
            }
        }
    });
    let flags = match r.position {
        Position::Append => NLM_F_APPEND,
        Position::Insert => 0,
        Position::After(handle) => {
            a.put_u64(6, handle); // NFTA_RULE_POSITION
            NLM_F_APPEND
        }
        Position::Before(handle) => {
            a.put_u64(6, handle);
            0
        }
    };
    if let Some(proto) = r.compat_proto {
        a.nest(5, |a| {
            // NFTA_RULE_COMPAT: NFTA_RULE_COMPAT_PROTO, NFTA_RULE_COMPAT_FLAGS (no inversion)
            a.put_u32(1, u32::from(proto));
            a.put_u32(2, 0);
        });
    }
    if let Some(comment) = &r.comment {
        a.put(7, &comment_udata(comment)); // NFTA_RULE_USERDATA
    }
    (a, flags)
}

/// NEWSET and NEWSETELEM attributes of a rule's anonymous constant set.
fn encode_anon_set(r: &Rule, anon: &AnonSet, set_id: u32) -> Result<(Attrs, Attrs)> {
    let mut set = Set::new(r.family, r.table.clone(), ANON_SET_NAME, &anon.key);
    set.flags = SET_F_ANONYMOUS | SET_F_CONSTANT;
    if anon.verdict_map {
        set = set.map(MapData::Verdict);
    }
    let a = encode_set(&set, set_id)?;
    let mut elems = encode_elements(&r.table, ANON_SET_NAME, &anon.elements, key_len(&anon.key))?;
    elems.put_u32(4, set_id); // NFTA_SET_ELEM_LIST_SET_ID: the set has no name yet
    Ok((a, elems))
}

fn encode_set(s: &Set, set_id: u32) -> Result<Attrs> {
    if s.key.is_empty() {
        return Err(Error::InvalidArgument(format!("set {} has no key type", s.name)));
    }
    let mut a = Attrs::new();
    a.put_str(1, &s.table); // NFTA_SET_TABLE
    a.put_str(2, &s.name); // NFTA_SET_NAME
    // A concatenation needs NFT_SET_CONCAT and the field lengths only in an interval set
    // (the pipapo backend); nft sends neither for a plain hash, and the kernel rejects the flag
    // there with EINVAL.
    let concat_intervals = s.key.len() > 1 && s.flags & super::SET_F_INTERVAL != 0;
    let flags = if concat_intervals {
        s.flags | super::SET_F_CONCAT
    } else {
        s.flags
    };
    a.put_u32(3, flags); // NFTA_SET_FLAGS
    // nft's type number of a concatenation: 6 bits per field, first field highest.
    let key_type = s.key.iter().fold(0u32, |acc, k| (acc << 6) | k.nft_type());
    a.put_u32(4, key_type); // NFTA_SET_KEY_TYPE
    a.put_u32(5, s.key_len() as u32); // NFTA_SET_KEY_LEN
    match s.data {
        Some(MapData::Verdict) => {
            a.put_u32(6, 0xffff_ff00); // NFTA_SET_DATA_TYPE = NFT_DATA_VERDICT
            a.put_u32(7, 0); // NFTA_SET_DATA_LEN
        }
        Some(MapData::Value(t)) => {
            a.put_u32(6, t.nft_type());
            a.put_u32(7, t.byte_len() as u32);
        }
        Some(MapData::Pair(t1, t2)) => {
            a.put_u32(6, (t1.nft_type() << 6) | t2.nft_type());
            a.put_u32(7, key_len(&[t1, t2]) as u32);
        }
        None => {}
    }
    if concat_intervals {
        a.nest(9, |a| {
            // NFTA_SET_DESC { NFTA_SET_DESC_CONCAT { NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN } } }
            a.nest(2, |a| {
                for k in &s.key {
                    a.nest(1, |a| a.put_u32(1, k.byte_len() as u32));
                }
            });
        });
    }
    // NFTA_SET_ID: required by the kernel, unique within the batch; lookups in the same batch
    // could refer to the new set by it (ours refer by name, which works as well).
    a.put_u32(10, set_id);
    if let [one] = s.key.as_slice() {
        // nft's set userdata: key byte order (1 host, 2 big endian), so `nft list` prints
        // marks and interface names right.
        let order: u32 = if one.host_order() { 1 } else { 2 };
        let mut udata = vec![0u8, 4];
        udata.extend_from_slice(&order.to_ne_bytes());
        a.put(13, &udata); // NFTA_SET_USERDATA
    }
    Ok(a)
}

/// `NFTA_SET_ELEM_LIST_*` for `elements`; `key_len` (when known) is checked against each key.
fn encode_elements(table: &str, set: &str, elements: &[SetElement], key_len: usize) -> Result<Attrs> {
    let mut a = Attrs::new();
    a.put_str(1, table);
    a.put_str(2, set);
    let mut bad = None;
    a.nest(3, |a| {
        for e in elements {
            let key = e.key_bytes();
            if key_len != 0 && key.len() != key_len {
                bad = Some(format!(
                    "element key of {} bytes for set {set} with {key_len}-byte keys",
                    key.len()
                ));
            }
            a.nest(1, |a| {
                a.nest(1, |a| a.put(NFTA_DATA_VALUE, &key)); // NFTA_SET_ELEM_KEY
                match &e.data {
                    Some(ElementData::Verdict(v)) => a.nest(2, |a| v.encode_data(a)),
                    Some(ElementData::Value(v)) => a.nest(2, |a| a.put(NFTA_DATA_VALUE, &v.bytes())),
                    Some(ElementData::Pair(x, y)) => a.nest(2, |a| {
                        a.put(NFTA_DATA_VALUE, &concat_bytes(&[x.clone(), y.clone()]))
                    }),
                    None => {}
                }
                if let Some(end) = &e.key_end {
                    // NFTA_SET_ELEM_KEY_END
                    a.nest(10, |a| a.put(NFTA_DATA_VALUE, &concat_bytes(end)));
                }
                if let Some(comment) = &e.comment {
                    a.put(6, &comment_udata(cut(comment, ELEM_COMMENT_MAX))); // NFTA_SET_ELEM_USERDATA
                }
            });
        }
    });
    match bad {
        Some(why) => Err(Error::InvalidArgument(why)),
        None => Ok(a),
    }
}

/// The verdict of a verdict-map element, for tests and listings.
#[allow(dead_code)]
pub(crate) fn verdict_name(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{ChainType, Hook, priority};

    #[test]
    fn comment_udata_is_nft_tlv() {
        assert_eq!(comment_udata("abc"), [0, 4, b'a', b'b', b'c', 0]);
        assert_eq!(comment_from_udata(&comment_udata("abc")).as_deref(), Some("abc"));
        assert_eq!(
            comment_from_udata(&[3, 1, 0, 0, 2, b'x', 0]).as_deref(),
            Some("x")
        );
        assert_eq!(comment_from_udata(&[0, 9, b'x']), None);
    }

    /// BATCH_BEGIN, NEWTABLE `ip t`, BATCH_END, checked by hand against `struct nlmsghdr`,
    /// `struct nfgenmsg` and `enum nft_table_attributes` (and `nft --debug=mnl`).
    #[test]
    fn table_batch_golden() {
        let mut b = Batch::new();
        b.add_table(Table::new(Family::Ip, "t"));
        let enc = b.encode(100).unwrap();
        let ne32 = |v: u32| v.to_ne_bytes();
        let ne16 = |v: u16| v.to_ne_bytes();
        let mut want = Vec::new();
        // BATCH_BEGIN: len 20, type 0x10, flags REQUEST, seq 100, pid 0, AF_UNSPEC v0 res_id 10 (BE)
        want.extend(ne32(20));
        want.extend(ne16(0x10));
        want.extend(ne16(1));
        want.extend(ne32(100));
        want.extend(ne32(0));
        want.extend([0, 0, 0, 10]);
        // NEWTABLE: len 28, type 0x0a00, flags REQUEST|ACK|CREATE, seq 101, NFPROTO_IPV4
        want.extend(ne32(28));
        want.extend(ne16(0x0a00));
        want.extend(ne16(0x405));
        want.extend(ne32(101));
        want.extend(ne32(0));
        want.extend([2, 0, 0, 0]);
        want.extend([6, 0, 1, 0, b't', 0, 0, 0]); // NFTA_TABLE_NAME "t\0"
        // BATCH_END
        want.extend(ne32(20));
        want.extend(ne16(0x11));
        want.extend(ne16(1));
        want.extend(ne32(102));
        want.extend(ne32(0));
        want.extend([0, 0, 0, 10]);
        assert_eq!(enc.bytes, want);
        assert_eq!(enc.descriptions, ["add table ip t"]);
    }

    /// A base chain: hook nest, policy, type, in `enum nft_chain_attributes` numbering.
    #[test]
    fn base_chain_attributes_golden() {
        let c = Chain::new(Family::Inet, "t", "c")
            .base(ChainType::Nat, Hook::Postrouting, priority::SRCNAT)
            .policy(super::super::Policy::Accept);
        let a = encode_chain(&c).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            6, 0, 1, 0, b't', 0, 0, 0,
            6, 0, 3, 0, b'c', 0, 0, 0,
            20, 0, 4, 0x80,
              8, 0, 1, 0, 0, 0, 0, 4,
              8, 0, 2, 0, 0, 0, 0, 100,
            8, 0, 5, 0, 0, 0, 0, 1,
            8, 0, 7, 0, b'n', b'a', b't', 0,
        ];
        assert_eq!(a.buf, want);
    }

    /// Delete by handle: table, chain, 64-bit big-endian handle.
    #[test]
    fn delete_rule_golden() {
        let mut b = Batch::new();
        b.delete_rule(Family::Inet, "t", "c", 0x0102);
        let enc = b.encode(1).unwrap();
        let msg = &enc.bytes[20..enc.bytes.len() - 20];
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0a08);
        assert_eq!(u16::from_ne_bytes([msg[6], msg[7]]), 0x5);
        #[rustfmt::skip]
        let attrs: Vec<u8> = vec![
            6, 0, 1, 0, b't', 0, 0, 0,
            6, 0, 2, 0, b'c', 0, 0, 0,
            12, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2,
        ];
        assert_eq!(&msg[20..], attrs.as_slice());
    }

    #[test]
    fn rule_comment_goes_last_as_userdata() {
        let r = Rule::new(Family::Ip, "t", "c").masquerade().comment("ab");
        let (a, flags) = encode_rule(&r, &[]);
        assert_eq!(flags, NLM_F_APPEND);
        // The tail is NFTA_RULE_USERDATA: len 9, type 7, 00 03 'a' 'b' 00, padding.
        assert_eq!(
            a.buf[a.buf.len() - 12..],
            [9, 0, 7, 0, 0, 3, b'a', b'b', 0, 0, 0, 0]
        );
    }

    #[test]
    fn invalid_rule_fails_encoding_with_its_description() {
        let mut b = Batch::new();
        b.add_rule(Rule::new(Family::Ip6, "t", "c").saddr("10.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        let err = b.encode(1).unwrap_err().to_string();
        assert!(err.contains("add rule ip6 t c"), "{err}");
    }
}
