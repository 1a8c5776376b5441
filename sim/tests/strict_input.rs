//! Every value a researcher can get wrong is refused, naming the file, the
//! line and what is valid; the CLI prints help and never a backtrace.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::process::Command;

use ferry_sim::Scenario;

const BASE: &str = "name = \"s\"\nduration_secs = 1000\nttl_secs = 500\nnodes = 10\n\
                    [traffic]\nmessages = 5\nend_secs = 100\n";

/// The error `from_toml` gives for `BASE` with `extra` appended.
fn error_of(extra: &str) -> String {
    match Scenario::from_toml(&format!("{BASE}{extra}")) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

fn error_of_whole(toml: &str) -> String {
    match Scenario::from_toml(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_scenario_is_accepted() {
    Scenario::from_toml(BASE).unwrap();
}

#[test]
fn bad_values_are_refused_with_their_line_and_what_is_valid() {
    // (replacement of the base's first lines, or an appended table; what
    // the message must say)
    let top = |key: &str, value: &str| {
        BASE.replacen(
            &format!("{key} = "),
            &format!("{key} = {value}\n# was: "),
            1,
        )
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            top("ttl_secs", "-100"),
            vec!["scenario:3:", "ttl_secs = -100", "> 0"],
        ),
        (top("ttl_secs", "0"), vec!["ttl_secs = 0", "> 0"]),
        (
            top("duration_secs", "0"),
            vec!["scenario:2:", "duration_secs = 0"],
        ),
        (
            format!("{BASE}sample_interval_secs = -1\n").replace(
                "[traffic]\nmessages = 5\nend_secs = 100\nsample_interval_secs = -1\n",
                "sample_interval_secs = -1\n[traffic]\nmessages = 5\nend_secs = 100\n",
            ),
            vec!["sample_interval_secs = -1"],
        ),
        (
            BASE.replace("duration_secs = 1000", "duration_secs = 1e9")
                .replace("nodes = 10", "nodes = 10\nsample_interval_secs = 1"),
            vec!["samples", "GiB", "use at least"],
        ),
        (
            format!("{BASE}size_bytes = [2000, 1000]\n"),
            vec![
                "scenario:8:",
                "[traffic] size_bytes = [2000, 1000]",
                "low ≤ high",
            ],
        ),
        (
            format!("{BASE}size_bytes = [100, 10000000]\n"),
            vec!["one envelope"],
        ),
        (
            BASE.replace("end_secs = 100", "end_secs = 5000"),
            vec!["[traffic] end_secs = 5000", "within the run"],
        ),
        (
            top("ttl_secs", "2678400"),
            vec!["ttl_secs = 2678400", "at most 2570399", "30 days"],
        ),
        (
            format!("{BASE}[routing]\ncopies = 4096\n"),
            vec!["copies = 4096", "at most 1024"],
        ),
        (
            format!("{BASE}[sweep]\nseed = [1, 1, 2]\n"),
            vec!["[sweep] seed: the value 1 is given twice"],
        ),
        (
            format!("{BASE}[sweep]\ncopies = [4]\n\"routing.copies\" = [8]\n"),
            vec!["swept twice"],
        ),
        (
            format!("{BASE}[link]\nmodel = \"one\"\n"),
            vec!["[link] model = \"one\"", "needs bandwidth_bytes_per_sec"],
        ),
        (
            format!("{BASE}[link]\nloss = 1.5\n"),
            vec!["scenario:9:", "[link] loss = 1.5", "[0, 1]"],
        ),
        (
            format!("{BASE}[link]\nbandwidth_bytes_per_sec = 0\n"),
            vec!["bandwidth_bytes_per_sec = 0", "leave it out for unlimited"],
        ),
        (
            format!("{BASE}[link]\nlatency_secs = -1\n"),
            vec!["latency_secs = -1"],
        ),
        (
            format!("{BASE}[topology]\nkind = \"random-geometric\"\nradius = -0.2\n"),
            vec!["[topology] radius = -0.2", "> 0"],
        ),
        (
            format!("{BASE}[routing]\nstrategy = \"spray-and-wait\"\ncopies = 1\n"),
            vec!["scenario:10:", "copies = 1", "at least 2"],
        ),
        (
            format!("{BASE}[routing]\nstrategy = \"prophet\"\n"),
            vec!["\"prophet\"", "epidemic, spray-and-wait, direct"],
        ),
        (
            format!("{BASE}[sweep]\nstrategy = [\"epidemic\", \"flood\"]\n"),
            vec!["\"flood\"", "valid: epidemic"],
        ),
        (
            format!("{BASE}[sweep]\ncopies = [4, 1]\n"),
            vec!["[sweep] copies = 1"],
        ),
        (
            format!("{BASE}[[partition]]\nat_secs = 10\ngroups = 11\n"),
            vec![
                "[partition] groups = 11",
                "at most the number of nodes (10)",
            ],
        ),
        (
            format!("{BASE}[[partition]]\nat_secs = 10\ngroups = 0\n"),
            vec!["groups = 0", "at least 2"],
        ),
        (
            format!("{BASE}[[partition]]\nat_secs = 100\ngroups = 2\nheal_secs = 50\n"),
            vec!["scenario:11:", "heal_secs = 50", "after at_secs (100)"],
        ),
        (
            format!(
                "{BASE}[[partition]]\nat_secs = 10\ngroups = 2\nheal_secs = 50\n\
                 [[partition]]\nat_secs = 40\ngroups = 2\n"
            ),
            vec!["scenario:13:", "must not overlap"],
        ),
        (
            format!("{BASE}[[churn]]\nnode = 10\noff_secs = 5\n"),
            vec!["[churn] node = 10", "no such node", "0..9"],
        ),
        (
            format!("{BASE}[[churn]]\nnode = 1\noff_secs = 50\non_secs = 20\n"),
            vec!["on_secs = 20", "after off_secs"],
        ),
        (
            format!("{BASE}[buffers]\ndefault_bytes = 0\n"),
            vec!["default_bytes = 0"],
        ),
        (
            format!("{BASE}[[buffers.override]]\nnodes = [3, 12]\nbytes = 100\n"),
            vec!["[buffers.override] nodes = 12", "no such node"],
        ),
        (
            format!("{BASE}[mobility]\nwidth = 100\nheight = 100\nrange = -5\n"),
            vec!["[mobility] range = -5"],
        ),
        (
            format!("{BASE}[mobility]\nwidth = 100\nheight = 100\nrange = 5\nspeed = [3, 1]\n"),
            vec!["[mobility] speed = [3, 1]"],
        ),
        (
            format!("{BASE}[routing]\nstratgey = \"epidemic\"\n"),
            vec!["unknown field", "stratgey"],
        ),
    ];
    for (toml, needles) in cases {
        let error = error_of_whole(&toml);
        for needle in &needles {
            assert!(
                error.contains(needle),
                "expected {needle:?} in:\n{error}\nfor:\n{toml}"
            );
        }
    }
    // Every problem of a file at once.
    let error = error_of("[link]\nloss = 2\nlatency_secs = -1\n");
    assert_eq!(error.lines().count(), 2, "{error}");
}

/// Trace files are checked when a run is built: file, line and reason.
#[test]
fn bad_trace_lines_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "name = \"t\"\nduration_secs = 1000\nttl_secs = 500\nnodes = 5\n\
                [trace]\nevents = \"t.txt\"\n";
    let scenario = Scenario::from_toml(toml).unwrap();
    let cases = [
        ("1 CONN 0 1 up 7\n", "t.txt:1", "unexpected \"7\""),
        ("1 C M 0 1 100 extra\n", "t.txt:1", "unexpected \"extra\""),
        ("1 CONN 2 2 up\n", "t.txt:1", "itself"),
        ("5 CONN 0 1 up\n2 CONN 0 1 down\n", "t.txt:2", "sorted"),
        ("1 CONN 0 1 down\n", "t.txt:1", "not up"),
        ("1 CONN 0 1 up\n2 CONN 1 0 up\n", "t.txt:2", "already up"),
        ("1 CONN 0 7 up\n", "t.txt:1", "host 7 does not exist"),
        ("1 C M 0 9 100\n", "t.txt:1", "host 9 does not exist"),
        (
            "1 CONN 0 1 up\n2000 CONN 0 1 down\n",
            "t.txt:2",
            "after the end",
        ),
        ("1 C M 0 1 100\n2 C M 1 0 100\n", "t.txt:2", "used twice"),
        ("1 C M 0 0 100\n", "t.txt:1", "its own source"),
        ("1 C M 0 1 9999999\n", "t.txt:1", "do not fit one envelope"),
        ("1 C M 0 1 0\n", "t.txt:1", "size 0"),
        ("1 CONN 0 1 up\n", "scenario", "no traffic"),
        (
            "1 CONN 0 1 up\n1e12 CONN 0 1 down\n",
            "t.txt:2",
            "after the end",
        ),
    ];
    for (trace, place, reason) in cases {
        std::fs::write(dir.path().join("t.txt"), trace).unwrap();
        let error = match scenario.build(dir.path()) {
            Ok(_) => panic!("accepted trace:\n{trace}"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(place) && error.contains(reason),
            "expected {place} and {reason:?} in: {error}\nfor:\n{trace}"
        );
    }
    // The one exception ONE makes: a second `up`, skipped when asked to,
    // and counted.
    std::fs::write(
        dir.path().join("t.txt"),
        "1 CONN 0 1 up\n2 CONN 0 1 up\n3 C M 0 1 100\n",
    )
    .unwrap();
    let lenient = Scenario::from_toml(&format!("{toml}duplicate_up = \"ignore\"\n")).unwrap();
    let report = lenient.run(dir.path(), |_| {}).unwrap();
    assert_eq!(report.duplicate_ups_ignored, 1);
    assert_eq!(report.delivered, 1);
}

fn sim(args: &[&str], backtrace: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry-sim"));
    command.args(args);
    if backtrace {
        command.env("RUST_BACKTRACE", "full");
    }
    command.output().unwrap()
}

#[test]
fn help_is_printed_and_mistakes_are_messages_not_backtraces() {
    for args in [&["--help"][..], &["-h"], &["help"], &["run", "--help"]] {
        let out = sim(args, false);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Usage:") && text.contains("ferry-sim run"),
            "{args:?}: {text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{BASE}[link]\nloss = 7\n")).unwrap();
    let missing = dir.path().join("missing.toml");
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", bad.to_str().unwrap()],
        vec!["run", missing.to_str().unwrap()],
    ] {
        let out = sim(&args, true);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            !err.contains("backtrace") && !err.contains("panicked") && !err.contains("Stack"),
            "{args:?}: {err}"
        );
    }
    let out = sim(&["run", bad.to_str().unwrap()], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:9: [link] loss = 7"), "{err}");
}

