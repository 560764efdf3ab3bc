//! host-local's IPAM config with CNI_ARGS: validation must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args = cni::args::CniArgs::default();
    let _ = host_local::IpamConfig::load(data, &args);
});
