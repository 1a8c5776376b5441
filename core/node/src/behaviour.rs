//! The composed libp2p behaviour and the transport stack.

use std::{sync::Arc, time::Duration};

use ferry_transports::{
    Stream,
    pipe::{LinkAttacher, LinkRole, PipeTransport, Upgrader},
    pt::{
        self, PtClientTransport,
        ext_or::{ExtOrPort, ExtOrTransport},
    },
};
use futures::FutureExt as _;
use libp2p::{
    Transport as _, autonat, connection_limits,
    core::{
        muxing::StreamMuxerBox,
        transport::Boxed,
        upgrade::{InboundConnectionUpgrade as _, OutboundConnectionUpgrade as _, Version},
    },
    dcutr, gossipsub, identify,
    identity::Keypair,
    mdns, noise, ping, quic, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
    yamux,
};
use sha2::{Digest as _, Sha256};

use crate::{
    codec::{FrameBudget, LinkCodec, PROTOCOL},
    config::{NodeConfig, Role},
    counting::{ByteCounters, CountingMuxer},
    gate::ConnectionGate,
    hole_punch::HolePunch,
    mdns_filter::LanDiscovery,
    relay_limits::{CircuitBook, CircuitLimiter, SourceRateLimiter},
};
use ferry_core::{
    crypto::tags,
    proto::{self, limits, v1},
};

/// Peers on one IP address the mesh takes without penalty.
pub const COLOCATION_THRESHOLD: f64 = 8.0;

/// Streams one connection may have open at once, all protocols together
/// (yamux's default is 512, each with its own receive window).
const MAX_STREAMS_PER_CONNECTION: usize = 64;

/// The one gossip topic every envelope travels on: topics leak nothing
/// about recipients (sharding by tag is future work, see ARCHITECTURE.md).
pub const TOPIC: &str = "/ferry/envelopes/1";

/// Every protocol the node speaks, composed.
#[derive(NetworkBehaviour)]
pub(crate) struct FerryBehaviour {
    pub(crate) gate: ConnectionGate,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) link: request_response::Behaviour<LinkCodec>,
    pub(crate) mdns: Toggle<LanDiscovery>,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) dcutr: Toggle<HolePunch>,
    pub(crate) autonat: Toggle<autonat::Behaviour>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

/// The gossip message ID.
///
/// Gossipsub marks an ID as seen *before* validation, and counts every
/// later copy of an ID it judged invalid as an invalid delivery by whoever
/// forwards it. So the ID must not let a mutated copy stand for the real
/// envelope:
/// - an envelope whose claimed content ID is not its real one, or that is
///   not in canonical encoding (unknown fields, padded varints: bytes an
///   attacker can vary freely), gets a hash of its raw bytes: it can
///   neither pre-empt the real envelope nor get its honest forwarders
///   penalised;
/// - otherwise the ID is the content ID (recomputed, never the claimed
///   field) plus whether the copy is one every relay forwards (hop limit
///   above 1, no copy budget). Hop limit and copy budget are not covered by
///   the content ID; a copy made unforwardable (hop limit 1) would
///   otherwise be ignored by the first node it reaches *and* shadow the
///   real one there. Honest gossip forwards bytes unchanged, so a flood
///   keeps one ID; copies that differ only in a forwardable hop limit still
///   share it (an attacker can shorten a copy's reach that way, not stop
///   it).
pub fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let raw = || gossipsub::MessageId::new(&Sha256::digest(&message.data));
    let Ok(envelope) = proto::decode_canonical::<v1::Envelope>(&message.data) else {
        return raw();
    };
    let content_id = tags::content_id_of(&envelope);
    if envelope.content_id.as_slice() != content_id.as_slice() {
        return raw();
    }
    let forwardable = envelope.hop_limit > 1 && envelope.copy_budget == 0;
    gossipsub::MessageId::new(
        &Sha256::new()
            .chain_update(b"ferry/gossip-id/v1")
            .chain_update(content_id)
            .chain_update([u8::from(forwardable)])
            .finalize(),
    )
}

