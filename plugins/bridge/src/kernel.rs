//! The seam between bridge's decisions and the kernel.
//!
//! ADD, DEL and CHECK decide what to create, in which order, what to undo and what to report;
//! the kernel (route netlink, namespaces, sysctls, nf_tables) and the IPAM plugin carry it
//! out. Everything they ask of those goes through [`Kernel`] and [`Netlink`], passed down from
//! `main` (which makes a [`Real`]), so the decisions can be unit-tested without root against a
//! recording fake (`crate::fake`), including the failure paths a real kernel rarely takes.
//!
//! The seam is thin on purpose: [`Netlink`] is the subset of [`cni_net::Socket`] that bridge
//! uses, method for method, and [`Real`] forwards every call once, through static dispatch
//! (the command paths are generic over [`Kernel`]), so the real plugin makes the same
//! syscalls and netlink round trips as before. Where a step is a whole exchange with
//! something outside the route socket (a namespace visit, an nf_tables setup, an IPAM exec)
//! the seam is that step, not its parts.
//!
//! Only the trait is a leaf; [`Real`] is built on `ipam`, `masquerade` and `spoofcheck`, which
//! do not depend on this module.

use std::os::fd::AsFd;
use std::path::Path;
use std::thread::JoinHandle;

use cni::plugin::{CmdArgs, Command};
use cni::{CniResult, Result};
use cni_net::bridge_vlan::PortVlan;
use cni_net::detach::Sockets;
use cni_net::link::VethPort;
use cni_net::route::Route;
use cni_net::{Address, BridgeSpec, Ensured, Family, Link, MacAddr, Netns, Socket};
use ipnetwork::IpNetwork;

use crate::shared::{Attachment, MasqBackend};
use crate::{ipam, masquerade, spoofcheck};

/// The route-netlink requests bridge makes on one namespace's socket (the host's, or the
/// container's). Same names, arguments and results as on [`cni_net::Socket`], which
/// implements it by forwarding, so callers keep their error handling (`is_not_found`,
/// `Context`) unchanged.
pub trait Netlink {
    /// [`Socket::find_link_by_name`].
    fn find_link_by_name(&mut self, name: &str) -> cni_net::Result<Option<Link>>;
    /// [`Socket::link_by_name`].
    fn link_by_name(&mut self, name: &str) -> cni_net::Result<Link>;
    /// [`Socket::link_by_index`].
    fn link_by_index(&mut self, index: u32) -> cni_net::Result<Link>;
    /// [`Socket::ensure_bridge`].
    fn ensure_bridge(&mut self, spec: &BridgeSpec) -> cni_net::Result<Ensured>;
    /// [`Socket::set_link_up`].
    fn set_link_up(&mut self, index: u32) -> cni_net::Result<()>;
    /// [`Socket::set_port_up`].
    fn set_port_up(&mut self, index: u32) -> cni_net::Result<()>;
    /// [`Socket::set_link_promisc`].
    fn set_link_promisc(&mut self, index: u32, on: bool) -> cni_net::Result<()>;
    /// [`Socket::link_is_promisc`].
    fn link_is_promisc(&mut self, index: u32) -> cni_net::Result<bool>;
    /// [`Socket::set_link_mac`].
    fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> cni_net::Result<()>;
    /// [`Socket::delete_link`].
    fn delete_link(&mut self, index: u32) -> cni_net::Result<bool>;
    /// [`Socket::delete_link_by_name`].
    fn delete_link_by_name(&mut self, name: &str) -> cni_net::Result<bool>;
    /// [`Socket::set_bridge_port_hairpin`].
    fn set_bridge_port_hairpin(&mut self, index: u32, on: bool) -> cni_net::Result<()>;
    /// [`Socket::set_bridge_port_isolated`].
    fn set_bridge_port_isolated(&mut self, index: u32, on: bool) -> cni_net::Result<()>;
    /// [`Socket::port_vlans`].
    fn port_vlans(&mut self, index: u32) -> cni_net::Result<Vec<PortVlan>>;
    /// [`Socket::add_port_vlan`].
    fn add_port_vlan(&mut self, index: u32, vlan: PortVlan) -> cni_net::Result<()>;
    /// [`Socket::delete_port_vlan`].
    fn delete_port_vlan(&mut self, index: u32, vid: u16) -> cni_net::Result<bool>;
    /// [`Socket::addresses`].
    fn addresses(&mut self, index: Option<u32>, family: Option<Family>) -> cni_net::Result<Vec<Address>>;
    /// [`Socket::add_address`].
    fn add_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<()>;
    /// [`Socket::add_address_if_missing`].
    fn add_address_if_missing(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool>;
    /// [`Socket::delete_address`].
    fn delete_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool>;
    /// [`Socket::append_route`].
    fn append_route(&mut self, route: &Route) -> cni_net::Result<()>;
    /// [`Socket::routes`].
    fn routes(&mut self, family: Family, table: Option<u32>) -> cni_net::Result<Vec<Route>>;
}

/// `/proc/sys` of one namespace: the host's through [`Kernel`], the container's inside
/// [`Kernel::enter_container`] and [`Kernel::in_netns`]. Keys as [`cni_net::sysctl`] takes them.
pub trait Sysctl {
    /// [`cni_net::sysctl::read`].
    fn read_sysctl(&mut self, key: &str) -> cni_net::Result<String>;
    /// [`cni_net::sysctl::write`].
    fn write_sysctl(&mut self, key: &str, value: &str) -> cni_net::Result<()>;
}

/// Everything bridge's ADD, DEL and CHECK ask of the host beyond their own logic: route
/// sockets ([`Netlink`]), container namespaces, the host's sysctls, the IPAM plugin and the
/// firewall rules (spoof check, masquerade).
///
/// Why a trait: so the order of these requests, and what a failing one leaves behind (the
/// undo of ADD, the best effort of DEL, the verdicts of CHECK), can be tested without root and
/// without a kernel, against a fake that records the calls and fails the one it is told to.
/// `main` makes the one real implementation, [`Real`], and passes it down by `&mut`; nothing
/// is global.
pub trait Kernel: Sysctl {
    /// A route socket, in the host or in a container namespace.
    type Socket: Netlink;
    /// An open container namespace.
    type Netns;
    /// An IPAM ADD whose plugin runs while the links are made.
    type IpamAdd;
    /// What a masquerade setup found before the addresses were known.
    type MasqPrepared;

