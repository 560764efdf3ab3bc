//! ADD's allocation: one address per range set, a requested one when the
//! runtime asked for an address inside the set, else the next free one in
//! round-robin order. Messages are Go's; a failure releases exactly what
//! this call reserved.

use crate::addr;
use crate::config::IpamConfig;
use crate::range_set::RangeSet;
use crate::reservations::{Attachment, Reservations};
use cni::Error;
use cni::result::IpConfig;
use std::net::IpAddr;

/// Allocates for every range set of `config`; returns the result's `ips`.
pub fn allocate(
    res: &mut Reservations,
    config: &IpamConfig,
    who: &Attachment,
) -> Result<Vec<IpConfig>, Error> {
    let mut requested: Vec<IpAddr> = config.requested.clone();
    let mut reserved: Vec<IpAddr> = Vec::new();
    let mut ips = Vec::with_capacity(config.range_sets.len());
    for (idx, set) in config.range_sets.iter().enumerate() {
        let wanted = requested
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|i| requested.remove(i));
        match allocate_one(res, set, idx, who, wanted) {
            Ok(ip) => {
                reserved.push(ip);
                // allocate_one only returns addresses of the set.
                let Some(range) = set.range_for(ip) else {
                    undo(res, who, &reserved);
                    return Err(Error::internal(format!("allocated {ip} outside range set {idx}")));
                };
                ips.push(IpConfig {
                    address: range.with_prefix(ip),
                    gateway: Some(range.gateway),
                    interface: None,
                });
            }
            Err(e) => {
                undo(res, who, &reserved);
                return Err(
                    Error::new(e.code, format!("failed to allocate for range {idx}: {}", e.msg))
                        .with_details(e.details),
                );
            }
        }
    }
    if !requested.is_empty() {
        undo(res, who, &reserved);
        let list: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
        return Err(Error::invalid_config(format!(
            "failed to allocate all requested IPs: {}",
            list.join(" ")
        )));
    }
    Ok(ips)
}

fn allocate_one(
    res: &mut Reservations,
    set: &RangeSet,
    idx: usize,
    who: &Attachment,
    wanted: Option<IpAddr>,
) -> Result<IpAddr, Error> {
    if let Some(ip) = wanted {
        let gateway = set.range_for(ip).map(|r| r.gateway);
        if gateway == Some(ip) {
            return Err(Error::invalid_config(format!(
                "requested ip {ip} is subnet's gateway"
            )));
        }
        return res.reserve_first(who, idx, [ip])?.ok_or_else(|| {
            Error::internal(format!(
                "requested IP address {ip} is not available in range set {set}"
            ))
        });
    }
    // The spec forbids a second ADD for the same attachment; Go refuses it
    // when the attachment (or its legacy ID-only form) already holds an
    // address of this set.
    for content in [who.content(), who.legacy_content()] {
        if let Some(e) = res.held_by(&content)?.iter().find(|e| set.contains(e.ip)) {
            return Err(Error::internal(format!(
                "{} has been allocated to {}, duplicate allocation is not allowed",
                e.ip,
                who.container_id.trim()
            )));
        }
    }
    let mut candidates = set.candidates(res.last_reserved(idx)).map(|(ip, _)| ip);
    if let Some(ip) = res.reserve_first(who, idx, candidates.by_ref().take(LINK_TRIES))? {
        return Ok(ip);
    }
    // A dense stretch (after a wrap-around, say): Go would try one O_EXCL
    // create per taken address, tens of thousands of syscalls. The index
    // knows every taken address, so skip them in memory and only try the
    // ones it believes free (the link still decides).
    let mut taken: Vec<u128> = res
        .addresses_where(|ip| set.contains(ip))?
        .into_iter()
        .map(addr::to_u128)
        .collect();
    taken.sort_unstable();
    let free = |ip: &IpAddr| taken.binary_search(&addr::to_u128(*ip)).is_err();
    res.reserve_first(who, idx, candidates.filter(free))?
        .ok_or_else(|| Error::internal(format!("no IP addresses available in range set: {set}")))
}

/// Round-robin candidates tried by link attempts before the index is used
/// to skip taken addresses: the next one is almost always free.
const LINK_TRIES: usize = 32;

/// Releases what this call reserved, best effort: the caller is already failing.
fn undo(res: &mut Reservations, who: &Attachment, reserved: &[IpAddr]) {
    if reserved.is_empty() {
        return;
    }
    let Ok(entries) = res.held_by(&who.content()) else {
        return;
    };
    for e in entries.iter().filter(|e| reserved.contains(&e.ip)) {
        if let Err(err) = res.release(e) {
            eprintln!("host-local: releasing {} after a failed ADD: {err}", e.ip);
        }
    }
}
