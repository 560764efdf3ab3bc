//! Conntrack listing and deletion over ctnetlink inside throw-away namespaces (root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use cni_net::Family;
use cni_net::conntrack::{FlowFilter, IPPROTO_UDP};
use cni_net::nft::{self, Batch, Chain, ChainType, Hook, NetfilterSocket, Rule, Table, ct_state, priority};
use common::{NetnsExt, TestNetns, veth};

/// A `ct state new` rule makes the kernel track connections in the namespace.
fn track_connections(ns: &TestNetns) {
    let f = nft::Family::Inet;
    let mut b = Batch::new();
    b.add_table(Table::new(f, "track"))
        .add_chain(Chain::new(f, "track", "input").base(ChainType::Filter, Hook::Input, priority::FILTER))
        .add_rule(Rule::new(f, "track", "input").ct_state(ct_state::NEW).counter());
    NetfilterSocket::new_in(&ns.open()).unwrap().apply(&b).unwrap();
}

/// Sends one datagram from `from` to `to` in `server` and returns once `server` has received
/// it: by then the server's conntrack entry exists (made on the way in, before delivery), so
/// no timing decides what the dump that follows sees (neighbour discovery may hold the first
/// packet back for a while).
fn send_udp(from: &TestNetns, bind: &str, to: SocketAddr, server: &TestNetns) {
    let listener = server.open().run(|| UdpSocket::bind(to).unwrap()).unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    from.open()
        .run(|| {
            let s = UdpSocket::bind(bind).unwrap();
            s.send_to(b"ping", to).unwrap();
        })
        .unwrap();
    let mut buf = [0u8; 8];
    let (n, _) = listener
        .recv_from(&mut buf)
        .expect("the datagram reached the server");
    assert_eq!(&buf[..n], b"ping");
}

fn setup() -> (TestNetns, TestNetns) {
    let client = TestNetns::with_lo_up();
    let server = TestNetns::with_lo_up();
    veth(&client, "c-s", "10.222.3.1/24", &server, "s-c", "10.222.3.2/24");
    client.exec(&["ip", "addr", "add", "fd00:222:3::1/64", "dev", "c-s", "nodad"]);
    server.exec(&["ip", "addr", "add", "fd00:222:3::2/64", "dev", "s-c", "nodad"]);
    track_connections(&server);
    (client, server)
}

#[test]
#[ignore = "needs root"]
fn delete_udp_flows_by_port_and_address_v4() {
    let (client, server) = setup();
    let dst: IpAddr = "10.222.3.2".parse().unwrap();
    send_udp(&client, "10.222.3.1:0", SocketAddr::new(dst, 5353), &server);
    send_udp(&client, "10.222.3.1:0", SocketAddr::new(dst, 6000), &server);

    let mut nf = NetfilterSocket::new_in(&server.open()).unwrap();
    let flows = nf.conntrack_flows(Family::V4).unwrap();
    let udp: Vec<_> = flows
        .iter()
        .filter(|f| f.original.protocol == IPPROTO_UDP)
        .collect();
    assert_eq!(udp.len(), 2, "{flows:?}");
    let dns = udp.iter().find(|f| f.original.dport == 5353).unwrap();
    assert_eq!(dns.original.src, "10.222.3.1".parse::<IpAddr>().unwrap());
    assert_eq!(dns.original.dst, dst);
    assert_eq!(dns.reply.unwrap().sport, 5353);
    // The kernel-filtered dump returns only the entry to that port.
    let to_port = nf.conntrack_flows_to_port(Family::V4, IPPROTO_UDP, 5353).unwrap();
    assert_eq!(to_port.len(), 1, "{to_port:?}");
    assert_eq!(to_port[0].original, dns.original);
    assert!(
        nf.conntrack_flows_to_port(Family::V4, IPPROTO_UDP, 7)
            .unwrap()
            .is_empty()
    );

    // Another address on the same port: nothing deleted.
    assert_eq!(
        nf.delete_udp_flows(Family::V4, Some("10.222.3.99".parse().unwrap()), 5353)
            .unwrap(),
        0
    );
    assert_eq!(nf.delete_udp_flows(Family::V4, Some(dst), 5353).unwrap(), 1);
    let left: Vec<u16> = nf
        .conntrack_flows(Family::V4)
        .unwrap()
        .iter()
        .map(|f| f.original.dport)
        .collect();
    assert_eq!(left, [6000]);
    // Idempotent: nothing left to delete is not an error.
    assert_eq!(nf.delete_udp_flows(Family::V4, None, 5353).unwrap(), 0);
    // Any address (what Go's portmap does).
    assert_eq!(nf.delete_udp_flows(Family::V4, None, 6000).unwrap(), 1);
    assert!(nf.conntrack_flows(Family::V4).unwrap().is_empty());
}

#[test]
#[ignore = "needs root"]
fn delete_udp_flows_v6_leaves_v4_alone() {
    let (client, server) = setup();
    send_udp(
        &client,
        "[fd00:222:3::1]:0",
        "[fd00:222:3::2]:5353".parse().unwrap(),
        &server,
    );
    send_udp(
        &client,
        "10.222.3.1:0",
        "10.222.3.2:5353".parse().unwrap(),
        &server,
    );

    let mut nf = NetfilterSocket::new_in(&server.open()).unwrap();
    let v6 = nf.conntrack_flows(Family::V6).unwrap();
    assert!(
        v6.iter()
            .any(|f| f.original.dport == 5353 && f.original.protocol == IPPROTO_UDP),
        "{v6:?}"
    );
    assert_eq!(nf.delete_udp_flows(Family::V6, None, 5353).unwrap(), 1);
    assert!(
        !nf.conntrack_flows(Family::V6)
            .unwrap()
            .iter()
            .any(|f| f.original.protocol == IPPROTO_UDP)
    );
    let filter = FlowFilter {
        protocol: Some(IPPROTO_UDP),
        dport: Some(5353),
        ..FlowFilter::default()
    };
    assert_eq!(
        nf.conntrack_flows(Family::V4)
            .unwrap()
            .iter()
            .filter(|f| filter.matches(f))
            .count(),
        1
    );
}
