//! Bytes a recipient publishes to answer a burst of messages from one
//! contact: receipts one per message, released at once (the old design;
//! zero delays), against receipts batched per contact while they wait for
//! their random release delay (the design since threat item 21). Prints a
//! table; bytes, not time, so the profile does not matter.
//!
//! `cargo bench -p ferry-core --bench receipts`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_core::{
    crypto::Trust,
    engine::{Engine, EngineConfig, Input, MemoryStore, Output, PeerId},
    identity::Identity,
};
use rand::{SeedableRng as _, rngs::StdRng};

const T0: u64 = 1_700_000_000;

fn engine(seed: u64, config: EngineConfig) -> Engine<MemoryStore, StdRng> {
    Engine::open(
        MemoryStore::new(),
        [seed as u8 + 1; 32],
        Identity::generate,
        config,
        StdRng::seed_from_u64(seed),
        T0,
    )
    .unwrap()
}

/// (envelopes, bytes) the recipient publishes for `burst` messages
/// arriving within a few seconds.
fn answer(burst: usize, config: EngineConfig) -> (usize, usize) {
    let mut alice = engine(1, config);
    let mut bob = engine(2, config);
    let ca = alice
        .keyring_mut()
        .identity_mut()
        .contact_card(None, T0, 4)
        .unwrap();
    let cb = bob
        .keyring_mut()
        .identity_mut()
        .contact_card(None, T0, 4)
        .unwrap();
    let _ = alice.add_contact(cb.clone(), Trust::Verified).unwrap();
    let _ = bob.add_contact(ca, Trust::Verified).unwrap();
    while bob.poll_output().is_some() {}
    let mut published = (0, 0);
    let mut count = |bob: &mut Engine<MemoryStore, StdRng>| {
        while let Some(o) = bob.poll_output() {
            if let Output::Publish { bytes, .. } = o {
                published.0 += 1;
                published.1 += bytes.len();
            }
        }
    };
    for i in 0..burst {
        let now = T0 + i as u64 / 10;
        alice.send(cb.identity_key(), &[7; 200], now).unwrap();
        while let Some(o) = alice.poll_output() {
            if let Output::Publish { bytes, .. } = o {
                bob.handle(
                    Input::Gossip {
                        from: PeerId(1),
                        bytes: &bytes,
                    },
                    now,
                )
                .unwrap();
                count(&mut bob);
            }
        }
    }
    // Let every delay run out.
    for t in 0..400 {
        bob.handle(Input::Timeout, T0 + 10 + t).unwrap();
        count(&mut bob);
    }
    published
}

fn main() {
    let immediate = EngineConfig {
        proof_delay_secs: (0, 0),
        receipt_delay_secs: (0, 0),
        ..EngineConfig::default()
    };
    println!("| burst | design | envelopes published | bytes | bytes per message |");
    println!("|---|---|---|---|---|");
    for burst in [1usize, 10, 100, 1000] {
        for (name, config) in [
            ("one receipt each, at once", immediate),
            ("batched, delayed", EngineConfig::default()),
        ] {
            let (n, bytes) = answer(burst, config);
            println!(
                "| {burst} | {name} | {n} | {bytes} | {:.0} |",
                bytes as f64 / burst as f64
            );
        }
    }
}
