//! The work done inside the container's mount and UTS namespaces (Mesos's
//! `network-cni-setup` subcommand).
//!
//! `setns(CLONE_NEWNS)` fails with EINVAL while the caller shares its fs
//! struct (root, cwd, umask) with another task, which every thread of a
//! threaded process does. Two ways around it, same work, same messages:
//!
//! - [`run_in_thread`] (the default): a short-lived thread first takes a
//!   private fs struct (`unshare(CLONE_FS)`), then joins the container's
//!   namespaces, does the work and exits, so its namespaces die with it and
//!   no other thread is affected. It costs a thread spawn instead of a
//!   process exec (the exec was most of the isolator's own time per attach,
//!   ~1.2 ms of ~2 ms on the bench machine).
//! - [`run_helper`]: the single-threaded helper binary `cni-isolator-setup`
//!   with [`SetupFlags`] as arguments, which calls [`execute`]; used when
//!   the kernel refuses the thread (see [`InThreadError::Unsupported`]).
//!
//! What the work does, in order: join the mount namespace of `--pid`,
//! mark `/` as a recursive slave (so nothing mounted here leaks back to the
//! host), bind the hosts, hostname and resolv.conf sources over `/etc/...`
//! (`--bind-host-files`) and/or `<rootfs>/etc/...` as plain binds like
//! Mesos's (read-only with `--bind-readonly`), then with `--hostname`
//! join the UTS namespace and set the hostname. `lo` is brought up by the
//! library over netlink, not here.

use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The helper's command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetupFlags {
    /// The container's process, whose namespaces are joined.
    pub pid: i32,
    /// The hostname to set (none: leave the UTS namespace alone).
    pub hostname: Option<String>,
    /// The container's image root.
    pub rootfs: Option<PathBuf>,
    /// Source of `/etc/hosts`.
    pub etc_hosts_path: Option<PathBuf>,
    /// Source of `/etc/hostname`.
    pub etc_hostname_path: Option<PathBuf>,
    /// Source of `/etc/resolv.conf`.
    pub etc_resolv_conf: Option<PathBuf>,
    /// Bind over the paths the container sees from the host's tree.
    pub bind_host_files: bool,
    /// Bind read-only (host network with an image).
    pub bind_readonly: bool,
}

impl SetupFlags {
    /// The arguments for the helper.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![format!("--pid={}", self.pid)];
        if let Some(h) = &self.hostname {
            args.push(format!("--hostname={h}"));
        }
        let mut path = |name: &str, p: &Option<PathBuf>| {
            if let Some(p) = p {
                args.push(format!("--{name}={}", p.display()));
            }
        };
        path("rootfs", &self.rootfs);
        path("etc-hosts-path", &self.etc_hosts_path);
        path("etc-hostname-path", &self.etc_hostname_path);
        path("etc-resolv-conf", &self.etc_resolv_conf);
        if self.bind_host_files {
            args.push("--bind-host-files".into());
        }
        if self.bind_readonly {
            args.push("--bind-readonly".into());
        }
        args
    }

    /// Parses the helper's arguments (without the program name).
    pub fn from_args(args: &[String]) -> std::result::Result<SetupFlags, String> {
        let mut flags = SetupFlags::default();
        let mut pid = None;
        for arg in args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg.as_str(), None),
            };
            let need = || {
                value
                    .map(str::to_string)
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            match key {
                "--pid" => pid = Some(need()?.parse::<i32>().map_err(|e| format!("bad --pid: {e}"))?),
                "--hostname" => flags.hostname = Some(need()?),
                "--rootfs" => flags.rootfs = Some(need()?.into()),
                "--etc-hosts-path" => flags.etc_hosts_path = Some(need()?.into()),
                "--etc-hostname-path" => flags.etc_hostname_path = Some(need()?.into()),
                "--etc-resolv-conf" => flags.etc_resolv_conf = Some(need()?.into()),
                "--bind-host-files" => flags.bind_host_files = value.is_none_or(|v| v == "true"),
                "--bind-readonly" => flags.bind_readonly = value.is_none_or(|v| v == "true"),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        flags.pid = pid.filter(|p| *p > 0).ok_or("--pid is required")?;
        Ok(flags)
    }
}

/// How long the helper may take before it is killed (it does a handful of
/// syscalls; a hang means a wedged mount).
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the helper at `helper` with `flags`; its stderr becomes the error.
pub fn run_helper(helper: &Path, flags: &SetupFlags) -> Result<()> {
    let mut child = Command::new(helper)
        .args(flags.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run the setup helper", helper, e))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("wait for the setup helper", helper, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!("{} ({status})", stderr.trim_end())))
    }
}

/// Why [`run_in_thread`] did not do the work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InThreadError {
    /// The kernel refused a thread its own fs struct or the mount namespace
    /// (EINVAL from `unshare(CLONE_FS)` or `setns(CLONE_NEWNS)`; the thread
    /// could not start): nothing was changed, the helper process may try.
    Unsupported(String),
    /// The work failed; the message is what the helper would print.
    Failed(String),
}

/// Does the work of [`execute`] in a new thread of this process (see the
/// module doc) and waits for it. The thread exits when done, taking the
/// container's namespaces with it.
pub fn run_in_thread(flags: &SetupFlags) -> std::result::Result<(), InThreadError> {
    let flags = flags.clone();
    let worker = std::thread::Builder::new()
        .name("rcni-setup".into())
        .spawn(move || run_on_this_thread(&flags))
        .map_err(|e| InThreadError::Unsupported(format!("cannot start the setup thread: {e}")))?;
    worker
        .join()
        .unwrap_or_else(|_| Err(InThreadError::Failed("the setup thread panicked".into())))
}

