//! The sled store: atomic commits, reopening, encryption at rest (threat
//! item 18), wipe, and the engine running on it (replay across a real
//! restart, item 5).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{
    crypto::Trust,
    engine::{
        Custody, Engine, EngineConfig, Input, Output, PeerId, SourceId, Store, StoreOp, Verdict,
    },
    identity::Identity,
};
use ferry_store::{KdfParams, SledStore, StoreError, WipeStep};
use rand::{SeedableRng as _, rngs::StdRng};

const PASS: &[u8] = b"correct horse battery staple";
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";

fn open(dir: &std::path::Path, pass: &[u8]) -> Result<SledStore, StoreError> {
    SledStore::open(dir, pass, KdfParams::insecure_for_tests())
}

fn sample_ops() -> Vec<StoreOp> {
    let mut envelope = MARKER.to_vec();
    envelope.extend_from_slice(&[0x42; 100]);
    vec![
        StoreOp::PutEnvelope {
            id: [1; 32],
            custody: Custody::Own,
            bytes: envelope,
        },
        StoreOp::PutEnvelope {
            id: [2; 32],
            custody: Custody::Stranger,
            bytes: vec![9; 10],
        },
        StoreOp::PutSeen {
            id: [3; 32],
            expiry: 77,
        },
        StoreOp::PutDelivered {
            id: [4; 32],
            secret: [5; 16],
            expiry: 88,
        },
        StoreOp::PutOutbox {
            id: [1; 32],
            record: MARKER.to_vec(),
        },
        StoreOp::PutKeyring(MARKER.to_vec()),
    ]
}

#[test]
fn commits_survive_reopening_and_are_atomic_sets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), PASS).unwrap();
        store.commit(sample_ops()).unwrap();
        store
            .commit(vec![StoreOp::RemoveEnvelope([2; 32])])
            .unwrap();
    }
    let store = open(dir.path(), PASS).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.envelopes.len(), 1);
    assert_eq!(loaded.envelopes[&[1; 32]].0, Custody::Own);
    assert!(loaded.envelopes[&[1; 32]].1.starts_with(MARKER));
    assert_eq!(loaded.seen[&[3; 32]], 77);
    assert_eq!(loaded.delivered[&[4; 32]], ([5; 16], 88));
    assert_eq!(loaded.outbox[&[1; 32]], MARKER);
    assert_eq!(loaded.keyring.as_deref(), Some(MARKER));
    assert_eq!(
        store.envelope(&[1; 32]).unwrap().unwrap(),
        loaded.envelopes[&[1; 32]].1
    );
    assert!(store.envelope(&[2; 32]).unwrap().is_none());
}

#[test]
fn a_closed_store_reopens_at_once_and_a_live_one_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    // Close and reopen in a tight loop: sled's background threads may hold
    // the file lock a moment after the handle is dropped, which once made a
    // reopen fail. The open waits that moment out.
    for round in 0..20u8 {
        let mut store = open(dir.path(), PASS).unwrap();
        store
            .commit(vec![StoreOp::PutSeen {
                id: [round; 32],
                expiry: u64::from(round),
            }])
            .unwrap();
    }
    let live = open(dir.path(), PASS).unwrap();
    assert_eq!(live.load().unwrap().seen.len(), 20);
    let started = std::time::Instant::now();
    assert!(matches!(open(dir.path(), PASS), Err(StoreError::Locked)));
    assert!(started.elapsed() >= ferry_store::LOCK_WAIT);
    drop(live);
    open(dir.path(), PASS).unwrap();
}

fn disk_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    walk(dir).iter().any(|f| {
        std::fs::read(f)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}

#[test]
fn nothing_is_readable_on_disk_or_without_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), PASS).unwrap();
        store.commit(sample_ops()).unwrap();
    }
    assert!(
        !disk_contains(dir.path(), MARKER),
        "plaintext found on disk"
    );
    assert!(
        !disk_contains(dir.path(), &[1; 32]),
        "content ID found on disk"
    );
    assert!(
        !disk_contains(dir.path(), &[5; 16]),
        "delivery secret found on disk"
    );
    assert!(matches!(
        open(dir.path(), b"wrong"),
        Err(StoreError::WrongPassphrase)
    ));
    assert!(open(dir.path(), PASS).is_ok());
}

