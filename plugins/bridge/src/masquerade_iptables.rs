//! ipMasq with iptables, Go's layout: in the nat table a chain `CNI-<24 hex of
//! sha512(network + container id)>` holding `-d <subnet> -j ACCEPT` and
//! `! -d <multicast> -j MASQUERADE`, and a POSTROUTING jump `-s <ip>`; every rule commented
//! `name: "<net>" id: "<cid>"`. Changes go in one `iptables-restore --noflush` per family;
//! existing rules are read from `iptables-save`, only when the chain may exist.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use cni::{Error, Result};
use ipnetwork::IpNetwork;

use crate::shared::{Attachment, ValidAttachment};
use cni_net::detach::Sockets;
use cni_net::hash::sha512_hex;
use cni_net::iptables::{IptablesRunner, RestoreBatch, UpdateError};
use cni_net::iptables_nft::Scope;

/// Go's `FormatChainName`: `CNI-` + the first 24 hex digits of sha512(name + id).
pub fn chain_name(network: &str, container_id: &str) -> String {
    format!(
        "CNI-{}",
        sha512_hex(format!("{network}{container_id}").as_bytes(), 24)
    )
}

/// The longest comment iptables accepts (`XT_MAX_COMMENT_LEN` less the NUL).
const COMMENT_MAX: usize = 255;

/// Go's `FormatComment`: `name: "<net>" id: "<cid>"` (Go `%q` quoting), cut to the
/// [`COMMENT_MAX`] bytes iptables accepts. Go passes a longer one whole and iptables refuses
/// the rule, so Go's ADD fails for such IDs; ours finds its rules by the chain name (a hash of
/// the whole name and ID), never by the comment, so a cut comment loses nothing.
pub fn comment(network: &str, container_id: &str) -> String {
    let mut c = format!("name: {} id: {}", go_quote(network), go_quote(container_id));
    if c.len() > COMMENT_MAX {
        let mut end = COMMENT_MAX;
        while !c.is_char_boundary(end) {
            end -= 1;
        }
        c.truncate(end);
    }
    c
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ipt {
    V4,
    V6,
}

impl Ipt {
    fn save(self) -> &'static str {
        match self {
            Ipt::V4 => "iptables-save",
            Ipt::V6 => "ip6tables-save",
        }
    }
    fn restore(self) -> &'static str {
        match self {
            Ipt::V4 => "iptables-restore",
            Ipt::V6 => "ip6tables-restore",
        }
    }
    fn multicast(self) -> &'static str {
        match self {
            Ipt::V4 => "224.0.0.0/4",
            Ipt::V6 => "ff00::/8",
        }
    }
    fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Ipt::V4 } else { Ipt::V6 }
    }
    fn family(self) -> cni_net::Family {
        match self {
            Ipt::V4 => cni_net::Family::V4,
            Ipt::V6 => cni_net::Family::V6,
        }
    }
}

fn in_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false)
}

/// Whether iptables is installed (Go's default backend then).
pub fn available() -> bool {
    in_path("iptables")
}

