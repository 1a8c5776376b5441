//! The driver task: owns the swarm and the engine, feeds network events to
//! the engine and carries out its outputs (the node half of the design's
//! "one engine, two drivers").
//!
//! The engine's store calls are synchronous (sled flushes take about
//! 0.2 ms); they run on this task, which is the only one touching the
//! engine, so no lock is needed and every output follows its commit.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

use ferry_core::{
    crypto::{Pairing, PairingOutcome, PairingRole, Trust, tags::ContentId},
    engine::{self, Engine, Event, FailReason, Input, MessageStatus, Output, StoreOp, Verdict},
    identity::Identity,
    keys::IdentityKey,
};
use ferry_store::SledStore;
use ferry_transports::{pipe::PipeTransport, pt};
use futures::StreamExt as _;
use hkdf::Hkdf;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub,
    identity::Keypair,
    mdns, relay, request_response,
    swarm::{
        SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use rand::{SeedableRng as _, rngs::StdRng};
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, debug_span, info, trace, warn};

use crate::{
    behaviour::{self, FerryBehaviour, FerryBehaviourEvent, TOPIC},
    codec::{FrameBudget, FrameKind, LinkFrame},
    config::{NetworkKey, NodeConfig},
    counting::ByteCounters,
    error::NodeError,
    events::{NodeEvent, ReceivedMessage},
    node::{Command, ContactInfo, NodeStats},
    pairing_gate::{CONFIRM_TIMEOUT, HANDSHAKE_TIMEOUT, PairingGate, PairingRefusal},
    relay_limits::CircuitBook,
    ways_out::WaysOut,
};

pub(crate) type FerryEngine = Engine<SledStore, StdRng>;

/// Envelopes waiting for a gossip peer (published while nobody was
/// subscribed); beyond this, reconciliation on the next link carries them.
const MAX_PENDING_PUBLISH: usize = 1024;

/// One-time prekeys on a card handed over in a pairing or a contact
/// request: it goes to one person.
const CARD_ONE_TIME_KEYS: usize = 4;

/// Invalid sync frames a peer may send within [`INVALID_FRAME_WINDOW_SECS`]
/// before it is disconnected. Only what any node can check counts as
/// invalid (the engine ignores, rather than rejects, envelopes that only
/// their recipient finds unreadable).
const MAX_INVALID_FRAMES: u32 = 8;

/// The window over which invalid frames are counted; the count starts
/// afresh after it, and is dropped when the peer disconnects.
const INVALID_FRAME_WINDOW_SECS: u64 = 600;

/// Envelopes waiting for a gossip peer are published again at most this
/// often (a new subscriber to Ferry's topic triggers it; any other
/// subscription never does).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// After a `Lagged` notice, the inbox is handed out again at most this
/// often: a redelivery that overflows the queue again must not loop.
const REDELIVERY_INTERVAL: Duration = Duration::from_secs(30);

/// Distinct (peer, reason) quota refusals collected between two reports;
/// beyond, refusals are still counted under "unknown peer".
const MAX_REFUSAL_KEYS: usize = 1024;

/// Seconds since the Unix epoch: the engine's clock.
pub(crate) fn unix_now() -> u64 {
    #[allow(clippy::disallowed_methods)] // the driver is where the clock is read
    let now = SystemTime::now();
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short, non-identifying form of an ID for logs (4 bytes of hex).
pub(crate) fn short(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The address that says where a connection comes from: for an inbound
/// relayed connection its local address (which names the relay; the
/// remote address is only the dialler's free PeerId), else the remote one.
fn source_address(endpoint: &libp2p::core::ConnectedPoint) -> &Multiaddr {
    match endpoint {
        libp2p::core::ConnectedPoint::Listener { local_addr, .. }
            if local_addr
                .iter()
                .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit) =>
        {
            local_addr
        }
        _ => endpoint.get_remote_address(),
    }
}

/// A short form of a peer ID for logs (its last 6 characters).
fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_base58();
    s.get(s.len().saturating_sub(6)..).unwrap_or("").to_owned()
}

enum PairingState {
    /// The handshake is running (since when).
    InProgress(Box<Pairing>, tokio::time::Instant),
    /// The code is shown; waiting for the user (since when).
    Done(Box<PairingOutcome>, tokio::time::Instant),
}

#[derive(Default)]
struct Counts {
    gossip_received: u64,
    gossip_rejected: u64,
    gossip_published: u64,
    frames_received: u64,
    frames_sent: u64,
    events_dropped: u64,
    churn_dropped: u64,
    gossip_queue_full: u64,
    pending_flushes: u64,
}

pub(crate) struct Started {
    pub(crate) driver: Driver,
    pub(crate) peer_id: PeerId,
    pub(crate) identity: IdentityKey,
}

pub(crate) struct Driver {
    swarm: Swarm<FerryBehaviour>,
    engine: FerryEngine,
    topic: gossipsub::IdentTopic,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NodeEvent>,
    /// Churn events (see [`NodeEvent::is_churn`]), in their own queue.
    churn: mpsc::Sender<NodeEvent>,
    /// Events dropped since the last one that got through.
    missed: u64,
    /// When the inbox was last handed out again after a lag, and whether a
    /// redelivery is owed.
    last_redelivery: Option<tokio::time::Instant>,
    redelivery_owed: bool,
    /// Messages handed out again, waiting for room in the app's queue: a
    /// redelivery is paced by the app, never dropped (so it cannot cause
    /// the next `Lagged`).
    redelivery_backlog: VecDeque<NodeEvent>,
    /// Quota refusals since the last report, by peer and reason.
    refusals: HashMap<(Option<PeerId>, engine::RejectReason), u64>,
    /// Peers subscribed to Ferry's topic.
    subscribers: HashSet<PeerId>,
    /// Untrusted peers that connected to us and have not yet used Ferry
    /// (subscribed to its topic, sent a link frame, or held a relay
    /// reservation or circuit), and since when. libp2p's idle timeout
    /// alone does not close them: some handlers (the relay server's) keep
    /// a connection alive until they are polled again, which may be many
    /// minutes later.
    unproven: HashMap<PeerId, tokio::time::Instant>,
    idle_timeout: Duration,
    idle_closed: u64,
    /// When the pending envelopes were last published again, and whether a
    /// new subscriber asks for it.
    last_flush: Option<tokio::time::Instant>,
    flush_owed: bool,
    frame_budget: Arc<FrameBudget>,
    /// Open relay circuits per source (relays).
    circuits: Arc<std::sync::Mutex<CircuitBook>>,
    peers: HashMap<PeerId, engine::PeerId>,
    peers_rev: HashMap<engine::PeerId, PeerId>,
    next_peer: u64,
    trusted: HashSet<PeerId>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    listen_addrs: Vec<Multiaddr>,
    /// Envelopes published while no peer was subscribed: content ID and
    /// bytes (the ID keeps the queue free of duplicates).
    pending_publish: VecDeque<(Vec<u8>, Vec<u8>)>,
    pending_ids: HashSet<Vec<u8>>,
    /// Per connected peer: invalid frames in the current window, and when
    /// the window started.
    invalid_frames: HashMap<PeerId, (u32, u64)>,
    /// Sync frames awaiting their acknowledgement, by request: the engine
    /// hears of each one's fate (bounded by the engine's push window per
    /// peer, plus its few reconciliation frames).
    sync_requests: HashMap<request_response::OutboundRequestId, engine::PeerId>,
    pairing_open: bool,
    pairings: HashMap<PeerId, PairingState>,
    pairing_gate: PairingGate,
    display_name: Option<String>,
    bytes: Arc<ByteCounters>,
    counts: Counts,
    resync_interval: Duration,
    redial_interval: Duration,
    /// The engine's default message lifetime.
    engine_ttl: u64,
    /// Whether sent and received messages go into the history.
    keep_history: bool,
    /// Dials waiting for their connection to come up or fail.
    pending_dials: HashMap<libp2p::swarm::ConnectionId, crate::node::Reply<PeerId>>,
    /// Whether this node is a relay.
    relay: bool,
    /// Whether peers mDNS finds are dialled.
    mdns_auto_dial: bool,
    /// Whether non-global listen addresses are announced (relays).
    advertise_local_addresses: bool,
    /// mDNS answers not dialled for their address.
    mdns_refused: u64,
    /// LAN peers to dial if they have not dialed us first (see
    /// `dial_lan_peers_due`), bounded by [`MAX_MDNS_LATER`].
    mdns_later: Vec<(PeerId, Multiaddr, tokio::time::Instant)>,
    /// Attached links and pluggable-transport processes.
    ways: WaysOut,
}

