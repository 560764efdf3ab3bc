//! The C ABI (`libcni_isolator.so`, header `include/rcni_isolator.h`): the
//! isolator's lifecycle for a C or C++ host such as the Mesos module in
//! `isolator/mesos-module/`.
//!
//! Every payload is JSON in a NUL-terminated UTF-8 string, shaped like the
//! Mesos messages as `JSON::protobuf` prints them ([`crate::types`]). Every
//! call answers an [`RCNI_OK`] or an error code and a string the caller
//! frees with [`rcni_isolator_free_string`]: the JSON answer on success, the
//! error message (the whole cause chain) on failure.
//!
//! Two ways to call:
//! - `rcni_isolator_<call>_async(..., done, ctx)` returns at once; the
//!   call runs on the handle's runtime ([`crate::core::Core`]) and
//!   `done(ctx, code, out)` is called exactly once, on a runtime thread,
//!   never inside the submitting call. Bad arguments (a NULL string, bad
//!   JSON) are answered through `done` too; only a NULL handle or a NULL
//!   `done` make the submit itself return an error code, and then `done` is
//!   never called.
//! - `rcni_isolator_<call>(..., &out)` blocks the calling thread until done
//!   and returns the code (the same call, driven on the caller's thread).
//!   Refused with [`RCNI_ERR_INVALID`] on a runtime thread (inside `done`),
//!   where waiting could deadlock the runtime.
//!
//! [`rcni_isolator_destroy`] with calls in flight is safe: it cancels them
//! (plugins killed; their `done` gets [`RCNI_ERR_CANCELLED`]), waits until
//! every `done` has returned and every blocking call has ended, then shuts
//! the runtime down and frees the handle. Called from inside a `done`, it
//! returns at once and a thread of its own does the waiting.
//!
//! No panic crosses the boundary: each entry point and each call on the
//! runtime catches it and answers [`RCNI_ERR_PANIC`]. That needs a build
//! that unwinds: the `release-module` profile (the workspace's `release`
//! profile aborts on panic, right for the plugins but not for a library
//! inside mesos-agent).

use crate::core::{Core, RecoveryReport};
use crate::error::Error;
use crate::files::DefaultDns;
use crate::options::{Options, split_path};
use crate::plugin_exec::ProcessPlugins;
use crate::threads::build_runtime;
use crate::types::{ContainerConfig, ContainerId, ContainerState};
use futures_util::FutureExt;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
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
/// The call was cancelled: an isolate by a cleanup of its container, any
/// call by [`rcni_isolator_destroy`].
pub const RCNI_ERR_CANCELLED: i32 = 8;
/// The isolator panicked (a bug); the handle stays usable.
pub const RCNI_ERR_PANIC: i32 = 99;

/// The completion callback of the `_async` calls: `ctx` as given, the code,
/// and the answer (the caller frees it with [`rcni_isolator_free_string`]).
pub type RcniIsolatorDone = Option<unsafe extern "C" fn(ctx: *mut c_void, code: i32, out: *mut c_char)>;

/// The opaque handle C sees as `rcni_isolator *`: the core, the runtime it
/// runs on (owned here, never global) and the count of calls in flight.
pub struct RcniIsolator {
    core: Arc<Core>,
    runtime: Option<tokio::runtime::Runtime>,
    in_flight: Arc<InFlight>,
}

/// Calls in flight (async and blocking), so destroy can wait for them.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

