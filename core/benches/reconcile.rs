//! Reconciliation traffic against the payload it recovers, for 10k-element
//! sets at 0.1%, 1% and 10% difference.
//!
//! `cargo bench -p ferry-core --bench reconcile`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use ferry_core::{
    proto::{encode, v1},
    reconcile::{IdSet, Role},
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

type Id = [u8; 32];

fn frame(kind: v1::sync_frame::Kind) -> usize {
    encode(&v1::SyncFrame {
        version: 1,
        kind: Some(kind),
    })
    .len()
}

/// Returns (reconciliation bytes incl. want lists, rounds, missing IDs).
fn run(n: usize, diff: usize, seed: u64) -> (usize, usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let common: Vec<Id> = (0..n - diff / 2).map(|_| rng.random()).collect();
    let only_a: Vec<Id> = (0..diff / 2).map(|_| rng.random()).collect();
    let only_b: Vec<Id> = (0..diff - diff / 2).map(|_| rng.random()).collect();
    let a = IdSet::new(common.iter().chain(&only_a).copied().collect());
    let b = IdSet::new(common.iter().chain(&only_b).copied().collect());
    let mut msg = a.initiate();
    let mut bytes = frame(v1::sync_frame::Kind::Reconcile(msg.clone()));
    let (mut have, mut need, mut rounds) = (0, 0, 0);
    loop {
        rounds += 1;
        let Some(reply) = b.process(&msg, Role::Responder).unwrap().reply else {
            break;
        };
        bytes += frame(v1::sync_frame::Kind::Reconcile(reply.clone()));
        let out = a.process(&reply, Role::Initiator).unwrap();
        have += out.have.len();
        need += out.need.len();
        match out.reply {
            Some(next) => {
                bytes += frame(v1::sync_frame::Kind::Reconcile(next.clone()));
                msg = next;
            }
            None => break,
        }
    }
    assert_eq!(have + need, diff);
    // The pull: one want list for what the initiator lacks.
    bytes += frame(v1::sync_frame::Kind::Want(v1::WantEnvelopes {
        ids: vec![0; 32 * need],
    }));
    (bytes, rounds, have + need)
}

fn main() {
    // Encoded sizes of envelopes in the two smallest buckets (a short text
    // fits 512 B; a 1 KiB message takes the 2 KiB bucket).
    let envelope = |body: usize| {
        encode(&v1::Envelope {
            version: 1,
            content_id: vec![0; 32],
            expiry: 1_700_000_000,
            hop_limit: 16,
            copy_budget: 0,
            recipient_tag: vec![0; 16],
            stamp: vec![],
            sealed_body: vec![0; body],
            delivery_commitment: vec![0; 16],
        })
        .len()
    };
    let (small, large) = (envelope(512), envelope(2048));
    println!(
        "| difference (of 10k each) | missing | rounds | reconciliation bytes | per missing ID | total ÷ payload (512 B bucket, {small} B) | total ÷ payload (2 KiB bucket, {large} B) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, diff) in [("0.1%", 10), ("1%", 100), ("10%", 1000)] {
        let (bytes, rounds, missing) = run(10_000, diff * 2, 42);
        let ratio = |env: usize| (bytes + missing * env) as f64 / (missing * env) as f64;
        println!(
            "| {label} | {missing} | {rounds} | {bytes} | {:.0} B | {:.2}× | {:.2}× |",
            bytes as f64 / missing as f64,
            ratio(small),
            ratio(large)
        );
    }
}
