//! Engines connected by an in-process harness on a virtual clock: custody,
//! carriers, receipts as anti-packets, quotas, replay across restart, TTL,
//! hop limits and routing strategies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use ferry_core::{
    crypto::Trust,
    engine::{
        Delivery, Engine, EngineConfig, Event, Input, MemoryStore, Output, PeerId, Quotas,
        RejectReason, SourceId, Strategy, Verdict,
    },
    identity::Identity,
    keys::IdentityKey,
    proto::{self, v1},
};
use rand::{SeedableRng as _, rngs::StdRng};

const T0: u64 = 1_700_000_000;

struct Node {
    engine: Engine<MemoryStore, StdRng>,
    inbox: Vec<Delivery>,
    events: Vec<Event>,
    gossip_seen: HashSet<[u8; 32]>,
}

struct Net {
    nodes: Vec<Node>,
    links: BTreeSet<(usize, usize)>,
    now: u64,
    /// Gossip messages delivered between nodes (for traffic assertions).
    gossip_deliveries: usize,
    /// Envelopes sent by sync, per (from, to).
    synced: HashMap<(usize, usize), usize>,
}

fn key(i: usize) -> [u8; 32] {
    [i as u8 + 1; 32]
}

impl Net {
    fn new(n: usize, config: EngineConfig) -> Self {
        Self::with_seed(n, config, 0)
    }

