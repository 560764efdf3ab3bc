//! A recording fake of [`Kernel`] for unit tests that need neither root nor a kernel.
//!
//! It keeps a small model of what bridge looks at (links per namespace with their addresses
//! and VLANs, routes, sysctls, installed firewall rules) and records every call as one line,
//! `<where>: <what>`: `host` for the host namespace, the netns path for a container, `ipam`
//! for the IPAM plugin, `nft` for the firewall. A test can preset state (a link that exists
//! already, a namespace that is gone, the IPAM result) and make the first call whose line
//! contains a given text fail.
//!
//! Host veth names are random (`veth` + 8 hex digits); lines show them as `veth*`.

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use cni::plugin::{CmdArgs, Command};
use cni::{CniResult, Result};
use cni_net::bridge_vlan::PortVlan;
use cni_net::link::VethPort;
use cni_net::route::Route;
use cni_net::{Address, BridgeSpec, Ensured, Family, Link, LinkKind, MacAddr, OperState, Scope};
use ipnetwork::IpNetwork;

use crate::kernel::{Kernel, LinkRemoval, Netlink, Sysctl};
use crate::shared::{Attachment, MasqBackend};

/// Where the host namespace's calls are recorded.
pub const HOST: &str = "host";

/// A link of the model.
#[derive(Debug, Clone)]
pub struct FakeLink {
    /// `host` or the container's netns path.
    pub place: String,
    /// What a lookup returns.
    pub link: Link,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Bridge-port VLANs.
    pub vlans: Vec<PortVlan>,
    /// Addresses.
    pub addrs: Vec<IpNetwork>,
}

/// The model and the record.
#[derive(Debug, Default)]
pub struct State {
    /// Every call, in order.
    pub calls: Vec<String>,
    /// Texts of calls to fail, each once.
    fail: Vec<String>,
    /// The links of every namespace.
    pub links: Vec<FakeLink>,
    /// Routes, with their namespace.
    pub routes: Vec<(String, Route)>,
    /// Sysctls written, by namespace and key.
    pub sysctls: BTreeMap<(String, String), String>,
    /// Netns paths that are gone.
    pub missing_netns: Vec<String>,
    /// What the IPAM plugin's ADD returns.
    pub ipam_result: Option<CniResult>,
    /// Installed firewall rules (spoof check ids, masquerade attachments).
    pub rules: Vec<String>,
    next_index: u32,
}

/// The fake kernel; clones share the model.
#[derive(Debug, Clone, Default)]
pub struct Fake(Rc<RefCell<State>>);

/// A route socket of the fake, in the host or in a container namespace.
#[derive(Debug)]
pub struct FakeSocket {
    state: Rc<RefCell<State>>,
    place: String,
}

/// An open namespace of the fake.
#[derive(Debug)]
pub struct FakeNetns {
    path: String,
}

/// The sysctls of one namespace of the fake.
struct FakeSysctl<'a> {
    state: &'a RefCell<State>,
    place: String,
}

fn injected(line: &str) -> cni_net::Error {
    cni_net::Error::InvalidArgument(format!("injected failure of {line}"))
}

/// `veth` + 8 hex digits shown as `veth*`.
fn masked(name: &str) -> String {
    let random =
        name.len() == 12 && name.starts_with("veth") && name[4..].chars().all(|c| c.is_ascii_hexdigit());
    if random {
        "veth*".to_string()
    } else {
        name.to_string()
    }
}

impl State {
    /// Records `place: what`; fails when told to.
    fn call(&mut self, place: &str, what: String) -> cni_net::Result<()> {
        let line = format!("{place}: {what}");
        self.calls.push(line.clone());
        match self.fail.iter().position(|f| line.contains(f.as_str())) {
            Some(i) => {
                self.fail.remove(i);
                Err(injected(&line))
            }
            None => Ok(()),
        }
    }

    fn find(&self, place: &str, name: &str) -> Option<&FakeLink> {
        self.links
            .iter()
            .find(|l| l.place == place && l.link.name == name)
    }

    fn by_index(&mut self, place: &str, index: u32) -> cni_net::Result<&mut FakeLink> {
        self.links
            .iter_mut()
            .find(|l| l.place == place && l.link.index == index)
            .ok_or_else(|| cni_net::Error::LinkNotFound(index.to_string()))
    }

