//! Network configurations: a single plugin's config and a conflist.
//!
//! Only the keys the spec defines are typed; every other key is kept in
//! `extra` and written back unchanged, so a runtime can hand a plugin's
//! own fields through without knowing them.

use crate::error::{Error, Result};
use crate::json_keys;
use crate::validate;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One plugin's config: what a plugin reads on stdin (the spec's request
/// config), or one entry of a conflist's `plugins`.
///
/// Its keys are matched as Go's `types.NetConf` (plus the `runtimeConfig`
/// and `args` every Go plugin adds) matches them: case-insensitively, an
/// exact key going to its field and the last key for a field winning (see
/// [`crate::json_keys`]). So `"CniVersion"`, `"Name"`, `"Type"` or
/// `"RuntimeConfig"` fill the typed fields, and `"IPAM"`, `"DNS"` and
/// `"cni.dev/Valid-Attachments"` are kept in `extra` under their canonical
/// spelling (`ipam`, `dns`, `cni.dev/valid-attachments`), where plugins and
/// runtimes look them up; such a key is written back canonically. Every
/// other key is kept in `extra` as written. `null` for a typed field reads
/// as absent, as in Go.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of the request; absent means 0.1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    /// Network name (injected from the list by the runtime).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The plugin binary name.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub plugin_type: String,
    /// Capabilities the plugin accepts in `runtimeConfig`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    /// Runtime-supplied capability values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Map<String, Value>>,
    /// Runtime-supplied arguments (`args.cni.*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// The previous plugin's result, raw (any version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The JSON names of [`NetConf`]'s fields and of the keys it keeps in
/// `extra` under a canonical spelling, in Go's declaration order.
const NETCONF_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "capabilities",
    "ipam",
    "dns",
    "prevResult",
    "cni.dev/valid-attachments",
    "runtimeConfig",
    "args",
];

/// `serde(flatten)` hides field names from the deserializer, so `NetConf`
/// matches its keys itself (with the same rule as [`crate::json_keys`]),
/// whatever deserializer it is read with (a plugin's stdin, a conflist's
/// `plugins`).
impl<'de> Deserialize<'de> for NetConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<NetConf, D::Error> {
        struct NetConfVisitor;

        impl<'de> Visitor<'de> for NetConfVisitor {
            type Value = NetConf;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a network configuration object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<NetConf, A::Error> {
                let mut c = NetConf::default();
                while let Some(key) = map.next_key::<String>()? {
                    match json_keys::field_for(&key, NETCONF_KEYS) {
                        Some("cniVersion") => c.cni_version = map.next_value()?,
                        Some("name") => c.name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                        Some("type") => {
                            c.plugin_type = map.next_value::<Option<String>>()?.unwrap_or_default()
                        }
                        Some("capabilities") => {
                            c.capabilities = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        Some("prevResult") => c.prev_result = map.next_value()?,
                        Some("runtimeConfig") => c.runtime_config = map.next_value()?,
                        Some("args") => c.args = map.next_value()?,
                        Some(canonical) => {
                            c.extra.insert(canonical.to_string(), map.next_value()?);
                        }
                        None => {
                            c.extra.insert(key, map.next_value()?);
                        }
                    }
                }
                Ok(c)
            }
        }

        d.deserialize_map(NetConfVisitor)
    }
}

impl NetConf {
    /// The config version, with the spec's default for a missing one.
    pub fn version(&self) -> &str {
        crate::version::effective(self.cni_version.as_deref())
    }

    /// Parses a plugin's stdin, mapping JSON errors to code 6.
    pub fn from_slice(stdin: &[u8]) -> Result<NetConf> {
        serde_json::from_slice(stdin)
            .map_err(|e| Error::decoding(format!("failed to parse network config: {e}")))
    }

