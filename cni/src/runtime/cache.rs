//! The result cache, in libcni's layout, so Go runtimes and rcni can read
//! each other's entries.
//!
//! One file per attachment: `<dir>/results/<network>-<containerID>-<ifname>`,
//! mode 0600 in a 0700 directory, holding
//! `{"kind":"cniCacheV1","containerId","config","ifName","networkName","netns","cniArgs","capabilityArgs","result"}`.
//! `config` is the conflist's bytes in standard base64 with padding (Go's
//! encoding of a `[]byte`); `netns`, `cniArgs`, `capabilityArgs` and `result`
//! are left out when empty, as Go's `omitempty` does. Older libcni wrote the
//! bare result into the file; [`ResultCache::get_result`] still reads that.
//!
//! Writes go to a temporary file in the same directory, then rename over the
//! entry, so a reader never sees half a file. No fsync: the cache is a hint
//! that libcni itself writes without one, and DEL must work without it.

use super::exec::RuntimeConf;
use crate::error::{Error, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// The `kind` of a cache entry.
pub const CACHE_KIND: &str = "cniCacheV1";

/// One cached attachment: what ADD was run with, and its final result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedAttachment {
    /// The network (conflist) name.
    pub network_name: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The conflist's bytes, as loaded.
    pub config: Vec<u8>,
    /// `CNI_NETNS`, if there was one.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS` pairs.
    pub cni_args: Vec<(String, String)>,
    /// The capability values the runtime supplied.
    pub capability_args: Map<String, Value>,
    /// The final result of the chain (raw JSON, with `cniVersion`).
    pub result: Option<Value>,
}

impl CachedAttachment {
    /// The runtime arguments to DEL this attachment with.
    pub fn runtime_conf(&self) -> RuntimeConf {
        RuntimeConf {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            args: self.cni_args.clone(),
            capability_args: self.capability_args.clone(),
        }
    }

    /// The entry as libcni writes it.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let result = match &self.result {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(Error::invalid_config("cached result must be a JSON object")),
        };
        let file = CacheFile {
            kind: CACHE_KIND.into(),
            container_id: self.container_id.clone(),
            config: Some(base64_encode(&self.config)),
            if_name: self.ifname.clone(),
            network_name: self.network_name.clone(),
            netns: self
                .netns
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cni_args: self.cni_args.clone(),
            capability_args: self.capability_args.clone(),
            result,
        };
        serde_json::to_vec(&file)
            .map_err(|e| Error::internal("cannot encode cache entry").with_details(e.to_string()))
    }

    /// Parses an entry; fails unless it is a `cniCacheV1` one.
    pub fn from_json(bytes: &[u8]) -> Result<CachedAttachment> {
        let file: CacheFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::decoding(format!("failed to unmarshal cached network config: {e}")))?;
        if file.kind != CACHE_KIND {
            return Err(Error::decoding(format!(
                "cached network config has wrong kind: {:?}",
                file.kind
            )));
        }
        let config = match &file.config {
            Some(s) => base64_decode(s)
                .ok_or_else(|| Error::decoding("cached network config: invalid base64 in \"config\""))?,
            None => Vec::new(),
        };
        Ok(CachedAttachment {
            network_name: file.network_name,
            container_id: file.container_id,
            ifname: file.if_name,
            config,
            netns: Some(file.netns).filter(|s| !s.is_empty()).map(PathBuf::from),
            cni_args: file.cni_args,
            capability_args: file.capability_args,
            result: file.result.map(Value::Object),
        })
    }
}

/// The file's JSON, field for field libcni's `cachedInfo`.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    kind: String,
    #[serde(rename = "containerId", default)]
    container_id: String,
    #[serde(default)]
    config: Option<String>,
    #[serde(rename = "ifName", default)]
    if_name: String,
    #[serde(rename = "networkName", default)]
    network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    netns: String,
    #[serde(
        rename = "cniArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Map<String, Value>>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The result cache under one directory (libcni's `CacheDir`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultCache {
    dir: PathBuf,
}

