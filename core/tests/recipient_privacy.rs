//! Threat item 21: no relay or neighbour can tell which node is a message's
//! recipient, or pair a message with its receipt. An observing relay R
//! records every frame and envelope its neighbours send it around a
//! delivery and across a reconnect.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeSet, VecDeque};

use ferry_core::{
    crypto::{Trust, tags},
    engine::{Engine, EngineConfig, Event, Input, MemoryStore, Output, PeerId, SourceId, Verdict},
    identity::Identity,
    proto::{self, v1},
};
use rand::{SeedableRng as _, rngs::StdRng};

const T0: u64 = 1_700_000_000;
const S: usize = 0; // sender
const V: usize = 1; // recipient
const Y: usize = 2; // a bystander relay
const R: usize = 3; // the observing relay
const Z: usize = 4; // a relay that holds the message and never hears the proof

/// What R received: (time, from, frame or gossip envelope).
type Record = Vec<(u64, usize, Received)>;

#[derive(Clone, Debug)]
enum Received {
    Frame(v1::SyncFrame),
    Gossip(v1::Envelope),
}

struct Net {
    nodes: Vec<Engine<MemoryStore, StdRng>>,
    links: BTreeSet<(usize, usize)>,
    now: u64,
    seen_by_r: Record,
    /// Every sync frame between any two nodes: (from, to, frame).
    frames: Vec<(usize, usize, v1::SyncFrame)>,
    receipts: Vec<ferry_core::engine::MessageId>,
    /// The last envelope gossiped to S, and the one that carried S's
    /// receipt (S's `Delivered` event follows the envelope that caused it).
    last_to_s: Option<[u8; 32]>,
    receipt_envelope: Option<[u8; 32]>,
    delivered_at: Option<u64>,
    gossip_seen: Vec<BTreeSet<[u8; 32]>>,
}

impl Net {
    fn new(n: usize) -> Self {
        let nodes = (0..n)
            .map(|i| {
                Engine::open(
                    MemoryStore::new(),
                    [i as u8 + 1; 32],
                    Identity::generate,
                    EngineConfig::default(),
                    StdRng::seed_from_u64(77 + i as u64),
                    T0,
                )
                .unwrap()
            })
            .collect();
        Self {
            nodes,
            links: BTreeSet::new(),
            now: T0,
            seen_by_r: Vec::new(),
            frames: Vec::new(),
            receipts: Vec::new(),
            last_to_s: None,
            receipt_envelope: None,
            delivered_at: None,
            gossip_seen: vec![BTreeSet::new(); n],
        }
    }

    fn introduce(&mut self, a: usize, b: usize) {
        let ca = self.nodes[a]
            .keyring_mut()
            .identity_mut()
            .contact_card(None, T0, 4)
            .unwrap();
        let cb = self.nodes[b]
            .keyring_mut()
            .identity_mut()
            .contact_card(None, T0, 4)
            .unwrap();
        let _ = self.nodes[a].add_contact(cb, Trust::Verified).unwrap();
        let _ = self.nodes[b].add_contact(ca, Trust::Verified).unwrap();
        self.pump();
    }