/// The gossipsub configuration both Ferry and the bare-overlay benchmark
/// use (anonymous, content-addressed, manual validation).
///
/// # Errors
/// A message from libp2p if a parameter is out of range.
pub fn gossipsub_config(params: &crate::config::GossipParams) -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .flood_publish(params.flood_publish)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(limits::MAX_ENVELOPE_LEN + 1024)
        .mesh_n(params.mesh_n)
        .mesh_n_low(params.mesh_n_low)
        .mesh_n_high(params.mesh_n_high)
        .mesh_outbound_min(params.mesh_n_low.min(2).saturating_sub(1))
        .heartbeat_interval(params.heartbeat)
        .idontwant_message_size_threshold(params.idontwant_threshold)
        .duplicate_cache_time(Duration::from_secs(120))
        .connection_handler_queue_len(2048)
        .build()
        .map_err(|e| e.to_string())
}

/// Peer scoring: invalid envelopes cost a lot (squared), nothing else
/// does; a quiet mesh peer is normal in a delay-tolerant network, so the
/// delivery-rate penalties are off. Several devices behind one address (a
/// campus NAT) are normal, but dozens are a Sybil attack taking over the
/// mesh: beyond [`COLOCATION_THRESHOLD`] peers on one IP address, each
/// extra one costs its square. `unlimited` addresses (this machine's own
/// processes, e.g. a pluggable-transport server) are exempt.
pub fn peer_score(
    topic: &gossipsub::TopicHash,
    unlimited: &[std::net::IpAddr],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.99,
        first_message_deliveries_cap: 50.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // Three invalid envelopes: 3² × −10 = −90, under the graylist
        // threshold; the penalty halves in about 70 s.
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..gossipsub::TopicScoreParams::default()
    };
    // 8 peers on one address: no penalty; 12: −32 (no gossip to them);
    // 14 or more: below the graylist threshold.
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: -2.0,
        ip_colocation_factor_threshold: COLOCATION_THRESHOLD,
        ip_colocation_factor_whitelist: unlimited.iter().copied().collect(),
        ..gossipsub::PeerScoreParams::default()
    };
    params.topics.insert(topic.clone(), topic_params);
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

/// The node's transports, built once at start.
pub(crate) struct Transports {
    /// Everything, authenticated, multiplexed and counted.
    pub(crate) stack: Boxed<(libp2p::PeerId, StreamMuxerBox)>,
    /// The relay v2 client's behaviour half.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Where attached links enter.
    pub(crate) links: LinkAttacher,
    /// Where a PT server's clients enter, once bound.
    pub(crate) ext_or_port: Option<ExtOrPort>,
}

/// How long an attached link may take to authenticate: radio links are
/// slow and the app chose them, so they get more than a stranger's socket.
pub(crate) const LINK_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the transport stack: the relay v2 client, the pluggable
/// transport's bridges, TCP, QUIC, WebSocket (all with Noise and yamux),
/// attached links, and the app's own transports, all counted.
pub(crate) fn transport(
    key: &Keypair,
    config: &mut NodeConfig,
    counters: Arc<ByteCounters>,
    bridges: Option<PtClientTransport>,
) -> std::io::Result<Transports> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    let handshake = config.limits.handshake_timeout;
    let (relay_transport, relay_client) = relay::client::new(key.public().to_peer_id());
    let relayed = relay_transport
        .map(|stream, _| Box::new(stream) as Stream)
        .boxed();
    let mut stack = upgraded(relayed, noise.clone(), handshake);
    // Bridges before TCP: a bridge's address is never dialed in the clear.
    if let Some(bridges) = bridges {
        stack = join(stack, upgraded(bridges.boxed(), noise.clone(), handshake));
    }
    if config.tcp {
        stack = join(stack, upgraded_tcp(noise.clone(), handshake));
    }
    if config.quic {
        let mut quic_config = quic::Config::new(key);
        quic_config.handshake_timeout = handshake;
        quic_config.max_concurrent_stream_limit = MAX_STREAMS_PER_CONNECTION as u32;
        let quic = quic::tokio::Transport::new(quic_config)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed();
        stack = join(stack, quic);
    }
    if let Some(websocket) = &config.websocket {
        let ws = websocket.build().map_err(std::io::Error::other)?;
        stack = join(stack, upgraded(ws, noise.clone(), handshake));
    }
    let mut ext_or_port = None;
    if let Some(server) = &config.pt_server {
        let (ext_or, port) =
            ExtOrTransport::new(&pt::cookie_file(server), &config.limits.unlimited_sources)?;
        stack = join(stack, upgraded(ext_or.boxed(), noise.clone(), handshake));
        ext_or_port = Some(port);
    }
    let (links, attacher) = PipeTransport::new(link_upgrader(noise), LINK_HANDSHAKE_TIMEOUT);
    stack = join(stack, links.boxed());
    for factory in std::mem::take(&mut config.extra_transports) {
        stack = join(stack, factory(key)?);
    }
    Ok(Transports {
        stack: counted(stack, counters),
        relay_client,
        links: attacher,
        ext_or_port,
    })
}

