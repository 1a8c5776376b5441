//! Outputs a paper uses: contact and inter-contact times as ONE reports
//! them, generated contacts exported as a ONE trace that replays to the
//! same result, sweeps over any key with the values in every row, and
//! aggregation over seeds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::process::Command;

use ferry_sim::{Report, Scenario};

fn run(toml: &str, dir: &std::path::Path) -> Report {
    Scenario::from_toml(toml).unwrap().run(dir, |_| {}).unwrap()
}

/// Hosts 0 and 1 meet from 10 to 25 s and from 40 to 42 s; 1 and 2 from 5
/// s to the end. Contact times: 15 s and 2 s (the contact still up at the
/// end is not counted, as in ONE); one inter-contact time, 15 s.
#[test]
fn contact_and_inter_contact_times_are_counted_as_one_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.txt"),
        "5 CONN 1 2 up\n10 CONN 0 1 up\n12 C M 0 1 100\n25 CONN 0 1 down\n40 CONN 0 1 up\n42 CONN 0 1 down\n",
    )
    .unwrap();
    let r = run(
        "name = \"c\"\nduration_secs = 100\nttl_secs = 50\nnodes = 3\n[trace]\nevents = \"t.txt\"\n",
        dir.path(),
    );
    assert_eq!(r.contacts, 3);
    assert_eq!(r.contact_times, vec![(2, 1), (15, 1)]);
    assert_eq!(r.inter_contact_times, vec![(15, 1)]);
    let text = Report::one_histogram(&r.contact_times);
    assert_eq!(text.lines().count(), 16);
    assert_eq!(text.lines().nth(2), Some("2.0 1"));
    assert_eq!(text.lines().nth(15), Some("15.0 1"));
}

/// A mobility scenario's contacts and messages, exported as a ONE trace
/// and run from it, give the same deliveries and latencies.
#[test]
fn exported_contacts_replay_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let generated = "name = \"gen\"\nseed = 5\nduration_secs = 1800\nttl_secs = 1200\nnodes = 30\nfast = true\n\
                     [mobility]\nwidth = 400\nheight = 400\nrange = 40\nstep_secs = 2.0\n\
                     [traffic]\nmessages = 25\nend_secs = 900\n[routing]\nreceipts = false\n";
    let file = dir.path().join("gen.toml");
    std::fs::write(&file, generated).unwrap();
    let trace = dir.path().join("gen.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-sim"))
        .args([
            "export",
            file.to_str().unwrap(),
            "--out",
            trace.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.contains(" CONN ") && text.contains(" C G1 "));
    let original = run(generated, dir.path());
    let replayed = run(
        "name = \"gen\"\nseed = 5\nduration_secs = 1800\nttl_secs = 1200\nnodes = 30\nfast = true\n\
         [trace]\nevents = \"gen.txt\"\n[routing]\nreceipts = false\n",
        dir.path(),
    );
    assert!(original.delivered > 0);
    assert_eq!(original.messages, replayed.messages);
    assert_eq!(original.contacts, replayed.contacts);
}

/// A sweep over keys of every kind: a top-level number, a key inside a
/// table that the scenario does not write, a named mobility group's count
/// and the seed. Every run carries its values, in JSON and in the CSV row;
/// runs differing only by seed aggregate into one configuration.
#[test]
fn sweeps_over_any_key_label_every_row_and_aggregate_over_seeds() {
    let toml = "name = \"sw\"\nduration_secs = 600\nttl_secs = 300\nfast = true\n\
                [mobility]\nwidth = 300\nheight = 300\nrange = 50\n\
                [[mobility.group]]\nname = \"walkers\"\ncount = 10\n\
                [[mobility.group]]\nname = \"mules\"\ncount = 2\nspeed = [5.0, 10.0]\n\
                [traffic]\nmessages = 10\nend_secs = 300\n\
                [sweep]\nttl_secs = [100, 300]\n\"buffers.default_bytes\" = [100000]\n\
                \"mobility.group.mules.count\" = [0, 3]\nseed = [1, 2]\n";
    let scenario = Scenario::from_toml(toml).unwrap();
    let runs = scenario.expand().unwrap();
    assert_eq!(runs.len(), 8);
    assert_eq!(runs[0].ttl_secs, 100.0);
    assert_eq!(runs[0].buffers.default_bytes, Some(100_000));
    assert_eq!(runs[0].mobility.as_ref().unwrap().groups[1].count, 0);
    assert_eq!((runs[0].seed, runs[1].seed), (1, 2), "seeds vary fastest");
    let reports: Vec<Report> = runs
        .iter()
        .map(|r| r.run(std::path::Path::new("."), |_| {}).unwrap())
        .collect();
    assert_eq!(reports[1].nodes, 10);
    assert_eq!(reports[4].nodes, 13);
    let keys: Vec<String> = reports[0].swept.keys().cloned().collect();
    let header = Report::csv_header(&keys);
    assert!(header.ends_with(",buffers.default_bytes,mobility.group.mules.count,seed,ttl_secs"));
    // Keys in order, the seed fastest: run 5 is mules 3, TTL 100, seed 2.
    assert!(
        reports[5].csv_row(&keys).ends_with(",100000,3,2,100"),
        "{}",
        reports[5].csv_row(&keys)
    );
    assert!(
        reports[5]
            .message_rows(&keys)
            .lines()
            .all(|l| l.ends_with(",100000,3,2,100"))
    );
    let aggregates = ferry_sim::aggregate::aggregate(&reports);
    assert_eq!(aggregates.len(), 4);
    assert!(
        aggregates
            .iter()
            .all(|a| a.runs == 2 && !a.swept.contains_key("seed"))
    );
    let ratios: Vec<f64> = reports[..2].iter().map(|r| r.delivery_ratio).collect();
    let mean = (ratios[0] + ratios[1]) / 2.0;
    let got = aggregates[0].metrics["delivery_ratio"];
    assert!((got.mean - mean).abs() < 1e-4);
    // n = 2: t = 12.706, sd = |a − b| ÷ √2, half-width = t · sd ÷ √2.
    let expected = 12.706 * (ratios[0] - ratios[1]).abs() / 2.0;
    assert!(
        (got.ci95 - expected).abs() < 1e-3,
        "{} vs {expected}",
        got.ci95
    );
    // A key that names nothing is refused with the key.
    let bad = toml.replace(
        "\"mobility.group.mules.count\"",
        "\"mobility.group.cars.count\"",
    );
    let error = Scenario::from_toml(&bad).unwrap_err().to_string();
    assert!(error.contains("no element named \"cars\""), "{error}");
}
