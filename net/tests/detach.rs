//! `cni_net::detach`: a link deleted through a forked child is gone (both veth ends) when the
//! call returns, a missing link is reported as such, and a child handed descriptors closes
//! every other one at once. Throw-away namespaces; runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use cni_net::detach;
use common::{NetnsExt, TestNetns};

#[test]
#[ignore = "needs root"]
fn delete_link_unlisted_removes_both_veth_ends() {
    let host_ns = TestNetns::new();
    let cont_ns = TestNetns::new();
    let host = host_ns.open();
    let cont = cont_ns.open();
    let mut hs = host.socket().unwrap();
    let mut cs = cont.socket().unwrap();
    let eth0 = cs
        .create_veth("eth0", "vethdt0", Some(host.as_fd()), None, None)
        .unwrap();
    let host_end = hs.link_by_name("vethdt0").unwrap();
    cs.set_link_up(eth0.index).unwrap();
    hs.set_link_up(host_end.index).unwrap();

    assert!(detach::delete_link_unlisted(&cont, "eth0").unwrap());
    assert!(cs.link_by_name("eth0").unwrap_err().is_not_found());
    assert!(hs.link_by_index(host_end.index).unwrap_err().is_not_found());
    // The name is free again at once: a runtime may retry ADD with the same interface name.
    cs.create_veth("eth0", "vethdt1", Some(host.as_fd()), None, None)
        .unwrap();

    // Gone already: false, not an error; twice in a row too.
    assert!(!detach::delete_link_unlisted(&cont, "nosuch0").unwrap());
    assert!(detach::delete_link_unlisted(&cont, "eth0").unwrap());
    assert!(!detach::delete_link_unlisted(&cont, "eth0").unwrap());
}

#[test]
#[ignore = "needs root"]
fn delete_link_unlisted_rejects_a_bad_name() {
    let ns = TestNetns::new();
    let netns = ns.open();
    assert!(detach::delete_link_unlisted(&netns, "this-name-is-far-too-long").is_err());
}

/// A pipe as (read end, write end).
fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), w)
}

/// Reads `r` to EOF on a thread; the receiver gets the instant of the EOF.
fn eof_at(mut r: std::fs::File) -> std::sync::mpsc::Receiver<Instant> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(Instant::now());
    });
    rx
}

#[test]
fn hand_over_keeps_only_the_given_descriptors_and_exits() {
    // A descriptor not handed over: the child closes its copy at once, so once the test
    // closes its own, the reader sees EOF while the child is still alive.
    let (other_r, other_w) = pipe();
    // A descriptor handed over: its write end lives on in the child until the child exits.
    let (kept_r, kept_w) = pipe();
    // The gate holds the child (alive, holding `kept_w`) until the test closes `gate_w`: no
    // timing decides what is checked.
    let (gate_r, gate_w) = pipe();
    let (other_eof, kept_eof) = (eof_at(other_r), eof_at(kept_r));
    detach::hand_over_gated(vec![kept_w], OwnedFd::from(gate_r));
    drop(other_w);
    let limit = Duration::from_secs(30);
    other_eof
        .recv_timeout(limit)
        .expect("the child closed the descriptor it was not given");
    assert!(
        kept_eof.try_recv().is_err(),
        "the handed-over descriptor was closed while the child was held alive"
    );
    drop(gate_w);
    kept_eof
        .recv_timeout(limit)
        .expect("EOF of the handed-over descriptor: the child exits once the gate opens");
}
