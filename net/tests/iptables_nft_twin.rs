//! The in-process iptables-nft writer against the real `iptables-restore` (iptables-nft):
//! the same batch applied by each in its own throw-away namespace must leave the same nat
//! table, compared in the kernel's own listing (`nft --debug=netlink list table`, rule
//! handles aside) and in `iptables-save`; and each side must find and delete the other's
//! rules (root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cni_net::Family;
use cni_net::iptables::{IptablesRunner, RestoreBatch, SavedTable};
use cni_net::iptables_nft::{self as xt, Scope};
use cni_net::nft::NetfilterSocket;
use common::{NetnsExt, TestNetns};

const COMMENT: &str = r#"dnat name: "net" id: "c1""#;

fn v(args: &str) -> Vec<String> {
    cni_net::iptables::split_args(args).unwrap()
}

/// Go's portmap layout (mark masquerade, DNAT chain with hostIP) and bridge's ipMasq chain.
fn layout(saved: &SavedTable, family: Family) -> RestoreBatch {
    let (pod, net, host, dst, mcast, lo) = match family {
        Family::V4 => (
            "10.222.7.5/32",
            "10.222.7.0/24",
            "10.222.9.1/32",
            "10.222.7.5:80",
            "224.0.0.0/4",
            true,
        ),
        Family::V6 => (
            "fd00:222:7::5/128",
            "fd00:222:7::/64",
            "fd00:222:9::1/128",
            "[fd00:222:7::5]:80",
            "ff00::/8",
            false,
        ),
    };
    let mut b = RestoreBatch::new("nat");
    b.ensure_chain(saved, "CNI-HOSTPORT-SETMARK")
        .append_if_missing(
            saved,
            "CNI-HOSTPORT-SETMARK",
            v(r#"-m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000"#),
        )
        .ensure_chain(saved, "CNI-HOSTPORT-MASQ")
        .append_if_missing(
            saved,
            "CNI-HOSTPORT-MASQ",
            v("-m mark --mark 0x2000/0x2000 -j MASQUERADE"),
        )
        .insert(
            "POSTROUTING",
            1,
            v(r#"-m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ"#),
        )
        .ensure_chain(saved, "CNI-HOSTPORT-DNAT")
        .append_if_missing(
            saved,
            "PREROUTING",
            v("-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        )
        .append_if_missing(
            saved,
            "OUTPUT",
            v("-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        )
        .declare_chain("CNI-DN-0123456789abcdef01234");
    let dn = "CNI-DN-0123456789abcdef01234";
    b.append(
        dn,
        v(&format!(
            "-s {net} -d {host} -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"
        )),
    );
    if lo {
        b.append(
            dn,
            v(&format!(
                "-s 127.0.0.1/32 -d {host} -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"
            )),
        );
    }
    b.append(
        dn,
        v(&format!(
            "-d {host} -p tcp -m tcp --dport 8080 -j DNAT --to-destination {dst}"
        )),
    )
    .append(
        dn,
        v(&format!(
            "-p udp -m udp --dport 53 -j DNAT --to-destination {dst}"
        )),
    )
    .append(
        "CNI-HOSTPORT-DNAT",
        [
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-m",
            "multiport",
            "--dports",
            "8080,8081,9000",
            "-j",
            dn,
        ],
    );
    // bridge ipMasq (Go's ip.SetupIPMasq) and Mesos's port mapper layout.
    let masq = "CNI-0123456789abcdef01234567";
    let c = r#"name: "net" id: "c1""#;
    b.declare_chain(masq)
        .append(masq, ["-d", net, "-m", "comment", "--comment", c, "-j", "ACCEPT"])
        .append(masq, ["!", "-d", mcast, "-m", "comment", "--comment", c, "-j", "MASQUERADE"])
        .append("POSTROUTING", ["-s", pod, "-m", "comment", "--comment", c, "-j", masq])
        .ensure_chain(saved, "MESOS-TEST-PORT-MAPPER")
        .append(
            "MESOS-TEST-PORT-MAPPER",
            v(&format!(
                r#"! -i eth1 -p tcp -m tcp --dport 8080 -m comment --comment "container_id: c1" -j DNAT --to-destination {dst}"#
            )),
        )
        .append("OUTPUT", v("-o lo -j RETURN"));
    b
}

fn nft_of(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

/// The kernel's listing of the nat table, expression by expression, without rule handles
/// (the only thing two namespaces number differently).
fn listing(ns: &TestNetns, family: Family) -> String {
    let out = ns.exec(&["nft", "--debug=netlink", "list", "table", nft_of(family), "nat"]);
    out.lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // "ip nat CHAIN HANDLE [POSITION]": keep family, table and chain.
            if words.len() >= 4 && words[0] == nft_of(family) && words[1] == "nat" && !l.starts_with('\t') {
                words[..3].join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn save(ns: &TestNetns, family: Family) -> String {
    let tool = match family {
        Family::V4 => "iptables-save",
        Family::V6 => "ip6tables-save",
    };
    ns.exec(&[tool, "-t", "nat"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every rule's expressions as the kernel lists them, compat info structs included (which
/// the text listings do not show), by chain.
fn expressions(ns: &TestNetns, family: Family) -> Vec<(String, Vec<Option<Vec<cni_net::nft::Expr>>>)> {
    ns.open()
        .run(|| {
            let mut nft = NetfilterSocket::new().unwrap();
            let saved = xt::read(&mut nft, family, "nat", &Scope::all()).unwrap();
            let mut out: Vec<_> = saved
                .chains
                .iter()
                .map(|c| (c.name.clone(), c.rules.iter().map(|r| r.exprs.clone()).collect()))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        })
        .unwrap()
}

/// Reads, plans and applies `make(saved)` in-process inside `ns`.
fn in_process(ns: &TestNetns, family: Family, make: impl Fn(&SavedTable) -> RestoreBatch) {
    ns.open()
        .run(|| {
            let mut nft = NetfilterSocket::new().unwrap();
            let saved = xt::read(&mut nft, family, "nat", &Scope::all()).unwrap();
            let plan = xt::plan(family, &saved, &make(&saved)).unwrap();
            nft.apply(&plan).unwrap();
        })
        .unwrap();
}

fn by_tool(ns: &TestNetns, family: Family, make: impl Fn(&SavedTable) -> RestoreBatch) {
    let runner = IptablesRunner::in_netns(ns.path());
    let saved = runner.save(family, "nat").unwrap();
    runner.restore(family, &make(&saved)).unwrap();
}

fn teardown(saved: &SavedTable) -> RestoreBatch {
    let mut b = RestoreBatch::new("nat");
    for chain in ["CNI-DN-0123456789abcdef01234", "CNI-0123456789abcdef01234567"] {
        for r in saved.rules_jumping_to(chain) {
            b.delete_saved(r);
        }
        b.flush_chain(chain).delete_chain(chain);
    }
    b
}

#[test]
#[ignore = "needs root"]
fn same_table_as_iptables_restore_and_each_removes_the_others_rules() {
    for family in [Family::V4, Family::V6] {
        let tool = TestNetns::new();
        let ours = TestNetns::new();
        // Twice: the second round finds the shared chains and rules in place.
        for round in 0..2 {
            by_tool(&tool, family, |s| layout(s, family));
            in_process(&ours, family, |s| layout(s, family));
            assert_eq!(
                listing(&ours, family),
                listing(&tool, family),
                "{family:?} round {round}"
            );
            assert_eq!(
                save(&ours, family),
                save(&tool, family),
                "{family:?} round {round}"
            );
            let exprs = expressions(&ours, family);
            assert!(exprs.iter().all(|(_, rules)| rules.iter().all(Option::is_some)));
            assert_eq!(exprs, expressions(&tool, family), "{family:?} round {round}");
        }
        // Each side removes the other's container chains: the tool ours, we the tool's.
        by_tool(&ours, family, teardown);
        in_process(&tool, family, teardown);
        assert_eq!(
            listing(&ours, family),
            listing(&tool, family),
            "{family:?} after teardown"
        );
        let left = save(&ours, family);
        assert!(!left.contains("CNI-DN-") && !left.contains("CNI-0123"), "{left}");
        // An operator's `iptables -D` with the rule's arguments finds ours.
        let tool_bin = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        ours.exec(&[
            tool_bin,
            "-t",
            "nat",
            "-D",
            "CNI-HOSTPORT-MASQ",
            "-m",
            "mark",
            "--mark",
            "0x2000/0x2000",
            "-j",
            "MASQUERADE",
        ]);
    }
}

#[test]
#[ignore = "needs root"]
fn partial_reading_finds_jumps_and_asks_for_more_when_needed() {
    let ns = TestNetns::new();
    let family = Family::V4;
    by_tool(&ns, family, |s| layout(s, family));
    ns.open()
        .run(|| {
            let mut nft = NetfilterSocket::new().unwrap();
            let dn = "CNI-DN-0123456789abcdef01234";
            let scope = Scope::default().jumps_to(dn, ["CNI-HOSTPORT-DNAT"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            assert_eq!(saved.rules_jumping_to(dn).count(), 1);
            assert!(saved.has_chain(dn));
            assert_eq!(saved.references(dn), 1);
            assert!(!saved.missed());
            // Found right after the chain's own rules, without listing CNI-HOSTPORT-DNAT.
            assert!(saved.chain("CNI-HOSTPORT-DNAT").is_some());
            assert!(saved.missed(), "CNI-HOSTPORT-DNAT was listed in full");
            // A question outside the scope is recorded.
            assert!(!saved.has_rule("OUTPUT", &v("-j ACCEPT")));
            assert!(saved.missed());
            // Jumps outside the chains searched first make it read the whole table.
            let scope = Scope::default().jumps_to("CNI-HOSTPORT-DNAT", ["POSTROUTING"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            assert_eq!(saved.rules_jumping_to("CNI-HOSTPORT-DNAT").count(), 2);
            assert!(saved.has_chain("MESOS-TEST-PORT-MAPPER") && !saved.missed());
            // A jump not right after the chain's rules is found by listing the chain.
            let second = "CNI-DN-second";
            let mut b = RestoreBatch::new("nat");
            b.declare_chain(second)
                .append(
                    second,
                    v("-p tcp -m tcp --dport 9 -j DNAT --to-destination 10.222.7.6:9"),
                )
                .append("OUTPUT", v("-o lo -j RETURN"))
                .append(
                    "CNI-HOSTPORT-DNAT",
                    v("-p tcp -m multiport --dports 9 -j CNI-DN-second"),
                );
            let plan = xt::plan(
                family,
                &xt::read(&mut nft, family, "nat", &Scope::all()).unwrap(),
                &b,
            )
            .unwrap();
            nft.apply(&plan).unwrap();
            let scope = Scope::default().jumps_to(second, ["CNI-HOSTPORT-DNAT"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            assert_eq!(saved.rules_jumping_to(second).count(), 1);
            assert!(saved.chain("CNI-HOSTPORT-DNAT").is_some() && !saved.missed());
            // A change planned from a partial reading that covers what it touches.
            let scope = Scope::default()
                .exists(["POSTROUTING"])
                .jumps_to("CNI-new", ["POSTROUTING"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            let mut b = RestoreBatch::new("nat");
            b.declare_chain("CNI-new")
                .append("CNI-new", v("-j MASQUERADE"))
                .append("POSTROUTING", v("-s 10.222.7.9/32 -j CNI-new"));
            assert!(saved.references("CNI-new") == 0 && !saved.missed());
            let plan = xt::plan(family, &saved, &b).unwrap();
            nft.apply(&plan).unwrap();
            // Without POSTROUTING's existence in the scope it asks for a full reading.
            let scope = Scope::default().jumps_to("CNI-other", ["POSTROUTING"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            let mut only_postrouting = RestoreBatch::new("nat");
            only_postrouting.append("POSTROUTING", v("-s 10.222.7.10/32 -j CNI-new"));
            assert!(matches!(
                xt::plan(family, &saved, &only_postrouting),
                Err(xt::PlanError::NotRead(c)) if c == "POSTROUTING"
            ));
            // An absent chain needs no search at all.
            let scope = Scope::default().jumps_to("CNI-DN-absent", ["CNI-HOSTPORT-DNAT"]);
            let saved = xt::read(&mut nft, family, "nat", &scope).unwrap();
            assert_eq!(saved.rules_jumping_to("CNI-DN-absent").count(), 0);
            assert!(!saved.missed());
        })
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn update_with_writes_in_process_and_leaves_what_it_cannot_translate_to_the_tool() {
    let ns = TestNetns::new();
    let family = Family::V4;
    ns.open()
        .run(|| {
            let mut nft = NetfilterSocket::new().unwrap();
            let runner = IptablesRunner::host();
            assert!(
                runner.writes_in_process(family, "nat"),
                "this host's iptables is not iptables-nft"
            );
            let scope = Scope::default().rules_of(["OUTPUT"]);
            let add = |args: &'static str| {
                move |saved: &SavedTable| {
                    let mut b = RestoreBatch::new("nat");
                    b.append_if_missing(saved, "OUTPUT", v(args));
                    Ok::<_, ()>(Some(b))
                }
            };
            // Covered: written in-process, and found again by the next call (no duplicate).
            for _ in 0..2 {
                runner
                    .update_with(
                        Some(&mut nft),
                        family,
                        "nat",
                        &scope,
                        add("-d 10.222.1.1/32 -j RETURN"),
                    )
                    .unwrap();
            }
            // Not covered (a conntrack match): iptables-restore writes it.
            runner
                .update_with(
                    Some(&mut nft),
                    family,
                    "nat",
                    &scope,
                    add("-m conntrack --ctstate NEW -j RETURN"),
                )
                .unwrap();
        })
        .unwrap();
    let saved = save(&ns, family);
    assert_eq!(
        saved.matches("-A OUTPUT -d 10.222.1.1/32 -j RETURN").count(),
        1,
        "{saved}"
    );
    assert!(
        saved.contains("-A OUTPUT -m conntrack --ctstate NEW -j RETURN"),
        "{saved}"
    );
}
