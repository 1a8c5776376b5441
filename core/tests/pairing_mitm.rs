//! An adaptive man in the middle against in-person pairing.
//!
//! Mallory runs two pairings, Alice (initiator) ↔ Mallory and Mallory ↔ Bob
//! (responder), and tries to make the two codes equal so that both people
//! confirm and add her as a *verified* contact. She implements the wire
//! protocol herself (snow, her own keys read from her own keyring export)
//! so she can choose every byte she sends, and she grinds the last thing
//! she controls against a budget.
//!
//! To keep the grind short the tests compare codes in a reduced space
//! ([`SPACE`] values, i.e. the last three digits): against the protocol
//! before commit-then-reveal the grind succeeds within the budget; against
//! the current protocol it cannot, because her last contribution is bound
//! by a commitment she made before she saw Bob's nonce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use ferry_core::{
    contact::ContactCard,
    crypto::{Pairing, PairingError, PairingRole, aead},
};
use hkdf::Hkdf;
use prost::Message as _;
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use snow::{Builder, HandshakeState, TransportState};
use support::{NOW, Person};

/// Trials Mallory may spend on one attack.
const BUDGET: u32 = 20_000;
/// The reduced code space the grind targets (the full code has 10⁶).
const SPACE: u32 = 1_000;

const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const OLD_PROLOGUE: &[u8] = b"ferry/pairing/v1";
const PROLOGUE: &[u8] = b"ferry/pairing/v2";

// ---- the protocol as `docs/crypto.md` §8 specifies it, written again here ----

/// The code before the fix: from the handshake hash alone.
fn old_code(handshake_hash: &[u8]) -> u32 {
    let mut okm = [0u8; 8];
    Hkdf::<Sha256>::new(None, handshake_hash)
        .expand(b"ferry/pairing/sas", &mut okm)
        .unwrap();
    (u64::from_be_bytes(okm) % 1_000_000) as u32
}

/// The code now: handshake hash and both nonces, initiator's first.
fn code(handshake_hash: &[u8], initiator_nonce: &[u8; 32], responder_nonce: &[u8; 32]) -> u32 {
    let ikm = [initiator_nonce.as_slice(), responder_nonce.as_slice()].concat();
    let mut okm = [0u8; 8];
    Hkdf::<Sha256>::new(Some(handshake_hash), &ikm)
        .expand(b"ferry/pairing/sas/v2", &mut okm)
        .unwrap();
    (u64::from_be_bytes(okm) % 1_000_000) as u32
}

fn commitment(hash_before: &[u8], nonce: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"ferry/pairing/commit/v2")
        .chain_update(hash_before)
        .chain_update(nonce)
        .finalize()
        .into()
}

// ---- Mallory's tools ----

/// A person's Noise static secret (their request key), read from their own
/// keyring export: Mallory owns her device and knows her keys.
fn request_secret(person: &Person) -> [u8; 32] {
    #[derive(Clone, PartialEq, prost::Message)]
    struct SecretsView {
        #[prost(bytes = "vec", tag = "2")]
        request_secret: Vec<u8>,
    }
    let key = [7u8; 32];
    let saved = person.keyring.export(&key, &mut rand::rng());
    let mut state_key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"ferry/keyring-state/v1"), &key)
        .expand(b"state", &mut state_key)
        .unwrap();
    let plaintext = aead::open(&state_key, b"FERRYKR1", &saved[8..]).unwrap();
    SecretsView::decode(plaintext.as_slice())
        .unwrap()
        .request_secret
        .try_into()
        .unwrap()
}

fn noise(
    prologue: &[u8],
    secret: &[u8; 32],
    initiator: bool,
    ephemeral: Option<&[u8; 32]>,
) -> HandshakeState {
    let mut builder = Builder::new(PATTERN.parse().unwrap())
        .prologue(prologue)
        .unwrap()
        .local_private_key(secret)
        .unwrap();
    if let Some(e) = ephemeral {
        // Lets Mallory rebuild the same session state once per trial.
        builder = builder.fixed_ephemeral_key_for_testing_only(e);
    }
    if initiator {
        builder.build_initiator().unwrap()
    } else {
        builder.build_responder().unwrap()
    }
}

fn write(state: &mut HandshakeState, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 65535];
    let len = state.write_message(payload, &mut out).unwrap();
    out.truncate(len);
    out
}

fn read(state: &mut HandshakeState, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; frame.len()];
    let len = state.read_message(frame, &mut out).unwrap();
    out.truncate(len);
    out
}

fn send(state: &mut TransportState, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 65535];
    let len = state.write_message(payload, &mut out).unwrap();
    out.truncate(len);
    out
}

fn receive(state: &mut TransportState, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; frame.len()];
    let len = state.read_message(frame, &mut out).unwrap();
    out.truncate(len);
    out
}

// ---- the protocol before the fix, as an honest party ran it ----

/// One side of the three-message pairing the review broke: Noise `XX`,
/// cards in messages 1 and 2, the code from the handshake hash.
struct OldPairing {
    state: HandshakeState,
    card: Vec<u8>,
    peer: Option<ContactCard>,
}

