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

/// DEL against the recording fake ([`crate::fake`]). No root, no kernel.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cni::netns::NetnsState;
    use cni::plugin::Command;
    use serde_json::{Value, json};

    use super::*;
    use crate::fake::{Fake, HOST, NETNS, cmd, ipam_result};

    fn conf() -> Value {
        json!({"name": "n", "bridge": "br-t", "isGateway": true, "ipMasq": true,
               "macspoofchk": true, "ipam": {"type": "host-local"}})
    }

    /// A fake after a successful ADD of [`conf`].
    fn added() -> Fake {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.20.7/24"]));
        crate::add::add(&cmd(Command::Add, conf()), &mut fake.clone()).unwrap();
        fake.take_calls();
        fake
    }

    #[test]
    fn fake_del_removes_the_link_allocation_and_rules() {
        let fake = added();
        del(&cmd(Command::Del, conf()), &mut fake.clone()).unwrap();
        assert_eq!(
            fake.take_calls(),
            [
                format!("{HOST}: open netns {NETNS}"),
                format!("{NETNS}: delete link eth0 (unlisted)"),
                "ipam: DEL host-local".to_string(),
                "nft: spoofcheck teardown ctr1-eth0".to_string(),
                "nft: masq teardown ctr1".to_string(),
            ]
        );
        // Both ends of the veth are gone; the bridge stays.
        assert_eq!(fake.link_names(HOST), ["br-t"]);
        assert!(fake.link_names(NETNS).is_empty());
        assert!(fake.state().rules.is_empty());
    }

    #[test]
    fn fake_del_with_a_missing_netns_still_removes_allocation_and_rules() {
        for state in [
            NetnsState::Missing,
            NetnsState::NotNamespace,
            NetnsState::Namespace,
        ] {
            let fake = added();
            // Gone between the runtime's inspection and the open: the same as missing.
            fake.without_netns(NETNS);
            let mut args = cmd(Command::Del, conf());
            args.netns_state = Some(state);
            del(&args, &mut fake.clone()).unwrap();
            let calls = fake.take_calls();
            assert_eq!(
                calls.iter().filter(|c| !c.starts_with(HOST)).collect::<Vec<_>>(),
                [
                    "ipam: DEL host-local",
                    "nft: spoofcheck teardown ctr1-eth0",
                    "nft: masq teardown ctr1",
                ],
                "{state:?}"
            );
            assert!(fake.state().rules.is_empty(), "{state:?}");
        }
    }

    #[test]
    fn fake_del_goes_on_past_failures_and_reports_them_all() {
        let fake = added();
        fake.fail_on("ipam: DEL").fail_on("delete link eth0");
        let err = del(&cmd(Command::Del, conf()), &mut fake.clone()).unwrap_err();
        // The link's error first, then the others in its details.
        assert_eq!(err.msg, "failed to delete \"eth0\"");
        assert!(
            err.details.contains("injected failure of ipam: DEL host-local"),
            "{err:?}"
        );
        let calls = fake.take_calls();
        assert!(calls.contains(&"nft: spoofcheck teardown ctr1-eth0".to_string()));
        assert!(calls.contains(&"nft: masq teardown ctr1".to_string()));
        assert!(fake.state().rules.is_empty());
    }

    #[test]
    fn fake_del_without_ipam_or_rules_only_removes_the_link() {
        let fake = Fake::new();
        let conf = json!({"name": "n", "bridge": "br-t"});
        crate::add::add(&cmd(Command::Add, conf.clone()), &mut fake.clone()).unwrap();
        fake.take_calls();
        del(&cmd(Command::Del, conf.clone()), &mut fake.clone()).unwrap();
        assert_eq!(
            fake.take_calls(),
            [
                format!("{HOST}: open netns {NETNS}"),
                format!("{NETNS}: delete link eth0 (unlisted)"),
            ]
        );
        // A second DEL finds nothing and is fine.
        del(&cmd(Command::Del, conf), &mut fake.clone()).unwrap();
    }
}
