//! The mount/UTS work inside a container, done both ways: in a thread of
//! this (threaded) process, as the isolator does by default, and by the
//! `cni-isolator-setup` helper, its fallback. Same effect inside the
//! container, nothing outside it. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cni_isolator::setup::{InThreadError, SetupFlags, run_helper, run_in_thread};
use common::*;
use std::path::Path;

fn flags_for(env: &Env, pid: i32, tag: &str) -> SetupFlags {
    let hosts = env.base.join(format!("hosts.{tag}"));
    let hostname = env.base.join(format!("hostname.{tag}"));
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n10.222.5.{pid} {tag}\n")).unwrap();
    std::fs::write(&hostname, tag).unwrap();
    SetupFlags {
        pid,
        hostname: Some(tag.to_string()),
        rootfs: None,
        etc_hosts_path: Some(hosts),
        etc_hostname_path: Some(hostname),
        etc_resolv_conf: Some("/etc/resolv.conf".into()),
        bind_host_files: true,
        bind_readonly: false,
    }
}

fn own_namespaces() -> (std::path::PathBuf, std::path::PathBuf, String) {
    (
        std::fs::read_link("/proc/thread-self/ns/mnt").unwrap(),
        std::fs::read_link("/proc/thread-self/ns/uts").unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
    )
}

#[test]
#[ignore = "needs root"]
fn thread_and_helper_bind_the_files_and_set_the_hostname() {
    let mut env = Env::new();
    let host_hosts = std::fs::read("/etc/hosts").ok();
    let before = own_namespaces();
    // Other threads exist (the test harness's, and one more here), so the
    // thread path is exercised in a threaded process.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let busy = std::thread::spawn(move || {
        let _ = stop_rx.recv();
    });

    let in_thread = env.container_process();
    run_in_thread(&flags_for(&env, in_thread, "thread")).unwrap();
    let by_helper = env.container_process();
    run_helper(
        Path::new(env!("CARGO_BIN_EXE_cni-isolator-setup")),
        &flags_for(&env, by_helper, "helper"),
    )
    .unwrap();

    for (pid, tag) in [(in_thread, "thread"), (by_helper, "helper")] {
        assert_eq!(in_container(pid, &["hostname"]).trim(), tag);
        assert_eq!(
            in_container(pid, &["cat", "/etc/hosts"]),
            format!("127.0.0.1 localhost\n10.222.5.{pid} {tag}\n")
        );
        assert_eq!(in_container(pid, &["cat", "/etc/hostname"]), tag);
        // A plain bind, as Mesos's: the options of the mount the file comes
        // from, no nosuid/nodev/noexec of its own.
        let opts = in_container(pid, &["findmnt", "-n", "-o", "OPTIONS", "/etc/hosts"]);
        let source = env.base.join(format!("hosts.{tag}"));
        let source_opts = sh(
            "findmnt",
            &["-n", "-o", "OPTIONS", "--target", source.to_str().unwrap()],
        );
        assert_eq!(
            opts.trim(),
            source_opts.trim(),
            "{tag}: /etc/hosts mounted with {opts}"
        );
    }
    // Nothing leaked into this process or the host.
    assert_eq!(own_namespaces(), before);
    assert_eq!(std::fs::read("/etc/hosts").ok(), host_hosts);
    let _ = stop_tx.send(());
    busy.join().unwrap();
}

#[test]
#[ignore = "needs root"]
fn thread_reports_failures_like_the_helper() {
    let env = Env::new();
    // No such process: nothing can be joined.
    let mut flags = flags_for(&env, i32::MAX, "gone");
    let e = run_in_thread(&flags).unwrap_err();
    assert!(
        matches!(&e, InThreadError::Failed(m) if m.starts_with(&format!("cannot open /proc/{}/ns/mnt", i32::MAX))),
        "{e:?}"
    );
    let helper = run_helper(Path::new(env!("CARGO_BIN_EXE_cni-isolator-setup")), &flags).unwrap_err();
    assert!(
        helper
            .to_string()
            .contains(&format!("cannot open /proc/{}/ns/mnt", i32::MAX)),
        "{helper}"
    );
    // A missing source file fails the bind, in the container only.
    let mut env = env;
    let pid = env.container_process();
    flags = flags_for(&env, pid, "missing");
    flags.etc_hosts_path = Some(env.base.join("no-such-hosts"));
    let e = run_in_thread(&flags).unwrap_err();
    assert!(
        matches!(&e, InThreadError::Failed(m) if m.starts_with("cannot bind-mount")),
        "{e:?}"
    );
}
