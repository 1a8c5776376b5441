//! Simulator correctness: the ONE trace's epidemic upper bound reached
//! exactly, an independent earliest-arrival oracle, determinism, partitions,
//! the classic epidemic vs spray-and-wait result, and trace parsing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use ferry_sim::{Report, Scenario, trace};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
}

fn run_toml(toml: &str, base: &Path) -> Report {
    let scenario = Scenario::from_toml(toml).unwrap();
    scenario.run(base, |_| {}).unwrap()
}

/// (label, latency, hops) of every delivered message.
fn delivered(r: &Report) -> Vec<(String, f64, u32)> {
    r.messages
        .iter()
        .filter(|m| m.status == "delivered")
        .map(|m| (m.label.clone(), m.latency.unwrap(), m.hops.unwrap()))
        .collect()
}

fn run_file(name: &str, fast: bool) -> Report {
    let mut text = std::fs::read_to_string(scenarios_dir().join(name)).unwrap();
    if fast {
        text = format!("fast = true\n{text}");
    }
    run_toml(&text, scenarios_dir())
}

#[test]
fn helsinki_trace_reaches_the_epidemic_upper_bound_exactly() {
    // Fast mode: same engine and routing, no Olm layer (it does not change
    // when or whether anything is delivered, only the cost of a run).
    let r = run_file("helsinki-upper-bound.toml", true);
    assert_eq!(r.created, 1464);
    assert_eq!(r.delivered, 1436, "ONE's upper bound: 1436 of 1464");
    assert!(
        (r.latency_avg.unwrap() - 863.1).abs() < 0.05,
        "avg {:?}",
        r.latency_avg
    );
    assert!(
        (r.latency_median.unwrap() - 782.9).abs() < 0.05,
        "median {:?}",
        r.latency_median
    );
}

#[test]
fn helsinki_with_ones_link_and_buffer_model_lands_within_one_percent_of_one() {
    // ONE's link rules (`model = "one"`), 250 kB/s, 5 MB buffers, fast mode
    // as the scenario file sets it (ONE carries no session-key traffic).
    let r = run_file("helsinki-one-model.toml", false);
    assert!(r.mode.contains("FAST"));
    // ONE: 1435 delivered, latency avg 894.8 s, overhead 123.77, hops 4.42.
    let within = |got: f64, one: f64| (got - one).abs() / one <= 0.01;
    assert!(
        within(r.delivered as f64, 1435.0),
        "delivered {}",
        r.delivered
    );
    let avg = r.latency_avg.unwrap();
    assert!(within(avg, 894.8), "latency avg {avg}");
    let overhead = r.overhead_ratio.unwrap();
    assert!(within(overhead, 123.77), "overhead {overhead}");
    let hops = r.hopcount_avg.unwrap();
    assert!(within(hops, 4.42), "hops {hops}");
}