    fn with_seed(n: usize, config: EngineConfig, seed: u64) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                engine: Engine::open(
                    MemoryStore::new(),
                    key(i),
                    Identity::generate,
                    config,
                    StdRng::seed_from_u64(seed * 1000 + i as u64),
                    T0,
                )
                .unwrap(),
                inbox: Vec::new(),
                events: Vec::new(),
                gossip_seen: HashSet::new(),
            })
            .collect();
        Self {
            nodes,
            links: BTreeSet::new(),
            now: T0,
            gossip_deliveries: 0,
            synced: HashMap::new(),
        }
    }

    fn id(&self, i: usize) -> IdentityKey {
        self.nodes[i].engine.keyring().identity().identity_key()
    }

    /// Makes `a` and `b` contacts of each other.
    fn introduce(&mut self, a: usize, b: usize) {
        let now = self.now;
        let ca = self.nodes[a]
            .engine
            .keyring_mut()
            .identity_mut()
            .contact_card(None, now, 4)
            .unwrap();
        let cb = self.nodes[b]
            .engine
            .keyring_mut()
            .identity_mut()
            .contact_card(None, now, 4)
            .unwrap();
        let _ = self.nodes[a]
            .engine
            .add_contact(cb, Trust::Verified)
            .unwrap();
        let _ = self.nodes[b]
            .engine
            .add_contact(ca, Trust::Verified)
            .unwrap();
        self.pump();
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn connect(&mut self, a: usize, b: usize) {
        self.links.insert((a.min(b), a.max(b)));
        let now = self.now;
        self.nodes[a]
            .engine
            .handle(
                Input::PeerUp {
                    peer: PeerId(b as u64),
                    trusted: false,
                    initiator: true,
                    source: SourceId(PeerId(b as u64).0),
                },
                now,
            )
            .unwrap();
        self.nodes[b]
            .engine
            .handle(
                Input::PeerUp {
                    peer: PeerId(a as u64),
                    trusted: false,
                    initiator: false,
                    source: SourceId(PeerId(a as u64).0),
                },
                now,
            )
            .unwrap();
        self.pump();
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        let now = self.now;
        self.nodes[a]
            .engine
            .handle(
                Input::PeerDown {
                    peer: PeerId(b as u64),
                },
                now,
            )
            .unwrap();
        self.nodes[b]
            .engine
            .handle(
                Input::PeerDown {
                    peer: PeerId(a as u64),
                },
                now,
            )
            .unwrap();
    }

    fn send(&mut self, from: usize, to: usize, body: &[u8]) -> ferry_core::engine::MessageId {
        let to = self.id(to);
        let now = self.now;
        let id = self.nodes[from].engine.send(&to, body, now).unwrap();
        self.pump();
        id
    }

    fn advance(&mut self, secs: u64) {
        self.now += secs;
        let now = self.now;
        for node in &mut self.nodes {
            if node.engine.poll_timeout().is_some_and(|t| t <= now) {
                node.engine.handle(Input::Timeout, now).unwrap();
            }
        }
        self.pump();
    }

    /// Carries out outputs until every node is quiet. Gossip floods over
    /// links with a per-node duplicate cache, forwarding only accepted
    /// messages, as gossipsub does.
    fn pump(&mut self) {
        let mut queue: VecDeque<(usize, Output)> = VecDeque::new();
        for _ in 0..10_000 {
            let now = self.now;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                // Due timers are served, as a driver does.
                if node.engine.poll_timeout().is_some_and(|t| t <= now) {
                    node.engine.handle(Input::Timeout, now).unwrap();
                }
                while let Some(o) = node.engine.poll_output() {
                    queue.push_back((i, o));
                }
            }
            let Some((i, output)) = queue.pop_front() else {
                return;
            };
            let now = self.now;
            match output {
                Output::Publish { content_id, bytes } => {
                    self.nodes[i].gossip_seen.insert(content_id);
                    self.flood(i, content_id, &bytes, now);
                }
                Output::SendFrame { peer, bytes } => {
                    let j = peer.0 as usize;
                    if self.linked(i, j) {
                        if let Ok(v1::SyncFrame {
                            kind: Some(v1::sync_frame::Kind::Envelopes(batch)),
                            ..
                        }) = proto::decode::<v1::SyncFrame>(&bytes)
                        {
                            *self.synced.entry((i, j)).or_default() += batch.envelopes.len();
                        }
                        self.nodes[j]
                            .engine
                            .handle(
                                Input::Frame {
                                    from: PeerId(i as u64),
                                    bytes: &bytes,
                                },
                                now,
                            )
                            .unwrap();
                        self.nodes[i]
                            .engine
                            .handle(
                                Input::FrameAcked {
                                    peer: PeerId(j as u64),
                                },
                                now,
                            )
                            .unwrap();
                    }
                }
                Output::Deliver(d) => {
                    assert!(self.nodes[i].engine.ack_delivery(&d.message_id).unwrap());
                    self.nodes[i].inbox.push(d);
                }
                Output::Event(e) => self.nodes[i].events.push(e),
            }
        }
        panic!("network did not settle");
    }

    fn flood(&mut self, from: usize, id: [u8; 32], bytes: &[u8], now: u64) {
        let neighbours: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != from && self.linked(from, j))
            .collect();
        for j in neighbours {
            if !self.nodes[j].gossip_seen.insert(id) {
                continue;
            }
            self.gossip_deliveries += 1;
            let verdict = self.nodes[j]
                .engine
                .handle(
                    Input::Gossip {
                        from: PeerId(from as u64),
                        bytes,
                    },
                    now,
                )
                .unwrap();
            if verdict == Verdict::Accept {
                self.flood(j, id, bytes, now);
            }
        }
    }

    fn delivered(&self, node: usize) -> Vec<Vec<u8>> {
        self.nodes[node]
            .inbox
            .iter()
            .map(|d| d.body.clone())
            .collect()
    }

    fn receipts(&self, node: usize) -> Vec<ferry_core::engine::MessageId> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { message_id } => Some(*message_id),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn direct_link_delivers_once_and_the_receipt_comes_back() {
    let mut net = Net::new(2, EngineConfig::default());
    net.introduce(0, 1);
    net.connect(0, 1);
    let id = net.send(0, 1, b"hello");
    assert_eq!(net.delivered(1), vec![b"hello".to_vec()]);
    // Receipts wait a random delay before they go (threat item 21).
    assert!(net.receipts(0).is_empty());
    let (_, most) = EngineConfig::default().receipt_delay_secs;
    net.advance(most);
    assert_eq!(net.receipts(0), vec![id]);
    assert_eq!(net.nodes[0].engine.outbox_len(), 0);
}

