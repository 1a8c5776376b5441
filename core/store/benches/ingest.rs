//! Durable envelope ingest into the sled store, through the engine (decode,
//! ID check, quotas, encrypted commit + flush), beside raw sled baselines.
//!
//! `cargo bench -p ferry-store --bench ingest`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::time::Instant;

use ferry_core::{
    crypto::{Keyring, Trust},
    engine::{Engine, EngineConfig, Input, PeerId, SourceId},
    identity::Identity,
    proto::{self, v1},
};
use ferry_store::{KdfParams, SledStore};
use rand::{SeedableRng as _, rngs::StdRng};

const NOW: u64 = 1_700_000_000;

/// `n` valid envelopes with 1 KiB bodies, to 50 different recipients.
fn envelopes(n: usize) -> Vec<v1::Envelope> {
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(n);
    let pairs: Vec<(Keyring, ferry_core::keys::IdentityKey)> = (0..50)
        .map(|_| {
            let mut a = Keyring::new(Identity::generate(&mut rng));
            let mut b = Keyring::new(Identity::generate(&mut rng));
            let card = b.identity_mut().contact_card(None, NOW, 0).unwrap();
            let key = *card.identity_key();
            let _ = a.add_contact(card, Trust::Unverified).unwrap();
            (a, key)
        })
        .collect();
    let mut pairs = pairs;
    for i in 0..n {
        let (a, to) = &mut pairs[i % 50];
        let payload = v1::Payload {
            kind: Some(v1::payload::Kind::Text(v1::TextMessage {
                message_id: vec![1; 16],
                sent_at: NOW,
                body: vec![0x61; 1024],
                delivery_secret: vec![],
            })),
        };
        let mut e = a.seal(to, &payload, NOW + 3600, &mut rng).unwrap();
        e.hop_limit = 8;
        out.push(e);
    }
    out
}

fn relay(dir: &std::path::Path) -> Engine<SledStore, StdRng> {
    let store = SledStore::open(dir, b"bench", KdfParams::insecure_for_tests()).unwrap();
    let key = store.keyring_key();
    let mut config = EngineConfig::default();
    config.quotas.global_bytes = u64::MAX;
    config.quotas.per_peer_bytes = u64::MAX;
    let mut e = Engine::open(
        store,
        key,
        Identity::generate,
        config,
        StdRng::seed_from_u64(1),
        NOW,
    )
    .unwrap();
    e.handle(
        Input::PeerUp {
            peer: PeerId(1),
            trusted: false,
            initiator: false,
            source: SourceId(PeerId(1).0),
        },
        NOW,
    )
    .unwrap();
    while e.poll_output().is_some() {}
    e
}

fn main() {
    let batch_n = 10_000;
    let single_n = 1_000;
    let all = envelopes(batch_n + single_n);
    let (batched, single) = all.split_at(batch_n);

    // Ferry, batched: sync frames of 100 envelopes, one commit each.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = relay(dir.path());
    let frames: Vec<Vec<u8>> = batched
        .chunks(100)
        .map(|c| {
            proto::encode(&v1::SyncFrame {
                version: 1,
                kind: Some(v1::sync_frame::Kind::Envelopes(v1::EnvelopeBatch {
                    envelopes: c.to_vec(),
                })),
            })
        })
        .collect();
    let start = Instant::now();
    for f in &frames {
        engine
            .handle(
                Input::Frame {
                    from: PeerId(1),
                    bytes: f,
                },
                NOW,
            )
            .unwrap();
        while engine.poll_output().is_some() {}
    }
    let batched_rate = batch_n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(engine.held_count(), batch_n);

    // Ferry, one envelope per commit (gossip arrivals).
    let dir = tempfile::tempdir().unwrap();
    let mut engine = relay(dir.path());
    let encoded: Vec<Vec<u8>> = single.iter().map(proto::encode).collect();
    let start = Instant::now();
    for e in &encoded {
        engine
            .handle(
                Input::Gossip {
                    from: PeerId(1),
                    bytes: e,
                },
                NOW,
            )
            .unwrap();
        while engine.poll_output().is_some() {}
    }
    let single_rate = single_n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(engine.held_count(), single_n);

    // Raw sled baselines with the same record sizes, no encryption.
    let value = vec![0x61u8; encoded[0].len()];
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let start = Instant::now();
    for i in 0..single_n as u64 {
        db.insert(i.to_be_bytes(), value.as_slice()).unwrap();
        db.flush().unwrap();
    }
    let raw_single = single_n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for chunk in 0..(batch_n as u64 / 100) {
        let mut batch = sled::Batch::default();
        for i in 0..100u64 {
            batch.insert(
                &(1_000_000 + chunk * 100 + i).to_be_bytes(),
                value.as_slice(),
            );
        }
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let raw_batched = batch_n as f64 / start.elapsed().as_secs_f64();

    println!(
        "| ingest (envelope ≈ {} B) | durable envelopes/s |",
        encoded[0].len()
    );
    println!("|---|---:|");
    println!(
        "| Ferry engine + sled, batches of 100 (one commit + flush each) | {batched_rate:.0} |"
    );
    println!("| Ferry engine + sled, one commit + flush per envelope | {single_rate:.0} |");
    println!("| raw sled, batch of 100 + flush (no engine, no encryption) | {raw_batched:.0} |");
    println!("| raw sled, insert + flush per record | {raw_single:.0} |");
}
