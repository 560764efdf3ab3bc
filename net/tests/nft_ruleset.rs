//! nftables batches applied in throw-away namespaces and read back with `nft list ruleset`
//! (needs root and the `nft` binary, only to check the result).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::time::Duration;

use cni_net::nft::{
    Batch, Chain, ChainType, Family, Field, Hook, KeyType, L4Proto, MapData, NetfilterSocket, Policy, Rule,
    Set, SetElement, Table, Value, Verdict, ct_state, priority,
};
use common::{NetnsExt, TestNetns, normalize, veth};
use ipnetwork::IpNetwork;

const MASQ_TABLE: &str = "cni_plugins_masquerade";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

/// A host between a container (10.222.1.2, default route via the host) and a client
/// (10.222.2.2), forwarding.
fn dnat_topology() -> (TestNetns, TestNetns, TestNetns) {
    let host = TestNetns::with_lo_up();
    let container = TestNetns::with_lo_up();
    let client = TestNetns::with_lo_up();
    veth(&host, "h-c", "10.222.1.1/24", &container, "c-h", "10.222.1.2/24");
    veth(&host, "h-x", "10.222.2.1/24", &client, "x-h", "10.222.2.2/24");
    container.exec(&["ip", "route", "add", "default", "via", "10.222.1.1"]);
    host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    (host, container, client)
}

/// The client connects to the host's 10.222.2.1:8080 and reads `text`, which the container
/// serves on 10.222.1.2:80; returns the peer address the container saw.
fn exchange(container: &TestNetns, client: &TestNetns, text: &'static str) -> std::net::SocketAddr {
    let listener = container
        .open()
        .run(|| TcpListener::bind("10.222.1.2:80"))
        .unwrap()
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(text.as_bytes()).unwrap();
        peer
    });
    let mut stream = client
        .open()
        .run(|| TcpStream::connect_timeout(&"10.222.2.1:8080".parse().unwrap(), Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, text);
    server.join().unwrap()
}

/// The bridge plugin's nftables ipMasq layout, as Go's bridge writes it with knftables.
fn masquerade_batch(pod: &str, subnet: &str, comment: &str) -> Batch {
    let f = Family::Inet;
    let mut b = Batch::new();
    b.add_table(
        Table::new(f, MASQ_TABLE)
            .comment("Masquerading for plugins from github.com/containernetworking/plugins"),
    )
    .add_chain(
        Chain::new(f, MASQ_TABLE, "masq_checks")
            .comment("Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"),
    )
    .add_chain(Chain::new(f, MASQ_TABLE, "postrouting").base(
        ChainType::Nat,
        Hook::Postrouting,
        priority::SRCNAT,
    ))
    .flush_chain(f, MASQ_TABLE, "postrouting")
    .add_rule(
        Rule::new(f, MASQ_TABLE, "postrouting")
            .daddr(net("224.0.0.0/4"))
            .return_(),
    )
    .add_rule(
        Rule::new(f, MASQ_TABLE, "postrouting")
            .daddr(net("ff00::/8"))
            .return_(),
    )
    .add_rule(Rule::new(f, MASQ_TABLE, "postrouting").goto("masq_checks"))
    .add_rule(
        Rule::new(f, MASQ_TABLE, "masq_checks")
            .saddr(ip(pod))
            .daddr_ne(net(subnet))
            .masquerade()
            .comment(comment),
    );
    b
}

