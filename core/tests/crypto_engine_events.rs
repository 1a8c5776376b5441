//! What the keyring's protections look like to the app, through the engine:
//! contact requests carry what we already know of the sender, request
//! floods are refused and counted without touching the keyring, and a
//! message whose session was dropped is reported to its sender.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{
    contact::ContactCard,
    crypto::{MAX_REQUESTS_PER_WINDOW, MAX_SESSIONS_PER_CONTACT, Trust},
    engine::{Engine, EngineConfig, Event, Input, MemoryStore, Output, PeerId, Store as _},
    identity::Identity,
};
use rand::{SeedableRng as _, rngs::StdRng};

const T0: u64 = 1_700_000_000;

type Node = Engine<MemoryStore, StdRng>;

fn node(seed: u64) -> Node {
    Engine::open(
        MemoryStore::new(),
        [seed as u8 + 1; 32],
        Identity::generate,
        // Receipts and key top-ups at once: these tests follow the keys,
        // not the timing (tested in `recipient_privacy.rs`).
        EngineConfig {
            proof_delay_secs: (0, 0),
            receipt_delay_secs: (0, 0),
            ..EngineConfig::default()
        },
        StdRng::seed_from_u64(seed),
        T0,
    )
    .unwrap()
}

fn card(n: &mut Node) -> ContactCard {
    n.keyring_mut()
        .identity_mut()
        .contact_card(None, T0, 0)
        .unwrap()
}

