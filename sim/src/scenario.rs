//! Scenario files (TOML): connectivity, traffic, links, buffers, routing,
//! and sweeps. See `docs/simulator.md` for the format with examples.

use std::path::{Path, PathBuf};

use ferry_core::engine::Strategy;
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use serde::Deserialize;

use crate::{
    SimError,
    trace::{self, TraceEvent},
    world::{ScenarioEvent, SimParams},
};

/// A scenario as written in TOML.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, copied into every output.
    pub name: String,
    /// Seed for every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Length of the run in seconds.
    pub duration_secs: f64,
    /// Message lifetime in seconds.
    pub ttl_secs: f64,
    /// Number of nodes; with a trace, defaults to the largest host ID + 1.
    pub nodes: Option<usize>,
    /// Contacts and/or messages from ONE-format files.
    pub trace: Option<TraceSource>,
    /// A static topology (instead of trace contacts).
    pub topology: Option<Topology>,
    /// Random-waypoint mobility producing contacts.
    pub mobility: Option<Mobility>,
    /// Partition phases on top of a static topology.
    #[serde(default)]
    pub partition: Vec<Partition>,
    /// Node churn: nodes switched off and on again.
    #[serde(default)]
    pub churn: Vec<Churn>,
    /// Generated traffic (instead of, or besides, trace messages).
    pub traffic: Option<Traffic>,
    /// Link model.
    #[serde(default)]
    pub link: LinkSpec,
    /// Buffer sizes.
    #[serde(default)]
    pub buffers: Buffers,
    /// Routing.
    #[serde(default)]
    pub routing: Routing,
    /// Sampling interval for time series, in seconds.
    #[serde(default = "default_sample")]
    pub sample_interval_secs: f64,
    /// Parameter values to sweep (one run per combination).
    pub sweep: Option<Sweep>,
    /// Fast mode for large-scale studies: engines skip the Olm session layer.
    /// Off by default; when on, every output says so.
    #[serde(default)]
    pub fast: bool,
}

fn default_sample() -> f64 {
    600.0
}

/// ONE-format input files (paths relative to the scenario file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceSource {
    /// `<time> CONN a b up|down` and/or `<time> C id from to size` lines.
    pub events: PathBuf,
    /// An optional second file with message creations.
    pub messages: Option<PathBuf>,
}

/// A static topology: links up from t = 0.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Topology {
    /// 0-1-2-…-(n−1).
    Line,
    /// A √n × √n grid.
    Grid,
    /// Every pair linked with probability `p`.
    ErdosRenyi {
        /// Link probability.
        p: f64,
    },
    /// Nodes uniformly in the unit square, linked within `radius`.
    RandomGeometric {
        /// Radio range (unit square).
        radius: f64,
    },
}

/// Random waypoint in a rectangle: each node picks a point, walks to it at a
/// random speed, pauses, repeats; two nodes are in contact while within
/// `range` metres. Positions are sampled every `step_secs`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mobility {
    /// Width of the area in metres.
    pub width: f64,
    /// Height of the area in metres.
    pub height: f64,
    /// Radio range in metres.
    pub range: f64,
    /// Speed range in m/s.
    #[serde(default = "default_speed")]
    pub speed: [f64; 2],
    /// Pause range in seconds.
    #[serde(default = "default_pause")]
    pub pause: [f64; 2],
    /// Sampling step in seconds.
    #[serde(default = "default_step")]
    pub step_secs: f64,
}

fn default_speed() -> [f64; 2] {
    [0.5, 1.5]
}
fn default_pause() -> [f64; 2] {
    [0.0, 120.0]
}
fn default_step() -> f64 {
    1.0
}

/// Split the nodes into groups (contiguous ID ranges) at `at_secs`; links
/// between groups go down; they come back at `heal_secs` (if given).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When the split happens.
    pub at_secs: f64,
    /// Number of groups.
    pub groups: usize,
    /// When the split heals.
    pub heal_secs: Option<f64>,
}

/// A node is off (all links down, no new contacts) from `off_secs` until
/// `on_secs` (or the end).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// The node.
    pub node: u32,
    /// When it goes off.
    pub off_secs: f64,
    /// When it comes back.
    pub on_secs: Option<f64>,
}

/// Uniform random traffic.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Number of messages.
    pub messages: usize,
    /// First creation time.
    #[serde(default)]
    pub start_secs: f64,
    /// Last creation time.
    pub end_secs: f64,
    /// Body size range in bytes, inclusive.
    #[serde(default = "default_sizes")]
    pub size_bytes: [u32; 2],
}