    fn new_link(&mut self, place: &str, name: &str, kind: LinkKind, mtu: u32) -> Link {
        self.next_index += 1;
        let index = self.next_index;
        let link = Link {
            index,
            name: name.to_string(),
            kind,
            up: false,
            oper_state: OperState::Down,
            mtu,
            mac: Some(MacAddr([0x02, 0, 0, 0, 0, index as u8])),
            master: None,
            peer_index: None,
            link_netnsid: None,
        };
        self.links.push(FakeLink {
            place: place.to_string(),
            link: link.clone(),
            promisc: false,
            vlans: Vec::new(),
            addrs: Vec::new(),
        });
        link
    }

    /// Removes the link and, for a veth, its peer.
    fn remove(&mut self, place: &str, index: u32) -> bool {
        let Some(pos) = self
            .links
            .iter()
            .position(|l| l.place == place && l.link.index == index)
        else {
            return false;
        };
        let gone = self.links.remove(pos);
        if gone.link.kind == LinkKind::Veth
            && let Some(peer) = gone.link.peer_index
        {
            self.links
                .retain(|l| !(l.link.index == peer && l.link.peer_index == Some(index)));
        }
        self.routes.retain(|(p, r)| !(p == place && r.oif == Some(index)));
        true
    }
}

impl Fake {
    /// An empty host: no links, no rules.
    pub fn new() -> Self {
        Fake::default()
    }

    /// Makes the first call whose line contains `text` fail (each `fail_on` once).
    pub fn fail_on(&self, text: &str) -> &Self {
        self.0.borrow_mut().fail.push(text.to_string());
        self
    }

    /// Adds a link to the host namespace.
    pub fn with_host_link(&self, name: &str, kind: LinkKind, mtu: u32) -> Link {
        self.0.borrow_mut().new_link(HOST, name, kind, mtu)
    }

    /// Makes `path` a namespace that is gone.
    pub fn without_netns(&self, path: &str) -> &Self {
        self.0.borrow_mut().missing_netns.push(path.to_string());
        self
    }

    /// Sets what the IPAM plugin's ADD returns.
    pub fn with_ipam_result(&self, result: CniResult) -> &Self {
        self.0.borrow_mut().ipam_result = Some(result);
        self
    }

    /// The calls so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.0.borrow_mut().calls)
    }

    /// The model.
    pub fn state(&self) -> std::cell::Ref<'_, State> {
        self.0.borrow()
    }

    /// The model, to change it.
    pub fn state_mut(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }

    /// The names of the links in `place`.
    pub fn link_names(&self, place: &str) -> Vec<String> {
        let state = self.0.borrow();
        state
            .links
            .iter()
            .filter(|l| l.place == place)
            .map(|l| masked(&l.link.name))
            .collect()
    }

    fn call(&self, place: &str, what: String) -> cni_net::Result<()> {
        self.0.borrow_mut().call(place, what)
    }

    fn cni_call(&self, place: &str, what: String) -> Result<()> {
        self.call(place, what)
            .map_err(|e| cni::Error::internal(e.to_string()))
    }

    fn socket(&self, place: &str) -> FakeSocket {
        FakeSocket {
            state: self.0.clone(),
            place: place.to_string(),
        }
    }
}

impl FakeSocket {
    fn call(&self, what: String) -> cni_net::Result<()> {
        self.state.borrow_mut().call(&self.place, what)
    }

