//! The isolator's checkpointed state, as a crash, a reboot, another version
//! or a hand edit may leave it: `<root>/<container>/<network>/network.conf`
//! (the plugin's stdin), `<ifname>/network.info` (the plugin's stdout, any
//! CNI version) and the command line's records (`cni-isolator/<id>.json`).
//!
//! Input: NUL-separated fields
//! `container \0 network \0 ifname \0 network.conf \0 network.info \0 record`
//! (a name that cannot be a directory entry falls back to `c1`, `net1`,
//! `eth0`; no record field: no record). The tree is written, the records
//! are loaded by the CLI's own code (`records.rs`, included here) and
//! `Isolator::recover` runs with their states (the container is also a
//! known orphan when the input's length is odd); then every container it
//! knows gets `status`, `check` and `cleanup`, whose DEL/CHECK go to a fake
//! plugin that checks its stdin is JSON. Nothing may panic, and a cleanup
//! that succeeds leaves no state behind.
//!
//! The isolator makes its root a shared mount, so the process first moves
//! to a mount namespace of its own (a user namespace too when not root);
//! where that is refused (or `RCNI_FUZZ_NO_NAMESPACE` is set), the same
//! files go through the DEL path alone.
#![no_main]

mod common;

#[allow(dead_code)]
#[path = "../../isolator/src/bin/cni-isolator/records.rs"]
mod records;

use cni::runtime::{Exec, Invocation, PluginResult};
use cni_isolator::ThreadLimits;
use cni_isolator::attach::{AttachRequest, PluginRunner};
use cni_isolator::plugin_exec::{CancellationToken, SyncExec};
use cni_isolator::threads::build_runtime;
use cni_isolator::{ContainerId, Isolator, Options};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A plugin that is never run: any valid type is "found", and every call
/// answers an empty stdout after checking that its stdin is JSON.
struct FakePlugin;

impl Exec for FakePlugin {
    fn find_in_path(&self, plugin_type: &str, _dirs: &[PathBuf]) -> cni::Result<PathBuf> {
        cni::validate::plugin_type(plugin_type)?;
        Ok(Path::new("/nonexistent/rcni-fuzz").join(plugin_type))
    }

    fn exec_plugin(&self, _plugin: &Path, inv: &Invocation) -> cni::Result<Vec<u8>> {
        assert!(
            serde_json::from_slice::<Value>(&inv.stdin).is_ok(),
            "a plugin's stdin is not JSON: {:?}",
            String::from_utf8_lossy(&inv.stdin)
        );
        Ok(Vec::new())
    }
}

/// Whether mounts stay in this process (set once, in the fuzzer's init,
/// while the process is single-threaded as unshare(2) needs).
static PRIVATE_MOUNTS: OnceLock<bool> = OnceLock::new();

fn private_mounts() -> bool {
    // SAFETY: plain system calls with valid arguments; the process is
    // single-threaded (libFuzzer's init, before its own threads start).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            let (uid, gid) = (libc::getuid(), libc::getgid());
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return false;
            }
            let maps = [
                ("/proc/self/setgroups", "deny".to_string()),
                ("/proc/self/uid_map", format!("0 {uid} 1")),
                ("/proc/self/gid_map", format!("0 {gid} 1")),
            ];
            for (file, map) in maps {
                if std::fs::write(file, map).is_err() {
                    return false;
                }
            }
        }
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
    }
}

struct Dirs {
    /// The CLI's `--root-dir` (records in `cni-isolator/`).
    cli_root: PathBuf,
    /// The isolator root below it.
    root: PathBuf,
    config_dir: PathBuf,
    plugins_dir: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = common::scratch("isolator-recover");
        let cli_root = base.join("cli");
        let d = Dirs {
            root: Options::root_dir_for(&cli_root, &cli_root, false),
            cli_root,
            config_dir: base.join("conf"),
            plugins_dir: base.join("bin"),
        };
        for dir in [&d.root, &d.config_dir, &d.plugins_dir] {
            std::fs::create_dir_all(dir).expect("create the scratch dirs");
        }
        common::unmount_at_exit(vec![d.root.clone()]);
        d
    })
}

