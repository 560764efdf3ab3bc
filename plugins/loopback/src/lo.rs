//! The loopback device of a namespace: up, down, checked, and described as a result.

use cni::netns::NetnsState;
use cni::plugin::CmdArgs;
use cni::result::{Interface, IpConfig};
use cni::{CniResult, Error, Result};
use cni_net::Context;
use cni_net::{Address, Netns, Socket};
use ipnetwork::IpNetwork;
use std::path::Path;

/// The loopback device's name.
const LO: &str = "lo";

/// CNI_NETNS of an ADD or CHECK (the entry point made sure it is a namespace).
pub fn netns_of(cmd: &CmdArgs) -> Result<&Path> {
    cmd.netns
        .as_deref()
        .ok_or_else(|| Error::invalid_environment("required env variables [CNI_NETNS] missing"))
}

/// CNI_NETNS of a DEL, `None` when it is empty or already gone: then there
/// is nothing to bring down and DEL succeeds.
pub fn netns_if_present(cmd: &CmdArgs) -> Option<&Path> {
    match cmd.netns_state {
        Some(NetnsState::Namespace) => cmd.netns.as_deref(),
        _ => None,
    }
}

/// A netlink socket inside the namespace at `path`.
fn socket_in(path: &Path) -> Result<Socket> {
    Netns::open(path)
        .and_then(|ns| ns.socket())
        .context(|| format!("cannot open a netlink socket in {}", path.display()))
}

/// Sets `lo` up and returns its addresses; any address on it that is not a
/// loopback address is an error, as in the Go plugin.
pub fn bring_up(path: &Path) -> Result<Vec<Address>> {
    let mut sock = socket_in(path)?;
    let lo = sock.link_by_name(LO).context(|| "cannot find lo".into())?;
    sock.set_link_up(lo.index).context(|| "cannot set lo up".into())?;
    let addrs = sock
        .addresses(Some(lo.index), None)
        .context(|| "cannot list the addresses of lo".into())?;
    if let Some(bad) = addrs.iter().find(|a| !a.address.ip().is_loopback()) {
        return Err(Error::internal(format!(
            "loopback interface found with non-loopback address {}",
            bad.address
        )));
    }
    Ok(addrs)
}

/// Sets `lo` down.
pub fn bring_down(path: &Path) -> Result<()> {
    let mut sock = socket_in(path)?;
    let lo = sock.link_by_name(LO).context(|| "cannot find lo".into())?;
    sock.set_link_down(lo.index)
        .context(|| "cannot set lo down".into())
}

/// Fails unless `lo` is up.
pub fn verify_up(path: &Path) -> Result<()> {
    let mut sock = socket_in(path)?;
    let lo = sock.link_by_name(LO).context(|| "cannot find lo".into())?;
    if !lo.up {
        return Err(Error::internal("loopback interface is down"));
    }
    Ok(())
}

/// The result of an unchained ADD: `lo` with the first IPv4 and the first
/// IPv6 loopback address.
pub fn result(netns: &Path, addrs: &[Address]) -> CniResult {
    let first = |v4: bool| {
        addrs
            .iter()
            .map(|a| a.address)
            .find(|a: &IpNetwork| a.is_ipv4() == v4)
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: Some(0),
            })
    };
    CniResult {
        interfaces: vec![Interface {
            name: LO.into(),
            mac: Some("00:00:00:00:00:00".into()),
            sandbox: Some(netns.display().to_string()),
            ..Default::default()
        }],
        ips: first(true).into_iter().chain(first(false)).collect(),
        ..Default::default()
    }
}
