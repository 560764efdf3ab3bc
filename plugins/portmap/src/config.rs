//! The portmap config: every field of Go's portmap, its defaults, its
//! validation and the choice of firewall backend.

use crate::mapping::{PortMapping, Protocol};
use cni::plugin::CmdArgs;
use cni::{Error, Result};
use cni_net::detach::Sockets;
use serde::Deserialize;
use std::net::IpAddr;

/// Go's default mark bit for "masquerade this" (Kubernetes uses 14 and 15, Calico 20-31).
pub const DEFAULT_MARK_BIT: u32 = 13;

/// Which firewall the rules go into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-restore` batches with Go's chain layout.
    Iptables,
    /// nf_tables, table `cni_hostport` of family `ip` / `ip6`.
    Nftables,
}

impl Backend {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// Extra match conditions, in the syntax of one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// IPv4 tokens, as given.
    pub v4: Vec<String>,
    /// IPv6 tokens, as given.
    pub v6: Vec<String>,
}

/// A portmap config, validated, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapConf {
    /// Network name (part of the chain hash and comments).
    pub name: String,
    /// The published ports (`runtimeConfig.portMappings`).
    pub mappings: Vec<PortMapping>,
    /// Masquerade hairpin and localhost traffic (default true).
    pub snat: bool,
    /// Masquerade every source, not only the pod's subnet and 127.0.0.1.
    pub masq_all: bool,
    /// The mark bit that asks for masquerading (iptables).
    pub mark_masq_bit: u32,
    /// A chain to jump to instead of our own SETMARK chain (iptables only).
    pub external_set_mark_chain: Option<String>,
    /// Extra match conditions.
    pub conditions: Conditions,
    /// The chosen backend.
    pub backend: Backend,
    /// True when `backend` was given in the config (not inferred).
    pub backend_explicit: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    #[serde(default)]
    name: String,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    snat: Option<bool>,
    #[serde(default, rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(default, rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    masq_all: Option<bool>,
    #[serde(default)]
    mark_masq_bit: Option<i64>,
    #[serde(default)]
    external_set_mark_chain: Option<String>,
    #[serde(default)]
    runtime_config: Option<RawRuntimeConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    port_mappings: Option<Vec<RawPortMapping>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPortMapping {
    #[serde(default)]
    host_port: i64,
    #[serde(default)]
    container_port: i64,
    #[serde(default)]
    protocol: String,
    #[serde(default, rename = "hostIP")]
    host_ip: String,
}

/// What the host offers, for choosing the default backend.
pub trait HostFirewalls {
    /// The kernel has nf_tables.
    fn has_nftables(&mut self) -> bool;
    /// The iptables tools are installed (`iptables-restore` and `iptables-save`).
    fn has_iptables(&mut self) -> bool {
        true
    }
}

/// The real host, asked through the command's sockets.
pub struct RealHost<'s>(pub &'s mut Sockets);

/// Whether the kernel has nf_tables. A loaded module shows in sysfs; a built-in one without
/// parameters does not (nor is `/proc/modules` always there), so then the kernel is asked: a
/// table dump over the command's netfilter socket, a few microseconds.
pub fn has_nft(sockets: &mut Sockets) -> bool {
    std::path::Path::new("/sys/module/nf_tables").exists()
        || sockets
            .netfilter()
            .and_then(|s| s.tables(cni_net::nft::Family::Ip))
            .is_ok()
}

impl HostFirewalls for RealHost<'_> {
    fn has_nftables(&mut self) -> bool {
        has_nft(self.0)
    }

    fn has_iptables(&mut self) -> bool {
        cni_net::iptables::IptablesRunner::host().available(cni_net::Family::V4)
    }
}

