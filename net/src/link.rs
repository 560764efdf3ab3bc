//! Typed link operations on a [`Socket`]: look up, create (bridge, veth pair), change, delete.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::str::FromStr;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, LinkProtoInfoBridge, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::netlink::Socket;

/// `IFLA_BRPORT_MODE`: hairpin mode of a bridge port.
const IFLA_BRPORT_MODE: u16 = 4;
/// `IFLA_BRPORT_ISOLATED`: an isolated port only forwards to non-isolated ports.
const IFLA_BRPORT_ISOLATED: u16 = 33;

/// What kind of link it is (`IFLA_INFO_KIND`, or loopback / plain device when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// The loopback device.
    Loopback,
    /// A Linux bridge.
    Bridge,
    /// One end of a veth pair.
    Veth,
    /// A device without `IFLA_INFO_KIND` (a physical NIC, for example).
    Device,
    /// Any other kind, by its kernel name (`vxlan`, `macvlan`, ...).
    Other(String),
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkKind::Loopback => f.write_str("loopback"),
            LinkKind::Bridge => f.write_str("bridge"),
            LinkKind::Veth => f.write_str("veth"),
            LinkKind::Device => f.write_str("device"),
            LinkKind::Other(kind) => f.write_str(kind),
        }
    }
}

/// Operational state (`IFLA_OPERSTATE`, RFC 2863).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    /// `UNKNOWN`: the driver does not report it (loopback, for example).
    Unknown,
    /// `NOTPRESENT`.
    NotPresent,
    /// `DOWN`.
    Down,
    /// `LOWERLAYERDOWN`: down because the lower layer (a veth peer, the bridge's ports) is.
    LowerLayerDown,
    /// `TESTING`.
    Testing,
    /// `DORMANT`.
    Dormant,
    /// `UP`: ready to pass packets.
    Up,
}

impl From<&State> for OperState {
    fn from(state: &State) -> Self {
        match state {
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            _ => OperState::Unknown,
        }
    }
}

/// A 48-bit Ethernet address, shown and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidArgument(format!("{s:?} is not a MAC address"));
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(out))
    }
}

/// What the kernel reports about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Kind of link.
    pub kind: LinkKind,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operational state.
    pub oper_state: OperState,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<MacAddr>,
    /// Index of the master (the bridge a port is enslaved to).
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index. The index is in the peer's namespace, which is
    /// another one when [`Link::link_netnsid`] is set.
    pub peer_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer's namespace id, when it is not this namespace.
    pub link_netnsid: Option<i32>,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: LinkKind::Device,
            up: msg.header.flags.contains(LinkFlags::Up),
            oper_state: OperState::Unknown,
            mtu: 0,
            mac: None,
            master: None,
            peer_index: None,
            link_netnsid: None,
        };
        if msg.header.flags.contains(LinkFlags::Loopback)
            || msg.header.link_layer_type == LinkLayerType::Loopback
        {
            link.kind = LinkKind::Loopback;
        }
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::OperState(state) => link.oper_state = state.into(),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
                }
                LinkAttribute::Controller(index) if *index != 0 => link.master = Some(*index),
                LinkAttribute::Link(index) if *index != 0 => link.peer_index = Some(*index),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = match kind {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Veth => LinkKind::Veth,
                                other => LinkKind::Other(other.to_string()),
                            };
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// A bridge to create with [`Socket::ensure_bridge`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BridgeSpec {
    /// Interface name.
    pub name: String,
    /// MTU; the kernel default when `None`.
    pub mtu: Option<u32>,
    /// `vlan_filtering`: `Some(true)` turns it on; `None` and `Some(false)` leave the kernel
    /// default (off).
    pub vlan_filtering: Option<bool>,
    /// Hardware address; random when `None`.
    pub mac: Option<MacAddr>,
}

/// A link that [`Socket::ensure_bridge`] found or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The link as the kernel reports it.
    pub link: Link,
    /// True when this call created it (so an undo should delete it).
    pub created: bool,
}

/// The `RTM_NEWLINK` that creates a bridge.
pub fn bridge_message(spec: &BridgeSpec) -> LinkMessage {
    let mut msg = link_message(0);
    msg.attributes.push(LinkAttribute::IfName(spec.name.clone()));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
    // Off is the kernel default; sending it would fail on kernels built without
    // CONFIG_BRIDGE_VLAN_FILTERING (EOPNOTSUPP), so only `true` is sent, as Go's plugin does.
    if spec.vlan_filtering == Some(true) {
        info.push(LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(
            true,
        )])));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

