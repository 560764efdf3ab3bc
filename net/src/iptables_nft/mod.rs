//! iptables' layout written in-process, the way iptables-nft writes it.
//!
//! On an iptables-nft host (Debian's default: `iptables` is `xtables-nft-multi`), the
//! "iptables" nat table is the nf_tables table `ip nat` / `ip6 nat`, and every iptables rule is
//! an nf_tables rule with the expressions iptables-nft chose for it. Writing those same
//! messages over our own netlink socket gives the same state `iptables-restore` would (the
//! same table, chains, hooks, priorities and rule expressions, byte for byte in the kernel's
//! listing), so `iptables-save`, Go's plugins and an operator's `iptables -D` read and remove
//! our rules as their own, without the fork, the xtables lock and the full re-read of the
//! ruleset that every `iptables-restore` costs.
//!
//! - [`translate`]: one rule's arguments to its expressions ([`translate::Unsupported`]
//!   for anything outside the covered set; the caller then runs `iptables-restore`).
//! - [`read`]: a partial reading of the table into a [`SavedTable`], only the chains a
//!   change needs ([`Scope`]), so its cost does not grow with other software's rules or
//!   with the number of containers, except where the layout itself puts rules of all
//!   containers in one chain that must be searched.
//! - [`plan`]: a [`RestoreBatch`] as one nf_tables batch (atomic, like a restore).
//!
//! A legacy-iptables host (the `x_tables` tables of `ip_tables`) is left to the tools:
//! [`is_xtables_nft`] tells which one the host's `iptables-restore` is.

pub mod translate;

use std::cell::Cell;
use std::collections::BTreeSet;

use crate::addr::Family;
use crate::iptables::{BatchOp, RestoreBatch, SavedChain, SavedRule, SavedTable};
use crate::nft::{
    self, Batch, Chain, ChainType, Expr, Hook, NetfilterSocket, Policy, Position, Rule, Verdict,
};

pub use translate::{Translated, Unsupported, translate};

/// Whether the host's `iptables-restore` (or `ip6tables-restore`) of `family` is
/// iptables-nft: it writes nf_tables, so the in-process writer produces what it would.
pub fn is_xtables_nft(family: Family) -> bool {
    let name = match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    };
    crate::iptables::find_binary(name)
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.contains("nft"))
}

/// The nf_tables family of an iptables family.
pub fn nft_family(family: Family) -> nft::Family {
    match family {
        Family::V4 => nft::Family::Ip,
        Family::V6 => nft::Family::Ip6,
    }
}

/// What a partial reading covers, and whether a caller asked beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// Chains whose existence is known (present or not).
    chains: BTreeSet<String>,
    /// Chains whose rules were read, or that are known to be absent (no rules to read).
    rules: BTreeSet<String>,
    /// Chains every rule jumping to which was found.
    jumps: BTreeSet<String>,
    missed: Cell<bool>,
}

impl Known {
    fn miss(&self) {
        self.missed.set(true);
    }

    pub(crate) fn need_chain(&self, name: &str) {
        if !self.chains.contains(name) {
            self.miss();
        }
    }

    pub(crate) fn need_rules(&self, name: &str) {
        if !self.rules.contains(name) {
            self.miss();
        }
    }

    pub(crate) fn need_jumps(&self, name: &str) {
        if !self.jumps.contains(name) {
            self.miss();
        }
    }

    pub(crate) fn need_all(&self) {
        self.miss();
    }

    pub(crate) fn missed(&self) -> bool {
        self.missed.get()
    }
}

/// Which part of the table a change needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Chains whose rules are read (their existence too).
    pub rules_of: Vec<String>,
    /// Chains whose existence is read.
    pub exists: Vec<String>,
    /// Chains every jump to which is found, and the chains where such jumps usually are
    /// (searched first; the whole table is read when the kernel's count of references to
    /// the chain says some are elsewhere).
    pub jumps_to: Vec<(String, Vec<String>)>,
    /// Read the whole table.
    pub all: bool,
}

impl Scope {
    /// The whole table.
    pub fn all() -> Scope {
        Scope {
            all: true,
            ..Scope::default()
        }
    }

    /// Adds chains whose rules are read.
    pub fn rules_of<S: AsRef<str>>(mut self, chains: impl IntoIterator<Item = S>) -> Scope {
        self.rules_of
            .extend(chains.into_iter().map(|c| c.as_ref().to_string()));
        self
    }

