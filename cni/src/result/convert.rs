//! Parsing results of any version and emitting them at any version.
//!
//! There are three wire shapes: 0.1.0/0.2.0 (`ip4`/`ip6`, see `v020`),
//! 0.3.0/0.3.1/0.4.0 (`ips[].version`, see `v040`) and 1.0.0/1.1.0 (the
//! model's own serde form). Every result is read into [`CniResult`] and
//! written out from it, which gives the same output as libcni's chain of
//! pairwise converters:
//! - to 0.3/0.4: `ips[].version` from the address family; interface
//!   `mtu`/`socketPath`/`pciID` dropped; routes keep every field, because Go
//!   shares one route type across versions;
//! - to 0.1/0.2: first IPv4 and first IPv6 address, routes split by the
//!   family of `dst` with only `dst`/`gw`, routes of a family without an
//!   address dropped; no address at all is an error;
//! - from 0.1/0.2: `ip4` then `ip6` become `ips` entries without interface,
//!   their routes are concatenated in the same order;
//! - 1.0.0 and 1.1.0 are the same Go type, so 1.0.0 keeps the 1.1 fields.
//!
//! Where we differ from Go on purpose: unknown top-level keys survive (Go
//! drops them), `ips[].version` is recomputed from the address rather than
//! trusted, and 1.x keys come out in declaration order (Go's 1.x marshaller
//! sorts them alphabetically as a side effect of a map round trip).

use super::*;
use crate::error::{Error, Result};
use crate::version::{SUPPORTED_VERSIONS, Version};

/// Top-level keys that belong to one of the wire shapes. They never go to
/// `extra` and are never written from it, so a stray `ip4` in a 1.x result
/// cannot turn into a second, conflicting `ip4` at 0.2.0.
const SHAPE_KEYS: &[&str] = &["cniVersion", "interfaces", "ips", "routes", "dns", "ip4", "ip6"];

/// The wire shape of a result, which is what really differs between versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// 0.1.0 and 0.2.0.
    V020,
    /// 0.3.0, 0.3.1 and 0.4.0.
    V040,
    /// 1.0.0 and 1.1.0 (and, when parsing, anything newer).
    V1,
}

impl Shape {
    fn of(v: Version) -> Shape {
        if v < Version::V0_3_0 {
            Shape::V020
        } else if v < Version::V1_0_0 {
            Shape::V040
        } else {
            Shape::V1
        }
    }
}

/// Decides the shape of a result object: by its `cniVersion` when it has
/// one, otherwise by its keys (`ip4`/`ip6` without `ips` is the 0.2 shape).
///
/// A version we do not know but can parse (say a future 1.2.0) is read by
/// the shape of its neighbourhood rather than refused, so a newer plugin
/// earlier in a chain does not break ours.
fn detect(obj: &Map<String, Value>) -> Result<(String, Shape)> {
    match obj.get("cniVersion") {
        Some(Value::String(s)) if !s.is_empty() => {
            let v = Version::parse(s)
                .map_err(|_| Error::decoding(format!("invalid result: cniVersion {s:?}")))?;
            Ok((s.clone(), Shape::of(v)))
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {
            let legacy = (obj.contains_key("ip4") || obj.contains_key("ip6")) && !obj.contains_key("ips");
            Ok((String::new(), if legacy { Shape::V020 } else { Shape::V1 }))
        }
        Some(other) => Err(Error::decoding(format!(
            "invalid result: cniVersion must be a string, not {other}"
        ))),
    }
}

fn decode_err(e: serde_json::Error) -> Error {
    Error::decoding(format!("invalid result: {e}"))
}

/// Serializes one piece of a result. Our types always serialize, so a
/// failure here is a bug, reported as an internal error rather than a panic.
pub(super) fn to_json<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| Error::internal(format!("cannot serialize result: {e}")))
}

/// The 0.3+ body, shared by 0.3/0.4 and 1.x input.
#[derive(Deserialize)]
struct Body {
    #[serde(default, deserialize_with = "null_default")]
    interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "null_default")]
    ips: Vec<IpConfig>,
    #[serde(default, deserialize_with = "null_default")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_default")]
    dns: Dns,
}

