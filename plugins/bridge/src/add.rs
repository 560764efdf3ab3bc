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
