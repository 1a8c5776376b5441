//! Contact requests (Noise X), in-person pairing (Noise XX + SAS), key
//! changes (threat item 4), state at rest, and `Debug` hygiene (item 16).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

mod support;

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use ferry_core::{
    crypto::{
        ContactUpdate, Keyring, OpenError, Opened, Pairing, PairingError, PairingOutcome,
        PairingRole, StateError, Trust,
    },
    proto::v1,
};
use support::{NOW, Person};

fn request_from(alice: &mut Person, bob: &Person, intro: &str) -> v1::Envelope {
    let card = alice.card(4);
    alice
        .keyring
        .seal_contact_request(&bob.key(), &card, intro, NOW + 3600, &mut rand::rng())
        .unwrap()
}

#[test]
fn a_contact_request_lets_a_stranger_start_a_conversation() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    // Alice has Bob's card (from his code); Bob knows nothing of Alice.
    let b_card = bob.card(4);
    let _ = alice
        .keyring
        .add_contact(b_card, Trust::Unverified)
        .unwrap();

    let request = request_from(&mut alice, &bob, "we met at the square");
    let Opened::ContactRequest {
        card,
        introduction,
        existing,
        ..
    } = bob.open(&request).unwrap()
    else {
        panic!("not a request")
    };
    assert_eq!(introduction, "we met at the square");
    assert_eq!(card.identity_key(), &alice.key());
    assert_eq!(existing, None);
    // The request is replayable at the Noise level: the guard stops it.
    assert!(matches!(bob.open(&request), Err(OpenError::Duplicate)));

    assert_eq!(
        bob.keyring.add_contact(*card, Trust::Unverified).unwrap(),
        ContactUpdate::Added
    );
    let reply = bob.send(&alice, b"welcome");
    assert_eq!(alice.read(&reply), b"welcome");
    let next = alice.send(&bob, b"thanks");
    assert_eq!(bob.read(&next), b"thanks");
}

#[test]
fn a_request_carrying_someone_elses_card_is_rejected() {
    let (mut alice, mut bob, mut mallory) = (Person::new(), Person::new(), Person::new());
    let b_card = bob.card(2);
    let _ = mallory
        .keyring
        .add_contact(b_card, Trust::Unverified)
        .unwrap();
    // Mallory sends Alice's genuine card inside her own Noise X handshake.
    let alice_card = alice.card(2);
    let forged = mallory
        .keyring
        .seal_contact_request(
            &bob.key(),
            &alice_card,
            "it's me, alice",
            NOW + 3600,
            &mut rand::rng(),
        )
        .unwrap();
    assert!(matches!(bob.open(&forged), Err(OpenError::Rejected)));
}

#[test]
fn a_tampered_request_is_rejected() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let b_card = bob.card(2);
    let _ = alice
        .keyring
        .add_contact(b_card, Trust::Unverified)
        .unwrap();
    let mut request = request_from(&mut alice, &bob, "hi");
    request.sealed_body[200] ^= 4;
    support::recompute_id(&mut request);
    assert!(matches!(bob.open(&request), Err(OpenError::Rejected)));
}

#[test]
fn changed_keys_drop_verified_and_are_reported() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let a_card = alice.card(2);
    assert_eq!(
        bob.keyring
            .add_contact(a_card.clone(), Trust::Verified)
            .unwrap(),
        ContactUpdate::Added
    );
    assert_eq!(
        bob.keyring.add_contact(a_card, Trust::Unverified).unwrap(),
        ContactUpdate::Unchanged
    );
    assert_eq!(
        bob.keyring.contact(&alice.key()).unwrap().1,
        Trust::Verified
    );

    // A newer card with the same keys refreshes without a warning.
    let refreshed = alice
        .keyring
        .identity_mut()
        .contact_card(None, NOW + 10, 2)
        .unwrap();
    assert_eq!(
        bob.keyring
            .add_contact(refreshed, Trust::Unverified)
            .unwrap(),
        ContactUpdate::Refreshed
    );
    assert_eq!(
        bob.keyring.contact(&alice.key()).unwrap().1,
        Trust::Verified
    );

    // Same identity, new encryption keys (a substituted or re-installed
    // device): loud, and no longer verified.
    let rotated = alice.rotate_and_reissue(NOW + 20);
    assert_eq!(
        bob.keyring
            .add_contact(rotated.clone(), Trust::Unverified)
            .unwrap(),
        ContactUpdate::KeysChanged { was_verified: true }
    );
    assert_eq!(
        bob.keyring.contact(&alice.key()).unwrap().1,
        Trust::Unverified
    );
    // Even a caller that claims "verified" for new keys gets the event.
    let again = alice.rotate_and_reissue(NOW + 30);
    assert!(matches!(
        bob.keyring.add_contact(again, Trust::Verified).unwrap(),
        ContactUpdate::KeysChanged { .. }
    ));
}

