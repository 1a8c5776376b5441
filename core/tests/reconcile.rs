//! Range-based set reconciliation: correctness on random sets and traffic
//! proportional to the difference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::collections::BTreeSet;

use ferry_core::{
    proto::{encode, v1},
    reconcile::{IdSet, ReconcileError, Role},
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

type Id = [u8; 32];

fn random_ids(rng: &mut StdRng, n: usize) -> Vec<Id> {
    (0..n).map(|_| rng.random()).collect()
}

struct Report {
    have: BTreeSet<Id>,
    need: BTreeSet<Id>,
    bytes: usize,
    rounds: usize,
}

/// Runs reconciliation to completion between `a` (initiator) and `b`.
fn reconcile(a: &[Id], b: &[Id]) -> Report {
    let (a, b) = (IdSet::new(a.to_vec()), IdSet::new(b.to_vec()));
    let mut message = a.initiate();
    let mut report = Report {
        have: BTreeSet::new(),
        need: BTreeSet::new(),
        bytes: 0,
        rounds: 0,
    };
    let wire = |m: &v1::Reconcile| {
        encode(&v1::SyncFrame {
            version: 1,
            kind: Some(v1::sync_frame::Kind::Reconcile(m.clone())),
        })
        .len()
    };
    report.bytes += wire(&message);
    loop {
        report.rounds += 1;
        assert!(report.rounds < 20, "no convergence");
        let Some(reply) = b.process(&message, Role::Responder).unwrap().reply else {
            break;
        };
        report.bytes += wire(&reply);
        let outcome = a.process(&reply, Role::Initiator).unwrap();
        report.have.extend(outcome.have);
        report.need.extend(outcome.need);
        match outcome.reply {
            Some(next) => {
                report.bytes += wire(&next);
                message = next;
            }
            None => break,
        }
    }
    report
}

fn scenario(seed: u64, common: usize, only_a: usize, only_b: usize) -> (Vec<Id>, Vec<Id>, Report) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shared = random_ids(&mut rng, common);
    let a_only = random_ids(&mut rng, only_a);
    let b_only = random_ids(&mut rng, only_b);
    let a: Vec<Id> = shared.iter().chain(&a_only).copied().collect();
    let b: Vec<Id> = shared.iter().chain(&b_only).copied().collect();
    let report = reconcile(&a, &b);
    assert_eq!(
        report.have,
        a_only.iter().copied().collect::<BTreeSet<_>>(),
        "have"
    );
    assert_eq!(
        report.need,
        b_only.iter().copied().collect::<BTreeSet<_>>(),
        "need"
    );
    (a, b, report)
}

#[test]
fn finds_exactly_the_difference_in_both_directions() {
    for (seed, common, a, b) in [
        (1, 0, 0, 0),
        (2, 100, 0, 0),
        (3, 0, 50, 0),
        (4, 0, 0, 50),
        (5, 1000, 1, 1),
        (6, 3000, 200, 17),
    ] {
        scenario(seed, common, a, b);
    }
}

#[test]
fn ten_thousand_vs_ten_thousand_at_one_percent_costs_proportional_to_the_difference() {
    // 10k IDs each, 1% different: 100 only on each side.
    let (_, _, report) = scenario(7, 9_900, 100, 100);
    let diff = 200;
    // Bound: at 1% density each difference costs the ID lists of its
    // neighbourhood plus the fingerprints that isolate it: measured ~460 B
    // (see BENCHMARKS.md); 600 B leaves room for other seeds.
    let per_difference = report.bytes as f64 / diff as f64;
    eprintln!(
        "10k vs 10k, 1%: {} bytes in {} rounds, {per_difference:.0} B per differing ID",
        report.bytes, report.rounds
    );
    assert!(report.bytes <= diff * 600, "{} bytes", report.bytes);
    assert!(report.rounds <= 6, "{} rounds", report.rounds);

    // Ten times the set size with the same difference costs about one more
    // level of fingerprints per difference (O(d log(n/d))), not ten times.
    let (_, _, big) = scenario(8, 99_800, 100, 100);
    eprintln!(
        "100k vs 100k, 200 differing: {} bytes in {} rounds",
        big.bytes, big.rounds
    );
    assert!(
        big.bytes < report.bytes * 3,
        "{} vs {}",
        big.bytes,
        report.bytes
    );
    // Doubling the difference roughly doubles the traffic.
    let (_, _, double) = scenario(10, 9_800, 200, 200);
    eprintln!("10k vs 10k, 400 differing: {} bytes", double.bytes);
    assert!(double.bytes > report.bytes * 6 / 5 && double.bytes < report.bytes * 3);
    // And it is far below sending the ID list (100k × 32 B = 3.2 MB).
    assert!(big.bytes < 99_900 * 32 / 10);
}