    /// A route socket in the host namespace (the one the plugin runs in).
    fn host_socket(&mut self) -> cni_net::Result<Self::Socket>;
    /// Opens the namespace at `path` ([`Netns::open`]).
    fn open_netns(&mut self, path: &Path) -> cni_net::Result<Self::Netns>;
    /// One visit of `netns`: opens a route socket there and, when that worked, runs `setup`
    /// on the namespace's sysctls. The outer error is the visit's, the inner the socket's.
    fn enter_container(
        &mut self,
        netns: &Self::Netns,
        setup: impl FnOnce(&mut dyn Sysctl),
    ) -> cni_net::Result<cni_net::Result<Self::Socket>>;
    /// A route socket in `netns` ([`Netns::socket`]).
    fn container_socket(&mut self, netns: &Self::Netns) -> cni_net::Result<Self::Socket>;
    /// Runs `f` on the sysctls of `netns` ([`Netns::run`]).
    fn in_netns<T>(
        &mut self,
        netns: &Self::Netns,
        f: impl FnOnce(&mut dyn Sysctl) -> T,
    ) -> cni_net::Result<T>;
    /// Creates a veth pair through `host` ([`Socket::create_veth_port`]) with its peer in
    /// `peer_netns` (the `peer_netns` of `port` is ignored), or beside the host end when `None`.
    fn create_veth_port(
        &mut self,
        host: &mut Self::Socket,
        port: &VethPort<'_>,
        peer_netns: Option<&Self::Netns>,
    ) -> cni_net::Result<Link>;
    /// Starts deleting `ifname` in `netns` on its own thread
    /// ([`cni_net::detach::delete_link_unlisted`]); [`LinkRemoval::join`] waits for it.
    fn start_link_removal(&mut self, netns: Self::Netns, ifname: &str) -> LinkRemoval;

    /// Starts the IPAM plugin's ADD ([`ipam::start_add`]).
    fn ipam_start_add(&mut self, ipam_type: &str, cmd: &CmdArgs) -> Result<Self::IpamAdd>;
    /// Waits for an IPAM ADD started by [`Kernel::ipam_start_add`] ([`ipam::Started::finish`]).
    fn ipam_finish(&mut self, started: Self::IpamAdd) -> Result<CniResult>;
    /// Runs the IPAM plugin's ADD to its end ([`ipam::add`]).
    fn ipam_add(&mut self, ipam_type: &str, cmd: &CmdArgs) -> Result<CniResult>;
    /// Runs the IPAM plugin's DEL, CHECK, GC or STATUS ([`ipam::run`]).
    fn ipam_run(&mut self, command: Command, ipam_type: &str, cmd: &CmdArgs) -> Result<()>;

