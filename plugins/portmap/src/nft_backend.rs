//! The nftables backend: Go's tables (`ip cni_hostport`, `ip6 cni_hostport`)
//! and base chains, with published ports kept as map and set elements, so that
//! nothing an ADD, DEL or packet does grows with the number of containers.
//!
//! ```text
//! table ip cni_hostport {
//!   map rcni_dnat_hostip_<g> { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!   map rcni_dnat_<g>        { type inet_proto . inet_service : ipv4_addr . inet_service }
//!   set rcni_masq_hostip_<g> { type ipv4_addr . inet_proto . inet_service . ipv4_addr; flags interval }
//!   set rcni_masq_<g>        { type inet_proto . inet_service . ipv4_addr; flags interval }
//!   chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump hostports_all }
//!   chain output     { type nat hook output priority dstnat;     fib daddr type local jump hostports_all }
//!   chain hostports_all { jump hostip_hostports; jump hostports }     # as Go's, re-made by Go's ADD
//!   chain hostip_hostports {                                           # never flushed by Go
//!     ip daddr . meta l4proto . th dport . ip saddr @rcni_masq_hostip_<g> meta mark set mark | M
//!     meta l4proto . th dport . ip saddr @rcni_masq_<g> meta mark set mark | M
//!     dnat ip to ip daddr . meta l4proto . th dport map @rcni_dnat_hostip_<g>
//!     dnat ip to meta l4proto . th dport map @rcni_dnat_<g>
//!   }
//!   chain hostports { }                                                # Go's per-rule DNATs, if any
//!   chain masquerading { type nat hook postrouting priority srcnat; meta mark & M == M masquerade }
//!   elements, per published port, commented "cni-dn-<hash of network+container> <container id>":
//!     rcni_dnat_<g>   { tcp . 8080 : 10.222.1.2 . 80 }
//!     rcni_masq_<g>   { tcp . 8080 . 10.222.1.0/24, tcp . 8080 . 127.0.0.1 }
//! }
//! ```
//!
//! - `<g>` is a group: the attachments whose configs match packets alike (conditions, mark,
//!   snat, masqAll) share its maps, sets and four rules ([`Group`]); a host usually has one.
//! - A packet finds its container with one map lookup, whatever the number of containers.
//! - An ADD sends one batch of elements (plus the shared objects when missing). Earlier
//!   versions of this layout jumped through a verdict map to one chain per container; every
//!   commit that adds a jump makes the kernel re-validate every reachable chain, which cost
//!   0.6-2 ms more per ADD with 1,000 containers. Data maps need no validation.
//! - DEL looks its elements up by key (one lookup each) and checks their comment, so it
//!   removes exactly this attachment's elements, also after its port went to another one.
//! - Only packets addressed to the host are looked at (`fib daddr type local`), never
//!   forwarded traffic (Go's GHSA-jv3w-x3r3-g6rm).
//! - Masquerading uses a mark, as Go's iptables layout does: only connections from the
//!   container's subnet (hairpin, neighbours) or from 127.0.0.1 are masqueraded (`masqAll`:
//!   all).
//! - Two attachments cannot publish the same (address, protocol, port): the second ADD fails
//!   with a clear error instead of silently shadowing or being shadowed.

mod conditions;
mod layout;

pub use conditions::{Condition, parse_conditions};
pub use layout::*;

use crate::config::PortMapConf;
use crate::mapping::{Attachment, IpFamily};
use cni::{Code, Error, Result};
use cni_net::detach::Sockets;
use cni_net::nft::{Batch, ElementInfo, NetfilterSocket, SetElement, Value};
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How often a DEL or GC collects its deletions again after the kernel refused a batch
/// because an element of it was already gone.
const DELETE_ATTEMPTS: u32 = 5;

fn net_err(msg: impl Into<String>, e: cni_net::Error) -> Error {
    let code = e.cni_code();
    Error::caused_by(code, msg, e)
}

