#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    name: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    mtu: i64,
    #[serde(default, rename = "hostIP")]
    host_ip: String,
    #[serde(default)]
    ranges: Option<Vec<Vec<Range>>>,
    #[serde(default)]
    by_name: HashMap<String, Range>,
    #[serde(default)]
    runtime_config: Option<Map<String, Value>>,
    #[serde(default)]
    single: Option<Range>,
}

fn conf(json: &str) -> Conf {
    from_slice(json.as_bytes()).unwrap()
}

#[test]
fn equal_fold_is_gos() {
    assert!(equal_fold("IsGateway", "isGateway"));
    assert!(equal_fold("ISGATEWAY", "isGateway"));
    assert!(equal_fold("hostip", "hostIP"));
    assert!(!equal_fold("isGateway2", "isGateway"));
    assert!(!equal_fold("is_gateway", "isGateway"));
    // The two non-ASCII characters whose fold orbit holds an ASCII letter.
    assert!(equal_fold("\u{212A}ey", "key"));
    assert!(equal_fold("ho\u{017F}tIP", "hostIP"));
    // Dotted and dotless i are their own orbits in Go: no match.
    assert!(!equal_fold("\u{0130}ps", "ips"));
    assert!(!equal_fold("\u{0131}ps", "ips"));
    assert!(!equal_fold("é", "e"));
}

#[test]
fn field_for_prefers_an_exact_field_then_declaration_order() {
    let fields = &["foo", "FOO", "bar"];
    assert_eq!(field_for("FOO", fields), Some("FOO"));
    assert_eq!(field_for("foo", fields), Some("foo"));
    assert_eq!(field_for("Foo", fields), Some("foo"));
    assert_eq!(field_for("BAR", fields), Some("bar"));
    assert_eq!(field_for("baz", fields), None);
}