/// Noise and yamux over an attached link, in the role its preamble chose
/// (no protocol negotiation: both ends are Ferry).
fn link_upgrader(noise: noise::Config) -> Upgrader {
    Arc::new(move |stream: Stream, role: LinkRole| {
        let noise = noise.clone();
        async move {
            let (peer, secured) = match role {
                LinkRole::Initiator => noise.upgrade_outbound(stream, "/noise").await,
                LinkRole::Responder => noise.upgrade_inbound(stream, "/noise").await,
            }
            .map_err(std::io::Error::other)?;
            let yamux = yamux_config();
            let muxer = match role {
                LinkRole::Initiator => yamux.upgrade_outbound(secured, "/yamux/1.0.0").await,
                LinkRole::Responder => yamux.upgrade_inbound(secured, "/yamux/1.0.0").await,
            }
            .map_err(std::io::Error::other)?;
            Ok((peer, StreamMuxerBox::new(muxer)))
        }
        .boxed()
    })
}

/// Noise and yamux over a transport of raw streams.
fn upgraded(
    transport: Boxed<Stream>,
    noise: noise::Config,
    handshake: Duration,
) -> Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    transport
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux_config())
        .timeout(handshake)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

/// yamux with a bounded number of streams per connection.
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    config
}

/// TCP with Noise and yamux; the upgrade must finish within `handshake`
/// (a socket that never speaks holds a pending slot no longer).
fn upgraded_tcp(
    noise: noise::Config,
    handshake: Duration,
) -> Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    let tcp = ferry_transports::tcp::transport()
        .map(|stream, _| Box::new(stream) as Stream)
        .boxed();
    upgraded(tcp, noise, handshake)
}

/// Counts the bytes of every substream of every connection of `stack`.
fn counted(
    stack: Boxed<(libp2p::PeerId, StreamMuxerBox)>,
    counters: Arc<ByteCounters>,
) -> Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    stack
        .map(move |(peer, muxer), _| {
            (
                peer,
                StreamMuxerBox::new(CountingMuxer::new(muxer, counters.clone())),
            )
        })
        .boxed()
}

fn join(
    a: Boxed<(libp2p::PeerId, StreamMuxerBox)>,
    b: Boxed<(libp2p::PeerId, StreamMuxerBox)>,
) -> Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    a.or_transport(b)
        .map(|either, _| either.into_inner())
        .boxed()
}