    /// Adds chains whose existence is read.
    pub fn exists<S: AsRef<str>>(mut self, chains: impl IntoIterator<Item = S>) -> Scope {
        self.exists
            .extend(chains.into_iter().map(|c| c.as_ref().to_string()));
        self
    }

    /// Adds a chain whose incoming jumps are found, usually in `from`.
    pub fn jumps_to<S: AsRef<str>>(mut self, chain: &str, from: impl IntoIterator<Item = S>) -> Scope {
        self.jumps_to.push((
            chain.to_string(),
            from.into_iter().map(|c| c.as_ref().to_string()).collect(),
        ));
        self
    }
}

/// The built-in chains of the nat table: hook and priority as iptables-nft creates them.
fn builtin(name: &str) -> Option<(Hook, i32)> {
    Some(match name {
        "PREROUTING" => (Hook::Prerouting, -100),
        "INPUT" => (Hook::Input, 100),
        "OUTPUT" => (Hook::Output, -100),
        "POSTROUTING" => (Hook::Postrouting, 100),
        _ => return None,
    })
}

/// The rule as a [`SavedRule`]: comment from its `comment` match, target from its verdict or
/// compat target, expressions for comparison, handle for deletion.
fn saved_rule(info: nft::RuleInfo) -> SavedRule {
    let mut comment = None;
    let mut target = None;
    for e in info.decoded.iter().flatten() {
        match e {
            Expr::Match { name, info, .. } if name == "comment" => {
                let end = info.iter().position(|b| *b == 0).unwrap_or(info.len());
                comment = Some(String::from_utf8_lossy(&info[..end]).into_owned());
            }
            Expr::Target { name, .. } => target = Some(name.clone()),
            Expr::Verdict(v) => {
                target = Some(match v {
                    Verdict::Accept => "ACCEPT".to_string(),
                    Verdict::Drop => "DROP".to_string(),
                    Verdict::Return => "RETURN".to_string(),
                    Verdict::Continue => continue,
                    Verdict::Jump(c) | Verdict::Goto(c) => c.clone(),
                })
            }
            _ => {}
        }
    }
    SavedRule {
        handle: Some(info.handle),
        exprs: info.decoded,
        chain: info.chain,
        spec: String::new(),
        args: Vec::new(),
        comment,
        target,
    }
}

fn chain_of(info: &nft::ChainInfo, rules: Vec<nft::RuleInfo>) -> SavedChain {
    SavedChain {
        name: info.name.clone(),
        policy: info
            .policy_accept
            .map(|accept| if accept { "ACCEPT" } else { "DROP" }.to_string()),
        rules: rules.into_iter().map(saved_rule).collect(),
        use_count: Some(info.use_count),
    }
}

