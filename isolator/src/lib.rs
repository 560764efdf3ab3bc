//! `cni-isolator`: the Apache Mesos `network/cni` isolator in Rust.
//!
//! [`Core`] is the isolator's lifecycle as an asynchronous core on tokio
//! (see [`threads`] for its threads, [`container_calls`] for how one
//! container's calls are ordered and cancelled); [`Isolator`] owns a core
//! and its runtime and offers the same lifecycle as a blocking, thread-safe API:
//! [`Isolator::recover`], [`Isolator::prepare`] (which namespaces to create,
//! `LIBPROCESS_IP=0.0.0.0`), [`Isolator::isolate`] (pin the netns, ADD every
//! network concurrently, write hostname/hosts/resolv.conf, bind them in),
//! [`Isolator::status`], [`Isolator::usage`] and [`Isolator::cleanup`]. Its
//! inputs mirror the Mesos messages ([`types`]) and its [`Options`] the agent
//! flags. State on disk keeps the C++ isolator's layout ([`paths`]), so
//! either can recover what the other left.
//!
//! Beyond Mesos: `.conflist` networks, results of every spec version, a
//! timeout per plugin exec, CNI_ARGS, CHECK, every address in `/etc/hosts`,
//! `lo` up over netlink, and a recovery that survives one container's
//! corrupt state.
//!
//! Mount and UTS work happens in a short-lived thread with a private fs
//! struct ([`setup`]; a thread sharing it cannot enter a mount namespace),
//! or, where the kernel refuses that, in the single-threaded
//! `cni-isolator-setup` helper.
//!
//! Plugin execs are child processes awaited with their deadline and a
//! cancellation token ([`plugin_exec`]); the isolator's own netlink work in
//! a container's netns goes through `rtnetlink` on a socket opened inside
//! that netns by a short-lived thread ([`netns_socket`]).
//!
//! The same crate builds `libcni_isolator.so`, the C ABI of [`ffi`]
//! (header `include/rcni_isolator.h`), for hosts written in C or C++: every
//! call blocking or with a completion callback.

pub mod attach;
pub mod configs;
pub mod container_calls;
pub mod core;
pub mod error;
pub mod ffi;
pub mod files;
pub mod isolator;
pub mod netns_pin;
pub mod netns_socket;
pub mod options;
pub mod paths;
pub mod plugin_exec;
pub mod setup;
pub mod threads;
pub mod types;

pub use crate::core::Core;
pub use error::{Error, Result};
pub use isolator::{Isolator, NetnsSource, RecoveryReport};
pub use options::{Options, ThreadLimits};
pub use types::{
    ContainerClass, ContainerConfig, ContainerId, ContainerInfo, ContainerState, ContainerStatus,
    ContainerType, LaunchInfo, Namespace, NetworkInfo, PortMapping, ResourceStatistics,
};