/// Builds the behaviour.
pub(crate) fn behaviour(
    key: &Keypair,
    config: &NodeConfig,
    relay_client: relay::client::Behaviour,
    frame_budget: Arc<FrameBudget>,
    circuits: Arc<std::sync::Mutex<CircuitBook>>,
) -> std::io::Result<FerryBehaviour> {
    let peer_id = key.public().to_peer_id();
    let limits = &config.limits;
    let topic = gossipsub::IdentTopic::new(TOPIC);
    let gossip_config = gossipsub_config(&config.gossip).map_err(std::io::Error::other)?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
            .map_err(std::io::Error::other)?;
    let (params, thresholds) = peer_score(&topic.hash(), &limits.unlimited_sources);
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(std::io::Error::other)?;
    gossipsub.subscribe(&topic).map_err(std::io::Error::other)?;
    let link = request_response::Behaviour::with_codec(
        LinkCodec::new(frame_budget),
        [(PROTOCOL, request_response::ProtocolSupport::Full)],
        // 30 s: a 1 MiB frame over a slow radio link; few streams at once,
        // since each may hold a frame buffer.
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(limits.max_link_streams),
    );
    let mdns = if config.mdns {
        Some(LanDiscovery::new(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?))
    } else {
        None
    };
    let relay_server = (config.role == Role::Relay && config.relay_circuits)
        .then(|| relay_server(peer_id, config, circuits));
    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.max_connections))
        .with_max_established_per_peer(Some(limits.max_connections_per_peer))
        .with_max_pending_outgoing(Some(limits.max_pending_outgoing));
    // Identify is needed by relay, dcutr and autonat (observed addresses).
    // No node lists its listen addresses (LAN and loopback addresses locate
    // a person, and a relay's private ones map its network): it shares only
    // its external addresses, which are configured or confirmed public
    // ones. The protocol and agent strings are libp2p's generic ones: see
    // ARCHITECTURE.md (Node, what a scanner learns) for what still tells a
    // peer that this is Ferry.
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
            .with_agent_version(IDENTIFY_AGENT.into())
            .with_interval(Duration::from_secs(600))
            .with_push_listen_addr_updates(false)
            .with_hide_listen_addrs(true)
            .with_cache_size(0),
    );
    // Relay-only privacy: no hole punching (which hands our observed public
    // address to whoever opens a relayed connection) and no autonat (which
    // sends our candidate addresses to the peers it asks).
    let direct = !config.relay_only;
    Ok(FerryBehaviour {
        gate: ConnectionGate::new(
            limits.clone(),
            config.trusted_peers.iter().copied().collect(),
        ),
        limits: connection_limits::Behaviour::new(connection_limits),
        gossipsub,
        link,
        mdns: mdns.into(),
        relay_server: relay_server.into(),
        relay_client,
        dcutr: direct
            .then(|| HolePunch::new(dcutr::Behaviour::new(peer_id)))
            .into(),
        autonat: direct.then(|| autonat_behaviour(peer_id, config)).into(),
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}

/// Autonat. As a client, a node asks only its bootstrap peers (any
/// connected peer could otherwise "confirm" an address of its choosing,
/// which the node would then announce and hand to hole punching); a relay
/// asks nobody (its reachable addresses are configured or its global
/// listen addresses). As a server, a relay answers its clients' probes
/// (so clients whose bootstrap peers are relays learn their reachability)
/// and a client answers few; each answer is an outbound dial a peer
/// chooses, so both are throttled.
fn autonat_behaviour(peer_id: libp2p::PeerId, config: &NodeConfig) -> autonat::Behaviour {
    let relay = config.role == Role::Relay;
    let mut behaviour = autonat::Behaviour::new(
        peer_id,
        autonat::Config {
            use_connected: false,
            max_peer_addresses: 2,
            throttle_clients_global_max: if relay { 30 } else { 4 },
            throttle_clients_peer_max: 1,
            throttle_clients_period: Duration::from_secs(60),
            ..autonat::Config::default()
        },
    );
    if !relay {
        for (peer, address) in &config.bootstrap {
            behaviour.add_server(*peer, Some(address.clone()));
        }
    }
    behaviour
}

/// The identify protocol version announced: libp2p's generic one.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/libp2p/1.0.0";

/// The agent announced: no product name, no version.
pub const IDENTIFY_AGENT: &str = "rust-libp2p";

/// The relay v2 server, sized for Ferry's links and limited per source.
///
/// Each peer holds one reservation; the gate bounds connections per source,
/// so one source holds at most `max_per_source` reservations, and the rate
/// limiters bound how fast a source can churn them.
fn relay_server(
    peer_id: libp2p::PeerId,
    config: &NodeConfig,
    book: Arc<std::sync::Mutex<CircuitBook>>,
) -> relay::Behaviour {
    let limits = &config.limits;
    let per_minute = limits.relay_requests_per_source_per_min.max(1);
    let relay_config = relay::Config {
        max_reservations: limits.relay_reservations as usize,
        max_reservations_per_peer: 1,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: limits.relay_circuits as usize,
        max_circuits_per_peer: limits.relay_circuits_per_peer as usize,
        max_circuit_duration: limits.relay_circuit_duration,
        max_circuit_bytes: limits.relay_circuit_bytes,
        ..relay::Config::default()
    };
    let mut relay_config = relay_config;
    relay_config
        .reservation_rate_limiters
        .push(Box::new(SourceRateLimiter::new(
            per_minute,
            limits.unlimited_sources.clone(),
        )));
    relay_config
        .circuit_src_rate_limiters
        .push(Box::new(CircuitLimiter {
            book,
            rate: SourceRateLimiter::new(per_minute, limits.unlimited_sources.clone()),
        }));
    relay::Behaviour::new(peer_id, relay_config)
}

/// A TCP + Noise + yamux transport whose bytes are counted into `counters`
/// (the benchmark's bare overlay uses it, so both overlays are measured at
/// the same place).
///
/// # Errors
/// If the Noise configuration cannot be built from `key`.
pub fn counted_tcp(
    key: &Keypair,
    counters: Arc<ByteCounters>,
) -> std::io::Result<Boxed<(libp2p::PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    Ok(counted(
        upgraded_tcp(noise, Duration::from_secs(20)),
        counters,
    ))
}
