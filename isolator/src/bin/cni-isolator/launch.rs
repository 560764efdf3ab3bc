//! Starting the container's process in new namespaces, held until the
//! isolator has attached it (what Mesos's launcher does for `isolate`).
//!
//! The child is forked with `unshare(CLONE_NEWNS|NEWNET|NEWUTS)` in
//! `pre_exec` (the child of a fork is single-threaded, so a new mount
//! namespace is allowed there) and execs this binary again in its hidden
//! hold stage (`cni-isolator __hold FD -- CMD...`), which blocks reading a
//! pipe. (It cannot block in `pre_exec` itself: `Command::spawn` waits for
//! the exec.) The parent isolates it by pid and writes one byte; the hold
//! stage then execs CMD. If the parent dies first, the pipe closes and the
//! command never runs.

use cni_isolator::LaunchInfo;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// The hidden first argument of the hold stage.
pub const HOLD_ARG: &str = "__hold";

/// A started, still waiting container process.
pub struct Held {
    /// The process.
    pub child: Child,
    release: Option<OwnedFd>,
}

impl Held {
    /// Lets the process exec its command.
    pub fn release(&mut self) -> std::io::Result<()> {
        if let Some(fd) = self.release.take() {
            let mut f = std::fs::File::from(fd);
            std::io::Write::write_all(&mut f, b"g")?;
        }
        Ok(())
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks `argv` into the namespaces `launch` asks for, with its
/// environment added, and holds it before it runs.
pub fn spawn_held(argv: &[String], launch: &LaunchInfo) -> std::io::Result<Held> {
    let (read_end, write_end) = pipe()?;
    let mut flags = 0;
    for ns in &launch.clone_namespaces {
        flags |= ns.clone_flag();
    }
    let rfd = read_end.as_raw_fd();
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(HOLD_ARG).arg(rfd.to_string()).arg("--").args(argv);
    for (k, v) in &launch.environment {
        cmd.env(k, v);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (sigprocmask, fcntl, unshare) on values copied in.
    unsafe {
        cmd.pre_exec(move || {
            // The parent blocks the signals it forwards (`run`); the container must get
            // them, so it starts with nothing blocked.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Keep the read end open across exec for the hold stage.
            if libc::fcntl(rfd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if flags != 0 && libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(read_end);
    Ok(Held {
        child,
        release: Some(write_end),
    })
}

/// The hold stage: `args` is `FD -- CMD ARGS...`. Waits for the release
/// byte, then execs CMD (returns only on failure).
pub fn hold_and_exec(args: &[String]) -> i32 {
    let (Some(fd), Some("--")) = (
        args.first().and_then(|f| f.parse::<i32>().ok()),
        args.get(1).map(String::as_str),
    ) else {
        eprintln!("cni-isolator: bad hold-stage arguments");
        return 125;
    };
    let Some(program) = args.get(2) else {
        eprintln!("cni-isolator: no command to run");
        return 125;
    };
    // SAFETY: the parent passed us this descriptor number, open and unused
    // by anything else in this freshly exec'd process.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut byte = [0u8; 1];
    match std::io::Read::read(&mut pipe, &mut byte) {
        Ok(1) => {}
        _ => return 125, // the isolator went away before attaching us
    }
    drop(pipe);
    let err = Command::new(program).args(&args[3..]).exec();
    eprintln!("cni-isolator: cannot run {program}: {err}");
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}
