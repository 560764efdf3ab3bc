//! The verbs: what `main` calls for ADD, DEL, CHECK, GC and STATUS.

use crate::allocator;
use crate::config::IpamConfig;
use crate::dns;
use crate::reservations::{Attachment, Reservations};
use cni::plugin::CmdArgs;
use cni::{CniResult, Code, Error};
use serde::Deserialize;
use std::collections::HashSet;

fn load(cmd: &CmdArgs) -> Result<IpamConfig, Error> {
    IpamConfig::load(&cmd.stdin, &cmd.cni_args()?)
}

/// ADD: one address per range set, plus the configured routes and DNS.
pub fn add(cmd: &CmdArgs) -> Result<CniResult, Error> {
    let config = load(cmd)?;
    let dns = match &config.resolv_conf {
        Some(path) => dns::load(path)?,
        None => Default::default(),
    };
    let who = Attachment::new(&cmd.container_id, &cmd.ifname);
    let mut res = Reservations::open(&config.data_dir, &config.name, true)?
        .ok_or_else(|| Error::io("the store directory could not be created"))?;
    let ips = allocator::allocate(&mut res, &config, &who)?;
    res.close()?;
    Ok(CniResult {
        cni_version: config.cni_version.clone(),
        ips,
        routes: config.routes.clone(),
        dns,
        ..CniResult::default()
    })
}

/// DEL: releases the attachment's addresses; success when there are none.
///
/// Go releases once per range set over the whole directory: each pass
/// removes the `id\r\nifname` files, or, when there are none, the legacy
/// files holding the bare ID. We keep that exact outcome (with two or more
/// sets both kinds go), at the cost of one index lookup per pass.
pub fn del(cmd: &CmdArgs) -> Result<(), Error> {
    let config = load(cmd)?;
    let who = Attachment::new(&cmd.container_id, &cmd.ifname);
    let mut res = match Reservations::open(&config.data_dir, &config.name, false) {
        Ok(Some(res)) => res,
        Ok(None) => return Ok(()),
        // The index could not be rebuilt: DEL must still work, so walk the files.
        Err(e) => {
            let contents = [who.content(), who.legacy_content()];
            return crate::reservations::release_by_scan(&config.data_dir, &config.name, &contents)
                .map_err(|_| e);
        }
    };
    for _ in &config.range_sets {
        if res.release_held_by(&who.content())? == 0 {
            res.release_held_by(&who.legacy_content())?;
        }
    }
    res.close()
}

/// CHECK: the attachment holds at least one address (Go checks no more).
pub fn check(cmd: &CmdArgs) -> Result<(), Error> {
    let config = load(cmd)?;
    let who = Attachment::new(&cmd.container_id, &cmd.ifname);
    let found = match Reservations::open(&config.data_dir, &config.name, false)? {
        None => false,
        Some(res) => {
            !res.held_by(&who.content())?.is_empty() || !res.held_by(&who.legacy_content())?.is_empty()
        }
    };
    if found {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "host-local: Failed to find address added by container {}",
            cmd.container_id
        )))
    }
}

#[derive(Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    #[serde(default)]
    ifname: String,
}

/// GC: releases every reservation whose attachment is not in
/// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`). A
/// legacy ID-only reservation stays when any attachment of that ID is valid.
/// Without either key there is nothing to compare with, so nothing is freed.
pub fn gc(cmd: &CmdArgs) -> Result<(), Error> {
    let config = load(cmd)?;
    let extra = &cmd.config.extra;
    let Some(list) = extra
        .get("cni.dev/valid-attachments")
        .or_else(|| extra.get("cni.dev/attachments"))
    else {
        return Ok(());
    };
    // Go's GCAttachment fields match in any case too (`ContainerID`, `IfName`).
    let valid: Vec<ValidAttachment> = cni::json_keys::from_value(list)
        .map_err(|e| Error::decoding(format!("invalid cni.dev/valid-attachments: {e}")))?;
    let mut keep: HashSet<String> = HashSet::new();
    for a in &valid {
        let who = Attachment::new(&a.container_id, &a.ifname);
        keep.insert(who.content());
        keep.insert(who.legacy_content());
    }
    let keep_keys: HashSet<u64> = keep.iter().map(|c| crate::index::key_of(c)).collect();
    let Some(mut res) = Reservations::open(&config.data_dir, &config.name, false)? else {
        return Ok(());
    };
    let mut errors: Vec<String> = Vec::new();
    for entry in res.entries()? {
        if keep_keys.contains(&entry.key) {
            continue;
        }
        let stale = match res.owner_of(entry.ip) {
            Ok(owner) => owner.is_none_or(|o| !keep.contains(&o)),
            Err(e) => {
                errors.push(format!("{}: {e}", entry.ip));
                continue;
            }
        };
        if stale && let Err(e) = res.release(&entry) {
            errors.push(format!("{}: {e}", entry.ip));
        }
    }
    res.close()?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::io("failed to release some reservations").with_details(errors.join("; ")))
    }
}

/// STATUS: code 50 when a range set has no address left to hand out.
pub fn status(cmd: &CmdArgs) -> Result<(), Error> {
    let config = load(cmd)?;
    let Some(res) = Reservations::open(&config.data_dir, &config.name, false)? else {
        return Ok(());
    };
    let total = u128::from(res.count());
    for set in &config.range_sets {
        let capacity = set.capacity();
        // Fewer reservations in the whole store than the set has addresses:
        // some are free, without looking at any of them.
        if total < capacity {
            continue;
        }
        let used = res.addresses_where(|ip| set.is_allocatable(ip))?.len() as u128;
        if used >= capacity {
            return Err(Error::new(
                Code::UNAVAILABLE,
                format!("no IP addresses available in range set: {set}"),
            ));
        }
    }
    res.close()
}
