//! ADD: bridge, veth pair, port settings, spoof check, IPAM, container addresses and routes,
//! gateway, masquerade, port-state wait, result.
//!
//! Every change that belongs to this attachment registers its undo: the veth pair (with it go
//! the port settings, the container's addresses, routes and per-interface sysctls), the
//! spoof-check rules, the IPAM allocation and the masquerade rules. What is shared by all
//! attachments of the network stays, as in Go: the bridge, its gateway addresses and MAC pin,
//! the `<bridge>.<vlan>` gateway interface and the forwarding sysctls. Another ADD may have
//! started using them the moment they existed, so removing them on failure could break it.

use std::time::{Duration, Instant};

use cni::plugin::{CmdArgs, Command};
use cni::result::Dns;
use cni::{CniResult, Code, Error, Result};
use cni_net::{Context, Link, OperState};

use crate::config::BridgeConf;
use crate::kernel::{Kernel, Netlink};
use crate::shared::Attachment;
use crate::undo::Undo;
use crate::{bridge_link, ipam, l3, result, spoofcheck, veth, vlan};

/// How long the host port may take to become operationally up (Go: 2.55 s in total).
const PORT_UP_TIMEOUT: Duration = Duration::from_millis(2550);

/// IPAM plugins that only hand out addresses and never look at the container interface: they
/// run while the bridge and the veth are made. Any other (dhcp talks through the interface)
/// runs after the veth exists, as in Go.
const INTERFACE_FREE_IPAM: [&str; 2] = ["host-local", "static"];

/// Runs ADD; on failure everything done so far is undone, IPAM DEL included.
pub fn add<K: Kernel>(cmd: &CmdArgs, kernel: &mut K) -> Result<CniResult> {
    let conf = BridgeConf::load(cmd)?;
    conf.check_for_add()?;
    // The IPAM exec is the longest step of an ADD: it starts before anything else, and its
    // answer is read once the links are made.
    let early_ipam = conf
        .ipam_type
        .as_deref()
        .filter(|t| INTERFACE_FREE_IPAM.contains(t))
        .map(|ipam_type| kernel.ipam_start_add(ipam_type, cmd));
    let mut host = match kernel.host_socket() {
        Ok(host) => host,
        Err(e) => {
            release_early_ipam(kernel, early_ipam, &conf, cmd);
            return Err(e).context(|| "cannot open a netlink socket".to_string());
        }
    };
    let mut undo = Undo::new();
    match attach(cmd, &conf, &mut host, kernel, &mut undo, early_ipam) {
        Ok(result) => {
            undo.commit();
            Ok(result)
        }
        Err(e) => {
            undo.rollback(&mut host, kernel);
            Err(e)
        }
    }
}

/// Waits for an IPAM ADD started by [`add`] that is no longer wanted and releases what it
/// allocated.
fn release_early_ipam<K: Kernel>(
    kernel: &mut K,
    early_ipam: Option<Result<K::IpamAdd>>,
    conf: &BridgeConf,
    cmd: &CmdArgs,
) {
    let finished = early_ipam.map(|started| started.and_then(|s| kernel.ipam_finish(s)));
    if let (Some(Ok(_)), Some(ipam_type)) = (finished, &conf.ipam_type) {
        let _ = kernel.ipam_run(Command::Del, ipam_type, cmd);
    }
}

/// What the link layer of an ADD made: the bridge, the veth pair, the namespaces and a socket
/// inside the container namespace.
struct Links<K: Kernel> {
    sandbox: String,
    bridge: Link,
    netns: K::Netns,
    inner: K::Socket,
    pair: veth::Pair,
}