/// `--out` holds only this run's results: earlier run files are replaced
/// (a sweep of 3 runs after one of 5 leaves no run-3.json or run-4.json),
/// the user's own files stay; no progress bar when stderr is not a
/// terminal.
#[test]
fn the_output_directory_holds_only_this_runs_results() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, format!("{BASE}[topology]\nkind = \"line\"\n")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for stale in ["run-3.json", "run-4.json", "results.csv"] {
        std::fs::write(out.join(stale), "stale").unwrap();
    }
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let output = sim(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        false,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("run-0.json").exists());
    assert!(!out.join("run-3.json").exists() && !out.join("run-4.json").exists());
    assert_ne!(
        std::fs::read_to_string(out.join("results.csv")).unwrap(),
        "stale"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(out.join("messages.csv").exists());
    assert!(!String::from_utf8_lossy(&output.stderr).contains('\r'));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run-0.json")).unwrap()).unwrap();
    assert_eq!(json["version"], ferry_sim::VERSION);
    assert!(json["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(json["parameters"]["ttl_secs"], 500.0);
    assert_eq!(json["parameters"]["traffic"]["messages"], 5);
}

/// Every run of a sweep is checked against its own values before anything
/// is written: a trace line after the end of the second run's shorter
/// duration stops the command, and the earlier results stay.
#[test]
fn a_sweep_is_checked_whole_before_any_output_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ev.txt"),
        "0 CONN 0 1 up\n10 C M1 0 1 100\n3000 CONN 0 1 down\n",
    )
    .unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        "name = \"sw\"\nduration_secs = 3600\nttl_secs = 600\n[trace]\nevents = \"ev.txt\"\n\
         [sweep]\nduration_secs = [3600, 1800]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("results.csv"), "earlier").unwrap();
    let output = sim(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("ev.txt:3") && err.contains("after the end"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv")).unwrap(),
        "earlier"
    );
}

/// The messages file holds messages only, with IDs of their own.
#[test]
fn the_messages_file_holds_only_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ev.txt"), "0 CONN 0 1 up\n5 C M1 0 1 100\n").unwrap();
    let toml = "name = \"m\"\nduration_secs = 100\nttl_secs = 50\nnodes = 2\n\
                [trace]\nevents = \"ev.txt\"\nmessages = \"ms.txt\"\n";
    let scenario = Scenario::from_toml(toml).unwrap();
    for (text, reason) in [
        ("6 C M1 1 0 100\n", "already used in the events file"),
        ("6 CONN 1 2 up\n", "contacts go in `events`"),
    ] {
        std::fs::write(dir.path().join("ms.txt"), text).unwrap();
        let error = scenario.build(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("ms.txt:1") && error.contains(reason),
            "{error}"
        );
    }
}
