//! Olm sessions through envelopes: delivery in any order, duplicates,
//! tampering, forward secrecy and healing (threat items 3, 5, 6, 7, 8, 10).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

mod support;

use ferry_core::{
    crypto::{Keyring, MAX_MESSAGES_PER_CHAIN, MemoryReplayGuard, OpenError, Opened, Trust},
    proto::{limits::SEALED_BODY_BUCKETS, v1},
};
use proptest::prelude::*;
use rand::seq::SliceRandom as _;
use support::{NOW, Person, pair, text};

#[test]
fn first_message_reply_and_conversation() {
    let (mut alice, mut bob) = pair(4);
    let e = alice.send(&bob, b"hello bob");
    assert_eq!(bob.read(&e), b"hello bob");
    let r = bob.send(&alice, b"hi alice");
    assert_eq!(alice.read(&r), b"hi alice");
    for i in 0..20u8 {
        let e = alice.send(&bob, &[i; 100]);
        assert_eq!(bob.read(&e), vec![i; 100]);
        let r = bob.send(&alice, &[i; 3]);
        assert_eq!(alice.read(&r), vec![i; 3]);
    }
}

#[test]
fn works_with_only_the_fallback_key() {
    let (mut alice, mut bob) = pair(0);
    for i in 0..3u8 {
        let e = alice.send(&bob, &[i]);
        assert_eq!(bob.read(&e), vec![i]);
    }
}

