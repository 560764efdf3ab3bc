//! The bridge config: every field of Go's bridge plugin, its defaults and its validation.

use cni::plugin::CmdArgs;
use cni::result::Dns;
use cni::{Error, Result};
use cni_net::MacAddr;
use serde::Deserialize;

pub use crate::shared::MasqBackend;

/// The bridge name when the config has none.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// One `vlanTrunk` entry as written: `{"id": N}` and/or `{"minID": A, "maxID": B}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VlanTrunk {
    /// First id of a range.
    #[serde(default, rename = "minID")]
    pub min_id: Option<i64>,
    /// Last id of a range.
    #[serde(default, rename = "maxID")]
    pub max_id: Option<i64>,
    /// A single id.
    #[serde(default)]
    pub id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    name: String,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Option<Vec<Option<VlanTrunk>>>,
    #[serde(default)]
    preserve_default_vlan: bool,
    #[serde(default, rename = "macspoofchk")]
    mac_spoof_chk: bool,
    #[serde(default, rename = "enabledad")]
    enable_dad: bool,
    #[serde(default)]
    disable_container_interface: bool,
    #[serde(default)]
    port_isolation: bool,
    #[serde(default)]
    ipam: Option<IpamRef>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    args: Option<Args>,
    #[serde(default)]
    runtime_config: Option<RuntimeConfig>,
}

/// Go's `types.IPAM`: the bridge only needs the type; host-local reads the rest itself.
#[derive(Debug, Default, Deserialize)]
struct IpamRef {
    #[serde(default, rename = "type")]
    plugin_type: String,
}

/// `args`: only `args.cni.mac` is the bridge's.
#[derive(Debug, Default, Deserialize)]
struct Args {
    #[serde(default)]
    cni: Option<MacOnly>,
}

/// `runtimeConfig`: only `mac` is the bridge's (other capabilities pass through unread).
#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    mac: String,
}

#[derive(Debug, Default, Deserialize)]
struct MacOnly {
    #[serde(default)]
    mac: String,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct BridgeConf {
    /// Network name.
    pub network: String,
    /// Bridge interface name.
    pub bridge: String,
    /// Put the gateway address on the bridge.
    pub is_gateway: bool,
    /// Add a default route via the gateway (implies `is_gateway`).
    pub is_default_gateway: bool,
    /// Replace a conflicting address on the bridge.
    pub force_address: bool,
    /// Masquerade traffic leaving the container's subnet.
    pub ip_masq: bool,
    /// `ipMasqBackend` as written, checked on ADD.
    pub ip_masq_backend: Option<String>,
    /// MTU of the bridge (on creation) and both veth ends; `None` for the kernel's default.
    pub mtu: Option<u32>,
    /// Hairpin on the host port.
    pub hairpin_mode: bool,
    /// Promiscuous mode on the bridge.
    pub promisc_mode: bool,
    /// Access VLAN (PVID, untagged); 0 for none.
    pub vlan: u16,
    /// Whether `vlanTrunk` was given (even empty: it turns vlan filtering on, as in Go).
    pub has_trunk: bool,
    /// Trunk VLAN ids, sorted, without duplicates.
    pub trunk: Vec<u16>,
    /// Keep the port's default VLAN entries.
    pub preserve_default_vlan: bool,
    /// MAC anti-spoofing rules.
    pub mac_spoof_chk: bool,
    /// Keep IPv6 duplicate address detection on in the container.
    pub enable_dad: bool,
    /// Leave the container interface down (L2 only).
    pub disable_container_interface: bool,
    /// Isolate the host port.
    pub port_isolation: bool,
    /// The IPAM plugin type; `None` means L2 only.
    pub ipam_type: Option<String>,
    /// DNS to put in the result instead of IPAM's, when any field is set.
    pub dns: Option<Dns>,
    /// The container MAC: runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC.
    pub mac: Option<MacAddr>,
}

impl BridgeConf {
    /// Parses and validates the config of `cmd`, with the MAC from its three sources.
    pub fn load(cmd: &CmdArgs) -> Result<BridgeConf> {
        let env_mac = if cmd.raw_args.is_empty() {
            None
        } else {
            let args = cmd.cni_args()?;
            args.check_known(&["MAC"])?;
            args.get("MAC").filter(|m| !m.is_empty()).map(str::to_string)
        };
        BridgeConf::parse(&cmd.stdin, env_mac.as_deref())
    }