    /// The IPAM plugin type, when `ipam` names one (its `type` key matched
    /// as Go's `types.IPAM` matches it: `Type` or `TYPE` too).
    pub fn ipam_type(&self) -> Option<&str> {
        self.extra
            .get("ipam")
            .and_then(Value::as_object)
            .and_then(|i| json_keys::get(i, "type"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    }
}

/// A conflist: a named chain of plugins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConfList {
    /// Spec version of the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    /// Versions the list supports (1.1.0); the runtime picks the highest it knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cni_versions: Vec<String>,
    /// Network name.
    pub name: String,
    /// Skip CHECK for this network.
    #[serde(
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "is_false"
    )]
    pub disable_check: bool,
    /// Skip GC for this network.
    #[serde(
        default,
        rename = "disableGC",
        deserialize_with = "bool_or_string",
        skip_serializing_if = "is_false"
    )]
    pub disable_gc: bool,
    /// Do not load plugin configs from `<dir>/<name>/`.
    #[serde(
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "is_false"
    )]
    pub load_only_inlined_plugins: bool,
    /// The plugins, in ADD order.
    #[serde(default)]
    pub plugins: Vec<NetConf>,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// libcni accepts `true`/`false` and the strings `"true"`/`"false"`.
fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

impl NetConfList {
    /// Parses a conflist and validates its name and plugin types (code 6/7).
    pub fn from_slice(bytes: &[u8]) -> Result<NetConfList> {
        let list: NetConfList = serde_json::from_slice(bytes)
            .map_err(|e| Error::decoding(format!("failed to parse network config list: {e}")))?;
        list.validate()?;
        Ok(list)
    }

    /// Wraps a single-plugin config into a list, as libcni does with `.conf` files.
    pub fn from_single(conf: NetConf) -> Result<NetConfList> {
        let list = NetConfList {
            cni_version: conf.cni_version.clone(),
            name: conf.name.clone(),
            plugins: vec![conf],
            ..Default::default()
        };
        list.validate()?;
        Ok(list)
    }

    /// The version to run the list at: the highest of `cniVersion` and
    /// `cniVersions` that this crate supports (versions we do not know are
    /// ignored, as libcni does).
    pub fn negotiated_version(&self) -> String {
        let mut best: Option<&str> = None;
        let candidates = self
            .cni_versions
            .iter()
            .map(String::as_str)
            .chain(self.cni_version.as_deref());
        for v in candidates {
            if !crate::version::SUPPORTED_VERSIONS.contains(&v) {
                continue;
            }
            if best.is_none_or(|b| crate::version::compare(v, b).is_gt()) {
                best = Some(v);
            }
        }
        best.unwrap_or_else(|| crate::version::effective(self.cni_version.as_deref()))
            .to_string()
    }

    /// Name and plugin-type checks; a list without plugins is invalid.
    pub fn validate(&self) -> Result<()> {
        validate::network_name(&self.name)?;
        if self.plugins.is_empty() {
            return Err(Error::invalid_config(format!(
                "network {:?} has no plugins",
                self.name
            )));
        }
        for p in &self.plugins {
            validate::plugin_type(&p.plugin_type)?;
        }
        Ok(())
    }
}