impl CniResult {
    /// Parses a result of any spec version. Malformed input is code 6.
    pub fn from_value(v: &Value) -> Result<CniResult> {
        let Value::Object(obj) = v else {
            return Err(Error::decoding("invalid result: not a JSON object"));
        };
        let (cni_version, shape) = detect(obj)?;
        let mut result = match shape {
            Shape::V020 => v020::parse(v)?,
            Shape::V040 | Shape::V1 => {
                let body = Body::deserialize(v).map_err(decode_err)?;
                let mut interfaces = body.interfaces;
                if shape == Shape::V040 {
                    // Go's 0.4 interface type has no such fields, so they
                    // never survive a 0.4 hop in a Go chain either.
                    for i in &mut interfaces {
                        i.mtu = None;
                        i.socket_path = None;
                        i.pci_id = None;
                    }
                }
                CniResult {
                    interfaces,
                    ips: body.ips,
                    routes: body.routes,
                    dns: body.dns,
                    ..CniResult::default()
                }
            }
        };
        result.cni_version = cni_version;
        result.extra = obj
            .iter()
            .filter(|(k, _)| !SHAPE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(result)
    }

    /// Parses a result of any spec version from JSON bytes (a plugin's
    /// stdout, a cache file). Malformed input is code 6.
    pub fn from_slice(bytes: &[u8]) -> Result<CniResult> {
        let v: Value = serde_json::from_slice(bytes).map_err(decode_err)?;
        CniResult::from_value(&v)
    }

    /// Emits the result as JSON of spec version `version`, stamping
    /// `cniVersion` with it. Keys come out as cniVersion, interfaces, ips,
    /// routes, dns (or cniVersion, ip4, ip6, dns), then unknown keys in the
    /// order they were read.
    ///
    /// An empty `version` means 0.1.0, as in libcni. A version rcni does
    /// not speak is code 1. Emitting 0.1.0/0.2.0 from a result with no IP
    /// address fails with code 999 "cannot convert: no valid IP addresses":
    /// libcni returns that as a plain error, which its skel reports as 999.
    /// A result that itself came as 0.1/0.2 is exempt, because libcni never
    /// runs that check when the source already has the old shape.
    pub fn to_value(&self, version: &str) -> Result<Value> {
        let version = if version.is_empty() {
            crate::version::IMPLICIT
        } else {
            version
        };
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(
                Error::incompatible_version(format!("cannot emit a result of version {version:?}"))
                    .with_details(format!("supported result versions are {SUPPORTED_VERSIONS:?}")),
            );
        }
        let shape = Shape::of(Version::parse(version)?);
        let mut m = Map::new();
        m.insert("cniVersion".into(), version.into());
        match shape {
            Shape::V020 => {
                let from_legacy =
                    Version::parse(&self.cni_version).is_ok_and(|v| Shape::of(v) == Shape::V020);
                if !v020::emit(self, &mut m)? && !from_legacy {
                    return Err(Error::internal("cannot convert: no valid IP addresses"));
                }
            }
            Shape::V040 => v040::emit(self, &mut m)?,
            Shape::V1 => {
                if !self.interfaces.is_empty() {
                    m.insert("interfaces".into(), to_json(&self.interfaces)?);
                }
                if !self.ips.is_empty() {
                    m.insert("ips".into(), to_json(&self.ips)?);
                }
                if !self.routes.is_empty() {
                    m.insert("routes".into(), to_json(&self.routes)?);
                }
                if !self.dns.is_empty() {
                    m.insert("dns".into(), to_json(&self.dns)?);
                }
            }
        }
        for (k, v) in &self.extra {
            if !SHAPE_KEYS.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(m))
    }
}

/// Converts a result of any version to `to_version`, as libcni does when it
/// hands a cached or previous result to a plugin of another version.
pub fn convert(value: &Value, to_version: &str) -> Result<Value> {
    CniResult::from_value(value)?.to_value(to_version)
}