/// The `RTM_NEWLINK` that creates the veth pair `name` (here, with `mtu` and `mac`) and
/// `peer_name` (in the namespace `peer_netns` when given, with `mtu`).
pub fn veth_message(
    name: &str,
    peer_name: &str,
    peer_netns: Option<BorrowedFd<'_>>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) -> LinkMessage {
    let mut peer = link_message(0);
    peer.attributes.push(LinkAttribute::IfName(peer_name.to_string()));
    if let Some(mtu) = mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(fd) = peer_netns {
        peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    let mut msg = link_message(0);
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    if let Some(mtu) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

/// A veth pair for [`Socket::create_veth_port`]: the end `name` in the socket's namespace,
/// made a port of `master` and up from the start, and its peer in another namespace.
#[derive(Debug, Clone, Copy)]
pub struct VethPort<'a> {
    /// Name of the end in the socket's namespace.
    pub name: &'a str,
    /// The bridge (index) this end is enslaved to, `None` for none.
    pub master: Option<u32>,
    /// Whether this end is brought up.
    pub up: bool,
    /// Name of the other end.
    pub peer_name: &'a str,
    /// The other end's namespace; the socket's own when `None`.
    pub peer_netns: Option<BorrowedFd<'a>>,
    /// Hardware address of the other end; random when `None`.
    pub peer_mac: Option<MacAddr>,
    /// MTU of both ends; the kernel default when `None`.
    pub mtu: Option<u32>,
}

/// The `RTM_NEWLINK` that creates a [`VethPort`]. The kernel applies the up flag and then the
/// master after registering both ends (`rtnl_newlink_create`), the order of Go's `LinkSetUp`
/// and `LinkSetMaster`.
///
/// Both ends get one TX and one RX queue. Without the attributes the kernel allocates one
/// queue per possible CPU and then cuts the real count to one (`veth_init_queues`), and the
/// cut of the TX queues waits for an expedited RCU grace period while holding RTNL, once per
/// end: that serialized every concurrent ADD on the host. The data path is the same (one real
/// queue either way); only `ethtool -L` can no longer raise the count on these veths.
pub fn veth_port_message(port: &VethPort<'_>) -> LinkMessage {
    let mut peer = link_message(0);
    peer.attributes
        .push(LinkAttribute::IfName(port.peer_name.to_string()));
    if let Some(mtu) = port.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = port.peer_mac {
        peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(fd) = port.peer_netns {
        peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    peer.attributes.extend(single_queue());
    let mut msg = link_message(0);
    if port.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    msg.attributes.push(LinkAttribute::IfName(port.name.to_string()));
    if let Some(mtu) = port.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(master) = port.master {
        msg.attributes.push(LinkAttribute::Controller(master));
    }
    msg.attributes.extend(single_queue());
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

/// One TX and one RX queue (see [`veth_port_message`]).
fn single_queue() -> [LinkAttribute; 2] {
    [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)]
}

/// The `RTM_SETLINK` (family `AF_BRIDGE`) that sets one `IFLA_BRPORT_*` u8 flag of a bridge port
/// inside `IFLA_PROTINFO`, as `bridge link set dev X hairpin on` does.
pub fn bridge_port_flag_message(index: u32, attr: u16, on: bool) -> LinkMessage {
    let mut msg = link_message(index);
    msg.header.interface_family = AddressFamily::Bridge;
    msg.attributes
        .push(LinkAttribute::ProtoInfoBridge(vec![LinkProtoInfoBridge::Other(
            DefaultNla::new(attr, vec![u8::from(on)]),
        )]));
    msg
}

fn link_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// The `RTM_GETLINK` for the link `index` (0: the one named by an attribute added later, or
/// every link in a dump), without statistics: `RTEXT_FILTER_SKIP_STATS` leaves out the
/// counters (`IFLA_STATS`, `IFLA_STATS64`, IPv6's), a fifth of a veth's 1.9 KB answer and the
/// kernel's work of summing them per CPU, none of which a [`Link`] holds.
fn get_link_message(index: u32) -> LinkMessage {
    let mut msg = link_message(index);
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

fn single_link(replies: Vec<RouteNetlinkMessage>, what: &str) -> Result<Link> {
    replies
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })
        .ok_or_else(|| Error::UnexpectedReply(format!("no link in the answer to a lookup of {what}")))
}

fn absent_is_false<T>(result: Result<T>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.errno(),
                Some(nix::errno::Errno::ENODEV | nix::errno::Errno::ENOENT)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn check_name(name: &str) -> Result<()> {
    // IFNAMSIZ is 16 including the NUL.
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', '\0'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a valid interface name"
        )));
    }
    Ok(())
}

