//! The 0.1.0/0.2.0 wire shape: `{cniVersion, ip4, ip6, dns}`.
//!
//! Each family has at most one address, its gateway is the family's
//! gateway, and each family carries its own routes (only `dst` and `gw`).

use super::convert::to_json;
use super::*;
use crate::error::{Error, Result};

/// One family's block as read: routes take the shared route type, as in
/// Go, so extra route fields survive an up-conversion.
#[derive(Deserialize)]
struct IpIn {
    ip: IpNetwork,
    #[serde(default, deserialize_with = "opt_ip")]
    gateway: Option<IpAddr>,
    #[serde(default, deserialize_with = "null_default")]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
struct ResultIn {
    #[serde(default)]
    ip4: Option<IpIn>,
    #[serde(default)]
    ip6: Option<IpIn>,
    #[serde(default, deserialize_with = "null_default")]
    dns: Dns,
}

/// One family's block as written.
#[derive(Serialize)]
struct IpOut<'a> {
    ip: &'a IpNetwork,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

/// Reads the 0.2 shape into the model: `ip4` then `ip6` become `ips`
/// entries with no interface, their routes concatenated in that order.
pub(super) fn parse(v: &Value) -> Result<CniResult> {
    let w = ResultIn::deserialize(v).map_err(|e| Error::decoding(format!("invalid result: {e}")))?;
    let mut result = CniResult {
        dns: w.dns,
        ..CniResult::default()
    };
    for block in [w.ip4, w.ip6].into_iter().flatten() {
        result.ips.push(IpConfig {
            interface: None,
            address: block.ip,
            gateway: block.gateway,
        });
        result.routes.extend(block.routes);
    }
    Ok(result)
}

/// Writes `ip4`, `ip6` and `dns` into `m`. Returns whether any address was
/// written; the caller decides whether none is an error.
///
/// `dns` is always written, even empty: Go's 0.2 result holds it as a plain
/// struct, which `omitempty` does not leave out.
pub(super) fn emit(r: &CniResult, m: &mut Map<String, Value>) -> Result<bool> {
    let ip4 = r.ips_v4().next().map(|ip| block(r, ip));
    let ip6 = r.ips_v6().next().map(|ip| block(r, ip));
    let any = ip4.is_some() || ip6.is_some();
    if let Some(b) = ip4 {
        m.insert("ip4".into(), to_json(&b)?);
    }
    if let Some(b) = ip6 {
        m.insert("ip6".into(), to_json(&b)?);
    }
    m.insert("dns".into(), to_json(&r.dns)?);
    Ok(any)
}

/// A family's block: the address, its gateway as the family's gateway, and
/// the routes whose destination is of the same family, reduced to `dst`/`gw`.
fn block<'a>(r: &CniResult, ip: &'a IpConfig) -> IpOut<'a> {
    IpOut {
        ip: &ip.address,
        gateway: ip.gateway,
        routes: r
            .routes
            .iter()
            .filter(|route| route.dst.is_ipv4() == ip.is_ipv4())
            .map(|route| Route::new(route.dst, route.gw))
            .collect(),
    }
}
