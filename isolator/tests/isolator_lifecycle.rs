//! The Mesos `cni_isolator_tests.cpp` scenarios, adapted to the library, and
//! rcni's additions (conflists, Go plugins, timeouts, every result version,
//! recovery of the C++ isolator's layout). Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cni_isolator::files::DefaultDns;
use cni_isolator::{
    ContainerClass, ContainerConfig, ContainerId, ContainerInfo, ContainerState, Isolator, Namespace,
    NetworkInfo, Options,
};
use common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn started(env: &mut Env, iso: &Isolator, id: &ContainerId, config: &ContainerConfig) -> i32 {
    iso.prepare(id, config).unwrap();
    let pid = env.container_process();
    iso.isolate(id, pid).unwrap();
    pid
}

// ROOT_VerifyCheckpointedInfo + ROOT_EnvironmentLibprocessIP.
#[test]
#[ignore = "needs root"]
fn checkpointed_files_exist_while_running_and_are_removed_by_cleanup() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    let id = cid("c1");
    let launch = iso.prepare(&id, &config_for(&["net1"])).unwrap().unwrap();
    assert_eq!(
        launch.environment,
        vec![("LIBPROCESS_IP".into(), "0.0.0.0".into())]
    );
    assert_eq!(
        launch.clone_namespaces,
        vec![Namespace::Mount, Namespace::Net, Namespace::Uts]
    );
    let pid = env.container_process();
    iso.isolate(&id, pid).unwrap();

    let dir = env.root().join("c1");
    for f in [
        "ns",
        "hostname",
        "hosts",
        "resolv.conf",
        "net1/network.conf",
        "net1/eth0/network.info",
    ] {
        assert!(exists(&dir.join(f)), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("net1/network.conf")).unwrap(),
        r#"{"args":{"org.apache.mesos":{"network_info":{"name":"net1"}}},"cniVersion":"0.2.0","name":"net1","type":"mockcni"}"#
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("net1/eth0/network.info"))
            .unwrap()
            .trim(),
        V020_RESULT
    );
    assert_eq!(std::fs::read_to_string(dir.join("hostname")).unwrap(), "c1");
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts")).unwrap(),
        "127.0.0.1 localhost\n10.222.3.4 c1\n"
    );
    // Seen from inside the container.
    assert_eq!(in_container(pid, &["hostname"]).trim(), "c1");
    assert_eq!(
        in_container(pid, &["cat", "/etc/hosts"]),
        "127.0.0.1 localhost\n10.222.3.4 c1\n"
    );
    let lo = in_container(pid, &["ip", "-j", "link", "show", "lo"]);
    assert!(lo.contains("\"UP\""), "lo is down: {lo}");
    assert_eq!(
        env.calls(),
        vec![format!("ADD c1 eth0 netns={}", dir.join("ns").display())]
    );

    iso.cleanup(&id).unwrap();
    assert!(!exists(&dir));
    assert_eq!(
        env.calls()[1],
        format!("DEL c1 eth0 netns={}", dir.join("ns").display())
    );
    assert_eq!(env.stdin_of("DEL", "eth0"), env.stdin_of("ADD", "eth0"));
}

// ROOT_VerifyResolverConfig: byte-exact resolv.conf from the plugin's DNS.
#[test]
#[ignore = "needs root"]
fn resolv_conf_comes_from_the_plugin_result() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    let pid = started(&mut env, &iso, &cid("c1"), &config_for(&["net1"]));
    let expected = "domain mesos.test\nsearch a.test b.test\noptions ndots:2\nnameserver 10.222.0.53\n";
    assert_eq!(
        std::fs::read_to_string(env.root().join("c1/resolv.conf")).unwrap(),
        expected
    );
    assert_eq!(in_container(pid, &["cat", "/etc/resolv.conf"]), expected);
    iso.cleanup(&cid("c1")).unwrap();
}

