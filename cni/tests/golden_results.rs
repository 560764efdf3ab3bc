//! Golden conversions: every fixture under `tests/golden/` is read at every
//! spec version of its own shape and emitted at every supported version.
//!
//! A fixture is a directory holding `input.json` plus one expected file per
//! output shape: `0.2.json` (0.1.0, 0.2.0), `0.4.json` (0.3.0, 0.3.1,
//! 0.4.0) and `1.x.json` (1.0.0, 1.1.0), or `0.2.err` holding the expected
//! `{code, msg}` when libcni refuses the conversion. Expected files are
//! written by hand; their `cniVersion` is replaced by the version under
//! test, and they are compared as pretty-printed text so key order counts.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use cni::result::{CniResult, convert};
use cni::version::SUPPORTED_VERSIONS;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The versions that share one wire shape, and the expected file's stem.
const SHAPES: &[(&str, &[&str])] = &[
    ("0.2", &["0.1.0", "0.2.0"]),
    ("0.4", &["0.3.0", "0.3.1", "0.4.0"]),
    ("1.x", &["1.0.0", "1.1.0"]),
];

fn shape_of(version: &str) -> &'static str {
    SHAPES
        .iter()
        .find(|(_, versions)| versions.contains(&version))
        .map(|(stem, _)| *stem)
        .unwrap_or_else(|| panic!("no shape for {version}"))
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stamp(mut v: Value, version: &str) -> Value {
    v["cniVersion"] = version.into();
    v
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Checks one (fixture, input version, output version) case; returns a
/// description of the mismatch, if any.
fn check(dir: &Path, input: &Value, from: &str, to: &str) -> Option<String> {
    let name = dir.file_name().unwrap().to_string_lossy();
    let stem = shape_of(to);
    let got = convert(input, to);
    let err_file = dir.join(format!("{stem}.err"));
    if err_file.exists() {
        let want = read_json(&err_file);
        return match got {
            Ok(v) => Some(format!(
                "{name} {from}->{to}: expected an error, got\n{}",
                pretty(&v)
            )),
            Err(e) if want["code"] == e.code.0 && want["msg"] == e.msg.as_str() => None,
            Err(e) => Some(format!(
                "{name} {from}->{to}: expected {want}, got code {} {:?}",
                e.code, e.msg
            )),
        };
    }
    let want = pretty(&stamp(read_json(&dir.join(format!("{stem}.json"))), to));
    match got {
        Err(e) => Some(format!("{name} {from}->{to}: unexpected error {e}")),
        Ok(v) if pretty(&v) != want => Some(format!(
            "{name} {from}->{to}:\n--- want\n{want}\n--- got\n{}",
            pretty(&v)
        )),
        Ok(v) => {
            // What we print must read back to itself: a runtime caching our
            // output and handing it to the next plugin changes nothing.
            let again = CniResult::from_value(&v).and_then(|r| r.to_value(to));
            match again {
                Ok(a) if a == v => None,
                other => Some(format!("{name} {from}->{to}: not a fixed point: {other:?}")),
            }
        }
    }
}

#[test]
fn every_version_pair_matches_its_golden_file() {
    let mut failures = Vec::new();
    let mut pairs = BTreeSet::new();
    let mut cases = 0;
    for dir in fixtures() {
        let input = read_json(&dir.join("input.json"));
        let own = input["cniVersion"]
            .as_str()
            .expect("input.json needs a cniVersion")
            .to_owned();
        let (_, input_versions) = SHAPES.iter().find(|(stem, _)| *stem == shape_of(&own)).unwrap();
        for from in *input_versions {
            let input = stamp(input.clone(), from);
            for to in SUPPORTED_VERSIONS {
                cases += 1;
                pairs.insert((*from, *to));
                failures.extend(check(&dir, &input, from, to));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Every supported version is exercised as input and as output.
    assert_eq!(
        pairs.len(),
        SUPPORTED_VERSIONS.len() * SUPPORTED_VERSIONS.len(),
        "{pairs:?}"
    );
}

#[test]
fn expected_files_of_the_input_shape_equal_the_input() {
    // An input emitted at its own version comes back unchanged, byte for byte
    // in pretty form; this keeps fixtures and expectations from drifting.
    for dir in fixtures() {
        let input = read_json(&dir.join("input.json"));
        let own = input["cniVersion"].as_str().unwrap();
        let expected = read_json(&dir.join(format!("{}.json", shape_of(own))));
        assert_eq!(pretty(&input), pretty(&expected), "{}", dir.display());
    }
}

#[test]
fn bytes_parse_the_same_as_values() {
    for dir in fixtures() {
        let bytes = fs::read(dir.join("input.json")).unwrap();
        let from_bytes = CniResult::from_slice(&bytes).unwrap();
        let from_value = CniResult::from_value(&serde_json::from_slice(&bytes).unwrap()).unwrap();
        assert_eq!(from_bytes, from_value, "{}", dir.display());
    }
}
