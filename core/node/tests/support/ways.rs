//! Two linked nodes over each way out (TCP, QUIC, WebSocket, WebSocket
//! over TLS, obfs4 through obfs4proxy, an attached pipe): shared by the
//! table-driven test and the benchmark.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_node::{
    NodeBuilder,
    transports::{
        pt::{BridgeLine, PtClientConfig, PtServerConfig},
        websocket::{TlsIdentity, WebSocketConfig},
    },
};

use super::{pipe, *};

/// A way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Tcp,
    Quic,
    WebSocket,
    WebSocketTls,
    Obfs4,
    Link,
}

/// Every way, in table order.
pub const ALL: [Way; 6] = [
    Way::Tcp,
    Way::Quic,
    Way::WebSocket,
    Way::WebSocketTls,
    Way::Obfs4,
    Way::Link,
];

/// obfs4proxy, or `None` when it is missing outside CI (with `CI=true`
/// a missing binary fails the test).
pub fn obfs4proxy() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("obfs4proxy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "obfs4proxy is not installed (.ci/run installs it with apt-get)"
        );
        eprintln!("obfs4proxy is not installed: skipping (CI installs it)");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bridge_server(binary: &Path, state: &Path, port: u16) -> PtServerConfig {
    PtServerConfig {
        binary: binary.to_path_buf(),
        state_dir: state.to_path_buf(),
        method: "obfs4".into(),
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        public_address: None,
        options: vec![("iat-mode".into(), "0".into())],
    }
}

/// Two nodes that know each other and are linked by `way` (`None`: the
/// way cannot be tested here).
pub async fn linked(root: &Path, way: Way) -> Option<(TestNode, TestNode)> {
    let (da, db) = (root.join("a"), root.join("b"));
    let (a, b) = match way {
        Way::Tcp => {
            let b = start(builder(&db), &db).await;
            (start(builder(&da), &da).await, b)
        }
        Way::Quic => {
            let quic = |b: NodeBuilder| {
                b.quic(true)
                    .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
            };
            let b = start(quic(builder(&db)).tcp(true), &db).await;
            (start(quic(builder(&da)), &da).await, b)
        }
        Way::WebSocket => {
            let ws = |b: NodeBuilder| b.websocket(WebSocketConfig::new());
            let b = start(
                ws(bare(&db)).listen_on("/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()),
                &db,
            )
            .await;
            (start(ws(builder(&da)), &da).await, b)
        }
        Way::WebSocketTls => {
            let identity = TlsIdentity::self_signed(&["127.0.0.1".into()]).unwrap();
            let cert = identity.certificate_der().to_vec();
            let b = start(
                bare(&db)
                    .websocket(WebSocketConfig::new().identity(identity))
                    .listen_on("/ip4/127.0.0.1/tcp/0/tls/ws".parse().unwrap()),
                &db,
            )
            .await;
            let a = start(
                builder(&da).websocket(WebSocketConfig::new().trust(cert)),
                &da,
            )
            .await;
            (a, b)
        }
        Way::Obfs4 => {
            let binary = obfs4proxy()?;
            // The bridge's client comes from 127.0.0.1 here, which a node
            // exempts from per-source limits by default, and the Extended
            // ORPort refuses clients claiming an exempt address.
            let b = start(
                builder(&db)
                    .limits(ferry_node::Limits {
                        unlimited_sources: Vec::new(),
                        ..ferry_node::Limits::client()
                    })
                    .bridge_server(bridge_server(&binary, &root.join("pt-b"), free_port())),
                &db,
            )
            .await;
            let line = b.node.bridge_line().await.unwrap().expect("a bridge line");
            // Verbatim, as a user pastes it.
            let line: BridgeLine = line.to_string().parse().unwrap();
            let a = start(
                builder(&da).bridges(PtClientConfig {
                    binary,
                    state_dir: root.join("pt-a"),
                    bridges: vec![line],
                }),
                &da,
            )
            .await;
            (a, b)
        }
        Way::Link => {
            let b = start(builder(&db), &db).await;
            (start(builder(&da), &da).await, b)
        }
    };
    introduce(&a, &b).await;
    match way {
        Way::Tcp | Way::Quic | Way::WebSocket | Way::WebSocketTls => {
            let addr = match way {
                Way::Quic => b
                    .node
                    .listen_addrs()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|a| a.to_string().contains("quic"))
                    .unwrap(),
                _ => b.addr.clone(),
            };
            a.node.dial(addr).await.unwrap();
        }
        // Dialed by itself: the bridge is a bootstrap peer.
        Way::Obfs4 => {}
        Way::Link => {
            let (ea, eb) = pipe::pair(pipe::Shape::unshaped());
            a.node.attach_link(ea, "pipe to b").await.unwrap();
            b.node.attach_link(eb, "pipe to a").await.unwrap();
        }
    }
    wait_connected(&[&a, &b], 1).await;
    Some((a, b))
}

/// A node with no TCP listener (its only way in is the one under test).
pub fn bare(dir: &Path) -> NodeBuilder {
    ferry_node::Node::builder()
        .storage(dir, "test passphrase")
        .kdf(ferry_node::KdfParams::insecure_for_tests())
        .quic(false)
        .mdns(false)
        .resync_interval(Duration::from_secs(5))
        .redial_interval(Duration::from_secs(1))
        .delivery_delays((0, 1), (0, 1))
}
