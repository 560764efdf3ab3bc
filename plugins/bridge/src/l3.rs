//! Layer 3: gateways computed from the IPAM result, the container interface configured inside
//! its namespace (sysctls, addresses, up, routes), forwarding on the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use cni::result::Route as ResultRoute;
use cni::{CniResult, Error, Result};
use cni_net::Context;
use cni_net::route::Route;
use cni_net::sysctl::conf_key;
use cni_net::{Family, Scope};
use ipnetwork::IpNetwork;

use crate::config::BridgeConf;
use crate::kernel::{Kernel, Netlink, Sysctl};

/// Index of the container interface in the result (`[bridge, host veth, container]`).
pub const CONTAINER_INTERFACE: usize = 2;

/// How long Go waits for IPv6 addresses to leave the tentative state.
const DAD_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway addresses (gateway IP with the subnet's prefix) to put on the bridge, per family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gateways {
    /// IPv4 gateways.
    pub v4: Vec<IpNetwork>,
    /// IPv6 gateways.
    pub v6: Vec<IpNetwork>,
}

/// The first address of the subnet of `net` plus one (Go's `calcGatewayIP`).
pub fn first_host(net: IpNetwork) -> IpAddr {
    match net {
        IpNetwork::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(1))),
        IpNetwork::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(1))),
    }
}

fn default_dst(v4: bool) -> IpNetwork {
    if v4 {
        IpNetwork::new(Ipv4Addr::UNSPECIFIED.into(), 0)
    } else {
        IpNetwork::new(Ipv6Addr::UNSPECIFIED.into(), 0)
    }
    .unwrap_or_else(|_| unreachable!("a /0 prefix is valid"))
}

/// Go's `calcGateways`: points every IP at the container interface, fills in a missing gateway
/// in gateway mode, adds one default route per family when `isDefaultGateway` (unless IPAM gave
/// one with a gateway), and returns the bridge's gateway addresses.
pub fn calc_gateways(result: &mut CniResult, conf: &BridgeConf) -> Gateways {
    let mut gws = Gateways::default();
    let mut default_found = [false, false];
    for i in 0..result.ips.len() {
        let v4 = result.ips[i].is_ipv4();
        let fam = usize::from(!v4);
        result.ips[i].interface = Some(CONTAINER_INTERFACE);
        if result.ips[i].gateway.is_none() && conf.is_gateway {
            result.ips[i].gateway = Some(first_host(result.ips[i].address));
        }
        let ip = result.ips[i].clone();
        if conf.is_default_gateway && !default_found[fam] {
            let dst = default_dst(v4);
            default_found[fam] = result.routes.iter().any(|r| r.gw.is_some() && r.dst == dst);
            if !default_found[fam] {
                result.routes.push(ResultRoute::new(dst, ip.gateway));
                default_found[fam] = true;
            }
        }
        if conf.is_gateway
            && let Some(gw) = ip.gateway
            && let Ok(net) = IpNetwork::new(gw, ip.address.prefix())
        {
            if v4 {
                gws.v4.push(net);
            } else {
                gws.v6.push(net);
            }
        }
    }
    gws
}

/// The container interface's sysctls that do not depend on its addresses, set before there are
/// any (so while IPAM runs): DAD off unless `enable_dad` (then enhanced DAD), ARP notifications.
/// `sysctls` are the container namespace's. Failures are ignored, as in Go.
pub fn container_sysctls(sysctls: &mut dyn Sysctl, ifname: &str, enable_dad: bool) {
    let mut set = |family, setting: &str, value: &str| {
        if let Ok(key) = conf_key(family, ifname, setting) {
            let _ = sysctls.write_sysctl(&key, value);
        }
    };
    if enable_dad {
        set(Family::V6, "enhanced_dad", "1");
        set(Family::V6, "accept_dad", "1");
    } else {
        set(Family::V6, "accept_dad", "0");
    }
    set(Family::V4, "arp_notify", "1");
}

/// Configures the container interface (`index` in `netns`, through `inner`, a socket opened
/// there), after [`container_sysctls`]: IPv6 enabled when needed, addresses, link up, the DAD
/// settle wait only when DAD is on and there is an IPv6 gateway, then routes (a route without
/// gateway takes its family's gateway). `sandbox` is the path `netns` was opened at.
#[allow(clippy::too_many_arguments)]
pub fn configure_container<K: Kernel>(
    kernel: &mut K,
    inner: &mut K::Socket,
    netns: &K::Netns,
    sandbox: &str,
    ifname: &str,
    index: u32,
    result: &CniResult,
    enable_dad: bool,
) -> Result<()> {
    if result.ips.iter().any(|ip| !ip.is_ipv4()) {
        kernel
            .in_netns(netns, |sysctls| enable_ipv6(sysctls, ifname))
            .context(|| format!("failed to enter netns {sandbox}"))??;
    }

    let mut v4gw = None;
    let mut v6gw = None;
    for ip in &result.ips {
        inner
            .add_address(index, ip.address)
            .context(|| format!("failed to add IP addr {} to {ifname:?}", ip.address))?;
        match ip.gateway {
            Some(gw @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(gw),
            Some(gw @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(gw),
            _ => {}
        }
    }
    inner
        .set_link_up(index)
        .context(|| format!("failed to set {ifname:?} UP"))?;
    if v6gw.is_some() && enable_dad {
        settle_addresses(inner, ifname, index)?;
    }
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.is_ipv4() { v4gw } else { v6gw });
        let route = Route {
            gateway: gw,
            oif: Some(index),
            table: r.table,
            priority: r.priority.filter(|p| *p != 0),
            scope: r.scope.map(Scope::from),
            ..Route::new(r.dst)
        };
        inner.append_route(&route).context(|| {
            format!(
                "failed to add route '{} via {} dev {ifname}'",
                r.dst,
                gw.map(|g| g.to_string()).unwrap_or_else(|| "<nil>".into())
            )
        })?;
    }
    Ok(())
}

