//! Bridge-port VLAN entries (`bridge vlan add/del/show`) and link flags the other modules do not
//! report (promiscuous mode), on a [`Socket`].
//!
//! A VLAN entry is set with `RTM_SETLINK` and removed with `RTM_DELLINK`, both of family
//! `AF_BRIDGE`, carrying `IFLA_AF_SPEC { IFLA_BRIDGE_FLAGS = MASTER, IFLA_BRIDGE_VLAN_INFO }`,
//! which is what `bridge vlan add dev X vid N [pvid] [untagged] master` sends.

use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkMessage,
};

use crate::error::{Error, Result};
use crate::netlink::Socket;

/// One VLAN entry of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    /// The VLAN id (1-4094).
    pub vid: u16,
    /// Untagged ingress frames are put in this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

fn check_vid(vid: u16) -> Result<()> {
    if vid == 0 || vid > 4094 {
        return Err(Error::InvalidArgument(format!("VLAN id {vid} is not in 1-4094")));
    }
    Ok(())
}

/// The `AF_BRIDGE` link message that adds or removes `vlan` on port `index` (master flag).
pub fn port_vlan_message(index: u32, vlan: PortVlan) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = index;
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    msg.attributes.push(LinkAttribute::AfSpecBridge(vec![
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid: vlan.vid }),
    ]));
    msg
}

impl Socket {
    /// Adds (or updates) a VLAN entry on bridge port `index`.
    pub fn add_port_vlan(&mut self, index: u32, vlan: PortVlan) -> Result<()> {
        check_vid(vlan.vid)?;
        self.request(RouteNetlinkMessage::SetLink(port_vlan_message(index, vlan)))
            .map(drop)
    }

    /// Removes VLAN `vid` from bridge port `index`; false when it was not there.
    pub fn delete_port_vlan(&mut self, index: u32, vid: u16) -> Result<bool> {
        check_vid(vid)?;
        let vlan = PortVlan {
            vid,
            pvid: false,
            untagged: false,
        };
        match self.request(RouteNetlinkMessage::DelLink(port_vlan_message(index, vlan))) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The VLAN entries of bridge port `index` (a dump of every bridge port, filtered).
    pub fn port_vlans(&mut self, index: u32) -> Result<Vec<PortVlan>> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let replies = self.dump(RouteNetlinkMessage::GetLink(msg))?;
        let mut out = Vec::new();
        for reply in &replies {
            let RouteNetlinkMessage::NewLink(link) = reply else {
                continue;
            };
            if link.header.index != index {
                continue;
            }
            for attr in &link.attributes {
                if let LinkAttribute::AfSpecBridge(specs) = attr {
                    for spec in specs {
                        if let AfSpecBridge::VlanInfo(info) = spec {
                            out.push(PortVlan {
                                vid: info.vid,
                                pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether link `index` is in promiscuous mode (`IFF_PROMISC`).
    pub fn link_is_promisc(&mut self, index: u32) -> Result<bool> {
        Ok(self.link_flags(index)?.contains(LinkFlags::Promisc))
    }

    /// The `IFF_*` flags of link `index` (`IFF_PROMISC`, `IFF_UP`, ...).
    pub fn link_flags(&mut self, index: u32) -> Result<LinkFlags> {
        if index == 0 {
            return Err(Error::InvalidArgument("link index 0".into()));
        }
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg))?;
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.flags),
                _ => None,
            })
            .ok_or_else(|| {
                Error::UnexpectedReply(format!("no link in the answer to a lookup of index {index}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;

    #[test]
    fn pvid_untagged_vlan_message_golden_bytes() {
        let msg = port_vlan_message(
            9,
            PortVlan {
                vid: 100,
                pvid: true,
                untagged: true,
            },
        );
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // ifinfomsg: AF_BRIDGE, pad, type 0, index 9, flags 0, change 0
            &[7u8, 0, 0, 0][..], &9u32.to_ne_bytes(), &[0; 8],
            // IFLA_AF_SPEC (26), len 4 + 8 + 8 (no NLA_F_NESTED, as iproute2 sends it)
            &20u16.to_ne_bytes(), &26u16.to_ne_bytes(),
            // IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_MASTER
            &6u16.to_ne_bytes(), &0u16.to_ne_bytes(), &1u16.to_ne_bytes(), &[0, 0],
            // IFLA_BRIDGE_VLAN_INFO { flags PVID|UNTAGGED, vid 100 }
            &8u16.to_ne_bytes(), &2u16.to_ne_bytes(), &6u16.to_ne_bytes(), &100u16.to_ne_bytes(),
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn vid_range_is_checked() {
        assert!(check_vid(0).is_err());
        assert!(check_vid(4095).is_err());
        assert!(check_vid(1).is_ok());
        assert!(check_vid(4094).is_ok());
    }
}
