//! The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
//! and the `--default_container_dns` flag that feeds the last one.

use crate::error::{Error, Result};
use cni::result::Dns;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// `/etc/hosts`: `127.0.0.1 localhost`, then every address of the
/// container (IPv4 and IPv6, in interface order, each once) mapped to the
/// hostname. Mesos writes only the first IPv4 address; libprocess and the
/// default executor resolve the hostname to find the container IP, so the
/// first line after localhost stays the first IPv4 address when there is
/// one. `::1 localhost` is added when the container has IPv6.
pub fn hosts_file(hostname: &str, addresses: &[IpAddr]) -> String {
    let mut out = String::from("127.0.0.1 localhost\n");
    let mut seen = Vec::new();
    let ordered = addresses
        .iter()
        .filter(|a| a.is_ipv4())
        .chain(addresses.iter().filter(|a| a.is_ipv6()));
    for a in ordered {
        if !seen.contains(a) {
            seen.push(*a);
        }
    }
    if seen.iter().any(IpAddr::is_ipv6) {
        out.push_str("::1 localhost\n");
    }
    for a in seen {
        let _ = writeln!(out, "{a} {hostname}");
    }
    out
}

/// Mesos's `formatResolverConfig`: `domain`, `search`, `options`, then one
/// `nameserver` line each.
pub fn resolv_conf(dns: &Dns) -> String {
    let mut out = String::new();
    if let Some(domain) = dns.domain.as_deref().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "domain {domain}");
    }
    if !dns.search.is_empty() {
        let _ = writeln!(out, "search {}", dns.search.join(" "));
    }
    if !dns.options.is_empty() {
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    for ns in &dns.nameservers {
        let _ = writeln!(out, "nameserver {ns}");
    }
    out
}

/// Protobuf `MergeFrom` of two DNS messages: lists concatenate, a set
/// `domain` replaces the earlier one.
pub fn merge_dns(into: &mut Dns, from: &Dns) {
    into.nameservers.extend(from.nameservers.iter().cloned());
    if from.domain.as_deref().is_some_and(|d| !d.is_empty()) {
        into.domain = from.domain.clone();
    }
    into.search.extend(from.search.iter().cloned());
    into.options.extend(from.options.iter().cloned());
}

/// One entry of `ContainerDNSInfo.mesos` as the agent flag spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MesosDnsEntry {
    /// `HOST`, `CNI` or `UNKNOWN`.
    pub network_mode: String,
    /// The CNI network; absent means every CNI network (wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
    /// The resolver settings.
    #[serde(default)]
    pub dns: Dns,
}

/// The `--default_container_dns` flag (`ContainerDNSInfo`); only `mesos`
/// entries matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDnsInfo {
    /// Entries for Mesos containers.
    #[serde(default)]
    pub mesos: Vec<MesosDnsEntry>,
    /// Entries for Docker containers (ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker: Vec<serde_json::Value>,
}

/// The CNI part of `--default_container_dns`, split as the isolator uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultDns {
    /// Per network.
    pub per_network: HashMap<String, Dns>,
    /// For any CNI network without its own entry.
    pub wildcard: Option<Dns>,
}

impl DefaultDns {
    /// Parses the flag's JSON. `HOST` entries are for host-network
    /// containers and not the isolator's business; `UNKNOWN` and a second
    /// entry for the same network (or a second wildcard) are errors.
    pub fn parse(json: &str) -> Result<DefaultDns> {
        let info: ContainerDnsInfo = serde_json::from_str(json)
            .map_err(|e| Error::Invalid(format!("invalid --default_container_dns: {e}")))?;
        DefaultDns::from_info(&info)
    }

