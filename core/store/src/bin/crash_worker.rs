//! Crash-test worker (used by `tests/crash.rs`, not a user tool): two
//! engines on sled stores in `DIR/a` and `DIR/b`; A sends to B in a loop,
//! B delivers and acknowledges. It prints one line per durable fact and is
//! killed with SIGKILL at random points by the test.
//!
//! Lines: `OUTBOX <id>` (at start: A's messages without receipt),
//! `INBOX <id>` (at start: B's deliveries the app has not acknowledged), `READY`,
//! `SENT <id>` (after `send` returned), `DELIVERED <id>` (B handed it to the
//! app for the first time), `REDELIVERED <id>` (handed out again after a
//! restart because the app had not acknowledged it), `ACKED <id>` (A got the
//! receipt). The worker acknowledges each delivery right after printing it.

use std::{error::Error, path::PathBuf, time::SystemTime};

use ferry_core::{
    crypto::Trust,
    engine::{Engine, EngineConfig, Event, Input, Output, PeerId, SourceId},
    identity::Identity,
};
use ferry_store::{KdfParams, SledStore};
use rand::{SeedableRng as _, rngs::StdRng};

type Node = Engine<SledStore, StdRng>;

thread_local! {
    /// Deliveries printed by B, to acknowledge once the borrow of A ends.
    static ACKS: std::cell::RefCell<Vec<[u8; 16]>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    #[allow(clippy::disallowed_methods)] // a driver reads the clock
    let now = SystemTime::now();
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn open(dir: &std::path::Path, name: &str) -> Result<Node, Box<dyn Error>> {
    let store = SledStore::open(
        &dir.join(name),
        name.as_bytes(),
        KdfParams::insecure_for_tests(),
    )?;
    let key = store.keyring_key();
    let rng = StdRng::from_rng(&mut rand::rng());
    Ok(Engine::open(
        store,
        key,
        Identity::generate,
        EngineConfig::default(),
        rng,
        now(),
    )?)
}

/// Moves outputs between the two engines until both are quiet.
fn pump(a: &mut Node, b: &mut Node) -> Result<(), Box<dyn Error>> {
    loop {
        let mut moved = false;
        while let Some(o) = a.poll_output() {
            moved = true;
            let frame = matches!(o, Output::SendFrame { .. });
            deliver(o, b, PeerId(0), false)?;
            if frame {
                // Delivered in-process: acknowledged at once.
                a.handle(Input::FrameAcked { peer: PeerId(1) }, now())?;
            }
        }
        while let Some(o) = b.poll_output() {
            moved = true;
            let frame = matches!(o, Output::SendFrame { .. });
            deliver(o, a, PeerId(1), true)?;
            if frame {
                b.handle(Input::FrameAcked { peer: PeerId(0) }, now())?;
            }
        }
        for id in ACKS.with(|acks| std::mem::take(&mut *acks.borrow_mut())) {
            b.ack_delivery(&ferry_core::engine::MessageId(id))?;
        }
        if !moved {
            return Ok(());
        }
    }
}

fn deliver(
    output: Output,
    other: &mut Node,
    from: PeerId,
    from_b: bool,
) -> Result<(), Box<dyn Error>> {
    let now = now();
    match output {
        Output::Publish { bytes, .. } => {
            other.handle(
                Input::Gossip {
                    from,
                    bytes: &bytes,
                },
                now,
            )?;
        }
        Output::SendFrame { bytes, .. } => {
            other.handle(
                Input::Frame {
                    from,
                    bytes: &bytes,
                },
                now,
            )?;
        }
        Output::Deliver(d) if from_b => {
            let kind = if d.redelivery {
                "REDELIVERED"
            } else {
                "DELIVERED"
            };
            println!("{kind} {}", hex(d.message_id.as_bytes()));
            // `other` is A here; B's acknowledgement happens in `pump`.
            ACKS.with(|acks| acks.borrow_mut().push(d.message_id.0));
        }
        Output::Event(Event::Delivered { message_id }) if !from_b => {
            println!("ACKED {}", hex(message_id.as_bytes()));
        }
        _ => {}
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: crash_worker DIR")?);
    let mut a = open(&dir, "a")?;
    let mut b = open(&dir, "b")?;
    let (ka, kb) = (
        a.keyring().identity().identity_key(),
        b.keyring().identity().identity_key(),
    );
    if a.keyring().contact(&kb).is_none() || b.keyring().contact(&ka).is_none() {
        let t = now();
        let ca = a.keyring_mut().identity_mut().contact_card(None, t, 4)?;
        let cb = b.keyring_mut().identity_mut().contact_card(None, t, 4)?;
        let _ = a.add_contact(cb, Trust::Verified)?;
        let _ = b.add_contact(ca, Trust::Verified)?;
    }
    for id in a.outbox_message_ids() {
        println!("OUTBOX {}", hex(id.as_bytes()));
    }
    for id in b.inbox_message_ids() {
        println!("INBOX {}", hex(id.as_bytes()));
    }
    println!("READY");
    // Deliveries not acknowledged before the last kill come out again.
    pump(&mut a, &mut b)?;
    let t = now();
    a.handle(
        Input::PeerUp {
            peer: PeerId(1),
            trusted: true,
            initiator: true,
            source: SourceId(PeerId(1).0),
        },
        t,
    )?;
    b.handle(
        Input::PeerUp {
            peer: PeerId(0),
            trusted: true,
            initiator: false,
            source: SourceId(PeerId(0).0),
        },
        t,
    )?;
    pump(&mut a, &mut b)?;
    for i in 0u64.. {
        let id = a.send(&kb, &i.to_be_bytes(), now())?;
        println!("SENT {}", hex(id.as_bytes()));
        pump(&mut a, &mut b)?;
    }
    Ok(())
}
