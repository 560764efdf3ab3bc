//! Inputs the fuzz targets (fuzz/fuzz_targets/isolator_*.rs) found, kept
//! as tests.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use cni_isolator::ContainerId;
use cni_isolator::ffi::{
    RCNI_ERR_ARGUMENT, RCNI_OK, RcniIsolator, rcni_isolator_create, rcni_isolator_destroy,
    rcni_isolator_free_string, rcni_isolator_status,
};
use std::ffi::{CString, c_char};

/// A dotted container ID of thousands of parts (`"a.a.a…"`) was built part
/// by part, each step cloning the whole chain of parents, before its length
/// was checked: quadratic. Through the C ABI, a 40 KB ID string kept
/// `rcni_isolator_status` busy for minutes (isolator_abi, -timeout); this
/// one, 400 KB, for hours. It is refused at once now, as any ID longer than
/// 255 bytes always was.
#[test]
fn a_dotted_id_of_many_parts_is_refused_without_building_it() {
    let dotted = vec!["a"; 200_000].join(".");
    assert_eq!(ContainerId::parse(&dotted), None);
    assert_eq!(
        ContainerId::parse(&vec!["a"; 128].join("."))
            .unwrap()
            .to_string()
            .len(),
        255
    );
    assert_eq!(ContainerId::parse(&vec!["ab"; 86].join(".")), None, "257 bytes");

    let mut h: *mut RcniIsolator = std::ptr::null_mut();
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid C string and out-pointers; degraded mode needs no root.
    let code = unsafe { rcni_isolator_create(c"{}".as_ptr(), &mut h, &mut out) };
    // SAFETY: a string from the library, freed once.
    unsafe { rcni_isolator_free_string(out) };
    assert_eq!(code, RCNI_OK);
    let id = CString::new(format!("\"{dotted}\"")).unwrap();
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a live handle, a valid C string, a writable out-pointer.
    let code = unsafe { rcni_isolator_status(h, id.as_ptr(), &mut out) };
    // SAFETY: a string from the library, freed once.
    unsafe { rcni_isolator_free_string(out) };
    assert_eq!(code, RCNI_ERR_ARGUMENT);
    // SAFETY: created above, destroyed once.
    unsafe { rcni_isolator_destroy(h) };
}
