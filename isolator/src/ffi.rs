//! The C ABI (`libcni_isolator.so`, header `include/rcni_isolator.h`): the
//! isolator's lifecycle for a C or C++ host such as the Mesos module in
//! `isolator/mesos-module/`.
//!
//! Every payload is JSON in a NUL-terminated UTF-8 string, shaped like the
//! Mesos messages as `JSON::protobuf` prints them ([`crate::types`]). Every
//! call returns an [`RCNI_OK`] or an error code and, through `out`, a string
//! the caller frees with [`rcni_isolator_free_string`]: the JSON answer on
//! success, the error message (the whole cause chain) on failure.
//!
//! Calls block until done (run them off an event loop) and may be made from
//! many threads at once for different containers. No panic crosses the
//! boundary: each entry point catches it and returns [`RCNI_ERR_PANIC`]
//! That needs a build that unwinds: the `release-module` profile (the
//! workspace's `release` profile aborts on panic, right for the plugins but
//! not for a library inside mesos-agent).

use crate::error::Error;
use crate::files::DefaultDns;
use crate::isolator::{Isolator, RecoveryReport};
use crate::options::{Options, split_path};
use crate::types::{ContainerConfig, ContainerId, ContainerState};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

/// Success.
pub const RCNI_OK: i32 = 0;
/// A bad argument: a null pointer, invalid UTF-8 or JSON, an unknown option.
pub const RCNI_ERR_ARGUMENT: i32 = 1;
/// The isolator refused the request ([`Error::Invalid`]).
pub const RCNI_ERR_INVALID: i32 = 2;
/// The container asked for a network no usable config defines.
pub const RCNI_ERR_UNKNOWN_NETWORK: i32 = 3;
/// A CNI plugin failed or timed out.
pub const RCNI_ERR_PLUGIN: i32 = 4;
/// A system call, file, netlink or setup-helper operation failed.
pub const RCNI_ERR_SYSTEM: i32 = 5;
/// Checkpointed state on disk cannot be read.
pub const RCNI_ERR_CORRUPT: i32 = 6;
/// Several steps failed (the message has one line per failure).
pub const RCNI_ERR_MANY: i32 = 7;
/// The isolator panicked (a bug); the handle stays usable.
pub const RCNI_ERR_PANIC: i32 = 99;

/// The opaque handle C sees as `rcni_isolator *`.
pub struct RcniIsolator {
    inner: Isolator,
}

/// A failure at the boundary: the code and its message.
struct Failure {
    code: i32,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Invalid(_) => RCNI_ERR_INVALID,
            Error::UnknownNetwork { .. } => RCNI_ERR_UNKNOWN_NETWORK,
            Error::Plugin { .. } => RCNI_ERR_PLUGIN,
            Error::Io { .. } | Error::Sys { .. } | Error::Netlink { .. } | Error::Setup(_) => RCNI_ERR_SYSTEM,
            Error::Corrupt { .. } => RCNI_ERR_CORRUPT,
            Error::Many(_) => RCNI_ERR_MANY,
        };
        Failure {
            code,
            message: e.chain(),
        }
    }
}

fn argument(message: impl Into<String>) -> Failure {
    Failure {
        code: RCNI_ERR_ARGUMENT,
        message: message.into(),
    }
}

type Answer = Result<String, Failure>;

/// Refuses to make an isolator in a library built with `panic = "abort"`
/// (plain `cargo build --release`): there `catch_unwind` catches nothing and
/// any panic would kill the process that loaded us, mesos-agent. The module
/// then fails to start with this message instead of killing the agent later.
/// Build the library with `cargo build --profile release-module`.
fn unwinding_build(panic_aborts: bool) -> Result<(), Failure> {
    if panic_aborts {
        return Err(Failure {
            code: RCNI_ERR_INVALID,
            message: "libcni_isolator was built with panic = \"abort\" (cargo build --release): a panic \
                      would kill the process that loaded it; build it with \
                      cargo build --profile release-module -p cni-isolator"
                .into(),
        });
    }
    Ok(())
}

/// A Rust string as a C string the caller frees (interior NULs, which JSON
/// and our messages never contain, are replaced).
fn to_c(s: String) -> *mut c_char {
    let s = CString::new(s).unwrap_or_else(|e| {
        let bytes: Vec<u8> = e
            .into_vec()
            .into_iter()
            .map(|b| if b == 0 { b' ' } else { b })
            .collect();
        CString::new(bytes).unwrap_or_default()
    });
    s.into_raw()
}

