//! Node configuration: a builder with defaults for a phone, a relay preset,
//! and validation in [`NodeBuilder::build`].

use std::{fmt, path::PathBuf, time::Duration};

use ferry_core::{
    bundle::BundleLimits,
    engine::{EngineConfig, Quotas},
};
use ferry_store::KdfParams;
use ferry_transports::{
    pt::{PtClientConfig, PtServerConfig},
    websocket::WebSocketConfig,
};
use libp2p::{
    Multiaddr, PeerId,
    core::{muxing::StreamMuxerBox, transport::Boxed},
    identity::Keypair,
    multiaddr::Protocol,
};
use thiserror::Error;
use zeroize::Zeroizing;

/// A way the node reaches peers, by name (`tcp`, `quic`, `ws`, `wss`,
/// `obfs4`, `link`), for configuration files and for showing how a peer
/// is connected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// QUIC.
    Quic,
    /// WebSocket.
    WebSocket,
    /// WebSocket over TLS.
    WebSocketTls,
    /// A pluggable transport by its method name (`obfs4`).
    Pluggable(String),
    /// A byte pipe the app attached ([`crate::Node::attach_link`]).
    Link,
    /// A relayed circuit.
    Relayed,
    /// An app-supplied transport.
    Other,
}

impl TransportKind {
    /// How a connection with this remote address travels (`None` when
    /// the address does not say). Bridge connections look like TCP from
    /// their address; the node knows them by their bridge.
    pub fn of(address: &Multiaddr) -> Option<Self> {
        let mut kind = None;
        for protocol in address.iter() {
            kind = match protocol {
                Protocol::P2pCircuit => return Some(Self::Relayed),
                Protocol::Memory(_) => return Some(Self::Link),
                Protocol::Tcp(_) => Some(Self::Tcp),
                Protocol::QuicV1 => Some(Self::Quic),
                Protocol::Ws(_) if kind == Some(Self::WebSocketTls) => kind,
                Protocol::Ws(_) => Some(Self::WebSocket),
                Protocol::Wss(_) | Protocol::Tls => Some(Self::WebSocketTls),
                _ => kind,
            };
        }
        kind
    }

    /// The kind's name in configuration files.
    pub fn name(&self) -> &str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::WebSocket => "ws",
            Self::WebSocketTls => "wss",
            Self::Pluggable(method) => method,
            Self::Link => "link",
            Self::Relayed => "relay",
            Self::Other => "other",
        }
    }
}

impl std::str::FromStr for TransportKind {
    type Err = ConfigError;

    /// Parses a name from a configuration file (`tcp`, `quic`, `ws`,
    /// `wss`, `link`, `relay`, or a pluggable transport's method).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "tcp" => Self::Tcp,
            "quic" => Self::Quic,
            "ws" | "websocket" => Self::WebSocket,
            "wss" | "tls/ws" => Self::WebSocketTls,
            "link" => Self::Link,
            "relay" => Self::Relayed,
            method
                if !method.is_empty()
                    && method.len() <= 64
                    && method
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Self::Pluggable(method.to_owned())
            }
            other => return Err(ConfigError::UnknownTransport(other.to_owned())),
        })
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Refuses listen addresses no configured transport can serve.
fn check_listen_address(
    address: &Multiaddr,
    websocket: Option<&WebSocketConfig>,
) -> Result<(), ConfigError> {
    let refuse = |reason: &str| ConfigError::Listen {
        address: address.to_string(),
        reason: reason.to_owned(),
    };
    match TransportKind::of(address) {
        Some(TransportKind::WebSocket) if websocket.is_none() => {
            Err(refuse("WebSocket is not enabled (NodeBuilder::websocket)"))
        }
        Some(TransportKind::WebSocketTls) => match websocket {
            None => Err(refuse("WebSocket is not enabled (NodeBuilder::websocket)")),
            Some(ws) if !ws.can_serve_tls() => Err(refuse(
                "TLS needs a certificate (WebSocketConfig::identity)",
            )),
            Some(_) => Ok(()),
        },
        Some(TransportKind::Link) => Err(refuse(
            "links are attached with Node::attach_link, not listened on",
        )),
        _ => Ok(()),
    }
}

/// A libp2p transport the app adds (WebSocket, an obfuscation tunnel, a
/// byte pipe over Bluetooth, …): built once from the node's network key.
/// Its connections must come out authenticated and multiplexed.
pub type TransportFactory =
    Box<dyn FnOnce(&Keypair) -> std::io::Result<Boxed<(PeerId, StreamMuxerBox)>> + Send>;

