//! A plugin whose ADD panics: proves that `cni::plugin::run`'s panic hook
//! turns a bug into a code-999 error JSON on stdout and a non-zero exit.

use cni::plugin::{CmdArgs, Plugin};
use cni::{CniResult, Result};

struct Panics;

impl Plugin for Panics {
    fn add(&self, _cmd: &CmdArgs) -> Result<CniResult> {
        let v: Vec<u8> = Vec::new();
        // Deliberately out of bounds.
        let i = std::hint::black_box(3);
        Ok(CniResult {
            cni_version: v[i].to_string(),
            ..Default::default()
        })
    }
    fn del(&self, _cmd: &CmdArgs) -> Result<()> {
        panic!("DEL exploded")
    }
    fn check(&self, _cmd: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

fn main() {
    cni::plugin::run(&Panics, "panicking-plugin: a test fixture");
}
