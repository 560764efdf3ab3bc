//! One isolator step per process, shaped like a CNI plugin so that
//! `scripts/bench` (which times plugin-like execs: no arguments, `CNI_*`
//! variables, spawn to exit) can time it: `scripts/bench_scenarios/isolator.py`.
//! Root. What the process does is what an agent does per container, plus
//! its own start and `Isolator::new` (config dir scan, root mount check),
//! which an agent pays once, not per container.
//!
//! Environment:
//! - `CNI_COMMAND`: `ADD` (prepare + isolate the process `RCNI_BENCH_PID`
//!   as container `CNI_CONTAINERID`), `DEL` (recover that container, then
//!   cleanup) or `RECOVER` (recover the `RCNI_BENCH_CONTAINERS` containers
//!   `r0`..`rN-1` checkpointed under the root; no plugin runs).
//! - `CNI_PATH`: the plugin dir; `RCNI_BENCH_CONFIG_DIR`, `RCNI_BENCH_ROOT`:
//!   the isolator's config dir and root; `RCNI_BENCH_NETWORK`: the network.
//!
//! Prints one JSON object: the step's own time in the library (`step_ms`),
//! the time of the plugin execs inside it (`plugins_ms`) and the difference
//! (`isolator_ms`, the isolator's own cost that issue #6 bounds), so a
//! scenario's `verify` can check it.

use cni::runtime::Invocation;
use cni_isolator::plugin_exec::{PluginExec, ProcessPlugins};
use cni_isolator::{
    ContainerConfig, ContainerId, ContainerInfo, ContainerState, Isolator, NetworkInfo, Options,
};
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs plugins as the isolator does (awaited child processes), adding up
/// the time of each exec.
#[derive(Default)]
struct TimedExec {
    spent: Mutex<Duration>,
}

impl PluginExec for TimedExec {
    fn exec<'a>(
        &'a self,
        plugin: &'a Path,
        inv: &'a Invocation,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, cni::Result<Vec<u8>>> {
        Box::pin(async move {
            let t0 = Instant::now();
            let out = ProcessPlugins.exec(plugin, inv, cancel).await;
            *self
                .spent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += t0.elapsed();
            out
        })
    }
}

fn var(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn main() {
    if let Err(e) = real_main() {
        println!("{}", serde_json::json!({"error": e.to_string()}));
        eprintln!("isolator-step: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let command = var("CNI_COMMAND")?;
    let network = var("RCNI_BENCH_NETWORK")?;
    let mut options = Options::new(
        var("RCNI_BENCH_CONFIG_DIR")?,
        &var("CNI_PATH")?,
        var("RCNI_BENCH_ROOT")?,
    );
    options.plugin_timeout = Some(Duration::from_secs(30));
    let exec = Arc::new(TimedExec::default());
    let iso = Isolator::with_plugin_exec(options, exec.clone())?;
    let networks = vec![NetworkInfo::named(&network)];
    let t0;
    match command.as_str() {
        "ADD" => {
            let id = ContainerId::new(var("CNI_CONTAINERID")?);
            let pid: i32 = var("RCNI_BENCH_PID")?.parse()?;
            let config = ContainerConfig {
                container_info: Some(ContainerInfo {
                    network_infos: networks,
                    ..ContainerInfo::default()
                }),
                ..ContainerConfig::default()
            };
            t0 = Instant::now();
            iso.prepare(&id, &config)?;
            iso.isolate(&id, pid)?;
        }
        "DEL" => {
            let id = ContainerId::new(var("CNI_CONTAINERID")?);
            let state = ContainerState {
                container_id: id.clone(),
                network_infos: networks,
            };
            t0 = Instant::now();
            iso.recover(&[state], &HashSet::new())?;
            iso.cleanup(&id)?;
        }
        "RECOVER" => {
            let n: usize = var("RCNI_BENCH_CONTAINERS")?.parse()?;
            let states: Vec<ContainerState> = (0..n)
                .map(|i| ContainerState {
                    container_id: ContainerId::new(format!("r{i}")),
                    network_infos: networks.clone(),
                })
                .collect();
            t0 = Instant::now();
            let report = iso.recover(&states, &HashSet::new())?;
            if report.recovered.len() != n || !report.failed.is_empty() {
                return Err(format!(
                    "recovered {} of {n}, failed {:?}",
                    report.recovered.len(),
                    report.failed
                )
                .into());
            }
        }
        other => return Err(format!("unknown CNI_COMMAND {other}").into()),
    }
    let step = t0.elapsed();
    let plugins = *exec
        .spent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    println!(
        "{}",
        serde_json::json!({
            "step_ms": ms(step),
            "plugins_ms": ms(plugins),
            "isolator_ms": ms(step.saturating_sub(plugins)),
        })
    );
    Ok(())
}
