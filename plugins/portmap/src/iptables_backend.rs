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
//! that "is this rule there" is a comparison of token lists, and a DEL by
//! Go's portmap finds our rules as it finds its own (and the reverse).

use crate::config::PortMapConf;
use crate::mapping::{Attachment, IpFamily, PortMapping};
use cni::{Error, Result};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Go's top-level chain names, never to be changed.
pub const TOP_LEVEL_DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// The chain that sets the masquerade mark.
pub const SET_MARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
/// The chain that masquerades marked packets.
pub const MARK_MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// The top-level SNAT chain of old Go versions.
pub const OLD_TOP_LEVEL_SNAT_CHAIN: &str = "CNI-HOSTPORT-SNAT";

/// A rule: the chain it is in and its tokens (without `-A <chain>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The chain.
    pub chain: String,
    /// Match and target tokens, unquoted.
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

    /// The rule in `iptables-restore` syntax after `-A`/`-D`/`-I`: chain and quoted tokens.
    pub fn spec(&self) -> String {
        let mut out = quote(&self.chain);
        for t in &self.tokens {
            out.push(' ');
            out.push_str(&quote(t));
        }
        out
    }
}

/// Quotes a token the way `iptables-save` does: bare when it has only
/// harmless characters, else in double quotes with `"` and `\` escaped.
pub fn quote(token: &str) -> String {
    let bare = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+,=@[]!%".contains(&b));
    if bare {
        return token.to_string();
    }
    let mut out = String::with_capacity(token.len() + 2);
    out.push('"');
    for c in token.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a saved rule into tokens, undoing `iptables-save`'s quoting.
pub fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    out
}

/// The nat table as `iptables-save -t nat` printed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Chain names, built-in ones included.
    pub chains: Vec<String>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

impl SavedTable {
    /// Parses the output of `iptables-save -t <table>`.
    pub fn parse(text: &str) -> SavedTable {
        let mut t = SavedTable::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(':') {
                if let Some(name) = rest.split_whitespace().next() {
                    t.chains.push(name.to_string());
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let mut tokens = tokenize(rest);
                if tokens.is_empty() {
                    continue;
                }
                let chain = tokens.remove(0);
                t.rules.push(Rule { chain, tokens });
            }
        }
        t
    }

    /// Whether the chain exists.
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c == name)
    }

    /// Whether exactly this rule exists.
    pub fn has_rule(&self, rule: &Rule) -> bool {
        self.rules.iter().any(|r| r == rule)
    }

    /// The rules that jump to `target`.
    pub fn jumps_to<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.target() == Some(target))
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