/// One call in flight; ends (and may wake destroy) when dropped.
struct InFlightCall(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightCall {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        InFlightCall(self.clone())
    }

    fn wait_idle(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self.idle.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for InFlightCall {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl RcniIsolator {
    /// Waits for the calls in flight, then stops the runtime (bounded: a
    /// blocking-pool job still running after the calls ended is left).
    fn finish(mut self) {
        self.in_flight.wait_idle();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Runs `request` on the calling thread (the blocking entry points).
    fn block_on(&self, request: Result<Request, Failure>) -> Answer {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Failure {
                code: RCNI_ERR_INVALID,
                message: "a blocking rcni_isolator call on a runtime thread (inside a completion \
                          callback) could deadlock: use its _async variant"
                    .into(),
            });
        }
        let request = request?;
        let runtime = self.runtime.as_ref().ok_or_else(|| Failure {
            code: RCNI_ERR_INVALID,
            message: "the isolator is being destroyed".into(),
        })?;
        let _call = self.in_flight.enter();
        // On the workers, which drive the call's I/O (see `Isolator`); the
        // caller waits for the one wake-up at the end.
        let core = self.core.clone();
        let task = runtime.spawn(async move { serve(&core, request).await });
        match runtime.block_on(task) {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => Err(panicked(e.into_panic())),
            Err(e) => Err(Failure {
                code: RCNI_ERR_CANCELLED,
                message: format!("the call's task ended: {e}"),
            }),
        }
    }
}

impl Drop for RcniIsolator {
    /// A runtime must not be dropped on one of its own threads; `finish`
    /// normally took it already.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
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
            Error::Io { .. }
            | Error::Sys { .. }
            | Error::Netlink { .. }
            | Error::RtNetlink { .. }
            | Error::Setup(_) => RCNI_ERR_SYSTEM,
            Error::Cancelled(_) => RCNI_ERR_CANCELLED,
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

/// The failure a caught panic becomes.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Failure {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Failure {
        code: RCNI_ERR_PANIC,
        message: format!("the isolator panicked: {what}"),
    }
}

/// The code and the text of an answer.
fn code_and_text(answer: Answer) -> (i32, String) {
    match answer {
        Ok(json) => (RCNI_OK, json),
        Err(fail) => (fail.code, fail.message),
    }
}

/// Runs `f` with panics caught, stores its answer in `out` and returns the code.
fn answer(out: *mut *mut c_char, f: impl FnOnce() -> Answer) -> i32 {
    let (code, text) = code_and_text(catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panicked(p))));
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

/// Copies a C string argument (the call may outlive it).
///
/// # Safety
/// As [`text`].
unsafe fn owned(p: *const c_char, what: &str) -> Result<String, Failure> {
    // SAFETY: forwarded contract.
    unsafe { text(p, what) }.map(str::to_string)
}

/// Parses a JSON argument.
fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, Failure> {
    serde_json::from_str(s).map_err(|e| argument(format!("invalid {what} JSON: {e}")))
}