fn network_key(policy: NetworkKey, store_key: &[u8; 32]) -> Result<Keypair, NodeError> {
    match policy {
        NetworkKey::Ephemeral => Ok(Keypair::generate_ed25519()),
        NetworkKey::Persistent => {
            // Derived, not stored: the same store gives the same PeerId, and
            // nothing links it to the Ferry identity without the store key.
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(None, store_key)
                .expand(b"ferry/network-key/v1", seed.as_mut())
                .map_err(|_| NodeError::Network("key derivation".into()))?;
            Keypair::ed25519_from_bytes(*seed).map_err(|e| NodeError::Network(e.to_string()))
        }
    }
}

impl Driver {
    pub(crate) async fn start(
        mut config: NodeConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NodeEvent>,
        churn: mpsc::Sender<NodeEvent>,
    ) -> Result<Started, NodeError> {
        let path = config.storage.clone();
        let passphrase = config.passphrase.clone();
        let kdf = config.kdf;
        // Argon2id takes a noticeable time by design: off the async threads.
        let store = tokio::task::spawn_blocking(move || SledStore::open(&path, &passphrase, kdf))
            .await
            .map_err(|e| NodeError::Network(e.to_string()))??;
        let store_key = zeroize::Zeroizing::new(store.keyring_key());
        let rng = StdRng::from_rng(&mut rand::rng());
        let engine = Engine::open(
            store,
            *store_key,
            Identity::generate,
            config.engine,
            rng,
            unix_now(),
        )?;
        let identity = engine.keyring().identity().identity_key();
        let key = network_key(config.network_key, &store_key)?;
        let peer_id = key.public().to_peer_id();
        let bytes = Arc::new(ByteCounters::default());
        // PT events are rare (restarts back off from half a second up).
        let (pt_events, pt_events_rx) = mpsc::channel(64);
        let mut supervisors = Vec::new();
        let bridges = match &config.pt_client {
            Some(pt) => {
                let (transport, supervisor) = pt::start_client(pt, pt_events.clone()).await?;
                supervisors.push(supervisor);
                Some(transport)
            }
            None => None,
        };
        let behaviour::Transports {
            stack: transport,
            relay_client,
            links,
            ext_or_port,
        } = behaviour::transport(&key, &mut config, bytes.clone(), bridges)
            .map_err(|e| NodeError::Network(e.to_string()))?;
        let frame_budget = Arc::new(FrameBudget::new(config.limits.max_frame_buffer_bytes));
        let circuits = Arc::new(std::sync::Mutex::new(CircuitBook::new(
            config.limits.relay_circuits_per_source,
            config.limits.unlimited_sources.clone(),
        )));
        let behaviour = behaviour::behaviour(
            &key,
            &config,
            relay_client,
            frame_budget.clone(),
            circuits.clone(),
        )
        .map_err(|e| NodeError::Network(e.to_string()))?;
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            peer_id,
            libp2p::swarm::Config::with_tokio_executor()
                // Only connections no protocol uses idle out: gossip keeps
                // its streams open on every Ferry link, so this closes
                // sockets that completed a handshake and do nothing else.
                .with_idle_connection_timeout(config.limits.idle_timeout),
        );
        let mut listeners = 0usize;
        for address in &config.listen {
            swarm
                .listen_on(address.clone())
                .map_err(|e| NodeError::Network(format!("listen on {address}: {e}")))?;
            listeners += 1;
        }
        // Where attached links enter, and where a PT server forwards to:
        // internal listeners, never announced or handed out.
        let mut internal = HashSet::new();
        internal.insert(
            swarm
                .listen_on(PipeTransport::listen_address())
                .map_err(|e| NodeError::Network(format!("links: {e}")))?,
        );
        listeners += 1;
        let or_port = match &config.pt_server {
            Some(_) => {
                let id = swarm
                    .listen_on(pt::ext_or::listen_address())
                    .map_err(|e| NodeError::Network(format!("bridge listener: {e}")))?;
                internal.insert(id);
                listeners += 1;
                Some(id)
            }
            None => None,
        };

