//! macspoofchk, Go's nftables layout: table `bridge nat`, base chain `PREROUTING` (filter,
//! priority -300, policy accept); per attachment the chains `cni-br-iface-<cid>-<if>` and
//! `cni-br-iface-<cid>-<if>-mac`. `PREROUTING` jumps to the first for frames from the host
//! port; it jumps to the second, which returns frames with the container's source MAC and drops
//! the rest. Every rule is commented `macspoofchk-<cid>-<if>`. Applied in-process.

use cni::{Error, Result};
use cni_net::Context;
use cni_net::detach::Sockets;
use cni_net::nft::{Batch, Chain, ChainType, Family, Hook, Policy, Rule, Table, priority};

const TABLE: &str = "nat";
const PREROUTING: &str = "PREROUTING";

/// Go's per-attachment id: `<containerid>-<ifname>`.
pub fn ref_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

fn iface_chain(id: &str) -> String {
    format!("cni-br-iface-{id}")
}

fn mac_chain(id: &str) -> String {
    format!("cni-br-iface-{id}-mac")
}

fn comment(id: &str) -> String {
    format!("macspoofchk-{id}")
}

/// What a setup finds installed already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The table and its `PREROUTING` base chain exist.
    pub base: bool,
    /// The attachment's chain `cni-br-iface-<id>` exists (an ADD repeated without DEL).
    pub iface_chain: bool,
    /// The attachment's chain `cni-br-iface-<id>-mac` exists.
    pub mac_chain: bool,
    /// Handles of the attachment's jump rules in `PREROUTING`.
    pub jumps: Vec<u64>,
}

/// The batch that sets up the rules of one attachment. Objects that exist are not declared
/// again: re-declaring an existing chain is an update transaction, which nf_tables frees after
/// an RCU grace period and closing the socket then waits for (5-7 ms). Go declares all of them
/// on every ADD.
pub fn setup_batch(host_if: &str, mac: [u8; 6], id: &str, existing: &Existing) -> Batch {
    let f = Family::Bridge;
    let (iface, macc, c) = (iface_chain(id), mac_chain(id), comment(id));
    let mut batch = Batch::new();
    if !existing.base {
        batch.add_table(Table::new(f, TABLE)).add_chain(
            Chain::new(f, TABLE, PREROUTING)
                .base(ChainType::Filter, Hook::Prerouting, priority::BRIDGE_DSTNAT)
                .policy(Policy::Accept),
        );
    }
    for handle in &existing.jumps {
        batch.delete_rule(f, TABLE, PREROUTING, *handle);
    }
    for (name, exists) in [(&iface, existing.iface_chain), (&macc, existing.mac_chain)] {
        if exists {
            batch.flush_chain(f, TABLE, name.clone());
        } else {
            batch.add_chain(Chain::new(f, TABLE, name.clone()));
        }
    }
    batch
        .add_rule(
            Rule::new(f, TABLE, PREROUTING)
                .iifname(host_if)
                .jump(iface.clone())
                .comment(c.clone()),
        )
        .add_rule(Rule::new(f, TABLE, iface).jump(macc.clone()).comment(c.clone()))
        .add_rule(
            Rule::new(f, TABLE, macc.clone())
                .ether_saddr(mac)
                .return_()
                .comment(c.clone()),
        )
        .add_rule(Rule::new(f, TABLE, macc).drop().comment(c));
    batch
}

/// Installs the rules for the host port `host_if` and the container MAC `mac`: one dump of the
/// table's chains, then one batch.
pub fn setup(sockets: &mut Sockets, host_if: &str, mac: &str, id: &str) -> Result<()> {
    let parsed: cni_net::MacAddr = mac
        .parse()
        .map_err(|_| Error::internal(format!("failed to setup spoof-check: invalid MAC {mac:?}")))?;
    let failed = || "failed to setup spoof-check".to_string();
    let nft = sockets.netfilter().context(failed)?;
    let f = Family::Bridge;
    let chains = match nft.chains(f, TABLE) {
        Ok(chains) => chains,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e).context(failed),
    };
    let has = |name: &str| chains.iter().any(|c| c.name == name);
    let mut existing = Existing {
        base: chains.iter().any(|c| c.name == PREROUTING && c.hook.is_some()),
        iface_chain: has(&iface_chain(id)),
        mac_chain: has(&mac_chain(id)),
        jumps: Vec::new(),
    };
    if existing.iface_chain && existing.base {
        existing.jumps = nft
            .rules_with_comment(f, TABLE, PREROUTING, &comment(id))
            .context(failed)?
            .into_iter()
            .map(|r| r.handle)
            .collect();
    }
    nft.apply(&setup_batch(host_if, parsed.0, id, &existing))
        .context(failed)
}

