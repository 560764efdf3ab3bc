//! Running plugin binaries from the asynchronous core: one child process per
//! exec (`tokio::process`), awaited rather than waited for on a thread, with
//! the `plugin_timeout` deadline and a cancellation token.
//!
//! [`ProcessPlugins`] keeps what `cni::runtime::ProcessExec` does, so a
//! plugin cannot tell the two apart: the config on stdin, the environment
//! of [`Invocation::environment`] (`CNI_*` from the invocation, no stale
//! ones), its own process group, ETXTBSY retried as libcni does, the result
//! or the error object read the same way ([`cni::runtime::plugin_error`]),
//! and on the deadline the plugin and its process group killed and reported
//! with the same message (`plugin <path> timed out after <t>`). What is new
//! is the token: when it is cancelled (a `cleanup` of the container, the
//! handle destroyed) the plugin's group is killed at once and the exec
//! fails with `plugin <path> was cancelled`.
//!
//! A conflist runs through `cni::runtime`'s chaining, which is synchronous:
//! it runs on the blocking pool, and [`BlockingBridge`] lets each of its
//! plugin execs be the same awaited child process (deadline and token
//! included). A caller's own `cni::runtime::Exec` (a fake in tests, a timing
//! wrapper) is adapted by [`SyncExec`], which runs it on the blocking pool
//! and cannot cancel it.

use cni::runtime::exec::{TEXT_FILE_BUSY_PAUSE, TEXT_FILE_BUSY_RETRIES, plugin_error};
use cni::runtime::{EnvBase, Exec, Invocation};
use futures_util::future::BoxFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// The token a call's plugin execs stop on (re-exported: it is in
/// [`PluginExec::exec`]'s signature).
pub use tokio_util::sync::CancellationToken;

/// Finds and runs plugins for the asynchronous core.
pub trait PluginExec: Send + Sync {
    /// The binary for plugin `plugin_type` in `dirs` (see [`cni::runtime::find_in_path`]).
    fn find_in_path(&self, plugin_type: &str, dirs: &[PathBuf]) -> cni::Result<PathBuf> {
        cni::runtime::find_in_path(plugin_type, dirs)
    }

    /// Runs the plugin; its stdout when it exits 0, else its error. Stops
    /// (killing the plugin) when `cancel` is cancelled.
    fn exec<'a>(
        &'a self,
        plugin: &'a Path,
        inv: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, cni::Result<Vec<u8>>>;

    /// A synchronous `Exec` to use as it is on a blocking-pool thread (a
    /// conflist's chain), when this one is only an adapter of it.
    fn as_sync(&self) -> Option<Arc<dyn Exec>> {
        None
    }
}

/// Plugins as child processes of this process (the real thing).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessPlugins;

impl PluginExec for ProcessPlugins {
    fn exec<'a>(
        &'a self,
        plugin: &'a Path,
        inv: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, cni::Result<Vec<u8>>> {
        Box::pin(run_plugin(plugin, inv, cancel))
    }
}

/// A synchronous [`Exec`] (a test fake, a timing wrapper) run on the
/// blocking pool. Its execs cannot be cancelled: a cancelled call waits for
/// them to end.
pub struct SyncExec(pub Arc<dyn Exec>);

impl PluginExec for SyncExec {
    fn find_in_path(&self, plugin_type: &str, dirs: &[PathBuf]) -> cni::Result<PathBuf> {
        self.0.find_in_path(plugin_type, dirs)
    }

    fn exec<'a>(
        &'a self,
        plugin: &'a Path,
        inv: &'a Invocation,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, cni::Result<Vec<u8>>> {
        let (exec, plugin, inv) = (self.0.clone(), plugin.to_path_buf(), inv.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || exec.exec_plugin(&plugin, &inv))
                .await
                .unwrap_or_else(|e| Err(cni::Error::internal(format!("the plugin exec task failed: {e}"))))
        })
    }

    fn as_sync(&self) -> Option<Arc<dyn Exec>> {
        Some(self.0.clone())
    }
}

