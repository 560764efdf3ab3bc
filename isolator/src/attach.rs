//! ADD and DEL of one network for one container, with Mesos's checkpoints:
//! `network.conf` (the exact plugin input) is written before ADD and used
//! again by DEL, `<ifname>/network.info` (the plugin's stdout) after ADD.
//!
//! A single config runs exactly as Mesos runs it: its JSON with
//! `args["org.apache.mesos"] = {"network_info": ...}` injected, keys sorted,
//! compact. A conflist gets the same `args` in every plugin and runs through
//! `cni::runtime` (prevResult chaining, capability filtering, its result
//! cache under `<ifname>/cache`). Beyond Mesos: the Mesos port mappings are
//! also offered as the `portMappings` capability, CNI_ARGS is passed, each
//! plugin exec has a timeout, and DEL of a 0.4.0+ single config gets the
//! checkpointed result as `prevResult`.
//!
//! Asynchronous: a single config's plugin is an awaited child process
//! ([`crate::plugin_exec`]); a conflist's chain (`cni::runtime`, synchronous)
//! runs on tokio's blocking pool with each of its execs awaited the same
//! way. Either way the call's token kills a running plugin when cancelled.

use crate::error::{Error, Result};
use crate::paths;
use crate::plugin_exec::{BlockingBridge, PluginExec};
use crate::types::NetworkInfo;
use cni::CniResult;
use cni::plugin::Command;
use cni::runtime::{
    CachedAttachment, Exec, Invocation, NetworkList, PluginResult, ResultCache, Runtime, RuntimeConf,
};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The key Mesos reserves in a config's `args`.
pub const MESOS_ARGS_KEY: &str = "org.apache.mesos";

/// How plugins are run: shared by every attachment of an isolator.
#[derive(Clone)]
pub struct PluginRunner {
    /// The plugin search path (`--network_cni_plugins_dir`, `:`-split).
    pub plugin_dirs: Vec<PathBuf>,
    /// The limit per plugin exec.
    pub timeout: Option<Duration>,
    /// fsync `network.conf` (see `Options::durable_checkpoints`).
    pub durable: bool,
    /// Runs the binaries (a fake in unit tests).
    pub exec: Arc<dyn PluginExec>,
}

