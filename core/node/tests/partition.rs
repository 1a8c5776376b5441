//! Partition and heal: two halves of ten nodes each exchange mail that
//! cannot cross; one bridge connection later, reconciliation carries all
//! of it across (gossip never re-offers old messages).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use support::*;

const HALF: usize = 10;
const PER_PAIR: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_heal_through_one_bridge() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..2 * HALF {
        nodes.push(spawn(root.path(), &format!("n{i}")).await);
    }
    // Each half: a ring plus random chords; nothing between the halves.
    let mut rng = StdRng::seed_from_u64(11);
    for base in [0, HALF] {
        for i in 0..HALF {
            connect(&nodes[base + i], &nodes[base + (i + 1) % HALF]).await;
        }
        for _ in 0..3 {
            let (a, b) = (rng.random_range(0..HALF), rng.random_range(0..HALF));
            if a != b {
                connect(&nodes[base + a], &nodes[base + b]).await;
            }
        }
    }
    // Contacts across the partition: A_i with B_i and B_{i+1}.
    let mut pairs = Vec::new();
    for i in 0..HALF {
        pairs.push((i, HALF + i));
        pairs.push((i, HALF + (i + 1) % HALF));
    }
    for &(a, b) in &pairs {
        introduce(&nodes[a], &nodes[b]).await;
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_connected(&refs, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Each side sends 200 messages to the other side.
    let mut sent = Vec::new(); // (sender, recipient, id)
    for &(a, b) in &pairs {
        for (x, y) in [(a, b), (b, a)] {
            for (id, _) in send_many(&nodes[x], &nodes[y], PER_PAIR, "p").await {
                sent.push((x, y, id));
            }
        }
    }
    assert_eq!(sent.len(), 400);
    // Both halves spread their own mail to every node of the half.
    for (i, n) in nodes.iter().enumerate() {
        let node = n.node.clone();
        wait_until(60, &format!("node {i} holds its half's 200"), || {
            let node = node.clone();
            async move { node.stats().await.unwrap().held_envelopes >= 200 }
        })
        .await;
    }
    for n in &nodes {
        assert!(
            n.log.lock().unwrap().received.is_empty(),
            "nothing crossed yet"
        );
    }
    let (a0, b0) = (&nodes[0], &nodes[HALF]);
    let before_a = stats(a0).await;
    let before_b = stats(b0).await;

    // One bridge.
    connect(a0, b0).await;
    for &(x, y, id) in &sent {
        let log = nodes[y].log.clone();
        wait_until(120, &format!("message {x}->{y} crosses"), || {
            let log = log.clone();
            async move { log.lock().unwrap().received.iter().any(|r| r.1 == id) }
        })
        .await;
    }
    for &(x, y, id) in &sent {
        let log = nodes[x].log.clone();
        wait_until(120, &format!("receipt {x}->{y} returns"), || {
            let log = log.clone();
            async move { log.lock().unwrap().delivered.contains(&id) }
        })
        .await;
    }
    for n in &nodes {
        for (_, count) in receive_counts(n) {
            assert_eq!(count, 1, "exactly once");
        }
    }
    // Reconciliation did the work: each bridge end received the other
    // half's 200 envelopes in sync batches.
    let after_a = stats(a0).await;
    let after_b = stats(b0).await;
    let synced_a = after_a.engine.sync_envelopes_received - before_a.engine.sync_envelopes_received;
    let synced_b = after_b.engine.sync_envelopes_received - before_b.engine.sync_envelopes_received;
    assert!(synced_a >= 200, "A side got {synced_a} envelopes by sync");
    assert!(synced_b >= 200, "B side got {synced_b} envelopes by sync");
    let sync_bytes = (after_a.engine.sync_bytes_sent - before_a.engine.sync_bytes_sent)
        + (after_b.engine.sync_bytes_sent - before_b.engine.sync_bytes_sent);
    println!(
        "heal: {synced_a} + {synced_b} envelopes by sync, {sync_bytes} sync bytes sent by the bridge"
    );
    for n in &nodes {
        n.node.shutdown().await;
    }
}
