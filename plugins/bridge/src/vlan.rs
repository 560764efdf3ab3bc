//! VLAN settings of a bridge port: access VLAN (PVID, untagged), trunk VLANs (tagged), the native
//! VLAN 1 of a trunk without access VLAN, and removal of the port's default VLANs.

use cni::Result;
use cni_net::Context;
use cni_net::Link;
use cni_net::bridge_vlan::PortVlan;

use crate::kernel::Netlink;

/// Applies Go's VLAN rules to the new port `port`.
pub fn configure_port(
    host: &mut impl Netlink,
    port: &Link,
    vlan: u16,
    trunk: &[u16],
    preserve_default_vlan: bool,
) -> Result<()> {
    let name = &port.name;
    if (vlan != 0 || !trunk.is_empty()) && !preserve_default_vlan {
        let existing = host
            .port_vlans(port.index)
            .context(|| format!("failed to remove default vlan on interface {name:?}"))?;
        for v in existing {
            host.delete_port_vlan(port.index, v.vid)
                .context(|| format!("failed to remove default vlan on interface {name:?}"))?;
        }
    }
    if vlan != 0 {
        host.add_port_vlan(port.index, access(vlan))
            .context(|| format!("failed to setup vlan tag on interface {name:?}"))?;
    }
    for &vid in trunk {
        let tagged = PortVlan {
            vid,
            pvid: false,
            untagged: false,
        };
        host.add_port_vlan(port.index, tagged)
            .context(|| format!("failed to setup vlan tag on interface {name:?}"))?;
    }
    if vlan == 0 && !trunk.is_empty() {
        host.add_port_vlan(port.index, access(1))
            .context(|| format!("failed to setup default native vlan tag on interface {name:?}"))?;
    }
    Ok(())
}

fn access(vid: u16) -> PortVlan {
    PortVlan {
        vid,
        pvid: true,
        untagged: true,
    }
}
