//! Command-line parsing: a small hand-written parser (no clap: the binary
//! should build and start fast), `--flag VALUE` and `--flag=VALUE` forms.

use cni_isolator::PortMapping;
use std::path::PathBuf;
use std::time::Duration;

/// Flags shared by every command (mirroring the agent flags).
#[derive(Clone, Debug)]
pub struct Global {
    /// `--config-dir` (`--network_cni_config_dir`).
    pub config_dir: PathBuf,
    /// `--plugins-dir` (`--network_cni_plugins_dir`), `:`-separated.
    pub plugins_dir: String,
    /// `--root-dir`: the base dir (like `--runtime_dir`); the isolator's
    /// state is under `<root-dir>/isolators/network/cni`.
    pub root_dir: PathBuf,
    /// `--plugin-timeout`.
    pub plugin_timeout: Option<Duration>,
    /// `--default-container-dns` (JSON `ContainerDNSInfo`).
    pub default_dns: Option<String>,
    /// `--no-metrics` (`--network_cni_metrics=false`).
    pub metrics: bool,
    /// `--setup-helper`.
    pub setup_helper: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            config_dir: PathBuf::from("/etc/cni/net.d"),
            plugins_dir: "/opt/cni/bin:/usr/lib/cni".into(),
            root_dir: PathBuf::from("/var/run/rcni"),
            plugin_timeout: Some(Duration::from_secs(60)),
            default_dns: None,
            metrics: true,
            setup_helper: None,
            json: false,
        }
    }
}