#[test]
fn an_exact_key_goes_to_its_own_field_before_a_folded_one() {
    #[derive(Debug, Default, PartialEq, Deserialize)]
    struct Two {
        #[serde(default, rename = "foo")]
        lower: i64,
        #[serde(default, rename = "FOO")]
        upper: i64,
    }
    let t: Two = from_slice(br#"{"FOO":1,"foo":2}"#).unwrap();
    assert_eq!(t, Two { lower: 2, upper: 1 });
    let t: Two = from_slice(br#"{"FOO":1,"Foo":3}"#).unwrap();
    assert_eq!(
        t,
        Two { lower: 3, upper: 1 },
        "no exact field: the first declared wins"
    );
    let t: Two = from_slice(br#"{"fOO":4}"#).unwrap();
    assert_eq!(t, Two { lower: 4, upper: 0 });
}

#[test]
fn any_case_reaches_the_field_at_every_level() {
    let canonical = conf(
        r#"{"name":"n","isGateway":true,"mtu":1400,"hostIP":"10.222.0.1",
            "ranges":[[{"subnet":"10.222.1.0/24","rangeStart":"10.222.1.10"}]],
            "single":{"subnet":"10.222.2.0/24"}}"#,
    );
    let shouted = conf(
        r#"{"NAME":"n","IsGateway":true,"MTU":1400,"HostIp":"10.222.0.1",
            "Ranges":[[{"Subnet":"10.222.1.0/24","RANGESTART":"10.222.1.10"}]],
            "Single":{"SUBNET":"10.222.2.0/24"}}"#,
    );
    assert_eq!(shouted, canonical);
    assert!(canonical.is_gateway && canonical.mtu == 1400);
    let lower = conf(r#"{"isgateway":true,"hostip":"x","ranges":[[{"rangestart":"10.222.1.9"}]]}"#);
    assert!(lower.is_gateway);
    assert_eq!(lower.host_ip, "x");
    assert_eq!(
        lower.ranges.unwrap()[0][0].range_start.as_deref(),
        Some("10.222.1.9")
    );
}

#[test]
fn the_last_key_for_a_field_wins_whatever_its_case() {
    assert!(conf(r#"{"isGateway":false,"IsGateway":true}"#).is_gateway);
    assert!(!conf(r#"{"IsGateway":true,"isGateway":false}"#).is_gateway);
    // Order is kept even when an exact key comes back after a folded one.
    assert_eq!(conf(r#"{"mtu":1,"MTU":2,"mtu":3}"#).mtu, 3);
    assert_eq!(conf(r#"{"mtu":1,"MTU":2,"Mtu":4}"#).mtu, 4);
    // A repeated struct is replaced whole (Go would merge it: see the module doc).
    let c = conf(r#"{"single":{"subnet":"a","rangeStart":"b"},"Single":{"subnet":"c"}}"#);
    assert_eq!(
        c.single,
        Some(Range {
            subnet: Some("c".into()),
            range_start: None
        })
    );
}

#[test]
fn map_keys_are_data_not_fields() {
    let c = conf(
        r#"{"byName":{"Subnet":{"SubNet":"10.222.3.0/24"},"subnet":{"subnet":"x"}},
            "RuntimeConfig":{"PortMappings":[{"HostPort":1}],"mac":"m"}}"#,
    );
    assert_eq!(c.by_name.len(), 2);
    // The map's values are structs: their fields still fold.
    assert_eq!(c.by_name["Subnet"].subnet.as_deref(), Some("10.222.3.0/24"));
    assert_eq!(c.by_name["subnet"].subnet.as_deref(), Some("x"));
    let rc = c.runtime_config.unwrap();
    assert_eq!(rc.keys().collect::<Vec<_>>(), ["PortMappings", "mac"]);
    assert_eq!(rc["PortMappings"][0]["HostPort"], 1);
    let m: BTreeMap<String, bool> = from_slice(br#"{"portMappings":true,"PortMappings":false}"#).unwrap();
    assert_eq!(m.len(), 2);
}

#[test]
fn null_reads_as_absent_for_a_field() {
    let c = conf(r#"{"name":null,"mtu":null,"isGateway":null,"ranges":null}"#);
    assert_eq!(c, Conf::default());
    // A later null resets an earlier duplicate.
    assert_eq!(conf(r#"{"mtu":5,"MTU":null}"#).mtu, 0);
    // An unknown key's null stays where it is.
    let m: Map<String, Value> = from_slice(br#"{"x":null}"#).unwrap();
    assert_eq!(m["x"], Value::Null);
}

#[test]
fn unknown_keys_are_left_alone() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        #[serde(default)]
        known: i64,
    }
    let s: Strict = from_slice(br#"{"KNOWN":1}"#).unwrap();
    assert_eq!(s.known, 1);
    let e = from_slice::<Strict>(br#"{"known":1,"Other":2}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `Other`"), "{e}");
    // An ordinary struct ignores them.
    assert_eq!(conf(r#"{"bridge":"cni0","Name":"n"}"#).name, "n");
}

#[test]
fn type_errors_stay_errors() {
    let e = from_slice::<Conf>(br#"{"MTU":"x"}"#).unwrap_err();
    assert!(e.to_string().contains("invalid type: string \"x\""), "{e}");
    assert!(from_slice::<Conf>(br#"{"mtu":1.5}"#).is_err());
    assert!(from_slice::<Conf>(br#"{"ranges":"x"}"#).is_err());
    assert!(from_slice::<Conf>(br#"{"name":"n""#).is_err());
    assert!(from_slice::<Conf>(br#"{"name":"n"} x"#).is_err());
    assert!(from_slice::<Conf>(br#"[1,2]"#).is_err());
    assert!(from_slice::<(u8, u8)>(b"[1,2,3]").is_err());
    assert_eq!(from_slice::<(u8, u8)>(b"[1,2]").unwrap(), (1, 2));
}

#[test]
fn numbers_strings_enums_and_values_round_trip() {
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Proto {
        Tcp,
        Port(u16),
        Both { host_port: u16 },
    }
    let v: Vec<Proto> = from_slice(br#"["tcp",{"port":80},{"both":{"HOST_PORT":8}}]"#).unwrap();
    assert_eq!(v, [Proto::Tcp, Proto::Port(80), Proto::Both { host_port: 8 }]);
    let n: (i64, u64, f64, Option<u8>) = from_slice(b"[-1, 18446744073709551615, 0.5, null]").unwrap();
    assert_eq!(n, (-1, u64::MAX, 0.5, None));
    let text = r#"{"a":[1,-2,3.5,"s",true,null,{"B":{}}],"A":{}}"#;
    let v: Value = from_slice(text.as_bytes()).unwrap();
    assert_eq!(v, serde_json::from_str::<Value>(text).unwrap());
}

#[test]
fn from_value_matches_like_from_slice() {
    let v: Value = serde_json::from_str(r#"{"IsGateway":true,"Ranges":[[{"SUBNET":"s"}]]}"#).unwrap();
    let c: Conf = from_value(&v).unwrap();
    assert!(c.is_gateway);
    assert_eq!(c.ranges.unwrap()[0][0].subnet.as_deref(), Some("s"));
}

#[test]
fn get_finds_the_last_folded_key() {
    let m: Map<String, Value> = serde_json::from_str(r#"{"type":"a","TYPE":"b","other":1}"#).unwrap();
    assert_eq!(get(&m, "type"), Some(&Value::from("b")));
    assert_eq!(get(&m, "missing"), None);
}
