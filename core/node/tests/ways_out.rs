//! The same two-node exchange (message, then receipt) over every way a
//! node can reach another: TCP, QUIC, WebSocket, WebSocket over TLS,
//! obfs4 through real obfs4proxy processes, and a byte pipe the app
//! attaches; then what a censor on the obfs4 path sees, and a backlog
//! over a pipe shaped like Bluetooth.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_node::{
    Multiaddr, TransportKind,
    transports::{pt::PtClientConfig, websocket::WebSocketConfig},
};
use support::{
    pipe,
    ways::{Way, bare, bridge_server, free_port, linked, obfs4proxy},
    *,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exchange_over_every_way_out() {
    let mut tested = Vec::new();
    for way in support::ways::ALL {
        let root = tempfile::tempdir().unwrap();
        let Some((a, b)) = linked(root.path(), way).await else {
            continue;
        };
        let expected = match way {
            Way::Tcp => TransportKind::Tcp,
            Way::Quic => TransportKind::Quic,
            Way::WebSocket => TransportKind::WebSocket,
            Way::WebSocketTls => TransportKind::WebSocketTls,
            Way::Obfs4 => TransportKind::Pluggable("obfs4".into()),
            Way::Link => TransportKind::Link,
        };
        // The app can show how each peer is reached, on both ends.
        for (me, other) in [(&a, &b), (&b, &a)] {
            let peers = me.node.peers().await.unwrap();
            let info = peers
                .iter()
                .find(|p| p.peer == other.node.peer_id())
                .expect("the other node is listed");
            let kinds: Vec<_> = info.routes.iter().map(|r| r.transport.clone()).collect();
            let listener_side = std::ptr::eq(me, &b);
            if !listener_side || matches!(way, Way::Obfs4 | Way::Link | Way::Tcp | Way::Quic) {
                assert!(
                    kinds.contains(&Some(expected.clone())),
                    "{way:?}: {kinds:?}"
                );
            }
            if matches!(way, Way::Link) {
                assert!(info.routes.iter().all(|r| r.link_label.is_some()));
            }
        }
        exchange(&a, &b, format!("hello over {way:?}").as_bytes()).await;
        exchange(&b, &a, b"and back").await;
        // A burst of large messages: the transport must carry what the
        // node writes in one go (a WebSocket frame cap below that broke
        // the connection and left delivery to slow resyncs).
        let started = tokio::time::Instant::now();
        let before = b.log.lock().unwrap().received.len();
        for i in 0..60 {
            let mut body = format!("burst {i} ").into_bytes();
            body.resize(20 * 1024, b'#');
            a.node.send(&b.node.identity(), &body).await.unwrap();
        }
        wait_until(30, &format!("a burst over {way:?}"), || {
            let log = b.log.clone();
            async move { log.lock().unwrap().received.len() >= before + 60 }
        })
        .await;
        eprintln!(
            "{way:?}: 60 × 20 KiB in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        a.node.shutdown().await;
        b.node.shutdown().await;
        tested.push(way);
    }
    eprintln!("exchanged over {tested:?}");
}

/// Copies bytes between two sockets and records both directions; its
/// outbound side comes from `source`.
async fn recording_forwarder(
    listen: u16,
    to: SocketAddr,
    source: std::net::IpAddr,
) -> Arc<Mutex<Vec<u8>>> {
    let record = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen))
        .await
        .unwrap();
    let r = record.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                continue;
            };
            if socket.bind(SocketAddr::new(source, 0)).is_err() {
                continue;
            }
            let Ok(outbound) = socket.connect(to).await else {
                continue;
            };
            let (mut ir, mut iw) = inbound.into_split();
            let (mut or, mut ow) = outbound.into_split();
            let (r1, r2) = (r.clone(), r.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = ir.read(&mut buf).await {
                    if n == 0 || ow.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    r1.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = or.read(&mut buf).await {
                    if n == 0 || iw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    r2.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    record
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Pearson's chi-square of the byte histogram against uniform.
fn chi_square(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for b in bytes {
        counts[*b as usize] += 1;
    }
    let expected = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|c| (*c as f64 - expected).powi(2) / expected)
        .sum()
}

/// What a censor recording the path would look for.
fn tells(a: &TestNode, b: &TestNode) -> Vec<(String, Vec<u8>)> {
    let mut tells: Vec<(String, Vec<u8>)> = ["/multistream/1.0.0", "/noise", "/yamux", "/ferry"]
        .iter()
        .map(|s| (s.to_string(), s.as_bytes().to_vec()))
        .collect();
    for (name, node) in [("a", a), ("b", b)] {
        let peer = node.node.peer_id().to_bytes();
        tells.push((
            format!("{name}'s network key"),
            peer[peer.len() - 32..].to_vec(),
        ));
        tells.push((
            format!("{name}'s identity key"),
            node.node.identity().to_bytes().to_vec(),
        ));
    }
    tells
}

/// 99.99th percentile of chi-square with 255 degrees of freedom (a random
/// stream fails one run in ten thousand; structured bytes score thousands).
const CHI_SQUARE_255_P9999: f64 = 347.7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_censor_on_the_obfs4_path_sees_no_protocol_no_key_and_random_bytes() {
    let Some(binary) = obfs4proxy() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let pt_port = free_port();
    let b = start(
        builder(&db).bridge_server(bridge_server(&binary, &root.path().join("pt-b"), pt_port)),
        &db,
    )
    .await;
    let tap = free_port();
    // The tap reaches the bridge from 127.0.77.5: the bridge's node must
    // see that address (through the Extended ORPort), not loopback.
    let client_ip = std::net::IpAddr::from([127, 0, 77, 5]);
    let record =
        recording_forwarder(tap, SocketAddr::from(([127, 0, 0, 1], pt_port)), client_ip).await;
    let mut line = b.node.bridge_line().await.unwrap().unwrap();
    line.address = SocketAddr::from(([127, 0, 0, 1], tap));
    let a = start(
        builder(&da).bridges(PtClientConfig {
            binary,
            state_dir: root.path().join("pt-a"),
            bridges: vec![line],
        }),
        &da,
    )
    .await;
    introduce(&a, &b).await;
    wait_connected(&[&a, &b], 1).await;
    for i in 0..20 {
        exchange(&a, &b, format!("through the tunnel {i}").as_bytes()).await;
    }
    let seen = record.lock().unwrap().clone();
    assert!(
        seen.len() > 20_000,
        "the tap saw the traffic: {} bytes",
        seen.len()
    );
    for (what, tell) in tells(&a, &b) {
        assert!(
            !contains(&seen, &tell),
            "{what} is visible on the obfs4 path"
        );
    }
    let chi = chi_square(&seen);
    eprintln!(
        "obfs4 path: {} bytes, chi-square {chi:.1} (255 dof)",
        seen.len()
    );
    assert!(
        chi < CHI_SQUARE_255_P9999,
        "bytes are not uniform: chi-square {chi:.1}"
    );

    // The detector works: the same tap on plain TCP sees libp2p's
    // negotiation in the clear (yamux and the rest are negotiated inside
    // Noise, so these two are what a censor fingerprints).
    let dc = root.path().join("c");
    let c = start(builder(&dc), &dc).await;
    let plain_tap = free_port();
    let plain = recording_forwarder(
        plain_tap,
        support::attacker::socket_addr(&c.addr),
        std::net::IpAddr::from([127, 0, 0, 1]),
    )
    .await;
    let via_tap: Multiaddr = format!("/ip4/127.0.0.1/tcp/{plain_tap}/p2p/{}", c.node.peer_id())
        .parse()
        .unwrap();
    a.node.dial(via_tap).await.unwrap();
    wait_until(20, "the plain tap shows the protocols", || {
        let plain = plain.clone();
        async move {
            let seen = plain.lock().unwrap();
            [&b"/multistream/1.0.0"[..], b"/noise"]
                .iter()
                .all(|tell| contains(&seen, tell))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pluggable_transport_is_restarted_when_it_dies_and_killed_when_the_node_goes() {
    let Some(binary) = obfs4proxy() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("b");
    let b = start(
        builder(&db).bridge_server(bridge_server(
            &binary,
            &root.path().join("pt-b"),
            free_port(),
        )),
        &db,
    )
    .await;
    let before = b.node.bridge_line().await.unwrap().unwrap();
    let pt_state = root.path().join("pt-b");
    let pid = pt_pids(&binary, &pt_state);
    assert_eq!(pid.len(), 1, "one PT child: {pid:?}");
    let first = pid[0];
    kill(first);
    wait_until(20, "the PT is restarted", || {
        let (binary, pt_state) = (binary.clone(), pt_state.clone());
        async move {
            let now = pt_pids(&binary, &pt_state);
            now.len() == 1 && now[0] != first
        }
    })
    .await;
    let after = b.node.bridge_line().await.unwrap().unwrap();
    assert_eq!(
        before, after,
        "same state, same port: the bridge line holds"
    );
    let events = b.log.lock().unwrap().pt_events.clone();
    assert!(events.iter().any(|e| e.contains("Exited")), "{events:?}");
    assert!(
        events.iter().any(|e| e.contains("Restarting")),
        "{events:?}"
    );
    b.node.shutdown().await;
    drop(b);
    assert!(
        pt_pids(&binary, &pt_state).is_empty(),
        "no PT left after the node went"
    );

    // An app that drops its node without shutting it down leaves no PT
    // behind either.
    let dc = root.path().join("c");
    let c_state = root.path().join("pt-c");
    let c = ferry_node::Node::start(
        builder(&dc)
            .bridge_server(bridge_server(&binary, &c_state, free_port()))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pt_pids(&binary, &c_state).len(), 1);
    drop(c);
    wait_until(10, "the dropped node's PT is gone", || {
        let (binary, c_state) = (binary.clone(), c_state.clone());
        async move { pt_pids(&binary, &c_state).is_empty() }
    })
    .await;
}

/// Running PT children of this process whose state lives in `state`
/// (other tests run PTs of their own meanwhile).
fn pt_pids(binary: &Path, state: &Path) -> Vec<u32> {
    let state_dir = state;
    let me = std::process::id();
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let ours = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|env| contains(&env, state_dir.to_string_lossy().as_bytes()))
            .unwrap_or(false);
        if ppid == me && name.starts_with(comm) && state != "Z" && ours {
            pids.push(pid);
        }
    }
    pids
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_crosses_a_bluetooth_shaped_pipe() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    introduce(&a, &b).await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let body = format!("message {i} of the backlog, sent while nobody was around");
        ids.push(
            a.node
                .send(&b.node.identity(), body.as_bytes())
                .await
                .unwrap(),
        );
    }
    let (ea, eb) = pipe::pair(pipe::Shape::ble());
    let started = tokio::time::Instant::now();
    a.node.attach_link(ea, "ble").await.unwrap();
    b.node.attach_link(eb, "ble").await.unwrap();
    wait_until(300, "the backlog crosses", || {
        let log = b.log.clone();
        async move { log.lock().unwrap().received.len() >= 200 }
    })
    .await;
    let crossed = started.elapsed();
    wait_until(300, "the receipts come back", || {
        let log = a.log.clone();
        let want = ids.len();
        async move { log.lock().unwrap().delivered.len() >= want }
    })
    .await;
    eprintln!(
        "200 messages over 100 kbit/s, 50 ms, 1% stalls: {:.1} s to deliver, {:.1} s with receipts",
        crossed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_something_that_is_not_ferry_fails_with_an_event() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let (ea, mut eb) = pipe::pair(pipe::Shape::unshaped());
    let link = a.node.attach_link(ea, "serial").await.unwrap();
    use futures::AsyncWriteExt as _;
    eb.write_all(b"AT+GMR\r\nAT+RST\r\nsomething else entirely, long enough")
        .await
        .unwrap();
    wait_until(20, "the link fails with an event", || {
        let log = a.log.clone();
        async move {
            log.lock()
                .unwrap()
                .link_failures
                .iter()
                .any(|(l, label, _)| *l == link.0 && label == "serial")
        }
    })
    .await;
    assert!(
        a.node.connected_peers().await.unwrap().is_empty(),
        "nothing connected"
    );
}

/// One WebSocket frame header announcing `len` payload bytes (masked, as
/// a client's must be), with no payload after it.
fn huge_frame_header(len: u64) -> Vec<u8> {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_frame_header_cannot_make_the_node_reserve_its_length() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("b");
    let b = start(
        bare(&db)
            .websocket(WebSocketConfig::new())
            .listen_on("/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()),
        &db,
    )
    .await;
    let target = support::attacker::socket_addr(&b.addr);
    let rss = || memory_stats::memory_stats().map_or(0, |m| m.physical_mem);
    let before = rss();
    let mut closed_quickly = 0;
    // From different sources, as an attacker spreads them.
    for i in 0..4u8 {
        let source = std::net::IpAddr::from([127, 0, 60, 1 + i]);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut stream = socket.connect(target).await.unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = vec![0u8; 1024];
        let n = stream.read(&mut response).await.unwrap();
        assert!(
            String::from_utf8_lossy(&response[..n]).starts_with("HTTP/1.1 101"),
            "the upgrade is accepted"
        );
        stream
            .write_all(&huge_frame_header(200 << 20))
            .await
            .unwrap();
        let mut rest = [0u8; 64];
        let outcome = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut rest)).await;
        if matches!(outcome, Ok(Ok(_) | Err(_))) {
            closed_quickly += 1;
        }
        // Kept open (if the node kept it) while the next one comes.
        std::mem::forget(stream);
    }
    let grown = rss().saturating_sub(before);
    eprintln!("RSS grew by {} MiB", grown >> 20);
    assert_eq!(
        closed_quickly, 4,
        "each oversized frame ends its connection at once"
    );
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
}

#[test]
fn transport_misconfigurations_are_refused_at_build_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ferry_node::Node::builder()
        .storage(dir.path(), "p")
        .bridges(PtClientConfig {
            binary: "/nonexistent/obfs4proxy".into(),
            state_dir: dir.path().join("pt"),
            bridges: vec![],
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&missing, ferry_node::ConfigError::PluggableTransport(m) if m.contains("/nonexistent/obfs4proxy")),
        "{missing}"
    );
    let no_bridge = ferry_node::Node::builder()
        .storage(dir.path(), "p")
        .bridges(PtClientConfig {
            binary: "sh".into(),
            state_dir: dir.path().join("pt"),
            bridges: vec![],
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&no_bridge, ferry_node::ConfigError::PluggableTransport(m) if m.contains("no bridge line")),
        "{no_bridge}"
    );
    // A bridge line with a mistyped certificate never becomes a config.
    let bad = "obfs4 203.0.113.5:443 cert=tooshort iat-mode=0"
        .parse::<ferry_node::transports::pt::BridgeLine>()
        .unwrap_err();
    assert!(bad.to_string().contains("cert="), "{bad}");
    let ws_without_websocket = ferry_node::Node::builder()
        .storage(dir.path(), "p")
        .listen_on("/ip4/0.0.0.0/tcp/443/tls/ws".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(
        ws_without_websocket,
        ferry_node::ConfigError::Listen { .. }
    ));
}
