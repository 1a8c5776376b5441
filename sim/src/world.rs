//! The discrete-event core: a virtual clock, an event heap, links with
//! bandwidth, latency and loss, and one real [`Engine`] per node.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap, HashSet},
};

use ferry_core::{
    crypto::{Trust, tags::ContentId},
    engine::{
        Engine, EngineConfig, Event, Input, MemoryStore, Output, PeerId, Quotas, SourceId,
        Strategy, Verdict,
    },
    identity::Identity,
    keys::IdentityKey,
    proto::{self, v1},
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use crate::metrics::Metrics;

/// The Unix time the simulation's t = 0 maps to (engines want epoch seconds).
const T0: u64 = 1_700_000_000;
const MICROS: f64 = 1_000_000.0;

/// Physical and protocol parameters of a run.
#[derive(Debug, Clone)]
pub struct SimParams {
    /// Number of nodes (hosts `0..nodes`).
    pub nodes: usize,
    /// Seed of every random choice the simulator and the engines make.
    pub seed: u64,
    /// Message lifetime in seconds.
    pub ttl_secs: f64,
    /// When the run ends, in seconds.
    pub duration_secs: f64,
    /// Link bandwidth per direction in bytes/s; `None` = unlimited (zero
    /// transfer time).
    pub bandwidth: Option<f64>,
    /// One-way link latency in seconds.
    pub latency_secs: f64,
    /// Probability that a transmission is lost.
    pub loss: f64,
    /// Buffer size per node in bytes; `None` = unlimited.
    pub buffer_bytes: Vec<Option<u64>>,
    /// Routing strategy of every node.
    pub strategy: Strategy,
    /// Receipts and anti-packets on or off.
    pub receipts: bool,
    /// Interval of buffer-occupancy and delivery samples, in seconds.
    pub sample_interval_secs: f64,
    /// Fast mode: engines skip the Olm session layer (labelled in every
    /// output). Off unless asked for explicitly.
    pub fast: bool,
}

/// A scheduled input of the scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioEvent {
    /// A link between two nodes comes up or goes down.
    Contact {
        /// Seconds.
        time: f64,
        /// One node.
        a: u32,
        /// The other node.
        b: u32,
        /// Up or down.
        up: bool,
    },
    /// A message is created.
    Create {
        /// Seconds.
        time: f64,
        /// Label (the trace's message ID).
        label: String,
        /// Source.
        from: u32,
        /// Destination.
        to: u32,
        /// Body size in bytes.
        size: u32,
    },
    /// A node goes offline (drops its links) or comes back (churn).
    Online {
        /// Seconds.
        time: f64,
        /// The node.
        node: u32,
        /// Online or not.
        online: bool,
    },
}

impl ScenarioEvent {
    fn time(&self) -> f64 {
        match self {
            Self::Contact { time, .. } | Self::Create { time, .. } | Self::Online { time, .. } => {
                *time
            }
        }
    }
}

#[derive(Debug)]
enum Ev {
    Scenario(usize),
    Arrive {
        from: u32,
        to: u32,
        generation: u64,
        gossip: Option<ContentId>,
        bytes: Vec<u8>,
    },
    Timer(u32),
    Sample,
}

struct Link {
    generation: u64,
    busy_until: (u64, u64),
}

struct Node {
    engine: Engine<MemoryStore, StdRng>,
    key: IdentityKey,
    neighbours: BTreeSet<u32>,
    gossip_seen: HashSet<ContentId>,
    hops: HashMap<ContentId, u32>,
    online: bool,
    timer_at: u64,
}

/// The simulated world.
pub(crate) struct World {
    params: SimParams,
    events: Vec<ScenarioEvent>,
    nodes: Vec<Node>,
    links: HashMap<(u32, u32), Link>,
    heap: BinaryHeap<Reverse<(u64, u64, u64, usize)>>,
    pending: HashMap<usize, Ev>,
    next_slot: usize,
    sub: u64,
    now: u64,
    parent: u64,
    generation: u64,
    rng: StdRng,
    /// message ID → index into `messages`.
    by_message_id: HashMap<ferry_core::engine::MessageId, usize>,
    pub(crate) metrics: Metrics,
}