/// What the node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An app on a phone or desktop: modest quotas, an unlinkable network
    /// identity on every start.
    Client,
    /// An always-on store-and-forward relay: big quotas, custody for
    /// strangers' mail, a libp2p relay v2 server, a stable network identity
    /// (so its address can be shared).
    Relay,
}

/// Which libp2p key the node uses on the network (never its Ferry
/// identity: the two are unlinkable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKey {
    /// A fresh key on every start (the default for clients).
    Ephemeral,
    /// A key derived from the store's key: the same PeerId across restarts
    /// (the default for relays, whose addresses are shared).
    Persistent,
}

/// Gossipsub parameters (rust-libp2p defaults unless measured otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipParams {
    /// Target mesh degree D.
    pub mesh_n: usize,
    /// Lower bound D_lo.
    pub mesh_n_low: usize,
    /// Upper bound D_hi.
    pub mesh_n_high: usize,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Envelopes at least this large are announced with IDONTWANT to mesh
    /// peers when they arrive, so the peers do not send them again.
    pub idontwant_threshold: usize,
    /// Whether the node's own publishes go to every subscribed peer rather
    /// than the mesh: on for clients (few peers, their own messages leave
    /// at once), off for relays (see [`GossipParams::relay`]).
    pub flood_publish: bool,
}

impl GossipParams {
    /// A relay's parameters: as the defaults, but without flood publishing.
    /// A relay publishes what anyone pushes to it over sync; flooding those
    /// to every subscriber (up to a thousand) would let one pusher make the
    /// relay send a thousand copies of each envelope. Mesh peers get it at
    /// once, the others by gossip (IHAVE/IWANT) or reconciliation.
    pub fn relay() -> Self {
        Self {
            flood_publish: false,
            ..Self::default()
        }
    }
}

impl Default for GossipParams {
    fn default() -> Self {
        Self {
            // Below gossipsub's usual 6 / 5 / 12: here gossip is not the only
            // path (every link reconciles on connect and periodically), so
            // the mesh needs less redundancy, and each degree removed is a
            // copy of every envelope not sent. Measured in BENCHMARKS.md
            // (node section): at 100 nodes, amplification 5.96 -> 4.43 and
            // p50 340 ms -> 19-157 ms (four runs) against D = 6.
            mesh_n: 4,
            mesh_n_low: 3,
            mesh_n_high: 8,
            heartbeat: Duration::from_secs(1),
            // Every envelope is at least 512 bytes sealed; announce them all.
            idontwant_threshold: 512,
            flood_publish: true,
        }
    }
}

/// Connection and resource limits: what one attacker can tie up.
///
/// Connections are grouped by *source*: the remote address's prefix (an
/// IPv4 /24, an IPv6 /56; a relayed connection by its relay), so one host
/// or one small network cannot take every slot with free PeerIds. Start
/// from [`Limits::client`] or [`Limits::relay`] and change fields with
/// `Limits { max_per_source: 4, ..Limits::relay() }`. docs/relay.md says
/// what these withstand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Established connections in total (inbound and outbound).
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Of `max_connections`, slots only outbound connections and trusted
    /// peers may use: inbound strangers can never keep the node from
    /// dialling its bootstrap peers.
    pub reserved_outbound: u32,
    /// Incoming connections still handshaking, per transport kind (QUIC's
    /// budget is separate, since its source addresses can be forged).
    pub max_pending_incoming: u32,
    /// Outgoing dials in progress.
    pub max_pending_outgoing: u32,
    /// Incoming connections still handshaking from one source.
    pub max_pending_per_source: u32,
    /// Established inbound connections from one source (trusted peers are
    /// not counted).
    pub max_per_source: u32,
    /// New inbound connections one source may open in a burst…
    pub source_burst: u32,
    /// …and per second after it.
    pub source_rate_per_sec: u32,
    /// Time an inbound connection has to finish its security and
    /// multiplexing handshakes.
    pub handshake_timeout: Duration,
    /// An inbound connection from an untrusted peer that has not used Ferry
    /// within this time (no gossip subscription, link frame, relay
    /// reservation or circuit) is closed; so is any connection no protocol
    /// uses for this long.
    pub idle_timeout: Duration,
    /// New inbound connections are refused while the process uses more
    /// memory than this (resident set), if set.
    pub max_memory_bytes: Option<u64>,
    /// Bytes of direct-link frames being read at once, node-wide; a frame
    /// that would go beyond is refused (its sender retries later).
    pub max_frame_buffer_bytes: usize,
    /// Concurrent direct-link streams a peer may open.
    pub max_link_streams: usize,
    /// Sources exempt from the per-source limits (global limits still
    /// apply): this machine's own processes, such as a pluggable-transport
    /// server that forwards every client from 127.0.0.1.
    pub unlimited_sources: Vec<std::net::IpAddr>,
    /// Relay v2 server: reservations in total (one per peer).
    pub relay_reservations: u32,
    /// Relay v2 server: circuits in total.
    pub relay_circuits: u32,
    /// Relay v2 server: circuits per peer.
    pub relay_circuits_per_peer: u32,
    /// Relay v2 server: circuits open at once from one source.
    pub relay_circuits_per_source: u32,
    /// Relay v2 server: bytes one circuit may carry (both ways).
    pub relay_circuit_bytes: u64,
    /// Relay v2 server: how long one circuit may last.
    pub relay_circuit_duration: Duration,
    /// Relay v2 server: reservations and circuits one source may request
    /// per minute.
    pub relay_requests_per_source_per_min: u32,
}