/// What the kernel answers when a key is taken by another element: `EBUSY` for a map key
/// with other data, `EEXIST`, or `ENOTEMPTY` for an overlapping range.
fn is_taken(e: &cni_net::Error) -> bool {
    matches!(e.errno().map(|n| n as i32), Some(16 | 17 | 39))
}

/// The nftables backend on the command's netfilter socket, borrowed from the command's
/// [`Sockets`] (which decides when it is released).
pub struct NftBackend<'s> {
    sock: &'s mut NetfilterSocket,
}

impl<'s> NftBackend<'s> {
    /// The backend on `sockets`' netfilter socket (opened on first use).
    pub fn new(sockets: &'s mut Sockets) -> Result<Self> {
        let sock = sockets
            .netfilter()
            .map_err(|e| net_err("cannot open a netfilter socket", e))?;
        Ok(NftBackend { sock })
    }

    /// Lists the shared chains (one small dump each, whatever the number of containers).
    fn shared(&mut self, family: IpFamily) -> Result<Shared> {
        let f = nft_family(family);
        let mut seen = Shared {
            table: true,
            comments: Vec::new(),
        };
        for chain in SHARED_CHAINS {
            let rules = match self.sock.rules(f, TABLE, chain) {
                Ok(r) => r,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(net_err(format!("cannot list nftables chain {chain}"), e)),
            };
            if chain == "prerouting" && rules.is_empty() {
                // The first ADD of the host, or someone removed the chain: ask for the table.
                seen.table = self
                    .sock
                    .table_exists(f, TABLE)
                    .map_err(|e| net_err("cannot list nftables tables", e))?;
                if !seen.table {
                    return Ok(seen);
                }
            }
            seen.comments
                .push((chain, rules.into_iter().map(|r| r.comment).collect()));
        }
        Ok(seen)
    }

    /// The groups whose rules are in `family`'s table (none when there is no table).
    fn groups(&mut self, family: IpFamily) -> Result<Vec<String>> {
        match self.sock.rules(nft_family(family), TABLE, HOSTIP_HOSTPORTS) {
            Ok(rules) => Ok(group_ids(
                &rules.into_iter().map(|r| r.comment).collect::<Vec<_>>(),
            )),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(net_err(
                format!("cannot list nftables chain {HOSTIP_HOSTPORTS}"),
                e,
            )),
        }
    }

    fn element(&mut self, family: IpFamily, set: &str, key: &[u8]) -> Result<Option<ElementInfo>> {
        self.sock
            .element(nft_family(family), TABLE, set, key)
            .map_err(|e| net_err(format!("cannot look up an element of nftables set {set}"), e))
    }

    /// Sets up forwarding to `container` (one family) in one batch: the group's shared
    /// objects when a listing shows them missing, and the attachment's elements. A key that
    /// is taken is checked: this attachment's own elements from an earlier ADD are replaced,
    /// another's are an error.
    pub fn add(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let group = Group::of(conf, family)?;
        let wanted = attachment_elements(conf, &group, att, container);
        let seen = self.shared(family)?;
        let mut batch = Batch::new();
        base_batch(&mut batch, &group, &seen);
        add_elements(&mut batch, family, &wanted);
        let first = match self.sock.apply(&batch) {
            Ok(()) => return Ok(()),
            Err(e) if is_taken(&e) => e,
            Err(e) => return Err(net_err("unable to set up nftables rules for port mappings", e)),
        };
        // Taken: by this attachment (a repeated ADD, maybe to another address) or another.
        let tag = attachment_tag(att);
        let mut replace = Batch::new();
        for key in &wanted.keys {
            let map = group.dnat_map(key.host_ip.is_some());
            let Some(have) = self.element(family, &map, &key.bytes())? else {
                continue;
            };
            let owner = have.comment.as_deref().and_then(parse_element_comment);
            if owner.map(|(t, _)| t) != Some(tag.as_str()) {
                return Err(Error::new(
                    Code::INTERNAL,
                    format!(
                        "unable to publish port {key}: already published by another container{}",
                        owner.map(|(_, cid)| format!(" ({cid})")).unwrap_or_default()
                    ),
                )
                .with_details(first.to_string()));
            }
            self.collect_owned(&mut replace, family, &group.id, key, &tag, &have)?;
        }
        base_batch(&mut replace, &group, &seen);
        add_elements(&mut replace, family, &wanted);
        self.sock.apply(&replace).map_err(|e| {
            if is_taken(&e) {
                Error::caused_by(
                    Code::INTERNAL,
                    format!(
                        "unable to publish ports {}: already published by another container",
                        keys_text(&wanted.keys)
                    ),
                    e,
                )
            } else {
                net_err("unable to set up nftables rules for port mappings", e)
            }
        })
    }

