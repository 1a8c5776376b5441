//! Each way out against plain TCP, in one run on loopback: the latency of
//! a 1 KiB message between two nodes (p50/p99 of 200 sent one at a time),
//! bulk throughput (2 000 messages sent back to back, five minutes at
//! most), and the rate at which 10 000 envelopes are exported to a bundle
//! and imported.
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
/// Messages in the bulk run (10 000 were tried first: BENCHMARKS.md says
/// why the reported runs use 2 000).
const BULK: usize = 2_000;
const BUNDLE: usize = 10_000;
const BULK_DEADLINE: Duration = Duration::from_secs(300);

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

/// Messages B's node has opened and handed to its app's queue.
async fn delivered_by_node(b: &TestNode) -> usize {
    stats(b).await.engine.delivered as usize
}

/// Sends `BULK` messages back to back; messages per second until the
/// last is delivered by B's node, or how many were by the deadline.
/// Counted at the node, not in the test app's log: the app acknowledges
/// each message with a round trip, falls behind a burst, and events it
/// misses come back only with the next redelivery, up to 30 s later (an
/// app's pace, not the transport's).
async fn throughput(a: &TestNode, b: &TestNode) -> Result<f64, usize> {
    let already = delivered_by_node(b).await;
    let started = Instant::now();
    for i in 0..BULK {
        a.node.send(&b.node.identity(), &body(i)).await.unwrap();
    }
    loop {
        let now = delivered_by_node(b).await - already;
        if now >= BULK {
            break;
        }
        if started.elapsed() > BULK_DEADLINE {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(BULK as f64 / started.elapsed().as_secs_f64())
}

async fn bundles() -> (f64, f64, u64) {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let c = spawn(root.path(), "c").await;
    introduce(&a, &c).await;
    for i in 0..BUNDLE {
        a.node.send(&c.node.identity(), &body(i)).await.unwrap();
    }
    let path = root.path().join("x.bundle");
    let started = Instant::now();
    let report = a
        .node
        .export_bundle(&path, ExportFilter::All)
        .await
        .unwrap();
    let export = report.envelopes as f64 / started.elapsed().as_secs_f64();
    // A carrier with room for all of it: a client's default per-tag quota
    // (2 MiB) would refuse most of 10 000 messages to one recipient
    // (counted as over_quota), and this measures the import path itself.
    let big = 1 << 30;
    let b = spawn_with(root.path(), "b", |b| {
        b.engine(ferry_node::EngineConfig {
            quotas: ferry_node::Quotas {
                global_bytes: big,
                per_tag_bytes: big,
                per_peer_bytes: big,
            },
            ..ferry_node::EngineConfig::default()
        })
    })
    .await;
    let started = Instant::now();
    let imported = b.node.import_bundle(&path).await.unwrap();
    let import = imported.summary.total as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        imported.summary.imported, report.envelopes,
        "{:?}",
        imported.summary
    );
    (export, import, report.bytes)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "| way | latency p50 | p99 | p50 ÷ TCP | throughput (msg/s) | ÷ TCP | by gossip / by sync | gossip queue full | app events dropped |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut tcp = None;
        for way in support::ways::ALL {
            let root = tempfile::tempdir().unwrap();
            let Some((a, b)) = support::ways::linked(root.path(), way).await else {
                println!("| {way:?} | not run (no obfs4proxy) | | | | | | | |");
                continue;
            };
            let (p50, p99) = latency(&a, &b).await;
            let before = stats(&b).await;
            let rate = throughput(&a, &b).await;
            let after = stats(&b).await;
            let by_sync = after.engine.sync_envelopes_received - before.engine.sync_envelopes_received;
            let by_gossip = after.gossip_received - before.gossip_received;
            let queue_full = stats(&a).await.gossip_queue_full;
            let dropped = after.events_dropped - before.events_dropped;
            if way == Way::Tcp {
                tcp = Some((p50, rate.unwrap_or(f64::NAN)));
            }
            let (tcp_p50, tcp_rate) = tcp.unwrap_or((p50, f64::NAN));
            let bulk = match rate {
                Ok(rate) => format!("{rate:.0} | {:.2}×", rate / tcp_rate),
                Err(n) => format!("{n} of {BULK} arrived in {} s | —", BULK_DEADLINE.as_secs()),
            };
            println!(
                "| {way:?} | {:.2} ms | {:.2} ms | {:.2}× | {bulk} | {by_gossip} / {by_sync} | {queue_full} | {dropped} |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / tcp_p50.as_secs_f64(),
            );
            a.node.shutdown().await;
            b.node.shutdown().await;
        }
        let (export, import, bytes) = bundles().await;
        println!();
        println!(
            "| bundle of {BUNDLE} envelopes ({:.1} MB) | envelopes/s |",
            bytes as f64 / 1e6
        );
        println!("|---|---|");
        println!("| export (read store, encode, write, fsync, rename) | {export:.0} |");
        println!("| import (read, verify, validate each, one commit per 512) | {import:.0} |");
    });
}
