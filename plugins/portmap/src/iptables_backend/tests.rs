use super::*;
use crate::config::{HostFirewalls, PortMapConf};

struct NoNft;
impl HostFirewalls for NoNft {
    fn has_nftables(&mut self) -> bool {
        false
    }
}

const CID: &str = "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y";

/// Go's portmap_iptables_test.go config.
fn go_test_conf(snat: bool) -> PortMapConf {
    let json = format!(
        r#"{{"name":"test","type":"portmap","cniVersion":"1.0.0","snat":{snat},
        "runtimeConfig":{{"portMappings":[
            {{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
            {{ "hostPort": 8081, "containerPort": 80, "protocol": "tcp"}},
            {{ "hostPort": 8080, "containerPort": 81, "protocol": "udp"}},
            {{ "hostPort": 8082, "containerPort": 82, "protocol": "udp"}},
            {{ "hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "192.168.0.2"}},
            {{ "hostPort": 8084, "containerPort": 84, "protocol": "tcp", "hostIP": "0.0.0.0"}},
            {{ "hostPort": 8085, "containerPort": 85, "protocol": "tcp", "hostIP": "2001:db8:a::1"}},
            {{ "hostPort": 8086, "containerPort": 86, "protocol": "tcp", "hostIP": "::"}}
        ]}},
        "conditionsV4": ["-a", "b"], "conditionsV6": ["-c", "d"]}}"#
    );
    PortMapConf::parse(json.as_bytes(), &mut NoNft).unwrap()
}

fn lines(rules: &[Rule]) -> Vec<String> {
    rules.iter().map(|r| format!("-A {}", r.spec())).collect()
}

#[test]
fn dnat_chain_matches_go_v4() {
    let att = Attachment::new("test", CID);
    let ch = dnat_chain(&go_test_conf(true), &att, "10.0.0.2/24".parse().unwrap());
    assert_eq!(ch.name, "CNI-DN-67e92b96e692a494b6b85");
    let c = format!(r#""dnat name: \"test\" id: \"{CID}\"""#);
    assert_eq!(
        lines(&ch.entry_rules),
        [
            format!(
                "-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment {c} -m multiport --dports 8080,8081,8083,8084,8085,8086 -a b -j CNI-DN-67e92b96e692a494b6b85"
            ),
            format!(
                "-A CNI-HOSTPORT-DNAT -p udp -m comment --comment {c} -m multiport --dports 8080,8082 -a b -j CNI-DN-67e92b96e692a494b6b85"
            ),
        ]
    );
    let n = "CNI-DN-67e92b96e692a494b6b85";
    let expected: Vec<String> = [
        "-s 10.0.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80",
        "-s 10.0.0.0/24 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK",
        "-p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.0.0.2:80",
        "-s 10.0.0.0/24 -p udp -m udp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -p udp -m udp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-p udp -m udp --dport 8080 -j DNAT --to-destination 10.0.0.2:81",
        "-s 10.0.0.0/24 -p udp -m udp --dport 8082 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -p udp -m udp --dport 8082 -j CNI-HOSTPORT-SETMARK",
        "-p udp -m udp --dport 8082 -j DNAT --to-destination 10.0.0.2:82",
        "-s 10.0.0.0/24 -d 192.168.0.2/32 -p tcp -m tcp --dport 8083 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -d 192.168.0.2/32 -p tcp -m tcp --dport 8083 -j CNI-HOSTPORT-SETMARK",
        "-d 192.168.0.2/32 -p tcp -m tcp --dport 8083 -j DNAT --to-destination 10.0.0.2:83",
        "-s 10.0.0.0/24 -p tcp -m tcp --dport 8084 -j CNI-HOSTPORT-SETMARK",
        "-s 127.0.0.1/32 -p tcp -m tcp --dport 8084 -j CNI-HOSTPORT-SETMARK",
        "-p tcp -m tcp --dport 8084 -j DNAT --to-destination 10.0.0.2:84",
    ]
    .iter()
    .map(|r| format!("-A {n} {r}"))
    .collect();
    assert_eq!(lines(&ch.rules), expected);
}

#[test]
fn dnat_chain_matches_go_v6_and_without_snat() {
    let att = Attachment::new("test", CID);
    let ch = dnat_chain(&go_test_conf(true), &att, "2001:db8::2/64".parse().unwrap());
    let got: Vec<String> = ch.rules.iter().map(|r| r.tokens.join(" ")).collect();
    assert_eq!(
        got,
        [
            "-s 2001:db8::/64 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [2001:db8::2]:80",
            "-s 2001:db8::/64 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 8081 -j DNAT --to-destination [2001:db8::2]:80",
            "-s 2001:db8::/64 -p udp -m udp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            "-p udp -m udp --dport 8080 -j DNAT --to-destination [2001:db8::2]:81",
            "-s 2001:db8::/64 -p udp -m udp --dport 8082 -j CNI-HOSTPORT-SETMARK",
            "-p udp -m udp --dport 8082 -j DNAT --to-destination [2001:db8::2]:82",
            "-s 2001:db8::/64 -d 2001:db8:a::1/128 -p tcp -m tcp --dport 8085 -j CNI-HOSTPORT-SETMARK",
            "-d 2001:db8:a::1/128 -p tcp -m tcp --dport 8085 -j DNAT --to-destination [2001:db8::2]:85",
            "-s 2001:db8::/64 -p tcp -m tcp --dport 8086 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 8086 -j DNAT --to-destination [2001:db8::2]:86",
        ]
    );
    assert!(
        ch.entry_rules[0]
            .tokens
            .ends_with(&["-c".into(), "d".into(), "-j".into(), ch.name.clone()])
    );
    let ch = dnat_chain(&go_test_conf(false), &att, "10.0.0.2/24".parse().unwrap());
    assert_eq!(ch.rules.len(), 6);
    assert!(ch.rules.iter().all(|r| r.target() == Some("DNAT")));
}

#[test]
fn external_mark_chain_and_masq_all() {
    let conf = PortMapConf::parse(
        br#"{"name":"test","externalSetMarkChain":"KUBE-MARK-MASQ","masqAll":true,
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        &mut NoNft,
    )
    .unwrap();
    let ch = dnat_chain(
        &conf,
        &Attachment::new("test", "c"),
        "10.0.0.2/24".parse().unwrap(),
    );
    let got: Vec<String> = ch.rules.iter().map(|r| r.tokens.join(" ")).collect();
    assert_eq!(
        got,
        [
            "-p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ",
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80"
        ]
    );
    // no SETMARK/MASQ chains of our own
    let batch = add_batch(
        &SavedTable::default(),
        &conf,
        &Attachment::new("test", "c"),
        "10.0.0.2/24".parse().unwrap(),
    )
    .render()
    .unwrap();
    assert!(
        !batch.contains(SET_MARK_CHAIN) && !batch.contains(MARK_MASQ_CHAIN),
        "{batch}"
    );
}

#[test]
fn multiport_groups_hold_at_most_15_ports() {
    let maps: Vec<String> = (1..=31)
        .map(|p| format!(r#"{{"hostPort":{p},"containerPort":80,"protocol":"tcp"}}"#))
        .collect();
    let json = format!(
        r#"{{"name":"n","runtimeConfig":{{"portMappings":[{}]}}}}"#,
        maps.join(",")
    );
    let conf = PortMapConf::parse(json.as_bytes(), &mut NoNft).unwrap();
    let ch = dnat_chain(&conf, &Attachment::new("n", "c"), "10.0.0.2/24".parse().unwrap());
    let lists: Vec<&str> = ch.entry_rules.iter().map(|r| r.tokens[9].as_str()).collect();
    assert_eq!(
        lists,
        [
            "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            "16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
            "31"
        ]
    );
}

const SAVED_GO: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-DN-06fd4c128e9a14f3b4153 - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-06fd4c128e9a14f3b4153 -s 10.222.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-06fd4c128e9a14f3b4153 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.222.1.2:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"pm\" id: \"c1\"" -m multiport --dports 8080 -j CNI-DN-06fd4c128e9a14f3b4153
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
"#;

fn saved_go() -> SavedTable {
    cni_net::iptables::parse_save(SAVED_GO).unwrap().remove(0)
}

#[test]
fn saved_rules_parse_and_quote_back() {
    let t = saved_go();
    assert!(t.has_chain("CNI-HOSTPORT-DNAT"));
    assert!(set_mark_rule(0x2000).is_in(&t));
    assert!(mark_masq_rule(0x2000).is_in(&t));
    assert!(mark_masq_entry_rule().is_in(&t));
    for r in top_level_entry_rules() {
        assert!(r.is_in(&t));
    }
    let jump = t.rules_jumping_to("CNI-DN-06fd4c128e9a14f3b4153").next().unwrap();
    let ours = Rule {
        chain: jump.chain.clone(),
        tokens: jump.args.clone(),
    };
    assert_eq!(
        format!("-A {}", ours.spec()),
        r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"pm\" id: \"c1\"" -m multiport --dports 8080 -j CNI-DN-06fd4c128e9a14f3b4153"#
    );
    assert_eq!(
        jump.comment.as_deref().and_then(parse_comment),
        Some(("pm".into(), "c1".into()))
    );
}

#[test]
fn add_batch_only_creates_what_is_missing() {
    let conf = PortMapConf::parse(
        br#"{"name":"pm","backend":"iptables","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        &mut NoNft,
    )
    .unwrap();
    let att = Attachment::new("pm", "c2");
    let dn = att.dnat_chain();
    let batch = add_batch(&saved_go(), &conf, &att, "10.222.1.3/24".parse().unwrap())
        .render()
        .unwrap();
    let c = r#""dnat name: \"pm\" id: \"c2\"""#;
    assert_eq!(
        batch,
        format!(
            "*nat\n:{dn} - [0:0]\n\
             -A {dn} -s 10.222.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK\n\
             -A {dn} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK\n\
             -A {dn} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.222.1.3:80\n\
             -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment {c} -m multiport --dports 8080 -j {dn}\n\
             COMMIT\n"
        )
    );
    let fresh = add_batch(
        &SavedTable::default(),
        &conf,
        &att,
        "10.222.1.3/24".parse().unwrap(),
    )
    .render()
    .unwrap();
    assert!(fresh.starts_with(&format!(
        "*nat\n:{dn} - [0:0]\n\
         -N CNI-HOSTPORT-SETMARK\n\
         -A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n\
         -N CNI-HOSTPORT-MASQ\n\
         -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
         -I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n\
         -N CNI-HOSTPORT-DNAT\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
         -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n"
    )), "{fresh}");
}

#[test]
fn del_batch_removes_go_chains_and_jumps() {
    let t = saved_go();
    let att = Attachment::new("pm", "c1");
    assert_eq!(
        att.dnat_chain(),
        "CNI-DN-06fd4c128e9a14f3b4153",
        "fixture uses Go's name for pm/c1"
    );
    let b = del_batch(&t, &att).unwrap().render().unwrap();
    assert_eq!(
        b,
        "*nat\n-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"pm\\\" id: \\\"c1\\\"\" -m multiport --dports 8080 -j CNI-DN-06fd4c128e9a14f3b4153\n\
         -F CNI-DN-06fd4c128e9a14f3b4153\n-X CNI-DN-06fd4c128e9a14f3b4153\nCOMMIT\n"
    );
    assert_eq!(del_batch(&t, &Attachment::new("pm", "gone")), None);
}

#[test]
fn check_finds_missing_rules() {
    let conf = PortMapConf::parse(
        br#"{"name":"pm","backend":"iptables","snat":false,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        &mut NoNft,
    )
    .unwrap();
    let t = saved_go();
    let att = Attachment::new("pm", "c1");
    check_saved(&t, &conf, &att, "10.222.1.2/24".parse().unwrap()).unwrap();
    assert!(check_saved(&t, &conf, &att, "10.222.1.9/24".parse().unwrap()).is_err());
    assert!(
        check_saved(
            &t,
            &conf,
            &Attachment::new("pm", "c9"),
            "10.222.1.2/24".parse().unwrap()
        )
        .is_err()
    );
}

#[test]
fn gc_removes_only_stale_attachments_of_the_network() {
    let t = saved_go();
    let b = gc_batch(&t, "pm", &[]).render().unwrap();
    assert!(b.contains("-X CNI-DN-06fd4c128e9a14f3b4153"), "{b}");
    assert!(gc_batch(&t, "pm", &["c1".to_string()]).is_empty());
    assert!(gc_batch(&t, "other", &[]).is_empty());
}