    fn connect(&mut self, a: usize, b: usize) {
        self.links.insert((a.min(b), a.max(b)));
        for (x, y, initiator) in [(a, b, true), (b, a, false)] {
            self.nodes[x]
                .handle(
                    Input::PeerUp {
                        peer: PeerId(y as u64),
                        trusted: false,
                        initiator,
                        source: SourceId(y as u64),
                    },
                    self.now,
                )
                .unwrap();
        }
        self.pump();
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        for (x, y) in [(a, b), (b, a)] {
            self.nodes[x]
                .handle(
                    Input::PeerDown {
                        peer: PeerId(y as u64),
                    },
                    self.now,
                )
                .unwrap();
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Moves the clock one second at a time, firing due timers.
    fn run_for(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now += 1;
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle(Input::Timeout, self.now).unwrap();
                }
            }
            self.pump();
        }
    }

    fn pump(&mut self) {
        let mut queue: VecDeque<(usize, Output)> = VecDeque::new();
        for _ in 0..100_000 {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(o) = node.poll_output() {
                    queue.push_back((i, o));
                }
            }
            let Some((i, output)) = queue.pop_front() else {
                return;
            };
            match output {
                Output::Publish { content_id, bytes } => {
                    self.gossip_seen[i].insert(content_id);
                    self.flood(i, content_id, &bytes);
                }
                Output::SendFrame { peer, bytes } => {
                    let j = peer.0 as usize;
                    if self.linked(i, j) {
                        let frame = proto::decode::<v1::SyncFrame>(&bytes).unwrap();
                        if j == R {
                            self.seen_by_r
                                .push((self.now, i, Received::Frame(frame.clone())));
                        }
                        self.frames.push((i, j, frame));
                        self.nodes[j]
                            .handle(
                                Input::Frame {
                                    from: PeerId(i as u64),
                                    bytes: &bytes,
                                },
                                self.now,
                            )
                            .unwrap();
                        self.nodes[i]
                            .handle(
                                Input::FrameAcked {
                                    peer: PeerId(j as u64),
                                },
                                self.now,
                            )
                            .unwrap();
                    }
                }
                Output::Deliver(d) => {
                    assert!(self.nodes[i].ack_delivery(&d.message_id).unwrap());
                    if i == V {
                        self.delivered_at = Some(self.now);
                    }
                }
                Output::Event(Event::Delivered { message_id }) => {
                    self.receipts.push(message_id);
                    if i == S {
                        self.receipt_envelope = self.last_to_s;
                    }
                }
                Output::Event(_) => {}
            }
        }
        panic!("never quiet");
    }

    /// Gossip over direct links, forwarding only accepted envelopes.
    fn flood(&mut self, from: usize, id: [u8; 32], bytes: &[u8]) {
        let neighbours: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != from && self.linked(from, j))
            .collect();
        for j in neighbours {
            if !self.gossip_seen[j].insert(id) {
                continue;
            }
            if j == R {
                let e = proto::decode::<v1::Envelope>(bytes).unwrap();
                self.seen_by_r.push((self.now, from, Received::Gossip(e)));
            }
            if j == S {
                self.last_to_s = Some(id);
            }
            let verdict = self.nodes[j]
                .handle(
                    Input::Gossip {
                        from: PeerId(from as u64),
                        bytes,
                    },
                    self.now,
                )
                .unwrap();
            if verdict == Verdict::Accept {
                self.flood(j, id, bytes);
            }
        }
    }

    fn proofs_from(&self, who: usize, since: u64) -> Vec<(u64, Vec<Vec<u8>>)> {
        self.seen_by_r
            .iter()
            .filter(|(t, from, _)| *from == who && *t >= since)
            .filter_map(|(t, _, r)| match r {
                Received::Frame(v1::SyncFrame {
                    kind: Some(v1::sync_frame::Kind::Delivered(d)),
                    ..
                }) => Some((*t, d.proofs.iter().map(|p| p.content_id.clone()).collect())),
                _ => None,
            })
            .collect()
    }
}

/// S sends V one message through R while Y and Z listen; Z then leaves with
/// its copy. Returns the net and the message's content ID.
fn deliver_one() -> (Net, [u8; 32], ferry_core::engine::MessageId) {
    let mut net = Net::new(5);
    net.introduce(S, V);
    for x in [S, V, Y, Z] {
        net.connect(R, x);
    }
    let to = net.nodes[V].keyring().identity().identity_key();
    let message_id = net.nodes[S].send(&to, b"meet at nine", net.now).unwrap();
    net.pump();
    assert!(net.delivered_at.is_some(), "V got it");
    let id = net
        .seen_by_r
        .iter()
        .find_map(|(_, from, r)| match r {
            Received::Gossip(e) if *from == S => Some(tags::content_id_of(e)),
            _ => None,
        })
        .unwrap();
    assert!(net.nodes[Z].holds(&id), "Z carries a copy");
    net.disconnect(R, Z);
    (net, id, message_id)
}

/// (a) The recipient sends no lone, immediate proof: its proofs go in the
/// same delayed batches as every relay's, and relays pass proofs on too.
#[test]
fn the_recipient_sends_proofs_as_late_as_any_relay_and_relays_pass_them_on() {
    let (mut net, id, _) = deliver_one();
    let t0 = net.delivered_at.unwrap();
    assert!(
        net.proofs_from(V, t0).is_empty(),
        "no proof at the moment of delivery"
    );
    let (low, high) = EngineConfig::default().proof_delay_secs;
    net.run_for(high + 1);
    let from_v = net.proofs_from(V, t0);
    assert!(!from_v.is_empty(), "V's proof goes out with its batch");
    assert!(
        from_v.iter().all(|(t, _)| *t >= t0 + low),
        "not before the delay"
    );
    // Y learned the proof from R and forwards it in its own batch, as V did.
    net.run_for(2 * high + 2);
    let from_y = net.proofs_from(Y, t0);
    assert!(
        from_y.iter().any(|(_, ids)| ids.contains(&id.to_vec())),
        "a bystander passes the proof on like the recipient"
    );
}