/// One network of one container, as ADD/DEL need it.
#[derive(Clone, Debug)]
pub struct AttachRequest<'a> {
    /// The isolator root dir.
    pub root: &'a Path,
    /// The container directory name (= `CNI_CONTAINERID`).
    pub container: &'a str,
    /// The network.
    pub network: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS` pairs.
    pub cni_args: &'a [(String, String)],
}

/// The result of a successful ADD.
#[derive(Clone, Debug, PartialEq)]
pub struct Attached {
    /// The parsed result.
    pub result: CniResult,
    /// What was checkpointed as `network.info`.
    pub raw: Vec<u8>,
}

/// Recursively sorts object keys, so the checkpoint reads like Mesos's
/// (stout's `JSON::Object` is a `std::map`) whatever the map order is.
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Adds `args["org.apache.mesos"] = {"network_info": info}` to one plugin
/// config; a config that sets the key itself is refused, as in Mesos.
pub fn inject_network_info(config: &mut Map<String, Value>, info: &NetworkInfo) -> Result<()> {
    let args = config.entry("args").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(args) = args else {
        return Err(Error::Invalid(
            "invalid 'args' in the CNI network config: not an object".into(),
        ));
    };
    if args.contains_key(MESOS_ARGS_KEY) {
        return Err(Error::Invalid(
            "'org.apache.mesos' in 'args' should not be set in CNI network configuration file. It is reserved by Mesos".into(),
        ));
    }
    let info =
        serde_json::to_value(info).map_err(|e| Error::Invalid(format!("cannot encode NetworkInfo: {e}")))?;
    let mut mesos = Map::new();
    mesos.insert("network_info".into(), info);
    args.insert(MESOS_ARGS_KEY.into(), Value::Object(mesos));
    Ok(())
}

/// The `portMappings` capability value for a NetworkInfo's port mappings.
pub fn port_mappings_capability(info: &NetworkInfo) -> Option<Value> {
    if info.port_mappings.is_empty() {
        return None;
    }
    let list = info
        .port_mappings
        .iter()
        .map(|p| {
            serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase(),
            })
        })
        .collect();
    Some(Value::Array(list))
}

fn plugin_err<'a>(network: &'a str, command: &'static str) -> impl FnOnce(cni::Error) -> Error + 'a {
    move |source| Error::Plugin {
        network: network.to_string(),
        command,
        source,
    }
}

fn to_bytes(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Invalid(format!("cannot encode JSON: {e}")))
}

impl PluginRunner {
    /// `cni::runtime` for a conflist, to run on the blocking pool (see the
    /// module doc): its execs go through [`BlockingBridge`] with `cancel`.
    fn runtime(&self, cache_dir: PathBuf, cancel: &CancellationToken) -> Runtime {
        let exec: Arc<dyn Exec> = match self.exec.as_sync() {
            Some(sync) => sync,
            None => Arc::new(BlockingBridge {
                exec: self.exec.clone(),
                runtime: tokio::runtime::Handle::current(),
                cancel: cancel.clone(),
            }),
        };
        let mut rt = Runtime::new(self.plugin_dirs.clone())
            .with_exec(exec)
            .with_cache_dir(cache_dir)
            .with_timeout(self.timeout);
        rt.pass_stderr = false;
        rt
    }

    /// The checkpointed stdin for `config` (single or list).
    pub fn network_conf(config: &crate::configs::NetworkConfig, info: &NetworkInfo) -> Result<Value> {
        match config {
            crate::configs::NetworkConfig::Single { config, .. } => {
                let mut obj = config.clone();
                inject_network_info(&mut obj, info)?;
                Ok(sorted(Value::Object(obj)))
            }
            crate::configs::NetworkConfig::List(list) => {
                let mut value: Value = serde_json::from_slice(list.bytes())
                    .map_err(|e| Error::Invalid(format!("cannot re-read conflist: {e}")))?;
                if let Some(Value::Array(plugins)) = value.get_mut("plugins") {
                    for plugin in plugins {
                        if let Value::Object(obj) = plugin {
                            inject_network_info(obj, info)?;
                        }
                    }
                }
                Ok(sorted(value))
            }
        }
    }

    /// ADD: checkpoints `network.conf`, runs the plugin(s), checkpoints
    /// `network.info`. A cancelled `cancel` kills the running plugin; what
    /// was checkpointed stays for the DEL.
    pub async fn add(
        &self,
        req: &AttachRequest<'_>,
        config: &crate::configs::NetworkConfig,
        info: &NetworkInfo,
        netns: &Path,
        cancel: &CancellationToken,
    ) -> Result<Attached> {
        let if_dir = paths::interface_dir(req.root, req.container, req.network, req.ifname);
        paths::mkdir_below(req.root, &if_dir)?;
        let conf = Self::network_conf(config, info)?;
        let conf_bytes = to_bytes(&conf)?;
        let conf_path = paths::network_conf_path(req.root, req.container, req.network);
        if self.durable {
            // fsyncs wait for the disk: on the blocking pool.
            let (path, bytes) = (conf_path.clone(), conf_bytes.clone());
            tokio::task::spawn_blocking(move || paths::write_atomic_durable(&path, &bytes))
                .await
                .map_err(|e| Error::Invalid(format!("the checkpoint task failed: {e}")))??;
        } else {
            paths::write_atomic(&conf_path, &conf_bytes)?;
        }
        cni::fault::point("isolator.add.conf");
        let mut rt = RuntimeConf::new(req.container, Some(netns.to_path_buf()), req.ifname);
        rt.args = req.cni_args.to_vec();
        if let Some(pm) = port_mappings_capability(info) {
            rt.capability_args.insert("portMappings".into(), pm);
        }
        let err = plugin_err(req.network, "ADD");
        let (result, raw) = if conf.get("plugins").is_some() {
            let list = NetworkList::from_bytes(conf_bytes).map_err(err)?;
            let runtime = self.runtime(
                paths::cache_dir(req.root, req.container, req.network, req.ifname),
                cancel,
            );
            let (list, result) = blocking(move || {
                let r = runtime.add_list(&list, &rt);
                (list, r)
            })
            .await?;
            let result = result.map_err(plugin_err(req.network, "ADD"))?;
            let raw = result
                .to_value(list.version())
                .and_then(|v| serde_json::to_vec_pretty(&v).map_err(cni::Error::from))
                .map_err(plugin_err(req.network, "ADD"))?;
            (result, raw)
        } else {
            // A single config has no result cache of its own: keep CNI_ARGS
            // in one (only when there are any) so DEL, also from another
            // process or after a restart, passes the same ones.
            if !rt.args.is_empty() {
                let cache =
                    ResultCache::new(paths::cache_dir(req.root, req.container, req.network, req.ifname));
                cache
                    .add(&CachedAttachment {
                        network_name: req.network.to_string(),
                        container_id: req.container.to_string(),
                        ifname: req.ifname.to_string(),
                        config: conf_bytes.clone(),
                        netns: rt.netns.clone(),
                        cni_args: rt.args.clone(),
                        capability_args: rt.capability_args.clone(),
                        result: None,
                    })
                    .map_err(plugin_err(req.network, "ADD"))?;
            }
            let stdin = with_runtime_config(&conf, &rt)?;
            let stdout = self
                .exec_single(Command::Add, &conf, &rt, stdin, cancel)
                .await
                .map_err(err)?;
            let version = cni::version::effective(conf.get("cniVersion").and_then(Value::as_str));
            let parsed =
                PluginResult::from_stdout(&stdout, version).map_err(plugin_err(req.network, "ADD"))?;
            (parsed.result, stdout)
        };
        cni::fault::point("isolator.add.plugins");
        paths::write_atomic(
            &paths::network_info_path(req.root, req.container, req.network, req.ifname),
            &raw,
        )?;
        cni::fault::point("isolator.add.info");
        Ok(Attached { result, raw })
    }

    async fn exec_single(
        &self,
        command: Command,
        conf: &Value,
        rt: &RuntimeConf,
        stdin: Vec<u8>,
        cancel: &CancellationToken,
    ) -> cni::Result<Vec<u8>> {
        let plugin_type = conf.get("type").and_then(Value::as_str).unwrap_or_default();
        let plugin = self.exec.find_in_path(plugin_type, &self.plugin_dirs)?;
        let inv = Invocation::runtime(command, rt, &self.plugin_dirs, stdin)
            .with_timeout(self.timeout)
            .with_pass_stderr(false);
        self.exec.exec(&plugin, &inv, cancel).await
    }

    /// DEL with the checkpointed `network.conf`. Nothing to do when it does
    /// not exist (ADD never started). `CNI_NETNS` is passed only while the
    /// handle is a live namespace (after a reboot it is a plain file). The
    /// interface directory is removed on success.
    pub async fn del(&self, req: &AttachRequest<'_>, netns: &Path, cancel: &CancellationToken) -> Result<()> {
        let conf_path = paths::network_conf_path(req.root, req.container, req.network);
        let conf_bytes = match std::fs::read(&conf_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("read", &conf_path, e)),
        };
        let conf: Value = serde_json::from_slice(&conf_bytes).map_err(|e| Error::Corrupt {
            container: req.container.to_string(),
            why: format!("{}: {e}", conf_path.display()),
        })?;
        let netns = crate::netns_pin::is_live_handle(netns).then(|| netns.to_path_buf());
        let mut rt = RuntimeConf::new(req.container, netns, req.ifname);
        if let Some(pm) = network_info_from_conf(&conf)
            .as_ref()
            .and_then(port_mappings_capability)
        {
            rt.capability_args.insert("portMappings".into(), pm);
        }
        let info_path = paths::network_info_path(req.root, req.container, req.network, req.ifname);
        let checkpointed: Option<Value> = std::fs::read(&info_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if conf.get("plugins").is_some() {
            let list = NetworkList::from_bytes(conf_bytes).map_err(plugin_err(req.network, "DEL"))?;
            let cache_dir = paths::cache_dir(req.root, req.container, req.network, req.ifname);
            let cache = ResultCache::new(&cache_dir);
            match cache.get(list.name(), req.container, req.ifname) {
                Ok(Some(entry)) => {
                    rt.args = entry.cni_args.clone();
                    rt.capability_args = entry.capability_args.clone();
                }
                _ => {
                    // The cache is gone (or never written: state from another
                    // runtime); rebuild it from network.info so DEL still gets
                    // prevResult.
                    if let Some(result) = checkpointed {
                        let _ = cache.add(&CachedAttachment {
                            network_name: list.name().to_string(),
                            container_id: req.container.to_string(),
                            ifname: req.ifname.to_string(),
                            config: list.bytes().to_vec(),
                            netns: rt.netns.clone(),
                            result: Some(result),
                            ..Default::default()
                        });
                    }
                }
            }
            let runtime = self.runtime(cache_dir, cancel);
            blocking(move || runtime.del_list(&list, &rt))
                .await?
                .map_err(plugin_err(req.network, "DEL"))?;
        } else {
            let cache = ResultCache::new(paths::cache_dir(req.root, req.container, req.network, req.ifname));
            rt.args = match cache.get(req.network, req.container, req.ifname) {
                Ok(Some(entry)) => entry.cni_args,
                _ => req.cni_args.to_vec(),
            };
            let mut stdin_conf = conf.clone();
            let version = cni::version::effective(conf.get("cniVersion").and_then(Value::as_str)).to_string();
            let wants_prev = cni::version::compare(&version, "0.4.0").is_ge();
            if let (true, Some(prev), Value::Object(obj)) = (wants_prev, checkpointed, &mut stdin_conf)
                && let Ok(prev) = cni::result::convert(&prev, &version)
            {
                obj.insert("prevResult".into(), prev);
            }
            let stdin = if stdin_conf == conf && conf.get("capabilities").is_none() {
                conf_bytes
            } else {
                with_runtime_config(&stdin_conf, &rt)?
            };
            self.exec_single(Command::Del, &conf, &rt, stdin, cancel)
                .await
                .map_err(plugin_err(req.network, "DEL"))?;
        }
        let if_dir = paths::interface_dir(req.root, req.container, req.network, req.ifname);
        match std::fs::remove_dir_all(&if_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &if_dir, e)),
        }
    }

    /// CHECK (0.4.0+), on demand; Mesos has none.
    pub async fn check(
        &self,
        req: &AttachRequest<'_>,
        netns: &Path,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let conf_path = paths::network_conf_path(req.root, req.container, req.network);
        let conf_bytes = std::fs::read(&conf_path).map_err(|e| Error::io("read", &conf_path, e))?;
        let conf: Value = serde_json::from_slice(&conf_bytes).map_err(|e| Error::Corrupt {
            container: req.container.to_string(),
            why: format!("{}: {e}", conf_path.display()),
        })?;
        let rt = RuntimeConf::new(req.container, Some(netns.to_path_buf()), req.ifname);
        if conf.get("plugins").is_some() {
            let list = NetworkList::from_bytes(conf_bytes).map_err(plugin_err(req.network, "CHECK"))?;
            let cache_dir = paths::cache_dir(req.root, req.container, req.network, req.ifname);
            let runtime = self.runtime(cache_dir, cancel);
            return blocking(move || runtime.check_list(&list, &rt))
                .await?
                .map_err(plugin_err(req.network, "CHECK"));
        }
        let version = cni::version::effective(conf.get("cniVersion").and_then(Value::as_str)).to_string();
        if cni::version::compare(&version, "0.4.0").is_lt() {
            return Err(plugin_err(req.network, "CHECK")(
                cni::Error::incompatible_version(format!(
                    "configuration version {version:?} does not support the CHECK command"
                )),
            ));
        }
        let info_path = paths::network_info_path(req.root, req.container, req.network, req.ifname);
        let prev: Value = std::fs::read(&info_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Invalid(format!("no usable {}", info_path.display())))?;
        let mut stdin = conf.clone();
        if let Value::Object(obj) = &mut stdin {
            let prev = cni::result::convert(&prev, &version).map_err(plugin_err(req.network, "CHECK"))?;
            obj.insert("prevResult".into(), prev);
        }
        let stdin = with_runtime_config(&stdin, &rt)?;
        self.exec_single(Command::Check, &conf, &rt, stdin, cancel)
            .await
            .map(|_| ())
            .map_err(plugin_err(req.network, "CHECK"))
    }
}

/// Runs a conflist's synchronous chain on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("the conflist task failed: {e}")))
}

/// The NetworkInfo Mesos injected into a checkpointed `network.conf` (the
/// first plugin's, for a conflist).
pub fn network_info_from_conf(conf: &Value) -> Option<NetworkInfo> {
    let plugin = match conf.get("plugins") {
        Some(Value::Array(plugins)) => plugins.first()?,
        _ => conf,
    };
    let info = plugin.get("args")?.get(MESOS_ARGS_KEY)?.get("network_info")?;
    serde_json::from_value(info.clone()).ok()
}

/// A single config's stdin: unchanged unless it declares capabilities the
/// runtime has values for, which then go into `runtimeConfig` (libcni's
/// rule).
fn with_runtime_config(conf: &Value, rt: &RuntimeConf) -> Result<Vec<u8>> {
    let Some(Value::Object(caps)) = conf.get("capabilities") else {
        return to_bytes(conf);
    };
    let mut runtime_config = Map::new();
    for (cap, enabled) in caps {
        if let (Some(true), Some(v)) = (enabled.as_bool(), rt.capability_args.get(cap)) {
            runtime_config.insert(cap.clone(), v.clone());
        }
    }
    if runtime_config.is_empty() {
        return to_bytes(conf);
    }
    let mut conf = conf.clone();
    if let Value::Object(obj) = &mut conf {
        obj.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    to_bytes(&conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PortMapping;

    #[test]
    fn network_conf_is_sorted_compact_with_args() {
        let cfg = crate::configs::NetworkConfig::Single {
            name: "labnet".into(),
            config: serde_json::from_str(
                r#"{"cniVersion":"0.2.0","name":"labnet","type":"bridge","bridge":"b0","ipMasq":false,"isGateway":true,"ipam":{"type":"host-local","subnet":"10.222.210.0/24"}}"#,
            )
            .unwrap(),
        };
        let v = PluginRunner::network_conf(&cfg, &NetworkInfo::named("labnet")).unwrap();
        assert_eq!(
            String::from_utf8(to_bytes(&v).unwrap()).unwrap(),
            r#"{"args":{"org.apache.mesos":{"network_info":{"name":"labnet"}}},"bridge":"b0","cniVersion":"0.2.0","ipMasq":false,"ipam":{"subnet":"10.222.210.0/24","type":"host-local"},"isGateway":true,"name":"labnet","type":"bridge"}"#
        );
    }

    #[test]
    fn reserved_args_key_is_refused_other_args_kept() {
        let mut c: Map<String, Value> = serde_json::from_str(r#"{"args":{"org.apache.mesos":{}}}"#).unwrap();
        assert!(inject_network_info(&mut c, &NetworkInfo::named("n")).is_err());
        let mut c: Map<String, Value> = serde_json::from_str(r#"{"args":{"cni":{"x":1}}}"#).unwrap();
        inject_network_info(&mut c, &NetworkInfo::named("n")).unwrap();
        assert_eq!(c["args"]["cni"]["x"], 1);
        assert_eq!(c["args"][MESOS_ARGS_KEY]["network_info"]["name"], "n");
    }

    #[test]
    fn port_mappings_become_the_capability() {
        let mut info = NetworkInfo::named("n");
        assert_eq!(port_mappings_capability(&info), None);
        info.port_mappings.push(PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Some("UDP".into()),
        });
        assert_eq!(
            port_mappings_capability(&info).unwrap(),
            serde_json::json!([{"hostPort":8080,"containerPort":80,"protocol":"udp"}])
        );
    }
}
