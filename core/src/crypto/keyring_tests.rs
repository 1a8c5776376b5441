//! Unit tests of the keyring that need its private parts.
use super::*;
use crate::crypto::replay::MemoryReplayGuard;

const NOW: u64 = 1_700_000_000;

fn text(body: &[u8]) -> v1::Payload {
    v1::Payload {
        kind: Some(v1::payload::Kind::Text(v1::TextMessage {
            message_id: vec![1; 16],
            sent_at: NOW,
            body: body.to_vec(),
            delivery_secret: Vec::new(),
        })),
    }
}

/// Threat item 11 below the outer layer: envelopes that pass the AEAD
/// (built with the real pairwise key) but carry garbage or replayed-looking
/// Olm messages must not move the ratchet.
#[test]
fn garbage_olm_messages_under_a_valid_outer_layer_do_not_advance_state() {
    let mut rng = rand::rng();
    let mut alice = Keyring::new(Identity::generate(&mut rng));
    let mut bob = Keyring::new(Identity::generate(&mut rng));
    let a_card = alice.identity_mut().contact_card(None, NOW, 2).unwrap();
    let b_card = bob.identity_mut().contact_card(None, NOW, 2).unwrap();
    let _ = alice.add_contact(b_card, Trust::Unverified).unwrap();
    let _ = bob.add_contact(a_card, Trust::Unverified).unwrap();
    let bob_key = bob.identity().identity_key();
    let mut guard = MemoryReplayGuard::new();

    let first = alice
        .seal(&bob_key, &text(b"1"), NOW + 999, &mut rng)
        .unwrap();
    assert!(bob.open(&first, NOW, &mut guard).is_ok());
    let second = alice
        .seal(&bob_key, &text(b"2"), NOW + 999, &mut rng)
        .unwrap();

    let contact = alice.contacts.get(&bob_key).unwrap();
    let (key, tag) = (
        contact.keys.envelope_key,
        contact.keys.outgoing_tag(epoch_of(NOW + 1200)),
    );
    let garbage_contents = [
        v1::EnvelopeContent {
            body: Some(v1::envelope_content::Body::Olm(v1::OlmMessage {
                message_type: 1,
                ciphertext: vec![3; 120],
            })),
        },
        v1::EnvelopeContent {
            body: Some(v1::envelope_content::Body::Olm(v1::OlmMessage {
                message_type: 0,
                ciphertext: vec![0x03; 200],
            })),
        },
        v1::EnvelopeContent {
            body: Some(v1::envelope_content::Body::ContactRequest(vec![1; 64])),
        },
    ];
    for content in &garbage_contents {
        let env = seal_envelope(
            &key,
            tag,
            NOW + 1200,
            [0; 16],
            &proto::encode(content),
            &mut rng,
        )
        .unwrap();
        assert!(matches!(
            bob.open(&env, NOW, &mut guard),
            Err(OpenError::Rejected)
        ));
    }
    // Raw padding garbage under a valid AEAD.
    let env = seal_envelope(&key, tag, NOW + 1200, [0; 16], &[0xff; 100], &mut rng).unwrap();
    assert!(matches!(
        bob.open(&env, NOW, &mut guard),
        Err(OpenError::Rejected)
    ));

    assert!(bob.open(&second, NOW, &mut guard).is_ok());
    let third = alice
        .seal(&bob_key, &text(b"3"), NOW + 999, &mut rng)
        .unwrap();
    assert!(bob.open(&third, NOW, &mut guard).is_ok());
}

fn pair(one_time_keys: usize) -> (Keyring, Keyring) {
    let mut rng = rand::rng();
    let mut alice = Keyring::new(Identity::generate(&mut rng));
    let mut bob = Keyring::new(Identity::generate(&mut rng));
    let a_card = alice
        .identity_mut()
        .contact_card(None, NOW, one_time_keys)
        .unwrap();
    let b_card = bob
        .identity_mut()
        .contact_card(None, NOW, one_time_keys)
        .unwrap();
    let _ = alice.add_contact(b_card, Trust::Unverified).unwrap();
    let _ = bob.add_contact(a_card, Trust::Unverified).unwrap();
    (alice, bob)
}

/// Finding 8: expiries spread over the whole accepted window (14 days of
/// 6-hour epochs) must all stay cached, or every envelope in an uncached
/// epoch rebuilds a table of one HMAC per contact.
#[test]
fn tag_tables_cover_the_whole_accepted_window() {
    use crate::crypto::tags::TAG_EPOCH_SECS;
    let (mut alice, mut bob) = pair(0);
    let bob_key = bob.identity().identity_key();
    let window = 14 * 24 * 3600 / TAG_EPOCH_SECS + 2;
    let envelopes: Vec<_> = (0..window)
        .map(|i| {
            alice
                .seal(
                    &bob_key,
                    &text(b"x"),
                    NOW + i * TAG_EPOCH_SECS,
                    &mut rand::rng(),
                )
                .unwrap()
        })
        .collect();
    for e in &envelopes {
        assert!(bob.is_for_us(&e.recipient_tag, e.expiry));
    }
    assert_eq!(bob.tag_cache.len(), usize::try_from(window).unwrap());
    // A new contact joins the cached tables instead of flushing them.
    let mut carol = Keyring::new(Identity::generate(&mut rand::rng()));
    let c_card = carol.identity_mut().contact_card(None, NOW, 0).unwrap();
    let _ = bob.add_contact(c_card, Trust::Unverified).unwrap();
    assert_eq!(bob.tag_cache.len(), usize::try_from(window).unwrap());
    let b_card = bob.identity_mut().contact_card(None, NOW, 0).unwrap();
    let _ = carol.add_contact(b_card, Trust::Unverified).unwrap();
    let from_carol = carol
        .seal(
            &bob_key,
            &text(b"c"),
            NOW + 5 * TAG_EPOCH_SECS,
            &mut rand::rng(),
        )
        .unwrap();
    assert!(bob.is_for_us(&from_carol.recipient_tag, from_carol.expiry));
    // Carol's new keys: her old tags are no longer ours (we would keep and
    // try to open envelopes nobody can send us any more, and not relay them).
    carol
        .identity_mut()
        .rotate_encryption_keys(&mut rand::rng());
    let c_card = carol.identity_mut().contact_card(None, NOW + 1, 0).unwrap();
    let update = bob.add_contact(c_card, Trust::Unverified).unwrap();
    assert!(matches!(update, ContactUpdate::KeysChanged { .. }));
    assert!(!bob.is_for_us(&from_carol.recipient_tag, from_carol.expiry));
    // The bound holds: the earliest epoch makes room for a later one.
    for i in 0..2 * TAG_CACHE_EPOCHS as u64 {
        let _ = bob.is_for_us(&[0; 16], NOW + (window + i) * TAG_EPOCH_SECS);
    }
    assert_eq!(bob.tag_cache.len(), TAG_CACHE_EPOCHS);
}

/// Finding 6b: one-time keys are spent only from a card received privately.
#[test]
fn only_a_private_card_spends_one_time_keys() {
    for private in [false, true] {
        let (mut alice, mut bob) = pair(2);
        let bob_key = bob.identity().identity_key();
        if let Some(c) = alice.contacts.get_mut(&bob_key) {
            c.private_card = private;
        }
        let e = alice
            .seal(&bob_key, &text(b"x"), NOW + 999, &mut rand::rng())
            .unwrap();
        assert!(bob.open(&e, NOW, &mut MemoryReplayGuard::new()).is_ok());
        let expected = if private { 1 } else { 2 };
        assert_eq!(bob.unused_one_time_keys(), expected, "private {private}");
    }
}
