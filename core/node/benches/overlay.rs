//! Ferry on libp2p against the bare rust-libp2p gossipsub overlay, in one
//! run, on loopback TCP, with N nodes in one process.
//!
//! ```text
//! cargo bench -p ferry-node --bench overlay               # N = 10, 50, 100
//! cargo bench -p ferry-node --bench overlay -- 10 50      # chosen sizes
//! FERRY_BENCH_MESH=6,5,12 cargo bench -p ferry-node --bench overlay  # other D
//! ```
//!
//! Each (implementation, N) runs in a child process of this binary, so the
//! resident memory per node is measured cleanly. Both overlays get the same
//! random topology (each node dials 3 others), the same gossipsub
//! parameters (anonymous, content-hash IDs, the node's default mesh
//! degrees or `FERRY_BENCH_MESH`), and the same traffic:
//! 200 application payloads of 1 KiB at 20 per second, from random senders
//! to fixed partners (node i ↔ node i + N/2).
//!
//! - latency: from the send call to the partner's receive event;
//! - amplification: bytes received by all nodes ÷ (bytes of the message as
//!   it travels the overlay × (N − 1) × messages), the overlay's cost per
//!   useful copy; and bytes received per application byte;
//! - RSS per node: growth of the process's resident set ÷ N.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(missing_docs)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use ferry_node::{GossipParams, KdfParams, Multiaddr, Node, NodeEvent, bench_support};
use futures::StreamExt as _;
use libp2p::{gossipsub, swarm::SwarmEvent};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

const MESSAGES: usize = 200;
/// Messages per second (override with `FERRY_BENCH_RATE`, e.g. to find
/// the load at which the 100-node run stops queueing).
fn rate_per_sec() -> u64 {
    std::env::var("FERRY_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(20)
}
const PAYLOAD: usize = 1024;

/// Gossip parameters for both overlays: the node's defaults, or the mesh
/// degrees in `FERRY_BENCH_MESH` as `D,D_lo,D_hi` (e.g. `4,3,8`), to
/// measure what mesh tuning buys against what it costs.
fn gossip_params() -> GossipParams {
    let mut params = GossipParams::default();
    if let Ok(spec) = std::env::var("FERRY_BENCH_MESH") {
        // A typo must not quietly measure the defaults under another name.
        let d: Vec<usize> = spec.split(',').map(|x| x.trim().parse().unwrap()).collect();
        let [n, lo, hi] = d[..] else {
            panic!("FERRY_BENCH_MESH must be D,D_lo,D_hi, got {spec:?}");
        };
        (params.mesh_n, params.mesh_n_low, params.mesh_n_high) = (n, lo, hi);
    }
    params
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn topology(n: usize) -> Vec<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut links = Vec::new();
    for i in 0..n {
        // A ring keeps it connected; three random dials make it a mesh.
        links.push((i, (i + 1) % n));
        for _ in 0..2 {
            let j = rng.random_range(0..n);
            if j != i {
                links.push((i, j));
            }
        }
    }
    links
}

fn schedule(n: usize) -> Vec<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..MESSAGES)
        .map(|_| {
            let s = rng.random_range(0..n);
            (s, (s + n / 2) % n)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Outcome {
    latencies_ms: Vec<f64>,
    bytes_in: u64,
    wire_len: usize,
    rss_per_node: u64,
}

fn report(kind: &str, n: usize, o: Outcome) {
    let mut l = o.latencies_ms;
    l.sort_by(|a, b| a.total_cmp(b));
    let delivered = l.len();
    let copies = (n as f64 - 1.0) * MESSAGES as f64 * o.wire_len as f64;
    println!(
        "RESULT {kind} {n} {delivered} {:.2} {:.2} {:.2} {:.1} {}",
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        o.bytes_in as f64 / copies,
        o.bytes_in as f64 / (MESSAGES * PAYLOAD) as f64,
        o.rss_per_node
    );
}

async fn run_ferry(n: usize) {
    let base = rss_bytes();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let received: Arc<Mutex<HashMap<ferry_node::MessageId, Instant>>> = Arc::default();
    for i in 0..n {
        let config = Node::builder()
            .storage(root.path().join(format!("n{i}")), "bench")
            .kdf(KdfParams::insecure_for_tests())
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .quic(false)
            .mdns(false)
            .gossip(gossip_params())
            .build()
            .unwrap();
        let node = Arc::new(Node::start(config).await.unwrap());
        let mut events = node.events().unwrap();
        let (rx, nd) = (received.clone(), node.clone());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let NodeEvent::Message(m) = event {
                    rx.lock()
                        .unwrap()
                        .entry(m.message_id)
                        .or_insert_with(Instant::now);
                    let _ = nd.ack(m.message_id).await;
                }
            }
        });
        let addr = node.listen_addrs().await.unwrap().remove(0);
        nodes.push((node, addr));
    }
    for (a, b) in topology(n) {
        nodes[a].0.dial(nodes[b].1.clone()).await.unwrap();
    }
    for i in 0..n / 2 {
        let (a, b) = (&nodes[i].0, &nodes[i + n / 2].0);
        let ca = a.contact_code().await.unwrap();
        let cb = b.contact_code().await.unwrap();
        a.add_contact(&cb).await.unwrap();
        b.add_contact(&ca).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start_in: u64 = futures::future::join_all(nodes.iter().map(|(n, _)| n.stats()))
        .await
        .into_iter()
        .map(|s| s.unwrap().bytes_in)
        .sum();
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate_per_sec()));
    for (s, r) in schedule(n) {
        tick.tick().await;
        let mut body = vec![0u8; PAYLOAD];
        rand::rng().fill(&mut body[..]);
        let t = Instant::now();
        let id = nodes[s]
            .0
            .send(&nodes[r].0.identity(), &body)
            .await
            .unwrap();
        sent.push((id, t));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let got = received.lock().unwrap().len();
        if got >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let receipts settle so their cost is counted too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_in: u64 = futures::future::join_all(nodes.iter().map(|(n, _)| n.stats()))
        .await
        .into_iter()
        .map(|s| s.unwrap().bytes_in)
        .sum();
    let rss = rss_bytes().saturating_sub(base) / n as u64;
    let all: Vec<_> = futures::future::join_all(nodes.iter().map(|(n, _)| n.stats()))
        .await
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    let sum = |f: fn(&ferry_node::NodeStats) -> u64| all.iter().map(f).sum::<u64>();
    eprintln!(
        "STATS gossip_received {} published {} rejected {} frames_sent {} sync_env_received {} duplicates {} stored {} events_dropped {}",
        sum(|s| s.gossip_received),
        sum(|s| s.gossip_published),
        sum(|s| s.gossip_rejected),
        sum(|s| s.frames_sent),
        sum(|s| s.engine.sync_envelopes_received),
        sum(|s| s.engine.duplicates),
        sum(|s| s.engine.stored),
        sum(|s| s.events_dropped),
    );
    let latencies_ms = {
        let received = received.lock().unwrap();
        sent.iter()
            .filter_map(|(id, t)| {
                received
                    .get(id)
                    .map(|r| r.duration_since(*t).as_secs_f64() * 1e3)
            })
            .collect()
    };
    report(
        "ferry",
        n,
        Outcome {
            latencies_ms,
            bytes_in: end_in - start_in,
            // A 1 KiB message travels as a 2 KiB-bucket envelope.
            wire_len: 2048 + 100,
            rss_per_node: rss,
        },
    );
    for (node, _) in &nodes {
        node.shutdown().await;
    }
}

