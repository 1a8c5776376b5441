//! Byte pipes the app owns: a Bluetooth L2CAP channel, a Wi-Fi Direct
//! socket, a serial line. The library cannot open them (the platform
//! gives them to the app, with its permissions and background rules); the
//! app hands an open duplex stream to the node, which authenticates and
//! multiplexes it like any other connection.
//!
//! Both ends of a radio link usually look alike (two phones), so neither
//! side is told whether it dialed: each sends a short preamble with a
//! random nonce and the larger nonce runs the Noise initiator's side.
//! Every attached link arrives in the swarm as an inbound connection on
//! the address `/memory/<link id>`.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr, PeerId,
    core::{
        muxing::StreamMuxerBox,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    },
    multiaddr::Protocol,
};
use rand::RngExt as _;

use crate::Stream;

/// What starts every link: the protocol name, then a 32-byte nonce.
const MAGIC: &[u8; 12] = b"ferry-link/1";
const NONCE_LEN: usize = 32;

/// Which side of the authentication handshake this end runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// Runs the handshake's initiator side (as if it had dialed).
    Initiator,
    /// Runs the responder side.
    Responder,
}

/// Authenticates and multiplexes an attached stream in the given role
/// (the node supplies it: the same Noise and yamux as its TCP links).
pub type Upgrader = Arc<
    dyn Fn(Stream, LinkRole) -> BoxFuture<'static, io::Result<(PeerId, StreamMuxerBox)>>
        + Send
        + Sync,
>;

/// Identifies one attached link for as long as the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl LinkId {
    /// The address the link's connection carries in the swarm.
    pub fn to_multiaddr(self) -> Multiaddr {
        Multiaddr::empty().with(Protocol::Memory(self.0))
    }

    /// The link behind a connection's address, if it is one.
    pub fn from_multiaddr(address: &Multiaddr) -> Option<Self> {
        let mut protocols = address.iter();
        match (protocols.next(), protocols.next()) {
            (Some(Protocol::Memory(id)), None) => Some(Self(id)),
            _ => None,
        }
    }
}

/// Streams waiting for the swarm, and the swarm's waker.
type Queue = (VecDeque<(LinkId, Stream)>, Option<Waker>);

struct Shared {
    queue: std::sync::Mutex<Queue>,
    next_id: AtomicU64,
}

/// Hands streams to a [`PipeTransport`] from anywhere (cheap to clone).
#[derive(Clone)]
pub struct LinkAttacher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LinkAttacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAttacher").finish_non_exhaustive()
    }
}

impl LinkAttacher {
    /// Queues `stream` for the transport; returns the link's ID.
    pub fn attach(&self, stream: Stream) -> LinkId {
        let id = LinkId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let waker = match self.shared.queue.lock() {
            Ok(mut guard) => {
                guard.0.push_back((id, stream));
                guard.1.take()
            }
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.0.push_back((id, stream));
                guard.1.take()
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        id
    }
}

/// The libp2p transport attached links come out of (already
/// authenticated and multiplexed by the [`Upgrader`]).
pub struct PipeTransport {
    shared: Arc<Shared>,
    upgrader: Upgrader,
    handshake_timeout: Duration,
    listener: Option<(ListenerId, Multiaddr)>,
    announced: bool,
}

impl std::fmt::Debug for PipeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeTransport")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl PipeTransport {
    /// The transport and the handle that feeds it. Links must finish the
    /// preamble and the upgrade within `handshake_timeout` (radio links
    /// are slow: give them more than TCP gets).
    pub fn new(upgrader: Upgrader, handshake_timeout: Duration) -> (Self, LinkAttacher) {
        let shared = Arc::new(Shared {
            queue: std::sync::Mutex::new((VecDeque::new(), None)),
            next_id: AtomicU64::new(1),
        });
        (
            Self {
                shared: shared.clone(),
                upgrader,
                handshake_timeout,
                listener: None,
                announced: false,
            },
            LinkAttacher { shared },
        )
    }

    /// The address the node listens on to receive attached links.
    pub fn listen_address() -> Multiaddr {
        LinkId(0).to_multiaddr()
    }
}

/// Sends our preamble, reads the peer's, and picks the roles.
///
/// # Errors
/// If the stream fails, the peer speaks another protocol, or both nonces
/// are equal (a stream looped back to itself).
pub async fn negotiate_role(stream: &mut Stream) -> io::Result<LinkRole> {
    let nonce: [u8; NONCE_LEN] = rand::rng().random();
    let mut ours = Vec::with_capacity(MAGIC.len() + NONCE_LEN);
    ours.extend_from_slice(MAGIC);
    ours.extend_from_slice(&nonce);
    stream.write_all(&ours).await?;
    stream.flush().await?;
    let mut theirs = [0u8; MAGIC.len() + NONCE_LEN];
    stream.read_exact(&mut theirs).await?;
    let (magic, their_nonce) = theirs.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the other end does not speak ferry-link/1",
        ));
    }
    match nonce.as_slice().cmp(their_nonce) {
        std::cmp::Ordering::Greater => Ok(LinkRole::Initiator),
        std::cmp::Ordering::Less => Ok(LinkRole::Responder),
        std::cmp::Ordering::Equal => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the link is looped back to this node",
        )),
    }
}

impl libp2p::Transport for PipeTransport {
    type Output = (PeerId, StreamMuxerBox);
    type Error = io::Error;
    type ListenerUpgrade = BoxFuture<'static, io::Result<(PeerId, StreamMuxerBox)>>;
    type Dial = BoxFuture<'static, io::Result<(PeerId, StreamMuxerBox)>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        if addr != Self::listen_address() || self.listener.is_some() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        self.listener = Some((id, addr));
        self.announced = false;
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener.as_ref().is_some_and(|(l, _)| *l == id) {
            self.listener = None;
            return true;
        }
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        // Links are attached by the app, never dialed.
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = self.get_mut();
        let Some((listener_id, local_addr)) = this.listener.clone() else {
            return Poll::Pending;
        };
        if !this.announced {
            this.announced = true;
            return Poll::Ready(TransportEvent::NewAddress {
                listener_id,
                listen_addr: local_addr,
            });
        }
        let next = {
            let mut guard = match this.shared.queue.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let next = guard.0.pop_front();
            if next.is_none() {
                guard.1 = Some(cx.waker().clone());
            }
            next
        };
        let Some((link, mut stream)) = next else {
            return Poll::Pending;
        };
        let upgrader = this.upgrader.clone();
        let timeout = this.handshake_timeout;
        let upgrade = async move {
            let work = async move {
                let role = negotiate_role(&mut stream).await?;
                upgrader(stream, role).await
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "link handshake timed out",
                )),
            }
        }
        .boxed();
        Poll::Ready(TransportEvent::Incoming {
            listener_id,
            upgrade,
            local_addr,
            send_back_addr: link.to_multiaddr(),
        })
    }
}
