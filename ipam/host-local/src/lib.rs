//! host-local IPAM: a drop-in for the Go reference plugin.
//!
//! Same config, same results and messages, and the same on-disk store
//! (`<dataDir>/<network>/`, one file per address), so the Go plugin and this
//! one can share a directory. What differs is the cost: Go reads every
//! reservation file on every call; we keep an index (`index.rs`) derived
//! from those files, so a call costs the same with 0 or 50,000 reservations.

pub mod addr;
pub mod allocator;
pub mod commands;
pub mod config;
pub mod dns;
pub mod index;
pub mod range;
pub mod range_set;
pub mod reservations;
pub mod store;

pub use config::IpamConfig;
pub use reservations::{Attachment, Reservations};