fn to_micros(secs: f64) -> u64 {
    (secs * MICROS).round().max(0.0) as u64
}

impl World {
    pub(crate) fn new(
        params: SimParams,
        mut events: Vec<ScenarioEvent>,
    ) -> Result<Self, crate::SimError> {
        // Stable: events at the same time keep their file order.
        events.sort_by(|a, b| a.time().total_cmp(&b.time()));
        let config = |i: usize| EngineConfig {
            strategy: params.strategy,
            message_ttl_secs: params.ttl_secs.ceil() as u64,
            hop_limit: 255,
            max_ttl_secs: u64::MAX / 4,
            quotas: Quotas {
                global_bytes: params
                    .buffer_bytes
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or(u64::MAX / 4),
                per_tag_bytes: u64::MAX / 4,
                per_peer_bytes: u64::MAX / 4,
            },
            sweep_interval_secs: 60,
            receipts: params.receipts,
            // DTN studies (and ONE) keep every copy until its TTL.
            stranger_custody_secs: u64::MAX / 4,
            ..EngineConfig::default()
        };
        let nodes = (0..params.nodes)
            .map(|i| -> Result<Node, crate::SimError> {
                let mut seed = [0u8; 32];
                for (slot, byte) in seed.iter_mut().zip(
                    params
                        .seed
                        .to_le_bytes()
                        .into_iter()
                        .chain((i as u64).to_le_bytes()),
                ) {
                    *slot = byte;
                }
                let mut engine = Engine::open(
                    MemoryStore::new(),
                    seed,
                    Identity::generate,
                    config(i),
                    StdRng::from_seed(seed),
                    T0,
                )
                .map_err(|e| crate::SimError::Scenario(format!("engine: {e}")))?;
                if params.fast {
                    engine.keyring_mut().insecure_skip_sessions_for_simulation();
                }
                let key = engine.keyring().identity().identity_key();
                Ok(Node {
                    engine,
                    key,
                    neighbours: BTreeSet::new(),
                    gossip_seen: HashSet::new(),
                    hops: HashMap::new(),
                    online: true,
                    timer_at: u64::MAX,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = Metrics::new(params.ttl_secs);
        let rng = StdRng::seed_from_u64(params.seed ^ 0x5eed);
        let mut world = Self {
            params,
            events,
            nodes,
            links: HashMap::new(),
            heap: BinaryHeap::new(),
            pending: HashMap::new(),
            next_slot: 0,
            sub: 0,
            now: 0,
            parent: 0,
            generation: 0,
            rng,
            by_message_id: HashMap::new(),
            metrics,
        };
        world.introduce_pairs();
        let times: Vec<u64> = world.events.iter().map(|e| to_micros(e.time())).collect();
        for (i, t) in times.into_iter().enumerate() {
            world.parent = i as u64;
            world.push(t, Ev::Scenario(i));
        }
        world.parent = 0;
        world.push(0, Ev::Sample);
        for n in 0..world.nodes.len() as u32 {
            world.schedule_timer(n);
        }
        Ok(world)
    }

    /// Every source-destination pair of the traffic are contacts.
    fn introduce_pairs(&mut self) {
        let mut pairs = BTreeSet::new();
        for e in &self.events {
            if let ScenarioEvent::Create { from, to, .. } = e
                && from != to
                && (*from as usize) < self.nodes.len()
                && (*to as usize) < self.nodes.len()
            {
                pairs.insert(((*from).min(*to), (*from).max(*to)));
            }
        }
        let card = |node: Option<&mut Node>| {
            node.and_then(|n| {
                n.engine
                    .keyring_mut()
                    .identity_mut()
                    .contact_card(None, T0, 0)
                    .ok()
            })
        };
        for (a, b) in pairs {
            let (a, b) = (a as usize, b as usize);
            let ca = card(self.nodes.get_mut(a));
            let cb = card(self.nodes.get_mut(b));
            if let (Some(ca), Some(cb)) = (ca, cb) {
                if let Some(n) = self.nodes.get_mut(a) {
                    let _ = n.engine.add_contact(cb, Trust::Verified);
                }
                if let Some(n) = self.nodes.get_mut(b) {
                    let _ = n.engine.add_contact(ca, Trust::Verified);
                }
            }
        }
        for node in &mut self.nodes {
            while node.engine.poll_output().is_some() {}
        }
    }

    fn push(&mut self, time: u64, ev: Ev) {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.pending.insert(slot, ev);
        self.sub += 1;
        // Same time: scenario order first (parent), then creation order, so
        // zero-time consequences of an event happen before the next one.
        self.heap.push(Reverse((time, self.parent, self.sub, slot)));
    }

    fn schedule_timer(&mut self, n: u32) {
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        let due = node
            .engine
            .poll_timeout()
            .map_or(u64::MAX, |t| t.saturating_sub(T0).saturating_mul(1_000_000));
        if due < node.timer_at || node.timer_at <= self.now {
            node.timer_at = due;
            self.push(due.max(self.now), Ev::Timer(n));
        }
    }

    fn engine_now(&self) -> u64 {
        T0 + self.now / 1_000_000
    }

    /// Runs to the end; `progress` is called with the fraction done.
    pub(crate) fn run(&mut self, mut progress: impl FnMut(f64)) {
        let end = to_micros(self.params.duration_secs);
        let mut last_reported = 0;
        while let Some(Reverse((time, parent, _, slot))) = self.heap.pop() {
            if time > end {
                break;
            }
            let Some(ev) = self.pending.remove(&slot) else {
                continue;
            };
            self.now = time;
            self.parent = parent;
            match ev {
                Ev::Scenario(i) => self.scenario(i),
                Ev::Arrive {
                    from,
                    to,
                    generation,
                    gossip,
                    bytes,
                } => self.arrive(from, to, generation, gossip, &bytes),
                Ev::Timer(n) => {
                    let now = self.engine_now();
                    if let Some(node) = self.nodes.get_mut(n as usize) {
                        node.timer_at = u64::MAX;
                        let _ = node.engine.handle(Input::Timeout, now);
                    }
                    self.drain(n, None);
                    self.schedule_timer(n);
                }
                Ev::Sample => {
                    self.sample();
                    let next = time + to_micros(self.params.sample_interval_secs).max(1);
                    if next <= end {
                        self.push(next, Ev::Sample);
                    }
                }
            }
            if end > 0 && time - last_reported > end / 100 {
                last_reported = time;
                progress(time as f64 / end as f64);
            }
        }
        self.now = end;
        self.sample();
        progress(1.0);
    }

    fn sample(&mut self) {
        let held: Vec<u64> = self.nodes.iter().map(|n| n.engine.held_bytes()).collect();
        self.metrics.sample(self.now as f64 / MICROS, &held);
    }

    fn scenario(&mut self, i: usize) {
        let Some(event) = self.events.get(i).cloned() else {
            return;
        };
        match event {
            ScenarioEvent::Contact { a, b, up, .. } => {
                if up {
                    self.link_up(a, b);
                } else {
                    self.link_down(a, b);
                }
            }
            ScenarioEvent::Online { node, online, .. } => {
                if let Some(n) = self.nodes.get_mut(node as usize) {
                    n.online = online;
                }
                if !online {
                    let neighbours: Vec<u32> = self
                        .nodes
                        .get(node as usize)
                        .map(|n| n.neighbours.iter().copied().collect())
                        .unwrap_or_default();
                    for other in neighbours {
                        self.link_down(node, other);
                    }
                }
            }
            ScenarioEvent::Create {
                label,
                from,
                to,
                size,
                ..
            } => self.create(label, from, to, size),
        }
    }

    fn create(&mut self, label: String, from: u32, to: u32, size: u32) {
        let index = self.metrics.created(label, self.now as f64 / MICROS);
        let (Some(dest), true) = (
            self.nodes.get(to as usize).map(|n| n.key),
            (from as usize) < self.nodes.len(),
        ) else {
            return;
        };
        let now = self.engine_now();
        let mut body = vec![0u8; size as usize];
        self.rng.fill(&mut body[..]);
        let Some(node) = self.nodes.get_mut(from as usize) else {
            return;
        };
        let Ok(message_id) = node.engine.send(&dest, &body, now) else {
            return;
        };
        self.by_message_id.insert(message_id, index);
        self.drain(from, Some(index));
    }

    fn link_up(&mut self, a: u32, b: u32) {
        if a == b || (a as usize) >= self.nodes.len() || (b as usize) >= self.nodes.len() {
            return;
        }
        let online = |w: &Self, n: u32| w.nodes.get(n as usize).is_some_and(|n| n.online);
        if !online(self, a) || !online(self, b) {
            return;
        }
        let key = (a.min(b), a.max(b));
        if self.links.contains_key(&key) {
            return;
        }
        self.generation += 1;
        self.links.insert(
            key,
            Link {
                generation: self.generation,
                busy_until: (0, 0),
            },
        );
        let now = self.engine_now();
        for (x, y, initiator) in [(key.0, key.1, true), (key.1, key.0, false)] {
            if let Some(node) = self.nodes.get_mut(x as usize) {
                node.neighbours.insert(y);
                let _ = node.engine.handle(
                    Input::PeerUp {
                        peer: PeerId(u64::from(y)),
                        trusted: false,
                        initiator,
                        source: SourceId(u64::from(y)),
                    },
                    now,
                );
            }
        }
        self.drain(key.0, None);
        self.drain(key.1, None);
    }

    fn link_down(&mut self, a: u32, b: u32) {
        let key = (a.min(b), a.max(b));
        if self.links.remove(&key).is_none() {
            return;
        }
        let now = self.engine_now();
        for (x, y) in [(key.0, key.1), (key.1, key.0)] {
            if let Some(node) = self.nodes.get_mut(x as usize) {
                node.neighbours.remove(&y);
                let _ = node.engine.handle(
                    Input::PeerDown {
                        peer: PeerId(u64::from(y)),
                    },
                    now,
                );
            }
        }
    }

    /// Carries out a node's outputs. `created` is the message index when the
    /// node has just created a message (its first publish is that message).
    fn drain(&mut self, n: u32, mut created: Option<usize>) {
        loop {
            let Some(node) = self.nodes.get_mut(n as usize) else {
                return;
            };
            let Some(output) = node.engine.poll_output() else {
                break;
            };
            match output {
                Output::Publish { content_id, bytes } => {
                    if let Some(index) = created.take() {
                        self.metrics.set_content_id(index, content_id);
                        node.hops.insert(content_id, 0);
                    }
                    node.gossip_seen.insert(content_id);
                    let neighbours: Vec<u32> = node.neighbours.iter().copied().collect();
                    for m in neighbours {
                        self.transmit(n, m, Some(content_id), bytes.clone());
                    }
                }
                Output::SendFrame { peer, bytes } => {
                    let m = u32::try_from(peer.0).unwrap_or(u32::MAX);
                    self.transmit(n, m, None, bytes);
                }
                Output::Deliver(d) => {
                    let _ = node.engine.ack_delivery(&d.message_id);
                    if let Some(&index) = self.by_message_id.get(&d.message_id) {
                        let hops = self
                            .metrics
                            .content_id(index)
                            .and_then(|cid| node.hops.get(&cid).copied())
                            .unwrap_or(0);
                        self.metrics
                            .delivered(index, self.now as f64 / MICROS, hops);
                    }
                }
                Output::Event(Event::Rejected { .. }) => self.metrics.dropped += 1,
                Output::Event(Event::Delivered { .. }) => self.metrics.receipts += 1,
                Output::Event(_) => {}
            }
        }
        self.schedule_timer(n);
    }

    fn transmit(&mut self, from: u32, to: u32, gossip: Option<ContentId>, bytes: Vec<u8>) {
        // Gossip is not sent to a peer that already has the message: the
        // overlay's IDONTWANT / IHAVE announcements, modelled as perfect.
        if let Some(id) = gossip
            && self
                .nodes
                .get(to as usize)
                .is_some_and(|n| n.gossip_seen.contains(&id))
        {
            return;
        }
        let key = (from.min(to), from.max(to));
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        let dir = usize::from(from > to);
        let len = bytes.len() as u64;
        let transfer = self
            .params
            .bandwidth
            .map_or(0, |bw| to_micros(len as f64 / bw));
        let busy = if dir == 0 {
            &mut link.busy_until.0
        } else {
            &mut link.busy_until.1
        };
        let start = self.now.max(*busy);
        let finish = start + transfer;
        *busy = finish;
        let generation = link.generation;
        self.metrics.bytes_sent += len;
        if self.params.loss > 0.0 && self.rng.random::<f64>() < self.params.loss {
            self.metrics.lost += 1;
            if gossip.is_none() {
                // The transport gives up on a lost frame (a request
                // timeout in the node): the sender's push window reopens.
                let now = self.engine_now();
                if let Some(node) = self.nodes.get_mut(from as usize) {
                    let _ = node.engine.handle(
                        Input::FrameAcked {
                            peer: PeerId(u64::from(to)),
                        },
                        now,
                    );
                }
            }
            return;
        }
        let arrival = finish + to_micros(self.params.latency_secs);
        self.push(
            arrival,
            Ev::Arrive {
                from,
                to,
                generation,
                gossip,
                bytes,
            },
        );
    }

    fn arrive(
        &mut self,
        from: u32,
        to: u32,
        generation: u64,
        gossip: Option<ContentId>,
        bytes: &[u8],
    ) {
        let key = (from.min(to), from.max(to));
        if self
            .links
            .get(&key)
            .is_none_or(|l| l.generation != generation)
        {
            // The contact ended before the transfer completed.
            self.metrics.aborted += 1;
            return;
        }
        let now = self.engine_now();
        let from_hops = |w: &Self, id: &ContentId| {
            w.nodes
                .get(from as usize)
                .and_then(|n| n.hops.get(id).copied())
        };
        match gossip {
            Some(id) => {
                let hop = from_hops(self, &id).map_or(1, |h| h + 1);
                let Some(node) = self.nodes.get_mut(to as usize) else {
                    return;
                };
                if node.gossip_seen.contains(&id) {
                    return;
                }
                let verdict = node.engine.handle(
                    Input::Gossip {
                        from: PeerId(u64::from(from)),
                        bytes,
                    },
                    now,
                );
                if verdict.ok() == Some(Verdict::Accept) {
                    // The node took the copy (custody or delivery): a relay,
                    // as DTN studies count them. Wait-phase copies shown to
                    // a non-recipient are bytes on the link, not relays.
                    node.gossip_seen.insert(id);
                    node.hops.entry(id).or_insert(hop);
                    self.metrics.relayed += 1;
                    let neighbours: Vec<u32> = node
                        .neighbours
                        .iter()
                        .copied()
                        .filter(|m| *m != from)
                        .collect();
                    for m in neighbours {
                        self.transmit(to, m, Some(id), bytes.to_vec());
                    }
                }
            }
            None => {
                if let Ok(v1::SyncFrame {
                    kind: Some(v1::sync_frame::Kind::Envelopes(batch)),
                    ..
                }) = proto::decode::<v1::SyncFrame>(bytes)
                {
                    for envelope in &batch.envelopes {
                        // The engine verifies the ID; here it only names the copy.
                        let Ok(id) = ContentId::try_from(envelope.content_id.as_slice()) else {
                            continue;
                        };
                        let hop = from_hops(self, &id).map_or(1, |h| h + 1);
                        if let Some(node) = self.nodes.get_mut(to as usize)
                            && node.gossip_seen.insert(id)
                        {
                            // A copy new to this node (duplicates that
                            // crossed with gossip are bytes, not relays).
                            self.metrics.relayed += 1;
                            node.hops.entry(id).or_insert(hop);
                        }
                    }
                }
                if let Some(node) = self.nodes.get_mut(to as usize) {
                    let _ = node.engine.handle(
                        Input::Frame {
                            from: PeerId(u64::from(from)),
                            bytes,
                        },
                        now,
                    );
                }
                // The frame arrived: the sender's push window opens again
                // (one-way, not a round trip: the acknowledgement is a byte).
                if let Some(node) = self.nodes.get_mut(from as usize) {
                    let _ = node.engine.handle(
                        Input::FrameAcked {
                            peer: PeerId(u64::from(to)),
                        },
                        now,
                    );
                }
                self.drain(from, None);
            }
        }
        self.drain(to, None);
    }
}
