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

    /// The CNI error code for this error: 11 (try again later) for what a retry can fix (a
    /// dump interrupted by concurrent changes again and again; `EAGAIN`, `EINTR`, `ERESTART`
    /// or `ENOBUFS` from the kernel, which also stands for a wait that timed out), 999
    /// otherwise, Go's code for plain errors.
    pub fn cni_code(&self) -> cni::Code {
        const ERESTART: i32 = 85;
        let transient = matches!(self, Error::DumpInterrupted(_))
            || matches!(
                self.errno().map(|e| e as i32),
                Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS | ERESTART)
            );
        if transient {
            cni::Code::TRY_AGAIN_LATER
        } else {
            cni::Code::INTERNAL
        }
    }

    pub(crate) fn kernel(errno: i32, message: Option<String>) -> Self {
        Error::Kernel(KernelError {
            errno: Errno::from_raw(errno),
            message,
        })
    }
}

/// The one conversion of a `cni-net` error into a CNI error, used by every plugin: the code
/// says whether a retry can help ([`Error::cni_code`]), the text keeps the chain of causes,
/// and the error itself stays the source, so a caller can still test its kind
/// (`e.find_source::<cni_net::Error>()`, then [`Error::is_not_found`] or [`Error::errno`]).
impl From<Error> for cni::Error {
    fn from(e: Error) -> Self {
        let code = e.cni_code();
        let mut out = cni::Error::caused_by(code, e.to_string(), e);
        // The message is the error's own text: details keep only its causes, not a copy.
        if let Some(causes) = out.details.strip_prefix(out.msg.as_str()) {
            out.details = causes.trim_start_matches(": ").to_string();
        }
        out
    }
}

/// [`Context::context`] on the results of `cni-net`.
pub trait Context<T> {
    /// The error as a CNI error (code by [`Error::cni_code`], source kept) whose message
    /// says what failed.
    fn context(self, msg: impl FnOnce() -> String) -> cni::Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, msg: impl FnOnce() -> String) -> cni::Result<T> {
        self.map_err(|e| {
            let code = e.cni_code();
            cni::Error::caused_by(code, msg(), e)
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
    fn conversion_keeps_the_kind_and_picks_the_code() {
        let gone: cni::Error = Error::kernel(libc::ENODEV, Some("no such device".into())).into();
        assert_eq!(gone.code, cni::Code::INTERNAL);
        assert!(gone.msg.contains("No such device"), "{gone}");
        assert!(!gone.details.contains("No such device"), "text said once: {gone}");
        assert!(gone.find_source::<Error>().is_some_and(Error::is_not_found));
        let busy = Err::<(), _>(Error::kernel(libc::EAGAIN, None)).context(|| "failed to x".into());
        let busy = busy.unwrap_err();
        assert_eq!(
            (busy.code, busy.msg.as_str()),
            (cni::Code::TRY_AGAIN_LATER, "failed to x")
        );
        assert_eq!(
            busy.find_source::<Error>().and_then(Error::errno),
            Some(Errno::EAGAIN)
        );
        let interrupted: cni::Error = Error::DumpInterrupted(5).into();
        assert_eq!(interrupted.code, cni::Code::TRY_AGAIN_LATER);
        // A CNI error made from it keeps it through further wrapping.
        let outer = cni::Error::caused_by(cni::Code::INTERNAL, "outer", gone);
        assert!(outer.find_source::<Error>().is_some_and(Error::is_not_found));
    }

    #[test]
    fn not_found_covers_missing_link_and_route() {
        assert!(Error::kernel(libc::ENODEV, None).is_not_found());
        assert!(Error::kernel(libc::ESRCH, None).is_not_found());
        assert!(Error::LinkNotFound("x".into()).is_not_found());
        assert!(!Error::kernel(libc::EPERM, None).is_not_found());
    }
}
