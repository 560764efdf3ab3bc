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

#[cfg(test)]
mod tests {
    use super::*;
    use cni::args::CniArgs;
    use std::collections::BTreeMap;

    use rcni_test_support::TempDir;
    use std::path::Path;

    fn config(dir: &Path, requested: &[IpAddr]) -> IpamConfig {
        let ips: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
        let json = serde_json::json!({
            "cniVersion": "1.0.0", "name": "prop",
            "ipam": {"type": "host-local", "dataDir": dir,
                "ranges": [
                    [{"subnet": "10.0.0.0/27", "rangeStart": "10.0.0.4", "rangeEnd": "10.0.0.12", "gateway": "10.0.0.6"},
                     {"subnet": "10.0.1.0/29"}],
                    [{"subnet": "2001:db8::/120", "rangeStart": "2001:db8::f0"}]
                ]},
            "runtimeConfig": {"ips": ips}
        });
        IpamConfig::load(json.to_string().as_bytes(), &CniArgs::default()).unwrap()
    }

    /// Random ADDs (some with requested addresses) and DELs against a model
    /// of the store: every allocation is the first free address in
    /// round-robin order after the last one of its set, inside the set,
    /// never the gateway, never a duplicate; a failed ADD leaves nothing;
    /// the files always equal the model.
    #[test]
    fn allocations_follow_the_round_robin_model() {
        let tmp = TempDir::named("rcni-hl-alloc-prop");
        // Absent until the first ADD makes it.
        let dir = tmp.join("data");
        let plain = config(&dir, &[]);
        let mut model: BTreeMap<IpAddr, String> = BTreeMap::new();
        let mut last: Vec<Option<IpAddr>> = vec![None; plain.range_sets.len()];
        let mut seed = 0x1234_5678_9abc_def1_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..600 {
            let id = format!("c{}", rand(40));
            let who = Attachment::new(&id, "eth0");
            let mut res = Reservations::open(&dir, "prop", true).unwrap().unwrap();
            if rand(3) == 0 {
                res.release_held_by(&who.content()).unwrap();
                model.retain(|_, owner| *owner != id);
                res.close().unwrap();
                continue;
            }
            let want = if rand(4) == 0 {
                let set = &plain.range_sets[0];
                let all: Vec<IpAddr> = set.candidates(None).map(|(ip, _)| ip).collect();
                vec![all[rand(all.len() as u64) as usize]]
            } else {
                vec![]
            };
            let conf = config(&dir, &want);
            // What the model expects, set by set, up to the first failure.
            let mut expected = Vec::new();
            let mut failed_at = None;
            for (i, set) in conf.range_sets.iter().enumerate() {
                let holds_here = model.iter().any(|(ip, o)| *o == id && set.contains(*ip));
                let pick = match want.iter().find(|ip| set.contains(**ip)) {
                    Some(ip) => (!model.contains_key(ip)).then_some(*ip),
                    None if holds_here => None,
                    None => set
                        .candidates(last[i])
                        .map(|(ip, _)| ip)
                        .find(|ip| !model.contains_key(ip)),
                };
                match pick {
                    Some(ip) => expected.push(ip),
                    None => {
                        failed_at = Some(i);
                        break;
                    }
                }
            }
            let got = allocate(&mut res, &conf, &who);
            res.close().unwrap();
            // Go's way, kept: every reservation moves its set's round robin,
            // even one undone by a later set's failure.
            for (i, ip) in expected.iter().enumerate() {
                last[i] = Some(*ip);
            }
            match (got, failed_at) {
                (Ok(ips), None) => {
                    let got: Vec<IpAddr> = ips.iter().map(|c| c.address.ip()).collect();
                    assert_eq!(got, expected, "step {step}");
                    for (i, ip) in got.iter().enumerate() {
                        assert!(conf.range_sets[i].is_allocatable(*ip), "step {step}: {ip}");
                        assert!(model.insert(*ip, id.clone()).is_none(), "step {step}: {ip} twice");
                    }
                }
                (Err(e), Some(i)) => assert!(
                    e.msg.starts_with(&format!("failed to allocate for range {i}:")),
                    "{e:?}"
                ),
                (got, failed_at) => {
                    panic!("step {step}: got {got:?}, model expected failure at {failed_at:?}")
                }
            }
            let on_disk: BTreeMap<IpAddr, String> = std::fs::read_dir(dir.join("prop"))
                .unwrap()
                .filter_map(|e| {
                    let e = e.unwrap();
                    let ip: IpAddr = e.file_name().to_str()?.parse().ok()?;
                    let content = std::fs::read_to_string(e.path()).unwrap();
                    Some((ip, content.split_once("\r\n").unwrap().0.to_string()))
                })
                .collect();
            assert_eq!(on_disk, model, "step {step}");
        }
    }
}
