//! The runtime side of CNI, the libcni equivalent: finding and running
//! plugins ([`exec`]), a plugin delegating to another ([`delegate`]), running
//! conflists ([`list`]) and the result cache ([`cache`]).
//!
//! Used by the bridge plugin (IPAM), the Mesos port mapper (its delegate) and
//! the isolator (whole conflists, from many threads at once). Plain
//! `std::process` with a timeout per exec; no async runtime.

pub mod cache;
pub mod delegate;
pub mod exec;
pub mod list;

pub use cache::{CachedAttachment, DEFAULT_CACHE_DIR, ResultCache};
pub use delegate::{Delegate, delegate_add, delegate_check, delegate_del, delegate_gc, delegate_status};
pub use exec::{
    EnvBase, Exec, Invocation, PluginResult, ProcessExec, RuntimeConf, dies_with_parent, exec_with_result,
    exec_without_result, find_in_path,
};
pub use list::{GcAttachment, NetworkList, Runtime};
