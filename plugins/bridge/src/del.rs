//! DEL: best effort and idempotent. The container interface, the IPAM allocation, the
//! spoof-check rules and the masquerade rules go, the last three also when the namespace is
//! already gone (Go leaks the rules there). Every failure is reported.
//!
//! Deleting a veth blocks in the kernel for 10-20 ms after the link is gone (`rcu_barrier()`
//! while the device is freed), and removing nftables rules makes closing the netfilter socket
//! wait for a grace period too. Both waits are handed to short-lived child processes
//! ([`cni_net::detach`]; the sockets through the [`Sockets`] that `main` passes down): DEL returns once the link is unlisted
//! and the rules are committed.
//! The link is deleted on its own thread while this one runs IPAM DEL and removes the rules.

use cni::netns::NetnsState;
use cni::plugin::{CmdArgs, Command};
use cni::{Error, Result};
use cni_net::Context;
use cni_net::Netns;
use cni_net::detach::Sockets;

use crate::config::BridgeConf;
use crate::shared::combine;
use crate::{ipam, masquerade, spoofcheck};

/// Runs DEL.
pub fn del(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<()> {
    let conf = BridgeConf::load(cmd)?;
    let mut errors: Vec<Error> = Vec::new();
    let mut link_removal = None;
    if let (Some(path), Some(NetnsState::Namespace)) = (&cmd.netns, cmd.netns_state) {
        match container_netns(path) {
            Ok(Some(netns)) => {
                let ifname = cmd.ifname.clone();
                link_removal = Some(std::thread::spawn(move || remove_link(&netns, &ifname)));
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if let Some(ipam_type) = &conf.ipam_type
        && let Err(e) = ipam::run(Command::Del, ipam_type, cmd)
    {
        errors.push(e);
    }
    cni::fault::point("bridge.del.ipam");
    // Go only logs a failed spoof-check teardown; a DEL that exits 0 must have removed
    // everything, so here it is an error.
    if conf.mac_spoof_chk
        && let Err(e) = spoofcheck::teardown(sockets, &spoofcheck::ref_id(&cmd.container_id, &cmd.ifname))
    {
        errors.push(e);
    }
    if conf.is_layer3() && conf.ip_masq {
        let att = masquerade::Attachment::new(&conf.network, &cmd.container_id, &cmd.ifname);
        if let Err(e) = masquerade::teardown(sockets, &att) {
            errors.push(e);
        }
        cni::fault::point("bridge.del.masquerade");
    }
    if let Some(removal) = link_removal {
        match removal.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.insert(0, e),
            Err(_) => errors.insert(0, Error::internal("deleting the container interface panicked")),
        }
    }
    combine(errors)
}

/// The namespace at `path`; `None` when it is gone.
fn container_netns(path: &std::path::Path) -> Result<Option<Netns>> {
    match Netns::open(path) {
        Ok(netns) => Ok(Some(netns)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).context(|| format!("failed to open netns {}", path.display())),
    }
}

/// Deletes `ifname` in `netns`, returning once the kernel has unlisted it; a missing link is
/// fine.
fn remove_link(netns: &Netns, ifname: &str) -> Result<()> {
    cni_net::detach::delete_link_unlisted(netns, ifname)
        .map(drop)
        .context(|| format!("failed to delete {ifname:?}"))
}
