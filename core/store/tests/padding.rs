//! Record lengths on disk (threat item 18): an attacker with the raw sled
//! trees compares the sealed lengths of inbox, outbox, envelope and keyring
//! records. Within a bucket they are all equal, so a record's length says
//! no more about a message body than the envelope did on the wire.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::{collections::BTreeSet, path::Path};

use ferry_core::engine::{Custody, Store, StoreOp};
use ferry_store::{KdfParams, SledStore};

/// The sealed lengths of every record in `tree`, read with sled directly
/// (the store closed), as an attacker with the disk would.
fn sealed_lengths(dir: &Path, tree: &str) -> Vec<usize> {
    let db = sled::Config::new()
        .path(dir)
        .open()
        .or_else(|_| {
            // sled's I/O threads may hold the lock a moment after close.
            std::thread::sleep(std::time::Duration::from_millis(200));
            sled::open(dir)
        })
        .unwrap();
    db.open_tree(tree)
        .unwrap()
        .iter()
        .map(|kv| kv.unwrap().1.len())
        .collect()
}

fn distinct(lengths: &[usize]) -> BTreeSet<usize> {
    lengths.iter().copied().collect()
}

#[test]
fn records_of_different_body_lengths_have_equal_lengths_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let bodies: Vec<Vec<u8>> = [1usize, 40, 300, 700]
        .iter()
        .map(|n| vec![0x61; *n])
        .collect();
    let mut ops = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let id = [u8::try_from(i).unwrap() + 1; 32];
        ops.push(StoreOp::PutInbox {
            id,
            record: body.clone(),
        });
        ops.push(StoreOp::PutOutbox {
            id,
            record: body.clone(),
        });
        // Envelopes of one wire bucket (512-byte sealed body) vary a little
        // with their header fields.
        ops.push(StoreOp::PutEnvelope {
            id,
            custody: Custody::Own,
            bytes: vec![7; 600 + i * 40],
        });
    }
    {
        let mut store = SledStore::open(&dir, b"pass", KdfParams::insecure_for_tests()).unwrap();
        store.commit(ops).unwrap();
        let loaded = store.load().unwrap();
        // Padding is transparent: the records come back exactly.
        let inbox: BTreeSet<Vec<u8>> = loaded.inbox.values().cloned().collect();
        assert_eq!(inbox, bodies.iter().cloned().collect());
        assert_eq!(loaded.envelopes[&[4; 32]].1.len(), 720);
    }
    for tree in ["inbox", "outbox", "envelopes"] {
        let lengths = sealed_lengths(&dir, tree);
        assert_eq!(lengths.len(), bodies.len());
        assert_eq!(
            distinct(&lengths).len(),
            1,
            "{tree}: record lengths on disk differ: {lengths:?}"
        );
    }
    assert_eq!(sealed_lengths(&dir, "inbox")[0], 896);
}

#[test]
fn a_longer_body_moves_to_the_next_bucket_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    {
        let mut store = SledStore::open(&dir, b"pass", KdfParams::insecure_for_tests()).unwrap();
        for (i, n) in [1000usize, 1500, 2300].into_iter().enumerate() {
            store
                .commit(vec![StoreOp::PutInbox {
                    id: [u8::try_from(i).unwrap(); 32],
                    record: vec![1; n],
                }])
                .unwrap();
        }
        // The keyring's size grows with its contacts; it is bucketed too.
        store
            .commit(vec![StoreOp::PutKeyring(vec![1; 10])])
            .unwrap();
    }
    let lengths = sealed_lengths(&dir, "inbox");
    assert_eq!(distinct(&lengths), BTreeSet::from([2432]));
    assert_eq!(sealed_lengths(&dir, "meta"), vec![896]);
}
