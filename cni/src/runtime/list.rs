//! Running a conflist: libcni's `AddNetworkList`, `DelNetworkList`,
//! `CheckNetworkList`, `GCNetworkList` and `GetStatusNetworkList`.
//!
//! Each plugin gets its entry of the list with `name` and the negotiated
//! `cniVersion` injected, plus, for ADD, DEL and CHECK, `prevResult` and a
//! `runtimeConfig` with the capability values it enables (its `capabilities`
//! stay in the config, as libcni leaves them). A static `runtimeConfig` or
//! `prevResult` in the file is replaced only when there is something to put
//! in its place, again as libcni does.
//!
//! - ADD runs in list order, each plugin getting the previous one's result
//!   (converted to the list's version), and caches the final result.
//! - DEL runs in reverse with the cached result as `prevResult` (0.4.0 and
//!   newer; older lists get none) and removes the cache entry. An unreadable
//!   cache entry is removed and DEL runs without `prevResult`.
//! - CHECK needs 0.4.0, does nothing with `disableCheck`, and gives every
//!   plugin the cached result.
//! - GC does nothing with `disableGC`; it DELs every cached attachment of the
//!   network that is not valid, then (1.1.0) runs GC on every plugin with
//!   `cni.dev/valid-attachments` and `cni.dev/attachments`, goes on past
//!   errors and reports them all.
//! - STATUS (1.1.0; nothing below) stops at the first error and returns it
//!   unchanged, so the runtime sees the plugin's code 50 or 51.

use super::cache::{CachedAttachment, ResultCache};
use super::exec::{
    Exec, Invocation, PluginResult, ProcessExec, RuntimeConf, exec_with_result, exec_without_result,
};
use crate::config::{NetConf, NetConfList};
use crate::error::{Error, Result};
use crate::plugin::Command;
use crate::result::CniResult;
use crate::validate;
use crate::version::Version;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A conflist as loaded: parsed, with the bytes it came from (what the cache
/// stores) and its negotiated version.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    conf: NetConfList,
    bytes: Vec<u8>,
    version: String,
}

impl NetworkList {
    /// Parses and validates a conflist.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<NetworkList> {
        let bytes = bytes.into();
        let conf = NetConfList::from_slice(&bytes)?;
        let version = conf.negotiated_version();
        Ok(NetworkList { conf, bytes, version })
    }

    /// A list built in code (or wrapped from a single config); its bytes are
    /// its JSON.
    pub fn from_conf(conf: NetConfList) -> Result<NetworkList> {
        conf.validate()?;
        let bytes = serde_json::to_vec(&conf)
            .map_err(|e| Error::internal("cannot encode network config list").with_details(e.to_string()))?;
        let version = conf.negotiated_version();
        Ok(NetworkList { conf, bytes, version })
    }

    /// The parsed list.
    pub fn conf(&self) -> &NetConfList {
        &self.conf
    }

    /// The bytes it was loaded from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The network name.
    pub fn name(&self) -> &str {
        &self.conf.name
    }

    /// The version every plugin is run at.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn at_least(&self, v: Version) -> Result<bool> {
        Ok(Version::parse(&self.version)? >= v)
    }
}

pub use crate::config::GcAttachment;

/// The runtime side of CNI (libcni's `CNIConfig`): where plugins are, how to
/// run them, where results are cached. Share it between threads freely;
/// runs of different attachments are independent.
#[derive(Clone)]
pub struct Runtime {
    /// The directories plugins are looked up in, in order (`CNI_PATH`).
    pub cni_path: Vec<PathBuf>,
    /// The result cache.
    pub cache: ResultCache,
    /// The limit for each plugin exec; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Copy plugins' stderr to ours (libcni's default).
    pub pass_stderr: bool,
    exec: Arc<dyn Exec>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cni_path", &self.cni_path)
            .field("cache", &self.cache)
            .field("timeout", &self.timeout)
            .field("pass_stderr", &self.pass_stderr)
            .finish_non_exhaustive()
    }
}