impl Socket {
    /// The link named `name`. A missing link is [`Error::Kernel`] with `ENODEV`
    /// ([`Error::is_not_found`]).
    pub fn link_by_name(&mut self, name: &str) -> Result<Link> {
        check_name(name)?;
        let mut msg = get_link_message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let replies = self.request(RouteNetlinkMessage::GetLink(msg))?;
        single_link(replies, name)
    }

    /// The link named `name`, or `None` when there is none.
    pub fn find_link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        match self.link_by_name(name) {
            Ok(link) => Ok(Some(link)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link with index `index`. A missing link is [`Error::Kernel`] with `ENODEV`.
    pub fn link_by_index(&mut self, index: u32) -> Result<Link> {
        if index == 0 {
            return Err(Error::InvalidArgument("link index 0".into()));
        }
        let replies = self.request(RouteNetlinkMessage::GetLink(get_link_message(index)))?;
        single_link(replies, &format!("index {index}"))
    }

    /// Every link in the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(get_link_message(0)))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// Sets the link administratively up (`ip link set dev X up`).
    pub fn set_link_up(&mut self, index: u32) -> Result<()> {
        self.set_link_flag_up(index, true)
    }

    /// Sets a bridge port up without IPv6 address autoconfiguration (`addrgenmode none`, in the
    /// same request, which the kernel applies before the up): the port forwards IPv6 at layer
    /// 2 but gets no link-local address of its own, so it also sends no DAD or MLD and its
    /// deletion removes no address. Each address removal in a namespace where MASQUERADE is
    /// in use makes the kernel walk that namespace's whole conntrack table
    /// (`nf_nat_masquerade`), about 30 ms of CPU at 100,000 entries, so a host veth with a
    /// link-local address cost two such walks per DEL instead of one. A kernel without IPv6
    /// refuses the attribute (`EAFNOSUPPORT`): then the link is plainly set up.
    pub fn set_port_up(&mut self, index: u32) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.change_mask = LinkFlags::Up;
        msg.header.flags = LinkFlags::Up;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
                AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
            ])]));
        match self.set_link(msg) {
            Err(e) if e.errno() == Some(Errno::EAFNOSUPPORT) => self.set_link_up(index),
            other => other,
        }
    }

    /// Sets the link administratively down.
    pub fn set_link_down(&mut self, index: u32) -> Result<()> {
        self.set_link_flag_up(index, false)
    }

    fn set_link_flag_up(&mut self, index: u32, up: bool) -> Result<()> {
        self.set_link_flag(index, LinkFlags::Up, up)
    }

    /// Turns promiscuous mode on or off (`ip link set dev X promisc on`).
    pub fn set_link_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_link_flag(index, LinkFlags::Promisc, on)
    }

    fn set_link_flag(&mut self, index: u32, flag: LinkFlags, on: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.change_mask = flag;
        if on {
            msg.header.flags = flag;
        }
        self.set_link(msg)
    }

    /// Deletes the link named `name`. Returns false when there was none, so a DEL can be
    /// repeated. Deleting one end of a veth pair deletes both.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        check_name(name)?;
        let mut msg = link_message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        absent_is_false(self.request(RouteNetlinkMessage::DelLink(msg)))
    }

    /// Deletes the link with index `index`; false when there was none.
    pub fn delete_link(&mut self, index: u32) -> Result<bool> {
        absent_is_false(self.request(RouteNetlinkMessage::DelLink(link_message(index))))
    }

    /// Creates the bridge, or finds it when a bridge of that name exists already (the options
    /// are then left as they are). A link of that name that is not a bridge is
    /// [`Error::LinkKindMismatch`].
    pub fn ensure_bridge(&mut self, spec: &BridgeSpec) -> Result<Ensured> {
        check_name(&spec.name)?;
        let created = match self.request_with_flags(
            RouteNetlinkMessage::NewLink(bridge_message(spec)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => true,
            Err(e) if e.is_exists() => false,
            Err(e) => return Err(e),
        };
        let link = self.link_by_name(&spec.name)?;
        if link.kind != LinkKind::Bridge {
            return Err(Error::LinkKindMismatch {
                name: spec.name.clone(),
                expected: LinkKind::Bridge.to_string(),
                found: link.kind.to_string(),
            });
        }
        Ok(Ensured { link, created })
    }

    /// Creates a veth pair: `name` in the socket's namespace (with `mac` when given) and
    /// `peer_name` in the namespace `peer_netns` (the socket's own when `None`), both with `mtu`.
    /// Returns the `name` end. A name in use is [`Error::Kernel`] with `EEXIST`.
    ///
    /// The bridge plugin opens a socket inside the container namespace and creates the
    /// container end there, with the host end's peer namespace being the host's.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: Option<BorrowedFd<'_>>,
        mtu: Option<u32>,
        mac: Option<MacAddr>,
    ) -> Result<Link> {
        check_name(name)?;
        check_name(peer_name)?;
        let msg = veth_message(name, peer_name, peer_netns, mtu, mac);
        self.request_with_flags(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        self.link_by_name(name)
    }

    /// Creates the veth pair `port` in one request and returns the end in this socket's
    /// namespace as the kernel reports it right after creation (before the master is set, so
    /// [`Link::master`] is `None`). A name in use on either side is [`Error::Kernel`] with
    /// `EEXIST`; when the master cannot be set, neither end is left.
    ///
    /// The kernel echoes the new link (`NLM_F_ECHO`, Linux 6.3 and later), which saves a
    /// lookup; older kernels answer with the ACK only and the link is looked up by name.
    pub fn create_veth_port(&mut self, port: &VethPort<'_>) -> Result<Link> {
        check_name(port.name)?;
        check_name(port.peer_name)?;
        let replies = self.request_with_flags(
            RouteNetlinkMessage::NewLink(veth_port_message(port)),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        let echoed = replies.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        });
        match echoed {
            Some(link) if link.name == port.name && link.index != 0 => Ok(link),
            _ => self.link_by_name(port.name),
        }
    }

    /// Enslaves the link to `master` (a bridge), or frees it with `None`.
    pub fn set_link_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes
            .push(LinkAttribute::Controller(master.unwrap_or(0)));
        self.set_link(msg)
    }

    /// Sets the hardware address.
    pub fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link(msg)
    }

    /// Sets the MTU.
    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(msg)
    }

    /// Renames the link (it must be down).
    pub fn set_link_name(&mut self, index: u32, name: &str) -> Result<()> {
        check_name(name)?;
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_link(msg)
    }

    /// Moves the link into the namespace `netns`. Its index may change there.
    pub fn set_link_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.set_link(msg)
    }

    /// Turns hairpin mode of a bridge port on or off (traffic may leave by the port it came in).
    pub fn set_bridge_port_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_link(bridge_port_flag_message(index, IFLA_BRPORT_MODE, on))
    }

    /// Isolates a bridge port or not (isolated ports only forward to non-isolated ports).
    pub fn set_bridge_port_isolated(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_link(bridge_port_flag_message(index, IFLA_BRPORT_ISOLATED, on))
    }

    fn set_link(&mut self, msg: LinkMessage) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(msg)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    fn emit(msg: &LinkMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn hairpin_message_golden_bytes() {
        let bytes = emit(&bridge_port_flag_message(7, IFLA_BRPORT_MODE, true));
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // ifinfomsg: AF_BRIDGE, pad, type 0, index 7, flags 0, change 0
            &[7u8, 0, 0, 0][..], &7u32.to_ne_bytes(), &[0; 8],
            // IFLA_PROTINFO | NLA_F_NESTED, len 12
            &12u16.to_ne_bytes(), &(12u16 | 0x8000).to_ne_bytes(),
            // IFLA_BRPORT_MODE = 1 (u8, padded)
            &5u16.to_ne_bytes(), &4u16.to_ne_bytes(), &[1, 0, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn isolated_off_message_carries_zero() {
        let bytes = emit(&bridge_port_flag_message(3, IFLA_BRPORT_ISOLATED, false));
        assert_eq!(&bytes[20..24], &[5, 0, 33, 0]);
        assert_eq!(bytes[24], 0);
    }

    #[test]
    fn bridge_message_round_trips() {
        let spec = BridgeSpec {
            name: "cni0".into(),
            mtu: Some(1400),
            vlan_filtering: Some(true),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
        };
        let msg = bridge_message(&spec);
        let parsed = LinkMessage::parse(&emit(&msg)[..]).unwrap();
        assert_eq!(parsed.attributes[0], LinkAttribute::IfName("cni0".into()));
        assert_eq!(parsed.attributes[1], LinkAttribute::Mtu(1400));
        assert_eq!(
            parsed.attributes[2],
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])
        );
        assert_eq!(
            parsed.attributes[3],
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
            ])
        );
    }

    #[test]
    fn bridge_without_vlan_filtering_sends_only_the_kind() {
        let spec = BridgeSpec {
            name: "cni0".into(),
            vlan_filtering: Some(false),
            ..BridgeSpec::default()
        };
        let msg = bridge_message(&spec);
        assert_eq!(
            msg.attributes[1],
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)])
        );
    }

    #[test]
    fn veth_message_nests_the_peer_with_its_namespace() {
        let msg = veth_message("eth0", "veth1234abcd", None, Some(1500), None);
        let parsed = LinkMessage::parse(&emit(&msg)[..]).unwrap();
        let Some(LinkAttribute::LinkInfo(info)) = parsed.attributes.last() else {
            panic!("{parsed:?}")
        };
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
            panic!("{info:?}")
        };
        assert_eq!(
            peer.attributes,
            vec![
                LinkAttribute::IfName("veth1234abcd".into()),
                LinkAttribute::Mtu(1500)
            ]
        );
    }

    #[test]
    fn veth_port_message_is_up_enslaved_with_the_peer_nested() {
        let mac: MacAddr = "02:00:00:00:00:09".parse().unwrap();
        let port = VethPort {
            name: "veth1234abcd",
            master: Some(3),
            up: true,
            peer_name: "eth0",
            peer_netns: None,
            peer_mac: Some(mac),
            mtu: Some(1400),
        };
        let parsed = LinkMessage::parse(&emit(&veth_port_message(&port))[..]).unwrap();
        assert_eq!(parsed.header.flags, LinkFlags::Up);
        assert_eq!(parsed.header.change_mask, LinkFlags::Up);
        assert_eq!(
            parsed.attributes[..5],
            [
                LinkAttribute::IfName("veth1234abcd".into()),
                LinkAttribute::Mtu(1400),
                LinkAttribute::Controller(3),
                LinkAttribute::NumTxQueues(1),
                LinkAttribute::NumRxQueues(1)
            ]
        );
        let Some(LinkAttribute::LinkInfo(info)) = parsed.attributes.last() else {
            panic!("{parsed:?}")
        };
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
            panic!("{info:?}")
        };
        assert_eq!(
            peer.attributes,
            vec![
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::Mtu(1400),
                LinkAttribute::Address(mac.0.to_vec()),
                LinkAttribute::NumTxQueues(1),
                LinkAttribute::NumRxQueues(1)
            ]
        );
        assert!(peer.header.flags.is_empty());
    }

    #[test]
    fn link_from_message_reads_kind_master_and_peer() {
        let mut msg = link_message(5);
        msg.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        msg.attributes = vec![
            LinkAttribute::IfName("veth0".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Address(vec![0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(9),
            LinkAttribute::LinkNetNsId(0),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let link = Link::from_message(&msg);
        assert_eq!(link.index, 5);
        assert_eq!(link.name, "veth0");
        assert_eq!(link.kind, LinkKind::Veth);
        assert!(link.up);
        assert_eq!(link.oper_state, OperState::Up);
        assert_eq!(link.mtu, 1450);
        assert_eq!(
            link.mac.map(|m| m.to_string()).as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(link.master, Some(3));
        assert_eq!(link.peer_index, Some(9));
        assert_eq!(link.link_netnsid, Some(0));
    }

    #[test]
    fn mac_parse_and_display() {
        let mac: MacAddr = "0A:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(mac.to_string(), "0a:1b:2c:3d:4e:5f");
        assert!("0a:1b:2c:3d:4e".parse::<MacAddr>().is_err());
        assert!("0a:1b:2c:3d:4e:5f:00".parse::<MacAddr>().is_err());
        assert!("0a:1b:2c:3d:4e:zz".parse::<MacAddr>().is_err());
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_name("eth0.100").is_ok());
        assert!(check_name("0123456789abcde").is_ok());
        assert!(check_name("0123456789abcdef").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
    }
}