/// (b) The receipt is not released with the delivery, and its expiry is its
/// own, not the message's: an observer cannot pair them by either.
#[test]
fn receipts_are_released_later_with_their_own_expiry() {
    let (mut net, _, message_id) = deliver_one();
    let t0 = net.delivered_at.unwrap();
    let message_expiry = net
        .seen_by_r
        .iter()
        .find_map(|(_, from, r)| match r {
            Received::Gossip(e) if *from == S => Some(e.expiry),
            _ => None,
        })
        .unwrap();
    let from_v_now = net
        .seen_by_r
        .iter()
        .filter(|(t, from, r)| *from == V && *t == t0 && matches!(r, Received::Gossip(_)))
        .count();
    assert_eq!(from_v_now, 0, "nothing published by V at delivery");
    let (low, high) = EngineConfig::default().receipt_delay_secs;
    net.run_for(high + 1);
    assert_eq!(net.receipts, vec![message_id], "the receipt arrived");
    let receipt_id = net.receipt_envelope.unwrap();
    let receipt = net
        .seen_by_r
        .iter()
        .find_map(|(t, from, r)| match r {
            Received::Gossip(e) if *from == V && tags::content_id_of(e) == receipt_id => {
                Some((*t, e.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert!(receipt.0 >= t0 + low, "released after the delay");
    assert_ne!(receipt.1.expiry, message_expiry, "an expiry of its own");
}

/// (c) The recipient keeps what it received in its reconciliation set
/// until its proof goes out, like a relay; and it never asks anyone for
/// its own mail or receipts, across reconnects.
#[test]
fn the_recipients_set_and_wants_look_like_a_relays() {
    let (mut net, id, _) = deliver_one();
    assert!(
        net.nodes[V].holds(&id),
        "V holds its message as every relay does"
    );
    let (_, high) = EngineConfig::default().receipt_delay_secs;
    net.run_for(high + 200);
    assert!(!net.nodes[V].holds(&id), "and drops it with its proof");
    // Z never heard the proof and still holds the message. V meets it and
    // reconciles (V initiates): V must not ask for its own message.
    net.disconnect(R, V);
    net.connect(V, Z);
    let wants: Vec<Vec<u8>> = net
        .frames
        .iter()
        .filter(|(from, to, _)| *from == V && *to == Z)
        .filter_map(|(_, _, f)| match &f.kind {
            Some(v1::sync_frame::Kind::Want(w)) => Some(w.ids.clone()),
            _ => None,
        })
        .collect();
    assert!(
        net.frames
            .iter()
            .any(|(from, to, _)| *from == V && *to == Z),
        "V and Z reconciled"
    );
    assert!(
        !wants.iter().any(|w| w.chunks(32).any(|c| c == id)),
        "V asked for its own message"
    );
}

/// (b, c) Receipts carry an openable commitment: once the sender read the
/// receipt, relays drop their copies of it instead of holding it to expiry.
#[test]
fn relays_drop_receipts_once_the_sender_read_them() {
    let (mut net, _, _) = deliver_one();
    let (_, high) = EngineConfig::default().receipt_delay_secs;
    let (_, proofs) = EngineConfig::default().proof_delay_secs;
    for _ in 0..=high {
        if net.receipt_envelope.is_some() {
            break;
        }
        net.run_for(1);
    }
    let receipt = net.receipt_envelope.unwrap();
    assert!(net.nodes[Y].holds(&receipt), "Y carries the receipt");
    net.run_for(3 * proofs + 3);
    assert!(!net.nodes[Y].holds(&receipt), "and drops it once S read it");
    assert!(!net.nodes[R].holds(&receipt));
}

/// A fresh link during the proof delay must not get the proof early: a
/// relay that reconnects to see who already knows a proof nobody has
/// announced would find the recipient.
#[test]
fn a_new_link_gets_no_proof_before_its_batch() {
    let (mut net, id, _) = deliver_one();
    net.connect(V, Z);
    let early = net
        .frames
        .iter()
        .filter(|(from, to, _)| *from == V && *to == Z)
        .any(|(_, _, f)| match &f.kind {
            Some(v1::sync_frame::Kind::Delivered(d)) => {
                d.proofs.iter().any(|p| p.content_id == id.to_vec())
            }
            _ => None::<()>.is_some(),
        });
    assert!(!early, "the proof went to a fresh link before its delay");
}

/// Relays do not pass on wait-phase copies shown by gossip, nor copies out
/// of hops; neither may the recipient, or it alone would forward them.
#[test]
fn the_recipients_verdict_is_a_relays() {
    let mut net = Net::new(5);
    net.introduce(S, V);
    let to = net.nodes[V].keyring().identity().identity_key();
    net.nodes[S].send(&to, b"wait phase", net.now).unwrap();
    let mut published = None;
    while let Some(o) = net.nodes[S].poll_output() {
        if let Output::Publish { bytes, .. } = o {
            published = Some(bytes);
        }
    }
    let envelope = proto::decode::<v1::Envelope>(&published.unwrap()).unwrap();
    // Neither field is covered by the content ID: any relay can set them.
    for (hop_limit, copy_budget) in [(8, 1), (1, 0)] {
        let mut copy = envelope.clone();
        copy.hop_limit = hop_limit;
        copy.copy_budget = copy_budget;
        let bytes = proto::encode(&copy);
        let relay = net.nodes[Y]
            .handle(
                Input::Gossip {
                    from: PeerId(9),
                    bytes: &bytes,
                },
                net.now,
            )
            .unwrap();
        assert_eq!(relay, Verdict::Ignore);
        let recipient = net.nodes[V]
            .handle(
                Input::Gossip {
                    from: PeerId(9),
                    bytes: &bytes,
                },
                net.now,
            )
            .unwrap();
        assert_eq!(
            recipient, relay,
            "hop limit {hop_limit}, budget {copy_budget}"
        );
    }
}

/// A relay offers a copy with one hop left over sync. Relays decline it,
/// the recipient opens it; afterwards neither asks for it again, so a
/// relay watching who keeps asking learns nothing.
#[test]
fn relays_and_recipients_both_stop_asking_for_a_copy_out_of_hops() {
    let (mut net, id, _) = deliver_one();
    let mut copy = None;
    while copy.is_none() {
        copy = net.seen_by_r.iter().find_map(|(_, from, r)| match r {
            Received::Gossip(e) if *from == S => Some(e.clone()),
            _ => None,
        });
    }
    let mut last_hop = copy.unwrap();
    last_hop.hop_limit = 1;
    let frame = proto::encode(&v1::SyncFrame {
        version: ferry_core::proto::limits::WIRE_VERSION,
        kind: Some(v1::sync_frame::Kind::Envelopes(v1::EnvelopeBatch {
            envelopes: vec![last_hop],
        })),
    });
    // A fresh relay W (node 5) gets the hop-limited copy; then both W and
    // the recipient V meet Z, which still holds the message, as initiators.
    net.nodes.push(
        Engine::open(
            MemoryStore::new(),
            [99; 32],
            Identity::generate,
            EngineConfig::default(),
            StdRng::seed_from_u64(99),
            T0,
        )
        .unwrap(),
    );
    net.gossip_seen.push(BTreeSet::new());
    let w = 5;
    // The offering relay: a peer the harness does not route to.
    net.nodes[w]
        .handle(
            Input::PeerUp {
                peer: PeerId(42),
                trusted: false,
                initiator: false,
                source: SourceId(42),
            },
            net.now,
        )
        .unwrap();
    net.nodes[w]
        .handle(
            Input::Frame {
                from: PeerId(42),
                bytes: &frame,
            },
            net.now,
        )
        .unwrap();
    while net.nodes[w].poll_output().is_some() {}
    assert!(!net.nodes[w].holds(&id), "W declined the copy out of hops");
    let (_, high) = EngineConfig::default().receipt_delay_secs;
    net.run_for(high + 200);
    for x in [w, V] {
        net.connect(x, Z);
        let asked = net
            .frames
            .iter()
            .filter(|(from, to, _)| *from == x && *to == Z)
            .any(|(_, _, f)| match &f.kind {
                Some(v1::sync_frame::Kind::Want(want)) => want.ids.chunks(32).any(|c| c == id),
                _ => false,
            });
        assert!(!asked, "node {x} asked Z for the message");
        net.disconnect(x, Z);
    }
}