/// The synchronous `Exec` that `cni::runtime`'s conflist chaining calls on
/// a blocking-pool thread: each exec is the awaited child process of
/// [`PluginExec::exec`], driven by the runtime's I/O (the blocking thread
/// only waits), so the deadline and the token apply as to a single config.
pub struct BlockingBridge {
    /// The exec to run.
    pub exec: Arc<dyn PluginExec>,
    /// The runtime that owns the children.
    pub runtime: tokio::runtime::Handle,
    /// The call's token.
    pub cancel: CancellationToken,
}

impl Exec for BlockingBridge {
    fn find_in_path(&self, plugin_type: &str, dirs: &[PathBuf]) -> cni::Result<PathBuf> {
        self.exec.find_in_path(plugin_type, dirs)
    }

    fn exec_plugin(&self, plugin: &Path, inv: &Invocation) -> cni::Result<Vec<u8>> {
        // Called on a blocking-pool thread (see `attach.rs`), where
        // `Handle::block_on` is allowed.
        self.runtime.block_on(self.exec.exec(plugin, inv, &self.cancel))
    }
}

fn io_err(plugin: &Path, what: &str) -> cni::Error {
    cni::Error::internal(format!("cannot {what} plugin {}", plugin.display()))
}

/// The message `cni::runtime` gives a timeout.
fn timed_out(plugin: &Path, timeout: std::time::Duration) -> cni::Error {
    cni::Error::internal(format!("plugin {} timed out after {timeout:?}", plugin.display()))
        .with_details("the plugin and its process group were killed")
}

/// The error of an exec whose token was cancelled.
pub fn cancelled(plugin: &Path) -> cni::Error {
    cni::Error::internal(format!("plugin {} was cancelled", plugin.display()))
        .with_details("the plugin and its process group were killed")
}