#[test]
fn an_offline_recipient_gets_the_message_through_a_carrier() {
    // A and B never meet. C meets A, later B, later A again.
    let (a, b, c) = (0, 1, 2);
    let mut net = Net::new(3, EngineConfig::default());
    net.introduce(a, b);
    net.connect(a, c);
    let id = net.send(a, b, b"through the carrier");
    assert!(net.delivered(b).is_empty());
    net.disconnect(a, c);
    net.advance(3600);

    net.connect(c, b);
    assert_eq!(net.delivered(b), vec![b"through the carrier".to_vec()]);
    // B's delivery proof (sent with B's next batch of proofs) purged C's
    // relay copy with C's next batch; B's receipt reached C after its delay.
    let (_, proofs) = EngineConfig::default().proof_delay_secs;
    let (_, receipts) = EngineConfig::default().receipt_delay_secs;
    for _ in 0..3 {
        net.advance(proofs.max(receipts));
    }
    assert!(net.nodes[c].engine.counters().purged_by_receipt >= 1);
    net.disconnect(c, b);
    net.advance(3600);

    assert!(net.receipts(a).is_empty());
    net.connect(c, a);
    assert_eq!(net.receipts(a), vec![id], "receipt carried back by C");
    assert_eq!(net.nodes[a].engine.outbox_len(), 0);
    assert_eq!(net.delivered(b).len(), 1, "exactly once");
}

#[test]
fn partitions_heal_by_reconciliation_not_gossip_replay() {
    // Two halves {0,1,2} and {3,4,5} in lines; each side sends 20 messages
    // to the other side; then one bridge link 2-3.
    let mut net = Net::new(6, EngineConfig::default());
    for (x, y) in [(0, 3), (1, 4), (2, 5)] {
        net.introduce(x, y);
    }
    for (x, y) in [(0, 1), (1, 2), (3, 4), (4, 5)] {
        net.connect(x, y);
    }
    for i in 0..20u8 {
        net.send(0, 3, &[i]);
        net.send(4, 1, &[100 + i]);
        net.send(5, 2, &[200 + i]);
    }
    assert!(net.delivered(3).is_empty());
    let before = net.gossip_deliveries;
    let synced_before: u64 = net
        .nodes
        .iter()
        .map(|n| n.engine.counters().sync_envelopes_received)
        .sum();
    net.connect(2, 3);
    assert_eq!(net.delivered(3).len(), 20);
    assert_eq!(net.delivered(1).len(), 20);
    assert_eq!(net.delivered(2).len(), 20);
    let synced: u64 = net
        .nodes
        .iter()
        .map(|n| n.engine.counters().sync_envelopes_received)
        .sum::<u64>()
        - synced_before;
    assert!(
        synced >= 60,
        "the bridge carried the backlog by sync: {synced}"
    );
    // Gossip after the bridge is only receipts and their floods, not a
    // replay of the 60 messages.
    eprintln!(
        "gossip deliveries after bridge: {}",
        net.gossip_deliveries - before
    );
    let (_, receipts) = EngineConfig::default().receipt_delay_secs;
    for _ in 0..3 {
        net.advance(receipts);
    }
    assert_eq!(net.receipts(0).len(), 20);
    assert_eq!(net.receipts(4).len(), 20);
    assert_eq!(net.receipts(5).len(), 20);
}

#[test]
fn replays_are_rejected_across_a_restart() {
    let mut net = Net::new(2, EngineConfig::default());
    net.introduce(0, 1);
    net.connect(0, 1);
    // Capture the envelope bytes as they are published.
    let to = net.id(1);
    let now = net.now;
    net.nodes[0].engine.send(&to, b"once", now).unwrap();
    let Some(Output::Publish { bytes, .. }) = net.nodes[0].engine.poll_output() else {
        panic!()
    };
    net.nodes[1]
        .engine
        .handle(
            Input::Gossip {
                from: PeerId(0),
                bytes: &bytes,
            },
            now,
        )
        .unwrap();
    net.pump();
    assert_eq!(net.delivered(1).len(), 1);

    // Restart node 1 from its store (same "disk").
    let store = net.nodes[1].engine.store().clone();
    let mut restarted = Engine::open(
        store,
        key(1),
        |_| panic!("identity must be loaded from the store"),
        EngineConfig::default(),
        StdRng::seed_from_u64(99),
        now,
    )
    .unwrap();
    let verdict = restarted
        .handle(
            Input::Gossip {
                from: PeerId(0),
                bytes: &bytes,
            },
            now + 1,
        )
        .unwrap();
    assert_eq!(verdict, Verdict::Ignore);
    while let Some(o) = restarted.poll_output() {
        assert!(
            !matches!(o, Output::Deliver(_)),
            "replayed message delivered again"
        );
    }
}