/// The loopback addresses: this machine's own processes.
fn loopback_sources() -> Vec<std::net::IpAddr> {
    vec![
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ]
}

impl Limits {
    /// A phone's or desktop's limits.
    pub fn client() -> Self {
        Self {
            max_connections: 128,
            max_connections_per_peer: 2,
            reserved_outbound: 32,
            max_pending_incoming: 64,
            max_pending_outgoing: 32,
            max_pending_per_source: 4,
            max_per_source: 8,
            source_burst: 8,
            source_rate_per_sec: 2,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_memory_bytes: None,
            max_frame_buffer_bytes: 16 * 1024 * 1024,
            max_link_streams: 8,
            unlimited_sources: loopback_sources(),
            relay_reservations: 0,
            relay_circuits: 0,
            relay_circuits_per_peer: 0,
            relay_circuits_per_source: 0,
            relay_circuit_bytes: 0,
            relay_circuit_duration: Duration::ZERO,
            relay_requests_per_source_per_min: 0,
        }
    }

    /// An always-on relay's limits (see docs/relay.md for the arithmetic).
    pub fn relay() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 2,
            reserved_outbound: 64,
            // Pending handshakes are cheap (a socket and a few KiB) and cut
            // after 5 s: a large budget makes a distributed attacker need
            // 64 networks (or 16 wider ones) to fill it.
            max_pending_incoming: 512,
            max_pending_outgoing: 64,
            max_pending_per_source: 8,
            max_per_source: 16,
            source_burst: 16,
            source_rate_per_sec: 4,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_memory_bytes: None,
            max_frame_buffer_bytes: 64 * 1024 * 1024,
            max_link_streams: 8,
            unlimited_sources: loopback_sources(),
            relay_reservations: 1024,
            relay_circuits: 256,
            relay_circuits_per_peer: 8,
            relay_circuits_per_source: 16,
            // A circuit carries Ferry's own links: sync frames are up to
            // 1 MiB, a backlog many of them.
            relay_circuit_bytes: 256 * 1024 * 1024,
            relay_circuit_duration: Duration::from_secs(3600),
            relay_requests_per_source_per_min: 30,
        }
    }
}

