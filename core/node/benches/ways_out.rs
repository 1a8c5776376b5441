//! Each way out against plain TCP, in one run on loopback: the latency of
//! a 1 KiB message between two nodes (p50/p99 of 200 sent one at a time),
//! bulk throughput (10 000 messages sent back to back), and the rate at
//! which 10 000 envelopes are exported to a bundle and imported.
//!
//! ```text
//! cargo bench -p ferry-node --bench ways_out
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(missing_docs, dead_code, unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ferry_node::ExportFilter;
use support::{ways::Way, *};

const LATENCY_SAMPLES: usize = 200;
const BULK: usize = 10_000;

fn body(i: usize) -> Vec<u8> {
    let mut body = format!("bench message {i} ").into_bytes();
    body.resize(1024, b'.');
    body
}

async fn arrived(b: &TestNode, count: usize) -> bool {
    b.log.lock().unwrap().received.len() >= count
}

/// Sends one message at a time and times each arrival.
async fn latency(a: &TestNode, b: &TestNode) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let already = b.log.lock().unwrap().received.len();
    for i in 0..LATENCY_SAMPLES {
        let started = Instant::now();
        a.node.send(&b.node.identity(), &body(i)).await.unwrap();
        while !arrived(b, already + i + 1).await {
            tokio::task::yield_now().await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Sends `BULK` messages back to back; messages per second until the last
/// arrives.
async fn throughput(a: &TestNode, b: &TestNode) -> f64 {
    let already = b.log.lock().unwrap().received.len();
    let started = Instant::now();
    for i in 0..BULK {
        a.node.send(&b.node.identity(), &body(i)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !arrived(b, already + BULK).await {
        assert!(Instant::now() < deadline, "bulk transfer stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    BULK as f64 / started.elapsed().as_secs_f64()
}

async fn bundles() -> (f64, f64, u64) {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let c = spawn(root.path(), "c").await;
    introduce(&a, &c).await;
    for i in 0..BULK {
        a.node.send(&c.node.identity(), &body(i)).await.unwrap();
    }
    let path = root.path().join("x.bundle");
    let started = Instant::now();
    let report = a.node.export_bundle(&path, ExportFilter::All).await.unwrap();
    let export = report.envelopes as f64 / started.elapsed().as_secs_f64();
    let b = spawn(root.path(), "b").await;
    let started = Instant::now();
    let imported = b.node.import_bundle(&path).await.unwrap();
    let import = imported.summary.total as f64 / started.elapsed().as_secs_f64();
    assert_eq!(imported.summary.imported, report.envelopes);
    (export, import, report.bytes)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| way | latency p50 | p99 | p50 ÷ TCP | throughput (msg/s) | ÷ TCP |");
        println!("|---|---|---|---|---|---|");
        let mut tcp = None;
        for way in support::ways::ALL {
            let root = tempfile::tempdir().unwrap();
            let Some((a, b)) = support::ways::linked(root.path(), way).await else {
                println!("| {way:?} | not run (no obfs4proxy) | | | | |");
                continue;
            };
            let (p50, p99) = latency(&a, &b).await;
            let rate = throughput(&a, &b).await;
            if way == Way::Tcp {
                tcp = Some((p50, rate));
            }
            let (tcp_p50, tcp_rate) = tcp.unwrap_or((p50, rate));
            println!(
                "| {way:?} | {:.2} ms | {:.2} ms | {:.2}× | {:.0} | {:.2}× |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / tcp_p50.as_secs_f64(),
                rate,
                rate / tcp_rate,
            );
            a.node.shutdown().await;
            b.node.shutdown().await;
        }
        let (export, import, bytes) = bundles().await;
        println!();
        println!("| bundle of {BULK} envelopes ({:.1} MB) | envelopes/s |", bytes as f64 / 1e6);
        println!("|---|---|");
        println!("| export (read store, encode, write, fsync, rename) | {export:.0} |");
        println!("| import (read, verify, validate each, one commit per 512) | {import:.0} |");
    });
}