#[test]
fn expired_envelopes_are_swept_and_never_accepted() {
    let config = EngineConfig {
        message_ttl_secs: 3600,
        ..EngineConfig::default()
    };
    let mut net = Net::new(3, config);
    net.introduce(0, 1);
    net.connect(0, 2);
    net.send(0, 1, b"short-lived");
    assert_eq!(net.nodes[2].engine.held_count(), 1);
    net.disconnect(0, 2);
    net.advance(3600 + 600 + 1);
    assert_eq!(net.nodes[2].engine.held_count(), 0, "relay swept it");
    assert!(
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Expired { .. }))
    );
    assert_eq!(net.nodes[0].engine.outbox_len(), 0);
    // A late carrier cannot reintroduce it: the recipient meets nobody who
    // holds it, and an expired envelope is ignored on arrival anyway.
    net.connect(2, 1);
    assert!(net.delivered(1).is_empty());
}

#[test]
fn hop_limits_stop_propagation() {
    let config = EngineConfig {
        hop_limit: 2,
        ..EngineConfig::default()
    };
    // A line 0-1-2-3-4 (relays only forward by sync here: gossip off by
    // connecting after sending).
    let mut net = Net::new(5, config);
    net.introduce(0, 4);
    net.send(0, 4, b"far");
    for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 4)] {
        net.connect(x, y);
    }
    assert!(net.nodes[1].engine.held_count() >= 1);
    assert_eq!(
        net.nodes[2].engine.held_count(),
        0,
        "hop limit reached after one relay"
    );
    assert!(net.delivered(4).is_empty());
}

#[test]
fn spray_and_wait_splits_the_budget_and_relays_do_not_store_wait_copies() {
    let config = EngineConfig {
        strategy: Strategy::SprayAndWait { copies: 4 },
        ..EngineConfig::default()
    };
    // Source 0, recipient 5, carriers 1..4; sequential meetings.
    let mut net = Net::new(6, config);
    net.introduce(0, 5);
    net.send(0, 5, b"sprayed");
    net.connect(0, 1); // 1 gets 2, 0 keeps 2
    net.disconnect(0, 1);
    net.connect(0, 2); // 2 gets 1, 0 keeps 1
    net.disconnect(0, 2);
    net.connect(0, 3); // 0 is in the wait phase: nothing more handed out
    net.disconnect(0, 3);
    net.connect(1, 4); // 1 gives 1, keeps 1
    net.disconnect(1, 4);
    let holders: Vec<usize> = (1..5)
        .filter(|&i| net.nodes[i].engine.held_count() > 0)
        .collect();
    assert_eq!(
        holders,
        vec![1, 2, 4],
        "exactly the copy budget spread: 0,1,2,4 hold one each"
    );
    assert!(net.delivered(5).is_empty());
    // A wait-phase carrier meets the recipient: delivered.
    net.connect(2, 5);
    assert_eq!(net.delivered(5), vec![b"sprayed".to_vec()]);
}

/// The review's static-topology finding: links that were up before the
/// message existed must be sprayed too (they were not: spray-and-wait then
/// relayed exactly what direct delivery did). Every link of this chain
/// 0-1-2-5 is up before the send.
#[test]
fn spray_and_wait_sprays_on_links_already_up() {
    let config = EngineConfig {
        strategy: Strategy::SprayAndWait { copies: 4 },
        ..EngineConfig::default()
    };
    let mut net = Net::new(6, config);
    net.introduce(0, 5);
    for (a, b) in [(0, 1), (1, 2), (2, 5)] {
        net.connect(a, b);
    }
    net.send(0, 5, b"sprayed at once");
    // 0 gives 2 of its 4 copies to 1, which gives 1 of them to 2: both
    // hold one, at once, with nothing connecting after the send.
    let holders: Vec<usize> = (1..5)
        .filter(|&i| net.nodes[i].engine.held_count() > 0)
        .collect();
    assert_eq!(holders, vec![1, 2]);
    // 2's copy is in the wait phase: shown to its neighbour when they next
    // reconcile (the node does every minute), and 5 is the recipient.
    assert!(net.delivered(5).is_empty());
    net.nodes[2]
        .engine
        .handle(Input::Resync { peer: PeerId(5) }, net.now)
        .unwrap();
    net.pump();
    assert_eq!(net.delivered(5), vec![b"sprayed at once".to_vec()]);
}

