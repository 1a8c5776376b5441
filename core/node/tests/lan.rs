//! A forged mDNS answer on a real (namespaced) LAN interface.
//!
//! The test builds a network namespace with a veth interface and runs
//! itself inside it. The node listens on 10.77.0.1 (its LAN, a /24) with
//! mDNS and auto-dial on. libp2p-mdns dials an IPv4 answer at the answer's
//! *source* address, which a forger on the LAN sets as it likes: here one
//! answer comes from 10.99.0.1, a network the node is not on (standing for
//! a forged source: a host elsewhere, or behind a VPN route), where a trap
//! listens and must never be dialled; another comes from 10.77.0.5 on the
//! node's LAN, where a trap is dialled (the filter does not simply refuse
//! everything).
//!
//! Needs root and `ip` (iproute2); under `CI=true` their absence fails the
//! test, elsewhere it is skipped with a message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ferry_node::{KdfParams, Node, PeerId};

const CHILD: &str = "FERRY_NETNS_CHILD";
const TEST: &str = "a_forged_mdns_answer_cannot_point_the_node_off_the_lan";

/// One mDNS response announcing `address` (a multiaddr string without the
/// peer) for `peer`, framed as libp2p-mdns frames its own.
fn forged_answer(peer: &PeerId, address: &str) -> Vec<u8> {
    fn qname(out: &mut Vec<u8>, name: &str) {
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    let mut peer_name = Vec::new();
    qname(&mut peer_name, "ferrytestpeernameabcdefghijklmnopqrstuv");
    let mut out = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    qname(&mut out, "_p2p._udp.local");
    out.extend_from_slice(&[0x00, 0x0c, 0x00, 0x01]); // PTR, IN
    out.extend_from_slice(&120u32.to_be_bytes());
    out.extend_from_slice(&(peer_name.len() as u16).to_be_bytes());
    out.extend_from_slice(&peer_name);
    // The TXT record.
    out.extend_from_slice(&peer_name);
    out.extend_from_slice(&[0x00, 0x10, 0x80, 0x01]);
    out.extend_from_slice(&120u32.to_be_bytes());
    let txt = format!("dnsaddr={address}/p2p/{peer}");
    out.extend_from_slice(&((txt.len() + 1) as u16).to_be_bytes());
    out.push(txt.len() as u8);
    out.extend_from_slice(txt.as_bytes());
    out
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes the namespace when the test ends, however it ends.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_mdns_answer_cannot_point_the_node_off_the_lan() {
    if std::env::var(CHILD).is_ok() {
        return in_namespace().await;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let name = format!("ferry-mdns-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        assert!(!ci, "CI=true: this test needs root and `ip` (iproute2)");
        eprintln!("skipped: creating a network namespace needs root and `ip`");
        return;
    }
    let ns = Namespace(name);
    for args in [
        vec!["-n", &ns.0, "link", "set", "lo", "up"],
        vec![
            "-n", &ns.0, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ],
        vec!["-n", &ns.0, "addr", "add", "10.77.0.1/24", "dev", "d0"],
        vec!["-n", &ns.0, "addr", "add", "10.77.0.5/24", "dev", "d0"],
        vec!["-n", &ns.0, "addr", "add", "10.99.0.1/24", "dev", "d0"],
        vec!["-n", &ns.0, "link", "set", "d0", "multicast", "on"],
        vec!["-n", &ns.0, "link", "set", "d1", "up"],
        vec!["-n", &ns.0, "link", "set", "d0", "up"],
        vec!["-n", &ns.0, "route", "add", "224.0.0.0/4", "dev", "d0"],
    ] {
        assert!(ip(&args), "ip {}", args.join(" "));
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the test inside the namespace failed");
}

/// Counts connections to a listener.
async fn trap(address: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let touched = Arc::new(AtomicUsize::new(0));
    let count = touched.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, touched)
}

async fn in_namespace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(
        Node::builder()
            .storage(root.path(), "p")
            .kdf(KdfParams::insecure_for_tests())
            .listen_on("/ip4/10.77.0.1/tcp/0".parse().unwrap())
            .quic(false)
            .mdns(true)
            .mdns_auto_dial(true)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (off_lan, off_touched) = trap("10.99.0.1:0").await;
    let (on_lan, on_touched) = trap("10.77.0.5:0").await;
    let elsewhere = UdpSocket::bind(SocketAddr::from((Ipv4Addr::new(10, 99, 0, 1), 0))).unwrap();
    let neighbour = UdpSocket::bind(SocketAddr::from((Ipv4Addr::new(10, 77, 0, 5), 0))).unwrap();
    let group = SocketAddr::from((Ipv4Addr::new(224, 0, 0, 251), 5353));
    // The announced IP does not matter (libp2p-mdns replaces it with the
    // source's); the port does.
    let off = forged_answer(&PeerId::random(), &format!("/ip4/10.77.0.9/tcp/{off_lan}"));
    let on = forged_answer(&PeerId::random(), &format!("/ip4/10.77.0.9/tcp/{on_lan}"));
    // mDNS needs a moment to join the group on the new interface.
    for _ in 0..20 {
        elsewhere.send_to(&off, group).unwrap();
        neighbour.send_to(&on, group).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        if on_touched.load(Ordering::SeqCst) > 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        on_touched.load(Ordering::SeqCst) > 0,
        "an answer pointing at the LAN is dialled"
    );
    assert_eq!(
        off_touched.load(Ordering::SeqCst),
        0,
        "a forged answer made the node dial a network it is not on"
    );
    assert!(node.stats().await.unwrap().mdns_addresses_refused > 0);
    node.shutdown().await;
}