    /// Link `index` is administratively and operationally up.
    fn mark_up(&self, index: u32) -> cni_net::Result<()> {
        let mut state = self.state.borrow_mut();
        let link = &mut state.by_index(&self.place, index)?.link;
        link.up = true;
        link.oper_state = OperState::Up;
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Link> {
        self.state
            .borrow()
            .find(&self.place, name)
            .map(|l| l.link.clone())
    }
}

impl Sysctl for FakeSysctl<'_> {
    fn read_sysctl(&mut self, key: &str) -> cni_net::Result<String> {
        let mut state = self.state.borrow_mut();
        state.call(&self.place, format!("read {key}"))?;
        Ok(state
            .sysctls
            .get(&(self.place.clone(), key.to_string()))
            .cloned()
            .unwrap_or_else(|| "0".to_string()))
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> cni_net::Result<()> {
        let mut state = self.state.borrow_mut();
        state.call(&self.place, format!("write {} = {value}", masked_key(key)))?;
        state
            .sysctls
            .insert((self.place.clone(), key.to_string()), value.to_string());
        Ok(())
    }
}

/// A sysctl key with a random veth name masked.
fn masked_key(key: &str) -> String {
    key.split('/').map(masked).collect::<Vec<_>>().join("/")
}

impl Sysctl for Fake {
    fn read_sysctl(&mut self, key: &str) -> cni_net::Result<String> {
        FakeSysctl {
            state: &self.0,
            place: HOST.to_string(),
        }
        .read_sysctl(key)
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> cni_net::Result<()> {
        FakeSysctl {
            state: &self.0,
            place: HOST.to_string(),
        }
        .write_sysctl(key, value)
    }
}

impl Kernel for Fake {
    type Socket = FakeSocket;
    type Netns = FakeNetns;
    type IpamAdd = ();
    type MasqPrepared = ();

    fn host_socket(&mut self) -> cni_net::Result<FakeSocket> {
        self.call(HOST, "open socket".into())?;
        Ok(self.socket(HOST))
    }

