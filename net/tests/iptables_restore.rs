//! The iptables backend against real `iptables-restore`/`iptables-save`, run inside throw-away
//! namespaces through `nsenter` (root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cni_net::Family;
use cni_net::iptables::{IptablesError, IptablesRunner, RestoreBatch};
use common::TestNetns;

const COMMENT: &str = r#"name: "mynet" id: "c1""#;

fn masq_batch(
    state: &cni_net::iptables::SavedTable,
    chain: &str,
    pod: &str,
    subnet: &str,
    mcast: &str,
) -> RestoreBatch {
    let mut b = RestoreBatch::new("nat");
    b.ensure_chain(state, chain)
        .append(
            chain,
            [
                "-d",
                subnet,
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "ACCEPT",
            ],
        )
        .append(
            chain,
            [
                "!",
                "-d",
                mcast,
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "MASQUERADE",
            ],
        )
        .append_if_missing(
            state,
            "POSTROUTING",
            ["-s", pod, "-m", "comment", "--comment", COMMENT, "-j", chain],
        );
    b
}

#[test]
#[ignore = "needs root"]
fn bridge_ipmasq_chain_roundtrip_v4_and_v6() {
    let ns = TestNetns::with_lo_up();
    let ipt = IptablesRunner::in_netns(ns.path());
    for (family, pod, subnet, mcast) in [
        (Family::V4, "10.222.0.5/32", "10.222.0.0/24", "224.0.0.0/4"),
        (Family::V6, "fd00:de::5/128", "fd00:de::/64", "ff00::/8"),
    ] {
        assert!(ipt.available(family));
        let chain = "CNI-0123456789abcdef01234567";
        let state = ipt.save(family, "nat").unwrap();
        ipt.restore(family, &masq_batch(&state, chain, pod, subnet, mcast))
            .unwrap();
        // A second ADD with fresh state does not duplicate the POSTROUTING jump.
        let state = ipt.save(family, "nat").unwrap();
        let mut again = RestoreBatch::new("nat");
        again.ensure_chain(&state, chain).append_if_missing(
            &state,
            "POSTROUTING",
            ["-s", pod, "-m", "comment", "--comment", COMMENT, "-j", chain],
        );
        assert!(again.is_empty(), "everything exists already: {again:?}");

        let state = ipt.save(family, "nat").unwrap();
        let rules: Vec<_> = state
            .chain(chain)
            .unwrap()
            .rules
            .iter()
            .map(|r| r.spec.clone())
            .collect();
        assert_eq!(
            rules,
            [
                format!(r#"-d {subnet} -m comment --comment "name: \"mynet\" id: \"c1\"" -j ACCEPT"#),
                format!(r#"! -d {mcast} -m comment --comment "name: \"mynet\" id: \"c1\"" -j MASQUERADE"#),
            ]
        );
        assert_eq!(state.rules_with_comment(COMMENT).count(), 3);
        let jumps: Vec<_> = state.rules_jumping_to(chain).collect();
        assert_eq!(jumps.len(), 1);
        assert_eq!(jumps[0].chain, "POSTROUTING");

        // Teardown: the jump, then the chain, in one restore.
        let mut del = RestoreBatch::new("nat");
        for rule in state.rules_jumping_to(chain) {
            del.delete_saved(rule);
        }
        del.flush_chain(chain).delete_chain(chain);
        ipt.restore(family, &del).unwrap();
        let state = ipt.save(family, "nat").unwrap();
        assert!(!state.has_chain(chain));
        assert_eq!(state.rules().count(), 0);
    }
}

#[test]
#[ignore = "needs root"]
fn failed_restore_applies_nothing_and_reports_the_tool_message() {
    let ns = TestNetns::with_lo_up();
    let ipt = IptablesRunner::in_netns(ns.path());
    let mut b = RestoreBatch::new("nat");
    b.declare_chain("CNI-HOSTPORT-DNAT")
        .append(
            "CNI-HOSTPORT-DNAT",
            ["-p", "tcp", "--dport", "80", "-j", "ACCEPT"],
        )
        .append("NO-SUCH-CHAIN", ["-j", "ACCEPT"]);
    let err = ipt.restore(Family::V4, &b).unwrap_err();
    match &err {
        IptablesError::Failed { stderr, input, .. } => {
            assert!(!stderr.is_empty());
            assert!(input.contains("-A NO-SUCH-CHAIN -j ACCEPT"), "{input}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        !ipt.save(Family::V4, "nat")
            .unwrap()
            .has_chain("CNI-HOSTPORT-DNAT")
    );
}

#[test]
#[ignore = "needs root"]
fn declare_chain_flushes_an_existing_chain_and_insert_goes_first() {
    let ns = TestNetns::with_lo_up();
    let ipt = IptablesRunner::in_netns(ns.path());
    let mut b = RestoreBatch::new("filter");
    b.declare_chain("CNI-FW")
        .append("CNI-FW", ["-s", "10.222.0.1/32", "-j", "ACCEPT"]);
    ipt.restore(Family::V4, &b).unwrap();
    let mut b = RestoreBatch::new("filter");
    b.declare_chain("CNI-FW")
        .append("CNI-FW", ["-s", "10.222.0.2/32", "-j", "ACCEPT"])
        .insert("CNI-FW", 1, ["-s", "10.222.0.3/32", "-j", "DROP"]);
    ipt.restore(Family::V4, &b).unwrap();
    let state = ipt.save(Family::V4, "filter").unwrap();
    let specs: Vec<_> = state
        .chain("CNI-FW")
        .unwrap()
        .rules
        .iter()
        .map(|r| r.spec.as_str())
        .collect();
    assert_eq!(specs, ["-s 10.222.0.3/32 -j DROP", "-s 10.222.0.2/32 -j ACCEPT"]);
    // The namespace's rules never leak to the host.
    assert!(
        !IptablesRunner::host()
            .save(Family::V4, "filter")
            .unwrap()
            .has_chain("CNI-FW")
    );
}