impl PortMapConf {
    /// Parses a plugin's stdin; the default backend depends on the host, asked through
    /// `sockets`.
    pub fn from_cmd(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<PortMapConf> {
        PortMapConf::parse(&cmd.stdin, &mut RealHost(sockets))
    }

    /// Parses and validates a config; `host` decides the default backend.
    ///
    /// Keys match fields as Go's `json.Unmarshal` matches them
    /// ([`cni::json_keys`]): `SNAT`, `MasqAll`, `RuntimeConfig.PortMappings`
    /// and each mapping's `HostPort`/`ContainerPort`/`Protocol`/`HostIp`
    /// all count; the last key for a field wins.
    pub fn parse(stdin: &[u8], host: &mut dyn HostFirewalls) -> Result<PortMapConf> {
        let raw: RawConf = cni::json_keys::from_slice(stdin)
            .map_err(|e| Error::decoding(format!("failed to parse network configuration: {e}")))?;
        if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
            return Err(Error::invalid_config(
                "Cannot specify externalSetMarkChain and markMasqBit",
            ));
        }
        let mark_masq_bit = match raw.mark_masq_bit {
            None => DEFAULT_MARK_BIT,
            Some(b @ 0..=31) => b as u32,
            Some(_) => return Err(Error::invalid_config("MasqMarkBit must be between 0 and 31")),
        };
        if let Some(chain) = &raw.external_set_mark_chain {
            validate_chain_name(chain)?;
        }
        let (backend, backend_explicit) = choose_backend(&raw, host)?;
        let mut mappings = Vec::new();
        for m in raw
            .runtime_config
            .unwrap_or_default()
            .port_mappings
            .unwrap_or_default()
        {
            mappings.push(parse_mapping(&m)?);
        }
        let conditions = Conditions {
            v4: raw.conditions_v4.unwrap_or_default(),
            v6: raw.conditions_v6.unwrap_or_default(),
        };
        Ok(PortMapConf {
            name: raw.name,
            mappings,
            snat: raw.snat.unwrap_or(true),
            masq_all: raw.masq_all.unwrap_or(false),
            mark_masq_bit,
            external_set_mark_chain: raw.external_set_mark_chain,
            conditions,
            backend,
            backend_explicit,
        })
    }

    /// The mark value (`1 << markMasqBit`).
    pub fn mark(&self) -> u32 {
        1u32 << self.mark_masq_bit
    }
}

fn parse_mapping(m: &RawPortMapping) -> Result<PortMapping> {
    if m.container_port <= 0 {
        return Err(Error::invalid_config(format!(
            "Invalid container port number: {}",
            m.container_port
        )));
    }
    if m.host_port <= 0 {
        return Err(Error::invalid_config(format!(
            "Invalid host port number: {}",
            m.host_port
        )));
    }
    let host_port = u16::try_from(m.host_port)
        .map_err(|_| Error::invalid_config(format!("Invalid host port number: {}", m.host_port)))?;
    let container_port = u16::try_from(m.container_port)
        .map_err(|_| Error::invalid_config(format!("Invalid container port number: {}", m.container_port)))?;
    let protocol = Protocol::parse(&m.protocol).ok_or_else(|| {
        Error::invalid_config(format!(
            "Invalid protocol {:?}: expected tcp, udp or sctp",
            m.protocol
        ))
    })?;
    let host_ip = if m.host_ip.is_empty() {
        None
    } else {
        Some(
            m.host_ip
                .parse::<IpAddr>()
                .map_err(|_| Error::invalid_config(format!("Invalid host IP {:?}", m.host_ip)))?,
        )
    };
    Ok(PortMapping {
        host_port,
        container_port,
        protocol,
        host_ip,
    })
}

/// The backend whose syntax `conditions` are in: a first token starting
/// with `-` or `!` is iptables, anything else nftables, none says nothing.
pub fn backend_of_conditions(conditions: Option<&[String]>) -> Option<Backend> {
    let first = conditions?.first()?;
    match first.as_bytes().first()? {
        b'-' | b'!' => Some(Backend::Iptables),
        _ => Some(Backend::Nftables),
    }
}