fn restore(ipt: Ipt, script: &str) -> Result<()> {
    let mut child = Command::new(ipt.restore())
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::internal(format!("failed to run {}", ipt.restore())).with_details(e.to_string())
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| {
        Error::internal(format!("failed to run {}", ipt.restore())).with_details(e.to_string())
    })?;
    if !out.status.success() {
        return Err(
            Error::internal(format!("{} failed", ipt.restore())).with_details(format!(
                "{}; input:\n{script}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        );
    }
    Ok(())
}

fn save_nat(ipt: Ipt) -> Result<String> {
    let out = Command::new(ipt.save())
        .args(["-t", "nat"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::internal(format!("failed to run {}", ipt.save())).with_details(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::internal(format!("{} failed", ipt.save())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The address as iptables-save prints a source: with its host prefix.
fn host_cidr(ip: IpAddr) -> String {
    format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })
}

/// The rules of `ips` (one family) for the attachment's chain, in the canonical form
/// `iptables-save` prints: the chain's ACCEPT per subnet and MASQUERADE, and one
/// POSTROUTING jump per address.
pub fn chain_rules(
    att: &Attachment,
    ips: &[IpNetwork],
    multicast: &str,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let chain = chain_name(&att.network, &att.container_id);
    let c = comment(&att.network, &att.container_id);
    let tagged = |head: Vec<String>, target: &str| {
        let mut args = head;
        args.extend(["-m", "comment", "--comment", &c, "-j", target].map(String::from));
        args
    };
    let mut own: Vec<Vec<String>> = Vec::new();
    for ip in ips {
        let rule = tagged(
            vec!["-d".into(), format!("{}/{}", ip.network(), ip.prefix())],
            "ACCEPT",
        );
        if !own.contains(&rule) {
            own.push(rule);
        }
    }
    own.push(tagged(
        vec!["!".into(), "-d".into(), multicast.into()],
        "MASQUERADE",
    ));
    let jumps = ips
        .iter()
        .map(|ip| tagged(vec!["-s".into(), host_cidr(ip.ip())], &chain))
        .collect();
    (own, jumps)
}

fn update_error(what: &str, e: UpdateError<Error>) -> Error {
    match e {
        UpdateError::Build(e) => e,
        UpdateError::Iptables(e) => Error::from_chain(cni::Code::INTERNAL, what, &e),
    }
}

/// Installs the rules of `ips`: one change per family present, written in-process on an
/// iptables-nft host (on the command's netfilter socket), by `iptables-restore` otherwise.
pub fn setup(sockets: &mut Sockets, att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
    let chain = chain_name(&att.network, &att.container_id);
    for ipt in [Ipt::V4, Ipt::V6] {
        let mine: Vec<IpNetwork> = ips.iter().copied().filter(|ip| Ipt::of(ip.ip()) == ipt).collect();
        if mine.is_empty() {
            continue;
        }
        let (own, jumps) = chain_rules(att, &mine, ipt.multicast());
        // POSTROUTING holds a jump per masqueraded container: it is read only when the
        // chain already exists (a repeated ADD), to keep one jump per address as Go's
        // AppendUnique does.
        // POSTROUTING's existence too: a missing built-in chain is created with the rule.
        let scope = Scope::default()
            .exists(["POSTROUTING"])
            .jumps_to(&chain, ["POSTROUTING"]);
        let nft = sockets.netfilter().ok();
        IptablesRunner::host()
            .update_with(nft, ipt.family(), "nat", &scope, |saved| {
                let mut b = RestoreBatch::new("nat");
                b.declare_chain(&chain);
                for rule in &own {
                    b.append(&chain, rule);
                }
                let existed = saved.references(&chain) > 0;
                for rule in &jumps {
                    if !(existed && saved.has_rule("POSTROUTING", rule)) {
                        b.append("POSTROUTING", rule);
                    }
                }
                Ok(Some(b))
            })
            .map_err(|e| update_error(&format!("failed to set up masquerading ({})", ipt.restore()), e))?;
    }
    Ok(())
}

/// The iptables-restore input that removes `chains` (their POSTROUTING jumps, rules and the
/// chains) from a nat table as `save` shows it; `None` when none of them is there.
pub fn teardown_script(save: &str, chains: &[String]) -> Option<String> {
    let mut deletes = Vec::new();
    let mut present = Vec::new();
    for line in save.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if chains.iter().any(|c| c == name) {
                present.push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A POSTROUTING ") {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let jumps = words
                .windows(2)
                .any(|w| w[0] == "-j" && chains.iter().any(|c| c == w[1]));
            if jumps {
                deletes.push(format!("-D POSTROUTING {rule}"));
            }
        }
    }
    if deletes.is_empty() && present.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for d in deletes {
        out.push_str(&d);
        out.push('\n');
    }
    for c in &present {
        out.push_str(&format!("-F {c}\n-X {c}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Whether the nat table of `ipt` may hold our chain (any `CNI-` chain when `chain` is
/// `None`), checked in-process: see [`cni_net::iptables::nat_may_hold`].
fn may_have_chain(sockets: &mut Sockets, ipt: Ipt, chain: Option<&str>) -> bool {
    let family = match ipt {
        Ipt::V4 => cni_net::Family::V4,
        Ipt::V6 => cni_net::Family::V6,
    };
    let Ok(nft) = sockets.netfilter() else {
        return true;
    };
    cni_net::iptables::nat_may_hold(nft, family, |name| {
        chain.map_or(name.starts_with("CNI-"), |want| name == want)
    })
}

/// Removes the attachment's chain and jumps (Go's and ours; also the legacy `-s ip/prefix`
/// jumps, since every jump to the chain goes). Nothing there is fine.
pub fn teardown(sockets: &mut Sockets, att: &Attachment) -> Result<()> {
    let chain = chain_name(&att.network, &att.container_id);
    for ipt in [Ipt::V4, Ipt::V6] {
        let family = ipt.family();
        let in_process = cni_net::iptables_nft::is_xtables_nft(family);
        // Without the in-process reading, spare the tools' exec when the chain cannot exist.
        if !in_path(ipt.save()) || (!in_process && !may_have_chain(sockets, ipt, Some(&chain))) {
            continue;
        }
        let scope = Scope::default().jumps_to(&chain, ["POSTROUTING"]);
        let nft = sockets.netfilter().ok();
        IptablesRunner::host()
            .update_with(nft, family, "nat", &scope, |saved| {
                if !saved.has_chain(&chain) {
                    return Ok(None);
                }
                let mut b = RestoreBatch::new("nat");
                for r in saved.rules_jumping_to(&chain) {
                    b.delete_saved(r);
                }
                b.flush_chain(&chain).delete_chain(&chain);
                Ok(Some(b))
            })
            .map_err(|e| update_error(&format!("failed to remove masquerading ({})", ipt.restore()), e))?;
    }
    Ok(())
}

/// CHECK: the attachment's chain exists with its MASQUERADE rule, and POSTROUTING sends every
/// address of `ips` to it.
pub fn verify(att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
    let chain = chain_name(&att.network, &att.container_id);
    for ipt in [Ipt::V4, Ipt::V6] {
        let mine: Vec<IpAddr> = ips
            .iter()
            .map(|ip| ip.ip())
            .filter(|ip| Ipt::of(*ip) == ipt)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let save = save_nat(ipt)?;
        if let Some(problem) = verify_save(&save, &chain, &mine) {
            return Err(Error::internal(format!(
                "masquerading ({}): {problem}",
                ipt.save()
            )));
        }
    }
    Ok(())
}

/// What is missing from `save` (a nat table) for `chain` and `ips`, if anything.
pub fn verify_save(save: &str, chain: &str, ips: &[IpAddr]) -> Option<String> {
    let declared = save
        .lines()
        .any(|l| l.strip_prefix(':').and_then(|d| d.split_whitespace().next()) == Some(chain));
    if !declared {
        return Some(format!("chain {chain} is missing"));
    }
    let masquerades = save.lines().any(|l| {
        l.strip_prefix("-A ")
            .is_some_and(|r| r.split_whitespace().next() == Some(chain) && r.contains("-j MASQUERADE"))
    });
    if !masquerades {
        return Some(format!("chain {chain} has no MASQUERADE rule"));
    }
    for ip in ips {
        let host = format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 });
        let jumps = save.lines().any(|l| {
            let Some(rule) = l.strip_prefix("-A POSTROUTING ") else {
                return false;
            };
            let words: Vec<&str> = rule.split_whitespace().collect();
            words
                .windows(2)
                .any(|w| w[0] == "-s" && (w[1] == host || w[1] == ip.to_string()))
                && words.windows(2).any(|w| w[0] == "-j" && w[1] == chain)
        });
        if !jumps {
            return Some(format!("no POSTROUTING rule sends {ip} to {chain}"));
        }
    }
    None
}

/// The masquerade chains of `network` in a nat table as `save` shows it: `CNI-` + 24 hex
/// chains whose rules carry the network's comment, with the container id of the comment.
pub fn network_chains(save: &str, network: &str) -> Vec<(String, String)> {
    let prefix = format!("name: {} id: ", go_quote(network));
    let mut out: Vec<(String, String)> = Vec::new();
    for line in save.lines() {
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let Some(chain) = rule.split_whitespace().next() else {
            continue;
        };
        let is_masq_chain = chain.len() == 28
            && chain.starts_with("CNI-")
            && chain[4..].chars().all(|c| c.is_ascii_hexdigit());
        if !is_masq_chain || !rule.contains(" -j MASQUERADE") {
            continue;
        }
        let Some(pos) = rule.find("--comment ") else {
            continue;
        };
        let text = quoted_word(&rule[pos + 10..]);
        if let Some(id) = text.strip_prefix(&prefix) {
            let id = id.trim_matches('"').to_string();
            if !out.iter().any(|(c, _)| c == chain) {
                out.push((chain.to_string(), id));
            }
        }
    }
    out
}

/// The first word of `s`, unquoted as iptables-save quotes it (`"a \"b\""` is `a "b"`).
fn quoted_word(s: &str) -> String {
    let s = s.trim_start();
    let Some(rest) = s.strip_prefix('"') else {
        return s.split_whitespace().next().unwrap_or("").to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// Removes the chains of `network` whose container is not in `valid`.
pub fn gc(sockets: &mut Sockets, network: &str, valid: &[ValidAttachment]) -> Result<()> {
    for ipt in [Ipt::V4, Ipt::V6] {
        if !in_path(ipt.save()) || !may_have_chain(sockets, ipt, None) {
            continue;
        }
        let save = save_nat(ipt)?;
        let stale: Vec<String> = network_chains(&save, network)
            .into_iter()
            .filter(|(chain, _)| {
                !valid
                    .iter()
                    .any(|v| chain_name(network, &v.container_id) == *chain)
            })
            .map(|(chain, _)| chain)
            .collect();
        if stale.is_empty() {
            continue;
        }
        if let Some(script) = teardown_script(&save, &stale) {
            restore(ipt, &script)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn chain_name_is_gos() {
        // sha512("mynet" + "cid1") hex starts with these 24 digits.
        let want = format!("CNI-{}", &sha512_hex(b"mynetcid1", 24));
        assert_eq!(chain_name("mynet", "cid1"), want);
        assert_eq!(chain_name("mynet", "cid1").len(), 28);
    }

    #[test]
    fn comment_quotes_like_go() {
        assert_eq!(comment("net", "c1"), r#"name: "net" id: "c1""#);
        assert_eq!(comment("a\"b", "c"), r#"name: "a\"b" id: "c""#);
    }

    #[test]
    fn chain_rules_are_what_iptables_save_prints() {
        let att = Attachment::new("n", "c", "eth0");
        let ips = ["10.222.0.5/24".parse().unwrap(), "10.222.0.6/24".parse().unwrap()];
        let chain = chain_name("n", "c");
        let (own, jumps) = chain_rules(&att, &ips, "224.0.0.0/4");
        assert_eq!(own.len(), 2, "one ACCEPT for the shared subnet, one MASQUERADE");
        assert_eq!(jumps.len(), 2);
        let tables =
            cni_net::iptables::parse_save(&SAVE.replace("CNI-0123456789abcdef01234567", &chain)).unwrap();
        let saved = &tables[0];
        for rule in &own {
            assert!(saved.has_rule(&chain, rule), "{rule:?}");
        }
        assert!(saved.has_rule("POSTROUTING", &jumps[0]), "{:?}", jumps[0]);
        assert!(!saved.has_rule("POSTROUTING", &jumps[1]));
    }

    const SAVE: &str = r#"# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-0123456789abcdef01234567 - [0:0]
:CNI-DN-0123456789abcdef01234 - [0:0]
-A POSTROUTING -s 10.222.0.5/32 -m comment --comment "name: \"n\" id: \"c\"" -j CNI-0123456789abcdef01234567
-A POSTROUTING -s 10.222.0.9/32 -j OTHER
-A CNI-0123456789abcdef01234567 -d 10.222.0.0/24 -m comment --comment "name: \"n\" id: \"c\"" -j ACCEPT
-A CNI-0123456789abcdef01234567 ! -d 224.0.0.0/4 -m comment --comment "name: \"n\" id: \"c\"" -j MASQUERADE
-A CNI-DN-0123456789abcdef01234 -p tcp -m comment --comment "name: \"n\" id: \"c\"" -j MASQUERADE
COMMIT
"#;

    #[test]
    fn teardown_script_deletes_jumps_then_chain() {
        let chain = "CNI-0123456789abcdef01234567".to_string();
        let script = teardown_script(SAVE, std::slice::from_ref(&chain)).unwrap();
        assert_eq!(
            script,
            format!(
                "*nat\n-D POSTROUTING -s 10.222.0.5/32 -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\" -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n"
            )
        );
        assert!(teardown_script(SAVE, &["CNI-ffffffffffffffffffffffff".into()]).is_none());
    }

    #[test]
    fn verify_finds_chain_and_jumps() {
        let chain = "CNI-0123456789abcdef01234567";
        let ip: IpAddr = "10.222.0.5".parse().unwrap();
        assert_eq!(verify_save(SAVE, chain, &[ip]), None);
        let other: IpAddr = "10.222.0.6".parse().unwrap();
        assert!(verify_save(SAVE, chain, &[other]).unwrap().contains("10.222.0.6"));
        assert!(
            verify_save(SAVE, "CNI-ffffffffffffffffffffffff", &[ip])
                .unwrap()
                .contains("missing")
        );
    }

    #[test]
    fn network_chains_skip_portmap_chains() {
        let found = network_chains(SAVE, "n");
        assert_eq!(
            found,
            vec![("CNI-0123456789abcdef01234567".to_string(), "c".to_string())]
        );
        assert!(network_chains(SAVE, "other").is_empty());
    }
}
