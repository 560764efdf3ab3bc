//! The veth pair: created from inside the container namespace, the container end named
//! CNI_IFNAME and the host end `veth` + 8 hex characters placed directly in the host namespace.

use std::os::fd::AsFd;

use cni::{Error, Result, ResultExt};
use cni_net::sysctl::{self, conf_key};
use cni_net::{Family, Link, MacAddr, Netns, Socket};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

/// How many random host-end names are tried before giving up (Go's number).
const NAME_TRIES: usize = 10;

/// A `veth` + 8 hex name from 4 random bytes, as Go names the host end.
pub fn random_name() -> Result<String> {
    let mut bytes = [0u8; 4];
    // SAFETY: the buffer is valid for writes of its length; getrandom does not keep the pointer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(Error::internal("failed to generate random veth name")
            .with_details(std::io::Error::last_os_error().to_string()));
    }
    Ok(format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    ))
}

/// The two ends of a new pair.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The end in the other namespace (the container's).
    pub inner: Link,
    /// The host end, up, in the host namespace.
    pub host: Link,
}

/// Creates `ifname` through `inner` (a socket of the namespace it goes in) with its peer, named
/// `veth` + 8 random hex digits, in `host_ns`; the host end is enslaved to `bridge` and brought
/// up in one request, with `accept_ra=0`. With `inner` being a host socket too this makes a
/// pair inside the host (the VLAN gateway).
pub fn create(
    inner: &mut Socket,
    host: &mut Socket,
    host_ns: &Netns,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    bridge: &Link,
) -> Result<Pair> {
    let mut last_name = String::new();
    for _ in 0..NAME_TRIES {
        let peer = random_name()?;
        match inner.create_veth(ifname, &peer, Some(host_ns.as_fd()), mtu, mac) {
            Ok(inner_link) => {
                let host_link = match finish_host_end(host, &peer, bridge) {
                    Ok(link) => link,
                    Err(e) => {
                        let _ = inner.delete_link(inner_link.index);
                        return Err(e);
                    }
                };
                return Ok(Pair {
                    inner: inner_link,
                    host: host_link,
                });
            }
            Err(e) if e.is_exists() => {
                // Either our random name is taken in the host (try another) or CNI_IFNAME
                // exists in the container (an error).
                if host.find_link_by_name(&peer).ok().flatten().is_some() {
                    last_name = peer;
                    continue;
                }
                return Err(Error::internal(format!(
                    "container veth name ({ifname:?}) peer provided ({peer:?}) already exists"
                )));
            }
            Err(e) => return Err(e).internal(|| "failed to make veth pair".to_string()),
        }
    }
    Err(Error::internal("failed to find a unique veth name").with_details(format!("last tried {last_name}")))
}

fn finish_host_end(host: &mut Socket, name: &str, bridge: &Link) -> Result<Link> {
    let link = host
        .link_by_name(name)
        .internal(|| format!("failed to lookup {name:?}"))?;
    enslave_and_up(host, link.index, bridge.index).internal(|| {
        format!(
            "failed to connect {name:?} to bridge {} and set it up",
            bridge.name
        )
    })?;
    if let Ok(key) = conf_key(Family::V6, name, "accept_ra") {
        let _ = sysctl::write(&key, "0");
    }
    Ok(link)
}

/// One `RTM_SETLINK` that sets the master and the up flag (the kernel applies the master
/// first), instead of Go's two.
fn enslave_and_up(host: &mut Socket, index: u32, bridge: u32) -> cni_net::Result<()> {
    host.request(RouteNetlinkMessage::SetLink(enslave_up_message(index, bridge)))
        .map(drop)
}

fn enslave_up_message(index: u32, bridge: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::Controller(bridge));
    msg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn random_names_look_like_gos() {
        let a = random_name().unwrap();
        let b = random_name().unwrap();
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(
            a[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn one_message_enslaves_and_raises() {
        use netlink_packet_core::Emitable;
        let msg = enslave_up_message(7, 3);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        // ifinfomsg: family, pad, type, index 7, flags IFF_UP, change IFF_UP; then IFLA_MASTER 3.
        assert_eq!(
            buf,
            [
                0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, //
                8, 0, 10, 0, 3, 0, 0, 0
            ]
        );
    }
}
