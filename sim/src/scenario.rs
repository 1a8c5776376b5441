//! Scenario files (TOML): connectivity, traffic, links, buffers, routing,
//! and sweeps. See `docs/simulator.md` for the format with examples.

use std::path::{Path, PathBuf};

use ferry_core::engine::Strategy;
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::{
    SimError,
    check::Checker,
    mobility::{FREE, Mobility, RegionPhase},
    trace::{self, TraceEvent},
    world::{ScenarioEvent, SimParams},
};

/// A scenario as written in TOML.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// Movement producing contacts (node groups, random waypoint or
    /// stationary).
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
    /// Parameter values to sweep (one run per combination; see
    /// [`crate::sweep`]).
    pub sweep: Option<crate::sweep::Sweep>,
    /// Fast mode for large-scale studies: engines skip the Olm session layer.
    /// Off by default; when on, every output says so.
    #[serde(default)]
    pub fast: bool,
    /// Where the scenario was read from (for error messages).
    #[serde(skip)]
    pub source: Source,
    /// The swept values that made this run (empty without a sweep).
    #[serde(skip)]
    pub swept: std::collections::BTreeMap<String, toml::Value>,
}

/// The file a scenario came from and its text, so that errors found after
/// parsing can name the line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// The file name as given (`scenario` for text without a file).
    pub file: String,
    /// The TOML text.
    pub text: std::sync::Arc<str>,
}

/// The strategies a scenario may name.
pub const STRATEGIES: &[&str] = &["epidemic", "spray-and-wait", "direct"];

/// Most samples of the time series a run may keep (each costs about 48
/// bytes with the delivery curve): a longer run needs a longer
/// `sample_interval_secs`.
pub const MAX_SAMPLES: f64 = 10_000_000.0;

/// The longest message lifetime a scenario may ask for (s): the protocol's
/// longest lifetime less the receipts' expiry jitter and the engines'
/// one-second slack.
pub const MAX_TTL_SECS: f64 = (ferry_core::proto::limits::MAX_LIFETIME_SECS
    - ferry_core::engine::RECEIPT_EXPIRY_JITTER_SECS
    - 1) as f64;

/// The longest run (s): about 300 years, far below where microsecond
/// times overflow.
pub const MAX_DURATION_SECS: f64 = 1e10;

/// Most messages a `[traffic]` generator may create.
pub const MAX_MESSAGES: usize = 10_000_000;

/// Most nodes of a topology that looks at every pair (Erdős–Rényi,
/// random geometric): 1.25 billion pairs.
pub const MAX_PAIRWISE_NODES: usize = 50_000;

/// Most positions a mobility model may compute (nodes × steps).
pub const MAX_MOBILITY_POSITIONS: f64 = 20_000_000_000.0;

fn default_sample() -> f64 {
    600.0
}

/// ONE-format input files (paths relative to the scenario file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceSource {
    /// `<time> CONN a b up|down` and/or `<time> C id from to size` lines.
    pub events: PathBuf,
    /// An optional second file with message creations.
    pub messages: Option<PathBuf>,
    /// A second `up` of a contact already up: `"error"` (default) or
    /// `"ignore"` (skipped and counted, as ONE does).
    #[serde(default)]
    pub duplicate_up: DuplicateUp,
}

/// See [`TraceSource::duplicate_up`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicateUp {
    /// Refuse the trace.
    #[default]
    Error,
    /// Skip the line and count it.
    Ignore,
}

/// A static topology: links up from t = 0.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

/// A partition from `at_secs` until `heal_secs` (or the end): contacts
/// between its sides are cut (trace, mobility and static contacts alike)
/// and come back, if still there, when it heals. The sides are given by
/// exactly one of `groups`, `sides` or `regions`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When the split happens (s).
    pub at_secs: f64,
    /// When the split heals (s); absent: never.
    pub heal_secs: Option<f64>,
    /// Split node IDs into this many contiguous ranges of equal size.
    pub groups: Option<usize>,
    /// Sides by mobility group name, e.g. `[["north"], ["south"]]`; nodes
    /// of groups listed nowhere (data mules) reach every side.
    pub sides: Option<Vec<Vec<String>>>,
    /// Sides by position: rectangles `[x0, y0, x1, y1]` (m) of the mobility
    /// area; a node's side is the region it is in at each step, and a node
    /// outside every region reaches every side.
    pub regions: Option<Vec<[f64; 4]>>,
}

