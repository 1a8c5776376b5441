//! A relay on the open Internet, attacked: silent sockets, Sybils from one
//! network, huge frame claims, junk subscriptions, event churn, and a peer
//! behind a relay that must not leak its address. Real sockets on
//! loopback; attackers originate from other 127.x.y.z addresses, which the
//! node treats like any other network (only 127.0.0.1 and ::1, where a
//! local pluggable-transport server forwards from, are exempt).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::Ordering,
    time::Duration,
};

use ferry_node::{
    EngineConfig, KdfParams, Limits, Multiaddr, Node, NodeEvent, PeerId, Quotas, bench_support,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    StreamProtocol, gossipsub, identify,
    multiaddr::Protocol,
    relay, request_response,
    swarm::{NetworkBehaviour, SwarmEvent},
};
use support::{attacker::*, *};

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A relay on loopback (announcing its loopback address, as a LAN relay
/// would) and the circuit address to listen on through it.
async fn relay_with_circuit(root: &std::path::Path) -> (TestNode, Multiaddr) {
    let relay = spawn_with(root, "relay", |b| b.relay().advertise_local_addresses(true)).await;
    let circuit = relay.addr.clone().with(Protocol::P2pCircuit);
    (relay, circuit)
}

/// Finding 1: 200 sockets that never speak, from one network, once locked
/// every inbound connection (128 pending slots, 20 s handshakes). Now one
/// source holds at most 8 pending slots, each for 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_one_network_cannot_lock_the_door() {
    let root = tempfile::tempdir().unwrap();
    let relay = spawn_with(root.path(), "relay", |b| b.relay()).await;
    let target = socket_addr(&relay.addr);
    let mut sockets = Vec::new();
    for i in 0..200u32 {
        let source = ip(127, 66, 0, 1 + (i % 250) as u8);
        if let Ok(s) = silent_socket(source, target).await {
            sockets.push(s);
        }
    }
    assert!(
        sockets.len() >= 150,
        "the attacker's sockets connect at TCP level"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An honest client gets in at once.
    let honest = spawn(root.path(), "honest").await;
    let started = tokio::time::Instant::now();
    connect(&honest, &relay).await;
    let node = honest.node.clone();
    let relay_id = relay.node.peer_id();
    wait_until(
        3,
        "the honest client connects despite 200 silent sockets",
        || {
            let node = node.clone();
            async move { node.connected_peers().await.unwrap().contains(&relay_id) }
        },
    )
    .await;
    eprintln!("honest client connected in {:?}", started.elapsed());
    let refused = stats(&relay).await.connections_refused;
    assert!(
        refused.pending_per_source + refused.rate >= 150,
        "the gate refuses the attacker's sockets beyond its share: {refused:?}"
    );
    // The sockets the gate let in are cut when the 5 s handshake runs out.
    let mut cut = 0;
    for socket in sockets.iter_mut().take(20) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                if socket.readable().await.is_err() {
                    return;
                }
                match socket.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        if read.is_ok() {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 20,
        "every silent socket is closed within the handshake timeout"
    );
}

/// Finding 2: one host with free PeerIds took every connection slot, took
/// over the gossip mesh, and kept the relay from dialling out. Now one
/// network holds at most `max_per_source` connections, peers crowding one
/// IP address are scored down, and outbound slots stay free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_get_a_bounded_share_and_outbound_slots_stay_free() {
    let root = tempfile::tempdir().unwrap();
    let friend = spawn(root.path(), "friend").await;
    let limits = Limits {
        max_connections: 48,
        reserved_outbound: 8,
        ..Limits::relay()
    };
    let per_source = limits.max_per_source as usize;
    let relay = spawn_with(root.path(), "relay", |b| b.relay().limits(limits)).await;
    // 30 Sybils from one address, slowly enough that the rate limit is not
    // what stops them.
    let mut first = Vec::new();
    for _ in 0..30 {
        first.push(sybil(ip(127, 66, 0, 1), relay.addr.clone()));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected: Vec<PeerId> = first
        .iter()
        .filter(|(_, up)| up.load(Ordering::SeqCst))
        .map(|(p, _)| *p)
        .collect();
    let s = stats(&relay).await;
    assert!(
        connected.len() <= per_source && s.inbound_connections as usize <= per_source,
        "one network holds {} connections (limit {per_source}); {:?}",
        connected.len(),
        s.connections_refused
    );
    assert!(
        s.connections_refused.per_source >= 10,
        "{:?}",
        s.connections_refused
    );
    // Crowding one IP address costs gossip score: the mesh is not theirs.
    let score = relay
        .node
        .peer_score(connected[0])
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert!(score < -80.0, "a Sybil on a crowded address scores {score}");
    // Sybils from four more networks fill the inbound slots…
    let mut more = Vec::new();
    for net in 1..=4u8 {
        for host in 0..10u8 {
            more.push(sybil(ip(127, 66, net, 1 + host), relay.addr.clone()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = stats(&relay).await;
    assert!(s.inbound_connections <= 40, "{}", s.inbound_connections);
    assert!(
        s.connections_refused.inbound_full > 0,
        "{:?}",
        s.connections_refused
    );
    // …and the relay can still dial out.
    relay.node.dial(friend.addr.clone()).await.unwrap();
    let node = relay.node.clone();
    let friend_id = friend.node.peer_id();
    wait_until(5, "the relay dials out with its inbound slots full", || {
        let node = node.clone();
        async move { node.connected_peers().await.unwrap().contains(&friend_id) }
    })
    .await;
    drop((first, more));
}

/// Finding 5: the link codec allocated the whole claimed frame after four
/// bytes, on up to 64 streams per connection. Now buffers grow with what
/// arrives, from a node-wide budget, on at most 8 streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frame_claims_tie_up_only_what_is_sent() {
    let root = tempfile::tempdir().unwrap();
    let node = spawn(root.path(), "node").await;
    let driver = claim_frames(node.addr.clone(), node.node.peer_id(), 64);
    let n = node.node.clone();
    wait_until(10, "the node reads the claimed frames", || {
        let n = n.clone();
        async move { n.stats().await.unwrap().frame_buffer_bytes > 0 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = stats(&node).await.frame_buffer_bytes;
    assert!(
        held <= 8 * 16 * 1024,
        "64 claims of 1 MiB with 100 bytes sent hold {held} bytes"
    );
    // A frame that stops arriving is cut within its chunk timeout (5 s):
    // holding budget costs sending it.
    let n = node.node.clone();
    wait_until(
        10,
        "stalled frames are cut and their budget returned",
        || {
            let n = n.clone();
            async move { n.stats().await.unwrap().frame_buffer_bytes == 0 }
        },
    )
    .await;
    driver.abort();
}

/// A raw gossipsub peer the test drives: subscribe and unsubscribe topics.
enum SubCommand {
    Subscribe(String),
    Unsubscribe(String),
}

/// Finding 4: any subscription, to any topic, replayed the whole queue of
/// envelopes waiting for a gossip peer. Now only a new subscriber to
/// Ferry's topic does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_subscriptions_do_not_replay_the_waiting_envelopes() {
    let root = tempfile::tempdir().unwrap();
    let node = spawn(root.path(), "node").await;
    let other = spawn(root.path(), "other").await;
    let code = other.node.contact_code().await.unwrap();
    let contact = node.node.add_contact(&code).await.unwrap();
    other.node.shutdown().await;
    for i in 0..100 {
        node.node
            .send(&contact, format!("waiting {i}").as_bytes())
            .await
            .unwrap();
    }
    assert!(stats(&node).await.pending_publish >= 100);
    let config = bench_support::gossipsub_config(&ferry_node::GossipParams::default()).unwrap();
    let mut swarm = tcp_swarm(|_| raw_gossipsub(config), Duration::from_secs(600));
    swarm.dial(node.addr.clone()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SubCommand>(1024);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(SubCommand::Subscribe(t)) => {
                        let _ = swarm.behaviour_mut().subscribe(&gossipsub::IdentTopic::new(t));
                    }
                    Some(SubCommand::Unsubscribe(t)) => {
                        swarm.behaviour_mut().unsubscribe(&gossipsub::IdentTopic::new(t));
                    }
                    None => break,
                },
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message { .. }) = event {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    let n = node.node.clone();
    wait_until(5, "the attacker is connected", || {
        let n = n.clone();
        async move { n.connected_peers().await.unwrap().len() == 1 }
    })
    .await;
    for i in 0..300 {
        let topic = format!("junk/{i}");
        tx.send(SubCommand::Subscribe(topic.clone())).await.unwrap();
        tx.send(SubCommand::Unsubscribe(topic)).await.unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stats(&node).await.pending_publish_flushes,
        0,
        "junk subscriptions replay the waiting envelopes"
    );
    // A real subscriber to Ferry's topic gets them, in one flush.
    tx.send(SubCommand::Subscribe(bench_support::TOPIC.into()))
        .await
        .unwrap();
    wait_until(10, "the waiting envelopes reach the subscriber", || {
        let received = received.clone();
        async move { received.load(Ordering::SeqCst) >= 100 }
    })
    .await;
    assert_eq!(stats(&node).await.pending_publish_flushes, 1);
}

/// Finding 6: connection churn anyone can cause filled the app's queue and
/// pushed out receipts and safety events, which are never sent again. Now
/// churn has its own queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_cannot_push_a_receipt_out_of_the_queue() {
    let root = tempfile::tempdir().unwrap();
    let da = root.path().join("a");
    let a = Node::start(builder(&da).event_queue(16).build().unwrap())
        .await
        .unwrap();
    let mut events = a.events().unwrap();
    let a_addr = a.listen_addrs().await.unwrap().remove(0);
    let b = spawn(root.path(), "b").await;
    let code_b = b.node.contact_code().await.unwrap();
    let b_key = a.add_contact(&code_b).await.unwrap();
    b.node
        .add_contact(&a.contact_code().await.unwrap())
        .await
        .unwrap();
    // The attacker connects and leaves 30 times: 60 churn events, while
    // the app is busy and reads nothing.
    for _ in 0..30 {
        let mut swarm = tcp_swarm(
            |key| identify::Behaviour::new(identify::Config::new("/x/1".into(), key.public())),
            Duration::from_secs(60),
        );
        swarm.dial(a_addr.clone()).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                    return;
                }
            }
        })
        .await;
        // Let the node see the connection up before it goes down.
        let _ = tokio::time::timeout(Duration::from_millis(150), swarm.select_next_some()).await;
        drop(swarm);
    }
    a.dial(b.addr.clone()).await.unwrap();
    let id = a.send(&b_key, b"does this arrive?").await.unwrap();
    wait_until(20, "B got it", || {
        let log = b.log.clone();
        async move { log.lock().unwrap().received.iter().any(|r| r.1 == id) }
    })
    .await;
    // Give the receipt time to come back, still without reading.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut delivered = false;
    while let Some(event) = events.try_next() {
        if let NodeEvent::MessageStatus {
            message_id,
            status: ferry_node::MessageStatus::Delivered,
        } = event
        {
            delivered |= message_id == id;
        }
    }
    assert!(delivered, "the receipt survived the churn");
    let s = a.stats().await.unwrap();
    assert!(
        s.churn_events_dropped > 0,
        "the churn overflowed its queue: {s:?}"
    );
}

#[derive(NetworkBehaviour)]
struct Observer {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
}

/// Finding 8: a node reached through a relay told whoever connected its
/// addresses (identify, and DCUtR's observed address). In relay-only
/// privacy it announces no address of its own and does not speak DCUtR or
/// autonat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_client_tells_a_relayed_stranger_no_address() {
    let root = tempfile::tempdir().unwrap();
    let (_relay, circuit) = relay_with_circuit(root.path()).await;
    let db = root.path().join("b");
    let b = start(
        builder(&db).listen_on(circuit.clone()).relay_only(true),
        &db,
    )
    .await;
    let b_id = b.node.peer_id();
    let mut swarm = relayed_swarm(
        |key, relay| Observer {
            relay,
            identify: identify::Behaviour::new(identify::Config::new(
                "/observer/1".into(),
                key.public(),
            )),
        },
        Duration::from_secs(60),
    );
    swarm.dial(circuit.with(Protocol::P2p(b_id))).unwrap();
    let info = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let SwarmEvent::Behaviour(ObserverEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) = swarm.select_next_some().await
                && peer_id == b_id
            {
                return info;
            }
        }
    })
    .await
    .expect("B's identify info over the circuit");
    assert!(
        info.listen_addrs
            .iter()
            .all(|a| a.iter().any(|p| p == Protocol::P2pCircuit)),
        "B announces an address of its own: {:?}",
        info.listen_addrs
    );
    let protocols: Vec<String> = info.protocols.iter().map(|p| p.to_string()).collect();
    assert!(
        !protocols
            .iter()
            .any(|p| p.contains("dcutr") || p.contains("autonat")),
        "B offers hole punching or autonat: {protocols:?}"
    );
}