/// A validated node configuration (see [`NodeBuilder`]).
pub struct NodeConfig {
    pub(crate) storage: PathBuf,
    pub(crate) passphrase: Zeroizing<Vec<u8>>,
    pub(crate) kdf: KdfParams,
    pub(crate) role: Role,
    pub(crate) network_key: NetworkKey,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) external_addresses: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(crate) trusted_peers: Vec<PeerId>,
    pub(crate) tcp: bool,
    pub(crate) quic: bool,
    pub(crate) mdns: bool,
    pub(crate) mdns_auto_dial: bool,
    pub(crate) relay_circuits: bool,
    pub(crate) relay_only: bool,
    pub(crate) advertise_local_addresses: bool,
    pub(crate) extra_transports: Vec<TransportFactory>,
    pub(crate) websocket: Option<WebSocketConfig>,
    pub(crate) pt_client: Option<PtClientConfig>,
    pub(crate) pt_server: Option<PtServerConfig>,
    pub(crate) bundle_limits: BundleLimits,
    pub(crate) engine: EngineConfig,
    pub(crate) gossip: GossipParams,
    pub(crate) limits: Limits,
    pub(crate) event_queue: usize,
    pub(crate) keep_history: bool,
    pub(crate) display_name: Option<String>,
    pub(crate) resync_interval: Duration,
    pub(crate) redial_interval: Duration,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No passphrase, no storage path (it may name the user).
        f.debug_struct("NodeConfig")
            .field("role", &self.role)
            .field("network_key", &self.network_key)
            .field("listen", &self.listen.len())
            .field("bootstrap", &self.bootstrap.len())
            .field("tcp", &self.tcp)
            .field("quic", &self.quic)
            .field("mdns", &self.mdns)
            .field("mdns_auto_dial", &self.mdns_auto_dial)
            .field("relay_only", &self.relay_only)
            .field("extra_transports", &self.extra_transports.len())
            .field("websocket", &self.websocket.is_some())
            .field("pt_client", &self.pt_client.is_some())
            .field("pt_server", &self.pt_server.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// The transports this node can dial or listen on.
    pub fn transports(&self) -> Vec<TransportKind> {
        let mut kinds = Vec::new();
        if self.tcp {
            kinds.push(TransportKind::Tcp);
        }
        if self.quic {
            kinds.push(TransportKind::Quic);
        }
        if self.websocket.is_some() {
            kinds.push(TransportKind::WebSocket);
            kinds.push(TransportKind::WebSocketTls);
        }
        if let Some(pt) = &self.pt_client {
            kinds.push(TransportKind::Pluggable(
                pt.bridges
                    .first()
                    .map(|b| b.transport.clone())
                    .unwrap_or_default(),
            ));
        } else if let Some(pt) = &self.pt_server {
            kinds.push(TransportKind::Pluggable(pt.method.clone()));
        }
        kinds.push(TransportKind::Link);
        if !self.extra_transports.is_empty() {
            kinds.push(TransportKind::Other);
        }
        kinds
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The engine configuration in effect.
    pub fn engine(&self) -> &EngineConfig {
        &self.engine
    }

    /// Whether mDNS discovery runs (off unless [`NodeBuilder::mdns`]).
    pub fn mdns(&self) -> bool {
        self.mdns
    }

    /// Whether every peer mDNS finds is dialled (off unless
    /// [`NodeBuilder::mdns_auto_dial`]).
    pub fn mdns_auto_dial(&self) -> bool {
        self.mdns_auto_dial
    }

    /// Whether relay-only privacy is on ([`NodeBuilder::relay_only`]).
    pub fn relay_only(&self) -> bool {
        self.relay_only
    }

    /// The connection limits in effect.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The gossip parameters in effect.
    pub fn gossip(&self) -> GossipParams {
        self.gossip
    }
}

/// Why a configuration was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No storage directory was given.
    #[error("a storage directory is required")]
    NoStorage,
    /// The passphrase is empty.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// No transport is enabled.
    #[error("at least one transport must be enabled")]
    NoTransport,
    /// A bootstrap address does not end in `/p2p/<peer id>`.
    #[error("bootstrap address {0} does not name its peer (/p2p/…)")]
    BootstrapWithoutPeerId(String),
    /// Quotas that cannot hold a single envelope, or a per-tag or per-peer
    /// quota above the global one.
    #[error("inconsistent quotas")]
    Quotas,
    /// Mesh degrees not ordered `mesh_n_low <= mesh_n <= mesh_n_high`, or
    /// zero.
    #[error("gossip mesh degrees must satisfy 0 < low <= n <= high")]
    MeshDegrees,
    /// The event queue is shorter than 16.
    #[error("the event queue must hold at least 16 events")]
    EventQueue,
    /// A zero interval or TTL.
    #[error("intervals and the message TTL must be positive")]
    Interval,
    /// Connection limits that cannot work: no room for inbound
    /// connections, a zero per-source limit or timeout, or a frame buffer
    /// smaller than one sync frame.
    #[error("inconsistent connection limits")]
    Limits,
    /// A listen address needs a transport that is not configured (a
    /// `/ws` address without [`NodeBuilder::websocket`], `/tls/ws`
    /// without a certificate).
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: String,
        /// What is missing.
        reason: String,
    },
    /// A transport name no transport answers to.
    #[error(
        "unknown transport {0:?} (tcp, quic, ws, wss, link, relay, or a PT method such as obfs4)"
    )]
    UnknownTransport(String),
    /// A pluggable transport's binary is missing, or its bridge lines or
    /// options are bad.
    #[error("{0}")]
    PluggableTransport(String),
}

