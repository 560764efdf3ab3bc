//! CHECK: Go's verifications. IPAM CHECK first; then, against `prevResult`: the bridge (a bridge,
//! same MAC, promiscuous mode as configured), the container interface (a veth in the sandbox,
//! same MAC), the host veth (its peer, enslaved to the bridge), every address and route; with
//! `ipMasq`, the masquerade rules of every address (Go does not check them; the spec says CHECK
//! fails when something ADD set up is missing).

use cni::plugin::{CmdArgs, Command};
use cni::result::Interface;
use cni::{Error, Result};
use cni_net::Context;
use cni_net::route::MAIN_TABLE;
use cni_net::{Family, Link, LinkKind};

use crate::config::BridgeConf;
use crate::kernel::{Kernel, Netlink};
use crate::shared::Attachment;

/// Runs CHECK.
pub fn check<K: Kernel>(cmd: &CmdArgs, kernel: &mut K) -> Result<()> {
    let conf = BridgeConf::load(cmd)?;
    let netns_path = cmd
        .netns
        .as_ref()
        .ok_or_else(|| Error::invalid_environment("required env variables [CNI_NETNS] missing"))?;
    let sandbox = netns_path.to_string_lossy().into_owned();
    let netns = kernel
        .open_netns(netns_path)
        .context(|| format!("failed to open netns {sandbox:?}"))?;
    if let Some(ipam_type) = &conf.ipam_type {
        kernel.ipam_run(Command::Check, ipam_type, cmd)?;
    }
    let prev = cmd
        .prev_result()?
        .ok_or_else(|| Error::internal("Required prevResult missing"))?;

    let br_if = prev.interfaces.iter().find(|i| i.name == conf.bridge);
    let cont_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == cmd.ifname && i.sandbox.as_deref() == Some(sandbox.as_str()));

    let mut host = kernel
        .host_socket()
        .context(|| "cannot open a netlink socket".to_string())?;
    let bridge = match br_if {
        Some(i) => check_bridge(&mut host, i, &conf)?,
        None => {
            return Err(Error::internal(format!(
                "CNI created bridge {} in host namespace was not found",
                conf.bridge
            )));
        }
    };
    let Some(cont_if) = cont_if else {
        return Err(Error::internal(format!(
            "Sandbox in prevResult doesn't match configured netns: {sandbox}"
        )));
    };
    let mut inner = kernel
        .container_socket(&netns)
        .context(|| format!("cannot open a netlink socket in netns {sandbox:?}"))?;
    let container = check_container(&mut inner, cont_if)?;

    let mut veth_found = false;
    for intf in &prev.interfaces {
        if intf.name == bridge.name || std::ptr::eq(intf, cont_if) {
            continue;
        }
        if intf.sandbox.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Error::internal(format!(
                "Interface {} should not be in sandbox",
                intf.name
            )));
        }
        let link = host
            .find_link_by_name(&intf.name)
            .context(|| format!("Interface name {} not found", intf.name))?
            .ok_or_else(|| Error::internal(format!("Interface name {} not found", intf.name)))?;
        if link.kind != LinkKind::Veth
            || Some(link.index) != container.peer_index
            || link.peer_index != Some(container.index)
            || link.master != Some(bridge.index)
        {
            continue;
        }
        check_mac(intf, &link, || {
            format!(
                "Interface {} Mac doesn't match: {} not found",
                intf.name,
                mac_text(intf)
            )
        })?;
        veth_found = true;
        break;
    }
    if !veth_found {
        return Err(Error::internal(format!(
            "CNI veth created for bridge {} was not found",
            conf.bridge
        )));
    }
    check_addresses_and_routes(&mut inner, &cmd.ifname, container.index, &prev)?;
    if conf.ip_masq && conf.is_layer3() {
        let ips: Vec<_> = prev
            .ips
            .iter()
            .filter(|ip| {
                ip.interface
                    .is_none_or(|i| prev.interfaces.get(i).is_some_and(|x| x.name == cmd.ifname))
            })
            .map(|ip| ip.address)
            .collect();
        let att = Attachment::new(&conf.network, &cmd.container_id, &cmd.ifname);
        kernel.masq_verify(conf.masq_backend()?, &att, &ips)?;
    }
    Ok(())
}

fn mac_text(intf: &Interface) -> String {
    intf.mac.clone().unwrap_or_default()
}

