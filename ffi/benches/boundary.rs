//! The cost of the C boundary, measured side by side in one run.
//!
//! 1. Throughput: two nodes on loopback TCP; A sends `MESSAGES` messages
//!    to B while B's app takes each one and acknowledges it. Once through
//!    the Rust API (`Node::send`, `EventStream::next`, `Node::ack`) and
//!    once through the C entry points (`ferry_node_send`,
//!    `ferry_next_event`, `ferry_node_ack`, called as C would: from plain
//!    threads, with the structs and frees).
//! 2. Event latency: one message at a time; the time from `send` returning
//!    at A to B's app holding the event, through `EventStream::next` and
//!    through `ferry_next_event` (a thread blocked in it, as an app's event
//!    thread is).
//!
//! `cargo bench -p ferry-ffi --bench boundary` prints a table.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    ffi::{CStr, CString},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use ferry::{
    FerryResult,
    config::*,
    events::{FerryEvent, FerryEventKind, ferry_event_free, ferry_next_event},
    node::*,
    types::{FerryIdentityKey, FerryMessageId, ferry_string_free},
};
use ferry_node::{KdfParams, Node, NodeEvent};

const MESSAGES: usize = 2000;
const LATENCY_SAMPLES: usize = 200;
const RUNS: usize = 3;

fn body(i: usize) -> Vec<u8> {
    let mut body = format!("message {i} ").into_bytes();
    body.resize(256, b'.');
    body
}

// ---- Rust API ----

async fn rust_node(dir: &Path) -> Arc<Node> {
    let config = Node::builder()
        .storage(dir, "bench")
        .kdf(KdfParams::insecure_for_tests())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .quic(false)
        .mdns(false)
        .build()
        .unwrap();
    Arc::new(Node::start(config).await.unwrap())
}

async fn rust_pair(root: &Path) -> (Arc<Node>, Arc<Node>) {
    let a = rust_node(&root.join("a")).await;
    let b = rust_node(&root.join("b")).await;
    a.add_contact(&b.contact_code().await.unwrap())
        .await
        .unwrap();
    b.add_contact(&a.contact_code().await.unwrap())
        .await
        .unwrap();
    let addr = b.listen_addrs().await.unwrap()[0].clone();
    a.dial(addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // gossip mesh
    (a, b)
}

fn rust_throughput() -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = rust_pair(root.path()).await;
        let mut events = b.events().unwrap();
        let receiver = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut got = 0;
                while got < MESSAGES {
                    if let Some(NodeEvent::Message(m)) = events.next().await {
                        b.ack(m.message_id).await.unwrap();
                        got += 1;
                    }
                }
            })
        };
        let to = b.identity();
        let started = Instant::now();
        for i in 0..MESSAGES {
            a.send(&to, &body(i)).await.unwrap();
        }
        receiver.await.unwrap();
        let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
        a.shutdown().await;
        b.shutdown().await;
        rate
    })
}

fn rust_latency() -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = rust_pair(root.path()).await;
        let mut events = b.events().unwrap();
        let to = b.identity();
        let mut samples = Vec::new();
        for i in 0..LATENCY_SAMPLES {
            a.send(&to, &body(i)).await.unwrap();
            let sent = Instant::now();
            loop {
                if let Some(NodeEvent::Message(m)) = events.next().await {
                    samples.push(sent.elapsed());
                    b.ack(m.message_id).await.unwrap();
                    break;
                }
            }
        }
        a.shutdown().await;
        b.shutdown().await;
        samples
    })
}

// ---- C ABI (called as C would) ----

struct CNode(*mut FerryNode);
// SAFETY: the C ABI's handles are thread-safe (every function may be
// called from any thread); this wrapper only moves the pointer.
unsafe impl Send for CNode {}
// SAFETY: as above.
unsafe impl Sync for CNode {}

