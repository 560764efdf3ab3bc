//! Reading the ruleset back: tables, chains and rules (with handles and comments), enough for
//! a plugin to find what it installed and delete it by handle; and the elements of a set, all
//! of them or the one with a given key.

use super::batch::{
    NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSETELEM, NFT_MSG_GETTABLE, NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE, NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE, comment_from_udata, nft_type,
};
use super::expr::{Expr, NFTA_DATA_VALUE};
use super::object::{Family, Hook};
use super::socket::{NetfilterSocket, Reply};
use super::wire::{Attrs, attrs, be_u32, be_u64, string};
use crate::error::Result;

/// A rule as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub family: Family,
    pub table: String,
    pub chain: String,
    /// The handle to delete it by ([`super::Batch::delete_rule`]).
    pub handle: u64,
    /// The comment, when the rule has one (set by [`super::Rule::comment`] or `nft ... comment`).
    pub comment: Option<String>,
    /// Names of the expressions in order (`["payload", "cmp", "masq"]`).
    pub expressions: Vec<String>,
    /// The data of every `cmp` expression, in order: what the rule compares with (an
    /// interface name with its NUL padding, an address, a port), so a caller can tell which
    /// interface or address a rule is about without a full decoder.
    pub compared: Vec<Vec<u8>>,
    /// The whole expression list decoded ([`Expr::decode`]; counters without their values),
    /// or `None` when the rule holds an expression the model does not cover.
    pub decoded: Option<Vec<Expr>>,
}

/// A chain as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub handle: u64,
    /// Hook and priority of a base chain.
    pub hook: Option<(Hook, i32)>,
    /// `filter`, `nat` or `route` for a base chain.
    pub chain_type: Option<String>,
    /// Base chain policy: true for accept.
    pub policy_accept: Option<bool>,
    /// The kernel's use counter of the chain: its rules plus the rules that jump or go to it.
    pub use_count: u32,
    pub comment: Option<String>,
}

/// A table as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub family: Family,
    pub name: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// A set or map element as listed by the kernel, its key and data as register images (see
/// [`super::object::concat_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElementInfo {
    pub key: Vec<u8>,
    /// The end of a range (interval sets of concatenations).
    pub key_end: Option<Vec<u8>>,
    /// The value of a data map's element (verdicts are not decoded).
    pub data: Option<Vec<u8>>,
    pub comment: Option<String>,
}

