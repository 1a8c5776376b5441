//! Test harness: real nodes (libp2p on loopback TCP, sled in temp dirs)
//! whose events are recorded by a task that acknowledges every message.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod attacker;
pub mod lab;
pub mod pipe;
pub mod ways;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_node::{
    IdentityKey, KdfParams, MessageId, MessageStatus, Multiaddr, Node, NodeBuilder, NodeEvent,
    NodeStats, PeerId,
};

/// What a node's app saw.
#[derive(Default, Debug)]
pub struct Log {
    /// (from, message ID, body, redelivery), in arrival order.
    pub received: Vec<(IdentityKey, MessageId, Vec<u8>, bool)>,
    /// Receipts for our messages.
    pub delivered: Vec<MessageId>,
    pub statuses: Vec<(MessageId, MessageStatus)>,
    pub quota_rejections: u64,
    pub sync_envelopes: u64,
    pub pairing_codes: Vec<(PeerId, u32)>,
    pub paired: Vec<IdentityKey>,
    pub pairing_refusals: Vec<ferry_node::PairingRefusal>,
    pub lagged: u64,
    /// Pluggable-transport events, as text.
    pub pt_events: Vec<String>,
    /// Attached links that failed: (link, label, error).
    pub link_failures: Vec<(u64, String, String)>,
}

pub struct TestNode {
    pub node: Arc<Node>,
    pub log: Arc<Mutex<Log>>,
    pub dir: PathBuf,
    pub addr: Multiaddr,
}

pub fn builder(dir: &Path) -> NodeBuilder {
    Node::builder()
        .storage(dir, "test passphrase")
        .kdf(KdfParams::insecure_for_tests())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .quic(false)
        .mdns(false)
        .resync_interval(Duration::from_secs(5))
        .redial_interval(Duration::from_secs(1))
        // Receipts and proofs within a second, not minutes: tests wait for
        // them. The delays themselves are tested in the engine's tests.
        .delivery_delays((0, 1), (0, 1))
}

/// Starts a node from `builder` and records its events.
pub async fn start(builder: NodeBuilder, dir: &Path) -> TestNode {
    let node = Arc::new(
        Node::start(builder.build().expect("config"))
            .await
            .expect("start"),
    );
    let log = Arc::new(Mutex::new(Log::default()));
    let mut events = node.events().expect("events");
    let (n, l) = (node.clone(), log.clone());
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let mut ack = None;
            {
                let mut log = l.lock().expect("log");
                match event {
                    NodeEvent::Message(m) => {
                        ack = Some(m.message_id);
                        log.received
                            .push((m.from, m.message_id, m.body, m.redelivery));
                    }
                    NodeEvent::MessageStatus {
                        message_id,
                        status: MessageStatus::Delivered,
                    } => log.delivered.push(message_id),
                    NodeEvent::MessageStatus { message_id, status } => {
                        log.statuses.push((message_id, status))
                    }
                    NodeEvent::QuotaRejected { .. } => log.quota_rejections += 1,
                    NodeEvent::SyncProgress { envelopes, .. } => log.sync_envelopes += envelopes,
                    NodeEvent::PairingCode { peer, code } => {
                        log.pairing_codes.push((peer, code.value()))
                    }
                    NodeEvent::Paired { contact } => log.paired.push(contact),
                    NodeEvent::PairingRefused { reason, .. } => log.pairing_refusals.push(reason),
                    NodeEvent::Lagged { missed } => log.lagged += missed,
                    NodeEvent::PluggableTransport(e) => log.pt_events.push(format!("{e:?}")),
                    NodeEvent::LinkFailed { link, label, error } => {
                        log.link_failures.push((link.0, label, error))
                    }
                    _ => {}
                }
            }
            if let Some(id) = ack {
                let _ = n.ack(id).await;
            }
        }
    });
    let addr = node
        .listen_addrs()
        .await
        .expect("addrs")
        .into_iter()
        .next()
        .expect("one listen address");
    TestNode {
        node,
        log,
        dir: dir.to_path_buf(),
        addr,
    }
}

pub async fn spawn(root: &Path, name: &str) -> TestNode {
    let dir = root.join(name);
    start(builder(&dir), &dir).await
}

pub async fn spawn_with(
    root: &Path,
    name: &str,
    f: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> TestNode {
    let dir = root.join(name);
    start(f(builder(&dir)), &dir).await
}

/// Both add each other as contacts.
pub async fn introduce(a: &TestNode, b: &TestNode) {
    let code_b = b.node.contact_code().await.expect("code");
    let code_a = a.node.contact_code().await.expect("code");
    a.node.add_contact(&code_b).await.expect("add b");
    b.node.add_contact(&code_a).await.expect("add a");
}

pub async fn connect(a: &TestNode, b: &TestNode) {
    a.node.dial(b.addr.clone()).await.expect("dial");
}

/// Polls `check` every 50 ms until it holds or `secs` pass.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node is connected to at least `min` peers.
pub async fn wait_connected(nodes: &[&TestNode], min: usize) {
    for (i, n) in nodes.iter().enumerate() {
        let node = n.node.clone();
        wait_until(20, &format!("node {i} connected"), || {
            let node = node.clone();
            async move { node.connected_peers().await.map(|p| p.len()).unwrap_or(0) >= min }
        })
        .await;
    }
}

pub async fn stats(n: &TestNode) -> NodeStats {
    n.node.stats().await.expect("stats")
}

/// Counts of received messages per ID (exactly-once checks).
pub fn receive_counts(n: &TestNode) -> HashMap<MessageId, usize> {
    let log = n.log.lock().expect("log");
    let mut counts = HashMap::new();
    for (_, id, _, redelivery) in &log.received {
        if !redelivery {
            *counts.entry(*id).or_default() += 1;
        }
    }
    counts
}

pub fn delivered(n: &TestNode) -> Vec<MessageId> {
    n.log.lock().expect("log").delivered.clone()
}

/// Sends `count` messages from `a` to `b`, returning their IDs and bodies.
pub async fn send_many(
    a: &TestNode,
    b: &TestNode,
    count: usize,
    tag: &str,
) -> Vec<(MessageId, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..count {
        let mut body = format!("{tag} message {i} ").into_bytes();
        body.resize(1024, b'.');
        let id = a.node.send(&b.node.identity(), &body).await.expect("send");
        out.push((id, body));
    }
    out
}

/// `a` sends `body` to `b`; waits until `b` has it and `a` its receipt.
pub async fn exchange(a: &TestNode, b: &TestNode, body: &[u8]) {
    let id = a.node.send(&b.node.identity(), body).await.expect("send");
    wait_until(30, "message arrives", || {
        let log = b.log.clone();
        async move { log.lock().expect("log").received.iter().any(|r| r.1 == id) }
    })
    .await;
    wait_until(30, "receipt returns", || {
        let log = a.log.clone();
        async move { log.lock().expect("log").delivered.contains(&id) }
    })
    .await;
}

/// Waits until `n` has received a message with exactly `body`.
pub async fn wait_for_body(n: &TestNode, body: &'static [u8], secs: u64) {
    wait_until(secs, "the message", || {
        let log = n.log.clone();
        async move {
            log.lock()
                .expect("log")
                .received
                .iter()
                .any(|r| r.2 == body)
        }
    })
    .await;
}
