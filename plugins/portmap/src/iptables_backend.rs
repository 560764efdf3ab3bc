//! The iptables backend: Go's chain layout, names and comments, applied as
//! one `iptables-restore --noflush` batch per family and call.
//!
//! ```text
//! PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//! CNI-HOSTPORT-DNAT:  -p tcp -m comment --comment "dnat name: ..." -m multiport --dports 8080,8081 -j CNI-DN-<hash>
//! CNI-DN-<hash>:      [-s <pod subnet> | 127.0.0.1 -j CNI-HOSTPORT-SETMARK] -p tcp -m tcp --dport 8080 -j DNAT ...
//! CNI-HOSTPORT-SETMARK: -j MARK --set-xmark <mark>/<mark>
//! POSTROUTING (first): -j CNI-HOSTPORT-MASQ;  CNI-HOSTPORT-MASQ: -m mark --mark <mark>/<mark> -j MASQUERADE
//! ```
//!
//! Rules are generated in the canonical form `iptables-save` prints, so
//! that "is this rule there" is a comparison of argument lists, and a DEL by
//! Go's portmap finds our rules as it finds its own (and the reverse).
//! Running the tools, parsing `iptables-save` and writing restore batches is
//! [`cni_net::iptables`]'s job.

use crate::config::PortMapConf;
use crate::mapping::{Attachment, IpFamily, PortMapping};
use cni::{Code, Error, Result};
use cni_net::detach::Sockets;
use cni_net::iptables::{IptablesError, IptablesRunner, RestoreBatch, SavedTable, UpdateError, quote_arg};
use cni_net::iptables_nft::Scope;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Go's top-level chain names, never to be changed.
pub const TOP_LEVEL_DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// The chain that sets the masquerade mark.
pub const SET_MARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
/// The chain that masquerades marked packets.
pub const MARK_MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// The top-level SNAT chain of old Go versions.
pub const OLD_TOP_LEVEL_SNAT_CHAIN: &str = "CNI-HOSTPORT-SNAT";

/// A rule: the chain it is in and its arguments (without `-A <chain>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The chain.
    pub chain: String,
    /// Match and target arguments, unquoted.
    pub tokens: Vec<String>,
}

impl Rule {
    fn new(chain: &str, tokens: Vec<String>) -> Rule {
        Rule {
            chain: chain.to_string(),
            tokens,
        }
    }

    /// The target chain or extension (`-j X`).
    pub fn target(&self) -> Option<&str> {
        self.tokens
            .windows(2)
            .rev()
            .find(|w| w[0] == "-j")
            .map(|w| w[1].as_str())
    }

    /// The rule as `iptables-save` prints it after `-A`: chain and quoted arguments.
    pub fn spec(&self) -> String {
        let mut out = self.chain.clone();
        for t in &self.tokens {
            out.push(' ');
            out.push_str(&quote_arg(t));
        }
        out
    }

    /// Whether `saved` has exactly this rule.
    pub fn is_in(&self, saved: &SavedTable) -> bool {
        saved.has_rule(&self.chain, &self.tokens)
    }

    /// Appends the rule to `batch`.
    pub fn append_to(&self, batch: &mut RestoreBatch) {
        batch.append(&self.chain, &self.tokens);
    }

    /// Appends the rule to `batch` unless `saved` has it.
    pub fn ensure_in(&self, batch: &mut RestoreBatch, saved: &SavedTable) {
        batch.append_if_missing(saved, &self.chain, &self.tokens);
    }
}

/// The cni-net family of an IP family.
pub fn net_family(f: IpFamily) -> cni_net::Family {
    match f {
        IpFamily::V4 => cni_net::Family::V4,
        IpFamily::V6 => cni_net::Family::V6,
    }
}

