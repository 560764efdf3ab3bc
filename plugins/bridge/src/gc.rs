//! GC: forwards to the IPAM plugin's GC, and removes the masquerade rules of this network's
//! attachments that are not in `cni.dev/valid-attachments` (Go does neither).

use cni::plugin::{CmdArgs, Command};
use cni::{Error, Result};
use serde_json::Value;

use crate::config::BridgeConf;
use crate::del::combine;
use crate::{ipam, masquerade};

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAttachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// The valid attachments the runtime sent (`cni.dev/valid-attachments`, or the older
/// `cni.dev/attachments`).
pub fn valid_attachments(cmd: &CmdArgs) -> Result<Vec<ValidAttachment>> {
    let list = cmd
        .config
        .extra
        .get("cni.dev/valid-attachments")
        .or_else(|| cmd.config.extra.get("cni.dev/attachments"));
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(Error::decoding("cni.dev/valid-attachments is not a list"));
    };
    Ok(items
        .iter()
        .map(|item| ValidAttachment {
            container_id: item
                .get("containerID")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            ifname: item
                .get("ifname")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
        .collect())
}

/// Runs GC, continuing past errors and reporting all of them.
pub fn gc(cmd: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::parse(&cmd.stdin, None)?;
    let valid = valid_attachments(cmd)?;
    let mut errors = Vec::new();
    if let Some(ipam_type) = &conf.ipam_type
        && let Err(e) = ipam::run(Command::Gc, ipam_type, cmd)
    {
        errors.push(e);
    }
    if let Err(e) = masquerade::gc(&conf.network, &valid) {
        errors.push(e);
    }
    combine(errors)
}
