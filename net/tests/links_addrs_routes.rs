//! Bridges, veth pairs across namespaces, addresses, routes and sysctls, in throw-away
//! namespaces. Runs as root; only 10.222.0.0/16 and fd00:222::/48 are used.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::fd::AsFd;

use cni_net::route::{MAIN_TABLE, Route};
use cni_net::sysctl;
use cni_net::{BridgeSpec, Error, Family, LinkKind, MacAddr, Socket};
use common::{NetnsExt, TestNetns};
use nix::errno::Errno;

/// A veth pair `a`/`b` inside one namespace, both up, so addresses and routes have a carrier.
fn veth_pair_up(sock: &mut Socket, a: &str, b: &str) -> (u32, u32) {
    let la = sock.create_veth(a, b, None, None, None).unwrap();
    let lb = sock.link_by_name(b).unwrap();
    sock.set_link_up(la.index).unwrap();
    sock.set_link_up(lb.index).unwrap();
    (la.index, lb.index)
}

#[test]
#[ignore = "needs root"]
fn bridge_and_veth_pair_across_two_namespaces() {
    let host_ns = TestNetns::new();
    let cont_ns = TestNetns::new();
    let host = host_ns.open();
    let mut hs = host.socket().unwrap();
    let mut cs = cont_ns.open().socket().unwrap();

    let spec = BridgeSpec {
        name: "rcbr0".into(),
        mtu: Some(1400),
        vlan_filtering: Some(false),
        mac: None,
    };
    let br = hs.ensure_bridge(&spec).unwrap();
    assert!(br.created);
    assert_eq!(br.link.kind, LinkKind::Bridge);
    assert_eq!(br.link.mtu, 1400);
    let again = hs.ensure_bridge(&spec).unwrap();
    assert!(!again.created);
    assert_eq!(again.link.index, br.link.index);
    hs.set_link_up(br.link.index).unwrap();

    // Container end made inside the container, host end in the host namespace.
    let mac: MacAddr = "02:22:22:00:00:05".parse().unwrap();
    let eth0 = cs
        .create_veth("eth0", "vethrc0", Some(host.as_fd()), Some(1400), Some(mac))
        .unwrap();
    assert_eq!(eth0.kind, LinkKind::Veth);
    assert_eq!(eth0.mac, Some(mac));
    assert_eq!(eth0.mtu, 1400);
    let host_end = hs.link_by_name("vethrc0").unwrap();
    assert_eq!(host_end.kind, LinkKind::Veth);
    assert_eq!(host_end.mtu, 1400);
    assert_eq!(eth0.peer_index, Some(host_end.index));
    assert!(eth0.link_netnsid.is_some(), "peer lives in another namespace");
    assert!(cs.find_link_by_name("vethrc0").unwrap().is_none());

    // Same name again is EEXIST.
    let err = cs
        .create_veth("eth0", "vethrc1", Some(host.as_fd()), None, None)
        .unwrap_err();
    assert!(err.is_exists(), "{err}");

    hs.set_link_master(host_end.index, Some(br.link.index)).unwrap();
    hs.set_link_up(host_end.index).unwrap();
    cs.set_link_up(eth0.index).unwrap();
    let host_end = hs.link_by_index(host_end.index).unwrap();
    assert_eq!(host_end.master, Some(br.link.index));
    assert!(host_end.up);

    hs.set_bridge_port_hairpin(host_end.index, true).unwrap();
    hs.set_bridge_port_isolated(host_end.index, true).unwrap();
    let details = host_ns.ip(&["-j", "-d", "link", "show", "dev", "vethrc0"]);
    assert!(details.contains("\"hairpin\":true"), "{details}");
    assert!(details.contains("\"isolated\":true"), "{details}");
    hs.set_bridge_port_hairpin(host_end.index, false).unwrap();
    let details = host_ns.ip(&["-j", "-d", "link", "show", "dev", "vethrc0"]);
    assert!(details.contains("\"hairpin\":false"), "{details}");

    let new_mac: MacAddr = "02:22:22:00:00:06".parse().unwrap();
    cs.set_link_mac(eth0.index, new_mac).unwrap();
    cs.set_link_mtu(eth0.index, 1300).unwrap();
    let eth0 = cs.link_by_index(eth0.index).unwrap();
    assert_eq!((eth0.mac, eth0.mtu), (Some(new_mac), 1300));

    hs.set_link_master(host_end.index, None).unwrap();
    assert_eq!(hs.link_by_index(host_end.index).unwrap().master, None);

    // Deleting the host end removes the pair; deleting again is not an error.
    assert!(hs.delete_link_by_name("vethrc0").unwrap());
    assert!(cs.find_link_by_name("eth0").unwrap().is_none());
    assert!(!hs.delete_link_by_name("vethrc0").unwrap());
    assert!(!cs.delete_link(eth0.index).unwrap());
    assert!(hs.delete_link(br.link.index).unwrap());
    assert!(!hs.delete_link_by_name("rcbr0").unwrap());
}

