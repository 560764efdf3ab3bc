//! Finding and running one plugin binary: libcni's `pkg/invoke`.
//!
//! [`find_in_path`] picks the binary for a plugin `type` from the CNI path.
//! [`Exec`] runs it: [`ProcessExec`] is the real thing, tests may bring a
//! fake. [`exec_with_result`] and [`exec_without_result`] read the answer the
//! way libcni does.
//!
//! Error codes chosen where libcni only has a plain Go error (which a Go
//! plugin's skel prints as code 999):
//! - plugin not found, no CNI path, cannot execute: 999 ([`Code::INTERNAL`]),
//!   message `failed to find plugin "x" in path [/a /b]` as libcni words it;
//!   an invalid `type` (a path) is code 7 from [`validate::plugin_type`];
//! - a plugin that exits non-zero without printing an error object on stdout:
//!   999 (libcni leaves the code 0), the message built from its stderr;
//! - timeout: 999, message `plugin <path> timed out after <t>`; the plugin
//!   and every process in its process group are killed with SIGKILL and the
//!   plugin is reaped. Not code 11: a timed-out plugin may have done half its
//!   work, so the runtime must DEL rather than retry.

use crate::error::{Code, Error, Result};
use crate::plugin::{CmdArgs, Command};
use crate::result::CniResult;
use crate::validate;
use nix::libc;
use serde_json::{Map, Value};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// How often libcni retries an exec that failed with ETXTBSY ("text file
/// busy": the binary is still open for writing, e.g. being installed).
pub const TEXT_FILE_BUSY_RETRIES: u32 = 5;

/// The pause between those retries.
pub const TEXT_FILE_BUSY_PAUSE: Duration = Duration::from_secs(1);

/// The arguments of one attachment that a runtime passes to plugins, apart
/// from the network config (libcni's `RuntimeConf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; `None` is passed as an empty value.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability values (`portMappings`, `ips`, ...). Each plugin gets, in
    /// its `runtimeConfig`, the ones it enables in `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// An attachment without CNI_ARGS or capability values.
    pub fn new(container_id: impl Into<String>, netns: Option<PathBuf>, ifname: impl Into<String>) -> Self {
        RuntimeConf {
            container_id: container_id.into(),
            netns,
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    /// `CNI_ARGS` as the plugin sees it: `K=V;K=V`.
    pub fn cni_args(&self) -> String {
        join_cni_args(&self.args)
    }
}

/// `K=V;K=V`, as libcni's `stringify`.
pub fn join_cni_args(args: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in args.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Joins CNI path directories with `:`.
pub fn join_cni_path(dirs: &[PathBuf]) -> OsString {
    let mut out = OsString::new();
    for (i, d) in dirs.iter().enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(d.as_os_str());
    }
    out
}

/// Where a plugin's environment comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvBase {
    /// A runtime's exec: the process environment without any `CNI_*`
    /// variable, so nothing stale leaks into the plugin; every CNI variable
    /// comes from [`Invocation::vars`].
    Runtime,
    /// A plugin delegating (to IPAM, or the port mapper to its delegate): the
    /// process environment as it is, `CNI_*` included, with
    /// [`Invocation::vars`] overriding (libcni's `DelegateArgs`).
    Delegated,
}

/// One exec of one plugin: verb, environment, stdin and limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The verb (`CNI_COMMAND`).
    pub command: Command,
    /// The config the plugin reads on stdin.
    pub stdin: Vec<u8>,
    /// What the environment starts from.
    pub base: EnvBase,
    /// Variables set on top of the base, in order (a later one wins).
    pub vars: Vec<(OsString, OsString)>,
    /// Kill the plugin when it runs longer; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Copy the plugin's stderr to ours after it exits (libcni's default
    /// exec does; delegation needs it so IPAM's logs reach the runtime).
    pub pass_stderr: bool,
}

