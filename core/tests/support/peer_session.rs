//! A stateful attack harness: two honest engines (A and B, contacts of each
//! other) and one adversarial peer M linked to A. M feeds A arbitrary
//! sequences of well-formed-or-not sync frames and envelopes between honest
//! traffic; after every step the harness checks:
//!
//! - nothing panicked (implicit);
//! - **amplification**: what A sends M beyond its own protocol (its own round
//!   openings, its delivery proofs on link-up, each envelope once per
//!   connection) stays within [`AMPLIFICATION`] × what M sent A, plus a
//!   fixed allowance per reconciliation round A could legitimately take part
//!   in (one per connection, per resync, per [`ROUND_INTERVAL`]);
//! - **copy budgets**: A hands M any one envelope at most once per
//!   connection (spray budgets split at most once per peer);
//! - **exactly once**: no message reaches B's app twice; at the end, with M
//!   silent and A and B linked, every message A sent B and B sent A arrives;
//! - **quotas**: what A holds for others stays within its global quota.
//!
//! Shared by the libFuzzer target `fuzz/fuzz_targets/peer_session.rs` and the
//! stable replay of its corpus in `core/tests/peer_session.rs` (the same
//! source file, included by path).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashSet, VecDeque};

use ferry_core::{
    crypto::{Trust, tags},
    engine::{
        Engine, EngineConfig, Input, MemoryStore, Output, PeerId, Quotas, SourceId, Strategy,
    },
    identity::Identity,
    proto::{self, limits, v1},
};
use rand::{SeedableRng as _, rngs::StdRng};

/// Bytes A may send M in answer to M's traffic, per byte M sent.
pub(crate) const AMPLIFICATION: u64 = 4;
/// What one reconciliation round may cost beyond that: fingerprints and ID
/// lists describing A's set (a fixed part plus this much per held ID).
pub(crate) const ROUND_ALLOWANCE: u64 = 16 * 1024;
pub(crate) const ROUND_ALLOWANCE_PER_ID: u64 = 64;
/// One round's allowance is earned per this many virtual seconds.
pub(crate) const ROUND_INTERVAL: u64 = 20;

const T0: u64 = 1_700_000_000;
const A: PeerId = PeerId(0);
const B: PeerId = PeerId(1);
const M: PeerId = PeerId(2);
const GLOBAL_QUOTA: u64 = 256 * 1024;
/// The harness stops advancing the clock past this, so honest mail (3-day
/// lifetime) cannot expire before the final delivery check.
const MAX_CLOCK_ADVANCE: u64 = 24 * 3600;

type Node = Engine<MemoryStore, StdRng>;

/// Reads the fuzzer's bytes as a sequence of small decisions.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map_while(|_| self.byte()).collect()
    }
}

/// What an honest engine A sent M, classified.
#[derive(Default)]
struct Ledger {
    /// Bytes M sent A (frames and envelopes).
    from_m: u64,
    /// Bytes A sent M that its own protocol does not account for.
    excess: u64,
    /// Envelopes A sent M in this connection.
    pushed: HashSet<[u8; 32]>,
    /// Frames A sent M, for M to reflect back.
    frames: Vec<Vec<u8>>,
    /// Every frame A sent M since the last [`Session::take_frames_to_m`].
    unread: Vec<v1::SyncFrame>,
    /// Reconciliation rounds A could legitimately have taken part in with M:
    /// one per connection, per resync, per `ROUND_INTERVAL` of time passed.
    rounds: u64,
    /// The most IDs A held at any time (for the per-round allowance).
    max_held: u64,
}

/// The harness state.
pub(crate) struct Session {
    a: Node,
    b: Node,
    now: u64,
    linked_ab: bool,
    /// Envelope IDs and encodings M has seen (its pool of "known" IDs).
    pool: Vec<[u8; 32]>,
    envelopes: Vec<v1::Envelope>,
    ledger: Ledger,
    /// Whether outputs A emits right now belong to its own protocol
    /// (a round it opens, proofs on link-up) rather than an answer to M.
    own_protocol: bool,
    sent_to_b: HashSet<ferry_core::engine::MessageId>,
    sent_to_a: HashSet<ferry_core::engine::MessageId>,
    delivered_b: HashSet<ferry_core::engine::MessageId>,
    delivered_a: HashSet<ferry_core::engine::MessageId>,
    to_a: VecDeque<(PeerId, Vec<u8>, bool)>,
    to_b: VecDeque<(PeerId, Vec<u8>, bool)>,
    m_initiator: bool,
    /// Whether M acknowledges A's frames (a silent M holds A's push window).
    m_acks: bool,
}

