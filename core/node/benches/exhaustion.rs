//! What one attacker can deny a relay, with the limits before and after
//! the open-Internet hardening, in one run, on loopback.
//!
//! ```text
//! cargo bench -p ferry-node --bench exhaustion
//! ```
//!
//! The attacker's hosts are other 127.x.y.z addresses (the node treats them
//! like any network; only 127.0.0.1 and ::1 are exempt), so "one address"
//! and "one /24" are real source addresses on the wire. "Before" is the
//! old configuration expressed as `Limits` (no per-source limits, 20 s
//! handshakes, no outbound reserve, 128 reservations, 128 KiB circuits);
//! code-level fixes (incremental frame buffers, event queues, flush rules,
//! hole-punch checks) are not in it: their before-figures come from the
//! test runs with each fix removed (BENCHMARKS.md).
//!
//! Scenarios:
//! - silent: N = 200 sockets that never speak, from one /24; does an honest
//!   client get in, and how fast?
//! - sybils: M = 64 fresh PeerIds from one address, 50 ms apart; how many
//!   connections do they hold, and does an honest client still get in?
//! - reservations: M = 150 relay v2 reservations asked from three
//!   addresses of one /24; how many are granted, and does an honest
//!   client still get one?
//! - frames: one connection claims 64 frames of 1 MiB and sends 100 bytes
//!   of each; how many bytes of frame buffer does the node hold?
//! - push: a client pushes 30 envelopes to a relay over sync while 20
//!   peers subscribe to the relay's gossip; how many bytes does the relay
//!   send in the next 3 s, per byte pushed, with flood publishing on
//!   (libp2p's default) and off (a relay's default now)?

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(missing_docs, dead_code, unreachable_pub)]

#[path = "../tests/support/attacker.rs"]
mod attacker;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use attacker::*;
use ferry_node::{KdfParams, Limits, Multiaddr, Node, NodeBuilder, PeerId};

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn before() -> Limits {
    Limits {
        max_pending_per_source: u32::MAX,
        max_per_source: u32::MAX,
        source_burst: u32::MAX,
        source_rate_per_sec: u32::MAX,
        handshake_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(3600),
        reserved_outbound: 0,
        max_pending_incoming: 128,
        relay_reservations: 128,
        relay_circuits: 16,
        relay_circuit_bytes: 128 * 1024,
        relay_circuit_duration: Duration::from_secs(120),
        relay_requests_per_source_per_min: u32::MAX,
        max_link_streams: 64,
        ..Limits::relay()
    }
}

fn builder(dir: &std::path::Path) -> NodeBuilder {
    Node::builder()
        .storage(dir, "bench passphrase")
        .kdf(KdfParams::insecure_for_tests())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .quic(false)
        .mdns(false)
}