/// A node is off (all links down, no new contacts) from `off_secs` until
/// `on_secs` (or the end).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// `"pipe"` (default): each direction a FIFO pipe, control frames take
    /// link time. `"one"`: the ONE simulator's rules (see
    /// `docs/simulator.md`): one transfer per host at a time, one envelope
    /// per transfer, lasting whole update steps, decided when it starts;
    /// control frames free.
    #[serde(default)]
    pub model: LinkModel,
    /// The update step of the `"one"` model (s); ONE's default is 0.1.
    #[serde(default = "default_update")]
    pub update_secs: f64,
}

/// See [`LinkSpec::model`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LinkModel {
    /// FIFO pipes, continuous time.
    #[default]
    Pipe,
    /// ONE's rules.
    One,
}

fn default_update() -> f64 {
    0.1
}

impl Default for LinkSpec {
    fn default() -> Self {
        Self {
            bandwidth_bytes_per_sec: None,
            latency_secs: 0.0,
            loss: 0.0,
            model: LinkModel::Pipe,
            update_secs: default_update(),
        }
    }
}

/// Buffer sizes; default unlimited.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Buffers {
    /// Bytes per node; absent = unlimited.
    pub default_bytes: Option<u64>,
    /// Per-node exceptions.
    #[serde(default, rename = "override")]
    pub overrides: Vec<BufferOverride>,
}

/// A buffer size for some nodes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferOverride {
    /// Node IDs.
    pub nodes: Vec<u32>,
    /// Bytes.
    pub bytes: u64,
}

/// Routing strategy and receipts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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

/// A time for a trace: microsecond precision, no trailing zeros.
fn seconds(t: f64) -> String {
    let text = format!("{t:.6}");
    let text = text.trim_end_matches('0');
    text.strip_suffix('.').unwrap_or(text).to_owned()
}

fn check_strategy(c: &mut Checker<'_>, table: &str, name: &str, key: &str) {
    if !STRATEGIES.contains(&name) {
        c.fail(
            table,
            0,
            key,
            format!("{name:?}"),
            &format!("unknown strategy; valid: {}", STRATEGIES.join(", ")),
        );
    }
}

impl Routing {
    /// The engine strategy.
    ///
    /// # Errors
    /// [`SimError::Scenario`] for an unknown name.
    pub fn strategy(&self) -> Result<Strategy, SimError> {
        match self.strategy.as_str() {
            "epidemic" => Ok(Strategy::Epidemic),
            "spray-and-wait" if self.copies >= 2 => Ok(Strategy::SprayAndWait {
                copies: self.copies,
            }),
            "spray-and-wait" => Err(SimError::Scenario(format!(
                "spray-and-wait needs at least 2 copies, not {}",
                self.copies
            ))),
            "direct" => Ok(Strategy::DirectOnly),
            other => Err(SimError::Scenario(format!("unknown strategy {other:?}"))),
        }
    }

    /// A short label, e.g. `spray-and-wait(8)`.
    pub fn label(&self) -> String {
        if self.strategy == "spray-and-wait" {
            format!("spray-and-wait({})", self.copies)
        } else {
            self.strategy.clone()
        }
    }
}