/// `type="bridge" name="x"`, as libcni describes a plugin in errors.
fn describe(plugin: &NetConf) -> String {
    let mut out = format!("type={:?}", plugin.plugin_type);
    if !plugin.name.is_empty() {
        out.push_str(&format!(" name={:?}", plugin.name));
    }
    out
}

/// Prefixes an error's message, keeping its code and details.
fn context(e: Error, prefix: impl std::fmt::Display) -> Error {
    Error {
        msg: format!("{prefix}: {}", e.msg),
        ..e
    }
}

/// One error for many: the first one's code, every message on its own line
/// (Go's `errors.Join`).
fn join_errors(mut errs: Vec<Error>) -> Result<()> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => {
            let code = errs[0].code;
            let msg = errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            Err(Error::new(code, msg))
        }
    }
}

impl Runtime {
    /// Runs real plugins from `cni_path`, caches in `/var/lib/cni`, no timeout.
    pub fn new(cni_path: Vec<PathBuf>) -> Self {
        Runtime {
            cni_path,
            cache: ResultCache::default(),
            timeout: None,
            pass_stderr: true,
            exec: Arc::new(ProcessExec),
        }
    }

    /// Uses another way of running plugins (a fake in tests).
    #[must_use]
    pub fn with_exec(mut self, exec: Arc<dyn Exec>) -> Self {
        self.exec = exec;
        self
    }

