//! portmap: publishes container ports on the host.
//!
//! A drop-in for the Go reference `portmap` plugin (every config field, the
//! same iptables layout) with an nftables backend whose cost does not grow
//! with the number of published ports. Also the library under
//! `mesos-cni-port-mapper`, which shares the firewall backends.

pub mod config;
pub mod conntrack;
pub mod iptables_backend;
pub mod localnet;
pub mod mapping;
pub mod nft_backend;
pub mod plugin;

/// The code of a failed CHECK (Go's plugins report it as an internal error).
pub const CHECK_FAILED: cni::Code = cni::Code::INTERNAL;
