//! `cni-net`: the host's network stack for rcni plugins and the isolator.
//!
//! - [`netlink::Socket`]: a small blocking `NETLINK_ROUTE` socket (request + ACK, dumps with
//!   `NLM_F_DUMP_INTR` retry, kernel errors as [`Error::Kernel`] carrying the errno and the
//!   extended-ack text). Typed operations are methods on it, one module per object:
//!   [`link`] (get, up/down, bridge and veth creation, master, MAC, MTU, netns, bridge-port
//!   flags, delete), [`addr`] (list, add, delete), [`route`] (add, replace, delete, list, get).
//! - [`netns`]: open a namespace ([`Netns`]), run a closure with the current thread inside it
//!   ([`Netns::run`], [`in_netns`]) and always come back, even on panic.
//! - [`sysctl`]: `/proc/sys` reads and writes, acting on the calling thread's namespace.
//!
//! Namespaces are per thread. A netlink socket stays in the namespace it was opened in, so
//! open the container-side socket inside the container namespace ([`Netns::socket`]) and use
//! it after returning:
//!
//! ```no_run
//! # fn main() -> cni_net::Result<()> {
//! use cni_net::{Netns, Socket};
//!
//! let container = Netns::open("/var/run/netns/c1")?;
//! let mut inside = container.socket()?;
//! let lo = inside.link_by_name("lo")?;
//! inside.set_link_up(lo.index)?;
//! let addrs = inside.addresses(Some(lo.index), None)?; // 127.0.0.1/8 and ::1/128
//! # let _ = (addrs, Socket::new());
//! # Ok(()) }
//! ```
//!
//! Errors: test [`Error::errno`] (or [`Error::is_not_found`], [`Error::is_exists`]) to make
//! DEL idempotent and ADD tolerant of objects that already exist.

pub mod addr;
pub mod bridge_vlan;
pub mod conntrack;
pub mod detach;
pub mod error;
pub mod hash;
pub mod iptables;
pub mod iptables_nft;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod route;
pub mod stats;
pub mod sysctl;
mod transport;

pub use addr::{Address, Family, Scope};
pub use error::{Context, Error, KernelError, Result};
pub use link::{BridgeSpec, Ensured, Link, LinkKind, MacAddr, OperState};
pub use netlink::Socket;
pub use netns::{Netns, NetnsGuard, NetnsId, in_netns};
pub use route::{Route, RouteKind};