fn default_sizes() -> [u32; 2] {
    [1000, 2000]
}

/// Link model; defaults: unlimited bandwidth, no latency, no loss.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Bytes per second per direction; absent = unlimited.
    pub bandwidth_bytes_per_sec: Option<f64>,
    /// One-way latency in seconds.
    #[serde(default)]
    pub latency_secs: f64,
    /// Loss probability per transmission.
    #[serde(default)]
    pub loss: f64,
}

/// Buffer sizes; default unlimited.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Buffers {
    /// Bytes per node; absent = unlimited.
    pub default_bytes: Option<u64>,
    /// Per-node exceptions.
    #[serde(default, rename = "override")]
    pub overrides: Vec<BufferOverride>,
}

/// A buffer size for some nodes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferOverride {
    /// Node IDs.
    pub nodes: Vec<u32>,
    /// Bytes.
    pub bytes: u64,
}

/// Routing strategy and receipts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// `epidemic`, `spray-and-wait` or `direct`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// Copies for spray-and-wait.
    #[serde(default = "default_copies")]
    pub copies: u32,
    /// Receipts and anti-packets.
    #[serde(default = "default_true")]
    pub receipts: bool,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            strategy: default_strategy(),
            copies: default_copies(),
            receipts: true,
        }
    }
}

fn default_strategy() -> String {
    "epidemic".into()
}
fn default_copies() -> u32 {
    8
}
fn default_true() -> bool {
    true
}

/// Values to sweep; every combination is one run.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Strategies.
    #[serde(default)]
    pub strategy: Vec<String>,
    /// Spray-and-wait copies.
    #[serde(default)]
    pub copies: Vec<u32>,
    /// Seeds.
    #[serde(default)]
    pub seed: Vec<u64>,
    /// Bandwidths (bytes/s).
    #[serde(default)]
    pub bandwidth_bytes_per_sec: Vec<f64>,
}

impl Routing {
    /// The engine strategy.
    ///
    /// # Errors
    /// [`SimError::Scenario`] for an unknown name.
    pub fn strategy(&self) -> Result<Strategy, SimError> {
        match self.strategy.as_str() {
            "epidemic" => Ok(Strategy::Epidemic),
            "spray-and-wait" => Ok(Strategy::SprayAndWait {
                copies: self.copies.max(2),
            }),
            "direct" => Ok(Strategy::DirectOnly),
            other => Err(SimError::Scenario(format!("unknown strategy {other:?}"))),
        }
    }

    /// A short label, e.g. `spray-and-wait(8)`.
    pub fn label(&self) -> String {
        if self.strategy == "spray-and-wait" {
            format!("spray-and-wait({})", self.copies.max(2))
        } else {
            self.strategy.clone()
        }
    }
}