#[test]
#[ignore = "needs root"]
fn bridge_ipmasq_layout_lists_like_nft_writes_it() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    nft.apply(&masquerade_batch("10.222.0.5", "10.222.0.0/24", "c1-eth0"))
        .unwrap();
    // Applying the same skeleton again (add-if-missing, postrouting re-flushed) is fine.
    nft.apply(&masquerade_batch("10.222.0.6", "10.222.0.0/24", "c2-eth0"))
        .unwrap();

    let want = normalize(
        r#"
        table inet cni_plugins_masquerade {
            comment "Masquerading for plugins from github.com/containernetworking/plugins"
            chain masq_checks {
                comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
                ip saddr 10.222.0.5 ip daddr != 10.222.0.0/24 masquerade comment "c1-eth0"
                ip saddr 10.222.0.6 ip daddr != 10.222.0.0/24 masquerade comment "c2-eth0"
            }
            chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                ip daddr 224.0.0.0/4 return
                ip6 daddr ff00::/8 return
                goto masq_checks
            }
        }"#,
    );
    assert_eq!(ns.ruleset(), want);

    // Find by comment, delete by handle: only c1's rule goes.
    let found = nft
        .rules_with_comment(Family::Inet, MASQ_TABLE, "masq_checks", "c1-eth0")
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].expressions,
        ["meta", "cmp", "payload", "cmp", "payload", "cmp", "masq"]
    );
    let mut del = Batch::new();
    del.delete_rule(Family::Inet, MASQ_TABLE, "masq_checks", found[0].handle);
    nft.apply(&del).unwrap();
    let left = nft.rules(Family::Inet, MASQ_TABLE, "masq_checks").unwrap();
    assert_eq!(
        left.iter()
            .map(|r| r.comment.clone().unwrap())
            .collect::<Vec<_>>(),
        ["c2-eth0"]
    );
    assert!(!ns.ruleset().contains("c1-eth0"));

    // Listing helpers.
    assert!(nft.table_exists(Family::Inet, MASQ_TABLE).unwrap());
    assert!(!nft.table_exists(Family::Ip, MASQ_TABLE).unwrap());
    let chains = nft.chains(Family::Inet, MASQ_TABLE).unwrap();
    let post = chains.iter().find(|c| c.name == "postrouting").unwrap();
    assert_eq!(post.hook, Some((Hook::Postrouting, priority::SRCNAT)));
    assert_eq!(post.chain_type.as_deref(), Some("nat"));
    let checks = chains.iter().find(|c| c.name == "masq_checks").unwrap();
    assert_eq!(checks.use_count, 2, "one rule in masq_checks, one goto to it");
    assert_eq!(nft.tables(Family::Inet).unwrap().len(), 1);

    // Teardown of the whole table.
    let mut del = Batch::new();
    del.delete_table(Family::Inet, MASQ_TABLE);
    nft.apply(&del).unwrap();
    assert_eq!(ns.ruleset(), "");
}

#[test]
#[ignore = "needs root"]
fn portmap_dnat_layout_for_both_families() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let mut b = Batch::new();
    for (f, pod, host) in [
        (Family::Ip, "10.222.0.5", "10.222.9.1"),
        (Family::Ip6, "fd00:de::5", "fd00:9::1"),
    ] {
        b.add_table(Table::new(f, "cni_hostport"))
            .add_chain(Chain::new(f, "cni_hostport", "hostports"))
            .add_chain(Chain::new(f, "cni_hostport", "prerouting").base(
                ChainType::Nat,
                Hook::Prerouting,
                priority::DSTNAT,
            ))
            .add_chain(Chain::new(f, "cni_hostport", "output").base(
                ChainType::Nat,
                Hook::Output,
                priority::DSTNAT,
            ))
            .add_rule(
                Rule::new(f, "cni_hostport", "prerouting")
                    .fib_daddr_local()
                    .jump("hostports"),
            )
            .add_rule(
                Rule::new(f, "cni_hostport", "output")
                    .fib_daddr_local()
                    .jump("hostports"),
            )
            .add_rule(
                Rule::new(f, "cni_hostport", "hostports")
                    .tcp_dport(8080)
                    .dnat(ip(pod), Some(80))
                    .comment("cid1"),
            )
            .add_rule(
                Rule::new(f, "cni_hostport", "hostports")
                    .daddr(ip(host))
                    .udp_dport(5353)
                    .dnat(ip(pod), Some(53))
                    .comment("cid1"),
            );
    }
    nft.apply(&b).unwrap();
    let want = normalize(
        r#"
        table ip cni_hostport {
            chain hostports {
                tcp dport 8080 dnat to 10.222.0.5:80 comment "cid1"
                ip daddr 10.222.9.1 udp dport 5353 dnat to 10.222.0.5:53 comment "cid1"
            }
            chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                fib daddr type local jump hostports
            }
            chain output {
                type nat hook output priority -100; policy accept;
                fib daddr type local jump hostports
            }
        }
        table ip6 cni_hostport {
            chain hostports {
                tcp dport 8080 dnat to [fd00:de::5]:80 comment "cid1"
                ip6 daddr fd00:9::1 udp dport 5353 dnat to [fd00:de::5]:53 comment "cid1"
            }
            chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                fib daddr type local jump hostports
            }
            chain output {
                type nat hook output priority -100; policy accept;
                fib daddr type local jump hostports
            }
        }"#,
    );
    assert_eq!(ns.ruleset(), want);

    // DEL: every rule commented with the container id, both families, one batch.
    let mut del = Batch::new();
    for f in [Family::Ip, Family::Ip6] {
        for r in nft
            .rules_with_comment(f, "cni_hostport", "hostports", "cid1")
            .unwrap()
        {
            del.delete_rule(f, "cni_hostport", "hostports", r.handle);
        }
    }
    nft.apply(&del).unwrap();
    assert!(
        nft.rules(Family::Ip, "cni_hostport", "hostports")
            .unwrap()
            .is_empty()
    );
    assert!(
        nft.rules(Family::Ip6, "cni_hostport", "hostports")
            .unwrap()
            .is_empty()
    );
}

