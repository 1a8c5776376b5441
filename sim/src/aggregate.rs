//! Aggregation across seeds: runs that differ only by their seed are one
//! configuration; each metric gets its mean, a 95% confidence interval of
//! the mean (Student's t, n − 1 degrees of freedom), min and max.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::Report;

/// The metrics aggregated (fields of [`Report`]).
pub const METRICS: &[&str] = &[
    "delivery_ratio",
    "latency_avg",
    "latency_median",
    "latency_p95",
    "overhead_ratio",
    "hopcount_avg",
    "delivered",
    "expired",
    "in_flight",
    "refused",
    "relayed",
    "refused_copies",
    "aborted",
    "dropped",
    "receipts",
    "receipt_latency_median",
    "bytes_data",
    "bytes_receipts",
    "bytes_control",
    "bytes_sent",
];

/// One metric over the seeds of a configuration.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stat {
    /// Runs in which the metric is defined (latency, hops and overhead
    /// are not in a run that delivered nothing).
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Half-width of the 95% confidence interval of the mean (0 for a
    /// single run).
    pub ci95: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// A configuration: every run of a sweep with the same values but the
/// seed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Aggregate {
    /// Scenario name.
    pub scenario: String,
    /// Mode label.
    pub mode: String,
    /// Routing strategy.
    pub strategy: String,
    /// The swept values, the seed excepted.
    pub swept: BTreeMap<String, serde_json::Value>,
    /// Runs (seeds) aggregated.
    pub runs: usize,
    /// Their seeds.
    pub seeds: Vec<u64>,
    /// The simulator's version.
    pub version: String,
    /// Its commit.
    pub commit: String,
    /// Each metric of [`METRICS`].
    pub metrics: BTreeMap<String, Stat>,
}

/// Two-sided 95% critical value of Student's t with `df` degrees of
/// freedom.
fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => 0.0,
        1..=30 => TABLE.get(df - 1).copied().unwrap_or(1.96),
        // Cornish–Fisher expansion around the normal quantile: within
        // 0.001 of the exact value from 30 degrees of freedom on.
        _ => {
            let z: f64 = 1.959_964;
            let n = df as f64;
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// Mean, 95% CI half-width, min and max of `values`.
pub fn stat(values: &[f64]) -> Stat {
    let n = values.len();
    if n == 0 {
        return Stat {
            n: 0,
            mean: 0.0,
            ci95: 0.0,
            min: 0.0,
            max: 0.0,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let ci95 = if n > 1 {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t95(n - 1) * (var / n as f64).sqrt()
    } else {
        0.0
    };
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    Stat {
        n,
        mean: round(mean),
        ci95: round(ci95),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// The configurations of `reports`, in order of first appearance.
pub fn aggregate(reports: &[Report]) -> Vec<Aggregate> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        let mut swept = r.swept.clone();
        swept.remove("seed");
        let key = serde_json::json!([r.scenario, r.mode, r.strategy, swept]).to_string();
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .iter()
        .filter_map(|key| groups.get(key))
        .filter_map(|runs| {
            let first = runs.first()?;
            let mut swept = first.swept.clone();
            swept.remove("seed");
            let values: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect();
            let metrics = METRICS
                .iter()
                .map(|m| {
                    let v: Vec<f64> = values
                        .iter()
                        .filter_map(|r| r.get(*m).and_then(serde_json::Value::as_f64))
                        .collect();
                    ((*m).to_owned(), stat(&v))
                })
                .collect();
            Some(Aggregate {
                scenario: first.scenario.clone(),
                mode: first.mode.clone(),
                strategy: first.strategy.clone(),
                swept,
                runs: runs.len(),
                seeds: runs.iter().map(|r| r.seed).collect(),
                version: first.version.clone(),
                commit: first.commit.clone(),
                metrics,
            })
        })
        .collect()
}

fn field(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.contains([',', '"', '\n', '\r']) => {
            format!("\"{}\"", s.replace('"', "\"\""))
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `summary.csv`: one row per configuration; for each metric its mean and
/// 95% CI half-width.
pub fn summary_csv(aggregates: &[Aggregate]) -> String {
    let keys: Vec<String> = aggregates
        .first()
        .map(|a| a.swept.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = String::from("scenario,mode,strategy");
    for k in &keys {
        let _ = write!(out, ",{}", field(&k.clone().into()));
    }
    out.push_str(",runs,version,commit");
    for m in METRICS {
        let _ = write!(out, ",{m}_mean,{m}_ci95");
    }
    out.push('\n');
    for a in aggregates {
        let _ = write!(
            out,
            "{},{},{}",
            field(&a.scenario.clone().into()),
            field(&a.mode.clone().into()),
            field(&a.strategy.clone().into())
        );
        for k in &keys {
            let _ = write!(out, ",{}", a.swept.get(k).map(field).unwrap_or_default());
        }
        let _ = write!(out, ",{},{},{}", a.runs, a.version, a.commit);
        for m in METRICS {
            let s = a.metrics.get(*m).copied().unwrap_or(stat(&[]));
            let _ = write!(out, ",{},{}", s.mean, s.ci95);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::stat;

    #[test]
    fn the_interval_is_students_t_on_the_mean() {
        // Hand-computed: mean 2, sample sd 1, n 3: t(2) = 4.303, half-width
        // 4.303 × 1 ÷ √3 = 2.4843.
        let s = stat(&[1.0, 2.0, 3.0]);
        assert_eq!((s.mean, s.ci95, s.min, s.max), (2.0, 2.4843, 1.0, 3.0));
        assert_eq!(stat(&[5.0]).ci95, 0.0);
    }
}
