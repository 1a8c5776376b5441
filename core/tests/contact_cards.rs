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
fn every_single_bit_flip_in_the_encoding_is_rejected() {
    let mut alice = identity();
    let card = alice.contact_card(Some("Alice"), 7, 1).unwrap();
    let bytes = card.to_bytes();
    for i in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        // Refused: a flip in the fields breaks the signature, a flip in the
        // protobuf framing that decodes to the same fields is not the
        // canonical encoding. The card has exactly one byte string.
        assert!(
            ContactCard::from_bytes(&flipped).is_err(),
            "bit {i} accepted"
        );
    }
}

/// Byte strings that decode to the same, validly signed card, but are not
/// the encoding its owner produced: a relay could choose any of them.
fn malleated_encodings(card: &ContactCard) -> Vec<(&'static str, Vec<u8>)> {
    let bytes = card.to_bytes();
    let wire = card.to_wire();
    let mut unknown_field = bytes.clone();
    // Field 20, varint 1: prost skips unknown fields.
    unknown_field.extend_from_slice(&[0xa0, 0x01, 0x01]);
    let mut unknown_bytes_field = bytes.clone();
    // Field 9, length-delimited, 4 bytes of attacker-chosen data.
    unknown_bytes_field.extend_from_slice(&[0x4a, 0x04, 1, 2, 3, 4]);
    // `issued_at` (field 8) with a padded varint, fields still in order.
    let unsigned_tail = v1::ContactCard {
        issued_at: 0,
        signature: Vec::new(),
        ..wire.clone()
    };
    let mut padded_varint = proto::encode(&unsigned_tail);
    assert!(wire.issued_at < 0x80);
    padded_varint.extend_from_slice(&[0x40, 0x80 | wire.issued_at as u8, 0x80, 0x00]);
    padded_varint.extend_from_slice(&[0x7a, 0x40]);
    padded_varint.extend_from_slice(&wire.signature);
    // The version field twice (prost keeps the last).
    let mut duplicated = vec![0x08, 0x01];
    duplicated.extend_from_slice(&bytes);
    // The signature (field 15) first.
    let unsigned = v1::ContactCard {
        signature: Vec::new(),
        ..wire.clone()
    };
    let mut reordered = vec![0x7a, 0x40];
    reordered.extend_from_slice(&wire.signature);
    reordered.extend_from_slice(&proto::encode(&unsigned));
    vec![
        ("unknown varint field", unknown_field),
        ("unknown bytes field", unknown_bytes_field),
        ("non-minimal varint", padded_varint),
        ("duplicated field", duplicated),
        ("reordered fields", reordered),
    ]
}

#[test]
fn non_canonical_encodings_of_a_signed_card_are_rejected() {
    let mut alice = identity();
    let card = alice.contact_card(Some("Alice"), 7, 1).unwrap();
    for (what, bytes) in malleated_encodings(&card) {
        assert_ne!(bytes, card.to_bytes(), "{what}");
        // The signature alone does not catch it: the fields are unchanged.
        let lenient = proto::decode::<v1::ContactCard>(&bytes).unwrap();
        assert_eq!(ContactCard::from_wire(&lenient).unwrap(), card, "{what}");
        // Decoding a card from bytes does.
        assert!(
            matches!(
                ContactCard::from_bytes(&bytes),
                Err(CardError::Decode(DecodeError::NonCanonical { .. }))
            ),
            "{what} accepted"
        );
        // So does a contact code carrying it.
        let code =
            bech32::encode_lower::<bech32::Bech32m>(bech32::Hrp::parse("ferry").unwrap(), &bytes)
                .unwrap();
        assert!(ContactCard::from_code(&code).is_err(), "{what} as a code");
    }
}

#[test]
fn a_contact_request_embedding_a_non_canonical_card_is_non_canonical() {
    // The keyring decodes request payloads with `decode_canonical`: a card
    // inside another message cannot be padded either.
    let mut alice = identity();
    let card = alice.contact_card(Some("Alice"), 7, 1).unwrap();
    let payload = v1::Payload {
        kind: Some(v1::payload::Kind::ContactRequest(v1::ContactRequest {
            card: Some(card.to_wire()),
            introduction: "hi".into(),
        })),
    };
    let canonical = proto::encode(&payload);
    assert_eq!(
        proto::decode_canonical::<v1::Payload>(&canonical).unwrap(),
        payload
    );
    // The same payload, with an unknown field inside the card.
    let mut card_bytes = card.to_bytes();
    card_bytes.extend_from_slice(&[0xa0, 0x01, 0x01]);
    let mut request = vec![0x0a];
    prost::encoding::encode_varint(card_bytes.len() as u64, &mut request);
    request.extend_from_slice(&card_bytes);
    request.extend_from_slice(&[0x12, 2, b'h', b'i']);
    let mut padded = vec![0x1a];
    prost::encoding::encode_varint(request.len() as u64, &mut padded);
    padded.extend_from_slice(&request);
    assert_eq!(proto::decode::<v1::Payload>(&padded).unwrap(), payload);
    assert!(matches!(
        proto::decode_canonical::<v1::Payload>(&padded),
        Err(DecodeError::NonCanonical { .. })
    ));
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
