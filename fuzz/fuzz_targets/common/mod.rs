//! Helpers shared by the targets that read files: a scratch directory per
//! process (on tmpfs when there is one, so an iteration costs microseconds),
//! removed when the fuzzer exits, and the splitting of an input into fields.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
static AT_EXIT: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// `/dev/shm/rcni-fuzz-<tag>-<pid>` (or under the temp dir), created empty;
/// those of earlier runs that crashed are removed.
pub fn scratch(tag: &str) -> &'static Path {
    SCRATCH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // What a crashed run of this target left (its process is gone).
        let prefix = format!("rcni-fuzz-{tag}-");
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the scratch directory");
        extern "C" fn remove_scratch() {
            if let Some(dir) = SCRATCH.get() {
                for mount in AT_EXIT.get().into_iter().flatten() {
                    if let Ok(c) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
                        // SAFETY: a valid C string; a failure (not mounted) is harmless.
                        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                    }
                }
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

/// Mount points to detach before the scratch directory is removed at exit
/// (set once).
pub fn unmount_at_exit(mounts: Vec<PathBuf>) {
    let _ = AT_EXIT.set(mounts);
}

/// Empties `dir` (creating it when missing), keeping the directory itself
/// (it may be a mount point).
pub fn empty_dir(dir: &Path) {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p).expect("cannot empty the scratch directory");
                } else {
                    std::fs::remove_file(&p).expect("cannot empty the scratch directory");
                }
            }
        }
        Err(_) => std::fs::create_dir_all(dir).expect("cannot create a scratch directory"),
    }
}

/// The input split at NUL bytes (C strings and JSON never hold one, so a
/// NUL is a natural separator between the fields of one input).
pub fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0).collect()
}

/// `name` when it can be one directory entry's name (any bytes but `/` and
/// NUL, not `.` or `..`, at most 255 bytes), else `default`.
pub fn component<'a>(name: Option<&'a [u8]>, default: &'a str) -> &'a OsStr {
    match name {
        Some(n) if !n.is_empty() && n != b"." && n != b".." && !n.contains(&b'/') && n.len() <= 255 => {
            OsStr::from_bytes(n)
        }
        _ => OsStr::new(default),
    }
}
