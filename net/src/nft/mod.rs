//! nftables in-process: a typed model of tables, chains, rules, sets and maps, encoded to
//! nf_tables netlink messages and applied as one atomic batch on a `NETLINK_NETFILTER` socket.
//!
//! Why in-process batches rather than exec'ing `nft`:
//! - **No fork.** A plugin runs once per container; spawning `nft` costs a process start, a
//!   ruleset parse and a full cache load of the current ruleset (which grows with the number of
//!   containers) before the first change is sent. Building the messages here costs microseconds
//!   and does not depend on what else is in the ruleset.
//! - **Atomic.** All changes of one call go in a single `NFNL_MSG_BATCH_BEGIN` ..
//!   `NFNL_MSG_BATCH_END` transaction (res_id `NFNL_SUBSYS_NFTABLES`): the kernel applies all of
//!   them or none, and packets never see a half-built chain. Every message asks for an ACK, so a
//!   failure names the message that failed and its errno.
//! - **Flat cost.** Rules are found by their comment with a dump of one chain and deleted by
//!   handle; nothing re-reads or re-writes the rest of the ruleset.
//! - **Compatible.** Rules use the expression sequences the `nft` tool generates, and comments
//!   use its userdata encoding, so `nft list ruleset` prints them like its own, and rules made
//!   by the Go plugins (through `nft`) can be found and removed here, and the other way round.
//!
//! `netlink-packet-netfilter` 0.4 has nf_tables message types, but no `nat`, `masq`, `fib`,
//! `ct` or `counter` expressions, no batch framing and no userdata; mixing its types with
//! hand-made attributes for half of each rule would be harder to read and to test than the
//! small encoder here (`wire.rs`: TLVs, big-endian integers, nested flags). Conntrack messages
//! do come from that crate (see [`crate::conntrack`]).
//!
//! ```no_run
//! # fn main() -> cni_net::Result<()> {
//! use cni_net::nft::{Batch, Chain, ChainType, Family, Hook, NetfilterSocket, Rule, Table, priority};
//!
//! let mut batch = Batch::new();
//! batch
//!     .add_table(Table::new(Family::Ip, "cni_hostport"))
//!     .add_chain(Chain::new(Family::Ip, "cni_hostport", "prerouting")
//!         .base(ChainType::Nat, Hook::Prerouting, priority::DSTNAT))
//!     .add_rule(Rule::new(Family::Ip, "cni_hostport", "prerouting")
//!         .fib_daddr_local()
//!         .tcp_dport(8080)
//!         .dnat("10.222.0.5".parse().unwrap(), Some(80))
//!         .comment("container-id"));
//! let mut nft = NetfilterSocket::new()?;
//! nft.apply(&batch)?;
//!
//! // DEL: find the rules by comment, delete them by handle, in one more batch.
//! let mut del = Batch::new();
//! for rule in nft.rules_with_comment(Family::Ip, "cni_hostport", "prerouting", "container-id")? {
//!     del.delete_rule(Family::Ip, "cni_hostport", "prerouting", rule.handle);
//! }
//! nft.apply(&del)?;
//! # Ok(()) }
//! ```

mod batch;
mod expr;
mod list;
mod object;
mod rule;
mod socket;
pub(crate) mod wire;

pub use batch::{Batch, EncodedBatch};
pub use expr::{
    CmpOp, CtKey, Expr, FIB_F_DADDR, FIB_F_IIF, FIB_F_SADDR, FibResult, MetaKey, NAT_RANGE_PROTO_SPECIFIED,
    NatKind, PayloadBase, RTN_LOCAL, Reg, Verdict, ct_state,
};
pub use list::{ChainInfo, ElementInfo, RuleInfo, TableInfo};
pub use object::{
    BaseChain, Chain, ChainType, ElementData, Family, Hook, KeyType, MapData, Policy, SET_F_ANONYMOUS,
    SET_F_CONCAT, SET_F_CONSTANT, SET_F_INTERVAL, SET_F_MAP, Set, SetElement, Table, Value, concat_bytes,
    priority,
};
pub use rule::{COMMENT_MAX_LEN, Field, L4Proto, Position, Rule};
pub use socket::{BATCH_RETRIES, DUMP_RETRIES, NetfilterSocket, RECV_TIMEOUT_SECS};