    /// Installs the spoof-check rules ([`spoofcheck::setup`]).
    fn spoofcheck_setup(&mut self, host_if: &str, mac: &str, id: &str) -> Result<()>;
    /// Removes the spoof-check rules ([`spoofcheck::teardown`]).
    fn spoofcheck_teardown(&mut self, id: &str) -> Result<()>;
    /// The first half of a masquerade setup on the backend `named` or the default one
    /// ([`masquerade::prepare`], [`masquerade::backend`]).
    fn masq_prepare(&mut self, named: Option<MasqBackend>, att: &Attachment) -> Result<Self::MasqPrepared>;
    /// Installs the masquerade rules for `ips` ([`masquerade::install`]).
    fn masq_install(
        &mut self,
        prepared: Self::MasqPrepared,
        att: &Attachment,
        ips: &[IpNetwork],
    ) -> Result<()>;
    /// Verifies the masquerade rules for `ips` on the backend `named` or the default one
    /// ([`masquerade::verify`]).
    fn masq_verify(&mut self, named: Option<MasqBackend>, att: &Attachment, ips: &[IpNetwork]) -> Result<()>;
    /// Removes the attachment's masquerade rules ([`masquerade::teardown`]).
    fn masq_teardown(&mut self, att: &Attachment) -> Result<()>;
}

/// A container link being deleted by [`Kernel::start_link_removal`].
pub struct LinkRemoval(Removal);

enum Removal {
    Thread(JoinHandle<cni_net::Result<bool>>),
    #[cfg_attr(not(test), allow(dead_code))]
    Done(cni_net::Result<bool>),
}

impl LinkRemoval {
    /// A removal that has already finished with `result` (a fake's).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn done(result: cni_net::Result<bool>) -> Self {
        LinkRemoval(Removal::Done(result))
    }

    /// Waits for the removal: `Err(())` when its thread panicked.
    pub fn join(self) -> std::result::Result<cni_net::Result<bool>, ()> {
        match self.0 {
            Removal::Thread(handle) => handle.join().map_err(drop),
            Removal::Done(result) => Ok(result),
        }
    }
}

/// The kernel itself, through `cni-net`, and the real IPAM plugin. Holds the command's
/// [`Sockets`] (the netfilter socket and what else must be released off the exit path).
pub struct Real {
    sockets: Sockets,
}

impl Real {
    /// The real kernel, with `sockets` owning the command's slow-to-release sockets.
    pub fn new(sockets: Sockets) -> Self {
        Real { sockets }
    }

    /// Releases the sockets as they were made to ([`Sockets::release`]).
    pub fn release(self) {
        self.sockets.release();
    }
}

impl Sysctl for Real {
    fn read_sysctl(&mut self, key: &str) -> cni_net::Result<String> {
        cni_net::sysctl::read(key)
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> cni_net::Result<()> {
        cni_net::sysctl::write(key, value)
    }
}

/// The sysctls of the namespace the calling thread is in.
struct ThreadSysctl;

impl Sysctl for ThreadSysctl {
    fn read_sysctl(&mut self, key: &str) -> cni_net::Result<String> {
        cni_net::sysctl::read(key)
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> cni_net::Result<()> {
        cni_net::sysctl::write(key, value)
    }
}

impl Kernel for Real {
    type Socket = Socket;
    type Netns = Netns;
    type IpamAdd = ipam::Started;
    type MasqPrepared = masquerade::Prepared;

    fn host_socket(&mut self) -> cni_net::Result<Socket> {
        Socket::new()
    }

    fn open_netns(&mut self, path: &Path) -> cni_net::Result<Netns> {
        Netns::open(path)
    }

    fn enter_container(
        &mut self,
        netns: &Netns,
        setup: impl FnOnce(&mut dyn Sysctl),
    ) -> cni_net::Result<cni_net::Result<Socket>> {
        netns.run(|| {
            let socket = Socket::new();
            if socket.is_ok() {
                setup(&mut ThreadSysctl);
            }
            socket
        })
    }

    fn container_socket(&mut self, netns: &Netns) -> cni_net::Result<Socket> {
        netns.socket()
    }

    fn in_netns<T>(&mut self, netns: &Netns, f: impl FnOnce(&mut dyn Sysctl) -> T) -> cni_net::Result<T> {
        netns.run(|| f(&mut ThreadSysctl))
    }

    fn create_veth_port(
        &mut self,
        host: &mut Socket,
        port: &VethPort<'_>,
        peer_netns: Option<&Netns>,
    ) -> cni_net::Result<Link> {
        host.create_veth_port(&VethPort {
            peer_netns: peer_netns.map(AsFd::as_fd),
            ..*port
        })
    }

    fn start_link_removal(&mut self, netns: Netns, ifname: &str) -> LinkRemoval {
        let ifname = ifname.to_string();
        LinkRemoval(Removal::Thread(std::thread::spawn(move || {
            cni_net::detach::delete_link_unlisted(&netns, &ifname)
        })))
    }