impl Scenario {
    /// Parses TOML.
    ///
    /// # Errors
    /// [`SimError::Scenario`] with the parser's message.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        toml::from_str(text).map_err(|e| SimError::Scenario(e.to_string()))
    }

    /// The runs a sweep expands to (just `self` without a sweep).
    pub fn expand(&self) -> Vec<Scenario> {
        let Some(sweep) = &self.sweep else {
            return vec![self.clone()];
        };
        let mut runs = vec![Scenario {
            sweep: None,
            ..self.clone()
        }];
        if !sweep.strategy.is_empty() {
            runs = runs
                .into_iter()
                .flat_map(|r| {
                    sweep.strategy.iter().map(move |s| {
                        let mut r = r.clone();
                        r.routing.strategy = s.clone();
                        r
                    })
                })
                .collect();
        }
        if !sweep.copies.is_empty() {
            runs = runs
                .into_iter()
                .flat_map(|r| {
                    sweep.copies.iter().map(move |c| {
                        let mut r = r.clone();
                        r.routing.copies = *c;
                        r
                    })
                })
                .collect();
        }
        if !sweep.seed.is_empty() {
            runs = runs
                .into_iter()
                .flat_map(|r| {
                    sweep.seed.iter().map(move |s| Scenario {
                        seed: *s,
                        ..r.clone()
                    })
                })
                .collect();
        }
        if !sweep.bandwidth_bytes_per_sec.is_empty() {
            runs = runs
                .into_iter()
                .flat_map(|r| {
                    sweep.bandwidth_bytes_per_sec.iter().map(move |b| {
                        let mut r = r.clone();
                        r.link.bandwidth_bytes_per_sec = Some(*b);
                        r
                    })
                })
                .collect();
        }
        runs
    }

    /// Builds the parameters and the event schedule; relative paths are
    /// resolved against `base`.
    ///
    /// # Errors
    /// [`SimError`] for unreadable or malformed inputs.
    pub fn build(&self, base: &Path) -> Result<(SimParams, Vec<ScenarioEvent>), SimError> {
        let mut events = Vec::new();
        let mut max_host = 0u32;
        if let Some(trace) = &self.trace {
            let mut files = vec![&trace.events];
            files.extend(trace.messages.as_ref());
            for file in files {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| SimError::Io(format!("{}: {e}", path.display())))?;
                for event in trace::parse(&text)
                    .map_err(|e| SimError::Trace(format!("{}: {e}", path.display())))?
                {
                    match event {
                        TraceEvent::Contact { time, a, b, up } => {
                            max_host = max_host.max(a).max(b);
                            events.push(ScenarioEvent::Contact { time, a, b, up });
                        }
                        TraceEvent::Message {
                            time,
                            id,
                            from,
                            to,
                            size,
                        } => {
                            max_host = max_host.max(from).max(to);
                            events.push(ScenarioEvent::Create {
                                time,
                                label: id,
                                from,
                                to,
                                size,
                            });
                        }
                    }
                }
            }
        }
        let nodes = self.nodes.unwrap_or(max_host as usize + 1);
        if nodes == 0 || nodes > 10_000_000 {
            return Err(SimError::Scenario(
                "nodes must be between 1 and 10 million".into(),
            ));
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        if let Some(topology) = &self.topology {
            let links = static_links(topology, nodes, &mut rng);
            for &(a, b) in &links {
                events.push(ScenarioEvent::Contact {
                    time: 0.0,
                    a,
                    b,
                    up: true,
                });
            }
            for phase in &self.partition {
                let groups = phase.groups.max(1);
                let group = |n: u32| (n as usize * groups) / nodes;
                for &(a, b) in links.iter().filter(|(a, b)| group(*a) != group(*b)) {
                    events.push(ScenarioEvent::Contact {
                        time: phase.at_secs,
                        a,
                        b,
                        up: false,
                    });
                    if let Some(heal) = phase.heal_secs {
                        events.push(ScenarioEvent::Contact {
                            time: heal,
                            a,
                            b,
                            up: true,
                        });
                    }
                }
            }
        }
        // Churn first: at equal times a node comes back before its contacts.
        let mut churn = Vec::new();
        for c in &self.churn {
            churn.push(ScenarioEvent::Online {
                time: c.off_secs,
                node: c.node,
                online: false,
            });
            if let Some(on) = c.on_secs {
                churn.push(ScenarioEvent::Online {
                    time: on,
                    node: c.node,
                    online: true,
                });
            }
        }
        events.splice(0..0, churn);
        if let Some(mobility) = &self.mobility {
            events.extend(random_waypoint(
                mobility,
                nodes,
                self.duration_secs,
                &mut rng,
            ));
        }
        if let Some(traffic) = &self.traffic {
            let n =
                u32::try_from(nodes).map_err(|_| SimError::Scenario("too many nodes".into()))?;
            if n < 2 {
                return Err(SimError::Scenario(
                    "traffic needs at least two nodes".into(),
                ));
            }
            for i in 0..traffic.messages {
                let time = traffic.start_secs
                    + (traffic.end_secs - traffic.start_secs)
                        * (i as f64 / traffic.messages.max(1) as f64);
                let from = rng.random_range(0..n);
                let mut to = rng.random_range(0..n - 1);
                if to >= from {
                    to += 1;
                }
                let [lo, hi] = traffic.size_bytes;
                let size = rng.random_range(lo.min(hi)..=hi.max(lo));
                events.push(ScenarioEvent::Create {
                    time,
                    label: format!("G{}", i + 1),
                    from,
                    to,
                    size,
                });
            }
        }
        let mut buffer_bytes = vec![self.buffers.default_bytes; nodes];
        for o in &self.buffers.overrides {
            for n in &o.nodes {
                if let Some(b) = buffer_bytes.get_mut(*n as usize) {
                    *b = Some(o.bytes);
                }
            }
        }
        let params = SimParams {
            nodes,
            seed: self.seed,
            ttl_secs: self.ttl_secs,
            duration_secs: self.duration_secs,
            bandwidth: self.link.bandwidth_bytes_per_sec.filter(|b| *b > 0.0),
            latency_secs: self.link.latency_secs.max(0.0),
            loss: self.link.loss.clamp(0.0, 1.0),
            buffer_bytes,
            strategy: self.routing.strategy()?,
            receipts: self.routing.receipts,
            sample_interval_secs: self.sample_interval_secs.max(1.0),
            fast: self.fast,
        };
        Ok((params, events))
    }
}

