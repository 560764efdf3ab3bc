//! The network configs of `--network_cni_config_dir`, loaded by Mesos's
//! rules and reloaded the way Mesos does it, plus `.conflist` support.
//!
//! Every non-directory entry is a candidate (no extension filter, as in
//! Mesos), read in file-name order so the result does not depend on readdir.
//! A single config needs `name` and `type`; a conflist (any file with a
//! `plugins` array) needs `name` and plugins with a `type`. A file is
//! skipped, and reported, when it cannot be read or parsed, when its
//! network was already defined by an earlier file (the first wins), or when
//! a plugin it names (`type`, `ipam.type`) is not in the plugin path.
//!
//! Reload: a lookup re-reads and re-validates the file that defined the
//! network; if that fails or the file now defines another name, the entry
//! is dropped; a name not known is looked for by rescanning the whole
//! directory. So configs can be added, changed and removed while the
//! isolator runs, with no inotify and no restart.

use crate::error::{Error, Result};
use cni::runtime::{NetworkList, find_in_path};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A usable network config, as read from its file.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkConfig {
    /// A single plugin config: the JSON object, run with exactly this input
    /// (plus the injected `args`), as Mesos does.
    Single {
        /// The network name.
        name: String,
        /// The config object.
        config: Map<String, Value>,
    },
    /// A conflist, run by `cni::runtime` with prevResult chaining.
    List(NetworkList),
}

impl NetworkConfig {
    /// The network name.
    pub fn name(&self) -> &str {
        match self {
            NetworkConfig::Single { name, .. } => name,
            NetworkConfig::List(list) => list.name(),
        }
    }

    /// The config's `cniVersion` (negotiated for a list).
    pub fn version(&self) -> String {
        match self {
            NetworkConfig::Single { config, .. } => {
                cni::version::effective(config.get("cniVersion").and_then(Value::as_str)).to_string()
            }
            NetworkConfig::List(list) => list.version().to_string(),
        }
    }

    /// Parses a config file's bytes and checks that its plugins exist in
    /// `plugin_dirs`.
    pub fn from_bytes(bytes: &[u8], plugin_dirs: &[PathBuf]) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("not a JSON object".into());
        };
        let name = match obj.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => return Err("missing 'name'".into()),
        };
        check_network_name(&name)?;
        let need = |t: &str, what: &str| -> std::result::Result<(), String> {
            find_in_path(t, plugin_dirs)
                .map(|_| ())
                .map_err(|_| format!("cannot find {what} plugin {t:?} used by network {name:?}"))
        };
        if obj.get("plugins").is_some_and(Value::is_array) {
            let list = NetworkList::from_bytes(bytes.to_vec()).map_err(|e| e.to_string())?;
            for plugin in &list.conf().plugins {
                need(&plugin.plugin_type, "CNI")?;
                if let Some(ipam) = plugin.ipam_type() {
                    need(ipam, "IPAM")?;
                }
            }
            return Ok(NetworkConfig::List(list));
        }
        let plugin_type = match obj.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err("missing 'type'".into()),
        };
        need(&plugin_type, "CNI")?;
        if let Some(t) = obj
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
        {
            need(t, "IPAM")?;
        }
        Ok(NetworkConfig::Single { name, config: obj })
    }
}

/// Network names become directory names: refuse what cannot be one. (Looser
/// than CNI's identifier rule, so Mesos's `__MESOS_TEST__` names still work.)
fn check_network_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("{name:?} cannot be a network name"));
    }
    Ok(())
}

/// A config file that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedConfig {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The config dir with its name → file index.
#[derive(Debug)]
pub struct ConfigDir {
    dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    index: HashMap<String, PathBuf>,
    skipped: Vec<SkippedConfig>,
}

impl ConfigDir {
    /// Scans `dir`. A missing or unreadable directory is an error.
    pub fn load(dir: &Path, plugin_dirs: &[PathBuf]) -> Result<ConfigDir> {
        let mut configs = ConfigDir {
            dir: dir.to_path_buf(),
            plugin_dirs: plugin_dirs.to_vec(),
            index: HashMap::new(),
            skipped: Vec::new(),
        };
        configs.rescan()?;
        Ok(configs)
    }

    /// Files skipped at the last scan.
    pub fn skipped(&self) -> &[SkippedConfig] {
        &self.skipped
    }

