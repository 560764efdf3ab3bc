//! `mesos-cni-port-mapper`: Mesos's port-mapper plugin. ADD runs the
//! delegate plugin, then publishes `args.org.apache.mesos.network_info.port_mappings`
//! on the container's address; DEL removes the rules, then runs the
//! delegate's DEL. Errors are Mesos's: codes 100-104, `cniVersion` 0.3.0.

mod config;
mod rules;

use cni::plugin::{CmdArgs, Command};
use cni::version::Version;
use config::{MapperConf, MapperError, code};
use portmap::mapping::ContainerAddrs;
use std::io::{Read, Write};
use std::path::PathBuf;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn required(key: &str) -> Result<String, MapperError> {
    env(key).ok_or_else(|| {
        MapperError::new(
            code::BAD_ARGS,
            format!("Unable to find environment variable '{key}'"),
        )
    })
}

fn run() -> Result<Option<serde_json::Value>, MapperError> {
    let command = required("CNI_COMMAND")?;
    let command = match command.as_str() {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        other => {
            return Err(MapperError::new(
                code::UNSUPPORTED_COMMAND,
                format!("Unsupported command: {other}"),
            ));
        }
    };
    let container_id = required("CNI_CONTAINERID")?;
    rules::check_container_id(&container_id)?;
    let ifname = required("CNI_IFNAME")?;
    let path = required("CNI_PATH")?;
    let netns = if command == Command::Add {
        Some(required("CNI_NETNS")?)
    } else {
        env("CNI_NETNS")
    };
    let mut stdin = Vec::new();
    std::io::stdin()
        .take(cni::plugin::MAX_STDIN + 1)
        .read_to_end(&mut stdin)
        .map_err(|e| {
            MapperError::new(
                code::READ,
                format!("Failed to read the network configuration: {e}"),
            )
        })?;
    if stdin.len() as u64 > cni::plugin::MAX_STDIN {
        return Err(MapperError::new(
            code::READ,
            format!(
                "The network configuration is larger than {} MiB",
                cni::plugin::MAX_STDIN >> 20
            ),
        ));
    }
    let conf = MapperConf::parse(&stdin)?;
    let delegate_stdin = serde_json::to_vec(&conf.delegate)
        .map_err(|e| MapperError::new(code::BAD_ARGS, format!("Invalid delegate configuration: {e}")))?;
    let delegate_version = conf
        .delegate
        .get("cniVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("0.2.0")
        .to_string();
    let cmd = CmdArgs {
        command,
        container_id: container_id.clone(),
        netns: netns.map(PathBuf::from),
        netns_state: None,
        ifname: ifname.clone(),
        raw_args: env("CNI_ARGS").unwrap_or_default(),
        path: path
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        stdin: delegate_stdin.clone(),
        config: cni::NetConf::default(),
        version: Version::parse(&delegate_version)
            .or_else(|_| Version::parse("0.2.0"))
            .map_err(|e| MapperError::new(code::BAD_ARGS, e.msg))?,
    };
    let delegate_err =
        |e: cni::Error| MapperError::new(code::DELEGATE, format!("Delegate plugin failed: {e}"));
    match command {
        Command::Add => {
            let result = cni::runtime::delegate_add(&conf.delegate_type, &delegate_stdin, &cmd)
                .map_err(delegate_err)?;
            let addrs: Vec<_> = ContainerAddrs::from_result(&result, &ifname).iter().collect();
            if addrs.is_empty() && !conf.mappings.is_empty() {
                let _ = cni::runtime::delegate_del(&conf.delegate_type, &delegate_stdin, &cmd);
                return Err(MapperError::new(
                    code::DELEGATE,
                    "Delegate plugin did not return an IP address",
                ));
            }
            if !conf.mappings.is_empty()
                && let Err(e) = rules::add(&conf, &container_id, &addrs)
            {
                // Undo: our rules, then the delegate's attachment.
                let _ = rules::del(&conf, &container_id);
                let _ = cni::runtime::delegate_del(&conf.delegate_type, &delegate_stdin, &cmd);
                return Err(e);
            }
            let out = result
                .to_value(&delegate_version)
                .map_err(|e| MapperError::new(code::DELEGATE, format!("Invalid delegate result: {e}")))?;
            Ok(Some(out))
        }
        _ => {
            // Best effort: the delegate's DEL runs even when our rules could not be
            // removed, so its address and interface are released; the first error wins.
            let rules = rules::del(&conf, &container_id);
            let delegate =
                cni::runtime::delegate_del(&conf.delegate_type, &delegate_stdin, &cmd).map_err(delegate_err);
            rules.and(delegate).map(|()| None)
        }
    }
}

cni::plugin_allocator!();

fn main() {
    cni::plugin::install_panic_hook();
    let (value, status) = match run() {
        Ok(Some(v)) => (Some(v), 0),
        Ok(None) => (None, 0),
        Err(e) => (Some(e.to_json()), 1),
    };
    if let Some(v) = value {
        let mut out = std::io::stdout().lock();
        let _ = cni::plugin::write_json(&mut out, &v);
        let _ = out.flush();
    }
    std::process::exit(status);
}
