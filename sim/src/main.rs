//! `ferry-sim`: run a scenario and write JSON, CSV and SVG/PNG plots.
//!
//! ```text
//! ferry-sim run SCENARIO.toml [--out DIR]
//! ```

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    process::ExitCode,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use ferry_sim::{
    Chart, Report, Scenario, Series,
    aggregate::{Aggregate, aggregate, summary_csv},
    svg, svg_bars, svg_to_png,
};

const HELP: &str = "\
ferry-sim: simulate partitioned and sparse networks with the real Ferry engine

Usage:
  ferry-sim run SCENARIO.toml [--out DIR]   run a scenario (every run of its sweep)
  ferry-sim export SCENARIO.toml [--out FILE]
                                            write the contacts and messages it
                                            generates as a ONE trace (stdout)
  ferry-sim help | --help | -h              this help
  ferry-sim --version                       the version and commit

Options of `run`:
  --out DIR   where results go (default: sim-out). Files of an earlier run
              there (run-N.json, the CSV and JSON files, plots) are
              removed first; other files are left alone.

Outputs: run-N.json per run, results.csv (one row per run), messages.csv
(one row per message), summary.csv and summary.json (mean and 95% CI over
seeds), delivery, latency-cdf and comparison plots and, when a number is
swept, sweep-* plots against it (SVG and PNG).
The scenario format, every key, unit and default, and every metric's
definition: docs/simulator.md.
";

fn main() -> ExitCode {
    match cli(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A user's mistake is a message, never a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn cli(args: Vec<String>) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => bail!("no command given\n\n{HELP}"),
        ["help" | "--help" | "-h", ..] | ["run", "--help" | "-h", ..] => {
            print!("{HELP}");
            Ok(())
        }
        ["--version" | "-V"] => {
            println!("ferry-sim {} ({})", ferry_sim::VERSION, ferry_sim::COMMIT);
            Ok(())
        }
        ["run", file] => run(Path::new(file), Path::new("sim-out")),
        ["export", file] => export(Path::new(file), None),
        ["export", file, "--out", target] => export(Path::new(file), Some(Path::new(target))),
        ["run", file, "--out", dir] | ["run", "--out", dir, file] => {
            run(Path::new(file), Path::new(dir))
        }
        ["run"] => bail!("`run` needs a scenario file\n\n{HELP}"),
        [other, ..] => bail!("unknown command or arguments: {other:?}\n\n{HELP}"),
    }
}

