//! A client is quiet on a LAN by default: no mDNS, and what identify tells
//! any peer that connects carries no listen address. A relay, meant to be
//! found, still lists its addresses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use ferry_node::{KdfParams, Multiaddr, Node, NodeBuilder};
use futures::StreamExt as _;
use libp2p::{identify, swarm::SwarmEvent};

/// What identify says about the node at `address`, as a raw libp2p peer
/// that connects to it hears it.
async fn identify_info(address: Multiaddr) -> identify::Info {
    let mut swarm = support::attacker::tcp_swarm(
        |key| identify::Behaviour::new(identify::Config::new("/observer/1".into(), key.public())),
        Duration::from_secs(60),
    );
    swarm.dial(address).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(identify::Event::Received { info, .. }) =
                swarm.select_next_some().await
            {
                return info;
            }
        }
    })
    .await
    .expect("identify info within 10 s")
}

/// A builder with the defaults, except what a test needs (a store, a fast
/// KDF, loopback TCP only).
fn defaults(dir: &std::path::Path) -> NodeBuilder {
    Node::builder()
        .storage(dir, "test passphrase")
        .kdf(KdfParams::insecure_for_tests())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .quic(false)
}

#[test]
fn mdns_and_its_auto_dial_are_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let client = Node::builder().storage(dir.path(), "pass").build().unwrap();
    assert!(!client.mdns());
    assert!(!client.mdns_auto_dial());
    let relay = Node::builder()
        .storage(dir.path(), "pass")
        .relay()
        .build()
        .unwrap();
    assert!(!relay.mdns());
    let lan = Node::builder()
        .storage(dir.path(), "pass")
        .mdns(true)
        .build()
        .unwrap();
    assert!(lan.mdns() && !lan.mdns_auto_dial());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_client_announces_no_listen_addresses() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("client");
    let client = support::start(defaults(&dir), &dir).await;
    let info = identify_info(client.addr.clone()).await;
    assert_eq!(info.public_key.to_peer_id(), client.node.peer_id());
    assert!(
        info.listen_addrs.is_empty(),
        "a client lists its addresses: {:?}",
        info.listen_addrs
    );

    // A relay announces only global addresses (and configured ones): its
    // loopback and LAN addresses map the operator's network.
    let dir = root.path().join("relay");
    let relay = support::start(defaults(&dir).relay(), &dir).await;
    let info = identify_info(relay.addr.clone()).await;
    assert!(
        info.listen_addrs.is_empty(),
        "a relay announces its loopback address: {:?}",
        info.listen_addrs
    );
    let dir = root.path().join("lan-relay");
    let relay = support::start(defaults(&dir).relay().advertise_local_addresses(true), &dir).await;
    let info = identify_info(relay.addr.clone()).await;
    assert!(
        !info.listen_addrs.is_empty(),
        "a relay told to announce local addresses does"
    );
    // What identify says about the software: nothing Ferry-specific.
    assert!(
        !info.agent_version.to_lowercase().contains("ferry")
            && !info.protocol_version.to_lowercase().contains("ferry"),
        "identify names the software: {} / {}",
        info.agent_version,
        info.protocol_version
    );
}
