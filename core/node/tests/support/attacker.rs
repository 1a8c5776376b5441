//! Attackers on loopback: sockets and libp2p peers that originate from a
//! chosen source address (any 127.x.y.z is this machine, so one test
//! process can play hosts on many networks).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncWriteExt as _, StreamExt as _, future::BoxFuture};
use libp2p::{
    Multiaddr, PeerId, Transport,
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade::Version,
    },
    gossipsub,
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    swarm::SwarmEvent,
    yamux,
};

/// A plain libp2p peer (TCP, Noise, yamux, a fresh identity) running
/// `make`'s behaviour; connections it does not use close after `idle`.
pub fn tcp_swarm<B: libp2p::swarm::NetworkBehaviour>(
    make: impl FnOnce(&Keypair) -> B,
    idle: Duration,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(make)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// As [`tcp_swarm`], with a relay v2 client (its behaviour is handed to
/// `make`), so the peer can dial through relays.
pub fn relayed_swarm<B: libp2p::swarm::NetworkBehaviour>(
    make: impl FnOnce(&Keypair, libp2p::relay::client::Behaviour) -> B,
    idle: Duration,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .expect("relay client")
        .with_behaviour(make)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// A gossipsub peer with Ferry's gossip `config`, anonymous, that takes
/// every topic.
pub fn raw_gossipsub(config: gossipsub::Config) -> gossipsub::Behaviour {
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).expect("gossipsub")
}

/// The IP and port of a `/ip4/…/tcp/…` address.
pub fn socket_addr(address: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in address.iter() {
        match p {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("ip"), port.expect("tcp port"))
}

/// Opens a TCP connection to `target` from `source` and sends nothing.
pub async fn silent_socket(
    source: IpAddr,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// A TCP transport whose dials leave from one source address.
#[derive(Clone, Copy)]
pub struct SourceBoundTcp {
    pub source: IpAddr,
}

impl Transport for SourceBoundTcp {
    type Output = libp2p::tcp::tokio::TcpStream;
    type Error = std::io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        address: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(address))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        address: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let is_tcp = address.iter().any(|p| matches!(p, Protocol::Tcp(_)))
            && !address.iter().any(|p| matches!(p, Protocol::P2pCircuit));
        if !is_tcp {
            return Err(TransportError::MultiaddrNotSupported(address));
        }
        let target = socket_addr(&address);
        let source = self.source;
        Ok(Box::pin(async move {
            silent_socket(source, target)
                .await
                .map(libp2p::tcp::tokio::TcpStream)
        }))
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

/// Noise and yamux over [`SourceBoundTcp`].
pub fn upgraded_from(source: IpAddr, key: &Keypair) -> Boxed<(PeerId, StreamMuxerBox)> {
    SourceBoundTcp { source }
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key).expect("noise"))
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(10))
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

/// A Sybil: a fresh PeerId from `source`, subscribed to Ferry's topic so
/// its connection stays in use, connected to `target`. Returns its PeerId
/// and a flag that is true while it is connected.
pub fn sybil(source: IpAddr, target: Multiaddr) -> (PeerId, Arc<AtomicBool>) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let transport = upgraded_from(source, &key);
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .build()
        .expect("gossipsub config");
    let behaviour: gossipsub::Behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .expect("gossipsub");
    let mut swarm = libp2p::Swarm::new(
        transport,
        behaviour,
        peer,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(3600)),
    );
    let topic = gossipsub::IdentTopic::new(ferry_node::bench_support::TOPIC);
    swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
    let connected = Arc::new(AtomicBool::new(false));
    let flag = connected.clone();
    swarm.dial(target).expect("dial");
    tokio::spawn(async move {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => flag.store(true, Ordering::SeqCst),
                SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } => {
                    flag.store(false, Ordering::SeqCst);
                    return;
                }
                SwarmEvent::OutgoingConnectionError { .. } => return,
                _ => {}
            }
        }
    });
    (peer, connected)
}

/// Events of a [`reserving_sybil`].
#[derive(libp2p::swarm::NetworkBehaviour)]
pub struct ReservingSybil {
    relay: libp2p::relay::client::Behaviour,
}

/// A Sybil from `source` that asks `relay` (an address ending in
/// `/p2p/<relay>`) for a relay v2 reservation. Returns its PeerId and a
/// flag set once the reservation is granted.
pub fn reserving_sybil(source: IpAddr, relay: Multiaddr) -> (PeerId, Arc<AtomicBool>) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let (relay_transport, client) = libp2p::relay::client::new(peer);
    let transport = relay_transport
        .or_transport(SourceBoundTcp { source })
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(&key).expect("noise"))
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(10))
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed();
    let mut swarm = libp2p::Swarm::new(
        transport,
        ReservingSybil { relay: client },
        peer,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(3600)),
    );
    let reserved = Arc::new(AtomicBool::new(false));
    let flag = reserved.clone();
    if swarm.listen_on(relay.with(Protocol::P2pCircuit)).is_err() {
        return (peer, reserved);
    }
    tokio::spawn(async move {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ReservingSybilEvent::Relay(
                    libp2p::relay::client::Event::ReservationReqAccepted { .. },
                )) => flag.store(true, Ordering::SeqCst),
                SwarmEvent::ListenerClosed { .. } => {
                    flag.store(false, Ordering::SeqCst);
                    return;
                }
                _ => {}
            }
        }
    });
    (peer, reserved)
}

/// A request-response codec that claims a 1 MiB frame, sends 100 bytes of
/// it, and stalls.
#[derive(Clone, Default)]
pub struct ClaimCodec;

impl libp2p::request_response::Codec for ClaimCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn read_response<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        futures::future::pending().await
    }

    async fn write_request<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&(1024u32 * 1024).to_be_bytes()).await?;
        io.write_all(&[0u8; 101]).await?;
        io.flush().await?;
        futures::future::pending().await
    }

    async fn write_response<T>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// A peer that connects to `target` and claims `claims` frames of 1 MiB on
/// Ferry's link protocol, sending 100 bytes of each.
pub fn claim_frames(target: Multiaddr, peer: PeerId, claims: usize) -> tokio::task::JoinHandle<()> {
    use libp2p::request_response;
    let mut swarm = tcp_swarm(
        |_| {
            request_response::Behaviour::<ClaimCodec>::new(
                [(
                    libp2p::StreamProtocol::new("/ferry/link/1"),
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(128),
            )
        },
        Duration::from_secs(60),
    );
    let _ = swarm.dial(target);
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                for _ in 0..claims {
                    swarm.behaviour_mut().send_request(&peer, ());
                }
                break;
            }
        }
        loop {
            swarm.select_next_some().await;
        }
    })
}
