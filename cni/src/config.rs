//! Network configurations: a single plugin's config and a conflist.
//!
//! Only the keys the spec defines are typed; every other key is kept in
//! `extra` and written back unchanged, so a runtime can hand a plugin's
//! own fields through without knowing them.

use crate::error::{Error, Result};
use crate::validate;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One plugin's config: what a plugin reads on stdin (the spec's request
/// config), or one entry of a conflist's `plugins`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of the request; absent means 0.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    /// Network name (injected from the list by the runtime).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The plugin binary name.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub plugin_type: String,
    /// Capabilities the plugin accepts in `runtimeConfig`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    /// Runtime-supplied capability values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Map<String, Value>>,
    /// Runtime-supplied arguments (`args.cni.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// The previous plugin's result, raw (any version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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

    /// The IPAM plugin type, when `ipam` names one.
    pub fn ipam_type(&self) -> Option<&str> {
        self.extra
            .get("ipam")
            .and_then(|i| i.get("type"))
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