fn check_mac(intf: &Interface, link: &Link, msg: impl FnOnce() -> String) -> Result<()> {
    match intf.mac.as_deref().filter(|m| !m.is_empty()) {
        Some(want) if Some(want.to_ascii_lowercase()) != link.mac.map(|m| m.to_string()) => {
            Err(Error::internal(msg()))
        }
        _ => Ok(()),
    }
}

fn check_bridge(host: &mut impl Netlink, intf: &Interface, conf: &BridgeConf) -> Result<Link> {
    if intf.sandbox.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(Error::internal(format!(
            "Interface {} should not be in sandbox",
            intf.name
        )));
    }
    let link = host
        .find_link_by_name(&intf.name)
        .context(|| format!("Interface name {} not found", intf.name))?
        .ok_or_else(|| Error::internal(format!("Interface name {} not found", intf.name)))?;
    if link.kind != LinkKind::Bridge {
        return Err(Error::internal(format!(
            "Interface {} does not have link type of bridge",
            intf.name
        )));
    }
    check_mac(intf, &link, || {
        format!(
            "Bridge interface {} Mac doesn't match: {}",
            intf.name,
            mac_text(intf)
        )
    })?;
    let promisc = host
        .link_is_promisc(link.index)
        .context(|| format!("Interface name {} not found", intf.name))?;
    if promisc != conf.promisc_mode {
        return Err(Error::internal(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {promisc} ",
            intf.name, conf.promisc_mode
        )));
    }
    Ok(link)
}

fn check_container(inner: &mut impl Netlink, intf: &Interface) -> Result<Link> {
    let link = inner
        .find_link_by_name(&intf.name)
        .context(|| format!("Interface name {} not found", intf.name))?
        .ok_or_else(|| Error::internal(format!("Interface name {} not found", intf.name)))?;
    if link.kind != LinkKind::Veth {
        return Err(Error::internal(format!(
            "Error: Container interface {} not of type veth",
            link.name
        )));
    }
    check_mac(intf, &link, || {
        format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            intf.name,
            mac_text(intf),
            link.mac.map(|m| m.to_string()).unwrap_or_default()
        )
    })?;
    Ok(link)
}

fn check_addresses_and_routes(
    inner: &mut impl Netlink,
    ifname: &str,
    index: u32,
    prev: &cni::CniResult,
) -> Result<()> {
    let addrs = inner
        .addresses(Some(index), None)
        .context(|| "Cannot obtain List of IP Addresses".to_string())?;
    for ip in &prev.ips {
        if ip
            .interface
            .is_some_and(|i| prev.interfaces.get(i).is_none_or(|x| x.name != ifname))
        {
            continue;
        }
        if !addrs.iter().any(|a| a.address == ip.address) {
            return Err(Error::internal(format!(
                "Failed to match addr {} on interface {ifname}",
                ip.address
            )));
        }
    }
    for r in &prev.routes {
        let family = if r.dst.is_ipv4() { Family::V4 } else { Family::V6 };
        let table = r.table.unwrap_or(MAIN_TABLE);
        let routes = inner
            .routes(family, Some(table))
            .context(|| format!("Expected Route {} not route table lookup error", r.dst))?;
        let found = routes.iter().any(|k| {
            k.dst.network() == r.dst.network()
                && k.dst.prefix() == r.dst.prefix()
                && r.gw.is_none_or(|gw| k.gateway == Some(gw))
        });
        if !found {
            return Err(Error::internal(format!(
                "Expected Route {} not found in routing table",
                r.dst
            )));
        }
    }
    Ok(())
}

