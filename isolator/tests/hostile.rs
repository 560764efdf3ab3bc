//! Hostile input to the `cni-isolator` command line and races on its root
//! dir: container IDs that are paths, hold white space or control
//! characters, or are too long get an error and leave nothing anywhere;
//! parallel first starts share one self bind mount of the root. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn cli(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cni-isolator"))
        .arg(format!("--config-dir={}", env.conf.display()))
        .arg(format!("--plugins-dir={}:/usr/lib/cni", env.plugins.display()))
        .arg(format!("--root-dir={}", env.runtime.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file and directory below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// How many mounts sit on `path` in this process's mount table.
fn mounts_on(path: &Path) -> usize {
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .count()
}

#[test]
#[ignore = "needs root"]
fn hostile_container_ids_are_refused_and_leave_nothing() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    // A first, valid run creates the root and its records dir, so what
    // follows is compared against a settled tree.
    let ok = cli(&env, &["run", "--id", "ok1", "--network", "net1", "--", "true"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let before = tree(&env.runtime);
    let outside = env.base.join("outside");
    let outside_s = outside.display().to_string();
    let long = "a".repeat(300);
    let hostile = [
        outside_s.as_str(),
        "a b",
        "../escape",
        "a/b",
        "a\nb",
        "-a",
        "a..b",
        ".",
        "..",
        long.as_str(),
    ];
    for id in hostile {
        for cmd in ["run", "attach"] {
            let mut args = vec![cmd, "--id", id, "--network", "net1"];
            if cmd == "run" {
                args.extend(["--", "true"]);
            }
            let out = cli(&env, &args);
            assert!(!out.status.success(), "{cmd} --id {id:?} succeeded");
            assert!(
                text(&out.stderr).contains("container ID"),
                "{cmd} --id {id:?}: {}",
                text(&out.stderr)
            );
        }
        for cmd in ["detach", "status", "usage", "check"] {
            let out = cli(&env, &[cmd, id]);
            assert!(!out.status.success(), "{cmd} {id:?} succeeded");
        }
    }
    assert!(!outside.exists(), "a path ID wrote outside the root");
    assert!(!env.base.join("escape").exists());
    assert_eq!(tree(&env.runtime), before, "hostile IDs changed the root dir");
    // Only the valid container's ADD and DEL reached a plugin.
    assert_eq!(env.calls().len(), 2, "{:?}", env.calls());
    // gc still works: nothing unparsable was left for it to trip over.
    let gc = cli(&env, &["gc"]);
    assert!(gc.status.success(), "gc: {}", text(&gc.stderr));
}

#[test]
#[ignore = "needs root"]
fn parallel_first_starts_make_one_root_mount() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    // Rounds on fresh roots, 16 isolators started at one instant each: the
    // read of the mount table and the mount are microseconds apart, so one
    // round rarely shows the race; several do.
    let mut stacked = Vec::new();
    let mut failures = Vec::new();
    for round in 0..20 {
        let mut options = env.options();
        options.root_dir = Some(env.base.join(format!("root{round}")));
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        let o = options.clone();
                        barrier.wait();
                        cni_isolator::Isolator::new(o).map(drop)
                    })
                })
                .collect();
            for h in handles {
                if let Err(e) = h.join().unwrap() {
                    failures.push(e.to_string());
                }
            }
        });
        let root = std::fs::canonicalize(options.root_dir.as_ref().unwrap()).unwrap();
        let n = mounts_on(&root);
        // Undo every mount before asserting, so a failure leaves none.
        for _ in 0..n {
            let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
        }
        if n != 1 {
            stacked.push((round, n));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(stacked.is_empty(), "(round, mounts on the root): {stacked:?}");
}

/// A symlink planted in the root dir in place of a container's directory is
/// never followed: no file is written and no namespace mounted where it
/// points.
#[test]
#[ignore = "needs root"]
fn planted_symlinks_in_the_root_are_not_followed() {
    let env = Env::new();
    env.mock_plugin("mockcni", V020_RESULT);
    env.mock_network("net1", "mockcni");
    let ok = cli(&env, &["run", "--id", "ok1", "--network", "net1", "--", "true"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let outside = env.base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.root().join("x1")).unwrap();
    let out = cli(&env, &["attach", "--id", "x1", "--network", "net1"]);
    assert!(!out.status.success(), "attach through a symlink succeeded");
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(tree(&outside), Vec::<String>::new(), "written through the link");
    assert_eq!(mounts_on(&outside.join("ns")), 0);
    assert!(
        env.calls().iter().all(|c| !c.contains(" x1 ")),
        "{:?}",
        env.calls()
    );
}
