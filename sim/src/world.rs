//! The discrete-event core: a virtual clock, an event heap, links with
//! bandwidth, latency and loss, and one real [`Engine`] per node.
//!
//! Links: a contact from the scenario (trace, mobility or static topology)
//! is *wanted*; it is *up* while it is wanted, both nodes are online and no
//! partition separates them. Partitions and churn therefore cut every kind
//! of contact, and a contact still wanted comes back when they end.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet},
    sync::Arc,
};

use ferry_core::{
    crypto::{Trust, tags::ContentId},
    engine::{
        Engine, EngineConfig, Event, Input, MemoryStore, MessageId, Output, PeerId, Quotas,
        RejectReason, SendError, SourceId, Strategy, Verdict,
    },
    identity::Identity,
    keys::IdentityKey,
    proto::{self, v1},
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use crate::{
    metrics::{Kind, Metrics, Refusal},
    mobility::FREE,
};

/// Most per-node buffer samples (nodes × samples) a run keeps: 160 MB.
const MAX_NODE_SAMPLES: f64 = 20_000_000.0;

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
    /// Message lifetime in seconds, enforced exactly (see `docs/simulator.md`).
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
    /// The ONE simulator's link rules with this update step (s), or `None`
    /// for FIFO pipes (see `docs/simulator.md`).
    pub one_model: Option<f64>,
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
    /// Trace lines skipped as a second `up` of a contact already up
    /// (reported).
    pub duplicate_ups_ignored: u64,
}

/// A scheduled input of the scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioEvent {
    /// A contact between two nodes starts or ends.
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
    /// A partition starts (`groups[node]` is each node's side) or heals
    /// (`None`). Contacts between sides are cut while it lasts; a node on
    /// side [`FREE`] reaches every side.
    Partition {
        /// Seconds.
        time: f64,
        /// The side of every node, or `None` once healed.
        groups: Option<Arc<Vec<u32>>>,
    },
    /// One node's side changes (a partition by region, as it moves).
    Side {
        /// Seconds.
        time: f64,
        /// The node.
        node: u32,
        /// Its side ([`FREE`]: reaches every side).
        side: u32,
    },
}

impl ScenarioEvent {
    /// The event's time in seconds.
    pub fn time(&self) -> f64 {
        match self {
            Self::Contact { time, .. }
            | Self::Create { time, .. }
            | Self::Online { time, .. }
            | Self::Partition { time, .. }
            | Self::Side { time, .. } => *time,
        }
    }
}

/// What a transmission carries.
#[derive(Debug, Clone, Copy)]
enum Carry {
    /// One envelope by gossip.
    Gossip(ContentId),
    /// A sync frame.
    Frame,
}

/// A transmission's sender, receiver and the link generation it left on.
#[derive(Debug, Clone, Copy)]
struct Hop {
    from: u32,
    to: u32,
    generation: u64,
}

/// A transmission waiting for ONE's rules: one envelope, started when
/// both hosts are free.
#[derive(Debug)]
struct Queued {
    to: u32,
    generation: u64,
    carry: Carry,
    bytes: Vec<u8>,
    envelopes: Vec<(ContentId, u64)>,
    /// The last piece of a sync frame: its arrival acknowledges the frame.
    ack: bool,
}

#[derive(Debug)]
enum Ev {
    Scenario(usize),
    Arrive {
        from: u32,
        to: u32,
        generation: u64,
        carry: Carry,
        bytes: Vec<u8>,
        /// The envelopes it carries: (content ID, bytes on the link).
        envelopes: Vec<(ContentId, u64)>,
    },
    Timer(u32),
    /// A transfer under ONE's rules ends.
    OneDone {
        from: u32,
        item: Queued,
    },
    /// The link's initiator starts a new reconciliation round, as the node
    /// does every [`RESYNC_SECS`].
    Resync {
        key: (u32, u32),
        generation: u64,
    },
    Sample,
}

/// How often a link's initiator reconciles again, as the node does by
/// default (`NodeConfig::resync_interval`).
pub(crate) const RESYNC_SECS: f64 = 60.0;

struct Link {
    generation: u64,
    busy_until: (u64, u64),
    /// When this contact came up (µs).
    since: u64,
}

