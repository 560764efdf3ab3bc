//! Typed link operations on a [`Socket`]: look up, create (bridge, veth pair), change, delete.

use std::fmt;
use std::str::FromStr;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State,
};

use crate::error::{Error, Result};
use crate::netlink::Socket;

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

fn link_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
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
        let mut msg = link_message(0);
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
        let replies = self.request(RouteNetlinkMessage::GetLink(link_message(index)))?;
        single_link(replies, &format!("index {index}"))
    }

    /// Every link in the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
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

    /// Sets the link administratively down.
    pub fn set_link_down(&mut self, index: u32) -> Result<()> {
        self.set_link_flag_up(index, false)
    }

    fn set_link_flag_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        self.set_link(msg)
    }

    fn set_link(&mut self, msg: LinkMessage) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(msg)).map(drop)
    }
}