/// Kills the plugin's process group when dropped armed: a call's future
/// dropped mid-exec (the runtime shutting down) leaves no plugin running.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn spawn(
    plugin: &Path,
    inv: &Invocation,
    cancel: &CancellationToken,
) -> cni::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        let mut cmd = tokio::process::Command::new(plugin);
        cmd.env_clear()
            .envs(inv.environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if inv.base == EnvBase::Delegated {
            // As cni::runtime: a delegated plugin dies with the plugin that runs it.
            cni::runtime::dies_with_parent(cmd.as_std_mut());
        }
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if is_text_file_busy(&e) && attempt < TEXT_FILE_BUSY_RETRIES => {
                attempt += 1;
                tokio::select! {
                    () = tokio::time::sleep(TEXT_FILE_BUSY_PAUSE) => {}
                    () = cancel.cancelled() => return Err(cancelled(plugin)),
                }
            }
            Err(e) => {
                return Err(
                    cni::Error::internal(format!("cannot execute plugin {}", plugin.display()))
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

/// How an exec ended.
enum Outcome {
    Finished(std::io::Result<std::process::ExitStatus>),
    Expired,
    Cancelled,
}

/// Runs `plugin` for `inv` as a child process (see the module doc). The
/// output is complete when both pipes reach EOF and the plugin has exited;
/// a process the plugin left holding its pipes counts against the deadline
/// and is killed with the group, as in `cni::runtime`.
pub async fn run_plugin(plugin: &Path, inv: &Invocation, cancel: &CancellationToken) -> cni::Result<Vec<u8>> {
    if cancel.is_cancelled() {
        return Err(cancelled(plugin));
    }
    let deadline = inv.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut child = spawn(plugin, inv, cancel).await?;
    let mut group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));
    let stdin = child.stdin.take();
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        group.kill();
        let _ = child.wait().await;
        return Err(io_err(plugin, "capture the output of"));
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = {
        let feed = async {
            if let Some(mut pipe) = stdin {
                // A plugin may exit without reading stdin (EPIPE): no error of ours.
                let _ = pipe.write_all(&inv.stdin).await;
            }
        };
        let run = async {
            // A read error ends that output, as in cni::runtime.
            let _ = tokio::join!(feed, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            child.wait().await
        };
        let expire = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = run => Outcome::Finished(status),
            () = expire => Outcome::Expired,
            () = cancel.cancelled() => Outcome::Cancelled,
        }
    };
    let status = match outcome {
        Outcome::Finished(Ok(status)) => {
            // Reaped: the pid may be reused, never signal it again.
            group.0 = None;
            status
        }
        Outcome::Finished(Err(e)) => {
            group.kill();
            let _ = child.wait().await;
            return Err(io_err(plugin, "wait for").with_details(e.to_string()));
        }
        Outcome::Expired => {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            group.kill();
            let _ = child.start_kill();
            let _ = child.wait().await;
            let timeout = inv.timeout.unwrap_or_default();
            return Err(if exited {
                timed_out(plugin, timeout).with_details(
                    "the plugin exited but processes it started kept its output open; they were killed",
                )
            } else {
                timed_out(plugin, timeout)
            });
        }
        Outcome::Cancelled => {
            group.kill();
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(cancelled(plugin));
        }
    };
    if inv.pass_stderr && !err.is_empty() {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(&err);
        let _ = e.flush();
    }
    if status.success() {
        Ok(out)
    } else {
        Err(plugin_error(status, &out, &err))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cni::plugin::Command;
    use cni::runtime::RuntimeConf;
    use std::time::{Duration, Instant};

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        rcni_test_support::write_executable(&p, &format!("#!/bin/sh\n{body}\n"));
        p
    }

    fn inv(stdin: &str, timeout: Option<Duration>) -> Invocation {
        let rt = RuntimeConf::new("c1", None, "eth0");
        Invocation::runtime(Command::Add, &rt, &[], stdin.as_bytes().to_vec())
            .with_timeout(timeout)
            .with_pass_stderr(false)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn dir() -> rcni_test_support::TempDir {
        rcni_test_support::TempDir::named("rcni-exec")
    }

    #[test]
    fn stdin_env_and_stdout_as_cni_runtime() {
        let d = dir();
        let p = script(
            d.path(),
            "echo",
            r#"cat; printf ' %s %s' "$CNI_COMMAND" "$CNI_IFNAME""#,
        );
        let out = runtime()
            .block_on(run_plugin(&p, &inv("{\"x\":1}", None), &CancellationToken::new()))
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"x\":1} ADD eth0");
    }

    #[test]
    fn a_failing_plugin_is_its_error_object() {
        let d = dir();
        let p = script(
            d.path(),
            "fail",
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config"}'; exit 1"#,
        );
        let e = runtime()
            .block_on(run_plugin(&p, &inv("{}", None), &CancellationToken::new()))
            .unwrap_err();
        assert_eq!(e.code, cni::Code(7));
        assert_eq!(e.msg, "bad config");
    }

    #[test]
    fn a_hung_plugin_times_out_with_cni_runtimes_message() {
        let d = dir();
        let p = script(d.path(), "hang", "sleep 100");
        let t0 = Instant::now();
        let e = runtime()
            .block_on(run_plugin(
                &p,
                &inv("{}", Some(Duration::from_millis(200))),
                &CancellationToken::new(),
            ))
            .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(e.msg.contains("timed out after 200ms"), "{e:?}");
        assert_eq!(e.details, "the plugin and its process group were killed");
    }

    #[test]
    fn a_cancelled_exec_kills_the_plugin_group() {
        let d = dir();
        let pidfile = d.path().join("pid");
        let p = script(
            d.path(),
            "hang",
            &format!("sleep 100 & echo $! > {}; wait", pidfile.display()),
        );
        let rt = runtime();
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let pf = pidfile.clone();
        let e = rt
            .block_on(async move {
                tokio::spawn(async move {
                    while !pf.exists() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c2.cancel();
                });
                run_plugin(&p, &inv("{}", None), &cancel).await
            })
            .unwrap_err();
        assert!(e.msg.contains("was cancelled"), "{e:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild went with the group (a zombie at most, until init reaps it).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                break;
            }
            assert!(Instant::now() < deadline, "sleep {pid} still running: {state}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
