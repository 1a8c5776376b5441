//! Custody under attack: quotas per network source that survive
//! reconnects, fair eviction when the store is full, shorter custody for
//! strangers' mail (threat item 13), and verdicts that penalise only what a
//! relay could have detected itself (threat item 22).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ferry_core::{
    crypto::{Keyring, Trust, tags},
    engine::{
        Engine, EngineConfig, Event, Input, MemoryStore, Output, PeerId, Quotas, RejectReason,
        SourceId, Verdict,
    },
    identity::Identity,
    proto::{self, limits, v1},
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

const T0: u64 = 1_700_000_000;
const DAY: u64 = 24 * 3600;

fn engine(quotas: Quotas) -> Engine<MemoryStore, StdRng> {
    let seed = rand::rng().random();
    let config = EngineConfig {
        quotas,
        ..EngineConfig::default()
    };
    Engine::open(
        MemoryStore::new(),
        [9; 32],
        Identity::generate,
        config,
        StdRng::seed_from_u64(seed),
        T0,
    )
    .unwrap()
}

/// A well-formed envelope to a random tag: only quotas can stop it.
fn junk(expiry: u64) -> Vec<u8> {
    let mut rng = rand::rng();
    let mut e = v1::Envelope {
        version: limits::WIRE_VERSION,
        content_id: Vec::new(),
        expiry,
        hop_limit: 8,
        copy_budget: 0,
        recipient_tag: rng.random::<[u8; 16]>().to_vec(),
        stamp: Vec::new(),
        sealed_body: vec![rng.random(); 2048],
        delivery_commitment: rng.random::<[u8; 16]>().to_vec(),
    };
    e.content_id = tags::content_id_of(&e).to_vec();
    proto::encode(&e)
}

fn up(e: &mut Engine<MemoryStore, StdRng>, peer: u64, source: u64, trusted: bool) {
    e.handle(
        Input::PeerUp {
            peer: PeerId(peer),
            trusted,
            initiator: false,
            source: SourceId(source),
        },
        T0,
    )
    .unwrap();
    while e.poll_output().is_some() {}
}

fn gossip(e: &mut Engine<MemoryStore, StdRng>, peer: u64, bytes: &[u8], now: u64) -> Verdict {
    e.handle(
        Input::Gossip {
            from: PeerId(peer),
            bytes,
        },
        now,
    )
    .unwrap()
}

/// Refusal reasons the engine reported since the last call.
fn refusals(e: &mut Engine<MemoryStore, StdRng>) -> Vec<RejectReason> {
    let mut out = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Event(Event::Rejected { reason, .. }) = o {
            out.push(reason);
        }
    }
    out
}

/// The review's attack: client PeerIds are free, so a flooder reconnected
/// under a fresh one and got a fresh per-peer quota each time.
#[test]
fn a_source_quota_survives_reconnecting_under_new_peer_ids() {
    let mut a = engine(Quotas {
        global_bytes: 1 << 20,
        per_tag_bytes: 1 << 20,
        per_peer_bytes: 16 * 1024,
    });
    let mut refused = Vec::new();
    for k in 0..20 {
        up(&mut a, 100 + k, 7, false);
        for _ in 0..4 {
            gossip(&mut a, 100 + k, &junk(T0 + DAY), T0);
        }
        refused.extend(refusals(&mut a));
        a.handle(
            Input::PeerDown {
                peer: PeerId(100 + k),
            },
            T0,
        )
        .unwrap();
    }
    assert!(
        a.held_bytes() <= 16 * 1024,
        "one source holds {} bytes across 20 reconnects",
        a.held_bytes()
    );
    assert!(refused.len() >= 70, "every refusal is reported");
    assert!(refused.iter().all(|r| *r == RejectReason::PeerQuota));
    // Another source is not affected.
    up(&mut a, 999, 8, false);
    assert_eq!(gossip(&mut a, 999, &junk(T0 + DAY), T0), Verdict::Accept);
}

