//! Each metric's definition on a tiny scenario whose result is computed by
//! hand in the comments: spray-and-wait on links already up, ONE's
//! "relayed" and overhead ratio, receipts apart from relays, the exact TTL,
//! bytes by kind, messages that never finished, and partitions that cut
//! trace and mobility contacts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_sim::{Report, Scenario};

/// Runs `toml` with `trace` as its events file.
fn run(toml: &str, trace: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), trace).unwrap();
    let scenario = Scenario::from_toml(toml).unwrap();
    scenario.run(dir.path(), |_| {}).unwrap()
}

fn line_scenario(strategy: &str) -> String {
    format!(
        "name = \"line\"\nduration_secs = 100\nttl_secs = 1000\nnodes = 4\n\
         [topology]\nkind = \"line\"\n[trace]\nevents = \"t.txt\"\n\
         [routing]\nstrategy = \"{strategy}\"\ncopies = 4\nreceipts = false\n"
    )
}

/// A static line 0-1-2-3, up from t = 0; at t = 10 node 0 writes to 3.
/// Spray-and-wait(4): 0 gives 2 copies to 1 and keeps 2; 1 gives 1 to 2;
/// 2, in the wait phase, shows its copy to 3: delivered over 3 hops, three
/// copies taken (1, 2, and 3 by delivery), overhead (3 − 1) ÷ 1 = 2.
/// Direct: 0 shows its copy to 1, which declines it: nothing delivered.
/// (Before the engine sprayed links already up, spray-and-wait delivered
/// nothing here, like direct.)
#[test]
fn spray_and_wait_sprays_on_a_static_topology() {
    let trace = "10.0 C M 0 3 500\n";
    let spray = run(&line_scenario("spray-and-wait"), trace);
    assert_eq!(spray.delivered, 1, "{spray:#?}");
    assert_eq!(spray.relayed, 3);
    assert_eq!(spray.overhead_ratio, Some(2.0));
    assert_eq!(spray.messages[0].hops, Some(3));
    assert_eq!(spray.refused_copies, 0);

    let direct = run(&line_scenario("direct"), trace);
    assert_eq!(direct.delivered, 0);
    assert_eq!(direct.relayed, 0);
    // Nothing delivered: latency, hops and overhead are undefined, not 0.
    assert_eq!(
        (
            direct.latency_avg,
            direct.hopcount_avg,
            direct.overhead_ratio
        ),
        (None, None, None)
    );
    let row = direct.csv_row(&[]);
    let header = Report::csv_header(&[]);
    let column = |name: &str| {
        let i = header.split(',').position(|c| c == name).unwrap();
        row.split(',').nth(i).unwrap().to_owned()
    };
    assert_eq!(column("latency_avg"), "");
    assert_eq!(direct.refused_copies, 1, "shown to 1, declined");

    let epidemic = run(&line_scenario("epidemic"), trace);
    assert_eq!(
        (
            epidemic.delivered,
            epidemic.relayed,
            epidemic.overhead_ratio
        ),
        (1, 3, Some(2.0))
    );
}

/// Two nodes in contact; 0 writes to 1 at t = 10. One hop: one copy taken,
/// by delivery: relayed 1, overhead 0, whether receipts are on or not (it
/// was 1.00 with receipts on: the receipt envelope was counted as a relay).
/// With receipts on, the receipt crosses back (after the engine's 30–300 s
/// delay) and is counted apart.
#[test]
fn a_one_hop_delivery_has_overhead_zero_and_receipts_are_not_relays() {
    for receipts in [false, true] {
        let toml = format!(
            "name = \"hop\"\nduration_secs = 2000\nttl_secs = 1000\nnodes = 2\n\
             [trace]\nevents = \"t.txt\"\n[routing]\nreceipts = {receipts}\n"
        );
        let r = run(&toml, "0.0 CONN 0 1 up\n10.0 C M 0 1 700\n");
        assert_eq!((r.delivered, r.relayed), (1, 1), "receipts {receipts}");
        assert_eq!(r.overhead_ratio, Some(0.0));
        assert_eq!(r.messages[0].hops, Some(1));
        if receipts {
            assert_eq!(r.receipts, 1);
            assert!(r.receipt_copies >= 1);
            assert!(r.bytes_receipts > 0);
            let latency = r.messages[0].receipt_latency.unwrap();
            assert!((30.0..=301.0).contains(&latency), "receipt after {latency}");
        } else {
            assert_eq!(r.receipts, 0);
        }
        assert_eq!(
            r.bytes_sent,
            r.bytes_data + r.bytes_receipts + r.bytes_control
        );
        assert!(r.bytes_data >= 700, "the message crossed once");
    }
}

