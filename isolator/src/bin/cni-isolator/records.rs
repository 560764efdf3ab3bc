//! What the command line remembers about the containers it attached, in
//! `<root-dir>/cni-isolator/<id>.json` (beside, not inside, the Mesos
//! layout): the networks asked for and the process, so a later `status`,
//! `detach` or `gc` (a new process) can tell live containers from garbage.

use cni_isolator::{ContainerId, ContainerState, NetworkInfo};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One container started or attached by the CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The container ID.
    pub id: String,
    /// The networks, in interface order.
    pub networks: Vec<NetworkInfo>,
    /// The container's process (`run`, `attach --pid`), if any.
    #[serde(default)]
    pub pid: Option<i32>,
    /// `/proc/<pid>` start time (field 22 of stat), to detect pid reuse.
    #[serde(default)]
    pub start_time: Option<u64>,
}

impl Record {
    /// The agent-style state the library recovers from.
    pub fn state(&self) -> Option<ContainerState> {
        Some(ContainerState {
            container_id: ContainerId::parse(&self.id)?,
            network_infos: self.networks.clone(),
        })
    }

    /// True while the container's process (if it has one) is still the one
    /// we started and its namespace handle is live.
    pub fn is_alive(&self, ns_handle: &Path) -> bool {
        if !cni_isolator::netns_pin::is_live_handle(ns_handle) {
            return false;
        }
        let Some(pid) = self.pid else {
            return true;
        };
        if process_start_time(pid) != self.start_time {
            return false;
        }
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(format!("/proc/{pid}/ns/net")),
            std::fs::metadata(ns_handle),
        ) else {
            return false;
        };
        a.ino() == b.ino() && a.dev() == b.dev()
    }
}

/// The start time of `pid` in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start
    // after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The record directory.
pub fn dir(root_dir: &Path) -> PathBuf {
    root_dir.join("cni-isolator")
}

fn path(root_dir: &Path, id: &str) -> PathBuf {
    dir(root_dir).join(format!("{id}.json"))
}

/// Saves a record.
pub fn save(root_dir: &Path, r: &Record) -> cni_isolator::Result<()> {
    cni_isolator::paths::mkdir_all(&dir(root_dir))?;
    let bytes = serde_json::to_vec_pretty(r)
        .map_err(|e| cni_isolator::Error::Invalid(format!("cannot encode record: {e}")))?;
    cni_isolator::paths::write_atomic(&path(root_dir, &r.id), &bytes)
}

/// Removes a record (gone already is fine).
pub fn remove(root_dir: &Path, id: &str) {
    let _ = std::fs::remove_file(path(root_dir, id));
}

/// Every readable record.
pub fn load_all(root_dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir(root_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