/// A random contact trace in ONE format with messages.
fn random_trace(seed: u64, nodes: u32, contacts: usize, messages: usize, span: f64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lines: Vec<(f64, String)> = Vec::new();
    // Contacts of one pair do not overlap (a valid trace); ends sort before
    // starts at equal times.
    let mut busy: BTreeMap<(u32, u32), Vec<(f64, f64)>> = BTreeMap::new();
    let mut made = 0;
    while made < contacts {
        let a = rng.random_range(0..nodes);
        let mut b = rng.random_range(0..nodes - 1);
        if b >= a {
            b += 1;
        }
        // 0.1 s resolution, like ONE's traces.
        let start = (rng.random_range(0.0..span) * 10.0).round() / 10.0;
        let len = (rng.random_range(1.0..300.0) * 10.0f64).round() / 10.0;
        let end = ((start + len) * 10.0).round() / 10.0;
        let spans = busy.entry((a.min(b), a.max(b))).or_default();
        if spans.iter().any(|(s, e)| start <= *e && *s <= end) {
            continue;
        }
        spans.push((start, end));
        made += 1;
        lines.push((start + 0.01, format!("{start:.1} CONN {a} {b} up")));
        lines.push((end, format!("{end:.1} CONN {a} {b} down")));
    }
    for i in 0..messages {
        let t = (rng.random_range(0.0..span * 0.8) * 10.0).round() / 10.0;
        let a = rng.random_range(0..nodes);
        let mut b = rng.random_range(0..nodes - 1);
        if b >= a {
            b += 1;
        }
        lines.push((t, format!("{t:.1} C M{i} {a} {b} 1000")));
    }
    lines.sort_by(|x, y| x.0.total_cmp(&y.0));
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Deliberately simple epidemic oracle: earliest arrival over the
/// time-varying contact graph, infinite bandwidth and buffers, zero
/// transfer time. After every trace event, every live message floods the
/// links that are up. Returns label → latency.
fn oracle(text: &str, ttl: f64) -> BTreeMap<String, f64> {
    let mut up: BTreeSet<(u32, u32)> = BTreeSet::new();
    // label → (created, destination, infected nodes)
    let mut msgs: BTreeMap<String, (f64, u32, BTreeSet<u32>)> = BTreeMap::new();
    let mut delivered = BTreeMap::new();
    for event in trace::parse(text).unwrap() {
        let now = event.time();
        match event {
            trace::TraceEvent::Contact { a, b, up: true, .. } => {
                up.insert((a.min(b), a.max(b)));
            }
            trace::TraceEvent::Contact {
                a, b, up: false, ..
            } => {
                up.remove(&(a.min(b), a.max(b)));
            }
            trace::TraceEvent::Message {
                time, id, from, to, ..
            } => {
                msgs.insert(id, (time, to, BTreeSet::from([from])));
            }
        }
        for (label, (created, dst, infected)) in &mut msgs {
            if now > *created + ttl {
                continue;
            }
            loop {
                let new: Vec<u32> = up
                    .iter()
                    .filter_map(
                        |&(a, b)| match (infected.contains(&a), infected.contains(&b)) {
                            (true, false) => Some(b),
                            (false, true) => Some(a),
                            _ => None,
                        },
                    )
                    .collect();
                if new.is_empty() {
                    break;
                }
                infected.extend(new);
            }
            if infected.contains(dst) && !delivered.contains_key(label) {
                delivered.insert(
                    label.clone(),
                    ((now - *created) * 10_000.0).round() / 10_000.0,
                );
            }
        }
    }
    delivered
}

fn trace_scenario(dir: &Path, name: &str, text: &str, extra: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    format!(
        "name = \"{name}\"\nseed = 3\nduration_secs = 20000\nttl_secs = 3000\n{extra}\n[trace]\nevents = \"{name}\"\n[routing]\nstrategy = \"epidemic\"\nreceipts = false\n"
    )
}

#[test]
fn epidemic_matches_an_independent_earliest_arrival_oracle() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=3 {
        let text = random_trace(seed, 25, 600, 60, 10_000.0);
        // Full crypto: the real Olm sessions are on this path.
        let toml = trace_scenario(dir.path(), &format!("t{seed}.txt"), &text, "nodes = 25");
        let report = run_toml(&toml, dir.path());
        let expected = oracle(&text, 3000.0);
        let got: BTreeMap<String, f64> = delivered(&report)
            .into_iter()
            .map(|(l, lat, _)| (l, lat))
            .collect();
        assert!(!expected.is_empty(), "the trace should deliver something");
        assert_eq!(got, expected, "seed {seed}: same messages, same latencies");
    }
}

#[test]
fn same_seed_gives_identical_json() {
    let dir = tempfile::tempdir().unwrap();
    let text = random_trace(9, 20, 400, 40, 8000.0);
    // Fast mode: byte-identical, including byte counters.
    let fast = trace_scenario(
        dir.path(),
        "d.txt",
        &text,
        "nodes = 20\nfast = true\n[link]\nbandwidth_bytes_per_sec = 20000\nlatency_secs = 0.05",
    );
    let (a, b) = (run_toml(&fast, dir.path()), run_toml(&fast, dir.path()));
    assert!(a.mode.contains("FAST"));
    assert_eq!(a.to_json(), b.to_json());
    // Full crypto, unlimited bandwidth: every delivery, latency, hop count
    // and relay count is identical. Not the byte counter of reconciliation
    // frames (their size depends on the random content IDs Olm's OS
    // randomness produces), nor, since prekey top-ups wait a random delay
    // like receipts, the buffer samples: envelopes arriving in one batch are
    // processed in the order of their random IDs, and that order can change
    // how many key top-ups a session earns (seen: one 595-byte envelope at
    // one sample, in about half of the runs).
    let full = trace_scenario(dir.path(), "e.txt", &text, "nodes = 20");
    let (mut a, mut b) = (run_toml(&full, dir.path()), run_toml(&full, dir.path()));
    assert_eq!(a.mode, "full-crypto");
    for r in [&mut a, &mut b] {
        r.bytes_sent = 0;
        r.bytes_control = 0;
        r.buffer.clear();
    }
    assert_eq!(a.to_json(), b.to_json());
}

