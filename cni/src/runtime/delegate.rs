//! A plugin running another plugin: bridge to its IPAM, the port mapper to
//! its delegate (libcni's `invoke.Delegate*`).
//!
//! The delegate is found in the plugin's own `CNI_PATH` and runs with the
//! plugin's environment, `CNI_COMMAND` replaced by the verb, and the config
//! the caller passes (for IPAM: the whole stdin). Its stderr passes through
//! to ours, so its logs reach the runtime. There is no timeout: the runtime's
//! timeout for the calling plugin covers both.

use super::exec::{Exec, Invocation, ProcessExec, exec_with_result, exec_without_result};
use crate::error::Result;
use crate::plugin::{CmdArgs, Command};
use crate::result::CniResult;
use std::time::Duration;

/// Delegation with a chosen [`Exec`] (a fake in tests) and optional timeout.
#[derive(Clone, Copy)]
pub struct Delegate<'a> {
    exec: &'a dyn Exec,
    timeout: Option<Duration>,
}

impl<'a> Delegate<'a> {
    /// Delegation through `exec`, without a timeout.
    pub fn new(exec: &'a dyn Exec) -> Self {
        Delegate { exec, timeout: None }
    }

    /// Kills a delegate that runs longer than `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    fn invocation(&self, command: Command, stdin: &[u8], cmd: &CmdArgs) -> Invocation {
        Invocation::delegated(command, cmd, stdin.to_vec()).with_timeout(self.timeout)
    }

    /// ADD: runs the delegate and returns its result (for IPAM, an
    /// abbreviated one without interfaces).
    pub fn add(&self, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<CniResult> {
        let plugin = self.exec.find_in_path(plugin_type, &cmd.path)?;
        let out = exec_with_result(self.exec, &plugin, &self.invocation(Command::Add, stdin, cmd))?;
        Ok(out.result)
    }

    /// Runs a verb without a result (DEL, CHECK, GC, STATUS).
    pub fn run(&self, command: Command, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
        let plugin = self.exec.find_in_path(plugin_type, &cmd.path)?;
        exec_without_result(self.exec, &plugin, &self.invocation(command, stdin, cmd))
    }

    /// DEL.
    pub fn del(&self, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
        self.run(Command::Del, plugin_type, stdin, cmd)
    }

    /// CHECK.
    pub fn check(&self, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
        self.run(Command::Check, plugin_type, stdin, cmd)
    }

    /// GC.
    pub fn gc(&self, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
        self.run(Command::Gc, plugin_type, stdin, cmd)
    }

    /// STATUS.
    pub fn status(&self, plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
        self.run(Command::Status, plugin_type, stdin, cmd)
    }
}

/// ADD on the delegate `plugin_type` with config `stdin`, as the plugin
/// described by `cmd` was run.
pub fn delegate_add(plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<CniResult> {
    Delegate::new(&ProcessExec).add(plugin_type, stdin, cmd)
}

/// DEL on the delegate.
pub fn delegate_del(plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
    Delegate::new(&ProcessExec).del(plugin_type, stdin, cmd)
}

/// CHECK on the delegate.
pub fn delegate_check(plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
    Delegate::new(&ProcessExec).check(plugin_type, stdin, cmd)
}

/// GC on the delegate.
pub fn delegate_gc(plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
    Delegate::new(&ProcessExec).gc(plugin_type, stdin, cmd)
}

/// STATUS on the delegate.
pub fn delegate_status(plugin_type: &str, stdin: &[u8], cmd: &CmdArgs) -> Result<()> {
    Delegate::new(&ProcessExec).status(plugin_type, stdin, cmd)
}
