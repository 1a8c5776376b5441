//! A peer that is allowed to talk attacks an honest node with sequences of
//! sync frames (threat item 20): replays of the stateful fuzz target's corpus
//! on stable, and the review's attacks written out as fixed sequences.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/peer_session.rs"]
mod peer_session;

use std::{fs, path::PathBuf};

use ferry_core::{
    engine::{PUSH_WINDOW, ROUND_BYTES_BASE, ROUND_BYTES_PER_ID, Strategy},
    proto::{encode, v1, v1::reconcile_range::Payload},
};
use peer_session::{Session, envelopes_in, want, whole_range};

#[test]
fn peer_session_corpus_holds_every_invariant() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/peer_session");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        if let Err(violation) = peer_session::run(&data) {
            panic!("{}: {violation}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "the peer_session corpus is empty");
}

/// The review's attack: one want list repeating a known ID 2000 times.
#[test]
fn a_want_list_repeating_an_id_gets_it_once() {
    let mut s = Session::scripted(Strategy::Epidemic, true);
    let ids = s.a_holds_mail(5);
    // A round in which M claims to hold nothing, so A offers its IDs.
    s.m_sends(whole_range(Payload::IdList(Vec::new()))).unwrap();
    let _ = s.take_frames_to_m();
    s.m_sends(want(&vec![ids[0]; 2000])).unwrap();
    let sent = envelopes_in(&s.take_frames_to_m());
    assert_eq!(sent.len(), 1, "one copy, whatever the repeats");
    assert!(s.a_counters().sync_refused >= 1999);
    s.end().unwrap();
}

/// Asking for IDs the peer learned elsewhere (gossip), outside a round.
#[test]
fn wants_for_ids_not_offered_in_a_round_get_nothing() {
    let mut s = Session::scripted(Strategy::Epidemic, true);
    let ids = s.a_holds_mail(4);
    s.m_sends(want(&ids)).unwrap();
    assert!(envelopes_in(&s.take_frames_to_m()).is_empty());
    assert_eq!(s.a_counters().sync_refused, 4);
    s.end().unwrap();
}

/// Two honest-looking rounds on one link, each wanting everything: every
/// envelope is handed over once, and a spray budget is split once.
#[test]
fn each_envelope_goes_to_a_peer_once_per_link_and_budgets_split_once() {
    let mut s = Session::scripted(Strategy::SprayAndWait { copies: 8 }, true);
    let ids = s.a_holds_mail(4);
    let mut given = Vec::new();
    for _ in 0..4 {
        s.advance(60);
        s.m_sends(whole_range(Payload::IdList(Vec::new()))).unwrap();
        s.m_sends(want(&ids)).unwrap();
        given.extend(envelopes_in(&s.take_frames_to_m()));
    }
    assert_eq!(given.len(), 4, "each envelope once per link");
    assert!(given.iter().all(|e| e.copy_budget == 4), "half of 8, once");
    s.end().unwrap();
}

/// The review's attack as the link's responder: an unsolicited "I hold
/// nothing" made the initiator push its whole store, every time.
#[test]
fn unsolicited_reconciliation_frames_are_ignored() {
    let mut s = Session::scripted(Strategy::Epidemic, false);
    s.a_holds_mail(3);
    // A opened a round on link-up and is waiting for M's answer: M answers
    // "all equal" once, which ends it.
    let _ = s.take_frames_to_m();
    s.m_sends(whole_range(Payload::Skip(true))).unwrap();
    let refused = s.a_counters().sync_refused;
    for _ in 0..5 {
        s.m_sends(whole_range(Payload::IdList(Vec::new()))).unwrap();
    }
    assert!(envelopes_in(&s.take_frames_to_m()).is_empty());
    assert_eq!(s.a_counters().sync_refused, refused + 5);
    s.end().unwrap();
}

/// A peer that keeps a round going with mismatching fingerprints gets
/// replies worth one honest round per refill period, not one per frame.
#[test]
fn reconciliation_replies_stay_within_the_credit() {
    let mut s = Session::scripted(Strategy::Epidemic, true);
    s.a_holds_mail(40);
    let held = s.a_held() as u64;
    let _ = s.take_frames_to_m();
    let mut sent = 0u64;
    for i in 0..500u32 {
        s.m_sends(whole_range(Payload::Fingerprint(v1::Fingerprint {
            digest: [i.to_le_bytes(), [0; 4], [0; 4], [0; 4]].concat(),
            count: 1,
        })))
        .unwrap();
        sent += s
            .take_frames_to_m()
            .iter()
            .map(|f| encode(f).len() as u64)
            .sum::<u64>();
    }
    let credit = ROUND_BYTES_BASE + ROUND_BYTES_PER_ID * held;
    assert!(
        sent <= credit,
        "{sent} bytes of replies for a credit of {credit}"
    );
    assert!(s.a_counters().sync_refused > 400);
    s.end().unwrap();
}

/// A peer that asks for everything and never acknowledges gets a window of
/// frames, not the store: the node builds one batch at a time.
#[test]
fn a_peer_that_never_acknowledges_gets_one_window_of_batches() {
    let mut s = Session::scripted(Strategy::Epidemic, true);
    // Enough mail for many batches (a batch is at most about 1 MiB).
    let ids = s.a_holds_mail_of(200, 30_000);
    s.m_acknowledges(false);
    s.m_sends(whole_range(Payload::IdList(Vec::new()))).unwrap();
    let offered = s.take_frames_to_m();
    assert!(!offered.is_empty());
    s.m_sends(want(&ids)).unwrap();
    let frames = s.take_frames_to_m();
    let batches = frames
        .iter()
        .filter(|f| matches!(f.kind, Some(v1::sync_frame::Kind::Envelopes(_))))
        .count();
    // The window counts every unacknowledged frame (the round's reply too).
    assert!(
        batches <= PUSH_WINDOW as usize,
        "{batches} batches unacknowledged"
    );
    assert!(
        envelopes_in(&frames).len() < ids.len(),
        "not everything at once"
    );
    // Acknowledging lets the rest through.
    s.m_acknowledges(true);
    s.m_sends(whole_range(Payload::Skip(true))).unwrap();
    s.end().unwrap();
}