#[test]
#[ignore = "needs root"]
fn ensure_bridge_refuses_a_link_of_another_kind() {
    let ns = TestNetns::new();
    let mut sock = ns.open().socket().unwrap();
    veth_pair_up(&mut sock, "rcx0", "rcx1");
    let err = sock
        .ensure_bridge(&BridgeSpec {
            name: "rcx0".into(),
            ..BridgeSpec::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::LinkKindMismatch { .. }), "{err}");
}

#[test]
#[ignore = "needs root"]
fn rename_and_move_a_link_to_another_namespace() {
    let a = TestNetns::new();
    let b = TestNetns::new();
    let mut sa = a.open().socket().unwrap();
    let mut sb = b.open().socket().unwrap();
    let (i0, _) = veth_pair_up(&mut sa, "rcm0", "rcm1");
    sa.set_link_down(i0).unwrap();
    sa.set_link_name(i0, "rcm0.100").unwrap();
    assert_eq!(sa.link_by_index(i0).unwrap().name, "rcm0.100");
    sa.set_link_netns(i0, b.open().as_fd()).unwrap();
    assert!(sa.find_link_by_name("rcm0.100").unwrap().is_none());
    let moved = sb.link_by_name("rcm0.100").unwrap();
    assert_eq!(moved.kind, LinkKind::Veth);
}

