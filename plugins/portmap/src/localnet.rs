//! `route_localnet`: lets 127.0.0.1 be routed out of the interface that leads
//! to the container, so that `localhost:hostPort` on the host reaches it (the
//! DNAT in `output` changes the destination, the mark makes it masqueraded).

use cni::Result;
use cni_net::{Context, Family, Socket, sysctl};
use std::net::IpAddr;

/// Sets `net.ipv4.conf.<if>.route_localnet=1` on the interface the host
/// routes `container` through, as Go does. No route: nothing to do.
pub fn enable_for(container: IpAddr) -> Result<()> {
    let mut sock = Socket::new().context(|| "cannot open netlink socket".to_string())?;
    let index = match sock.route_get(container) {
        Ok(i) => i,
        Err(_) => return Ok(()),
    };
    let link = match sock.link_by_index(index) {
        Ok(l) => l,
        Err(_) => return Ok(()),
    };
    let key = sysctl::conf_key(Family::V4, &link.name, "route_localnet")
        .context(|| "unable to enable route_localnet".to_string())?;
    if sysctl::read(&key).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    sysctl::write(&key, "1").context(|| "unable to enable route_localnet".to_string())
}
