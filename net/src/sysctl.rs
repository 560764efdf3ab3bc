//! Reading and writing sysctls as files under `/proc/sys`.
//!
//! The `net.*` files under `/proc/sys` belong to the network namespace of the **calling
//! thread**: to change a container's sysctl, call these inside [`crate::Netns::run`].
//!
//! Keys are accepted in both spellings `sysctl(8)` knows:
//! - slash form, the path under `/proc/sys`: `net/ipv4/conf/eth0.100/forwarding`;
//! - dotted form: `net.ipv4.conf.eth0/100.forwarding`, where a `/` stands for a `.` inside a
//!   component (an interface name like `eth0.100`), as the kernel's naming wants.
//!
//! Whichever separator comes first in the key decides the form. For per-interface settings
//! [`conf_key`] builds the slash form from a raw interface name.

use std::path::PathBuf;

use crate::addr::Family;
use crate::error::{Error, Result};

/// Where sysctls live.
pub const PROC_SYS: &str = "/proc/sys";

/// The file under `/proc/sys` for `key` (slash or dotted form, see the module docs).
pub fn path(key: &str) -> Result<PathBuf> {
    let key = key
        .trim_start_matches('/')
        .strip_prefix("proc/sys/")
        .unwrap_or(key.trim_start_matches('/'));
    let dotted = match (key.find('.'), key.find('/')) {
        (Some(dot), Some(slash)) => dot < slash,
        (Some(_), None) => true,
        _ => false,
    };
    let relative: String = if dotted {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        key.to_string()
    };
    if relative.is_empty()
        || relative
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(Error::InvalidArgument(format!("{key:?} is not a sysctl name")));
    }
    Ok(PathBuf::from(PROC_SYS).join(relative))
}

/// The slash-form key of a per-interface setting: `net/ipv4/conf/<ifname>/<setting>` or
/// `net/ipv6/conf/<ifname>/<setting>`. Dots in `ifname` stay dots.
pub fn conf_key(family: Family, ifname: &str, setting: &str) -> Result<String> {
    if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
        return Err(Error::InvalidArgument(format!(
            "{ifname:?} is not an interface name"
        )));
    }
    let ip = match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    Ok(format!("net/{ip}/conf/{ifname}/{setting}"))
}

/// Reads a sysctl, without the trailing newline.
pub fn read(key: &str) -> Result<String> {
    let path = path(key)?;
    let value = std::fs::read_to_string(&path).map_err(|source| Error::Sysctl { path, source })?;
    Ok(value.trim_end_matches('\n').to_string())
}

/// Writes a sysctl.
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = path(key)?;
    std::fs::write(&path, value.as_bytes()).map_err(|source| Error::Sysctl { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str) -> String {
        path(key).unwrap().display().to_string()
    }

    #[test]
    fn dotted_keys_map_dots_to_slashes_and_slashes_to_dots() {
        assert_eq!(p("net.ipv4.ip_forward"), "/proc/sys/net/ipv4/ip_forward");
        assert_eq!(
            p("net.ipv4.conf.eth0/100.forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
        );
    }

    #[test]
    fn slash_keys_keep_dots_in_interface_names() {
        assert_eq!(
            p("net/ipv4/conf/eth0.100/forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
        );
        assert_eq!(
            p("/proc/sys/net/ipv6/conf/all/forwarding"),
            "/proc/sys/net/ipv6/conf/all/forwarding"
        );
        assert_eq!(p("/net/core/somaxconn"), "/proc/sys/net/core/somaxconn");
    }

    #[test]
    fn traversal_and_empty_parts_are_rejected() {
        assert!(path("net/ipv4/../../etc").is_err());
        assert!(path("net..ipv4").is_err());
        assert!(path("").is_err());
        assert!(conf_key(Family::V4, "../x", "forwarding").is_err());
        assert!(conf_key(Family::V4, "a/b", "forwarding").is_err());
    }

    #[test]
    fn conf_key_builds_per_interface_paths() {
        assert_eq!(
            conf_key(Family::V6, "eth0.100", "accept_dad").unwrap(),
            "net/ipv6/conf/eth0.100/accept_dad"
        );
        assert_eq!(
            p(&conf_key(Family::V4, "eth0.100", "arp_notify").unwrap()),
            "/proc/sys/net/ipv4/conf/eth0.100/arp_notify"
        );
    }
}
