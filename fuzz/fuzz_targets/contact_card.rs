#![no_main]
//! Fuzzes contact-card decoding and signature verification.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(card) = ferry_core::contact::ContactCard::from_bytes(data) {
        // A card that verified re-encodes to a card that verifies.
        let again = ferry_core::contact::ContactCard::from_bytes(&card.to_bytes());
        assert_eq!(again.ok(), Some(card));
    }
});