fn c_node(dir: &Path) -> CNode {
    let dir = CString::new(dir.to_str().unwrap()).unwrap();
    let mut config = std::ptr::null_mut();
    let mut node = std::ptr::null_mut();
    // SAFETY: valid pointers and NUL-terminated strings, as the header asks.
    unsafe {
        assert_eq!(ferry_config_new(&mut config), FerryResult::Ok);
        assert_eq!(
            ferry_config_set_storage(config, dir.as_ptr(), c"bench".as_ptr()),
            FerryResult::Ok
        );
        assert_eq!(ferry_config_set_kdf(config, 256, 1, 1), FerryResult::Ok);
        assert_eq!(
            ferry_config_add_listen_address(config, c"/ip4/127.0.0.1/tcp/0".as_ptr()),
            FerryResult::Ok
        );
        assert_eq!(ferry_config_set_transports(config, 0, 0), FerryResult::Ok);
        assert_eq!(ferry_node_start(config, &mut node), FerryResult::Ok);
        ferry_config_free(&mut config);
    }
    CNode(node)
}

fn c_string(f: impl FnOnce(*mut *mut std::ffi::c_char) -> FerryResult) -> String {
    let mut out = std::ptr::null_mut();
    assert_eq!(f(&mut out), FerryResult::Ok);
    // SAFETY: a string the library returned, freed right after.
    let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
    // SAFETY: as above.
    unsafe { ferry_string_free(&mut out) };
    text
}

fn c_pair(root: &Path) -> (CNode, CNode, FerryIdentityKey) {
    let a = c_node(&root.join("a"));
    let b = c_node(&root.join("b"));
    // SAFETY: live handles and valid out-pointers throughout.
    unsafe {
        let code_a = c_string(|o| ferry_node_contact_code(a.0, o));
        let code_b = c_string(|o| ferry_node_contact_code(b.0, o));
        let code_a = CString::new(code_a).unwrap();
        let code_b = CString::new(code_b).unwrap();
        let mut key_b = FerryIdentityKey::default();
        assert_eq!(
            ferry_node_add_contact(a.0, code_b.as_ptr(), &mut key_b),
            FerryResult::Ok
        );
        assert_eq!(
            ferry_node_add_contact(b.0, code_a.as_ptr(), std::ptr::null_mut()),
            FerryResult::Ok
        );
        let addrs = c_string(|o| ferry_node_listen_addresses(b.0, o));
        let addr = CString::new(addrs.lines().next().unwrap()).unwrap();
        assert_eq!(
            ferry_node_dial(a.0, addr.as_ptr(), std::ptr::null_mut()),
            FerryResult::Ok
        );
        std::thread::sleep(Duration::from_secs(2));
        (a, b, key_b)
    }
}

/// Waits for the next message event at `node`, acknowledges it.
fn c_take_message(node: &CNode) {
    loop {
        let mut event: *mut FerryEvent = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer; the event is freed here.
        unsafe {
            let r = ferry_next_event(node.0, 1000, &mut event);
            if r == FerryResult::Timeout {
                continue;
            }
            assert_eq!(r, FerryResult::Ok);
            let is_message = (*event).kind == FerryEventKind::Message;
            if is_message {
                assert_eq!(
                    ferry_node_ack(node.0, &(*event).message_id),
                    FerryResult::Ok
                );
            }
            ferry_event_free(&mut event);
            if is_message {
                return;
            }
        }
    }
}

fn c_free(mut node: CNode) {
    // SAFETY: a live handle no other thread uses any more.
    unsafe { ferry_node_free(&mut node.0) };
}

fn c_throughput() -> f64 {
    let root = tempfile::tempdir().unwrap();
    let (a, b, key_b) = c_pair(root.path());
    let b = Arc::new(b);
    let receiver = {
        let b = b.clone();
        std::thread::spawn(move || {
            for _ in 0..MESSAGES {
                c_take_message(&b);
            }
        })
    };
    let started = Instant::now();
    for i in 0..MESSAGES {
        let body = body(i);
        let mut id = FerryMessageId::default();
        // SAFETY: live handle, valid buffers and out-pointer.
        let r = unsafe { ferry_node_send(a.0, &key_b, body.as_ptr(), body.len(), &mut id) };
        assert_eq!(r, FerryResult::Ok);
    }
    receiver.join().unwrap();
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    c_free(a);
    c_free(Arc::into_inner(b).unwrap());
    rate
}