/// Finding 3: relay circuits were capped at 128 KiB and 2 minutes, less
/// than one backlog of Ferry's own sync frames. A relayed client now
/// syncs a backlog well beyond that through the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_client_syncs_a_backlog_beyond_128_kib() {
    let root = tempfile::tempdir().unwrap();
    // The relay can hold almost none of the backlog itself, so it crosses
    // the circuit.
    let tiny = ferry_core::proto::limits::MAX_ENVELOPE_LEN as u64;
    let relay = spawn_with(root.path(), "relay", |b| {
        b.relay()
            .advertise_local_addresses(true)
            .engine(EngineConfig {
                quotas: Quotas {
                    global_bytes: tiny,
                    per_tag_bytes: tiny,
                    per_peer_bytes: tiny,
                },
                ..EngineConfig::default()
            })
    })
    .await;
    let circuit = relay.addr.clone().with(Protocol::P2pCircuit);
    let db = root.path().join("b");
    let b = start(
        builder(&db).listen_on(circuit.clone()).relay_only(true),
        &db,
    )
    .await;
    let a = spawn_with(root.path(), "a", |b| b.relay_only(true)).await;
    introduce(&a, &b).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut body = format!("backlog {i} ").into_bytes();
        body.resize(7000, b'.');
        ids.push(a.node.send(&b.node.identity(), &body).await.unwrap());
    }
    let b_id = b.node.peer_id();
    a.node
        .dial(circuit.with(Protocol::P2p(b_id)))
        .await
        .unwrap();
    wait_until(60, "the whole backlog crosses the circuit", || {
        let log = b.log.clone();
        let ids = ids.clone();
        async move {
            let log = log.lock().unwrap();
            ids.iter().all(|id| log.received.iter().any(|r| r.1 == *id))
        }
    })
    .await;
    let held = stats(&relay).await.held_bytes;
    assert!(held <= tiny, "the relay held {held} bytes");
}

