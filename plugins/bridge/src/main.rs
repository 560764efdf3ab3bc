//! `bridge`: attaches a container to a Linux bridge through a veth pair, with the IPAM plugin of
//! the config, optional gateway, masquerading, VLANs and MAC spoof checks. A drop-in for the Go
//! reference plugin: same config, CNI_ARGS, results, veth names and firewall layouts.

mod add;
mod bridge_link;
mod check;
mod config;
mod del;
#[cfg(test)]
mod fake;
mod gc;
mod ipam;
mod kernel;
mod l3;
mod masquerade;
mod masquerade_iptables;
mod result;
mod shared;
mod spoofcheck;
mod undo;
mod veth;
mod vlan;

use cni::plugin::{CmdArgs, Command, Plugin};
use cni::{CniResult, Result};
use cni_net::detach::Sockets;
use kernel::Real;

struct Bridge;

impl Plugin for Bridge {
    // Each command owns its sockets (see `cni_net::detach`): the slow releases of ADD, DEL
    // and GC go to a detached child once the work is done; CHECK changes nothing, so closing
    // in place costs it nothing that another command's release would not.
    fn add(&self, cmd: &CmdArgs) -> Result<CniResult> {
        let mut kernel = Real::new(Sockets::detached());
        let out = add::add(cmd, &mut kernel);
        kernel.release();
        out
    }

    fn del(&self, cmd: &CmdArgs) -> Result<()> {
        let mut kernel = Real::new(Sockets::detached());
        let out = del::del(cmd, &mut kernel);
        kernel.release();
        out
    }

    fn check(&self, cmd: &CmdArgs) -> Result<()> {
        check::check(cmd, &mut Real::new(Sockets::in_place()))
    }

    fn gc(&self, cmd: &CmdArgs) -> Result<()> {
        let mut sockets = Sockets::detached();
        let out = gc::gc(cmd, &mut sockets);
        sockets.release();
        out
    }

    fn status(&self, cmd: &CmdArgs) -> Result<()> {
        let conf = config::BridgeConf::parse(&cmd.stdin, None)?;
        match &conf.ipam_type {
            Some(ipam_type) => ipam::run(Command::Status, ipam_type, cmd),
            None => Ok(()),
        }
    }
}

cni::plugin_allocator!();

fn main() {
    single_malloc_arena();
    cni::plugin::run(&Bridge, "bridge: attaches containers to a Linux bridge");
}

/// One malloc arena for all threads. glibc gives each new thread that allocates its own arena,
/// a 64 MiB mapping set up on first use (0.5-0.8 ms measured per thread); a DEL starts a
/// short-lived thread for the container side, which allocates little.
#[cfg(target_env = "gnu")]
fn single_malloc_arena() {
    // SAFETY: mallopt only changes allocator tuning and is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Other C libraries (musl) have no per-thread arenas and no `mallopt`: nothing to tune. The
/// plugins build for `x86_64-unknown-linux-musl` too, whose static binaries start without
/// glibc's CPU and cache probing (0.5-0.6 ms of trapped CPUID per exec on a VM).
#[cfg(not(target_env = "gnu"))]
fn single_malloc_arena() {}
