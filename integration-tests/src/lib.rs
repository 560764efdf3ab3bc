//! Fixtures for tests that need root: throw-away network namespaces and
//! data dirs that are removed even when a test panics, and a runner that
//! execs plugin binaries exactly as a container runtime does.
//!
//! Every name is unique per process and call, so tests run in parallel and
//! never collide with each other or with anything on the host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Runs a command and panics with its output when it fails.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates a new, uniquely named namespace.
    pub fn new() -> Netns {
        let name = unique_name("rcni-t");
        sh("ip", &["netns", "add", &name]);
        let path = PathBuf::from("/var/run/netns").join(&name);
        Netns { name, path }
    }

    /// Its name for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, what a runtime passes as CNI_NETNS.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip -j <args>` inside the namespace and parses the JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", &self.name, "-j"];
        full.extend_from_slice(args);
        let out = sh("ip", &full);
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    /// Whether `dev` is administratively up in the namespace.
    pub fn link_is_up(&self, dev: &str) -> bool {
        let v = self.ip_json(&["link", "show", "dev", dev]);
        v[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"))
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new, uniquely named directory under the system temp dir.
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique_name("rcni-test"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory cargo builds the workspace's binaries into.
pub fn target_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RCNI_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // tests run from target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Path of one of our plugin binaries.
pub fn rcni_plugin(name: &str) -> PathBuf {
    let p = target_bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run cargo build --workspace first",
        p.display()
    );
    p
}

/// Where Debian's Go reference plugins live.
pub const GO_PLUGIN_DIR: &str = "/usr/lib/cni";

/// Path of a Go reference plugin, when installed.
pub fn go_plugin(name: &str) -> Option<PathBuf> {
    let p = Path::new(GO_PLUGIN_DIR).join(name);
    p.exists().then_some(p)
}

/// One plugin invocation, as a runtime makes it.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// CNI_COMMAND; `None` leaves it unset.
    pub command: Option<String>,
    /// CNI_CONTAINERID.
    pub container_id: Option<String>,
    /// CNI_NETNS.
    pub netns: Option<String>,
    /// CNI_IFNAME.
    pub ifname: Option<String>,
    /// CNI_ARGS.
    pub args: Option<String>,
    /// CNI_PATH.
    pub path: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// stdin.
    pub stdin: Vec<u8>,
}

impl Invocation {
    /// A full invocation of `command` for container `cid` on `ifname` in `netns`.
    pub fn new(command: &str, cid: &str, netns: &str, ifname: &str, config: &Value) -> Invocation {
        Invocation {
            command: Some(command.into()),
            container_id: Some(cid.into()),
            netns: Some(netns.into()),
            ifname: Some(ifname.into()),
            args: None,
            path: Some(format!("{}:{}", target_bin_dir().display(), GO_PLUGIN_DIR)),
            env: Vec::new(),
            stdin: serde_json::to_vec(config).unwrap(),
        }
    }
}

/// What a plugin did: exit status, stdout parsed as JSON (Null when empty), stderr.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Exit code.
    pub status: i32,
    /// stdout as text.
    pub stdout: String,
    /// stdout parsed as JSON, Null when empty or not JSON.
    pub json: Value,
    /// stderr as text.
    pub stderr: String,
}

impl Outcome {
    /// The CNI error code, when the plugin printed an error.
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(Value::as_u64)
    }

    /// Panics unless the plugin succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.status, 0,
            "plugin failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the plugin failed with `code` and an error JSON.
    #[track_caller]
    pub fn assert_code(&self, code: u64) -> &Self {
        assert_ne!(
            self.status, 0,
            "plugin succeeded but should fail with {code}: {}",
            self.stdout
        );
        assert_eq!(
            self.code(),
            Some(code),
            "stdout={} stderr={}",
            self.stdout,
            self.stderr
        );
        assert!(self.json["msg"].is_string(), "error without msg: {}", self.stdout);
        self
    }
}

/// Execs `binary` with exactly the invocation's environment (nothing else
/// from ours but PATH) and stdin.
pub fn exec(binary: &Path, inv: &Invocation) -> Outcome {
    let mut cmd = Command::new(binary);
    cmd.env_clear();
    cmd.env(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    );
    let vars = [
        ("CNI_COMMAND", &inv.command),
        ("CNI_CONTAINERID", &inv.container_id),
        ("CNI_NETNS", &inv.netns),
        ("CNI_IFNAME", &inv.ifname),
        ("CNI_ARGS", &inv.args),
        ("CNI_PATH", &inv.path),
    ];
    for (k, v) in vars {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    for (k, v) in &inv.env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot exec {}: {e}", binary.display()));
    {
        let mut stdin = child.stdin.take().unwrap();
        // A plugin may exit before reading stdin (bad env); ignore EPIPE.
        let _ = stdin.write_all(&inv.stdin);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        status: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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
