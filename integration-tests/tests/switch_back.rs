//! A host that switches between our portmap and Go's, both ways, with the
//! default backend (none named in the config): an ADD by one and the DEL by
//! the other leaves no rule, chain or set element of the container, and the
//! port can be published again by either. Root only; in a throw-away "host"
//! namespace; addresses in 10.222.0.0/16.

use rcni_test_support::{
    GO_PLUGIN_DIR, Invocation, Netns, Outcome, TempDir, exec, go_plugin, rcni_plugin, sh,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

struct Host {
    ns: Netns,
    dir: TempDir,
}

impl Host {
    fn new() -> Host {
        let ns = Netns::with_lo_up();
        Host {
            ns,
            dir: TempDir::new(),
        }
    }

    /// A script that runs `binary` in the host namespace.
    fn wrap(&self, binary: &Path, tag: &str) -> PathBuf {
        self.ns
            .wrapper(&self.dir.path().join(format!("{tag}-portmap")), binary)
    }

    fn conf(&self, container: &Netns) -> Value {
        json!({"cniVersion":"0.4.0","name":"switch","type":"portmap",
            "capabilities":{"portMappings":true},
            "runtimeConfig":{"portMappings":[{"hostPort":18181,"containerPort":80,"protocol":"tcp"}]},
            "prevResult":{"cniVersion":"0.4.0",
                "interfaces":[{"name":"eth0","sandbox":container.path()}],
                "ips":[{"version":"4","address":"10.222.181.2/24","interface":0}]}})
    }

    fn run(&self, plugin: &Path, command: &str, cid: &str, container: &Netns) -> Outcome {
        let mut inv = Invocation::new(
            command,
            cid,
            &container.path().display().to_string(),
            "eth0",
            &self.conf(container),
        );
        inv.path = Some(GO_PLUGIN_DIR.to_string());
        exec(plugin, &inv)
    }

    /// Every trace of a container's port mapping: DNAT chains and rules in the
    /// nat table, and nftables elements or rules naming its address or port.
    fn traces(&self) -> Vec<String> {
        let ns = self.ns.name();
        let mut out: Vec<String> = sh("ip", &["netns", "exec", ns, "iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.contains("CNI-DN-") || l.contains("10.222.181.2") || l.contains("18181"))
            .map(str::to_string)
            .collect();
        out.extend(
            sh("ip", &["netns", "exec", ns, "nft", "list", "ruleset"])
                .lines()
                .filter(|l| l.contains("10.222.181.2") || l.contains("18181"))
                .map(str::to_string),
        );
        out
    }
}

#[test]
#[ignore = "needs root"]
fn add_by_one_del_by_the_other_leaves_nothing_with_the_default_backend() {
    let Some(go) = go_plugin("portmap") else {
        panic!("Go's portmap is not in {GO_PLUGIN_DIR}: install containernetworking-plugins");
    };
    let host = Host::new();
    let ours = host.wrap(&rcni_plugin("portmap"), "rcni");
    let go = host.wrap(&go, "go");
    let container = Netns::new();
    for round in 0..3 {
        for (adder, deleter, what) in [(&ours, &go, "rcni ADD, Go DEL"), (&go, &ours, "Go ADD, rcni DEL")] {
            let cid = format!("switch{round}");
            host.run(adder, "ADD", &cid, &container).assert_ok();
            assert!(!host.traces().is_empty(), "{what}: the ADD left no trace to find");
            host.run(deleter, "DEL", &cid, &container).assert_ok();
            assert_eq!(
                host.traces(),
                Vec::<String>::new(),
                "round {round}, {what}: left behind"
            );
        }
    }
}

/// A host that ran rcni while nftables was its default: a DEL with today's
/// default (iptables) and no port mappings in its config still finds the
/// attachment's nftables elements.
#[test]
#[ignore = "needs root"]
fn a_del_without_mappings_removes_elements_left_by_the_old_nftables_default() {
    let host = Host::new();
    let ours = host.wrap(&rcni_plugin("portmap"), "rcni");
    let container = Netns::new();
    for round in 0..3 {
        let cid = format!("old{round}");
        let mut add = host.conf(&container);
        add["backend"] = json!("nftables");
        let mut inv = Invocation::new("ADD", &cid, &container.path().display().to_string(), "eth0", &add);
        inv.path = Some(GO_PLUGIN_DIR.to_string());
        exec(&ours, &inv).assert_ok();
        assert!(
            !host.traces().is_empty(),
            "round {round}: the ADD left no trace to find"
        );
        let mut del = host.conf(&container);
        del["runtimeConfig"] = json!({});
        let mut inv = Invocation::new("DEL", &cid, &container.path().display().to_string(), "eth0", &del);
        inv.path = Some(GO_PLUGIN_DIR.to_string());
        exec(&ours, &inv).assert_ok();
        assert_eq!(host.traces(), Vec::<String>::new(), "round {round}: left behind");
    }
}
