//! `ferry-sim`: run a scenario and write JSON, CSV and SVG plots.
//!
//! ```text
//! ferry-sim run SCENARIO.toml [--out DIR]
//! ```

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use ferry_sim::{Report, Scenario, Series, svg_bars, svg_chart, svg_to_png};

fn usage() -> &'static str {
    "usage: ferry-sim run SCENARIO.toml [--out DIR]"
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("run"), Some(file)) = (args.first().map(String::as_str), args.get(1)) else {
        bail!(usage());
    };
    let out = match (args.get(2).map(String::as_str), args.get(3)) {
        (None, _) => PathBuf::from("sim-out"),
        (Some("--out"), Some(dir)) => PathBuf::from(dir),
        _ => bail!(usage()),
    };
    let path = Path::new(file);
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
    let scenario = Scenario::from_toml(&text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let runs = scenario.expand();
    std::fs::create_dir_all(&out)?;

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
                    let show = i == 0;
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

    let mut csv = String::from(Report::csv_header());
    csv.push('\n');
    for (i, r) in reports.iter().enumerate() {
        std::fs::write(out.join(format!("run-{i}.json")), r.to_json())?;
        csv.push_str(&r.csv_row());
        csv.push('\n');
        println!(
            "[{}] {} {}: delivered {}/{} ({:.4}), latency avg {:.1} s median {:.1} s p95 {:.1} s, overhead {:.2}, hops {:.2}",
            r.mode,
            r.scenario,
            r.strategy,
            r.delivered,
            r.created,
            r.delivery_ratio,
            r.latency_avg,
            r.latency_median,
            r.latency_p95,
            r.overhead_ratio,
            r.hopcount_avg
        );
    }
    std::fs::write(out.join("results.csv"), csv)?;
    write_plots(&out, &reports)?;
    println!(
        "wrote {} (run-N.json, results.csv, delivery, latency-cdf and comparison as SVG and PNG)",
        out.display()
    );
    Ok(())
}

fn run_one(scenario: &Scenario, base: &Path, show_progress: bool) -> Result<Report> {
    let built = Instant::now();
    let (params, events) = scenario.build(base)?;
    let contacts = events
        .iter()
        .filter(|e| matches!(e, ferry_sim::ScenarioEvent::Contact { .. }))
        .count();
    let messages = events
        .iter()
        .filter(|e| matches!(e, ferry_sim::ScenarioEvent::Create { .. }))
        .count();
    eprintln!(
        "{}: {} nodes, {contacts} contact events, {messages} messages (built in {:.1} s)",
        scenario.name,
        params.nodes,
        built.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let label = scenario.routing.label();
    let report = ferry_sim::run(&scenario.name, &label, params, events, |fraction| {
        // A progress bar on runs longer than a second.
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
        "{}: simulated in {:.1} s",
        scenario.name,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

fn label(r: &Report) -> String {
    format!("{} (seed {})", r.strategy, r.seed)
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

fn write_plots(out: &Path, reports: &[Report]) -> Result<()> {
    let labels: Vec<String> = reports.iter().map(label).collect();
    let mode = reports.first().map(|r| r.mode.as_str()).unwrap_or("");
    let delivery: Vec<Series<'_>> = reports
        .iter()
        .zip(&labels)
        .map(|(r, l)| Series {
            label: l,
            points: r
                .delivered_over_time
                .iter()
                .map(|(t, d)| (*t, *d as f64 / r.created.max(1) as f64))
                .collect(),
        })
        .collect();
    write_chart(
        out,
        "delivery",
        &svg_chart(
            &format!("Delivery ratio over time [{mode}]"),
            "time (s)",
            "delivered / created",
            &delivery,
        ),
    )?;
    let cdf: Vec<Series<'_>> = reports
        .iter()
        .zip(&labels)
        .map(|(r, l)| Series {
            label: l,
            points: r
                .latencies
                .iter()
                .enumerate()
                .map(|(i, lat)| (*lat, (i + 1) as f64 / r.created.max(1) as f64))
                .collect(),
        })
        .collect();
    write_chart(
        out,
        "latency-cdf",
        &svg_chart(
            &format!("Latency CDF [{mode}]"),
            "latency (s)",
            "fraction of created delivered",
            &cdf,
        ),
    )?;
    let comparison = [
        (
            "delivery ratio (%)",
            reports.iter().map(|r| r.delivery_ratio * 100.0).collect(),
        ),
        (
            "overhead ratio",
            reports.iter().map(|r| r.overhead_ratio).collect(),
        ),
        (
            "latency median (min)",
            reports.iter().map(|r| r.latency_median / 60.0).collect(),
        ),
    ];
    write_chart(
        out,
        "comparison",
        &svg_bars(&format!("Runs compared [{mode}]"), &labels, &comparison),
    )?;
    Ok(())
}
