//! Store-and-forward reordering against Olm's bounded state (threat row 24):
//! late messages on old chains, messages delayed across many reply turns,
//! sessions dropped with messages still in flight, a contact code shared by
//! several senders, and the contact request rate limit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

mod support;

use ferry_core::{
    contact::ContactCard,
    crypto::{
        MAX_REQUESTS_PER_WINDOW, MAX_SESSIONS_PER_CONTACT, MemoryReplayGuard, OpenError, Opened,
        REQUEST_WINDOW_SECS, Trust, tags,
    },
    proto::v1,
};
use support::{EXPIRY, NOW, Person, pair};

/// Opens every envelope, returning the indices that could not be read.
fn unreadable(reader: &mut Person, envelopes: &[(usize, v1::Envelope)]) -> Vec<usize> {
    let mut lost = Vec::new();
    for (i, e) in envelopes {
        match reader.open(e) {
            Ok(Opened::Message { .. }) => {}
            other => {
                assert!(matches!(other, Err(OpenError::Rejected)), "{other:?}");
                lost.push(*i);
            }
        }
    }
    lost
}

/// `x` writes to `y` while reading `y`'s replies late and out of order: a
/// reply turn, then a burst, then a late reply on the chain already known,
/// then the rest of the burst. `y` reads the whole burst in `order`.
fn burst_around_a_late_reply(x: &mut Person, y: &mut Person, newest_first: bool) -> Vec<usize> {
    let first = x.send(y, b"hello");
    assert_eq!(y.read(&first), b"hello");
    // Two replies on one chain of y's.
    let early = y.send(x, b"reply 1");
    let late = y.send(x, b"reply 2");
    assert_eq!(x.read(&early), b"reply 1");
    let mut burst: Vec<(usize, v1::Envelope)> =
        (0..20).map(|i| (i, x.send(y, &[i as u8]))).collect();
    // The second reply arrives only now: a known chain, not a new turn.
    assert_eq!(x.read(&late), b"reply 2");
    burst.extend((20..70).map(|i| (i, x.send(y, &[i as u8]))));
    if newest_first {
        burst.reverse();
    }
    unreadable(y, &burst)
}

#[test]
fn a_late_reply_on_a_known_chain_does_not_stretch_the_sending_chain() {
    // Without per-chain counting, the late reply reset the count: one
    // chain grew to 52 messages and its first 12 were lost newest-first.
    for newest_first in [true, false] {
        let (mut alice, mut bob) = pair(0);
        let lost = burst_around_a_late_reply(&mut alice, &mut bob, newest_first);
        assert!(
            lost.is_empty(),
            "alice → bob, newest first {newest_first}: lost {lost:?}"
        );
        let (mut alice, mut bob) = pair(0);
        let lost = burst_around_a_late_reply(&mut bob, &mut alice, newest_first);
        assert!(
            lost.is_empty(),
            "bob → alice, newest first {newest_first}: lost {lost:?}"
        );
    }
}

#[test]
fn a_burst_of_a_hundred_read_newest_first_in_both_directions() {
    let (mut alice, mut bob) = pair(0);
    let e = alice.send(&bob, b"start");
    bob.read(&e);
    let r = bob.send(&alice, b"ok");
    alice.read(&r);
    let to_bob: Vec<_> = (0..100)
        .map(|i| (i, alice.send(&bob, &[i as u8])))
        .collect();
    let to_alice: Vec<_> = (0..100)
        .map(|i| (i, bob.send(&alice, &[i as u8])))
        .collect();
    let mut to_bob_rev = to_bob.clone();
    to_bob_rev.reverse();
    let mut to_alice_rev = to_alice.clone();
    to_alice_rev.reverse();
    assert_eq!(unreadable(&mut bob, &to_bob_rev), Vec::<usize>::new());
    assert_eq!(unreadable(&mut alice, &to_alice_rev), Vec::<usize>::new());
}

