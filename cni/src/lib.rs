//! The CNI specification as code, for plugins and for runtimes.
//!
//! No kernel access lives here (beyond stat'ing a netns path): parsing,
//! validation, results of every spec version, the plugin entry point, and
//! the runtime side that execs plugins (`exec`).

pub mod alloc;
pub mod args;
pub mod config;
pub mod error;
pub mod fault;
pub mod json_keys;
pub mod netns;
pub mod plugin;
pub mod result;
pub mod runtime;
pub mod validate;
pub mod version;

pub use config::{NetConf, NetConfList};
pub use error::{Code, Error, Result, ResultExt};
pub use result::CniResult;