/// Budgets are handed to connected peers in a random order: which of four
/// equal neighbours gets copies changes from one message to the next
/// (taken in order, the first two got them every time, so the oldest
/// connections collected half of every budget).
#[test]
fn spray_order_among_connected_peers_is_random() {
    let config = EngineConfig {
        strategy: Strategy::SprayAndWait { copies: 4 },
        ..EngineConfig::default()
    };
    let mut ever_held = BTreeSet::new();
    for seed in 0..12 {
        let mut net = Net::with_seed(6, config, seed);
        net.introduce(0, 5);
        for leaf in 1..5 {
            net.connect(0, leaf);
        }
        net.send(0, 5, b"x");
        let holders: Vec<usize> = (1..5)
            .filter(|&i| net.nodes[i].engine.held_count() > 0)
            .collect();
        // Two leaves take copies (2 and 1); a third is shown the last one.
        assert_eq!(holders.len(), 2, "seed {seed}: {holders:?}");
        ever_held.extend(holders);
    }
    assert_eq!(ever_held.len(), 4, "{ever_held:?}");
}

/// The review's recipient finding: a relay handed a spray budget keeps its
/// copy and hands half on to its other peers at once; the recipient did
/// neither, which told a watcher of its links (or a colluding neighbour)
/// who the message was for. Now both look the same: node 2 (recipient of
/// the first message, relay of the second) keeps a copy and passes one on
/// to 3 in both cases.
#[test]
fn a_recipient_keeps_and_passes_on_a_budgeted_copy_as_a_relay_does() {
    let config = EngineConfig {
        strategy: Strategy::SprayAndWait { copies: 4 },
        ..EngineConfig::default()
    };
    for to in [2, 4] {
        let mut net = Net::new(5, config);
        net.introduce(0, to);
        for (a, b) in [(0, 2), (2, 3)] {
            net.connect(a, b);
        }
        net.send(0, to, b"for 2, or through 2");
        assert_eq!(
            net.nodes[2].engine.held_count(),
            1,
            "to {to}: 2 keeps a copy"
        );
        assert_eq!(
            net.nodes[3].engine.held_count(),
            1,
            "to {to}: 2 passes one on"
        );
        assert_eq!(net.delivered(2).len(), usize::from(to == 2));
    }
}

/// A wait-phase copy is shown to each peer once: a carrier that meets the
/// same peer again does not send it again (it did, on every contact).
#[test]
fn wait_phase_copies_are_shown_to_a_peer_once() {
    let config = EngineConfig {
        strategy: Strategy::DirectOnly,
        ..EngineConfig::default()
    };
    let mut net = Net::new(3, config);
    net.introduce(0, 2);
    net.send(0, 2, b"in person");
    for _ in 0..3 {
        // 0 starts reconciliation (initiator), so it pushes what 1 lacks.
        net.connect(0, 1);
        net.advance(60);
        net.disconnect(0, 1);
    }
    assert_eq!(net.synced.get(&(0, 1)).copied().unwrap_or(0), 1);
    assert_eq!(net.nodes[1].engine.held_count(), 0, "a relay keeps no copy");
    net.connect(0, 2);
    assert_eq!(net.delivered(2), vec![b"in person".to_vec()]);
}

#[test]
fn direct_only_is_never_stored_by_relays() {
    let config = EngineConfig {
        strategy: Strategy::DirectOnly,
        ..EngineConfig::default()
    };
    let mut net = Net::new(3, config);
    net.introduce(0, 1);
    net.send(0, 1, b"in person");
    net.connect(0, 2);
    assert_eq!(net.nodes[2].engine.held_count(), 0);
    net.disconnect(0, 2);
    net.connect(0, 1);
    assert_eq!(net.delivered(1), vec![b"in person".to_vec()]);
}