impl Default for ResultCache {
    fn default() -> Self {
        ResultCache::new(DEFAULT_CACHE_DIR)
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_error(what: String, e: &std::io::Error) -> Error {
    Error::io(what).with_details(e.to_string())
}

impl ResultCache {
    /// A cache rooted at `dir` (entries go to `dir/results/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ResultCache { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding the entries.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The entry's path; all three names are needed (libcni's message), and
    /// none may contain `/` (libcni does not check; a DEL with such a
    /// container ID would reach outside the cache).
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> Result<PathBuf> {
        if network.is_empty() || container_id.is_empty() || ifname.is_empty() {
            return Err(Error::internal(format!(
                "cache file path requires network name ({network:?}), container ID ({container_id:?}), and interface name ({ifname:?})"
            )));
        }
        if [network, container_id, ifname]
            .iter()
            .any(|s| s.contains('/') || s.contains('\0'))
        {
            return Err(Error::internal(format!(
                "cache file path: invalid network name ({network:?}), container ID ({container_id:?}) or interface name ({ifname:?})"
            )));
        }
        Ok(self
            .results_dir()
            .join(format!("{network}-{container_id}-{ifname}")))
    }

    /// Writes (or replaces) the entry of an attachment, atomically.
    pub fn add(&self, entry: &CachedAttachment) -> Result<()> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.ifname)?;
        let bytes = entry.to_json()?;
        let dir = self.results_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(format!("cannot create cache directory {}", dir.display()), &e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(format!("cannot write cache file {}", path.display()), &e)
        })
    }

    /// The entry of an attachment; `None` when there is none. A file that is
    /// not a `cniCacheV1` entry is an error.
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<CachedAttachment>> {
        let path = self.path(network, container_id, ifname)?;
        let Some(bytes) = read_if_exists(&path)? else {
            return Ok(None);
        };
        CachedAttachment::from_json(&bytes).map(Some)
    }

    /// The cached result of an attachment (raw JSON), reading old libcni's
    /// bare-result files too. `None` when nothing is cached.
    pub fn get_result(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<Value>> {
        let path = self.path(network, container_id, ifname)?;
        let Some(bytes) = read_if_exists(&path)? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::decoding(format!("failed to read cached result {}: {e}", path.display())))?;
        let Value::Object(mut obj) = v else {
            return Err(Error::decoding(format!(
                "cached result {} is not a JSON object",
                path.display()
            )));
        };
        if obj.get("kind").and_then(Value::as_str) == Some(CACHE_KIND) {
            return match obj.remove("result") {
                None | Some(Value::Null) => Ok(None),
                Some(r @ Value::Object(_)) => Ok(Some(r)),
                Some(_) => Err(Error::decoding(format!(
                    "cached result in {} is not a JSON object",
                    path.display()
                ))),
            };
        }
        // Legacy format: the file is the result itself.
        Ok(Some(Value::Object(obj)))
    }

    /// Removes an attachment's entry; a missing one is fine.
    pub fn delete(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(
                format!("cannot remove cache file {}", path.display()),
                &e,
            )),
        }
    }

    /// The cached attachments, sorted by file name, optionally only those of
    /// one network and/or one container. Files that cannot be read or are not
    /// `cniCacheV1` entries with a network and an ifname are skipped, as
    /// libcni's `GetCachedAttachments` does.
    pub fn attachments(
        &self,
        network: Option<&str>,
        container_id: Option<&str>,
    ) -> Result<Vec<CachedAttachment>> {
        let dir = self.results_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_error(
                    format!("cannot list cache directory {}", dir.display()),
                    &e,
                ));
            }
        };
        let mut names: Vec<std::ffi::OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| !n.as_encoded_bytes().starts_with(b"."))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Ok(bytes) = std::fs::read(dir.join(&name)) else {
                continue;
            };
            let Ok(entry) = CachedAttachment::from_json(&bytes) else {
                continue;
            };
            if entry.ifname.is_empty() || entry.network_name.is_empty() {
                continue;
            }
            if network.is_some_and(|n| n != entry.network_name)
                || container_id.is_some_and(|c| c != entry.container_id)
            {
                continue;
            }
            out.push(entry);
        }
        Ok(out)
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("cannot read cache file {}", path.display()), &e)),
    }
}

/// Standard base64 with padding: how Go's `encoding/json` writes `[]byte`.
pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64 (padding optional); `None` when it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_go() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
    }

    #[test]
    fn entry_uses_libcni_key_names_and_omits_empty_fields() {
        let entry = CachedAttachment {
            network_name: "net1".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            config: br#"{"name":"net1"}"#.to_vec(),
            ..Default::default()
        };
        let text = String::from_utf8(entry.to_json().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"cniCacheV1","containerId":"c1","config":"eyJuYW1lIjoibmV0MSJ9","ifName":"eth0","networkName":"net1"}"#
        );
        assert_eq!(CachedAttachment::from_json(text.as_bytes()).unwrap(), entry);
    }

    #[test]
    fn reads_an_entry_written_by_go_libcni() {
        // Shape of libcni's cacheAdd output (json.Marshal of cachedInfo).
        let go = r#"{"kind":"cniCacheV1","containerId":"abc","config":"eyJjbmlWZXJzaW9uIjoiMS4wLjAifQ==","ifName":"eth0","networkName":"mynet","netns":"/var/run/netns/x","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","p"]],"capabilityArgs":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"result":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/16","gateway":"10.1.0.1","interface":0}]}}"#;
        let e = CachedAttachment::from_json(go.as_bytes()).unwrap();
        assert_eq!(e.config, br#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(e.netns.as_deref(), Some(Path::new("/var/run/netns/x")));
        assert_eq!(e.cni_args[1], ("K8S_POD_NAME".to_string(), "p".to_string()));
        assert_eq!(e.capability_args["portMappings"][0]["hostPort"], 8080);
        assert_eq!(e.result.as_ref().unwrap()["cniVersion"], "1.0.0");
        let rt = e.runtime_conf();
        assert_eq!((rt.container_id.as_str(), rt.ifname.as_str()), ("abc", "eth0"));
        let back: Value = serde_json::from_slice(&e.to_json().unwrap()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(go).unwrap());
    }

    #[test]
    fn wrong_kind_is_rejected() {
        assert!(CachedAttachment::from_json(br#"{"kind":"other"}"#).is_err());
        assert!(CachedAttachment::from_json(br#"{"cniVersion":"0.4.0"}"#).is_err());
    }

    #[test]
    fn path_needs_all_three_names() {
        let c = ResultCache::new("/x");
        assert_eq!(
            c.path("n", "c", "eth0").unwrap(),
            Path::new("/x/results/n-c-eth0")
        );
        assert!(c.path("", "c", "eth0").is_err());
        assert!(c.path("n", "", "eth0").is_err());
        assert!(c.path("n", "c", "").is_err());
        assert!(c.path("n", "../../etc/x", "eth0").is_err());
    }
}
