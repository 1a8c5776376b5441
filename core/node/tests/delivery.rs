//! Multi-node delivery on loopback: real libp2p (TCP, Noise, yamux), real
//! sled stores in temp dirs, several nodes in one process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::HashSet;

use ferry_node::{ConfigError, Node, NodeError};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use support::*;

/// Pairs (i, n-1-i) exchange `per_pair` messages each way over the given
/// links; every message must arrive exactly once and every receipt return.
async fn exchange(nodes: &[TestNode], links: &[(usize, usize)], per_pair: usize) {
    for &(a, b) in links {
        connect(&nodes[a], &nodes[b]).await;
    }
    let n = nodes.len();
    let mut expected = Vec::new();
    for i in 0..n / 2 {
        let (a, b) = (&nodes[i], &nodes[n - 1 - i]);
        introduce(a, b).await;
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_connected(&refs, 1).await;
    // Let gossipsub exchange subscriptions and build its mesh.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for i in 0..n / 2 {
        let (a, b) = (n - 1 - i, i);
        for (x, y) in [(i, a), (a, b)] {
            for (id, body) in send_many(&nodes[x], &nodes[y], per_pair, &format!("{x}->{y}")).await
            {
                expected.push((x, y, id, body));
            }
        }
    }
    for (x, y, id, body) in &expected {
        let (rx, tx) = (&nodes[*y], &nodes[*x]);
        let (id, body) = (*id, body.clone());
        let from = tx.node.identity();
        wait_until(60, &format!("message {x}->{y} delivered"), || {
            let log = rx.log.clone();
            let body = body.clone();
            async move {
                log.lock()
                    .unwrap()
                    .received
                    .iter()
                    .any(|(f, i, b, _)| *f == from && *i == id && *b == body)
            }
        })
        .await;
        wait_until(60, &format!("receipt {x}->{y}"), || {
            let log = tx.log.clone();
            async move { log.lock().unwrap().delivered.contains(&id) }
        })
        .await;
    }
    // Exactly once: no fresh delivery twice, nothing unexpected.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut total = 0;
    for node in nodes {
        for (id, count) in receive_counts(node) {
            assert_eq!(count, 1, "message {id:?} delivered {count} times");
            total += 1;
        }
        let receipts = delivered(node);
        let unique: HashSet<_> = receipts.iter().collect();
        assert_eq!(unique.len(), receipts.len(), "duplicate receipt events");
    }
    assert_eq!(total, expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_in_a_line() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..10 {
        nodes.push(spawn(root.path(), &format!("n{i}")).await);
    }
    let links: Vec<(usize, usize)> = (0..9).map(|i| (i, i + 1)).collect();
    exchange(&nodes, &links, 4).await;
    // Every hop relayed: the middle node took envelopes into custody.
    assert!(stats(&nodes[5]).await.engine.stored > 0);
    for n in &nodes {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_in_a_random_mesh() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..10 {
        nodes.push(spawn(root.path(), &format!("n{i}")).await);
    }
    // A random spanning tree plus random chords: connected, irregular.
    let mut rng = StdRng::seed_from_u64(7);
    let mut links = Vec::new();
    for i in 1..10 {
        links.push((rng.random_range(0..i), i));
    }
    for _ in 0..6 {
        let (a, b) = (rng.random_range(0..10), rng.random_range(0..10));
        if a != b && !links.contains(&(a, b)) && !links.contains(&(b, a)) {
            links.push((a, b));
        }
    }
    exchange(&nodes, &links, 4).await;
    for n in &nodes {
        n.node.shutdown().await;
    }
}

/// A sends while B is down; relay R holds the envelopes; B starts later
/// (same store) and receives them; A gets the receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_mail_from_a_relay() {
    let root = tempfile::tempdir().unwrap();
    let relay = spawn_with(root.path(), "relay", |b| b.relay()).await;
    let a = spawn_with(root.path(), "a", |b| b.bootstrap(relay.addr.clone())).await;
    let b = spawn_with(root.path(), "b", |b| b.bootstrap(relay.addr.clone())).await;
    introduce(&a, &b).await;
    let b_identity = b.node.identity();
    let b_dir = b.dir.clone();
    b.node.shutdown().await;
    drop(b);

    wait_connected(&[&a, &relay], 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let body = format!("while you were away {i}").into_bytes();
        sent.push(a.node.send(&b_identity, &body).await.unwrap());
    }
    wait_until(30, "relay holds the envelopes", || {
        let r = relay.node.clone();
        async move { r.stats().await.unwrap().held_envelopes >= 5 }
    })
    .await;
    // A leaves too: only the relay has the mail now.
    a.node.disconnect(relay.node.peer_id()).await.unwrap();

    let b = start(builder(&b_dir).bootstrap(relay.addr.clone()), &b_dir).await;
    assert_eq!(b.node.identity(), b_identity, "same store, same identity");
    wait_until(30, "B receives all five", || {
        let log = b.log.clone();
        let sent = sent.clone();
        async move {
            let log = log.lock().unwrap();
            sent.iter()
                .all(|id| log.received.iter().any(|r| r.1 == *id))
        }
    })
    .await;
    assert!(
        b.log.lock().unwrap().sync_envelopes >= 5,
        "came by reconciliation"
    );
    // A comes back (bootstrap redial) and gets every receipt.
    wait_until(30, "A gets all receipts", || {
        let log = a.log.clone();
        let sent = sent.clone();
        async move {
            let log = log.lock().unwrap();
            sent.iter().all(|id| log.delivered.contains(id))
        }
    })
    .await;
    for n in [&a, &b, &relay] {
        n.node.shutdown().await;
    }
}

/// In-person pairing over a direct link: both sides see the same code and
/// end up verified contacts who can message each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_over_a_direct_link() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    connect(&a, &b).await;
    wait_connected(&[&a, &b], 1).await;
    // Closed by default: a pairing attempt goes nowhere.
    a.node.pair(b.node.peer_id()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(b.log.lock().unwrap().pairing_codes.is_empty());

    b.node.allow_pairing(true).await.unwrap();
    a.node.pair(b.node.peer_id()).await.unwrap();
    wait_until(10, "both show a code", || {
        let (la, lb) = (a.log.clone(), b.log.clone());
        async move {
            !la.lock().unwrap().pairing_codes.is_empty()
                && !lb.lock().unwrap().pairing_codes.is_empty()
        }
    })
    .await;
    let code_a = a.log.lock().unwrap().pairing_codes[0].1;
    let code_b = b.log.lock().unwrap().pairing_codes[0].1;
    assert_eq!(code_a, code_b, "same short authentication string");
    let on_a = a
        .node
        .confirm_pairing(b.node.peer_id(), true)
        .await
        .unwrap();
    let on_b = b
        .node
        .confirm_pairing(a.node.peer_id(), true)
        .await
        .unwrap();
    assert_eq!(on_a, Some(b.node.identity()));
    assert_eq!(on_b, Some(a.node.identity()));
    let contacts = a.node.contacts().await.unwrap();
    assert!(
        contacts
            .iter()
            .any(|c| c.identity == b.node.identity() && c.verified)
    );
    let id = a.node.send(&b.node.identity(), b"paired").await.unwrap();
    wait_until(20, "message after pairing", || {
        let log = b.log.clone();
        async move { log.lock().unwrap().received.iter().any(|r| r.1 == id) }
    })
    .await;
    // No pairing waiting any more.
    assert!(matches!(
        a.node.confirm_pairing(b.node.peer_id(), true).await,
        Err(NodeError::UnknownPeer)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_bad_input() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(Node::builder().build().err(), Some(ConfigError::NoStorage));
    assert_eq!(
        Node::builder().storage(root.path(), "").build().err(),
        Some(ConfigError::EmptyPassphrase)
    );
    assert_eq!(
        Node::builder()
            .storage(root.path(), "p")
            .tcp(false)
            .quic(false)
            .build()
            .err(),
        Some(ConfigError::NoTransport)
    );
    assert!(matches!(
        Node::builder()
            .storage(root.path(), "p")
            .bootstrap("/ip4/127.0.0.1/tcp/1".parse().unwrap())
            .build(),
        Err(ConfigError::BootstrapWithoutPeerId(_))
    ));
    let a = spawn(root.path(), "a").await;
    assert!(matches!(
        a.node.add_contact("ferry1notacode").await,
        Err(NodeError::InvalidCode(ferry_node::CodeError::Checksum))
    ));
    // Sending to a stranger fails and stores nothing.
    let stranger = spawn(root.path(), "s").await;
    assert!(a.node.send(&stranger.node.identity(), b"x").await.is_err());
    assert_eq!(stats(&a).await.outbox, 0);
    // A wrong passphrase does not open the store.
    a.node.shutdown().await;
    let wrong = Node::builder()
        .storage(&a.dir, "wrong")
        .kdf(ferry_node::KdfParams::insecure_for_tests())
        .mdns(false)
        .build()
        .unwrap();
    assert!(matches!(Node::start(wrong).await, Err(NodeError::Store(_))));
    // After shutdown, calls fail cleanly.
    assert!(matches!(a.node.stats().await, Err(NodeError::Closed)));
}

/// Threat item 2: a client's network identity changes on every start (two
/// sessions cannot be linked by PeerId); a relay's stays (its address is
/// shared). The Ferry identity survives both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_network_ids_rotate_and_relay_ids_persist() {
    let root = tempfile::tempdir().unwrap();
    for relay in [false, true] {
        let name = if relay { "relay" } else { "client" };
        let dir = root.path().join(name);
        let make = |dir: &std::path::Path| {
            let b = builder(dir);
            if relay { b.relay() } else { b }
        };
        let first = start(make(&dir), &dir).await;
        let (peer1, id1) = (first.node.peer_id(), first.node.identity());
        first.node.shutdown().await;
        drop(first);
        let second = start(make(&dir), &dir).await;
        assert_eq!(second.node.identity(), id1, "{name}: same Ferry identity");
        if relay {
            assert_eq!(second.node.peer_id(), peer1, "relay keeps its PeerId");
        } else {
            assert_ne!(second.node.peer_id(), peer1, "client PeerId rotates");
        }
        second.node.shutdown().await;
    }
}

/// An app that stops reading events loses none of its messages: the node
/// drops events rather than stall the network, then says `Lagged` as soon
/// as there is room and hands out every unacknowledged message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_gets_lagged_and_every_message_again() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let db = root.path().join("b");
    let b = std::sync::Arc::new(
        Node::start(builder(&db).event_queue(16).build().unwrap())
            .await
            .unwrap(),
    );
    let mut events = b.events().unwrap();
    let code_b = b.contact_code().await.unwrap();
    let code_a = a.node.contact_code().await.unwrap();
    let b_key = a.node.add_contact(&code_b).await.unwrap();
    b.add_contact(&code_a).await.unwrap();
    a.node
        .dial(b.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    // The app is busy: nothing is read while 60 messages arrive.
    let mut sent = HashSet::new();
    for i in 0..60 {
        sent.insert(
            a.node
                .send(&b_key, format!("m{i}").as_bytes())
                .await
                .unwrap(),
        );
    }
    let node = b.clone();
    wait_until(30, "B stored all 60 (dropping events)", || {
        let node = node.clone();
        async move {
            let s = node.stats().await.unwrap();
            s.engine.delivered >= 60 && s.events_dropped > 0
        }
    })
    .await;
    // Now the app reads (and acknowledges) everything.
    let mut seen = HashSet::new();
    let mut lagged = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < sent.len() {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events keep coming until every message was seen")
            .unwrap();
        match event {
            ferry_node::NodeEvent::Lagged { missed } => lagged += missed,
            ferry_node::NodeEvent::Message(m) => {
                seen.insert(m.message_id);
                b.ack(m.message_id).await.unwrap();
            }
            _ => {}
        }
    }
    assert!(lagged > 0, "the app was told it lagged");
    assert_eq!(seen, sent);
    assert!(b.stats().await.unwrap().events_dropped > 0);
}
