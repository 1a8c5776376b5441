#![no_main]
//! Fuzzes the sneakernet bundle decoder: magic, header, limits, records,
//! signature, digest. Whatever decodes must hold envelopes within limits.

use ferry_core::bundle::{BundleLimits, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = BundleLimits {
        max_envelopes: 64,
        max_bytes: 1 << 20,
    };
    if let Ok(bundle) = decode(data, limits) {
        assert!(bundle.envelopes.len() <= 64);
        assert!(bundle.envelopes.iter().all(|e| !e.is_empty()));
    }
});
