//! Results of any version: parse, then emit at every version; whatever
//! parses must emit without panicking, and a 1.1.0 round trip is stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = cni::CniResult::from_slice(data) else {
        return;
    };
    for v in cni::version::SUPPORTED_VERSIONS {
        let _ = r.to_value(v);
    }
    if let Ok(v) = r.to_value("1.1.0") {
        let again = cni::CniResult::from_value(&v).expect("own 1.1.0 output must parse");
        assert_eq!(again.to_value("1.1.0").ok(), Some(v));
    }
});