/// Limits that cannot work are refused at build time; relays get their
/// own limits and no flood publishing.
#[test]
fn limits_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let base = || {
        Node::builder()
            .storage(dir.path(), "p")
            .kdf(KdfParams::insecure_for_tests())
    };
    for bad in [
        Limits {
            reserved_outbound: 128,
            ..Limits::client()
        },
        Limits {
            max_per_source: 0,
            ..Limits::client()
        },
        Limits {
            handshake_timeout: Duration::ZERO,
            ..Limits::client()
        },
        Limits {
            max_frame_buffer_bytes: 1000,
            ..Limits::client()
        },
    ] {
        assert_eq!(
            base().limits(bad).build().unwrap_err(),
            ferry_node::ConfigError::Limits
        );
    }
    let relay = base().relay().build().unwrap();
    assert!(!relay.gossip().flood_publish, "relays do not flood-publish");
    assert_eq!(relay.limits(), &Limits::relay());
}

/// The attacker's side of DCUtR: answers a hole-punch CONNECT with the
/// addresses it wants its victim to dial.
#[derive(Clone, Default)]
struct PunchCodec {
    addresses: std::sync::Arc<Vec<Multiaddr>>,
}

/// One protobuf `HolePunch { type = CONNECT, obs_addrs }`, length-prefixed
/// (unsigned varint), as DCUtR frames it.
fn connect_message(addresses: &[Multiaddr]) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = vec![0x08, 100]; // type = CONNECT
    for a in addresses {
        let bytes = a.to_vec();
        body.push(0x12);
        varint(bytes.len(), &mut body);
        body.extend_from_slice(&bytes);
    }
    let mut framed = Vec::new();
    varint(body.len(), &mut framed);
    framed.extend_from_slice(&body);
    framed
}

