//! Seal/open throughput of 1 KiB messages beside the raw primitives.
//!
//! `cargo bench -p ferry-core --bench crypto`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::{cell::RefCell, hint::black_box, time::Duration};

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, aead::array::Array};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use ferry_core::{
    crypto::{Keyring, MemoryReplayGuard, Trust},
    identity::Identity,
    keys::IdentityKey,
    proto::v1,
};
use vodozemac::olm::{Account, SessionConfig};
use x25519_dalek::{PublicKey, StaticSecret};

const NOW: u64 = 1_700_000_000;

fn text() -> v1::Payload {
    v1::Payload {
        kind: Some(v1::payload::Kind::Text(v1::TextMessage {
            message_id: vec![1; 16],
            sent_at: NOW,
            body: vec![0x61; 1024],
            delivery_secret: Vec::new(),
        })),
    }
}

fn pair() -> (Keyring, Keyring, IdentityKey) {
    let mut rng = rand::rng();
    let mut a = Keyring::new(Identity::generate(&mut rng));
    let mut b = Keyring::new(Identity::generate(&mut rng));
    let ac = a.identity_mut().contact_card(None, NOW, 4).unwrap();
    let bc = b.identity_mut().contact_card(None, NOW, 4).unwrap();
    let _ = a.add_contact(bc, Trust::Unverified).unwrap();
    let _ = b.add_contact(ac, Trust::Unverified).unwrap();
    let bk = b.identity().identity_key();
    (a, b, bk)
}

/// A pair with a session established by one round trip.
fn established() -> (Keyring, Keyring, IdentityKey) {
    let (mut a, mut b, bk) = pair();
    let mut rng = rand::rng();
    let mut guard = MemoryReplayGuard::new();
    let e = a.seal(&bk, &text(), NOW + 3600, &mut rng).unwrap();
    b.open(&e, NOW, &mut guard).unwrap();
    let ak = a.identity().identity_key();
    let r = b.seal(&ak, &text(), NOW + 3600, &mut rng).unwrap();
    a.open(&r, NOW, &mut MemoryReplayGuard::new()).unwrap();
    (a, b, bk)
}

fn ferry(c: &mut Criterion) {
    let mut g = c.benchmark_group("ferry");
    let payload = text();

    // Steady one-way stream: Alice keeps writing without replies, so every
    // 32nd message starts a fresh Olm session (see MAX_MESSAGES_PER_CHAIN).
    let (mut a, _b, bk) = established();
    let mut rng = rand::rng();
    g.bench_function(
        "seal 1 KiB, established session (one-way stream)",
        |bench| bench.iter(|| black_box(a.seal(&bk, &payload, NOW + 3600, &mut rng).unwrap())),
    );

    let (a, b, bk) = established();
    let (a, b) = (RefCell::new(a), RefCell::new(b));
    let guard = RefCell::new(MemoryReplayGuard::new());
    g.bench_function("open 1 KiB, established session", |bench| {
        bench.iter_batched(
            || {
                a.borrow_mut()
                    .seal(&bk, &payload, NOW + 3600, &mut rand::rng())
                    .unwrap()
            },
            |e| {
                black_box(
                    b.borrow_mut()
                        .open(&e, NOW, &mut *guard.borrow_mut())
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });

    g.bench_function("seal 1 KiB, first (prekey) message", |bench| {
        bench.iter_batched(
            pair,
            |(mut a, _b, bk)| {
                black_box(a.seal(&bk, &payload, NOW + 3600, &mut rand::rng()).unwrap())
            },
            BatchSize::SmallInput,
        )
    });

    g.bench_function("open 1 KiB, first (prekey) message", |bench| {
        bench.iter_batched(
            || {
                let (mut a, b, bk) = pair();
                let e = a.seal(&bk, &payload, NOW + 3600, &mut rand::rng()).unwrap();
                (b, e)
            },
            |(mut b, e)| black_box(b.open(&e, NOW, &mut MemoryReplayGuard::new()).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Recognising envelopes addressed to us when their expiries spread over
/// the whole accepted window (14 days of 6-hour tag epochs), with 500
/// contacts: the per-envelope cost must not depend on how many epochs are
/// in use.
fn tag_lookup(c: &mut Criterion) {
    use ferry_core::crypto::tags::TAG_EPOCH_SECS;
    let mut g = c.benchmark_group("tags");
    let mut rng = rand::rng();
    let mut me = Keyring::new(Identity::generate(&mut rng));
    let mut senders = Vec::new();
    for _ in 0..500 {
        let mut other = Keyring::new(Identity::generate(&mut rng));
        let card = other.identity_mut().contact_card(None, NOW, 0).unwrap();
        let _ = me.add_contact(card, Trust::Unverified).unwrap();
        senders.push(other);
    }
    let mine = me.identity_mut().contact_card(None, NOW, 0).unwrap();
    let sender = &mut senders[0];
    let _ = sender.add_contact(mine, Trust::Unverified).unwrap();
    let to = me.identity().identity_key();
    for epochs in [1u64, 16, 50] {
        let envelopes: Vec<v1::Envelope> = (0..epochs)
            .map(|i| {
                sender
                    .seal(&to, &text(), NOW + 3600 + i * TAG_EPOCH_SECS, &mut rng)
                    .unwrap()
            })
            .collect();
        let mut next = 0usize;
        g.bench_function(
            format!("is_for_us, 500 contacts, expiries over {epochs} epochs"),
            |bench| {
                bench.iter(|| {
                    let e = &envelopes[next % envelopes.len()];
                    next += 1;
                    black_box(me.is_for_us(&e.recipient_tag, e.expiry))
                })
            },
        );
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitive");
    let mut rng = rand::rng();
    let secret = StaticSecret::random_from_rng(&mut rng);
    let public = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
    g.bench_function("X25519 DH", |bench| {
        bench.iter(|| black_box(secret.diffie_hellman(&public)))
    });

    let cipher = XChaCha20Poly1305::new(&Array::from([7u8; 32]));
    let nonce = Array::from([1u8; 24]);
    let mut buf = vec![0u8; 1024];
    g.bench_function("XChaCha20-Poly1305 seal 1 KiB", |bench| {
        bench.iter(|| {
            black_box(cipher.encrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into()))
        })
    });

    let signing = SigningKey::generate(&mut rng);
    g.bench_function("Ed25519 sign", |bench| {
        bench.iter(|| black_box(signing.sign(b"message")))
    });

    // vodozemac alone, for the session layer's share of the cost.
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    let mut session = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let plaintext = vec![0x61u8; 1024];
    g.bench_function("Olm encrypt 1 KiB (vodozemac)", |bench| {
        bench.iter(|| black_box(session.encrypt(&plaintext).unwrap()))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = ferry, tag_lookup, primitives }
criterion_main!(benches);
