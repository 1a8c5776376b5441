//! `ferry-sim run` end to end: JSON, CSV and plots (SVG and PNG) for every
//! run of a sweep, labelled with the mode.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::process::Command;

#[test]
fn run_writes_json_csv_and_plots_for_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
name = "cli-check"
seed = 4
duration_secs = 3600
ttl_secs = 3600
nodes = 30
sample_interval_secs = 300
[mobility]
width = 500
height = 500
range = 60
step_secs = 5.0
[traffic]
messages = 20
end_secs = 1800
[routing]
copies = 4
[sweep]
strategy = ["epidemic", "spray-and-wait"]
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry-sim"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.matches("[full-crypto] cli-check").count(),
        2,
        "{stdout}"
    );

    for i in 0..2 {
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("run-{i}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(json["mode"], "full-crypto");
        assert_eq!(json["created"], 20);
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.lines().nth(2).unwrap().contains("spray-and-wait(4)"));
    for plot in ["delivery", "latency-cdf", "comparison"] {
        let svg = std::fs::read_to_string(out.join(format!("{plot}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("full-crypto"));
        let png = std::fs::read(out.join(format!("{plot}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 2000,
            "{plot}.png"
        );
    }

    // A scenario error is reported with the file, not a panic.
    std::fs::write(&scenario, "name = 1").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_ferry-sim"))
        .args(["run", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("s.toml") && err.contains("name"), "{err}");
}