impl request_response::Codec for PunchCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        // The victim's CONNECT: a varint length, then that many bytes.
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut byte = [0u8; 1];
            io.read_exact(&mut byte).await?;
            len |= usize::from(byte[0] & 0x7f) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len.min(4096)];
        io.read_exact(&mut body).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&connect_message(&self.addresses)).await?;
        io.flush().await?;
        // Keep the stream open while the victim sends SYNC and dials.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    }
}

#[derive(NetworkBehaviour)]
struct Puncher {
    relay: relay::client::Behaviour,
    punch: request_response::Behaviour<PunchCodec>,
}

/// Finding 9: a peer at the other end of a relayed connection chose what
/// the node dialled for hole punching: any number of addresses, LAN and
/// loopback included. Now an attempt naming non-global addresses (or more
/// than 8) is refused whole: the trap on loopback is never dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_punch_cannot_make_the_node_dial_a_local_address() {
    let root = tempfile::tempdir().unwrap();
    let (_relay, circuit) = relay_with_circuit(root.path()).await;
    let dv = root.path().join("victim");
    let victim = start(builder(&dv).listen_on(circuit.clone()), &dv).await;
    let v_id = victim.node.peer_id();
    // The trap: a local service the attacker wants the victim to touch.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let touched = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = touched.clone();
    tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut addresses: Vec<Multiaddr> =
        vec![format!("/ip4/127.0.0.1/tcp/{trap_port}").parse().unwrap()];
    for i in 1..=40u8 {
        addresses.push(format!("/ip4/10.0.{i}.1/tcp/80").parse().unwrap());
    }
    let addresses = std::sync::Arc::new(addresses);
    let mut swarm = relayed_swarm(
        |_, relay| Puncher {
            relay,
            punch: request_response::Behaviour::with_codec(
                PunchCodec { addresses },
                [(
                    StreamProtocol::new("/libp2p/dcutr"),
                    request_response::ProtocolSupport::Inbound,
                )],
                request_response::Config::default(),
            ),
        },
        Duration::from_secs(60),
    );
    swarm.dial(circuit.with(Protocol::P2p(v_id))).unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = answered.clone();
    let driver = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(PuncherEvent::Punch(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) = swarm.select_next_some().await
            {
                let _ = swarm.behaviour_mut().punch.send_response(channel, ());
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    wait_until(
        20,
        "the victim starts a hole punch with the attacker",
        || {
            let answered = answered.clone();
            async move { answered.load(Ordering::SeqCst) }
        },
    )
    .await;
    let n = victim.node.clone();
    wait_until(10, "the victim refuses the attacker's candidates", || {
        let n = n.clone();
        async move { n.stats().await.unwrap().hole_punches_refused > 0 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        touched.load(Ordering::SeqCst),
        0,
        "the victim dialled the attacker's local target"
    );
    driver.abort();
}

/// Finding 3: 128 relay reservations, which three addresses filled (and
/// renewals then failed for honest clients). Now one network holds at most
/// its connection share of reservations, and an honest client still gets
/// one after a flood of 150 from three addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_flood_from_three_addresses_leaves_room_for_honest_clients() {
    let root = tempfile::tempdir().unwrap();
    let (relay, _) = relay_with_circuit(root.path()).await;
    let per_source = Limits::relay().max_per_source as usize;
    let mut sybils = Vec::new();
    for i in 0..150u8 {
        sybils.push(reserving_sybil(
            ip(127, 66, 0, 1 + i % 3),
            relay.addr.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = sybils
        .iter()
        .filter(|(_, r)| r.load(Ordering::SeqCst))
        .count();
    assert!(
        held <= per_source,
        "three addresses of one network hold {held} reservations"
    );
    let (_, honest) = reserving_sybil(ip(127, 0, 0, 1), relay.addr.clone());
    wait_until(10, "an honest client gets a reservation", || {
        let honest = honest.clone();
        async move { honest.load(Ordering::SeqCst) }
    })
    .await;
}

/// Finding 2, idle connections: a peer that completes the handshake and
/// then does nothing held its slot for an hour. Now a connection no
/// protocol uses is closed after `idle_timeout`; a peer in the gossip
/// overlay keeps its link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_nobody_uses_is_closed_and_a_gossip_link_is_not() {
    let root = tempfile::tempdir().unwrap();
    let limits = Limits {
        idle_timeout: Duration::from_secs(2),
        ..Limits::relay()
    };
    let relay = spawn_with(root.path(), "relay", |b| b.relay().limits(limits)).await;
    // The idler: Noise and yamux from another network, then nothing.
    let key = libp2p::identity::Keypair::generate_ed25519();
    let idler_id = key.public().to_peer_id();
    let mut idler = libp2p::Swarm::new(
        upgraded_from(ip(127, 66, 9, 1), &key),
        libp2p::swarm::dummy::Behaviour,
        idler_id,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(3600)),
    );
    idler.dial(relay.addr.clone()).unwrap();
    tokio::spawn(async move {
        loop {
            idler.select_next_some().await;
        }
    });
    let (gossiper, _) = sybil(ip(127, 66, 10, 1), relay.addr.clone());
    let node = relay.node.clone();
    wait_until(5, "both connected", || {
        let node = node.clone();
        async move {
            let peers = node.connected_peers().await.unwrap();
            peers.contains(&idler_id) && peers.contains(&gossiper)
        }
    })
    .await;
    // libp2p's relay server keeps any connection 10 s after its last
    // reservation or circuit (here: none), then the idle timeout runs.
    let node = relay.node.clone();
    wait_until(20, "the idle connection is closed", || {
        let node = node.clone();
        async move { !node.connected_peers().await.unwrap().contains(&idler_id) }
    })
    .await;
    let peers = relay.node.connected_peers().await.unwrap();
    assert!(
        peers.contains(&gossiper),
        "a gossip link was closed as idle"
    );
}

/// The memory limit: over it, new inbound connections are refused (and
/// counted) before any handshake work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_limit_new_inbound_connections_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let limits = Limits {
        // Any process is over one byte.
        max_memory_bytes: Some(1),
        ..Limits::relay()
    };
    let relay = spawn_with(root.path(), "relay", |b| b.relay().limits(limits)).await;
    let (peer, up) = sybil(ip(127, 66, 11, 1), relay.addr.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !up.load(Ordering::SeqCst),
        "{peer} got in over the memory limit"
    );
    assert!(stats(&relay).await.connections_refused.memory > 0);
}

/// Finding 9, pending dials: nothing bounded how many dials a node had in
/// progress, whoever chose the addresses. Dials towards a host that
/// accepts TCP and never answers stay pending for the handshake timeout;
/// beyond `max_pending_outgoing` they are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_dials_are_bounded() {
    let root = tempfile::tempdir().unwrap();
    let node = spawn(root.path(), "node").await;
    let max = Limits::client().max_pending_outgoing as usize;
    // A host that completes TCP handshakes (the kernel's backlog) and
    // never speaks.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    // All at once: `dial` answers when a connection is up or failed, so
    // the dials beyond the limit are the ones refused at once (the others
    // fail later, when the tarpit's handshake times out).
    let dials = (0..max + 10).map(|_| {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
            .parse()
            .unwrap();
        let node = node.node.clone();
        async move {
            let started = std::time::Instant::now();
            let result = node.dial(address).await;
            (result.is_err(), started.elapsed())
        }
    });
    let outcomes = futures::future::join_all(dials).await;
    let refused = outcomes
        .iter()
        .filter(|(failed, took)| *failed && *took < Duration::from_millis(500))
        .count();
    assert_eq!(
        refused, 10,
        "dials beyond {max} pending are refused at once"
    );
    assert!(
        outcomes.iter().all(|(failed, _)| *failed),
        "a tarpit never completes a handshake: every dial reports failure"
    );
    drop(tarpit);
}