/// The ADD after the config checks, with the IPAM ADD that [`add`] may have started: the
/// link layer is made while that plugin runs.
fn attach<K: Kernel>(
    cmd: &CmdArgs,
    conf: &BridgeConf,
    host: &mut K::Socket,
    kernel: &mut K,
    undo: &mut Undo<K>,
    early_ipam: Option<Result<K::IpamAdd>>,
) -> Result<CniResult> {
    let (links, masq) = make_links_and_prepare_masq(cmd, conf, host, kernel, undo);
    // Also when the links failed: an address the plugin allocated must be released.
    let allocation = early_ipam.map(|started| started.and_then(|s| kernel.ipam_finish(s)));
    let allocation = match (allocation, &conf.ipam_type) {
        (Some(allocation), Some(ipam_type)) => {
            if allocation.is_ok() {
                push_ipam_undo(undo, ipam_type, cmd);
            }
            Some(allocation)
        }
        _ => None,
    };
    let mut links = links?;
    let allocation = match (allocation, &conf.ipam_type) {
        (Some(allocation), _) => Some(allocation?),
        (None, Some(ipam_type)) => {
            let result = kernel.ipam_add(ipam_type, cmd)?;
            push_ipam_undo(undo, ipam_type, cmd);
            Some(result)
        }
        (None, None) => None,
    };
    let Links {
        sandbox,
        bridge,
        netns,
        inner,
        pair,
    } = &mut links;

    cni::fault::point("bridge.add.ipam");
    let mut extra_interfaces = Vec::new();
    let mut ipam_result = CniResult::default();
    if let Some(allocated) = allocation {
        ipam_result = allocated;
        ipam::require_ips(&ipam_result)?;
        let gws = l3::calc_gateways(&mut ipam_result, conf);
        l3::configure_container(
            kernel,
            inner,
            netns,
            sandbox,
            &cmd.ifname,
            pair.inner.index,
            &ipam_result,
            conf.enable_dad,
        )?;
        cni::fault::point("bridge.add.addresses");
        if conf.is_gateway {
            let mut vlan_gateway: Option<Link> = None;
            for gw in gws.v4.iter().chain(&gws.v6) {
                if conf.vlan != 0 {
                    let link = match &vlan_gateway {
                        Some(link) => link.clone(),
                        None => {
                            let (link, _) = bridge_link::ensure_vlan_gateway(kernel, host, bridge, conf)
                                .map_err(|e| {
                                    Error::caused_by(Code::INTERNAL, "failed to create vlan interface", e)
                                })?;
                            extra_interfaces.push(result::interface(&link, None));
                            vlan_gateway = Some(link.clone());
                            link
                        }
                    };
                    bridge_link::ensure_address(host, &link, *gw, conf.force_address).map_err(|e| {
                        Error::caused_by(
                            Code::INTERNAL,
                            "failed to set vlan interface for bridge with addr",
                            e,
                        )
                    })?;
                } else {
                    bridge_link::ensure_address(host, bridge, *gw, conf.force_address)
                        .map_err(|e| Error::caused_by(Code::INTERNAL, "failed to set bridge addr", e))?;
                }
            }
            cni::fault::point("bridge.add.gateway");
            l3::enable_forwarding(kernel, &gws)?;
        }
        if let Some(masq) = masq {
            let (att, prepared) = masq?;
            let ips: Vec<_> = ipam_result.ips.iter().map(|ip| ip.address).collect();
            // Registered first: the iptables backend applies one family at a time.
            let installed = att.clone();
            undo.push("masquerade rules", move |_, k| k.masq_teardown(&installed));
            kernel.masq_install(prepared, &att, &ips)?;
            cni::fault::point("bridge.add.masquerade");
        }
    } else if !conf.disable_container_interface {
        inner
            .set_link_up(pair.inner.index)
            .context(|| format!("failed to set {:?} up", cmd.ifname))?;
    }

    let host_link = if conf.disable_container_interface {
        host.link_by_index(pair.host.index)
            .context(|| format!("failed to lookup {:?}", pair.host.name))?
    } else {
        wait_port_up(host, &pair.host)?
    };
    let bridge = bridge_link::by_name(host, &conf.bridge)?;
    cni::fault::point("bridge.add.done");

    let mut interfaces = vec![
        result::interface(&bridge, None),
        result::interface(&host_link, None),
        result::interface(&pair.inner, Some(sandbox.as_str())),
    ];
    interfaces.extend(extra_interfaces);
    let dns: Dns = conf.dns.clone().unwrap_or(ipam_result.dns);
    Ok(result::build(
        cmd.cni_version(),
        interfaces,
        ipam_result.ips,
        ipam_result.routes,
        dns,
    ))
}