fn engine(seed: u64, strategy: Strategy) -> Node {
    let config = EngineConfig {
        strategy,
        quotas: Quotas {
            global_bytes: GLOBAL_QUOTA,
            per_tag_bytes: 64 * 1024,
            per_peer_bytes: 128 * 1024,
        },
        ..EngineConfig::default()
    };
    Engine::open(
        MemoryStore::new(),
        [seed as u8 + 1; 32],
        Identity::generate,
        config,
        StdRng::seed_from_u64(seed),
        T0,
    )
    .unwrap()
}

impl Session {
    fn new(strategy: Strategy, m_initiator: bool) -> Self {
        let mut a = engine(1, strategy);
        let mut b = engine(2, strategy);
        let ca = a
            .keyring_mut()
            .identity_mut()
            .contact_card(None, T0, 4)
            .unwrap();
        let cb = b
            .keyring_mut()
            .identity_mut()
            .contact_card(None, T0, 4)
            .unwrap();
        let _ = a.add_contact(cb, Trust::Verified).unwrap();
        let _ = b.add_contact(ca, Trust::Verified).unwrap();
        let mut s = Self {
            a,
            b,
            now: T0,
            linked_ab: false,
            pool: Vec::new(),
            envelopes: Vec::new(),
            ledger: Ledger::default(),
            own_protocol: false,
            sent_to_b: HashSet::new(),
            sent_to_a: HashSet::new(),
            delivered_b: HashSet::new(),
            delivered_a: HashSet::new(),
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            m_initiator,
            m_acks: true,
        };
        s.connect_m();
        s.pump().unwrap();
        s
    }

    fn connect_m(&mut self) {
        self.ledger.pushed.clear();
        self.ledger.rounds += 1;
        self.own_protocol = true;
        let _ = self.a.handle(
            Input::PeerUp {
                peer: M,
                trusted: false,
                initiator: !self.m_initiator,
                source: SourceId(M.0),
            },
            self.now,
        );
    }

    fn set_ab(&mut self, up: bool) {
        if up == self.linked_ab {
            return;
        }
        self.linked_ab = up;
        self.to_a.retain(|(from, ..)| *from != B);
        self.to_b.clear();
        let now = self.now;
        if up {
            let _ = self.a.handle(
                Input::PeerUp {
                    peer: B,
                    trusted: true,
                    initiator: true,
                    source: SourceId(B.0),
                },
                now,
            );
            let _ = self.b.handle(
                Input::PeerUp {
                    peer: A,
                    trusted: true,
                    initiator: false,
                    source: SourceId(A.0),
                },
                now,
            );
        } else {
            let _ = self.a.handle(Input::PeerDown { peer: B }, now);
            let _ = self.b.handle(Input::PeerDown { peer: A }, now);
        }
    }

    /// M sends A one sync frame.
    fn m_frame(&mut self, bytes: Vec<u8>) {
        self.ledger.from_m += bytes.len() as u64;
        self.own_protocol = false;
        let _ = self.a.handle(
            Input::Frame {
                from: M,
                bytes: &bytes,
            },
            self.now,
        );
    }

    fn learn(&mut self, envelope: &v1::Envelope) {
        if let Ok(id) = <[u8; 32]>::try_from(envelope.content_id.as_slice())
            && !self.pool.contains(&id)
        {
            self.pool.push(id);
            self.envelopes.push(envelope.clone());
        }
    }

