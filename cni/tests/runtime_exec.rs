//! Finding and running real plugin processes: results, errors, timeouts,
//! environment, "text file busy".
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "fixtures/support.rs"]
mod support;

use cni::Code;
use cni::plugin::Command;
use cni::runtime::exec::{self, Exec, Invocation, ProcessExec, RuntimeConf};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{FakePlugins, TempDir, process_gone_or_zombie, write_executable};

const RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":0}]}"#;

fn add_invocation(stdin: &str) -> Invocation {
    let mut rt = RuntimeConf::new("ctr1", Some("/run/netns/ctr1".into()), "eth0");
    rt.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAME".into(), "p".into()),
    ];
    Invocation::runtime(
        Command::Add,
        &rt,
        &["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        stdin.into(),
    )
    .with_timeout(Some(Duration::from_secs(20)))
}

#[test]
fn first_executable_regular_file_in_path_order_wins() {
    let a = TempDir::named("rcni-find-a");
    let b = TempDir::named("rcni-find-b");
    let c = TempDir::named("rcni-find-c");
    // a: a directory of that name; b: a file without exec bits; c: the plugin.
    std::fs::create_dir(a.path().join("myplugin")).unwrap();
    std::fs::write(b.path().join("myplugin"), "#!/bin/sh\n").unwrap();
    write_executable(&c.path().join("myplugin"), "#!/bin/sh\n");
    let dirs: Vec<PathBuf> = vec![
        a.path().to_path_buf(),
        b.path().to_path_buf(),
        c.path().to_path_buf(),
    ];
    assert_eq!(
        exec::find_in_path("myplugin", &dirs).unwrap(),
        c.path().join("myplugin")
    );

    write_executable(&b.path().join("other"), "#!/bin/sh\n");
    write_executable(&c.path().join("other"), "#!/bin/sh\n");
    assert_eq!(
        exec::find_in_path("other", &dirs).unwrap(),
        b.path().join("other")
    );

    let e = exec::find_in_path("absent", &dirs).unwrap_err();
    assert_eq!(e.code, Code::INTERNAL);
    assert!(
        e.msg.starts_with(r#"failed to find plugin "absent" in path ["#),
        "{e}"
    );
    assert_eq!(
        exec::find_in_path("../myplugin", &dirs).unwrap_err().code,
        Code::INVALID_CONFIG
    );
}

#[test]
fn add_returns_the_result_and_passes_stdin_and_cni_env() {
    let fp = FakePlugins::new("exec-add");
    let plugin = fp.result_plugin("good", RESULT);
    let stdin = r#"{"cniVersion":"1.0.0","name":"n","type":"good"}"#;
    let out = exec::exec_with_result(&ProcessExec, &plugin, &add_invocation(stdin)).unwrap();
    assert_eq!(out.result.ips[0].address.to_string(), "10.0.0.2/24");
    assert_eq!(out.raw["interfaces"][0]["name"], "eth0");

    let calls = fp.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.stdin, stdin.as_bytes());
    assert_eq!(call.env("CNI_COMMAND"), Some("ADD"));
    assert_eq!(call.env("CNI_CONTAINERID"), Some("ctr1"));
    assert_eq!(call.env("CNI_NETNS"), Some("/run/netns/ctr1"));
    assert_eq!(call.env("CNI_IFNAME"), Some("eth0"));
    assert_eq!(call.env("CNI_ARGS"), Some("IgnoreUnknown=1;K8S_POD_NAME=p"));
    assert_eq!(call.env("CNI_PATH"), Some("/opt/cni/bin:/usr/lib/cni"));
    assert!(
        call.env("PATH").is_some(),
        "the rest of the environment is inherited"
    );
}

