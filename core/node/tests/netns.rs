//! Discovery and NAT traversal on real (namespaced) networks: two nodes
//! on one LAN find each other by mDNS with nothing configured; two nodes
//! each behind its own NAT meet through a relay and end up connected
//! directly (DCUtR hole punch).
//!
//! Each node is this test binary run again inside its namespace (the
//! role in an environment variable); they share a directory for
//! addresses and contact codes. Needs root, iproute2 and iptables; under
//! `CI=true` their absence fails the tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use ferry_node::{Multiaddr, TransportKind};
use support::{lab::*, *};

const MDNS_TEST: &str = "two_nodes_on_a_lan_find_each_other_by_mdns";
const NAT_TEST: &str = "two_nodes_behind_their_own_nats_end_up_connected_directly";

/// A child's node: its role's namespace, no bootstrap unless given.
async fn node(
    name: &str,
    f: impl FnOnce(ferry_node::NodeBuilder) -> ferry_node::NodeBuilder,
) -> TestNode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let dir = shared_dir().join(format!("node-{name}"));
    let b = ferry_node::Node::builder()
        .storage(&dir, "test passphrase")
        .kdf(ferry_node::KdfParams::insecure_for_tests())
        .resync_interval(Duration::from_secs(5))
        .redial_interval(Duration::from_secs(1))
        .delivery_delays((0, 1), (0, 1));
    start(f(b), &dir).await
}

