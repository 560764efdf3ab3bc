//! The veth pair: created from the host namespace in one request, the host end named `veth` +
//! 8 hex characters, enslaved to the bridge and up, the other end named CNI_IFNAME placed
//! directly in the container namespace.

use cni::{Error, Result};
use cni_net::Context;
use cni_net::link::VethPort;
use cni_net::sysctl::conf_key;
use cni_net::{Family, Link, MacAddr};

use crate::kernel::{Kernel, Netlink};

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

/// Creates the pair through `host` (a socket of the host namespace): the host end, named
/// `veth` + 8 random hex digits, enslaved to `bridge` and up, with `accept_ra=0` and no IPv6
/// address of its own; the other end `ifname` (with `mac` when given) in `inner_ns`, or beside
/// the host end when `None` (the VLAN gateway). Returns the host end; the pair exists from
/// here on, so the caller registers its removal.
///
/// One `RTM_NEWLINK` replaces Go's creation from inside the container plus a lookup and
/// `LinkSetMaster` of the host end, and removes both ends when either fails; a second one sets
/// the host end up without IPv6 autoconfiguration ([`cni_net::Socket::set_port_up`]: a bridge
/// port needs no address, and one more address is one more walk of the conntrack table when
/// it goes).
pub fn create<K: Kernel>(
    kernel: &mut K,
    host: &mut K::Socket,
    inner_ns: Option<&K::Netns>,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    bridge: &Link,
) -> Result<Link> {
    let mut last_name = String::new();
    for _ in 0..NAME_TRIES {
        let name = random_name()?;
        let port = VethPort {
            name: &name,
            master: Some(bridge.index),
            up: false,
            peer_name: ifname,
            peer_netns: None,
            peer_mac: mac,
            mtu,
        };
        match kernel.create_veth_port(host, &port, inner_ns) {
            Ok(link) => {
                if let Ok(key) = conf_key(Family::V6, &link.name, "accept_ra") {
                    let _ = kernel.write_sysctl(&key, "0");
                }
                if let Err(e) = host.set_port_up(link.index) {
                    // Not returned, so not the caller's to remove.
                    let _ = host.delete_link(link.index);
                    return Err(e).context(|| format!("failed to set {:?} up", link.name));
                }
                return Ok(link);
            }
            Err(e) if e.is_exists() => {
                // Either our random name is taken in the host (try another) or CNI_IFNAME
                // exists in the container (an error).
                if host.find_link_by_name(&name).ok().flatten().is_some() {
                    last_name = name;
                    continue;
                }
                return Err(Error::internal(format!(
                    "container veth name ({ifname:?}) peer provided ({name:?}) already exists"
                )));
            }
            Err(e) => return Err(e).context(|| "failed to make veth pair".to_string()),
        }
    }
    Err(Error::internal("failed to find a unique veth name").with_details(format!("last tried {last_name}")))
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
}