/// Builds a [`NodeConfig`]; start from [`crate::Node::builder`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join("ferry-doc-builder");
/// let config = ferry_node::Node::builder()
///     .storage(&dir, "correct horse battery staple")
///     .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
///     .mdns(false)
///     .build()?;
/// assert_eq!(config.role(), ferry_node::Role::Client);
/// # Ok(()) }
/// ```
pub struct NodeBuilder {
    storage: Option<PathBuf>,
    passphrase: Zeroizing<Vec<u8>>,
    kdf: KdfParams,
    role: Role,
    network_key: Option<NetworkKey>,
    listen: Vec<Multiaddr>,
    external_addresses: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    trusted_peers: Vec<PeerId>,
    tcp: bool,
    quic: bool,
    mdns: bool,
    mdns_auto_dial: bool,
    relay_circuits: bool,
    relay_only: bool,
    advertise_local_addresses: bool,
    extra_transports: Vec<TransportFactory>,
    websocket: Option<WebSocketConfig>,
    pt_client: Option<PtClientConfig>,
    pt_server: Option<PtServerConfig>,
    bundle_limits: BundleLimits,
    engine: Option<EngineConfig>,
    gossip: Option<GossipParams>,
    limits: Option<Limits>,
    event_queue: usize,
    keep_history: bool,
    display_name: Option<String>,
    resync_interval: Duration,
    redial_interval: Duration,
    delivery_delays: Option<((u64, u64), (u64, u64))>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self {
            storage: None,
            passphrase: Zeroizing::new(Vec::new()),
            kdf: KdfParams::default(),
            role: Role::Client,
            network_key: None,
            listen: Vec::new(),
            external_addresses: Vec::new(),
            bootstrap: Vec::new(),
            trusted_peers: Vec::new(),
            tcp: true,
            quic: true,
            // Quiet on a LAN by default: mDNS answers anyone who asks with
            // our addresses, and dialling every peer it finds tells each
            // of them we run Ferry (ARCHITECTURE.md, Node).
            mdns: false,
            mdns_auto_dial: false,
            relay_circuits: true,
            relay_only: false,
            advertise_local_addresses: false,
            extra_transports: Vec::new(),
            websocket: None,
            pt_client: None,
            pt_server: None,
            bundle_limits: BundleLimits::default(),
            engine: None,
            gossip: None,
            limits: None,
            event_queue: 1024,
            keep_history: true,
            display_name: None,
            resync_interval: Duration::from_secs(60),
            redial_interval: Duration::from_secs(10),
            delivery_delays: None,
        }
    }
}

/// Quotas of a relay: it holds mail for many strangers.
/// A relay's custody quotas unless configured otherwise.
pub const RELAY_QUOTAS: Quotas = Quotas {
    global_bytes: 1024 * 1024 * 1024,
    per_tag_bytes: 16 * 1024 * 1024,
    per_peer_bytes: 256 * 1024 * 1024,
};

impl NodeBuilder {
    /// Where the encrypted store lives, and the passphrase that opens it.
    pub fn storage(mut self, dir: impl Into<PathBuf>, passphrase: impl AsRef<[u8]>) -> Self {
        self.storage = Some(dir.into());
        self.passphrase = Zeroizing::new(passphrase.as_ref().to_vec());
        self
    }

    /// Argon2id cost of the store key (the default, 64 MiB and 3 passes,
    /// is for production: 0.2–0.5 s on a phone, 3–4 s in an unoptimised
    /// debug build; tests use [`KdfParams::insecure_for_tests`]).
    pub fn kdf(mut self, params: KdfParams) -> Self {
        self.kdf = params;
        self
    }

    /// Whether a relay serves libp2p relay v2 circuits (default: on), so
    /// clients behind NAT reach each other through it. Off, it still stores
    /// and forwards envelopes.
    pub fn relay_circuits(mut self, on: bool) -> Self {
        self.relay_circuits = on;
        self
    }

    /// Makes this an always-on relay: relay quotas (1 GiB in all, 16 MiB
    /// per recipient tag, 256 MiB per peer), a libp2p relay v2 server, a
    /// persistent network key, more connections.
    pub fn relay(mut self) -> Self {
        self.role = Role::Relay;
        self
    }

    /// Overrides the network key policy (default: ephemeral for clients,
    /// persistent for relays).
    pub fn network_key(mut self, key: NetworkKey) -> Self {
        self.network_key = Some(key);
        self
    }

    /// Adds a listen address (`/ip4/0.0.0.0/tcp/0`, `…/quic-v1`, or a relay
    /// circuit `<relay address>/p2p-circuit`).
    pub fn listen_on(mut self, address: Multiaddr) -> Self {
        self.listen.push(address);
        self
    }

