//! Contact cards: signing, verification, tampering, display-name rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{
    contact::{CardError, ContactCard},
    identity::{Identity, IssueCardError},
    proto::{self, DecodeError, limits, v1},
};

fn identity() -> Identity {
    Identity::generate(&mut rand::rng())
}

#[test]
fn card_round_trips_through_bytes_and_wire() {
    let mut alice = identity();
    let card = alice.contact_card(Some("Alice"), 1_700_000_000, 5).unwrap();
    assert_eq!(card.identity_key(), &alice.identity_key());
    assert_eq!(card.request_key(), &alice.request_key());
    assert_eq!(card.olm_identity_key(), &alice.olm_identity_key());
    assert_eq!(card.fallback_key(), &alice.fallback_key());
    assert_eq!(card.one_time_keys().len(), 5);
    assert_eq!(card.display_name(), Some("Alice"));
    assert_eq!(card.issued_at(), 1_700_000_000);

    let decoded = ContactCard::from_bytes(&card.to_bytes()).unwrap();
    assert_eq!(decoded, card);
    assert_eq!(ContactCard::from_wire(&card.to_wire()).unwrap(), card);
}

#[test]
fn each_card_carries_fresh_one_time_keys_and_the_same_fallback() {
    let mut alice = identity();
    let first = alice.contact_card(None, 1, 3).unwrap();
    let second = alice.contact_card(None, 2, 3).unwrap();
    for key in first.one_time_keys() {
        assert!(
            !second.one_time_keys().contains(key),
            "one-time keys were reused"
        );
    }
    assert_eq!(first.fallback_key(), second.fallback_key());
    assert_eq!(first.display_name(), None);
}

#[test]
fn any_modified_field_is_rejected() {
    let mut alice = identity();
    let mut mallory = identity();
    let card = alice.contact_card(Some("Alice"), 42, 2).unwrap().to_wire();
    let other = mallory
        .contact_card(Some("Mallory"), 42, 2)
        .unwrap()
        .to_wire();

    type Mutation = Box<dyn Fn(&mut v1::ContactCard)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("olm identity key", Box::new(|c| c.olm_identity_key[0] ^= 1)),
        (
            "request key substituted",
            Box::new({
                let k = other.request_key.clone();
                move |c| c.request_key = k.clone()
            }),
        ),
        ("fallback key", Box::new(|c| c.fallback_key[31] ^= 0x80)),
        ("one-time key", Box::new(|c| c.one_time_keys[1][7] ^= 4)),
        (
            "one-time key dropped",
            Box::new(|c| {
                c.one_time_keys.pop();
            }),
        ),
        (
            "one-time keys reordered",
            Box::new(|c| c.one_time_keys.swap(0, 1)),
        ),
        (
            "display name",
            Box::new(|c| c.display_name = "Alicf".into()),
        ),
        ("display name removed", Box::new(|c| c.display_name.clear())),
        ("issued_at", Box::new(|c| c.issued_at += 1)),
        (
            "identity key swapped",
            Box::new({
                let k = other.identity_key.clone();
                move |c| c.identity_key = k.clone()
            }),
        ),
        ("signature", Box::new(|c| c.signature[0] ^= 1)),
        (
            "signature from another card",
            Box::new({
                let s = other.signature.clone();
                move |c| c.signature = s.clone()
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut forged = card.clone();
        mutate(&mut forged);
        let err = ContactCard::from_wire(&forged).expect_err(what);
        assert!(
            matches!(err, CardError::BadSignature | CardError::InvalidIdentityKey),
            "{what}: unexpected error {err:?}"
        );
    }
}

#[test]
fn every_single_bit_flip_in_the_encoding_is_rejected_or_harmless() {
    let mut alice = identity();
    let card = alice.contact_card(Some("Alice"), 7, 1).unwrap();
    let bytes = card.to_bytes();
    for i in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        // Either refused, or (a flip in protobuf framing that decodes to the
        // same fields) identical to the original: never a different card.
        if let Ok(decoded) = ContactCard::from_bytes(&flipped) {
            assert_eq!(decoded, card, "bit {i} produced a different valid card");
        }
    }
}

#[test]
fn truncated_and_oversized_cards_are_rejected() {
    let mut alice = identity();
    let bytes = alice.contact_card(Some("Alice"), 7, 3).unwrap().to_bytes();
    for len in 0..bytes.len() {
        assert!(
            ContactCard::from_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let huge = vec![0u8; limits::MAX_CARD_LEN + 1];
    assert!(matches!(
        ContactCard::from_bytes(&huge),
        Err(CardError::Decode(DecodeError::TooLarge { .. }))
    ));
}

#[test]
fn display_names_with_control_characters_are_refused() {
    let mut alice = identity();
    for name in [
        "",
        "evil\u{1b}[2J",
        "line\nbreak",
        "bidi\u{202e}txt",
        &"x".repeat(65),
    ] {
        assert!(
            matches!(
                alice.contact_card(Some(name), 0, 0),
                Err(IssueCardError::Card(CardError::InvalidDisplayName))
            ),
            "{name:?} accepted"
        );
    }
    assert!(alice.contact_card(Some("Zoë 🌍 Ferry"), 0, 0).is_ok());

    // A peer-supplied card with such a name is refused on decode too, even
    // though its signature would verify.
    let mut wire = alice.contact_card(Some("ok"), 0, 0).unwrap().to_wire();
    wire.display_name = "a\u{7}".into();
    assert!(ContactCard::from_wire(&wire).is_err());
}

#[test]
fn too_many_one_time_keys_is_an_error() {
    let mut alice = identity();
    assert!(matches!(
        alice.contact_card(None, 0, limits::MAX_ONE_TIME_KEYS + 1),
        Err(IssueCardError::TooManyOneTimeKeys { .. })
    ));
    let card = alice
        .contact_card(None, 0, limits::MAX_ONE_TIME_KEYS)
        .unwrap();
    assert_eq!(ContactCard::from_bytes(&card.to_bytes()).unwrap(), card);
}

#[test]
fn wrong_key_lengths_are_typed_errors() {
    let mut alice = identity();
    let mut wire = alice.contact_card(None, 0, 0).unwrap().to_wire();
    wire.request_key.push(0);
    let err = ContactCard::from_bytes(&proto::encode(&wire)).unwrap_err();
    assert!(
        matches!(err, CardError::Decode(DecodeError::Invalid { .. })),
        "{err:?}"
    );
}