/// Runs `f` with panics caught, stores its answer in `out` and returns the code.
fn answer(out: *mut *mut c_char, f: impl FnOnce() -> Answer) -> i32 {
    let (code, text) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(json)) => (RCNI_OK, json),
        Ok(Err(fail)) => (fail.code, fail.message),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (RCNI_ERR_PANIC, format!("the isolator panicked: {what}"))
        }
    };
    if !out.is_null() {
        // SAFETY: `out` is non-null and, by the header's contract, points to
        // writable storage for one `char *`.
        unsafe { *out = to_c(text) };
    }
    code
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `p` is null or a valid NUL-terminated string that outlives the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(argument(format!("{what} is NULL")));
    }
    // SAFETY: non-null, and valid and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| argument(format!("{what} is not UTF-8: {e}")))
}

/// Parses a JSON argument.
///
/// # Safety
/// As [`text`].
unsafe fn parse<T: serde::de::DeserializeOwned>(p: *const c_char, what: &str) -> Result<T, Failure> {
    // SAFETY: forwarded contract.
    let s = unsafe { text(p, what) }?;
    serde_json::from_str(s).map_err(|e| argument(format!("invalid {what} JSON: {e}")))
}

/// A container ID: a `ContainerID` JSON object or its dotted string form.
///
/// # Safety
/// As [`text`].
unsafe fn parse_container_id(p: *const c_char) -> Result<ContainerId, Failure> {
    // SAFETY: forwarded contract.
    let v: Value = unsafe { parse(p, "container ID") }?;
    match v {
        Value::String(s) => {
            ContainerId::parse(&s).ok_or_else(|| argument(format!("invalid container ID {s:?}")))
        }
        v => serde_json::from_value(v).map_err(|e| argument(format!("invalid container ID JSON: {e}"))),
    }
}

/// Borrows the handle.
///
/// # Safety
/// `h` is null or a handle from [`rcni_isolator_create`] not yet destroyed.
unsafe fn handle<'a>(h: *const RcniIsolator) -> Result<&'a Isolator, Failure> {
    // SAFETY: null or a live handle per the caller's contract.
    unsafe { h.as_ref() }
        .map(|h| &h.inner)
        .ok_or_else(|| argument("the isolator handle is NULL"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Answer {
    serde_json::to_string(v).map_err(|e| Failure {
        code: RCNI_ERR_INVALID,
        message: format!("cannot print the answer as JSON: {e}"),
    })
}

/// Options from the JSON object the host passes: the Mesos agent flag names
/// (values as strings, as module parameters are, or as JSON booleans and
/// numbers), plus rcni's own keys.
pub fn options_from_json(json: &str) -> Result<Options, String> {
    let map: Map<String, Value> =
        serde_json::from_str(json).map_err(|e| format!("invalid options JSON (want an object): {e}"))?;
    let string = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut o = Options {
        metrics: true,
        ..Options::default()
    };
    let (mut runtime_dir, mut work_dir, mut persist) = (None, None, false);
    for (key, value) in &map {
        if value.is_null() {
            continue;
        }
        let s = string(value);
        let need = || {
            s.clone()
                .ok_or_else(|| format!("option {key} must be a string, number or boolean"))
        };
        let flag = || match need()?.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("option {key}: {other:?} is not a boolean")),
        };
        match key.as_str() {
            "network_cni_config_dir" | "config_dir" => o.config_dir = Some(need()?.into()),
            "network_cni_plugins_dir" | "plugins_dir" => o.plugins_dir = split_path(&need()?),
            "root_dir" => o.root_dir = Some(need()?.into()),
            "runtime_dir" => runtime_dir = Some(PathBuf::from(need()?)),
            "work_dir" => work_dir = Some(PathBuf::from(need()?)),
            "network_cni_root_dir_persist" => persist = flag()?,
            "network_cni_metrics" | "metrics" => o.metrics = flag()?,
            "default_container_dns" => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                o.default_dns = DefaultDns::parse(&text).map_err(|e| e.chain())?;
            }
            "plugin_timeout_ms" => {
                let ms: u64 = need()?.parse().map_err(|e| format!("option {key}: {e}"))?;
                o.plugin_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "durable_checkpoints" => o.durable_checkpoints = flag()?,
            "setup_helper" => o.setup_helper = Some(need()?.into()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.root_dir.is_none() {
        let base = if persist {
            work_dir
        } else {
            runtime_dir.or(Some(PathBuf::from("/var/run/mesos")))
        };
        if let (Some(base), Some(_)) = (base, &o.config_dir) {
            o.root_dir = Some(base.join(crate::paths::CNI_DIR));
        } else if persist && o.config_dir.is_some() {
            return Err("network_cni_root_dir_persist needs work_dir (or root_dir)".into());
        }
    }
    Ok(o)
}

fn report_json(r: &RecoveryReport) -> Value {
    let ids = |v: &[ContainerId]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "recovered": ids(&r.recovered),
        "cleaned": ids(&r.cleaned),
        "failed": r.failed.iter().map(|(c, m)| json!({"container": c, "message": m})).collect::<Vec<_>>(),
        "warnings": r.warnings,
    })
}

/// Creates an isolator from `options_json` (see the header). On success
/// `*isolator` is the handle and `*out` holds `{"root_dir": ..., "skipped": [...]}`.
///
/// # Safety
/// `options_json` is a valid C string; `isolator` and `out` are null or
/// point to writable pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_create(
    options_json: *const c_char,
    isolator: *mut *mut RcniIsolator,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        unwinding_build(cfg!(panic = "abort"))?;
        if isolator.is_null() {
            return Err(argument("the isolator out-pointer is NULL"));
        }
        // SAFETY: valid C string per the contract.
        let text = unsafe { text(options_json, "options") }?;
        let options = options_from_json(text).map_err(argument)?;
        let inner = Isolator::new(options)?;
        let info = json!({
            "root_dir": inner.root_dir(),
            "skipped": inner.skipped_configs().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
        });
        let h = Box::into_raw(Box::new(RcniIsolator { inner }));
        // SAFETY: `isolator` is non-null and writable per the contract.
        unsafe { *isolator = h };
        Ok(info.to_string())
    })
}