impl Invocation {
    /// What a runtime passes: all six CNI variables, empty where the verb
    /// has no value (GC and STATUS pass an empty container ID, ifname and
    /// netns, as libcni does), and the inherited environment minus `CNI_*`.
    pub fn runtime(command: Command, rt: &RuntimeConf, cni_path: &[PathBuf], stdin: Vec<u8>) -> Self {
        let netns = rt
            .netns
            .as_ref()
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_default();
        let vars = vec![
            ("CNI_COMMAND".into(), command.as_str().into()),
            ("CNI_CONTAINERID".into(), rt.container_id.clone().into()),
            ("CNI_NETNS".into(), netns),
            ("CNI_ARGS".into(), rt.cni_args().into()),
            ("CNI_IFNAME".into(), rt.ifname.clone().into()),
            ("CNI_PATH".into(), join_cni_path(cni_path)),
        ];
        Invocation {
            command,
            stdin,
            base: EnvBase::Runtime,
            vars,
            timeout: None,
            pass_stderr: true,
        }
    }

    /// What a plugin passes to the plugin it delegates to: its own
    /// environment with `CNI_COMMAND` replaced. The values of `cmd` that are
    /// set override the process environment, so a plugin run by
    /// [`crate::plugin::run_with`] with a test environment delegates the same
    /// way as a real one. stderr passes through.
    pub fn delegated(command: Command, cmd: &CmdArgs, stdin: Vec<u8>) -> Self {
        let mut vars: Vec<(OsString, OsString)> = vec![("CNI_COMMAND".into(), command.as_str().into())];
        let mut set = |k: &str, v: OsString| {
            if !v.is_empty() {
                vars.push((k.into(), v));
            }
        };
        set("CNI_CONTAINERID", cmd.container_id.clone().into());
        set(
            "CNI_NETNS",
            cmd.netns
                .as_ref()
                .map(|p| p.as_os_str().to_owned())
                .unwrap_or_default(),
        );
        set("CNI_ARGS", cmd.raw_args.clone().into());
        set("CNI_IFNAME", cmd.ifname.clone().into());
        set("CNI_PATH", join_cni_path(&cmd.path));
        Invocation {
            command,
            stdin,
            base: EnvBase::Delegated,
            vars,
            timeout: None,
            pass_stderr: true,
        }
    }

    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets whether the plugin's stderr is copied to ours.
    #[must_use]
    pub fn with_pass_stderr(mut self, pass: bool) -> Self {
        self.pass_stderr = pass;
        self
    }

    /// The plugin's whole environment, built from the current process's.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        self.environment_from(std::env::vars_os())
    }

    /// The plugin's whole environment, built from `base` (testable core of
    /// [`Invocation::environment`]). Each key appears once.
    pub fn environment_from(
        &self,
        base: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = base
            .into_iter()
            .filter(|(k, _)| self.base == EnvBase::Delegated || !is_cni_var(k))
            .collect();
        for (k, v) in &self.vars {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// The config's `cniVersion` (0.1.0 when missing or unreadable), which
    /// libcni stamps on a result that lacks one.
    pub fn config_version(&self) -> String {
        let v: Option<Value> = serde_json::from_slice(&self.stdin).ok();
        crate::version::effective(
            v.as_ref()
                .and_then(|v| v.get("cniVersion"))
                .and_then(Value::as_str),
        )
        .to_string()
    }
}

/// Finds and runs plugins. [`ProcessExec`] runs real binaries; a test can
/// implement this to answer without processes.
pub trait Exec: Send + Sync {
    /// The binary for plugin `plugin_type` in `dirs` (see [`find_in_path`]).
    fn find_in_path(&self, plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
        find_in_path(plugin_type, dirs)
    }

    /// Runs the plugin and returns its stdout when it exits 0; otherwise
    /// the error it reported (or one built from its stderr).
    fn exec_plugin(&self, plugin: &Path, inv: &Invocation) -> Result<Vec<u8>>;
}

/// The plugin binary for `plugin_type`: the first regular, executable file of
/// that name in `dirs`, in order. libcni takes the first regular file and
/// fails later if it is not executable; we skip it and keep looking.
///
/// Relative entries are skipped: they would name a directory of whatever the
/// working directory of the caller happens to be, so a `CNI_PATH` of `.` or
/// `bin` would run a binary planted there. libcni follows them; rcni is
/// stricter here.
pub fn find_in_path(plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    validate::plugin_type(plugin_type)?;
    let dirs: Vec<PathBuf> = dirs.iter().filter(|d| d.is_absolute()).cloned().collect();
    let dirs = dirs.as_slice();
    if dirs.is_empty() {
        return Err(Error::internal(format!(
            "failed to find plugin {plugin_type:?}: no absolute paths provided"
        )));
    }
    for dir in dirs {
        let candidate = dir.join(plugin_type);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if meta.is_file() && nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
    }
    Err(Error::internal(format!(
        "failed to find plugin {plugin_type:?} in path {}",
        GoSlice(dirs)
    )))
}

/// Formats paths as Go's `%v` of a `[]string`: `[/a /b]`.
struct GoSlice<'a>(&'a [PathBuf]);