fn choose_backend(raw: &RawConf, host: &mut dyn HostFirewalls) -> Result<(Backend, bool)> {
    let mut wants: Vec<(Backend, &'static str)> = Vec::new();
    if raw.external_set_mark_chain.is_some() {
        wants.push((Backend::Iptables, "externalSetMarkChain"));
    }
    if let Some(b) = backend_of_conditions(raw.conditions_v4.as_deref()) {
        wants.push((b, "conditionsV4"));
    }
    if let Some(b) = backend_of_conditions(raw.conditions_v6.as_deref()) {
        wants.push((b, "conditionsV6"));
    }
    let (backend, explicit) = match raw.backend.as_deref() {
        Some("iptables") => (Backend::Iptables, true),
        Some("nftables") => (Backend::Nftables, true),
        Some(other) => return Err(Error::invalid_config(format!("unrecognized backend {other:?}"))),
        // Not given: what the backend-specific options ask for, else Go's default:
        // iptables (Go's CNI-HOSTPORT-* layout) where its tools are installed, so a host
        // can switch back to Go's portmap, or run it beside ours, and either DEL removes
        // what the other's ADD made; nftables only where iptables is missing.
        None => match wants.first() {
            Some((b, _)) => (*b, false),
            None if host.has_iptables() => (Backend::Iptables, false),
            None if host.has_nftables() => (Backend::Nftables, false),
            None => (Backend::Iptables, false),
        },
    };
    let wrong: Vec<&str> = wants
        .iter()
        .filter(|(b, _)| *b != backend)
        .map(|(_, k)| *k)
        .collect();
    if !wrong.is_empty() {
        let other = match backend {
            Backend::Iptables => Backend::Nftables,
            Backend::Nftables => Backend::Iptables,
        };
        return Err(Error::invalid_config(format!(
            "{} backend was requested but configuration contains {}-specific options [{}]",
            backend.as_str(),
            other.as_str(),
            wrong.join(" ")
        )));
    }
    Ok((backend, explicit))
}

/// An iptables chain name we may jump to: 1-28 printable characters, no blanks.
fn validate_chain_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 28
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "invalid externalSetMarkChain {name:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Host(bool);
    impl HostFirewalls for Host {
        fn has_nftables(&mut self) -> bool {
            self.0
        }
    }

    fn parse(json: &str) -> Result<PortMapConf> {
        PortMapConf::parse(json.as_bytes(), &mut Host(true))
    }

    #[test]
    fn defaults_match_go() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"portmap"}"#).unwrap();
        assert!(c.snat);
        assert!(!c.masq_all);
        assert_eq!(c.mark_masq_bit, 13);
        assert_eq!(c.mark(), 0x2000);
        // Go's default: iptables wherever its tools are.
        assert_eq!(c.backend, Backend::Iptables);
        assert!(!c.backend_explicit);
        assert!(c.mappings.is_empty());
        let c = PortMapConf::parse(br#"{"name":"n"}"#, &mut Host(false)).unwrap();
        assert_eq!(c.backend, Backend::Iptables);
        // nftables only without the iptables tools.
        struct NoIptables;
        impl HostFirewalls for NoIptables {
            fn has_nftables(&mut self) -> bool {
                true
            }
            fn has_iptables(&mut self) -> bool {
                false
            }
        }
        let c = PortMapConf::parse(br#"{"name":"n"}"#, &mut NoIptables).unwrap();
        assert_eq!(c.backend, Backend::Nftables);
    }

    #[test]
    fn every_field_is_read() {
        let c = parse(
            r#"{"name":"n","snat":false,"masqAll":true,"markMasqBit":5,"backend":"iptables",
                "conditionsV4":["-s","1.2.3.4"],"conditionsV6":["!","-s","::1"],
                "runtimeConfig":{"portMappings":[
                  {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                  {"hostPort":53,"containerPort":5353,"protocol":"UDP","hostIP":"10.222.0.1"},
                  {"hostPort":9,"containerPort":9,"protocol":"sctp","hostIP":"fd00:222::1"}]}}"#,
        )
        .unwrap();
        assert!(!c.snat && c.masq_all);
        assert_eq!(c.mark(), 1 << 5);
        assert_eq!(c.backend, Backend::Iptables);
        assert!(c.backend_explicit);
        assert_eq!(c.conditions.v4, ["-s", "1.2.3.4"]);
        assert_eq!(c.mappings.len(), 3);
        assert_eq!(c.mappings[1].protocol, Protocol::Udp);
        assert_eq!(c.mappings[1].host_ip, Some("10.222.0.1".parse().unwrap()));
        assert_eq!(c.mappings[2].protocol, Protocol::Sctp);
    }

    #[test]
    fn go_cased_keys_read_like_the_canonical_ones() {
        let canonical = parse(
            r#"{"name":"n","snat":false,"masqAll":true,"markMasqBit":5,"backend":"iptables",
                "conditionsV4":["-s","10.222.0.0/16"],"conditionsV6":["!","-s","::1"],
                "runtimeConfig":{"portMappings":[
                  {"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"10.222.0.1"},
                  {"hostPort":53,"containerPort":5353,"protocol":"udp"}]}}"#,
        )
        .unwrap();
        for go_cased in [
            r#"{"Name":"n","SNAT":false,"MasqAll":true,"MarkMasqBit":5,"Backend":"iptables",
                "ConditionsV4":["-s","10.222.0.0/16"],"CONDITIONSV6":["!","-s","::1"],
                "RuntimeConfig":{"PortMappings":[
                  {"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIp":"10.222.0.1"},
                  {"HOSTPORT":53,"containerport":5353,"PROTOCOL":"udp"}]}}"#,
            r#"{"name":"n","snat":false,"masqall":true,"markmasqbit":5,"BACKEND":"iptables",
                "conditionsv4":["-s","10.222.0.0/16"],"conditionsv6":["!","-s","::1"],
                "runtimeconfig":{"portmappings":[
                  {"hostport":8080,"containerPort":80,"protocol":"tcp","HOSTIP":"10.222.0.1"},
                  {"hostPort":53,"ContainerPort":5353,"Protocol":"udp"}]}}"#,
        ] {
            assert_eq!(parse(go_cased).unwrap(), canonical, "{go_cased}");
        }
        assert_eq!(canonical.mappings.len(), 2);
        // The last key for a field wins, exact or not.
        let c = parse(
            r#"{"name":"n","runtimeConfig":{"portMappings":[
                  {"hostPort":1,"HostPort":8081,"containerPort":80,"protocol":"tcp"}]},
                "RuntimeConfig":{"portMappings":[
                  {"hostPort":8082,"containerPort":81,"protocol":"tcp","HostPort":8083,"hostPort":8084}]}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.mappings.len(),
                c.mappings[0].host_port,
                c.mappings[0].container_port
            ),
            (1, 8084, 81)
        );
    }

    #[test]
    fn mark_bit_and_external_chain_conflict() {
        let e =
            parse(r#"{"name":"n","markMasqBit":13,"externalSetMarkChain":"KUBE-MARK-MASQ"}"#).unwrap_err();
        assert_eq!(e.code.0, 7);
        assert_eq!(e.msg, "Cannot specify externalSetMarkChain and markMasqBit");
        let e = parse(r#"{"name":"n","markMasqBit":32}"#).unwrap_err();
        assert_eq!(e.msg, "MasqMarkBit must be between 0 and 31");
        let e = parse(r#"{"name":"n","markMasqBit":-1}"#).unwrap_err();
        assert_eq!(e.code.0, 7);
    }

    #[test]
    fn backend_follows_backend_specific_options() {
        let c = parse(r#"{"name":"n","externalSetMarkChain":"KUBE-MARK-MASQ"}"#).unwrap();
        assert_eq!(c.backend, Backend::Iptables);
        let c = parse(r#"{"name":"n","conditionsV4":["-d","10.222.0.1"]}"#).unwrap();
        assert_eq!(c.backend, Backend::Iptables);
        let c = parse(r#"{"name":"n","conditionsV4":["ip","saddr","10.222.0.0/16"]}"#).unwrap();
        assert_eq!(c.backend, Backend::Nftables);
        // Empty conditions ask for nothing: the default.
        let c = parse(r#"{"name":"n","conditionsV4":[]}"#).unwrap();
        assert_eq!(c.backend, Backend::Iptables);
    }

    #[test]
    fn options_of_the_other_backend_are_an_error() {
        let e = parse(r#"{"name":"n","backend":"nftables","externalSetMarkChain":"X"}"#).unwrap_err();
        assert_eq!(e.code.0, 7);
        assert_eq!(
            e.msg,
            "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain]"
        );
        let e =
            parse(r#"{"name":"n","backend":"iptables","conditionsV6":["ip6","saddr","::1"]}"#).unwrap_err();
        assert!(
            e.msg.contains("nftables-specific options [conditionsV6]"),
            "{}",
            e.msg
        );
        let e = parse(r#"{"name":"n","conditionsV4":["-s","x"],"conditionsV6":["ip6","saddr","::1"]}"#)
            .unwrap_err();
        assert_eq!(e.code.0, 7);
        let e = parse(r#"{"name":"n","backend":"pf"}"#).unwrap_err();
        assert_eq!(e.msg, "unrecognized backend \"pf\"");
    }

    #[test]
    fn bad_ports_protocols_and_addresses_are_config_errors() {
        for (m, msg) in [
            (
                r#"{"hostPort":0,"containerPort":80,"protocol":"tcp"}"#,
                "Invalid host port number: 0",
            ),
            (
                r#"{"hostPort":80,"containerPort":-1,"protocol":"tcp"}"#,
                "Invalid container port number: -1",
            ),
            (
                r#"{"hostPort":70000,"containerPort":80,"protocol":"tcp"}"#,
                "Invalid host port number: 70000",
            ),
            (
                r#"{"hostPort":80,"containerPort":80,"protocol":"icmp"}"#,
                "Invalid protocol",
            ),
            (
                r#"{"hostPort":80,"containerPort":80,"protocol":"tcp","hostIP":"x"}"#,
                "Invalid host IP",
            ),
        ] {
            let json = format!(r#"{{"name":"n","runtimeConfig":{{"portMappings":[{m}]}}}}"#);
            let e = parse(&json).unwrap_err();
            assert_eq!(e.code.0, 7, "{m}");
            assert!(e.msg.starts_with(msg), "{m}: {}", e.msg);
        }
        let e = parse(r#"{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":"80"}]}}"#).unwrap_err();
        assert_eq!(e.code.0, 6);
    }
}