// DefaultContainerDNSCniTest.ROOT_VerifyDefaultDNS /0 /1 /2.
#[test]
#[ignore = "needs root"]
fn default_dns_per_network_wildcard_and_both() {
    let no_dns = r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.222.3.5/24"},"dns":{}}"#;
    let cases = [
        (
            r#"{"mesos":[{"network_mode":"CNI","network_name":"net1","dns":{"nameservers":["10.222.0.1"],"search":["s1"]}}]}"#,
            "search s1\nnameserver 10.222.0.1\n",
        ),
        (
            r#"{"mesos":[{"network_mode":"CNI","dns":{"nameservers":["10.222.0.2"],"domain":"w"}}]}"#,
            "domain w\nnameserver 10.222.0.2\n",
        ),
        (
            r#"{"mesos":[{"network_mode":"CNI","dns":{"nameservers":["10.222.0.2"]}},{"network_mode":"CNI","network_name":"net1","dns":{"nameservers":["10.222.0.1"]}}]}"#,
            "nameserver 10.222.0.1\n",
        ),
    ];
    for (flag, expected) in cases {
        let mut env = Env::new();
        env.mock_plugin("mockcni", no_dns);
        env.mock_network("net1", "mockcni");
        let mut o = env.options();
        o.default_dns = DefaultDns::parse(flag).unwrap();
        let iso = Isolator::new(o).unwrap();
        let pid = started(&mut env, &iso, &cid("c1"), &config_for(&["net1"]));
        assert_eq!(
            in_container(pid, &["cat", "/etc/resolv.conf"]),
            expected,
            "flag {flag}"
        );
        iso.cleanup(&cid("c1")).unwrap();
    }
}

// No DNS anywhere: the host's resolv.conf is bound, none is written.
#[test]
#[ignore = "needs root"]
fn host_resolv_conf_without_nameservers() {
    let mut env = Env::new();
    env.mock_plugin(
        "mockcni",
        r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.222.3.6/24"}}"#,
    );
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    let pid = started(&mut env, &iso, &cid("c1"), &config_for(&["net1"]));
    assert!(!exists(&env.root().join("c1/resolv.conf")));
    assert_eq!(
        in_container(pid, &["cat", "/etc/resolv.conf"]),
        std::fs::read_to_string("/etc/resolv.conf").unwrap()
    );
    iso.cleanup(&cid("c1")).unwrap();
}

// ROOT_OverrideHostname.
#[test]
#[ignore = "needs root"]
fn hostname_override() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    let mut config = config_for(&["net1"]);
    config.container_info.as_mut().unwrap().hostname = Some("test".into());
    let pid = started(&mut env, &iso, &cid("c1"), &config);
    assert_eq!(in_container(pid, &["hostname"]).trim(), "test");
    assert!(in_container(pid, &["cat", "/etc/hosts"]).contains("10.222.3.4 test\n"));
    iso.cleanup(&cid("c1")).unwrap();
}

// ROOT_FailedPlugin: ADD fails -> isolate fails with the plugin's output; cleanup DELs.
#[test]
#[ignore = "needs root"]
fn failed_plugin_fails_isolate_and_cleanup_still_dels() {
    let mut env = Env::new();
    env.script(
        "failcni",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND\" >> {}\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\necho 'it broke' >&2\nexit 1\n",
            env.log.display()
        ),
    );
    env.mock_network("net1", "failcni");
    let iso = env.isolator();
    let id = cid("c1");
    iso.prepare(&id, &config_for(&["net1"])).unwrap();
    let pid = env.container_process();
    let err = iso.isolate(&id, pid).unwrap_err().chain();
    assert!(err.contains("it broke"), "{err}");
    iso.cleanup(&id).unwrap();
    assert_eq!(env.calls(), ["ADD", "DEL"]);
    assert!(!exists(&env.root().join("c1")));
}

// ROOT_DestroyWhilePreparing: cleanup between prepare and isolate.
#[test]
#[ignore = "needs root"]
fn cleanup_while_preparing_runs_no_del() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    iso.prepare(&cid("c1"), &config_for(&["net1"])).unwrap();
    assert!(
        iso.prepare(&cid("c1"), &config_for(&["net1"])).is_err(),
        "prepared twice"
    );
    iso.cleanup(&cid("c1")).unwrap();
    assert!(env.calls().is_empty());
    assert!(iso.containers().is_empty());
}