/// A container ID: a `ContainerID` JSON object or its dotted string form.
fn parse_container_id(s: &str) -> Result<ContainerId, Failure> {
    let v: Value = parse(s, "container ID")?;
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
unsafe fn handle<'a>(h: *const RcniIsolator) -> Result<&'a RcniIsolator, Failure> {
    // SAFETY: null or a live handle per the caller's contract.
    unsafe { h.as_ref() }.ok_or_else(|| argument("the isolator handle is NULL"))
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
            "worker_threads" | "max_blocking_threads" | "max_namespace_threads" => {
                let n: usize = need()?.parse().map_err(|e| format!("option {key}: {e}"))?;
                match key.as_str() {
                    "worker_threads" => o.threads.workers = n,
                    "max_blocking_threads" => o.threads.blocking = n,
                    _ => o.threads.namespace = n,
                }
            }
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

/// One call, its arguments copied out of the caller's strings.
enum Request {
    Recover { states: String, orphans: Option<String> },
    Prepare { id: String, config: String },
    Isolate { id: String, pid: i32 },
    Status { id: String },
    Usage { id: String },
    Cleanup { id: String },
}

/// Serves one call on the core; the same for both ways of calling.
async fn serve(core: &Core, request: Request) -> Answer {
    match request {
        Request::Recover { states, orphans } => {
            let states: Vec<ContainerState> = parse(&states, "states")?;
            let orphans: HashSet<ContainerId> = match orphans {
                None => HashSet::new(),
                Some(text) => {
                    let v: Vec<Value> = parse(&text, "orphans")?;
                    v.into_iter()
                        .map(|v| match v {
                            Value::String(s) => ContainerId::parse(&s)
                                .ok_or_else(|| argument(format!("invalid container ID {s:?}"))),
                            v => serde_json::from_value(v)
                                .map_err(|e| argument(format!("invalid orphan ID: {e}"))),
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            let report = core.recover(&states, &orphans).await?;
            Ok(report_json(&report).to_string())
        }
        Request::Prepare { id, config } => {
            let id = parse_container_id(&id)?;
            let config: ContainerConfig = parse(&config, "container config")?;
            let launch = core.prepare(&id, &config)?;
            Ok(match launch {
                None => "null".into(),
                Some(l) => {
                    let mut v = serde_json::to_value(&l).map_err(|e| argument(e.to_string()))?;
                    // The CLONE_NEW* values Mesos puts in the protobuf, beside the names.
                    let flags =
                        |ns: &[crate::types::Namespace]| ns.iter().fold(0, |acc, n| acc | n.clone_flag());
                    v["clone_flags"] = json!(flags(&l.clone_namespaces));
                    v["enter_flags"] = json!(flags(&l.enter_namespaces));
                    v.to_string()
                }
            })
        }
        Request::Isolate { id, pid } => {
            let id = parse_container_id(&id)?;
            if pid <= 0 {
                return Err(argument(format!("invalid pid {pid}")));
            }
            core.isolate(&id, pid).await?;
            Ok("null".into())
        }
        Request::Status { id } => to_json(&core.status(&parse_container_id(&id)?)?),
        Request::Usage { id } => to_json(&core.usage(&parse_container_id(&id)?).await?),
        Request::Cleanup { id } => {
            core.cleanup(&parse_container_id(&id)?).await?;
            Ok("null".into())
        }
    }
}

/// The caller's `ctx`, handed back to `done` on a runtime thread.
struct CallerContext(*mut c_void);

// SAFETY: the header's contract: `ctx` is only passed back to `done`, on a
// runtime thread; the caller makes it usable from any thread.
unsafe impl Send for CallerContext {}

/// Submits `request` to the handle's runtime; `done` gets the answer.
///
/// # Safety
/// `isolator` is null or a live handle; `done` a valid function or null.
unsafe fn submit(
    isolator: *const RcniIsolator,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
    request: impl FnOnce() -> Result<Request, Failure>,
) -> i32 {
    let submitted = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: null or a live handle per the contract.
        let Some(h) = (unsafe { isolator.as_ref() }) else {
            return RCNI_ERR_ARGUMENT;
        };
        let (Some(done), Some(runtime)) = (done, h.runtime.as_ref()) else {
            return RCNI_ERR_ARGUMENT;
        };
        let request = request();
        let call = h.in_flight.enter();
        let core = h.core.clone();
        let ctx = CallerContext(ctx);
        runtime.spawn(async move {
            let answer = match request {
                Ok(request) => AssertUnwindSafe(serve(&core, request))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| Err(panicked(p))),
                Err(fail) => Err(fail),
            };
            drop(core);
            let (code, text) = code_and_text(answer);
            let ctx = ctx;
            // SAFETY: `done` and `ctx` as the caller gave them; `done` is
            // called exactly once, and owns the string it gets.
            unsafe { done(ctx.0, code, to_c(text)) };
            drop(call);
        });
        RCNI_OK
    }));
    submitted.unwrap_or(RCNI_ERR_PANIC)
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
        let runtime = build_runtime(options.threads)?;
        let core = Core::new(options, Arc::new(ProcessPlugins))?;
        let info = json!({
            "root_dir": core.root_dir(),
            "skipped": core.skipped_configs().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
        });
        let h = Box::into_raw(Box::new(RcniIsolator {
            core: Arc::new(core),
            runtime: Some(runtime),
            in_flight: Arc::default(),
        }));
        // SAFETY: `isolator` is non-null and writable per the contract.
        unsafe { *isolator = h };
        Ok(info.to_string())
    })
}

