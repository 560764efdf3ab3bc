//! The plugin entry point: what every rcni plugin's `main` calls.
//!
//! [`run`] reads the environment and stdin the way the Go skel does,
//! validates them (every failure gets its spec code), checks the version,
//! dispatches to the [`Plugin`] and prints the result or the error JSON on
//! stdout. A panic hook makes even a bug end in a code-999 error JSON.

use crate::args::CniArgs;
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::netns::{self, NetnsState};
use crate::result::CniResult;
use crate::validate;
use crate::version::{self, Version};
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The verbs of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach the container.
    Add,
    /// Detach the container, best effort.
    Del,
    /// Verify an attachment.
    Check,
    /// Report the plugin's versions.
    Version,
    /// Free the resources of attachments the runtime no longer knows.
    Gc,
    /// Tell whether ADD can be served.
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// The environment variables this verb cannot do without (the Go skel's table).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        }
    }

    fn has_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// Everything a verb handler gets: the validated environment and config.
#[derive(Clone, Debug)]
pub struct CmdArgs {
    /// The verb.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for GC and STATUS).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty.
    pub netns: Option<PathBuf>,
    /// What `netns` is: a namespace, or missing. `None` when no netns was given.
    pub netns_state: Option<NetnsState>,
    /// `CNI_IFNAME` (empty for GC and STATUS).
    pub ifname: String,
    /// `CNI_ARGS` as given (parsed on demand by [`CmdArgs::cni_args`]: a
    /// plugin that reads no `CNI_ARGS` must not fail on them, as in Go).
    pub raw_args: String,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
    /// stdin as read.
    pub stdin: Vec<u8>,
    /// stdin parsed as a generic plugin config.
    pub config: NetConf,
    /// The config's (validated) spec version.
    pub version: Version,
}

impl CmdArgs {
    /// `CNI_ARGS`, parsed (code 4 when malformed).
    pub fn cni_args(&self) -> Result<CniArgs> {
        CniArgs::parse(&self.raw_args)
    }

    /// Parses stdin into the plugin's own config type, its keys matched to
    /// fields as Go does ([`crate::json_keys`]); a type error is code 6.
    pub fn parse_config<T: DeserializeOwned>(&self) -> Result<T> {
        crate::json_keys::from_slice(&self.stdin)
            .map_err(|e| Error::decoding(format!("failed to parse network config: {e}")))
    }

    /// The config's `cniVersion`, or 0.1.0 when it has none.
    pub fn cni_version(&self) -> &str {
        self.config.version()
    }

    /// GC: the attachments to keep, from `cni.dev/valid-attachments` (or the
    /// older `cni.dev/attachments`). `None` when the runtime sent neither:
    /// then there is nothing to compare with, and nothing may be collected
    /// (treating it as an empty list would free every container's state).
    pub fn valid_attachments(&self) -> Result<Option<Vec<crate::config::GcAttachment>>> {
        let extra = &self.config.extra;
        let Some(list) = extra
            .get("cni.dev/valid-attachments")
            .or_else(|| extra.get("cni.dev/attachments"))
        else {
            return Ok(None);
        };
        // Go's GCAttachment fields match in any case too (`ContainerID`, `IfName`).
        crate::json_keys::from_value(list)
            .map(Some)
            .map_err(|e| Error::decoding(format!("invalid cni.dev/valid-attachments: {e}")))
    }

    /// The previous result, parsed, if the config carries one.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        match &self.config.prev_result {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => CniResult::from_value(v).map(Some),
        }
    }
}