// ROOT_SlaveRecovery: a restarted isolator recovers without DEL; cleanup DELs later.
#[test]
#[ignore = "needs root"]
fn recovery_after_restart_runs_no_del() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let id = cid("c1");
    {
        let iso = env.isolator();
        started(&mut env, &iso, &id, &config_for(&["net1"]));
    }
    let iso = env.isolator();
    let state = ContainerState {
        container_id: id.clone(),
        network_infos: vec![NetworkInfo::named("net1")],
    };
    let report = iso.recover(&[state], &HashSet::new()).unwrap();
    assert_eq!(report.recovered, vec![id.clone()]);
    assert_eq!(env.calls().len(), 1, "DEL during recovery: {:?}", env.calls());
    let st = iso.status(&id).unwrap();
    assert_eq!(
        st.network_infos[0].ip_addresses[0].ip_address.as_deref(),
        Some("10.222.3.4")
    );
    iso.cleanup(&id).unwrap();
    assert!(env.calls()[1].starts_with("DEL c1 eth0 netns=/"));
}

// ROOT_DynamicAddDelofCniConfig.
#[test]
#[ignore = "needs root"]
fn configs_added_and_removed_without_restart() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    let iso = env.isolator();
    assert!(iso.prepare(&cid("c1"), &config_for(&["net1"])).is_err());
    env.mock_network("net1", "mockcni");
    assert!(iso.prepare(&cid("c2"), &config_for(&["net1"])).unwrap().is_some());
    std::fs::remove_file(env.conf.join("net1.conf")).unwrap();
    assert!(iso.prepare(&cid("c3"), &config_for(&["net1"])).is_err());
    iso.cleanup(&cid("c2")).unwrap();
}