/// A failed iptables call as a CNI error: `msg`, then the tool's error and, for a
/// failed restore, the batch it was given.
pub fn iptables_error(msg: impl Into<String>, e: &IptablesError) -> Error {
    let err = Error::from_chain(Code::IO_FAILURE, msg, e);
    match e {
        IptablesError::Failed { input, .. } if !input.is_empty() => {
            let details = format!("{}; input:\n{input}", err.details);
            err.with_details(details)
        }
        _ => err,
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

fn mark_def(mark: u32) -> String {
    format!("{mark:#x}/{mark:#x}")
}

/// The host-side entry rules into `CNI-HOSTPORT-DNAT`.
pub fn top_level_entry_rules() -> Vec<Rule> {
    ["PREROUTING", "OUTPUT"]
        .iter()
        .map(|c| {
            Rule::new(
                c,
                vec![
                    s("-m"),
                    s("addrtype"),
                    s("--dst-type"),
                    s("LOCAL"),
                    s("-j"),
                    s(TOP_LEVEL_DNAT_CHAIN),
                ],
            )
        })
        .collect()
}

/// `CNI-HOSTPORT-SETMARK`'s one rule.
pub fn set_mark_rule(mark: u32) -> Rule {
    Rule::new(
        SET_MARK_CHAIN,
        vec![
            s("-m"),
            s("comment"),
            s("--comment"),
            s("CNI portfwd masquerade mark"),
            s("-j"),
            s("MARK"),
            s("--set-xmark"),
            mark_def(mark),
        ],
    )
}

/// `CNI-HOSTPORT-MASQ`'s one rule.
pub fn mark_masq_rule(mark: u32) -> Rule {
    Rule::new(
        MARK_MASQ_CHAIN,
        vec![
            s("-m"),
            s("mark"),
            s("--mark"),
            mark_def(mark),
            s("-j"),
            s("MASQUERADE"),
        ],
    )
}

/// The jump from POSTROUTING into `CNI-HOSTPORT-MASQ` (inserted first).
pub fn mark_masq_entry_rule() -> Rule {
    Rule::new(
        "POSTROUTING",
        vec![
            s("-m"),
            s("comment"),
            s("--comment"),
            s("CNI portfwd requiring masquerade"),
            s("-j"),
            s(MARK_MASQ_CHAIN),
        ],
    )
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// `ip:port`, `[ip]:port` for IPv6.
pub fn ip_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    }
}

/// One container's chain: its entry rules in `CNI-HOSTPORT-DNAT` and its own rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnatChain {
    /// `CNI-DN-<hash>`.
    pub name: String,
    /// The multiport jumps, one per protocol per 15 ports.
    pub entry_rules: Vec<Rule>,
    /// Mark and DNAT rules, in order.
    pub rules: Vec<Rule>,
}