    /// Declares an address others can reach this node at (a relay behind a
    /// port forward, say). Relays also treat every global address they
    /// listen on as reachable (see
    /// [`NodeBuilder::advertise_local_addresses`]); the relay v2 server
    /// grants reservations only on a node with a confirmed external
    /// address.
    pub fn external_address(mut self, address: Multiaddr) -> Self {
        self.external_addresses.push(address);
        self
    }

    /// Adds a bootstrap peer (its address must end in `/p2p/<peer id>`);
    /// the node keeps reconnecting to it.
    pub fn bootstrap(mut self, address: Multiaddr) -> Self {
        self.bootstrap.push(address);
        self
    }

    /// Treats envelopes from this peer (e.g. the user's own relay) like a
    /// contact's: they are kept before strangers'.
    pub fn trusted_peer(mut self, peer: PeerId) -> Self {
        self.trusted_peers.push(peer);
        self
    }

    /// TCP with Noise and yamux (default on).
    pub fn tcp(mut self, on: bool) -> Self {
        self.tcp = on;
        self
    }

    /// QUIC (default on).
    pub fn quic(mut self, on: bool) -> Self {
        self.quic = on;
        self
    }

    /// mDNS discovery on the LAN (default off). It announces this node's
    /// addresses to everyone on the LAN, so turn it on when the user wants
    /// to be found there (a LAN-only shutdown, pairing in a room). Found
    /// peers are reported as [`crate::NodeEvent::PeerDiscovered`]; only
    /// trusted peers are dialled, unless [`NodeBuilder::mdns_auto_dial`].
    pub fn mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// Dials every peer mDNS finds (default off): the mesh forms on a LAN
    /// with no app involvement, and every stranger on it learns that this
    /// node runs Ferry. Has no effect without [`NodeBuilder::mdns`].
    pub fn mdns_auto_dial(mut self, on: bool) -> Self {
        self.mdns_auto_dial = on;
        self
    }

    /// Relay-only privacy (default off): the node never reveals its IP
    /// addresses to peers that reach it through a relay. Hole punching
    /// (DCUtR) and autonat are off: DCUtR hands the node's observed public
    /// address to whoever opens a relayed connection to it, and autonat
    /// sends its candidate addresses to the peers it asks. The cost: links
    /// through a relay stay relayed (slower, and counted against the
    /// relay's limits), and the node never learns whether it is reachable
    /// directly. Peers the node dials itself still see its address; listen
    /// only on a relay circuit (`<relay>/p2p-circuit`) to be reached only
    /// through it.
    pub fn relay_only(mut self, on: bool) -> Self {
        self.relay_only = on;
        self
    }

    /// Announces the addresses a relay listens on as reachable even when
    /// they are not global (default off): for a relay on a LAN, or a test
    /// on loopback. Otherwise only global listen addresses and those given
    /// to [`NodeBuilder::external_address`] are announced.
    pub fn advertise_local_addresses(mut self, on: bool) -> Self {
        self.advertise_local_addresses = on;
        self
    }

    /// Enables WebSocket (`/ws`) and WebSocket over TLS (`/tls/ws`,
    /// `/wss`) for dialing, and for listening on such addresses (TLS
    /// needs [`WebSocketConfig::identity`]).
    pub fn websocket(mut self, config: WebSocketConfig) -> Self {
        self.websocket = Some(config);
        self
    }

    /// Dials through a pluggable transport (obfs4, …) to its bridges. A
    /// bridge line that names its peer also becomes a bootstrap peer.
    pub fn bridges(mut self, config: PtClientConfig) -> Self {
        self.pt_client = Some(config);
        self
    }

    /// Runs a pluggable-transport server in front of the node (see
    /// [`crate::Node::bridge_line`]).
    pub fn bridge_server(mut self, config: PtServerConfig) -> Self {
        self.pt_server = Some(config);
        self
    }

    /// The largest sneakernet bundle [`crate::Node::import_bundle`]
    /// accepts (default: 100 000 envelopes, 256 MiB).
    pub fn bundle_limits(mut self, limits: BundleLimits) -> Self {
        self.bundle_limits = limits;
        self
    }

    /// Adds an app-supplied libp2p transport.
    pub fn transport(mut self, factory: TransportFactory) -> Self {
        self.extra_transports.push(factory);
        self
    }

