//! DEL: best effort and idempotent. The container interface, the IPAM allocation, the
//! spoof-check rules and the masquerade rules go, the last three also when the namespace is
//! already gone (Go leaks the rules there). Every failure is reported.
//!
//! Deleting a veth blocks in the kernel for 15-20 ms (RCU grace periods while the device is
//! unregistered), and removing nftables rules makes closing the netfilter socket wait for one
//! grace period too. So the link is deleted on its own thread while this one runs IPAM DEL and
//! removes the rules: the waits overlap instead of adding up.

use cni::netns::NetnsState;
use cni::plugin::{CmdArgs, Command};
use cni::{Error, Result, ResultExt};
use cni_net::{Netns, Socket};

use crate::config::BridgeConf;
use crate::{ipam, masquerade, spoofcheck};

/// Runs DEL.
pub fn del(cmd: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(cmd)?;
    let mut errors: Vec<Error> = Vec::new();
    let mut link_removal = None;
    if let (Some(path), Some(NetnsState::Namespace)) = (&cmd.netns, cmd.netns_state) {
        match container_socket(path) {
            Ok(Some(inner)) => {
                let ifname = cmd.ifname.clone();
                link_removal = Some(std::thread::spawn(move || remove_link(inner, &ifname)));
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
    if let Some(removal) = link_removal {
        match removal.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.insert(0, e),
            Err(_) => errors.insert(0, Error::internal("deleting the container interface panicked")),
        }
    }
    combine(errors)
}

/// A netlink socket inside the namespace at `path`; `None` when the namespace is gone.
fn container_socket(path: &std::path::Path) -> Result<Option<Socket>> {
    let netns = match Netns::open(path) {
        Ok(netns) => netns,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e).internal(|| format!("failed to open netns {}", path.display())),
    };
    netns
        .socket()
        .map(Some)
        .internal(|| format!("cannot open a netlink socket in netns {}", path.display()))
}

/// Deletes `ifname` through `inner`, a socket of the container namespace; a missing link is fine.
fn remove_link(mut inner: Socket, ifname: &str) -> Result<()> {
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
