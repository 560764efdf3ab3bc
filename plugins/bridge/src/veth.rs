//! The veth pair: created from inside the container namespace, the container end named
//! CNI_IFNAME and the host end `veth` + 8 hex characters placed directly in the host namespace.

use std::os::fd::AsFd;

use cni::{Error, Result, ResultExt};
use cni_net::sysctl::{self, conf_key};
use cni_net::{Family, Link, MacAddr, Netns, Socket};

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

/// Creates `ifname` through `inner` (a socket of the namespace it goes in) with its peer named
/// `host_name` (random when `None`) in `host_ns`, brings the host end up with `accept_ra=0`.
/// With `inner` being a host socket too this makes a pair inside the host (the VLAN gateway).
pub fn create(
    inner: &mut Socket,
    host: &mut Socket,
    host_ns: &Netns,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) -> Result<Pair> {
    let mut last_name = String::new();
    for _ in 0..NAME_TRIES {
        let peer = random_name()?;
        match inner.create_veth(ifname, &peer, Some(host_ns.as_fd()), mtu, mac) {
            Ok(inner_link) => {
                let host_link = match finish_host_end(host, &peer) {
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

fn finish_host_end(host: &mut Socket, name: &str) -> Result<Link> {
    let link = host
        .link_by_name(name)
        .internal(|| format!("failed to lookup {name:?}"))?;
    host.set_link_up(link.index)
        .internal(|| format!("failed to set {name:?} up"))?;
    if let Ok(key) = conf_key(Family::V6, name, "accept_ra") {
        let _ = sysctl::write(&key, "0");
    }
    Ok(link)
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