/// Reads the part of `table` that `scope` names, in-process (see the module docs).
pub fn read(
    nft: &mut NetfilterSocket,
    family: Family,
    table: &str,
    scope: &Scope,
) -> crate::Result<SavedTable> {
    let f = nft_family(family);
    let mut saved = SavedTable {
        name: table.to_string(),
        nft_family: Some(family),
        ..SavedTable::default()
    };
    if !nft.table_exists(f, table)? {
        // Nothing exists: every question has its answer.
        return Ok(saved);
    }
    if scope.all {
        return read_all(nft, family, table, saved);
    }
    let mut known = Known::default();
    let mut names: Vec<&String> = scope.rules_of.iter().chain(&scope.exists).collect();
    names.extend(scope.jumps_to.iter().map(|(c, _)| c));
    let mut uses = Vec::new();
    for name in names {
        if !known.chains.insert(name.clone()) {
            continue;
        }
        match nft.chain(f, table, name)? {
            Some(info) => {
                uses.push((name.clone(), info.use_count));
                saved.chains.push(chain_of(&info, Vec::new()));
            }
            None => {
                known.rules.insert(name.clone());
            }
        }
    }
    let load = |nft: &mut NetfilterSocket, saved: &mut SavedTable, known: &mut Known, name: &str| {
        if known.rules.contains(name) {
            return Ok::<(), crate::Error>(());
        }
        known.rules.insert(name.to_string());
        if !known.chains.contains(name) {
            known.chains.insert(name.to_string());
            match nft.chain(f, table, name)? {
                Some(info) => saved.chains.push(chain_of(&info, Vec::new())),
                None => return Ok(()),
            }
        }
        let rules = nft.rules(f, table, name)?;
        if let Some(c) = saved.chains.iter_mut().find(|c| c.name == name) {
            c.rules = rules.into_iter().map(saved_rule).collect();
        }
        Ok(())
    };
    for name in &scope.rules_of {
        load(nft, &mut saved, &mut known, name)?;
    }
    for (target, from) in &scope.jumps_to {
        let Some(used) = uses.iter().find(|(n, _)| n == target).map(|(_, u)| *u) else {
            known.jumps.insert(target.clone()); // absent: nothing can jump to it
            continue;
        };
        // The kernel counts a chain's own rules and the rules that jump or go to it.
        load(nft, &mut saved, &mut known, target)?;
        let own = saved
            .chains
            .iter()
            .find(|c| &c.name == target)
            .map_or(0, |c| c.rules.len());
        let refs = (used as usize).saturating_sub(own);
        if refs > 0 && !predicted_jumps(nft, &mut saved, &known, family, table, target, from, refs)? {
            for source in from {
                load(nft, &mut saved, &mut known, source)?;
            }
        }
        let found = saved
            .chains
            .iter()
            .flat_map(|c| &c.rules)
            .filter(|r| r.target.as_deref() == Some(target.as_str()))
            .count();
        if found < refs {
            // Some jump is in a chain not read: read everything.
            let whole = SavedTable {
                name: table.to_string(),
                nft_family: Some(family),
                ..SavedTable::default()
            };
            return read_all(nft, family, table, whole);
        }
        known.jumps.insert(target.clone());
    }
    saved.partial = Some(known);
    Ok(saved)
}

/// Looks for the `refs` jumps to `target` right after the handle of `target`'s last rule in
/// the first chain of `from`, one request per rule: the jumps into a container's chain are
/// written in the same transaction as the chain's rules, just after them (iptables-nft and
/// this writer alike: the kernel numbers a table's rules from one counter, in message order),
/// so a DEL finds them without listing a chain that holds a rule per container. True when all
/// were there (added to `saved`); false sends the caller to read the chains in full.
#[allow(clippy::too_many_arguments)]
fn predicted_jumps(
    nft: &mut NetfilterSocket,
    saved: &mut SavedTable,
    known: &Known,
    family: Family,
    table: &str,
    target: &str,
    from: &[String],
    refs: usize,
) -> crate::Result<bool> {
    let Some(source) = from.first() else {
        return Ok(false);
    };
    let last = saved
        .chains
        .iter()
        .find(|c| c.name == target)
        .and_then(|c| c.rules.iter().filter_map(|r| r.handle).max());
    let (Some(last), false) = (last, known.rules.contains(source)) else {
        return Ok(false);
    };
    let f = nft_family(family);
    let mut hits = Vec::with_capacity(refs);
    for i in 1..=refs as u64 {
        match nft.rule(f, table, source, last + i)? {
            Some(rule) => {
                let rule = saved_rule(rule);
                if rule.target.as_deref() != Some(target) {
                    return Ok(false);
                }
                hits.push(rule);
            }
            None => return Ok(false),
        }
    }
    match saved.chains.iter_mut().find(|c| &c.name == source) {
        // Only some of its rules: the chain is not marked as read.
        Some(c) => c.rules.extend(hits),
        None => saved.chains.push(SavedChain {
            name: source.clone(),
            policy: None,
            rules: hits,
            use_count: None,
        }),
    }
    Ok(true)
}

fn read_all(
    nft: &mut NetfilterSocket,
    family: Family,
    table: &str,
    mut saved: SavedTable,
) -> crate::Result<SavedTable> {
    let f = nft_family(family);
    let chains = nft.chains(f, table)?;
    let mut rules = nft.table_rules(f, table)?;
    for c in chains {
        let mine: Vec<nft::RuleInfo> = rules.extract_if(.., |r| r.chain == c.name).collect();
        saved.chains.push(chain_of(&c, mine));
    }
    saved.partial = None;
    Ok(saved)
}