#[test]
fn thousand_messages_in_random_order_with_duplicates_decrypt_exactly_once() {
    let (mut alice, mut bob) = pair(4);
    let mut envelopes: Vec<(u32, v1::Envelope)> = (0..1000u32)
        .map(|i| (i, alice.send(&bob, &i.to_be_bytes())))
        .collect();
    let mut rng = rand::rng();
    let duplicates: Vec<_> = (0..100)
        .map(|_| envelopes[rng.random_range(0..1000)].clone())
        .collect();
    envelopes.extend(duplicates);
    envelopes.shuffle(&mut rng);

    let mut seen = vec![0u32; 1000];
    let mut duplicates_rejected = 0;
    for (i, envelope) in &envelopes {
        match bob.open(envelope) {
            Ok(Opened::Message { payload, .. }) => {
                let Some(v1::payload::Kind::Text(t)) = payload.kind else {
                    panic!()
                };
                let n = u32::from_be_bytes(t.body.try_into().unwrap());
                assert_eq!(n, *i);
                seen[n as usize] += 1;
            }
            Err(OpenError::Duplicate) => duplicates_rejected += 1,
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every message exactly once");
    assert_eq!(duplicates_rejected, 100);
}

#[test]
fn a_long_one_way_burst_rotates_sessions_so_reverse_order_still_works() {
    // Without session rotation, message 0 would arrive after 40+ later ones
    // and vodozemac would have discarded its skipped key.
    let (mut alice, mut bob) = pair(2);
    let n = 4 * MAX_MESSAGES_PER_CHAIN + 5;
    let envelopes: Vec<_> = (0..n).map(|i| alice.send(&bob, &i.to_be_bytes())).collect();
    for (i, e) in envelopes.iter().enumerate().rev() {
        assert_eq!(bob.read(e), (i as u32).to_be_bytes());
    }
}

type Tampering = Box<dyn Fn(&mut v1::Envelope)>;

fn tamperings() -> Vec<(&'static str, Tampering)> {
    vec![
        ("flipped body bit", Box::new(|e| e.sealed_body[300] ^= 1)),
        ("flipped nonce bit", Box::new(|e| e.sealed_body[0] ^= 0x80)),
        (
            "flipped tag bit",
            Box::new(|e| *e.sealed_body.last_mut().unwrap() ^= 1),
        ),
        ("truncated body", Box::new(|e| e.sealed_body.truncate(100))),
        ("extended body", Box::new(|e| e.sealed_body.resize(2048, 0))),
        ("changed expiry", Box::new(|e| e.expiry += 600)),
        ("changed content id", Box::new(|e| e.content_id[0] ^= 1)),
        ("changed version", Box::new(|e| e.version = 2)),
        (
            "swapped halves",
            Box::new(|e| e.sealed_body.rotate_left(256)),
        ),
    ]
}

#[test]
fn tampered_envelopes_are_rejected_uniformly_and_do_not_break_the_session() {
    let (mut alice, mut bob) = pair(4);
    // Establish the session first, so the tampered messages are normal ones.
    let e = alice.send(&bob, b"setup");
    bob.read(&e);
    let reply = bob.send(&alice, b"ok");
    alice.read(&reply);

    for (what, tamper) in tamperings() {
        let good = alice.send(&bob, what.as_bytes());
        let mut bad = good.clone();
        tamper(&mut bad);
        // Recompute the content ID where the tampering did not target it, so
        // the failure comes from the cryptography, not the ID check.
        if what != "changed content id" {
            support::recompute_id(&mut bad);
        }
        let err = bob.open(&bad).unwrap_err();
        // Changing the expiry moves the envelope to another tag epoch only
        // when it crosses an epoch boundary; either way it is not accepted.
        assert!(
            matches!(err, OpenError::Rejected | OpenError::NotForUs),
            "{what}: {err:?}"
        );
        if what != "changed expiry" {
            assert!(matches!(err, OpenError::Rejected), "{what}: {err:?}");
        }
        // The genuine envelope still opens afterwards (threat item 11).
        assert_eq!(bob.read(&good), what.as_bytes(), "{what}");
    }
}

#[test]
fn an_envelope_forged_by_another_contact_is_rejected() {
    let (mut alice, mut bob) = pair(4);
    let mut mallory = Person::new();
    let m_card = mallory.card(2);
    let b_card = bob.card(2);
    let _ = bob.keyring.add_contact(m_card, Trust::Unverified).unwrap();
    let _ = mallory
        .keyring
        .add_contact(b_card, Trust::Unverified)
        .unwrap();

    // Mallory writes to Bob but puts Alice's tag on it: she cannot produce
    // Alice's outer layer, so Bob rejects it instead of crediting Alice.
    let genuine = alice.send(&bob, b"from alice");
    let mut forged = mallory.send(&bob, b"from alice, honest");
    forged.recipient_tag = genuine.recipient_tag.clone();
    forged.expiry = genuine.expiry;
    support::recompute_id(&mut forged);
    assert!(matches!(bob.open(&forged), Err(OpenError::Rejected)));
    // Mallory's own envelope is attributed to Mallory.
    let honest = mallory.send(&bob, b"hi");
    match bob.open(&honest).unwrap() {
        Opened::Message { from, .. } => assert_eq!(from, mallory.key()),
        other => panic!("{other:?}"),
    }
    assert_eq!(bob.read(&genuine), b"from alice");
}

#[test]
fn garbage_with_a_valid_tag_never_advances_state() {
    let (mut alice, mut bob) = pair(4);
    let first = alice.send(&bob, b"one");
    let mut rng = rand::rng();
    for len in SEALED_BODY_BUCKETS.iter().take(3) {
        let mut junk = first.clone();
        junk.sealed_body = (0..*len).map(|_| rng.random()).collect();
        support::recompute_id(&mut junk);
        assert!(matches!(bob.open(&junk), Err(OpenError::Rejected)));
    }
    assert_eq!(bob.read(&first), b"one");
    let second = alice.send(&bob, b"two");
    assert_eq!(bob.read(&second), b"two");
}

#[test]
fn envelopes_for_others_and_expired_ones_are_not_opened() {
    let (mut alice, bob) = pair(1);
    let mut carol = Person::new();
    let e = alice.send(&bob, b"for bob");
    assert!(matches!(carol.open(&e), Err(OpenError::NotForUs)));
    assert!(!carol.keyring.is_for_us(&e.recipient_tag, e.expiry));
    let mut bob = bob;
    assert!(bob.keyring.is_for_us(&e.recipient_tag, e.expiry));
    let late = bob
        .keyring
        .open(&e, e.expiry + 1, &mut MemoryReplayGuard::new());
    assert!(matches!(late, Err(OpenError::Expired)));
}

#[test]
fn tags_rotate_across_epochs_and_reveal_no_keys() {
    use ferry_core::crypto::tags::TAG_EPOCH_SECS;
    let (mut alice, bob) = pair(1);
    let payload = text(b"x");
    let seal = |alice: &mut Person, expiry| {
        alice
            .keyring
            .seal(&bob.key(), &payload, expiry, &mut rand::rng())
            .unwrap()
    };
    let a = seal(&mut alice, NOW + 3600);
    let b = seal(&mut alice, NOW + 3600 + 2 * TAG_EPOCH_SECS);
    assert_ne!(a.recipient_tag, b.recipient_tag);
    // Replies travel under a different (direction-specific) tag.
    let mut bob = bob;
    let r = bob.send(&alice, b"y");
    assert_ne!(r.recipient_tag, a.recipient_tag);
    for envelope in [&a, &b, &r] {
        let bytes = ferry_core::proto::encode(envelope);
        for key in [alice.key().to_bytes(), bob.key().to_bytes()] {
            assert!(!bytes.windows(8).any(|w| key.windows(8).any(|k| k == w)));
        }
    }
}

#[test]
fn past_messages_stay_unreadable_with_exported_state() {
    // Threat item 7: Bob's device is seized after he read the messages.
    // Paired in person, so the session starts from a one-time key that
    // Bob's account deletes on first use (a shared code's fallback-key
    // session is covered below).
    let (mut alice, mut bob) = support::paired(4);
    let captured: Vec<_> = (0..5).map(|i| alice.send(&bob, &[i])).collect();
    for (i, e) in captured.iter().enumerate() {
        assert_eq!(bob.read(e), vec![i as u8]);
    }
    let key = [7u8; 32];
    let seized = bob.keyring.export(&key, &mut rand::rng());
    let mut police = Keyring::import(&seized, &key).unwrap();
    for e in &captured {
        // A fresh replay guard: only the cryptography stands in the way.
        let r = police.open(e, NOW, &mut MemoryReplayGuard::new());
        assert!(matches!(r, Err(OpenError::Rejected)), "{r:?}");
    }
}

#[test]
fn a_session_from_a_shared_code_is_forward_secret_once_the_contact_replied() {
    // A session started from the fallback key (a code shown to many): the
    // first chain can be re-derived by whoever holds the fallback key until
    // it is rotated (docs/crypto.md §6). Everything after Bob's reply is
    // protected by ratchet keys generated later and deleted after use.
    let (mut alice, mut bob) = pair(4);
    let first = alice.send(&bob, b"first chain");
    bob.read(&first);
    let reply = bob.send(&alice, b"reply");
    alice.read(&reply);
    let captured: Vec<_> = (0..5).map(|i| alice.send(&bob, &[i])).collect();
    for (i, e) in captured.iter().enumerate() {
        assert_eq!(bob.read(e), vec![i as u8]);
    }
    let key = [8u8; 32];
    let seized = bob.keyring.export(&key, &mut rand::rng());
    let mut police = Keyring::import(&seized, &key).unwrap();
    for e in &captured {
        let r = police.open(e, NOW, &mut MemoryReplayGuard::new());
        assert!(matches!(r, Err(OpenError::Rejected)), "{r:?}");
    }
}

#[test]
fn a_stolen_snapshot_cannot_read_after_one_round_trip() {
    // Threat item 8: post-compromise security.
    let (mut alice, mut bob) = pair(4);
    let e = alice.send(&bob, b"before");
    bob.read(&e);
    let key = [9u8; 32];
    let snapshot = bob.keyring.export(&key, &mut rand::rng());

    let reply = bob.send(&alice, b"round");
    alice.read(&reply);
    let after = alice.send(&bob, b"after the round trip");

    let mut attacker = Keyring::import(&snapshot, &key).unwrap();
    let r = attacker.open(&after, NOW, &mut MemoryReplayGuard::new());
    assert!(matches!(r, Err(OpenError::Rejected)), "{r:?}");
    assert_eq!(bob.read(&after), b"after the round trip");
}

#[test]
fn replays_are_rejected_before_and_after_reloading_state() {
    let (mut alice, mut bob) = pair(4);
    let e = alice.send(&bob, b"once");
    assert_eq!(bob.read(&e), b"once");
    assert!(matches!(bob.open(&e), Err(OpenError::Duplicate)));

    let key = [1u8; 32];
    let saved = bob.keyring.export(&key, &mut rand::rng());
    bob.keyring = Keyring::import(&saved, &key).unwrap();
    // The persisted guard (the store's, in production) still knows it...
    assert!(matches!(bob.open(&e), Err(OpenError::Duplicate)));
    // ...and even without it the spent message key refuses a second opening.
    let again = bob.keyring.open(&e, NOW, &mut MemoryReplayGuard::new());
    assert!(matches!(again, Err(OpenError::Rejected)));
    // The reloaded session keeps working.
    let next = alice.send(&bob, b"next");
    assert_eq!(bob.read(&next), b"next");
}

fn payload_of_kind(kind: u8, size: usize) -> v1::Payload {
    use v1::payload::Kind;
    let kind = match kind % 3 {
        0 => Kind::Text(v1::TextMessage {
            message_id: vec![1; 16],
            sent_at: 1,
            body: vec![7; size],
            delivery_secret: Vec::new(),
        }),
        1 => Kind::Receipt(v1::DeliveryReceipt {
            message_ids: vec![vec![2; 16]; size % 200],
            content_ids: vec![vec![3; 32]; size % 50],
            delivery_secrets: vec![vec![5; 16]; size % 50],
            receipt_secret: Vec::new(),
        }),
        _ => Kind::PrekeyTopUp(v1::PrekeyTopUp {
            one_time_keys: vec![vec![4; 32]; size % 33],
            fallback_key: vec![],
        }),
    };
    v1::Payload { kind: Some(kind) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Threat item 6: every sealed body length is a bucket, whatever the kind
    /// and size of the payload.
    #[test]
    fn sealed_lengths_are_only_buckets(kind in 0u8..3, size in 0usize..60_000) {
        let (mut alice, bob) = pair(1);
        let e = alice.keyring.seal(&bob.key(), &payload_of_kind(kind, size), NOW + 999, &mut rand::rng()).unwrap();
        prop_assert!(SEALED_BODY_BUCKETS.contains(&e.sealed_body.len()));
        prop_assert!(ferry_core::proto::decode::<v1::Envelope>(&ferry_core::proto::encode(&e)).is_ok());
    }
}

#[test]
fn contact_requests_are_bucketed_too() {
    let (mut alice, mut bob) = pair(1);
    let a_card = alice.card(4);
    for intro in ["", "hi", &"x".repeat(512)] {
        let e = alice
            .keyring
            .seal_contact_request(&bob.key(), &a_card, intro, NOW + 999, &mut rand::rng())
            .unwrap();
        assert!(SEALED_BODY_BUCKETS.contains(&e.sealed_body.len()));
        assert!(matches!(
            bob.open(&e).unwrap(),
            Opened::ContactRequest { .. }
        ));
    }
}

#[test]
fn oversized_payloads_are_an_error() {
    let (mut alice, bob) = pair(1);
    let r = alice.keyring.seal(
        &bob.key(),
        &text(&vec![0; 70_000]),
        NOW + 9,
        &mut rand::rng(),
    );
    assert!(r.is_err());
}