fn c_latency() -> Vec<Duration> {
    let root = tempfile::tempdir().unwrap();
    let (a, b, key_b) = c_pair(root.path());
    let mut samples = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        let body = body(i);
        let mut id = FerryMessageId::default();
        // SAFETY: live handle, valid buffers and out-pointer.
        let r = unsafe { ferry_node_send(a.0, &key_b, body.as_ptr(), body.len(), &mut id) };
        assert_eq!(r, FerryResult::Ok);
        let sent = Instant::now();
        c_take_message(&b);
        samples.push(sent.elapsed());
    }
    c_free(a);
    c_free(b);
    samples
}

/// Per-call cost of a cheap query (a message's stored status), `CALLS`
/// times: the Rust API awaited in a task, and the C entry point from a
/// plain thread (which crosses into the node's runtime with `block_on`).
const CALLS: usize = 20_000;

fn call_cost() -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rust = rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = rust_pair(root.path()).await;
        let id = a.send(&b.identity(), b"x").await.unwrap();
        let started = Instant::now();
        for _ in 0..CALLS {
            a.message_status(id).await.unwrap();
        }
        let per_call = started.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
        a.shutdown().await;
        b.shutdown().await;
        per_call
    });
    drop(rt);
    let root = tempfile::tempdir().unwrap();
    let (a, b, key_b) = c_pair(root.path());
    let mut id = FerryMessageId::default();
    // SAFETY: live handles, valid buffers and out-pointers.
    let c = unsafe {
        assert_eq!(
            ferry_node_send(a.0, &key_b, b"x".as_ptr(), 1, &mut id),
            FerryResult::Ok
        );
        let mut status = std::mem::MaybeUninit::<FerryStatus>::uninit();
        let started = Instant::now();
        for _ in 0..CALLS {
            assert_eq!(
                ferry_node_message_status(a.0, &id, status.as_mut_ptr()),
                FerryResult::Ok
            );
        }
        started.elapsed().as_secs_f64() * 1e6 / CALLS as f64
    };
    c_free(a);
    c_free(b);
    (rust, c)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "C boundary, {MESSAGES} messages of 256 B A→B over loopback TCP, acknowledged by B's app"
    );
    println!("| run | Rust API msg/s | C ABI msg/s | C ÷ Rust |");
    println!("|---|---|---|---|");
    for run in 1..=RUNS {
        let rust = rust_throughput();
        let c = c_throughput();
        println!("| {run} | {rust:.0} | {c:.0} | {:.3} |", c / rust);
    }
    println!();
    println!("One cheap call (a message's stored status), {CALLS} times");
    println!("| run | Rust API µs/call | C ABI µs/call | C − Rust µs |");
    println!("|---|---|---|---|");
    for run in 1..=RUNS {
        let (rust, c) = call_cost();
        println!("| {run} | {rust:.1} | {c:.1} | {:.1} |", c - rust);
    }
    println!();
    println!(
        "Event latency, send returned at A → B's app holds the event ({LATENCY_SAMPLES} messages one at a time)"
    );
    println!("| run | Rust p50 ms | Rust p99 ms | C p50 ms | C p99 ms |");
    println!("|---|---|---|---|---|");
    for run in 1..=RUNS {
        let mut rust = rust_latency();
        let mut c = c_latency();
        println!(
            "| {run} | {:.2} | {:.2} | {:.2} | {:.2} |",
            percentile(&mut rust, 0.5),
            percentile(&mut rust, 0.99),
            percentile(&mut c, 0.5),
            percentile(&mut c, 0.99)
        );
    }
}
