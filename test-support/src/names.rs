//! Names unique to this process and call.

use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number never handed out before in this process (for names that must
/// stay short, such as a bridge that gets VLAN sub-interfaces).
pub fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), next_id())
}

/// `<prefix><pid % 100000>x<n>`: unique like [`unique_name`] but short
/// enough for an interface name (15 bytes) with a short prefix.
pub fn short_unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100_000, next_id())
}
