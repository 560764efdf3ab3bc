//! ipMasq: SNAT of traffic from the container's addresses to anything outside its subnet,
//! in Go's exact layouts so either implementation's DEL removes the other's rules.
//!
//! - nftables (in-process, one atomic batch): table `inet cni_plugins_masquerade`, base chain
//!   `postrouting` (nat, srcnat) with `return` for multicast and `goto masq_checks`; in
//!   `masq_checks` one rule per address
//!   `ip saddr <ip> ip daddr != <subnet> masquerade`, commented
//!   `<hash16(net)>-<hash16(ifname:cid)>, net: <net>, if: <ifname>, id: <cid>`.
//! - iptables (see [`crate::masquerade_iptables`]): chain `CNI-<24 hex of sha512(net+cid)>`.
//!
//! Go re-creates the table and re-flushes `postrouting` on every ADD. Here the base chain is
//! listed first and written only when it is missing or differs, so a usual ADD sends nothing
//! but its own rules: an nf_tables batch that touches existing chains costs 5-7 ms more (see
//! [`setup_batch`]), and (re)registering the nat hook about 5 ms.
//!
//! Teardown removes both, since the attachment may have been made by another version or
//! configuration.

use cni::ResultExt;
use cni::{Error, Result};
use cni_net::Context;
use cni_net::detach::Sockets;
use cni_net::nft::{
    Batch, Chain, ChainType, Family, Hook, NetfilterSocket, Rule, RuleInfo, Table, ct_state, priority,
};
use ipnetwork::IpNetwork;

use crate::masquerade_iptables;
pub use crate::shared::{Attachment, MasqBackend, network_hash};
use crate::shared::{ValidAttachment, combine};

/// Go's table, chain and comments.
pub const TABLE: &str = "cni_plugins_masquerade";
/// The chain holding one rule per address.
pub const CHECKS_CHAIN: &str = "masq_checks";
/// The base chain.
pub const POSTROUTING: &str = "postrouting";
/// rcni's chain in Go's table that keeps the namespace's connection tracking on (see
/// [`pin_rule`]); no hook, nothing jumps to it, so no packet ever runs it.
pub const CONNTRACK_PIN_CHAIN: &str = "rcni_conntrack_pin";

/// The backend the config names, else Go's default ([`default_backend`]), decided here
/// where it is used rather than when the config is parsed.
pub fn backend(named: Option<MasqBackend>) -> MasqBackend {
    named.unwrap_or_else(default_backend)
}

/// Go's default: iptables when it is installed, else nftables.
pub fn default_backend() -> MasqBackend {
    if masquerade_iptables::available() {
        MasqBackend::Iptables
    } else {
        MasqBackend::Nftables
    }
}

/// The first half of a setup, which needs no address yet and so runs while IPAM does: what
/// is already installed.
pub enum Prepared {
    /// nftables: whether the table and base chain must be (re)written, whether the
    /// conntrack pin must be written, and the handles of rules the attachment has from an
    /// earlier ADD.
    Nftables {
        with_base: bool,
        with_pin: bool,
        stale: Vec<u64>,
    },
    /// iptables: all of it happens in [`install`].
    Iptables,
}

/// Reads what the attachment's setup depends on (one dump of the table's rules on nftables,
/// nothing on iptables).
pub fn prepare(sockets: &mut Sockets, backend: MasqBackend, att: &Attachment) -> Result<Prepared> {
    match backend {
        MasqBackend::Iptables => Ok(Prepared::Iptables),
        MasqBackend::Nftables => {
            let nft = nft_socket(sockets)?;
            let rules = match nft.table_rules(Family::Inet, TABLE) {
                Ok(rules) => rules,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e).context(|| format!("cannot list the rules of inet {TABLE}")),
            };
            let in_chain = |chain: &'static str| rules.iter().filter(move |r| r.chain == chain);
            let with_base = !base_matches(in_chain(POSTROUTING))?;
            let with_pin = with_base || in_chain(CONNTRACK_PIN_CHAIN).count() != 1;
            let prefix = att.nft_hash();
            let stale = in_chain(CHECKS_CHAIN)
                .filter(|r| r.comment.as_deref().is_some_and(|c| c.starts_with(&prefix)))
                .map(|r| r.handle)
                .collect();
            Ok(Prepared::Nftables {
                with_base,
                with_pin,
                stale,
            })
        }
    }
}