/// The verbs a plugin implements. GC and STATUS default to success, which is
/// what the spec asks of a plugin with nothing to collect or report.
pub trait Plugin {
    /// ADD: attach and return the result.
    fn add(&self, cmd: &CmdArgs) -> Result<CniResult>;
    /// DEL: detach; must succeed when there is nothing left to remove.
    fn del(&self, cmd: &CmdArgs) -> Result<()>;
    /// CHECK: verify the attachment.
    fn check(&self, cmd: &CmdArgs) -> Result<()>;
    /// GC: free what belongs to attachments not in `cni.dev/valid-attachments`.
    fn gc(&self, _cmd: &CmdArgs) -> Result<()> {
        Ok(())
    }
    /// STATUS: fail with code 50 or 51 when ADD cannot be served.
    fn status(&self, _cmd: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

/// Where [`run_with`] reads its inputs from: the process, or a test.
pub trait Environment {
    /// An environment variable, `None` when unset.
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

/// Runs a plugin as a process: reads the real environment and stdin, prints
/// on stdout and exits with the status the spec asks for.
pub fn run<P: Plugin>(plugin: &P, about: &str) -> ! {
    install_panic_hook();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let code = run_with(plugin, about, &ProcessEnv, &mut stdin.lock(), &mut stdout.lock());
    std::process::exit(code)
}

/// Prints a code-999 error JSON on stdout when the plugin panics, so a
/// runtime gets a spec answer even from a bug (the release build aborts
/// right after the hook).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_string(),
            None => match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => "unknown panic".to_string(),
            },
        };
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let err = Error::internal("plugin panicked").with_details(format!("{msg} at {location}"));
        let mut out = std::io::stdout().lock();
        let _ = write_json(&mut out, &err.to_json(version::CURRENT));
        let _ = out.flush();
        eprintln!("panic: {msg} at {location}");
        std::process::exit(1);
    }));
}

/// The testable core of [`run`]: returns the exit status.
pub fn run_with<P: Plugin>(
    plugin: &P,
    about: &str,
    env: &dyn Environment,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> i32 {
    let mut version_for_errors = version::CURRENT.to_string();
    match dispatch(plugin, env, stdin, stdout, &mut version_for_errors) {
        Ok(()) => 0,
        Err(err) => {
            if env.var("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
                eprintln!(
                    "{about} (rcni CNI plugin)\nCNI protocol versions supported: {}",
                    version::SUPPORTED_VERSIONS.join(", ")
                );
            }
            let _ = write_json(stdout, &err.to_json(&version_for_errors));
            let _ = stdout.flush();
            1
        }
    }
}

/// The largest stdin a plugin reads. A real config, with a previous result and thousands
/// of port mappings, is well under 1 MiB; without a bound, whoever writes stdin decides how
/// much memory the plugin takes. (Go's skel reads everything: rcni is stricter here.)
pub const MAX_STDIN: u64 = 16 << 20;

fn dispatch<P: Plugin>(
    plugin: &P,
    env: &dyn Environment,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    version_for_errors: &mut String,
) -> Result<()> {
    let var = |k: &str| env.var(k).filter(|v| !v.is_empty());
    let command = match var("CNI_COMMAND") {
        None => {
            return Err(
                Error::invalid_environment("required env variables [CNI_COMMAND] missing")
                    .with_details("this is a CNI plugin: a container runtime runs it with CNI_COMMAND set"),
            );
        }
        Some(c) => Command::parse(&c)
            .ok_or_else(|| Error::invalid_environment(format!("unknown CNI_COMMAND: {c}")))?,
    };
    if command == Command::Version {
        return write_json(stdout, &version::version_info());
    }
    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|k| var(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid_environment(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }

    // Configs are small: one read in the common case instead of growing from 32 bytes.
    let mut buf = Vec::with_capacity(16 * 1024);
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("error reading from stdin").with_details(e.to_string()))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(Error::decoding(format!(
            "the network configuration on stdin is larger than {} MiB",
            MAX_STDIN >> 20
        )));
    }
    let config = NetConf::from_slice(&buf)?;
    *version_for_errors = config.version().to_string();
    let version = version::check_supported(config.version())?;
    validate::network_name(&config.name)?;
    version::check_verb(command.as_str(), version)?;

    let container_id = var("CNI_CONTAINERID").unwrap_or_default();
    let ifname = var("CNI_IFNAME").unwrap_or_default();
    if command.has_attachment() {
        validate::container_id(&container_id)?;
        validate::interface_name(&ifname)?;
    }
    let raw_args = var("CNI_ARGS").unwrap_or_default();
    let netns = if command.has_attachment() {
        var("CNI_NETNS").map(PathBuf::from)
    } else {
        None
    };
    let netns_state = match &netns {
        Some(path) => {
            let state = match netns::inspect(path) {
                // DEL is best effort: a namespace file left behind after its
                // namespace went away (unmounted, a reboot) must not stop the
                // release of addresses and rules.
                Err(e) if command == Command::Del && e.code == crate::Code::INVALID_NETNS => {
                    eprintln!("{}: treating it as gone for DEL", e.msg);
                    NetnsState::NotNamespace
                }
                other => other?,
            };
            if state == NetnsState::Missing && command != Command::Del {
                return Err(Error::invalid_netns(format!(
                    "network namespace {} does not exist",
                    path.display()
                )));
            }
            if !netns::override_enabled(env.var("CNI_NETNS_OVERRIDE").as_deref()) {
                netns::ensure_not_own(path)?;
            }
            Some(state)
        }
        None => None,
    };
    let path = var("CNI_PATH")
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let cmd = CmdArgs {
        command,
        container_id,
        netns,
        netns_state,
        ifname,
        raw_args,
        path,
        stdin: buf,
        config,
        version,
    };
    match command {
        Command::Add => {
            let result = plugin.add(&cmd)?;
            let json = result.to_value(cmd.cni_version())?;
            write_json(stdout, &json)
        }
        Command::Del => plugin.del(&cmd),
        Command::Check => plugin.check(&cmd),
        Command::Gc => plugin.gc(&cmd),
        Command::Status => plugin.status(&cmd),
        Command::Version => Ok(()),
    }
}