#[test]
#[ignore = "needs root"]
fn macspoofchk_bridge_chain() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Bridge;
    let mac = [0x0a, 0x58, 0x0a, 0xde, 0x00, 0x05];
    let iface_chain = "cni-br-iface-c1-eth0";
    let mac_chain = "cni-br-iface-c1-eth0-mac";
    let mut b = Batch::new();
    b.add_table(Table::new(f, "nat"))
        .add_chain(Chain::new(f, "nat", "PREROUTING").base(
            ChainType::Filter,
            Hook::Prerouting,
            priority::BRIDGE_DSTNAT,
        ))
        .add_chain(Chain::new(f, "nat", iface_chain))
        .add_chain(Chain::new(f, "nat", mac_chain))
        .add_rule(
            Rule::new(f, "nat", "PREROUTING")
                .iifname("veth1a2b3c4d")
                .jump(iface_chain)
                .comment("macspoofchk-c1-eth0"),
        )
        .add_rule(Rule::new(f, "nat", iface_chain).jump(mac_chain))
        .add_rule(Rule::new(f, "nat", mac_chain).ether_saddr(mac).return_())
        .add_rule(Rule::new(f, "nat", mac_chain).drop())
        .add_rule(
            Rule::new(f, "nat", "PREROUTING")
                .iifname("veth1a2b3c4e")
                .ether_saddr_ne(mac)
                .drop(),
        );
    nft.apply(&b).unwrap();
    let want = normalize(
        r#"
        table bridge nat {
            chain PREROUTING {
                type filter hook prerouting priority dstnat; policy accept;
                iifname "veth1a2b3c4d" jump cni-br-iface-c1-eth0 comment "macspoofchk-c1-eth0"
                iifname "veth1a2b3c4e" ether saddr != 0a:58:0a:de:00:05 drop
            }
            chain cni-br-iface-c1-eth0 {
                jump cni-br-iface-c1-eth0-mac
            }
            chain cni-br-iface-c1-eth0-mac {
                ether saddr 0a:58:0a:de:00:05 return
                drop
            }
        }"#,
    );
    assert_eq!(ns.ruleset(), want);

    // Teardown as the plugin does it: the jump, then both chains, in one batch.
    let jump = nft
        .rules_with_comment(f, "nat", "PREROUTING", "macspoofchk-c1-eth0")
        .unwrap();
    let mut del = Batch::new();
    del.delete_rule(f, "nat", "PREROUTING", jump[0].handle)
        .flush_chain(f, "nat", iface_chain)
        .delete_chain(f, "nat", iface_chain)
        .delete_chain(f, "nat", mac_chain);
    nft.apply(&del).unwrap();
    let names: Vec<String> = nft
        .chains(f, "nat")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["PREROUTING"]);
}