#[test]
#[ignore = "needs root"]
fn addresses_add_list_delete() {
    let ns = TestNetns::new();
    let handle = ns.open();
    let mut sock = handle.socket().unwrap();
    let (idx, _) = veth_pair_up(&mut sock, "rca0", "rca1");
    // No DAD in the test namespace, so IPv6 addresses are usable at once.
    handle
        .run(|| sysctl::write(&sysctl::conf_key(Family::V6, "rca0", "accept_dad").unwrap(), "0"))
        .unwrap()
        .unwrap();

    let v4 = "10.222.1.5/24".parse().unwrap();
    let v6 = "fd00:222::5/64".parse().unwrap();
    sock.add_address(idx, v4).unwrap();
    sock.add_address(idx, v6).unwrap();
    let err = sock.add_address(idx, v4).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(err.errno(), Some(Errno::EEXIST));
    assert!(!sock.add_address_if_missing(idx, v4).unwrap());
    assert!(
        sock.add_address_if_missing(idx, "10.222.1.6/24".parse().unwrap())
            .unwrap()
    );

    let all = sock.addresses(Some(idx), None).unwrap();
    let cidrs: Vec<String> = all.iter().map(|a| a.address.to_string()).collect();
    assert!(cidrs.contains(&"10.222.1.5/24".to_string()), "{cidrs:?}");
    assert!(cidrs.contains(&"10.222.1.6/24".to_string()), "{cidrs:?}");
    assert!(cidrs.contains(&"fd00:222::5/64".to_string()), "{cidrs:?}");
    let only_v6 = sock.addresses(Some(idx), Some(Family::V6)).unwrap();
    assert!(only_v6.iter().all(|a| a.address.is_ipv6()));
    assert!(
        only_v6
            .iter()
            .any(|a| a.address == v6 && a.permanent && !a.dad_failed)
    );
    // Tentative until the veth's carrier is seen (linkwatch runs asynchronously), then not.
    let settled = (0..200).any(|_| {
        let v6_now = sock.addresses(Some(idx), Some(Family::V6)).unwrap();
        let done = v6_now.iter().any(|a| a.address == v6 && !a.tentative);
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        done
    });
    assert!(settled, "fd00:222::5 stayed tentative");
    let brd = ns.ip(&["-j", "-4", "addr", "show", "dev", "rca0"]);
    assert!(brd.contains("\"broadcast\":\"10.222.1.255\""), "{brd}");

    // Deleting a primary IPv4 address deletes its secondaries too (promote_secondaries off),
    // so remove the secondary first.
    let secondary = "10.222.1.6/24".parse().unwrap();
    assert!(sock.delete_address(idx, secondary).unwrap());
    assert!(!sock.delete_address(idx, secondary).unwrap());
    let left: Vec<String> = sock
        .addresses(Some(idx), Some(Family::V4))
        .unwrap()
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(left, vec!["10.222.1.5/24".to_string()]);
    assert!(sock.delete_address(idx, v4).unwrap());
    assert!(!sock.delete_address(idx, v4).unwrap());
    assert!(sock.delete_address(idx, v6).unwrap());
    assert!(!sock.delete_address(idx, v6).unwrap());
    assert!(sock.addresses(Some(idx), Some(Family::V4)).unwrap().is_empty());
}

#[test]
#[ignore = "needs root"]
fn routes_add_list_get_delete() {
    let ns = TestNetns::new();
    let handle = ns.open();
    let mut sock = handle.socket().unwrap();
    let (idx, _) = veth_pair_up(&mut sock, "rcr0", "rcr1");
    handle
        .run(|| sysctl::write(&sysctl::conf_key(Family::V6, "rcr0", "accept_dad").unwrap(), "0"))
        .unwrap()
        .unwrap();
    sock.add_address(idx, "10.222.1.5/24".parse().unwrap()).unwrap();
    sock.add_address(idx, "fd00:222::5/64".parse().unwrap()).unwrap();

    let via = Route {
        gateway: Some("10.222.1.1".parse().unwrap()),
        oif: Some(idx),
        priority: Some(100),
        mtu: Some(1300),
        advmss: Some(1260),
        ..Route::new("10.222.2.0/24".parse().unwrap())
    };
    sock.add_route(&via).unwrap();
    let err = sock.add_route(&via).unwrap_err();
    assert!(err.is_exists(), "{err}");
    let main = sock.routes(Family::V4, Some(MAIN_TABLE)).unwrap();
    let found = main.iter().find(|r| r.dst == via.dst).expect("route listed");
    assert_eq!(found.gateway, via.gateway);
    assert_eq!(found.oif, Some(idx));
    assert_eq!(found.priority, Some(100));
    assert_eq!((found.mtu, found.advmss), (Some(1300), Some(1260)));
    assert_eq!(found.table, Some(MAIN_TABLE));
    assert_eq!(sock.route_get("10.222.2.7".parse().unwrap()).unwrap(), idx);

    // A direct route in another table, not visible in main.
    let other = Route {
        oif: Some(idx),
        table: Some(1000),
        ..Route::new("10.222.3.0/24".parse().unwrap())
    };
    sock.add_route(&other).unwrap();
    let t1000 = sock.routes(Family::V4, Some(1000)).unwrap();
    assert_eq!(t1000.len(), 1, "{t1000:?}");
    assert_eq!(t1000[0].scope, Some(cni_net::Scope::Link));
    assert!(
        !sock
            .routes(Family::V4, Some(MAIN_TABLE))
            .unwrap()
            .iter()
            .any(|r| r.dst == other.dst)
    );
    assert!(sock.routes(Family::V4, Some(4242)).unwrap().is_empty());

    let v6 = Route {
        gateway: Some("fd00:222::1".parse().unwrap()),
        ..Route::new("fd00:222:1::/64".parse().unwrap())
    };
    sock.add_route(&v6).unwrap();
    let v6_routes = sock.routes(Family::V6, Some(MAIN_TABLE)).unwrap();
    assert!(
        v6_routes
            .iter()
            .any(|r| r.dst == v6.dst && r.gateway == v6.gateway && r.oif == Some(idx)),
        "{v6_routes:?}"
    );
    assert_eq!(sock.route_get("fd00:222:1::9".parse().unwrap()).unwrap(), idx);

    let default = Route {
        gateway: Some("10.222.1.1".parse().unwrap()),
        ..Route::new("0.0.0.0/0".parse().unwrap())
    };
    sock.add_route(&default).unwrap();
    assert_eq!(sock.route_get("10.222.200.1".parse().unwrap()).unwrap(), idx);

    for route in [&via, &other, &v6, &default] {
        assert!(sock.delete_route(route).unwrap(), "{route:?}");
        assert!(!sock.delete_route(route).unwrap(), "{route:?}");
    }
    assert!(
        !sock
            .routes(Family::V4, Some(MAIN_TABLE))
            .unwrap()
            .iter()
            .any(|r| r.gateway.is_some())
    );
    let err = sock.route_get("10.222.200.1".parse().unwrap()).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENETUNREACH), "{err}");
}

