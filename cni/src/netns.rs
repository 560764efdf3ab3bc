//! Checks on `CNI_NETNS` before a plugin touches anything.
//!
//! These run in the plugin's own namespace and only stat paths: entering the
//! namespace is `cni-net`'s job.

use crate::error::{Error, Result};
use nix::sys::statfs::{NSFS_MAGIC, PROC_SUPER_MAGIC, statfs};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a netns path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetnsState {
    /// A network namespace handle (nsfs, or a `/proc/.../ns/net` link).
    Namespace,
    /// Nothing exists at the path.
    Missing,
    /// Something exists there but is not a namespace: for DEL, a namespace
    /// that is gone and left its (unmounted) file behind.
    NotNamespace,
}

/// Is `path` a network namespace? Missing is reported, not an error; a path
/// on any other file system is code 8.
pub fn inspect(path: &Path) -> Result<NetnsState> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NetnsState::Missing),
        Err(e) => {
            return Err(
                Error::invalid_netns(format!("cannot stat netns path {}", path.display()))
                    .with_details(e.to_string()),
            );
        }
    };
    let fs = statfs(path).map_err(|e| {
        Error::invalid_netns(format!("cannot statfs netns path {}", path.display()))
            .with_details(e.to_string())
    })?;
    let magic = fs.filesystem_type();
    if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
        return Err(Error::invalid_netns(format!(
            "{} is not a network namespace (unknown FS magic {:#x})",
            path.display(),
            magic.0
        )));
    }
    // Old kernels report procfs for /proc/PID/ns/net; any other procfs file
    // (say /proc/self/status) is not a namespace.
    if magic == PROC_SUPER_MAGIC {
        let is_net_link = std::fs::read_link(path)
            .map(|t| t.to_string_lossy().starts_with("net:["))
            .unwrap_or(false);
        if !is_net_link {
            return Err(Error::invalid_netns(format!(
                "{} is not a network namespace",
                path.display()
            )));
        }
    }
    let _ = meta;
    Ok(NetnsState::Namespace)
}

/// True when `CNI_NETNS_OVERRIDE` allows acting on the plugin's own netns.
pub fn override_enabled(value: Option<&str>) -> bool {
    matches!(value, Some(v) if v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Fails with code 8 when `path` is the netns this thread runs in: a
/// recycled `/proc/PID/ns/net` path must never make a plugin change the
/// host's own interfaces.
pub fn ensure_not_own(path: &Path) -> Result<()> {
    let own = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| Error::internal("cannot stat own netns").with_details(e.to_string()))?;
    let target = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if own.dev() == target.dev() && own.ino() == target.ino() {
        return Err(Error::invalid_netns(format!(
            "netns {} is the plugin's own network namespace",
            path.display()
        ))
        .with_details("set CNI_NETNS_OVERRIDE=1 if this is intended"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_reported() {
        assert_eq!(
            inspect(Path::new("/nonexistent/rcni/ns")).unwrap(),
            NetnsState::Missing
        );
    }

    #[test]
    fn regular_file_is_not_a_netns() {
        assert_eq!(inspect(Path::new("/etc/hostname")).map_err(|e| e.code.0), Err(8));
        assert_eq!(
            inspect(Path::new("/proc/self/status")).map_err(|e| e.code.0),
            Err(8)
        );
    }

    #[test]
    fn own_netns_is_refused() {
        assert_eq!(
            inspect(Path::new("/proc/self/ns/net")).unwrap(),
            NetnsState::Namespace
        );
        assert_eq!(
            ensure_not_own(Path::new("/proc/self/ns/net")).unwrap_err().code.0,
            8
        );
        assert!(override_enabled(Some("TRUE")) && override_enabled(Some("1")));
        assert!(!override_enabled(Some("0")) && !override_enabled(None));
    }
}