/// Finding 4, full queues: when every subscriber's gossip queue is full,
/// gossipsub marks the envelope as seen and refuses it; the node used to
/// retry it as a duplicate and drop it without a word. Now it is counted,
/// stays in custody, and reaches the next peer by reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_refused_by_full_gossip_queues_are_counted_and_not_lost() {
    let root = tempfile::tempdir().unwrap();
    let roomy = EngineConfig {
        quotas: Quotas {
            global_bytes: 256 * 1024 * 1024,
            per_tag_bytes: 256 * 1024 * 1024,
            per_peer_bytes: 256 * 1024 * 1024,
        },
        ..EngineConfig::default()
    };
    let a = spawn_with(root.path(), "a", |b| b.engine(roomy)).await;
    let b = spawn_with(root.path(), "b", |b| b.engine(roomy)).await;
    introduce(&a, &b).await;
    b.node.shutdown().await;
    // A subscriber that stops reading: its queue at A fills up.
    let config = bench_support::gossipsub_config(&ferry_node::GossipParams::default()).unwrap();
    let mut staller = tcp_swarm(|_| raw_gossipsub(config), Duration::from_secs(600));
    staller
        .behaviour_mut()
        .subscribe(&gossipsub::IdentTopic::new(bench_support::TOPIC))
        .unwrap();
    staller.dial(a.addr.clone()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            staller.select_next_some().await;
        }
    })
    .await;
    // From here on the staller is never polled again.
    let body = vec![b'.'; 6000];
    let mut sent = 0;
    for _ in 0..4000 {
        a.node.send(&b.node.identity(), &body).await.unwrap();
        sent += 1;
        if sent % 200 == 0 && stats(&a).await.gossip_queue_full > 0 {
            break;
        }
    }
    let s = stats(&a).await;
    assert!(
        s.gossip_queue_full > 0,
        "the queue never filled ({sent} sent)"
    );
    assert_eq!(
        s.outbox, sent,
        "every message is still held for its recipient"
    );
    drop(staller);
    // A carrier connects: reconciliation hands it everything gossip
    // refused (a carrier, not B: opening 2000 messages takes minutes in a
    // debug build, holding them does not).
    let carrier = spawn_with(root.path(), "carrier", |b| b.engine(roomy)).await;
    connect(&a, &carrier).await;
    let node = carrier.node.clone();
    wait_until(120, "the carrier holds every message", || {
        let node = node.clone();
        async move { node.stats().await.unwrap().held_envelopes >= sent }
    })
    .await;
    // Stopped before the temporary directory goes: with thousands of
    // envelopes still being written, a driver dropped by the runtime's
    // shutdown after its store directory was deleted once hung in sled's
    // flush-on-drop (CI, after the test had passed).
    carrier.node.shutdown().await;
    a.node.shutdown().await;
}

