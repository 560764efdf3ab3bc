//! Parsing results of any version and emitting them at any version.
//! (Minimal first cut: 0.3.0 and newer only. To be completed.)

use super::*;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Wire {
    #[serde(default, rename = "cniVersion")]
    cni_version: Option<String>,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Parses a result of any spec version.
    pub fn from_value(v: &Value) -> Result<CniResult> {
        let w: Wire = serde_json::from_value(v.clone()).map_err(|e| Error::decoding(format!("invalid result: {e}")))?;
        Ok(CniResult {
            cni_version: w.cni_version.unwrap_or_default(),
            interfaces: w.interfaces,
            ips: w.ips,
            routes: w.routes,
            dns: w.dns,
            extra: Map::new(),
        })
    }

    /// Emits the result as JSON of spec version `version`.
    pub fn to_value(&self, version: &str) -> Result<Value> {
        let mut m = Map::new();
        m.insert("cniVersion".into(), version.into());
        if !self.interfaces.is_empty() {
            m.insert("interfaces".into(), serde_json::to_value(&self.interfaces)?);
        }
        if !self.ips.is_empty() {
            m.insert("ips".into(), serde_json::to_value(&self.ips)?);
        }
        if !self.routes.is_empty() {
            m.insert("routes".into(), serde_json::to_value(&self.routes)?);
        }
        if !self.dns.is_empty() {
            m.insert("dns".into(), serde_json::to_value(&self.dns)?);
        }
        Ok(Value::Object(m))
    }
}
