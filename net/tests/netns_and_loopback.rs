//! Entering namespaces and the operations the loopback plugin needs. Runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use cni_net::{Family, LinkKind, Netns, OperState, Socket, in_netns, netns};
use common::{NetnsExt, TestNetns};

#[test]
#[ignore = "needs root"]
fn run_enters_the_namespace_and_returns() {
    let ns = TestNetns::new();
    let handle = ns.open();
    let host = netns::current_id().unwrap();
    let inside = handle.run(|| netns::current_id().unwrap()).unwrap();
    assert_eq!(inside, handle.id().unwrap());
    assert_ne!(inside, host);
    assert_eq!(netns::current_id().unwrap(), host);
}

#[test]
#[ignore = "needs root"]
fn in_netns_by_path_and_back_after_panic() {
    let ns = TestNetns::new();
    let host = netns::current_id().unwrap();
    let path = ns.path().to_path_buf();
    let caught = std::panic::catch_unwind(|| {
        in_netns(&path, || panic!("boom inside")).ok();
    });
    assert!(caught.is_err());
    assert_eq!(
        netns::current_id().unwrap(),
        host,
        "thread must be back after a panic"
    );
}

#[test]
fn opening_a_missing_namespace_fails() {
    let err = Netns::open("/var/run/netns/rcni-t-does-not-exist").unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
#[ignore = "needs root"]
fn socket_opened_inside_keeps_acting_on_the_container() {
    let ns = TestNetns::new();
    let mut inside = ns.open().socket().unwrap();
    // Back in the host namespace, the socket still sees the container's lone loopback.
    let links = inside.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert_eq!(links[0].kind, LinkKind::Loopback);
}

#[test]
#[ignore = "needs root"]
fn loopback_up_and_its_addresses() {
    let ns = TestNetns::new();
    let mut sock = ns.open().socket().unwrap();

    let lo = sock.link_by_name("lo").unwrap();
    assert_eq!(lo.kind, LinkKind::Loopback);
    assert!(!lo.up);
    assert!(sock.addresses(Some(lo.index), None).unwrap().is_empty());

    sock.set_link_up(lo.index).unwrap();
    let lo = sock.link_by_index(lo.index).unwrap();
    assert!(lo.up);
    assert_eq!(lo.oper_state, OperState::Unknown);
    assert_eq!(lo.mtu, 65536);

    let addrs = sock.addresses(Some(lo.index), None).unwrap();
    let ips: Vec<IpAddr> = addrs.iter().map(|a| a.address.ip()).collect();
    assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    assert!(ips.contains(&"::1".parse().unwrap()), "{addrs:?}");
    let v4 = sock.addresses(Some(lo.index), Some(Family::V4)).unwrap();
    assert_eq!(v4.len(), 1);
    assert_eq!(v4[0].address.to_string(), "127.0.0.1/8");
    assert_eq!(v4[0].scope, cni_net::Scope::Host);

    sock.set_link_down(lo.index).unwrap();
    assert!(!sock.link_by_name("lo").unwrap().up);
}

#[test]
#[ignore = "needs root"]
fn missing_link_is_enodev() {
    let ns = TestNetns::new();
    let mut sock = ns.open().socket().unwrap();
    let err = sock.link_by_name("nope0").unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENODEV), "{err}");
    assert!(sock.find_link_by_name("nope0").unwrap().is_none());
}

#[test]
fn socket_in_thread_namespace_sees_host_links() {
    // A plain socket opened on the test thread acts on the host namespace: read only.
    let mut sock = Socket::new().unwrap();
    assert!(sock.links().unwrap().iter().any(|l| l.kind == LinkKind::Loopback));
}
