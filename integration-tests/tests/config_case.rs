//! Config keys in Go's spellings (`IsGateway`, `MTU`, `IPAM.Ranges[][].RangeStart`...)
//! work end to end, as they do with the Go plugins, whose `json.Unmarshal`
//! matches keys case-insensitively: our bridge and host-local, run as a
//! runtime runs them, in throw-away namespaces (a "host" netns where the
//! plugin runs and the bridge is made, and the container's), 10.222.0.0/16 only.

use rcni_test_support::{Invocation, Netns, TempDir, exec, rcni_plugin};
use serde_json::json;
use std::process::Command;

/// The addresses of a link, read with `ip -j`.
trait Addrs {
    /// The `family` addresses of `dev` as `addr/prefix`.
    fn addrs(&self, dev: &str, family: &str) -> Vec<String>;
}

impl Addrs for Netns {
    fn addrs(&self, dev: &str, family: &str) -> Vec<String> {
        let v = self.ip_json(&[family, "addr", "show", "dev", dev]);
        v[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }
}

#[test]
#[ignore = "needs root"]
fn go_cased_bridge_config_puts_the_gateway_on_the_bridge() {
    let dir = TempDir::new();
    let host = Netns::with_lo_up();
    let container = Netns::with_lo_up();
    let bridge = rcni_plugin("bridge");
    let plugin_dir = bridge.parent().unwrap().display().to_string();
    // A script that execs the bridge inside `host`, for a runtime that runs it as is.
    let bridge = host.wrapper(&dir.join("in-host-bridge"), &bridge);
    let conf = json!({
        "CniVersion": "1.0.0",
        "Name": "rcni-case",
        "Type": "bridge",
        "Bridge": "rcnicase0",
        "IsGateway": true,
        "MTU": 1400,
        "IPAM": {
            "Type": "host-local",
            "Ranges": [[{"Subnet": "10.222.231.0/24", "RangeStart": "10.222.231.10",
                         "Gateway": "10.222.231.1"}]],
            "DataDir": dir.path().join("ipam"),
        },
    });
    let mut add = Invocation::new("ADD", "case-1", container.path().to_str().unwrap(), "eth0", &conf);
    add.path = Some(plugin_dir.clone());
    let out = exec(&bridge, &add);
    out.assert_ok();
    let r = &out.json;
    assert_eq!(r["ips"][0]["address"], "10.222.231.10/24", "{r}");
    assert_eq!(r["ips"][0]["gateway"], "10.222.231.1", "{r}");
    assert_eq!(r["interfaces"][0]["name"], "rcnicase0", "{r}");

    // The result's gateway is really on the bridge (the defect: it was not).
    assert_eq!(host.addrs("rcnicase0", "-4"), ["10.222.231.1/24"]);
    let link = host.ip_json(&["link", "show", "dev", "rcnicase0"]);
    assert_eq!(link[0]["mtu"], 1400, "{link}");
    assert_eq!(container.addrs("eth0", "-4"), ["10.222.231.10/24"]);
    let eth0 = container.ip_json(&["link", "show", "dev", "eth0"]);
    assert_eq!(eth0[0]["mtu"], 1400, "{eth0}");
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            container.name(),
            "ping",
            "-c1",
            "-W2",
            "10.222.231.1",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "container cannot reach its gateway: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let mut del = Invocation::new("DEL", "case-1", container.path().to_str().unwrap(), "eth0", &conf);
    del.path = Some(plugin_dir);
    exec(&bridge, &del).assert_ok();
    assert!(
        container
            .ip_json(&["link", "show"])
            .as_array()
            .is_some_and(|l| l.iter().all(|i| i["ifname"] != "eth0"))
    );
}