async fn relay(dir: &std::path::Path, limits: Limits) -> (Node, Multiaddr) {
    let node = Node::start(
        builder(dir)
            .relay()
            .advertise_local_addresses(true)
            .limits(limits)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let addr = node.listen_addrs().await.unwrap().remove(0);
    (node, addr)
}

/// Whether an honest client (from 127.0.0.1) connects to `addr` within
/// 5 s, and how long it took.
async fn honest_connects(
    dir: &std::path::Path,
    addr: &Multiaddr,
    target: PeerId,
) -> Option<Duration> {
    let node = Node::start(builder(dir).build().unwrap()).await.unwrap();
    let started = Instant::now();
    node.dial(addr.clone()).await.ok()?;
    while started.elapsed() < Duration::from_secs(5) {
        if node.connected_peers().await.unwrap().contains(&target) {
            let took = started.elapsed();
            node.shutdown().await;
            return Some(took);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
    None
}

fn show(outcome: Option<Duration>) -> String {
    outcome.map_or("locked out (5 s)".into(), |d| {
        format!("in {} ms", d.as_millis())
    })
}

async fn silent(limits: Limits, root: &std::path::Path) -> String {
    let (relay, addr) = relay(&root.join("relay"), limits).await;
    let target = socket_addr(&addr);
    let mut sockets = Vec::new();
    for i in 0..200u32 {
        if let Ok(s) = silent_socket(ip(127, 66, 0, 1 + (i % 250) as u8), target).await {
            sockets.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = relay.stats().await.unwrap().connections_refused;
    let held = 200 - (refused.pending_per_source + refused.rate + refused.pending_full);
    let honest = honest_connects(&root.join("honest"), &addr, relay.peer_id()).await;
    relay.shutdown().await;
    drop(sockets);
    format!(
        "pending slots held {held:>3}; honest client {}",
        show(honest)
    )
}

async fn sybils(limits: Limits, root: &std::path::Path) -> String {
    let (relay, addr) = relay(&root.join("relay"), limits).await;
    let mut sybils = Vec::new();
    for _ in 0..64 {
        sybils.push(sybil(ip(127, 66, 0, 1), addr.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = sybils
        .iter()
        .filter(|(_, up)| up.load(Ordering::SeqCst))
        .count();
    let score = match sybils.iter().find(|(_, up)| up.load(Ordering::SeqCst)) {
        Some((peer, _)) => relay.peer_score(*peer).await.unwrap().unwrap_or(0.0),
        None => 0.0,
    };
    let honest = honest_connects(&root.join("honest"), &addr, relay.peer_id()).await;
    relay.shutdown().await;
    format!(
        "connections held {held:>3} of 64; a Sybil's gossip score {score:>7.1}; honest client {}",
        show(honest)
    )
}

async fn reservations(limits: Limits, root: &std::path::Path) -> String {
    let (relay, addr) = relay(&root.join("relay"), limits).await;
    let mut sybils = Vec::new();
    for i in 0..150u32 {
        sybils.push(reserving_sybil(
            ip(127, 66, 0, 1 + (i % 3) as u8),
            addr.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = sybils
        .iter()
        .filter(|(_, r)| r.load(Ordering::SeqCst))
        .count();
    // An honest client behind NAT asks for one.
    let (_, honest) = reserving_sybil(ip(127, 0, 0, 1), addr.clone());
    let started = Instant::now();
    while !honest.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = honest.load(Ordering::SeqCst);
    relay.shutdown().await;
    format!(
        "reservations held {held:>3} of 150; honest client {}",
        if got { "gets one" } else { "refused" }
    )
}

async fn frames(limits: Limits, root: &std::path::Path) -> String {
    let (relay, addr) = relay(&root.join("relay"), limits).await;
    let driver = claim_frames(addr, relay.peer_id(), 64);
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(3) {
        peak = peak.max(relay.stats().await.unwrap().frame_buffer_bytes);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver.abort();
    relay.shutdown().await;
    format!("frame buffer held {:>8} bytes", peak)
}

async fn push(flood: bool, root: &std::path::Path) -> String {
    let gossip = ferry_node::GossipParams {
        flood_publish: flood,
        ..ferry_node::GossipParams::default()
    };
    let relay = Node::start(
        builder(&root.join("relay"))
            .relay()
            .gossip(gossip)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let addr = relay.listen_addrs().await.unwrap().remove(0);
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        subscribers.push(sybil(ip(127, 0, 0, 1), addr.clone()));
    }
    // The pusher holds 30 envelopes for a contact who is away.
    let away = Node::start(builder(&root.join("away")).build().unwrap())
        .await
        .unwrap();
    let code = away.contact_code().await.unwrap();
    away.shutdown().await;
    let pusher = Node::start(builder(&root.join("pusher")).build().unwrap())
        .await
        .unwrap();
    let contact = pusher.add_contact(&code).await.unwrap();
    for i in 0..30 {
        let mut body = format!("pushed {i} ").into_bytes();
        body.resize(1024, b'.');
        pusher.send(&contact, &body).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = relay.stats().await.unwrap().bytes_out;
    let pushed_before = pusher.stats().await.unwrap().bytes_out;
    pusher.dial(addr.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = relay.stats().await.unwrap().bytes_out - before;
    let pushed = pusher.stats().await.unwrap().bytes_out - pushed_before;
    pusher.shutdown().await;
    relay.shutdown().await;
    drop(subscribers);
    format!(
        "relay sent {out:>8} bytes for {pushed:>7} pushed: {:.1}× ",
        out as f64 / pushed.max(1) as f64
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| scenario | limits | outcome |");
        println!("|---|---|---|");
        for (name, limits) in [("before", before()), ("after", Limits::relay())] {
            let root = tempfile::tempdir().unwrap();
            let p = root.path();
            println!(
                "| silent sockets (200, one /24) | {name} | {} |",
                silent(limits.clone(), &p.join("s")).await
            );
            println!(
                "| Sybil PeerIds (64, one address) | {name} | {} |",
                sybils(limits.clone(), &p.join("y")).await
            );
            println!(
                "| relay reservations (150, 3 addresses) | {name} | {} |",
                reservations(limits.clone(), &p.join("r")).await
            );
            println!(
                "| frame claims (64 × 1 MiB, 1 connection) | {name} | {} |",
                frames(limits.clone(), &p.join("f")).await
            );
        }
        for flood in [true, false] {
            let root = tempfile::tempdir().unwrap();
            let name = if flood {
                "flood publish on"
            } else {
                "flood publish off"
            };
            println!(
                "| sync push to a relay with 20 subscribers | {name} | {} |",
                push(flood, root.path()).await
            );
        }
    });
}