/// The work of [`run_in_thread`] on the calling thread, which must be a
/// short-lived thread of its own (the asynchronous core's namespace
/// threads): it gets a private fs struct and ends up in the container's
/// mount and UTS namespaces, so it must exit afterwards.
pub fn run_on_this_thread(flags: &SetupFlags) -> std::result::Result<(), InThreadError> {
    nix::sched::unshare(CloneFlags::CLONE_FS)
        .map_err(|e| InThreadError::Unsupported(format!("cannot unshare the fs struct of a thread: {e}")))?;
    work(flags).map_err(|f| match f {
        Failure::MountNsRefused(msg) => InThreadError::Unsupported(msg),
        Failure::Other(msg) => InThreadError::Failed(msg),
    })
}

/// The helper's work (see the module doc). Must run single-threaded, or on
/// a thread with a fs struct of its own.
pub fn execute(flags: &SetupFlags) -> std::result::Result<(), String> {
    work(flags).map_err(|f| match f {
        Failure::MountNsRefused(msg) | Failure::Other(msg) => msg,
    })
}

/// A failed [`work`]: `MountNsRefused` is `setns(CLONE_NEWNS)` failing with
/// EINVAL, before anything was changed.
enum Failure {
    MountNsRefused(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure::Other(msg)
    }
}

fn work(flags: &SetupFlags) -> std::result::Result<(), Failure> {
    let open_ns = |kind: &str| {
        let p = format!("/proc/{}/ns/{kind}", flags.pid);
        std::fs::File::open(&p).map_err(|e| format!("cannot open {p}: {e}"))
    };
    let mnt = open_ns("mnt")?;
    let uts = match flags.hostname {
        Some(_) => Some(open_ns("uts")?),
        None => None,
    };
    setns(&mnt, CloneFlags::CLONE_NEWNS).map_err(|e| {
        let msg = format!("cannot enter the mount namespace: {e}");
        if e == Errno::EINVAL {
            Failure::MountNsRefused(msg)
        } else {
            Failure::Other(msg)
        }
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("cannot mark '/' as a recursive slave mount: {e}"))?;

    let files = [
        (flags.etc_hosts_path.as_deref(), "etc/hosts", true),
        (flags.etc_hostname_path.as_deref(), "etc/hostname", true),
        (flags.etc_resolv_conf.as_deref(), "etc/resolv.conf", false),
    ];
    for (source, rel, may_create_on_host) in files {
        let Some(source) = source else { continue };
        if flags.bind_host_files {
            let target = Path::new("/").join(rel);
            if !target.exists() {
                if !may_create_on_host {
                    return Err(format!("{} does not exist", target.display()).into());
                }
                // MESOS-6052: some distributions have no /etc/hosts or /etc/hostname.
                create_file(&target)?;
            }
            bind_file(source, &target, flags.bind_readonly)?;
        }
        if let Some(rootfs) = &flags.rootfs {
            let target = rootfs.join(rel);
            if target
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                std::fs::remove_file(&target)
                    .map_err(|e| format!("cannot remove {}: {e}", target.display()))?;
            }
            if !target.exists() {
                create_file(&target)?;
            }
            bind_file(source, &target, flags.bind_readonly)?;
        }
    }

    if let (Some(hostname), Some(uts)) = (&flags.hostname, uts) {
        setns(&uts, CloneFlags::CLONE_NEWUTS).map_err(|e| format!("cannot enter the UTS namespace: {e}"))?;
        nix::unistd::sethostname(hostname).map_err(|e| format!("cannot set the hostname: {e}"))?;
    }
    Ok(())
}

fn create_file(path: &Path) -> std::result::Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// A plain bind mount, as Mesos's: its `mount(2)` passes NOEXEC, NODEV and
/// NOSUID with MS_BIND, which the kernel ignores for a bind, so the file keeps
/// the options of the mount it comes from; the built-in isolator's binds show
/// no extra flags, and neither do ours. Read-only (host files for a container
/// on the host network) is applied by a remount, which a bind needs for it to
/// take effect (Mesos asks for it the same ignored way); where the kernel
/// requires the locked flags of the underlying mount to be repeated (a user
/// namespace), the remount is retried with NOSUID, NODEV and NOEXEC.
fn bind_file(source: &Path, target: &Path, readonly: bool) -> std::result::Result<(), String> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        format!(
            "cannot bind-mount {} to {}: {e}",
            source.display(),
            target.display()
        )
    })?;
    if !readonly {
        return Ok(());
    }
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let remount = |flags| mount(None::<&str>, target, None::<&str>, flags, None::<&str>);
    match remount(ro) {
        Err(Errno::EPERM) => remount(ro | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_NOSUID),
        other => other,
    }
    .map_err(|e| format!("cannot remount {} read-only: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let f = SetupFlags {
            pid: 42,
            hostname: Some("h".into()),
            rootfs: None,
            etc_hosts_path: Some("/r/c/hosts".into()),
            etc_hostname_path: Some("/r/c/hostname".into()),
            etc_resolv_conf: Some("/etc/resolv.conf".into()),
            bind_host_files: true,
            bind_readonly: false,
        };
        assert_eq!(SetupFlags::from_args(&f.to_args()).unwrap(), f);
        assert!(SetupFlags::from_args(&[]).is_err());
        assert!(SetupFlags::from_args(&["--pid=1".into(), "--bogus".into()]).is_err());
    }
}