/// Options of `run` and `attach`.
#[derive(Clone, Debug, Default)]
pub struct Attach {
    /// `--id`.
    pub id: Option<String>,
    /// `--network`, in order (comma lists split).
    pub networks: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--publish [NETWORK:]HOST:CONTAINER[/PROTO]`: the network (`None`:
    /// the first) and the mapping.
    pub publish: Vec<(Option<String>, PortMapping)>,
    /// `--cni-args K=V;K=V`.
    pub cni_args: Vec<(String, String)>,
    /// `attach --pid`.
    pub pid: Option<i32>,
    /// `attach --netns`.
    pub netns: Option<PathBuf>,
    /// `run -- CMD ARGS...`.
    pub command: Vec<String>,
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub enum Cmd {
    /// Start a command in new namespaces on the networks.
    Run(Attach),
    /// Attach a container started elsewhere (or a new namespace).
    Attach(Attach),
    /// Detach and forget a container.
    Detach(String),
    /// One container's networks, or all.
    Status(Option<String>),
    /// All containers.
    List,
    /// Traffic counters.
    Usage(String),
    /// CHECK every network of a container.
    Check(String),
    /// The networks the config dir defines.
    Networks,
    /// Clean up containers whose process is gone.
    Gc,
    /// Help text.
    Help,
    /// Version.
    Version,
}

/// Parses `[NETWORK:]HOSTPORT:CONTAINERPORT[/PROTO]`; no network means the first.
pub fn parse_publish(s: &str) -> Result<(Option<String>, PortMapping), String> {
    match s.split(':').count() {
        3 => {
            let (network, mapping) = s.split_once(':').unwrap_or_default();
            if network.is_empty() {
                return Err(format!("--publish {s}: empty network name"));
            }
            Ok((Some(network.to_string()), parse_mapping(s, mapping)?))
        }
        _ => Ok((None, parse_mapping(s, s)?)),
    }
}

/// Parses `HOSTPORT:CONTAINERPORT[/PROTO]` (`whole` is the flag, for messages).
fn parse_mapping(whole: &str, s: &str) -> Result<PortMapping, String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, Some(proto.to_ascii_lowercase())),
        None => (s, None),
    };
    if let Some(p) = &proto
        && p != "tcp"
        && p != "udp"
        && p != "sctp"
    {
        return Err(format!("--publish {whole}: protocol must be tcp, udp or sctp"));
    }
    let (h, c) = ports
        .split_once(':')
        .ok_or_else(|| format!("--publish {whole}: expected [NETWORK:]HOSTPORT:CONTAINERPORT[/PROTO]"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(u32::from)
            .ok_or_else(|| format!("--publish {whole}: {p:?} is not a port"))
    };
    Ok(PortMapping {
        host_port: port(h)?,
        container_port: port(c)?,
        protocol: proto,
    })
}

/// Parses `30`, `30s`, `500ms`, `2m`; `0` means no limit.
pub fn parse_duration(s: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("{s:?} is not a duration (30, 30s, 500ms, 2m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    Ok((!d.is_zero()).then_some(d))
}

fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--cni-args: {p:?} is not K=V"))
        })
        .collect()
}

/// Parses the whole command line (without the program name).
pub fn parse(args: &[String]) -> Result<(Global, Cmd), String> {
    let mut g = Global::default();
    let mut a = Attach::default();
    let mut positional: Vec<String> = Vec::new();
    let mut command: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            a.command = args[i..].to_vec();
            break;
        }
        if !arg.starts_with("--") || arg == "-" {
            if arg == "-h" {
                return Ok((g, Cmd::Help));
            }
            if command.is_none() {
                command = Some(arg.clone());
            } else {
                positional.push(arg.clone());
            }
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let switch = matches!(key.as_str(), "--json" | "--no-metrics" | "--help" | "--version");
        let value = if switch {
            String::new()
        } else if let Some(v) = inline {
            v
        } else if i < args.len() {
            i += 1;
            args[i - 1].clone()
        } else {
            return Err(format!("{key} needs a value"));
        };
        match key.as_str() {
            "--help" => return Ok((g, Cmd::Help)),
            "--version" => return Ok((g, Cmd::Version)),
            "--json" => g.json = true,
            "--no-metrics" => g.metrics = false,
            "--config-dir" => g.config_dir = value.into(),
            "--plugins-dir" => g.plugins_dir = value,
            "--root-dir" => g.root_dir = value.into(),
            "--plugin-timeout" => g.plugin_timeout = parse_duration(&value)?,
            "--default-container-dns" => g.default_dns = Some(value),
            "--setup-helper" => g.setup_helper = Some(value.into()),
            "--id" => a.id = Some(value),
            "--network" => a
                .networks
                .extend(value.split(',').filter(|n| !n.is_empty()).map(str::to_string)),
            "--hostname" => a.hostname = Some(value),
            "--publish" => a.publish.push(parse_publish(&value)?),
            "--cni-args" => a.cni_args.extend(parse_cni_args(&value)?),
            "--pid" => {
                a.pid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--pid {value:?} is not a pid"))?,
                )
            }
            "--netns" => a.netns = Some(value.into()),
            other => return Err(format!("unknown flag {other} (see cni-isolator --help)")),
        }
    }
    let id_arg = |what: &str| -> Result<String, String> {
        a.id.clone()
            .or_else(|| positional.first().cloned())
            .ok_or_else(|| format!("{what} needs a container ID"))
    };
    let cmd = match command.as_deref() {
        None | Some("help") => Cmd::Help,
        Some("run") => {
            if a.command.is_empty() {
                return Err("run needs a command after --".into());
            }
            if a.networks.is_empty() {
                return Err("run needs at least one --network".into());
            }
            Cmd::Run(a)
        }
        Some("attach") => {
            if a.networks.is_empty() {
                return Err("attach needs at least one --network".into());
            }
            if a.pid.is_some() && a.netns.is_some() {
                return Err("attach takes --pid or --netns, not both".into());
            }
            Cmd::Attach(a)
        }
        Some("detach") => Cmd::Detach(id_arg("detach")?),
        Some("status") => Cmd::Status(a.id.clone().or_else(|| positional.first().cloned())),
        Some("list") | Some("ls") => Cmd::List,
        Some("usage") => Cmd::Usage(id_arg("usage")?),
        Some("check") => Cmd::Check(id_arg("check")?),
        Some("networks") => Cmd::Networks,
        Some("gc") => Cmd::Gc,
        Some("version") => Cmd::Version,
        Some(other) => return Err(format!("unknown command {other:?} (see cni-isolator --help)")),
    };
    Ok((g, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_line() {
        let (g, cmd) = parse(&v(&[
            "--root-dir=/tmp/r",
            "run",
            "--network",
            "a,b",
            "--network=c",
            "--publish",
            "8080:80/UDP",
            "--hostname",
            "h",
            "--",
            "sh",
            "-c",
            "--x",
        ]))
        .unwrap();
        assert_eq!(g.root_dir, PathBuf::from("/tmp/r"));
        let Cmd::Run(a) = cmd else { panic!("not run") };
        assert_eq!(a.networks, ["a", "b", "c"]);
        assert_eq!(a.command, ["sh", "-c", "--x"]);
        assert_eq!(a.publish[0].1.protocol.as_deref(), Some("udp"));
        assert_eq!(a.publish[0].0, None);
        assert_eq!(a.hostname.as_deref(), Some("h"));
    }

    #[test]
    fn errors_and_durations() {
        assert!(parse(&v(&["run", "--network", "a"])).is_err());
        assert!(parse(&v(&["run", "--", "true"])).is_err());
        assert!(parse(&v(&["bogus"])).is_err());
        assert!(parse(&v(&["detach"])).is_err());
        assert!(parse_publish("80").is_err());
        assert!(parse_publish("0:80").is_err());
        let (net, m) = parse_publish("web:8080:80/tcp").unwrap();
        assert_eq!(
            (net.as_deref(), m.host_port, m.container_port),
            (Some("web"), 8080, 80)
        );
        assert!(parse_publish(":8080:80").is_err());
        assert!(parse_publish("a:b:8080:80").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m").unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0").unwrap(), None);
        assert!(parse_duration("x").is_err());
    }
}