#[test]
fn a_request_from_a_known_identity_with_new_keys_says_so() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let a_card = alice.card(1);
    let _ = bob.keyring.add_contact(a_card, Trust::Verified).unwrap();
    let b_card = bob.card(1);
    let _ = alice
        .keyring
        .add_contact(b_card, Trust::Unverified)
        .unwrap();
    alice
        .keyring
        .identity_mut()
        .rotate_encryption_keys(&mut rand::rng());
    let request = request_from(&mut alice, &bob, "new phone");
    let Opened::ContactRequest { card, existing, .. } = bob.open(&request).unwrap() else {
        panic!()
    };
    assert_eq!(existing, Some(Trust::Verified));
    assert!(matches!(
        bob.keyring.add_contact(*card, Trust::Unverified).unwrap(),
        ContactUpdate::KeysChanged { was_verified: true }
    ));
}

/// Runs one side of a pairing over a real byte stream with 2-byte length
/// framing, as an app would over a socket or a Bluetooth pipe.
fn run_pairing(
    mut pairing: Pairing,
    stream: &mut UnixStream,
) -> Result<PairingOutcome, PairingError> {
    while !pairing.is_finished() {
        if pairing.wants_to_send() {
            let frame = pairing.write_message()?;
            stream
                .write_all(&(frame.len() as u16).to_be_bytes())
                .unwrap();
            stream.write_all(&frame).unwrap();
        } else {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let mut frame = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut frame).unwrap();
            pairing.read_message(&frame)?;
        }
    }
    pairing.finish()
}

#[test]
fn in_person_pairing_over_a_stream_verifies_both_sides() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (mut a_stream, mut b_stream) = UnixStream::pair().unwrap();
    let a_card = alice.card(8);
    let b_card = bob.card(8);
    let a_pairing = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let b_pairing = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    let bob_side = std::thread::spawn(move || run_pairing(b_pairing, &mut b_stream));
    let a_outcome = run_pairing(a_pairing, &mut a_stream).unwrap();
    let b_outcome = bob_side.join().unwrap().unwrap();

    assert_eq!(
        a_outcome.sas, b_outcome.sas,
        "both screens show the same code"
    );
    assert_eq!(a_outcome.sas.to_string().len(), 7);
    assert_eq!(a_outcome.card.identity_key(), &bob.key());
    assert_eq!(b_outcome.card.identity_key(), &alice.key());
    assert_eq!(a_outcome.card.one_time_keys().len(), 8);

    let _ = alice.keyring.complete_pairing(a_outcome, true).unwrap();
    let _ = bob.keyring.complete_pairing(b_outcome, true).unwrap();
    assert_eq!(
        alice.keyring.contact(&bob.key()).unwrap().1,
        Trust::Verified
    );
    assert_eq!(
        bob.keyring.contact(&alice.key()).unwrap().1,
        Trust::Verified
    );
    let e = alice.send(&bob, b"paired");
    assert_eq!(bob.read(&e), b"paired");
}

#[test]
fn a_pairing_whose_codes_differ_adds_nothing() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (a_card, b_card) = (alice.card(1), bob.card(1));
    let mut a = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    support::exchange(&mut a, &mut b);
    let outcome = a.finish().unwrap();
    assert_eq!(
        alice.keyring.complete_pairing(outcome, false).unwrap(),
        None
    );
    assert!(alice.keyring.contact(&bob.key()).is_none());
}

