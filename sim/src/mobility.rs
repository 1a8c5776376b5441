//! Movement models producing contacts, with node groups as the ONE
//! simulator has them: each group has its own count, model, area, speeds,
//! pauses and radio range. Distances are metres, times seconds, speeds m/s.
//!
//! Positions are sampled every `step_secs`; two nodes are in contact while
//! their distance is at most the smaller of their two radio ranges (ONE's
//! rule for two interfaces). Neighbour search uses a grid of cells as large
//! as the largest range, so a step costs O(nodes), not O(nodes²).

use std::collections::{BTreeSet, HashMap};

use rand::{RngExt as _, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::world::ScenarioEvent;

/// The movement area, sampling and defaults for every group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mobility {
    /// Width of the whole area (m).
    pub width: f64,
    /// Height of the whole area (m).
    pub height: f64,
    /// Radio range (m), for groups that do not set their own.
    pub range: f64,
    /// Speed range (m/s), for groups that do not set their own.
    #[serde(default = "default_speed")]
    pub speed: [f64; 2],
    /// Pause range at each waypoint (s), for groups that do not set their
    /// own.
    #[serde(default = "default_pause")]
    pub pause: [f64; 2],
    /// Position sampling step (s).
    #[serde(default = "default_step")]
    pub step_secs: f64,
    /// Node groups, in node-ID order (the first `count` IDs are the first
    /// group's, and so on). None: every node walks the whole area.
    #[serde(default, rename = "group")]
    pub groups: Vec<NodeGroup>,
}

/// A group of nodes that move alike.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// Name, used by partitions (`sides`) and sweeps.
    pub name: String,
    /// Number of nodes.
    pub count: usize,
    /// Movement model.
    #[serde(default)]
    pub model: Model,
    /// The rectangle the group moves in (stationary nodes: are placed in),
    /// as `[x0, y0, x1, y1]` in metres; default the whole area.
    pub area: Option<[f64; 4]>,
    /// Speed range (m/s).
    pub speed: Option<[f64; 2]>,
    /// Pause range (s).
    pub pause: Option<[f64; 2]>,
    /// Radio range (m).
    pub range: Option<f64>,
}

/// A movement model.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Random waypoint: walk to a uniform random point of the area at a
    /// uniform random speed, pause a uniform random time, repeat.
    #[default]
    RandomWaypoint,
    /// Placed uniformly at random in the area, never moves.
    Stationary,
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

/// A group as the generator uses it: defaults filled in.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) name: String,
    pub(crate) first: usize,
    pub(crate) count: usize,
    model: Model,
    area: [f64; 4],
    speed: [f64; 2],
    pause: [f64; 2],
    range: f64,
}

impl Mobility {
    /// The groups with defaults filled in, for `nodes` nodes in all (one
    /// group named `all` when none is given).
    pub(crate) fn resolved(&self, nodes: usize) -> Vec<Resolved> {
        let whole = [0.0, 0.0, self.width, self.height];
        if self.groups.is_empty() {
            return vec![Resolved {
                name: "all".into(),
                first: 0,
                count: nodes,
                model: Model::RandomWaypoint,
                area: whole,
                speed: self.speed,
                pause: self.pause,
                range: self.range,
            }];
        }
        let mut first = 0;
        self.groups
            .iter()
            .map(|g| {
                let r = Resolved {
                    name: g.name.clone(),
                    first,
                    count: g.count,
                    model: g.model,
                    area: g.area.unwrap_or(whole),
                    speed: g.speed.unwrap_or(self.speed),
                    pause: g.pause.unwrap_or(self.pause),
                    range: g.range.unwrap_or(self.range),
                };
                first += g.count;
                r
            })
            .collect()
    }

    /// Nodes the groups add up to (`None` without groups).
    pub fn group_nodes(&self) -> Option<usize> {
        (!self.groups.is_empty()).then(|| {
            self.groups
                .iter()
                .fold(0usize, |sum, g| sum.saturating_add(g.count))
        })
    }
}

