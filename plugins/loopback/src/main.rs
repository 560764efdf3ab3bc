//! `loopback`: brings `lo` up in the container's network namespace.
//!
//! CNI_IFNAME is ignored: the loopback device is always `lo`.

mod lo;

use cni::plugin::{CmdArgs, Plugin};
use cni::{CniResult, Result};

struct Loopback;

impl Plugin for Loopback {
    fn add(&self, cmd: &CmdArgs) -> Result<CniResult> {
        let netns = lo::netns_of(cmd)?;
        let addrs = lo::bring_up(netns)?;
        // A chained loopback hands the previous result on unchanged.
        if let Some(prev) = cmd.prev_result()? {
            return Ok(prev);
        }
        Ok(lo::result(netns, &addrs))
    }

    fn del(&self, cmd: &CmdArgs) -> Result<()> {
        match lo::netns_if_present(cmd) {
            Some(netns) => lo::bring_down(netns),
            None => Ok(()),
        }
    }

    fn check(&self, cmd: &CmdArgs) -> Result<()> {
        lo::verify_up(lo::netns_of(cmd)?)
    }
}

cni::plugin_allocator!();

fn main() {
    cni::plugin::run(&Loopback, "loopback: brings lo up in a network namespace");
}
