//! Helpers for the integration tests: run the built binary as a runtime
//! would, in a data dir of its own that is removed even when a test fails.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const OURS: &str = env!("CARGO_BIN_EXE_host-local");
/// Debian's Go host-local 1.1.1 (spec up to 1.0.0), when installed.
pub const GO: &str = "/usr/lib/cni/host-local";

pub fn go_available() -> bool {
    Path::new(GO).exists()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique data dir, removed in Drop.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(tag: &str) -> DataDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("rcni-hl-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        DataDir(p)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
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

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace made with `ip netns add`, deleted in Drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Option<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("rcni-hl-{}-{n}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Netns(name))
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One plugin call.
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

    pub fn command(&self, conf: &Value) -> Command {
        let mut c = Command::new(self.bin);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_PATH", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !matches!(self.command, "GC" | "STATUS") {
            c.env("CNI_CONTAINERID", self.container_id)
                .env("CNI_IFNAME", self.ifname);
        }
        match &self.netns {
            Some(p) => {
                c.env("CNI_NETNS", p);
            }
            None => {
                c.env("CNI_NETNS", "/proc/self/ns/net")
                    .env("CNI_NETNS_OVERRIDE", "1");
            }
        }
        if let Some(a) = self.cni_args {
            c.env("CNI_ARGS", a);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let _ = conf;
        c
    }

    /// Runs and returns (exit status code, parsed stdout or Null).
    pub fn run(&self, conf: &Value) -> Reply {
        let mut child = self.command(conf).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Reply::from(out)
    }
}

#[derive(Debug)]
pub struct Reply {
    pub success: bool,
    pub signaled: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Reply {
    fn from(out: Output) -> Reply {
        use std::os::unix::process::ExitStatusExt;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        Reply {
            success: out.status.success(),
            signaled: out.status.signal().is_some(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

impl Reply {
    /// Asserts success and returns the result.
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "expected success, got {} / {}",
            self.stdout, self.stderr
        );
        self.json
    }

    /// Asserts failure and returns (code, msg).
    pub fn err(self) -> (u64, String) {
        assert!(!self.success, "expected failure, got {}", self.stdout);
        let code = self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error JSON: {} / {}", self.stdout, self.stderr));
        (code, self.json["msg"].as_str().unwrap_or("").to_string())
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