/// `x` writes a message that is held back, then `x` and `y` take `turns`
/// reply turns; the held message finally reaches `y`.
fn delayed_across_turns(x: &mut Person, y: &mut Person, turns: usize) -> bool {
    let first = x.send(y, b"first");
    assert_eq!(y.read(&first), b"first");
    // After a reply, x writes normal Olm messages: only the session's own
    // chain state can open them (a pre-key message could start it anew).
    let reply = y.send(x, b"reply");
    assert_eq!(x.read(&reply), b"reply");
    let delayed = x.send(y, b"delayed");
    for turn in 0..turns {
        let r = y.send(x, &[turn as u8]);
        assert_eq!(x.read(&r), [turn as u8]);
        let a = x.send(y, &[turn as u8]);
        assert_eq!(y.read(&a), [turn as u8]);
    }
    matches!(y.open(&delayed), Ok(Opened::Message { .. }))
}

#[test]
fn a_message_delayed_across_many_reply_turns_is_still_read() {
    // vodozemac keeps 5 receiving chains per session: without rotating
    // sessions every few turns, the delayed message's chain is gone after 6.
    for turns in [6, 12, 40] {
        let (mut alice, mut bob) = pair(0);
        assert!(
            delayed_across_turns(&mut alice, &mut bob, turns),
            "alice → bob, {turns} turns"
        );
        let (mut alice, mut bob) = pair(0);
        assert!(
            delayed_across_turns(&mut bob, &mut alice, turns),
            "bob → alice, {turns} turns"
        );
    }
}

#[test]
fn a_message_whose_session_was_dropped_is_reported_to_its_sender() {
    let (mut alice, mut bob) = pair(0);
    let mut rng = rand::rng();
    let seal = |alice: &mut Person, bob: &Person, body: &[u8]| {
        alice
            .keyring
            .seal_with_commitment(
                &bob.key(),
                &support::text(body),
                EXPIRY,
                [3; 16],
                &mut rand::rng(),
            )
            .unwrap()
    };
    let opened = seal(&mut alice, &bob, b"read at once");
    bob.read(&opened);
    // After a reply, Alice's messages are normal Olm messages: without the
    // session they cannot be read (a pre-key message could start it anew).
    let reply = bob.send(&alice, b"ok");
    alice.read(&reply);
    let held = seal(&mut alice, &bob, b"held back");
    let acked = seal(&mut alice, &bob, b"acknowledged");
    bob.read(&acked);
    alice
        .keyring
        .settle(&bob.key(), &tags::content_id_of(&acked));
    // A long one-way stream: each session carries 32 messages, so this
    // pushes the first session out of both keyrings.
    let stream: Vec<_> = (0..(MAX_SESSIONS_PER_CONTACT as u32 + 1) * 32)
        .map(|i| {
            alice
                .keyring
                .seal(
                    &bob.key(),
                    &support::text(&i.to_be_bytes()),
                    EXPIRY,
                    &mut rng,
                )
                .unwrap()
        })
        .collect();
    for e in &stream {
        bob.read(e);
    }
    // Really lost: Bob no longer holds the session...
    assert!(matches!(bob.open(&held), Err(OpenError::Rejected)));
    // ...and Alice is told, for the unacknowledged message only (receipts
    // and the acknowledged one are settled or never tracked).
    let dropped = alice.keyring.take_dropped();
    assert!(dropped.contains(&tags::content_id_of(&held)), "{dropped:?}");
    assert!(!dropped.contains(&tags::content_id_of(&acked)));
    assert!(alice.keyring.take_dropped().is_empty(), "reported once");
}

#[test]
fn a_code_shared_with_four_senders_opens_every_first_message() {
    // One code on a poster: every sender starts from the same card. Its
    // one-time keys can open one session each, so senders must not use
    // them (the first-message cost is written down in docs/crypto.md §6).
    let mut bob = Person::new();
    let code = bob.card(4).to_code().unwrap();
    let mut senders: Vec<Person> = (0..4).map(|_| Person::new()).collect();
    for sender in &mut senders {
        let card = ContactCard::from_code(&code).unwrap();
        let _ = sender.keyring.add_contact(card, Trust::Unverified).unwrap();
        let theirs = sender.card(4);
        let _ = bob.keyring.add_contact(theirs, Trust::Unverified).unwrap();
    }
    let mut mail = Vec::new();
    for (s, sender) in senders.iter_mut().enumerate() {
        for i in 0..3u8 {
            mail.push((s, i, sender.send(&bob, &[s as u8, i])));
        }
    }
    // Latest first, so no sender benefits from going first.
    for (s, i, e) in mail.iter().rev() {
        assert_eq!(bob.read(e), [*s as u8, *i], "sender {s}, message {i}");
    }
    // Replies reach every sender.
    for (s, sender) in senders.iter_mut().enumerate() {
        let r = bob.send(sender, &[s as u8]);
        assert_eq!(sender.read(&r), [s as u8]);
    }
}

