//! The ADD result: `[bridge, host veth, container veth (sandbox)]` (+ the VLAN gateway
//! interface), IPAM's addresses pointing at the container interface, routes and DNS.

use cni::CniResult;
use cni::result::{Dns, Interface, IpConfig, Route};
use cni_net::Link;

/// An interface of the result from what the kernel reports.
pub fn interface(link: &Link, sandbox: Option<&str>) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: link.mac.map(|m| m.to_string()),
        mtu: (link.mtu != 0).then_some(link.mtu),
        sandbox: sandbox.map(str::to_string),
        ..Interface::default()
    }
}

/// Assembles the result: `interfaces` in Go's order, then IPs, routes, DNS.
pub fn build(
    version: &str,
    interfaces: Vec<Interface>,
    ips: Vec<IpConfig>,
    routes: Vec<Route>,
    dns: Dns,
) -> CniResult {
    CniResult {
        cni_version: version.to_string(),
        interfaces,
        ips,
        routes,
        dns,
        ..CniResult::default()
    }
}