    /// Splits a parsed `ContainerDNSInfo`.
    pub fn from_info(info: &ContainerDnsInfo) -> Result<DefaultDns> {
        let mut out = DefaultDns::default();
        for entry in &info.mesos {
            match entry.network_mode.as_str() {
                "HOST" => continue,
                "CNI" => {}
                other => {
                    return Err(Error::Invalid(format!(
                        "invalid network mode {other:?} in --default_container_dns"
                    )));
                }
            }
            match &entry.network_name {
                Some(name) => {
                    if out.per_network.insert(name.clone(), entry.dns.clone()).is_some() {
                        return Err(Error::Invalid(format!(
                            "multiple DNS entries for CNI network {name:?} in --default_container_dns"
                        )));
                    }
                }
                None => {
                    if out.wildcard.replace(entry.dns.clone()).is_some() {
                        return Err(Error::Invalid(
                            "multiple wildcard DNS entries for CNI networks in --default_container_dns"
                                .into(),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The DNS settings of one network: the plugin's when it names a
    /// nameserver, else this network's default, else the wildcard.
    pub fn for_network(&self, network: &str, from_plugin: Option<&Dns>) -> Option<Dns> {
        if let Some(dns) = from_plugin.filter(|d| !d.nameservers.is_empty()) {
            return Some(dns.clone());
        }
        self.per_network.get(network).or(self.wildcard.as_ref()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(ns: &[&str], domain: Option<&str>, search: &[&str], options: &[&str]) -> Dns {
        Dns {
            nameservers: ns.iter().map(|s| s.to_string()).collect(),
            domain: domain.map(str::to_string),
            search: search.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    // CniSpecTest.GenerateResolverConfig.
    #[test]
    fn resolver_config_like_mesos() {
        assert_eq!(resolv_conf(&Dns::default()), "");
        assert_eq!(resolv_conf(&dns(&[], Some("m.c"), &[], &[])), "domain m.c\n");
        assert_eq!(
            resolv_conf(&dns(
                &["1.1.1.1", "8.8.8.8"],
                Some("d"),
                &["a", "b"],
                &["debug", "ndots:2"]
            )),
            "domain d\nsearch a b\noptions debug ndots:2\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"
        );
    }

    #[test]
    fn hosts_list_every_address_ipv4_first() {
        let addrs: Vec<IpAddr> = vec![
            "fd00:222::5".parse().unwrap(),
            "10.222.0.5".parse().unwrap(),
            "10.222.0.5".parse().unwrap(),
            "10.222.1.5".parse().unwrap(),
        ];
        assert_eq!(
            hosts_file("h", &addrs),
            "127.0.0.1 localhost\n::1 localhost\n10.222.0.5 h\n10.222.1.5 h\nfd00:222::5 h\n"
        );
        assert_eq!(hosts_file("h", &[]), "127.0.0.1 localhost\n");
    }

    #[test]
    fn default_dns_precedence() {
        let d = DefaultDns::parse(
            r#"{"mesos":[{"network_mode":"CNI","network_name":"n1","dns":{"nameservers":["10.222.0.1"]}},
                         {"network_mode":"CNI","dns":{"nameservers":["10.222.0.2"]}},
                         {"network_mode":"HOST","dns":{"nameservers":["10.222.0.3"]}}]}"#,
        )
        .unwrap();
        let plugin = dns(&["10.222.0.9"], None, &[], &[]);
        assert_eq!(
            d.for_network("n1", Some(&plugin)).unwrap().nameservers,
            ["10.222.0.9"]
        );
        assert_eq!(
            d.for_network("n1", Some(&Dns::default())).unwrap().nameservers,
            ["10.222.0.1"]
        );
        assert_eq!(d.for_network("n2", None).unwrap().nameservers, ["10.222.0.2"]);
        assert!(DefaultDns::parse(r#"{"mesos":[{"network_mode":"UNKNOWN"}]}"#).is_err());
        assert!(DefaultDns::parse(r#"{"mesos":[{"network_mode":"CNI"},{"network_mode":"CNI"}]}"#).is_err());
    }

    #[test]
    fn merge_concatenates_and_last_domain_wins() {
        let mut a = dns(&["1"], Some("a"), &["s1"], &[]);
        merge_dns(&mut a, &dns(&["2"], Some("b"), &["s2"], &["o"]));
        assert_eq!(a, dns(&["1", "2"], Some("b"), &["s1", "s2"], &["o"]));
    }
}
