//! The `cni-isolator` command line, exec'd as a user would. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::process::{Command, Output, Stdio};

fn cli(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cni-isolator"))
        .arg(format!("--config-dir={}", env.conf.display()))
        .arg(format!("--plugins-dir={}:/usr/lib/cni", env.plugins.display()))
        .arg(format!("--root-dir={}", env.runtime.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
#[ignore = "needs root"]
fn run_attaches_runs_and_cleans_up() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let out = cli(
        &env,
        &[
            "run",
            "--id",
            "r1",
            "--network",
            "net1",
            "--hostname",
            "web",
            "--",
            "sh",
            "-c",
            "hostname; cat /etc/hosts; echo LIBPROCESS_IP=$LIBPROCESS_IP; ip -j link show lo; exit 7",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.starts_with("r1  eth0=net1:10.222.3.4\nweb\n"), "{stdout}");
    assert!(stdout.contains("10.222.3.4 web\n"), "{stdout}");
    assert!(stdout.contains("LIBPROCESS_IP=0.0.0.0"), "{stdout}");
    assert!(stdout.contains("\"UP\""), "lo down: {stdout}");
    assert!(!exists(&env.root().join("r1")));
    assert_eq!(env.calls().len(), 2);
    assert!(env.calls()[1].starts_with("DEL r1 eth0"));
}

#[test]
#[ignore = "needs root"]
fn run_with_unknown_network_fails_cleanly() {
    let env = Env::new();
    let out = cli(&env, &["run", "--network", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown CNI network \"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs root"]
fn publish_reaches_the_plugin_as_port_mappings() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.config(
        "pm.conf",
        r#"{"cniVersion":"0.4.0","name":"pm","type":"mockcni","capabilities":{"portMappings":true}}"#,
    );
    let out = cli(
        &env,
        &["run", "--network", "pm", "--publish", "18080:80", "--", "true"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let add = env.stdin_of("ADD", "eth0");
    assert!(
        add.contains(r#""port_mappings":[{"container_port":80,"host_port":18080}]"#),
        "{add}"
    );
    assert!(
        add.contains(
            r#""runtimeConfig":{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}"#
        ),
        "{add}"
    );
    let del = env.stdin_of("DEL", "eth0");
    assert!(del.contains("prevResult"), "{del}");
}

#[test]
#[ignore = "needs root"]
fn attach_status_list_usage_detach() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let out = cli(&env, &["attach", "--id", "a1", "--network", "net1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ns = env.root().join("a1/ns");
    assert!(cni_isolator::netns_pin::is_live_handle(&ns));

    let out = cli(&env, &["--json", "status", "a1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["network_infos"][0]["ip_addresses"][0]["ip_address"],
        "10.222.3.4"
    );
    let out = cli(&env, &["list"]);
    assert_eq!(text(&out.stdout), "a1  eth0=net1:10.222.3.4\n");
    let out = cli(&env, &["usage", "a1"]);
    assert!(
        text(&out.stdout).starts_with("rx: 0 packets"),
        "{}",
        text(&out.stdout)
    );
    // gc keeps it: attached without a process, its namespace is live.
    let out = cli(&env, &["gc"]);
    assert!(out.status.success());
    assert!(exists(&env.root().join("a1")));

    let out = cli(&env, &["detach", "a1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!exists(&env.root().join("a1")));
    assert_eq!(env.calls().len(), 2, "{:?}", env.calls());
    let out = cli(&env, &["detach", "a1"]);
    assert!(!out.status.success());
}

#[test]
#[ignore = "needs root"]
fn gc_removes_containers_whose_process_is_gone() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let pid = env.container_process();
    let out = cli(
        &env,
        &[
            "attach",
            "--id",
            "g1",
            "--network",
            "net1",
            "--pid",
            &pid.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(in_container(pid, &["cat", "/etc/hostname"]), "g1");
    let out = cli(&env, &["gc"]);
    assert!(out.status.success());
    assert!(exists(&env.root().join("g1")), "live container collected");
    env.kill_all();
    let out = cli(&env, &["gc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!exists(&env.root().join("g1")));
    assert!(env.calls()[1].starts_with("DEL g1 eth0"));
}

#[test]
#[ignore = "needs root"]
fn networks_lists_configs_and_skipped_files() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    env.config("bad.conf", "{");
    let out = cli(&env, &["networks"]);
    assert_eq!(text(&out.stdout), "net1\n");
    assert!(text(&out.stderr).contains("bad.conf"));
    let help = cli(&env, &["--help"]);
    assert!(text(&help.stdout).contains("USAGE"));
}

#[test]
#[ignore = "needs root"]
fn publish_names_any_network() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("plain", "mockcni");
    env.config(
        "pm.conf",
        r#"{"cniVersion":"0.4.0","name":"pm","type":"mockcni","capabilities":{"portMappings":true}}"#,
    );
    let out = cli(
        &env,
        &[
            "run",
            "--network",
            "plain,pm",
            "--publish",
            "pm:18081:81/udp",
            "--",
            "true",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let eth0 = env.stdin_of("ADD", "eth0");
    let eth1 = env.stdin_of("ADD", "eth1");
    assert!(!eth0.contains("18081"), "{eth0}");
    assert!(
        eth1.contains(r#""port_mappings":[{"container_port":81,"host_port":18081,"protocol":"udp"}]"#),
        "{eth1}"
    );
    let out = cli(
        &env,
        &["run", "--network", "plain", "--publish", "nope:1:2", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("\"nope\""), "{}", text(&out.stderr));
}

// CNI_ARGS given at attach reach the DEL of a single-config network, even
// when the DEL runs in another process (detach) than the ADD.
#[test]
#[ignore = "needs root"]
fn cni_args_of_a_single_config_are_passed_again_on_del() {
    let env = Env::new();
    env.script(
        "argscni",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND args=$CNI_ARGS\" >> {}\n\
             [ \"$CNI_COMMAND\" = ADD ] && echo '{}'\nexit 0\n",
            env.log.display(),
            V020_RESULT
        ),
    );
    env.mock_network("net1", "argscni");
    let out = cli(
        &env,
        &[
            "attach",
            "--id",
            "ca1",
            "--network",
            "net1",
            "--cni-args",
            "FOO=bar;IgnoreUnknown=1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&env, &["detach", "ca1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        env.calls(),
        [
            "ADD args=FOO=bar;IgnoreUnknown=1",
            "DEL args=FOO=bar;IgnoreUnknown=1"
        ]
    );
}