#[test]
#[ignore = "needs root"]
fn verdict_map_sets_marks_and_ct_state() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Inet;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "x"))
        .add_chain(Chain::new(f, "x", "allowed"))
        .add_set(
            Set::new(f, "x", "ports", &[KeyType::Ipv4Addr, KeyType::InetService])
                .map(MapData::Verdict)
                .elements([
                    SetElement::new([Value::Ip(ip("10.222.0.5")), Value::Port(80)]).verdict(Verdict::Accept),
                    SetElement::new([Value::Ip(ip("10.222.0.6")), Value::Port(443)])
                        .verdict(Verdict::Jump("allowed".into())),
                ]),
        )
        .add_set(
            Set::new(f, "x", "blocked", &[KeyType::Ipv4Addr])
                .elements([SetElement::new([Value::Ip(ip("10.222.0.9"))])]),
        )
        .add_set(
            Set::new(f, "x", "ifs", &[KeyType::IfName])
                .elements([SetElement::new([Value::IfName("veth0".into())])]),
        )
        .add_chain(
            Chain::new(f, "x", "input")
                .base(ChainType::Filter, Hook::Input, priority::FILTER)
                .policy(Policy::Drop),
        )
        .add_rule(
            Rule::new(f, "x", "input")
                .ct_state(ct_state::ESTABLISHED | ct_state::RELATED)
                .accept(),
        )
        .add_rule(
            Rule::new(f, "x", "input")
                .lookup(&[Field::IpSaddr], "blocked")
                .drop(),
        )
        .add_rule(
            Rule::new(f, "x", "input")
                .lookup(&[Field::IifName], "ifs")
                .counter()
                .accept(),
        )
        .add_rule(Rule::new(f, "x", "input").vmap(&[Field::IpDaddr, Field::Dport(L4Proto::Tcp)], "ports"))
        .add_rule(
            Rule::new(f, "x", "input")
                .mark_masked(0x2000, 0x2000)
                .set_mark_bits(0x4000),
        )
        .add_rule(
            Rule::new(f, "x", "input")
                .iifname("veth*")
                .l4proto(L4Proto::Udp)
                .accept(),
        );
    nft.apply(&b).unwrap();
    let want = normalize(
        r#"
        table inet x {
            map ports {
                type ipv4_addr . inet_service : verdict
                elements = { 10.222.0.5 . 80 : accept,
                             10.222.0.6 . 443 : jump allowed }
            }
            set blocked {
                type ipv4_addr
                elements = { 10.222.0.9 }
            }
            set ifs {
                type ifname
                elements = { "veth0" }
            }
            chain allowed {
            }
            chain input {
                type filter hook input priority filter; policy drop;
                ct state established,related accept
                ip saddr @blocked drop
                iifname @ifs counter packets 0 bytes 0 accept
                ip daddr . tcp dport vmap @ports
                meta mark & 0x00002000 == 0x00002000 meta mark set meta mark | 0x00004000
                iifname "veth*" meta l4proto udp accept
            }
        }"#,
    );
    assert_eq!(ns.ruleset(), want);

    // Elements come and go without touching the rules.
    let mut b = Batch::new();
    b.delete_elements(
        f,
        "x",
        "blocked",
        [SetElement::new([Value::Ip(ip("10.222.0.9"))])],
    )
    .add_elements(
        f,
        "x",
        "blocked",
        [SetElement::new([Value::Ip(ip("10.222.0.10"))])],
    )
    .flush_set(f, "x", "ports");
    nft.apply(&b).unwrap();
    let text = ns.ruleset();
    assert!(text.contains("elements = { 10.222.0.10 }"), "{text}");
    assert!(!text.contains("10.222.0.5 . 80"), "{text}");
}

#[test]
#[ignore = "needs root"]
fn failed_batch_names_the_message_and_changes_nothing() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Ip;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "t"))
        .add_chain(Chain::new(f, "t", "c"))
        .add_rule(Rule::new(f, "t", "c").accept())
        .add_rule(Rule::new(f, "t", "c").jump("missing"));
    let err = nft.apply(&b).unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("add rule ip t c (message 4 of 4 in the batch)"),
        "{text}"
    );
    assert!(
        !nft.table_exists(f, "t").unwrap(),
        "nothing of the failed batch was applied"
    );
    assert_eq!(ns.ruleset(), "");

    // Deleting what is not there is ENOENT, which DEL paths test with is_not_found().
    let mut del = Batch::new();
    del.delete_rule(f, "t", "c", 1);
    assert!(nft.apply(&del).unwrap_err().is_not_found());

    // Listing what does not exist is empty, not an error.
    assert!(nft.rules(f, "nope", "c").unwrap().is_empty());
    assert!(nft.chains(f, "nope").unwrap().is_empty());

    // A rule the builder rejected never reaches the kernel.
    let mut b = Batch::new();
    b.add_rule(Rule::new(f, "t", "c").daddr(ip("fd00::1")).accept());
    assert!(matches!(nft.apply(&b), Err(cni_net::Error::InvalidArgument(_))));
}

#[test]
#[ignore = "needs root"]
fn rule_positions_insert_before_and_after_handles() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Ip;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "t"))
        .add_chain(Chain::new(f, "t", "c"))
        .add_rule(Rule::new(f, "t", "c").accept().comment("b"));
    nft.apply(&b).unwrap();
    let handle = nft.rules(f, "t", "c").unwrap()[0].handle;
    let mut b = Batch::new();
    b.add_rule(
        Rule::new(f, "t", "c")
            .accept()
            .comment("a")
            .position(cni_net::nft::Position::Insert),
    )
    .add_rule(Rule::new(f, "t", "c").accept().comment("d"))
    .add_rule(
        Rule::new(f, "t", "c")
            .accept()
            .comment("c")
            .position(cni_net::nft::Position::After(handle)),
    );
    nft.apply(&b).unwrap();
    let order: Vec<String> = nft
        .rules(f, "t", "c")
        .unwrap()
        .into_iter()
        .filter_map(|r| r.comment)
        .collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
}