#[test]
fn result_without_version_is_stamped_with_the_config_version() {
    let fp = FakePlugins::new("exec-noversion");
    let plugin = fp.result_plugin("nov", r#"{"ips":[{"address":"10.0.0.3/24"}]}"#);
    let out = exec::exec_with_result(
        &ProcessExec,
        &plugin,
        &add_invocation(r#"{"cniVersion":"0.4.0","name":"n"}"#),
    )
    .unwrap();
    assert_eq!(out.raw["cniVersion"], "0.4.0");
}

#[test]
fn error_object_on_stdout_keeps_its_code() {
    let fp = FakePlugins::new("exec-err");
    let plugin = fp.plugin(
        "bad",
        r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no bridge"}'; exit 1"#,
    );
    let e = exec::exec_with_result(&ProcessExec, &plugin, &add_invocation("{}")).unwrap_err();
    assert_eq!(e.code, Code::INVALID_CONFIG);
    assert_eq!(e.msg, "bad config");
    assert_eq!(e.details, "no bridge");
}

#[test]
fn failure_with_only_stderr_builds_the_message_from_stderr() {
    let fp = FakePlugins::new("exec-stderr");
    let plugin = fp.plugin("loud", "echo 'cannot open /dev/net/tun' >&2; exit 3");
    let inv = add_invocation("{}").with_pass_stderr(false);
    let e = exec::exec_without_result(&ProcessExec, &plugin, &inv).unwrap_err();
    assert_eq!(e.code, Code::INTERNAL);
    assert_eq!(
        e.msg,
        r#"netplugin failed: "cannot open /dev/net/tun\n": exit status 3"#
    );

    let quiet = fp.plugin("quiet", "exit 2");
    let e = exec::exec_without_result(&ProcessExec, &quiet, &inv).unwrap_err();
    assert_eq!(e.msg, "netplugin failed with no error message: exit status 2");
}

#[test]
fn del_ignores_stdout() {
    let fp = FakePlugins::new("exec-del");
    let plugin = fp.plugin("chatty", "echo 'not json at all'; exit 0");
    let rt = RuntimeConf::new("c", None, "eth0");
    let inv = Invocation::runtime(Command::Del, &rt, &[fp.bin()], b"{}".to_vec());
    exec::exec_without_result(&ProcessExec, &plugin, &inv).unwrap();
    assert_eq!(
        fp.calls()[0].env("CNI_NETNS"),
        Some(""),
        "no netns is passed as an empty value"
    );
}

#[test]
fn timeout_kills_the_plugin_and_what_it_started_and_reaps_it() {
    let fp = FakePlugins::new("exec-timeout");
    let pids = fp.root.path().join("pids");
    let plugin = fp.plugin(
        "slow",
        &format!("sleep 30 &\necho \"$$ $!\" > '{}'\nwait", pids.display()),
    );
    let inv = add_invocation("{}").with_timeout(Some(Duration::from_millis(500)));
    let start = Instant::now();
    let e = exec::exec_with_result(&ProcessExec, &plugin, &inv).unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.code, Code::INTERNAL);
    assert!(e.msg.contains("timed out after 500ms"), "{e}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let text = std::fs::read_to_string(&pids).unwrap();
    let (shell, sleeper) = text.trim().split_once(' ').unwrap();
    let shell: u32 = shell.parse().unwrap();
    let sleeper: u32 = sleeper.parse().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{shell}")).exists(),
        "the plugin was reaped, no zombie"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone_or_zombie(sleeper) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        process_gone_or_zombie(sleeper),
        "the plugin's child was killed too"
    );
}

#[test]
fn exit_before_reading_a_large_stdin_does_not_hang() {
    let fp = FakePlugins::new("exec-nostdin");
    let plugin = fp.bin().join("noread");
    write_executable(&plugin, &format!("#!/bin/sh\nprintf '%s' '{RESULT}'\n"));
    let big = format!(r#"{{"cniVersion":"1.0.0","pad":"{}"}}"#, "x".repeat(1 << 20));
    let out = exec::exec_with_result(&ProcessExec, &plugin, &add_invocation(&big)).unwrap();
    assert_eq!(out.result.ips.len(), 1);

    // And a plugin that reads all of it and prints a lot back.
    let echo = fp.bin().join("echo-back");
    write_executable(&echo, "#!/bin/sh\ncat\n");
    let stdout = ProcessExec.exec_plugin(&echo, &add_invocation(&big)).unwrap();
    assert_eq!(stdout.len(), big.len());
}

#[test]
fn text_file_busy_is_retried() {
    let fp = FakePlugins::new("exec-txtbsy");
    let path = fp.bin().join("busy");
    write_executable(&path, &format!("#!/bin/sh\nprintf '%s' '{RESULT}'\n"));
    // Keep the binary open for writing, as an installer copying it would.
    let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // The writer goes only after the first exec has failed with ETXTBSY (the
    // exec runs on another thread; the writer is dropped once `busy` is seen
    // refused here), so the success below can only come from a retry.
    let busy_now = std::process::Command::new(&path).output();
    assert_eq!(
        busy_now.err().and_then(|e| e.raw_os_error()),
        Some(nix::libc::ETXTBSY),
        "the binary is not busy: the test proves nothing"
    );
    let exec = std::thread::spawn(move || exec::exec_with_result(&ProcessExec, &path, &add_invocation("{}")));
    std::thread::sleep(Duration::from_millis(50));
    drop(writer);
    let out = exec.join().unwrap().unwrap();
    assert_eq!(out.result.ips.len(), 1);
}

#[test]
fn missing_binary_is_an_error_not_a_panic() {
    let e = ProcessExec
        .exec_plugin(&PathBuf::from("/nonexistent/rcni-plugin"), &add_invocation("{}"))
        .unwrap_err();
    assert_eq!(e.code, Code::INTERNAL);
    assert!(e.msg.contains("cannot execute plugin"), "{e}");
}
