//! host-local IPAM: a drop-in for the Go reference plugin.
//!
//! Same config, same results and messages, and the same on-disk store
//! (`<dataDir>/<network>/`, one file per address), so the Go plugin and this
//! one can share a directory. What differs is the cost: Go reads every
//! reservation file on every call; we keep an index (`index.rs`) derived
//! from those files, so a call costs the same with 0 or 50,000 reservations.
//!
//! Where we differ from Go 1.1.1 / HEAD on purpose:
//! - GC (spec 1.1.0) frees reservations of attachments not in
//!   `cni.dev/valid-attachments`, and STATUS answers code 50 when a range set
//!   is full (Go has neither).
//! - A failed ADD releases only what it reserved; Go releases every address
//!   of the attachment, even one an earlier ADD gave it.
//! - Codes: 6 for undecodable input, 7 for an invalid config or request, 5
//!   for I/O, 4 for `CNI_ARGS`; Go answers 999 for all. Allocation outcomes
//!   (taken, exhausted, duplicate ADD) keep Go's 999, and every message is Go's.
//! - When two requested addresses fall in one range set, the first one asked
//!   for is used (Go picks at random, from map order).
//! - A `rangeStart` past the range end, or a gateway of the other family, is
//!   refused; Go would hand out addresses outside the range.
//! - An edit of a reservation file's content in place (no create or unlink in
//!   the directory) is not seen by the index until the next rebuild.

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
