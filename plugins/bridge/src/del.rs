//! DEL: best effort and idempotent. The container interface, the IPAM allocation, the
//! spoof-check rules and the masquerade rules go, the last three also when the namespace is
//! already gone (Go leaks the rules there). Every failure is reported.
//!
//! Deleting a veth blocks in the kernel for 10-20 ms after the link is gone (`rcu_barrier()`
//! while the device is freed), and removing nftables rules makes closing the netfilter socket
//! wait for a grace period too. Both waits are handed to short-lived child processes
//! ([`cni_net::detach`]; the sockets through the [`Kernel`] that `main` passes down): DEL returns once the link is unlisted
//! and the rules are committed.
//! The link is deleted on its own thread while this one runs IPAM DEL and removes the rules.

use cni::netns::NetnsState;
use cni::plugin::{CmdArgs, Command};
use cni::{Error, Result};
use cni_net::Context;

use crate::config::BridgeConf;
use crate::kernel::{Kernel, LinkRemoval};
use crate::shared::{Attachment, combine};
use crate::spoofcheck;

/// Runs DEL.
pub fn del<K: Kernel>(cmd: &CmdArgs, kernel: &mut K) -> Result<()> {
    let conf = BridgeConf::load(cmd)?;
    let mut errors: Vec<Error> = Vec::new();
    let mut link_removal = None;
    if let (Some(path), Some(NetnsState::Namespace)) = (&cmd.netns, cmd.netns_state) {
        match container_netns(kernel, path) {
            Ok(Some(netns)) => link_removal = Some(kernel.start_link_removal(netns, &cmd.ifname)),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if let Some(ipam_type) = &conf.ipam_type
        && let Err(e) = kernel.ipam_run(Command::Del, ipam_type, cmd)
    {
        errors.push(e);
    }
    cni::fault::point("bridge.del.ipam");
    // Go only logs a failed spoof-check teardown; a DEL that exits 0 must have removed
    // everything, so here it is an error.
    if conf.mac_spoof_chk
        && let Err(e) = kernel.spoofcheck_teardown(&spoofcheck::ref_id(&cmd.container_id, &cmd.ifname))
    {
        errors.push(e);
    }
    if conf.is_layer3() && conf.ip_masq {
        let att = Attachment::new(&conf.network, &cmd.container_id, &cmd.ifname);
        if let Err(e) = kernel.masq_teardown(&att) {
            errors.push(e);
        }
        cni::fault::point("bridge.del.masquerade");
    }
    if let Some(removal) = link_removal {
        match finish_removal(removal, &cmd.ifname) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.insert(0, e),
            Err(_) => errors.insert(0, Error::internal("deleting the container interface panicked")),
        }
    }
    combine(errors)
}

/// The namespace at `path`; `None` when it is gone.
fn container_netns<K: Kernel>(kernel: &mut K, path: &std::path::Path) -> Result<Option<K::Netns>> {
    match kernel.open_netns(path) {
        Ok(netns) => Ok(Some(netns)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).context(|| format!("failed to open netns {}", path.display())),
    }
}

/// Waits for the deletion of `ifname` ([`Kernel::start_link_removal`]), which returns once the
/// kernel has unlisted it; a missing link is fine. `Err(())` when its thread panicked.
fn finish_removal(removal: LinkRemoval, ifname: &str) -> std::result::Result<Result<()>, ()> {
    removal.join().map(|deleted| {
        deleted
            .map(drop)
            .context(|| format!("failed to delete {ifname:?}"))
    })
}