    fn open_netns(&mut self, path: &Path) -> cni_net::Result<FakeNetns> {
        let path = path.display().to_string();
        self.call(HOST, format!("open netns {path}"))?;
        if self.0.borrow().missing_netns.contains(&path) {
            return Err(cni_net::Error::NetnsOpen {
                path: path.into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        Ok(FakeNetns { path })
    }

    fn enter_container(
        &mut self,
        netns: &FakeNetns,
        setup: impl FnOnce(&mut dyn Sysctl),
    ) -> cni_net::Result<cni_net::Result<FakeSocket>> {
        self.call(&netns.path, "enter".into())?;
        let socket = self
            .call(&netns.path, "open socket".into())
            .map(|_| self.socket(&netns.path));
        if socket.is_ok() {
            setup(&mut FakeSysctl {
                state: &self.0,
                place: netns.path.clone(),
            });
        }
        Ok(socket)
    }

    fn container_socket(&mut self, netns: &FakeNetns) -> cni_net::Result<FakeSocket> {
        self.call(&netns.path, "open socket".into())?;
        Ok(self.socket(&netns.path))
    }

    fn in_netns<T>(&mut self, netns: &FakeNetns, f: impl FnOnce(&mut dyn Sysctl) -> T) -> cni_net::Result<T> {
        self.call(&netns.path, "enter".into())?;
        Ok(f(&mut FakeSysctl {
            state: &self.0,
            place: netns.path.clone(),
        }))
    }

    fn create_veth_port(
        &mut self,
        host: &mut FakeSocket,
        port: &VethPort<'_>,
        peer_netns: Option<&FakeNetns>,
    ) -> cni_net::Result<Link> {
        let peer_place = peer_netns.map_or(host.place.as_str(), |n| n.path.as_str());
        host.call(format!(
            "create veth {} master {:?} up {} peer {} in {peer_place} mac {:?} mtu {:?}",
            masked(port.name),
            port.master,
            port.up,
            port.peer_name,
            port.peer_mac.map(|m| m.to_string()),
            port.mtu
        ))?;
        let mut state = self.0.borrow_mut();
        if state.find(peer_place, port.peer_name).is_some() {
            return Err(cni_net::Error::InvalidArgument(format!(
                "{} exists in {peer_place}",
                port.peer_name
            )));
        }
        let mtu = port.mtu.unwrap_or(1500);
        let host_end = state.new_link(&host.place, port.name, LinkKind::Veth, mtu);
        let peer_end = state.new_link(peer_place, port.peer_name, LinkKind::Veth, mtu);
        for l in state.links.iter_mut() {
            if l.link.index == host_end.index {
                l.link.master = port.master;
                l.link.up = port.up;
                l.link.oper_state = if port.up { OperState::Up } else { OperState::Down };
                l.link.peer_index = Some(peer_end.index);
                l.vlans = vec![PortVlan {
                    vid: 1,
                    pvid: true,
                    untagged: true,
                }];
            } else if l.link.index == peer_end.index {
                l.link.peer_index = Some(host_end.index);
                if let Some(mac) = port.peer_mac {
                    l.link.mac = Some(mac);
                }
            }
        }
        let index = host_end.index;
        Ok(state.by_index(&host.place, index)?.link.clone())
    }

    fn start_link_removal(&mut self, netns: FakeNetns, ifname: &str) -> LinkRemoval {
        let mut state = self.0.borrow_mut();
        let result = state
            .call(&netns.path, format!("delete link {ifname} (unlisted)"))
            .map(|_| {
                let index = state.find(&netns.path, ifname).map(|l| l.link.index);
                index.is_some_and(|i| state.remove(&netns.path, i))
            });
        LinkRemoval::done(result)
    }

    fn ipam_start_add(&mut self, ipam_type: &str, _cmd: &CmdArgs) -> Result<()> {
        self.cni_call("ipam", format!("start ADD {ipam_type}"))
    }

    fn ipam_finish(&mut self, _started: ()) -> Result<CniResult> {
        self.cni_call("ipam", "finish ADD".into())?;
        self.0
            .borrow()
            .ipam_result
            .clone()
            .ok_or_else(|| cni::Error::internal("the fake has no IPAM result"))
    }

    fn ipam_add(&mut self, ipam_type: &str, _cmd: &CmdArgs) -> Result<CniResult> {
        self.cni_call("ipam", format!("ADD {ipam_type}"))?;
        self.0
            .borrow()
            .ipam_result
            .clone()
            .ok_or_else(|| cni::Error::internal("the fake has no IPAM result"))
    }

    fn ipam_run(&mut self, command: Command, ipam_type: &str, _cmd: &CmdArgs) -> Result<()> {
        self.cni_call("ipam", format!("{} {ipam_type}", command.as_str()))
    }

    fn spoofcheck_setup(&mut self, host_if: &str, mac: &str, id: &str) -> Result<()> {
        self.cni_call("nft", format!("spoofcheck setup {} {mac} {id}", masked(host_if)))?;
        self.0.borrow_mut().rules.push(format!("spoofcheck {id}"));
        Ok(())
    }

    fn spoofcheck_teardown(&mut self, id: &str) -> Result<()> {
        self.cni_call("nft", format!("spoofcheck teardown {id}"))?;
        let rule = format!("spoofcheck {id}");
        self.0.borrow_mut().rules.retain(|r| *r != rule);
        Ok(())
    }

    fn masq_prepare(&mut self, named: Option<MasqBackend>, att: &Attachment) -> Result<()> {
        self.cni_call("nft", format!("masq prepare {named:?} {}", att.container_id))
    }

    fn masq_install(&mut self, _prepared: (), att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        self.cni_call(
            "nft",
            format!("masq install {} {}", att.container_id, ips.join(",")),
        )?;
        self.0
            .borrow_mut()
            .rules
            .push(format!("masq {}", att.container_id));
        Ok(())
    }

    fn masq_verify(&mut self, named: Option<MasqBackend>, att: &Attachment, ips: &[IpNetwork]) -> Result<()> {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        self.cni_call(
            "nft",
            format!("masq verify {named:?} {} {}", att.container_id, ips.join(",")),
        )?;
        let rule = format!("masq {}", att.container_id);
        if !self.0.borrow().rules.contains(&rule) {
            return Err(cni::Error::internal("masquerading: rules missing"));
        }
        Ok(())
    }

    fn masq_teardown(&mut self, att: &Attachment) -> Result<()> {
        self.cni_call("nft", format!("masq teardown {}", att.container_id))?;
        let rule = format!("masq {}", att.container_id);
        self.0.borrow_mut().rules.retain(|r| *r != rule);
        Ok(())
    }
}

impl Netlink for FakeSocket {
    fn find_link_by_name(&mut self, name: &str) -> cni_net::Result<Option<Link>> {
        self.call(format!("find link {}", masked(name)))?;
        Ok(self.lookup(name))
    }

    fn link_by_name(&mut self, name: &str) -> cni_net::Result<Link> {
        self.call(format!("link {}", masked(name)))?;
        self.lookup(name)
            .ok_or_else(|| cni_net::Error::LinkNotFound(name.to_string()))
    }

    fn link_by_index(&mut self, index: u32) -> cni_net::Result<Link> {
        self.call(format!("link #{index}"))?;
        Ok(self.state.borrow_mut().by_index(&self.place, index)?.link.clone())
    }

    fn ensure_bridge(&mut self, spec: &BridgeSpec) -> cni_net::Result<Ensured> {
        self.call(format!(
            "ensure bridge {} mtu {:?} vlan_filtering {:?}",
            spec.name, spec.mtu, spec.vlan_filtering
        ))?;
        if let Some(link) = self.lookup(&spec.name) {
            if link.kind != LinkKind::Bridge {
                return Err(cni_net::Error::LinkKindMismatch {
                    name: spec.name.clone(),
                    expected: "bridge".into(),
                    found: link.kind.to_string(),
                });
            }
            return Ok(Ensured { link, created: false });
        }
        let mtu = spec.mtu.unwrap_or(1500);
        let link = self
            .state
            .borrow_mut()
            .new_link(&self.place, &spec.name, LinkKind::Bridge, mtu);
        Ok(Ensured { link, created: true })
    }

    fn set_link_up(&mut self, index: u32) -> cni_net::Result<()> {
        self.call(format!("set #{index} up"))?;
        self.mark_up(index)
    }

    fn set_port_up(&mut self, index: u32) -> cni_net::Result<()> {
        self.call(format!("set #{index} up without addrconf"))?;
        self.mark_up(index)
    }

    fn set_link_promisc(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        self.call(format!("set #{index} promisc {on}"))?;
        self.state.borrow_mut().by_index(&self.place, index)?.promisc = on;
        Ok(())
    }

    fn link_is_promisc(&mut self, index: u32) -> cni_net::Result<bool> {
        self.call(format!("is #{index} promisc"))?;
        Ok(self.state.borrow_mut().by_index(&self.place, index)?.promisc)
    }

    fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> cni_net::Result<()> {
        self.call(format!("set #{index} mac {mac}"))?;
        self.state.borrow_mut().by_index(&self.place, index)?.link.mac = Some(mac);
        Ok(())
    }

    fn delete_link(&mut self, index: u32) -> cni_net::Result<bool> {
        self.call(format!("delete link #{index}"))?;
        Ok(self.state.borrow_mut().remove(&self.place, index))
    }

    fn delete_link_by_name(&mut self, name: &str) -> cni_net::Result<bool> {
        self.call(format!("delete link {}", masked(name)))?;
        let mut state = self.state.borrow_mut();
        let index = state.find(&self.place, name).map(|l| l.link.index);
        Ok(index.is_some_and(|i| state.remove(&self.place, i)))
    }

    fn set_bridge_port_hairpin(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        self.call(format!("set port #{index} hairpin {on}"))
    }

    fn set_bridge_port_isolated(&mut self, index: u32, on: bool) -> cni_net::Result<()> {
        self.call(format!("set port #{index} isolated {on}"))
    }

    fn port_vlans(&mut self, index: u32) -> cni_net::Result<Vec<PortVlan>> {
        self.call(format!("vlans of #{index}"))?;
        Ok(self
            .state
            .borrow_mut()
            .by_index(&self.place, index)?
            .vlans
            .clone())
    }

    fn add_port_vlan(&mut self, index: u32, vlan: PortVlan) -> cni_net::Result<()> {
        self.call(format!(
            "add vlan {} pvid {} untagged {} to #{index}",
            vlan.vid, vlan.pvid, vlan.untagged
        ))?;
        self.state
            .borrow_mut()
            .by_index(&self.place, index)?
            .vlans
            .push(vlan);
        Ok(())
    }

    fn delete_port_vlan(&mut self, index: u32, vid: u16) -> cni_net::Result<bool> {
        self.call(format!("delete vlan {vid} from #{index}"))?;
        let mut state = self.state.borrow_mut();
        let vlans = &mut state.by_index(&self.place, index)?.vlans;
        let before = vlans.len();
        vlans.retain(|v| v.vid != vid);
        Ok(vlans.len() != before)
    }

    fn addresses(&mut self, index: Option<u32>, family: Option<Family>) -> cni_net::Result<Vec<Address>> {
        self.call(format!("addresses of {index:?} {family:?}"))?;
        let state = self.state.borrow();
        Ok(state
            .links
            .iter()
            .filter(|l| l.place == self.place && index.is_none_or(|i| i == l.link.index))
            .flat_map(|l| {
                l.addrs
                    .iter()
                    .filter(|a| family.is_none_or(|f| f == Family::of(a.ip())))
                    .map(|a| Address {
                        index: l.link.index,
                        address: *a,
                        scope: Scope::default(),
                        label: None,
                        tentative: false,
                        dad_failed: false,
                        permanent: true,
                    })
            })
            .collect())
    }

    fn add_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<()> {
        self.call(format!("add address {cidr} to #{index}"))?;
        self.state
            .borrow_mut()
            .by_index(&self.place, index)?
            .addrs
            .push(cidr);
        Ok(())
    }

    fn add_address_if_missing(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool> {
        self.call(format!("add address {cidr} to #{index} if missing"))?;
        let mut state = self.state.borrow_mut();
        let addrs = &mut state.by_index(&self.place, index)?.addrs;
        if addrs.contains(&cidr) {
            return Ok(false);
        }
        addrs.push(cidr);
        Ok(true)
    }

    fn delete_address(&mut self, index: u32, cidr: IpNetwork) -> cni_net::Result<bool> {
        self.call(format!("delete address {cidr} from #{index}"))?;
        let mut state = self.state.borrow_mut();
        let addrs = &mut state.by_index(&self.place, index)?.addrs;
        let before = addrs.len();
        addrs.retain(|a| *a != cidr);
        Ok(addrs.len() != before)
    }

    fn append_route(&mut self, route: &Route) -> cni_net::Result<()> {
        self.call(format!(
            "append route {} via {:?} dev #{:?} table {:?}",
            route.dst,
            route.gateway.map(|g| g.to_string()),
            route.oif,
            route.table
        ))?;
        self.state
            .borrow_mut()
            .routes
            .push((self.place.clone(), route.clone()));
        Ok(())
    }

    fn routes(&mut self, family: Family, table: Option<u32>) -> cni_net::Result<Vec<Route>> {
        self.call(format!("routes {family:?} table {table:?}"))?;
        let main = cni_net::route::MAIN_TABLE;
        Ok(self
            .state
            .borrow()
            .routes
            .iter()
            .filter(|(p, r)| {
                *p == self.place
                    && Family::of(r.dst.ip()) == family
                    && table.is_none_or(|t| r.table.unwrap_or(main) == t)
            })
            .map(|(_, r)| r.clone())
            .collect())
    }
}

/// The netns path of the fake's container (never opened: the fake only records it).
pub const NETNS: &str = "/run/netns/rcni-fake";

/// The arguments of `command` for container `ctr1`, `eth0` in [`NETNS`], with `conf` as stdin
/// (`cniVersion` 1.0.0 and `type` bridge added).
pub fn cmd(command: Command, mut conf: serde_json::Value) -> CmdArgs {
    conf["cniVersion"] = "1.0.0".into();
    conf["type"] = "bridge".into();
    let stdin = serde_json::to_vec(&conf).unwrap();
    CmdArgs {
        command,
        container_id: "ctr1".into(),
        netns: Some(NETNS.into()),
        netns_state: Some(cni::netns::NetnsState::Namespace),
        ifname: "eth0".into(),
        raw_args: String::new(),
        path: Vec::new(),
        config: serde_json::from_slice(&stdin).unwrap(),
        stdin,
        version: cni::version::Version::parse("1.0.0").unwrap(),
    }
}

/// An IPAM result with `addrs` (no gateways, no routes).
pub fn ipam_result(addrs: &[&str]) -> CniResult {
    CniResult {
        cni_version: "1.0.0".into(),
        ips: addrs
            .iter()
            .map(|a| cni::result::IpConfig {
                interface: None,
                address: a.parse().unwrap(),
                gateway: None,
            })
            .collect(),
        ..CniResult::default()
    }
}