#[test]
fn quotas_reject_strangers_with_a_reason_and_keep_contacts_mail() {
    let quotas = Quotas {
        global_bytes: 8 * 700,
        per_tag_bytes: 4 * 700,
        per_peer_bytes: 1 << 20,
    };
    let config = EngineConfig {
        quotas,
        ..EngineConfig::default()
    };
    // Node 0 is the relay; 1 is a stranger flooding it; 2 and 3 are contacts
    // whose mail it carries (trusted link from 2).
    let mut net = Net::new(5, config);
    for i in 0..10u8 {
        // 10 distinct recipients so the per-tag quota is not what stops them.
        let mut other = Net::with_seed(2, EngineConfig::default(), 100 + u64::from(i));
        other.introduce(0, 1);
        let to = other.id(1);
        let now = net.now;
        other.nodes[0].engine.send(&to, &[i], now).unwrap();
        let Some(Output::Publish { bytes, .. }) = other.nodes[0].engine.poll_output() else {
            panic!()
        };
        net.nodes[0]
            .engine
            .handle(
                Input::PeerUp {
                    peer: PeerId(1),
                    trusted: false,
                    initiator: false,
                    source: SourceId(PeerId(1).0),
                },
                now,
            )
            .unwrap();
        net.nodes[0]
            .engine
            .handle(
                Input::Gossip {
                    from: PeerId(1),
                    bytes: &bytes,
                },
                now,
            )
            .unwrap();
    }
    net.pump();
    let held = net.nodes[0].engine.held_count();
    assert!(
        (6..10).contains(&held),
        "global quota bounds strangers' mail: {held}"
    );
    let rejected = net.nodes[0]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Rejected {
                    reason: RejectReason::GlobalQuota,
                    ..
                }
            )
        })
        .count();
    assert_eq!(rejected, 10 - held, "every refusal is an explicit event");

    // A contact's envelope arrives over a trusted link: strangers make room.
    net.introduce(2, 3);
    let to = net.id(3);
    let now = net.now;
    net.nodes[2].engine.send(&to, b"contact mail", now).unwrap();
    let Some(Output::Publish { bytes, content_id }) = net.nodes[2].engine.poll_output() else {
        panic!()
    };
    net.nodes[0]
        .engine
        .handle(
            Input::PeerUp {
                peer: PeerId(2),
                trusted: true,
                initiator: false,
                source: SourceId(PeerId(2).0),
            },
            now,
        )
        .unwrap();
    let v = net.nodes[0]
        .engine
        .handle(
            Input::Gossip {
                from: PeerId(2),
                bytes: &bytes,
            },
            now,
        )
        .unwrap();
    assert_eq!(v, Verdict::Accept);
    assert!(
        net.nodes[0].engine.holds(&content_id),
        "contact mail kept, a stranger's evicted"
    );
    assert!(net.nodes[0].engine.held_bytes() <= quotas.global_bytes);

    // Per-tag quota: many envelopes to one recipient from a stranger.
    let mut flood = Net::new(2, EngineConfig::default());
    flood.introduce(0, 1);
    let to = flood.id(1);
    let mut relay = Net::new(1, config);
    relay.nodes[0]
        .engine
        .handle(
            Input::PeerUp {
                peer: PeerId(7),
                trusted: false,
                initiator: false,
                source: SourceId(PeerId(7).0),
            },
            now,
        )
        .unwrap();
    for i in 0..8u8 {
        flood.nodes[0].engine.send(&to, &[i], now).unwrap();
        let Some(Output::Publish { bytes, .. }) = flood.nodes[0].engine.poll_output() else {
            panic!()
        };
        relay.nodes[0]
            .engine
            .handle(
                Input::Gossip {
                    from: PeerId(7),
                    bytes: &bytes,
                },
                now,
            )
            .unwrap();
    }
    relay.pump();
    assert!(relay.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::Rejected {
            reason: RejectReason::TagQuota,
            ..
        }
    )));
    assert!(relay.nodes[0].engine.held_count() <= 4);
}

