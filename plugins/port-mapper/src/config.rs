//! The Mesos port mapper's config (`name`, `chain`, `delegate`,
//! `excludeDevices`, `args.org.apache.mesos.network_info.port_mappings`) and
//! its error codes.

use portmap::mapping::{PortMapping, Protocol};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Mesos's error codes (`src/slave/containerizer/mesos/isolators/network/cni/plugins/port_mapper`).
pub mod code {
    /// Reading stdin or parsing the config failed.
    pub const READ: u32 = 100;
    /// Missing or invalid environment or config values.
    pub const BAD_ARGS: u32 = 101;
    /// The delegate plugin failed.
    pub const DELEGATE: u32 = 102;
    /// Installing or removing the port mapping rules failed.
    pub const PORTMAP: u32 = 103;
    /// A command the plugin does not implement.
    pub const UNSUPPORTED_COMMAND: u32 = 104;
}

/// An error as the Mesos port mapper reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperError {
    /// One of [`code`].
    pub code: u32,
    /// The message.
    pub msg: String,
}

impl MapperError {
    /// An error.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        MapperError {
            code,
            msg: msg.into(),
        }
    }

    /// The JSON Mesos prints (always at spec 0.3.0).
    pub fn to_json(&self) -> Value {
        serde_json::json!({"cniVersion": "0.3.0", "code": self.code, "msg": self.msg})
    }
}

/// The config.
#[derive(Debug, Clone)]
pub struct MapperConf {
    /// Network name.
    pub name: String,
    /// The NAT chain (iptables backend).
    pub chain: String,
    /// The delegate's config, `name` and `args` injected.
    pub delegate: Map<String, Value>,
    /// The delegate's `type`.
    pub delegate_type: String,
    /// Interfaces whose traffic is never forwarded.
    pub exclude_devices: Vec<String>,
    /// The published ports.
    pub mappings: Vec<PortMapping>,
    /// `backend`: `iptables` or `nftables`; `None` is iptables, as Mesos's own plugin.
    pub backend: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    chain: Option<String>,
    #[serde(default)]
    delegate: Option<Map<String, Value>>,
    #[serde(default)]
    exclude_devices: Option<Vec<String>>,
    #[serde(default)]
    args: Option<Map<String, Value>>,
    #[serde(default)]
    backend: Option<String>,
}

#[derive(Deserialize)]
struct RawMapping {
    host_port: i64,
    container_port: i64,
    #[serde(default)]
    protocol: Option<String>,
}

impl MapperConf {
    /// Parses stdin.
    pub fn parse(stdin: &[u8]) -> Result<MapperConf, MapperError> {
        let raw: Raw = serde_json::from_slice(stdin).map_err(|e| {
            MapperError::new(
                code::READ,
                format!("Failed to parse the network configuration: {e}"),
            )
        })?;
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| MapperError::new(code::BAD_ARGS, "Missing 'name' in the network configuration"))?;
        let chain = raw.chain.filter(|c| !c.is_empty()).ok_or_else(|| {
            MapperError::new(code::BAD_ARGS, "Missing 'chain' in the network configuration")
        })?;
        if chain.len() > 28 || !chain.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(MapperError::new(
                code::BAD_ARGS,
                format!("Invalid chain name {chain:?}"),
            ));
        }
        let mut delegate = raw.delegate.ok_or_else(|| {
            MapperError::new(code::BAD_ARGS, "Missing 'delegate' in the network configuration")
        })?;
        let delegate_type = delegate
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| MapperError::new(code::BAD_ARGS, "Missing 'type' in the delegate configuration"))?
            .to_string();
        let args = raw.args.unwrap_or_default();
        delegate.insert("name".into(), Value::String(name.clone()));
        delegate.insert("args".into(), Value::Object(args.clone()));
        let mut mappings = Vec::new();
        let list = args
            .get("org.apache.mesos")
            .and_then(|m| m.get("network_info"))
            .and_then(|n| n.get("port_mappings"));
        if let Some(list) = list {
            let raw: Vec<RawMapping> = serde_json::from_value(list.clone())
                .map_err(|e| MapperError::new(code::BAD_ARGS, format!("Invalid port mappings: {e}")))?;
            for m in raw {
                mappings.push(mapping(&m)?);
            }
        }
        Ok(MapperConf {
            name,
            chain,
            delegate,
            delegate_type,
            exclude_devices: raw.exclude_devices.unwrap_or_default(),
            mappings,
            backend: raw.backend,
        })
    }
}

fn mapping(m: &RawMapping) -> Result<PortMapping, MapperError> {
    let port = |p: i64, what: &str| {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| MapperError::new(code::BAD_ARGS, format!("Invalid {what} port {p}")))
    };
    let proto = m.protocol.clone().unwrap_or_else(|| "tcp".into());
    let protocol = Protocol::parse(&proto)
        .ok_or_else(|| MapperError::new(code::BAD_ARGS, format!("Unsupported protocol {proto:?}")))?;
    Ok(PortMapping {
        host_port: port(m.host_port, "host")?,
        container_port: port(m.container_port, "container")?,
        protocol,
        host_ip: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"{"name":"mesos-net","type":"mesos-cni-port-mapper","chain":"MESOS-TEST-PORT-MAPPER",
      "excludeDevices":["eth1","docker0"],
      "delegate":{"type":"bridge","bridge":"mesos-cni0","ipam":{"type":"host-local","subnet":"10.222.9.0/24"}},
      "args":{"org.apache.mesos":{"network_info":{"name":"mesos-net","port_mappings":[
        {"host_port":8080,"container_port":80},{"host_port":5353,"container_port":53,"protocol":"UDP"}]}}}}"#;

    #[test]
    fn reads_mesos_config() {
        let c = MapperConf::parse(CONF.as_bytes()).unwrap();
        assert_eq!(c.chain, "MESOS-TEST-PORT-MAPPER");
        assert_eq!(c.delegate_type, "bridge");
        assert_eq!(c.delegate["name"], "mesos-net");
        assert!(c.delegate["args"]["org.apache.mesos"].is_object());
        assert_eq!(c.exclude_devices, ["eth1", "docker0"]);
        assert_eq!(c.mappings.len(), 2);
        assert_eq!(c.mappings[0].protocol, Protocol::Tcp);
        assert_eq!(c.mappings[1].protocol, Protocol::Udp);
    }

    #[test]
    fn errors_carry_mesos_codes() {
        assert_eq!(MapperConf::parse(b"{").unwrap_err().code, code::READ);
        let e = MapperConf::parse(br#"{"name":"n","delegate":{"type":"bridge"}}"#).unwrap_err();
        assert_eq!(e.code, code::BAD_ARGS);
        let e = MapperConf::parse(br#"{"name":"n","chain":"C","delegate":{}}"#).unwrap_err();
        assert_eq!(e.code, code::BAD_ARGS);
        let e = MapperConf::parse(
            br#"{"name":"n","chain":"C","delegate":{"type":"x"},"args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":0,"container_port":1}]}}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, code::BAD_ARGS);
        assert_eq!(
            MapperError::new(104, "x").to_json().to_string(),
            r#"{"cniVersion":"0.3.0","code":104,"msg":"x"}"#
        );
    }

    #[test]
    fn no_args_means_no_mappings() {
        let c = MapperConf::parse(br#"{"name":"n","chain":"C","delegate":{"type":"bridge"}}"#).unwrap();
        assert!(c.mappings.is_empty());
        assert_eq!(c.delegate["args"], serde_json::json!({}));
    }
}
