//! Test fixtures: throw-away named network namespaces (rcni-test-support's `rcni-t-<pid>-<n>`
//! under /var/run/netns, deleted on drop, also when the test panics), opened as
//! `cni_net::Netns`; for the nft, iptables and conntrack tests also their ruleset and veth
//! links between them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use rcni_test_support::Netns as TestNetns;
use rcni_test_support::sh;

/// What these tests do with a namespace beyond rcni-test-support's helpers.
pub trait NetnsExt {
    /// Opens it as a `cni_net::Netns` (rcni-test-support does not depend on cni-net).
    fn open(&self) -> cni_net::Netns;

    /// `nft list ruleset` inside the namespace, with each line trimmed and blank lines dropped.
    fn ruleset(&self) -> String;
}

impl NetnsExt for TestNetns {
    fn open(&self) -> cni_net::Netns {
        cni_net::Netns::open(self.path()).expect("open test netns")
    }

    fn ruleset(&self) -> String {
        normalize(&self.exec(&["nft", "list", "ruleset"]))
    }
}

/// Trims every line and drops empty ones, so expected rulesets can be written indented.
pub fn normalize(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects `a` and `b` with a veth pair, addresses both ends (CIDR strings) and sets them up.
pub fn veth(a: &TestNetns, a_if: &str, a_addr: &str, b: &TestNetns, b_if: &str, b_addr: &str) {
    sh(
        "ip",
        &[
            "-n",
            a.name(),
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    );
    a.exec(&["ip", "addr", "add", a_addr, "dev", a_if]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", b_if]);
    a.exec(&["ip", "link", "set", a_if, "up"]);
    b.exec(&["ip", "link", "set", b_if, "up"]);
}