    /// Carries out A's and B's outputs until both are quiet.
    fn pump(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            let mut busy = false;
            // Due timers are served, as a driver does (budgeted copies are
            // handed to connected peers on the next timeout).
            for engine in [&mut self.a, &mut self.b] {
                if engine.poll_timeout().is_some_and(|t| t <= self.now) {
                    let _ = engine.handle(Input::Timeout, self.now);
                }
            }
            while let Some(out) = self.a.poll_output() {
                busy = true;
                self.a_output(out)?;
            }
            while let Some(out) = self.b.poll_output() {
                busy = true;
                match out {
                    Output::Publish { bytes, .. } if self.linked_ab => {
                        self.to_a.push_back((B, bytes, true));
                    }
                    Output::SendFrame { peer, bytes } if peer == A && self.linked_ab => {
                        self.to_a.push_back((B, bytes, false));
                    }
                    Output::Deliver(d) => {
                        if !d.redelivery && !self.delivered_b.insert(d.message_id) {
                            return Err("a message reached B's app twice".into());
                        }
                        let _ = self.b.ack_delivery(&d.message_id);
                    }
                    _ => {}
                }
            }
            if let Some((from, bytes, gossip)) = self.to_b.pop_front() {
                busy = true;
                let input = if gossip {
                    Input::Gossip {
                        from,
                        bytes: &bytes,
                    }
                } else {
                    Input::Frame {
                        from,
                        bytes: &bytes,
                    }
                };
                let _ = self.b.handle(input, self.now);
                if !gossip {
                    let _ = self.a.handle(Input::FrameAcked { peer: B }, self.now);
                }
            } else if let Some((from, bytes, gossip)) = self.to_a.pop_front() {
                busy = true;
                self.own_protocol = false;
                let input = if gossip {
                    Input::Gossip {
                        from,
                        bytes: &bytes,
                    }
                } else {
                    Input::Frame {
                        from,
                        bytes: &bytes,
                    }
                };
                let _ = self.a.handle(input, self.now);
                if !gossip {
                    let _ = self.b.handle(Input::FrameAcked { peer: A }, self.now);
                }
            }
            if !busy {
                return Ok(());
            }
        }
        Err("the engines never went quiet".into())
    }

    fn a_output(&mut self, out: Output) -> Result<(), String> {
        match out {
            Output::Publish { bytes, .. } => {
                // Gossip is flow-controlled by the overlay, not measured here;
                // M learns the envelope as any mesh neighbour would.
                if let Ok(e) = proto::decode::<v1::Envelope>(&bytes) {
                    self.learn(&e);
                }
                if self.linked_ab {
                    self.to_b.push_back((A, bytes, true));
                }
            }
            Output::SendFrame { peer, bytes } if peer == M => {
                self.account(bytes)?;
                if self.m_acks {
                    let _ = self.a.handle(Input::FrameAcked { peer: M }, self.now);
                }
            }
            Output::SendFrame { peer, bytes } if peer == B && self.linked_ab => {
                self.to_b.push_back((A, bytes, false));
            }
            Output::Deliver(d) => {
                if !d.redelivery && !self.delivered_a.insert(d.message_id) {
                    return Err("a message reached A's app twice".into());
                }
                let _ = self.a.ack_delivery(&d.message_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// Classifies a frame A sends M and checks the amplification bound.
    fn account(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let len = bytes.len() as u64;
        let frame = proto::decode::<v1::SyncFrame>(&bytes)
            .map_err(|e| format!("A sent M an undecodable frame: {e}"))?;
        let mut free = 0u64;
        match &frame.kind {
            Some(v1::sync_frame::Kind::Envelopes(batch)) => {
                for e in &batch.envelopes {
                    self.learn(e);
                    let id = <[u8; 32]>::try_from(e.content_id.as_slice()).unwrap_or([0; 32]);
                    if self.ledger.pushed.insert(id) {
                        free += proto::encode(e).len() as u64 + 8;
                    } else if e.copy_budget > 0 {
                        return Err(format!(
                            "A split a spray budget to M twice in one connection (budget {})",
                            e.copy_budget
                        ));
                    }
                }
            }
            Some(
                v1::sync_frame::Kind::Reconcile(_)
                | v1::sync_frame::Kind::Want(_)
                | v1::sync_frame::Kind::Delivered(_),
            ) if self.own_protocol => free = len,
            _ => {}
        }
        self.ledger.unread.push(frame);
        self.ledger.excess += len.saturating_sub(free);
        self.ledger.frames.push(bytes);
        if self.ledger.frames.len() > 64 {
            self.ledger.frames.remove(0);
        }
        self.ledger.max_held = self.ledger.max_held.max(self.a.held_count() as u64);
        let bound = AMPLIFICATION * self.ledger.from_m
            + self.ledger.rounds
                * (ROUND_ALLOWANCE + ROUND_ALLOWANCE_PER_ID * self.ledger.max_held);
        if self.ledger.excess > bound {
            return Err(format!(
                "amplification: A sent M {} bytes beyond its own protocol for {} bytes from M",
                self.ledger.excess, self.ledger.from_m
            ));
        }
        Ok(())
    }

    fn pick_id(&self, c: &mut Cursor<'_>) -> [u8; 32] {
        match (c.byte(), self.pool.len()) {
            (Some(i), n) if n > 0 => self.pool[usize::from(i) % n],
            (Some(i), _) => [i; 32],
            (None, _) => [0; 32],
        }
    }

    fn junk_envelope(&self, c: &mut Cursor<'_>) -> v1::Envelope {
        let seed = c.byte().unwrap_or(0);
        let mut e = v1::Envelope {
            version: limits::WIRE_VERSION,
            content_id: Vec::new(),
            expiry: self.now + 3600 * (1 + u64::from(seed % 200)),
            hop_limit: u32::from(c.byte().unwrap_or(16) % 20),
            copy_budget: u32::from(c.byte().unwrap_or(0) % 10),
            recipient_tag: vec![seed; 16],
            stamp: Vec::new(),
            sealed_body: vec![c.byte().unwrap_or(0); 512 << (2 * u32::from(seed % 3))],
            delivery_commitment: vec![seed ^ 0x5a; 16],
        };
        e.recipient_tag[0] = c.byte().unwrap_or(0);
        e.content_id = tags::content_id_of(&e).to_vec();
        e
    }

    fn frame(kind: v1::sync_frame::Kind) -> Vec<u8> {
        proto::encode(&v1::SyncFrame {
            version: limits::WIRE_VERSION,
            kind: Some(kind),
        })
    }

    fn reconcile(&self, c: &mut Cursor<'_>) -> Vec<u8> {
        let n = usize::from(c.byte().unwrap_or(0) % 8) + 1;
        let mut bounds: Vec<Vec<u8>> = (1..n)
            .map(|_| {
                let id = self.pick_id(c);
                let len = usize::from(c.byte().unwrap_or(1) % 4) + 1;
                id[..len].to_vec()
            })
            .collect();
        bounds.sort();
        bounds.dedup();
        bounds.push(Vec::new());
        let ranges = bounds
            .into_iter()
            .map(|upper_bound| {
                let payload = match c.byte().unwrap_or(0) % 4 {
                    0 => v1::reconcile_range::Payload::Skip(true),
                    1 => v1::reconcile_range::Payload::Fingerprint(v1::Fingerprint {
                        digest: c.bytes(16).into_iter().chain([0; 16]).take(16).collect(),
                        count: u64::from(c.byte().unwrap_or(0)),
                    }),
                    2 => v1::reconcile_range::Payload::IdList(Vec::new()),
                    _ => {
                        let k = usize::from(c.byte().unwrap_or(0) % 8);
                        v1::reconcile_range::Payload::IdList(
                            (0..k).flat_map(|_| self.pick_id(c)).collect(),
                        )
                    }
                };
                v1::ReconcileRange {
                    upper_bound,
                    payload: Some(payload),
                }
            })
            .collect();
        Self::frame(v1::sync_frame::Kind::Reconcile(v1::Reconcile { ranges }))
    }

    /// One step chosen by the fuzzer.
    fn step(&mut self, c: &mut Cursor<'_>) -> Result<(), String> {
        let Some(op) = c.byte() else {
            return Ok(());
        };
        match op % 12 {
            0 | 1 => {
                let len = usize::from(c.byte().unwrap_or(0)) * 4;
                let (from, to_key, sent) = if op % 12 == 0 {
                    let key = self.b.keyring().identity().identity_key();
                    (&mut self.a, key, &mut self.sent_to_b)
                } else {
                    let key = self.a.keyring().identity().identity_key();
                    (&mut self.b, key, &mut self.sent_to_a)
                };
                if let Ok(id) = from.send(&to_key, &vec![7; len], self.now) {
                    sent.insert(id);
                }
                self.own_protocol = true;
            }
            2 => self.set_ab(!self.linked_ab),
            3 => {
                // A want list of known IDs, repeats allowed.
                let count = usize::from(c.u16().unwrap_or(1) % 2048) + 1;
                let first = self.pick_id(c);
                let vary = c.byte().unwrap_or(0).is_multiple_of(2);
                let ids: Vec<u8> = (0..count)
                    .flat_map(|_| if vary { self.pick_id(c) } else { first })
                    .collect();
                self.m_frame(Self::frame(v1::sync_frame::Kind::Want(v1::WantEnvelopes {
                    ids,
                })));
            }
            4 => {
                let frame = self.reconcile(c);
                self.m_frame(frame);
            }
            5 => {
                let n = usize::from(c.byte().unwrap_or(0) % 8) + 1;
                let envelopes: Vec<v1::Envelope> = (0..n)
                    .map(|_| {
                        if c.byte().unwrap_or(0).is_multiple_of(2) && !self.envelopes.is_empty() {
                            let i = usize::from(c.byte().unwrap_or(0)) % self.envelopes.len();
                            self.envelopes[i].clone()
                        } else {
                            self.junk_envelope(c)
                        }
                    })
                    .collect();
                self.m_frame(Self::frame(v1::sync_frame::Kind::Envelopes(
                    v1::EnvelopeBatch { envelopes },
                )));
            }
            6 => {
                let n = usize::from(c.byte().unwrap_or(0) % 8) + 1;
                let proofs = (0..n)
                    .map(|_| v1::DeliveryProof {
                        content_id: self.pick_id(c).to_vec(),
                        secret: c.bytes(16).into_iter().chain([0; 16]).take(16).collect(),
                        expiry: self.now + 3600,
                    })
                    .collect();
                self.m_frame(Self::frame(v1::sync_frame::Kind::Delivered(
                    v1::DeliveredIds { proofs },
                )));
            }
            7 => {
                let n = usize::from(c.byte().unwrap_or(0));
                let raw = c.bytes(n);
                self.m_frame(raw);
            }
            8 => {
                self.own_protocol = true;
                self.ledger.rounds += 1;
                let _ = self.a.handle(Input::Resync { peer: M }, self.now);
                let _ = self.a.handle(Input::Resync { peer: B }, self.now);
            }
            9 => {
                let step = u64::from(c.byte().unwrap_or(0)) * 60;
                if self.now + step - T0 <= MAX_CLOCK_ADVANCE {
                    self.now += step;
                    self.ledger.rounds += step / ROUND_INTERVAL;
                    self.own_protocol = true;
                    let _ = self.a.handle(Input::Timeout, self.now);
                    let _ = self.b.handle(Input::Timeout, self.now);
                }
            }
            10 => {
                let _ = self.a.handle(Input::PeerDown { peer: M }, self.now);
                self.connect_m();
            }
            _ => {
                if !self.ledger.frames.is_empty() {
                    let i = usize::from(c.byte().unwrap_or(0)) % self.ledger.frames.len();
                    let frame = self.ledger.frames[i].clone();
                    self.m_frame(frame);
                }
            }
        }
        self.pump()?;
        self.check_quota()
    }

    fn check_quota(&self) -> Result<(), String> {
        // Own envelopes are not quota-limited; everything else is.
        let own_allowance = self.a.outbox_len() as u64 * limits::MAX_ENVELOPE_LEN as u64;
        if self.a.held_bytes() > GLOBAL_QUOTA + own_allowance {
            return Err(format!(
                "A holds {} bytes over its quota",
                self.a.held_bytes()
            ));
        }
        Ok(())
    }

    /// M falls silent; A and B meet and reconcile until quiet. Every honest
    /// message must have arrived, once.
    fn finish(&mut self) -> Result<(), String> {
        let _ = self.a.handle(Input::PeerDown { peer: M }, self.now);
        self.set_ab(false);
        self.pump()?;
        self.set_ab(true);
        self.pump()?;
        for _ in 0..4 {
            self.now += 200;
            let _ = self.a.handle(Input::Resync { peer: B }, self.now);
            self.pump()?;
        }
        let lost_b = self.sent_to_b.difference(&self.delivered_b).count();
        let lost_a = self.sent_to_a.difference(&self.delivered_a).count();
        if lost_b + lost_a > 0 {
            return Err(format!(
                "honest mail lost: {lost_b} of {} to B, {lost_a} of {} to A (A: {:?}; B: {:?})",
                self.sent_to_b.len(),
                self.sent_to_a.len(),
                self.a.counters(),
                self.b.counters(),
            ));
        }
        Ok(())
    }
}

/// Runs one fuzz input. `Err` names the violated invariant.
pub(crate) fn run(data: &[u8]) -> Result<(), String> {
    let mut c = Cursor { data, pos: 0 };
    let head = c.byte().unwrap_or(0);
    let strategy = match head % 3 {
        0 => Strategy::Epidemic,
        1 => Strategy::SprayAndWait { copies: 8 },
        _ => Strategy::SprayAndWait { copies: 64 },
    };
    let mut session = Session::new(strategy, head & 0x80 != 0);
    let mut steps = 0;
    while c.pos < data.len() && steps < 64 {
        session.step(&mut c)?;
        steps += 1;
    }
    session.finish()
}

/// A scripted attack, for the named tests.
impl Session {
    /// A session where M is the link's initiator (`true`) or responder.
    pub(crate) fn scripted(strategy: Strategy, m_initiator: bool) -> Self {
        Self::new(strategy, m_initiator)
    }

    /// M stops (`false`) or resumes acknowledging A's frames.
    pub(crate) fn m_acknowledges(&mut self, acks: bool) {
        self.m_acks = acks;
    }

    /// A sends `n` messages to B, who is offline: A holds them.
    pub(crate) fn a_holds_mail(&mut self, n: usize) -> Vec<[u8; 32]> {
        self.a_holds_mail_of(n, 1000)
    }

    /// As [`Session::a_holds_mail`], with bodies of `len` bytes.
    pub(crate) fn a_holds_mail_of(&mut self, n: usize, len: usize) -> Vec<[u8; 32]> {
        let key = self.b.keyring().identity().identity_key();
        for _ in 0..n {
            let id = self.a.send(&key, &vec![7; len], self.now).unwrap();
            self.sent_to_b.insert(id);
            // M knows the envelope's ID as a mesh neighbour would (budgeted
            // copies are not published: learn it from A's outbox).
            if let Some(cid) = self.a.own_envelope(&id)
                && !self.pool.contains(&cid)
            {
                self.pool.push(cid);
            }
        }
        self.pump().unwrap();
        self.pool.clone()
    }

    /// M sends A one frame; A's outputs are carried out.
    pub(crate) fn m_sends(&mut self, kind: v1::sync_frame::Kind) -> Result<(), String> {
        self.m_frame(Self::frame(kind));
        self.pump()
    }

    /// Moves the virtual clock.
    pub(crate) fn advance(&mut self, secs: u64) {
        self.now += secs;
        self.ledger.rounds += secs / ROUND_INTERVAL;
    }

    /// The frames A sent M since the last call.
    pub(crate) fn take_frames_to_m(&mut self) -> Vec<v1::SyncFrame> {
        std::mem::take(&mut self.ledger.unread)
    }

    /// How many envelopes A held.
    pub(crate) fn a_held(&self) -> usize {
        self.a.held_count()
    }

    /// A's counters.
    pub(crate) fn a_counters(&self) -> ferry_core::engine::Counters {
        self.a.counters()
    }

    /// M falls silent and A meets B: all honest mail must arrive.
    pub(crate) fn end(mut self) -> Result<(), String> {
        self.finish()
    }
}

/// Envelopes in a list of frames.
pub(crate) fn envelopes_in(frames: &[v1::SyncFrame]) -> Vec<v1::Envelope> {
    frames
        .iter()
        .filter_map(|f| match &f.kind {
            Some(v1::sync_frame::Kind::Envelopes(b)) => Some(b.envelopes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A reconciliation frame of one range over the whole ID space.
pub(crate) fn whole_range(payload: v1::reconcile_range::Payload) -> v1::sync_frame::Kind {
    v1::sync_frame::Kind::Reconcile(v1::Reconcile {
        ranges: vec![v1::ReconcileRange {
            upper_bound: Vec::new(),
            payload: Some(payload),
        }],
    })
}

/// A want list.
pub(crate) fn want(ids: &[[u8; 32]]) -> v1::sync_frame::Kind {
    v1::sync_frame::Kind::Want(v1::WantEnvelopes { ids: ids.concat() })
}