#[test]
fn invalid_envelopes_are_rejected_and_counted() {
    let mut net = Net::new(1, EngineConfig::default());
    let now = net.now;
    net.nodes[0]
        .engine
        .handle(
            Input::PeerUp {
                peer: PeerId(9),
                trusted: false,
                initiator: false,
                source: SourceId(PeerId(9).0),
            },
            now,
        )
        .unwrap();
    for junk in [&b""[..], b"\x0a\x05hello", &[0xff; 600]] {
        let v = net.nodes[0]
            .engine
            .handle(
                Input::Gossip {
                    from: PeerId(9),
                    bytes: junk,
                },
                now,
            )
            .unwrap();
        assert_eq!(v, Verdict::Reject);
        let v = net.nodes[0]
            .engine
            .handle(
                Input::Frame {
                    from: PeerId(9),
                    bytes: junk,
                },
                now,
            )
            .unwrap();
        assert_eq!(v, Verdict::Reject);
    }
    assert_eq!(net.nodes[0].engine.counters().invalid, 6);
}

#[test]
fn a_key_change_reaches_the_app_as_an_event() {
    let mut net = Net::new(2, EngineConfig::default());
    net.introduce(0, 1);
    assert_eq!(
        net.nodes[0].engine.keyring().contact(&net.id(1)).unwrap().1,
        Trust::Verified
    );
    // Node 1 re-keys (new device keys, same identity) and re-issues its card.
    let now = net.now;
    let keyring = net.nodes[1].engine.keyring_mut();
    keyring
        .identity_mut()
        .rotate_encryption_keys(&mut rand::rng());
    let card = keyring
        .identity_mut()
        .contact_card(None, now + 1, 2)
        .unwrap();
    let _ = net.nodes[0]
        .engine
        .add_contact(card, Trust::Unverified)
        .unwrap();
    net.pump();
    let contact = net.id(1);
    assert!(net.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::KeyChanged { contact: c, was_verified: true } if *c == contact
    )));
    assert_eq!(
        net.nodes[0].engine.keyring().contact(&contact).unwrap().1,
        Trust::Unverified
    );
}

/// Periodic resync starts a new round only when the last one finished (or
/// went unanswered for `RESYNC_ROUND_TIMEOUT_SECS`), so rounds never
/// overlap and push the same envelopes twice; a round that ends on the
/// responder's side (equal sets) is reported back so the initiator knows.
#[test]
fn resync_waits_for_the_running_round() {
    let mut net = Net::new(2, EngineConfig::default());
    net.connect(0, 1); // pumped: the first round (equal sets) completed
    let frames = |engine: &mut Engine<MemoryStore, StdRng>| {
        let mut frames = 0;
        while let Some(output) = engine.poll_output() {
            if matches!(output, Output::SendFrame { .. }) {
                frames += 1;
            }
        }
        frames
    };
    let now = net.now;
    let a = &mut net.nodes[0].engine;
    a.handle(Input::Resync { peer: PeerId(1) }, now).unwrap();
    assert_eq!(frames(a), 1, "a finished round: resync starts a new one");
    // That round's frame is never answered.
    a.handle(Input::Resync { peer: PeerId(1) }, now + 1)
        .unwrap();
    assert_eq!(frames(a), 0, "no second round while one is running");
    let later = now + ferry_core::engine::RESYNC_ROUND_TIMEOUT_SECS;
    a.handle(Input::Resync { peer: PeerId(1) }, later).unwrap();
    assert_eq!(frames(a), 1, "an unanswered round is abandoned");
    // The responder never starts rounds.
    let b = &mut net.nodes[1].engine;
    b.handle(Input::Resync { peer: PeerId(0) }, now).unwrap();
    assert_eq!(frames(b), 0);
}

/// The stored status of node `node`'s message `id`.
fn status(
    net: &Net,
    node: usize,
    id: &ferry_core::engine::MessageId,
) -> Option<ferry_core::engine::MessageStatus> {
    net.nodes[node]
        .engine
        .message_status(id)
        .unwrap()
        .map(|r| r.status)
}