/// Installs the rules for `ips` (addresses with their prefix length): one batch on nftables,
/// one `iptables-restore` per family on iptables.
pub fn install(sockets: &mut Sockets, prepared: Prepared, att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
    match prepared {
        Prepared::Iptables => masquerade_iptables::setup(sockets, att, ips),
        Prepared::Nftables {
            with_base,
            with_pin,
            stale,
        } => {
            let batch = setup_batch(att, ips, &stale, with_base, with_pin)?;
            nft_socket(sockets)?
                .apply(&batch)
                .context(|| "failed to set up masquerading with nftables".to_string())
        }
    }
}

/// The rules of the base chain `postrouting`: multicast returns, everything else goes to
/// `masq_checks`.
fn postrouting_rules() -> Result<Vec<Rule>> {
    let f = Family::Inet;
    Ok(vec![
        Rule::new(f, TABLE, POSTROUTING)
            .daddr(net("224.0.0.0/4")?)
            .return_(),
        Rule::new(f, TABLE, POSTROUTING).daddr(net("ff00::/8")?).return_(),
        Rule::new(f, TABLE, POSTROUTING).goto(CHECKS_CHAIN),
    ])
}

/// The batch for one attachment: with `with_base`, (re)creates the table and both chains and
/// rewrites `postrouting` (what Go does on every ADD); with `with_pin`, (re)writes the
/// conntrack pin ([`pin_rule`]); then replaces the attachment's `stale` rules (handles) and
/// adds one rule per address to `masq_checks`.
///
/// Without `with_base` the batch holds only rule additions (and deletions of stale rules), so
/// the kernel has nothing to free after an RCU grace period: touching an existing chain is an
/// update whose transaction is freed by a deferred work, and closing the socket waits for that
/// work (5-7 ms measured).
pub fn setup_batch(
    att: &Attachment,
    ips: &[IpNetwork],
    stale: &[u64],
    with_base: bool,
    with_pin: bool,
) -> Result<Batch> {
    let f = Family::Inet;
    let mut batch = Batch::new();
    if with_base {
        batch
            .add_table(
                Table::new(f, TABLE)
                    .comment("Masquerading for plugins from github.com/containernetworking/plugins"),
            )
            .add_chain(Chain::new(f, TABLE, CHECKS_CHAIN).comment(
                "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet",
            ))
            .add_chain(Chain::new(f, TABLE, POSTROUTING).base(
                ChainType::Nat,
                Hook::Postrouting,
                priority::SRCNAT,
            ))
            .flush_chain(f, TABLE, POSTROUTING);
        for rule in postrouting_rules()? {
            batch.add_rule(rule);
        }
    }
    if with_pin {
        batch
            .add_chain(
                Chain::new(f, TABLE, CONNTRACK_PIN_CHAIN)
                    .comment("rcni: keeps connection tracking on between containers (never evaluated)"),
            )
            .flush_chain(f, TABLE, CONNTRACK_PIN_CHAIN)
            .add_rule(pin_rule());
    }
    for handle in stale {
        batch.delete_rule(f, TABLE, CHECKS_CHAIN, *handle);
    }
    let comment = att.nft_comment();
    for ip in ips {
        batch.add_rule(address_rule(*ip, &comment)?);
    }
    Ok(batch)
}