    /// Caches results under `dir` instead of `/var/lib/cni`.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = ResultCache::new(dir);
        self
    }

    /// Sets the limit for each plugin exec.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin's stdin: its entry with the runtime's keys injected.
    fn plugin_config(
        list: &NetworkList,
        plugin: &NetConf,
        prev_result: Option<&Value>,
        rt: Option<&RuntimeConf>,
        extra: &[(&str, &Value)],
    ) -> Result<Vec<u8>> {
        let encode =
            |e: serde_json::Error| Error::internal("cannot encode plugin config").with_details(e.to_string());
        let mut conf = match serde_json::to_value(plugin).map_err(encode)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        conf.insert("name".into(), list.name().into());
        conf.insert("cniVersion".into(), list.version().into());
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        if let Some(rt) = rt {
            let mut runtime_config = Map::new();
            for (capability, enabled) in &plugin.capabilities {
                if let (true, Some(v)) = (*enabled, rt.capability_args.get(capability)) {
                    runtime_config.insert(capability.clone(), v.clone());
                }
            }
            if !runtime_config.is_empty() {
                conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
            }
        }
        for (k, v) in extra {
            conf.insert((*k).into(), (*v).clone());
        }
        serde_json::to_vec(&Value::Object(conf)).map_err(encode)
    }

    fn invocation(&self, command: Command, rt: &RuntimeConf, stdin: Vec<u8>) -> Invocation {
        Invocation::runtime(command, rt, &self.cni_path, stdin)
            .with_timeout(self.timeout)
            .with_pass_stderr(self.pass_stderr)
    }

    fn add_one(
        &self,
        list: &NetworkList,
        plugin: &NetConf,
        prev: Option<&Value>,
        rt: &RuntimeConf,
    ) -> Result<PluginResult> {
        let path = self.exec.find_in_path(&plugin.plugin_type, &self.cni_path)?;
        let stdin = Self::plugin_config(list, plugin, prev, Some(rt), &[])?;
        exec_with_result(
            self.exec.as_ref(),
            &path,
            &self.invocation(Command::Add, rt, stdin),
        )
    }

    fn run_one(
        &self,
        command: Command,
        list: &NetworkList,
        plugin: &NetConf,
        prev: Option<&Value>,
        rt: Option<&RuntimeConf>,
        extra: &[(&str, &Value)],
    ) -> Result<()> {
        let path = self.exec.find_in_path(&plugin.plugin_type, &self.cni_path)?;
        let stdin = Self::plugin_config(list, plugin, prev, rt, extra)?;
        let empty = RuntimeConf::default();
        let inv = self.invocation(command, rt.unwrap_or(&empty), stdin);
        exec_without_result(self.exec.as_ref(), &path, &inv)
    }

    /// ADD: attaches `rt` to the network and returns the last plugin's result.
    /// Nothing is undone on failure: the runtime must DEL, as the spec says.
    pub fn add_list(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<CniResult> {
        validate::container_id(&rt.container_id)?;
        validate::network_name(list.name())?;
        validate::interface_name(&rt.ifname)?;
        let mut last: Option<PluginResult> = None;
        for plugin in &list.conf().plugins {
            let prev = last.as_ref().map(|r| r.to_version(list.version())).transpose()?;
            let result = self
                .add_one(list, plugin, prev.as_ref(), rt)
                .map_err(|e| context(e, format_args!("plugin {} failed (add)", describe(plugin))))?;
            last = Some(result);
        }
        let Some(last) = last else {
            return Err(Error::invalid_config(format!(
                "network {:?} has no plugins",
                list.name()
            )));
        };
        let entry = CachedAttachment {
            network_name: list.name().to_string(),
            container_id: rt.container_id.clone(),
            ifname: rt.ifname.clone(),
            config: list.bytes().to_vec(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result: Some(last.raw),
        };
        self.cache.add(&entry).map_err(|e| {
            context(
                e,
                format_args!("failed to set network {:?} cached result", list.name()),
            )
        })?;
        Ok(last.result)
    }

    /// The cached result of the attachment as JSON of the list's version.
    fn cached_prev_result(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Option<Value>> {
        let Some(raw) = self.cache.get_result(list.name(), &rt.container_id, &rt.ifname)? else {
            return Ok(None);
        };
        let cached = PluginResult::from_value(raw, crate::version::IMPLICIT)?;
        cached.to_version(list.version()).map(Some).map_err(|e| {
            context(
                e,
                format_args!(
                    "failed to convert cached result to config version {:?}",
                    list.version()
                ),
            )
        })
    }

    /// The cached result of an attachment, converted to the list's version
    /// (libcni's `GetNetworkListCachedResult`).
    pub fn cached_result(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Option<CniResult>> {
        match self.cached_prev_result(list, rt)? {
            Some(v) => CniResult::from_value(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The cache entry of an attachment (libcni's `GetNetworkListCachedConfig`).
    pub fn cached_attachment(
        &self,
        list: &NetworkList,
        rt: &RuntimeConf,
    ) -> Result<Option<CachedAttachment>> {
        self.cache.get(list.name(), &rt.container_id, &rt.ifname)
    }

    /// DEL: detaches `rt`, plugins in reverse order, and drops the cache entry.
    pub fn del_list(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<()> {
        let mut prev = None;
        if list.at_least(Version::V0_4_0)? {
            match self.cached_prev_result(list, rt) {
                Ok(p) => prev = p,
                Err(_) => {
                    let _ = self.cache.delete(list.name(), &rt.container_id, &rt.ifname);
                }
            }
        }
        for plugin in list.conf().plugins.iter().rev() {
            self.run_one(Command::Del, list, plugin, prev.as_ref(), Some(rt), &[])
                .map_err(|e| context(e, format_args!("plugin {} failed (delete)", describe(plugin))))?;
        }
        let _ = self.cache.delete(list.name(), &rt.container_id, &rt.ifname);
        Ok(())
    }

    /// CHECK: verifies the attachment with every plugin, in order.
    pub fn check_list(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<()> {
        if !list.at_least(Version::V0_4_0)? {
            return Err(Error::incompatible_version(format!(
                "configuration version {:?} does not support the CHECK command",
                list.version()
            )));
        }
        if list.conf().disable_check {
            return Ok(());
        }
        let prev = self.cached_prev_result(list, rt).map_err(|e| {
            context(
                e,
                format_args!("failed to get network {:?} cached result", list.name()),
            )
        })?;
        for plugin in &list.conf().plugins {
            self.run_one(Command::Check, list, plugin, prev.as_ref(), Some(rt), &[])
                .map_err(|e| context(e, format_args!("plugin {} failed (check)", describe(plugin))))?;
        }
        Ok(())
    }

    /// GC: removes what belongs to attachments of this network that are not
    /// in `valid`. `None` means the runtime gave no list: every cached
    /// attachment of the network is DELeted and plugins get no attachment
    /// keys (libcni's behaviour for nil `GCArgs`). libcni silently skips GC
    /// when the cache directory cannot be listed; we report that and go on.
    pub fn gc_list(&self, list: &NetworkList, valid: Option<&[GcAttachment]>) -> Result<()> {
        if list.conf().disable_gc {
            return Ok(());
        }
        let mut errs = Vec::new();
        match self.cache.attachments(Some(list.name()), None) {
            Ok(cached) => {
                for a in cached {
                    let key = GcAttachment {
                        container_id: a.container_id.clone(),
                        ifname: a.ifname.clone(),
                    };
                    if valid.is_some_and(|v| v.contains(&key)) {
                        continue;
                    }
                    if let Err(e) = self.del_list(list, &a.runtime_conf()) {
                        errs.push(context(
                            e,
                            format_args!(
                                "failed to delete stale attachment {} {}",
                                a.container_id, a.ifname
                            ),
                        ));
                    }
                }
            }
            Err(e) => errs.push(e),
        }
        if list.at_least(Version::V1_1_0).unwrap_or(false) {
            let attachments =
                match valid {
                    Some(v) => Some(serde_json::to_value(v).map_err(|e| {
                        Error::internal("cannot encode attachments").with_details(e.to_string())
                    })?),
                    None => None,
                };
            let extra: Vec<(&str, &Value)> = match &attachments {
                Some(a) => vec![("cni.dev/valid-attachments", a), ("cni.dev/attachments", a)],
                None => Vec::new(),
            };
            for plugin in &list.conf().plugins {
                if let Err(e) = self.run_one(Command::Gc, list, plugin, None, None, &extra) {
                    errs.push(context(
                        e,
                        format_args!("failed to GC plugin {}", plugin.plugin_type),
                    ));
                }
            }
        }
        join_errors(errs)
    }

    /// STATUS: asks every plugin whether ADD can be served. Lists older than
    /// 1.1.0 succeed without running anything.
    pub fn status_list(&self, list: &NetworkList) -> Result<()> {
        if !list.at_least(Version::V1_1_0).unwrap_or(false) {
            return Ok(());
        }
        for plugin in &list.conf().plugins {
            self.run_one(Command::Status, list, plugin, None, None, &[])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use rcni_test_support::TempDir;
    use std::ffi::OsString;
    use std::path::Path;
    use std::sync::Mutex;

    /// One recorded exec.
    #[derive(Clone, Debug)]
    struct Call {
        plugin: String,
        command: Command,
        stdin: Value,
        vars: Vec<(OsString, OsString)>,
    }

    impl Call {
        fn var(&self, k: &str) -> Option<String> {
            self.vars
                .iter()
                .rev()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        }
    }

    type Answer = Box<dyn Fn(&Call) -> Result<Vec<u8>> + Send + Sync>;

    /// Answers from a closure and records every call; every plugin exists.
    struct FakeExec {
        calls: Mutex<Vec<Call>>,
        answer: Answer,
    }

    impl FakeExec {
        fn new(answer: impl Fn(&Call) -> Result<Vec<u8>> + Send + Sync + 'static) -> Arc<FakeExec> {
            Arc::new(FakeExec {
                calls: Mutex::new(Vec::new()),
                answer: Box::new(answer),
            })
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Exec for FakeExec {
        fn find_in_path(&self, plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
            if plugin_type == "missing" {
                return Err(Error::internal(format!("failed to find plugin {plugin_type:?}")));
            }
            Ok(dirs.first().cloned().unwrap_or_default().join(plugin_type))
        }

        fn exec_plugin(&self, plugin: &Path, inv: &Invocation) -> Result<Vec<u8>> {
            let call = Call {
                plugin: plugin.file_name().unwrap().to_string_lossy().into_owned(),
                command: inv.command,
                stdin: serde_json::from_slice(&inv.stdin).unwrap(),
                vars: inv.vars.clone(),
            };
            self.calls.lock().unwrap().push(call.clone());
            (self.answer)(&call)
        }
    }

    /// Each plugin returns its prevResult plus an interface named after itself.
    fn chaining(call: &Call) -> Result<Vec<u8>> {
        if call.command != Command::Add {
            return Ok(Vec::new());
        }
        let mut r = call
            .stdin
            .get("prevResult")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        r["cniVersion"] = call.stdin["cniVersion"].clone();
        let ifs = r
            .as_object_mut()
            .unwrap()
            .entry("interfaces")
            .or_insert_with(|| serde_json::json!([]));
        ifs.as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": call.plugin}));
        Ok(serde_json::to_vec(&r).unwrap())
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"net1","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}},
        {"type":"tuning"}]}"#;

    fn setup(
        answer: impl Fn(&Call) -> Result<Vec<u8>> + Send + Sync + 'static,
    ) -> (Arc<FakeExec>, Runtime, TempDir) {
        let fake = FakeExec::new(answer);
        let dir = TempDir::named("rcni-list-unit");
        let rt = Runtime::new(vec!["/opt/cni/bin".into()])
            .with_exec(fake.clone())
            .with_cache_dir(dir.path());
        (fake, rt, dir)
    }

    fn attachment() -> RuntimeConf {
        let mut rt = RuntimeConf::new("ctr1", Some("/run/netns/ctr1".into()), "eth0");
        rt.capability_args
            .insert("portMappings".into(), serde_json::json!([{"hostPort": 80}]));
        rt.capability_args
            .insert("bandwidth".into(), serde_json::json!({"ingressRate": 1}));
        rt.capability_args
            .insert("ips".into(), serde_json::json!(["10.0.0.9/24"]));
        rt
    }

    #[test]
    fn add_chains_results_and_filters_runtime_config() {
        let (fake, runtime, _dir) = setup(chaining);
        let list = NetworkList::from_bytes(LIST).unwrap();
        let result = runtime.add_list(&list, &attachment()).unwrap();
        let names: Vec<&str> = result.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["bridge", "portmap", "tuning"]);

        let calls = fake.calls();
        assert_eq!(calls.len(), 3);
        for c in &calls {
            assert_eq!(c.stdin["name"], "net1");
            assert_eq!(c.stdin["cniVersion"], "1.0.0");
            assert_eq!(c.var("CNI_COMMAND").as_deref(), Some("ADD"));
            assert_eq!(c.var("CNI_CONTAINERID").as_deref(), Some("ctr1"));
            assert_eq!(c.var("CNI_PATH").as_deref(), Some("/opt/cni/bin"));
        }
        assert!(calls[0].stdin.get("prevResult").is_none());
        assert!(calls[0].stdin.get("runtimeConfig").is_none());
        assert_eq!(calls[0].stdin["bridge"], "cni0");
        assert_eq!(calls[1].stdin["prevResult"]["interfaces"][0]["name"], "bridge");
        assert_eq!(
            calls[1].stdin["runtimeConfig"],
            serde_json::json!({"portMappings": [{"hostPort": 80}]}),
            "only enabled capabilities the runtime supplied"
        );
        assert_eq!(
            calls[1].stdin["capabilities"]["portMappings"], true,
            "capabilities stay"
        );
        assert_eq!(calls[2].stdin["prevResult"]["interfaces"][1]["name"], "portmap");

        let cached = runtime.cached_attachment(&list, &attachment()).unwrap().unwrap();
        assert_eq!(cached.config, LIST.as_bytes());
        assert_eq!(cached.result.unwrap()["interfaces"][2]["name"], "tuning");
    }

    #[test]
    fn add_stops_at_first_failure_and_keeps_code() {
        let (fake, runtime, _dir) = setup(|c| {
            if c.plugin == "portmap" {
                Err(Error::new(Code(101), "no iptables"))
            } else {
                chaining(c)
            }
        });
        let list = NetworkList::from_bytes(LIST).unwrap();
        let e = runtime.add_list(&list, &attachment()).unwrap_err();
        assert_eq!(e.code, Code(101));
        assert_eq!(e.msg, r#"plugin type="portmap" failed (add): no iptables"#);
        assert_eq!(fake.calls().len(), 2);
        assert!(runtime.cached_attachment(&list, &attachment()).unwrap().is_none());
    }

    #[test]
    fn add_validates_before_running_anything() {
        let (fake, runtime, _dir) = setup(chaining);
        let list = NetworkList::from_bytes(LIST).unwrap();
        let mut rt = attachment();
        rt.ifname = "a/b".into();
        assert_eq!(
            runtime.add_list(&list, &rt).unwrap_err().code,
            Code::INVALID_ENVIRONMENT
        );
        rt = attachment();
        rt.container_id = String::new();
        assert_eq!(
            runtime.add_list(&list, &rt).unwrap_err().code,
            Code::UNKNOWN_CONTAINER
        );
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn missing_plugin_fails_add_with_description() {
        let (_fake, runtime, _dir) = setup(chaining);
        let list =
            NetworkList::from_bytes(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"missing"}]}"#)
                .unwrap();
        let e = runtime.add_list(&list, &attachment()).unwrap_err();
        assert!(
            e.msg
                .starts_with(r#"plugin type="missing" failed (add): failed to find plugin"#),
            "{e}"
        );
    }

    #[test]
    fn del_runs_in_reverse_with_cached_result_and_drops_cache() {
        let (fake, runtime, _dir) = setup(chaining);
        let list = NetworkList::from_bytes(LIST).unwrap();
        runtime.add_list(&list, &attachment()).unwrap();
        runtime.del_list(&list, &attachment()).unwrap();
        let dels: Vec<Call> = fake
            .calls()
            .into_iter()
            .filter(|c| c.command == Command::Del)
            .collect();
        let order: Vec<&str> = dels.iter().map(|c| c.plugin.as_str()).collect();
        assert_eq!(order, ["tuning", "portmap", "bridge"]);
        for c in &dels {
            assert_eq!(c.stdin["prevResult"]["interfaces"].as_array().unwrap().len(), 3);
        }
        assert_eq!(dels[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        assert!(runtime.cached_attachment(&list, &attachment()).unwrap().is_none());
        // A second DEL still runs, without prevResult.
        runtime.del_list(&list, &attachment()).unwrap();
        assert!(fake.calls().last().unwrap().stdin.get("prevResult").is_none());
    }

    #[test]
    fn del_below_0_4_0_gets_no_prev_result() {
        let (fake, runtime, _dir) = setup(chaining);
        let list = NetworkList::from_bytes(r#"{"cniVersion":"0.3.1","name":"old","plugins":[{"type":"a"}]}"#)
            .unwrap();
        runtime.add_list(&list, &attachment()).unwrap();
        assert!(runtime.cached_attachment(&list, &attachment()).unwrap().is_some());
        runtime.del_list(&list, &attachment()).unwrap();
        let del = fake.calls().pop().unwrap();
        assert_eq!(del.command, Command::Del);
        assert!(del.stdin.get("prevResult").is_none());
        assert!(runtime.cached_attachment(&list, &attachment()).unwrap().is_none());
    }

    #[test]
    fn del_with_corrupt_cache_runs_without_prev_result() {
        let (fake, runtime, _dir) = setup(chaining);
        let list = NetworkList::from_bytes(LIST).unwrap();
        let path = runtime.cache.path("net1", "ctr1", "eth0").unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        runtime.del_list(&list, &attachment()).unwrap();
        assert!(fake.calls().iter().all(|c| c.stdin.get("prevResult").is_none()));
        assert!(!path.exists());
    }

    #[test]
    fn check_needs_0_4_0_and_honours_disable_check() {
        let (fake, runtime, _dir) = setup(chaining);
        let old =
            NetworkList::from_bytes(r#"{"cniVersion":"0.3.1","name":"n","plugins":[{"type":"a"}]}"#).unwrap();
        assert_eq!(
            runtime.check_list(&old, &attachment()).unwrap_err().code,
            Code::INCOMPATIBLE_VERSION
        );
        let off = NetworkList::from_bytes(
            r#"{"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"a"}]}"#,
        )
        .unwrap();
        runtime.check_list(&off, &attachment()).unwrap();
        assert!(fake.calls().is_empty());

        let list = NetworkList::from_bytes(LIST).unwrap();
        runtime.add_list(&list, &attachment()).unwrap();
        runtime.check_list(&list, &attachment()).unwrap();
        let checks: Vec<Call> = fake
            .calls()
            .into_iter()
            .filter(|c| c.command == Command::Check)
            .collect();
        let order: Vec<&str> = checks.iter().map(|c| c.plugin.as_str()).collect();
        assert_eq!(order, ["bridge", "portmap", "tuning"]);
        assert!(
            checks
                .iter()
                .all(|c| c.stdin["prevResult"]["interfaces"].as_array().unwrap().len() == 3)
        );
    }

    #[test]
    fn gc_deletes_stale_cached_attachments_and_sends_both_keys() {
        let (fake, runtime, _dir) = setup(|c| {
            if c.command == Command::Gc && c.plugin == "bridge" {
                Err(Error::new(Code(5), "disk"))
            } else {
                chaining(c)
            }
        });
        let list = NetworkList::from_bytes(LIST.replace("1.0.0", "1.1.0")).unwrap();
        let keep = attachment();
        let mut stale = attachment();
        stale.container_id = "ctr2".into();
        runtime.add_list(&list, &keep).unwrap();
        runtime.add_list(&list, &stale).unwrap();
        let valid = [GcAttachment {
            container_id: "ctr1".into(),
            ifname: "eth0".into(),
        }];
        let e = runtime.gc_list(&list, Some(&valid)).unwrap_err();
        assert_eq!(e.code, Code(5));
        assert_eq!(e.msg, "failed to GC plugin bridge: disk");

        let calls = fake.calls();
        let dels: Vec<&Call> = calls.iter().filter(|c| c.command == Command::Del).collect();
        assert_eq!(dels.len(), 3);
        assert!(
            dels.iter()
                .all(|c| c.var("CNI_CONTAINERID").as_deref() == Some("ctr2"))
        );
        let gcs: Vec<&Call> = calls.iter().filter(|c| c.command == Command::Gc).collect();
        assert_eq!(gcs.len(), 3, "GC goes on past the failing plugin");
        let expected = serde_json::json!([{"containerID": "ctr1", "ifname": "eth0"}]);
        for c in &gcs {
            assert_eq!(c.stdin["cni.dev/valid-attachments"], expected);
            assert_eq!(c.stdin["cni.dev/attachments"], expected);
            assert_eq!(c.stdin["name"], "net1");
            assert!(c.stdin.get("runtimeConfig").is_none() && c.stdin.get("prevResult").is_none());
            assert_eq!(c.var("CNI_CONTAINERID").as_deref(), Some(""));
        }
        assert!(runtime.cached_attachment(&list, &keep).unwrap().is_some());
        assert!(runtime.cached_attachment(&list, &stale).unwrap().is_none());
    }

    #[test]
    fn gc_honours_disable_gc_and_skips_plugin_gc_below_1_1_0() {
        let (fake, runtime, _dir) = setup(chaining);
        let off = NetworkList::from_bytes(
            r#"{"cniVersion":"1.1.0","name":"n","disableGC":true,"plugins":[{"type":"a"}]}"#,
        )
        .unwrap();
        runtime.gc_list(&off, Some(&[])).unwrap();
        let old =
            NetworkList::from_bytes(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}"#).unwrap();
        runtime.gc_list(&old, Some(&[])).unwrap();
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn status_stops_at_first_error_and_keeps_its_code() {
        let (fake, runtime, _dir) = setup(|c| {
            if c.plugin == "portmap" {
                Err(Error::new(Code::UNAVAILABLE, "no"))
            } else {
                Ok(Vec::new())
            }
        });
        let list = NetworkList::from_bytes(LIST.replace("1.0.0", "1.1.0")).unwrap();
        let e = runtime.status_list(&list).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Code::UNAVAILABLE, "no"));
        assert_eq!(fake.calls().len(), 2);
        let old = NetworkList::from_bytes(LIST).unwrap();
        runtime.status_list(&old).unwrap();
        assert_eq!(fake.calls().len(), 2);
    }
}