#[test]
fn a_man_in_the_middle_shows_different_codes() {
    let (mut alice, mut bob, mut mallory) = (Person::new(), Person::new(), Person::new());
    let (a_card, b_card, m_card) = (alice.card(1), bob.card(1), mallory.card(1));
    // Mallory runs one pairing with Alice and another with Bob.
    let mut a = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut m1 = Pairing::new(
        mallory.keyring.identity(),
        &m_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    let mut m2 = Pairing::new(
        mallory.keyring.identity(),
        &m_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    support::exchange(&mut a, &mut m1);
    support::exchange(&mut m2, &mut b);
    assert_ne!(a.finish().unwrap().sas, b.finish().unwrap().sas);
}

#[test]
fn corrupted_or_out_of_order_pairing_frames_fail() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (a_card, b_card) = (alice.card(1), bob.card(1));
    let mut a = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    assert!(matches!(b.write_message(), Err(PairingError::OutOfOrder)));
    b.read_message(&a.write_message().unwrap()).unwrap();
    let mut frame = b.write_message().unwrap();
    frame[40] ^= 1;
    assert!(matches!(
        a.read_message(&frame),
        Err(PairingError::Handshake)
    ));
    let mut c = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    assert!(c.read_message(&[1, 2, 3]).is_err());
    assert!(c.finish().is_err());
}

#[test]
fn state_round_trips_and_refuses_wrong_keys_and_corruption() {
    let (mut alice, mut bob) = support::pair(3);
    let e = alice.send(&bob, b"before save");
    bob.read(&e);
    let key = [42u8; 32];
    let saved = bob.keyring.export(&key, &mut rand::rng());
    assert!(matches!(
        Keyring::import(&saved, &[43u8; 32]),
        Err(StateError::Unreadable)
    ));
    for i in [0, 9, saved.len() / 2, saved.len() - 1] {
        let mut bad = saved.clone();
        bad[i] ^= 1;
        assert!(Keyring::import(&bad, &key).is_err(), "byte {i}");
    }
    assert!(Keyring::import(&saved[..saved.len() - 1], &key).is_err());
    assert!(Keyring::import(b"", &key).is_err());

    let restored = Keyring::import(&saved, &key).unwrap();
    assert_eq!(restored.identity().identity_key(), bob.key());
    assert_eq!(restored.contact(&alice.key()).unwrap().1, Trust::Unverified);
    bob.keyring = restored;
    let after = alice.send(&bob, b"after restore");
    assert_eq!(bob.read(&after), b"after restore");
    let reply = bob.send(&alice, b"still me");
    assert_eq!(alice.read(&reply), b"still me");
}

#[test]
fn debug_output_shows_no_keys_or_plaintext() {
    let (mut alice, mut bob) = support::pair(2);
    let e = alice.send(&bob, b"TOP-SECRET-PLAINTEXT");
    let opened = bob.open(&e).unwrap();
    let (a_card, b_card) = (alice.card(1), bob.card(1));
    let mut a = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    support::exchange(&mut a, &mut b);
    let outcome = a.finish().unwrap();
    let debug = format!(
        "{opened:?} {:?} {:?} {outcome:?} {:?} {b:?}",
        alice.keyring, bob.keyring, outcome.sas
    );
    assert!(!debug.contains("TOP-SECRET"), "{debug}");
    assert!(!debug.contains(&outcome.sas.to_string()), "{debug}");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for key in [alice.key().to_bytes(), bob.key().to_bytes()] {
        assert!(!debug.contains(&hex(&key[..6])));
        assert!(!debug.contains(format!("{:?}", &key[..6]).trim_matches(['[', ']'])));
    }
}

#[test]
fn prekeys_are_replenished_in_band_and_used_before_the_fallback() {
    // Bob's card had no one-time keys (a code shown to many people).
    let (mut alice, mut bob) = support::pair(0);
    let hello = alice.send(&bob, b"hello");
    assert_eq!(bob.read(&hello), b"hello");
    // Bob sends Alice private one-time keys inside their session.
    assert_eq!(bob.keyring.unused_one_time_keys(), 0);
    let top_up = bob.keyring.prekey_top_up(3);
    assert_eq!(bob.keyring.unused_one_time_keys(), 3);
    let e = bob
        .keyring
        .seal(&alice.key(), &top_up, support::EXPIRY, &mut rand::rng())
        .unwrap();
    let Opened::Message { payload, .. } = alice.open(&e).unwrap() else {
        panic!()
    };
    assert!(matches!(
        payload.kind,
        Some(v1::payload::Kind::PrekeyTopUp(_))
    ));

    // The top-up survives a save/restore on Alice's side.
    let key = [5u8; 32];
    let saved = alice.keyring.export(&key, &mut rand::rng());
    alice.keyring = Keyring::import(&saved, &key).unwrap();

    // Enough one-way messages to force three fresh sessions: they start from
    // the topped-up keys, which Bob's account still holds and then deletes.
    let n = 3 * ferry_core::crypto::MAX_MESSAGES_PER_CHAIN + 10;
    let burst: Vec<_> = (0..n).map(|i| alice.send(&bob, &i.to_be_bytes())).collect();
    for (i, e) in burst.iter().enumerate().rev() {
        assert_eq!(bob.read(e), (i as u32).to_be_bytes());
    }
    assert_eq!(
        bob.keyring.unused_one_time_keys(),
        0,
        "the topped-up keys were used and deleted"
    );
}