impl OldPairing {
    fn new(person: &mut Person, initiator: bool) -> Self {
        Self {
            state: noise(OLD_PROLOGUE, &request_secret(person), initiator, None),
            card: person.card(1).to_bytes(),
            peer: None,
        }
    }

    fn write(&mut self, first: bool) -> Vec<u8> {
        let payload = if first { Vec::new() } else { self.card.clone() };
        write(&mut self.state, &payload)
    }

    fn read(&mut self, frame: &[u8]) {
        let payload = read(&mut self.state, frame);
        if !payload.is_empty() {
            // The card checks of the time (today's canonical decoding too:
            // Mallory grinds a signed field, which it does not stop).
            let card = ContactCard::from_bytes(&payload).unwrap();
            assert_eq!(
                self.state.get_remote_static().unwrap(),
                card.request_key().as_bytes()
            );
            self.peer = Some(card);
        }
    }

    fn code(&self) -> u32 {
        old_code(self.state.get_handshake_hash())
    }
}

#[test]
fn grinding_matches_the_codes_of_the_old_protocol() {
    let (mut alice, mut bob, mut mallory) = (Person::new(), Person::new(), Person::new());
    let m_secret = request_secret(&mallory);
    let m_card = mallory.card(0).to_bytes();

    // Alice ↔ Mallory: Alice writes the last message, Mallory cannot steer
    // her code; she learns it.
    let mut a = OldPairing::new(&mut alice, true);
    let mut m1 = noise(OLD_PROLOGUE, &m_secret, false, None);
    read(&mut m1, &a.write(true));
    a.read(&write(&mut m1, &m_card));
    read(&mut m1, &a.write(false));
    let alice_code = a.code();
    assert_eq!(old_code(m1.get_handshake_hash()), alice_code);

    // Mallory ↔ Bob: Mallory writes the last message. She grinds a signed
    // field of her own card (`issued_at`), one signature per trial, until
    // the handshake hash gives Bob Alice's code.
    let mut b = OldPairing::new(&mut bob, false);
    let e = rand::rng().random::<[u8; 32]>();
    let first = write(&mut noise(OLD_PROLOGUE, &m_secret, true, Some(&e)), &[]);
    b.read(&first);
    let bobs_reply = b.write(false);
    let mut found = None;
    let started = std::time::Instant::now();
    for trial in 0..BUDGET {
        let mut m2 = noise(OLD_PROLOGUE, &m_secret, true, Some(&e));
        write(&mut m2, &[]);
        read(&mut m2, &bobs_reply);
        let card = mallory
            .keyring
            .identity_mut()
            .contact_card(None, NOW + u64::from(trial), 0)
            .unwrap();
        let last = write(&mut m2, &card.to_bytes());
        if old_code(m2.get_handshake_hash()) % SPACE == alice_code % SPACE {
            found = Some((trial, last));
            break;
        }
    }
    let (trials, last) = found.expect("the grind found a match within the budget");
    b.read(&last);
    let per_trial = started.elapsed() / (trials + 1);
    eprintln!(
        "old protocol: codes matched (mod {SPACE}) after {} trials, {per_trial:?} per trial",
        trials + 1
    );
    assert_eq!(
        b.code() % SPACE,
        alice_code % SPACE,
        "Bob shows Alice's code"
    );
    // Both would now confirm and add Mallory as verified.
    assert_eq!(a.peer.unwrap().identity_key(), &mallory.key());
    assert_eq!(b.peer.unwrap().identity_key(), &mallory.key());
}

/// Mallory as the responder to Alice: an honest-looking pairing, at the end
/// of which she knows Alice's code.
fn mallory_pairs_with_alice(
    alice: &mut Person,
    m_secret: &[u8; 32],
    m_card: &[u8],
) -> (Pairing, u32) {
    let a_card = alice.card(1);
    let mut a = Pairing::new(
        alice.keyring.identity(),
        &a_card,
        PairingRole::Initiator,
        &mut rand::rng(),
    )
    .unwrap();
    let mut m = noise(PROLOGUE, m_secret, false, None);
    read(&mut m, &a.write_message().unwrap());
    a.read_message(&write(&mut m, m_card)).unwrap();
    let payload = read(&mut m, &a.write_message().unwrap());
    assert_eq!(&payload[32..], a_card.to_bytes().as_slice());
    // Alice committed to her nonce; Mallory cannot open the commitment, so
    // nothing she chooses now can aim at Alice's code.
    let hash = m.get_handshake_hash().to_vec();
    let mut m = m.into_transport_mode().unwrap();
    let nonce = rand::rng().random::<[u8; 32]>();
    a.read_message(&send(&mut m, &nonce)).unwrap();
    let reveal: [u8; 32] = receive(&mut m, &a.write_message().unwrap())
        .try_into()
        .unwrap();
    (a, code(&hash, &reveal, &nonce))
}