/// Every file under `dir` with its bytes.
fn files_and_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_wrong_passphrase_leaves_every_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path(), PASS).unwrap();
        store.commit(sample_ops()).unwrap();
        store.flush().unwrap();
    }
    let before = files_and_bytes(dir.path());
    for _ in 0..3 {
        assert!(matches!(
            open(dir.path(), b"wrong"),
            Err(StoreError::WrongPassphrase)
        ));
    }
    let after = files_and_bytes(dir.path());
    let changed: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|(p, b)| (p.clone(), b.len()))
        .collect();
    assert!(
        changed.is_empty(),
        "changed by a wrong passphrase: {changed:?}"
    );
    assert_eq!(before.len(), after.len());
    // The right one still opens it, and its records are there.
    let store = open(dir.path(), PASS).unwrap();
    drop(store);
}

#[test]
fn wipe_destroys_the_key_first_then_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut store = open(&path, PASS).unwrap();
    store.commit(sample_ops()).unwrap();
    // Step one alone: even the right passphrase no longer opens it.
    let mut wipe = store.wipe_steps();
    assert_eq!(wipe.step().unwrap(), Some(WipeStep::DestroyKey));
    drop(wipe);
    assert!(matches!(open(&path, PASS), Err(StoreError::KeyDestroyed)));

    let path2 = dir.path().join("store2");
    let mut store = open(&path2, PASS).unwrap();
    store.commit(sample_ops()).unwrap();
    let started = std::time::Instant::now();
    store.wipe().unwrap();
    eprintln!("wipe took {:?}", started.elapsed());
    assert!(!path2.exists());
}

fn engine(dir: &std::path::Path, seed: u64) -> Engine<SledStore, StdRng> {
    let store = open(dir, PASS).unwrap();
    let key = store.keyring_key();
    Engine::open(
        store,
        key,
        Identity::generate,
        EngineConfig::default(),
        StdRng::seed_from_u64(seed),
        1_700_000_000,
    )
    .unwrap()
}

#[test]
fn an_engine_on_sled_keeps_its_outbox_and_rejects_replays_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let now = 1_700_000_000;
    let mut a = engine(&da, 1);
    let mut b = engine(&db, 2);
    let ca = a
        .keyring_mut()
        .identity_mut()
        .contact_card(None, now, 2)
        .unwrap();
    let cb = b
        .keyring_mut()
        .identity_mut()
        .contact_card(None, now, 2)
        .unwrap();
    let _ = a.add_contact(cb, Trust::Verified).unwrap();
    let _ = b.add_contact(ca, Trust::Verified).unwrap();
    let to = b.keyring().identity().identity_key();
    let id = a.send(&to, b"survives restarts", now).unwrap();
    let Some(Output::Publish { bytes, .. }) = a.poll_output() else {
        panic!()
    };
    drop(a);

    // A restarts: the message is still waiting for its receipt.
    let a = engine(&da, 3);
    assert_eq!(a.outbox_message_ids(), vec![id]);

    // B receives it, restarts, and a replay is not delivered again.
    b.handle(
        Input::PeerUp {
            peer: PeerId(0),
            trusted: false,
            initiator: false,
            source: SourceId(PeerId(0).0),
        },
        now,
    )
    .unwrap();
    b.handle(
        Input::Gossip {
            from: PeerId(0),
            bytes: &bytes,
        },
        now,
    )
    .unwrap();
    let mut deliveries = Vec::new();
    while let Some(o) = b.poll_output() {
        if let Output::Deliver(d) = o {
            deliveries.push(d.message_id);
        }
    }
    assert_eq!(deliveries, vec![id]);
    // Not acknowledged yet: a restart hands it out again, flagged.
    drop(b);
    let mut b = engine(&db, 5);
    let Some(Output::Deliver(again)) = b.poll_output() else {
        panic!("unacknowledged delivery lost")
    };
    assert!(again.redelivery);
    assert!(b.ack_delivery(&id).unwrap());
    drop(b);
    let mut b = engine(&db, 4);
    b.handle(
        Input::PeerUp {
            peer: PeerId(0),
            trusted: false,
            initiator: false,
            source: SourceId(PeerId(0).0),
        },
        now,
    )
    .unwrap();
    let v = b
        .handle(
            Input::Gossip {
                from: PeerId(0),
                bytes: &bytes,
            },
            now + 5,
        )
        .unwrap();
    assert_eq!(v, Verdict::Ignore);
    while let Some(o) = b.poll_output() {
        assert!(
            !matches!(o, Output::Deliver(_)),
            "replay delivered after restart"
        );
    }
}