// ROOT_VerifyCniRootDir + ROOT_CleanupAfterReboot: with persist the root is
// under the work dir; after a "reboot" (ns handle no longer a namespace)
// recovery DELs the unknown orphan without CNI_NETNS.
#[test]
#[ignore = "needs root"]
fn persistent_root_and_cleanup_after_reboot() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let work = env.base.join("work");
    let persist_root = Options::root_dir_for(&env.runtime, &work, true);
    assert!(persist_root.starts_with(&work));
    let mut o = env.options();
    o.root_dir = Some(persist_root.clone());
    o.durable_checkpoints = true;
    let id = cid("c1");
    {
        let iso = Isolator::new(o.clone()).unwrap();
        started(&mut env, &iso, &id, &config_for(&["net1"]));
    }
    assert!(exists(&persist_root.join("c1/ns")));
    // Reboot: the process is gone and the handle is unmounted.
    env.kill_all();
    nix::mount::umount2(&persist_root.join("c1/ns"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    let iso = Isolator::new(o).unwrap();
    let report = iso.recover(&[], &HashSet::new()).unwrap();
    assert_eq!(report.cleaned, vec![id]);
    assert_eq!(env.calls()[1], "DEL c1 eth0 netns=none");
    assert!(!exists(&persist_root.join("c1")));
    for _ in 0..3 {
        let _ = nix::mount::umount2(&persist_root, nix::mount::MntFlags::MNT_DETACH);
    }
}

// NestedContainerCniTest: a nested container joins its parent's namespaces
// and sees its files; one with its own network gets `<parent>.<child>`.
#[test]
#[ignore = "needs root"]
fn nested_containers_share_or_own_the_network() {
    let mut env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let iso = env.isolator();
    let parent = cid("p1");
    let ppid = started(&mut env, &iso, &parent, &config_for(&["net1"]));

    let child = ContainerId::nested(&parent, "k1");
    let launch = iso.prepare(&child, &ContainerConfig::default()).unwrap().unwrap();
    assert_eq!(launch.enter_namespaces, vec![Namespace::Net, Namespace::Uts]);
    assert_eq!(launch.clone_namespaces, vec![Namespace::Mount]);
    let t = ppid.to_string();
    let kpid = env.spawn_in(&[
        "nsenter",
        "-t",
        &t,
        "-n",
        "-u",
        "--",
        "unshare",
        "--mount",
        "--propagation",
        "unchanged",
        "sleep",
        "1000",
    ]);
    iso.isolate(&child, kpid).unwrap();
    assert_eq!(in_container(kpid, &["hostname"]).trim(), "p1");
    assert!(in_container(kpid, &["cat", "/etc/hosts"]).contains("10.222.3.4 p1"));
    assert_eq!(iso.status(&child).unwrap(), iso.status(&parent).unwrap());

    // DEBUG: enters NET+UTS, no mount namespace, no state.
    let debug = ContainerId::nested(&parent, "dbg");
    let launch = iso
        .prepare(
            &debug,
            &ContainerConfig {
                container_class: Some(ContainerClass::Debug),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert!(launch.clone_namespaces.is_empty());
    assert!(!iso.containers().contains(&debug));

    // Own network: its own directory and hostname.
    let own = ContainerId::nested(&parent, "k2");
    iso.prepare(&own, &config_for(&["net1"])).unwrap();
    let opid = env.container_process();
    iso.isolate(&own, opid).unwrap();
    assert!(exists(&env.root().join("p1.k2/net1/eth0/network.info")));
    assert_eq!(in_container(opid, &["hostname"]).trim(), "p1.k2");
    assert!(env.calls().iter().any(|c| c.starts_with("ADD p1.k2 eth0")));

    iso.cleanup(&child).unwrap();
    iso.cleanup(&own).unwrap();
    iso.cleanup(&parent).unwrap();
    assert!(iso.containers().is_empty());
    assert_eq!(env.calls().iter().filter(|c| c.starts_with("DEL")).count(), 2);
}

// Host network with an image: host files bound read-only into the rootfs.
#[test]
#[ignore = "needs root"]
fn host_network_with_rootfs_gets_host_files_read_only() {
    let mut env = Env::new();
    let iso = env.isolator();
    let rootfs = env.base.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let config = ContainerConfig {
        container_info: Some(ContainerInfo::default()),
        rootfs: Some(rootfs.clone()),
        ..Default::default()
    };
    assert!(iso.prepare(&cid("h1"), &config).unwrap().is_none());
    let pid = env.spawn_in(&[
        "unshare",
        "--net",
        "--mount",
        "--propagation",
        "unchanged",
        "sleep",
        "1000",
    ]);
    iso.isolate(&cid("h1"), pid).unwrap();
    let inside = in_container(pid, &["cat", &format!("{}/etc/resolv.conf", rootfs.display())]);
    assert_eq!(inside, std::fs::read_to_string("/etc/resolv.conf").unwrap());
    let t = pid.to_string();
    let append = std::process::Command::new("nsenter")
        .args(["-t", &t, "-m", "--", "sh", "-c"])
        .arg(format!("echo x >> {}/etc/resolv.conf", rootfs.display()))
        .output()
        .unwrap();
    assert!(!append.status.success(), "read-write bind");
    iso.cleanup(&cid("h1")).unwrap();
}

// Beyond Mesos: a hung plugin is killed at the timeout and the container
// can be cleaned up.
#[test]
#[ignore = "needs root"]
fn hung_plugin_is_timed_out() {
    let mut env = Env::new();
    env.script(
        "hangcni",
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] && exec sleep 1000\nexit 0\n",
    );
    env.mock_network("net1", "hangcni");
    let mut o = env.options();
    o.plugin_timeout = Some(Duration::from_millis(500));
    let iso = Isolator::new(o).unwrap();
    iso.prepare(&cid("c1"), &config_for(&["net1"])).unwrap();
    let pid = env.container_process();
    let t0 = Instant::now();
    let err = iso.isolate(&cid("c1"), pid).unwrap_err().chain();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(err.contains("timed out"), "{err}");
    iso.cleanup(&cid("c1")).unwrap();
}

// Beyond Mesos: results of every spec version give the container its address.
#[test]
#[ignore = "needs root"]
fn results_of_every_spec_version() {
    let results = [
        ("0.1.0", r#"{"cniVersion":"0.1.0","ip4":{"ip":"10.222.4.1/24"}}"#),
        ("0.2.0", r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.222.4.2/24"}}"#),
        (
            "0.3.0",
            r#"{"cniVersion":"0.3.0","ips":[{"version":"4","address":"10.222.4.3/24"}]}"#,
        ),
        (
            "0.3.1",
            r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.222.4.4/24"}]}"#,
        ),
        (
            "0.4.0",
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.222.4.5/24"}]}"#,
        ),
        (
            "1.0.0",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.222.4.6/24"},{"address":"fd00:222::6/64"}]}"#,
        ),
        (
            "1.1.0",
            r#"{"cniVersion":"1.1.0","ips":[{"address":"10.222.4.7/24"}]}"#,
        ),
    ];
    let mut env = Env::new();
    let iso = env.isolator();
    for (i, (version, result)) in results.iter().enumerate() {
        let plugin = format!("mock{i}");
        env.mock_plugin(&plugin, result);
        env.config(
            &format!("v{i}.conf"),
            &format!(r#"{{"cniVersion":"{version}","name":"v{i}","type":"{plugin}"}}"#),
        );
        let id = cid(&format!("c{i}"));
        let pid = started(&mut env, &iso, &id, &config_for(&[&format!("v{i}")]));
        let ip = format!("10.222.4.{}", i + 1);
        let st = iso.status(&id).unwrap();
        assert_eq!(
            st.network_infos[0].ip_addresses[0].ip_address.as_deref(),
            Some(ip.as_str()),
            "{version}"
        );
        let hosts = in_container(pid, &["cat", "/etc/hosts"]);
        assert!(hosts.contains(&format!("{ip} c{i}\n")), "{version}: {hosts}");
        if *version == "1.0.0" {
            assert!(hosts.contains("fd00:222::6 c5\n"), "{hosts}");
        }
        iso.cleanup(&id).unwrap();
    }
}

// Recovery of a root dir in the C++ isolator's layout, after a reboot, with
// one corrupt container that must not block the others.
#[test]
#[ignore = "needs root"]
fn recovers_and_cleans_a_cpp_isolator_root() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let root = env.root();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let conf = r#"{"args":{"org.apache.mesos":{"network_info":{"name":"net1"}}},"cniVersion":"0.2.0","name":"net1","type":"mockcni"}"#;
    // c-live: known to the agent; c-orphan: unknown; c-bad: two interfaces.
    for c in ["c-live", "c-orphan", "c-bad"] {
        write(&format!("{c}/ns"), "");
        write(&format!("{c}/hostname"), c);
        write(&format!("{c}/net1/network.conf"), conf);
        write(
            &format!("{c}/net1/eth0/network.info"),
            "{\n    \"cniVersion\": \"0.2.0\",\n    \"ip4\": {\n        \"ip\": \"10.222.9.9/24\"\n    },\n    \"dns\": {}\n}\n",
        );
    }
    write("c-bad/net1/eth1/network.info", "{}");
    // Stopped during ADD: network.conf without network.info still gets DEL.
    write("c-half/net1/network.conf", conf);
    std::fs::create_dir_all(root.join("c-half/net1/eth0")).unwrap();
    // Stopped before ADD: no network.conf, no DEL.
    std::fs::create_dir_all(root.join("c-early/net1/eth0")).unwrap();

    let iso = env.isolator();
    let live = ContainerState {
        container_id: cid("c-live"),
        network_infos: vec![NetworkInfo::named("net1")],
    };
    let report = iso.recover(&[live], &HashSet::new()).unwrap();
    assert_eq!(report.recovered, vec![cid("c-live")]);
    let mut cleaned: Vec<String> = report.cleaned.iter().map(ToString::to_string).collect();
    cleaned.sort();
    assert_eq!(cleaned, ["c-early", "c-half", "c-orphan"]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, "c-bad");
    assert!(exists(&root.join("c-bad")) && exists(&root.join("c-live")));
    let mut calls = env.calls();
    calls.sort();
    assert_eq!(
        calls,
        ["DEL c-half eth0 netns=none", "DEL c-orphan eth0 netns=none"]
    );
    assert_eq!(
        iso.status(&cid("c-live")).unwrap().network_infos[0].ip_addresses[0]
            .ip_address
            .as_deref(),
        Some("10.222.9.9")
    );
    iso.cleanup(&cid("c-live")).unwrap();
    assert!(!exists(&root.join("c-live")));
}

/// A Go bridge + host-local network (cniVersion 0.2.0, as Mesos needs it).
fn bridge_network(env: &mut Env, name: &str, subnet: &str) -> String {
    let br = short_unique("rib");
    env.track_link(&br);
    env.config(
        &format!("{name}.conf"),
        &format!(
            r#"{{"cniVersion":"0.2.0","name":"{name}","type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"{subnet}","dataDir":"{}"}}}}"#,
            env.base.join("ipam").display()
        ),
    );
    br
}

// VETH_VerifyResourceStatistics with Debian's Go bridge as a third-party
// network: all eight counters, and traffic shows up in them.
#[test]
#[ignore = "needs root"]
fn resource_statistics_through_a_go_bridge() {
    if go_plugin("bridge").is_none() {
        panic!("missing prerequisite: no /usr/lib/cni/bridge (scripts/test.sh installs what the tests need)");
    }
    let mut env = Env::new();
    bridge_network(&mut env, "gobr", "10.222.31.0/24");
    let iso = env.isolator();
    let id = cid("c1");
    let pid = started(&mut env, &iso, &id, &config_for(&["gobr"]));
    in_container(pid, &["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.222.31.1"]);
    let u = iso.usage(&id).unwrap();
    for (name, v) in [
        ("rx_packets", u.net_rx_packets),
        ("rx_bytes", u.net_rx_bytes),
        ("rx_errors", u.net_rx_errors),
        ("rx_dropped", u.net_rx_dropped),
        ("tx_packets", u.net_tx_packets),
        ("tx_bytes", u.net_tx_bytes),
        ("tx_errors", u.net_tx_errors),
        ("tx_dropped", u.net_tx_dropped),
    ] {
        assert!(v.is_some(), "net_{name} missing");
    }
    assert!(
        u.net_tx_packets.unwrap() >= 3 && u.net_rx_packets.unwrap() >= 3,
        "{u:?}"
    );
    let mut o = env.options();
    o.metrics = false;
    iso.cleanup(&id).unwrap();
}

// Beyond Mesos: a conflist (Go ptp + host-local, then tuning) at 1.0.0, and
// two networks at once (eth0 bridge, eth1 conflist) attached concurrently.
#[test]
#[ignore = "needs root"]
fn conflist_and_two_networks() {
    if go_plugin("ptp").is_none() {
        panic!("missing prerequisite: no /usr/lib/cni/ptp (scripts/test.sh installs what the tests need)");
    }
    let mut env = Env::new();
    bridge_network(&mut env, "gobr", "10.222.32.0/24");
    env.config(
        "chain.conflist",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"chain","plugins":[{{"type":"ptp","ipam":{{"type":"host-local","subnet":"10.222.33.0/24","dataDir":"{}"}}}},{{"type":"tuning","sysctl":{{"net.ipv4.conf.eth1.send_redirects":"0"}}}}]}}"#,
            env.base.join("ipam").display()
        ),
    );
    let iso = env.isolator();
    let id = cid("c1");
    let pid = started(&mut env, &iso, &id, &config_for(&["gobr", "chain"]));
    let addrs = in_container(pid, &["ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth0") && addrs.contains("10.222.32."), "{addrs}");
    assert!(addrs.contains("eth1") && addrs.contains("10.222.33."), "{addrs}");
    let st = iso.status(&id).unwrap();
    assert_eq!(st.network_infos.len(), 2);
    assert_eq!(st.network_infos[1].name.as_deref(), Some("chain"));
    let hosts = in_container(pid, &["cat", "/etc/hosts"]);
    assert_eq!(hosts.lines().count(), 3, "{hosts}");
    iso.check(&id).unwrap();
    iso.cleanup(&id).unwrap();
    // host-local released both addresses.
    let left: Vec<_> = std::fs::read_dir(env.base.join("ipam/chain"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Starts a one-shot TCP listener on port 80 in the netns of `pid` that
/// answers "hi", and reads the answer through `via` (a published port) from
/// the test's host netns.
fn serve_once_and_fetch(pid: i32, via: (&str, u16)) -> String {
    let t = pid.to_string();
    let mut server = std::process::Command::new("nsenter")
        .args(["-t", &t, "-n", "--", "python3", "-c"])
        .arg("import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',80));s.listen(1);c,_=s.accept();c.sendall(b'hi');c.close()")
        .spawn()
        .unwrap();
    let mut got = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(via) {
            use std::io::Read;
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    got
}

/// rcni's plugins in the target dir, symlinked into the env's plugin dir;
/// false (test skipped) when one is not built or python3 is missing.
fn link_rcni_plugins(env: &Env, plugins: &[&str]) -> bool {
    let target = target_bin_dir();
    if plugins.iter().any(|p| !target.join(p).exists()) {
        panic!(
            "missing prerequisite: rcni {plugins:?} not all built in {} (scripts/test.sh installs what the tests need)",
            target.display()
        );
    }
    if std::process::Command::new("python3").arg("-V").output().is_err() {
        panic!(
            "missing prerequisite: no python3 for the listener (scripts/test.sh installs what the tests need)"
        );
    }
    for p in plugins {
        std::os::unix::fs::symlink(target.join(p), env.plugins.join(p)).unwrap();
    }
    true
}

// CniIsolatorPortMapperTest.ROOT_IPTABLES_NC_PortMapper with rcni's
// mesos-cni-port-mapper as the network's plugin (delegating to rcni's bridge
// + host-local): the container's port_mappings reach it from the host, the
// plugin got Mesos's network_info, and DEL leaves no reservation and no DNAT
// rule (the chain itself stays, as Mesos's).
#[test]
#[ignore = "needs root"]
fn mesos_cni_port_mapper_network_publishes_port_mappings() {
    let mut env = Env::new();
    if !link_rcni_plugins(&env, &["mesos-cni-port-mapper", "bridge", "host-local"]) {
        return;
    }
    let br = short_unique("rip");
    env.track_link(&br);
    let chain = short_unique("RCNI-PM-");
    env.config(
        "pm.conf",
        &format!(
            r#"{{"cniVersion":"0.2.0","name":"pmnet","type":"mesos-cni-port-mapper","chain":"{chain}","delegate":{{"cniVersion":"0.2.0","type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.222.35.0/24","dataDir":"{}"}}}}}}"#,
            env.base.join("ipam").display()
        ),
    );
    let iso = env.isolator();
    let id = cid("pm1");
    let mut config = config_for(&["pmnet"]);
    config.container_info.as_mut().unwrap().network_infos[0].port_mappings =
        vec![cni_isolator::PortMapping {
            host_port: 18735,
            container_port: 80,
            protocol: Some("tcp".into()),
        }];
    let pid = started(&mut env, &iso, &id, &config);
    let ip = iso.status(&id).unwrap().network_infos[0].ip_addresses[0]
        .ip_address
        .clone()
        .unwrap();
    assert!(ip.starts_with("10.222.35."), "{ip}");
    assert!(in_container(pid, &["cat", "/etc/hosts"]).contains(&format!("{ip} pm1\n")));
    assert_eq!(serve_once_and_fetch(pid, ("10.222.35.1", 18735)), "hi");
    let rules = HostSnapshot::take().nft_ruleset;
    assert!(rules.contains("18735"), "no DNAT rule: {rules}");
    iso.cleanup(&id).unwrap();
    let rules = HostSnapshot::take().nft_ruleset;
    assert!(!rules.contains("18735"), "DNAT rule left: {rules}");
    let left: Vec<_> = std::fs::read_dir(env.base.join("ipam/pmnet"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// rcni's own bridge + host-local + portmap (when built) as a conflist: the
// container gets its address, the published port reaches it from the
// (throw-away) host, and DEL leaves no reservation. The whole flow ran in
// the test's own "host" netns: the bridge, ip_forward=1 (isGateway) and the
// cni_hostport table were there, and the real host is as it was.
#[test]
#[ignore = "needs root"]
fn rcni_plugins_conflist_with_port_mapping_leaves_the_real_host_alone() {
    let before = HostSnapshot::take();
    let target = target_bin_dir();
    let ours = ["bridge", "host-local", "portmap"];
    if ours.iter().any(|p| !target.join(p).exists()) {
        panic!(
            "missing prerequisite: rcni bridge/host-local/portmap not built in {} (scripts/test.sh installs what the tests need)",
            target.display()
        );
    }
    if std::process::Command::new("python3").arg("-V").output().is_err() {
        panic!(
            "missing prerequisite: no python3 for the listener (scripts/test.sh installs what the tests need)"
        );
    }
    let mut env = Env::new();
    for p in ours {
        std::os::unix::fs::symlink(target.join(p), env.plugins.join(p)).unwrap();
    }
    let br = short_unique("rir");
    env.track_link(&br);
    env.config(
        "ours.conflist",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"ours","plugins":[{{"type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.222.34.0/24","dataDir":"{}"}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            env.base.join("ipam").display()
        ),
    );
    let iso = env.isolator();
    let id = cid("c1");
    let mut config = config_for(&["ours"]);
    config.container_info.as_mut().unwrap().network_infos[0].port_mappings =
        vec![cni_isolator::PortMapping {
            host_port: 18734,
            container_port: 80,
            protocol: None,
        }];
    let pid = started(&mut env, &iso, &id, &config);
    let ip = iso.status(&id).unwrap().network_infos[0].ip_addresses[0]
        .ip_address
        .clone()
        .unwrap();
    assert!(ip.starts_with("10.222.34."), "{ip}");
    assert!(in_container(pid, &["cat", "/etc/hosts"]).contains(&format!("{ip} c1\n")));
    assert_eq!(serve_once_and_fetch(pid, ("10.222.34.1", 18734)), "hi");
    // What the plugins changed is in the test's host netns.
    let inside = HostSnapshot::take();
    assert!(inside.links.contains(&br), "{:?}", inside.links);
    assert_eq!(inside.ip_forward.trim(), "1");
    assert!(
        inside.nft_ruleset.contains("18734"),
        "no port mapping in the test's host netns: {}",
        inside.nft_ruleset
    );
    iso.cleanup(&id).unwrap();
    let left: Vec<_> = std::fs::read_dir(env.base.join("ipam/ours"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(iso);
    drop(env);
    // Back in the real host netns: nothing of it is here.
    let after = HostSnapshot::take();
    assert_eq!(after.ip_forward, before.ip_forward, "host ip_forward changed");
    assert!(!after.links.contains(&br), "bridge {br} in the host netns");
    // portmap's tables and chains (nftables backend: cni_hostport; iptables
    // backend: CNI-HOSTPORT-*), unless the host had them before this test.
    let portmap =
        |s: &HostSnapshot| s.nft_ruleset.contains("cni_hostport") || s.nft_ruleset.contains("CNI-HOSTPORT");
    assert!(
        !portmap(&after) || portmap(&before),
        "portmap's table in the host"
    );
    assert!(
        !after.nft_ruleset.contains("18734"),
        "host port 18734 in the host ruleset"
    );
}
