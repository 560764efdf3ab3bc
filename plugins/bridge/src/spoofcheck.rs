//! macspoofchk, Go's nftables layout: table `bridge nat`, base chain `PREROUTING` (filter,
//! priority -300, policy accept); per attachment the chains `cni-br-iface-<cid>-<if>` and
//! `cni-br-iface-<cid>-<if>-mac`. `PREROUTING` jumps to the first for frames from the host
//! port; it jumps to the second, which returns frames with the container's source MAC and drops
//! the rest. Every rule is commented `macspoofchk-<cid>-<if>`. Applied in-process.

use cni::{Error, Result, ResultExt};
use cni_net::nft::{Batch, Chain, ChainType, Family, Hook, NetfilterSocket, Policy, Rule, Table, priority};

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

/// The batch that sets up the rules of one attachment.
pub fn setup_batch(host_if: &str, mac: [u8; 6], id: &str) -> Batch {
    let f = Family::Bridge;
    let (iface, macc, c) = (iface_chain(id), mac_chain(id), comment(id));
    let mut batch = Batch::new();
    batch
        .add_table(Table::new(f, TABLE))
        .add_chain(
            Chain::new(f, TABLE, PREROUTING)
                .base(ChainType::Filter, Hook::Prerouting, priority::BRIDGE_DSTNAT)
                .policy(Policy::Accept),
        )
        .add_chain(Chain::new(f, TABLE, iface.clone()))
        .add_chain(Chain::new(f, TABLE, macc.clone()))
        .flush_chain(f, TABLE, iface.clone())
        .flush_chain(f, TABLE, macc.clone())
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

/// Installs the rules for the host port `host_if` and the container MAC `mac`.
pub fn setup(host_if: &str, mac: &str, id: &str) -> Result<()> {
    let parsed: cni_net::MacAddr = mac
        .parse()
        .map_err(|_| Error::internal(format!("failed to setup spoof-check: invalid MAC {mac:?}")))?;
    let mut nft = NetfilterSocket::new().internal(|| "failed to setup spoof-check".to_string())?;
    nft.apply(&setup_batch(host_if, parsed.0, id))
        .internal(|| "failed to setup spoof-check".to_string())
}

/// Removes the attachment's rules and chains; absent ones are fine.
pub fn teardown(id: &str) -> Result<()> {
    let f = Family::Bridge;
    let Ok(mut nft) = NetfilterSocket::new() else {
        return Ok(());
    };
    let chains = match nft.chains(f, TABLE) {
        Ok(chains) => chains,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e).internal(|| "failed to teardown spoof-check".to_string()),
    };
    let mut batch = Batch::new();
    if chains.iter().any(|c| c.name == PREROUTING) {
        let rules = nft
            .rules_with_comment(f, TABLE, PREROUTING, &comment(id))
            .internal(|| "failed to teardown spoof-check".to_string())?;
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
        .internal(|| "failed to teardown spoof-check".to_string())
}
