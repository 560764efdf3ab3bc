//! The plugin entry point as a process: the panic hook.

use rcni_test_support::{Invocation, Netns, exec, target_bin_dir};
use serde_json::json;

#[test]
#[ignore = "needs root"]
fn a_panic_becomes_a_code_999_error_json() {
    let ns = Netns::new();
    let bin = target_bin_dir().join("panicking-plugin");
    for verb in ["ADD", "DEL"] {
        let inv = Invocation {
            netns: Some(ns.path().display().to_string()),
            command: Some(verb.into()),
            container_id: Some("c".into()),
            ifname: Some("eth0".into()),
            path: Some("/nonexistent".into()),
            stdin: serde_json::to_vec(&json!({"cniVersion": "1.0.0", "name": "n", "type": "p"})).unwrap(),
            ..Default::default()
        };
        let out = exec(&bin, &inv);
        assert_ne!(out.status, 0, "{verb}");
        assert_eq!(out.code(), Some(999), "{verb}: {} / {}", out.stdout, out.stderr);
        assert_eq!(out.json["msg"], "plugin panicked");
        assert!(
            out.json["details"]
                .as_str()
                .unwrap()
                .contains("panicking-plugin.rs")
        );
    }
}