#[test]
fn a_partition_that_never_heals_delivers_nothing_across_it_and_healing_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // 10 nodes in a line, split into {0..4} and {5..9} at t = 10; messages
    // from 0 to 9 (across) and 0 to 3 (within), created after the split.
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "{}.0 C X{i} 0 9 500\n{}.0 C W{i} 0 3 500\n",
            20 + i,
            20 + i
        ));
    }
    let base = "nodes = 10\n[topology]\nkind = \"line\"\n";
    let never = format!("{base}[[partition]]\nat_secs = 10\ngroups = 2\n");
    let r = run_toml(
        &trace_scenario(dir.path(), "p.txt", &text, &never),
        dir.path(),
    );
    let across = delivered(&r)
        .iter()
        .filter(|(l, _, _)| l.starts_with('X'))
        .count();
    let within = delivered(&r)
        .iter()
        .filter(|(l, _, _)| l.starts_with('W'))
        .count();
    assert_eq!((across, within), (0, 10));

    let heal = format!("{base}[[partition]]\nat_secs = 10\ngroups = 2\nheal_secs = 1000\n");
    let r = run_toml(
        &trace_scenario(dir.path(), "q.txt", &text, &heal),
        dir.path(),
    );
    assert_eq!(r.delivered, 20, "healing delivers everything still alive");
    let latest = delivered(&r)
        .into_iter()
        .filter(|(l, _, _)| l.starts_with('X'))
        .map(|(_, lat, _)| lat);
    assert!(latest.fold(0.0, f64::max) >= 1000.0 - 30.0);
}

#[test]
fn a_node_that_is_off_receives_its_mail_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    // A static line 0-1-2; node 2 is off from t = 5 to t = 500. Contacts
    // come from the static topology at t = 0 and again when it is back.
    let text = "10.0 C A 0 2 500\n";
    let extra = "nodes = 3\n[topology]\nkind = \"line\"\n[[churn]]\nnode = 2\noff_secs = 5\non_secs = 500\n";
    // The link 1-2 comes back by itself when node 2 returns: the contact
    // is still there.
    let toml = trace_scenario(dir.path(), "c.txt", text, extra);
    let r = run_toml(&toml, dir.path());
    assert_eq!(r.delivered, 1);
    let (_, latency, hops) = &delivered(&r)[0];
    let latency = *latency;
    assert!(
        (latency - 490.0).abs() < 1e-6,
        "delivered on return, latency {latency}"
    );
    assert_eq!(*hops, 2);
}

#[test]
fn spray_and_wait_uses_far_fewer_transmissions_for_similar_delivery() {
    let toml = |strategy: &str| {
        format!(
            "name = \"rwp\"\nseed = 11\nduration_secs = 7200\nttl_secs = 5400\nnodes = 40\nfast = true\n\
             [mobility]\nwidth = 800\nheight = 800\nrange = 60\nspeed = [1.0, 3.0]\npause = [0.0, 60.0]\nstep_secs = 2.0\n\
             [traffic]\nmessages = 60\nend_secs = 1800\n\
             [routing]\nstrategy = \"{strategy}\"\ncopies = 6\nreceipts = false\n"
        )
    };
    let epidemic = run_toml(&toml("epidemic"), Path::new("."));
    let spray = run_toml(&toml("spray-and-wait"), Path::new("."));
    eprintln!(
        "epidemic: {:.3} delivered, {} relayed; spray-and-wait(6): {:.3}, {} relayed",
        epidemic.delivery_ratio, epidemic.relayed, spray.delivery_ratio, spray.relayed
    );
    assert!(
        epidemic.delivery_ratio > 0.5,
        "the scenario should be well connected over time"
    );
    assert!(
        spray.relayed * 3 < epidemic.relayed,
        "far fewer transmissions"
    );
    assert!(
        spray.delivery_ratio >= epidemic.delivery_ratio * 0.6,
        "similar delivery"
    );
}

#[test]
fn malformed_traces_are_errors_with_line_numbers() {
    assert_eq!(
        trace::parse("1.0 CONN 1 2 up\n2.0 CONN 1 x down\n")
            .unwrap_err()
            .line,
        2
    );
    assert_eq!(trace::parse("abc C M1 1 2 3").unwrap_err().line, 1);
    assert!(trace::parse("1.0 CONN 1 2 sideways").is_err());
    assert!(trace::parse("1.0 BOOM").is_err());
    assert!(trace::parse("-1 CONN 1 2 up").is_err());
    assert_eq!(
        trace::parse("# comment\n\n5 C M1 0 1 100\n").unwrap().len(),
        1
    );
}
