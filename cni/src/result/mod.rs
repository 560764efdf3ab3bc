//! Results of every spec version.
//!
//! [`CniResult`] is the canonical, version-independent model: the 1.1.0
//! shape, which can express everything older versions can. Parsing accepts
//! any version's JSON; emitting converts to the version asked for, by the
//! same rules as libcni (see `convert`), so a chain that mixes rcni and Go
//! plugins sees the same `prevResult` whoever wrote it.
//!
//! The serde derives on the element types produce the 1.x wire form with
//! Go's `omitempty` rules (an empty string or a zero MTU is left out, a
//! route `table`/`scope` of 0 is kept because Go holds those as pointers),
//! and accept what Go accepts (`null` for lists, `""` for "no gateway").

use ipnetwork::IpNetwork;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

mod convert;
mod v020;
mod v040;

pub use convert::convert;

/// An interface a plugin created or configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// Hardware address, when it has one.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub mac: Option<String>,
    /// MTU (1.1.0; libcni also keeps it at 1.0.0, whose Go type is the same).
    #[serde(default, skip_serializing_if = "none_or_zero")]
    pub mtu: Option<u32>,
    /// The netns path the interface lives in; absent or empty for the host.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub sandbox: Option<String>,
    /// A vhost-user or similar socket (1.1.0).
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub socket_path: Option<String>,
    /// PCI address of a device (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "none_or_empty")]
    pub pci_id: Option<String>,
}

impl Interface {
    /// An interface with a name and nothing else set.
    pub fn new(name: impl Into<String>) -> Self {
        Interface {
            name: name.into(),
            ..Interface::default()
        }
    }
}

/// One address assigned to an interface.
///
/// Fields are declared in Go's order (`interface`, `address`, `gateway`) so
/// that our JSON reads like the Go plugins' JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces` of the interface holding the address. IPAM
    /// plugins leave it out; the plugin that owns the interface fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length, host bits kept (`10.0.0.5/24`).
    pub address: IpNetwork,
    /// The gateway for this address, if any.
    #[serde(default, deserialize_with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl IpConfig {
    /// True for an IPv4 address (the family decides `version` in 0.3/0.4
    /// and `ip4` versus `ip6` in 0.1/0.2).
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }
}

/// A route to install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Destination network.
    pub dst: IpNetwork,
    /// Next hop; absent means the family's gateway, or on-link.
    #[serde(default, deserialize_with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "none_or_zero")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "none_or_zero")]
    pub advmss: Option<u32>,
    /// Metric (1.1.0).
    #[serde(default, skip_serializing_if = "none_or_zero")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// Resolver settings, in the result's key names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order of preference.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.as_deref().unwrap_or("").is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result in the canonical (1.1.0) model, whatever version it came in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    /// The version the result was parsed from (empty when the JSON had
    /// none), or the version a plugin built it for. Emitting takes the
    /// version as an argument; this field only matters for the 0.1/0.2
    /// "no IP addresses" rule (see [`CniResult::to_value`]).
    pub cni_version: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Resolver settings.
    pub dns: Dns,
    /// Top-level keys this model does not know, kept and passed on.
    pub extra: Map<String, Value>,
}

impl CniResult {
    /// An empty result for spec version `version`.
    pub fn new(version: impl Into<String>) -> Self {
        CniResult {
            cni_version: version.into(),
            ..CniResult::default()
        }
    }

    /// Appends an interface and returns its index, for `IpConfig::interface`.
    pub fn push_interface(&mut self, interface: Interface) -> usize {
        self.interfaces.push(interface);
        self.interfaces.len() - 1
    }

    /// The IPv4 addresses, in result order.
    pub fn ips_v4(&self) -> impl Iterator<Item = &IpConfig> {
        self.ips.iter().filter(|ip| ip.is_ipv4())
    }

    /// The IPv6 addresses, in result order.
    pub fn ips_v6(&self) -> impl Iterator<Item = &IpConfig> {
        self.ips.iter().filter(|ip| !ip.is_ipv4())
    }
}

/// Go's `omitempty` for a string: neither absent nor `""` is printed.
fn none_or_empty(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// Go's `omitempty` for an int: 0 is not printed.
fn none_or_zero(n: &Option<u32>) -> bool {
    n.is_none_or(|n| n == 0)
}

/// Accepts `null` where a list or object is expected, as Go does.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An optional IP address where `""` means none, as Go's `net.IP` reads it.
fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) if !s.is_empty() => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("invalid IP address {s:?}"))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