/// Why a [`RestoreBatch`] cannot become an nf_tables batch.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A rule or operation outside what is written in-process.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// The reading does not cover what the batch touches; read again in full.
    #[error("the reading of the table does not cover chain {0}")]
    NotRead(String),
    /// A rule to delete by its arguments is not in the reading (another writer removed it).
    #[error("no rule {1:?} in chain {0}")]
    NoSuchRule(String, Vec<String>),
    /// A name in the batch is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// The nf_tables batch that makes the changes of `batch` to the table `saved` was read from.
pub fn plan(family: Family, saved: &SavedTable, batch: &RestoreBatch) -> Result<Batch, PlanError> {
    if let Some(why) = batch.invalid() {
        return Err(PlanError::Invalid(why.to_string()));
    }
    let f = nft_family(family);
    let table = batch.table();
    if table != "nat" {
        return Err(Unsupported(format!("table {table}")).into());
    }
    let known_absent = |name: &str| match &saved.partial {
        None => !saved.chains.iter().any(|c| c.name == name),
        Some(k) => k.chains.contains(name) && !saved.chains.iter().any(|c| c.name == name),
    };
    let known = |name: &str| saved.partial.as_ref().is_none_or(|k| k.chains.contains(name));
    let exists = |name: &str| saved.chains.iter().any(|c| c.name == name);
    let table_exists = saved.partial.is_some() || !saved.chains.is_empty();
    let mut out = Batch::new();
    let mut made_table = false;
    let mut made: Vec<String> = Vec::new();
    let mut ensure_table = |out: &mut Batch| {
        if !table_exists && !made_table {
            out.add_table(nft::Table::new(f, table));
            made_table = true;
        }
    };
    // A built-in chain is created, as iptables-nft does, when a rule goes into it and it is
    // missing; an existing one is never re-declared (its policy is the operator's).
    let mut ensure_builtin = |out: &mut Batch, ensure_table: &mut dyn FnMut(&mut Batch), name: &str| {
        if let Some((hook, prio)) = builtin(name) {
            if !known(name) {
                return Err(PlanError::NotRead(name.to_string()));
            }
            if known_absent(name) && !made.iter().any(|m| m == name) {
                ensure_table(out);
                out.add_chain(
                    Chain::new(f, table, name)
                        .base(ChainType::Nat, hook, prio)
                        .policy(Policy::Accept),
                );
                made.push(name.to_string());
            }
        }
        Ok(())
    };
    let rule = |chain: &str, args: &[String]| -> Result<Rule, PlanError> {
        let t = translate(family, args)?;
        let mut r = Rule::new(f, table, chain);
        for e in t.exprs {
            r = r.expr(e);
        }
        if let Some(p) = t.proto {
            r = r.compat_proto(p);
        }
        Ok(r)
    };
    for op in batch.ops() {
        match op {
            BatchOp::Declare(name) => {
                if builtin(name).is_some() {
                    return Err(Unsupported(format!("declaring built-in chain {name}")).into());
                }
                if !known(name) {
                    return Err(PlanError::NotRead(name.clone()));
                }
                if exists(name) {
                    out.flush_chain(f, table, name);
                } else {
                    ensure_table(&mut out);
                    out.add_chain(Chain::new(f, table, name));
                }
            }
            BatchOp::NewChain(name) => {
                ensure_table(&mut out);
                out.create_chain(Chain::new(f, table, name));
            }
            BatchOp::Append(chain, args) => {
                ensure_builtin(&mut out, &mut ensure_table, chain)?;
                out.add_rule(rule(chain, args)?);
            }
            BatchOp::Insert(chain, position, args) => {
                if *position != 1 {
                    return Err(Unsupported(format!("insert at position {position}")).into());
                }
                ensure_builtin(&mut out, &mut ensure_table, chain)?;
                out.add_rule(rule(chain, args)?.position(Position::Insert));
            }
            BatchOp::Delete(chain, args, handle) => {
                let handle = match handle {
                    Some(h) => *h,
                    None => saved
                        .find_rule(chain, args)
                        .and_then(|r| r.handle)
                        .ok_or_else(|| PlanError::NoSuchRule(chain.clone(), args.clone()))?,
                };
                out.delete_rule(f, table, chain, handle);
            }
            BatchOp::Flush(chain) => {
                out.flush_chain(f, table, chain);
            }
            BatchOp::DeleteChain(chain) => {
                out.delete_chain(f, table, chain);
            }
        }
    }
    Ok(out)
}
