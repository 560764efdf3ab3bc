//! The isolator's errors. Messages are sentences about what failed; the
//! cause stays in `source` and is printed once, by [`Error::chain`], at the
//! edge (the CLI, the C ABI).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the isolator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or the options are wrong.
    #[error("{0}")]
    Invalid(String),
    /// A container asked for a network that no usable config defines; `why`
    /// says why a config of that name was not usable (a missing plugin, a
    /// parse error), as Mesos's built-in isolator names it.
    #[error("unknown CNI network {name:?}{}", why.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    UnknownNetwork {
        /// The network asked for.
        name: String,
        /// Why a config file naming it was skipped, if one did.
        why: Option<String>,
    },
    /// A file or directory operation failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done (`write`, `create directory`, ...).
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A system call (mount, unshare, setns) failed.
    #[error("{what}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A plugin failed, timed out or could not be run.
    #[error("CNI network {network:?} ({command}) failed")]
    Plugin {
        /// The network.
        network: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The error the plugin printed, or the runtime's.
        #[source]
        source: cni::Error,
    },
    /// Talking to the kernel over netlink failed.
    #[error("{what}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        #[source]
        source: cni_net::Error,
    },
    /// The core's own netlink work in a container's netns (`lo` up, link
    /// counters) failed.
    #[error("{what}")]
    RtNetlink {
        /// What was being done.
        what: String,
        /// The rtnetlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The call was cancelled before it finished: its `isolate` by a
    /// `cleanup` of the same container, or any call by the handle's
    /// destruction. What it had done stays for the cleanup to undo.
    #[error("{0}")]
    Cancelled(String),
    /// The setup helper (`cni-isolator-setup`) failed; its stderr.
    #[error("failed to set up hostname and network files: {0}")]
    Setup(String),
    /// Checkpointed state on disk cannot be read.
    #[error("corrupt state of container {container}: {why}")]
    Corrupt {
        /// The container directory name.
        container: String,
        /// What is wrong.
        why: String,
    },
    /// Several independent steps failed (concurrent ADD/DEL, best-effort
    /// teardown): every failure, one per line.
    #[error("{}", join_chains(.0))]
    Many(Vec<Error>),
}

fn join_chains(errs: &[Error]) -> String {
    errs.iter().map(Error::chain).collect::<Vec<_>>().join("\n")
}

impl Error {
    /// A network nothing defines.
    pub fn unknown_network(name: &str) -> Self {
        Error::UnknownNetwork {
            name: name.to_string(),
            why: None,
        }
    }

    /// The message with its whole chain of causes: `a: b: c`.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let _ = write!(out, ": {s}");
            source = s.source();
        }
        out
    }

    /// An I/O error on `path`.
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A failed system call.
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// One error for a list of them: `Ok` when empty, the error itself when
    /// there is one, [`Error::Many`] otherwise.
    pub fn collect(mut errs: Vec<Error>) -> Result<()> {
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(Error::Many(errs)),
        }
    }

    /// The CNI error code a plugin failure carried, if this is one.
    pub fn cni_code(&self) -> Option<cni::Code> {
        match self {
            Error::Plugin { source, .. } => Some(source.code),
            _ => None,
        }
    }
}

/// Results of the isolator.
pub type Result<T, E = Error> = std::result::Result<T, E>;
