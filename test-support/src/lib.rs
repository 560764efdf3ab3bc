//! # rcni-test-support
//!
//! The fixtures that every crate's tests share, in one place. Dev-only: a
//! `[dev-dependencies]` entry of the crates whose tests use it, never a
//! normal dependency of a shipped crate, and `publish = false`. It depends
//! on std, `serde_json` and `nix` only, so `cni` and `cni-net` can use it as
//! well without a dependency cycle (an adapter such as "open this namespace
//! as a `cni_net::Netns`" is one line in the test that needs it).
//!
//! - [`unique_name`], [`short_unique`], [`next_id`]: names unique per process
//!   and call (`rcni-t-<pid>-<n>`), so tests run in parallel and never collide
//!   with each other, with another run or with anything on the host.
//!   `scripts/test.sh` fails when an `rcni-*` network namespace is left.
//! - [`Netns`]: a throw-away named network namespace (`ip netns add`),
//!   deleted on drop, also when the test panics; [`in_new_netns`] runs a
//!   closure on a thread of its own in a fresh anonymous namespace.
//! - [`TempDir`]: a uniquely named directory, removed on drop.
//! - [`sh`]: runs a command and panics with its stderr when it fails;
//!   [`write_executable`], [`process_gone_or_zombie`].
//! - [`Invocation`] and [`Outcome`]: exec a plugin exactly as a runtime does
//!   (`CNI_*` environment, the config on stdin) and read its reply.
//! - [`target_bin_dir`], [`rcni_plugin`]: the workspace's built binaries;
//!   [`go_plugin`]: the Go twin of a plugin (Debian's, in `/usr/lib/cni`).
//! - [`is_root`], [`require_root`]: root-only tests are marked
//!   `#[ignore = "needs root"]` and do not check for root themselves; the
//!   fixtures that need it say so when a run as another user asks for them.
//! - [`HostSnapshot`], [`without_counters`], [`assert_same_host`]: prove that
//!   a test left a host as it found it.
//!
//! Helpers of one crate (the isolator's `Env` with mock plugins, host-local's
//! data dir readers, `cni-net`'s nftables fixtures) stay in that crate's
//! tests, built on these. Tests use addresses in 10.222.0.0/16 and
//! fd00:222::/48 only.

mod host;
mod names;
mod netns;
mod plugin;
mod process;
mod tempdir;

pub use host::{HostSnapshot, assert_same_host, without_counters};
pub use names::{next_id, short_unique, unique_name};
pub use netns::{Netns, in_new_netns};
pub use plugin::{GO_PLUGIN_DIR, Invocation, Outcome, exec, go_plugin, rcni_plugin, target_bin_dir};
pub use process::{is_root, process_gone_or_zombie, require_root, sh, write_executable};
pub use tempdir::TempDir;

#[cfg(test)]
mod tests;