struct Node {
    engine: Engine<MemoryStore, StdRng>,
    key: IdentityKey,
    neighbours: BTreeSet<u32>,
    /// Gossip this node's transport has seen (whatever the engine said):
    /// gossipsub's duplicate cache and IDONTWANT, modelled as perfect.
    seen: HashSet<ContentId>,
    /// Copies this node took (custody or delivery), with the hop count of
    /// the copy: its source has 0.
    hops: HashMap<ContentId, u32>,
    online: bool,
    timer_at: u64,
}

/// The simulated world.
pub(crate) struct World {
    params: SimParams,
    events: Vec<ScenarioEvent>,
    nodes: Vec<Node>,
    links: BTreeMap<(u32, u32), Link>,
    /// Contacts the scenario has up (see the module docs), per node.
    wanted: Vec<BTreeSet<u32>>,
    /// Each node's side of the partition in force ([`FREE`] without one).
    sides: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u64, u64, usize)>>,
    pending: HashMap<usize, Ev>,
    next_slot: usize,
    sub: u64,
    now: u64,
    parent: u64,
    generation: u64,
    rng: StdRng,
    /// Message ID → index into the metrics' messages.
    by_message_id: HashMap<MessageId, usize>,
    /// Content ID of a message's envelope → index.
    by_content_id: HashMap<ContentId, usize>,
    /// The node whose transmission is being received (for hop counts of
    /// deliveries).
    arriving_from: Option<u32>,
    /// When each pair's last contact ended (µs), for inter-contact times.
    last_contact_end: HashMap<(u32, u32), u64>,
    /// ONE's rules: transfers waiting, per sending node, and whether each
    /// node takes part in a transfer now.
    one_queue: Vec<std::collections::VecDeque<Queued>>,
    one_busy: Vec<bool>,
    pub(crate) metrics: Metrics,
}

fn to_micros(secs: f64) -> u64 {
    (secs * MICROS).round().max(0.0) as u64
}

fn engine_config(params: &SimParams, i: usize) -> EngineConfig {
    EngineConfig {
        strategy: params.strategy,
        // Engines count whole seconds; the simulator enforces the exact
        // TTL on the links, so the engines get one second of slack and
        // never refuse a copy early.
        message_ttl_secs: params.ttl_secs.ceil() as u64 + 1,
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
    }
}

/// An engine for node `i` of a run with `seed`.
fn open_engine(
    seed: u64,
    i: usize,
    config: EngineConfig,
    fast: bool,
) -> Result<Engine<MemoryStore, StdRng>, crate::SimError> {
    let mut bytes = [0u8; 32];
    for (slot, byte) in bytes.iter_mut().zip(
        seed.to_le_bytes()
            .into_iter()
            .chain((i as u64).to_le_bytes()),
    ) {
        *slot = byte;
    }
    let mut engine = Engine::open(
        MemoryStore::new(),
        bytes,
        Identity::generate,
        config,
        StdRng::from_seed(bytes),
        T0,
    )
    .map_err(|e| crate::SimError::Scenario(format!("engine: {e}")))?;
    if fast {
        engine.keyring_mut().insecure_skip_sessions_for_simulation();
    }
    Ok(engine)
}

/// The largest message body one envelope carries, in either mode (found by
/// sealing, so it follows the padding and session rules exactly).
pub fn max_body_len(fast: bool) -> usize {
    static CACHE: std::sync::OnceLock<[usize; 2]> = std::sync::OnceLock::new();
    let limits = CACHE.get_or_init(|| [probe_max_body(false), probe_max_body(true)]);
    limits.get(usize::from(fast)).copied().unwrap_or(0)
}

fn probe_max_body(fast: bool) -> usize {
    let config = EngineConfig::default();
    let (Ok(mut a), Ok(mut b)) = (
        open_engine(0, 0, config, fast),
        open_engine(0, 1, config, fast),
    ) else {
        return 0;
    };
    let card = |e: &mut Engine<MemoryStore, StdRng>| {
        e.keyring_mut()
            .identity_mut()
            .contact_card(None, T0, 0)
            .ok()
    };
    let (Some(ca), Some(cb)) = (card(&mut a), card(&mut b)) else {
        return 0;
    };
    if a.add_contact(cb, Trust::Verified).is_err() || b.add_contact(ca, Trust::Verified).is_err() {
        return 0;
    }
    let to = b.keyring().identity().identity_key();
    let (mut lo, mut hi) = (0usize, ferry_core::crypto::MAX_PAYLOAD_LEN + 1);
    // Invariant: a body of `lo` bytes fits, one of `hi` does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match a.send(&to, &vec![0; mid], T0) {
            Ok(_) => lo = mid,
            Err(_) => hi = mid,
        }
        while a.poll_output().is_some() {}
    }
    lo
}

