//! Helpers for the integration tests: run the built binary as a runtime
//! would, in a data dir of its own that is removed even when a test fails.

#![allow(dead_code)]

use rcni_test_support::{Invocation, TempDir, go_plugin};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared fixtures these tests use, for `use common::*` (not every test
/// file uses every one).
#[allow(unused_imports)]
pub use rcni_test_support::{Netns, Outcome};

pub const OURS: &str = env!("CARGO_BIN_EXE_host-local");
/// Debian's Go host-local 1.1.1 (spec up to 1.0.0), when installed: `go_plugin("host-local")`.
pub const GO: &str = "/usr/lib/cni/host-local";

pub fn go_available() -> bool {
    go_plugin("host-local").is_some()
}

/// A unique data dir, removed in Drop.
pub struct DataDir(pub TempDir);

impl DataDir {
    pub fn new(tag: &str) -> DataDir {
        DataDir(TempDir::named(&format!("rcni-hl-{tag}")))
    }

    pub fn path(&self) -> &str {
        self.0.path().to_str().unwrap()
    }

    /// The store of network `net`.
    pub fn net(&self, net: &str) -> PathBuf {
        self.0.join(net)
    }

    /// The reservation files of `net`: address -> content.
    pub fn reservations(&self, net: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(self.net(net)) else {
            return out;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.insert(name, std::fs::read_to_string(e.path()).unwrap());
            }
        }
        out
    }

    /// Every file name in the store of `net`, dot files included.
    pub fn files(&self, net: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.net(net))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// One plugin call, as a runtime makes it, with these tests' defaults: ifname `eth0`, the
/// test's own namespace (with CNI_NETNS_OVERRIDE) unless one is given, no container ID or
/// ifname for GC and STATUS, a CNI_PATH where nothing is found.
pub struct Call<'a> {
    pub bin: &'a str,
    pub command: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub cni_args: Option<&'a str>,
    pub netns: Option<String>,
    pub env: Vec<(&'a str, String)>,
}

impl<'a> Call<'a> {
    pub fn new(bin: &'a str, command: &'a str, container_id: &'a str) -> Call<'a> {
        Call {
            bin,
            command,
            container_id,
            ifname: "eth0",
            cni_args: None,
            netns: None,
            env: Vec::new(),
        }
    }

    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }

    pub fn args(mut self, args: &'a str) -> Self {
        self.cni_args = Some(args);
        self
    }

    pub fn netns(mut self, path: String) -> Self {
        self.netns = Some(path);
        self
    }

    pub fn env(mut self, k: &'a str, v: &str) -> Self {
        self.env.push((k, v.to_string()));
        self
    }

    /// The invocation, with `conf` on stdin.
    pub fn invocation(&self, conf: &Value) -> Invocation {
        let per_attachment = !matches!(self.command, "GC" | "STATUS");
        let mut inv = Invocation {
            command: Some(self.command.into()),
            container_id: per_attachment.then(|| self.container_id.into()),
            ifname: per_attachment.then(|| self.ifname.into()),
            netns: Some(self.netns.clone().unwrap_or_else(|| "/proc/self/ns/net".into())),
            args: self.cni_args.map(Into::into),
            path: Some("/nonexistent".into()),
            env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
            stdin: conf.to_string().into_bytes(),
        };
        if self.netns.is_none() {
            inv.env.push(("CNI_NETNS_OVERRIDE".into(), "1".into()));
        }
        for (k, v) in &self.env {
            inv.env.push((k.to_string(), v.clone()));
        }
        inv
    }

    /// The command, stdio piped; the caller writes `conf` to stdin.
    pub fn command(&self, conf: &Value) -> Command {
        self.invocation(conf).to_command(Path::new(self.bin))
    }

    /// Runs and returns the exit status and parsed stdout.
    pub fn run(&self, conf: &Value) -> Outcome {
        self.invocation(conf).run(Path::new(self.bin))
    }
}

/// A host-local config (the calling plugin's config with an `ipam` section).
pub fn conf(version: &str, net: &str, dir: &DataDir, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(dir.path());
    json!({"cniVersion": version, "name": net, "type": "bridge", "ipam": ipam})
}

/// The addresses of a result (1.x/0.3+ shape).
pub fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|ip| ip["address"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