/// Both sides publish their contact code and add the other's; returns
/// the other's identity.
async fn swap_codes(me: &TestNode, mine: &str, theirs: &str) -> ferry_node::IdentityKey {
    put(
        &format!("{mine}.code"),
        &me.node.contact_code().await.unwrap(),
    );
    let code = get(&format!("{theirs}.code"), 30).await;
    let them = me.node.add_contact(&code).await.unwrap();
    // Messages from someone not (yet) a contact are not opened: both must
    // have added the other before either sends.
    put(&format!("{mine}.added"), "1");
    get(&format!("{theirs}.added"), 30).await;
    them
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_lan_find_each_other_by_mdns() {
    match std::env::var(ROLE).as_deref() {
        Ok("lan-a") => return lan_node("a", "b", "10.78.0.1").await,
        Ok("lan-b") => return lan_node("b", "a", "10.78.0.2").await,
        _ => {}
    }
    let Some(mut lab) = Lab::new() else {
        return;
    };
    let a = lab.namespace("la");
    let b = lab.namespace("lb");
    lab.wire(&a, "lan0", "10.78.0.1/24", &b, "lan0", "10.78.0.2/24");
    for ns in [&a, &b] {
        assert!(ip(&[
            "-n",
            ns,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "lan0"
        ]));
    }
    lab.spawn(&a, MDNS_TEST, "lan-a");
    lab.spawn(&b, MDNS_TEST, "lan-b");
    lab.wait("lan-a", Duration::from_secs(90));
    lab.wait("lan-b", Duration::from_secs(90));
}

async fn lan_node(me: &str, other: &str, address: &str) {
    // No bootstrap, no address of the other: only mDNS can connect them.
    let n = node(me, |b| {
        b.listen_on(format!("/ip4/{address}/tcp/0").parse().unwrap())
            .quic(false)
            .mdns(true)
            .mdns_auto_dial(true)
    })
    .await;
    let them = swap_codes(&n, me, other).await;
    wait_connected(&[&n], 1).await;
    if me == "a" {
        let id = n.node.send(&them, b"found you").await.unwrap();
        wait_until(30, "the receipt", || {
            let log = n.log.clone();
            async move { log.lock().unwrap().delivered.contains(&id) }
        })
        .await;
    } else {
        wait_for_body(&n, b"found you", 30).await;
        // Stay until A has its receipt.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_their_own_nats_end_up_connected_directly() {
    match std::env::var(ROLE).as_deref() {
        Ok("relay") => return relay().await,
        Ok("host-a") => return host_a().await,
        Ok("host-b") => return host_b().await,
        _ => {}
    }
    let Some(mut lab) = Lab::new() else {
        return;
    };
    // The "Internet" is the relay's namespace, routing between the two
    // NATs' public sides (11.0.1.0/24 and 11.0.2.0/24: global addresses,
    // as a hole punch needs, but only inside these namespaces).
    let relay_ns = lab.namespace("rl");
    let nat_a = lab.namespace("na");
    let nat_b = lab.namespace("nb");
    let host_a_ns = lab.namespace("ha");
    let host_b_ns = lab.namespace("hb");
    lab.wire(&relay_ns, "pa", "11.0.1.1/24", &nat_a, "wan", "11.0.1.2/24");
    lab.wire(&relay_ns, "pb", "11.0.2.1/24", &nat_b, "wan", "11.0.2.2/24");
    lab.wire(
        &nat_a,
        "lan",
        "192.168.1.1/24",
        &host_a_ns,
        "eth0",
        "192.168.1.2/24",
    );
    lab.wire(
        &nat_b,
        "lan",
        "192.168.2.1/24",
        &host_b_ns,
        "eth0",
        "192.168.2.2/24",
    );
    lab.router(&relay_ns);
    lab.nat(&nat_a, "wan");
    lab.nat(&nat_b, "wan");
    // Like a home router, the NATs drop what nobody inside asked for
    // (rather than answer with a reset, which would kill a hole punch
    // whose first packet arrives a moment early).
    for nat in [&nat_a, &nat_b] {
        lab.exec(nat, "iptables", &["-A", "INPUT", "-i", "wan", "-j", "DROP"]);
    }
    assert!(ip(&[
        "-n", &nat_a, "route", "add", "default", "via", "11.0.1.1"
    ]));
    assert!(ip(&[
        "-n", &nat_b, "route", "add", "default", "via", "11.0.2.1"
    ]));
    assert!(ip(&[
        "-n",
        &host_a_ns,
        "route",
        "add",
        "default",
        "via",
        "192.168.1.1"
    ]));
    assert!(ip(&[
        "-n",
        &host_b_ns,
        "route",
        "add",
        "default",
        "via",
        "192.168.2.1"
    ]));
    lab.spawn(&relay_ns, NAT_TEST, "relay");
    lab.spawn(&host_a_ns, NAT_TEST, "host-a");
    lab.spawn(&host_b_ns, NAT_TEST, "host-b");
    lab.wait("host-b", Duration::from_secs(120));
    lab.wait("host-a", Duration::from_secs(30));
    std::fs::write(lab.dir.path().join("done"), "1").unwrap();
    lab.wait("relay", Duration::from_secs(30));
    let route = std::fs::read_to_string(lab.dir.path().join("b.route")).unwrap();
    eprintln!("host B reaches host A at {route}");
    assert!(
        route.starts_with("/ip4/11.0.1.2/"),
        "the direct route goes to A's NAT: {route}"
    );
}

async fn relay() {
    let n = node("relay", |b| {
        b.relay()
            .listen_on("/ip4/0.0.0.0/tcp/4001".parse().unwrap())
            .listen_on("/ip4/0.0.0.0/udp/4001/quic-v1".parse().unwrap())
            .quic(true)
            .mdns(false)
            .external_address("/ip4/11.0.1.1/tcp/4001".parse().unwrap())
            .external_address("/ip4/11.0.2.1/tcp/4001".parse().unwrap())
    })
    .await;
    put("relay.id", &n.node.peer_id().to_string());
    while !exists("done") {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n.node.shutdown().await;
}

/// A client behind a NAT that uses the relay at `relay_ip` (and, if
/// `reserve`, is reachable through it).
async fn host(name: &str, relay_ip: &str, reserve: bool) -> (TestNode, Multiaddr) {
    let relay_id = get("relay.id", 30).await;
    let relay: Multiaddr = format!("/ip4/{relay_ip}/tcp/4001/p2p/{relay_id}")
        .parse()
        .unwrap();
    let n = node(name, |b| {
        let b = b
            .listen_on("/ip4/0.0.0.0/tcp/4002".parse().unwrap())
            .listen_on("/ip4/0.0.0.0/udp/4002/quic-v1".parse().unwrap())
            .quic(true)
            .mdns(false)
            .bootstrap(relay.clone());
        if reserve {
            b.listen_on(relay.clone().with(libp2p::multiaddr::Protocol::P2pCircuit))
        } else {
            b
        }
    })
    .await;
    (n, relay)
}

/// Whether `me` has a connection to `peer` that does not go through a
/// relay; returns its address.
async fn direct_route(me: &TestNode, peer: ferry_node::PeerId) -> Option<Multiaddr> {
    let peers = me.node.peers().await.ok()?;
    let info = peers.into_iter().find(|p| p.peer == peer)?;
    info.routes
        .into_iter()
        .find(|r| {
            r.transport != Some(TransportKind::Relayed)
                && !r.address.to_string().contains("p2p-circuit")
        })
        .map(|r| r.address)
}

async fn host_a() {
    // Reachable only through the relay: a reservation there.
    let (n, _relay) = host("a", "11.0.1.1", true).await;
    put("a.id", &n.node.peer_id().to_string());
    swap_codes(&n, "a", "b").await;
    wait_for_body(&n, b"punched through", 60).await;
    while !exists("b.route") {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n.node.shutdown().await;
}

async fn host_b() {
    let (n, relay) = host("b", "11.0.2.1", false).await;
    let a_id: ferry_node::PeerId = get("a.id", 30).await.parse().unwrap();
    let a = swap_codes(&n, "b", "a").await;
    let through_relay = relay
        .with(libp2p::multiaddr::Protocol::P2pCircuit)
        .with(libp2p::multiaddr::Protocol::P2p(a_id));
    // One relayed connection; DCUtR then punches through both NATs. A
    // second relayed dial only if the first brought nothing in 30 s (the
    // node allows two hole punches per peer a minute).
    let mut direct = None;
    for second in 0..60 {
        if second % 30 == 0 {
            let _ = n.node.dial(through_relay.clone()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(route) = direct_route(&n, a_id).await {
            direct = Some(route);
            break;
        }
    }
    let route = direct.expect("a direct connection to A after the hole punch");
    let id = n.node.send(&a, b"punched through").await.unwrap();
    wait_until(60, "the receipt from A", || {
        let log = n.log.clone();
        async move { log.lock().unwrap().delivered.contains(&id) }
    })
    .await;
    put("b.route", &route.to_string());
    n.node.shutdown().await;
}
