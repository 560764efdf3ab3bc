//! CNI_ARGS strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(a) = cni::args::CniArgs::parse(s)
    {
        let _ = a.check_known(&["IP", "MAC"]);
        let _ = a.get("IP");
    }
});
