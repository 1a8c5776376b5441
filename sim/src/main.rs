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
use ferry_sim::{Report, Scenario, Series, svg_bars, svg_chart, svg_to_png};

const HELP: &str = "\
ferry-sim: simulate partitioned and sparse networks with the real Ferry engine

Usage:
  ferry-sim run SCENARIO.toml [--out DIR]   run a scenario (every run of its sweep)
  ferry-sim help | --help | -h              this help
  ferry-sim --version                       the version and commit

Options of `run`:
  --out DIR   where results go (default: sim-out). Files of an earlier run
              there (run-N.json, results.csv, messages.csv, plots) are
              replaced; other files are left alone.

Outputs: run-N.json per run, results.csv (one row per run), messages.csv
(one row per message), delivery, latency-cdf and comparison plots (SVG, PNG).
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
        let ours = (name.starts_with("run-") && name.ends_with(".json"))
            || matches!(
                name.as_ref(),
                "results.csv"
                    | "messages.csv"
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

fn run(path: &Path, out: &Path) -> Result<()> {
    let scenario = Scenario::load(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let runs = scenario.expand();
    // Every run is checked (and the traces, which sweeps do not change,
    // read once) before anything runs or any file is touched.
    for run in &runs {
        run.validate()?;
    }
    if let Some(first) = runs.first() {
        first.build(base)?;
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

    let mut csv = Report::csv_header();
    csv.push('\n');
    let mut messages = String::from(Report::message_header());
    messages.push('\n');
    for (i, r) in reports.iter().enumerate() {
        std::fs::write(out.join(format!("run-{i}.json")), r.to_json())?;
        csv.push_str(&r.csv_row());
        csv.push('\n');
        messages.push_str(&r.message_rows());
        let refused = if r.refused == 0 {
            String::new()
        } else {
            format!(", refused {} {:?}", r.refused, r.refused_reasons)
        };
        println!(
            "[{}] {} {} seed {}: delivered {}/{} ({:.4}), expired {}, in flight {}{refused}, latency avg {:.1} s median {:.1} s p95 {:.1} s, overhead {:.2}, hops {:.2}, bytes {} data + {} receipts + {} control",
            r.mode,
            r.scenario,
            r.strategy,
            r.seed,
            r.delivered,
            r.created,
            r.delivery_ratio,
            r.expired,
            r.in_flight,
            r.latency_avg,
            r.latency_median,
            r.latency_p95,
            r.overhead_ratio,
            r.hopcount_avg,
            r.bytes_data,
            r.bytes_receipts,
            r.bytes_control
        );
    }
    std::fs::write(out.join("results.csv"), csv)?;
    std::fs::write(out.join("messages.csv"), messages)?;
    write_plots(out, &reports)?;
    println!(
        "wrote {} (run-N.json, results.csv, messages.csv, delivery, latency-cdf and comparison as SVG and PNG)",
        out.display()
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