/// Destroys a handle (null is ignored). Containers stay as they are; their
/// state on disk is recovered by the next isolator.
///
/// # Safety
/// `isolator` is null or a handle from [`rcni_isolator_create`], not used
/// (by any thread) after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_destroy(isolator: *mut RcniIsolator) {
    if isolator.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a pointer from Box::into_raw in create, destroyed once.
        drop(unsafe { Box::from_raw(isolator) });
    }));
}

/// Frees a string this library returned (null is ignored).
///
/// # Safety
/// `s` is null or a string from this library, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_free_string(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: made by CString::into_raw in `to_c`, freed once.
    drop(unsafe { CString::from_raw(s) });
}

/// Recovers: `states_json` is an array of `ContainerState`
/// (`{"container_id": ..., "network_infos": [...]}`), `orphans_json` an
/// array of container IDs (null: none). `*out`: the recovery report.
///
/// # Safety
/// See the header: a live handle, valid C strings (orphans may be null),
/// `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_recover(
    isolator: *const RcniIsolator,
    states_json: *const c_char,
    orphans_json: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let iso = unsafe { handle(isolator) }?;
        // SAFETY: contract above.
        let states: Vec<ContainerState> = unsafe { parse(states_json, "states") }?;
        let orphans: HashSet<ContainerId> = if orphans_json.is_null() {
            HashSet::new()
        } else {
            // SAFETY: contract above.
            let v: Vec<Value> = unsafe { parse(orphans_json, "orphans") }?;
            v.into_iter()
                .map(|v| match v {
                    Value::String(s) => {
                        ContainerId::parse(&s).ok_or_else(|| argument(format!("invalid container ID {s:?}")))
                    }
                    v => serde_json::from_value(v).map_err(|e| argument(format!("invalid orphan ID: {e}"))),
                })
                .collect::<Result<_, _>>()?
        };
        let report = iso.recover(&states, &orphans)?;
        Ok(report_json(&report).to_string())
    })
}

/// Prepares a container: `config_json` is a `ContainerConfig`. `*out` is
/// the `ContainerLaunchInfo` JSON, or `null` when the container stays in
/// the host's namespaces.
///
/// # Safety
/// A live handle, valid C strings, `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_prepare(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    config_json: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let (iso, id) = unsafe { (handle(isolator)?, parse_container_id(container_id)?) };
        // SAFETY: contract above.
        let config: ContainerConfig = unsafe { parse(config_json, "container config") }?;
        let launch = iso.prepare(&id, &config)?;
        Ok(match launch {
            None => "null".into(),
            Some(l) => {
                let mut v = serde_json::to_value(&l).map_err(|e| argument(e.to_string()))?;
                // The CLONE_NEW* values Mesos puts in the protobuf, beside the names.
                let flags = |ns: &[crate::types::Namespace]| ns.iter().fold(0, |acc, n| acc | n.clone_flag());
                v["clone_flags"] = json!(flags(&l.clone_namespaces));
                v["enter_flags"] = json!(flags(&l.enter_namespaces));
                v.to_string()
            }
        })
    })
}

/// Attaches the prepared container whose first process is `pid`. `*out`: `null`.
///
/// # Safety
/// A live handle, a valid C string, `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_isolate(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    pid: i32,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let (iso, id) = unsafe { (handle(isolator)?, parse_container_id(container_id)?) };
        if pid <= 0 {
            return Err(argument(format!("invalid pid {pid}")));
        }
        iso.isolate(&id, pid)?;
        Ok("null".into())
    })
}

