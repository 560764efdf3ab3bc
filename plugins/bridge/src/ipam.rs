//! IPAM delegation: the plugin named in `ipam.type` is found in CNI_PATH and run with our
//! environment and our whole stdin, as libcni's `ipam.Exec*` do.
//!
//! An ADD can be split in two ([`start_add`], [`Started::finish`]): the plugin process is
//! started first thing, by the calling thread, and its answer read once the caller has made
//! the links. The exec, the plugin's run and the link work then overlap without a helper
//! thread, whose start on a busy 2-CPU host took up to half a millisecond before the exec
//! even began.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus, Stdio};

use cni::plugin::{CmdArgs, Command};
use cni::runtime::delegate;
use cni::runtime::exec::{
    Invocation, PluginResult, TEXT_FILE_BUSY_PAUSE, TEXT_FILE_BUSY_RETRIES, find_in_path, plugin_error,
};
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
/// address that then has to be released.
pub struct Started {
    plugin: PathBuf,
    inv: Invocation,
    child: Child,
    stdin: Option<ChildStdin>,
    written: usize,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Starts the IPAM plugin's ADD as [`add`] runs it (same binary, environment, stdin, process
/// group, stderr passed through, no timeout) and writes as much of stdin as the pipe takes.
/// An error here (plugin not found, exec failed) is the one [`add`] would return.
pub fn start_add(ipam: &str, cmd: &CmdArgs) -> Result<Started> {
    let plugin = find_in_path(ipam, &cmd.path)?;
    let inv = Invocation::delegated(Command::Add, cmd, cmd.stdin.clone());
    let mut child = spawn(&plugin, &inv)?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut started = Started {
        plugin,
        inv,
        child,
        stdin,
        written: 0,
        stdout,
        stderr,
    };
    if started.stdout.is_none() || started.stderr.is_none() || started.prepare_stdin().is_err() {
        return Err(started.abort("cannot set up the pipes of"));
    }
    started.write_stdin(false);
    Ok(started)
}

/// `Command::spawn` with the delegation's environment and pipes, retried while the binary is
/// busy being written (ETXTBSY), as the runtime's exec does.
fn spawn(plugin: &Path, inv: &Invocation) -> Result<Child> {
    let mut attempt = 0;
    loop {
        let mut command = std::process::Command::new(plugin);
        command
            .env_clear()
            .envs(inv.environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        match command.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if is_text_file_busy(&e) && attempt < TEXT_FILE_BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(TEXT_FILE_BUSY_PAUSE);
            }
            Err(e) => {
                return Err(
                    Error::internal(format!("cannot execute plugin {}", plugin.display()))
                        .with_details(e.to_string()),
                );
            }
        }
    }
}

fn is_text_file_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ExecutableFileBusy || e.raw_os_error() == Some(libc::ETXTBSY)
}

/// `poll(2)` readiness that ends a wait on a pipe: data, room, or the other end gone.
const POLL_READY: libc::c_short = libc::POLLIN | libc::POLLOUT | libc::POLLHUP | libc::POLLERR;

impl Started {
    /// Waits for the plugin's output and exit and returns its result, as [`add`] would have.
    pub fn finish(mut self) -> Result<CniResult> {
        let (out, err) = self.collect()?;
        let status = self.wait()?;
        if !err.is_empty() {
            let mut ours = std::io::stderr().lock();
            let _ = ours.write_all(&err);
            let _ = ours.flush();
        }
        if !status.success() {
            return Err(plugin_error(status, &out, &err));
        }
        Ok(PluginResult::from_stdout(&out, &self.inv.config_version())?.result)
    }

    /// Non-blocking stdin, so a plugin that reads little never blocks us; no stdin at all when
    /// there is nothing to write.
    fn prepare_stdin(&mut self) -> std::io::Result<()> {
        if self.inv.stdin.is_empty() {
            self.stdin = None;
            return Ok(());
        }
        let Some(pipe) = &self.stdin else {
            return Ok(());
        };
        let fd = pipe.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take and return plain ints.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes what the stdin pipe takes now; closes it when all is written or the plugin went
    /// away (`hung_up`, or EPIPE: a plugin may exit without reading, which is no error of ours).
    fn write_stdin(&mut self, hung_up: bool) {
        let Some(pipe) = &mut self.stdin else { return };
        if !hung_up {
            match pipe.write(self.inv.stdin.get(self.written..).unwrap_or_default()) {
                Ok(n) => self.written += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.written = self.inv.stdin.len(),
            }
        }
        if hung_up || self.written >= self.inv.stdin.len() {
            self.stdin = None;
        }
    }

    /// One `poll(2)` loop until stdout and stderr reach EOF, writing the rest of stdin on the way.
    fn collect(&mut self) -> Result<(Vec<u8>, Vec<u8>)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while self.stdout.is_some() || self.stderr.is_some() {
            let mut fds = [
                pollfd(self.stdin.as_ref().map(AsFd::as_fd), libc::POLLOUT),
                pollfd(self.stdout.as_ref().map(AsFd::as_fd), libc::POLLIN),
                pollfd(self.stderr.as_ref().map(AsFd::as_fd), libc::POLLIN),
            ];
            if let Err(e) = poll(&mut fds) {
                return Err(self.abort("cannot wait for").with_details(e.to_string()));
            }
            let ready = |i: usize| fds.get(i).is_some_and(|f| f.revents & POLL_READY != 0);
            if ready(0) {
                let hung_up = fds
                    .first()
                    .is_some_and(|f| f.revents & (libc::POLLERR | libc::POLLHUP) != 0);
                self.write_stdin(hung_up);
            }
            if ready(1) {
                drain(&mut self.stdout, &mut out);
            }
            if ready(2) {
                drain(&mut self.stderr, &mut err);
            }
        }
        self.stdin = None;
        Ok((out, err))
    }

    fn wait(&mut self) -> Result<ExitStatus> {
        self.child.wait().map_err(|e| {
            Error::internal(format!("cannot wait for plugin {}", self.plugin.display()))
                .with_details(e.to_string())
        })
    }

    /// Kills the plugin's process group, reaps the plugin and returns the error for `what`.
    fn abort(&mut self, what: &str) -> Error {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: killpg takes plain integers; the group is the plugin's own (process_group(0)).
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Error::internal(format!("{what} plugin {}", self.plugin.display()))
    }
}

fn pollfd(fd: Option<BorrowedFd<'_>>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
        events,
        revents: 0,
    }
}

/// `poll(2)` without a timeout, EINTR retried.
fn poll(fds: &mut [libc::pollfd]) -> std::io::Result<()> {
    let n = libc::nfds_t::try_from(fds.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd structs for the
        // duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), n, -1) } >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads what one ready pipe holds into `buf`; drops the pipe at EOF or on an error, which
/// ends the output the same way.
fn drain<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>) {
    let Some(r) = pipe else { return };
    let mut chunk = [0u8; 16 * 1024];
    match r.read(&mut chunk) {
        Ok(0) => *pipe = None,
        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(_) => *pipe = None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use cni::version::Version;

    use super::*;

    /// A throw-away CNI_PATH holding one shell-script plugin named `fake-ipam`.
    struct FakePath(PathBuf);

    impl FakePath {
        fn new(tag: &str, script: &str) -> FakePath {
            let dir = std::env::temp_dir().join(format!("rcni-bridge-ipam-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let plugin = dir.join("fake-ipam");
            std::fs::write(&plugin, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
            FakePath(dir)
        }
    }

    impl Drop for FakePath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
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
            path: vec![path.0.clone()],
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
