//! host-local's config: the `ipam` section of the calling plugin's config,
//! plus the runtime's `runtimeConfig.ipRanges`/`ips`, `args.cni.ips` and
//! `CNI_ARGS` `IP=`.
//!
//! The merge order, defaults and messages are Go's `LoadIPAMConfig`:
//! range sets are `ipRanges` ++ legacy top-level range ++ `ranges`;
//! requested addresses are CNI_ARGS, then `args.cni.ips`, then
//! `runtimeConfig.ips`.

use crate::range::{self, RangeConf};
use crate::range_set::RangeSet;
use cni::Error;
use cni::args::CniArgs;
use cni::result::Route;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where reservations live when `dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The parts of the whole stdin config host-local reads. Every other key is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetWire {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default)]
    ipam: Option<IpamWire>,
    #[serde(default)]
    runtime_config: Option<RuntimeWire>,
    #[serde(default)]
    args: Option<ArgsWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpamWire {
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    resolv_conf: Option<String>,
    #[serde(default)]
    ranges: Option<Vec<Vec<RangeConf>>>,
    // The legacy single range, at the top level of `ipam`.
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeWire {
    #[serde(default)]
    ip_ranges: Option<Vec<Vec<RangeConf>>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct ArgsWire {
    #[serde(default)]
    cni: Option<CniArgsWire>,
}

#[derive(Debug, Default, Deserialize)]
struct CniArgsWire {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

/// host-local's validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// The network name: the store's directory under `data_dir`.
    pub name: String,
    /// The request's spec version.
    pub cni_version: String,
    /// The range sets; one address is allocated from each.
    pub range_sets: Vec<RangeSet>,
    /// Routes copied into the result.
    pub routes: Vec<Route>,
    /// Parent of the store directory.
    pub data_dir: PathBuf,
    /// A resolv.conf whose settings become the result's `dns`.
    pub resolv_conf: Option<PathBuf>,
    /// Addresses asked for, in request order, without duplicates.
    pub requested: Vec<IpAddr>,
}

/// Parses an address that may carry a prefix (`10.1.2.3/24`); the prefix is
/// ignored, as Go's `ip.IP` does since v1.0.0.
fn parse_requested(text: &str) -> Result<IpAddr, Error> {
    let addr = text.split_once('/').map_or(text, |(a, _)| a);
    range::parse_ip(addr).map_err(|_| Error::decoding(format!("invalid IP address: {text}")))
}

impl IpamConfig {
    /// Loads the config from the stdin bytes and the raw `CNI_ARGS`.
    ///
    /// Keys match fields as Go's `json.Unmarshal` matches them
    /// ([`cni::json_keys`]), at every level: `IPAM`, `Ranges`, `RangeStart`,
    /// `Subnet`, `Gateway`, `Routes[].Dst`, `RuntimeConfig.IPRanges`,
    /// `Args.CNI.IPs`... all count; the last key for a field wins.
    pub fn load(stdin: &[u8], cni_args: &CniArgs) -> Result<IpamConfig, Error> {
        let net: NetWire = cni::json_keys::from_slice(stdin)
            .map_err(|e| Error::decoding(format!("failed to parse network config: {e}")))?;
        let cni_version = cni::version::effective(net.cni_version.as_deref()).to_string();
        let ipam = net
            .ipam
            .ok_or_else(|| Error::invalid_config("IPAM config missing 'ipam' key"))?;

        let mut requested: Vec<IpAddr> = Vec::new();
        cni_args.check_known(&["IP"])?;
        if let Some(text) = cni_args.get("IP") {
            let ip = parse_requested(text).map_err(|e| {
                Error::invalid_environment(format!(
                    "ARGS: error parsing value of pair \"IP={text}\": {}",
                    e.msg
                ))
            })?;
            requested.push(ip);
        }
        for text in net
            .args
            .and_then(|a| a.cni)
            .and_then(|c| c.ips)
            .unwrap_or_default()
        {
            requested.push(parse_requested(&text)?);
        }
        let runtime = net.runtime_config.unwrap_or_default();
        for text in runtime.ips.unwrap_or_default() {
            requested.push(parse_requested(&text)?);
        }
        let mut seen = Vec::with_capacity(requested.len());
        requested.retain(|ip| {
            let fresh = !seen.contains(ip);
            seen.push(*ip);
            fresh
        });

        let mut sets: Vec<Vec<RangeConf>> = runtime.ip_ranges.unwrap_or_default();
        if ipam.subnet.as_deref().is_some_and(|s| !s.is_empty()) {
            sets.push(vec![RangeConf {
                subnet: ipam.subnet,
                range_start: ipam.range_start,
                range_end: ipam.range_end,
                gateway: ipam.gateway,
            }]);
        }
        sets.extend(ipam.ranges.unwrap_or_default());
        if sets.is_empty() {
            return Err(Error::invalid_config("no IP ranges specified"));
        }

        let mut range_sets = Vec::with_capacity(sets.len());
        for (i, confs) in sets.iter().enumerate() {
            let set = RangeSet::canonicalize(confs)
                .map_err(|e| Error::new(e.code, format!("invalid range set {i}: {}", e.msg)))?;
            range_sets.push(set);
        }

        let v4 = range_sets
            .iter()
            .filter(|s| s.family() == crate::addr::Family::V4)
            .count();
        let v6 = range_sets.len() - v4;
        if (v4 > 1 || v6 > 1) && cni::version::compare(&cni_version, "0.3.0").is_lt() {
            return Err(Error::invalid_config(format!(
                "CNI version {cni_version} does not support more than 1 address per family"
            )));
        }

        for (i, a) in range_sets.iter().enumerate() {
            for (j, b) in range_sets.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(Error::invalid_config(format!("range set {i} overlaps with {j}")));
                }
            }
        }

        let data_dir = ipam
            .data_dir
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
        Ok(IpamConfig {
            name: net.name,
            cni_version,
            range_sets,
            routes: ipam.routes.unwrap_or_default(),
            data_dir: PathBuf::from(data_dir),
            resolv_conf: ipam.resolv_conf.filter(|r| !r.is_empty()).map(PathBuf::from),
            requested,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str, args: &str) -> Result<IpamConfig, Error> {
        IpamConfig::load(json.as_bytes(), &CniArgs::parse(args).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn old_style_config() {
        let c = load(
            r#"{"cniVersion":"0.3.1","name":"mynet","type":"ipvlan","master":"foo0",
               "ipam":{"type":"host-local","subnet":"10.1.2.0/24","gateway":"10.1.2.30"}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.name, "mynet");
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.range_sets.len(), 1);
        let r = &c.range_sets[0].ranges()[0];
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.30"))
        );
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn new_style_and_legacy_order() {
        let c = load(
            r#"{"cniVersion":"0.3.1","name":"mynet","ipam":{"type":"host-local",
                "subnet":"10.1.2.0/24","gateway":"10.1.2.30",
                "ranges":[[{"subnet":"10.1.4.0/24"}],[{"subnet":"11.1.2.0/24","gateway":"11.1.2.30"}]]},
               "runtimeConfig":{"ipRanges":[[{"subnet":"12.1.3.0/24"}]]}}"#,
            "",
        )
        .unwrap();
        let firsts: Vec<String> = c
            .range_sets
            .iter()
            .map(|s| s.ranges()[0].subnet.to_string())
            .collect();
        assert_eq!(
            firsts,
            ["12.1.3.0/24", "10.1.2.0/24", "10.1.4.0/24", "11.1.2.0/24"]
        );
    }

    #[test]
    fn requested_ips_from_every_source_in_order() {
        let c = load(
            r#"{"cniVersion":"0.3.1","name":"n","ipam":{"type":"host-local",
                "ranges":[[{"subnet":"10.1.2.0/24"}],[{"subnet":"2001:db8:1::/64"}]]},
               "args":{"cni":{"ips":["10.1.2.11/24","2001:db8:1::999"]}},
               "runtimeConfig":{"ips":["10.1.2.12","10.1.2.11"]}}"#,
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.2.10",
        )
        .unwrap();
        assert_eq!(
            c.requested,
            [
                ip("10.1.2.10"),
                ip("10.1.2.11"),
                ip("2001:db8:1::999"),
                ip("10.1.2.12")
            ]
        );
    }

    #[test]
    fn cni_args_need_ignore_unknown_and_a_valid_ip() {
        let json = r#"{"name":"n","ipam":{"subnet":"10.1.2.0/24"}}"#;
        assert_eq!(load(json, "FOO=1;IP=10.1.2.10").unwrap_err().code.0, 4);
        assert_eq!(load(json, "IP=10.1.2.x").unwrap_err().code.0, 4);
        assert_eq!(
            load(json, "IP=10.1.2.10/24").unwrap().requested,
            [ip("10.1.2.10")]
        );
    }

    #[test]
    fn errors_are_gos() {
        let e = load(r#"{"name":"n"}"#, "").unwrap_err();
        assert_eq!((e.code.0, e.msg.as_str()), (7, "IPAM config missing 'ipam' key"));
        let e = load(r#"{"name":"n","ipam":{"type":"host-local"}}"#, "").unwrap_err();
        assert_eq!(e.msg, "no IP ranges specified");
        let e = load(
            r#"{"name":"n","cniVersion":"0.3.1","ipam":{"ranges":[[{"subnet":"10.0.0.0/8"}],[{"subnet":"10.1.0.0/16"}]]}}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(e.msg, "range set 0 overlaps with 1");
        let e = load(
            r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.0.0/22"},{"subnet":"10.1.2.0/24"}]]}}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.msg,
            "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap"
        );
        let e = load(
            r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.0.0/22"},{"subnet":"2001:db8::/64"}]]}}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(e.msg, "invalid range set 0: mixed address families");
        let e = load(
            r#"{"name":"n","cniVersion":"0.2.0","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.2.0.0/24"}]]}}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.msg,
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
        let ok = load(
            r#"{"name":"n","cniVersion":"0.2.0","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"2001:db8::/64"}]]}}"#,
            "",
        );
        assert!(ok.is_ok(), "one address per family is fine at 0.2.0");
        let e = load(r#"{"name":"n","ipam":{"ranges":"x"}}"#, "").unwrap_err();
        assert_eq!(e.code.0, 6);
        let e = load(
            r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24"},"runtimeConfig":{"ips":["x"]}}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(e.code.0, 6);
    }

    #[test]
    fn go_cased_keys_read_like_the_canonical_ones() {
        let canonical = load(
            r#"{"cniVersion":"0.4.0","name":"n","ipam":{"type":"host-local",
                "subnet":"10.222.9.0/24","rangeStart":"10.222.9.10","rangeEnd":"10.222.9.20","gateway":"10.222.9.1",
                "ranges":[[{"subnet":"10.222.10.0/24","rangeStart":"10.222.10.5","rangeEnd":"10.222.10.6",
                            "gateway":"10.222.10.254"}]],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.222.9.1"}],"dataDir":"/tmp/d","resolvConf":"/etc/r"},
               "runtimeConfig":{"ipRanges":[[{"subnet":"10.222.11.0/24"}]],"ips":["10.222.11.7"]},
               "args":{"cni":{"ips":["10.222.9.11"]}}}"#,
            "",
        )
        .unwrap();
        for go_cased in [
            r#"{"CNIVersion":"0.4.0","Name":"n","IPAM":{"Type":"host-local",
                "Subnet":"10.222.9.0/24","RangeStart":"10.222.9.10","RANGEEND":"10.222.9.20","Gateway":"10.222.9.1",
                "Ranges":[[{"SUBNET":"10.222.10.0/24","RangeStart":"10.222.10.5","rangeend":"10.222.10.6",
                            "GATEWAY":"10.222.10.254"}]],
                "Routes":[{"Dst":"0.0.0.0/0","GW":"10.222.9.1"}],"DataDir":"/tmp/d","ResolvConf":"/etc/r"},
               "RuntimeConfig":{"IPRanges":[[{"Subnet":"10.222.11.0/24"}]],"IPs":["10.222.11.7"]},
               "Args":{"CNI":{"IPS":["10.222.9.11"]}}}"#,
            r#"{"cniversion":"0.4.0","NAME":"n","ipam":{"TYPE":"host-local",
                "subnet":"10.222.9.0/24","rangestart":"10.222.9.10","rangeend":"10.222.9.20","gateway":"10.222.9.1",
                "ranges":[[{"subnet":"10.222.10.0/24","RANGESTART":"10.222.10.5","RangeEnd":"10.222.10.6",
                            "Gateway":"10.222.10.254"}]],
                "ROUTES":[{"DST":"0.0.0.0/0","gw":"10.222.9.1"}],"datadir":"/tmp/d","resolvconf":"/etc/r"},
               "runtimeconfig":{"ipranges":[[{"subnet":"10.222.11.0/24"}]],"ips":["10.222.11.7"]},
               "ARGS":{"cni":{"ips":["10.222.9.11"]}}}"#,
        ] {
            assert_eq!(load(go_cased, "").unwrap(), canonical, "{go_cased}");
        }
        assert_eq!(canonical.range_sets.len(), 3);
        assert_eq!(canonical.requested, [ip("10.222.9.11"), ip("10.222.11.7")]);
    }

    #[test]
    fn the_last_key_for_a_field_wins_whatever_its_case() {
        let c = load(
            r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.222.12.0/24","Subnet":"10.222.13.0/24"}]],
                "dataDir":"/a","DataDir":"/b","datadir":"/c"}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.range_sets[0].ranges()[0].subnet.to_string(), "10.222.13.0/24");
        assert_eq!(c.data_dir, PathBuf::from("/c"));
        let c = load(
            r#"{"name":"n","IPAM":{"subnet":"10.222.12.0/24"},"ipam":{"subnet":"10.222.14.0/24"}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.range_sets[0].ranges()[0].subnet.to_string(), "10.222.14.0/24");
    }

    #[test]
    fn routes_dns_and_data_dir() {
        let c = load(
            r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","dataDir":"/tmp/x","resolvConf":"/etc/r",
                "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.0.0.254"}]}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some(ip("10.0.0.254")));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r")));
    }
}