/// A sent message is Queued, becomes Carried when a reconciliation round
/// shows the relay holds it, whichever side of the link starts rounds,
/// then Delivered; nothing moves it back.
#[test]
fn message_status_follows_the_message_on_both_sides_of_a_round() {
    use ferry_core::engine::MessageStatus;
    for sender_starts_rounds in [true, false] {
        let (s, b, r) = (0, 1, 2);
        let mut net = Net::new(3, EngineConfig::default());
        net.introduce(s, b);
        if sender_starts_rounds {
            net.connect(s, r);
        } else {
            net.connect(r, s);
        }
        // Gossip hands it to R, but gossip says nothing back.
        let id = net.send(s, b, b"hello");
        assert_eq!(status(&net, s, &id), Some(MessageStatus::Queued));
        // A round (started by whichever side starts them) shows R holds it.
        let (starter, other) = if sender_starts_rounds { (s, r) } else { (r, s) };
        let now = net.now;
        net.nodes[starter]
            .engine
            .handle(
                Input::Resync {
                    peer: PeerId(other as u64),
                },
                now,
            )
            .unwrap();
        net.pump();
        assert_eq!(
            status(&net, s, &id),
            Some(MessageStatus::Carried),
            "sender starts rounds: {sender_starts_rounds}"
        );
        assert!(
            net.nodes[s]
                .events
                .iter()
                .any(|e| matches!(e, Event::Carried { message_id } if *message_id == id))
        );
        // R meets B, B's receipt comes back through R.
        net.connect(r, b);
        let (_, receipts) = EngineConfig::default().receipt_delay_secs;
        for _ in 0..3 {
            net.advance(receipts);
        }
        assert_eq!(net.receipts(s), vec![id]);
        assert_eq!(status(&net, s, &id), Some(MessageStatus::Delivered));
        // A later round cannot move a delivered message back.
        let now = net.now;
        net.nodes[starter]
            .engine
            .handle(
                Input::Resync {
                    peer: PeerId(other as u64),
                },
                now,
            )
            .unwrap();
        net.pump();
        assert_eq!(status(&net, s, &id), Some(MessageStatus::Delivered));
    }
}

/// A message that never reaches anyone is Queued, then Expired; one whose
/// envelope the relay never got is not Carried.
#[test]
fn message_status_expires_and_is_not_carried_by_a_peer_that_lacks_it() {
    use ferry_core::engine::MessageStatus;
    let (s, b, r) = (0, 1, 2);
    let mut net = Net::new(3, EngineConfig::default());
    net.introduce(s, b);
    let id = net.send(s, b, b"alone");
    // R connects as the round starter and holds something else entirely.
    net.introduce(r, b);
    net.send(r, b, b"other");
    net.links.insert((s, r));
    let now = net.now;
    // No gossip: only the round. The sender answers; R's set lacks ours.
    net.nodes[r]
        .engine
        .handle(
            Input::PeerUp {
                peer: PeerId(s as u64),
                trusted: false,
                initiator: true,
                source: SourceId(s as u64),
            },
            now,
        )
        .unwrap();
    net.nodes[s]
        .engine
        .handle(
            Input::PeerUp {
                peer: PeerId(r as u64),
                trusted: false,
                initiator: false,
                source: SourceId(r as u64),
            },
            now,
        )
        .unwrap();
    // The first frame of R's round alone: our envelope is not in its set.
    let frame = loop {
        match net.nodes[r].engine.poll_output() {
            Some(Output::SendFrame { bytes, .. }) => break bytes,
            Some(_) => continue,
            None => panic!("no reconciliation frame"),
        }
    };
    net.nodes[s]
        .engine
        .handle(
            Input::Frame {
                from: PeerId(r as u64),
                bytes: &frame,
            },
            now,
        )
        .unwrap();
    assert_eq!(status(&net, s, &id), Some(MessageStatus::Queued));
    net.links.remove(&(s, r));
    net.nodes[s]
        .engine
        .handle(
            Input::PeerDown {
                peer: PeerId(r as u64),
            },
            now,
        )
        .unwrap();
    while net.nodes[s].engine.poll_output().is_some() {}
    let ttl = EngineConfig::default().message_ttl_secs;
    net.advance(ttl + 3600);
    assert_eq!(status(&net, s, &id), Some(MessageStatus::Expired));
}
