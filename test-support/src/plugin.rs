//! Plugin binaries, ours and Go's, and a runner that execs them as a
//! container runtime does.

use crate::netns::Netns;
use serde_json::Value;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The directory cargo builds the workspace's binaries into (`RCNI_BIN_DIR`
/// when set): tests run from `<target>/<profile>/deps/<test>-<hash>`, so it
/// is found whatever `CARGO_TARGET_DIR` is.
pub fn target_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RCNI_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Path of one of our plugin binaries; panics when it is not built.
#[track_caller]
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

/// Path of the Go twin of a plugin (Debian's), when installed.
pub fn go_plugin(name: &str) -> Option<PathBuf> {
    let p = Path::new(GO_PLUGIN_DIR).join(name);
    p.exists().then_some(p)
}

/// One plugin invocation, as a runtime makes it. A variable whose field is
/// `None` is left unset; the plugin sees no other variable of ours than
/// `PATH` (which an entry of `env` can replace).
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// CNI_COMMAND.
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
    /// Extra environment variables, set last.
    pub env: Vec<(String, String)>,
    /// stdin.
    pub stdin: Vec<u8>,
}

impl Invocation {
    /// A full invocation of `command` for container `cid` on `ifname` in
    /// `netns`, with `config` on stdin and CNI_PATH our binaries, then Go's.
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

    /// With CNI_PATH `path`.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// With CNI_ARGS `args`.
    pub fn with_args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// With one more environment variable (set after the others, so it can
    /// replace `PATH` or a `CNI_*` one).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// With `stdin` instead of the config given to [`Invocation::new`].
    pub fn with_stdin(mut self, stdin: impl Into<Vec<u8>>) -> Self {
        self.stdin = stdin.into();
        self
    }

    /// The command that runs `binary` with exactly this invocation's
    /// environment and piped stdio; the caller writes [`Invocation::stdin`].
    pub fn to_command(&self, binary: &Path) -> Command {
        let mut cmd = Command::new(binary);
        self.prepare(&mut cmd);
        cmd
    }

    /// Execs `binary`, writes stdin and waits for it.
    pub fn run(&self, binary: &Path) -> Outcome {
        let child = self
            .to_command(binary)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot exec {}: {e}", binary.display()));
        self.finish(child)
    }

    /// Like [`Invocation::run`], with the plugin inside `ns` (`ip netns
    /// exec`): its own namespace, for CNI_NETNS_OVERRIDE or for a "host"
    /// namespace where it makes bridges and firewall rules.
    pub fn run_in(&self, ns: &Netns, binary: &Path) -> Outcome {
        let mut cmd = ns.command(binary);
        self.prepare(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot exec {} in {}: {e}", binary.display(), ns.name()));
        self.finish(child)
    }

    fn prepare(&self, cmd: &mut Command) {
        cmd.env_clear();
        cmd.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        );
        let vars = [
            ("CNI_COMMAND", &self.command),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.path),
        ];
        for (k, v) in vars {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }

    fn finish(&self, mut child: Child) -> Outcome {
        {
            let mut stdin = child.stdin.take().unwrap();
            // A plugin may exit before reading stdin (bad env); ignore EPIPE.
            let _ = stdin.write_all(&self.stdin);
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Outcome {
            status: out.status.code().unwrap_or(-1),
            signal: out.status.signal(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Execs `binary` as `inv` says: [`Invocation::run`].
pub fn exec(binary: &Path, inv: &Invocation) -> Outcome {
    inv.run(binary)
}

/// What a plugin did: exit status, stdout parsed as JSON, stderr.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Exit code; -1 when killed by a signal.
    pub status: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// stdout as text.
    pub stdout: String,
    /// stdout parsed as JSON, Null when empty or not JSON.
    pub json: Value,
    /// stderr as text.
    pub stderr: String,
}

impl Outcome {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    /// The exit code, `None` when a signal killed it.
    pub fn exit_code(&self) -> Option<i32> {
        self.signal.is_none().then_some(self.status)
    }

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

    /// Asserts success and returns the result.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.success(),
            "expected success, got {} / {}",
            self.stdout,
            self.stderr
        );
        self.json
    }

    /// Asserts failure with an error JSON and returns (code, msg).
    #[track_caller]
    pub fn err(self) -> (u64, String) {
        assert!(!self.success(), "expected failure, got {}", self.stdout);
        let code = self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error JSON: {} / {}", self.stdout, self.stderr));
        (code, self.json["msg"].as_str().unwrap_or("").to_string())
    }
}
