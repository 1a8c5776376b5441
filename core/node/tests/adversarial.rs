//! Adversaries on the wire, as raw libp2p gossipsub peers beside real
//! Ferry nodes: a flooder (threat item 12) and a recording observer next
//! to a relay (threat item 1).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_core::{
    contact::ContactCard,
    crypto::{Keyring, Trust, tags},
    identity::Identity,
    proto::{self, v1},
};
use ferry_node::{
    EngineConfig, GossipParams, Multiaddr, PeerId, Quotas, SendOptions, bench_support,
};
use futures::StreamExt as _;
use libp2p::{gossipsub, swarm::SwarmEvent};
use rand::RngExt as _;
use support::*;
use tokio::sync::mpsc;

enum Raw {
    Publish(Vec<u8>),
}

/// A bare gossipsub peer on the Ferry topic: records every message it
/// receives (it accepts them all) and publishes what it is told to.
/// Every gossip message a raw peer received.
type Recorded = Arc<Mutex<Vec<Vec<u8>>>>;

fn raw_peer(dial: Vec<Multiaddr>) -> (PeerId, mpsc::Sender<Raw>, Recorded) {
    let config = bench_support::gossipsub_config(&GossipParams::default()).unwrap();
    let mut swarm = support::attacker::tcp_swarm(
        |_| support::attacker::raw_gossipsub(config),
        Duration::from_secs(3600),
    );
    let topic = gossipsub::IdentTopic::new(bench_support::TOPIC);
    swarm.behaviour_mut().subscribe(&topic).unwrap();
    for address in dial {
        swarm.dial(address).unwrap();
    }
    let peer_id = *swarm.local_peer_id();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = mpsc::channel::<Raw>(1024);
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Raw::Publish(bytes)) => {
                        let _ = swarm.behaviour_mut().publish(topic.clone(), bytes);
                    }
                    None => break,
                },
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message {
                        propagation_source, message_id, message,
                    }) = event {
                        record.lock().unwrap().push(message.data);
                        swarm.behaviour_mut().report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Accept,
                        );
                    }
                }
            }
        }
    });
    (peer_id, tx, seen)
}