/// Removes the attachment's rules and chains; absent ones are fine.
pub fn teardown(sockets: &mut Sockets, id: &str) -> Result<()> {
    let f = Family::Bridge;
    let nft = sockets
        .netfilter()
        .context(|| "failed to teardown spoof-check".to_string())?;
    let chains = match nft.chains(f, TABLE) {
        Ok(chains) => chains,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e).context(|| "failed to teardown spoof-check".to_string()),
    };
    let mut batch = Batch::new();
    if chains.iter().any(|c| c.name == PREROUTING) {
        let rules = nft
            .rules_with_comment(f, TABLE, PREROUTING, &comment(id))
            .context(|| "failed to teardown spoof-check".to_string())?;
        for r in rules {
            batch.delete_rule(f, TABLE, PREROUTING, r.handle);
        }
    }
    for name in [iface_chain(id), mac_chain(id)] {
        if chains.iter().any(|c| c.name == name) {
            batch.flush_chain(f, TABLE, name.clone());
            batch.delete_chain(f, TABLE, name);
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    nft.apply(&batch)
        .context(|| "failed to teardown spoof-check".to_string())
}

/// GC: removes the spoof-check rules of attachments of the bridge `bridge` that are not in
/// `valid`, and of any attachment whose host interface is gone (its rules can match nothing
/// any more, whatever network it was on).
///
/// The chains carry no network name (Go's layout), so an attachment is this network's when
/// the interface its `PREROUTING` jump matches (`iifname`) is a port of `bridge`; an
/// attachment of another network, with a live interface on another bridge, is left alone.
pub fn gc(sockets: &mut Sockets, bridge: &str, valid: &[crate::shared::ValidAttachment]) -> Result<()> {
    let f = Family::Bridge;
    let fail = || "failed to garbage-collect spoof-check rules".to_string();
    let nft = sockets.netfilter().context(fail)?;
    let chains = match nft.chains(f, TABLE) {
        Ok(chains) => chains,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e).context(fail),
    };
    if !chains.iter().any(|c| c.name == PREROUTING) {
        return Ok(());
    }
    let keep: Vec<String> = valid
        .iter()
        .map(|v| comment(&ref_id(&v.container_id, &v.ifname)))
        .collect();
    let mut links = cni_net::Socket::new().context(fail)?;
    let bridge_index = match links.link_by_name(bridge) {
        Ok(link) => Some(link.index),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e).context(fail),
    };
    let mut batch = Batch::new();
    for rule in nft.rules(f, TABLE, PREROUTING).context(fail)? {
        let Some(id) = rule
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix("macspoofchk-"))
        else {
            continue;
        };
        let Some(iifname) = rule.compared.first() else {
            continue;
        };
        let iifname = String::from_utf8_lossy(iifname)
            .trim_end_matches('\0')
            .to_string();
        let garbage = match links.link_by_name(&iifname) {
            Err(e) if e.is_not_found() => true,
            Err(e) => return Err(e).context(fail),
            Ok(link) => {
                bridge_index.is_some()
                    && link.master == bridge_index
                    && !keep.iter().any(|k| Some(k.as_str()) == rule.comment.as_deref())
            }
        };
        if !garbage {
            continue;
        }
        batch.delete_rule(f, TABLE, PREROUTING, rule.handle);
        for name in [iface_chain(id), mac_chain(id)] {
            if chains.iter().any(|c| c.name == name) {
                batch.flush_chain(f, TABLE, name.clone());
                batch.delete_chain(f, TABLE, name);
            }
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
    fn setup_batch_declares_only_what_is_missing() {
        let mac = [2, 0, 0, 0, 0, 1];
        let fresh = setup_batch("veth01", mac, "c-eth0", &Existing::default());
        let usual = setup_batch(
            "veth01",
            mac,
            "c-eth0",
            &Existing {
                base: true,
                ..Existing::default()
            },
        );
        let repeated = setup_batch(
            "veth01",
            mac,
            "c-eth0",
            &Existing {
                base: true,
                iface_chain: true,
                mac_chain: true,
                jumps: vec![4],
            },
        );
        let described = |b: &Batch| b.encode(1).unwrap().descriptions.join("; ");
        let (fresh, usual, repeated) = (described(&fresh), described(&usual), described(&repeated));
        assert!(
            fresh.contains("add table") && fresh.contains("PREROUTING"),
            "{fresh}"
        );
        assert!(!usual.contains("add table"), "{usual}");
        assert!(!usual.contains("add chain bridge nat PREROUTING"), "{usual}");
        assert!(!usual.contains("delete") && !usual.contains("flush"), "{usual}");
        assert!(repeated.contains("delete rule"), "{repeated}");
        assert!(repeated.contains("flush"), "{repeated}");
        assert!(!repeated.contains("add chain"), "{repeated}");
    }
}