/// `ip saddr <ip> ip daddr != <subnet> masquerade comment <comment>` for `ip` with its prefix.
fn address_rule(ip: IpNetwork, comment: &str) -> Result<Rule> {
    let subnet = IpNetwork::new(ip.network(), ip.prefix()).internal(|| format!("invalid address {ip}"))?;
    let host = IpNetwork::new(ip.ip(), if ip.is_ipv4() { 32 } else { 128 })
        .internal(|| format!("invalid address {ip}"))?;
    Ok(Rule::new(Family::Inet, TABLE, CHECKS_CHAIN)
        .saddr(host)
        .daddr_ne(subnet)
        .masquerade()
        .comment(comment.to_string()))
}

/// The one rule of [`CONNTRACK_PIN_CHAIN`]: a `ct state` match, whose expression holds a
/// reference on the namespace's connection tracking for IPv4 and IPv6 for as long as it
/// exists.
///
/// Why: each `masquerade` rule in this (inet) table holds such a reference too, and when the
/// count goes from 0 to 1 the kernel walks the whole conntrack table (`nf_ct_netns_do_get`
/// fixing up TCP window tracking, `nf_ct_iterate_cleanup`). Without the pin, every ADD after
/// the last masqueraded container of the host went paid that walk: 90-100 ms with 100,000
/// conntrack entries (`scripts/bench --busy`, bridge-masq-add), against 4 ms on an empty host.
/// With it the walk happens once, when the pin is first written. The price: conntrack stays
/// registered in the host namespace for both families while the table exists, as it is
/// anyway while any masqueraded container is attached.
fn pin_rule() -> Rule {
    Rule::new(Family::Inet, TABLE, CONNTRACK_PIN_CHAIN).ct_state(ct_state::ESTABLISHED)
}

/// Whether `postrouting` exists and holds exactly our rules (compared by their expression
/// sequences): then the table and `masq_checks` exist too (the `goto` pins the chain), and
/// nothing but the attachment's rules needs sending.
fn base_is_current(nft: &mut NetfilterSocket) -> Result<bool> {
    match nft.rules(Family::Inet, TABLE, POSTROUTING) {
        Ok(rules) => base_matches(rules.iter()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e).context(|| format!("cannot list the rules of inet {TABLE} {POSTROUTING}")),
    }
}

/// Whether `have`, the rules of `postrouting` in order, are exactly ours.
fn base_matches<'a>(have: impl Iterator<Item = &'a RuleInfo>) -> Result<bool> {
    let want = postrouting_rules()?;
    let have: Vec<&RuleInfo> = have.collect();
    Ok(have.len() == want.len()
        && have.iter().zip(&want).all(|(h, w)| {
            h.comment.is_none()
                && h.expressions
                    .iter()
                    .map(String::as_str)
                    .eq(w.exprs.iter().map(|e| e.name()))
        }))
}

fn net(text: &str) -> Result<IpNetwork> {
    text.parse().internal(|| format!("invalid network {text}"))
}

fn nft_socket(sockets: &mut Sockets) -> Result<&mut NetfilterSocket> {
    sockets
        .netfilter()
        .context(|| "cannot open a netfilter socket".to_string())
}

/// Handles of the rules in `masq_checks` whose comment starts with `prefix` (with the comment).
fn rules_with_prefix(nft: &mut NetfilterSocket, prefix: &str) -> Result<Vec<(u64, String)>> {
    match nft.rules(Family::Inet, TABLE, CHECKS_CHAIN) {
        Ok(rules) => Ok(rules
            .into_iter()
            .filter_map(|r| r.comment.filter(|c| c.starts_with(prefix)).map(|c| (r.handle, c)))
            .collect()),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e).context(|| format!("cannot list the rules of inet {TABLE} {CHECKS_CHAIN}")),
    }
}