    /// The networks known after the last scan, sorted by name.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.keys().cloned().collect();
        names.sort();
        names
    }

    /// Rebuilds the index from the directory.
    pub fn rescan(&mut self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let path = entry.path();
            if path.is_dir() {
                continue;
            }
            files.push(path);
        }
        files.sort();
        self.index.clear();
        self.skipped.clear();
        for path in files {
            match read_config(&path, &self.plugin_dirs) {
                Ok(config) => {
                    let name = config.name().to_string();
                    if let Some(first) = self.index.get(&name) {
                        self.skipped.push(SkippedConfig {
                            reason: format!("network {name:?} is already defined by {}", first.display()),
                            path,
                        });
                    } else {
                        self.index.insert(name, path);
                    }
                }
                Err(reason) => self.skipped.push(SkippedConfig { path, reason }),
            }
        }
        Ok(())
    }

    /// The current config of network `name`: the indexed file re-read and
    /// re-validated; on a miss (or a file that changed its mind), a rescan.
    pub fn lookup(&mut self, name: &str) -> Result<NetworkConfig> {
        if let Some(path) = self.index.get(name).cloned() {
            match read_config(&path, &self.plugin_dirs) {
                Ok(config) if config.name() == name => return Ok(config),
                _ => {
                    self.index.remove(name);
                }
            }
        }
        self.rescan()?;
        let Some(path) = self.index.get(name).cloned() else {
            return Err(Error::UnknownNetwork {
                name: name.to_string(),
                why: self.why_skipped(name),
            });
        };
        read_config(&path, &self.plugin_dirs)
            .map_err(|why| Error::Invalid(format!("network config {}: {why}", path.display())))
    }
}

impl ConfigDir {
    /// Why the skipped config files that name network `name` were skipped
    /// (a missing plugin binary, an invalid config), for the error a task
    /// gets: "unknown" alone does not tell an operator what to fix.
    fn why_skipped(&self, name: &str) -> Option<String> {
        let reasons: Vec<String> = self
            .skipped
            .iter()
            .filter(|s| {
                std::fs::read(&s.path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v.get("name").and_then(serde_json::Value::as_str) == Some(name))
            })
            .map(|s| format!("{} was skipped: {}", s.path.display(), s.reason))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

fn read_config(path: &Path, plugin_dirs: &[PathBuf]) -> std::result::Result<NetworkConfig, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    NetworkConfig::from_bytes(&bytes, plugin_dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcni_test_support::TempDir;

    #[test]
    fn scan_rules_and_reload() {
        let tmp = TempDir::named("rcni-iso-cfg-scan");
        let dir = tmp.path().to_path_buf();
        let bin = vec![PathBuf::from("/bin")];
        std::fs::write(dir.join("a.conf"), r#"{"name":"n1","type":"true"}"#).unwrap();
        std::fs::write(dir.join("b.conf"), r#"{"name":"n1","type":"true"}"#).unwrap();
        std::fs::write(dir.join("c.json"), r#"{"name":"n2","type":"no-such-plugin-x"}"#).unwrap();
        std::fs::write(
            dir.join("d"),
            r#"{"name":"n3","type":"true","ipam":{"type":"no-such-x"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("e"), "garbage").unwrap();
        std::fs::write(
            dir.join("f.conflist"),
            r#"{"cniVersion":"1.0.0","name":"l1","plugins":[{"type":"true"},{"type":"false"}]}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let mut c = ConfigDir::load(&dir, &bin).unwrap();
        assert_eq!(c.names(), vec!["l1", "n1"]);
        assert_eq!(c.skipped().len(), 4);
        assert!(matches!(c.lookup("l1").unwrap(), NetworkConfig::List(_)));
        // A network whose plugin is missing says so, as Mesos's built-in does.
        let e = c.lookup("n2").unwrap_err().to_string();
        assert!(e.starts_with("unknown CNI network \"n2\": "), "{e}");
        assert!(
            e.contains("c.json was skipped") && e.contains("no-such-plugin-x"),
            "{e}"
        );
        assert!(matches!(
            c.lookup("n9"),
            Err(Error::UnknownNetwork { why: None, .. })
        ));
        // Added without restart.
        std::fs::write(dir.join("g"), r#"{"name":"n9","type":"true"}"#).unwrap();
        assert_eq!(c.lookup("n9").unwrap().name(), "n9");
        // Removed: gone on the next lookup.
        std::fs::remove_file(dir.join("g")).unwrap();
        assert!(matches!(
            c.lookup("n9"),
            Err(Error::UnknownNetwork { why: None, .. })
        ));
        // Renamed inside the file: the old name disappears.
        std::fs::write(dir.join("a.conf"), r#"{"name":"n7","type":"true"}"#).unwrap();
        assert_eq!(c.lookup("n1").unwrap().name(), "n1"); // b.conf now wins
    }
}