impl NetfilterSocket {
    /// Every element of `set` (empty when the table or set does not exist).
    pub fn elements(&mut self, family: Family, table: &str, set: &str) -> Result<Vec<ElementInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
        a.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
        match self.dump(nft_type(NFT_MSG_GETSETELEM), family.nfproto(), &a.buf) {
            Ok(replies) => Ok(replies.iter().flat_map(parse_elements).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The element of `set` with key `key` (a register image), or `None`: one lookup in the
    /// kernel, whatever the size of the set. In an interval set, the element whose range holds
    /// `key`.
    pub fn element(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<Option<ElementInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
        a.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
        a.nest(3, |a| {
            // NFTA_SET_ELEM_LIST_ELEMENTS { NFTA_LIST_ELEM { NFTA_SET_ELEM_KEY { value } } }
            a.nest(1, |a| a.nest(1, |a| a.put(NFTA_DATA_VALUE, key)));
        });
        match self.request(nft_type(NFT_MSG_GETSETELEM), 0, family.nfproto(), &a.buf) {
            Ok(replies) => Ok(replies.iter().flat_map(parse_elements).next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The rules of every chain of `table`, in one dump (the kernel filters it by table), each
    /// chain's in order.
    pub fn table_rules(&mut self, family: Family, table: &str) -> Result<Vec<RuleInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_RULE_TABLE
        let replies = self.dump(nft_type(NFT_MSG_GETRULE), family.nfproto(), &a.buf)?;
        Ok(replies
            .iter()
            .filter_map(parse_rule)
            .filter(|r| r.family == family && r.table == table)
            .collect())
    }

    /// The rules of `chain` in `table`, in chain order. A missing table or chain lists as
    /// empty, so DEL needs no existence check first.
    pub fn rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<RuleInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_RULE_TABLE
        a.put_str(2, chain); // NFTA_RULE_CHAIN
        let replies = self.dump(nft_type(NFT_MSG_GETRULE), family.nfproto(), &a.buf)?;
        let rules: Vec<RuleInfo> = replies.iter().filter_map(parse_rule).collect();
        // The kernel filters a rule dump by table and chain; filter again in case it did not.
        Ok(rules
            .into_iter()
            .filter(|r| r.family == family && r.table == table && r.chain == chain)
            .collect())
    }

    /// The rule of `chain` with `handle`, or `None` when the chain has no such rule: one
    /// request, whatever the length of the chain.
    pub fn rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Result<Option<RuleInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_RULE_TABLE
        a.put_str(2, chain); // NFTA_RULE_CHAIN
        a.put_u64(3, handle); // NFTA_RULE_HANDLE
        match self.request(nft_type(NFT_MSG_GETRULE), 0, family.nfproto(), &a.buf) {
            Ok(replies) => Ok(replies
                .iter()
                .filter_map(parse_rule)
                .find(|r| r.chain == chain && r.handle == handle)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The rules of `chain` whose comment is exactly `comment`.
    pub fn rules_with_comment(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        comment: &str,
    ) -> Result<Vec<RuleInfo>> {
        let rules = self.rules(family, table, chain)?;
        Ok(rules
            .into_iter()
            .filter(|r| r.comment.as_deref() == Some(comment))
            .collect())
    }

    /// The chains of `table` (empty when the table does not exist).
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_CHAIN_TABLE
        let replies = self.dump(nft_type(NFT_MSG_GETCHAIN), family.nfproto(), &a.buf)?;
        let chains: Vec<ChainInfo> = replies.iter().filter_map(parse_chain).collect();
        Ok(chains
            .into_iter()
            .filter(|c| c.family == family && c.table == table)
            .collect())
    }

    /// The chain `name` of `table`, or `None` when it (or the table) does not exist: one
    /// request, whatever the number of chains in the table.
    pub fn chain(&mut self, family: Family, table: &str, name: &str) -> Result<Option<ChainInfo>> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_CHAIN_TABLE
        a.put_str(3, name); // NFTA_CHAIN_NAME
        match self.request(nft_type(NFT_MSG_GETCHAIN), 0, family.nfproto(), &a.buf) {
            Ok(replies) => Ok(replies.iter().filter_map(parse_chain).find(|c| c.name == name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tables of `family`.
    pub fn tables(&mut self, family: Family) -> Result<Vec<TableInfo>> {
        let replies = self.dump(nft_type(NFT_MSG_GETTABLE), family.nfproto(), &[])?;
        Ok(replies
            .iter()
            .filter_map(parse_table)
            .filter(|t| t.family == family)
            .collect())
    }

    /// Whether `table` exists.
    pub fn table_exists(&mut self, family: Family, table: &str) -> Result<bool> {
        let mut a = Attrs::new();
        a.put_str(1, table); // NFTA_TABLE_NAME
        match self.request(nft_type(NFT_MSG_GETTABLE), 0, family.nfproto(), &a.buf) {
            Ok(replies) => Ok(replies.iter().filter_map(parse_table).any(|t| t.name == table)),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn parse_rule(reply: &Reply) -> Option<RuleInfo> {
    if reply.msg_type != nft_type(NFT_MSG_NEWRULE) {
        return None;
    }
    let mut rule = RuleInfo {
        family: Family::from_nfproto(reply.family)?,
        table: String::new(),
        chain: String::new(),
        handle: 0,
        comment: None,
        expressions: Vec::new(),
        compared: Vec::new(),
        decoded: None,
    };
    for (kind, value) in attrs(&reply.attrs) {
        match kind {
            1 => rule.table = string(value),
            2 => rule.chain = string(value),
            3 => rule.handle = be_u64(value)?,
            4 => {
                rule.decoded = attrs(value).map(|(_, elem)| Expr::decode(elem)).collect();
                for (_, elem) in attrs(value) {
                    // NFTA_EXPR_NAME, NFTA_EXPR_DATA
                    let name = attrs(elem).find(|(k, _)| *k == 1).map(|(_, n)| string(n));
                    if name.as_deref() == Some("cmp")
                        && let Some((_, data)) = attrs(elem).find(|(k, _)| *k == 2)
                        && let Some((_, cmp)) = attrs(data).find(|(k, _)| *k == 3)
                    {
                        // NFTA_CMP_DATA { NFTA_DATA_VALUE }
                        rule.compared.push(data_value(cmp).unwrap_or_default());
                    }
                    if let Some(name) = name {
                        rule.expressions.push(name);
                    }
                }
            }
            7 => rule.comment = comment_from_udata(value),
            _ => {}
        }
    }
    Some(rule)
}

/// The elements of one `NEWSETELEM` message.
fn parse_elements(reply: &Reply) -> Vec<ElementInfo> {
    let mut out = Vec::new();
    if reply.msg_type != nft_type(NFT_MSG_NEWSETELEM) {
        return out;
    }
    for (kind, list) in attrs(&reply.attrs) {
        if kind != 3 {
            continue; // NFTA_SET_ELEM_LIST_ELEMENTS
        }
        for (_, elem) in attrs(list) {
            let mut info = ElementInfo::default();
            for (k, v) in attrs(elem) {
                match k {
                    1 => info.key = data_value(v).unwrap_or_default(),
                    2 => info.data = data_value(v),
                    6 => info.comment = comment_from_udata(v),
                    10 => info.key_end = data_value(v),
                    _ => {}
                }
            }
            out.push(info);
        }
    }
    out
}

/// The bytes of an `nft_data` nest holding `NFTA_DATA_VALUE`.
fn data_value(nest: &[u8]) -> Option<Vec<u8>> {
    attrs(nest)
        .find(|(k, _)| *k == NFTA_DATA_VALUE)
        .map(|(_, v)| v.to_vec())
}

fn parse_chain(reply: &Reply) -> Option<ChainInfo> {
    if reply.msg_type != nft_type(NFT_MSG_NEWCHAIN) {
        return None;
    }
    let mut chain = ChainInfo {
        family: Family::from_nfproto(reply.family)?,
        table: String::new(),
        name: String::new(),
        handle: 0,
        hook: None,
        chain_type: None,
        policy_accept: None,
        use_count: 0,
        comment: None,
    };
    for (kind, value) in attrs(&reply.attrs) {
        match kind {
            1 => chain.table = string(value),
            2 => chain.handle = be_u64(value)?,
            3 => chain.name = string(value),
            4 => {
                let mut hook = None;
                let mut prio = 0i32;
                for (k, v) in attrs(value) {
                    match k {
                        1 => hook = be_u32(v).and_then(Hook::from_u32),
                        2 => prio = be_u32(v)? as i32,
                        _ => {}
                    }
                }
                chain.hook = hook.map(|h| (h, prio));
            }
            5 => chain.policy_accept = be_u32(value).map(|p| p == 1),
            6 => chain.use_count = be_u32(value)?,
            7 => chain.chain_type = Some(string(value)),
            12 => chain.comment = comment_from_udata(value),
            _ => {}
        }
    }
    Some(chain)
}

fn parse_table(reply: &Reply) -> Option<TableInfo> {
    if reply.msg_type != nft_type(NFT_MSG_NEWTABLE) {
        return None;
    }
    let mut table = TableInfo {
        family: Family::from_nfproto(reply.family)?,
        name: String::new(),
        handle: 0,
        comment: None,
    };
    for (kind, value) in attrs(&reply.attrs) {
        match kind {
            1 => table.name = string(value),
            4 => table.handle = be_u64(value)?,
            6 => table.comment = comment_from_udata(value),
            _ => {}
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_elements_with_range_data_and_comment() {
        let mut a = Attrs::new();
        a.put_str(1, "t");
        a.put_str(2, "s");
        a.nest(3, |a| {
            a.nest(1, |a| {
                a.nest(1, |a| a.put(NFTA_DATA_VALUE, &[1, 2, 3, 4]));
                a.nest(10, |a| a.put(NFTA_DATA_VALUE, &[1, 2, 3, 9]));
                a.nest(2, |a| a.put(NFTA_DATA_VALUE, &[10, 0, 0, 5, 0, 80, 0, 0]));
                a.put(6, &super::super::batch::comment_udata("cni-dn-1 c1"));
            });
            a.nest(1, |a| a.nest(1, |a| a.put(NFTA_DATA_VALUE, &[7])));
        });
        let reply = Reply {
            msg_type: nft_type(NFT_MSG_NEWSETELEM),
            family: 2,
            attrs: a.buf,
        };
        let elems = parse_elements(&reply);
        assert_eq!(elems.len(), 2);
        assert_eq!(elems[0].key, [1, 2, 3, 4]);
        assert_eq!(elems[0].key_end.as_deref(), Some(&[1u8, 2, 3, 9][..]));
        assert_eq!(elems[0].data.as_deref(), Some(&[10u8, 0, 0, 5, 0, 80, 0, 0][..]));
        assert_eq!(elems[0].comment.as_deref(), Some("cni-dn-1 c1"));
        assert_eq!(
            elems[1],
            ElementInfo {
                key: vec![7],
                ..Default::default()
            }
        );
    }

    #[test]
    fn parses_rule_with_handle_comment_and_expressions() {
        let mut a = Attrs::new();
        a.put_str(1, "t");
        a.put_str(2, "c");
        a.put_u64(3, 42);
        a.nest(4, |a| {
            a.nest(1, |a| super::super::Expr::Masquerade.encode(a));
        });
        a.put(7, &super::super::batch::comment_udata("cid"));
        let reply = Reply {
            msg_type: nft_type(NFT_MSG_NEWRULE),
            family: 1,
            attrs: a.buf,
        };
        let rule = parse_rule(&reply).unwrap();
        assert_eq!(rule.family, Family::Inet);
        assert_eq!(
            (rule.table.as_str(), rule.chain.as_str(), rule.handle),
            ("t", "c", 42)
        );
        assert_eq!(rule.comment.as_deref(), Some("cid"));
        assert_eq!(rule.expressions, ["masq"]);
        assert!(rule.compared.is_empty());
    }

    #[test]
    fn reads_what_a_rule_compares_with() {
        let mut a = Attrs::new();
        a.put_str(1, "t");
        a.put_str(2, "c");
        a.put_u64(3, 7);
        a.nest(4, |a| {
            a.nest(1, |a| {
                super::super::Expr::Cmp {
                    sreg: super::super::expr::Reg::R1,
                    op: super::super::expr::CmpOp::Eq,
                    data: b"veth1234\0\0".to_vec(),
                }
                .encode(a)
            });
            a.nest(1, |a| super::super::Expr::Masquerade.encode(a));
        });
        let reply = Reply {
            msg_type: nft_type(NFT_MSG_NEWRULE),
            family: 1,
            attrs: a.buf,
        };
        let rule = parse_rule(&reply).unwrap();
        assert_eq!(rule.expressions, ["cmp", "masq"]);
        assert_eq!(rule.compared, [b"veth1234\0\0".to_vec()]);
    }
}