/// Mallory, initiator to Bob, commits to one nonce, sees Bob's, then
/// grinds the nonce she reveals until Bob's code would be `target` in the
/// reduced space. Returns Bob's pairing after the reveal and whether Bob
/// accepted it.
fn mallory_grinds_her_reveal_to_bob(
    bob: &mut Person,
    m_secret: &[u8; 32],
    m_card: &[u8],
    target: u32,
) -> (Pairing, Result<(), PairingError>, u32) {
    let b_card = bob.card(1);
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    let mut m = noise(PROLOGUE, m_secret, true, None);
    b.read_message(&write(&mut m, &[])).unwrap();
    read(&mut m, &b.write_message().unwrap());
    let committed = rand::rng().random::<[u8; 32]>();
    let mut payload = commitment(m.get_handshake_hash(), &committed).to_vec();
    payload.extend_from_slice(m_card);
    b.read_message(&write(&mut m, &payload)).unwrap();
    let hash = m.get_handshake_hash().to_vec();
    let mut m = m.into_transport_mode().unwrap();
    let bobs: [u8; 32] = receive(&mut m, &b.write_message().unwrap())
        .try_into()
        .unwrap();
    // Every nonce but the committed one (which matches only by chance).
    let mut found = None;
    for trial in 0..BUDGET {
        let mut candidate = committed;
        candidate[..4].copy_from_slice(&(trial + 1).to_be_bytes());
        candidate[4] ^= 0x80;
        if code(&hash, &candidate, &bobs) % SPACE == target % SPACE {
            found = Some((trial, candidate));
            break;
        }
    }
    let (trials, reveal) = found.expect("a nonce giving the target exists within the budget");
    let result = b.read_message(&send(&mut m, &reveal));
    if result.is_err() {
        // No second try: after a failure Bob refuses even the true reveal.
        assert!(matches!(
            b.read_message(&send(&mut m, &committed)),
            Err(PairingError::OutOfOrder)
        ));
    }
    (b, result, trials + 1)
}

#[test]
fn grinding_the_reveal_cannot_match_the_codes() {
    let (mut alice, mut bob, mut mallory) = (Person::new(), Person::new(), Person::new());
    let m_secret = request_secret(&mallory);
    let m_card = mallory.card(0).to_bytes();

    let (a, predicted) = mallory_pairs_with_alice(&mut alice, &m_secret, &m_card);
    let alice_code = a.finish().unwrap().sas.value();
    assert_eq!(
        predicted, alice_code,
        "Mallory computes codes as Alice does"
    );

    let (b, result, trials) =
        mallory_grinds_her_reveal_to_bob(&mut bob, &m_secret, &m_card, alice_code);
    eprintln!("new protocol: a matching reveal after {trials} trials; Bob says {result:?}");
    if result.is_ok() {
        let bob_code = b.finish().unwrap().sas.value();
        assert_ne!(
            bob_code % SPACE,
            alice_code % SPACE,
            "Mallory matched the codes"
        );
        panic!("Bob accepted a reveal that is not the committed nonce");
    }
    // The nonce that would match does not open her commitment.
    assert!(matches!(result, Err(PairingError::CommitmentMismatch)));
    assert!(!b.is_finished());
    assert!(b.finish().is_err(), "no code is shown, no contact added");
}

#[test]
fn the_initiator_reveals_only_after_the_responders_nonce() {
    // Mallory as Alice's responder would like to see Alice's nonce before
    // choosing hers: Alice does not send it until Mallory's has arrived.
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
    b.read_message(&a.write_message().unwrap()).unwrap();
    a.read_message(&b.write_message().unwrap()).unwrap();
    let commit = a.write_message().unwrap();
    assert!(!a.wants_to_send());
    assert!(matches!(a.write_message(), Err(PairingError::OutOfOrder)));
    b.read_message(&commit).unwrap();
    a.read_message(&b.write_message().unwrap()).unwrap();
    b.read_message(&a.write_message().unwrap()).unwrap();
    assert_eq!(a.finish().unwrap().sas, b.finish().unwrap().sas);
}

#[test]
fn a_card_with_an_appended_unknown_field_ends_the_pairing() {
    // The review's grinding handle: bytes after the signed fields. The
    // responder refuses the card, so the handshake never completes.
    let (mut bob, mut mallory) = (Person::new(), Person::new());
    let m_secret = request_secret(&mallory);
    let mut m_card = mallory.card(0).to_bytes();
    m_card.extend_from_slice(&[0xa0, 0x01, 0x2a]);
    let b_card = bob.card(1);
    let mut b = Pairing::new(
        bob.keyring.identity(),
        &b_card,
        PairingRole::Responder,
        &mut rand::rng(),
    )
    .unwrap();
    let mut m = noise(PROLOGUE, &m_secret, true, None);
    b.read_message(&write(&mut m, &[])).unwrap();
    read(&mut m, &b.write_message().unwrap());
    let mut payload = commitment(m.get_handshake_hash(), &[0; 32]).to_vec();
    payload.extend_from_slice(&m_card);
    assert!(matches!(
        b.read_message(&write(&mut m, &payload)),
        Err(PairingError::InvalidCard)
    ));
    assert!(!b.wants_to_send() && !b.is_finished());
}