/// CHECK against the recording fake ([`crate::fake`]), on what an ADD made there. No root,
/// no kernel.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cni::plugin::Command;
    use serde_json::{Value, json};

    use super::*;
    use crate::fake::{Fake, HOST, NETNS, cmd, ipam_result};

    fn conf() -> Value {
        json!({"name": "n", "bridge": "br-t", "isDefaultGateway": true, "ipMasq": true,
               "ipam": {"type": "host-local"}})
    }

    /// A fake after an ADD of [`conf`], and the CHECK arguments with its result.
    fn added() -> (Fake, CmdArgs) {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.30.7/24", "fd00:222:30::7/64"]));
        let result = crate::add::add(&cmd(Command::Add, conf()), &mut fake.clone()).unwrap();
        fake.take_calls();
        let mut conf = conf();
        conf["prevResult"] = result.to_value("1.0.0").unwrap();
        (fake, cmd(Command::Check, conf))
    }

    #[test]
    fn fake_check_after_add_passes_in_gos_order() {
        let (fake, args) = added();
        check(&args, &mut fake.clone()).unwrap();
        let calls = fake.take_calls();
        assert_eq!(calls[0], format!("{HOST}: open netns {NETNS}"));
        assert_eq!(calls[1], "ipam: CHECK host-local");
        assert_eq!(calls[2], format!("{HOST}: open socket"));
        assert_eq!(calls[3], format!("{HOST}: find link br-t"));
        assert_eq!(calls[4], format!("{HOST}: is #1 promisc"));
        assert_eq!(calls[5], format!("{NETNS}: open socket"));
        assert_eq!(calls[6], format!("{NETNS}: find link eth0"));
        assert_eq!(calls[7], format!("{HOST}: find link veth*"));
        assert_eq!(
            calls.last().unwrap(),
            "nft: masq verify None ctr1 10.222.30.7/24,fd00:222:30::7/64"
        );
    }

    #[test]
    fn fake_check_reports_a_missing_host_veth() {
        let (fake, args) = added();
        let veth = fake
            .state()
            .links
            .iter()
            .find(|l| l.place == HOST && l.link.name.starts_with("veth"))
            .unwrap()
            .link
            .name
            .clone();
        fake.state_mut().links.retain(|l| l.link.name != veth);
        let err = check(&args, &mut fake.clone()).unwrap_err();
        assert_eq!(err.msg, format!("Interface name {veth} not found"));
    }

    #[test]
    fn fake_check_reports_a_veth_on_another_bridge() {
        let (fake, args) = added();
        for l in fake.state_mut().links.iter_mut() {
            if l.place == HOST && l.link.kind == LinkKind::Veth {
                l.link.master = Some(99);
            }
        }
        let err = check(&args, &mut fake.clone()).unwrap_err();
        assert_eq!(err.msg, "CNI veth created for bridge br-t was not found");
    }

    #[test]
    fn fake_check_reports_what_is_missing() {
        type Breakage = fn(&Fake);
        let cases: [(&str, Breakage, &str); 4] = [
            (
                "bridge not a bridge",
                |f| {
                    for l in f.state_mut().links.iter_mut() {
                        if l.link.name == "br-t" {
                            l.link.kind = LinkKind::Device;
                        }
                    }
                },
                "Interface br-t does not have link type of bridge",
            ),
            (
                "promiscuous bridge",
                |f| {
                    for l in f.state_mut().links.iter_mut() {
                        if l.link.name == "br-t" {
                            l.promisc = true;
                        }
                    }
                },
                "Bridge interface br-t configured Promisc Mode false doesn't match current state: true ",
            ),
            (
                "address gone",
                |f| {
                    for l in f.state_mut().links.iter_mut() {
                        l.addrs.retain(|a| a.to_string() != "fd00:222:30::7/64");
                    }
                },
                "Failed to match addr fd00:222:30::7/64 on interface eth0",
            ),
            (
                "route gone",
                |f| f.state_mut().routes.retain(|(_, r)| r.dst.is_ipv6()),
                "Expected Route 0.0.0.0/0 not found in routing table",
            ),
        ];
        for (what, break_it, msg) in cases {
            let (fake, args) = added();
            break_it(&fake);
            let err = check(&args, &mut fake.clone()).unwrap_err();
            assert_eq!(err.msg, msg, "{what}");
        }
    }

    #[test]
    fn fake_check_reports_missing_masquerade_rules_and_a_failing_ipam_check() {
        let (fake, args) = added();
        fake.state_mut().rules.clear();
        let err = check(&args, &mut fake.clone()).unwrap_err();
        assert_eq!(err.msg, "masquerading: rules missing");

        let (fake, args) = added();
        fake.fail_on("ipam: CHECK");
        let err = check(&args, &mut fake.clone()).unwrap_err();
        assert!(err.msg.contains("injected failure of ipam: CHECK"), "{err}");
        // Nothing of the kernel is asked before IPAM CHECK but the netns open.
        assert_eq!(fake.take_calls().len(), 2);
    }
}