/// QUIC Initials from a real libp2p client, captured on a plain UDP
/// socket: one per distinct destination connection ID.
async fn captured_initials(count: usize) -> Vec<Vec<u8>> {
    let capture = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = capture.local_addr().unwrap().port();
    let mut client = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
        .unwrap()
        .build();
    let mut initials: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut buf = vec![0u8; 2048];
    while initials.len() < count {
        let target: Multiaddr =
            format!("/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/{}", PeerId::random())
                .parse()
                .unwrap();
        client.dial(target).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                tokio::select! {
                    r = capture.recv_from(&mut buf) => return r.map(|(n, _)| buf[..n].to_vec()),
                    _ = client.select_next_some() => {}
                }
            }
        })
        .await;
        let Ok(Ok(datagram)) = got else { continue };
        // Long header: flags, version (4), DCID length, DCID.
        let dcid_len = usize::from(datagram[5]);
        let dcid = datagram[6..6 + dcid_len].to_vec();
        if datagram[0] & 0x80 != 0 && seen.insert(dcid) {
            initials.push(datagram);
        }
    }
    initials
}

/// Finding 1, QUIC: Initials need no address validation, so silent
/// handshakes can be started from many (forgeable) source addresses. Now
/// they are limited per source like TCP ones, and their pending budget is
/// QUIC's own: a flood that fills it does not lock TCP out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_quic_handshakes_get_a_bounded_share_and_leave_tcp_open() {
    let root = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_pending_incoming: 16,
        ..Limits::relay()
    };
    let dr = root.path().join("relay");
    let relay = start(
        builder(&dr)
            .relay()
            .limits(limits)
            .quic(true)
            .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()),
        &dr,
    )
    .await;
    let listeners = relay.node.listen_addrs().await.unwrap();
    let quic_port = listeners
        .iter()
        .find_map(|a| {
            a.iter().any(|p| p == Protocol::QuicV1).then(|| {
                a.iter().find_map(|p| match p {
                    Protocol::Udp(port) => Some(port),
                    _ => None,
                })
            })
        })
        .flatten()
        .unwrap();
    let target = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, quic_port));
    let initials = captured_initials(60).await;
    // 40 silent handshakes from one /24: at most its share is pending.
    let mut sockets = Vec::new();
    for (i, initial) in initials.iter().take(40).enumerate() {
        let socket = tokio::net::UdpSocket::bind((ip(127, 66, 0, 1 + i as u8), 0))
            .await
            .unwrap();
        socket.send_to(initial, target).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = stats(&relay).await.connections_refused;
    assert!(
        refused.pending_per_source + refused.rate >= 40 - 8,
        "one network holds more than its share of QUIC handshakes: {refused:?}"
    );
    // 20 more from 20 networks fill QUIC's own budget…
    for (i, initial) in initials.iter().skip(40).enumerate() {
        let socket = tokio::net::UdpSocket::bind((ip(127, 80 + i as u8, 0, 1), 0))
            .await
            .unwrap();
        socket.send_to(initial, target).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stats(&relay).await.connections_refused.pending_full > 0);
    // …and an honest client still gets in over TCP.
    let honest = spawn(root.path(), "honest").await;
    connect(&honest, &relay).await;
    let node = honest.node.clone();
    let relay_id = relay.node.peer_id();
    wait_until(3, "TCP is open while QUIC's budget is full", || {
        let node = node.clone();
        async move { node.connected_peers().await.unwrap().contains(&relay_id) }
    })
    .await;
}
