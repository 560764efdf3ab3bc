//! The bridge itself: created or adopted, up, promiscuous if asked; gateway addresses on it with
//! its MAC pinned; the `<bridge>.<vlan>` gateway interface in VLAN mode.

use cni::{Code, Error, Result};
use cni_net::Context;
use cni_net::link::BridgeSpec;
use cni_net::sysctl::conf_key;
use cni_net::{Family, Link, LinkKind};
use ipnetwork::IpNetwork;

use crate::config::BridgeConf;
use crate::kernel::{Kernel, Netlink};
use crate::{veth, vlan};

/// Creates the bridge (with the MTU, and vlan filtering when VLANs are configured) or adopts an
/// existing one, sets promiscuous mode if asked, `accept_ra=0`, and up.
pub fn ensure<K: Kernel>(kernel: &mut K, host: &mut K::Socket, conf: &BridgeConf) -> Result<Link> {
    let spec = BridgeSpec {
        name: conf.bridge.clone(),
        mtu: conf.mtu,
        vlan_filtering: conf.vlan_filtering().then_some(true),
        mac: None,
    };
    let failed = || format!("failed to create bridge {:?}", conf.bridge);
    let not_a_bridge = || {
        Error::internal(failed())
            .with_details(format!("{:?} already exists but is not a bridge", conf.bridge))
    };
    // The bridge exists on every ADD but the first: look it up (one round trip) before trying
    // to create it (two, the first failing with EEXIST).
    let existing = host.find_link_by_name(&conf.bridge).context(failed)?;
    let link = match existing {
        Some(link) if link.kind == LinkKind::Bridge => link,
        Some(_) => return Err(not_a_bridge()),
        None => match host.ensure_bridge(&spec) {
            Ok(ensured) => ensured.link,
            Err(cni_net::Error::LinkKindMismatch { .. }) => return Err(not_a_bridge()),
            Err(e) => return Err(e).context(failed),
        },
    };
    if conf.promisc_mode {
        host.set_link_promisc(link.index, true)
            .context(|| format!("could not set promiscuous mode on {:?}", conf.bridge))?;
    }
    if let Ok(key) = conf_key(Family::V6, &conf.bridge, "accept_ra") {
        let _ = kernel.write_sysctl(&key, "0");
    }
    if !link.up {
        host.set_link_up(link.index).context(failed)?;
    }
    Ok(link)
}

/// Looks the bridge up, failing when the name is not a bridge.
pub fn by_name(host: &mut impl Netlink, name: &str) -> Result<Link> {
    let link = host
        .link_by_name(name)
        .context(|| format!("could not lookup {name:?}"))?;
    if link.kind != LinkKind::Bridge {
        return Err(Error::internal(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    Ok(link)
}

/// Puts `gateway` (the gateway address with the subnet's prefix) on `link` unless it is there.
/// A different IPv4 address, or an overlapping IPv6 one, is replaced with `force`, else an error.
/// Afterwards the link's MAC is set to itself, which pins it: a bridge otherwise takes the
/// lowest MAC of its ports, and changes it as ports come and go.
pub fn ensure_address(host: &mut impl Netlink, link: &Link, gateway: IpNetwork, force: bool) -> Result<()> {
    let family = Family::of(gateway.ip());
    let addrs = host
        .addresses(Some(link.index), Some(family))
        .context(|| "could not get list of IP addresses".to_string())?;
    for a in &addrs {
        if a.address == gateway {
            return Ok(());
        }
        let conflicts =
            family == Family::V4 || a.address.contains(gateway.ip()) || gateway.contains(a.address.ip());
        if !conflicts {
            continue;
        }
        if force {
            host.delete_address(link.index, a.address)
                .context(|| format!("could not remove IP address from {:?}", link.name))?;
        } else {
            return Err(Error::internal(format!(
                "{:?} already has an IP address different from {gateway}",
                link.name
            )));
        }
    }
    host.add_address_if_missing(link.index, gateway)
        .context(|| format!("could not add IP address {gateway} to {:?}", link.name))?;
    if let Some(mac) = link.mac {
        host.set_link_mac(link.index, mac)
            .context(|| "could not set bridge's mac".to_string())?;
    }
    Ok(())
}

/// The VLAN gateway interface `<bridge>.<vlan>`: one end of a host-side veth pair whose other end
/// is a port of the bridge in the VLAN. Created (up) if missing. Returns it and whether it was
/// created now.
pub fn ensure_vlan_gateway<K: Kernel>(
    kernel: &mut K,
    host: &mut K::Socket,
    bridge: &Link,
    conf: &BridgeConf,
) -> Result<(Link, bool)> {
    let name = format!("{}.{}", bridge.name, conf.vlan);
    if let Some(link) = host
        .find_link_by_name(&name)
        .context(|| format!("failed to find interface {name:?}"))?
    {
        return Ok((link, false));
    }
    let mtu = (bridge.mtu != 0).then_some(bridge.mtu);
    let port = veth::create(kernel, host, None, &name, mtu, None, bridge).map_err(|e| {
        Error::caused_by(
            Code::INTERNAL,
            format!("failed to create vlan gateway {name:?}"),
            e,
        )
    })?;
    let attached = (|| {
        vlan::configure_port(host, &port, conf.vlan, &[], conf.preserve_default_vlan)?;
        let lookup = || format!("failed to lookup {name:?}");
        let gateway = host.link_by_name(&name).context(lookup)?;
        host.set_link_up(gateway.index)
            .context(|| format!("failed to up {name:?}"))?;
        host.link_by_index(gateway.index).context(lookup)
    })();
    match attached {
        Ok(link) => Ok((link, true)),
        Err(e) => {
            let _ = host.delete_link(port.index);
            Err(e)
        }
    }
}