#[test]
#[ignore = "needs root"]
fn big_batch_of_many_rules_applies_at_once() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Ip;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "t")).add_chain(Chain::new(f, "t", "c"));
    for i in 0..3000u16 {
        b.add_rule(
            Rule::new(f, "t", "c")
                .tcp_dport(10000 + i)
                .dnat(ip("10.222.0.5"), Some(i + 1))
                .comment(format!("c{i}")),
        );
    }
    nft.apply(&b).unwrap();
    let rules = nft.rules(f, "t", "c").unwrap();
    assert_eq!(rules.len(), 3000);
    assert_eq!(rules[2999].comment.as_deref(), Some("c2999"));
}

/// A DNAT rule made here forwards a real TCP connection: client ns -> host ns (DNAT in
/// prerouting) -> container ns.
#[test]
#[ignore = "needs root"]
fn dnat_rule_forwards_a_tcp_connection() {
    let (host, container, client) = dnat_topology();

    let f = Family::Ip;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "cni_hostport"))
        .add_chain(Chain::new(f, "cni_hostport", "hostports"))
        .add_chain(Chain::new(f, "cni_hostport", "prerouting").base(
            ChainType::Nat,
            Hook::Prerouting,
            priority::DSTNAT,
        ))
        .add_rule(
            Rule::new(f, "cni_hostport", "prerouting")
                .fib_daddr_local()
                .jump("hostports"),
        )
        .add_rule(
            Rule::new(f, "cni_hostport", "hostports")
                .tcp_dport(8080)
                .dnat(ip("10.222.1.2"), Some(80))
                .comment("cid"),
        );
    NetfilterSocket::new_in(&host.open()).unwrap().apply(&b).unwrap();

    let peer = exchange(&container, &client, "hello from the container");
    assert_eq!(
        peer.ip(),
        ip("10.222.2.2"),
        "DNAT keeps the client's source address"
    );
}