/// Outputs of an earlier run that a new one replaces.
fn clear_previous(out: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let numbered = |prefix: &str, suffix: &str| {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        };
        let ours = numbered("run-", ".json")
            || numbered("buffers-", ".csv")
            || numbered("contact-times-", ".txt")
            || numbered("inter-contact-times-", ".txt")
            || (name.starts_with("sweep-") && (name.ends_with(".svg") || name.ends_with(".png")))
            || matches!(
                name.as_ref(),
                "results.csv"
                    | "messages.csv"
                    | "summary.csv"
                    | "summary.json"
                    | "delivery.svg"
                    | "delivery.png"
                    | "latency-cdf.svg"
                    | "latency-cdf.png"
                    | "comparison.svg"
                    | "comparison.png"
            );
        if ours {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Writes the first run's contacts and messages as a ONE trace.
fn export(path: &Path, target: Option<&Path>) -> Result<()> {
    let scenario = Scenario::load(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let first = scenario
        .expand()?
        .into_iter()
        .next()
        .context("the sweep has no run")?;
    let trace = first.export_trace(base)?;
    match target {
        Some(file) => {
            std::fs::write(file, trace).with_context(|| format!("writing {}", file.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(trace.as_bytes())?;
            Ok(())
        }
    }
}

fn run(path: &Path, out: &Path) -> Result<()> {
    let scenario = Scenario::load(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Every run is checked, its traces against its own values, before
    // anything runs or any file is touched.
    let runs = scenario.expand()?;
    for run in &runs {
        run.check(base)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    clear_previous(out)?;

    // Runs in parallel across the machine's cores; results in sweep order.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut reports: Vec<Option<Report>> = vec![None; runs.len()];
    for (chunk_index, chunk) in runs.chunks(threads).enumerate() {
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, run)| {
                    let show = i == 0 && std::io::stderr().is_terminal();
                    scope.spawn(move || run_one(run, base, show))
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        for (i, result) in results.into_iter().enumerate() {
            let report = match result {
                Ok(r) => r?,
                Err(_) => bail!("a simulation thread panicked"),
            };
            if let Some(slot) = reports.get_mut(chunk_index * threads + i) {
                *slot = Some(report);
            }
        }
    }
    let reports: Vec<Report> = reports.into_iter().flatten().collect();
    let swept: Vec<String> = reports
        .first()
        .map(|r| r.swept.keys().cloned().collect())
        .unwrap_or_default();

    let mut csv = Report::csv_header(&swept);
    csv.push('\n');
    let mut messages = Report::message_header(&swept);
    messages.push('\n');
    for (i, r) in reports.iter().enumerate() {
        std::fs::write(out.join(format!("run-{i}.json")), r.to_json())?;
        if r.node_buffers_recorded {
            std::fs::write(out.join(format!("buffers-{i}.csv")), r.node_buffer_rows())?;
        } else {
            println!(
                "run {i}: per-node buffer samples not kept ({} nodes × {} samples is over 20 million); mean and max are in run-{i}.json",
                r.nodes,
                r.buffer.len()
            );
        }
        std::fs::write(
            out.join(format!("contact-times-{i}.txt")),
            Report::one_histogram(&r.contact_times),
        )?;
        std::fs::write(
            out.join(format!("inter-contact-times-{i}.txt")),
            Report::one_histogram(&r.inter_contact_times),
        )?;
        csv.push_str(&r.csv_row(&swept));
        csv.push('\n');
        messages.push_str(&r.message_rows(&swept));
        let refused = if r.refused == 0 {
            String::new()
        } else {
            format!(", refused {} {:?}", r.refused, r.refused_reasons)
        };
        println!(
            "[{}] {} {}: delivered {}/{} ({:.4}), expired {}, in flight {}{refused}, latency avg {} s median {} s p95 {} s, overhead {}, hops {}, bytes {} data + {} receipts + {} control",
            r.mode,
            r.scenario,
            label(r),
            r.delivered,
            r.created,
            r.delivery_ratio,
            r.expired,
            r.in_flight,
            shown(r.latency_avg, 1),
            shown(r.latency_median, 1),
            shown(r.latency_p95, 1),
            shown(r.overhead_ratio, 2),
            shown(r.hopcount_avg, 2),
            r.bytes_data,
            r.bytes_receipts,
            r.bytes_control
        );
    }
    std::fs::write(out.join("results.csv"), csv)?;
    std::fs::write(out.join("messages.csv"), messages)?;
    let aggregates = aggregate(&reports);
    std::fs::write(out.join("summary.csv"), summary_csv(&aggregates))?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&aggregates)?,
    )?;
    if aggregates.len() < reports.len() {
        for a in &aggregates {
            let d = a.metrics.get("delivery_ratio");
            println!(
                "[{}] {} over {} seeds: delivery ratio {:.4} ± {:.4} (95% CI)",
                a.mode,
                config_label(a),
                a.runs,
                d.map_or(0.0, |s| s.mean),
                d.map_or(0.0, |s| s.ci95)
            );
        }
    }
    let plots = write_plots(out, &reports, &aggregates)?;
    println!(
        "wrote {} (run-N.json, results.csv, messages.csv, summary.csv, summary.json; plots: {})",
        out.display(),
        plots.join(", ")
    );
    Ok(())
}

fn run_one(scenario: &Scenario, base: &Path, show_progress: bool) -> Result<Report> {
    let started = Instant::now();
    let label = scenario.routing.label();
    let report = scenario.run(base, |fraction| {
        // A progress bar on runs longer than a second, on a terminal.
        if show_progress && started.elapsed().as_secs_f64() > 1.0 {
            let filled = (fraction * 30.0) as usize;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r[{}{}] {:>3.0}% {}",
                "#".repeat(filled),
                ".".repeat(30usize.saturating_sub(filled)),
                fraction * 100.0,
                label
            );
            if fraction >= 1.0 {
                let _ = writeln!(err);
            }
        }
    })?;
    eprintln!(
        "{} {} seed {}: {} nodes, {} messages, simulated in {:.1} s",
        scenario.name,
        label,
        scenario.seed,
        report.nodes,
        report.created,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// A metric for the console: `-` when undefined (no deliveries).
fn shown(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// A run's legend label: strategy, swept values, seed.
fn label(r: &Report) -> String {
    let mut parts = vec![r.strategy.clone()];
    for (k, v) in &r.swept {
        if k != "seed" && k != "strategy" && k != "routing.strategy" {
            parts.push(format!("{}={}", short_key(k), plain(v)));
        }
    }
    parts.push(format!("seed {}", r.seed));
    parts.join(", ")
}

/// What identifies a run's configuration (all but its seed), in the order
/// [`aggregate`] groups by.
fn config_key(r: &Report) -> String {
    let mut rest = r.swept.clone();
    rest.remove("seed");
    serde_json::json!([r.scenario, r.mode, r.strategy, rest]).to_string()
}

/// A configuration's legend label: strategy and swept values.
fn config_label(a: &Aggregate) -> String {
    let mut parts = vec![a.strategy.clone()];
    for (k, v) in &a.swept {
        if k != "strategy" && k != "routing.strategy" {
            parts.push(format!("{}={}", short_key(k), plain(v)));
        }
    }
    parts.join(", ")
}

/// A swept key as a legend shows it: `mobility.group.mules.count` is
/// `mules.count`, `routing.copies` is `copies`.
fn short_key(k: &str) -> &str {
    for prefix in [
        "mobility.group.",
        "routing.",
        "link.",
        "buffers.",
        "traffic.",
    ] {
        if let Some(rest) = k.strip_prefix(prefix) {
            return rest;
        }
    }
    k
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes `NAME.svg` and `NAME.png`.
fn write_chart(out: &Path, name: &str, svg: &str) -> Result<()> {
    std::fs::write(out.join(format!("{name}.svg")), svg)?;
    let png = svg_to_png(svg)
        .map_err(anyhow::Error::msg)
        .context("rendering PNG")?;
    std::fs::write(out.join(format!("{name}.png")), png)?;
    Ok(())
}

/// (time, fraction delivered) points of one run.
type Curve = Vec<(f64, f64)>;

/// Partition starts and heals of a run, as chart markers.
fn partition_markers(r: &Report) -> Vec<(f64, String)> {
    let mut markers = Vec::new();
    let phases = r
        .parameters
        .get("partition")
        .and_then(serde_json::Value::as_array);
    for p in phases.into_iter().flatten() {
        if let Some(at) = p.get("at_secs").and_then(serde_json::Value::as_f64) {
            markers.push((at, "partition".to_owned()));
        }
        if let Some(heal) = p.get("heal_secs").and_then(serde_json::Value::as_f64) {
            markers.push((heal, "heal".to_owned()));
        }
    }
    markers
}

/// Writes the plots; returns their names.
fn write_plots(out: &Path, reports: &[Report], aggregates: &[Aggregate]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mode = reports.first().map(|r| r.mode.as_str()).unwrap_or("");
    let markers = reports.first().map(partition_markers).unwrap_or_default();
    // One line per configuration: the mean over its seeds.
    let mut curves: Vec<(String, Vec<Curve>)> = Vec::new();
    for r in reports {
        let key = config_key(r);
        let curve: Vec<(f64, f64)> = r
            .delivered_over_time
            .iter()
            .map(|(t, d)| (*t, *d as f64 / r.created.max(1) as f64))
            .collect();
        match curves.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(curve),
            None => curves.push((key, vec![curve])),
        }
    }
    let delivery = Chart {
        title: format!("Delivery ratio over time, mean over seeds [{mode}]"),
        x_label: "time (s)".into(),
        y_label: "delivered ÷ created".into(),
        series: curves
            .iter()
            .zip(aggregates)
            .map(|((_, runs), a)| Series {
                label: config_label(a),
                points: runs
                    .first()
                    .map(|first| {
                        first
                            .iter()
                            .enumerate()
                            .map(|(i, (t, _))| {
                                let ys: Vec<f64> =
                                    runs.iter().filter_map(|c| c.get(i).map(|p| p.1)).collect();
                                (*t, ys.iter().sum::<f64>() / ys.len().max(1) as f64)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                errors: Vec::new(),
            })
            .collect(),
        y_range: Some((0.0, 1.0)),
        markers,
        ..Chart::default()
    };
    write_chart(out, "delivery", &svg(&delivery))?;
    names.push("delivery".to_owned());
    // One CDF per configuration, its seeds' messages pooled.
    let mut pooled: Vec<(String, Vec<f64>, u64)> = Vec::new();
    for (r, key) in reports.iter().zip(reports.iter().map(config_key)) {
        match pooled.iter_mut().find(|(k, ..)| *k == key) {
            Some((_, latencies, created)) => {
                latencies.extend(&r.latencies);
                *created += r.created;
            }
            None => pooled.push((key, r.latencies.clone(), r.created)),
        }
    }
    let cdf = Chart {
        title: format!("Latency CDF, seeds pooled [{mode}]"),
        x_label: "latency (s, log scale)".into(),
        y_label: "fraction of created messages delivered".into(),
        series: pooled
            .iter_mut()
            .zip(aggregates)
            .map(|((_, latencies, created), a)| {
                latencies.sort_by(f64::total_cmp);
                Series {
                    label: config_label(a),
                    points: latencies
                        .iter()
                        .enumerate()
                        .map(|(i, lat)| (*lat, (i + 1) as f64 / (*created).max(1) as f64))
                        .collect(),
                    errors: Vec::new(),
                }
            })
            .collect(),
        y_range: Some((0.0, 1.0)),
        x_log: true,
        ..Chart::default()
    };
    write_chart(out, "latency-cdf", &svg(&cdf))?;
    names.push("latency-cdf".to_owned());
    let categories: Vec<String> = aggregates.iter().map(config_label).collect();
    let metric = |name: &str, scale: f64| -> (Vec<f64>, Vec<f64>) {
        aggregates
            .iter()
            .map(|a| {
                a.metrics
                    .get(name)
                    .map_or((0.0, 0.0), |s| (s.mean * scale, s.ci95 * scale))
            })
            .unzip()
    };
    let (ratio, ratio_ci) = metric("delivery_ratio", 100.0);
    let (overhead, overhead_ci) = metric("overhead_ratio", 1.0);
    let (latency, latency_ci) = metric("latency_median", 1.0 / 60.0);
    write_chart(
        out,
        "comparison",
        &svg_bars(
            &format!("Configurations compared, mean ± 95% CI over seeds [{mode}]"),
            &categories,
            &[
                ("delivery ratio (%)", ratio),
                ("overhead ratio", overhead),
                ("latency median (min)", latency),
            ],
            &[ratio_ci, overhead_ci, latency_ci],
        ),
    )?;
    names.push("comparison".to_owned());
    // Against a swept number (the first numeric key but the seed): one
    // line per value of the other keys, mean ± 95% CI over seeds.
    let x_key = aggregates.first().and_then(|a| {
        a.swept
            .iter()
            .find(|(k, v)| *k != "seed" && v.is_number())
            .map(|(k, _)| k.clone())
    });
    if let Some(x_key) = x_key {
        for (metric_name, y_label, fixed) in [
            ("delivery_ratio", "delivery ratio", Some((0.0, 1.0))),
            ("latency_median", "median latency (s)", None),
            ("overhead_ratio", "overhead ratio", None),
            ("bytes_sent", "bytes on links", None),
        ] {
            let mut lines: Vec<Series> = Vec::new();
            for a in aggregates {
                let Some(x) = a.swept.get(&x_key).and_then(serde_json::Value::as_f64) else {
                    continue;
                };
                let mut rest = a.clone();
                rest.swept.remove(&x_key);
                let line_label = config_label(&rest);
                let stat = a.metrics.get(metric_name).copied();
                let (y, e) = stat.map_or((0.0, 0.0), |s| (s.mean, s.ci95));
                match lines.iter_mut().find(|l| l.label == line_label) {
                    Some(line) => {
                        line.points.push((x, y));
                        line.errors.push(e);
                    }
                    None => lines.push(Series {
                        label: line_label,
                        points: vec![(x, y)],
                        errors: vec![e],
                    }),
                }
            }
            for line in &mut lines {
                let mut both: Vec<((f64, f64), f64)> = line
                    .points
                    .iter()
                    .copied()
                    .zip(line.errors.iter().copied())
                    .collect();
                both.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
                (line.points, line.errors) = both.into_iter().unzip();
            }
            let name = format!("sweep-{metric_name}");
            let chart = Chart {
                title: format!("{y_label} against {x_key}, mean ± 95% CI [{mode}]"),
                x_label: x_key.clone(),
                y_label: y_label.into(),
                series: lines,
                y_range: fixed,
                dots: true,
                ..Chart::default()
            };
            write_chart(out, &name, &svg(&chart))?;
            names.push(name);
        }
    }
    Ok(names)
}
