//! `portmap`: publishes container ports on the host (chained after the
//! plugin that made the interface). See the library for the layout.

cni::plugin_allocator!();

fn main() {
    cni::plugin::run(
        &portmap::plugin::Portmap,
        "portmap: publishes container ports on the host (nftables or iptables)",
    );
}