/// The counted bare overlay: one gossipsub behaviour per node, same
/// configuration as Ferry's, payloads accepted as soon as they arrive.
async fn run_bare(n: usize) {
    let base = rss_bytes();
    let topic = gossipsub::IdentTopic::new(bench_support::TOPIC);
    let received: Arc<Mutex<HashMap<(usize, u64), Instant>>> = Arc::default();
    let counters = Arc::new(bench_support::ByteCounters::default());
    let mut handles = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for i in 0..n {
        let config = bench_support::gossipsub_config(&gossip_params()).unwrap();
        let counters = counters.clone();
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_other_transport(move |key| bench_support::counted_tcp(key, counters).unwrap())
            .unwrap()
            .with_behaviour(|_| {
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(gossipsub::MessageAuthenticity::Anonymous, config)
                .unwrap()
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        addrs.push(addr);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Option<Multiaddr>, Vec<u8>)>(1024);
        let (recv, topic) = (received.clone(), topic.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some((Some(addr), _)) => { let _ = swarm.dial(addr); }
                        Some((None, data)) => { let _ = swarm.behaviour_mut().publish(topic.clone(), data); }
                        None => break,
                    },
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { propagation_source, message_id, message }) = event {
                            // The payload's first 8 bytes are its sequence number.
                            let seq = u64::from_be_bytes(message.data[..8].try_into().unwrap());
                            recv.lock().unwrap().entry((i, seq)).or_insert_with(Instant::now);
                            swarm.behaviour_mut().report_message_validation_result(
                                &message_id, &propagation_source, gossipsub::MessageAcceptance::Accept);
                        }
                    }
                }
            }
        });
        handles.push(tx);
    }
    for (a, b) in topology(n) {
        handles[a]
            .send((Some(addrs[b].clone()), Vec::new()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start_in = counters.inbound.load(Ordering::Relaxed);
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate_per_sec()));
    for (seq, (s, r)) in schedule(n).into_iter().enumerate() {
        tick.tick().await;
        let mut body = vec![0u8; PAYLOAD];
        rand::rng().fill(&mut body[..]);
        body[..8].copy_from_slice(&(seq as u64).to_be_bytes());
        sent.push((r, seq as u64, Instant::now()));
        handles[s].send((None, body)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = rss_bytes().saturating_sub(base) / n as u64;
    let received = received.lock().unwrap();
    let latencies_ms = sent
        .iter()
        .filter_map(|(r, seq, t)| {
            received
                .get(&(*r, *seq))
                .map(|x| x.duration_since(*t).as_secs_f64() * 1e3)
        })
        .collect();
    let total = counters.inbound.load(Ordering::Relaxed) - start_in;
    report(
        "bare",
        n,
        Outcome {
            latencies_ms,
            bytes_in: total,
            wire_len: PAYLOAD,
            rss_per_node: rss,
        },
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--one") {
        let kind = args[1].clone();
        let n: usize = args[2].parse().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match kind.as_str() {
                "ferry" => run_ferry(n).await,
                _ => run_bare(n).await,
            }
        });
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![10, 50, 100]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for &n in &sizes {
        for kind in ["bare", "ferry"] {
            let out = std::process::Command::new(&exe)
                .args(["--one", kind, &n.to_string()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find(|l| l.starts_with("RESULT")).unwrap_or("");
            eprintln!("{line}");
            rows.push(
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            );
        }
    }
    println!(
        "| N | overlay | delivered | p50 ms | p99 ms | amplification | bytes / app byte | RSS / node |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        if r.len() == 9 {
            println!(
                "| {} | {} | {}/{MESSAGES} | {} | {} | {} | {} | {:.1} MiB |",
                r[2],
                r[1],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8].parse::<f64>().unwrap_or(0.0) / 1048576.0
            );
        }
    }
}
