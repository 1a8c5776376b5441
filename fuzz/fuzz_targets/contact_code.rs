#![no_main]
//! Fuzzes contact-code parsing (bech32m, then card verification).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferry_core::contact::ContactCard::from_code(text);
    }
});