#[test]
fn a_contact_request_flood_is_throttled_before_any_public_key_operation() {
    let mut bob = Person::new();
    let b_card = bob.card(0);
    let mut flooders: Vec<_> = (0..MAX_REQUESTS_PER_WINDOW as usize + 8)
        .map(|_| {
            let mut p = Person::new();
            let _ = p
                .keyring
                .add_contact(b_card.clone(), Trust::Unverified)
                .unwrap();
            let card = p.card(0);
            p.keyring
                .seal_contact_request(&bob.key(), &card, "hi", EXPIRY, &mut rand::rng())
                .unwrap()
        })
        .collect();
    let mut opened = 0;
    let mut throttled = Vec::new();
    for request in flooders.drain(..) {
        match bob.open(&request) {
            Ok(Opened::ContactRequest { .. }) => opened += 1,
            Err(OpenError::Throttled) => throttled.push(request),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(opened, MAX_REQUESTS_PER_WINDOW);
    assert_eq!(throttled.len(), 8);
    // Throttled requests were not recorded: they open in the next window.
    let later = NOW + REQUEST_WINDOW_SECS;
    for request in &throttled {
        let r = bob.keyring.open(request, later, &mut bob.guard);
        assert!(matches!(r, Ok(Opened::ContactRequest { .. })), "{r:?}");
    }
    // Garbage under the request tag costs the budget too (it costs as much
    // to find out), while contacts' messages are never throttled.
    let (mut alice, mut bob) = pair(0);
    let genuine = {
        let mut p = Person::new();
        let _ = p
            .keyring
            .add_contact(bob.card(0), Trust::Unverified)
            .unwrap();
        let card = p.card(0);
        p.keyring
            .seal_contact_request(&bob.key(), &card, "real", EXPIRY, &mut rand::rng())
            .unwrap()
    };
    for i in 0..MAX_REQUESTS_PER_WINDOW {
        let mut junk = genuine.clone();
        junk.sealed_body[40] ^= 1 + (i as u8 % 200);
        support::recompute_id(&mut junk);
        assert!(matches!(bob.open(&junk), Err(OpenError::Rejected)));
    }
    assert!(matches!(bob.open(&genuine), Err(OpenError::Throttled)));
    let m = alice.send(&bob, b"contacts pass");
    assert_eq!(bob.read(&m), b"contacts pass");
    let r = bob.keyring.open(
        &genuine,
        NOW + REQUEST_WINDOW_SECS,
        &mut MemoryReplayGuard::new(),
    );
    assert!(matches!(r, Ok(Opened::ContactRequest { .. })));
}

#[test]
fn a_contact_starting_sessions_over_and_over_gets_a_bounded_number_of_keys() {
    // Every session a contact starts earns it one-time keys. One that keeps
    // starting sessions from the fallback key (never using what it got)
    // must not make us generate keys without end: vodozemac keeps 5000 and
    // drops the oldest, which other contacts hold.
    let (mut alice, mut bob) = pair(0);
    let mut given = 0;
    for i in 0..20 * 32u32 {
        let e = alice.send(&bob, &i.to_be_bytes());
        bob.read(&e);
        for (to, payload) in bob.keyring.take_top_ups_due() {
            assert_eq!(to, alice.key());
            let Some(v1::payload::Kind::PrekeyTopUp(top_up)) = payload.kind else {
                panic!()
            };
            given += top_up.one_time_keys.len();
        }
    }
    assert_eq!(bob.keyring.inbound_sessions_from_fallback(), 20);
    assert_eq!(
        given,
        ferry_core::crypto::MAX_TOPPED_UP_PER_CONTACT as usize
    );
    assert_eq!(bob.keyring.unused_one_time_keys(), given);
}
