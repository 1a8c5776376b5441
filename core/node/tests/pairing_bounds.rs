//! Pairing attempts are bounded: a stranger on a direct link, with as many
//! peer IDs as it likes, cannot make a node with pairing open issue cards
//! (one-time prekeys) and run handshakes without limit, and every refusal
//! is reported with its reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ferry_node::{Multiaddr, PairingRefusal, PeerId};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    StreamProtocol,
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
};
use rand::RngExt as _;
use support::*;
use tokio::sync::{mpsc, oneshot};

/// The link protocol, written from its description (4-byte length, kind
/// byte, body; a one-byte acknowledgement).
#[derive(Clone, Default)]
struct RawLinkCodec;

impl request_response::Codec for RawLinkCodec {
    type Protocol = StreamProtocol;
    type Request = (u8, Vec<u8>);
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<(u8, Vec<u8>)>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        io.read_exact(&mut frame).await?;
        Ok((frame[0], frame[1..].to_vec()))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        (kind, bytes): (u8, Vec<u8>),
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&(bytes.len() as u32 + 1).to_be_bytes())
            .await?;
        io.write_all(&[kind]).await?;
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&[1]).await?;
        io.close().await
    }
}

/// A raw peer on the link protocol: sends pairing frames on command (each
/// answered once delivered) and counts the pairing frames it receives.
struct Stranger {
    send: mpsc::Sender<(Vec<u8>, oneshot::Sender<()>)>,
    replies: Arc<AtomicUsize>,
}

impl Stranger {
    async fn start(target: PeerId, address: Multiaddr) -> Self {
        let mut swarm = support::attacker::tcp_swarm(
            |_| {
                request_response::Behaviour::with_codec(
                    RawLinkCodec,
                    [(StreamProtocol::new("/ferry/link/1"), ProtocolSupport::Full)],
                    request_response::Config::default(),
                )
            },
            Duration::from_secs(3600),
        );
        swarm.dial(address).unwrap();
        let replies = Arc::new(AtomicUsize::new(0));
        let counted = replies.clone();
        let (send, mut commands) = mpsc::channel::<(Vec<u8>, oneshot::Sender<()>)>(16);
        tokio::spawn(async move {
            let mut waiting = std::collections::HashMap::new();
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some((bytes, done)) => {
                            let id = swarm.behaviour_mut().send_request(&target, (1, bytes));
                            waiting.insert(id, done);
                        }
                        None => break,
                    },
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. },
                            ..
                        }) => {
                            if request.0 == 1 {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                            let _ = swarm.behaviour_mut().send_response(channel, ());
                        }
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, .. },
                            ..
                        }) => {
                            if let Some(done) = waiting.remove(&request_id) {
                                let _ = done.send(());
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                            request_id, error, ..
                        }) => panic!("frame {request_id:?} not delivered: {error}"),
                        _ => {}
                    },
                }
            }
        });
        Self { send, replies }
    }

    /// Sends what looks like a first pairing message (an ephemeral key:
    /// any 32 bytes) and waits until the node has read it.
    async fn start_pairing(&self) {
        let (done, delivered) = oneshot::channel();
        let e: [u8; 32] = rand::rng().random();
        self.send.send((e.to_vec(), done)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), delivered)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Every `PairingRefused` the node's app saw, recorded from its events.
fn refusals_seen(node: &TestNode) -> Vec<PairingRefusal> {
    node.log.lock().unwrap().pairing_refusals.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_attempts_are_bounded_per_peer_and_at_once() {
    let root = tempfile::tempdir().unwrap();
    let victim = spawn(root.path(), "victim").await;
    let target = victim.node.peer_id();

    // Closed: refused and reported, nothing answered.
    let early = Stranger::start(target, victim.addr.clone()).await;
    early.start_pairing().await;
    victim.node.allow_pairing(true).await.unwrap();

    // One peer ID, twelve starts. Each start after an answered one lands in
    // the handshake it opened (and fails it: the stranger has no card), so
    // starts alternate with failures until the per-peer bound refuses them.
    for _ in 0..12 {
        early.start_pairing().await;
    }
    wait_until(10, "answers to the stranger", || {
        let r = early.replies.clone();
        async move { r.load(Ordering::SeqCst) >= 3 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        early.replies.load(Ordering::SeqCst),
        3,
        "three handshakes (cards) per peer per window"
    );

    // Fresh peer IDs that start and stay silent hold handshakes open: at
    // most four at once.
    let mut silent = Vec::new();
    for _ in 0..6 {
        let s = Stranger::start(target, victim.addr.clone()).await;
        s.start_pairing().await;
        silent.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered: usize = silent
        .iter()
        .map(|s| s.replies.load(Ordering::SeqCst))
        .sum();
    assert_eq!(answered, 4, "four handshakes at once");

    let stats = stats(&victim).await.pairing_refusals;
    assert_eq!(stats.closed, 1);
    assert_eq!(stats.peer_rate_limited, 6);
    assert_eq!(stats.too_many_at_once, 2);
    wait_until(5, "refusals reported as events", || {
        let seen = refusals_seen(&victim);
        async move { seen.len() == 9 }
    })
    .await;
    let seen = refusals_seen(&victim);
    assert_eq!(seen[0], PairingRefusal::Closed);
    assert!(seen.contains(&PairingRefusal::PeerRateLimited));
    assert!(seen.contains(&PairingRefusal::TooManyAtOnce));

    // Our own start is refused too while the slots are held, with the
    // reason returned to the caller.
    let friend = spawn(root.path(), "friend").await;
    connect(&victim, &friend).await;
    wait_until(10, "friend connected", || {
        let node = victim.node.clone();
        let id = friend.node.peer_id();
        async move {
            node.connected_peers()
                .await
                .map(|p| p.contains(&id))
                .unwrap_or(false)
        }
    })
    .await;
    assert!(matches!(
        victim.node.pair(friend.node.peer_id()).await,
        Err(ferry_node::NodeError::PairingRefused(
            PairingRefusal::TooManyAtOnce
        ))
    ));
}
