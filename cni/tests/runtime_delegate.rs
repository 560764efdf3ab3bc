//! A plugin delegating to another (bridge to IPAM): the delegate is found in
//! CNI_PATH and runs with the caller's environment and the given config.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "fixtures/support.rs"]
mod support;

use cni::Code;
use cni::NetConf;
use cni::plugin::{CmdArgs, Command};
use cni::runtime::{
    Delegate, ProcessExec, delegate_add, delegate_check, delegate_del, delegate_gc, delegate_status,
};
use cni::version::Version;
use std::path::PathBuf;
use std::time::Duration;
use support::FakePlugins;

const STDIN: &str = r#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge","ipam":{"type":"fake-ipam","subnet":"10.9.0.0/16"}}"#;

fn cmd_args(command: Command, path: Vec<PathBuf>) -> CmdArgs {
    let raw_args = "IgnoreUnknown=1;IP=10.9.0.7".to_string();
    CmdArgs {
        command,
        container_id: "ctr9".into(),
        netns: Some("/run/netns/ctr9".into()),
        netns_state: None,
        ifname: "eth1".into(),
        raw_args,
        path,
        stdin: STDIN.as_bytes().to_vec(),
        config: NetConf::from_slice(STDIN.as_bytes()).unwrap(),
        version: Version::V1_0_0,
    }
}

#[test]
fn add_returns_the_delegate_result_with_the_callers_environment() {
    let fp = FakePlugins::new("delegate-add");
    fp.result_plugin(
        "fake-ipam",
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.7/16","gateway":"10.9.0.1"}]}"#,
    );
    let cmd = cmd_args(Command::Add, vec![fp.root.path().join("nothing-here"), fp.bin()]);
    let result = delegate_add("fake-ipam", STDIN.as_bytes(), &cmd).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.9.0.7/16");
    assert!(result.interfaces.is_empty(), "IPAM results are abbreviated");

    let call = &fp.calls()[0];
    assert_eq!(call.stdin, STDIN.as_bytes(), "the whole config, unchanged");
    assert_eq!(call.env("CNI_COMMAND"), Some("ADD"));
    assert_eq!(call.env("CNI_CONTAINERID"), Some("ctr9"));
    assert_eq!(call.env("CNI_NETNS"), Some("/run/netns/ctr9"));
    assert_eq!(call.env("CNI_IFNAME"), Some("eth1"));
    assert_eq!(call.env("CNI_ARGS"), Some("IgnoreUnknown=1;IP=10.9.0.7"));
    let path = format!(
        "{}:{}",
        fp.root.path().join("nothing-here").display(),
        fp.bin().display()
    );
    assert_eq!(call.env("CNI_PATH"), Some(path.as_str()));
}

#[test]
fn every_verb_is_forwarded_with_its_command() {
    let fp = FakePlugins::new("delegate-verbs");
    fp.result_plugin("fake-ipam", "{}");
    let cmd = cmd_args(Command::Del, vec![fp.bin()]);
    delegate_del("fake-ipam", STDIN.as_bytes(), &cmd).unwrap();
    delegate_check("fake-ipam", STDIN.as_bytes(), &cmd).unwrap();
    delegate_gc("fake-ipam", STDIN.as_bytes(), &cmd).unwrap();
    delegate_status("fake-ipam", STDIN.as_bytes(), &cmd).unwrap();
    let verbs: Vec<String> = fp.calls().into_iter().map(|c| c.command).collect();
    assert_eq!(verbs, ["DEL", "CHECK", "GC", "STATUS"]);
}

#[test]
fn delegate_errors_keep_their_code() {
    let fp = FakePlugins::new("delegate-err");
    fp.plugin(
        "fake-ipam",
        r#"echo '{"code":100,"msg":"no IP addresses available in range set"}'; exit 1"#,
    );
    let cmd = cmd_args(Command::Add, vec![fp.bin()]);
    let e = delegate_add("fake-ipam", STDIN.as_bytes(), &cmd).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (Code(100), "no IP addresses available in range set")
    );

    let e = delegate_add("host-local-absent", STDIN.as_bytes(), &cmd).unwrap_err();
    assert_eq!(e.code, Code::INTERNAL);
    assert!(
        e.msg
            .starts_with(r#"failed to find plugin "host-local-absent" in path"#),
        "{e}"
    );
}

#[test]
fn delegate_timeout_is_optional() {
    let fp = FakePlugins::new("delegate-timeout");
    fp.plugin("fake-ipam", "sleep 20");
    let cmd = cmd_args(Command::Add, vec![fp.bin()]);
    let d = Delegate::new(&ProcessExec).with_timeout(Some(Duration::from_millis(300)));
    let e = d.add("fake-ipam", STDIN.as_bytes(), &cmd).unwrap_err();
    assert!(e.msg.contains("timed out"), "{e}");
}