    /// Parses and validates a config; `env_mac` is CNI_ARGS `MAC`.
    ///
    /// Keys match fields as in Go's `json.Unmarshal` ([`cni::json_keys`]):
    /// `IsGateway`, `MTU`, `IPAM.Type`, `runtimeConfig.MAC` all count. As in
    /// Go, `ipam`, `args` and `runtimeConfig` must be objects and `mac` a
    /// string when present.
    pub fn parse(stdin: &[u8], env_mac: Option<&str>) -> Result<BridgeConf> {
        let raw: Raw = cni::json_keys::from_slice(stdin)
            .map_err(|e| Error::decoding("failed to load netconf").with_details(e.to_string()))?;
        if !(0..=4094).contains(&raw.vlan) {
            return Err(Error::invalid_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                raw.vlan
            )));
        }
        let trunk = collect_trunk(raw.vlan_trunk.as_deref())?;
        let mtu = match raw.mtu {
            0 => None,
            m if (68..=65535).contains(&m) => Some(m as u32),
            m => {
                return Err(Error::invalid_config(format!(
                    "invalid MTU {m} (must be between 68 and 65535, or 0 for the kernel default)"
                )));
            }
        };
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        check_ifname("bridge", &bridge)?;
        let runtime_mac = raw.runtime_config.map(|r| r.mac);
        let args_mac = raw.args.and_then(|a| a.cni).map(|c| c.mac);
        let mac_text = [runtime_mac, args_mac, env_mac.map(str::to_string)]
            .into_iter()
            .flatten()
            .find(|m| !m.is_empty());
        let mac = match mac_text {
            None => None,
            Some(text) => Some(
                text.parse::<MacAddr>()
                    .map_err(|_| Error::invalid_config(format!("invalid MAC address {text:?}")))?,
            ),
        };
        let ipam_type = raw.ipam.map(|i| i.plugin_type).filter(|t| !t.is_empty());
        let dns = raw.dns.filter(|d| !d.is_empty());
        Ok(BridgeConf {
            network: raw.name,
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            ip_masq_backend: raw.ip_masq_backend,
            mtu,
            hairpin_mode: raw.hairpin_mode,
            promisc_mode: raw.promisc_mode,
            vlan: raw.vlan as u16,
            has_trunk: raw.vlan_trunk.is_some(),
            trunk,
            preserve_default_vlan: raw.preserve_default_vlan,
            mac_spoof_chk: raw.mac_spoof_chk,
            enable_dad: raw.enable_dad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            ipam_type,
            dns,
            mac,
        })
    }

    /// True when IPAM is configured (addresses, gateway, routes).
    pub fn is_layer3(&self) -> bool {
        self.ipam_type.is_some()
    }

    /// Whether the bridge needs vlan filtering (set when it is created).
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.has_trunk
    }

    /// The checks Go makes before ADD changes anything.
    pub fn check_for_add(&self) -> Result<()> {
        if self.is_layer3() && self.disable_container_interface {
            return Err(Error::invalid_config(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        if self.hairpin_mode && self.promisc_mode {
            return Err(Error::invalid_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if self.ip_masq {
            self.masq_backend()?;
        }
        if self.is_layer3() && self.is_gateway && self.vlan != 0 {
            let gateway = format!("{}.{}", self.bridge, self.vlan);
            if gateway.len() > 15 {
                return Err(Error::invalid_config(format!(
                    "bridge name {:?} is too long for its VLAN gateway interface {gateway}",
                    self.bridge
                )));
            }
        }
        Ok(())
    }

    /// The masquerading backend: as configured, else iptables when it works, else nftables.
    /// `ipMasqBackend` as the config names it; `None` leaves the choice to where the
    /// backend is used (`masquerade::backend`), so parsing never probes the host.
    pub fn masq_backend(&self) -> Result<Option<MasqBackend>> {
        match self.ip_masq_backend.as_deref() {
            Some("nftables") => Ok(Some(MasqBackend::Nftables)),
            Some("iptables") => Ok(Some(MasqBackend::Iptables)),
            Some(other) => Err(Error::invalid_config(format!("unknown ipmasq backend {other:?}"))),
            None => Ok(None),
        }
    }
}

fn check_ifname(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.contains(['/', ':', '\0'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::invalid_config(format!("invalid {what} name {name:?}")));
    }
    Ok(())
}

/// Go's `collectVlanTrunk`: ranges and single ids, 1-4094, sorted and deduplicated.
fn collect_trunk(entries: Option<&[Option<VlanTrunk>]>) -> Result<Vec<u16>> {
    let bad = |msg: &str| Err(Error::invalid_config(msg.to_string()));
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut ids = std::collections::BTreeSet::new();
    for item in entries.unwrap_or_default().iter().flatten() {
        match (item.min_id, item.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return bad("incorrect trunk minID parameter");
                }
                if !valid(max) {
                    return bad("incorrect trunk maxID parameter");
                }
                if max < min {
                    return bad("minID is greater than maxID in trunk parameter");
                }
                ids.extend((min..=max).map(|v| v as u16));
            }
            (None, Some(_)) => {
                return bad("minID and maxID should be configured simultaneously, minID is missing");
            }
            (Some(_), None) => {
                return bad("minID and maxID should be configured simultaneously, maxID is missing");
            }
            (None, None) => {}
        }
        if let Some(id) = item.id {
            if !valid(id) {
                return bad("incorrect trunk id parameter");
            }
            ids.insert(id as u16);
        }
    }
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(json: &str) -> Result<BridgeConf> {
        BridgeConf::parse(json.as_bytes(), None)
    }

    #[test]
    fn defaults_are_gos() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.is_gateway && !c.ip_masq && !c.hairpin_mode && !c.enable_dad);
        assert_eq!(c.mtu, None);
        assert_eq!(c.vlan, 0);
        assert!(!c.is_layer3());
        assert!(!c.vlan_filtering());
        assert!(c.dns.is_none() && c.mac.is_none());
    }

    #[test]
    fn default_gateway_implies_gateway() {
        let c = parse(r#"{"name":"n","isDefaultGateway":true,"ipam":{"type":"host-local"}}"#).unwrap();
        assert!(c.is_gateway && c.is_default_gateway && c.is_layer3());
    }

    #[test]
    fn empty_ipam_is_layer2() {
        assert!(!parse(r#"{"name":"n","ipam":{}}"#).unwrap().is_layer3());
    }

    #[test]
    fn vlan_range_is_checked() {
        let e = parse(r#"{"name":"n","vlan":4095}"#).unwrap_err();
        assert_eq!(e.code, cni::Code::INVALID_CONFIG);
        assert_eq!(e.msg, "invalid VLAN ID 4095 (must be between 0 and 4094)");
        assert!(parse(r#"{"name":"n","vlan":-1}"#).is_err());
        assert_eq!(parse(r#"{"name":"n","vlan":4094}"#).unwrap().vlan, 4094);
    }

    #[test]
    fn trunk_table_matches_go() {
        let cases = [
            (
                r#"[{"id":101},{"minID":200,"maxID":203}]"#,
                Ok(vec![101, 200, 201, 202, 203]),
            ),
            (r#"[{"id":5},{"id":5},{"minID":4,"maxID":6}]"#, Ok(vec![4, 5, 6])),
            (
                r#"[{"minID":0,"maxID":10}]"#,
                Err("incorrect trunk minID parameter"),
            ),
            (
                r#"[{"minID":1,"maxID":4095}]"#,
                Err("incorrect trunk maxID parameter"),
            ),
            (
                r#"[{"minID":10,"maxID":9}]"#,
                Err("minID is greater than maxID in trunk parameter"),
            ),
            (
                r#"[{"maxID":9}]"#,
                Err("minID and maxID should be configured simultaneously, minID is missing"),
            ),
            (
                r#"[{"minID":9}]"#,
                Err("minID and maxID should be configured simultaneously, maxID is missing"),
            ),
            (r#"[{"id":0}]"#, Err("incorrect trunk id parameter")),
            (r#"[{"id":4095}]"#, Err("incorrect trunk id parameter")),
            (r#"[]"#, Ok(vec![])),
        ];
        for (trunk, want) in cases {
            let got = parse(&format!(r#"{{"name":"n","vlanTrunk":{trunk}}}"#));
            match want {
                Ok(ids) => {
                    let c = got.unwrap();
                    assert_eq!(c.trunk, ids, "{trunk}");
                    assert!(c.vlan_filtering(), "{trunk}");
                }
                Err(msg) => assert_eq!(got.unwrap_err().msg, msg, "{trunk}"),
            }
        }
    }

    #[test]
    fn mac_precedence_runtime_config_then_args_then_cni_args() {
        let all = r#"{"name":"n","runtimeConfig":{"mac":"0a:00:00:00:00:01"},"args":{"cni":{"mac":"0a:00:00:00:00:02"}}}"#;
        let c = BridgeConf::parse(all.as_bytes(), Some("0a:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "0a:00:00:00:00:01");
        let args = r#"{"name":"n","args":{"cni":{"mac":"0a:00:00:00:00:02"}}}"#;
        let c = BridgeConf::parse(args.as_bytes(), Some("0a:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "0a:00:00:00:00:02");
        let c = BridgeConf::parse(br#"{"name":"n"}"#, Some("0a:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "0a:00:00:00:00:03");
        let e = BridgeConf::parse(br#"{"name":"n"}"#, Some("zz")).unwrap_err();
        assert_eq!(e.code, cni::Code::INVALID_CONFIG);
    }

    #[test]
    fn add_time_checks() {
        let c = parse(r#"{"name":"n","hairpinMode":true,"promiscMode":true}"#).unwrap();
        assert_eq!(
            c.check_for_add().unwrap_err().msg,
            "cannot set hairpin mode and promiscuous mode at the same time"
        );
        let c =
            parse(r#"{"name":"n","disableContainerInterface":true,"ipam":{"type":"host-local"}}"#).unwrap();
        assert_eq!(
            c.check_for_add().unwrap_err().msg,
            "cannot use IPAM when DisableContainerInterface flag is set"
        );
        let c = parse(r#"{"name":"n","ipMasq":true,"ipMasqBackend":"pf"}"#).unwrap();
        assert_eq!(
            c.check_for_add().unwrap_err().msg,
            r#"unknown ipmasq backend "pf""#
        );
        let c = parse(r#"{"name":"n","ipMasq":true,"ipMasqBackend":"nftables"}"#).unwrap();
        assert_eq!(c.masq_backend().unwrap(), Some(MasqBackend::Nftables));
    }

    #[test]
    fn bad_types_are_decode_errors_and_bad_values_config_errors() {
        assert_eq!(
            parse(r#"{"name":"n","mtu":"x"}"#).unwrap_err().code,
            cni::Code::DECODING_FAILURE
        );
        assert_eq!(
            parse(r#"{"name":"n","mtu":-5}"#).unwrap_err().code,
            cni::Code::INVALID_CONFIG
        );
        assert_eq!(
            parse(r#"{"name":"n","bridge":"a/b"}"#).unwrap_err().code,
            cni::Code::INVALID_CONFIG
        );
        assert_eq!(parse(r#"{"name":"n","mtu":1450}"#).unwrap().mtu, Some(1450));
    }

    /// Every field of `c` that a key sets, for comparing two spellings.
    fn fields(c: &BridgeConf) -> String {
        format!(
            "{} {} {} {} {} {} {:?} {:?} {} {} {} {:?} {} {} {} {} {} {:?} {:?} {:?}",
            c.bridge,
            c.is_gateway,
            c.is_default_gateway,
            c.force_address,
            c.ip_masq,
            c.hairpin_mode,
            c.ip_masq_backend,
            c.mtu,
            c.promisc_mode,
            c.vlan,
            c.has_trunk,
            c.trunk,
            c.preserve_default_vlan,
            c.mac_spoof_chk,
            c.enable_dad,
            c.disable_container_interface,
            c.port_isolation,
            c.ipam_type,
            c.dns,
            c.mac.map(|m| m.to_string()),
        )
    }

    #[test]
    fn go_cased_keys_read_like_the_canonical_ones() {
        let canonical = parse(
            r#"{"name":"n","bridge":"br-ci","isGateway":true,"isDefaultGateway":false,"forceAddress":true,
                "ipMasq":true,"ipMasqBackend":"nftables","mtu":1400,"hairpinMode":true,"promiscMode":false,
                "vlan":7,"vlanTrunk":[{"minID":10,"maxID":11},{"id":20}],"preserveDefaultVlan":true,
                "macspoofchk":true,"enabledad":true,"disableContainerInterface":false,"portIsolation":true,
                "ipam":{"type":"host-local"},"dns":{"nameservers":["10.222.0.53"],"search":["x"]},
                "runtimeConfig":{"mac":"0a:00:00:00:00:01"}}"#,
        )
        .unwrap();
        assert!(canonical.is_gateway && canonical.ip_masq && canonical.hairpin_mode);
        for go_cased in [
            r#"{"Name":"n","Bridge":"br-ci","IsGateway":true,"IsDefaultGateway":false,"ForceAddress":true,
                "IPMASQ":true,"IPMasqBackend":"nftables","MTU":1400,"HairpinMode":true,"PromiscMode":false,
                "VLAN":7,"VlanTrunk":[{"MinID":10,"MAXID":11},{"ID":20}],"PreserveDefaultVlan":true,
                "MacSpoofChk":true,"EnableDAD":true,"DisableContainerInterface":false,"PortIsolation":true,
                "IPAM":{"Type":"host-local"},"DNS":{"Nameservers":["10.222.0.53"],"SEARCH":["x"]},
                "RuntimeConfig":{"MAC":"0a:00:00:00:00:01"}}"#,
            r#"{"name":"n","bridge":"br-ci","isgateway":true,"isdefaultgateway":false,"forceaddress":true,
                "ipmasq":true,"ipmasqbackend":"nftables","mtu":1400,"hairpinmode":true,"promiscmode":false,
                "vlan":7,"vlantrunk":[{"minid":10,"maxid":11},{"id":20}],"preservedefaultvlan":true,
                "MACSPOOFCHK":true,"ENABLEDAD":true,"disablecontainerinterface":false,"portisolation":true,
                "ipam":{"TYPE":"host-local"},"dns":{"nameservers":["10.222.0.53"],"search":["x"]},
                "runtimeconfig":{"mac":"0a:00:00:00:00:01"}}"#,
        ] {
            assert_eq!(
                fields(&parse(go_cased).unwrap()),
                fields(&canonical),
                "{go_cased}"
            );
        }
        let c = BridgeConf::parse(
            br#"{"name":"n","Args":{"CNI":{"Mac":"0a:00:00:00:00:02"}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "0a:00:00:00:00:02");
    }

    #[test]
    fn the_last_key_for_a_field_wins_whatever_its_case() {
        assert!(
            parse(r#"{"name":"n","isGateway":false,"IsGateway":true}"#)
                .unwrap()
                .is_gateway
        );
        assert!(
            !parse(r#"{"name":"n","IsGateway":true,"isGateway":false}"#)
                .unwrap()
                .is_gateway
        );
        assert_eq!(
            parse(r#"{"name":"n","mtu":1400,"MTU":1500,"mtu":1450}"#)
                .unwrap()
                .mtu,
            Some(1450)
        );
        let c = parse(r#"{"name":"n","ipam":{"type":"a","Type":"b"},"IPAM":{"TYPE":"c"}}"#).unwrap();
        assert_eq!(c.ipam_type.as_deref(), Some("c"));
    }

    #[test]
    fn dns_is_kept_only_when_set() {
        assert!(parse(r#"{"name":"n","dns":{}}"#).unwrap().dns.is_none());
        let c = parse(r#"{"name":"n","dns":{"nameservers":["10.222.0.53"]}}"#).unwrap();
        assert_eq!(c.dns.unwrap().nameservers, vec!["10.222.0.53"]);
    }
}