/// Go's `fillDnatRules`, in canonical `iptables-save` form.
pub fn dnat_chain(conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> DnatChain {
    let name = att.dnat_chain();
    let family = IpFamily::of(container.ip());
    let comment = att.iptables_comment();
    let conditions = match family {
        IpFamily::V4 => &conf.conditions.v4,
        IpFamily::V6 => &conf.conditions.v6,
    };
    // Every mapping's port goes into the multiport list (even those skipped
    // below for their hostIP family), grouped by protocol in name order.
    let mut by_proto: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    for m in &conf.mappings {
        by_proto.entry(m.protocol.as_str()).or_default().push(m.host_port);
    }
    let mut entry_rules = Vec::new();
    for (proto, ports) in &by_proto {
        for group in ports.chunks(15) {
            let list: Vec<String> = group.iter().map(u16::to_string).collect();
            let mut t = vec![
                s("-p"),
                s(proto),
                s("-m"),
                s("comment"),
                s("--comment"),
                comment.clone(),
                s("-m"),
                s("multiport"),
                s("--dports"),
                list.join(","),
            ];
            t.extend(conditions.iter().cloned());
            t.push(s("-j"));
            t.push(name.clone());
            entry_rules.push(Rule::new(TOP_LEVEL_DNAT_CHAIN, t));
        }
    }
    let set_mark = conf
        .external_set_mark_chain
        .clone()
        .unwrap_or_else(|| s(SET_MARK_CHAIN));
    let mut rules = Vec::new();
    for m in conf.mappings.iter().filter(|m| m.applies_to(family)) {
        let dst = m.destination().map(host_cidr);
        let base = |src: Option<String>| {
            let mut t = Vec::new();
            if let Some(src) = src {
                t.extend([s("-s"), src]);
            }
            if let Some(d) = &dst {
                t.extend([s("-d"), d.clone()]);
            }
            t.extend(port_match(m));
            t
        };
        if conf.snat {
            let masq_src = if conf.masq_all {
                match family {
                    IpFamily::V4 => s("0.0.0.0/0"),
                    IpFamily::V6 => s("::/0"),
                }
            } else {
                format!("{}/{}", container.network(), container.prefix())
            };
            // iptables-save leaves out a source of any address.
            let src = (!conf.masq_all).then_some(masq_src);
            let mut t = base(src);
            t.extend([s("-j"), set_mark.clone()]);
            rules.push(Rule::new(&name, t));
            if family == IpFamily::V4 && !conf.masq_all {
                let mut t = base(Some(s("127.0.0.1/32")));
                t.extend([s("-j"), set_mark.clone()]);
                rules.push(Rule::new(&name, t));
            }
        }
        let mut t = base(None);
        t.extend([
            s("-j"),
            s("DNAT"),
            s("--to-destination"),
            ip_port(container.ip(), m.container_port),
        ]);
        rules.push(Rule::new(&name, t));
    }
    DnatChain {
        name,
        entry_rules,
        rules,
    }
}

fn port_match(m: &PortMapping) -> [String; 6] {
    let p = m.protocol.as_str();
    [
        s("-p"),
        s(p),
        s("-m"),
        s(p),
        s("--dport"),
        m.host_port.to_string(),
    ]
}

/// The `iptables-restore --noflush` batch that sets up one container's
/// forwarding: shared chains and rules only where missing, the container's
/// chain replaced whole.
pub fn add_batch(
    saved: &SavedTable,
    conf: &PortMapConf,
    att: &Attachment,
    container: IpNetwork,
) -> RestoreBatch {
    let mut b = RestoreBatch::new("nat");
    if conf.snat && conf.external_set_mark_chain.is_none() {
        let mark = conf.mark();
        b.ensure_chain(saved, SET_MARK_CHAIN);
        set_mark_rule(mark).ensure_in(&mut b, saved);
        b.ensure_chain(saved, MARK_MASQ_CHAIN);
        mark_masq_rule(mark).ensure_in(&mut b, saved);
        // Only the POSTROUTING entry jumps to the masquerade chain: when something does, the
        // entry is there (counted without listing POSTROUTING, which holds a rule per
        // container of every masquerading network).
        if saved.references(MARK_MASQ_CHAIN) == 0 {
            let entry = mark_masq_entry_rule();
            b.insert(&entry.chain, 1, &entry.tokens);
        }
    }
    b.ensure_chain(saved, TOP_LEVEL_DNAT_CHAIN);
    for r in top_level_entry_rules() {
        r.ensure_in(&mut b, saved);
    }
    let chain = dnat_chain(conf, att, container);
    // A repeated ADD replaces what an earlier one left.
    for r in saved.rules_jumping_to(&chain.name) {
        b.delete_saved(r);
    }
    b.declare_chain(&chain.name);
    for r in chain.rules.iter().chain(chain.entry_rules.iter()) {
        r.append_to(&mut b);
    }
    b
}

/// Adds to `b` the removal of one container's chains (ours or Go's) and of
/// every jump to them; false when there was nothing to remove.
pub fn del_into(b: &mut RestoreBatch, saved: &SavedTable, att: &Attachment) -> bool {
    let mut any = false;
    for chain in [att.dnat_chain(), att.old_snat_chain()] {
        if !saved.has_chain(&chain) {
            continue;
        }
        for r in saved.rules_jumping_to(&chain) {
            b.delete_saved(r);
        }
        b.flush_chain(&chain).delete_chain(&chain);
        any = true;
    }
    any
}

/// The batch that removes one container's chains and every jump to them;
/// `None` when there is nothing to remove.
pub fn del_batch(saved: &SavedTable, att: &Attachment) -> Option<RestoreBatch> {
    let mut b = RestoreBatch::new("nat");
    del_into(&mut b, saved, att).then_some(b)
}

/// What CHECK compares: the container's chain, each of its rules, and one
/// jump into it per entry rule.
pub fn check_saved(
    saved: &SavedTable,
    conf: &PortMapConf,
    att: &Attachment,
    container: IpNetwork,
) -> Result<()> {
    let chain = dnat_chain(conf, att, container);
    if !saved.has_chain(&chain.name) {
        return Err(Error::new(
            crate::CHECK_FAILED,
            format!("chain {} not found in iptables table nat", chain.name),
        ));
    }
    for r in &chain.rules {
        if !r.is_in(saved) {
            return Err(Error::new(
                crate::CHECK_FAILED,
                format!(
                    "rule {:?} in chain {} not found in table nat",
                    r.spec(),
                    chain.name
                ),
            ));
        }
    }
    let jumps = saved.rules_jumping_to(&chain.name).count();
    if jumps < chain.entry_rules.len() {
        return Err(Error::new(
            crate::CHECK_FAILED,
            format!(
                "{} of {} entry rules into {} found in chain {TOP_LEVEL_DNAT_CHAIN}",
                jumps,
                chain.entry_rules.len(),
                chain.name
            ),
        ));
    }
    Ok(())
}

/// The iptables backend: Go's layout, written in-process on an iptables-nft host (on the
/// command's netfilter socket), through `iptables-save` / `iptables-restore` otherwise.
pub struct IptablesBackend<'s> {
    runner: IptablesRunner,
    sockets: Option<&'s mut Sockets>,
}

