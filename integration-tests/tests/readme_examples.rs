//! The example configs in README.md work as written: each JSON block is run
//! through the runtime side (ADD, CHECK where the version allows, DEL) with
//! our plugins, inside a throw-away "host" network namespace. Only
//! `dataDir` is redirected to a temporary directory, so the host's
//! `/var/lib/cni` is never touched.

use cni::runtime::{NetworkList, Runtime, RuntimeConf};
use rcni_test_support::{Netns, TempDir, target_bin_dir};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The ```json blocks of README.md, parsed.
fn readme_json_blocks() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```json") => current = Some(String::new()),
            (Some(buf), "```") => {
                blocks.push(serde_json::from_str(buf).unwrap_or_else(|e| panic!("README block: {e}\n{buf}")));
                current = None;
            }
            (Some(buf), _) => {
                buf.push_str(line);
                buf.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Points every host-local `dataDir` (at any depth) at `dir`.
fn redirect_data_dir(v: &mut Value, dir: &str) {
    match v {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("host-local") {
                map.insert("dataDir".into(), json!(dir));
            }
            for child in map.values_mut() {
                redirect_data_dir(child, dir);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| redirect_data_dir(c, dir)),
        _ => {}
    }
}

/// Makes a runnable conflist of a README block: conflists as they are, a
/// single plugin config wrapped, an IPAM fragment put under a plain host-local call.
fn as_conflist(block: &Value) -> Value {
    if block.get("plugins").is_some() {
        return block.clone();
    }
    if block.get("name").is_some() {
        let mut plugin = block.clone();
        let obj = plugin.as_object_mut().unwrap();
        let version = obj.remove("cniVersion").unwrap_or(json!("1.1.0"));
        let name = obj.remove("name").unwrap();
        return json!({"cniVersion": version, "name": name, "plugins": [plugin]});
    }
    // An IPAM fragment: run host-local itself with it as `ipam`.
    json!({"cniVersion": "1.1.0", "name": "readme-ipam", "plugins": [{"type": "host-local", "ipam": block}]})
}

#[test]
#[ignore = "needs root"]
fn every_readme_example_config_attaches_and_detaches() {
    let blocks = readme_json_blocks();
    assert!(
        blocks.len() >= 4,
        "README lost its example configs: {}",
        blocks.len()
    );
    let host = Netns::new();
    let state = TempDir::new();
    let data_dir = state.path().join("ipam");
    let guard = cni_net::Netns::open(host.path()).unwrap().enter().unwrap();
    let outcome = std::panic::catch_unwind(|| {
        let runtime = Runtime::new(vec![target_bin_dir(), PathBuf::from("/usr/lib/cni")])
            .with_cache_dir(state.path().join("cache"));
        for (i, block) in blocks.iter().enumerate() {
            let mut list = as_conflist(block);
            redirect_data_dir(&mut list, &data_dir.display().to_string());
            let name = list["name"].as_str().unwrap().to_string();
            let net = NetworkList::from_bytes(serde_json::to_vec(&list).unwrap()).unwrap();
            let container = Netns::new();
            let mut rt = RuntimeConf::new(
                format!("readme-{i}"),
                Some(container.path().to_path_buf()),
                "eth0",
            );
            if list.to_string().contains("portMappings") {
                rt.capability_args.insert(
                    "portMappings".into(),
                    json!([{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]),
                );
            }
            let result = runtime
                .add_list(&net, &rt)
                .unwrap_or_else(|e| panic!("{name}: ADD: {e}"));
            if name != "readme-ipam" && name != "lo" {
                assert!(!result.ips.is_empty(), "{name}: no address in {result:?}");
            }
            if list["cniVersion"].as_str().is_some_and(|v| v != "0.3.0") {
                runtime
                    .check_list(&net, &rt)
                    .unwrap_or_else(|e| panic!("{name}: CHECK: {e}"));
            }
            runtime
                .del_list(&net, &rt)
                .unwrap_or_else(|e| panic!("{name}: DEL: {e}"));
            runtime
                .del_list(&net, &rt)
                .unwrap_or_else(|e| panic!("{name}: second DEL: {e}"));
        }
    });
    guard.restore().unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    // No reservation is left behind by any example.
    for entry in std::fs::read_dir(&data_dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let n = file.file_name().to_string_lossy().into_owned();
            assert!(
                n == "lock" || n.starts_with("last_reserved_ip") || n.starts_with(".rcni"),
                "left behind: {}",
                file.path().display()
            );
        }
    }
}