/// 0-1 up from t = 0, 1-2 up at t = 60.5; node 0 writes to 2 at t = 0.
/// The copy reaches 1 at once; it could reach 2 at 60.5, when its age is
/// 60.5 s. TTL 60: expired, one relay, no receipt (the engines, which count
/// whole seconds, would have carried it). TTL 60.5: delivered (a message
/// lives while its age is at most the TTL, as in ONE). TTL 61: delivered.
#[test]
fn the_ttl_is_enforced_exactly() {
    let trace = "0.0 CONN 0 1 up\n0.0 C M 0 2 500\n60.5 CONN 1 2 up\n";
    let mut data_bytes = Vec::new();
    for (ttl, delivered, relayed) in [(60.0, 0, 1), (60.5, 1, 2), (61.0, 1, 2)] {
        let toml = format!(
            "name = \"ttl\"\nduration_secs = 1000\nttl_secs = {ttl}\nnodes = 3\n\
             [trace]\nevents = \"t.txt\"\n[routing]\nreceipts = true\n"
        );
        let r = run(&toml, trace);
        assert_eq!(
            (r.delivered, r.relayed),
            (delivered, relayed),
            "TTL {ttl}: {:?}",
            r.messages
        );
        assert!(r.receipts <= r.delivered);
        data_bytes.push(r.bytes_data);
        if delivered == 0 {
            assert_eq!(r.messages[0].status, "expired");
            assert_eq!(r.expired, 1);
        } else {
            assert_eq!(r.messages[0].latency, Some(60.5));
        }
    }
    // Past its TTL a copy is not put on the link at all: one transfer of
    // the envelope at TTL 60, two at TTL 61.
    // (Within a few bytes: the second hop goes in a sync batch, with a
    // field header of its own.)
    let ratio = data_bytes[2] as f64 / data_bytes[0] as f64;
    assert!((ratio - 2.0).abs() < 0.01, "{data_bytes:?}");
}

/// The same TTL rule for a copy already on its way: the link 1-2 comes up
/// at 59.5 s and carries 1000 bytes a second, so the envelope (about 1 kB)
/// starts within the TTL and arrives after it. TTL 60: not a delivery and
/// not a relay, a refused copy. TTL 62: delivered.
#[test]
fn a_copy_arriving_after_its_ttl_is_not_counted() {
    let trace = "0.0 CONN 0 1 up\n0.0 C M 0 2 500\n59.5 CONN 1 2 up\n";
    for (ttl, delivered) in [(60.0, 0), (62.0, 1)] {
        let toml = format!(
            "name = \"slow\"\nduration_secs = 1000\nttl_secs = {ttl}\nnodes = 3\n\
             [trace]\nevents = \"t.txt\"\n[routing]\nreceipts = false\n\
             [link]\nbandwidth_bytes_per_sec = 1000\n"
        );
        let r = run(&toml, trace);
        assert_eq!(r.delivered, delivered, "TTL {ttl}: {:?}", r.messages);
        if delivered == 0 {
            assert_eq!((r.relayed, r.refused_copies), (1, 1));
        } else {
            let latency = r.messages[0].latency.unwrap();
            assert!(latency > 60.0 && latency < 62.0, "{latency}");
        }
    }
}

/// Run length 100 s, TTL 50 s: M1 (t = 10) can never be delivered and
/// expires at 60; M2 (t = 80) is still alive when the run ends. Both are
/// in the ratio's denominator, and reported apart, in JSON and CSV.
#[test]
fn messages_that_did_not_finish_are_reported_as_such() {
    let toml = "name = \"end\"\nduration_secs = 100\nttl_secs = 50\nnodes = 3\n\
                [trace]\nevents = \"t.txt\"\n";
    let r = run(toml, "10.0 C M1 0 1 500\n80.0 C M2 0 2 500\n");
    assert_eq!((r.created, r.delivered), (2, 0));
    assert_eq!((r.expired, r.in_flight, r.refused), (1, 1, 0));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["messages"][0]["status"], "expired");
    assert_eq!(json["messages"][1]["status"], "in_flight");
    let header = Report::csv_header(&[]);
    let row = r.csv_row(&[]);
    let column = |name: &str| {
        let i = header.split(',').position(|c| c == name).unwrap();
        row.split(',').nth(i).unwrap().to_owned()
    };
    assert_eq!(column("expired"), "1");
    assert_eq!(column("in_flight"), "1");
    assert_eq!(column("refused"), "0");
    assert!(r.message_rows(&[]).contains(",M2,0,2,80,500,in_flight,"));
}

/// A partition from t = 5 to 100 separates nodes 0 and 1; the trace brings
/// their contact up at t = 10 and never ends it; 0 writes to 1 at t = 20.
/// The contact is cut until the heal, then comes up: delivered at 100,
/// latency 80. (Partitions used to apply only to static topologies.)
#[test]
fn a_partition_cuts_trace_contacts_until_it_heals() {
    let toml = "name = \"cut\"\nduration_secs = 500\nttl_secs = 400\nnodes = 2\n\
                [trace]\nevents = \"t.txt\"\n\
                [[partition]]\nat_secs = 5\ngroups = 2\nheal_secs = 100\n";
    let r = run(toml, "10.0 CONN 0 1 up\n20.0 C M 0 1 500\n");
    assert_eq!(r.contacts_cut, 1);
    assert_eq!(r.delivered, 1);
    assert_eq!(r.messages[0].latency, Some(80.0));
}