/// CHECK: the attachment's rules for `ips` are installed on `backend`. Missing rules (or, on
/// nftables, a missing or altered `postrouting`) are an error.
pub fn verify(
    sockets: &mut Sockets,
    backend: MasqBackend,
    att: &Attachment,
    ips: &[IpNetwork],
) -> Result<()> {
    match backend {
        MasqBackend::Iptables => masquerade_iptables::verify(att, ips),
        MasqBackend::Nftables => {
            let nft = nft_socket(sockets)?;
            if !base_is_current(nft)? {
                return Err(Error::internal(format!(
                    "masquerading: chain inet {TABLE} {POSTROUTING} is missing or altered"
                )));
            }
            let comment = att.nft_comment();
            let have = rules_with_prefix(nft, &att.nft_hash())?
                .into_iter()
                .filter(|(_, c)| *c == comment)
                .count();
            if have < ips.len() {
                return Err(Error::internal(format!(
                    "masquerading: {have} of {} rules of {:?} in inet {TABLE} {CHECKS_CHAIN}",
                    ips.len(),
                    att.container_id
                )));
            }
            Ok(())
        }
    }
}

/// Removes the attachment's rules of both backends; absent rules are fine.
pub fn teardown(sockets: &mut Sockets, att: &Attachment) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = masquerade_iptables::teardown(sockets, att) {
        errors.push(e);
    }
    if let Err(e) = teardown_nft(sockets, att) {
        errors.push(e);
    }
    combine(errors)
}

fn teardown_nft(sockets: &mut Sockets, att: &Attachment) -> Result<()> {
    let nft = match sockets.netfilter() {
        Ok(nft) => nft,
        // No nf_tables in this kernel: nothing of ours can be there.
        Err(_) => return Ok(()),
    };
    let rules = rules_with_prefix(nft, &att.nft_hash())?;
    if rules.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    for (handle, _) in rules {
        batch.delete_rule(Family::Inet, TABLE, CHECKS_CHAIN, handle);
    }
    nft.apply(&batch)
        .context(|| "failed to remove masquerading rules from nftables".to_string())
}

/// Removes the masquerade rules of `network` whose attachment is not in `valid`, on both
/// backends.
pub fn gc(sockets: &mut Sockets, network: &str, valid: &[ValidAttachment]) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = masquerade_iptables::gc(sockets, network, valid) {
        errors.push(e);
    }
    if let Err(e) = gc_nft(sockets, network, valid) {
        errors.push(e);
    }
    combine(errors)
}

fn gc_nft(sockets: &mut Sockets, network: &str, valid: &[ValidAttachment]) -> Result<()> {
    let fail = || "failed to garbage-collect nftables masquerading rules".to_string();
    let nft = sockets.netfilter().context(fail)?;
    let keep: Vec<String> = valid
        .iter()
        .map(|v| Attachment::new(network, &v.container_id, &v.ifname).nft_comment())
        .collect();
    let mut batch = Batch::new();
    for (handle, comment) in rules_with_prefix(nft, &network_hash(network))? {
        if !keep.contains(&comment) {
            batch.delete_rule(Family::Inet, TABLE, CHECKS_CHAIN, handle);
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    nft.apply(&batch).context(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn comment_has_gos_shape() {
        let att = Attachment::new("mynet", "cid1", "eth0");
        let c = att.nft_comment();
        let (hash, rest) = c.split_once(", ").unwrap();
        assert_eq!(hash.len(), 33);
        assert!(hash.starts_with(&network_hash("mynet")));
        assert_eq!(rest, "net: mynet, if: eth0, id: cid1");
        let long = Attachment::new("n", &"x".repeat(200), "eth0");
        assert_eq!(long.nft_comment().len(), 128);
    }

    #[test]
    fn setup_batch_encodes() {
        let att = Attachment::new("mynet", "cid1", "eth0");
        let ips = [
            "10.222.0.5/24".parse().unwrap(),
            "fd00:222::5/64".parse().unwrap(),
        ];
        for (with_base, with_pin) in [(true, true), (false, true), (false, false)] {
            let batch = setup_batch(&att, &ips, &[7], with_base, with_pin).unwrap();
            batch.encode(1).unwrap();
        }
    }
}
