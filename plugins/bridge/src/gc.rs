//! GC: forwards to the IPAM plugin's GC, and removes the masquerade and spoof-check rules of
//! this network's attachments that are not in `cni.dev/valid-attachments` (Go does neither).

use cni::Result;
use cni::plugin::{CmdArgs, Command};
use cni_net::detach::Sockets;

use crate::config::BridgeConf;
pub use crate::shared::ValidAttachment;
use crate::shared::combine;
use crate::{ipam, masquerade, spoofcheck};

/// The valid attachments the runtime sent, `None` when it sent no list (see
/// [`CmdArgs::valid_attachments`]).
pub fn valid_attachments(cmd: &CmdArgs) -> Result<Option<Vec<ValidAttachment>>> {
    Ok(cmd.valid_attachments()?.map(|list| {
        list.into_iter()
            .map(|a| ValidAttachment {
                container_id: a.container_id,
                ifname: a.ifname,
            })
            .collect()
    }))
}

/// Runs GC, continuing past errors and reporting all of them.
pub fn gc(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<()> {
    let conf = BridgeConf::parse(&cmd.stdin, None)?;
    let valid = valid_attachments(cmd)?;
    let mut errors = Vec::new();
    if let Some(ipam_type) = &conf.ipam_type
        && let Err(e) = ipam::run(Command::Gc, ipam_type, cmd)
    {
        errors.push(e);
    }
    match valid {
        Some(valid) => {
            if let Err(e) = masquerade::gc(sockets, &conf.network, &valid) {
                errors.push(e);
            }
            if let Err(e) = spoofcheck::gc(sockets, &conf.bridge, &valid) {
                errors.push(e);
            }
        }
        None => eprintln!("bridge: GC without cni.dev/valid-attachments: no masquerade rule is collected"),
    }
    combine(errors)
}