/// The `iptables-restore --noflush` input that sets up one container's
/// forwarding: shared chains and rules only where missing, the container's
/// chain replaced whole.
pub fn add_batch(saved: &SavedTable, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> String {
    let mut b = Batch::default();
    if conf.snat && conf.external_set_mark_chain.is_none() {
        let mark = conf.mark();
        b.ensure_chain(saved, SET_MARK_CHAIN);
        b.ensure_rule(saved, &set_mark_rule(mark));
        b.ensure_chain(saved, MARK_MASQ_CHAIN);
        b.ensure_rule(saved, &mark_masq_rule(mark));
        let entry = mark_masq_entry_rule();
        if !saved.has_rule(&entry) {
            b.line(format!(
                "-I {} 1 {}",
                entry.chain,
                entry.spec().split_once(' ').map_or("", |x| x.1)
            ));
        }
    }
    b.ensure_chain(saved, TOP_LEVEL_DNAT_CHAIN);
    for r in top_level_entry_rules() {
        b.ensure_rule(saved, &r);
    }
    let chain = dnat_chain(conf, att, container);
    // A repeated ADD replaces what an earlier one left.
    for r in saved.jumps_to(&chain.name) {
        b.line(format!("-D {}", r.spec()));
    }
    b.line(format!(":{} - [0:0]", chain.name));
    for r in chain.rules.iter().chain(chain.entry_rules.iter()) {
        b.line(format!("-A {}", r.spec()));
    }
    b.finish()
}

/// The batch that removes one container's chains (ours or Go's) and every
/// jump to them; `None` when there is nothing to remove.
pub fn del_batch(saved: &SavedTable, att: &Attachment) -> Option<String> {
    let mut b = Batch::default();
    for chain in [att.dnat_chain(), att.old_snat_chain()] {
        if !saved.has_chain(&chain) {
            continue;
        }
        for r in saved.jumps_to(&chain) {
            b.line(format!("-D {}", r.spec()));
        }
        b.line(format!("-F {chain}"));
        b.line(format!("-X {chain}"));
    }
    (!b.lines.is_empty()).then(|| b.finish())
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
        if !saved.has_rule(r) {
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
    let jumps = saved.jumps_to(&chain.name).count();
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

#[derive(Default)]
struct Batch {
    lines: Vec<String>,
}

impl Batch {
    fn line(&mut self, l: String) {
        self.lines.push(l);
    }

    fn ensure_chain(&mut self, saved: &SavedTable, chain: &str) {
        // Declaring a chain in --noflush mode flushes it: only new ones.
        if !saved.has_chain(chain) {
            self.line(format!(":{chain} - [0:0]"));
        }
    }

    fn ensure_rule(&mut self, saved: &SavedTable, rule: &Rule) {
        if !saved.has_rule(rule) {
            self.line(format!("-A {}", rule.spec()));
        }
    }

    fn finish(self) -> String {
        let mut out = String::from("*nat\n");
        for l in self.lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// Runs `iptables-save` and `iptables-restore` (or the ip6 ones).
pub trait IptablesRunner {
    /// `iptables-save -t nat` of the family.
    fn save_nat(&self, family: IpFamily) -> Result<String>;
    /// `iptables-restore --noflush -w` with `input`.
    fn restore(&self, family: IpFamily, input: &str) -> Result<()>;
}

/// The real commands.
pub struct IptablesCommands;

fn tool(family: IpFamily, what: &str) -> String {
    match family {
        IpFamily::V4 => format!("iptables-{what}"),
        IpFamily::V6 => format!("ip6tables-{what}"),
    }
}

impl IptablesRunner for IptablesCommands {
    fn save_nat(&self, family: IpFamily) -> Result<String> {
        let bin = tool(family, "save");
        let out = Command::new(&bin)
            .args(["-t", "nat"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("cannot run {bin}")).with_details(e.to_string()))?;
        if !out.status.success() {
            return Err(Error::io(format!("{bin} -t nat failed"))
                .with_details(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn restore(&self, family: IpFamily, input: &str) -> Result<()> {
        use std::io::Write;
        let bin = tool(family, "restore");
        let mut child = Command::new(&bin)
            .args(["--noflush", "-w"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("cannot run {bin}")).with_details(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| Error::io(format!("cannot write to {bin}")).with_details(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("{bin} failed")).with_details(e.to_string()))?;
        if !out.status.success() {
            return Err(Error::io(format!("{bin} failed")).with_details(format!(
                "{}; input:\n{input}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// The iptables backend over a runner.
pub struct IptablesBackend<'a> {
    runner: &'a dyn IptablesRunner,
}

impl<'a> IptablesBackend<'a> {
    /// A backend using `runner`.
    pub fn new(runner: &'a dyn IptablesRunner) -> Self {
        IptablesBackend { runner }
    }

    /// Sets up forwarding to `container` (one family): one save, one restore.
    pub fn add(&self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let saved = SavedTable::parse(&self.runner.save_nat(family)?);
        let batch = add_batch(&saved, conf, att, container);
        self.runner.restore(family, &batch).map_err(|e| {
            Error::io("unable to set up iptables rules for port mappings").with_details(e.to_string())
        })
    }

    /// Removes the container's rules in both families; a family whose
    /// iptables is unusable is skipped unless both are.
    pub fn del(&self, att: &Attachment) -> Result<()> {
        let mut errors = Vec::new();
        let mut usable = 0;
        for family in [IpFamily::V4, IpFamily::V6] {
            let saved = match self.runner.save_nat(family) {
                Ok(text) => SavedTable::parse(&text),
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            usable += 1;
            if let Some(batch) = del_batch(&saved, att) {
                self.runner.restore(family, &batch)?;
            }
        }
        if usable == 0 {
            return Err(Error::io("neither iptables nor ip6tables is usable").with_details(errors.join("; ")));
        }
        Ok(())
    }

    /// Verifies the rules of one family.
    pub fn check(&self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let saved = SavedTable::parse(&self.runner.save_nat(family)?);
        check_saved(&saved, conf, att, container)
    }

    /// Removes the chains of every attachment of `network` whose container
    /// is not in `valid`: found by the comment of their entry rules.
    pub fn gc(&self, network: &str, valid: &[String]) -> Result<()> {
        for family in [IpFamily::V4, IpFamily::V6] {
            let Ok(text) = self.runner.save_nat(family) else {
                continue;
            };
            let saved = SavedTable::parse(&text);
            let mut stale: Vec<Attachment> = Vec::new();
            for r in saved.jumps_to_prefix("CNI-DN-") {
                if let Some((net, cid)) = parse_comment(r)
                    && net == network
                    && !valid.contains(&cid)
                {
                    let a = Attachment::new(net, cid);
                    if !stale.contains(&a) {
                        stale.push(a);
                    }
                }
            }
            let mut batch = String::new();
            for a in &stale {
                if let Some(b) = del_batch(&saved, a) {
                    batch.push_str(&b);
                }
            }
            if !batch.is_empty() {
                self.runner.restore(family, &batch)?;
            }
        }
        Ok(())
    }
}

impl SavedTable {
    fn jumps_to_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| {
            r.chain == TOP_LEVEL_DNAT_CHAIN && r.target().is_some_and(|t| t.starts_with(prefix))
        })
    }
}

/// Network and container ID from an entry rule's `dnat name: "N" id: "C"` comment.
fn parse_comment(rule: &Rule) -> Option<(String, String)> {
    let i = rule.tokens.iter().position(|t| t == "--comment")?;
    let c = rule.tokens.get(i + 1)?;
    let rest = c.strip_prefix("dnat name: \"")?;
    let (net, rest) = rest.split_once("\" id: \"")?;
    let cid = rest.strip_suffix('"')?;
    Some((net.to_string(), cid.to_string()))
}

#[cfg(test)]
mod tests;