    /// Adds to `batch` the deletion of the elements of key `key` that `dnat` (the key's NAT
    /// element, tagged `tag`) and its masquerade ranges make up in group `group`. Returns the
    /// keys of the masquerade ranges it deletes.
    fn collect_owned(
        &mut self,
        batch: &mut Batch,
        family: IpFamily,
        group: &str,
        key: &Key,
        tag: &str,
        dnat: &ElementInfo,
    ) -> Result<Vec<Vec<u8>>> {
        let names = group_names(group);
        let host_ip = key.host_ip.is_some();
        let f = nft_family(family);
        batch.delete_elements(f, TABLE, names.dnat_map(host_ip), [SetElement::new(key.values())]);
        let Some(container) = dnat.data.as_deref().and_then(|d| data_address(family, d)) else {
            return Ok(Vec::new());
        };
        let masq = names.masq_set(host_ip);
        let mut points = vec![container];
        if family == IpFamily::V4 {
            points.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let mut seen_ranges: Vec<Vec<u8>> = Vec::new();
        for point in points {
            let Some(range) = self.element(family, &masq, &key.with_source(point))? else {
                continue;
            };
            let ours = range
                .comment
                .as_deref()
                .and_then(parse_element_comment)
                .is_some_and(|(t, _)| t == tag);
            if !ours || seen_ranges.contains(&range.key) {
                continue;
            }
            seen_ranges.push(range.key.clone());
            let end = range.key_end.clone().unwrap_or_else(|| range.key.clone());
            batch.delete_elements(
                f,
                TABLE,
                masq.as_str(),
                [SetElement::new([Value::Raw(range.key)]).range_end([Value::Raw(end)])],
            );
        }
        Ok(seen_ranges)
    }

    /// The deletion of this attachment's elements for `keys` in every group of `family`:
    /// one lookup per key and group. The masquerade ranges are found through their key's
    /// NAT element; when that is gone or another's (someone deleted it behind our back, or
    /// the DEL is repeated), the group's masquerade sets are listed for ranges still tagged
    /// with this attachment, so none is left behind.
    fn collect_keys(
        &mut self,
        batch: &mut Batch,
        family: IpFamily,
        att: &Attachment,
        keys: &[Key],
    ) -> Result<()> {
        let tag = attachment_tag(att);
        for group in self.groups(family)? {
            let names = group_names(&group);
            let mut taken = Vec::new();
            let mut complete = true;
            for key in keys {
                let map = names.dnat_map(key.host_ip.is_some());
                match self.element(family, &map, &key.bytes())? {
                    Some(have) if owned_by(&have, &tag) => {
                        taken.extend(self.collect_owned(batch, family, &group, key, &tag, &have)?);
                    }
                    _ => complete = false,
                }
            }
            if !complete {
                self.collect_masq_listed(batch, family, &group, &mut |t, _| t == tag, &taken)?;
            }
        }
        Ok(())
    }

    /// The deletion of this attachment's elements in every group of `family`, found by
    /// listing the NAT maps and the masquerade sets (for a DEL without port mappings, and
    /// GC).
    fn collect_listed(
        &mut self,
        batch: &mut Batch,
        family: IpFamily,
        mut wanted: impl FnMut(&str, &str) -> bool,
    ) -> Result<()> {
        for group in self.groups(family)? {
            let names = group_names(&group);
            let mut taken = Vec::new();
            for host_ip in [true, false] {
                let map = names.dnat_map(host_ip);
                let listed = self
                    .sock
                    .elements(nft_family(family), TABLE, &map)
                    .map_err(|e| net_err(format!("cannot list nftables map {map}"), e))?;
                for el in listed {
                    let Some((tag, cid)) = el.comment.as_deref().and_then(parse_element_comment) else {
                        continue;
                    };
                    if !wanted(tag, cid) {
                        continue;
                    }
                    let Some(key) = key_from_bytes(family, host_ip, &el.key) else {
                        continue;
                    };
                    let tag = tag.to_string();
                    taken.extend(self.collect_owned(batch, family, &group, &key, &tag, &el)?);
                }
            }
            self.collect_masq_listed(batch, family, &group, &mut wanted, &taken)?;
        }
        Ok(())
    }

    /// The deletion of the masquerade ranges of `group` whose tag and container `wanted`
    /// accepts, but for the keys in `taken` (already in the batch).
    fn collect_masq_listed(
        &mut self,
        batch: &mut Batch,
        family: IpFamily,
        group: &str,
        wanted: &mut impl FnMut(&str, &str) -> bool,
        taken: &[Vec<u8>],
    ) -> Result<()> {
        let names = group_names(group);
        let f = nft_family(family);
        for host_ip in [true, false] {
            let set = names.masq_set(host_ip);
            let listed = match self.sock.elements(f, TABLE, &set) {
                Ok(listed) => listed,
                // No such set: it holds nothing to delete.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(net_err(format!("cannot list nftables set {set}"), e)),
            };
            for el in listed {
                let Some((tag, cid)) = el.comment.as_deref().and_then(parse_element_comment) else {
                    continue;
                };
                if !wanted(tag, cid) || taken.contains(&el.key) {
                    continue;
                }
                let end = el.key_end.clone().unwrap_or_else(|| el.key.clone());
                batch.delete_elements(
                    f,
                    TABLE,
                    set.as_str(),
                    [SetElement::new([Value::Raw(el.key)]).range_end([Value::Raw(end)])],
                );
            }
        }
        Ok(())
    }

    /// Removes the attachment's elements in both families, found by listing.
    pub fn del(&mut self, att: &Attachment) -> Result<()> {
        let tag = attachment_tag(att);
        for family in [IpFamily::V4, IpFamily::V6] {
            self.delete_collected(|me, batch| me.collect_listed(batch, family, |t, _| t == tag))?;
        }
        Ok(())
    }

    /// Removes the attachment's elements for the port mappings of `conf` in both families,
    /// by key (no listing of the maps); without mappings, as [`NftBackend::del`].
    pub fn del_mappings(&mut self, conf: &PortMapConf, att: &Attachment) -> Result<()> {
        if conf.mappings.is_empty() {
            return self.del(att);
        }
        for family in [IpFamily::V4, IpFamily::V6] {
            let mut keys: Vec<Key> = Vec::new();
            for m in conf.mappings.iter().filter(|m| m.applies_to(family)) {
                let key = Key::of(m);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            self.delete_collected(|me, batch| me.collect_keys(batch, family, att, &keys))?;
        }
        Ok(())
    }

    /// Collects deletions with `collect` and applies them as one batch.
    ///
    /// An nf_tables batch is atomic: when one of its elements is already gone (a concurrent
    /// DEL or GC, an operator's `nft delete element`), the kernel answers "not found" and
    /// deletes *nothing* of the batch. So "not found" is never success here: the elements
    /// are collected again from the kernel's current state and the smaller batch applied,
    /// until a batch applies or nothing is left to delete.
    fn delete_collected(
        &mut self,
        mut collect: impl FnMut(&mut Self, &mut Batch) -> Result<()>,
    ) -> Result<()> {
        for _ in 0..DELETE_ATTEMPTS {
            let mut batch = Batch::new();
            collect(self, &mut batch)?;
            if batch.is_empty() {
                return Ok(());
            }
            match self.sock.apply(&batch) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(net_err("cannot delete nftables elements of port mappings", e)),
            }
        }
        Err(Error::new(
            Code::IO_FAILURE,
            format!(
                "cannot delete nftables elements of port mappings: they kept changing under {DELETE_ATTEMPTS} attempts"
            ),
        ))
    }

    /// Verifies the attachment's elements for one container address and the group's rules.
    pub fn check(&mut self, conf: &PortMapConf, att: &Attachment, container: IpNetwork) -> Result<()> {
        let family = IpFamily::of(container.ip());
        let group = Group::of(conf, family)?;
        let fail = |msg: String| Error::new(crate::CHECK_FAILED, msg);
        let seen = self.shared(family)?;
        for r in group.rules() {
            let comment = r.comment.unwrap_or_default();
            if !seen
                .of(HOSTIP_HOSTPORTS)
                .iter()
                .any(|c| c.as_deref() == Some(&comment))
            {
                return Err(fail(format!(
                    "nftables rule {comment:?} missing in {HOSTIP_HOSTPORTS}"
                )));
            }
        }
        let tag = attachment_tag(att);
        let wanted = attachment_elements(conf, &group, att, container);
        for (set, el) in &wanted.elements {
            let key = nft_concat(&el.key);
            let Some(have) = self.element(family, set, &key)? else {
                return Err(fail(format!("nftables set {set} lacks an element of {tag}")));
            };
            if !owned_by(&have, &tag) {
                return Err(fail(format!(
                    "nftables set {set}: an element of {tag} belongs to another attachment"
                )));
            }
            if let Some(cni_net::nft::ElementData::Pair(a, p)) = &el.data
                && have.data.as_deref() != Some(nft_concat(&[a.clone(), p.clone()]).as_slice())
            {
                return Err(fail(format!("nftables map {set}: {tag} forwards elsewhere")));
            }
        }
        Ok(())
    }

    /// Removes the elements of `network`'s attachments whose container is not in `valid`.
    pub fn gc(&mut self, network: &str, valid: &[String]) -> Result<()> {
        for family in [IpFamily::V4, IpFamily::V6] {
            self.delete_collected(|me, batch| {
                me.collect_listed(batch, family, |tag, cid| {
                    // The element is this network's when its tag is the hash of network + cid.
                    attachment_tag(&Attachment::new(network, cid)) == tag && !valid.iter().any(|v| v == cid)
                })
            })?;
        }
        Ok(())
    }
}

fn add_elements(batch: &mut Batch, family: IpFamily, wanted: &AttachmentElements) {
    let f = nft_family(family);
    for (set, el) in &wanted.elements {
        batch.add_elements(f, TABLE, set.as_str(), [el.clone()]);
    }
}

fn owned_by(el: &ElementInfo, tag: &str) -> bool {
    el.comment
        .as_deref()
        .and_then(parse_element_comment)
        .is_some_and(|(t, _)| t == tag)
}

fn nft_concat(values: &[Value]) -> Vec<u8> {
    cni_net::nft::concat_bytes(values)
}

fn keys_text(keys: &[Key]) -> String {
    keys.iter().map(Key::to_string).collect::<Vec<_>>().join(", ")
}

/// The container address at the start of a NAT element's data.
fn data_address(family: IpFamily, data: &[u8]) -> Option<IpAddr> {
    match family {
        IpFamily::V4 => {
            let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        IpFamily::V6 => {
            let b: [u8; 16] = data.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

/// A key back from the register image of a NAT map's key.
fn key_from_bytes(family: IpFamily, host_ip: bool, bytes: &[u8]) -> Option<Key> {
    let (host, rest) = if host_ip {
        let addr = data_address(family, bytes)?;
        let len = if family == IpFamily::V4 { 4 } else { 16 };
        (Some(addr), bytes.get(len..)?)
    } else {
        (None, bytes)
    };
    let protocol = crate::mapping::Protocol::from_number(*rest.first()?)?;
    let port = u16::from_be_bytes([*rest.get(4)?, *rest.get(5)?]);
    Some(Key {
        host_ip: host,
        protocol,
        port,
    })
}

#[cfg(test)]
mod tests;
