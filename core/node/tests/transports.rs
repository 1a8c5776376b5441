//! The node's other links: QUIC, and a relay v2 circuit to a node that has
//! no address of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use ferry_node::{KdfParams, Multiaddr, Node, PeerId};
use libp2p::multiaddr::Protocol;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_quic_only() {
    let root = tempfile::tempdir().unwrap();
    let quic = |dir: &std::path::Path| {
        Node::builder()
            .storage(dir, "p")
            .kdf(KdfParams::insecure_for_tests())
            .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
            .tcp(false)
            .mdns(false)
            .delivery_delays((0, 1), (0, 1))
    };
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let a = start(quic(&da), &da).await;
    let b = start(quic(&db), &db).await;
    assert!(
        b.addr.iter().any(|p| matches!(p, Protocol::QuicV1)),
        "listens on QUIC: {}",
        b.addr
    );
    introduce(&a, &b).await;
    connect(&a, &b).await;
    wait_connected(&[&a, &b], 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    exchange(&a, &b, b"over quic").await;
    assert!(
        stats(&a).await.bytes_out > 0,
        "bytes are counted on QUIC too"
    );
}

/// B listens only through the relay (`<relay>/p2p-circuit`), as a phone
/// behind NAT would; A reaches B through the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_an_address_is_reached_through_a_relay_circuit() {
    let root = tempfile::tempdir().unwrap();
    let relay = spawn_with(root.path(), "relay", |b| {
        b.relay().advertise_local_addresses(true)
    })
    .await;
    let circuit: Multiaddr = relay.addr.clone().with(Protocol::P2pCircuit);
    let db = root.path().join("b");
    let b = start(
        Node::builder()
            .storage(&db, "p")
            .kdf(KdfParams::insecure_for_tests())
            .listen_on(circuit.clone())
            .quic(false)
            .mdns(false)
            .delivery_delays((0, 1), (0, 1)),
        &db,
    )
    .await;
    assert!(
        b.addr.iter().any(|p| p == Protocol::P2pCircuit),
        "B's only address is a circuit: {}",
        b.addr
    );
    let a = spawn(root.path(), "a").await;
    introduce(&a, &b).await;
    let b_peer: PeerId = b.node.peer_id();
    a.node
        .dial(circuit.with(Protocol::P2p(b_peer)))
        .await
        .unwrap();
    let node = a.node.clone();
    wait_until(20, "A connected to B through the relay", || {
        let node = node.clone();
        async move { node.connected_peers().await.unwrap().contains(&b_peer) }
    })
    .await;
    // B has no address but the circuit: whatever connects A to B runs
    // through the relay.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    exchange(&a, &b, b"through the circuit").await;
}
