//! Plugin configs and conflists: parse, validate, negotiate, write back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = cni::NetConf::from_slice(data) {
        let _ = c.version();
        let _ = c.ipam_type();
        let _ = serde_json::to_vec(&c);
    }
    if let Ok(l) = cni::NetConfList::from_slice(data) {
        let _ = l.negotiated_version();
        let _ = serde_json::to_vec(&l);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cni::version::Version::parse(s);
        let _ = cni::validate::container_id(s);
        let _ = cni::validate::interface_name(s);
        let _ = cni::validate::network_name(s);
        let _ = cni::validate::plugin_type(s);
    }
});