#[test]
#[ignore = "needs root"]
fn sysctls_follow_the_thread_namespace() {
    let a = TestNetns::new();
    let b = TestNetns::new();
    let (na, nb) = (a.open(), b.open());
    // A new netns may inherit the host's value (devconf_inherit_init_net), so
    // set b's explicitly: the point is that writing in a leaves b alone.
    nb.run(|| sysctl::write("net.ipv4.ip_forward", "0"))
        .unwrap()
        .unwrap();
    na.run(|| sysctl::write("net.ipv4.ip_forward", "1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        na.run(|| sysctl::read("net/ipv4/ip_forward")).unwrap().unwrap(),
        "1"
    );
    assert_eq!(
        nb.run(|| sysctl::read("net.ipv4.ip_forward")).unwrap().unwrap(),
        "0"
    );
    // Interface names with dots, both spellings.
    let mut sa = na.socket().unwrap();
    veth_pair_up(&mut sa, "rcs0.5", "rcs1");
    na.run(|| sysctl::write("net.ipv4.conf.rcs0/5.arp_notify", "1"))
        .unwrap()
        .unwrap();
    let key = sysctl::conf_key(Family::V4, "rcs0.5", "arp_notify").unwrap();
    assert_eq!(na.run(|| sysctl::read(&key)).unwrap().unwrap(), "1");
    let err = nb.run(|| sysctl::read(&key)).unwrap().unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
#[ignore = "needs root"]
fn kernel_errors_carry_the_extended_ack() {
    let ns = TestNetns::new();
    let mut sock = ns.open().socket().unwrap();
    // An MTU above the maximum: the kernel explains in an extended ack.
    let (idx, _) = veth_pair_up(&mut sock, "rce0", "rce1");
    let err = sock.set_link_mtu(idx, 70000).unwrap_err();
    let Error::Kernel(k) = &err else { panic!("{err:?}") };
    assert_eq!(k.errno, Errno::EINVAL);
    assert_eq!(
        k.message.as_deref(),
        Some("mtu greater than device maximum"),
        "{err}"
    );
    assert!(
        err.to_string().ends_with(": mtu greater than device maximum"),
        "{err}"
    );
}
