//! Faults in the isolator: `cni-isolator attach` is aborted at each of its
//! checkpoints (`RCNI_FAULT`, debug builds only) with rcni's real bridge and
//! host-local, then `cni-isolator detach` (or, separately, `gc` after the
//! namespace handle is gone) must leave the host as it was: no container
//! directory, no mount under the root, no veth, no reservation. The same for
//! an abort in the middle of `detach`. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every checkpoint of an attach, in order.
const ATTACH_STEPS: &[&str] = &[
    "isolator.isolate.pinned",
    "isolator.add.conf",
    "bridge.add.veth",
    "host-local.after-link",
    "bridge.add.addresses",
    "isolator.add.plugins",
    "isolator.add.info",
    "isolator.isolate.files",
];

/// Every checkpoint of a detach.
const DETACH_STEPS: &[&str] = &[
    "bridge.del.ipam",
    "isolator.cleanup.del",
    "isolator.cleanup.unpinned",
];

/// Where cargo put this workspace's binaries (rcni's bridge and host-local).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cni-isolator"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cli(env: &Env, fault: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cni-isolator"));
    cmd.arg(format!("--config-dir={}", env.conf.display()))
        .arg(format!("--plugins-dir={}", bin_dir().display()))
        .arg(format!("--root-dir={}", env.runtime.display()))
        .args(args)
        .env_remove("RCNI_FAULT")
        .stdin(Stdio::null());
    if let Some(f) = fault {
        cmd.env("RCNI_FAULT", f);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What an attachment could leave: the root's tree, mounts under it, links
/// of the test's host namespace and host-local's reservations.
fn snapshot(env: &Env) -> String {
    let mut out = String::new();
    let root = env.root();
    let mut todo = vec![root.clone()];
    let mut files = Vec::new();
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            files.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    files.sort();
    out.push_str(&format!("files {files:?}\n"));
    let root_s = std::fs::canonicalize(&root)
        .unwrap_or(root.clone())
        .display()
        .to_string();
    for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        let mp = line.split(' ').nth(4).unwrap_or("");
        if mp.starts_with(&root_s) && mp != root_s {
            out.push_str(&format!("mount {mp}\n"));
        }
    }
    for line in sh("ip", &["-o", "link", "show"]).lines() {
        out.push_str(&format!("link {}\n", line.split_whitespace().nth(1).unwrap()));
    }
    let mut reserved: Vec<String> = std::fs::read_dir(env.base.join("ipam").join("fnet"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    reserved.sort();
    out.push_str(&format!("reserved {reserved:?}\n"));
    out
}

fn network(env: &mut Env) {
    env.config(
        "fnet.conf",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"fnet","type":"bridge","bridge":"fisobr0","isGateway":true,
               "ipam":{{"type":"host-local","subnet":"10.222.91.0/24","dataDir":"{}"}}}}"#,
            env.base.join("ipam").display()
        ),
    );
    env.track_link("fisobr0");
}

/// A first attach and detach, so the bridge and the data dir exist before
/// the comparisons start; also proves the snapshot sees an attachment (its
/// directory, its `ns` mount, its veth and its reservation).
fn settle(env: &Env) {
    let out = cli(env, None, &["attach", "--id", "settle", "--network", "fnet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let attached = snapshot(env);
    for seen in ["mount ", "link veth", "reserved [\"10.222.91."] {
        assert!(
            attached.contains(seen),
            "the snapshot misses {seen:?}: {attached}"
        );
    }
    let out = cli(env, None, &["detach", "settle"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_attach_checkpoint_then_detach_leaves_nothing() {
    let mut env = Env::new();
    network(&mut env);
    settle(&env);
    for (i, step) in ATTACH_STEPS.iter().enumerate() {
        let before = snapshot(&env);
        let id = format!("a{i}");
        let out = cli(&env, Some(step), &["attach", "--id", &id, "--network", "fnet"]);
        assert!(!out.status.success(), "{step}: attach went through");
        assert!(
            text(&out.stderr).contains(&format!("aborting at {step}")),
            "{step} not reached: {}",
            text(&out.stderr)
        );
        // An abort inside a plugin is a failed ADD to the isolator, which undid
        // the attachment itself: then there is no container left to detach.
        let out = cli(&env, None, &["detach", &id]);
        let undone = !step.starts_with("isolator.") && text(&out.stderr).contains("no container");
        assert!(
            out.status.success() || undone,
            "{step}: detach: {}",
            text(&out.stderr)
        );
        assert_same_host(&format!("abort at {step}, detach"), &before, &snapshot(&env));
    }
}

#[test]
#[ignore = "needs root"]
fn abort_at_each_detach_checkpoint_then_detach_again_leaves_nothing() {
    let mut env = Env::new();
    network(&mut env);
    settle(&env);
    for (i, step) in DETACH_STEPS.iter().enumerate() {
        let before = snapshot(&env);
        let id = format!("d{i}");
        let out = cli(&env, None, &["attach", "--id", &id, "--network", "fnet"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = cli(&env, Some(step), &["detach", &id]);
        assert!(
            text(&out.stderr).contains(&format!("aborting at {step}")),
            "{step} not reached: {}",
            text(&out.stderr)
        );
        let out = cli(&env, None, &["detach", &id]);
        // The abort may have come after everything of the container was gone
        // but its record: then "no container" is the right answer.
        assert!(
            out.status.success() || text(&out.stderr).contains("no container"),
            "{step}: detach again: {}",
            text(&out.stderr)
        );
        assert_same_host(
            &format!("abort at {step}, detach again"),
            &before,
            &snapshot(&env),
        );
    }
}
