//! The `host-local` binary: the CNI entry point over the library's verbs.

use cni::plugin::{CmdArgs, Plugin};
use cni::{CniResult, Result};
use host_local::commands;

struct HostLocal;

impl Plugin for HostLocal {
    fn add(&self, cmd: &CmdArgs) -> Result<CniResult> {
        commands::add(cmd)
    }
    fn del(&self, cmd: &CmdArgs) -> Result<()> {
        commands::del(cmd)
    }
    fn check(&self, cmd: &CmdArgs) -> Result<()> {
        commands::check(cmd)
    }
    fn gc(&self, cmd: &CmdArgs) -> Result<()> {
        commands::gc(cmd)
    }
    fn status(&self, cmd: &CmdArgs) -> Result<()> {
        commands::status(cmd)
    }
}

cni::plugin_allocator!();

fn main() {
    cni::plugin::run(
        &HostLocal,
        "rcni host-local IPAM plugin (Go host-local compatible store)",
    )
}