impl fmt::Display for GoSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", p.display())?;
        }
        f.write_str("]")
    }
}

/// Runs plugins as child processes: std::process plus a timeout, no async
/// runtime, safe to use from many threads at once.
///
/// Each plugin runs in its own process group, so a timeout kills whatever it
/// started too; stdin is written and stdout/stderr are read by one `poll(2)`
/// loop on the calling thread (no helper threads), so a plugin that ignores
/// stdin or prints a lot never blocks us.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessExec;

impl Exec for ProcessExec {
    fn exec_plugin(&self, plugin: &Path, inv: &Invocation) -> Result<Vec<u8>> {
        Running::start(plugin, inv)?.finish()
    }
}

/// Makes the process `cmd` starts get SIGKILL when this process dies (a delegated plugin
/// must not outlive the plugin that runs it), and exit at once when this process is already
/// gone by the time it could ask for that. Shared by every runtime that execs plugins.
pub fn dies_with_parent(cmd: &mut std::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent may have died before the prctl: then nobody would send it.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// What a finished plugin left.
struct ProcessOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn spawn(plugin: &Path, inv: &Invocation) -> Result<Child> {
    let mut attempt = 0;
    loop {
        let mut cmd = std::process::Command::new(plugin);
        cmd.env_clear()
            .envs(inv.environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if inv.base == EnvBase::Delegated {
            // A delegated plugin (IPAM) must not outlive the plugin that runs it: killed by
            // its runtime mid-ADD (a timeout, `kill -9`), the plugin is followed by a DEL,
            // and an IPAM ADD still running in its own process group would reserve an
            // address after that DEL released everything. So it dies with its parent.
            dies_with_parent(&mut cmd);
        }
        match cmd.spawn() {
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
    e.kind() == std::io::ErrorKind::ExecutableFileBusy
        || e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
}

/// Kills the plugin's process group (the plugin and what it started).
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
}

fn timed_out(plugin: &Path, timeout: Duration) -> Error {
    Error::internal(format!("plugin {} timed out after {timeout:?}", plugin.display()))
        .with_details("the plugin and its process group were killed")
}

/// A descriptor that becomes readable when process `pid` exits
/// (`pidfd_open(2)`, Linux 5.3). `None` where the kernel has none; the
/// caller then waits with [`wait_timeout`].
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new
    // descriptor or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = std::os::fd::RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `poll(2)` on `fds` for at most `timeout` (`None`: no limit). Returns
/// false when the time ran out. EINTR is retried.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> std::io::Result<bool> {
    // Round up, so the deadline is never polled short of and then spun on.
    let ms = timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    });
    let n = libc::nfds_t::try_from(fds.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd
        // structs for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
        match r {
            0 => return Ok(false),
            r if r > 0 => return Ok(true),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads what one ready pipe holds into `buf`; drops the pipe at EOF (or on
/// an error, which ends the output the same way).
fn drain<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>) {
    let Some(r) = pipe else { return };
    let mut chunk = [0u8; 64 * 1024];
    match r.read(&mut chunk) {
        Ok(0) => *pipe = None,
        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => *pipe = None,
    }
}

const POLL_READY: libc::c_short = libc::POLLIN | libc::POLLOUT | libc::POLLHUP | libc::POLLERR;

/// A plugin process started by [`Running::start`] and not yet waited for: the caller can do
/// other work while the plugin runs (the bridge makes its links while its IPAM plugin
/// allocates), then collect the answer with [`Running::finish`]. Dropping it unfinished kills
/// the plugin's process group and reaps it.
///
/// [`Running::finish`] runs the plugin on the calling thread, without helper threads: one
/// `poll(2)` loop writes stdin (non-blocking, so a plugin that reads nothing never blocks
/// us), reads stdout and stderr as they come (so a plugin printing a lot never blocks
/// either) and watches the plugin's exit through a pidfd, all against one deadline counted
/// from the start. The plugin's output is complete when both pipes reach EOF, which happens
/// once every process holding them is gone; one that the plugin left running counts against
/// the deadline and is killed with the rest of the group when it passes. Output arriving
/// after the deadline is never read.
pub struct Running {
    plugin: PathBuf,
    inv: Invocation,
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    pidfd: Option<OwnedFd>,
    deadline: Option<Instant>,
    written: usize,
}

impl Running {
    /// Starts `plugin` for `inv` and writes as much of its stdin as the pipe takes now. An
    /// error here (cannot execute, no pipes) is the one [`ProcessExec`] would return.
    pub fn start(plugin: &Path, inv: &Invocation) -> Result<Running> {
        Running::start_with(plugin, inv, true)
    }

    /// [`Running::start`]; `use_pidfd: false` takes the path of a kernel without pidfds
    /// (tested on every kernel).
    fn start_with(plugin: &Path, inv: &Invocation, use_pidfd: bool) -> Result<Running> {
        let mut child = spawn(plugin, inv)?;
        let deadline = inv.timeout.map(|t| Instant::now() + t);
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let pidfd = if use_pidfd { pidfd_open(child.id()) } else { None };
        let mut running = Running {
            plugin: plugin.to_path_buf(),
            inv: inv.clone(),
            child: Some(child),
            stdin,
            stdout,
            stderr,
            pidfd,
            deadline,
            written: 0,
        };
        if running.stdout.is_none() || running.stderr.is_none() {
            return Err(running.abort(running.io_err("capture the output of")));
        }
        if running.inv.stdin.is_empty() {
            running.stdin = None;
        } else if let Some(pipe) = &running.stdin
            && nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).is_err()
        {
            return Err(running.abort(running.io_err("write to")));
        }
        running.write_stdin(false);
        Ok(running)
    }

    /// Waits for the plugin and returns its stdout; a plugin that failed is its error (the
    /// error object it printed, else one made from its stderr). With
    /// [`Invocation::pass_stderr`] its stderr is copied to ours.
    pub fn finish(self) -> Result<Vec<u8>> {
        let pass_stderr = self.inv.pass_stderr;
        let out = self.output()?;
        if pass_stderr && !out.stderr.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&out.stderr);
            let _ = err.flush();
        }
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(plugin_error(out.status, &out.stdout, &out.stderr))
        }
    }

    fn io_err(&self, what: &str) -> Error {
        Error::internal(format!("cannot {what} plugin {}", self.plugin.display()))
    }

    /// Kills the plugin's process group, reaps the plugin and returns `e`.
    fn abort(&mut self, e: Error) -> Error {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
            let _ = child.wait();
        }
        e
    }

    /// Writes what the stdin pipe takes now; closes it when all is written or the plugin
    /// went away (`hung_up`, or EPIPE: a plugin may exit without reading stdin, which is no
    /// error of ours).
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

    /// The poll loop, then the exit status.
    fn output(mut self) -> Result<ProcessOutput> {
        let Some(mut child) = self.child.take() else {
            return Err(self.io_err("run"));
        };
        let fail = |child: &mut Child, e: Error| {
            kill_group(child);
            let _ = child.wait();
            Err(e)
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut status: Option<ExitStatus> = None;
        let mut expired = false;
        loop {
            let output_done = self.stdout.is_none() && self.stderr.is_none();
            if output_done && (status.is_some() || self.pidfd.is_none()) {
                break;
            }
            let left = self.deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                expired = true;
                break;
            }
            let fd = |p: Option<BorrowedFd<'_>>, events| libc::pollfd {
                fd: p.map_or(-1, |p| p.as_raw_fd()),
                events,
                revents: 0,
            };
            let mut fds = [
                fd(self.stdin.as_ref().map(AsFd::as_fd), libc::POLLOUT),
                fd(self.stdout.as_ref().map(AsFd::as_fd), libc::POLLIN),
                fd(self.stderr.as_ref().map(AsFd::as_fd), libc::POLLIN),
                fd(
                    self.pidfd.as_ref().filter(|_| status.is_none()).map(AsFd::as_fd),
                    libc::POLLIN,
                ),
            ];
            match poll(&mut fds, left) {
                Ok(true) => {}
                Ok(false) => {
                    expired = true;
                    break;
                }
                Err(e) => return fail(&mut child, self.io_err("wait for").with_details(e.to_string())),
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
            if ready(3) {
                match child.try_wait() {
                    Ok(s) => status = s,
                    Err(e) => return fail(&mut child, self.io_err("wait for").with_details(e.to_string())),
                }
            }
        }
        self.stdin = None;

        let plugin = self.plugin.as_path();
        if expired {
            // The plugin (or what it started) still holds its output or still runs.
            let exited = status.is_some() || matches!(child.try_wait(), Ok(Some(_)));
            kill_group(&mut child);
            let _ = child.wait();
            let timeout = self.inv.timeout.unwrap_or_default();
            return Err(if exited {
                timed_out(plugin, timeout).with_details(
                    "the plugin exited but processes it started kept its output open; they were killed",
                )
            } else {
                timed_out(plugin, timeout)
            });
        }
        let status = match (status, self.deadline, self.inv.timeout) {
            (Some(status), _, _) => status,
            // No pidfd: the output is complete, wait for the exit as before.
            (None, Some(deadline), Some(timeout)) => {
                match child.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Some(status)) => status,
                    Ok(None) => return fail(&mut child, timed_out(plugin, timeout)),
                    Err(e) => return fail(&mut child, self.io_err("wait for").with_details(e.to_string())),
                }
            }
            (None, _, _) => child
                .wait()
                .map_err(|e| self.io_err("wait for").with_details(e.to_string()))?,
        };
        Ok(ProcessOutput {
            status,
            stdout: out,
            stderr: err,
        })
    }
}