fn check(data: &[u8]) {
    let d = dirs();
    let fields = common::fields(data);
    let field = |i: usize| fields.get(i).copied();
    let container = common::component(field(0), "c1");
    let network = common::component(field(1), "net1");
    let ifname = common::component(field(2), "eth0");

    common::empty_dir(&d.root);
    common::empty_dir(&records::dir(&d.cli_root));
    let net_dir = d.root.join(container).join(network);
    let if_dir = net_dir.join(ifname);
    std::fs::create_dir_all(&if_dir).expect("create the state dirs");
    // After a reboot the netns handle is a plain file.
    let _ = std::fs::write(d.root.join(container).join("ns"), b"");
    let _ = std::fs::write(net_dir.join("network.conf"), field(3).unwrap_or_default());
    let _ = std::fs::write(if_dir.join("network.info"), field(4).unwrap_or_default());
    if let Some(record) = field(5) {
        std::fs::write(records::dir(&d.cli_root).join("rec.json"), record).expect("write the record");
    }
    let recs = records::load_all(&d.cli_root);
    let states: Vec<_> = recs.iter().filter_map(records::Record::state).collect();

    // What recovery does with network.info.
    let _ = PluginResult::from_stdout(field(4).unwrap_or_default(), cni::version::IMPLICIT);

    if !*PRIVATE_MOUNTS.get().unwrap_or(&false) {
        // No mount namespace: DEL from the checkpoint without an isolator.
        let runner = PluginRunner {
            plugin_dirs: vec![d.plugins_dir.clone()],
            timeout: None,
            durable: false,
            exec: Arc::new(SyncExec(Arc::new(FakePlugin))),
        };
        let (container, network, ifname) = (
            container.to_string_lossy(),
            network.to_string_lossy(),
            ifname.to_string_lossy(),
        );
        let req = AttachRequest {
            root: &d.root,
            container: &container,
            network: &network,
            ifname: &ifname,
            cni_args: &[],
        };
        let runtime = build_runtime(ThreadLimits::default()).expect("a runtime");
        let ns = d.root.join(&*container).join("ns");
        let _ = runtime.block_on(runner.del(&req, &ns, &CancellationToken::new()));
        return;
    }

    let mut options = Options::new(&d.config_dir, &d.plugins_dir.to_string_lossy(), &d.root);
    options.setup_helper = Some(PathBuf::from("/nonexistent/rcni-fuzz-setup"));
    let iso = Isolator::with_exec(options, Arc::new(FakePlugin)).expect("an isolator over the scratch dirs");
    let mut orphans = HashSet::new();
    if data.len() % 2 == 1
        && let Some(id) = container.to_str().and_then(ContainerId::parse)
    {
        orphans.insert(id);
    }
    let report = iso.recover(&states, &orphans).expect("recover");
    for id in &report.cleaned {
        assert!(!report.recovered.contains(id), "{id} both recovered and cleaned");
        assert!(
            !d.root.join(id.to_string()).exists(),
            "{id} cleaned but still on disk"
        );
    }
    for id in iso.containers() {
        let status = iso.status(&id).expect("status");
        let json = serde_json::to_vec(&status).expect("status prints");
        assert_eq!(
            serde_json::from_slice::<cni_isolator::ContainerStatus>(&json).expect("status reads back"),
            status
        );
        let _ = iso.check(&id);
        if iso.cleanup(&id).is_ok() {
            assert!(
                !d.root.join(id.to_string()).exists(),
                "{id} cleaned up but still on disk"
            );
        }
    }
}

fuzz_target!(
    init: {
        // RCNI_FUZZ_NO_NAMESPACE=1 forces the fallback (to test it).
        let private = std::env::var_os("RCNI_FUZZ_NO_NAMESPACE").is_none() && private_mounts();
        if !private {
            eprintln!("isolator_recover: no mount namespace of our own: DEL of the checkpoint only, no recovery");
        }
        let _ = PRIVATE_MOUNTS.set(private);
    },
    |data: &[u8]| {
        check(data);
    }
);
