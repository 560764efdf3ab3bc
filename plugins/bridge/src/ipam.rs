//! IPAM delegation: the plugin named in `ipam.type` is found in CNI_PATH and run with our
//! environment and our whole stdin, as libcni's `ipam.Exec*` do.
//!
//! An ADD can be split in two ([`start_add`], [`Started::finish`], over
//! [`cni::runtime::exec::Running`]): the plugin process is started first thing, by the
//! calling thread, and its answer read once the caller has made the links. The exec, the plugin's run and the link work then overlap without a helper
//! thread, whose start on a busy 2-CPU host took up to half a millisecond before the exec
//! even began.

use cni::plugin::{CmdArgs, Command};
use cni::runtime::delegate;
use cni::runtime::exec::{Invocation, PluginResult, Running, find_in_path};
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

/// An IPAM ADD whose process runs while the caller does other work. The caller must
/// [`Started::finish`] it, also when its own work failed: the plugin may have allocated an
/// address that then has to be released. (Dropped unfinished, the plugin is killed.)
pub struct Started {
    running: Running,
    config_version: String,
}

/// Starts the IPAM plugin's ADD as [`add`] runs it (same binary, environment, stdin, process
/// group, stderr passed through, no timeout) and writes as much of stdin as the pipe takes.
/// An error here (plugin not found, exec failed) is the one [`add`] would return.
pub fn start_add(ipam: &str, cmd: &CmdArgs) -> Result<Started> {
    let plugin = find_in_path(ipam, &cmd.path)?;
    let inv = Invocation::delegated(Command::Add, cmd, cmd.stdin.clone());
    Ok(Started {
        running: Running::start(&plugin, &inv)?,
        config_version: inv.config_version(),
    })
}

impl Started {
    /// Waits for the plugin's output and exit and returns its result, as [`add`] would have.
    pub fn finish(self) -> Result<CniResult> {
        let out = self.running.finish()?;
        Ok(PluginResult::from_stdout(&out, &self.config_version)?.result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cni::version::Version;
    use rcni_test_support::{TempDir, write_executable};

    use super::*;

    /// A throw-away CNI_PATH holding one shell-script plugin named `fake-ipam`.
    struct FakePath(TempDir);

    impl FakePath {
        fn new(tag: &str, script: &str) -> FakePath {
            let dir = TempDir::named(&format!("rcni-bridge-ipam-{tag}"));
            write_executable(&dir.join("fake-ipam"), &format!("#!/bin/sh\n{script}\n"));
            FakePath(dir)
        }
    }

    fn cmd(path: &FakePath, stdin: Vec<u8>) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "c1".into(),
            netns: None,
            netns_state: None,
            ifname: "eth0".into(),
            raw_args: String::new(),
            path: vec![path.0.path().to_path_buf()],
            config: serde_json::from_slice(&stdin).unwrap(),
            stdin,
            version: Version::parse("1.0.0").unwrap(),
        }
    }

    /// A config of about `size` bytes, larger than a pipe's buffer when asked.
    fn config(size: usize) -> Vec<u8> {
        let pad = "x".repeat(size);
        serde_json::to_vec(
            &serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "pad": pad}),
        )
        .unwrap()
    }

    #[test]
    fn a_large_stdin_is_written_whole_while_the_plugin_runs() {
        let path = FakePath::new(
            "large",
            r#"n=$(wc -c); echo "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.1.0.$((n % 200 + 2))/24\"}]}""#,
        );
        let stdin = config(300 * 1024);
        let expected = format!("10.1.0.{}/24", stdin.len() % 200 + 2);
        let started = start_add("fake-ipam", &cmd(&path, stdin)).unwrap();
        let result = started.finish().unwrap();
        assert_eq!(result.ips[0].address.to_string(), expected);
    }

    #[test]
    fn a_plugin_that_reads_nothing_and_fails_gives_its_error() {
        let path = FakePath::new(
            "fails",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"no addresses left"}'; exit 1"#,
        );
        let err = start_add("fake-ipam", &cmd(&path, config(200 * 1024)))
            .unwrap()
            .finish()
            .unwrap_err();
        assert_eq!(err.code.0, 11);
        assert_eq!(err.msg, "no addresses left");
    }

    #[test]
    fn a_missing_plugin_is_an_error_at_start() {
        let path = FakePath::new("missing", "exit 0");
        assert!(start_add("no-such-ipam", &cmd(&path, config(10))).is_err());
    }
}
