//! Running commands, executable files, processes, root.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

/// Runs a command and returns its stdout; panics with its stderr when it
/// cannot run or fails.
#[track_caller]
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a file with mode 0755 and closes it (so it can be exec'd at once:
/// a file still open for writing would fail with ETXTBSY).
pub fn write_executable(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

/// Is the process gone (or a zombie nobody of ours will reap)?
pub fn process_gone_or_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Panics, naming `what`, unless this process runs as root. Root-only tests
/// are `#[ignore = "needs root"]` and do not check for root themselves (a run
/// as another user lists them as ignored); a fixture that needs root calls
/// this, so a run of the ignored tests as another user says why they fail.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root: this test is #[ignore = \"needs root\"]; run it as root \
         (scripts/test.sh runs `cargo nextest run --run-ignored all`)"
    );
}