/// A sync frame seen only for its envelope batch: other kinds (field 2, 3,
/// 5: reconciliation, want lists, proofs) are skipped, not decoded, since
/// the simulator only counts their bytes. The engine decodes every frame
/// in full, strictly, as the node does.
#[derive(Clone, PartialEq, prost::Message)]
struct BatchView {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, optional, tag = "4")]
    envelopes: Option<v1::EnvelopeBatch>,
}

/// The version and envelope batch of a sync frame, if it carries one.
fn envelope_batch(bytes: &[u8]) -> Option<(u32, v1::EnvelopeBatch)> {
    let view = <BatchView as prost::Message>::decode(bytes).ok()?;
    Some((view.version, view.envelopes?))
}

fn refusal(error: &SendError) -> Refusal {
    match error {
        SendError::Seal(ferry_core::crypto::SealError::TooLarge) => Refusal::TooLarge,
        _ => Refusal::EngineError,
    }
}

impl World {
    pub(crate) fn new(
        params: SimParams,
        mut events: Vec<ScenarioEvent>,
    ) -> Result<Self, crate::SimError> {
        // Stable: events at the same time keep their file order.
        // Stable, and at equal times: contacts ending first, then a node's
        // side as it moves, then churn and partition phases, then the rest
        // (contacts starting, messages). So a contact that ends as a
        // partition heals never comes up for zero seconds, a node comes back
        // before its contacts do, and a partition starting as a region
        // partition heals is the one in force.
        let class = |e: &ScenarioEvent| match e {
            ScenarioEvent::Contact { up: false, .. } => 0,
            ScenarioEvent::Side { .. } => 1,
            ScenarioEvent::Online { .. } | ScenarioEvent::Partition { .. } => 2,
            _ => 3,
        };
        events.sort_by(|a, b| {
            a.time()
                .total_cmp(&b.time())
                .then_with(|| class(a).cmp(&class(b)))
        });
        let nodes = (0..params.nodes)
            .map(|i| -> Result<Node, crate::SimError> {
                let engine = open_engine(params.seed, i, engine_config(&params, i), params.fast)?;
                let key = engine.keyring().identity().identity_key();
                Ok(Node {
                    engine,
                    key,
                    neighbours: BTreeSet::new(),
                    seen: HashSet::new(),
                    hops: HashMap::new(),
                    online: true,
                    timer_at: u64::MAX,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut metrics = Metrics::new(params.ttl_secs, params.duration_secs);
        // Per-node buffer samples, unless they would not fit in memory
        // (the report says so).
        let samples = params.duration_secs / params.sample_interval_secs.max(1e-9) + 2.0;
        metrics.record_node_buffers = samples * params.nodes as f64 <= MAX_NODE_SAMPLES;
        metrics.duplicate_ups_ignored = params.duplicate_ups_ignored;
        let rng = StdRng::seed_from_u64(params.seed ^ 0x5eed);
        let count = params.nodes;
        let mut world = Self {
            params,
            events,
            nodes,
            links: BTreeMap::new(),
            wanted: vec![BTreeSet::new(); count],
            sides: vec![FREE; count],
            heap: BinaryHeap::new(),
            pending: HashMap::new(),
            next_slot: 0,
            sub: 0,
            now: 0,
            parent: 0,
            generation: 0,
            rng,
            by_message_id: HashMap::new(),
            by_content_id: HashMap::new(),
            arriving_from: None,
            last_contact_end: HashMap::new(),
            one_queue: (0..count)
                .map(|_| std::collections::VecDeque::new())
                .collect(),
            one_busy: vec![false; count],
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

    fn secs(&self) -> f64 {
        self.now as f64 / MICROS
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
                    carry,
                    bytes,
                    envelopes,
                } => self.arrive(
                    Hop {
                        from,
                        to,
                        generation,
                    },
                    carry,
                    &bytes,
                    &envelopes,
                    true,
                ),
                Ev::OneDone { from, item } => {
                    for n in [from, item.to] {
                        if let Some(b) = self.one_busy.get_mut(n as usize) {
                            *b = false;
                        }
                    }
                    self.arrive(
                        Hop {
                            from,
                            to: item.to,
                            generation: item.generation,
                        },
                        item.carry,
                        &item.bytes,
                        &item.envelopes,
                        item.ack,
                    );
                    // Hosts waiting for these two may start now.
                    for n in 0..self.nodes.len() as u32 {
                        self.one_try(n);
                    }
                }
                Ev::Timer(n) => {
                    let now = self.engine_now();
                    if let Some(node) = self.nodes.get_mut(n as usize) {
                        node.timer_at = u64::MAX;
                        let _ = node.engine.handle(Input::Timeout, now);
                    }
                    self.drain(n);
                    self.schedule_timer(n);
                }
                Ev::Resync { key, generation } => {
                    if self
                        .links
                        .get(&key)
                        .is_some_and(|l| l.generation == generation)
                    {
                        let now = self.engine_now();
                        if let Some(node) = self.nodes.get_mut(key.0 as usize) {
                            let _ = node.engine.handle(
                                Input::Resync {
                                    peer: PeerId(u64::from(key.1)),
                                },
                                now,
                            );
                        }
                        self.drain(key.0);
                        self.push(
                            time.saturating_add(to_micros(RESYNC_SECS)),
                            Ev::Resync { key, generation },
                        );
                    }
                }
                Ev::Sample => {
                    self.sample();
                    let next =
                        time.saturating_add(to_micros(self.params.sample_interval_secs).max(1));
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
        // The last sample, at the end, after everything that happened then
        // (a sample already taken at that time is replaced).
        self.metrics.drop_sample_at(self.secs());
        self.sample();
        progress(1.0);
    }

    fn sample(&mut self) {
        let held: Vec<u64> = self.nodes.iter().map(|n| n.engine.held_bytes()).collect();
        self.metrics.sample(self.secs(), &held);
    }

    fn scenario(&mut self, i: usize) {
        let Some(event) = self.events.get(i).cloned() else {
            return;
        };
        match event {
            ScenarioEvent::Contact { a, b, up, .. } => {
                let key = (a.min(b), a.max(b));
                for (x, y) in [(a, b), (b, a)] {
                    if let Some(set) = self.wanted.get_mut(x as usize) {
                        if up {
                            set.insert(y);
                        } else {
                            set.remove(&y);
                        }
                    }
                }
                if !up {
                    self.link_down(key);
                } else if self.allowed(key) {
                    self.link_up(key);
                } else {
                    self.metrics.contacts_cut += 1;
                }
            }
            ScenarioEvent::Online { node, online, .. } => {
                if let Some(n) = self.nodes.get_mut(node as usize) {
                    n.online = online;
                }
                self.refresh(node);
            }
            ScenarioEvent::Partition { groups, .. } => {
                for (n, side) in self.sides.iter_mut().enumerate() {
                    *side = groups
                        .as_ref()
                        .and_then(|g| g.get(n).copied())
                        .unwrap_or(FREE);
                }
                for n in 0..self.nodes.len() as u32 {
                    self.refresh(n);
                }
            }
            ScenarioEvent::Side { node, side, .. } => {
                if let Some(s) = self.sides.get_mut(node as usize) {
                    *s = side;
                }
                self.refresh(node);
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

    /// Whether a wanted contact may be up now.
    fn allowed(&self, (a, b): (u32, u32)) -> bool {
        let online = |n: u32| self.nodes.get(n as usize).is_some_and(|n| n.online);
        let side = |n: u32| self.sides.get(n as usize).copied().unwrap_or(FREE);
        let (sa, sb) = (side(a), side(b));
        let same_side = sa == FREE || sb == FREE || sa == sb;
        a != b && online(a) && online(b) && same_side
    }

    /// After churn or a side change of node `n`: its links no longer
    /// allowed go down, its wanted contacts now allowed come up.
    fn refresh(&mut self, n: u32) {
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        let down: Vec<u32> = node
            .neighbours
            .iter()
            .copied()
            .filter(|m| !self.allowed((n.min(*m), n.max(*m))))
            .collect();
        for m in down {
            self.link_down((n.min(m), n.max(m)));
        }
        let up: Vec<u32> = self
            .wanted
            .get(n as usize)
            .map(|set| {
                set.iter()
                    .copied()
                    .filter(|m| {
                        let key = (n.min(*m), n.max(*m));
                        !self.links.contains_key(&key) && self.allowed(key)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for m in up {
            self.link_up((n.min(m), n.max(m)));
        }
    }

    fn create(&mut self, label: String, from: u32, to: u32, size: u32) {
        let now_secs = self.secs();
        let index = self.metrics.created(label, from, to, size, now_secs);
        let Some(dest) = self.nodes.get(to as usize).map(|n| n.key) else {
            self.metrics.refused(index, Refusal::UnknownNode);
            return;
        };
        let now = self.engine_now();
        let mut body = vec![0u8; size as usize];
        self.rng.fill(&mut body[..]);
        let Some(node) = self.nodes.get_mut(from as usize) else {
            self.metrics.refused(index, Refusal::UnknownNode);
            return;
        };
        match node.engine.send(&dest, &body, now) {
            Ok(message_id) => {
                self.by_message_id.insert(message_id, index);
                if let Some(id) = node.engine.own_envelope(&message_id) {
                    node.hops.insert(id, 0);
                    self.by_content_id.insert(id, index);
                    self.metrics.set_content_id(index, id);
                }
                self.drain(from);
            }
            Err(error) => self.metrics.refused(index, refusal(&error)),
        }
    }

    fn link_up(&mut self, key: (u32, u32)) {
        if self.links.contains_key(&key) {
            return;
        }
        self.generation += 1;
        self.links.insert(
            key,
            Link {
                generation: self.generation,
                busy_until: (0, 0),
                since: self.now,
            },
        );
        self.metrics.contacts += 1;
        if let Some(ended) = self.last_contact_end.get(&key) {
            self.metrics
                .inter_contact(self.now.saturating_sub(*ended) as f64 / MICROS);
        }
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
        self.drain(key.0);
        self.drain(key.1);
        let generation = self.generation;
        self.push(
            self.now.saturating_add(to_micros(RESYNC_SECS)),
            Ev::Resync { key, generation },
        );
    }

    fn link_down(&mut self, key: (u32, u32)) {
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        self.metrics
            .contact_time(self.now.saturating_sub(link.since) as f64 / MICROS);
        self.last_contact_end.insert(key, self.now);
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

    /// Carries out a node's outputs.
    fn drain(&mut self, n: u32) {
        loop {
            let Some(node) = self.nodes.get_mut(n as usize) else {
                return;
            };
            let Some(output) = node.engine.poll_output() else {
                break;
            };
            match output {
                Output::Publish { content_id, bytes } => {
                    node.seen.insert(content_id);
                    let neighbours: Vec<u32> = node.neighbours.iter().copied().collect();
                    for m in neighbours {
                        self.transmit(n, m, Carry::Gossip(content_id), bytes.clone());
                    }
                }
                Output::SendFrame { peer, bytes } => {
                    let m = u32::try_from(peer.0).unwrap_or(u32::MAX);
                    self.transmit(n, m, Carry::Frame, bytes);
                }
                Output::Deliver(d) => {
                    let _ = node.engine.ack_delivery(&d.message_id);
                    self.delivered(n, &d.message_id);
                }
                Output::Event(Event::Rejected { reason, .. }) => {
                    self.metrics.dropped(match reason {
                        RejectReason::GlobalQuota => "buffer_full",
                        RejectReason::TagQuota => "tag_quota",
                        RejectReason::PeerQuota => "peer_quota",
                    });
                }
                Output::Event(Event::Delivered { message_id }) => {
                    if let Some(&index) = self.by_message_id.get(&message_id) {
                        let now = self.secs();
                        self.metrics.receipt(index, now);
                    }
                }
                Output::Event(_) => {}
            }
        }
        self.schedule_timer(n);
    }

    /// Node `n` delivered our message `message_id` to its app.
    fn delivered(&mut self, n: u32, message_id: &MessageId) {
        let Some(&index) = self.by_message_id.get(message_id) else {
            return;
        };
        let Some(id) = self.metrics.content_id(index) else {
            return;
        };
        let hop = self
            .arriving_from
            .and_then(|f| self.nodes.get(f as usize))
            .and_then(|f| f.hops.get(&id))
            .map_or(1, |h| h + 1);
        if let Some(node) = self.nodes.get_mut(n as usize) {
            node.hops.entry(id).or_insert(hop);
        }
        let now = self.secs();
        self.metrics.delivered(index, now, hop);
    }

    /// Whether envelope `id` is a message copy past its exact TTL.
    fn expired(&self, id: &ContentId) -> bool {
        self.expired_at(id, self.now)
    }

    /// Whether envelope `id` is a message copy past its exact TTL at `at`
    /// (µs).
    fn expired_at(&self, id: &ContentId, at: u64) -> bool {
        self.by_content_id
            .get(id)
            .is_some_and(|&index| !self.metrics.alive(index, at as f64 / MICROS))
    }

    fn kind(&self, id: &ContentId) -> Kind {
        if self.by_content_id.contains_key(id) {
            Kind::Data
        } else {
            Kind::Receipt
        }
    }

    fn transmit(&mut self, from: u32, to: u32, carry: Carry, mut bytes: Vec<u8>) {
        let key = (from.min(to), from.max(to));
        let Some(link) = self.links.get(&key) else {
            return;
        };
        // When the transmission would start (behind what this direction
        // already carries): the TTL is checked then, not when it is queued.
        let starts = if from < to {
            link.busy_until.0
        } else {
            link.busy_until.1
        }
        .max(self.now);
        let mut envelopes = Vec::new();
        match carry {
            Carry::Gossip(id) => {
                // Gossip is not sent to a peer that already has the message:
                // the overlay's IDONTWANT and duplicate cache, as perfect.
                if self
                    .nodes
                    .get(to as usize)
                    .is_some_and(|n| n.seen.contains(&id))
                    || self.expired_at(&id, starts)
                {
                    return;
                }
                let len = bytes.len() as u64;
                self.metrics.bytes(self.kind(&id), len);
                envelopes.push((id, len));
            }
            Carry::Frame => {
                if let Some((version, mut batch)) = envelope_batch(&bytes) {
                    // The exact TTL: copies past it are not put on the link.
                    let before = batch.envelopes.len();
                    batch.envelopes.retain(|e| {
                        ContentId::try_from(e.content_id.as_slice())
                            .map_or(true, |id| !self.expired_at(&id, starts))
                    });
                    if batch.envelopes.is_empty() {
                        // Nothing left to send: the frame counts as
                        // delivered for the sender's window.
                        self.frame_acked(from, to);
                        return;
                    }
                    if batch.envelopes.len() != before {
                        bytes = proto::encode(&v1::SyncFrame {
                            version,
                            kind: Some(v1::sync_frame::Kind::Envelopes(batch.clone())),
                        });
                    }
                    let mut carried = 0;
                    for e in &batch.envelopes {
                        let Ok(id) = ContentId::try_from(e.content_id.as_slice()) else {
                            continue;
                        };
                        // The envelope and its field header in the batch
                        // (a tag byte and the length as a varint).
                        let body = proto::encoded_len(e) as u64;
                        let len =
                            body + 1 + u64::from((64 - body.leading_zeros()).div_ceil(7).max(1));
                        carried += len;
                        self.metrics.bytes(self.kind(&id), len);
                        envelopes.push((id, len));
                    }
                    self.metrics
                        .bytes(Kind::Control, (bytes.len() as u64).saturating_sub(carried));
                } else {
                    self.metrics.bytes(Kind::Control, bytes.len() as u64);
                }
            }
        }
        if self.params.one_model.is_some() {
            self.one_enqueue(from, to, carry, bytes, envelopes);
            return;
        }
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
        let finish = start.saturating_add(transfer);
        *busy = finish;
        let generation = link.generation;
        if self.params.loss > 0.0 && self.rng.random::<f64>() < self.params.loss {
            self.metrics.lost += 1;
            if matches!(carry, Carry::Frame) {
                // The transport gives up on a lost frame (a request
                // timeout in the node): the sender's push window reopens.
                self.frame_acked(from, to);
            }
            return;
        }
        let arrival = finish.saturating_add(to_micros(self.params.latency_secs));
        self.push(
            arrival,
            Ev::Arrive {
                from,
                to,
                generation,
                carry,
                bytes,
                envelopes,
            },
        );
    }

    /// ONE's rules: control frames arrive at once, for free (ONE's routers
    /// know what a peer holds); envelopes wait in the sender's queue, one
    /// transfer each.
    fn one_enqueue(
        &mut self,
        from: u32,
        to: u32,
        carry: Carry,
        bytes: Vec<u8>,
        envelopes: Vec<(ContentId, u64)>,
    ) {
        let key = (from.min(to), from.max(to));
        let Some(generation) = self.links.get(&key).map(|l| l.generation) else {
            return;
        };
        let queue = |w: &mut Self, item: Queued| {
            if let Some(q) = w.one_queue.get_mut(from as usize) {
                q.push_back(item);
            }
        };
        match carry {
            Carry::Gossip(_) => queue(
                self,
                Queued {
                    to,
                    generation,
                    carry,
                    bytes,
                    envelopes,
                    ack: false,
                },
            ),
            Carry::Frame => match envelope_batch(&bytes) {
                Some((version, batch)) if !envelopes.is_empty() => {
                    let last = batch.envelopes.len().saturating_sub(1);
                    for (i, (e, part)) in batch.envelopes.into_iter().zip(envelopes).enumerate() {
                        let piece = proto::encode(&v1::SyncFrame {
                            version,
                            kind: Some(v1::sync_frame::Kind::Envelopes(v1::EnvelopeBatch {
                                envelopes: vec![e],
                            })),
                        });
                        queue(
                            self,
                            Queued {
                                to,
                                generation,
                                carry,
                                bytes: piece,
                                envelopes: vec![part],
                                ack: i == last,
                            },
                        );
                    }
                }
                _ => {
                    let now = self.now;
                    self.push(
                        now,
                        Ev::Arrive {
                            from,
                            to,
                            generation,
                            carry,
                            bytes,
                            envelopes,
                        },
                    );
                }
            },
        }
        self.one_try(from);
    }

    /// Starts node `n`'s first queued transfer whose receiver is free, if
    /// `n` is free; what the receiver has meanwhile got is dropped unsent,
    /// as ONE checks when a transfer starts.
    fn one_try(&mut self, n: u32) {
        let Some(step) = self.params.one_model else {
            return;
        };
        if self.one_busy.get(n as usize).copied().unwrap_or(true) {
            return;
        }
        // ONE sends first what the peer is the destination of (its
        // `exchangeDeliverableMessages`), then in queue order.
        let deliverable = self.one_queue.get(n as usize).and_then(|q| {
            q.iter().position(|item| {
                !self.one_busy.get(item.to as usize).copied().unwrap_or(true)
                    && item.envelopes.iter().any(|(id, _)| {
                        self.by_content_id.get(id).is_some_and(|&index| {
                            self.metrics.destination(index) == Some(item.to)
                                && self.metrics.alive(index, self.secs())
                                && !self
                                    .nodes
                                    .get(item.to as usize)
                                    .is_some_and(|r| r.hops.contains_key(id) || r.seen.contains(id))
                        })
                    })
                    && self
                        .links
                        .get(&(n.min(item.to), n.max(item.to)))
                        .is_some_and(|l| l.generation == item.generation)
            })
        });
        if let Some(i) = deliverable
            && i > 0
            && let Some(q) = self.one_queue.get_mut(n as usize)
            && let Some(item) = q.remove(i)
        {
            q.push_front(item);
        }
        let mut i = 0;
        loop {
            let Some(item) = self.one_queue.get(n as usize).and_then(|q| q.get(i)) else {
                return;
            };
            let to = item.to;
            let key = (n.min(to), n.max(to));
            let alive = self
                .links
                .get(&key)
                .is_some_and(|l| l.generation == item.generation);
            let useless = item.envelopes.iter().all(|(id, _)| {
                self.nodes.get(to as usize).is_some_and(|r| {
                    r.hops.contains_key(id) || r.engine.holds(id) || r.seen.contains(id)
                }) || self.expired(id)
            });
            if !alive || useless {
                let Some(item) = self.one_queue.get_mut(n as usize).and_then(|q| q.remove(i))
                else {
                    return;
                };
                if alive && item.ack {
                    self.frame_acked(n, to);
                }
                continue;
            }
            if self.one_busy.get(to as usize).copied().unwrap_or(true) {
                i += 1;
                continue;
            }
            let Some(item) = self.one_queue.get_mut(n as usize).and_then(|q| q.remove(i)) else {
                return;
            };
            let bw = self.params.bandwidth.unwrap_or(f64::INFINITY);
            let step_us = to_micros(step).max(1);
            let transfer = to_micros(item.bytes.len() as f64 / bw)
                .div_ceil(step_us)
                .max(1)
                * step_us;
            let start = self.now.div_ceil(step_us) * step_us;
            for m in [n, to] {
                if let Some(b) = self.one_busy.get_mut(m as usize) {
                    *b = true;
                }
            }
            self.push(start + transfer, Ev::OneDone { from: n, item });
            return;
        }
    }

    fn frame_acked(&mut self, from: u32, to: u32) {
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

    fn arrive(
        &mut self,
        Hop {
            from,
            to,
            generation,
        }: Hop,
        carry: Carry,
        bytes: &[u8],
        envelopes: &[(ContentId, u64)],
        ack: bool,
    ) {
        let key = (from.min(to), from.max(to));
        if self
            .links
            .get(&key)
            .is_none_or(|l| l.generation != generation)
        {
            // The contact ended before the transfer completed.
            self.metrics.aborted(bytes.len() as u64);
            return;
        }
        let now = self.engine_now();
        let Some(node) = self.nodes.get_mut(to as usize) else {
            return;
        };
        // What it already had: in custody, or delivered to it. A copy it
        // evicted and now takes again is a relay again, as ONE counts it.
        let had: Vec<bool> = envelopes
            .iter()
            .map(|(id, _)| {
                node.engine.holds(id)
                    || self.by_content_id.get(id).is_some_and(|&index| {
                        self.metrics.destination(index) == Some(to) && node.hops.contains_key(id)
                    })
            })
            .collect();
        match carry {
            Carry::Gossip(id) => {
                node.seen.insert(id);
                let verdict = node.engine.handle(
                    Input::Gossip {
                        from: PeerId(u64::from(from)),
                        bytes,
                    },
                    now,
                );
                if verdict.ok() == Some(Verdict::Accept) {
                    // Gossipsub forwards what validation accepted.
                    let neighbours: Vec<u32> = node
                        .neighbours
                        .iter()
                        .copied()
                        .filter(|m| *m != from)
                        .collect();
                    for m in neighbours {
                        self.transmit(to, m, Carry::Gossip(id), bytes.to_vec());
                    }
                }
            }
            Carry::Frame => {
                let _ = node.engine.handle(
                    Input::Frame {
                        from: PeerId(u64::from(from)),
                        bytes,
                    },
                    now,
                );
                // The frame arrived: the sender's push window opens again
                // (one-way, not a round trip: the acknowledgement is a byte).
                if ack {
                    self.frame_acked(from, to);
                }
                self.drain(from);
            }
        }
        self.arriving_from = Some(from);
        self.drain(to);
        self.arriving_from = None;
        // Which copies this node took (custody, or delivery to it): relays
        // as ONE counts them. The others crossed the link for nothing.
        let secs = self.secs();
        for (&(id, len), had) in envelopes.iter().zip(had) {
            let from_hops = self
                .nodes
                .get(from as usize)
                .and_then(|n| n.hops.get(&id).copied());
            let kind = self.kind(&id);
            let message = self.by_content_id.get(&id).copied();
            let destination = message.and_then(|index| self.metrics.destination(index)) == Some(to);
            let in_time = message.is_none_or(|index| self.metrics.alive(index, secs));
            let Some(node) = self.nodes.get_mut(to as usize) else {
                return;
            };
            let took =
                !had && (node.engine.holds(&id) || (destination && node.hops.contains_key(&id)));
            if took && in_time {
                node.hops
                    .entry(id)
                    .or_insert(from_hops.map_or(1, |h| h + 1));
                self.metrics.took(kind);
            } else {
                self.metrics.refused_copy(kind, len);
            }
        }
    }
}