/// Ten nodes moving in a 10 m square with a 100 m range are always in
/// contact; a partition into {0..4} and {5..9} that never heals leaves
/// only messages within a side deliverable.
#[test]
fn a_partition_cuts_mobility_contacts() {
    let toml = "name = \"mob\"\nduration_secs = 300\nttl_secs = 300\nnodes = 10\n\
                [mobility]\nwidth = 10\nheight = 10\nrange = 100\n\
                [trace]\nevents = \"t.txt\"\n\
                [[partition]]\nat_secs = 0\ngroups = 2\n";
    let r = run(toml, "10.0 C IN 0 4 500\n10.0 C ACROSS 0 9 500\n");
    let status: Vec<(&str, &str)> = r
        .messages
        .iter()
        .map(|m| (m.label.as_str(), m.status))
        .collect();
    assert_eq!(status, vec![("IN", "delivered"), ("ACROSS", "in_flight")]);
}

/// Sides by group name: "west" and "east" stand in one square, all in
/// range, but a partition puts them on two sides for the whole run; the
/// mule group is on no side and reaches both. West 0 writes to east 0:
/// delivered through the mule (two hops), and not at all without it.
#[test]
fn mules_listed_on_no_side_cross_a_partition_by_groups() {
    for mules in [1, 0] {
        let toml = format!(
            "name = \"sides\"\nduration_secs = 300\nttl_secs = 300\n\
             [mobility]\nwidth = 10\nheight = 10\nrange = 100\n\
             [[mobility.group]]\nname = \"west\"\ncount = 2\nmodel = \"stationary\"\n\
             [[mobility.group]]\nname = \"east\"\ncount = 2\nmodel = \"stationary\"\n\
             [[mobility.group]]\nname = \"mules\"\ncount = {mules}\n\
             [trace]\nevents = \"t.txt\"\n\
             [[partition]]\nat_secs = 0\nsides = [[\"west\"], [\"east\"]]\n\
             [routing]\nreceipts = false\n"
        );
        let r = run(&toml, "10.0 C M 0 2 500\n");
        if mules == 1 {
            assert_eq!(r.delivered, 1, "{:?}", r.messages);
            assert_eq!(r.messages[0].hops, Some(2));
        } else {
            assert_eq!(r.delivered, 0);
            assert!(r.contacts_cut > 0);
        }
    }
}

/// Sides by region: stationary group "a" at the left end of a 100 × 1 m
/// strip, "b" at the right end, a mule walking the strip; all in radio
/// range of each other, but the regions [0, 50) and [50, 100] are cut from
/// each other. The mule's side follows its position, so a message from a
/// to b waits for it to cross; without the mule nothing crosses.
#[test]
fn a_partition_by_region_follows_the_mule() {
    for mules in [1, 0] {
        let toml = format!(
            "name = \"regions\"\nduration_secs = 2000\nttl_secs = 2000\n\
             [mobility]\nwidth = 100\nheight = 1\nrange = 1000\nspeed = [1.0, 2.0]\npause = [0.0, 1.0]\n\
             [[mobility.group]]\nname = \"a\"\ncount = 1\nmodel = \"stationary\"\narea = [0, 0, 1, 1]\n\
             [[mobility.group]]\nname = \"b\"\ncount = 1\nmodel = \"stationary\"\narea = [99, 0, 100, 1]\n\
             [[mobility.group]]\nname = \"mule\"\ncount = {mules}\n\
             [trace]\nevents = \"t.txt\"\n\
             [[partition]]\nat_secs = 0\nregions = [[0, 0, 49.99, 1], [50, 0, 100, 1]]\n\
             [routing]\nreceipts = false\n"
        );
        let r = run(&toml, "1.0 C M 0 1 500\n");
        if mules == 1 {
            assert_eq!(r.delivered, 1, "{:?}", r.messages);
            assert_eq!(r.messages[0].hops, Some(2));
        } else {
            assert_eq!(r.delivered, 0);
        }
    }
}

/// A partition heals at 50 s, the moment the trace ends the contact it
/// cut: the contact never comes up (it used to come up for zero seconds
/// and exchange everything at once).
#[test]
fn a_contact_ending_as_its_partition_heals_never_comes_up() {
    let toml = "name = \"edge\"\nduration_secs = 100\nttl_secs = 100\nnodes = 2\n\
                [trace]\nevents = \"t.txt\"\n\
                [[partition]]\nat_secs = 0\ngroups = 2\nheal_secs = 50\n";
    let r = run(
        toml,
        "5.0 C M 0 1 500\n10.0 CONN 0 1 up\n50.0 CONN 0 1 down\n",
    );
    assert_eq!((r.delivered, r.contacts, r.contacts_cut), (0, 0, 1));
    assert!(r.contact_times.is_empty());
}
