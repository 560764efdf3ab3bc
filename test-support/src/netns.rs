//! Throw-away network namespaces.

use crate::names::unique_name;
use crate::process::{require_root, sh, write_executable};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A network namespace `rcni-t-<pid>-<n>` made with `ip netns add` (so it
/// is under `/var/run/netns` and `ip -n`/`ip netns exec` reach it), deleted
/// on drop, also when the test panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates a new, uniquely named namespace; its `lo` is down.
    pub fn new() -> Netns {
        require_root("a named network namespace");
        let name = unique_name("rcni-t");
        sh("ip", &["netns", "add", &name]);
        let path = PathBuf::from("/var/run/netns").join(&name);
        Netns { name, path }
    }

    /// A new namespace with `lo` up, like a host's: for the "host" namespace
    /// where a test runs plugins, bridges and firewalls.
    pub fn with_lo_up() -> Netns {
        let ns = Netns::new();
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name for `ip -n` and `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, what a runtime passes as CNI_NETNS.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip -n <name> <args>` and returns its stdout; panics when it fails.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// Runs `ip -n <name> -j <args>` and parses the JSON (Null when there is none).
    #[track_caller]
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ip(&full)).unwrap_or(Value::Null)
    }

    /// Whether `dev` is administratively up in the namespace.
    pub fn link_is_up(&self, dev: &str) -> bool {
        let v = self.ip_json(&["link", "show", "dev", dev]);
        v[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"))
    }

    /// Runs `argv` inside the namespace (`ip netns exec`) and returns its
    /// stdout; panics with its stderr when it fails.
    #[track_caller]
    pub fn exec(&self, argv: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(argv);
        sh("ip", &full)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`),
    /// to add arguments, environment and stdio to.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Writes the executable script `script` that execs `binary` inside the
    /// namespace with its arguments, for a runtime (or a plugin delegating
    /// to it) that runs it as is; returns `script`.
    pub fn wrapper(&self, script: &Path, binary: &Path) -> PathBuf {
        write_executable(
            script,
            &format!(
                "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
                self.name,
                binary.display()
            ),
        );
        script.to_path_buf()
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// Runs `f` on a thread of its own that first moves into a fresh network
/// namespace (namespaces are per thread); returns what `f` returns and
/// passes its panic on. The namespace has no name, so nothing can leak: the
/// kernel deletes it, with every link and nftables table in it, once the
/// thread has ended and nothing else holds it (`f` may return a descriptor
/// of it to keep it).
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    require_root("a new network namespace");
    std::thread::scope(|s| {
        let thread = s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        });
        match thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
