//! Snapshots of a host (the real one or a test's "host" namespace), to
//! prove a test left it as it was.

use crate::process::sh;
use std::process::Command;

/// What the real host's network looks like: `ip_forward`, link names, and
/// the nftables tables and ruleset, read in the calling thread's network
/// namespace. To prove a test left the real host alone, read it from a
/// thread in the real host netns: in the isolator tests before `Env::new`
/// and after the `Env` is dropped (it moves the test thread into a
/// throw-away "host" netns meanwhile).
#[derive(Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// `/proc/sys/net/ipv4/ip_forward`, as read.
    pub ip_forward: String,
    /// Link names, without `@peer`.
    pub links: Vec<String>,
    /// `nft list tables`, a line each (empty without nft).
    pub nft_tables: Vec<String>,
    /// `nft list ruleset` (empty without nft).
    pub nft_ruleset: String,
}

impl HostSnapshot {
    /// Reads it now.
    pub fn take() -> HostSnapshot {
        let links = sh("ip", &["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        let nft = |args: &[&str]| {
            Command::new("nft")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        HostSnapshot {
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            links,
            nft_tables: nft(&["list", "tables"]).lines().map(str::to_string).collect(),
            nft_ruleset: nft(&["list", "ruleset"]),
        }
    }
}

/// An `nft list` line without the values of its counters, which packets of
/// a namespace's own (router solicitations, DAD) change by themselves: for
/// snapshots of a host compared before and after.
pub fn without_counters(line: &str) -> String {
    let mut words = line.split(' ');
    let mut out = Vec::new();
    while let Some(w) = words.next() {
        out.push(w);
        if w == "packets" || w == "bytes" {
            words.next();
        }
    }
    out.join(" ")
}

/// Panics unless two snapshots of a host (one item a line) are equal, naming
/// the lines that went and the lines that were left behind.
#[track_caller]
pub fn assert_same_host(what: &str, before: &str, after: &str) {
    if after != before {
        let gone: Vec<&str> = before
            .lines()
            .filter(|l| !after.lines().any(|a| a == *l))
            .collect();
        let new: Vec<&str> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .collect();
        panic!("{what}: the host differs: gone {gone:#?}, left behind {new:#?}");
    }
}