/// One source fills the whole store with long-lived junk; a second
/// stranger's mail still gets in (displacing the biggest source's), and the
/// first cannot take the room back beyond its fair share.
#[test]
fn one_source_cannot_keep_the_store_against_others() {
    let mut a = engine(Quotas {
        global_bytes: 64 * 1024,
        per_tag_bytes: 64 * 1024,
        per_peer_bytes: 1 << 20,
    });
    up(&mut a, 1, 1, false);
    for _ in 0..40 {
        gossip(&mut a, 1, &junk(T0 + 14 * DAY), T0);
    }
    assert!(refusals(&mut a).contains(&RejectReason::GlobalQuota));
    let full = a.held_count();
    up(&mut a, 2, 2, false);
    let honest: Vec<Vec<u8>> = (0..5).map(|_| junk(T0 + DAY)).collect();
    for bytes in &honest {
        assert_eq!(gossip(&mut a, 2, bytes, T0), Verdict::Accept);
    }
    assert!(refusals(&mut a).is_empty(), "the second source got in");
    assert_eq!(a.held_count(), full, "by displacing the first's envelopes");
    // The flooder keeps going: it is over its fair share now.
    for _ in 0..20 {
        gossip(&mut a, 1, &junk(T0 + 14 * DAY), T0);
    }
    for bytes in &honest {
        let id = tags::content_id_of(&proto::decode::<v1::Envelope>(bytes).unwrap());
        assert!(a.holds(&id), "the second source's mail stays");
    }
}

/// Junk with the longest lifetime peers accept is carried for the stranger
/// custody time only; a contact's mail until it expires.
#[test]
fn strangers_mail_is_carried_for_a_shorter_time() {
    let mut a = engine(EngineConfig::default().quotas);
    up(&mut a, 1, 1, false);
    up(&mut a, 2, 2, true);
    let stranger = junk(T0 + 10 * DAY);
    let contact = junk(T0 + 10 * DAY);
    assert_eq!(gossip(&mut a, 1, &stranger, T0), Verdict::Accept);
    assert_eq!(gossip(&mut a, 2, &contact, T0), Verdict::Accept);
    let id = |b: &[u8]| tags::content_id_of(&proto::decode::<v1::Envelope>(b).unwrap());
    let later = T0 + EngineConfig::default().stranger_custody_secs + 1;
    a.handle(Input::Timeout, later).unwrap();
    assert!(!a.holds(&id(&stranger)), "the stranger's copy is dropped");
    assert!(a.holds(&id(&contact)), "the contact's copy is kept");
    assert_eq!(a.counters().expired, 1);
}

/// The review's attack: anyone holding the victim's card seals a contact
/// request every relay accepts and only the victim cannot open. Reported
/// invalid, it got the honest relays that forwarded it graylisted.
#[test]
fn junk_inside_a_valid_outer_layer_is_ignored_not_penalised() {
    let mut rng = rand::rng();
    let mut victim = engine(EngineConfig::default().quotas);
    let mut relay = engine(EngineConfig::default().quotas);
    let card = victim
        .keyring_mut()
        .identity_mut()
        .contact_card(None, T0, 1)
        .unwrap();
    let victim_key = *card.identity_key();
    let mut attacker = Keyring::new(Identity::generate(&mut rng));
    let _ = attacker.add_contact(card, Trust::Unverified).unwrap();
    // Someone else's card inside: the victim's check fails after the outer
    // layer opened.
    let someone = Identity::generate(&mut rng)
        .contact_card(None, T0, 0)
        .unwrap();
    let mut junk_request = attacker
        .seal_contact_request(&victim_key, &someone, "hi", T0 + DAY, &mut rng)
        .unwrap();
    junk_request.hop_limit = 8;
    let bytes = proto::encode(&junk_request);
    up(&mut relay, 1, 1, false);
    up(&mut victim, 1, 1, false);
    assert_eq!(
        gossip(&mut relay, 1, &bytes, T0),
        Verdict::Accept,
        "relays carry it"
    );
    assert_eq!(gossip(&mut victim, 1, &bytes, T0), Verdict::Ignore);
    assert_eq!(victim.counters().unreadable, 1, "counted, not silent");
    assert_eq!(victim.counters().invalid, 0);

    // The same over sync: the batch is not reported invalid either.
    let mut again = attacker
        .seal_contact_request(&victim_key, &someone, "hi", T0 + DAY, &mut rng)
        .unwrap();
    again.hop_limit = 8;
    let frame = proto::encode(&v1::SyncFrame {
        version: limits::WIRE_VERSION,
        kind: Some(v1::sync_frame::Kind::Envelopes(v1::EnvelopeBatch {
            envelopes: vec![again],
        })),
    });
    let verdict = victim
        .handle(
            Input::Frame {
                from: PeerId(1),
                bytes: &frame,
            },
            T0,
        )
        .unwrap();
    assert_ne!(verdict, Verdict::Reject);
    assert_eq!(victim.counters().unreadable, 2);

    // What any relay can check is still penalised: a forged content ID.
    let mut forged = junk_request.clone();
    forged.content_id = vec![0; 32];
    assert_eq!(
        gossip(&mut victim, 1, &proto::encode(&forged), T0),
        Verdict::Reject
    );
}