/// A partition by position: while it lasts, nodes in different regions
/// cannot be in contact; nodes outside every region reach everyone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegionPhase {
    pub(crate) from: f64,
    pub(crate) until: f64,
    pub(crate) regions: Vec<[f64; 4]>,
}

fn inside([x0, y0, x1, y1]: [f64; 4], x: f64, y: f64) -> bool {
    x >= x0.min(x1) && x <= x0.max(x1) && y >= y0.min(y1) && y <= y0.max(y1)
}

struct Walker {
    x: f64,
    y: f64,
    target: (f64, f64),
    speed: f64,
    pause_until: f64,
    group: usize,
}

/// The side "reaches everyone" (see [`ScenarioEvent::Side`]).
pub const FREE: u32 = u32::MAX;

/// Contacts (and region sides, see [`RegionPhase`]) of a run of
/// `duration` seconds.
pub(crate) fn generate(
    m: &Mobility,
    nodes: usize,
    duration: f64,
    phases: &[RegionPhase],
    rng: &mut StdRng,
) -> Vec<ScenarioEvent> {
    let groups = m.resolved(nodes);
    let pick = |rng: &mut StdRng, [lo, hi]: [f64; 2]| {
        if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        }
    };
    let point = |rng: &mut StdRng, [x0, y0, x1, y1]: [f64; 4]| {
        (
            pick(rng, [x0.min(x1), x0.max(x1)]),
            pick(rng, [y0.min(y1), y0.max(y1)]),
        )
    };
    let mut walkers: Vec<Walker> = Vec::with_capacity(nodes);
    for (gi, g) in groups.iter().enumerate() {
        for _ in 0..g.count {
            let (x, y) = point(rng, g.area);
            let target = point(rng, g.area);
            walkers.push(Walker {
                x,
                y,
                target,
                speed: pick(rng, g.speed).max(0.01),
                pause_until: 0.0,
                group: gi,
            });
        }
    }
    let range_of = |w: &Walker| groups.get(w.group).map_or(0.0, |g| g.range);
    let max_range = groups.iter().map(|g| g.range).fold(0.0f64, f64::max);
    let mut events = Vec::new();
    let mut up: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut sides: Vec<u32> = vec![FREE; walkers.len()];
    let step = m.step_secs.max(0.01);
    let cell = max_range.max(1e-9);
    let mut t = 0.0;
    let mut step_index = 0u64;
    while t <= duration {
        // Sides of a region partition in force at t.
        let phase = phases.iter().find(|p| t >= p.from && t < p.until);
        for (i, w) in walkers.iter().enumerate() {
            let side = phase.map_or(FREE, |p| {
                p.regions
                    .iter()
                    .position(|r| inside(*r, w.x, w.y))
                    .map_or(FREE, |s| s as u32)
            });
            if let Some(old) = sides.get_mut(i)
                && *old != side
            {
                *old = side;
                events.push(ScenarioEvent::Side {
                    time: t,
                    node: i as u32,
                    side,
                });
            }
        }
        let mut grid: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        for (i, p) in walkers.iter().enumerate() {
            grid.entry(((p.x / cell) as i64, (p.y / cell) as i64))
                .or_default()
                .push(i as u32);
        }
        let mut now_up = BTreeSet::new();
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
                            && (p.x - q.x).hypot(p.y - q.y) <= range_of(p).min(range_of(q))
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
            let Some(g) = groups.get(p.group) else {
                continue;
            };
            if g.model == Model::Stationary || t < p.pause_until {
                continue;
            }
            let (dx, dy) = (p.target.0 - p.x, p.target.1 - p.y);
            let dist = dx.hypot(dy);
            let travel = p.speed * step;
            if dist <= travel {
                p.x = p.target.0;
                p.y = p.target.1;
                p.pause_until = t + pick(rng, g.pause);
                p.target = point(rng, g.area);
                p.speed = pick(rng, g.speed).max(0.01);
            } else {
                p.x += dx / dist * travel;
                p.y += dy / dist * travel;
            }
        }
        // Multiplying, not adding, keeps sample times exact over long runs.
        step_index += 1;
        t = step_index as f64 * step;
    }
    events
}