/// An attachment the runtime still uses, for GC (`cni.dev/valid-attachments`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// The container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name.
    #[serde(default)]
    pub ifname: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_round_trip() {
        let text = r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br0","ipam":{"type":"host-local","x":[1]}}"#;
        let c = NetConf::from_slice(text.as_bytes()).unwrap();
        assert_eq!(c.extra["bridge"], "br0");
        assert_eq!(c.ipam_type(), Some("host-local"));
        let back: Value = serde_json::to_value(&c).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn keys_match_in_any_case_as_in_go() {
        let canonical = NetConf::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","capabilities":{"portMappings":true},
                "ipam":{"type":"host-local"},"dns":{"nameservers":["10.222.0.53"]},
                "runtimeConfig":{"portMappings":[]},"args":{"cni":{}},"prevResult":{"cniVersion":"1.0.0"},
                "cni.dev/valid-attachments":[],"bridge":"br0"}"#,
        )
        .unwrap();
        let go_cased = NetConf::from_slice(
            br#"{"CniVersion":"1.0.0","Name":"n","Type":"bridge","CAPABILITIES":{"portMappings":true},
                "IPAM":{"Type":"host-local"},"DNS":{"nameservers":["10.222.0.53"]},
                "RuntimeConfig":{"portMappings":[]},"ARGS":{"cni":{}},"PrevResult":{"cniVersion":"1.0.0"},
                "CNI.dev/Valid-Attachments":[],"bridge":"br0"}"#,
        )
        .unwrap();
        assert_eq!(go_cased.cni_version, canonical.cni_version);
        assert_eq!(go_cased.name, "n");
        assert_eq!(go_cased.plugin_type, "bridge");
        assert_eq!(go_cased.capabilities, canonical.capabilities);
        assert_eq!(go_cased.runtime_config, canonical.runtime_config);
        assert_eq!(go_cased.args, canonical.args);
        assert_eq!(go_cased.prev_result, canonical.prev_result);
        assert_eq!(go_cased.ipam_type(), Some("host-local"));
        // Kept under the canonical spelling, where readers look.
        assert_eq!(go_cased.extra["dns"], canonical.extra["dns"]);
        assert!(go_cased.extra.contains_key("cni.dev/valid-attachments"));
        assert!(!go_cased.extra.contains_key("IPAM"));
        assert_eq!(
            serde_json::to_value(&go_cased).unwrap()["ipam"]["Type"],
            "host-local"
        );
    }

    #[test]
    fn the_last_key_for_a_field_wins_and_map_keys_stay() {
        let c = NetConf::from_slice(br#"{"name":"a","Name":"b"}"#).unwrap();
        assert_eq!(c.name, "b");
        let c = NetConf::from_slice(br#"{"Name":"b","name":"a","NAME":null}"#).unwrap();
        assert_eq!(
            c.name, "",
            "a later null resets the field, as Go does for a fresh config"
        );
        let c = NetConf::from_slice(
            br#"{"ipam":{"type":"a"},"IPAM":{"type":"b"},"capabilities":{"PortMappings":true},"Bridge":"x","bridge":"y"}"#,
        )
        .unwrap();
        assert_eq!(c.ipam_type(), Some("b"));
        assert_eq!(c.capabilities.keys().collect::<Vec<_>>(), ["PortMappings"]);
        assert_eq!(
            (&c.extra["Bridge"], &c.extra["bridge"]),
            (&"x".into(), &"y".into())
        );
        let c = NetConf::from_slice(br#"{"name":null,"type":null,"cniVersion":null,"capabilities":null}"#)
            .unwrap();
        assert_eq!(c, NetConf::default());
        assert_eq!(NetConf::from_slice(br#"{"name":1}"#).unwrap_err().code.0, 6);
        assert_eq!(NetConf::from_slice(br#"[]"#).unwrap_err().code.0, 6);
    }

    #[test]
    fn list_entries_match_keys_too() {
        let l = NetConfList::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"Type":"bridge","IPAM":{"TYPE":"host-local"}}]}"#,
        )
        .unwrap();
        assert_eq!(l.plugins[0].plugin_type, "bridge");
        assert_eq!(l.plugins[0].ipam_type(), Some("host-local"));
    }

    #[test]
    fn list_flags_accept_strings() {
        let l = NetConfList::from_slice(
            br#"{"cniVersion":"1.1.0","name":"n","disableCheck":"true","disableGC":true,"plugins":[{"type":"loopback"}]}"#,
        )
        .unwrap();
        assert!(l.disable_check && l.disable_gc && !l.load_only_inlined_plugins);
    }

    #[test]
    fn list_rejects_bad_name_and_type() {
        let e = NetConfList::from_slice(br#"{"name":"-x","plugins":[{"type":"a"}]}"#).unwrap_err();
        assert_eq!(e.code.0, 7);
        let e = NetConfList::from_slice(br#"{"name":"x","plugins":[{"type":"../a"}]}"#).unwrap_err();
        assert_eq!(e.code.0, 7);
        let e = NetConfList::from_slice(br#"{"name":"x","plugins":"#).unwrap_err();
        assert_eq!(e.code.0, 6);
    }

    #[test]
    fn negotiates_highest_known_version() {
        let l = NetConfList::from_slice(
            br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","9.9.9"],"name":"n","plugins":[{"type":"a"}]}"#,
        )
        .unwrap();
        assert_eq!(l.negotiated_version(), "1.0.0");
    }
}