/// A lifetime longer than this node carries but within the protocol's
/// limit is another node's policy (or another clock), not misbehaviour.
#[test]
fn lifetimes_beyond_our_limit_are_ignored_and_beyond_the_protocols_rejected() {
    let mut a = engine(EngineConfig::default().quotas);
    up(&mut a, 1, 1, false);
    let ours = EngineConfig::default().max_ttl_secs;
    assert_eq!(
        gossip(&mut a, 1, &junk(T0 + ours + DAY), T0),
        Verdict::Ignore
    );
    assert_eq!(a.counters().too_long_lived, 1);
    let beyond = limits::MAX_LIFETIME_SECS + limits::MAX_CLOCK_SKEW_SECS + 1;
    assert_eq!(gossip(&mut a, 1, &junk(T0 + beyond), T0), Verdict::Reject);
    assert_eq!(a.counters().invalid, 1);
}

/// Only envelopes whose proof is about to go out are kept by their
/// recipient (for one proof delay): kept without one, a card holder's
/// contact requests would fill the store past every quota.
#[test]
fn a_recipient_keeps_no_contact_requests_past_its_quotas() {
    let mut rng = rand::rng();
    let mut victim = engine(EngineConfig::default().quotas);
    up(&mut victim, 1, 1, false);
    let card = victim
        .keyring_mut()
        .identity_mut()
        .contact_card(None, T0, 1)
        .unwrap();
    for _ in 0..5 {
        let mut sender = Keyring::new(Identity::generate(&mut rng));
        let ours = sender.identity_mut().contact_card(None, T0, 0).unwrap();
        let _ = sender.add_contact(card.clone(), Trust::Unverified).unwrap();
        let mut request = sender
            .seal_contact_request(card.identity_key(), &ours, "hi", T0 + 10 * DAY, &mut rng)
            .unwrap();
        request.hop_limit = 8;
        gossip(&mut victim, 1, &proto::encode(&request), T0);
    }
    let requests = std::iter::from_fn(|| victim.poll_output())
        .filter(|o| matches!(o, Output::Event(Event::ContactRequest { .. })))
        .count();
    assert_eq!(requests, 5, "the requests were opened");
    assert_eq!(victim.held_count(), 0, "and none is kept in custody");
}

/// Anyone who saw a recipient tag can fill its quota with junk under that
/// tag; another source's mail to the same tag still gets in, displacing
/// the flooder's, and the flooder cannot take the room back.
#[test]
fn one_source_cannot_keep_a_tags_quota_against_others() {
    let mut a = engine(Quotas {
        global_bytes: 1 << 20,
        per_tag_bytes: 16 * 1024,
        per_peer_bytes: 1 << 20,
    });
    let tag: [u8; 16] = rand::rng().random();
    let to_tag = |expiry: u64| {
        let mut e = proto::decode::<v1::Envelope>(&junk(expiry)).unwrap();
        e.recipient_tag = tag.to_vec();
        e.content_id = tags::content_id_of(&e).to_vec();
        proto::encode(&e)
    };
    up(&mut a, 1, 1, false);
    for _ in 0..20 {
        gossip(&mut a, 1, &to_tag(T0 + 14 * DAY), T0);
    }
    assert!(refusals(&mut a).contains(&RejectReason::TagQuota));
    up(&mut a, 2, 2, false);
    let honest: Vec<Vec<u8>> = (0..3).map(|_| to_tag(T0 + DAY)).collect();
    for bytes in &honest {
        assert_eq!(gossip(&mut a, 2, bytes, T0), Verdict::Accept);
    }
    assert!(refusals(&mut a).is_empty(), "the second source got in");
    for _ in 0..10 {
        gossip(&mut a, 1, &to_tag(T0 + 14 * DAY), T0);
    }
    assert!(refusals(&mut a).contains(&RejectReason::TagQuota));
    for bytes in &honest {
        let id = tags::content_id_of(&proto::decode::<v1::Envelope>(bytes).unwrap());
        assert!(a.holds(&id), "the second source's mail stays");
    }
}
