use super::*;
use crate::config::{HostFirewalls, PortMapConf};

struct Nft;
impl HostFirewalls for Nft {
    fn has_nftables(&self) -> bool {
        true
    }
}

fn conf(extra: &str) -> PortMapConf {
    let json = format!(
        r#"{{"name":"pm","type":"portmap"{extra},"runtimeConfig":{{"portMappings":[
            {{"hostPort":8080,"containerPort":80,"protocol":"tcp"}},
            {{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"10.222.0.1"}},
            {{"hostPort":9000,"containerPort":90,"protocol":"tcp","hostIP":"fd00:222::1"}}]}}}}"#
    );
    PortMapConf::parse(json.as_bytes(), &Nft).unwrap()
}

fn text(rules: &[LayoutRule]) -> Vec<String> {
    rules.iter().map(|r| format!("{}: {r}", r.chain)).collect()
}

#[test]
fn attachment_layout_v4() {
    let att = Attachment::new("pm", "c1");
    let a = attachment_rules(&conf(""), &att, "10.222.1.2/24".parse().unwrap()).unwrap();
    assert_eq!(a.chain, "cni-dn-06fd4c128e9a14f3b4153");
    let c = &a.chain;
    assert_eq!(
        text(&a.rules),
        [
            format!(
                r#"{c}: tcp dport 8080 ip saddr 10.222.1.0/24 meta mark set meta mark | 0x00002000 comment "tcp/8080 c1""#
            ),
            format!(
                r#"{c}: tcp dport 8080 ip saddr 127.0.0.1 meta mark set meta mark | 0x00002000 comment "tcp/8080 c1""#
            ),
            format!(r#"{c}: tcp dport 8080 dnat to 10.222.1.2:80 comment "tcp/8080 c1""#),
            format!(
                r#"{c}: udp dport 5353 ip daddr 10.222.0.1 ip saddr 10.222.1.0/24 meta mark set meta mark | 0x00002000 comment "udp/5353/10.222.0.1 c1""#
            ),
            format!(
                r#"{c}: udp dport 5353 ip daddr 10.222.0.1 ip saddr 127.0.0.1 meta mark set meta mark | 0x00002000 comment "udp/5353/10.222.0.1 c1""#
            ),
            format!(
                r#"{c}: udp dport 5353 ip daddr 10.222.0.1 dnat to 10.222.1.2:53 comment "udp/5353/10.222.0.1 c1""#
            ),
        ]
    );
    assert_eq!(
        a.keys.iter().map(Key::to_string).collect::<Vec<_>>(),
        ["tcp/8080", "udp/5353/10.222.0.1"]
    );
    assert_eq!(a.keys[0].map(), ANY_MAP);
    assert_eq!(a.keys[1].map(), HOSTIP_MAP);
}

#[test]
fn attachment_layout_v6_masq_all_and_no_snat() {
    let att = Attachment::new("pm", "c1");
    let a = attachment_rules(
        &conf(r#","masqAll":true"#),
        &att,
        "fd00:222:1::2/64".parse().unwrap(),
    )
    .unwrap();
    let got: Vec<String> = a.rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        got,
        [
            r#"tcp dport 8080 meta mark set meta mark | 0x00002000 comment "tcp/8080 c1""#,
            r#"tcp dport 8080 dnat to [fd00:222:1::2]:80 comment "tcp/8080 c1""#,
            r#"tcp dport 9000 ip6 daddr fd00:222::1 meta mark set meta mark | 0x00002000 comment "tcp/9000/fd00:222::1 c1""#,
            r#"tcp dport 9000 ip6 daddr fd00:222::1 dnat to [fd00:222:1::2]:90 comment "tcp/9000/fd00:222::1 c1""#,
        ]
    );
    let a = attachment_rules(&conf(r#","snat":false"#), &att, "10.222.1.2/24".parse().unwrap()).unwrap();
    assert!(a.rules.iter().all(|r| matches!(r.action, Action::Dnat(..))));
    assert_eq!(a.rules.len(), 2);
}

#[test]
fn static_layout() {
    assert_eq!(
        text(&static_rules(IpFamily::V4)),
        [
            r#"prerouting: fib daddr type local jump hostports_all comment "rcni hostports""#,
            r#"output: fib daddr type local jump hostports_all comment "rcni hostports""#,
            r#"hostports_all: jump hostip_hostports comment "rcni hostip_hostports""#,
            r#"hostports_all: jump hostports comment "rcni hostports""#,
        ]
    );
    assert_eq!(
        text(&dispatch_rules()),
        [
            r#"hostip_hostports: ip daddr . meta l4proto . th dport vmap @rcni_hostip_ports comment "rcni dispatch hostip""#,
            r#"hostip_hostports: meta l4proto . th dport vmap @rcni_ports comment "rcni dispatch""#,
        ]
    );
    assert_eq!(
        masq_rule(0x2000).to_string(),
        r#"meta mark & 0x00002000 == 0x00002000 masquerade comment "rcni masquerade mark 0x2000""#
    );
}

#[test]
fn conditions_subset() {
    let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let c = parse_conditions(
        &t(&["ip", "saddr", "!=", "10.222.0.0/16", "iifname", "eth0"]),
        IpFamily::V4,
    )
    .unwrap();
    assert_eq!(
        c,
        [
            Condition::Saddr("10.222.0.0/16".parse().unwrap(), true),
            Condition::Iifname("eth0".into(), false)
        ]
    );
    let c = parse_conditions(
        &t(&["ip6 daddr fd00:222::/48", "meta oifname \"lo\""]),
        IpFamily::V6,
    )
    .unwrap();
    assert_eq!(c.len(), 2);
    for bad in [
        &["tcp", "sport", "1"][..],
        &["ip", "saddr"],
        &["ip6", "saddr", "::1"],
        &["ip", "saddr", "x"],
    ] {
        let e = parse_conditions(&t(bad), IpFamily::V4).unwrap_err();
        assert_eq!(e.code.0, 7, "{bad:?}");
    }
    // conditions go in front of every rule of the attachment
    let a = attachment_rules(
        &conf(r#","conditionsV4":["iifname","eth0"]"#),
        &Attachment::new("pm", "c1"),
        "10.222.1.2/24".parse().unwrap(),
    )
    .unwrap();
    assert!(
        a.rules
            .iter()
            .all(|r| r.to_string().starts_with("iifname \"eth0\" "))
    );
}

#[test]
fn keys_round_trip_through_comments() {
    for k in ["tcp/8080", "udp/53/10.222.0.1", "sctp/9/fd00:222::1"] {
        assert_eq!(Key::parse(k).unwrap().to_string(), k);
    }
    assert_eq!(Key::parse(""), None);
    assert_eq!(Key::parse("rcni"), None);
    let long = Attachment::new("pm", "x".repeat(200));
    let c = rule_comment(&Key::parse("tcp/1").unwrap(), &long);
    assert_eq!(c.len(), nft::COMMENT_MAX_LEN);
}

#[test]
fn rules_encode() {
    // Every rule of the layout is accepted by the encoder (types, families, registers).
    let att = Attachment::new("pm", "c1");
    for (family, addr) in [
        (IpFamily::V4, "10.222.1.2/24"),
        (IpFamily::V6, "fd00:222:1::2/64"),
    ] {
        let mut b = Batch::new();
        base_batch(&mut b, family, Some(0x2000), &Shared::default());
        let a = attachment_rules(&conf(""), &att, addr.parse().unwrap()).unwrap();
        install_attachment(&mut b, family, &a, true);
        remove_attachment(&mut b, family, &a.chain, &a.keys);
        b.encode(1).unwrap();
    }
}

/// What a listing of a host where everything is in place finds.
fn complete(mark: u32) -> Shared {
    let c = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    Shared {
        table: true,
        comments: vec![
            ("prerouting", c(&[ENTRY_COMMENT])),
            ("output", c(&[ENTRY_COMMENT])),
            (HOSTPORTS_ALL, c(&ALL_COMMENTS)),
            (HOSTIP_HOSTPORTS, c(&[DISPATCH_HOSTIP_COMMENT, DISPATCH_COMMENT])),
            (MASQUERADING, c(&[&masq_comment(mark)])),
        ],
    }
}

#[test]
fn base_batch_sends_nothing_when_everything_is_there() {
    let mut b = Batch::new();
    base_batch(&mut b, IpFamily::V4, Some(0x2000), &complete(0x2000));
    assert!(b.is_empty());
    // Another mark: only its masquerade rule.
    base_batch(&mut b, IpFamily::V4, Some(0x4000), &complete(0x2000));
    assert_eq!(b.encode(1).unwrap().descriptions.len(), 1);
}

#[test]
fn base_batch_remakes_only_what_differs() {
    let mut seen = complete(0x2000);
    // Go's ADD re-made prerouting without our comment; a dispatch rule went missing.
    seen.comments[0].1 = vec![None];
    seen.comments[3].1.pop();
    let mut b = Batch::new();
    base_batch(&mut b, IpFamily::V4, Some(0x2000), &seen);
    let d = b.encode(1).unwrap().descriptions;
    assert!(
        d.iter()
            .any(|x| x.contains("flush chain") && x.contains("prerouting")),
        "{d:?}"
    );
    assert!(!d.iter().any(|x| x.contains("output")), "{d:?}");
    assert!(!d.iter().any(|x| x.contains("add table")), "{d:?}");
    // prerouting's rule, the missing dispatch rule (+ its chain and the maps, idempotent).
    assert_eq!(d.iter().filter(|x| x.starts_with("add rule")).count(), 2, "{d:?}");
}

#[test]
fn base_batch_creates_everything_on_a_fresh_host() {
    let mut b = Batch::new();
    base_batch(&mut b, IpFamily::V6, Some(0x2000), &Shared::default());
    let d = b.encode(1).unwrap().descriptions;
    assert!(d[0].starts_with("add table"), "{d:?}");
    assert!(!d.iter().any(|x| x.contains("flush")), "{d:?}");
    assert_eq!(d.iter().filter(|x| x.starts_with("add rule")).count(), 7, "{d:?}");
}