/// The container's `ContainerStatus` JSON (`{"network_infos": [...]}`).
///
/// # Safety
/// A live handle, a valid C string, `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_status(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let (iso, id) = unsafe { (handle(isolator)?, parse_container_id(container_id)?) };
        to_json(&iso.status(&id)?)
    })
}

/// The `net_*` fields of `ResourceStatistics` as JSON (`{}` when metrics
/// are off or the container has no networks).
///
/// # Safety
/// A live handle, a valid C string, `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_usage(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let (iso, id) = unsafe { (handle(isolator)?, parse_container_id(container_id)?) };
        to_json(&iso.usage(&id)?)
    })
}

/// Detaches the container and removes its state. `*out`: `null`.
///
/// # Safety
/// A live handle, a valid C string, `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_cleanup(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    answer(out, || {
        // SAFETY: contract above.
        let (iso, id) = unsafe { (handle(isolator)?, parse_container_id(container_id)?) };
        iso.cleanup(&id)?;
        Ok("null".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: impl FnOnce(*mut *mut c_char) -> i32) -> (i32, String) {
        let mut out: *mut c_char = std::ptr::null_mut();
        let code = f(&mut out);
        assert!(!out.is_null());
        // SAFETY: a string from this library.
        let s = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
        // SAFETY: freed once.
        unsafe { rcni_isolator_free_string(out) };
        (code, s)
    }

    #[test]
    fn an_aborting_build_refuses_to_make_an_isolator() {
        let e = unwinding_build(true).unwrap_err();
        assert_eq!(e.code, RCNI_ERR_INVALID);
        assert!(e.message.contains("release-module"), "{}", e.message);
        assert!(unwinding_build(false).is_ok());
    }

    #[test]
    fn options_take_mesos_flag_names() {
        let o = options_from_json(
            r#"{"network_cni_config_dir":"/c","network_cni_plugins_dir":"/a:/b","runtime_dir":"/run/m",
                "network_cni_metrics":"false","plugin_timeout_ms":"1500"}"#,
        )
        .unwrap();
        assert_eq!(o.config_dir, Some(PathBuf::from("/c")));
        assert_eq!(o.plugins_dir, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(o.root_dir, Some(PathBuf::from("/run/m/isolators/network/cni")));
        assert!(!o.metrics);
        assert_eq!(o.plugin_timeout, Some(Duration::from_millis(1500)));
        let o = options_from_json(
            r#"{"network_cni_config_dir":"/c","network_cni_plugins_dir":"/a","work_dir":"/w",
                "network_cni_root_dir_persist":true}"#,
        )
        .unwrap();
        assert_eq!(o.root_dir, Some(PathBuf::from("/w/isolators/network/cni")));
        assert!(
            options_from_json(r#"{"bogus":"1"}"#)
                .unwrap_err()
                .contains("bogus")
        );
        assert!(options_from_json("[]").is_err());
    }

    #[test]
    fn bad_arguments_are_codes_not_crashes() {
        let (code, msg) = call(|out| {
            // SAFETY: null pointers are part of the contract.
            unsafe { rcni_isolator_status(std::ptr::null(), c"\"c1\"".as_ptr(), out) }
        });
        assert_eq!(code, RCNI_ERR_ARGUMENT);
        assert!(msg.contains("NULL"), "{msg}");
        let mut h: *mut RcniIsolator = std::ptr::null_mut();
        // Degraded mode (no dirs) needs no root.
        let (code, info) = call(|out| {
            // SAFETY: valid strings and out-pointers.
            unsafe { rcni_isolator_create(c"{}".as_ptr(), &mut h, out) }
        });
        assert_eq!(code, RCNI_OK, "{info}");
        assert!(!h.is_null());
        let (code, msg) = call(|out| {
            // SAFETY: live handle, valid strings.
            unsafe { rcni_isolator_status(h, c"{not json".as_ptr(), out) }
        });
        assert_eq!(code, RCNI_ERR_ARGUMENT, "{msg}");
        let (code, status) = call(|out| {
            // SAFETY: live handle, valid strings.
            unsafe { rcni_isolator_status(h, c"{\"value\":\"c1\"}".as_ptr(), out) }
        });
        assert_eq!((code, status.as_str()), (RCNI_OK, "{}"));
        let (code, msg) = call(|out| {
            // SAFETY: live handle, valid strings.
            unsafe {
                rcni_isolator_prepare(
                    h,
                    c"\"c1\"".as_ptr(),
                    c"{\"container_info\":{\"network_infos\":[{\"name\":\"n\"}]}}".as_ptr(),
                    out,
                )
            }
        });
        assert_eq!(code, RCNI_ERR_UNKNOWN_NETWORK, "{msg}");
        // SAFETY: created above, destroyed once.
        unsafe { rcni_isolator_destroy(h) };
    }
}
