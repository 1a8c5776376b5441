//! Threat item 16 (part): `Debug` output never shows key bytes or names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{contact::ContactCard, identity::Identity, safety::SafetyNumber};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Any 6-byte window of a key, in hex or as a decimal byte list, would show.
fn assert_hidden(debug: &str, secret: &[u8], what: &str) {
    for window in secret.windows(6) {
        assert!(
            !debug.contains(&hex(window)),
            "{what} (hex) leaked: {debug}"
        );
        let decimal = format!("{:?}", window);
        let decimal = &decimal[1..decimal.len() - 1];
        assert!(!debug.contains(decimal), "{what} (bytes) leaked: {debug}");
    }
}

#[test]
fn debug_output_reveals_no_keys_or_names() {
    let mut alice = Identity::generate(&mut rand::rng());
    let card = alice.contact_card(Some("Alice Secretname"), 5, 3).unwrap();
    let decoded = ContactCard::from_code(&card.to_code().unwrap()).unwrap();
    let debug = format!(
        "{alice:?} {alice:#?} {card:?} {decoded:#?} {:?} {:?} {:?} {:?}",
        alice.identity_key(),
        alice.request_key(),
        card.one_time_keys(),
        SafetyNumber::new(&alice.identity_key(), &alice.identity_key()),
    );
    assert!(!debug.contains("Secretname"));
    assert_hidden(&debug, &alice.identity_key().to_bytes(), "identity key");
    assert_hidden(&debug, alice.request_key().as_bytes(), "request key");
    assert_hidden(&debug, alice.olm_identity_key().as_bytes(), "olm key");
    for k in card.one_time_keys() {
        assert_hidden(&debug, k.as_bytes(), "one-time key");
    }
    let number = SafetyNumber::new(&alice.identity_key(), &alice.identity_key());
    assert!(!debug.contains(&number.digits()[..10]));
}