    fn ipam_start_add(&mut self, ipam_type: &str, cmd: &CmdArgs) -> Result<ipam::Started> {
        ipam::start_add(ipam_type, cmd)
    }

    fn ipam_finish(&mut self, started: ipam::Started) -> Result<CniResult> {
        started.finish()
    }

    fn ipam_add(&mut self, ipam_type: &str, cmd: &CmdArgs) -> Result<CniResult> {
        ipam::add(ipam_type, cmd)
    }

    fn ipam_run(&mut self, command: Command, ipam_type: &str, cmd: &CmdArgs) -> Result<()> {
        ipam::run(command, ipam_type, cmd)
    }

    fn spoofcheck_setup(&mut self, host_if: &str, mac: &str, id: &str) -> Result<()> {
        spoofcheck::setup(&mut self.sockets, host_if, mac, id)
    }

    fn spoofcheck_teardown(&mut self, id: &str) -> Result<()> {
        spoofcheck::teardown(&mut self.sockets, id)
    }

    fn masq_prepare(&mut self, named: Option<MasqBackend>, att: &Attachment) -> Result<masquerade::Prepared> {
        masquerade::prepare(&mut self.sockets, masquerade::backend(named), att)
    }

    fn masq_install(
        &mut self,
        prepared: masquerade::Prepared,
        att: &Attachment,
        ips: &[IpNetwork],
    ) -> Result<()> {
        masquerade::install(&mut self.sockets, prepared, att, ips)
    }

    fn masq_verify(&mut self, named: Option<MasqBackend>, att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
        masquerade::verify(&mut self.sockets, masquerade::backend(named), att, ips)
    }

    fn masq_teardown(&mut self, att: &Attachment) -> Result<()> {
        masquerade::teardown(&mut self.sockets, att)
    }
}

impl Netlink for Socket {
    fn find_link_by_name(&mut self, name: &str) -> cni_net::Result<Option<Link>> {
        Socket::find_link_by_name(self, name)
    }

    fn link_by_name(&mut self, name: &str) -> cni_net::Result<Link> {
        Socket::link_by_name(self, name)
    }

    fn link_by_index(&mut self, index: u32) -> cni_net::Result<Link> {
        Socket::link_by_index(self, index)
    }

    fn ensure_bridge(&mut self, spec: &BridgeSpec) -> cni_net::Result<Ensured> {
        Socket::ensure_bridge(self, spec)
    }

    fn set_link_up(&mut self, index: u32) -> cni_net::Result<()> {
        Socket::set_link_up(self, index)
    }

    fn set_port_up(&mut self, index: u32) -> cni_net::Result<()> {
        Socket::set_port_up(self, index)
    }

    fn set_link_promisc(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        Socket::set_link_promisc(self, index, on)
    }

    fn link_is_promisc(&mut self, index: u32) -> cni_net::Result<bool> {
        Socket::link_is_promisc(self, index)
    }

    fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> cni_net::Result<()> {
        Socket::set_link_mac(self, index, mac)
    }

    fn delete_link(&mut self, index: u32) -> cni_net::Result<bool> {
        Socket::delete_link(self, index)
    }

    fn delete_link_by_name(&mut self, name: &str) -> cni_net::Result<bool> {
        Socket::delete_link_by_name(self, name)
    }

    fn set_bridge_port_hairpin(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        Socket::set_bridge_port_hairpin(self, index, on)
    }

    fn set_bridge_port_isolated(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        Socket::set_bridge_port_isolated(self, index, on)
    }

    fn port_vlans(&mut self, index: u32) -> cni_net::Result<Vec<PortVlan>> {
        Socket::port_vlans(self, index)
    }

    fn add_port_vlan(&mut self, index: u32, vlan: PortVlan) -> cni_net::Result<()> {
        Socket::add_port_vlan(self, index, vlan)
    }

    fn delete_port_vlan(&mut self, index: u32, vid: u16) -> cni_net::Result<bool> {
        Socket::delete_port_vlan(self, index, vid)
    }

    fn addresses(&mut self, index: Option<u32>, family: Option<Family>) -> cni_net::Result<Vec<Address>> {
        Socket::addresses(self, index, family)
    }

    fn add_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<()> {
        Socket::add_address(self, index, cidr)
    }

    fn add_address_if_missing(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool> {
        Socket::add_address_if_missing(self, index, cidr)
    }

    fn delete_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool> {
        Socket::delete_address(self, index, cidr)
    }

    fn append_route(&mut self, route: &Route) -> cni_net::Result<()> {
        Socket::append_route(self, route)
    }

    fn routes(&mut self, family: Family, table: Option<u32>) -> cni_net::Result<Vec<Route>> {
        Socket::routes(self, family, table)
    }
}