type MasqPrepared<K> = Result<(Attachment, <K as Kernel>::MasqPrepared)>;

/// [`make_links`], then, when it worked and masquerading is on, what the masquerade setup needs
/// to know before the addresses are there.
fn make_links_and_prepare_masq<K: Kernel>(
    cmd: &CmdArgs,
    conf: &BridgeConf,
    host: &mut K::Socket,
    kernel: &mut K,
    undo: &mut Undo<K>,
) -> (Result<Links<K>>, Option<MasqPrepared<K>>) {
    let links = make_links(cmd, conf, host, kernel, undo);
    let masq = (links.is_ok() && conf.ip_masq && conf.is_layer3()).then(|| {
        let att = Attachment::new(&conf.network, &cmd.container_id, &cmd.ifname);
        conf.masq_backend()
            .and_then(|backend| kernel.masq_prepare(backend, &att))
            .map(|prepared| (att, prepared))
    });
    (links, masq)
}

/// The bridge, the veth pair with its host end on the bridge, and the spoof-check rules.
fn make_links<K: Kernel>(
    cmd: &CmdArgs,
    conf: &BridgeConf,
    host: &mut K::Socket,
    kernel: &mut K,
    undo: &mut Undo<K>,
) -> Result<Links<K>> {
    let netns_path = cmd
        .netns
        .as_ref()
        .ok_or_else(|| Error::invalid_environment("required env variables [CNI_NETNS] missing"))?;
    let sandbox = netns_path.to_string_lossy().into_owned();
    let bridge = bridge_link::ensure(kernel, host, conf)?;
    cni::fault::point("bridge.add.bridge");

    let netns = kernel
        .open_netns(netns_path)
        .context(|| format!("failed to open netns {sandbox:?}"))?;
    let host_end = veth::create(
        kernel,
        host,
        Some(&netns),
        &cmd.ifname,
        conf.mtu,
        conf.mac,
        &bridge,
    )?;
    let host_name = host_end.name.clone();
    undo.push(format!("veth {host_name}"), move |h, _| {
        h.delete_link_by_name(&host_name)
            .map(drop)
            .context(|| format!("failed to delete {host_name:?}"))
    });
    cni::fault::point("bridge.add.veth");
    let mut inner = enter_container(kernel, &netns, &sandbox, &cmd.ifname, conf)?;
    let inner_end = inner
        .link_by_name(&cmd.ifname)
        .context(|| format!("failed to lookup {:?}", cmd.ifname))?;
    let pair = veth::Pair {
        inner: inner_end,
        host: host_end,
    };
    attach_port(host, &pair.host, conf)?;
    cni::fault::point("bridge.add.port");

    if conf.mac_spoof_chk {
        let id = spoofcheck::ref_id(&cmd.container_id, &cmd.ifname);
        let mac = pair.inner.mac.map(|m| m.to_string()).unwrap_or_default();
        kernel.spoofcheck_setup(&pair.host.name, &mac, &id)?;
        undo.push("mac spoof check rules", move |_, k| k.spoofcheck_teardown(&id));
        cni::fault::point("bridge.add.spoofcheck");
    }
    Ok(Links {
        sandbox,
        bridge,
        netns,
        inner,
        pair,
    })
}

/// One visit of the container namespace, once its end of the pair is there: the socket that
/// configures the container side from then on and, in layer-3 mode, the interface's sysctls
/// that must be set before it has addresses ([`l3::container_sysctls`]).
fn enter_container<K: Kernel>(
    kernel: &mut K,
    netns: &K::Netns,
    sandbox: &str,
    ifname: &str,
    conf: &BridgeConf,
) -> Result<K::Socket> {
    let socket = kernel
        .enter_container(netns, |sysctls| {
            if conf.is_layer3() {
                l3::container_sysctls(sysctls, ifname, conf.enable_dad);
            }
        })
        .context(|| format!("failed to enter netns {sandbox}"))?;
    socket.context(|| format!("cannot open a netlink socket in netns {sandbox:?}"))
}

