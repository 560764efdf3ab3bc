//! The verbs: ADD, DEL, CHECK, GC, STATUS over the chosen backend.

use crate::config::{Backend, PortMapConf};
use crate::conntrack;
use crate::iptables_backend::IptablesBackend;
use crate::localnet;
use crate::mapping::{Attachment, ContainerAddrs, IpFamily};
use crate::nft_backend::NftBackend;
use cni::plugin::{CmdArgs, Plugin};
use cni::{CniResult, Code, Error, Result};
use cni_net::detach::Sockets;
use ipnetwork::IpNetwork;

/// The firewall of one call.
pub enum Firewall<'s> {
    /// nf_tables, in-process, on the command's netfilter socket.
    Nft(NftBackend<'s>),
    /// Go's iptables layout (in-process on an iptables-nft host).
    Iptables(IptablesBackend<'s>),
}

impl<'s> Firewall<'s> {
    /// Opens the backend the config chose.
    pub fn open(backend: Backend, sockets: &'s mut Sockets) -> Result<Firewall<'s>> {
        Ok(match backend {
            Backend::Nftables => Firewall::Nft(NftBackend::new(sockets)?),
            Backend::Iptables => Firewall::Iptables(IptablesBackend::with_sockets(sockets)),
        })
    }

    /// Forwards ports to one container address.
    pub fn add(&mut self, conf: &PortMapConf, att: &Attachment, addr: IpNetwork) -> Result<()> {
        match self {
            Firewall::Nft(n) => n.add(conf, att, addr),
            Firewall::Iptables(i) => i.add(conf, att, addr),
        }
    }

    /// Removes everything of the attachment (on nftables, found by the keys of `conf`'s
    /// port mappings when it has any).
    pub fn del(&mut self, conf: &PortMapConf, att: &Attachment) -> Result<()> {
        match self {
            Firewall::Nft(n) => n.del_mappings(conf, att),
            Firewall::Iptables(i) => i.del(att),
        }
    }

    /// Verifies one container address's rules.
    pub fn check(&mut self, conf: &PortMapConf, att: &Attachment, addr: IpNetwork) -> Result<()> {
        match self {
            Firewall::Nft(n) => n.check(conf, att, addr),
            Firewall::Iptables(i) => i.check(conf, att, addr),
        }
    }

    /// Removes the rules of stale attachments of `network`.
    pub fn gc(&mut self, network: &str, valid: &[String]) -> Result<()> {
        match self {
            Firewall::Nft(n) => n.gc(network, valid),
            Firewall::Iptables(i) => i.gc(network, valid),
        }
    }
}

/// The portmap plugin.
pub struct Portmap;

/// Each command owns its sockets ([`Sockets`]): one netfilter socket for the backend probe,
/// the nftables backend and conntrack, released by a detached child after ADD, DEL and GC, so
/// the kernel's wait for nf_tables' deferred cleanup (due when a process's last netfilter
/// socket goes after any recent deletion on the host) is not the runtime's.
impl Plugin for Portmap {
    fn add(&self, cmd: &CmdArgs) -> Result<CniResult> {
        let mut sockets = Sockets::detached();
        let out = add(cmd, &mut sockets);
        sockets.release();
        out
    }

    fn del(&self, cmd: &CmdArgs) -> Result<()> {
        let mut sockets = Sockets::detached();
        let out = del(cmd, &mut sockets);
        sockets.release();
        out
    }

    fn check(&self, cmd: &CmdArgs) -> Result<()> {
        let sockets = &mut Sockets::in_place();
        let conf = PortMapConf::from_cmd(cmd, sockets)?;
        let Some(prev) = cmd.prev_result()? else {
            return Err(Error::invalid_config("Required prevResult missing"));
        };
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let att = Attachment::new(&conf.name, &cmd.container_id);
        let mut fw = Firewall::open(conf.backend, sockets)?;
        for addr in ContainerAddrs::from_result(&prev, &cmd.ifname).iter() {
            fw.check(&conf, &att, addr)?;
        }
        Ok(())
    }

    fn gc(&self, cmd: &CmdArgs) -> Result<()> {
        let mut sockets = Sockets::detached();
        let out = gc(cmd, &mut sockets);
        sockets.release();
        out
    }

    fn status(&self, cmd: &CmdArgs) -> Result<()> {
        let sockets = &mut Sockets::in_place();
        let conf = PortMapConf::from_cmd(cmd, sockets)?;
        let unavailable = |e: Error| {
            Error::caused_by(
                Code::UNAVAILABLE,
                format!("{} backend unavailable", conf.backend.as_str()),
                e,
            )
        };
        match conf.backend {
            Backend::Nftables => {
                sockets
                    .netfilter()
                    .and_then(|s| s.tables(cni_net::nft::Family::Ip))
                    .map_err(|e| unavailable(Error::caused_by(e.cni_code(), "nf_tables", e)))?;
            }
            Backend::Iptables => {
                IptablesBackend::new()
                    .save_nat(IpFamily::V4)
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

/// ADD: forwarding for every container address of the previous result.
fn add(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<CniResult> {
    let conf = PortMapConf::from_cmd(cmd, sockets)?;
    let Some(prev) = cmd.prev_result()? else {
        return Err(Error::invalid_config("must be called as chained plugin"));
    };
    if conf.mappings.is_empty() {
        return Ok(prev);
    }
    let addrs = ContainerAddrs::from_result(&prev, &cmd.ifname);
    let att = Attachment::new(&conf.name, &cmd.container_id);
    let mut flows = Vec::new();
    let mut fw = Firewall::open(conf.backend, sockets)?;
    if let Err(e) = forward(&mut fw, &conf, &att, &addrs, &mut flows) {
        // Undo: the families done so far, and anything a failed batch left.
        if let Err(undo) = fw.del(&conf, &att) {
            // The runtime must know that something may be left: say it in the error.
            let details = format!("{}; undoing the ADD failed too: {undo}", e.details);
            return Err(e.with_details(details));
        }
        return Err(e);
    }
    // After the rules, so new packets take them. Failures are only logged.
    conntrack::remove(sockets, &flows);
    Ok(prev)
}

/// DEL: this attachment's rules in the configured backend (and in the other when none was
/// named) and its UDP flows.
fn del(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<()> {
    let conf = PortMapConf::from_cmd(cmd, sockets)?;
    let att = Attachment::new(&conf.name, &cmd.container_id);
    if conf.mappings.is_empty() && conf.backend == Backend::Iptables {
        // As Go: nothing was published through iptables, so there is nothing to fork it
        // for. Without a named backend the attachment may still hold nftables elements
        // from when nftables was the default (rcni before Go's default was ours): those
        // are looked for in-process, at no process cost.
        if !conf.backend_explicit && crate::config::has_nft(sockets) {
            Firewall::open(Backend::Nftables, sockets)?.del(&conf, &att)?;
        }
        return Ok(());
    }
    let mut fw = Firewall::open(conf.backend, sockets)?;
    fw.del(&conf, &att)?;
    cni::fault::point("portmap.del.rules");
    // Without an explicit backend the attachment may have been made by the
    // other one (Go's portmap uses iptables; a host may have switched):
    // remove its rules too, looked for in-process first so this is free
    // when there are none.
    if !conf.backend_explicit {
        match conf.backend {
            Backend::Nftables if iptables_may_hold(sockets, &att) => {
                Firewall::open(Backend::Iptables, sockets)?.del(&conf, &att)?
            }
            Backend::Iptables if crate::config::has_nft(sockets) => {
                Firewall::open(Backend::Nftables, sockets)?.del(&conf, &att)?
            }
            _ => {}
        }
    }
    // Flows that were translated to this container: scoped to its address when the
    // runtime gives the previous result, else to the published ports on local addresses.
    let addrs = match cmd.prev_result() {
        Ok(Some(prev)) => ContainerAddrs::from_result(&prev, &cmd.ifname),
        _ => ContainerAddrs::default(),
    };
    let mut flows = Vec::new();
    for (family, addr) in [(IpFamily::V4, addrs.v4), (IpFamily::V6, addrs.v6)] {
        flows.extend(conntrack::udp_flows(&conf.mappings, family, addr.map(|a| a.ip())));
    }
    conntrack::remove(sockets, &flows);
    Ok(())
}

/// GC: rules of attachments not in `cni.dev/valid-attachments`.
fn gc(cmd: &CmdArgs, sockets: &mut Sockets) -> Result<()> {
    let conf = PortMapConf::from_cmd(cmd, sockets)?;
    let Some(valid) = valid_container_ids(cmd)? else {
        eprintln!("portmap: GC without cni.dev/valid-attachments: nothing is collected");
        return Ok(());
    };
    let mut fw = Firewall::open(conf.backend, sockets)?;
    fw.gc(&conf.name, &valid)?;
    // A backend chosen by default may have changed since the ADDs: sweep the other too
    // when it is cheap (in-process).
    if conf.backend == Backend::Iptables && !conf.backend_explicit && crate::config::has_nft(sockets) {
        Firewall::open(Backend::Nftables, sockets)?.gc(&conf.name, &valid)?;
    }
    Ok(())
}

/// Publishes the ports on every address; collects in `flows` the UDP conntrack entries that
/// must go once the rules are in.
fn forward(
    fw: &mut Firewall<'_>,
    conf: &PortMapConf,
    att: &Attachment,
    addrs: &ContainerAddrs,
    flows: &mut Vec<conntrack::StaleFlow>,
) -> Result<()> {
    for addr in addrs.iter() {
        fw.add(conf, att, addr)?;
        cni::fault::point("portmap.add.rules");
        flows.extend(conntrack::udp_flows(
            &conf.mappings,
            IpFamily::of(addr.ip()),
            None,
        ));
        if addr.is_ipv4() && conf.snat {
            localnet::enable_for(addr.ip())?;
        }
    }
    Ok(())
}

/// Whether iptables may hold this attachment's chains, checked in-process on the
/// command's netfilter socket (see [`cni_net::iptables::nat_may_hold`]).
fn iptables_may_hold(sockets: &mut Sockets, att: &Attachment) -> bool {
    let wanted = [att.dnat_chain(), att.old_snat_chain()];
    let Ok(nft) = sockets.netfilter() else {
        return true;
    };
    [cni_net::Family::V4, cni_net::Family::V6]
        .into_iter()
        .any(|family| cni_net::iptables::nat_may_hold(nft, family, |name| wanted.iter().any(|w| w == name)))
}

/// The container IDs of `cni.dev/valid-attachments`; `None` when the runtime sent no list.
fn valid_container_ids(cmd: &CmdArgs) -> Result<Option<Vec<String>>> {
    Ok(cmd
        .valid_attachments()?
        .map(|list| list.into_iter().map(|a| a.container_id).collect()))
}