    /// Replaces the engine configuration (routing, TTLs, quotas).
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = Some(config);
        self
    }

    /// Replaces the gossip parameters.
    pub fn gossip(mut self, params: GossipParams) -> Self {
        self.gossip = Some(params);
        self
    }

    /// Replaces the connection limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Whether the node keeps the conversation history (default: on): every
    /// message sent and received, encrypted at rest in the store, read
    /// back with [`crate::Node::messages`]. Turn it off only if the app
    /// keeps its own (then bodies live only in the app's database and
    /// [`crate::Node::message_status`] still works).
    pub fn keep_history(mut self, keep: bool) -> Self {
        self.keep_history = keep;
        self
    }

    /// Capacity of the event queue (default 1024, at least 16); when the app
    /// falls behind, events are dropped and counted in
    /// [`crate::NodeEvent::Lagged`].
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity;
        self
    }

    /// The display name on the cards this node issues.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// How often a long-lived link is reconciled again (default 60 s).
    pub fn resync_interval(mut self, every: Duration) -> Self {
        self.resync_interval = every;
        self
    }

    /// Replaces the random delays (ranges in seconds) before learned
    /// delivery proofs are sent on and before receipts are released
    /// (defaults: [`EngineConfig::proof_delay_secs`] and
    /// [`EngineConfig::receipt_delay_secs`], 30–120 s and 30–300 s). Shorter
    /// delays make the sender hear sooner but let a watcher pair messages
    /// with receipts and spot recipients more easily: for tests and demos.
    pub fn delivery_delays(mut self, proofs: (u64, u64), receipts: (u64, u64)) -> Self {
        self.delivery_delays = Some((proofs, receipts));
        self
    }

    /// How often missing bootstrap peers are dialled again (default 10 s).
    pub fn redial_interval(mut self, every: Duration) -> Self {
        self.redial_interval = every;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem found.
    pub fn build(self) -> Result<NodeConfig, ConfigError> {
        let storage = self.storage.ok_or(ConfigError::NoStorage)?;
        if self.passphrase.is_empty() {
            return Err(ConfigError::EmptyPassphrase);
        }
        if !self.tcp
            && !self.quic
            && self.websocket.is_none()
            && self.pt_client.is_none()
            && self.extra_transports.is_empty()
        {
            return Err(ConfigError::NoTransport);
        }
        for address in &self.listen {
            check_listen_address(address, self.websocket.as_ref())?;
        }
        let mut bootstrap_addrs = self.bootstrap;
        if let Some(pt) = &self.pt_client {
            pt.validate()
                .map_err(|e| ConfigError::PluggableTransport(e.to_string()))?;
            bootstrap_addrs.extend(
                pt.bridges
                    .iter()
                    .filter(|b| b.peer.is_some())
                    .map(|b| b.multiaddr()),
            );
        }
        if let Some(pt) = &self.pt_server {
            pt.validate()
                .map_err(|e| ConfigError::PluggableTransport(e.to_string()))?;
        }
        let mut bootstrap = Vec::with_capacity(bootstrap_addrs.len());
        for address in bootstrap_addrs {
            match address.iter().last() {
                Some(Protocol::P2p(peer)) => bootstrap.push((peer, address)),
                _ => return Err(ConfigError::BootstrapWithoutPeerId(address.to_string())),
            }
        }
        let relay = self.role == Role::Relay;
        let engine = self.engine.unwrap_or_else(|| EngineConfig {
            quotas: if relay {
                RELAY_QUOTAS
            } else {
                EngineConfig::default().quotas
            },
            // Carrying strangers' mail is a relay's job: a week, against a
            // client's three days.
            stranger_custody_secs: if relay {
                7 * 24 * 3600
            } else {
                EngineConfig::default().stranger_custody_secs
            },
            ..EngineConfig::default()
        });
        let mut engine = engine;
        if let Some((proofs, receipts)) = self.delivery_delays {
            engine.proof_delay_secs = proofs;
            engine.receipt_delay_secs = receipts;
        }
        if engine.proof_delay_secs.0 > engine.proof_delay_secs.1
            || engine.receipt_delay_secs.0 > engine.receipt_delay_secs.1
        {
            return Err(ConfigError::Interval);
        }
        let q = engine.quotas;
        let min = ferry_core::proto::limits::MAX_ENVELOPE_LEN as u64;
        if q.global_bytes < min
            || q.per_tag_bytes > q.global_bytes
            || q.per_peer_bytes > q.global_bytes
        {
            return Err(ConfigError::Quotas);
        }
        if engine.message_ttl_secs == 0 || engine.sweep_interval_secs == 0 {
            return Err(ConfigError::Interval);
        }
        let g = self.gossip.unwrap_or(if relay {
            GossipParams::relay()
        } else {
            GossipParams::default()
        });
        if g.mesh_n_low == 0 || g.mesh_n_low > g.mesh_n || g.mesh_n > g.mesh_n_high {
            return Err(ConfigError::MeshDegrees);
        }
        if g.heartbeat.is_zero() || self.resync_interval.is_zero() || self.redial_interval.is_zero()
        {
            return Err(ConfigError::Interval);
        }
        if self.event_queue < 16 {
            return Err(ConfigError::EventQueue);
        }
        let limits = self.limits.unwrap_or_else(|| {
            if relay {
                Limits::relay()
            } else {
                Limits::client()
            }
        });
        if limits.reserved_outbound >= limits.max_connections
            || limits.max_per_source == 0
            || limits.max_pending_per_source == 0
            || limits.source_burst == 0
            || limits.handshake_timeout.is_zero()
            || limits.idle_timeout.is_zero()
            || limits.max_link_streams == 0
            || limits.max_frame_buffer_bytes < ferry_core::proto::limits::MAX_SYNC_FRAME_LEN + 1
        {
            return Err(ConfigError::Limits);
        }
        Ok(NodeConfig {
            storage,
            passphrase: self.passphrase,
            kdf: self.kdf,
            role: self.role,
            network_key: self.network_key.unwrap_or(if relay {
                NetworkKey::Persistent
            } else {
                NetworkKey::Ephemeral
            }),
            listen: self.listen,
            external_addresses: self.external_addresses,
            bootstrap,
            trusted_peers: self.trusted_peers,
            tcp: self.tcp,
            quic: self.quic,
            mdns: self.mdns,
            mdns_auto_dial: self.mdns_auto_dial,
            relay_circuits: self.relay_circuits,
            relay_only: self.relay_only,
            advertise_local_addresses: self.advertise_local_addresses,
            extra_transports: self.extra_transports,
            websocket: self.websocket,
            pt_client: self.pt_client,
            pt_server: self.pt_server,
            bundle_limits: self.bundle_limits,
            engine,
            gossip: g,
            limits,
            event_queue: self.event_queue,
            keep_history: self.keep_history,
            display_name: self.display_name,
            resync_interval: self.resync_interval,
            redial_interval: self.redial_interval,
        })
    }
}

