//! portmap's config (port mappings, conditions, backend choice).
#![no_main]
use libfuzzer_sys::fuzz_target;

struct WithNft;

impl portmap::config::HostFirewalls for WithNft {
    fn has_nftables(&mut self) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = portmap::config::PortMapConf::parse(data, &mut WithNft);
});
