//! The CNI error object and its well-known codes.
//!
//! Every failure a plugin reports ends up here: it is printed as the spec's
//! error JSON on stdout, and the process exits non-zero. `msg` stays short;
//! `details` carries the chain of causes, printed once.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A spec error code. Codes 1-99 are reserved by the spec (and libcni),
/// 100 and above are free for plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(pub u32);

impl Code {
    /// The plugin does not speak the requested spec version.
    pub const INCOMPATIBLE_VERSION: Code = Code(1);
    /// A field of the config is not supported (the message names key and value).
    pub const UNSUPPORTED_FIELD: Code = Code(2);
    /// The container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: Code = Code(3);
    /// An environment variable is missing or invalid.
    pub const INVALID_ENVIRONMENT: Code = Code(4);
    /// An I/O failure, such as a file that cannot be read.
    pub const IO_FAILURE: Code = Code(5);
    /// The input could not be decoded (bad JSON, wrong types).
    pub const DECODING_FAILURE: Code = Code(6);
    /// The config is well formed but not valid.
    pub const INVALID_CONFIG: Code = Code(7);
    /// The network namespace is invalid (libcni's code).
    pub const INVALID_NETNS: Code = Code(8);
    /// Transient: the runtime should retry later.
    pub const TRY_AGAIN_LATER: Code = Code(11);
    /// STATUS: the plugin cannot serve ADD right now.
    pub const UNAVAILABLE: Code = Code(50);
    /// STATUS: unavailable, and existing containers are degraded.
    pub const UNAVAILABLE_DEGRADED: Code = Code(51);
    /// Anything else: an internal failure (libcni's code for plain errors).
    pub const INTERNAL: Code = Code(999);
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The typed error a CNI error was made from.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A CNI error: what a plugin prints on stdout when it fails, and what the
/// runtime side returns when a plugin it ran failed.
///
/// An error made from a typed one ([`Error::caused_by`], [`ResultExt`])
/// keeps it as its [`std::error::Error::source`], so a caller can still ask
/// for its kind ([`Error::find_source`]: an errno, "not found") after the
/// text has been written into `details`. The source is not part of the JSON
/// and not compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Error {
    /// The spec error code.
    pub code: Code,
    /// A short message.
    pub msg: String,
    /// The longer explanation, empty when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// The typed error this one was made from, if any.
    #[serde(skip)]
    pub source: Option<Source>,
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        (self.code, &self.msg, &self.details) == (other.code, &other.msg, &other.details)
    }
}

impl Eq for Error {}

impl Error {
    /// An error with a code and a message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
            source: None,
        }
    }

    /// An error made from the typed error `err`, which it keeps as its source: `msg` says
    /// what failed, `details` carries the whole chain of causes.
    pub fn caused_by(
        code: Code,
        msg: impl Into<String>,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let mut e = Error::from_chain(code, msg, &err);
        e.source = Some(Arc::new(err));
        e
    }

    /// The first error of type `T` in this error's chain of sources.
    pub fn find_source<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = self.source.as_deref().map(|s| s as _);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<T>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    /// Adds the longer explanation.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// An error built from any `std::error::Error`: the top-level message
    /// becomes `msg` and the chain of sources goes into `details`.
    ///
    /// A CNI error's text already holds its causes (in `details`), so the walk
    /// stops at one.
    pub fn from_chain(code: Code, msg: impl Into<String>, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut details = err.to_string();
        let mut source = match err.is::<Error>() {
            true => None,
            false => err.source(),
        };
        while let Some(s) = source {
            details.push_str(": ");
            details.push_str(&s.to_string());
            source = match s.is::<Error>() {
                true => None,
                false => s.source(),
            };
        }
        Error::new(code, msg).with_details(details)
    }

    /// Code 1.
    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Error::new(Code::INCOMPATIBLE_VERSION, msg)
    }
    /// Code 2.
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Error::new(Code::UNSUPPORTED_FIELD, msg)
    }
    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Error::new(Code::UNKNOWN_CONTAINER, msg)
    }
    /// Code 4.
    pub fn invalid_environment(msg: impl Into<String>) -> Self {
        Error::new(Code::INVALID_ENVIRONMENT, msg)
    }
    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        Error::new(Code::IO_FAILURE, msg)
    }
    /// Code 6.
    pub fn decoding(msg: impl Into<String>) -> Self {
        Error::new(Code::DECODING_FAILURE, msg)
    }
    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Error::new(Code::INVALID_CONFIG, msg)
    }
    /// Code 8.
    pub fn invalid_netns(msg: impl Into<String>) -> Self {
        Error::new(Code::INVALID_NETNS, msg)
    }
    /// Code 11.
    pub fn try_again_later(msg: impl Into<String>) -> Self {
        Error::new(Code::TRY_AGAIN_LATER, msg)
    }
    /// Code 999.
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::new(Code::INTERNAL, msg)
    }

    /// The spec JSON for this error, stamped with `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("cniVersion".into(), cni_version.into());
        obj.insert("code".into(), self.code.0.into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            obj.insert("details".into(), self.details.clone().into());
        }
        serde_json::Value::Object(obj)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::decoding(format!("invalid JSON: {e}"))
    }
}

/// Shorthand for results carrying a CNI error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns any error into a CNI error at the plugin's edge: `msg` says what
/// failed, `details` carries the whole chain of causes, and the error itself
/// stays the source ([`Error::caused_by`]).
pub trait ResultExt<T> {
    /// Maps the error to a CNI error with `code` and `msg`.
    fn cni_err(self, code: Code, msg: impl FnOnce() -> String) -> Result<T>;
    /// Same as [`ResultExt::cni_err`] with code 999.
    fn internal(self, msg: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for std::result::Result<T, E> {
    fn cni_err(self, code: Code, msg: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::caused_by(code, msg(), e))
    }
    fn internal(self, msg: impl FnOnce() -> String) -> Result<T> {
        self.cni_err(Code::INTERNAL, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_omits_empty_details() {
        let e = Error::invalid_config("bad");
        assert_eq!(
            e.to_json("1.1.0").to_string(),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"bad"}"#
        );
        let e = e.with_details("because");
        assert_eq!(e.to_json("0.4.0")["details"], "because");
    }

    #[test]
    fn chain_goes_into_details() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::from_chain(Code::IO_FAILURE, "cannot write", &io);
        assert_eq!(e.msg, "cannot write");
        assert_eq!(e.details, "disk on fire");
    }

    #[test]
    fn parses_plugin_error_without_details() {
        let e: Error = serde_json::from_str(r#"{"code":100,"msg":"x"}"#).unwrap();
        assert_eq!(e.code, Code(100));
        assert!(e.details.is_empty());
    }
}