/// Drains the outputs: (published envelopes, events).
fn drain(n: &mut Node) -> (Vec<Vec<u8>>, Vec<Event>) {
    let (mut published, mut events) = (Vec::new(), Vec::new());
    while let Some(output) = n.poll_output() {
        match output {
            Output::Publish { bytes, .. } => published.push(bytes),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (published, events)
}

fn gossip(to: &mut Node, bytes: &[u8]) {
    to.handle(
        Input::Gossip {
            from: PeerId(7),
            bytes,
        },
        T0 + 1,
    )
    .unwrap();
}

fn request(from: &mut Node, to: &ContactCard) -> Vec<u8> {
    let _ = from.add_contact(to.clone(), Trust::Unverified).unwrap();
    let ours = card(from);
    from.send_contact_request(to.identity_key(), &ours, "hello", T0)
        .unwrap();
    let (mut published, _) = drain(from);
    published.pop().unwrap()
}

#[test]
fn a_contact_request_tells_the_app_what_it_already_knows_and_writes_no_keyring() {
    let (mut alice, mut bob) = (node(1), node(2));
    let b_card = card(&mut bob);
    let a_card = card(&mut alice);
    let _ = bob.add_contact(a_card, Trust::Verified).unwrap();
    drain(&mut bob);
    let saved = bob.store().load().unwrap().keyring;

    let bytes = request(&mut alice, &b_card);
    gossip(&mut bob, &bytes);
    let (_, events) = drain(&mut bob);
    let [
        Event::ContactRequest {
            existing,
            keys_changed,
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(*existing, Some(Trust::Verified));
    assert!(!keys_changed);
    // Compared, not printed: the sealed state is long.
    assert!(
        bob.store().load().unwrap().keyring == saved,
        "a request does not rewrite the keyring"
    );

    // The same identity with new encryption keys: the app is told before
    // the user accepts.
    alice
        .keyring_mut()
        .identity_mut()
        .rotate_encryption_keys(&mut rand::rng());
    let bytes = request(&mut alice, &b_card);
    gossip(&mut bob, &bytes);
    let (_, events) = drain(&mut bob);
    assert!(
        matches!(
            events.as_slice(),
            [Event::ContactRequest {
                existing: Some(Trust::Verified),
                keys_changed: true,
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn a_request_flood_is_refused_and_counted() {
    let mut bob = node(0);
    let b_card = card(&mut bob);
    let flood: Vec<Vec<u8>> = (0..MAX_REQUESTS_PER_WINDOW as u64 + 10)
        .map(|i| request(&mut node(100 + i), &b_card))
        .collect();
    for bytes in &flood {
        gossip(&mut bob, bytes);
    }
    let (_, events) = drain(&mut bob);
    let requests = events
        .iter()
        .filter(|e| matches!(e, Event::ContactRequest { .. }))
        .count();
    assert_eq!(requests, MAX_REQUESTS_PER_WINDOW as usize);
    assert_eq!(bob.counters().requests_throttled, 10);
    assert_eq!(bob.counters().invalid, 0, "the senders are not blamed");
}

#[test]
fn a_message_whose_session_was_dropped_reaches_its_sender_as_an_event() {
    let (mut alice, mut bob) = (node(1), node(2));
    let (a_card, b_card) = (card(&mut alice), card(&mut bob));
    let _ = alice
        .add_contact(b_card.clone(), Trust::Unverified)
        .unwrap();
    let _ = bob.add_contact(a_card, Trust::Unverified).unwrap();
    let to = *b_card.identity_key();
    // One round trip: the message, and Bob's receipt back.
    let first = alice.send(&to, b"first", T0).unwrap();
    let (published, _) = drain(&mut alice);
    gossip(&mut bob, &published[0]);
    let (receipts, _) = drain(&mut bob);
    gossip(&mut alice, &receipts[0]);
    let (_, events) = drain(&mut alice);
    assert!(matches!(events.as_slice(), [Event::Delivered { .. }]));

    let held = alice.send(&to, b"held back", T0).unwrap();
    drain(&mut alice);
    // Enough one-way messages to push that session out.
    let mut unreadable = Vec::new();
    for _ in 0..(MAX_SESSIONS_PER_CONTACT + 1) * 32 {
        alice.send(&to, b"more", T0).unwrap();
        let (_, events) = drain(&mut alice);
        unreadable.extend(events.into_iter().filter_map(|e| match e {
            Event::Unreadable { message_id } => Some(message_id),
            _ => None,
        }));
    }
    // The session held the message and the 31 that followed it; the
    // acknowledged first message is not reported, nothing twice.
    assert!(unreadable.contains(&held));
    assert!(!unreadable.contains(&first));
    let mut unique = unreadable.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), unreadable.len());
    assert!(unreadable.len() >= 32);
}

/// Hands every envelope `from` published to `to`, in order; returns how
/// many there were.
fn hand_over(from: &mut Node, to: &mut Node) -> usize {
    let (published, _) = drain(from);
    for bytes in &published {
        gossip(to, bytes);
    }
    published.len()
}

#[test]
fn a_long_conversation_starts_its_sessions_from_one_time_keys() {
    // Sessions rotate every 4 reply turns. Each would start from the
    // fallback key (weaker first-chain forward secrecy) if the contact had
    // no one-time keys of ours: every session a contact starts earns it
    // fresh ones, in-band.
    let (mut alice, mut bob) = (node(1), node(2));
    let (a_card, b_card) = (card(&mut alice), card(&mut bob));
    let _ = alice
        .add_contact(b_card.clone(), Trust::Unverified)
        .unwrap();
    let _ = bob.add_contact(a_card.clone(), Trust::Unverified).unwrap();
    let (to_bob, to_alice) = (*b_card.identity_key(), *a_card.identity_key());
    for turn in 0..40u8 {
        alice.send(&to_bob, &[turn], T0).unwrap();
        while hand_over(&mut alice, &mut bob) + hand_over(&mut bob, &mut alice) > 0 {}
        bob.send(&to_alice, &[turn], T0).unwrap();
        while hand_over(&mut bob, &mut alice) + hand_over(&mut alice, &mut bob) > 0 {}
    }
    assert_eq!(
        alice.outbox_len() + bob.outbox_len(),
        0,
        "all receipts came"
    );
    // Of the ~20 sessions, only the very first started from the fallback
    // key (Alice, who starts each new one, always had a key of Bob's).
    assert_eq!(bob.keyring().inbound_sessions_from_fallback(), 1);
    assert!(alice.keyring().inbound_sessions_from_fallback() <= 1);
}
