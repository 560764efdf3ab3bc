//! The isolator's C ABI (`libcni_isolator.so`) and the Mesos JSON it reads:
//! `ContainerID` (object or dotted string), `ContainerConfig`, arrays of
//! `ContainerState` and orphan IDs, and the options object.
//!
//! Input: up to five NUL-separated fields, each passed as a C string:
//! `container_id \0 container_config \0 states \0 orphans \0 options`
//! (orphans absent: NULL). Every entry point that takes them is called on
//! one isolator handle in degraded mode (no config dir, so nothing is
//! mounted, created or run; `isolate` gets pid 0, refused after the ID is
//! read): each must answer a code and a string, never panic (caught, that
//! is `RCNI_ERR_PANIC`), and a success is JSON. The options go through
//! `options_from_json`, what `rcni_isolator_create` parses them with (a
//! handle made from them could create directories and mounts anywhere).
//! What serde accepts must print and read back to the same value.
#![no_main]

mod common;

use cni_isolator::ffi::{
    RCNI_ERR_PANIC, RCNI_OK, RcniIsolator, options_from_json, rcni_isolator_cleanup, rcni_isolator_create,
    rcni_isolator_free_string, rcni_isolator_isolate, rcni_isolator_prepare, rcni_isolator_recover,
    rcni_isolator_status, rcni_isolator_usage,
};
use cni_isolator::{ContainerConfig, ContainerId, ContainerState};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::ffi::{CStr, CString, c_char};
use std::sync::OnceLock;

/// The handle, as an address (a raw pointer is not `Sync`).
static HANDLE: OnceLock<usize> = OnceLock::new();

fn handle() -> *const RcniIsolator {
    *HANDLE.get_or_init(|| {
        let mut h: *mut RcniIsolator = std::ptr::null_mut();
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointers.
        let code = unsafe { rcni_isolator_create(c"{}".as_ptr(), &mut h, &mut out) };
        // SAFETY: a string from the library, freed once.
        unsafe { rcni_isolator_free_string(out) };
        assert_eq!(code, RCNI_OK, "a degraded isolator is always created");
        h as usize
    }) as *const RcniIsolator
}

/// Runs one entry point and checks its answer: a known code, a string,
/// JSON on success. Returns the code and the string.
fn call(what: &str, f: impl FnOnce(*mut *mut c_char) -> i32) -> (i32, String) {
    let mut out: *mut c_char = std::ptr::null_mut();
    let code = f(&mut out);
    assert!(!out.is_null(), "{what}: no answer string");
    // SAFETY: a NUL-terminated string from the library.
    let text = unsafe { CStr::from_ptr(out) }.to_str().map(str::to_string);
    // SAFETY: a string from the library, freed once.
    unsafe { rcni_isolator_free_string(out) };
    let text = text.unwrap_or_else(|e| panic!("{what}: answer is not UTF-8: {e}"));
    assert_ne!(code, RCNI_ERR_PANIC, "{what} panicked: {text}");
    assert!((0..=8).contains(&code), "{what}: unknown code {code}");
    if code == RCNI_OK {
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "{what}: success without JSON: {text:?}"
        );
    }
    (code, text)
}

/// A serde round trip: what parses prints to something that parses back equal.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let printed = serde_json::to_vec(&v).expect("prints");
        let again: T = serde_json::from_slice(&printed).expect("own output reads back");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = common::fields(data);
    let field = |i: usize| fields.get(i).copied();
    let c = |i: usize| field(i).map(|f| CString::new(f).expect("no NUL in a field"));
    let h = handle();

    let id = c(0).unwrap_or_default();
    let id_ok = call("status", |out| {
        // SAFETY: live handle, valid C string, writable out.
        unsafe { rcni_isolator_status(h, id.as_ptr(), out) }
    });
    if id_ok.0 == RCNI_OK {
        // Degraded: nothing has networks.
        assert_eq!(id_ok.1, "{}");
    }
    call("usage", |out| {
        // SAFETY: as above.
        unsafe { rcni_isolator_usage(h, id.as_ptr(), out) }
    });
    let (code, _) = call("isolate", |out| {
        // SAFETY: as above; pid 0 is refused before anything is done.
        unsafe { rcni_isolator_isolate(h, id.as_ptr(), 0, out) }
    });
    assert_ne!(code, RCNI_OK, "isolate with pid 0 succeeded");
    if let Some(config) = c(1) {
        call("prepare", |out| {
            // SAFETY: as above.
            unsafe { rcni_isolator_prepare(h, id.as_ptr(), config.as_ptr(), out) }
        });
        // Whatever prepare kept is dropped again, so no state piles up.
        call("cleanup", |out| {
            // SAFETY: as above.
            unsafe { rcni_isolator_cleanup(h, id.as_ptr(), out) }
        });
        round_trip::<ContainerConfig>(field(1).unwrap_or_default());
    }
    if let Some(states) = c(2) {
        let orphans = c(3);
        call("recover", |out| {
            let orphans = orphans.as_ref().map_or(std::ptr::null(), |o| o.as_ptr());
            // SAFETY: as above; orphans may be NULL.
            unsafe { rcni_isolator_recover(h, states.as_ptr(), orphans, out) }
        });
        round_trip::<Vec<ContainerState>>(field(2).unwrap_or_default());
    }
    if let Some(options) = field(4).and_then(|o| std::str::from_utf8(o).ok()) {
        let _ = options_from_json(options);
    }

    // IDs: the JSON object form is checked on reading; the dotted form of
    // a valid ID reads back as the same ID.
    let raw = field(0).unwrap_or_default();
    round_trip::<ContainerId>(raw);
    if let Ok(id) = serde_json::from_slice::<ContainerId>(raw) {
        assert!(id.validate().is_ok());
        assert_eq!(ContainerId::parse(&id.to_string()), Some(id));
    }
    if let Ok(s) = std::str::from_utf8(raw)
        && let Some(id) = ContainerId::parse(s)
    {
        assert_eq!(id.to_string(), s);
        let json = serde_json::to_vec(&id).expect("prints");
        assert_eq!(serde_json::from_slice::<ContainerId>(&json).ok(), Some(id));
    }
});