#[cfg(test)]
mod transport_kind_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_come_from_names_and_addresses() {
        for (name, kind) in [
            ("tcp", TransportKind::Tcp),
            ("quic", TransportKind::Quic),
            ("ws", TransportKind::WebSocket),
            ("wss", TransportKind::WebSocketTls),
            ("link", TransportKind::Link),
            ("obfs4", TransportKind::Pluggable("obfs4".into())),
        ] {
            assert_eq!(name.parse::<TransportKind>().unwrap(), kind);
            assert_eq!(kind.name(), name);
        }
        assert!(matches!(
            "ob fs4".parse::<TransportKind>(),
            Err(ConfigError::UnknownTransport(_))
        ));
        for (address, kind) in [
            ("/ip4/1.2.3.4/tcp/1", TransportKind::Tcp),
            ("/ip4/1.2.3.4/udp/1/quic-v1", TransportKind::Quic),
            ("/ip4/1.2.3.4/tcp/1/ws", TransportKind::WebSocket),
            ("/ip4/1.2.3.4/tcp/1/tls/ws", TransportKind::WebSocketTls),
            ("/dns4/a.b/tcp/1/wss", TransportKind::WebSocketTls),
            ("/memory/3", TransportKind::Link),
            (
                "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
                TransportKind::Relayed,
            ),
        ] {
            let address: Multiaddr = address.parse().unwrap();
            assert_eq!(TransportKind::of(&address), Some(kind), "{address}");
        }
    }

    #[test]
    fn listen_addresses_need_their_transport() {
        let ws: Multiaddr = "/ip4/0.0.0.0/tcp/443/tls/ws".parse().unwrap();
        assert!(matches!(
            check_listen_address(&ws, None),
            Err(ConfigError::Listen { .. })
        ));
        assert!(matches!(
            check_listen_address(&ws, Some(&WebSocketConfig::new())),
            Err(ConfigError::Listen { .. })
        ));
        let link: Multiaddr = "/memory/0".parse().unwrap();
        assert!(check_listen_address(&link, None).is_err());
    }
}