fn push_ipam_undo<K: Kernel>(undo: &mut Undo<K>, ipam_type: &str, cmd: &CmdArgs) {
    let (ipam_type, ipam_cmd) = (ipam_type.to_string(), cmd.clone());
    undo.push("IPAM allocation", move |_, k| {
        k.ipam_run(Command::Del, &ipam_type, &ipam_cmd)
    });
}

/// Sets hairpin, isolation and VLANs on the new port (already enslaved by [`veth::create`]). A
/// new port starts with hairpin and isolation off, so only "on" is sent.
fn attach_port(host: &mut impl Netlink, port: &Link, conf: &BridgeConf) -> Result<()> {
    if conf.hairpin_mode {
        host.set_bridge_port_hairpin(port.index, true)
            .context(|| format!("failed to setup hairpin mode for {}", port.name))?;
    }
    if conf.port_isolation {
        host.set_bridge_port_isolated(port.index, true)
            .context(|| format!("failed to set isolated on for {}", port.name))?;
    }
    vlan::configure_port(host, port, conf.vlan, &conf.trunk, conf.preserve_default_vlan)
}

/// Waits until the host port is operationally up. Go checks after 0, 50, 500, 1000 and 1000 ms;
/// this polls in short, growing steps within the same 2.55 s, since the state usually changes
/// within a millisecond.
fn wait_port_up(host: &mut impl Netlink, port: &Link) -> Result<Link> {
    let deadline = Instant::now() + PORT_UP_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    loop {
        let link = host
            .link_by_index(port.index)
            .context(|| format!("failed to lookup {:?}", port.name))?;
        if link.oper_state == OperState::Up {
            return Ok(link);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::internal(format!(
                "bridge port in error state: {:?}",
                link.oper_state
            )));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// ADD against the recording fake ([`crate::fake`]): which requests, in which order, and what
/// the undo takes back when one fails. No root, no kernel.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cni::plugin::Command;
    use cni_net::LinkKind;
    use serde_json::json;

    use super::*;
    use crate::fake::{Fake, HOST, NETNS, cmd, ipam_result};

    /// `line` as recorded in the container namespace.
    fn ctr(line: &str) -> String {
        format!("{NETNS}: {line}")
    }

    fn host(line: &str) -> String {
        format!("{HOST}: {line}")
    }

    fn run(fake: &Fake, conf: serde_json::Value) -> Result<CniResult> {
        add(&cmd(Command::Add, conf), &mut fake.clone())
    }

    /// The position of the first call equal to `line`.
    fn at(calls: &[String], line: &str) -> usize {
        calls
            .iter()
            .position(|c| c == line)
            .unwrap_or_else(|| panic!("no call {line:?} in {calls:#?}"))
    }

    #[test]
    fn fake_add_l2_makes_bridge_veth_and_port_in_gos_order() {
        let fake = Fake::new();
        let result = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "mtu": 1400, "hairpinMode": true, "vlan": 7}),
        )
        .unwrap();
        let calls = fake.take_calls();
        let want = [
            host("open socket"),
            host("find link br-t"),
            host("ensure bridge br-t mtu Some(1400) vlan_filtering Some(true)"),
            host("write net/ipv6/conf/br-t/accept_ra = 0"),
            host("set #1 up"),
            host(&format!("open netns {NETNS}")),
            host(&format!(
                "create veth veth* master Some(1) up false peer eth0 in {NETNS} mac None mtu Some(1400)"
            )),
            host("write net/ipv6/conf/veth*/accept_ra = 0"),
            host("set #2 up without addrconf"),
            ctr("enter"),
            ctr("open socket"),
            ctr("link eth0"),
            host("set port #2 hairpin true"),
            host("vlans of #2"),
            host("delete vlan 1 from #2"),
            host("add vlan 7 pvid true untagged true to #2"),
            ctr("set #3 up"),
            host("link #2"),
            host("link br-t"),
        ];
        assert_eq!(calls, want);
        let names: Vec<_> = result.interfaces.iter().map(|i| i.name.clone()).collect();
        assert_eq!(names[0], "br-t");
        assert!(names[1].starts_with("veth") && names[1].len() == 12, "{names:?}");
        assert_eq!(names[2], "eth0");
        assert_eq!(result.interfaces[2].sandbox.as_deref(), Some(NETNS));
        assert_eq!(result.interfaces[0].mtu, Some(1400));
        assert!(result.ips.is_empty() && result.routes.is_empty());
    }

    #[test]
    fn fake_add_with_ipam_configures_addresses_gateways_routes_and_forwarding() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.5.7/24", "fd00:222:5::7/64"]));
        let result = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "isDefaultGateway": true,
                   "ipam": {"type": "host-local"}}),
        )
        .unwrap();
        let calls = fake.take_calls();

        // The IPAM plugin starts before anything else and is read once the links exist.
        assert_eq!(calls[0], "ipam: start ADD host-local");
        let finish = at(&calls, "ipam: finish ADD");
        assert!(at(&calls, &ctr("link eth0")) < finish);
        // Layer-3 sysctls in the container before it has addresses.
        let dad = at(&calls, &ctr("write net/ipv6/conf/eth0/accept_dad = 0"));
        assert!(dad < at(&calls, &ctr("write net/ipv4/conf/eth0/arp_notify = 1")));
        assert!(dad < finish);
        // Container: IPv6 on, addresses, up, then the default routes via the gateways.
        let container: Vec<_> = calls[finish + 1..]
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("{NETNS}: ")))
            .collect();
        assert_eq!(
            container,
            [
                "enter",
                "read net/ipv6/conf/lo/disable_ipv6",
                "read net/ipv6/conf/eth0/disable_ipv6",
                "write net/ipv6/conf/eth0/keep_addr_on_down = 1",
                "add address 10.222.5.7/24 to #3",
                "add address fd00:222:5::7/64 to #3",
                "set #3 up",
                "append route 0.0.0.0/0 via Some(\"10.222.5.1\") dev #Some(3) table None",
                "append route ::/0 via Some(\"fd00:222:5::1\") dev #Some(3) table None",
            ]
        );
        // Host: the gateway addresses on the bridge (MAC pinned after each), then forwarding.
        let gw4 = at(&calls, &host("add address 10.222.5.1/24 to #1 if missing"));
        let gw6 = at(&calls, &host("add address fd00:222:5::1/64 to #1 if missing"));
        let fwd = at(&calls, &host("write net/ipv4/ip_forward = 1"));
        assert!(
            at(
                &calls,
                &ctr("append route ::/0 via Some(\"fd00:222:5::1\") dev #Some(3) table None")
            ) < gw4
        );
        assert!(gw4 < gw6 && gw6 < fwd);
        assert_eq!(calls[gw4 + 1], host("set #1 mac 02:00:00:00:00:01"));
        assert!(fwd < at(&calls, &host("write net/ipv6/conf/all/forwarding = 1")));
        assert!(!calls.iter().any(|c| c.starts_with("nft:")), "{calls:#?}");

        // The result: IPAM's addresses on the container interface with the computed gateways,
        // one default route per family.
        let ips: Vec<_> = result
            .ips
            .iter()
            .map(|ip| {
                (
                    ip.address.to_string(),
                    ip.gateway.unwrap().to_string(),
                    ip.interface,
                )
            })
            .collect();
        assert_eq!(
            ips,
            [
                ("10.222.5.7/24".into(), "10.222.5.1".into(), Some(2)),
                ("fd00:222:5::7/64".into(), "fd00:222:5::1".into(), Some(2)),
            ]
        );
        let routes: Vec<_> = result
            .routes
            .iter()
            .map(|r| format!("{} {}", r.dst, r.gw.unwrap()))
            .collect();
        assert_eq!(routes, ["0.0.0.0/0 10.222.5.1", "::/0 fd00:222:5::1"]);
        let state = fake.state();
        let bridge = state.links.iter().find(|l| l.link.name == "br-t").unwrap();
        let addrs: Vec<_> = bridge.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.222.5.1/24", "fd00:222:5::1/64"]);
    }

    #[test]
    fn fake_add_veth_failure_after_the_bridge_leaves_no_attachment_and_releases_ipam() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.6.7/24"]));
        fake.fail_on("create veth");
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "isGateway": true, "ipMasq": true,
                   "macspoofchk": true, "ipam": {"type": "host-local"}}),
        )
        .unwrap_err();
        assert_eq!(err.msg, "failed to make veth pair");
        assert_eq!(err.code, cni::Code::INTERNAL);
        let calls = fake.take_calls();
        let failed = calls.iter().position(|c| c.contains("create veth")).unwrap();
        // The IPAM allocation is waited for and released; nothing else is attempted.
        assert_eq!(
            calls[failed + 1..],
            ["ipam: finish ADD".to_string(), "ipam: DEL host-local".to_string()]
        );
        // The bridge stays (shared by the network); nothing of the attachment is left.
        assert_eq!(fake.link_names(HOST), ["br-t"]);
        assert!(fake.link_names(NETNS).is_empty());
        assert!(fake.state().rules.is_empty());
    }

    #[test]
    fn fake_add_failure_after_the_port_undoes_newest_first() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.7.7/24"]));
        fake.fail_on("masq install");
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "isGateway": true, "ipMasq": true,
                   "ipMasqBackend": "nftables", "macspoofchk": true,
                   "ipam": {"type": "host-local"}}),
        )
        .unwrap_err();
        assert!(err.msg.contains("injected failure of nft: masq install"), "{err}");
        let calls = fake.take_calls();
        let failed = at(&calls, "nft: masq install ctr1 10.222.7.7/24");
        assert_eq!(
            calls[failed + 1..],
            [
                "nft: masq teardown ctr1".to_string(),
                "ipam: DEL host-local".to_string(),
                "nft: spoofcheck teardown ctr1-eth0".to_string(),
                host("delete link veth*"),
            ]
        );
        assert!(calls.contains(&"nft: masq prepare Some(Nftables) ctr1".to_string()));
        // The veth is gone with both ends, its rules too; the bridge and its gateway stay.
        assert_eq!(fake.link_names(HOST), ["br-t"]);
        assert!(fake.link_names(NETNS).is_empty());
        assert!(fake.state().rules.is_empty());
    }

    #[test]
    fn fake_add_failed_container_address_deletes_the_veth_and_releases_ipam() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.8.7/24"]));
        fake.fail_on("add address 10.222.8.7/24");
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "ipam": {"type": "static"}}),
        )
        .unwrap_err();
        assert_eq!(err.msg, "failed to add IP addr 10.222.8.7/24 to \"eth0\"");
        let calls = fake.take_calls();
        assert_eq!(calls[0], "ipam: start ADD static");
        assert_eq!(
            calls[calls.len() - 2..],
            ["ipam: DEL static".to_string(), host("delete link veth*")]
        );
        assert_eq!(fake.link_names(HOST), ["br-t"]);
        assert!(fake.link_names(NETNS).is_empty());
    }

    #[test]
    fn fake_add_host_end_that_cannot_go_up_is_deleted_and_ipam_released() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.8.9/24"]));
        fake.fail_on("set #2 up without addrconf");
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "ipam": {"type": "static"}}),
        )
        .unwrap_err();
        assert!(err.msg.starts_with("failed to set \"veth"), "{err:?}");
        let calls = fake.take_calls();
        assert!(calls.contains(&host("delete link #2")), "{calls:#?}");
        assert_eq!(
            calls.last().map(String::as_str),
            Some("ipam: DEL static"),
            "{calls:#?}"
        );
        assert_eq!(fake.link_names(HOST), ["br-t"]);
        assert!(fake.link_names(NETNS).is_empty());
    }

    #[test]
    fn fake_add_runs_other_ipam_after_the_veth_exists() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.9.7/24"]));
        run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "ipam": {"type": "dhcp"}}),
        )
        .unwrap();
        let calls = fake.take_calls();
        assert!(!calls.iter().any(|c| c.contains("start ADD")));
        assert!(at(&calls, &ctr("link eth0")) < at(&calls, "ipam: ADD dhcp"));
        assert!(at(&calls, "ipam: ADD dhcp") < at(&calls, &ctr("add address 10.222.9.7/24 to #3")));
    }

    #[test]
    fn fake_add_refuses_a_name_that_is_not_a_bridge_and_creates_nothing() {
        let fake = Fake::new();
        fake.with_host_link("br-t", LinkKind::Device, 1500);
        fake.with_ipam_result(ipam_result(&["10.222.10.7/24"]));
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "ipam": {"type": "host-local"}}),
        )
        .unwrap_err();
        assert_eq!(err.msg, "failed to create bridge \"br-t\"");
        assert_eq!(err.details, "\"br-t\" already exists but is not a bridge");
        let calls = fake.take_calls();
        assert_eq!(
            calls,
            [
                "ipam: start ADD host-local".to_string(),
                host("open socket"),
                host("find link br-t"),
                "ipam: finish ADD".to_string(),
                "ipam: DEL host-local".to_string(),
            ]
        );
        assert_eq!(fake.link_names(HOST), ["br-t"]);
    }

    #[test]
    fn fake_add_adopts_an_existing_bridge_with_its_own_mtu() {
        let fake = Fake::new();
        let bridge = fake.with_host_link("br-t", LinkKind::Bridge, 9000);
        let result = run(&fake, json!({"name": "n", "bridge": "br-t", "mtu": 1400})).unwrap();
        let calls = fake.take_calls();
        assert!(!calls.iter().any(|c| c.contains("ensure bridge")), "{calls:#?}");
        // Down before: brought up; the veth gets the configured MTU, the bridge keeps its own.
        assert!(calls.contains(&host(&format!("set #{} up", bridge.index))));
        assert_eq!(result.interfaces[0].mtu, Some(9000));
        assert_eq!(result.interfaces[1].mtu, Some(1400));
    }

    #[test]
    fn fake_add_without_a_host_socket_releases_the_early_ipam_allocation() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.11.7/24"]));
        fake.fail_on("host: open socket");
        let err = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "ipam": {"type": "host-local"}}),
        )
        .unwrap_err();
        assert_eq!(err.msg, "cannot open a netlink socket");
        assert_eq!(
            fake.take_calls(),
            [
                "ipam: start ADD host-local".to_string(),
                host("open socket"),
                "ipam: finish ADD".to_string(),
                "ipam: DEL host-local".to_string(),
            ]
        );
    }

    #[test]
    fn fake_add_in_vlan_gateway_mode_makes_the_gateway_interface_once() {
        let fake = Fake::new();
        fake.with_ipam_result(ipam_result(&["10.222.12.7/24", "fd00:222:12::7/64"]));
        let result = run(
            &fake,
            json!({"name": "n", "bridge": "br-t", "isGateway": true, "vlan": 12,
                   "ipam": {"type": "host-local"}}),
        )
        .unwrap();
        let calls = fake.take_calls();
        let creations = calls.iter().filter(|c| c.contains("create veth")).count();
        assert_eq!(creations, 2, "{calls:#?}");
        assert!(calls.contains(&host(
            "create veth veth* master Some(1) up false peer br-t.12 in host mac None mtu Some(1500)"
        )));
        let names: Vec<_> = result.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names.len(), 4);
        assert_eq!(names[3], "br-t.12");
        let state = fake.state();
        let gateway = state.links.iter().find(|l| l.link.name == "br-t.12").unwrap();
        let addrs: Vec<_> = gateway.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.222.12.1/24", "fd00:222:12::1/64"]);
    }
}