impl Scenario {
    /// Parses and checks TOML (errors name the file as `scenario`).
    ///
    /// # Errors
    /// [`SimError::Scenario`] with the parser's message, or every value
    /// out of its valid range.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        Self::from_toml_named(text, "scenario")
    }

    /// Parses and checks TOML read from `file`.
    ///
    /// # Errors
    /// As [`Scenario::from_toml`].
    pub fn from_toml_named(text: &str, file: &str) -> Result<Self, SimError> {
        let mut scenario: Self =
            toml::from_str(text).map_err(|e| SimError::Scenario(format!("{file}: {e}")))?;
        scenario.source = Source {
            file: file.to_owned(),
            text: text.into(),
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and checks a scenario file.
    ///
    /// # Errors
    /// [`SimError::Io`] if it cannot be read, else as
    /// [`Scenario::from_toml`].
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::Io(format!("{}: {e}", path.display())))?;
        Self::from_toml_named(&text, &path.display().to_string())
    }

    /// Checks every value that does not depend on the trace files (those
    /// are checked by [`Scenario::build`]).
    ///
    /// # Errors
    /// [`SimError::Scenario`] listing every problem with its line.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut c = Checker::new(&self.source.file, Some(&self.source.text));
        c.positive("", 0, "duration_secs", self.duration_secs);
        c.positive("", 0, "ttl_secs", self.ttl_secs);
        if self.ttl_secs > MAX_TTL_SECS {
            c.fail(
                "",
                0,
                "ttl_secs",
                self.ttl_secs,
                &format!(
                    "at most {MAX_TTL_SECS} s: the protocol's longest lifetime (30 days) less the receipts' 6-hour jitter; longer envelopes are refused by every node"
                ),
            );
        }
        if self.duration_secs > MAX_DURATION_SECS {
            c.fail(
                "",
                0,
                "duration_secs",
                self.duration_secs,
                &format!("at most {MAX_DURATION_SECS:e} s"),
            );
        }
        c.positive("", 0, "sample_interval_secs", self.sample_interval_secs);
        if self.duration_secs.is_finite()
            && self.sample_interval_secs > 0.0
            && self.duration_secs / self.sample_interval_secs > MAX_SAMPLES
        {
            let samples = self.duration_secs / self.sample_interval_secs;
            c.fail(
                "",
                0,
                "sample_interval_secs",
                self.sample_interval_secs,
                &format!(
                    "{samples:.3e} samples over {} s would need about {:.1} GiB; use at least {} s",
                    self.duration_secs,
                    samples * 48.0 / f64::from(1u32 << 30),
                    (self.duration_secs / MAX_SAMPLES).ceil()
                ),
            );
        }
        if let Some(n) = self.nodes
            && !(1..=10_000_000).contains(&n)
        {
            c.fail("", 0, "nodes", n, "must be between 1 and 10000000");
        }
        if self.trace.is_none()
            && self.nodes.is_none()
            && self
                .mobility
                .as_ref()
                .and_then(Mobility::group_nodes)
                .is_none()
        {
            c.fail_at(
                "",
                0,
                "no nodes: give `nodes`, [[mobility.group]] counts, or a [trace] whose hosts define them".into(),
            );
        }
        if self.trace.as_ref().is_none_or(|t| t.messages.is_none()) && self.traffic.is_none() {
            // Trace events files may hold messages too: checked when read.
            if self.trace.is_none() {
                c.fail_at(
                    "",
                    0,
                    "no traffic: give [traffic], or a [trace] with message lines".into(),
                );
            }
        }
        if let Some(t) = &self.topology
            && matches!(
                t,
                Topology::ErdosRenyi { .. } | Topology::RandomGeometric { .. }
            )
            && self.nodes.is_some_and(|n| n > MAX_PAIRWISE_NODES)
        {
            c.fail(
                "topology",
                0,
                "kind",
                "a pairwise topology",
                &format!(
                    "looks at every pair of nodes: at most {MAX_PAIRWISE_NODES} nodes (use mobility for more)"
                ),
            );
        }
        if let Some(t) = &self.topology {
            match t {
                Topology::ErdosRenyi { p } if !(p.is_finite() && (0.0..=1.0).contains(p)) => {
                    c.fail("topology", 0, "p", p, "must be a probability in [0, 1]");
                }
                Topology::RandomGeometric { radius } if !(radius.is_finite() && *radius > 0.0) => {
                    c.fail(
                        "topology",
                        0,
                        "radius",
                        radius,
                        "must be > 0 (a fraction of the unit square's side)",
                    );
                }
                _ => {}
            }
        }
        if let Some(m) = &self.mobility {
            c.positive("mobility", 0, "width", m.width);
            c.positive("mobility", 0, "height", m.height);
            c.positive("mobility", 0, "range", m.range);
            if !(m.step_secs.is_finite() && m.step_secs >= 0.01) {
                c.fail(
                    "mobility",
                    0,
                    "step_secs",
                    m.step_secs,
                    "must be at least 0.01",
                );
            }
            c.range("mobility", 0, "speed", m.speed, 0.01);
            c.range("mobility", 0, "pause", m.pause, 0.0);
            let mut names = std::collections::HashSet::new();
            for (i, g) in m.groups.iter().enumerate() {
                let t = "mobility.group";
                if g.name.is_empty() || !names.insert(g.name.as_str()) {
                    c.fail(
                        t,
                        i,
                        "name",
                        format!("{:?}", g.name),
                        "must be unique and not empty",
                    );
                }
                if let Some(r) = g.range {
                    c.positive(t, i, "range", r);
                }
                if let Some(v) = g.speed {
                    c.range(t, i, "speed", v, 0.01);
                }
                if let Some(v) = g.pause {
                    c.range(t, i, "pause", v, 0.0);
                }
                if let Some(a @ [x0, y0, x1, y1]) = g.area
                    && !(a.iter().all(|v| v.is_finite())
                        && x0 >= 0.0
                        && y0 >= 0.0
                        && x0 < x1
                        && y0 < y1
                        && x1 <= m.width
                        && y1 <= m.height)
                {
                    c.fail(
                        t,
                        i,
                        "area",
                        format!("{a:?}"),
                        &format!(
                            "must be [x0, y0, x1, y1] with 0 ≤ x0 < x1 ≤ {} and 0 ≤ y0 < y1 ≤ {} (metres)",
                            m.width, m.height
                        ),
                    );
                }
            }
            if let (Some(sum), Some(n)) = (m.group_nodes(), self.nodes)
                && sum != n
            {
                c.fail(
                    "",
                    0,
                    "nodes",
                    n,
                    &format!(
                        "the mobility groups add up to {sum} nodes: give that, or leave `nodes` out"
                    ),
                );
            }
            if m.step_secs > 0.0 && self.duration_secs.is_finite() {
                let nodes = self.nodes.or(m.group_nodes()).unwrap_or(1).max(1);
                let positions = self.duration_secs / m.step_secs * nodes as f64;
                if positions > MAX_MOBILITY_POSITIONS {
                    c.fail(
                        "mobility",
                        0,
                        "step_secs",
                        m.step_secs,
                        &format!(
                            "{positions:.3e} node positions to compute; at most {MAX_MOBILITY_POSITIONS:.0e} (raise step_secs or shorten the run)"
                        ),
                    );
                }
            }
        }
        let mut last_end = 0.0f64;
        for (i, phase) in self.partition.iter().enumerate() {
            c.non_negative("partition", i, "at_secs", phase.at_secs);
            if phase.at_secs >= self.duration_secs {
                c.fail(
                    "partition",
                    i,
                    "at_secs",
                    phase.at_secs,
                    &format!(
                        "must be before the end of the run ({} s)",
                        self.duration_secs
                    ),
                );
            }
            let kinds = [
                phase.groups.is_some(),
                phase.sides.is_some(),
                phase.regions.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                c.fail_at(
                    "partition",
                    i,
                    "[[partition]] needs exactly one of `groups`, `sides` or `regions`".into(),
                );
            }
            if let Some(groups) = phase.groups {
                if groups < 2 {
                    c.fail("partition", i, "groups", groups, "must be at least 2");
                }
                if let Some(n) = self
                    .nodes
                    .or(self.mobility.as_ref().and_then(Mobility::group_nodes))
                    && groups > n
                {
                    c.fail(
                        "partition",
                        i,
                        "groups",
                        groups,
                        &format!("must be at most the number of nodes ({n})"),
                    );
                }
            }
            if let Some(sides) = &phase.sides {
                let known: Vec<&str> = self
                    .mobility
                    .as_ref()
                    .map(|m| m.groups.iter().map(|g| g.name.as_str()).collect())
                    .unwrap_or_default();
                if sides.len() < 2 {
                    c.fail(
                        "partition",
                        i,
                        "sides",
                        sides.len(),
                        "needs at least 2 sides",
                    );
                }
                let mut used = std::collections::HashSet::new();
                for name in sides.iter().flatten() {
                    if !known.contains(&name.as_str()) {
                        c.fail(
                            "partition",
                            i,
                            "sides",
                            format!("{name:?}"),
                            &format!(
                                "no such mobility group; groups: {}",
                                if known.is_empty() {
                                    "none".to_owned()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                    } else if !used.insert(name.as_str()) {
                        c.fail(
                            "partition",
                            i,
                            "sides",
                            format!("{name:?}"),
                            "is on two sides",
                        );
                    }
                }
            }
            if let Some(regions) = &phase.regions {
                match &self.mobility {
                    None => c.fail_at(
                        "partition",
                        i,
                        "`regions` needs [mobility] (trace and static contacts have no positions)"
                            .into(),
                    ),
                    Some(m) => {
                        if regions.len() < 2 {
                            c.fail(
                                "partition",
                                i,
                                "regions",
                                regions.len(),
                                "needs at least 2 regions",
                            );
                        }
                        for r @ [x0, y0, x1, y1] in regions {
                            if !(r.iter().all(|v| v.is_finite()) && x0 < x1 && y0 < y1) {
                                c.fail(
                                    "partition",
                                    i,
                                    "regions",
                                    format!("{r:?}"),
                                    &format!(
                                        "each region is [x0, y0, x1, y1] with x0 < x1, y0 < y1, in metres of the {} × {} area",
                                        m.width, m.height
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            if let Some(heal) = phase.heal_secs
                && !(heal.is_finite() && heal > phase.at_secs)
            {
                c.fail(
                    "partition",
                    i,
                    "heal_secs",
                    heal,
                    &format!("must be after at_secs ({})", phase.at_secs),
                );
            }
            if i > 0 && phase.at_secs < last_end {
                c.fail(
                    "partition",
                    i,
                    "at_secs",
                    phase.at_secs,
                    "partitions must not overlap: start after the previous one heals, in order",
                );
            }
            last_end = phase.heal_secs.unwrap_or(f64::INFINITY);
        }
        for (i, churn) in self.churn.iter().enumerate() {
            c.non_negative("churn", i, "off_secs", churn.off_secs);
            if let Some(on) = churn.on_secs
                && !(on.is_finite() && on > churn.off_secs)
            {
                c.fail(
                    "churn",
                    i,
                    "on_secs",
                    on,
                    &format!("must be after off_secs ({})", churn.off_secs),
                );
            }
            if let Some(n) = self.nodes
                && churn.node as usize >= n
            {
                c.fail(
                    "churn",
                    i,
                    "node",
                    churn.node,
                    &format!("no such node: IDs are 0..{}", n - 1),
                );
            }
        }
        if let Some(t) = &self.traffic {
            if t.messages == 0 || t.messages > MAX_MESSAGES {
                c.fail(
                    "traffic",
                    0,
                    "messages",
                    t.messages,
                    &format!("must be between 1 and {MAX_MESSAGES}"),
                );
            }
            c.non_negative("traffic", 0, "start_secs", t.start_secs);
            if !(t.end_secs.is_finite() && t.end_secs >= t.start_secs) {
                c.fail(
                    "traffic",
                    0,
                    "end_secs",
                    t.end_secs,
                    &format!("must be at least start_secs ({})", t.start_secs),
                );
            }
            if t.end_secs > self.duration_secs {
                c.fail(
                    "traffic",
                    0,
                    "end_secs",
                    t.end_secs,
                    &format!(
                        "must be within the run (duration_secs = {}): later messages would never be created",
                        self.duration_secs
                    ),
                );
            }
            let [lo, hi] = t.size_bytes;
            let max = crate::max_body_len(self.fast);
            if lo > hi || lo == 0 || hi as usize > max {
                c.fail(
                    "traffic",
                    0,
                    "size_bytes",
                    format!("[{lo}, {hi}]"),
                    &format!("must be [low, high] with 1 ≤ low ≤ high ≤ {max} (one envelope)"),
                );
            }
        }
        if let Some(b) = self.link.bandwidth_bytes_per_sec
            && !(b.is_finite() && b > 0.0)
        {
            c.fail(
                "link",
                0,
                "bandwidth_bytes_per_sec",
                b,
                "must be > 0 (leave it out for unlimited bandwidth)",
            );
        }
        c.non_negative("link", 0, "latency_secs", self.link.latency_secs);
        if self.link.latency_secs > MAX_DURATION_SECS {
            c.fail(
                "link",
                0,
                "latency_secs",
                self.link.latency_secs,
                &format!("at most {MAX_DURATION_SECS:e} s"),
            );
        }
        c.positive("link", 0, "update_secs", self.link.update_secs);
        if self.link.model == LinkModel::One && self.link.bandwidth_bytes_per_sec.is_none() {
            c.fail(
                "link",
                0,
                "model",
                "\"one\"",
                "needs bandwidth_bytes_per_sec (ONE's transfers take size ÷ speed)",
            );
        }
        if !(self.link.loss.is_finite() && (0.0..=1.0).contains(&self.link.loss)) {
            c.fail(
                "link",
                0,
                "loss",
                self.link.loss,
                "must be a probability in [0, 1]",
            );
        }
        if self.buffers.default_bytes == Some(0) {
            c.fail(
                "buffers",
                0,
                "default_bytes",
                0,
                "must be > 0 (leave it out for unlimited buffers)",
            );
        }
        for (i, o) in self.buffers.overrides.iter().enumerate() {
            if o.bytes == 0 {
                c.fail("buffers.override", i, "bytes", 0, "must be > 0");
            }
            if let Some(n) = self.nodes
                && let Some(bad) = o.nodes.iter().find(|id| **id as usize >= n)
            {
                c.fail(
                    "buffers.override",
                    i,
                    "nodes",
                    bad,
                    &format!("no such node: IDs are 0..{}", n - 1),
                );
            }
        }
        check_strategy(&mut c, "routing", &self.routing.strategy, "strategy");
        if self.routing.copies > ferry_core::engine::MAX_COPY_BUDGET {
            c.fail(
                "routing",
                0,
                "copies",
                self.routing.copies,
                &format!(
                    "at most {} (relays cut larger budgets)",
                    ferry_core::engine::MAX_COPY_BUDGET
                ),
            );
        }
        if self.routing.copies < 2 {
            c.fail(
                "routing",
                0,
                "copies",
                self.routing.copies,
                "must be at least 2 (spray-and-wait hands out half of its copies)",
            );
        }
        c.finish()?;
        if self.sweep.is_some() {
            // Every combination is checked as a scenario of its own.
            crate::sweep::expand(self)?;
        }
        Ok(())
    }

    /// The runs a sweep expands to (just `self` without a sweep), each
    /// checked; see [`crate::sweep`].
    ///
    /// # Errors
    /// [`SimError::Scenario`] for combinations that are not valid.
    pub fn expand(&self) -> Result<Vec<Scenario>, SimError> {
        crate::sweep::expand(self)
    }

    /// Builds the parameters and the event schedule; relative paths are
    /// resolved against `base`. Trace files are checked strictly here:
    /// hosts must be below `nodes`, times within the run, message bodies
    /// must fit one envelope.
    ///
    /// # Errors
    /// [`SimError`] for unreadable or malformed inputs.
    pub fn build(&self, base: &Path) -> Result<(SimParams, Vec<ScenarioEvent>), SimError> {
        self.build_with(base, true)
    }

    /// Every check [`Scenario::build`] makes (the trace files read and
    /// checked against this run's values), without generating the
    /// movement or the topology: what a sweep checks for every run before
    /// any runs.
    ///
    /// # Errors
    /// As [`Scenario::build`].
    pub fn check(&self, base: &Path) -> Result<(), SimError> {
        self.build_with(base, false).map(|_| ())
    }

    fn build_with(
        &self,
        base: &Path,
        generate: bool,
    ) -> Result<(SimParams, Vec<ScenarioEvent>), SimError> {
        self.validate()?;
        let mut events = Vec::new();
        // (file, line, host) of the largest host ID, for the error below.
        let mut hosts: Vec<(String, usize, u32)> = Vec::new();
        let mut trace_messages = 0usize;
        let mut duplicate_ups = 0u64;
        if let Some(trace) = &self.trace {
            let mut files = vec![&trace.events];
            files.extend(trace.messages.as_ref());
            let max_body = crate::max_body_len(self.fast);
            // Message IDs are unique across both files.
            let mut ids = std::collections::HashSet::new();
            for (index, file) in files.into_iter().enumerate() {
                let messages_file = index == 1;
                let path = base.join(file);
                let name = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| SimError::Io(format!("{name}: {e}")))?;
                let bad = |line: usize, reason: String| {
                    SimError::Trace(format!("{name}:{line}: {reason}"))
                };
                let duplicates = match trace.duplicate_up {
                    DuplicateUp::Error => trace::Duplicates::Refuse,
                    DuplicateUp::Ignore => trace::Duplicates::Ignore,
                };
                let parsed =
                    trace::parse_lines(&text, duplicates).map_err(|e| bad(e.line, e.reason))?;
                duplicate_ups += parsed.duplicate_ups;
                for (line, event) in parsed.events {
                    if event.time() > self.duration_secs {
                        return Err(bad(
                            line,
                            format!(
                                "time {} is after the end of the run (duration_secs = {})",
                                event.time(),
                                self.duration_secs
                            ),
                        ));
                    }
                    match event {
                        TraceEvent::Contact { .. } if messages_file => {
                            return Err(bad(
                                line,
                                "a contact line in the messages file: contacts go in `events`"
                                    .into(),
                            ));
                        }
                        TraceEvent::Contact { time, a, b, up } => {
                            hosts.push((name.clone(), line, a.max(b)));
                            events.push(ScenarioEvent::Contact { time, a, b, up });
                        }
                        TraceEvent::Message {
                            time,
                            id,
                            from,
                            to,
                            size,
                        } => {
                            if size as usize > max_body {
                                return Err(bad(
                                    line,
                                    format!(
                                        "message {id}: {size} bytes do not fit one envelope (at most {max_body})"
                                    ),
                                ));
                            }
                            if !ids.insert(id.clone()) {
                                return Err(bad(
                                    line,
                                    format!("message ID {id} is already used in the events file"),
                                ));
                            }
                            hosts.push((name.clone(), line, from.max(to)));
                            trace_messages += 1;
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
        let max_host = hosts.iter().map(|(_, _, h)| *h).max();
        let group_nodes = self.mobility.as_ref().and_then(Mobility::group_nodes);
        let nodes = match (self.nodes.or(group_nodes), max_host) {
            (Some(n), _) => n,
            (None, Some(h)) => h as usize + 1,
            (None, None) => {
                return Err(SimError::Scenario(format!(
                    "{}: `nodes` is needed: the trace names no host",
                    self.source.file
                )));
            }
        };
        if let Some((file, line, host)) = hosts.iter().find(|(_, _, h)| *h as usize >= nodes) {
            return Err(SimError::Trace(format!(
                "{file}:{line}: host {host} does not exist: nodes = {nodes} (IDs 0..{})",
                nodes - 1
            )));
        }
        if self.traffic.is_none() && trace_messages == 0 {
            return Err(SimError::Scenario(format!(
                "{}: no traffic: give [traffic], or a trace with message lines",
                self.source.file
            )));
        }
        // Checks that needed the node count from the trace.
        let known = Scenario {
            nodes: Some(nodes),
            ..self.clone()
        };
        known.validate()?;
        let mut rng = StdRng::seed_from_u64(self.seed);
        // At equal times, churn and partitions come before contacts (a node
        // comes back before its contacts do).
        let mut first = Vec::new();
        for c in &self.churn {
            first.push(ScenarioEvent::Online {
                time: c.off_secs,
                node: c.node,
                online: false,
            });
            if let Some(on) = c.on_secs {
                first.push(ScenarioEvent::Online {
                    time: on,
                    node: c.node,
                    online: true,
                });
            }
        }
        let mut region_phases = Vec::new();
        for phase in &self.partition {
            let until = phase.heal_secs.unwrap_or(f64::INFINITY);
            let sides: Option<Vec<u32>> = if let Some(groups) = phase.groups {
                let groups = groups.max(1);
                Some(
                    (0..nodes)
                        .map(|n| u32::try_from(n * groups / nodes).unwrap_or(FREE))
                        .collect(),
                )
            } else if let (Some(sides), Some(m)) = (&phase.sides, &self.mobility) {
                let mut of_node = vec![FREE; nodes];
                for g in m.resolved(nodes) {
                    let side = sides
                        .iter()
                        .position(|names| names.contains(&g.name))
                        .map_or(FREE, |s| u32::try_from(s).unwrap_or(FREE));
                    for n in of_node.iter_mut().skip(g.first).take(g.count) {
                        *n = side;
                    }
                }
                Some(of_node)
            } else {
                if let Some(regions) = &phase.regions {
                    region_phases.push(RegionPhase {
                        from: phase.at_secs,
                        until,
                        regions: regions.clone(),
                    });
                }
                None
            };
            if let Some(sides) = sides {
                first.push(ScenarioEvent::Partition {
                    time: phase.at_secs,
                    groups: Some(std::sync::Arc::new(sides)),
                });
            }
            if let Some(heal) = phase.heal_secs {
                first.push(ScenarioEvent::Partition {
                    time: heal,
                    groups: None,
                });
            }
        }
        events.splice(0..0, first);
        if let Some(topology) = self.topology.as_ref().filter(|_| generate) {
            for (a, b) in static_links(topology, nodes, &mut rng) {
                events.push(ScenarioEvent::Contact {
                    time: 0.0,
                    a,
                    b,
                    up: true,
                });
            }
        }
        if let Some(mobility) = self.mobility.as_ref().filter(|_| generate) {
            events.extend(crate::mobility::generate(
                mobility,
                nodes,
                self.duration_secs,
                &region_phases,
                &mut rng,
            ));
        }
        if let Some(traffic) = &self.traffic {
            let n =
                u32::try_from(nodes).map_err(|_| SimError::Scenario("too many nodes".into()))?;
            if n < 2 {
                return Err(SimError::Scenario(format!(
                    "{}: [traffic] needs at least two nodes",
                    self.source.file
                )));
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
            bandwidth: self.link.bandwidth_bytes_per_sec,
            latency_secs: self.link.latency_secs,
            loss: self.link.loss,
            one_model: (self.link.model == LinkModel::One).then_some(self.link.update_secs),
            buffer_bytes,
            strategy: self.routing.strategy()?,
            receipts: self.routing.receipts,
            sample_interval_secs: self.sample_interval_secs,
            fast: self.fast,
            duplicate_ups_ignored: duplicate_ups,
        };
        Ok((params, events))
    }

    /// The contacts and messages this run is built from, as a ONE trace:
    /// contacts as the trace, topology or movement model produce them,
    /// before partitions and churn (which a scenario applies on top), then
    /// message creations. Partitions by region are not in it (they depend
    /// on positions).
    ///
    /// # Errors
    /// As [`Scenario::build`].
    pub fn export_trace(&self, base: &Path) -> Result<String, SimError> {
        use std::fmt::Write as _;
        let (_, mut events) = self.build(base)?;
        events.sort_by(|a, b| a.time().total_cmp(&b.time()));
        let mut out = format!(
            "# {} (seed {}): contacts before partitions and churn, and messages\n",
            self.name, self.seed
        );
        for event in events {
            match event {
                ScenarioEvent::Contact { time, a, b, up } => {
                    let state = if up { "up" } else { "down" };
                    let _ = writeln!(out, "{} CONN {a} {b} {state}", seconds(time));
                }
                ScenarioEvent::Create {
                    time,
                    label,
                    from,
                    to,
                    size,
                } => {
                    let _ = writeln!(out, "{} C {label} {from} {to} {size}", seconds(time));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Builds and runs this scenario (one run: expand sweeps first); the
    /// report carries every parameter. `progress` receives the fraction
    /// done.
    ///
    /// # Errors
    /// As [`Scenario::build`].
    pub fn run(&self, base: &Path, progress: impl FnMut(f64)) -> Result<crate::Report, SimError> {
        let (params, events) = self.build(base)?;
        let mut report = crate::run(&self.name, &self.routing.label(), params, events, progress)?;
        report.parameters = serde_json::to_value(self).unwrap_or_default();
        report.swept = self
            .swept
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        Ok(report)
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