impl Default for IptablesBackend<'static> {
    fn default() -> Self {
        Self::new()
    }
}

/// What an ADD reads: the shared chains, the entry chains, and the jumps into the
/// container's chain only when that chain exists (a repeated ADD).
fn add_scope(att: &Attachment) -> Scope {
    Scope::default()
        .rules_of([SET_MARK_CHAIN, MARK_MASQ_CHAIN, "PREROUTING", "OUTPUT"])
        .exists([TOP_LEVEL_DNAT_CHAIN, "POSTROUTING"])
        .jumps_to(&att.dnat_chain(), [TOP_LEVEL_DNAT_CHAIN])
}

/// What a DEL reads: the container's chains and the jumps into them.
fn del_scope(att: &Attachment) -> Scope {
    Scope::default()
        .jumps_to(&att.dnat_chain(), [TOP_LEVEL_DNAT_CHAIN])
        .jumps_to(&att.old_snat_chain(), [OLD_TOP_LEVEL_SNAT_CHAIN])
}

impl IptablesBackend<'static> {
    /// A backend on the calling process's network namespace, always through the tools.
    pub fn new() -> Self {
        IptablesBackend {
            runner: IptablesRunner::host(),
            sockets: None,
        }
    }
}

impl<'s> IptablesBackend<'s> {
    /// A backend that writes in-process on the command's netfilter socket where it can.
    pub fn with_sockets(sockets: &'s mut Sockets) -> Self {
        IptablesBackend {
            runner: IptablesRunner::host(),
            sockets: Some(sockets),
        }
    }

    /// The nat table of `family`.
    pub fn save_nat(&self, family: IpFamily) -> Result<SavedTable> {
        self.runner
            .save(net_family(family), "nat")
            .map_err(|e| iptables_error("unable to read the iptables nat table", &e))
    }

    /// One read-modify-write of the nat table of `family` (see
    /// [`IptablesRunner::update_with`]: serialized with our other plugins, re-read after a
    /// concurrent writer; in-process where the host's iptables is iptables-nft).
    fn raw_update<E>(
        &mut self,
        family: IpFamily,
        scope: &Scope,
        build: impl FnMut(&SavedTable) -> std::result::Result<Option<RestoreBatch>, E>,
    ) -> std::result::Result<(), UpdateError<E>> {
        let nft = self.sockets.as_deref_mut().and_then(|s| s.netfilter().ok());
        self.runner
            .update_with(nft, net_family(family), "nat", scope, build)
    }

