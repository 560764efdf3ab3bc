//! The crate's error type.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error the kernel returned for a netlink request (an `NLMSG_ERROR` with a negative code, or
/// an `NLMSG_DONE` ending a dump with one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The errno the kernel answered with (`ENODEV`, `EEXIST`, ...).
    pub errno: Errno,
    /// The extended-ack message (`NLMSGERR_ATTR_MSG`), when the kernel sent one.
    pub message: Option<String>,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.errno.desc(), self.errno)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// Everything that can go wrong in `cni-net`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused a netlink request. Test the errno with [`Error::errno`].
    #[error("the kernel refused the netlink request: {0}")]
    Kernel(KernelError),

    /// Opening or configuring the netlink socket failed.
    #[error("cannot open a netlink route socket")]
    Socket(#[source] io::Error),

    /// Sending to or receiving from the netlink socket failed.
    #[error("netlink socket I/O failed")]
    Io(#[source] io::Error),

    /// A reply from the kernel could not be parsed.
    #[error("cannot decode a netlink message from the kernel")]
    Decode(#[source] netlink_packet_core::DecodeError),

    /// The kernel answered with something this crate did not expect.
    #[error("unexpected netlink reply: {0}")]
    UnexpectedReply(String),

    /// A dump was interrupted by concurrent changes (`NLM_F_DUMP_INTR`) every time it was tried.
    #[error("netlink dump was interrupted by concurrent changes {0} times in a row")]
    DumpInterrupted(u32),

    /// A network namespace file could not be opened or inspected.
    #[error("cannot open network namespace {path}")]
    NetnsOpen {
        /// The path given.
        path: PathBuf,
        /// What the open returned.
        #[source]
        source: io::Error,
    },

    /// `setns(2)` into a network namespace failed.
    #[error("cannot switch the thread to network namespace {path}")]
    Setns {
        /// The namespace the thread was switching to.
        path: PathBuf,
        /// The errno of `setns`.
        #[source]
        source: Errno,
    },

    /// A link looked up by name or index does not exist.
    #[error("link {0} not found")]
    LinkNotFound(String),

    /// A link exists with the wanted name but is of another kind.
    #[error("link {name} already exists but is a {found}, not a {expected}")]
    LinkKindMismatch {
        /// The link name.
        name: String,
        /// The kind that was wanted.
        expected: String,
        /// The kind the existing link has.
        found: String,
    },

    /// A sysctl could not be read or written.
    #[error("cannot access sysctl {path}")]
    Sysctl {
        /// The file under `/proc/sys`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// An argument was rejected before anything was sent to the kernel.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The errno of a kernel (netlink) error, `setns` error or I/O error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel(k) => Some(k.errno),
            Error::Setns { source, .. } => Some(*source),
            Error::Socket(e) | Error::Io(e) => e.raw_os_error().map(Errno::from_raw),
            Error::NetnsOpen { source, .. } | Error::Sysctl { source, .. } => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }

    /// True when the kernel said the object does not exist (`ENODEV`, `ENOENT`, `ESRCH`,
    /// `EADDRNOTAVAIL`) or a link was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::LinkNotFound(_))
            || matches!(
                self.errno(),
                Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
            )
    }

    /// True when the kernel said the object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Kernel(k) if k.errno == Errno::EEXIST)
    }

    pub(crate) fn kernel(errno: i32, message: Option<String>) -> Self {
        Error::Kernel(KernelError {
            errno: Errno::from_raw(errno),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_shows_errno_name_and_ext_ack() {
        let e = Error::kernel(libc::EEXIST, Some("Link already exists".into()));
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        let text = e.to_string();
        assert!(text.contains("EEXIST"), "{text}");
        assert!(text.ends_with(": Link already exists"), "{text}");
    }

    #[test]
    fn not_found_covers_missing_link_and_route() {
        assert!(Error::kernel(libc::ENODEV, None).is_not_found());
        assert!(Error::kernel(libc::ESRCH, None).is_not_found());
        assert!(Error::LinkNotFound("x".into()).is_not_found());
        assert!(!Error::kernel(libc::EPERM, None).is_not_found());
    }
}