impl Drop for Running {
    /// An unfinished plugin (the caller gave up on it) is killed and reaped.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
            let _ = child.wait();
        }
    }
}

/// Runs the plugin to the end on the calling thread (see [`Running`]).
#[cfg(test)]
fn run_process_with(plugin: &Path, inv: &Invocation, use_pidfd: bool) -> Result<ProcessOutput> {
    Running::start_with(plugin, inv, use_pidfd)?.output()
}

/// Go's rendering of an exit: `exit status 1`, `signal: 9`.
struct GoExit(ExitStatus);

impl fmt::Display for GoExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.code(), self.0.signal()) {
            (Some(code), _) => write!(f, "exit status {code}"),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => write!(f, "signal: {}", s.as_str()),
                Err(_) => write!(f, "signal: {sig}"),
            },
            (None, None) => write!(f, "{}", self.0),
        }
    }
}

/// The error of a plugin that exited non-zero, read as libcni's `pluginErr`:
/// the error object on stdout; with nothing on stdout, a message from stderr.
pub fn plugin_error(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Error {
    let exit = GoExit(status);
    if stdout.is_empty() {
        if stderr.is_empty() {
            return Error::internal(format!("netplugin failed with no error message: {exit}"));
        }
        return Error::internal(format!(
            "netplugin failed: {:?}: {exit}",
            String::from_utf8_lossy(stderr)
        ));
    }
    match parse_error_object(stdout) {
        Ok(e) => e,
        Err(why) => Error::internal(format!(
            "netplugin failed but error parsing its diagnostic message {:?}: {why}",
            String::from_utf8_lossy(stdout)
        )),
    }
}

/// Reads a spec error object leniently, as Go's decoder does: missing
/// fields are empty; a missing or zero code becomes 999.
fn parse_error_object(stdout: &[u8]) -> std::result::Result<Error, String> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| e.to_string())?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let code = obj
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .filter(|c| *c != 0)
        .map_or(Code::INTERNAL, Code);
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Error::new(code, text("msg")).with_details(text("details")))
}