/// Destroys a handle (null is ignored): cancels the calls in flight, waits
/// for their callbacks and for blocking calls to end, stops the runtime and
/// frees the handle. From inside a callback it returns at once and a thread
/// of its own finishes. Containers stay as they are; their state on disk is
/// recovered by the next isolator.
///
/// # Safety
/// `isolator` is null or a handle from [`rcni_isolator_create`], destroyed
/// once, and no call is submitted with it after this call has begun.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_destroy(isolator: *mut RcniIsolator) {
    if isolator.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a pointer from Box::into_raw in create, destroyed once.
        let h = unsafe { Box::from_raw(isolator) };
        h.core.shutdown();
        if tokio::runtime::Handle::try_current().is_ok() {
            // On a runtime thread (inside a callback): this call is itself in
            // flight, and the runtime cannot be stopped from its own thread.
            let finisher = std::thread::Builder::new()
                .name("rcni-destroy".into())
                .spawn(move || h.finish());
            // Without a thread the handle is dropped here: its Drop stops the
            // runtime without waiting.
            drop(finisher);
        } else {
            h.finish();
        }
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

/// Runs a call on the calling thread and stores its answer in `out`.
///
/// # Safety
/// `isolator` is null or a live handle; `out` null or writable.
unsafe fn blocking(
    isolator: *const RcniIsolator,
    out: *mut *mut c_char,
    request: impl FnOnce() -> Result<Request, Failure>,
) -> i32 {
    answer(out, || {
        // SAFETY: forwarded contract.
        let h = unsafe { handle(isolator) }?;
        h.block_on(request())
    })
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { recover_request(states_json, orphans_json) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_recover`], answered through `done`.
///
/// # Safety
/// See the header: a live handle, valid C strings (orphans may be null)
/// until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_recover_async(
    isolator: *const RcniIsolator,
    states_json: *const c_char,
    orphans_json: *const c_char,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { recover_request(states_json, orphans_json) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
}

/// # Safety
/// Valid C strings (orphans may be null).
unsafe fn recover_request(states: *const c_char, orphans: *const c_char) -> Result<Request, Failure> {
    // SAFETY: valid C strings (orphans may be null) per the callers' contract.
    let states = unsafe { owned(states, "states") }?;
    let orphans = if orphans.is_null() {
        None
    } else {
        // SAFETY: as above.
        Some(unsafe { owned(orphans, "orphans") }?)
    };
    Ok(Request::Recover { states, orphans })
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { prepare_request(container_id, config_json) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_prepare`], answered through `done`.
///
/// # Safety
/// A live handle, valid C strings until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_prepare_async(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    config_json: *const c_char,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { prepare_request(container_id, config_json) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
}

/// # Safety
/// Valid C strings.
unsafe fn prepare_request(id: *const c_char, config: *const c_char) -> Result<Request, Failure> {
    // SAFETY: valid C strings per the callers' contract.
    let (id, config) = unsafe { (owned(id, "container ID")?, owned(config, "container config")?) };
    Ok(Request::Prepare { id, config })
}

/// # Safety
/// A valid C string.
unsafe fn id_request(id: *const c_char, make: impl FnOnce(String) -> Request) -> Result<Request, Failure> {
    // SAFETY: a valid C string per the callers' contract.
    Ok(make(unsafe { owned(id, "container ID") }?))
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Isolate { id, pid }) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_isolate`], answered through `done`. A cleanup of the
/// container submitted meanwhile cancels it ([`RCNI_ERR_CANCELLED`]).
///
/// # Safety
/// A live handle, a valid C string until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_isolate_async(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    pid: i32,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Isolate { id, pid }) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Status { id }) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_status`], answered through `done`.
///
/// # Safety
/// A live handle, a valid C string until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_status_async(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Status { id }) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Usage { id }) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_usage`], answered through `done`.
///
/// # Safety
/// A live handle, a valid C string until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_usage_async(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Usage { id }) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
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
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Cleanup { id }) };
    // SAFETY: contract above.
    unsafe { blocking(isolator, out, request) }
}

/// [`rcni_isolator_cleanup`], answered through `done`. An isolate of the
/// container still running is cancelled first and waited for.
///
/// # Safety
/// A live handle, a valid C string until this returns, `done` non-null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rcni_isolator_cleanup_async(
    isolator: *const RcniIsolator,
    container_id: *const c_char,
    done: RcniIsolatorDone,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: contract above; the strings are copied before this returns.
    let request = || unsafe { id_request(container_id, |id| Request::Cleanup { id }) };
    // SAFETY: contract above.
    unsafe { submit(isolator, done, ctx, request) }
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
