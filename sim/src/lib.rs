//! Ferry's network simulator: many real engines on a virtual clock.
//!
//! A discrete-event core ([`run`]) drives N instances of the real
//! store-and-forward engine (`ferry_core::engine`, never a
//! re-implementation) with in-memory stores, over links with bandwidth,
//! latency and loss. A contact is a period during which a link exists;
//! transfers take size ÷ bandwidth and are cut when the contact ends.
//! Connectivity comes from ONE-format contact traces ([`trace`]) or from
//! static topologies with partition phases; traffic from trace message lines
//! or a generator ([`scenario`]).
//!
//! Results ([`Report`]) follow the ONE simulator's MessageStatsReport:
//! delivery ratio, latency (avg, median, p95), overhead ratio, hop counts,
//! plus buffer occupancy and bytes on links, as JSON, CSV, SVG and PNG.
//!
//! Determinism: every random choice of the simulator and of the engines comes
//! from the scenario seed, and events at equal times run in a fixed order.
//! One source of randomness is outside our control: vodozemac (Olm) draws
//! its session keys from the operating system, so ciphertexts and content
//! IDs differ between runs. Envelope sizes do not (padding buckets), so with
//! unlimited bandwidth every result is identical across runs; with finite
//! bandwidth, reconciliation frames (whose size depends on the IDs' values)
//! can shift transfer times by microseconds. See `docs/simulator.md`.

pub mod aggregate;
mod check;
pub mod metrics;
pub mod mobility;
pub mod plot;
pub mod scenario;
pub mod sweep;
pub mod trace;
mod world;

use thiserror::Error;

pub use metrics::{MessageRecord, Report};
pub use plot::{Chart, Series, svg, svg_bars, svg_to_png};
pub use scenario::Scenario;
pub use world::{ScenarioEvent, SimParams, max_body_len};

/// The simulator's version, written into every output.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the simulator was built from (`unknown` outside a git
/// checkout), written into every output.
pub const COMMIT: &str = env!("FERRY_SIM_COMMIT");

/// Simulator failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scenario is invalid (the message names the file and line).
    #[error("{0}")]
    Scenario(String),
    /// A trace file is malformed (the message names the file and line).
    #[error("{0}")]
    Trace(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// The label printed in every output for full-crypto runs.
pub const MODE_FULL: &str = "full-crypto";
/// The label printed in every output for fast runs.
pub const MODE_FAST: &str = "FAST MODE (no session crypto)";

/// Runs one simulation. `progress` receives the fraction done (0..=1).
///
/// # Errors
/// [`SimError`] if the engines cannot be set up.
pub fn run(
    name: &str,
    strategy_label: &str,
    params: SimParams,
    events: Vec<ScenarioEvent>,
    progress: impl FnMut(f64),
) -> Result<Report, SimError> {
    let (seed, nodes) = (params.seed, params.nodes);
    let mode = if params.fast { MODE_FAST } else { MODE_FULL };
    let mut world = world::World::new(params, events)?;
    world.run(progress);
    Ok(world
        .metrics
        .report(name, mode, seed, nodes, strategy_label))
}
