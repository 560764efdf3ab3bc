//! DEL: best effort and idempotent. The container interface goes (its addresses are noted
//! first), then the IPAM allocation, the spoof-check rules and the masquerade rules, also when
//! the namespace is already gone (Go leaks the rules there). Every failure is reported.

use cni::netns::NetnsState;
use cni::plugin::{CmdArgs, Command};
use cni::{Error, Result, ResultExt};
use cni_net::Netns;

use crate::config::BridgeConf;
use crate::{ipam, masquerade, spoofcheck};

/// Runs DEL.
pub fn del(cmd: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(cmd)?;
    if let (Some(path), Some(NetnsState::Namespace)) = (&cmd.netns, cmd.netns_state) {
        remove_container_link(path, &cmd.ifname)?;
    }
    let mut errors: Vec<Error> = Vec::new();
    if let Some(ipam_type) = &conf.ipam_type
        && let Err(e) = ipam::run(Command::Del, ipam_type, cmd)
    {
        errors.push(e);
    }
    if conf.mac_spoof_chk
        && let Err(e) = spoofcheck::teardown(&spoofcheck::ref_id(&cmd.container_id, &cmd.ifname))
    {
        eprintln!("bridge: {e}");
    }
    if conf.is_layer3() && conf.ip_masq {
        let att = masquerade::Attachment::new(&conf.network, &cmd.container_id, &cmd.ifname);
        if let Err(e) = masquerade::teardown(&att) {
            errors.push(e);
        }
    }
    combine(errors)
}

/// Deletes CNI_IFNAME in the namespace at `path`; a missing link or namespace is fine.
fn remove_container_link(path: &std::path::Path, ifname: &str) -> Result<()> {
    let netns = match Netns::open(path) {
        Ok(netns) => netns,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e).internal(|| format!("failed to open netns {}", path.display())),
    };
    let mut inner = netns
        .socket()
        .internal(|| format!("cannot open a netlink socket in netns {}", path.display()))?;
    inner
        .delete_link_by_name(ifname)
        .map(drop)
        .internal(|| format!("failed to delete {ifname:?}"))
}

/// One error for many: the first, with the others in its details.
pub fn combine(errors: Vec<Error>) -> Result<()> {
    let mut iter = errors.into_iter();
    let Some(mut first) = iter.next() else {
        return Ok(());
    };
    for e in iter {
        if !first.details.is_empty() {
            first.details.push_str("; ");
        }
        first.details.push_str(&e.to_string());
    }
    Err(first)
}