/// An ADD's answer: the parsed result and the JSON it came as (with
/// `cniVersion` filled in when the plugin left it out).
#[derive(Clone, Debug, PartialEq)]
pub struct PluginResult {
    /// The result in the canonical model.
    pub result: CniResult,
    /// The plugin's JSON.
    pub raw: Value,
}

impl PluginResult {
    /// Parses a plugin's stdout. A result without `cniVersion` is taken to be
    /// of `config_version` (libcni's `fixupResultVersion`, cni#895).
    pub fn from_stdout(stdout: &[u8], config_version: &str) -> Result<PluginResult> {
        let mut raw: Value = serde_json::from_slice(stdout)
            .map_err(|e| Error::decoding(format!("failed to unmarshal raw result: {e}")))?;
        match &mut raw {
            Value::Object(obj) => {
                let has_version = obj
                    .get("cniVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty());
                if !has_version {
                    obj.insert("cniVersion".into(), config_version.into());
                }
            }
            Value::Null => {
                let mut obj = Map::new();
                obj.insert("cniVersion".into(), config_version.into());
                raw = Value::Object(obj);
            }
            _ => {
                return Err(Error::decoding(
                    "failed to unmarshal raw result: not a JSON object",
                ));
            }
        }
        let result = CniResult::from_value(&raw)?;
        Ok(PluginResult { result, raw })
    }

    /// A result read back from JSON (the cache); one without `cniVersion` is
    /// taken to be of `default_version`.
    pub fn from_value(raw: Value, default_version: &str) -> Result<PluginResult> {
        let bytes = serde_json::to_vec(&raw).map_err(|e| Error::decoding(format!("invalid result: {e}")))?;
        PluginResult::from_stdout(&bytes, default_version)
    }

    /// The result as JSON of `version`: the plugin's own JSON when it is
    /// already that version, a conversion otherwise.
    pub fn to_version(&self, version: &str) -> Result<Value> {
        if self.raw.get("cniVersion").and_then(Value::as_str) == Some(version) {
            return Ok(self.raw.clone());
        }
        self.result.to_value(version)
    }
}

/// Runs a plugin that answers with a result (ADD).
pub fn exec_with_result(exec: &dyn Exec, plugin: &Path, inv: &Invocation) -> Result<PluginResult> {
    let stdout = exec.exec_plugin(plugin, inv)?;
    PluginResult::from_stdout(&stdout, &inv.config_version())
}

/// Runs a plugin whose stdout does not matter (DEL, CHECK, GC, STATUS).
pub fn exec_without_result(exec: &dyn Exec, plugin: &Path, inv: &Invocation) -> Result<()> {
    exec.exec_plugin(plugin, inv).map(|_| ())
}

/// True for an env var name that is one of the spec's `CNI_*` variables.
pub fn is_cni_var(key: &OsStr) -> bool {
    key.as_encoded_bytes().starts_with(b"CNI_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcni_test_support::{TempDir, process_gone_or_zombie as gone_or_zombie, write_executable};

    fn os(k: &str, v: &str) -> (OsString, OsString) {
        (k.into(), v.into())
    }

    fn value_of<'a>(env: &'a [(OsString, OsString)], k: &str) -> Option<&'a str> {
        env.iter().find(|(ek, _)| ek == k).and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn runtime_env_drops_stale_cni_vars_and_sets_all_six() {
        let mut rt = RuntimeConf::new("c1", Some("/run/netns/x".into()), "eth0");
        rt.args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "10.0.0.2".into()),
        ];
        let inv = Invocation::runtime(Command::Add, &rt, &["/a".into(), "/b".into()], b"{}".to_vec());
        let env = inv.environment_from(vec![
            os("PATH", "/usr/bin"),
            os("CNI_IFNAME", "stale0"),
            os("CNI_NETNS_OVERRIDE", "1"),
            os("CNI_FOO", "x"),
        ]);
        assert_eq!(value_of(&env, "PATH"), Some("/usr/bin"));
        assert_eq!(value_of(&env, "CNI_IFNAME"), Some("eth0"));
        assert_eq!(value_of(&env, "CNI_FOO"), None);
        assert_eq!(value_of(&env, "CNI_NETNS_OVERRIDE"), None);
        assert_eq!(value_of(&env, "CNI_COMMAND"), Some("ADD"));
        assert_eq!(value_of(&env, "CNI_CONTAINERID"), Some("c1"));
        assert_eq!(value_of(&env, "CNI_NETNS"), Some("/run/netns/x"));
        assert_eq!(value_of(&env, "CNI_ARGS"), Some("IgnoreUnknown=1;IP=10.0.0.2"));
        assert_eq!(value_of(&env, "CNI_PATH"), Some("/a:/b"));
        assert_eq!(env.iter().filter(|(k, _)| k == "CNI_IFNAME").count(), 1);
    }

    #[test]
    fn gc_env_passes_empty_attachment_vars() {
        let inv = Invocation::runtime(Command::Gc, &RuntimeConf::default(), &["/a".into()], Vec::new());
        let env = inv.environment_from(Vec::new());
        assert_eq!(value_of(&env, "CNI_CONTAINERID"), Some(""));
        assert_eq!(value_of(&env, "CNI_NETNS"), Some(""));
        assert_eq!(value_of(&env, "CNI_IFNAME"), Some(""));
        assert_eq!(value_of(&env, "CNI_COMMAND"), Some("GC"));
    }

    #[test]
    fn error_from_stdout_object_keeps_code() {
        let status = ExitStatus::from_raw(1 << 8);
        let e = plugin_error(status, br#"{"code":7,"msg":"bad","details":"why"}"#, b"log");
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (Code(7), "bad", "why")
        );
    }

    #[test]
    fn error_from_stderr_when_stdout_empty() {
        let status = ExitStatus::from_raw(1 << 8);
        let e = plugin_error(status, b"", b"boom\n");
        assert_eq!(e.code, Code::INTERNAL);
        assert_eq!(e.msg, r#"netplugin failed: "boom\n": exit status 1"#);
        let e = plugin_error(status, b"", b"");
        assert_eq!(e.msg, "netplugin failed with no error message: exit status 1");
        let e = plugin_error(ExitStatus::from_raw(9), b"", b"");
        assert_eq!(e.msg, "netplugin failed with no error message: signal: SIGKILL");
    }

    #[test]
    fn unparsable_error_output_is_reported() {
        let e = plugin_error(ExitStatus::from_raw(1 << 8), b"oops", b"");
        assert_eq!(e.code, Code::INTERNAL);
        assert!(
            e.msg
                .starts_with("netplugin failed but error parsing its diagnostic message \"oops\""),
            "{e}"
        );
    }

    #[test]
    fn result_without_version_gets_the_config_version() {
        let r = PluginResult::from_stdout(br#"{"ips":[{"address":"10.0.0.2/24"}]}"#, "1.0.0").unwrap();
        assert_eq!(r.raw["cniVersion"], "1.0.0");
        assert_eq!(r.result.ips.len(), 1);
        assert_eq!(r.to_version("1.0.0").unwrap(), r.raw);
        assert!(PluginResult::from_stdout(b"", "1.0.0").is_err());
    }

    /// A throw-away plugin script; removed with its directory on drop.
    struct Script(
        PathBuf,
        #[allow(dead_code, reason = "held to remove the directory on drop")] TempDir,
    );

    impl Script {
        fn new(tag: &str, body: &str) -> Script {
            let dir = TempDir::named(&format!("rcni-exec-{tag}"));
            let path = dir.join("plugin");
            write_executable(&path, &format!("#!/bin/sh\n{body}\n"));
            Script(path, dir)
        }
    }

    fn inv(stdin: Vec<u8>, timeout: Option<Duration>) -> Invocation {
        Invocation::runtime(Command::Add, &RuntimeConf::new("c", None, "eth0"), &[], stdin)
            .with_timeout(timeout)
            .with_pass_stderr(false)
    }

    // Large stdin read slowly while both output pipes fill far past their
    // buffers: no deadlock, every byte kept, with and without pidfds and
    // with no timeout at all.
    #[test]
    fn large_stdin_stdout_and_stderr_at_once() {
        let p = Script::new(
            "big",
            "head -c 300000 /dev/zero | tr '\\0' e >&2 &\ncat\nwait\nhead -c 200000 /dev/zero",
        );
        let stdin = vec![b'i'; 1 << 20];
        for (pidfd, timeout) in [
            (true, Some(Duration::from_secs(60))),
            (false, Some(Duration::from_secs(60))),
            (true, None),
        ] {
            let out = run_process_with(&p.0, &inv(stdin.clone(), timeout), pidfd).unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout.len(), stdin.len() + 200_000, "pidfd {pidfd}");
            assert_eq!(out.stdout.get(..stdin.len()), Some(stdin.as_slice()));
            assert_eq!(out.stderr, vec![b'e'; 300_000]);
        }
    }

    // A plugin that hangs is killed at the deadline, what it printed is
    // dropped, and it is reaped.
    #[test]
    fn hung_plugin_is_killed_and_its_output_ignored() {
        let tmp = TempDir::named("rcni-exec-hang-pids");
        let pids = tmp.join("pids");
        let p = Script::new(
            "hang",
            &format!("echo $$ > '{}'\necho early\nsleep 30\necho late", pids.display()),
        );
        for pidfd in [true, false] {
            let t0 = Instant::now();
            let e = run_process_with(
                &p.0,
                &inv(b"{}".to_vec(), Some(Duration::from_millis(400))),
                pidfd,
            )
            .err()
            .unwrap();
            assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
            assert!(e.msg.contains("timed out after 400ms"), "{e}");
            assert_eq!(e.details, "the plugin and its process group were killed");
            let pid: u32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
            assert!(gone_or_zombie(pid) && !Path::new(&format!("/proc/{pid}")).exists());
        }
    }

    // The plugin exits at once but leaves a process holding its stdout: the
    // deadline still applies, that process is killed, and the error says so.
    #[test]
    fn exited_plugin_whose_child_keeps_the_output_open() {
        let tmp = TempDir::named("rcni-exec-held-pids");
        let pids = tmp.join("pids");
        let p = Script::new(
            "held",
            &format!("sleep 30 &\necho $! > '{}'\necho '{{}}'", pids.display()),
        );
        for pidfd in [true, false] {
            let e = run_process_with(&p.0, &inv(Vec::new(), Some(Duration::from_millis(400))), pidfd)
                .err()
                .unwrap();
            assert!(e.msg.contains("timed out after 400ms"), "{e}");
            assert!(e.details.contains("kept its output open"), "pidfd {pidfd}: {e}");
            let pid: u32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !gone_or_zombie(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(gone_or_zombie(pid), "the plugin's child was killed");
        }
    }

    // Exit codes and stderr come through, and a plugin that reads no stdin
    // and exits at once is fine.
    #[test]
    fn failure_keeps_status_and_stderr() {
        let p = Script::new("fail", "echo oops >&2\nexit 3");
        let out = run_process_with(
            &p.0,
            &inv(vec![b'x'; 1 << 20], Some(Duration::from_secs(60))),
            true,
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stderr, b"oops\n");
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn cni_args_join() {
        assert_eq!(join_cni_args(&[]), "");
        assert_eq!(
            join_cni_args(&[("A".into(), "1".into()), ("B".into(), "2".into())]),
            "A=1;B=2"
        );
    }

    #[test]
    fn find_rejects_paths_and_reports_dirs() {
        assert_eq!(
            find_in_path("../x", &["/bin".into()]).unwrap_err().code,
            Code::INVALID_CONFIG
        );
        let e = find_in_path(
            "rcni-no-such-plugin",
            &["/nonexistent-a".into(), "/nonexistent-b".into()],
        )
        .unwrap_err();
        assert_eq!(e.code, Code::INTERNAL);
        assert_eq!(
            e.msg,
            r#"failed to find plugin "rcni-no-such-plugin" in path [/nonexistent-a /nonexistent-b]"#
        );
        assert!(find_in_path("sh", &[]).is_err());
    }
}