fn now() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Well-formed envelopes (correct content IDs, sealed to three strangers):
/// only quotas stop them.
fn valid_spam(count: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rng();
    let mut keyring = Keyring::new(Identity::generate(&mut rng));
    let mut victims = Vec::new();
    for _ in 0..3 {
        let mut victim = Identity::generate(&mut rng);
        let card = victim.contact_card(None, now(), 1).unwrap();
        victims.push(*card.identity_key());
        let _ = keyring.add_contact(card, Trust::Unverified).unwrap();
    }
    (0..count)
        .map(|i| {
            let payload = v1::Payload {
                kind: Some(v1::payload::Kind::Text(v1::TextMessage {
                    message_id: vec![0; 16],
                    sent_at: now(),
                    body: vec![0x5a; 1200],
                    delivery_secret: vec![0; 16],
                })),
            };
            let mut envelope = keyring
                .seal(
                    &victims[i % victims.len()],
                    &payload,
                    now() + 3600,
                    &mut rng,
                )
                .unwrap();
            envelope.hop_limit = 16;
            proto::encode(&envelope)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_is_graylisted_and_honest_mail_still_arrives() {
    let root = tempfile::tempdir().unwrap();
    let engine = EngineConfig {
        // A flood aimed at a few recipients fills their tags' quotas and
        // nothing else: honest mail travels under other tags.
        quotas: Quotas {
            per_tag_bytes: 128 * 1024,
            ..EngineConfig::default().quotas
        },
        ..EngineConfig::default()
    };
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(spawn_with(root.path(), &format!("n{i}"), |b| b.engine(engine)).await);
    }
    for i in 0..6 {
        connect(&nodes[i], &nodes[(i + 1) % 6]).await;
    }
    for (a, b) in [(0, 3), (1, 4), (2, 5)] {
        introduce(&nodes[a], &nodes[b]).await;
    }
    let (spammer, spam, _) = raw_peer(vec![nodes[0].addr.clone(), nodes[3].addr.clone()]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_connected(&refs, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The flood: well-formed envelopes past the per-peer quota, then
    // garbage, interleaved with honest traffic.
    let valid = valid_spam(300);
    let mut honest = Vec::new();
    for round in 0..20 {
        // First the well-formed flood (quotas stop it), then garbage
        // (scoring stops it: once graylisted, nothing more gets in).
        if round < 10 {
            for bytes in valid.iter().skip(round * 30).take(30) {
                spam.send(Raw::Publish(bytes.clone())).await.unwrap();
            }
        } else {
            for _ in 0..3 {
                let mut garbage = vec![0u8; 1500];
                rand::rng().fill(&mut garbage[..]);
                spam.send(Raw::Publish(garbage)).await.unwrap();
            }
        }
        for (a, b) in [(0, 3), (3, 0), (1, 4), (4, 1), (2, 5), (5, 2)] {
            let body = format!("honest {round} {a}->{b}").into_bytes();
            let id = nodes[a]
                .node
                .send(&nodes[b].node.identity(), &body)
                .await
                .unwrap();
            honest.push((b, id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Honest delivery stays at or above 99%.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered = honest
            .iter()
            .filter(|(b, id)| {
                nodes[*b]
                    .log
                    .lock()
                    .unwrap()
                    .received
                    .iter()
                    .any(|r| r.1 == *id)
            })
            .count();
        if delivered == honest.len() || tokio::time::Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ratio = delivered as f64 / honest.len() as f64;
    println!(
        "honest delivery under flood: {delivered}/{} = {ratio:.3}",
        honest.len()
    );
    assert!(ratio >= 0.99, "honest delivery {ratio}");
    // The flooder is graylisted by both of its neighbours.
    for i in [0, 3] {
        let score = nodes[i]
            .node
            .peer_score(spammer)
            .await
            .unwrap()
            .unwrap_or(0.0);
        println!("flooder's score at node {i}: {score:.1}");
        assert!(score < -80.0, "node {i} scores the flooder {score}");
        let s = stats(&nodes[i]).await;
        assert!(s.gossip_rejected > 0);
        assert!(s.engine.rejected_quota > 0, "quota refused the valid flood");
        assert!(
            s.held_bytes < 3 * 128 * 1024 + 256 * 1024,
            "tag quotas bounded custody: {} bytes held",
            s.held_bytes
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_sees_no_identities_and_tags_rotate() {
    let root = tempfile::tempdir().unwrap();
    let relay = spawn_with(root.path(), "relay", |b| b.relay()).await;
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    connect(&a, &relay).await;
    connect(&b, &relay).await;
    let code_a = a.node.contact_code().await.unwrap();
    let code_b = b.node.contact_code().await.unwrap();
    a.node.add_contact(&code_b).await.unwrap();
    b.node.add_contact(&code_a).await.unwrap();
    let (_, _observer, seen) = raw_peer(vec![relay.addr.clone()]);
    wait_connected(&[&a, &b], 1).await;
    let r = relay.node.clone();
    wait_until(20, "relay sees a, b and the observer", || {
        let r = r.clone();
        async move {
            let peers = r.connected_peers().await.unwrap();
            peers.len() >= 3
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let marker = b"PLAINTEXT-MARKER-7f3a";
    let mut ids = Vec::new();
    for (i, ttl) in [3600u64, 3600, 3600, 13 * 3600, 13 * 3600, 13 * 3600]
        .into_iter()
        .enumerate()
    {
        let mut body = marker.to_vec();
        body.extend_from_slice(format!(" {i}").as_bytes());
        let options = SendOptions {
            ttl_secs: Some(ttl),
        };
        ids.push(
            a.node
                .send_with(&b.node.identity(), &body, options)
                .await
                .unwrap(),
        );
    }
    wait_until(30, "all receipts", || {
        let log = a.log.clone();
        let ids = ids.clone();
        async move {
            let log = log.lock().unwrap();
            ids.iter().all(|id| log.delivered.contains(id))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What must never appear: plaintext, identity and encryption keys from
    // both cards, and the network IDs of everyone involved.
    let mut secrets: Vec<(String, Vec<u8>)> = vec![("plaintext".into(), marker.to_vec())];
    for (who, code) in [("a", &code_a), ("b", &code_b)] {
        let card = ContactCard::from_code(code).unwrap();
        secrets.push((
            format!("{who} identity key"),
            card.identity_key().to_bytes().to_vec(),
        ));
        secrets.push((
            format!("{who} request key"),
            card.request_key().as_bytes().to_vec(),
        ));
        secrets.push((
            format!("{who} olm key"),
            card.olm_identity_key().as_bytes().to_vec(),
        ));
        secrets.push((
            format!("{who} fallback key"),
            card.fallback_key().as_bytes().to_vec(),
        ));
    }
    for (who, peer) in [
        ("a", a.node.peer_id()),
        ("b", b.node.peer_id()),
        ("relay", relay.node.peer_id()),
    ] {
        let bytes = peer.to_bytes();
        // The Ed25519 key inside the PeerId is its last 32 bytes.
        secrets.push((
            format!("{who} peer key"),
            bytes[bytes.len() - 32..].to_vec(),
        ));
    }
    let seen = seen.lock().unwrap().clone();
    // Six messages and their receipts (batched per contact, so at least one).
    assert!(seen.len() >= 7, "the observer saw {} messages", seen.len());
    for message in &seen {
        for (what, needle) in &secrets {
            // Any 12-byte window of a key would be a leak.
            for window in needle.windows(12.min(needle.len())) {
                assert!(
                    !message.windows(window.len()).any(|w| w == window),
                    "{what} visible on the wire"
                );
            }
        }
    }
    // Recipient tags differ between epochs.
    let mut by_epoch: std::collections::BTreeMap<u64, std::collections::BTreeSet<Vec<u8>>> =
        Default::default();
    for message in &seen {
        let envelope = proto::decode::<v1::Envelope>(message).unwrap();
        by_epoch
            .entry(tags::epoch_of(envelope.expiry))
            .or_default()
            .insert(envelope.recipient_tag);
    }
    assert!(by_epoch.len() >= 2, "messages in two tag epochs");
    let epochs: Vec<_> = by_epoch.values().collect();
    for (i, x) in epochs.iter().enumerate() {
        for y in epochs.iter().skip(i + 1) {
            assert!(x.is_disjoint(y), "a tag repeated across epochs");
        }
    }
}

/// Threat item 22: anyone holding the victim's card can seal an envelope
/// every relay accepts and only the victim finds unreadable. The victim
/// must not penalise the honest relay that forwarded it: before the fix,
/// three such envelopes graylisted the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_holders_junk_requests_do_not_get_honest_relays_penalised() {
    let root = tempfile::tempdir().unwrap();
    let victim = spawn(root.path(), "victim").await;
    let relay = spawn(root.path(), "relay").await;
    connect(&relay, &victim).await;
    let (_, attacker, _) = raw_peer(vec![relay.addr.clone()]);
    wait_connected(&[&relay], 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rng = rand::rng();
    let card = ContactCard::from_code(&victim.node.contact_code().await.unwrap()).unwrap();
    let victim_key = *card.identity_key();
    let mut keyring = Keyring::new(Identity::generate(&mut rng));
    let _ = keyring.add_contact(card, Trust::Unverified).unwrap();
    let someone = Identity::generate(&mut rng)
        .contact_card(None, now(), 0)
        .unwrap();
    for _ in 0..6 {
        let mut junk = keyring
            .seal_contact_request(&victim_key, &someone, "hello", now() + 3600, &mut rng)
            .unwrap();
        junk.hop_limit = 16;
        attacker
            .send(Raw::Publish(proto::encode(&junk)))
            .await
            .unwrap();
    }
    let v = victim.node.clone();
    wait_until(30, "the junk reaches the victim", || {
        let v = v.clone();
        async move { v.stats().await.unwrap().engine.unreadable >= 6 }
    })
    .await;
    let relay_id = relay.node.peer_id();
    let score = victim
        .node
        .peer_score(relay_id)
        .await
        .unwrap()
        .unwrap_or(0.0);
    println!("the relay's score at the victim: {score:.1}");
    assert!(
        score >= 0.0,
        "the victim penalised the honest relay: {score}"
    );
    assert_eq!(stats(&victim).await.gossip_rejected, 0);
    assert!(
        victim
            .node
            .connected_peers()
            .await
            .unwrap()
            .contains(&relay_id)
    );
}

/// A stranger who saw an envelope on gossip sends a node mutated copies of
/// it first: one claiming a wrong content ID (invalid), one with its hop
/// limit cut to 1 (ignored, as out of hops). Gossipsub marks an ID as seen
/// before validation and counts later copies of an invalid ID as invalid
/// deliveries, so with the content ID as gossip ID the real envelope was
/// dropped as a duplicate and the honest peer that forwarded it was
/// penalised. Now neither mutation shares the real envelope's gossip ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutated_copy_cannot_shadow_the_real_envelope_or_get_its_forwarder_penalised() {
    let root = tempfile::tempdir().unwrap();
    let victim = spawn(root.path(), "victim").await;
    let (_, attacker, _) = raw_peer(vec![victim.addr.clone()]);
    let (honest_id, honest, _) = raw_peer(vec![victim.addr.clone()]);
    wait_connected(&[&victim], 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let genuine = valid_spam(2);
    let mut forged = proto::decode::<v1::Envelope>(&genuine[0]).unwrap();
    forged.content_id[0] ^= 1;
    let mut cut = proto::decode::<v1::Envelope>(&genuine[1]).unwrap();
    cut.hop_limit = 1;
    for bytes in [proto::encode(&forged), proto::encode(&cut)] {
        attacker.send(Raw::Publish(bytes)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for bytes in &genuine {
        honest.send(Raw::Publish(bytes.clone())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let score = victim
        .node
        .peer_score(honest_id)
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert!(score >= 0.0, "the honest forwarder is penalised: {score}");
    let held = stats(&victim).await.held_envelopes;
    assert_eq!(held, 2, "a mutated copy shadowed the real envelope");
}