/// IPv6 on for `lo` and the interface (written only when off), addresses kept when it goes down.
fn enable_ipv6(sysctls: &mut dyn Sysctl, ifname: &str) -> Result<()> {
    for dev in ["lo", ifname] {
        let Ok(key) = conf_key(Family::V6, dev, "disable_ipv6") else {
            continue;
        };
        match sysctls.read_sysctl(&key) {
            Ok(v) if v == "0" => {}
            Ok(v) => sysctls
                .write_sysctl(&key, "0")
                .context(|| format!("failed to enable IPv6 for interface {dev:?} ({key}={v})"))?,
            Err(e) => eprintln!("bridge: failed to read sysctl {key:?}: {e}"),
        }
    }
    let key = conf_key(Family::V6, ifname, "keep_addr_on_down")
        .context(|| format!("invalid interface name {ifname:?}"))?;
    sysctls
        .write_sysctl(&key, "1")
        .context(|| format!("failed to enable keep_addr_on_down for interface {ifname:?}"))
}

/// Waits until no IPv6 address of the link is tentative (DAD done); a failed DAD is an error.
fn settle_addresses(inner: &mut impl Netlink, ifname: &str, index: u32) -> Result<()> {
    let deadline = Instant::now() + DAD_SETTLE_TIMEOUT;
    loop {
        let addrs = inner
            .addresses(Some(index), Some(Family::V6))
            .context(|| format!("failed to settle addresses for {ifname:?}"))?;
        if let Some(a) = addrs.iter().find(|a| a.dad_failed) {
            return Err(Error::internal(format!(
                "failed to settle addresses for {ifname:?}: link {ifname} has address {} in DADFAILED state",
                a.address
            )));
        }
        if !addrs.iter().any(|a| a.tentative && a.scope != Scope::Link) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::internal(format!(
                "failed to settle addresses for {ifname:?}: link {ifname} still has tentative addresses after {}s",
                DAD_SETTLE_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Turns on forwarding for the families that have a gateway on the bridge (written only when
/// not already on).
pub fn enable_forwarding(sysctls: &mut impl Sysctl, gws: &Gateways) -> Result<()> {
    let mut keys = Vec::new();
    if !gws.v4.is_empty() {
        keys.push("net/ipv4/ip_forward");
    }
    if !gws.v6.is_empty() {
        keys.push("net/ipv6/conf/all/forwarding");
    }
    for key in keys {
        if sysctls.read_sysctl(key).is_ok_and(|v| v == "1") {
            continue;
        }
        sysctls
            .write_sysctl(key, "1")
            .context(|| "failed to enable forwarding".to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cni::result::IpConfig;

    use super::*;

    fn conf(json: &str) -> BridgeConf {
        BridgeConf::parse(json.as_bytes(), None).unwrap()
    }

    fn ipam_result(addrs: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            ips: addrs
                .iter()
                .map(|(a, gw)| IpConfig {
                    interface: None,
                    address: a.parse().unwrap(),
                    gateway: gw.map(|g| g.parse().unwrap()),
                })
                .collect(),
            ..CniResult::default()
        }
    }

    #[test]
    fn gateway_is_first_host_of_the_subnet() {
        assert_eq!(
            first_host("10.222.3.77/24".parse().unwrap()).to_string(),
            "10.222.3.1"
        );
        assert_eq!(
            first_host("fd00:222::99/64".parse().unwrap()).to_string(),
            "fd00:222::1"
        );
    }

    #[test]
    fn default_gateway_adds_one_default_route_per_family() {
        let c = conf(r#"{"name":"n","isDefaultGateway":true,"ipam":{"type":"x"}}"#);
        let mut r = ipam_result(&[
            ("10.222.0.5/24", None),
            ("10.222.1.5/24", None),
            ("fd00:222::5/64", None),
        ]);
        let gws = calc_gateways(&mut r, &c);
        assert!(r.ips.iter().all(|ip| ip.interface == Some(2)));
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.222.0.1");
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} {}", r.dst, r.gw.unwrap()))
            .collect();
        assert_eq!(routes, vec!["0.0.0.0/0 10.222.0.1", "::/0 fd00:222::1"]);
        assert_eq!(gws.v4.len(), 2);
        assert_eq!(gws.v6[0].to_string(), "fd00:222::1/64");
    }

    #[test]
    fn ipam_default_route_with_gateway_wins() {
        let c = conf(r#"{"name":"n","isDefaultGateway":true,"ipam":{"type":"x"}}"#);
        let mut r = ipam_result(&[("10.222.0.5/24", Some("10.222.0.254"))]);
        r.routes.push(ResultRoute::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.222.0.254".parse().unwrap()),
        ));
        let gws = calc_gateways(&mut r, &c);
        assert_eq!(r.routes.len(), 1);
        assert_eq!(gws.v4[0].to_string(), "10.222.0.254/24");
    }

    #[test]
    fn without_gateway_mode_nothing_is_added() {
        let c = conf(r#"{"name":"n","ipam":{"type":"x"}}"#);
        let mut r = ipam_result(&[("10.222.0.5/24", None)]);
        let gws = calc_gateways(&mut r, &c);
        assert_eq!(gws, Gateways::default());
        assert!(r.ips[0].gateway.is_none() && r.routes.is_empty());
    }
}
