//! Validation of the identifiers a runtime passes to a plugin.
//!
//! The rules are the Go skel's, so a runtime sees the same error codes from
//! our plugins as from the reference ones.

use crate::error::{Code, Error, Result};

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the pattern CNI uses for network names
/// and container IDs.
fn is_cni_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The longest container ID accepted. Runtimes use 64 hex digits (containerd, CRI-O,
/// Podman) or a 36-byte UUID (Mesos); libcni names its cache file after the ID, which must
/// fit one path component. Go's skel has no bound: rcni is stricter here.
pub const MAX_CONTAINER_ID_LEN: usize = 1024;

/// A container ID: non-empty (code 3), then letters, digits, `_`, `.`, `-`, at most
/// [`MAX_CONTAINER_ID_LEN`] bytes (code 4).
pub fn container_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::new(Code::UNKNOWN_CONTAINER, "missing containerID"));
    }
    if !is_cni_identifier(id) {
        return Err(Error::invalid_environment(format!(
            "invalid characters in containerID: {id:?}"
        )));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(Error::invalid_environment(format!(
            "containerID is {} bytes long, more than {MAX_CONTAINER_ID_LEN}",
            id.len()
        )));
    }
    Ok(())
}

/// An interface name: 1-15 bytes, not `.` or `..`, no `/`, `:` or white space (code 4).
pub fn interface_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_environment(format!(
            "interface name {name:?} {why}"
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 15 {
        return bad("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("is not allowed");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return bad("contains '/', ':' or white space");
    }
    Ok(())
}

/// The longest network name: one path component (`NAME_MAX`), since host-local keeps a
/// directory of that name. Go has no bound and fails later, in host-local.
pub const MAX_NETWORK_NAME_LEN: usize = 255;

/// A network name: a CNI identifier of at most [`MAX_NETWORK_NAME_LEN`] bytes (code 7).
pub fn network_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_config("missing network name"));
    }
    // host-local and the runtimes' caches name a directory or file after it.
    if name.len() > MAX_NETWORK_NAME_LEN {
        return Err(Error::invalid_config(format!(
            "network name is {} bytes long, more than {MAX_NETWORK_NAME_LEN}",
            name.len()
        )));
    }
    if !is_cni_identifier(name) {
        return Err(Error::invalid_config(format!(
            "invalid characters in network name: {name:?}"
        )));
    }
    Ok(())
}

/// A plugin `type`: a bare binary name, never a path (code 7).
pub fn plugin_type(t: &str) -> Result<()> {
    if t.is_empty() {
        return Err(Error::invalid_config("missing plugin type"));
    }
    if t.contains('/') || t.contains('\\') || t == "." || t == ".." || t.contains('\0') {
        return Err(Error::invalid_config(format!(
            "plugin type {t:?} must be a binary name, not a path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        assert!(container_id("abc-1.2_3").is_ok());
        assert_eq!(container_id("").unwrap_err().code.0, 3);
        assert_eq!(container_id("a b").unwrap_err().code.0, 4);
        assert_eq!(container_id("-a").unwrap_err().code.0, 4);
        assert_eq!(container_id("a/b").unwrap_err().code.0, 4);
        assert!(container_id(&"a".repeat(MAX_CONTAINER_ID_LEN)).is_ok());
        assert_eq!(
            container_id(&"a".repeat(MAX_CONTAINER_ID_LEN + 1))
                .unwrap_err()
                .code
                .0,
            4
        );
    }

    #[test]
    fn interface_names() {
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("a234567890abcde").is_ok());
        for bad in ["", ".", "..", "a234567890abcdef", "a/b", "a:b", "a b", "a\tb"] {
            assert_eq!(interface_name(bad).unwrap_err().code.0, 4, "{bad:?}");
        }
    }

    #[test]
    fn network_names() {
        assert!(network_name("my-net.1_x").is_ok());
        for bad in ["", "_a", "a/b", "..", "a b"] {
            assert_eq!(network_name(bad).unwrap_err().code.0, 7, "{bad:?}");
        }
    }

    #[test]
    fn plugin_types() {
        assert!(plugin_type("host-local").is_ok());
        for bad in ["", "/bin/sh", "../x", "a\\b", ".."] {
            assert_eq!(plugin_type(bad).unwrap_err().code.0, 7, "{bad:?}");
        }
    }
}