#[test]
#[ignore = "needs root"]
fn anonymous_sets_and_verdict_maps_live_with_their_rule() {
    let ns = TestNetns::with_lo_up();
    let mut nft = NetfilterSocket::new_in(&ns.open()).unwrap();
    let f = Family::Inet;
    let v4 = |s: &str| SetElement::new([Value::Ip(ip(s))]);
    let port = |p: u16, v: Verdict| SetElement::new([Value::Port(p)]).verdict(v);
    let mut b = Batch::new();
    b.add_table(Table::new(f, "x"))
        .add_chain(Chain::new(f, "x", "c"))
        .add_rule(
            Rule::new(f, "x", "c")
                .lookup_in(&[Field::IpDaddr], [v4("10.222.0.1"), v4("10.222.0.2")])
                .drop(),
        )
        .add_rule(
            Rule::new(f, "x", "c")
                .vmap_in(
                    &[Field::Dport(L4Proto::Tcp)],
                    [port(80, Verdict::Accept), port(443, Verdict::Drop)],
                )
                .comment("vm"),
        );
    nft.apply(&b).unwrap();
    let text = ns.ruleset();
    assert!(
        text.contains("ip daddr { 10.222.0.1, 10.222.0.2 } drop"),
        "{text}"
    );
    assert!(
        text.contains(r#"tcp dport vmap { 80 : accept, 443 : drop } comment "vm""#),
        "{text}"
    );

    // Deleting the rule takes its anonymous map with it.
    let rule = &nft.rules_with_comment(f, "x", "c", "vm").unwrap()[0];
    let mut del = Batch::new();
    del.delete_rule(f, "x", "c", rule.handle);
    nft.apply(&del).unwrap();
    let text = ns.ruleset();
    assert!(!text.contains("vmap"), "{text}");
    assert!(text.contains("10.222.0.2"), "{text}");
}

/// A NAT map to (address, port), an interval set of a concatenation with a range, element
/// comments, single-element lookups and listings, and a TCP connection through the map.
#[test]
#[ignore = "needs root"]
fn dnat_through_a_pair_map_and_interval_concat_set() {
    let (host, container, client) = dnat_topology();

    let (f, t) = (Family::Ip, "cni_hostport");
    let proto = |p: L4Proto| Value::Proto(p as u8);
    let dnat_key = [proto(L4Proto::Tcp), Value::Port(8080)];
    let mut b = Batch::new();
    b.add_table(Table::new(f, t))
        .add_set(
            Set::new(f, t, "dnat", &[KeyType::InetProto, KeyType::InetService])
                .map(MapData::Pair(KeyType::Ipv4Addr, KeyType::InetService)),
        )
        .add_set({
            let mut s = Set::new(
                f,
                t,
                "masq",
                &[KeyType::InetProto, KeyType::InetService, KeyType::Ipv4Addr],
            );
            s.flags |= cni_net::nft::SET_F_INTERVAL;
            s
        })
        .add_chain(Chain::new(f, t, "prerouting").base(ChainType::Nat, Hook::Prerouting, priority::DSTNAT))
        .add_rule(
            Rule::new(f, t, "prerouting")
                .lookup(
                    &[Field::L4Proto, Field::Dport(L4Proto::Tcp), Field::IpSaddr],
                    "masq",
                )
                .set_mark_bits(0x2000),
        )
        .add_rule(Rule::new(f, t, "prerouting").dnat_map(
            &[Field::L4Proto, Field::ThDport],
            "dnat",
            Family::Ip,
        ))
        .add_elements(
            f,
            t,
            "dnat",
            [SetElement::new(dnat_key.clone())
                .pair(Value::Ip(ip("10.222.1.2")), Value::Port(80))
                .comment("cni-dn-x c1 10.222.1.2/24")],
        )
        .add_elements(
            f,
            t,
            "masq",
            [SetElement::new([
                proto(L4Proto::Tcp),
                Value::Port(8080),
                Value::Ip(ip("10.222.1.0")),
            ])
            .range_end([
                proto(L4Proto::Tcp),
                Value::Port(8080),
                Value::Ip(ip("10.222.1.255")),
            ])
            .comment("cni-dn-x c1")],
        );
    let mut sock = NetfilterSocket::new_in(&host.open()).unwrap();
    sock.apply(&b).unwrap();

    let listed = normalize(&host.ruleset());
    for want in [
        "type inet_proto . inet_service : ipv4_addr . inet_service",
        "tcp . 8080 comment \"cni-dn-x c1 10.222.1.2/24\" : 10.222.1.2 . 80",
        "tcp . 8080 . 10.222.1.0/24 comment \"cni-dn-x c1\"",
        "dnat ip to meta l4proto . th dport map @dnat",
    ] {
        assert!(listed.contains(want), "{want:?} missing in:\n{listed}");
    }

    let key = cni_net::nft::concat_bytes(&dnat_key);
    let got = sock.element(f, t, "dnat", &key).unwrap().expect("the element");
    assert_eq!(got.comment.as_deref(), Some("cni-dn-x c1 10.222.1.2/24"));
    assert_eq!(got.data.as_deref(), Some(&[10u8, 222, 1, 2, 0, 80, 0, 0][..]));
    let missing = cni_net::nft::concat_bytes(&[proto(L4Proto::Udp), Value::Port(8080)]);
    assert_eq!(sock.element(f, t, "dnat", &missing).unwrap(), None);
    assert_eq!(sock.elements(f, t, "dnat").unwrap(), vec![got]);
    let masq = sock.elements(f, t, "masq").unwrap();
    assert_eq!(masq.len(), 1);
    assert_eq!(
        masq[0].key_end.as_deref(),
        Some(&[6u8, 0, 0, 0, 0x1f, 0x90, 0, 0, 10, 222, 1, 255][..])
    );
    assert_eq!(sock.elements(f, t, "nosuchset").unwrap(), vec![]);

    exchange(&container, &client, "through the map");

    // Deleting the range needs its exact start and end.
    let mut del = Batch::new();
    del.delete_elements(f, t, "dnat", [SetElement::new(dnat_key)])
        .delete_elements(
            f,
            t,
            "masq",
            [SetElement::new([
                proto(L4Proto::Tcp),
                Value::Port(8080),
                Value::Ip(ip("10.222.1.0")),
            ])
            .range_end([
                proto(L4Proto::Tcp),
                Value::Port(8080),
                Value::Ip(ip("10.222.1.255")),
            ])],
        );
    sock.apply(&del).unwrap();
    assert_eq!(sock.elements(f, t, "dnat").unwrap(), vec![]);
    assert_eq!(sock.elements(f, t, "masq").unwrap(), vec![]);
}
