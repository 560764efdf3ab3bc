//! Shared fixtures for the nft, iptables and conntrack integration tests (root): throw-away
//! network namespaces `rcni-nft-<pid>-<n>` deleted on drop, also when a test panics, and veth
//! links between them. Included by the test files with `#[path]`; on its own it has no tests.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::new_without_default
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace under /var/run/netns, deleted when dropped.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("rcni-nft-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    pub fn open(&self) -> cni_net::Netns {
        cni_net::Netns::open(self.path()).expect("open test netns")
    }

    /// Runs a command inside the namespace (`ip netns exec`) and returns its stdout; panics with
    /// its stderr when it fails.
    pub fn exec(&self, argv: &[&str]) -> String {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        run("ip", &args)
    }

    /// `nft list ruleset` inside the namespace, with each line trimmed and blank lines dropped.
    pub fn ruleset(&self) -> String {
        normalize(&self.exec(&["nft", "list", "ruleset"]))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
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

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Connects `a` and `b` with a veth pair, addresses both ends (CIDR strings) and sets them up.
pub fn veth(a: &Ns, a_if: &str, a_addr: &str, b: &Ns, b_if: &str, b_addr: &str) {
    run(
        "ip",
        &[
            "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
        ],
    );
    a.exec(&["ip", "addr", "add", a_addr, "dev", a_if]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", b_if]);
    a.exec(&["ip", "link", "set", a_if, "up"]);
    b.exec(&["ip", "link", "set", b_if, "up"]);
}