#[test]
fn identical_sets_finish_in_one_round_trip_with_a_tiny_message() {
    let (_, _, report) = scenario(9, 10_000, 0, 0);
    assert_eq!(report.rounds, 1);
    assert!(report.bytes < 1024, "{}", report.bytes);
}

#[test]
fn malformed_ranges_are_errors_not_panics() {
    let set = IdSet::new(vec![[1; 32], [9; 32]]);
    let fp = |bound: Vec<u8>| v1::ReconcileRange {
        upper_bound: bound,
        payload: Some(v1::reconcile_range::Payload::Skip(true)),
    };
    for bad in [
        vec![],
        vec![fp(vec![5])],                          // does not end at infinity
        vec![fp(vec![5]), fp(vec![3]), fp(vec![])], // not increasing
        vec![fp(vec![]), fp(vec![])],               // infinity twice
    ] {
        assert_eq!(
            set.process(&v1::Reconcile { ranges: bad }, Role::Responder)
                .unwrap_err(),
            ReconcileError::BadRanges
        );
    }
    // Garbage ID lists are tolerated (extra bytes ignored, no panic).
    let odd = v1::Reconcile {
        ranges: vec![v1::ReconcileRange {
            upper_bound: vec![],
            payload: Some(v1::reconcile_range::Payload::IdList(vec![7; 45])),
        }],
    };
    assert!(set.process(&odd, Role::Initiator).is_ok());
}

/// What a responder learns the peer holds: every ID of a range whose
/// fingerprint matched, and IDs listed by both; an ID repeated thousands of
/// times in a list counts once (the list is deduplicated before anyone
/// searches it).
#[test]
fn the_responder_learns_what_the_peer_holds_and_repeated_ids_count_once() {
    let mut rng = StdRng::seed_from_u64(9);
    let shared = random_ids(&mut rng, 200);
    let only_ours = random_ids(&mut rng, 3);
    let ours: Vec<Id> = shared.iter().chain(&only_ours).copied().collect();
    let responder = IdSet::new(ours);
    let initiator = IdSet::new(shared.clone());
    let outcome = responder
        .process(&initiator.initiate(), Role::Responder)
        .unwrap();
    let held = |id: &Id| {
        let index = responder.ids().binary_search(id).unwrap();
        outcome.peer_holds(id, index)
    };
    // The top-level fingerprints differ (3 extra IDs), so one level down
    // most sub-ranges match: those IDs are held; ours alone never are.
    assert!(only_ours.iter().all(|id| !held(id)));
    let learned = shared.iter().filter(|id| held(id)).count();
    assert!(learned > 100, "learned {learned} of 200");

    // A list naming one of our IDs 16 000 times.
    let one = responder.ids()[0];
    let list = v1::Reconcile {
        ranges: vec![v1::ReconcileRange {
            upper_bound: vec![],
            payload: Some(v1::reconcile_range::Payload::IdList(one.repeat(16_000))),
        }],
    };
    let outcome = responder.process(&list, Role::Responder).unwrap();
    assert_eq!(outcome.common, vec![one]);
    assert!(outcome.peer_holds(&one, 0));
    assert!(!outcome.peer_holds(&responder.ids()[1], 1));
}