    fn update(
        &mut self,
        family: IpFamily,
        what: &str,
        scope: &Scope,
        build: impl FnMut(&SavedTable) -> Result<Option<RestoreBatch>>,
    ) -> Result<()> {
        self.raw_update(family, scope, build).map_err(|e| match e {
            UpdateError::Iptables(e) => iptables_error(what, &e),
            UpdateError::Build(e) => e,
        })
    }

    /// Sets up forwarding to `container` (one family): one reading, one batch.
    pub fn add(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        self.update(
            IpFamily::of(container.ip()),
            "unable to set up iptables rules for port mappings",
            &add_scope(att),
            |saved| Ok(Some(add_batch(saved, conf, att, container))),
        )
    }

    /// Removes the container's rules in both families. Only a family that cannot hold
    /// rules (its tools or its nat table are absent) is skipped; any other failure to read
    /// or change a table is an error, so a DEL that succeeds left nothing behind.
    pub fn del(&mut self, att: &Attachment) -> Result<()> {
        let scope = del_scope(att);
        for family in [IpFamily::V4, IpFamily::V6] {
            let res = self.raw_update(family, &scope, |saved| Ok::<_, Error>(del_batch(saved, att)));
            match res {
                Ok(()) => {}
                Err(UpdateError::Iptables(e)) if e.is_absent() => {}
                Err(UpdateError::Iptables(e)) => {
                    return Err(iptables_error(
                        "unable to remove iptables rules of port mappings",
                        &e,
                    ));
                }
                Err(UpdateError::Build(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Verifies the rules of one family.
    pub fn check(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let scope = Scope::default()
            .rules_of([att.dnat_chain()])
            .jumps_to(&att.dnat_chain(), [TOP_LEVEL_DNAT_CHAIN]);
        // A reading that changes nothing: the verdict comes out of the planning step.
        let mut verdict = Ok(());
        self.update(
            IpFamily::of(container.ip()),
            "unable to read the iptables nat table",
            &scope,
            |saved| {
                verdict = check_saved(saved, conf, att, container);
                Ok(None)
            },
        )?;
        verdict
    }

    /// Removes the chains of every attachment of `network` whose container
    /// is not in `valid`: found by the comment of their entry rules.
    pub fn gc(&mut self, network: &str, valid: &[String]) -> Result<()> {
        for family in [IpFamily::V4, IpFamily::V6] {
            let res = self.raw_update(family, &Scope::all(), |saved| {
                let batch = gc_batch(saved, network, valid);
                Ok::<_, Error>((!batch.is_empty()).then_some(batch))
            });
            match res {
                Ok(()) => {}
                Err(UpdateError::Iptables(e)) if e.is_absent() => {}
                Err(UpdateError::Iptables(e)) => {
                    return Err(iptables_error(
                        "unable to remove stale iptables rules of port mappings",
                        &e,
                    ));
                }
                Err(UpdateError::Build(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The batch that removes the chains of `network`'s attachments whose container is not in `valid`.
pub fn gc_batch(saved: &SavedTable, network: &str, valid: &[String]) -> RestoreBatch {
    let mut stale: Vec<Attachment> = Vec::new();
    let entries = saved
        .chain(TOP_LEVEL_DNAT_CHAIN)
        .map(|c| c.rules.as_slice())
        .unwrap_or_default();
    for r in entries {
        if r.target.as_deref().is_some_and(|t| t.starts_with("CNI-DN-"))
            && let Some((net, cid)) = r.comment.as_deref().and_then(parse_comment)
            && net == network
            && !valid.contains(&cid)
        {
            let a = Attachment::new(net, cid);
            if !stale.contains(&a) {
                stale.push(a);
            }
        }
    }
    let mut batch = RestoreBatch::new("nat");
    for a in &stale {
        del_into(&mut batch, saved, a);
    }
    batch
}

/// Network and container ID from an entry rule's `dnat name: "N" id: "C"` comment.
fn parse_comment(comment: &str) -> Option<(String, String)> {
    let rest = comment.strip_prefix("dnat name: \"")?;
    let (net, rest) = rest.split_once("\" id: \"")?;
    let cid = rest.strip_suffix('"')?;
    Some((net.to_string(), cid.to_string()))
}

#[cfg(test)]
mod tests;
