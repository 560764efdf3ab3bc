//! The C ABI from C: `tests/c/abi_smoke.c`, compiled with gcc (skipped
//! without it) against `include/rcni_isolator.h` and linked with the
//! `libcni_isolator.so` cargo built, runs prepare/isolate/status/usage/
//! cleanup of a container on a loopback-only network (rcni's loopback
//! plugin) in the test's throw-away host netns, status also through the
//! completion-callback form. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `libcni_isolator.so` (cargo builds it beside the
/// test binary in `target/<profile>/deps`, and copies it one level up).
fn cdylib_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .find(|d| d.join("libcni_isolator.so").is_file())
        .map(Path::to_path_buf)
}

#[test]
#[ignore = "needs root"]
fn c_program_runs_a_container_on_a_loopback_network() {
    if Command::new("gcc").arg("--version").output().is_err() {
        panic!("missing prerequisite: no gcc (scripts/test.sh installs what the tests need)");
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loopback = target_bin_dir().join("loopback");
    if !loopback.exists() {
        panic!(
            "missing prerequisite: rcni loopback not built ({}) (scripts/test.sh installs what the tests need)",
            loopback.display()
        );
    }
    let Some(lib) = cdylib_dir() else {
        panic!("libcni_isolator.so not found near {:?}", std::env::current_exe());
    };
    let mut env = Env::new();
    std::os::unix::fs::symlink(&loopback, env.plugins.join("loopback")).unwrap();
    env.config(
        "lo.conf",
        r#"{"cniVersion":"1.0.0","name":"lo-only","type":"loopback"}"#,
    );

    let program = env.base.join("abi_smoke");
    let cc = Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&program)
        .arg(manifest.join("tests/c/abi_smoke.c"))
        .arg(format!("-I{}", manifest.join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lcni_isolator")
        .arg("-pthread")
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );

    let options = serde_json::json!({
        "network_cni_config_dir": env.conf,
        "network_cni_plugins_dir": env.plugins,
        "root_dir": env.root(),
        "setup_helper": env!("CARGO_BIN_EXE_cni-isolator-setup"),
        "plugin_timeout_ms": "30000",
    })
    .to_string();
    let pid = env.container_process();
    let run = Command::new(&program)
        .arg(&options)
        .arg(pid.to_string())
        .arg("lo-only")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line = |call: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{call} ")))
            .unwrap_or_else(|| panic!("no {call} in {stdout}"))
            .to_string()
    };
    assert!(line("prepare-unknown").contains("no-such-net"), "{stdout}");
    let prepare = line("prepare");
    assert!(
        prepare.contains(r#""clone_namespaces":["mount","net","uts"]"#),
        "{prepare}"
    );
    assert!(prepare.contains(r#"["LIBPROCESS_IP","0.0.0.0"]"#), "{prepare}");
    assert_eq!(line("isolate"), "isolate 0 null");
    assert!(line("status").contains(r#""name":"lo-only""#), "{stdout}");
    assert!(line("usage").contains("net_rx_packets"), "{stdout}");
    // The callback form answers the same.
    assert_eq!(
        line("status-async").trim_start_matches("status-async "),
        line("status").trim_start_matches("status ")
    );
    assert_eq!(line("cleanup"), "cleanup 0 null");

    // ADD ran in the container's netns (the loopback plugin reported lo's
    // address), the setup helper gave it its hostname, and DEL ran there too
    // (the loopback plugin's DEL sets lo down, as Go's does).
    assert!(line("status").contains(r#""ip_address":"127.0.0.1""#), "{stdout}");
    assert_eq!(in_container(pid, &["hostname"]).trim(), "cabi");
    let lo = in_container(pid, &["ip", "-j", "link", "show", "lo"]);
    assert!(!lo.contains("\"UP\""), "lo still up after DEL: {lo}");
    assert!(!exists(&env.root().join("cabi1")), "state left after cleanup");
}
