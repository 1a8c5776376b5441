#![no_main]
//! Fuzzes contact-card decoding and signature verification.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(card) = ferry_core::contact::ContactCard::from_bytes(data) {
        // Only the canonical encoding is accepted: it re-encodes to the
        // same bytes, and to a card that verifies.
        assert_eq!(card.to_bytes(), data);
        let again = ferry_core::contact::ContactCard::from_bytes(&card.to_bytes());
        assert_eq!(again.ok(), Some(card));
    }
});