fn static_links(topology: &Topology, nodes: usize, rng: &mut StdRng) -> Vec<(u32, u32)> {
    let n = nodes as u32;
    let mut links = Vec::new();
    match topology {
        Topology::Line => links.extend((1..n).map(|i| (i - 1, i))),
        Topology::Grid => {
            let side = (nodes as f64).sqrt().ceil() as u32;
            for i in 0..n {
                if (i + 1) % side != 0 && i + 1 < n {
                    links.push((i, i + 1));
                }
                if i + side < n {
                    links.push((i, i + side));
                }
            }
        }
        Topology::ErdosRenyi { p } => {
            for a in 0..n {
                for b in a + 1..n {
                    if rng.random::<f64>() < *p {
                        links.push((a, b));
                    }
                }
            }
        }
        Topology::RandomGeometric { radius } => {
            let pos: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
            for (a, pa) in pos.iter().enumerate() {
                for (b, pb) in pos.iter().enumerate().skip(a + 1) {
                    if (pa.0 - pb.0).hypot(pa.1 - pb.1) <= *radius {
                        links.push((a as u32, b as u32));
                    }
                }
            }
        }
    }
    links
}

struct Walker {
    x: f64,
    y: f64,
    target: (f64, f64),
    speed: f64,
    pause_until: f64,
}

/// Contacts of a random-waypoint run. Neighbour search uses a grid of
/// `range`-sized cells, so each step costs O(nodes), not O(nodes²).
pub fn random_waypoint(
    m: &Mobility,
    nodes: usize,
    duration: f64,
    rng: &mut StdRng,
) -> Vec<ScenarioEvent> {
    let (w, h, range) = (m.width.max(1.0), m.height.max(1.0), m.range.max(0.0));
    let pick = |rng: &mut StdRng, [lo, hi]: [f64; 2]| {
        if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        }
    };
    let mut walkers: Vec<Walker> = (0..nodes)
        .map(|_| {
            let (x, y) = (rng.random_range(0.0..w), rng.random_range(0.0..h));
            let target = (rng.random_range(0.0..w), rng.random_range(0.0..h));
            Walker {
                x,
                y,
                target,
                speed: pick(rng, m.speed).max(0.01),
                pause_until: 0.0,
            }
        })
        .collect();
    let mut events = Vec::new();
    let mut up: std::collections::BTreeSet<(u32, u32)> = std::collections::BTreeSet::new();
    let step = m.step_secs.max(0.01);
    let cell = range.max(1e-9);
    let mut t = 0.0;
    while t <= duration {
        let mut grid: std::collections::HashMap<(i64, i64), Vec<u32>> =
            std::collections::HashMap::new();
        for (i, p) in walkers.iter().enumerate() {
            grid.entry(((p.x / cell) as i64, (p.y / cell) as i64))
                .or_default()
                .push(i as u32);
        }
        let mut now_up = std::collections::BTreeSet::new();
        for (i, p) in walkers.iter().enumerate() {
            let (cx, cy) = ((p.x / cell) as i64, (p.y / cell) as i64);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for &j in grid
                        .get(&(cx + dx, cy + dy))
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        if j as usize <= i {
                            continue;
                        }
                        if let Some(q) = walkers.get(j as usize)
                            && (p.x - q.x).hypot(p.y - q.y) <= range
                        {
                            now_up.insert((i as u32, j));
                        }
                    }
                }
            }
        }
        for &(a, b) in now_up.difference(&up) {
            events.push(ScenarioEvent::Contact {
                time: t,
                a,
                b,
                up: true,
            });
        }
        for &(a, b) in up.difference(&now_up) {
            events.push(ScenarioEvent::Contact {
                time: t,
                a,
                b,
                up: false,
            });
        }
        up = now_up;
        for p in &mut walkers {
            if t < p.pause_until {
                continue;
            }
            let (dx, dy) = (p.target.0 - p.x, p.target.1 - p.y);
            let dist = dx.hypot(dy);
            let travel = p.speed * step;
            if dist <= travel {
                p.x = p.target.0;
                p.y = p.target.1;
                p.pause_until = t + pick(rng, m.pause);
                p.target = (rng.random_range(0.0..w), rng.random_range(0.0..h));
                p.speed = pick(rng, m.speed).max(0.01);
            } else {
                p.x += dx / dist * travel;
                p.y += dy / dist * travel;
            }
        }
        t += step;
    }
    events
}