/// Prints JSON as the Go plugins do: 4-space indentation, in one write.
pub fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(value, &mut ser)
        .map_err(|e| Error::io("cannot write output").with_details(e.to_string()))?;
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write output").with_details(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, String>);

    impl Environment for FakeEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
    }

    /// A plugin that records nothing and answers ADD with an empty result.
    struct Null;

    impl Plugin for Null {
        fn add(&self, cmd: &CmdArgs) -> Result<CniResult> {
            cmd.cni_args()?.check_known(&["IP"])?;
            Ok(CniResult {
                ips: vec![crate::result::IpConfig {
                    address: "10.222.0.2/24"
                        .parse()
                        .map_err(|_| Error::internal("bad test address"))?,
                    gateway: None,
                    interface: None,
                }],
                ..Default::default()
            })
        }
        fn del(&self, _cmd: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn check(&self, _cmd: &CmdArgs) -> Result<()> {
            Err(Error::new(crate::Code(100), "check says no"))
        }
    }

    fn run(vars: &[(&'static str, &str)], stdin: &str) -> (i32, serde_json::Value) {
        let env = FakeEnv(vars.iter().map(|(k, v)| (*k, v.to_string())).collect());
        let mut out = Vec::new();
        let code = run_with(&Null, "null", &env, &mut stdin.as_bytes(), &mut out);
        let json = serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null);
        (code, json)
    }

    const CONF: &str = r#"{"cniVersion":"0.2.0","name":"n","type":"null"}"#;

    #[test]
    fn stdin_beyond_the_bound_is_a_decoding_error() {
        let vars = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        let pad = " ".repeat(MAX_STDIN as usize);
        let (code, json) = run(&vars, &format!("{CONF}{pad}"));
        assert_eq!((code, json["code"].as_u64()), (1, Some(6)), "{json}");
        let (code, _) = run(&vars, &format!("{CONF}{}", &pad[CONF.len()..]));
        assert_eq!(code, 0);
    }

    #[test]
    fn version_needs_nothing_else() {
        let (code, json) = run(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(code, 0);
        assert_eq!(json["supportedVersions"][0], "0.1.0");
    }

    #[test]
    fn gc_needs_only_cni_path() {
        let conf = r#"{"cniVersion":"1.1.0","name":"n","type":"null"}"#;
        let (code, json) = run(&[("CNI_COMMAND", "GC")], conf);
        assert_eq!((code, json["code"].as_u64()), (1, Some(4)));
        assert!(json["msg"].as_str().unwrap().contains("CNI_PATH"));
        let (code, _) = run(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], conf);
        assert_eq!(code, 0);
    }

    #[test]
    fn del_without_netns_reaches_the_plugin() {
        let vars = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        assert_eq!(run(&vars, CONF).0, 0);
    }

    #[test]
    fn del_of_a_leftover_non_namespace_file_reaches_the_plugin() {
        let vars = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/etc/hostname"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        assert_eq!(run(&vars, CONF).0, 0);
        let mut add = vars;
        add[0] = ("CNI_COMMAND", "ADD");
        assert_eq!(run(&add, CONF).1["code"], 8, "ADD still refuses it");
    }

    #[test]
    fn gc_without_a_valid_list_collects_nothing() {
        let cmd = |conf: &str| CmdArgs {
            command: Command::Gc,
            container_id: String::new(),
            netns: None,
            netns_state: None,
            ifname: String::new(),
            raw_args: String::new(),
            path: Vec::new(),
            stdin: conf.as_bytes().to_vec(),
            config: NetConf::from_slice(conf.as_bytes()).unwrap(),
            version: Version::V1_1_0,
        };
        let none = cmd(r#"{"cniVersion":"1.1.0","name":"n","type":"x"}"#);
        assert_eq!(none.valid_attachments().unwrap(), None);
        let empty = cmd(r#"{"cniVersion":"1.1.0","name":"n","type":"x","cni.dev/valid-attachments":[]}"#);
        assert_eq!(empty.valid_attachments().unwrap(), Some(vec![]));
        let old = cmd(
            r#"{"cniVersion":"1.1.0","name":"n","type":"x","cni.dev/attachments":[{"containerID":"a"}]}"#,
        );
        let list = old.valid_attachments().unwrap().unwrap();
        assert_eq!(
            (list[0].container_id.as_str(), list[0].ifname.as_str()),
            ("a", "")
        );
        let bad = cmd(r#"{"cniVersion":"1.1.0","name":"n","type":"x","cni.dev/valid-attachments":{}}"#);
        assert_eq!(bad.valid_attachments().unwrap_err().code.0, 6);
        // Go-cased keys, as Go's json.Unmarshal reads them.
        let go_cased = cmd(
            r#"{"cniVersion":"1.1.0","name":"n","type":"x","CNI.dev/Valid-Attachments":[{"ContainerID":"b","IfName":"eth1"}]}"#,
        );
        let list = go_cased.valid_attachments().unwrap().unwrap();
        assert_eq!(
            (list[0].container_id.as_str(), list[0].ifname.as_str()),
            ("b", "eth1")
        );
    }

    #[test]
    fn missing_variables_are_all_named() {
        let (code, json) = run(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")], CONF);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 4);
        assert_eq!(
            json["msg"],
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_PATH] missing"
        );
    }

    #[test]
    fn errors_carry_the_config_version() {
        let vars = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/nonexistent-netns"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        let conf = r#"{"cniVersion":"0.4.0","name":"n","type":"null"}"#;
        let (_, json) = run(&vars, conf);
        assert_eq!(json["cniVersion"], "0.4.0");
        assert_eq!(json["code"], 8, "CHECK of a missing netns: {json}");
    }

    #[test]
    fn plugin_codes_pass_through() {
        let vars = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_NETNS_OVERRIDE", "1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"null"}"#;
        let (code, json) = run(&vars, conf);
        assert_eq!((code, json["code"].as_u64()), (1, Some(100)));
    }

    #[test]
    fn add_result_is_printed_at_the_config_version() {
        let vars = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_NETNS_OVERRIDE", "true"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ];
        let (code, json) = run(&vars, CONF);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["ip4"]["ip"], "10.222.0.2/24");
        let vars_bad_args = {
            let mut v = vars.to_vec();
            v[6] = ("CNI_ARGS", "FOO=1");
            v
        };
        let (code, json) = run(&vars_bad_args, CONF);
        assert_eq!((code, json["code"].as_u64()), (1, Some(4)));
    }

    #[test]
    fn unset_command_is_an_error_not_silence() {
        let (code, json) = run(&[], CONF);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 4);
    }
}
