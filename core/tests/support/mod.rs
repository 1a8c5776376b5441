//! Shared helpers for the crypto tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_core::{
    crypto::{Keyring, MemoryReplayGuard, OpenError, Opened, Trust},
    identity::Identity,
    keys::IdentityKey,
    proto::v1,
};

pub(crate) const NOW: u64 = 1_700_000_000;
pub(crate) const EXPIRY: u64 = NOW + 24 * 3600;

pub(crate) struct Person {
    pub(crate) keyring: Keyring,
    pub(crate) guard: MemoryReplayGuard,
}

impl Person {
    pub(crate) fn new() -> Self {
        Self {
            keyring: Keyring::new(Identity::generate(&mut rand::rng())),
            guard: MemoryReplayGuard::new(),
        }
    }

    pub(crate) fn key(&self) -> IdentityKey {
        self.keyring.identity().identity_key()
    }

    pub(crate) fn card(&mut self, one_time_keys: usize) -> ferry_core::contact::ContactCard {
        self.keyring
            .identity_mut()
            .contact_card(None, NOW, one_time_keys)
            .unwrap()
    }

    /// New encryption keys under the same identity, and a card for them.
    pub(crate) fn rotate_and_reissue(
        &mut self,
        issued_at: u64,
    ) -> ferry_core::contact::ContactCard {
        self.keyring
            .identity_mut()
            .rotate_encryption_keys(&mut rand::rng());
        self.keyring
            .identity_mut()
            .contact_card(None, issued_at, 2)
            .unwrap()
    }

    pub(crate) fn send(&mut self, to: &Person, body: &[u8]) -> v1::Envelope {
        self.keyring
            .seal(&to.key(), &text(body), EXPIRY, &mut rand::rng())
            .unwrap()
    }

    pub(crate) fn open(&mut self, envelope: &v1::Envelope) -> Result<Opened, OpenError> {
        self.keyring.open(envelope, NOW, &mut self.guard)
    }

    /// Opens and returns the text body, panicking otherwise.
    pub(crate) fn read(&mut self, envelope: &v1::Envelope) -> Vec<u8> {
        match self.open(envelope).unwrap() {
            Opened::Message { payload, .. } => match payload.kind {
                Some(v1::payload::Kind::Text(t)) => t.body,
                other => panic!("not a text: {other:?}"),
            },
            other => panic!("not a message: {other:?}"),
        }
    }
}

pub(crate) fn text(body: &[u8]) -> v1::Payload {
    v1::Payload {
        kind: Some(v1::payload::Kind::Text(v1::TextMessage {
            message_id: rand_id(),
            sent_at: NOW,
            body: body.to_vec(),
            delivery_secret: Vec::new(),
        })),
    }
}

pub(crate) fn rand_id() -> Vec<u8> {
    use rand::RngExt as _;
    let id: [u8; 16] = rand::rng().random();
    id.to_vec()
}

/// Alice and Bob with each other's cards (Bob's with `otks` one-time keys).
pub(crate) fn pair(otks: usize) -> (Person, Person) {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let a = alice.card(otks);
    let b = bob.card(otks);
    let _ = alice.keyring.add_contact(b, Trust::Unverified).unwrap();
    let _ = bob.keyring.add_contact(a, Trust::Unverified).unwrap();
    (alice, bob)
}

/// Recomputes a (tampered) envelope's content ID, so a test exercises the
/// cryptographic checks rather than the ID check.
pub(crate) fn recompute_id(e: &mut v1::Envelope) {
    e.content_id = ferry_core::crypto::tags::content_id_of(e).to_vec();
}

/// Runs the five pairing messages between initiator `a` and responder `b`.
pub(crate) fn exchange(a: &mut ferry_core::crypto::Pairing, b: &mut ferry_core::crypto::Pairing) {
    // Five messages, alternating, initiator (`a`) first.
    while !(a.is_finished() && b.is_finished()) {
        if a.wants_to_send() {
            b.read_message(&a.write_message().unwrap()).unwrap();
        } else {
            a.read_message(&b.write_message().unwrap()).unwrap();
        }
    }
}

/// Alice and Bob paired in person: each holds the other's card, received
/// privately (its one-time keys are theirs alone), verified.
pub(crate) fn paired(otks: usize) -> (Person, Person) {
    use ferry_core::crypto::{Pairing, PairingRole};
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (a_card, b_card) = (alice.card(otks), bob.card(otks));
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
    exchange(&mut a, &mut b);
    let (a_out, b_out) = (a.finish().unwrap(), b.finish().unwrap());
    let _ = alice.keyring.complete_pairing(a_out, true).unwrap();
    let _ = bob.keyring.complete_pairing(b_out, true).unwrap();
    (alice, bob)
}
