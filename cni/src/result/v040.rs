//! The 0.3.0/0.3.1/0.4.0 wire shape: the 1.x shape without the 1.1
//! interface fields, and with `ips[].version`.

use super::convert::to_json;
use super::*;
use crate::error::Result;

/// An interface as Go's 0.4 type knows it.
#[derive(Serialize)]
struct InterfaceOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
}

/// An address with its family, in Go's 0.4 key order.
#[derive(Serialize)]
struct IpOut<'a> {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: &'a IpNetwork,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Writes `interfaces`, `ips`, `routes` and `dns` into `m`.
///
/// Routes keep their 1.1 fields: Go uses one route type for every version,
/// so libcni's 1.x to 0.4 conversion carries them. `dns` is written even
/// when empty, as Go's 0.4 result does (a struct is never `omitempty`).
pub(super) fn emit(r: &CniResult, m: &mut Map<String, Value>) -> Result<()> {
    if !r.interfaces.is_empty() {
        let interfaces: Vec<_> = r
            .interfaces
            .iter()
            .map(|i| InterfaceOut {
                name: &i.name,
                mac: non_empty(&i.mac),
                sandbox: non_empty(&i.sandbox),
            })
            .collect();
        m.insert("interfaces".into(), to_json(&interfaces)?);
    }
    if !r.ips.is_empty() {
        let ips: Vec<_> = r
            .ips
            .iter()
            .map(|ip| IpOut {
                version: if ip.is_ipv4() { "4" } else { "6" },
                interface: ip.interface,
                address: &ip.address,
                gateway: ip.gateway,
            })
            .collect();
        m.insert("ips".into(), to_json(&ips)?);
    }
    if !r.routes.is_empty() {
        m.insert("routes".into(), to_json(&r.routes)?);
    }
    m.insert("dns".into(), to_json(&r.dns)?);
    Ok(())
}