        let mut driver = Driver {
            swarm,
            engine,
            topic: gossipsub::IdentTopic::new(TOPIC),
            commands,
            events,
            churn,
            missed: 0,
            last_redelivery: None,
            redelivery_owed: false,
            redelivery_backlog: VecDeque::new(),
            refusals: HashMap::new(),
            subscribers: HashSet::new(),
            unproven: HashMap::new(),
            idle_timeout: config.limits.idle_timeout,
            idle_closed: 0,
            last_flush: None,
            flush_owed: false,
            frame_budget,
            circuits,
            peers: HashMap::new(),
            peers_rev: HashMap::new(),
            next_peer: 0,
            trusted: config.trusted_peers.iter().copied().collect(),
            bootstrap: config.bootstrap.clone(),
            listen_addrs: Vec::new(),
            pending_publish: VecDeque::new(),
            pending_ids: HashSet::new(),
            invalid_frames: HashMap::new(),
            sync_requests: HashMap::new(),
            pairing_open: false,
            pairings: HashMap::new(),
            pairing_gate: PairingGate::default(),
            display_name: config.display_name.clone(),
            bytes,
            counts: Counts::default(),
            resync_interval: config.resync_interval,
            redial_interval: config.redial_interval,
            engine_ttl: config.engine.message_ttl_secs,
            keep_history: config.keep_history,
            pending_dials: HashMap::new(),
            relay: config.role == crate::config::Role::Relay,
            mdns_auto_dial: config.mdns_auto_dial,
            advertise_local_addresses: config.advertise_local_addresses,
            mdns_refused: 0,
            mdns_later: Vec::new(),
            ways: WaysOut::new(links, pt_events_rx, supervisors),
        };
        if let Some(pt) = &config.pt_client {
            driver.ways.set_bridges(
                pt.bridges
                    .iter()
                    .map(|b| {
                        let mut a = b.multiaddr();
                        if b.peer.is_some() {
                            a.pop();
                        }
                        (a, b.transport.clone())
                    })
                    .collect(),
            );
        }
        for address in &config.external_addresses {
            driver.swarm.add_external_address(address.clone());
        }
        // Wait until every listener is bound, so the app can hand out the
        // addresses right after `start`.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut bound = HashSet::new();
        while bound.len() < listeners {
            match tokio::time::timeout_at(deadline, driver.swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                }) => {
                    bound.insert(listener_id);
                    if Some(listener_id) == or_port {
                        if let Some(server) = &config.pt_server {
                            driver.ways.set_or_port(address, server.method.clone());
                        }
                    } else if !internal.contains(&listener_id) {
                        driver.on_listen_addr(address);
                    }
                }
                Ok(SwarmEvent::ListenerError { error, .. }) => {
                    return Err(NodeError::Network(error.to_string()));
                }
                Ok(SwarmEvent::ListenerClosed { reason, .. }) => {
                    return Err(NodeError::Network(format!("listener closed: {reason:?}")));
                }
                Ok(event) => driver.on_swarm_event(event)?,
                Err(_) => break, // relay circuits may take longer; go on
            }
        }
        if let Some(server) = &config.pt_server {
            let ext_or = ext_or_port
                .as_ref()
                .and_then(|p| p.address())
                .ok_or_else(|| NodeError::Network("the bridge listener did not bind".into()))?;
            let server = pt::start_server(server, ext_or, peer_id, pt_events).await?;
            if let Some(line) = server.bridge_line() {
                info!(%line, "bridge line");
            }
            driver.ways.set_bridge_server(server);
        }
        if driver.relay && driver.swarm.external_addresses().next().is_none() {
            // libp2p's relay server grants no reservation until the node
            // has a reachable address: say so rather than refuse silently.
            warn!(
                "this relay has no reachable address (no global listen address, none \
                 configured): its relay v2 server refuses reservations until one is \
                 given with NodeBuilder::external_address (see docs/relay.md)"
            );
        }
        driver.redial();
        driver.drain()?;
        info!(peer = %short_peer(&peer_id), "node started");
        Ok(Started {
            driver,
            peer_id,
            identity,
        })
    }

    pub(crate) async fn run(mut self) {
        let mut redial = tokio::time::interval(self.redial_interval);
        let mut resync = tokio::time::interval(self.resync_interval);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        redial.tick().await;
        resync.tick().await;
        housekeeping.tick().await;
        loop {
            let now = unix_now();
            // A busy swarm wakes the loop more often than once a second, so
            // the sleep below may never run out: a due engine timer is
            // served here first (proofs, receipts and sweeps are timers).
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                let result = self
                    .engine
                    .handle(Input::Timeout, now)
                    .map(|_| ())
                    .map_err(Into::into)
                    .and_then(|()| self.drain());
                if let Err(error) = result {
                    warn!(%error, "engine timer failed");
                }
            }
            let wait = self
                .engine
                .poll_timeout()
                .map_or(3600, |t| t.saturating_sub(now))
                .max(1);
            // While events were dropped, wait for room in the app's queue
            // too: the lag notice must not depend on a later event.
            let events = self.events.clone();
            let lagging = self.missed > 0;
            let backlog = !lagging && !self.redelivery_backlog.is_empty();
            let result = tokio::select! {
                permit = events.reserve(), if lagging => {
                    match permit {
                        Ok(permit) => {
                            permit.send(NodeEvent::Lagged { missed: self.missed });
                            self.lag_notice_sent();
                        }
                        // The app dropped its event stream: nobody to tell.
                        Err(_) => self.missed = 0,
                    }
                    Ok(())
                }
                permit = events.reserve(), if backlog => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.next_redelivery() {
                                permit.send(event);
                            }
                        }
                        Err(_) => self.redelivery_backlog.clear(),
                    }
                    Ok(())
                }
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown();
                        self.ways.shutdown().await;
                        // Relay custody commits are flushed lazily; a
                        // graceful stop keeps all of them.
                        if let Err(error) = self.engine.store().flush() {
                            warn!(%error, "could not flush the store at shutdown");
                        }
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::Wipe { reply }) => {
                        self.shutdown();
                        self.ways.shutdown().await;
                        let engine = self.engine;
                        drop(self.swarm);
                        // The keys go first (see `ferry_store::WipeStep`).
                        let result = tokio::task::spawn_blocking(move || {
                            engine.into_store().wipe()
                        })
                        .await
                        .map_err(|e| NodeError::Network(e.to_string()))
                        .and_then(|r| r.map_err(NodeError::from));
                        let _ = reply.send(result);
                        return;
                    }
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(event) = self.ways.next_pt_event() => {
                    self.emit(NodeEvent::PluggableTransport(event));
                    Ok(())
                }
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {
                    self.engine.handle(Input::Timeout, unix_now()).map(|_| ()).map_err(Into::into)
                }
                _ = redial.tick() => { self.redial(); Ok(()) }
                _ = housekeeping.tick() => { self.housekeeping(); Ok(()) }
                _ = resync.tick() => {
                    self.expire_pairings();
                    self.resync()
                }
            };
            let result = result.and_then(|()| self.drain());
            if let Err(error) = result {
                // A local failure (the store): the operation did not take
                // effect; the node goes on and the app sees errors on calls.
                warn!(%error, "node operation failed");
            }
        }
        self.shutdown();
        self.ways.shutdown().await;
    }

    fn shutdown(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        info!("node stopped");
    }

    fn on_listen_addr(&mut self, address: Multiaddr) {
        if self.relay
            && (crate::ip_class::is_global(&address) || self.advertise_local_addresses)
            && !address
                .iter()
                .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
        {
            // A relay is meant to be reached at the global addresses it
            // listens on (the relay v2 server grants reservations only on
            // a node with a confirmed external address). Loopback and LAN
            // addresses are announced only when asked: they locate the
            // relay's operator and map their network.
            self.swarm.add_external_address(address.clone());
        }
        let full = self.with_own_id(address);
        if !self.listen_addrs.contains(&full) {
            self.listen_addrs.push(full.clone());
            self.emit(NodeEvent::Listening { address: full });
        }
    }

    /// `address` ending in our PeerId, as listen addresses are handed out.
    fn with_own_id(&self, address: Multiaddr) -> Multiaddr {
        address
            .clone()
            .with_p2p(*self.swarm.local_peer_id())
            .unwrap_or(address)
    }

    fn redial(&mut self) {
        for (peer, address) in self.bootstrap.clone() {
            if !self.swarm.is_connected(&peer)
                && let Err(error) = self.swarm.dial(address)
            {
                debug!(peer = %short_peer(&peer), %error, "bootstrap dial failed");
            }
        }
    }

    /// Periodic anti-entropy on long-lived links.
    fn resync(&mut self) -> Result<(), NodeError> {
        let peers: Vec<engine::PeerId> = self.peers.values().copied().collect();
        for peer in peers {
            self.engine.handle(Input::Resync { peer }, unix_now())?;
        }
        Ok(())
    }

    /// Sends an event to the app without ever blocking the network: when
    /// the app's queue is full the event is dropped and counted, and a
    /// `Lagged` event (plus a redelivery of unacknowledged messages) follows
    /// once there is room.
    fn emit(&mut self, event: NodeEvent) {
        if event.is_churn() {
            if self.churn.try_send(event).is_err() {
                self.counts.churn_dropped += 1;
            }
            return;
        }
        if self.missed > 0 {
            let notice = NodeEvent::Lagged {
                missed: self.missed,
            };
            if self.events.try_send(notice).is_err() {
                self.missed += 1;
                self.counts.events_dropped += 1;
                return;
            }
            self.lag_notice_sent();
        }
        if self.events.try_send(event).is_err() {
            self.missed += 1;
            self.counts.events_dropped += 1;
        }
    }

    /// After a `Lagged` notice went out: start counting afresh and hand out
    /// every unacknowledged message again, at most once per
    /// [`REDELIVERY_INTERVAL`] (otherwise on a later housekeeping tick).
    fn lag_notice_sent(&mut self) {
        self.missed = 0;
        self.redelivery_owed = true;
        self.redeliver_if_due();
    }

    /// The next message of the redelivery backlog still unacknowledged.
    fn next_redelivery(&mut self) -> Option<NodeEvent> {
        while let Some(event) = self.redelivery_backlog.pop_front() {
            match &event {
                NodeEvent::Message(m) if !self.engine.is_unacknowledged(&m.message_id) => {}
                _ => return Some(event),
            }
        }
        None
    }

    fn redeliver_if_due(&mut self) {
        if !self.redelivery_owed {
            return;
        }
        let now = tokio::time::Instant::now();
        if self
            .last_redelivery
            .is_some_and(|at| now.saturating_duration_since(at) < REDELIVERY_INTERVAL)
        {
            return;
        }
        self.redelivery_owed = false;
        self.last_redelivery = Some(now);
        self.redelivery_backlog.clear();
        if let Err(error) = self.engine.redeliver_inbox() {
            warn!(%error, "redelivery after lag failed");
        }
    }

    /// Once a second: collapsed refusal reports, owed redeliveries and
    /// publish flushes.
    fn housekeeping(&mut self) {
        // Dials whose caller gave up (its timeout) are forgotten here; the
        // rest are answered when libp2p reports the connection.
        self.pending_dials.retain(|_, reply| !reply.is_closed());
        self.dial_lan_peers_due();
        let refusals: Vec<_> = self.refusals.drain().collect();
        for ((peer, reason), envelopes) in refusals {
            self.emit(NodeEvent::QuotaRejected {
                peer,
                reason,
                envelopes,
            });
        }
        self.redeliver_if_due();
        if self.flush_owed {
            self.flush_pending_publish();
        }
        let now = tokio::time::Instant::now();
        let idle: Vec<PeerId> = self
            .unproven
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= self.idle_timeout)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in idle {
            self.unproven.remove(&peer);
            self.idle_closed += 1;
            debug!(peer = %short_peer(&peer), "closing a connection that never used Ferry");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Carries out every queued engine output; `from` is the peer whose
    /// input caused them, if any.
    pub(crate) fn drain_outputs(&mut self, from: Option<PeerId>) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Publish { content_id, bytes } => {
                    let _span = debug_span!("envelope", id = %short(&content_id)).entered();
                    self.publish(content_id.to_vec(), bytes);
                }
                Output::SendFrame { peer, bytes } => {
                    if let Some(p) = self.peers_rev.get(&peer).copied() {
                        trace!(peer = %short_peer(&p), len = bytes.len(), "sync frame out");
                        self.counts.frames_sent += 1;
                        let request = self.swarm.behaviour_mut().link.send_request(
                            &p,
                            LinkFrame {
                                kind: FrameKind::Sync,
                                bytes,
                            },
                        );
                        // Its acknowledgement (or failure) opens the
                        // engine's push window again.
                        self.sync_requests.insert(request, peer);
                    }
                }
                Output::Deliver(d) => {
                    debug!(message = %short(d.message_id.as_bytes()), "message delivered to app");
                    if self.keep_history {
                        // Before the app hears of it: a crash in between
                        // hands the message out again from the inbox, and
                        // the history ignores the second copy.
                        let op = StoreOp::PutHistory {
                            contact: d.from.to_bytes(),
                            message_id: d.message_id,
                            outgoing: false,
                            record: crate::app_data::encode_record(d.sent_at, unix_now(), &d.body),
                        };
                        if let Err(error) = self.engine.commit_history(vec![op]) {
                            // Not shown: it stays in the inbox, unacknowledged,
                            // and is handed out again after a restart.
                            warn!(%error, "could not keep a received message in the history");
                            continue;
                        }
                    }
                    let redelivery = d.redelivery;
                    let event = NodeEvent::Message(ReceivedMessage {
                        from: d.from,
                        message_id: d.message_id,
                        sent_at: d.sent_at,
                        body: d.body,
                        redelivery,
                    });
                    if redelivery {
                        // Paced by the app (see `redelivery_backlog`); a
                        // new redelivery replaces what is still waiting.
                        self.redelivery_backlog.push_back(event);
                    } else {
                        self.emit(event);
                    }
                }
                Output::Event(event) => {
                    let event = match event {
                        Event::Delivered { message_id } => {
                            debug!(message = %short(message_id.as_bytes()), "receipt");
                            NodeEvent::MessageStatus {
                                message_id,
                                status: MessageStatus::Delivered,
                            }
                        }
                        Event::Expired { message_id } => NodeEvent::MessageStatus {
                            message_id,
                            status: MessageStatus::Expired,
                        },
                        Event::Sent { message_id } => NodeEvent::MessageStatus {
                            message_id,
                            status: MessageStatus::Sent,
                        },
                        Event::Carried { message_id } => NodeEvent::MessageStatus {
                            message_id,
                            status: MessageStatus::Carried,
                        },
                        Event::Failed { message_id, reason } => NodeEvent::MessageStatus {
                            message_id,
                            status: MessageStatus::Failed(reason),
                        },
                        Event::ContactRequest {
                            card,
                            introduction,
                            existing,
                            keys_changed,
                        } => NodeEvent::ContactRequest {
                            card,
                            introduction,
                            existing,
                            keys_changed,
                        },
                        Event::Unreadable { message_id } => NodeEvent::MessageStatus {
                            message_id,
                            status: MessageStatus::Failed(FailReason::Unreadable),
                        },
                        Event::KeyChanged {
                            contact,
                            was_verified,
                        } => NodeEvent::KeyChanged {
                            contact,
                            was_verified,
                        },
                        Event::Rejected { content_id, reason } => {
                            debug!(id = %short(&content_id), ?reason, "custody refused");
                            // Collapsed into one report a second.
                            let key = if self.refusals.len() < MAX_REFUSAL_KEYS
                                || self.refusals.contains_key(&(from, reason))
                            {
                                (from, reason)
                            } else {
                                (None, reason)
                            };
                            *self.refusals.entry(key).or_insert(0) += 1;
                            continue;
                        }
                    };
                    self.emit(event);
                }
            }
        }
    }

    fn drain(&mut self) -> Result<(), NodeError> {
        self.drain_outputs(None);
        Ok(())
    }

    fn publish(&mut self, id: Vec<u8>, bytes: Vec<u8>) {
        let topic = self.topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, bytes.clone())
        {
            Ok(_) => {
                self.counts.gossip_published += 1;
                trace!("published");
                if let Ok(id) = ContentId::try_from(id.as_slice())
                    && let Err(error) = self.engine.mark_sent(&id, unix_now())
                {
                    warn!(%error, "could not record a message as sent");
                }
            }
            // Gossip already has it (it came in by gossip, or went out
            // before): nothing is lost.
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                // Nobody to give it to yet: publish again when a peer
                // subscribes. The envelope is in custody either way;
                // reconciliation carries it if this queue overflows.
                self.queue_publish(id, bytes);
            }
            Err(gossipsub::PublishError::AllQueuesFull(peers)) => {
                // Gossipsub has already marked it as seen (a retry would be
                // a `Duplicate`): it stays in gossip's cache for IWANT and
                // in custody for reconciliation, and is counted.
                self.counts.gossip_queue_full += 1;
                debug!(peers, "every peer's gossip queue is full");
            }
            Err(error) => debug!(%error, "publish failed"),
        }
    }

    /// Queues an envelope for a later publish.
    fn queue_publish(&mut self, id: Vec<u8>, bytes: Vec<u8>) {
        if self.pending_ids.contains(&id) {
            return;
        }
        if self.pending_publish.len() >= MAX_PENDING_PUBLISH
            && let Some(oldest) = self.pending_publish.pop_front()
        {
            self.pending_ids.remove(&oldest.0);
        }
        self.pending_ids.insert(id.clone());
        self.pending_publish.push_back((id, bytes));
    }

    /// Publishes the waiting envelopes again: only when a peer newly
    /// subscribed to Ferry's topic, at most once per [`FLUSH_INTERVAL`].
    fn flush_pending_publish(&mut self) {
        let now = tokio::time::Instant::now();
        if self
            .last_flush
            .is_some_and(|at| now.saturating_duration_since(at) < FLUSH_INTERVAL)
        {
            self.flush_owed = true;
            return;
        }
        self.flush_owed = false;
        self.last_flush = Some(now);
        if self.pending_publish.is_empty() {
            return;
        }
        self.counts.pending_flushes += 1;
        let pending = std::mem::take(&mut self.pending_publish);
        self.pending_ids.clear();
        for (id, bytes) in pending {
            // Envelopes purged meanwhile (delivered, expired) are skipped.
            let held = ferry_core::crypto::tags::ContentId::try_from(id.as_slice())
                .is_ok_and(|cid| self.engine.holds(&cid));
            if held {
                self.publish(id, bytes);
            }
        }
    }

    fn engine_peer(&mut self, peer: PeerId) -> engine::PeerId {
        if let Some(p) = self.peers.get(&peer) {
            return *p;
        }
        let p = engine::PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(peer, p);
        self.peers_rev.insert(p, peer);
        p
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<FerryBehaviourEvent>) -> Result<(), NodeError> {
        let link_event = match &event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(connection_id) {
                    let _ = reply.send(Ok(*peer_id));
                }
                self.ways.established(*connection_id, *peer_id, endpoint)
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => self.ways.closed(*connection_id),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.ways.failed(send_back_addr, error.to_string()),
            _ => None,
        };
        if let Some(link_event) = link_event {
            self.emit(link_event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.on_listen_addr(address),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = self.with_own_id(address);
                self.listen_addrs.retain(|a| *a != full);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } if num_established.get() == 1 => {
                {
                    let _span = debug_span!("peer", peer = %short_peer(&peer_id)).entered();
                    debug!("peer up");
                    let p = self.engine_peer(peer_id);
                    // Exactly one side starts reconciliation: the smaller ID.
                    let initiator = self.swarm.local_peer_id().to_bytes() < peer_id.to_bytes();
                    self.engine.handle(
                        Input::PeerUp {
                            peer: p,
                            trusted: self.trusted.contains(&peer_id),
                            initiator,
                            source: crate::source::source_of(source_address(&endpoint), &peer_id),
                        },
                        unix_now(),
                    )?;
                    if endpoint.is_listener() && !self.trusted.contains(&peer_id) {
                        self.unproven.insert(peer_id, tokio::time::Instant::now());
                    }
                    self.emit(NodeEvent::PeerUp { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(peer = %short_peer(&peer_id), "peer down");
                if let Some(p) = self.peers.remove(&peer_id) {
                    self.peers_rev.remove(&p);
                    self.engine
                        .handle(Input::PeerDown { peer: p }, unix_now())?;
                }
                self.pairings.remove(&peer_id);
                self.invalid_frames.remove(&peer_id);
                self.subscribers.remove(&peer_id);
                self.unproven.remove(&peer_id);
                if let Ok(mut book) = self.circuits.lock() {
                    book.peer_gone(peer_id);
                }
                self.emit(NodeEvent::PeerDown { peer: peer_id });
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event)?,
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => {
                debug!(peer = ?peer_id.as_ref().map(short_peer), %error, "dial failed");
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NodeError::Dial(error.to_string())));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_behaviour_event(&mut self, event: FerryBehaviourEvent) -> Result<(), NodeError> {
        match event {
            FerryBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, &message_id, &message.data)?,
            // Only a peer newly subscribed to Ferry's topic can take the
            // waiting envelopes; any other subscription costs nothing.
            FerryBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })
                if topic == self.topic.hash() && self.subscribers.insert(peer_id) =>
            {
                self.unproven.remove(&peer_id);
                self.flush_pending_publish();
            }
            FerryBehaviourEvent::Gossipsub(gossipsub::Event::Unsubscribed { peer_id, topic })
                if topic == self.topic.hash() =>
            {
                self.subscribers.remove(&peer_id);
            }
            FerryBehaviourEvent::Link(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                self.unproven.remove(&peer);
                // Acknowledge first: the frame is read; what it means is the
                // engine's business.
                let _ = self.swarm.behaviour_mut().link.send_response(channel, ());
                match request.kind {
                    FrameKind::Sync => self.on_frame(peer, &request.bytes)?,
                    FrameKind::Pairing => self.on_pairing_frame(peer, &request.bytes)?,
                }
            }
            FerryBehaviourEvent::Link(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) => self.frame_acked(request_id)?,
            FerryBehaviourEvent::Link(request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            }) => {
                debug!(peer = %short_peer(&peer), %error, "frame not delivered");
                self.frame_acked(request_id)?;
            }
            FerryBehaviourEvent::RelayServer(relay::Event::ReservationReqAccepted {
                src_peer_id,
                ..
            }) => {
                self.unproven.remove(&src_peer_id);
            }
            FerryBehaviourEvent::RelayServer(relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            }) => {
                self.unproven.remove(&src_peer_id);
                self.unproven.remove(&dst_peer_id);
                if let Ok(mut book) = self.circuits.lock() {
                    book.opened(src_peer_id, dst_peer_id);
                }
            }
            // A "resource limit" denial may come before the limiter was
            // asked (nothing charged); charges it leaves expire.
            FerryBehaviourEvent::RelayServer(relay::Event::CircuitReqDenied {
                src_peer_id,
                status,
                ..
            }) if !matches!(status, relay::StatusCode::ResourceLimitExceeded) => {
                if let Ok(mut book) = self.circuits.lock() {
                    book.denied(src_peer_id);
                }
            }
            #[allow(deprecated)] // libp2p still emits it; the charge must be released
            FerryBehaviourEvent::RelayServer(relay::Event::CircuitReqAcceptFailed {
                src_peer_id,
                ..
            }) => {
                if let Ok(mut book) = self.circuits.lock() {
                    book.denied(src_peer_id);
                }
            }
            FerryBehaviourEvent::RelayServer(relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            }) => {
                // The relay's own report when a connection of the circuit
                // closed (another comes when the copy ends).
                let aborted = error
                    .as_ref()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionAborted);
                if let Ok(mut book) = self.circuits.lock() {
                    book.closed(src_peer_id, dst_peer_id, aborted);
                }
            }
            FerryBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    if self.swarm.is_connected(&peer) {
                        continue;
                    }
                    // Anyone on the LAN can answer mDNS (and forge the
                    // source): only addresses on our own networks are
                    // dialled or reported, so a forged answer cannot
                    // point us at a host elsewhere.
                    if !crate::mdns_filter::is_on_link(&address, &self.listen_addrs) {
                        self.mdns_refused += 1;
                        continue;
                    }
                    // Dialling a stranger tells it we run Ferry: only on
                    // request, or to peers the user trusts.
                    if self.mdns_auto_dial || self.trusted.contains(&peer) {
                        // Both ends hear each other's announcement at once.
                        // If both dialed, from their listening ports the
                        // two SYNs would make one TCP connection on which
                        // both run Noise's initiator (both fail), and on
                        // fresh ports two connections whose first messages
                        // were lost. So the smaller ID dials now and the
                        // other only if no connection came within 3 s.
                        if self.swarm.local_peer_id().to_bytes() < peer.to_bytes() {
                            self.dial_lan_peer(peer, address);
                        } else if self.mdns_later.len() < MAX_MDNS_LATER {
                            let due = tokio::time::Instant::now() + Duration::from_secs(3);
                            self.mdns_later.push((peer, address, due));
                        }
                    } else {
                        self.emit(NodeEvent::PeerDiscovered { peer, address });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Dials a peer mDNS found (from a fresh port, see the caller).
    fn dial_lan_peer(&mut self, peer: PeerId, address: Multiaddr) {
        let _ = self.swarm.dial(
            DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build(),
        );
    }

    /// Dials the LAN peers that had to wait and are still not connected.
    fn dial_lan_peers_due(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.mdns_later)
            .into_iter()
            .partition(|(_, _, at)| *at <= now);
        self.mdns_later = later;
        for (peer, address, _) in due {
            if !self.swarm.is_connected(&peer) {
                self.dial_lan_peer(peer, address);
            }
        }
    }

    fn on_gossip(
        &mut self,
        source: PeerId,
        message_id: &gossipsub::MessageId,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let _span = debug_span!(
            "gossip",
            peer = %short_peer(&source),
            id = %short(&message_id.0)
        )
        .entered();
        self.counts.gossip_received += 1;
        let from = self.engine_peer(source);
        let verdict = self
            .engine
            .handle(Input::Gossip { from, bytes: data }, unix_now())?;
        self.drain_outputs(Some(source));
        // Only invalid envelopes are penalised. A forwarder past its custody
        // quota is not: an honest relay forwards what it accepted from a
        // flooder, and penalising it would split the honest mesh. Quotas
        // bound what a valid-envelope flood can occupy (threat item 12).
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
        };
        if acceptance == gossipsub::MessageAcceptance::Reject {
            self.counts.gossip_rejected += 1;
            debug!("invalid envelope");
        }
        trace!(?verdict, "validated");
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &source, acceptance);
        Ok(())
    }

    fn on_frame(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), NodeError> {
        let _span = debug_span!("sync", peer = %short_peer(&peer)).entered();
        self.counts.frames_received += 1;
        let Some(p) = self.peers.get(&peer).copied() else {
            return Ok(());
        };
        let before = self.engine.counters().sync_envelopes_received;
        let verdict = self
            .engine
            .handle(Input::Frame { from: p, bytes }, unix_now())?;
        let received = self.engine.counters().sync_envelopes_received - before;
        self.drain_outputs(Some(peer));
        if received > 0 {
            debug!(received, "sync envelopes");
            self.emit(NodeEvent::SyncProgress {
                peer,
                envelopes: received,
            });
        }
        if verdict == Verdict::Reject {
            let now = unix_now();
            let (count, since) = self.invalid_frames.entry(peer).or_insert((0, now));
            if now.saturating_sub(*since) >= INVALID_FRAME_WINDOW_SECS {
                *count = 0;
                *since = now;
            }
            *count += 1;
            if *count >= MAX_INVALID_FRAMES {
                warn!("disconnecting a peer that sends invalid sync frames");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        Ok(())
    }

    /// A sync frame's fate is known: the engine may send the next batch.
    fn frame_acked(
        &mut self,
        request: request_response::OutboundRequestId,
    ) -> Result<(), NodeError> {
        if let Some(peer) = self.sync_requests.remove(&request) {
            self.engine.handle(Input::FrameAcked { peer }, unix_now())?;
            self.drain_outputs(None);
        }
        Ok(())
    }

    fn send_pairing(&mut self, peer: PeerId, bytes: Vec<u8>) {
        self.swarm.behaviour_mut().link.send_request(
            &peer,
            LinkFrame {
                kind: FrameKind::Pairing,
                bytes,
            },
        );
    }

    /// Issues a fresh card with `one_time_keys` prekeys and saves the
    /// keyring (the prekeys must survive a restart).
    fn issue_card(
        &mut self,
        one_time_keys: usize,
    ) -> Result<ferry_core::contact::ContactCard, NodeError> {
        let name = self.display_name.clone();
        let card = self.engine.keyring_mut().identity_mut().contact_card(
            name.as_deref(),
            unix_now(),
            one_time_keys,
        )?;
        self.engine.save_keyring()?;
        Ok(card)
    }

    /// A card for one pairing partner, with one-time prekeys. The keyring
    /// is not saved here: if the pairing is confirmed, adding the contact
    /// saves it; if not, nothing needs the keys after a restart.
    fn pairing_card(&mut self) -> Result<ferry_core::contact::ContactCard, NodeError> {
        let name = self.display_name.clone();
        Ok(self.engine.keyring_mut().identity_mut().contact_card(
            name.as_deref(),
            unix_now(),
            CARD_ONE_TIME_KEYS,
        )?)
    }

    /// Drops handshakes that stalled and codes nobody confirmed, so they
    /// stop counting against the bounds.
    fn expire_pairings(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<PeerId> = self
            .pairings
            .iter()
            .filter(|(_, state)| match state {
                PairingState::InProgress(_, since) => {
                    now.saturating_duration_since(*since) >= HANDSHAKE_TIMEOUT
                }
                PairingState::Done(_, since) => {
                    now.saturating_duration_since(*since) >= CONFIRM_TIMEOUT
                }
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.pairings.remove(&peer);
            debug!(peer = %short_peer(&peer), "pairing timed out");
            self.emit(NodeEvent::PairingFailed { peer });
        }
    }

    /// Admits a new pairing with `peer` or reports the refusal.
    fn admit_pairing(&mut self, peer: PeerId) -> Result<(), PairingRefusal> {
        self.expire_pairings();
        let result = self.pairing_gate.admit(
            peer,
            tokio::time::Instant::now(),
            self.pairings.len(),
            self.pairings.contains_key(&peer),
        );
        if let Err(reason) = result {
            self.report_refusal(peer, reason);
        }
        result
    }

    fn report_refusal(&mut self, peer: PeerId, reason: PairingRefusal) {
        debug!(peer = %short_peer(&peer), ?reason, "pairing refused");
        self.emit(NodeEvent::PairingRefused { peer, reason });
    }

    fn on_pairing_frame(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), NodeError> {
        let _span = debug_span!("pairing", peer = %short_peer(&peer)).entered();
        let (mut pairing, since) = match self.pairings.remove(&peer) {
            Some(PairingState::InProgress(p, since)) => (*p, since),
            Some(done @ PairingState::Done(..)) => {
                // A frame after the handshake: nothing to do with it.
                self.pairings.insert(peer, done);
                return Ok(());
            }
            None if !self.pairing_open => {
                self.pairing_gate.refuse(PairingRefusal::Closed);
                self.report_refusal(peer, PairingRefusal::Closed);
                return Ok(());
            }
            None => {
                if self.admit_pairing(peer).is_err() {
                    return Ok(());
                }
                let card = self.pairing_card()?;
                let pairing = Pairing::new(
                    self.engine.keyring().identity(),
                    &card,
                    PairingRole::Responder,
                    &mut rand::rng(),
                )?;
                (pairing, tokio::time::Instant::now())
            }
        };
        let step = pairing.read_message(bytes).and_then(|()| {
            if pairing.wants_to_send() {
                pairing.write_message().map(Some)
            } else {
                Ok(None)
            }
        });
        match step {
            Ok(reply) => {
                if let Some(reply) = reply {
                    self.send_pairing(peer, reply);
                }
                if pairing.is_finished() {
                    match pairing.finish() {
                        Ok(outcome) => {
                            let code = outcome.sas.clone();
                            self.pairings.insert(
                                peer,
                                PairingState::Done(Box::new(outcome), tokio::time::Instant::now()),
                            );
                            self.emit(NodeEvent::PairingCode { peer, code });
                        }
                        Err(_) => self.emit(NodeEvent::PairingFailed { peer }),
                    }
                } else {
                    self.pairings
                        .insert(peer, PairingState::InProgress(Box::new(pairing), since));
                }
            }
            Err(error) => {
                if matches!(error, ferry_core::crypto::PairingError::CommitmentMismatch) {
                    // Only someone trying to choose the code does this.
                    warn!("pairing aborted: the peer's nonce does not open its commitment");
                } else {
                    debug!(%error, "pairing failed");
                }
                self.emit(NodeEvent::PairingFailed { peer });
            }
        }
        Ok(())
    }

    fn on_command(&mut self, command: Command) -> Result<(), NodeError> {
        match command {
            Command::Send {
                to,
                body,
                options,
                reply,
            } => {
                let ttl = options.ttl_secs.unwrap_or(self.engine_ttl);
                let now = unix_now();
                let keep = self.keep_history;
                let result = self
                    .engine
                    .send_recorded(&to, &body, ttl, now, |id| {
                        if keep {
                            vec![crate::app_data::sent_record(&to, id, now, &body)]
                        } else {
                            Vec::new()
                        }
                    })
                    .map_err(NodeError::from);
                if let Ok(id) = &result {
                    debug!(message = %short(id.as_bytes()), "accepted for sending");
                }
                let _ = reply.send(result);
            }
            Command::AddContact { card, trust, reply } => {
                let _ = reply.send(
                    self.engine
                        .add_contact(*card, trust)
                        .map_err(NodeError::from),
                );
            }
            Command::ContactCode {
                one_time_keys,
                reply,
            } => {
                let result = self
                    .issue_card(one_time_keys)
                    .and_then(|card| card.to_code().map_err(NodeError::from));
                let _ = reply.send(result);
            }
            Command::ContactRequest {
                to,
                introduction,
                reply,
            } => {
                let result = self.issue_card(CARD_ONE_TIME_KEYS).and_then(|card| {
                    self.engine
                        .send_contact_request(&to, &card, &introduction, unix_now())
                        .map(|_| ())
                        .map_err(NodeError::from)
                });
                let _ = reply.send(result);
            }
            Command::Contacts { reply } => {
                let keyring = self.engine.keyring();
                let list = keyring
                    .contact_keys()
                    .filter_map(|key| {
                        keyring.contact(key).map(|(card, trust)| ContactInfo {
                            identity: *key,
                            display_name: card.display_name().map(str::to_owned),
                            nickname: keyring.nickname(key).map(str::to_owned),
                            verified: trust == Trust::Verified,
                        })
                    })
                    .collect();
                let _ = reply.send(Ok(list));
            }
            Command::Ack { message_id, reply } => {
                let _ = reply.send(
                    self.engine
                        .ack_delivery(&message_id)
                        .map_err(NodeError::from),
                );
            }
            Command::Dial { address, reply } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::from(address);
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        // Answered when the connection is up or failed.
                        self.pending_dials.insert(connection, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Dial(e.to_string())));
                    }
                }
            }
            Command::App(command) => self.on_app_command(command)?,
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::Listeners { reply } => {
                let _ = reply.send(Ok(self.listen_addrs.clone()));
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(Ok(self.swarm.connected_peers().copied().collect()));
            }
            Command::Stats { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(Ok(self.swarm.behaviour().gossipsub.peer_score(&peer)));
            }
            Command::AllowPairing { open, reply } => {
                self.pairing_open = open;
                let _ = reply.send(Ok(()));
            }
            Command::Pair { peer, reply } => {
                if !self.swarm.is_connected(&peer) {
                    let _ = reply.send(Err(NodeError::UnknownPeer));
                    return Ok(());
                }
                // Starting again replaces our own stalled handshake with
                // this peer (a code awaiting confirmation stays).
                if matches!(self.pairings.get(&peer), Some(PairingState::InProgress(..))) {
                    self.pairings.remove(&peer);
                }
                if let Err(reason) = self.admit_pairing(peer) {
                    let _ = reply.send(Err(NodeError::PairingRefused(reason)));
                    return Ok(());
                }
                let result = self.pairing_card().and_then(|card| {
                    let mut pairing = Pairing::new(
                        self.engine.keyring().identity(),
                        &card,
                        PairingRole::Initiator,
                        &mut rand::rng(),
                    )?;
                    let first = pairing.write_message()?;
                    self.send_pairing(peer, first);
                    self.pairings.insert(
                        peer,
                        PairingState::InProgress(Box::new(pairing), tokio::time::Instant::now()),
                    );
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::ConfirmPairing {
                peer,
                accept,
                reply,
            } => {
                let result = match self.pairings.remove(&peer) {
                    Some(PairingState::Done(outcome, _)) if accept => {
                        let outcome = *outcome;
                        let contact = *outcome.card.identity_key();
                        self.engine
                            .add_contact(outcome.card, Trust::Verified)
                            .map_err(NodeError::from)
                            .map(|_| {
                                self.emit(NodeEvent::Paired { contact });
                                Some(contact)
                            })
                    }
                    Some(PairingState::Done(..)) => Ok(None),
                    Some(other) => {
                        self.pairings.insert(peer, other);
                        Err(NodeError::UnknownPeer)
                    }
                    None => Err(NodeError::UnknownPeer),
                };
                let _ = reply.send(result);
            }
            Command::AttachLink {
                stream,
                label,
                reply,
            } => {
                let _ = reply.send(Ok(self.ways.attach(stream, label)));
            }
            Command::ExportEnvelopes { filter, reply } => {
                let result = self
                    .engine
                    .export_envelopes(&filter, unix_now())
                    .map(|envelopes| {
                        // Our own messages among them become `Sent` once the
                        // file is written (see `Node::export_bundle`).
                        let own = envelopes
                            .iter()
                            .filter_map(|bytes| {
                                ferry_proto::decode::<ferry_proto::v1::Envelope>(bytes).ok()
                            })
                            .map(|e| ferry_core::crypto::tags::content_id_of(&e))
                            .filter(|id| self.engine.own_message(id).is_some())
                            .collect();
                        (envelopes, own)
                    })
                    .map_err(Into::into);
                let _ = reply.send(result);
            }
            Command::ImportEnvelopes { envelopes, reply } => {
                let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
                let result = self
                    .engine
                    .import_envelopes(&refs, BUNDLE_SOURCE, unix_now())
                    .map_err(Into::into);
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let _ = reply.send(Ok(self.ways.peers()));
            }
            Command::BridgeLine { reply } => {
                let line = self.ways.bridge_server().and_then(|s| s.bridge_line());
                let _ = reply.send(Ok(line));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Command::Wipe { reply } => {
                let _ = reply.send(Err(NodeError::Closed));
            }
        }
        Ok(())
    }

    pub(crate) fn engine(&self) -> &FerryEngine {
        &self.engine
    }

    pub(crate) fn engine_mut(&mut self) -> &mut FerryEngine {
        &mut self.engine
    }

    fn stats(&self) -> NodeStats {
        NodeStats {
            engine: self.engine.counters(),
            bytes_in: self.bytes.inbound.load(Ordering::Relaxed),
            bytes_out: self.bytes.outbound.load(Ordering::Relaxed),
            gossip_received: self.counts.gossip_received,
            gossip_rejected: self.counts.gossip_rejected,
            gossip_published: self.counts.gossip_published,
            frames_received: self.counts.frames_received,
            frames_sent: self.counts.frames_sent,
            connected_peers: self.swarm.connected_peers().count(),
            held_envelopes: self.engine.held_count(),
            held_own: self.engine.held_own_count(),
            held_bytes: self.engine.held_bytes(),
            outbox: self.engine.outbox_len(),
            events_dropped: self.counts.events_dropped,
            churn_events_dropped: self.counts.churn_dropped,
            pairing_refusals: self.pairing_gate.refusals(),
            connections_refused: self.swarm.behaviour().gate.refusals(),
            inbound_connections: self.swarm.behaviour().gate.inbound_untrusted(),
            frame_buffer_bytes: self.frame_budget.used(),
            frames_refused_memory: self.frame_budget.refused(),
            hole_punches_refused: self
                .swarm
                .behaviour()
                .dcutr
                .as_ref()
                .map_or(0, |d| d.refused()),
            gossip_queue_full: self.counts.gossip_queue_full,
            pending_publish_flushes: self.counts.pending_flushes,
            pending_publish: self.pending_publish.len(),
            mdns_addresses_refused: self.mdns_refused,
            idle_connections_closed: self.idle_closed,
            circuits_refused: self.circuits.lock().map_or(0, |book| book.refused()),
        }
    }
}

/// LAN peers waiting for their deferred mDNS dial, at most.
const MAX_MDNS_LATER: usize = 64;

/// The quota account every imported bundle is charged to: one carrier's
/// stick cannot take more of the store than one stranger.
const BUNDLE_SOURCE: engine::SourceId = engine::SourceId(u64::MAX - 1);
