//! IPAM delegation: the plugin named in `ipam.type` is found in CNI_PATH and run with our
//! environment and our whole stdin, as libcni's `ipam.Exec*` do.

use cni::plugin::{CmdArgs, Command};
use cni::runtime::delegate;
use cni::{CniResult, Error, Result};

/// ADD: the IPAM result (addresses, routes, DNS). Zero addresses is an error.
pub fn add(ipam: &str, cmd: &CmdArgs) -> Result<CniResult> {
    delegate::delegate_add(ipam, &cmd.stdin, cmd)
}

/// Checks an IPAM result has something to configure.
pub fn require_ips(result: &CniResult) -> Result<()> {
    if result.ips.is_empty() {
        return Err(Error::internal("IPAM plugin returned missing IP config"));
    }
    Ok(())
}

/// DEL, CHECK, GC or STATUS on the IPAM plugin.
pub fn run(command: Command, ipam: &str, cmd: &CmdArgs) -> Result<()> {
    let d = delegate::Delegate::new(&cni::runtime::exec::ProcessExec);
    d.run(command, ipam, &cmd.stdin, cmd)
}
