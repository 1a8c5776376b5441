//! The connection gate: what one source may take of the node's connection
//! slots, handshake slots and memory.
//!
//! libp2p's `connection_limits` counts connections in total and per
//! PeerId; PeerIds are free, so on its own it lets one host take every
//! slot. This behaviour groups connections by *source* (an address
//! prefix, see [`GateSource`]) and refuses, before any handshake work:
//! - a source over its pending-handshake limit or its new-connection rate;
//! - any inbound connection over the pending budget of its transport kind
//!   (QUIC and TCP-like budgets are separate: QUIC source addresses can be
//!   forged, so a spoofed flood must not lock out TCP);
//! - any inbound connection while the process is over its memory limit;
//!
//! and after the handshake (when the PeerId is known):
//! - an untrusted source over its established limit;
//! - an untrusted inbound connection beyond `max_connections -
//!   reserved_outbound`, so outbound dials and trusted peers always find a
//!   slot.
//!
//! Every refusal is counted by reason ([`GateRefusals`]).
//!
//! The grouping differs on purpose from the custody quotas' sources
//! (`source.rs`), which count a global IPv4 address alone: a quota share
//! per /24 would starve honest users behind one carrier-grade NAT of
//! storage, while a connection share per /24 only bounds how many sockets
//! one network holds at once.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

use crate::{
    config::Limits,
    rate::{KeyedBuckets, TokenBucket},
};

/// Where a connection comes from, as far as limits are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GateSource {
    /// A global IPv4 address's /24, or a loopback address's /24.
    V4Net([u8; 3]),
    /// A private (LAN) IPv4 address, whole: on a LAN each host is one
    /// source and a shut-down neighbourhood may share one /24.
    V4Host([u8; 4]),
    /// A global IPv6 address's /56 (a home or small-site allocation).
    V6Net([u8; 7]),
    /// The wider network around a [`GateSource::V4Net`]: its /16.
    V4Wide([u8; 2]),
    /// The wider network around a [`GateSource::V6Net`]: its /48 (one
    /// site, or a free tunnel-broker allocation of 256 /56s).
    V6Wide([u8; 6]),
    /// A unique-local or link-local IPv6 address, whole.
    V6Host([u8; 16]),
    /// A relayed connection: its relay.
    Circuit(Option<PeerId>),
    /// Any other address (an app's own transport): its text.
    Other(String),
    /// A source exempt from per-source limits.
    Unlimited,
}

impl GateSource {
    /// The source of a connection at `remote`.
    pub(crate) fn of(remote: &Multiaddr, unlimited: &[IpAddr]) -> Self {
        Self::of_connection(remote, remote, unlimited)
    }

    /// The source of a connection from `remote` that arrived on `local`.
    /// An inbound relayed connection's remote address is only
    /// `/p2p/<peer>` (a free PeerId); its local address names the relay.
    pub(crate) fn of_connection(
        local: &Multiaddr,
        remote: &Multiaddr,
        unlimited: &[IpAddr],
    ) -> Self {
        let relayed = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::P2pCircuit));
        let circuit = if relayed(local) {
            Some(local)
        } else if relayed(remote) {
            Some(remote)
        } else {
            None
        };
        if let Some(remote) = circuit {
            let relay = remote.iter().find_map(|p| match p {
                Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            return GateSource::Circuit(relay);
        }
        match remote.iter().next() {
            Some(Protocol::Ip4(ip)) => {
                if unlimited.contains(&IpAddr::V4(ip)) {
                    return GateSource::Unlimited;
                }
                let [a, b, c, d] = ip.octets();
                if ip.is_private() || ip.is_link_local() {
                    GateSource::V4Host([a, b, c, d])
                } else {
                    GateSource::V4Net([a, b, c])
                }
            }
            Some(Protocol::Ip6(ip)) => {
                if unlimited.contains(&IpAddr::V6(ip)) {
                    return GateSource::Unlimited;
                }
                if let Some(v4) = ip.to_ipv4_mapped() {
                    return Self::of(&Multiaddr::from(v4), unlimited);
                }
                let octets = ip.octets();
                if crate::ip_class::is_local_v6(&ip) {
                    GateSource::V6Host(octets)
                } else {
                    let mut net = [0u8; 7];
                    net.copy_from_slice(octets.get(..7).unwrap_or(&[0; 7]));
                    GateSource::V6Net(net)
                }
            }
            // A link the app attached: its choice, not a stranger's.
            Some(Protocol::Memory(_)) => GateSource::Unlimited,
            _ => GateSource::Other(remote.to_string()),
        }
    }

    fn is_unlimited(&self) -> bool {
        matches!(self, GateSource::Unlimited)
    }

    /// The wider network this source sits in, limited to
    /// [`WIDE_FACTOR`] times a source's share, so an attacker with a /48 or
    /// a /16 does not get 256 shares.
    pub(crate) fn wide(&self) -> Option<GateSource> {
        match self {
            GateSource::V4Net([a, b, _]) => Some(GateSource::V4Wide([*a, *b])),
            GateSource::V6Net(net) => {
                let mut wide = [0u8; 6];
                wide.copy_from_slice(net.get(..6).unwrap_or(&[0; 6]));
                Some(GateSource::V6Wide(wide))
            }
            _ => None,
        }
    }
}

/// Why the gate refused connections, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateRefusals {
    /// The transport kind's pending-handshake budget was full.
    pub pending_full: u64,
    /// The source had too many handshakes pending.
    pub pending_per_source: u64,
    /// The source opened connections faster than its rate.
    pub rate: u64,
    /// The source had too many established connections.
    pub per_source: u64,
    /// Inbound slots were full (the rest are kept for outbound and trusted
    /// peers).
    pub inbound_full: u64,
    /// The process was over its memory limit.
    pub memory: u64,
    /// Connections closed to make room for a source holding fewer: when
    /// the inbound slots are full, a newcomer displaces a connection of
    /// the source holding the most.
    pub evicted: u64,
}

/// A wider network (IPv4 /16, IPv6 /48) may hold this many times a
/// source's share, pending and established; so may a relay's circuits (all
/// peers reaching us through one relay are one source, and the relay caps
/// each of its own sources).
pub(crate) const WIDE_FACTOR: u32 = 4;

/// Evictions in progress at most; beyond, newcomers are refused.
const MAX_EVICTING: usize = 4;

/// An eviction whose close has not completed after this long counts as
/// inbound again.
const EVICTION_GRACE: Duration = Duration::from_secs(10);

/// Evictions, node-wide: this many in a burst, then one a second.
const EVICTION_BURST: u32 = 4;

/// Sources whose rate is tracked at most; beyond, full buckets are
/// forgotten first (a full bucket is the same as no bucket).
const MAX_BUCKETS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Quic,
    Stream,
}

fn kind_of(local: &Multiaddr) -> Kind {
    if local
        .iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
    {
        Kind::Quic
    } else {
        Kind::Stream
    }
}

/// The gate (a [`NetworkBehaviour`] with no protocol of its own).
pub(crate) struct ConnectionGate {
    limits: Limits,
    trusted: HashSet<PeerId>,
    pending: HashMap<ConnectionId, (GateSource, Kind)>,
    /// Keyed by transport kind too: forged QUIC Initials from a victim's
    /// network must not use up that network's TCP share.
    pending_by_source: HashMap<(GateSource, Kind), u32>,
    pending_quic: u32,
    pending_stream: u32,
    established: HashMap<ConnectionId, Option<GateSource>>,
    /// Counts per source and per wider network.
    established_by_source: HashMap<GateSource, u32>,
    /// Connections per source (not per wider network), newest last, for
    /// eviction.
    connections_by_source: HashMap<GateSource, Vec<(ConnectionId, PeerId)>>,
    /// Connections being closed to make room, and since when: not counted
    /// as inbound for [`EVICTION_GRACE`] (a close a peer stalls must not
    /// let inbound grow past its cap).
    evicting: HashMap<ConnectionId, Instant>,
    /// Evictions waiting for their newcomer to be established (another
    /// behaviour may still refuse it): newcomer → (victim, its peer).
    pending_evictions: HashMap<ConnectionId, (ConnectionId, PeerId)>,
    eviction_bucket: TokenBucket,
    to_close: std::collections::VecDeque<(ConnectionId, PeerId)>,
    waker: Option<std::task::Waker>,
    inbound_untrusted: u32,
    buckets: KeyedBuckets<(GateSource, Kind)>,
    refusals: GateRefusals,
    memory_checked: Option<(Instant, bool)>,
}

impl ConnectionGate {
    pub(crate) fn new(limits: Limits, trusted: HashSet<PeerId>) -> Self {
        let buckets = KeyedBuckets::new(
            f64::from(limits.source_burst),
            f64::from(limits.source_rate_per_sec),
            MAX_BUCKETS,
        );
        Self {
            limits,
            trusted,
            pending: HashMap::new(),
            pending_by_source: HashMap::new(),
            pending_quic: 0,
            pending_stream: 0,
            established: HashMap::new(),
            established_by_source: HashMap::new(),
            connections_by_source: HashMap::new(),
            evicting: HashMap::new(),
            pending_evictions: HashMap::new(),
            eviction_bucket: TokenBucket::new(f64::from(EVICTION_BURST), 1.0, Instant::now()),
            to_close: std::collections::VecDeque::new(),
            waker: None,
            inbound_untrusted: 0,
            buckets,
            refusals: GateRefusals::default(),
            memory_checked: None,
        }
    }

    /// Refusals so far.
    pub(crate) fn refusals(&self) -> GateRefusals {
        self.refusals
    }

    /// Established inbound connections from untrusted peers.
    pub(crate) fn inbound_untrusted(&self) -> u32 {
        self.inbound_untrusted
    }

    /// A source's share: (established, pending).
    fn share(&self, source: &GateSource) -> (u32, u32) {
        let factor = if matches!(source, GateSource::Circuit(_)) {
            WIDE_FACTOR
        } else {
            1
        };
        (
            self.limits.max_per_source.saturating_mul(factor),
            self.limits.max_pending_per_source.saturating_mul(factor),
        )
    }

    /// Evictions still in their grace period.
    fn live_evictions(&self, now: Instant) -> u32 {
        let n = self
            .evicting
            .values()
            .filter(|at| now.saturating_duration_since(**at) < EVICTION_GRACE)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn pending_of(&mut self, kind: Kind) -> &mut u32 {
        match kind {
            Kind::Quic => &mut self.pending_quic,
            Kind::Stream => &mut self.pending_stream,
        }
    }

    fn deny(reason: &'static str) -> ConnectionDenied {
        ConnectionDenied::new(GateDenied(reason))
    }

    /// Takes a token from `source`'s bucket.
    fn take_token(&mut self, source: &(GateSource, Kind), now: Instant) -> bool {
        self.buckets.take(source, now)
    }

    /// Whether the process is over its memory limit (sampled at most every
    /// 100 ms: reading it costs a system call).
    fn over_memory(&mut self, now: Instant) -> bool {
        let Some(max) = self.limits.max_memory_bytes else {
            return false;
        };
        if let Some((at, over)) = self.memory_checked
            && now.saturating_duration_since(at) < Duration::from_millis(100)
        {
            return over;
        }
        let over =
            memory_stats::memory_stats().is_some_and(|usage| usage.physical_mem as u64 > max);
        self.memory_checked = Some((now, over));
        over
    }

    fn release_pending(&mut self, connection: ConnectionId) {
        if let Some((source, kind)) = self.pending.remove(&connection) {
            let slot = self.pending_of(kind);
            *slot = slot.saturating_sub(1);
            let wide = source.wide();
            for key in std::iter::once(source).chain(wide) {
                let key = (key, kind);
                if let Some(n) = self.pending_by_source.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.pending_by_source.remove(&key);
                    }
                }
            }
        }
    }

    fn admit_established_inbound(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.release_pending(connection);
        if self.trusted.contains(&peer) {
            self.established.insert(connection, None);
            return Ok(());
        }
        let source = GateSource::of_connection(local, remote, &self.limits.unlimited_sources);
        let wide = source.wide();
        if !source.is_unlimited() {
            let count =
                |key: &GateSource| self.established_by_source.get(key).copied().unwrap_or(0);
            let wide_full = wide.as_ref().is_some_and(|w| {
                count(w) >= self.limits.max_per_source.saturating_mul(WIDE_FACTOR)
            });
            if count(&source) >= self.share(&source).0 || wide_full {
                self.refusals.per_source += 1;
                return Err(Self::deny("too many connections from this source"));
            }
        }
        let inbound_max = self
            .limits
            .max_connections
            .saturating_sub(self.limits.reserved_outbound);
        let now = Instant::now();
        let inbound = self
            .inbound_untrusted
            .saturating_sub(self.live_evictions(now));
        if inbound >= inbound_max && !self.evict_for(connection, &source, inbound_max, now) {
            self.refusals.inbound_full += 1;
            return Err(Self::deny("inbound connection slots are full"));
        }
        if !source.is_unlimited() {
            for key in std::iter::once(source.clone()).chain(wide) {
                *self.established_by_source.entry(key).or_insert(0) += 1;
            }
            self.connections_by_source
                .entry(source.clone())
                .or_default()
                .push((connection, peer));
        }
        self.inbound_untrusted += 1;
        self.established.insert(connection, Some(source));
        Ok(())
    }

    /// The inbound slots are full and connection `newcomer` from `source`
    /// arrives: if some source holds more than its fair share of the slots
    /// and at least two more connections than the newcomer's source would,
    /// its newest connection is closed to make room, once the newcomer is
    /// established. Whoever crowds the slots loses them first; a source
    /// can never be pushed below its fair share or another's count.
    /// Evictions are bounded: [`MAX_EVICTING`] at once, [`EVICTION_BURST`]
    /// then one a second node-wide.
    fn evict_for(
        &mut self,
        newcomer: ConnectionId,
        source: &GateSource,
        inbound_max: u32,
        now: Instant,
    ) -> bool {
        // A victim stays in `evicting` until its connection is gone (never
        // picked twice); closes that stall count as inbound again after
        // the grace, and no eviction happens while inbound is over its
        // cap by MAX_EVICTING, so stalled closes cannot add up.
        let over_cap = self.inbound_untrusted.saturating_sub(inbound_max);
        if self.evicting.len() >= MAX_EVICTING
            || over_cap >= u32::try_from(MAX_EVICTING).unwrap_or(u32::MAX)
        {
            return false;
        }
        let mine = if source.is_unlimited() {
            1
        } else {
            self.connections_by_source.get(source).map_or(0, Vec::len) + 1
        };
        // Sources sharing the slots, the newcomer's included.
        let sources = (self.connections_by_source.len()
            + usize::from(!self.connections_by_source.contains_key(source)))
        .max(1);
        let fair = usize::try_from(inbound_max).unwrap_or(usize::MAX) / sources;
        let evicting = &self.evicting;
        let victim = self
            .connections_by_source
            .iter()
            .map(|(s, list)| {
                let live = list
                    .iter()
                    .filter(|(c, _)| !evicting.contains_key(c))
                    .count();
                (s, live)
            })
            .filter(|(_, live)| *live > mine && *live > fair)
            .max_by_key(|(_, live)| *live)
            .map(|(s, _)| s.clone());
        let Some(victim) = victim else {
            return false;
        };
        let Some(&(connection, peer)) = self.connections_by_source.get(&victim).and_then(|list| {
            list.iter()
                .rev()
                .find(|(c, _)| !self.evicting.contains_key(c))
        }) else {
            return false;
        };
        // The node-wide eviction rate.
        if !self.eviction_bucket.take(now) {
            return false;
        }
        self.evicting.insert(connection, now);
        self.pending_evictions.insert(newcomer, (connection, peer));
        true
    }

    /// The newcomer an eviction made room for is established: close the
    /// victim now.
    fn carry_out_eviction(&mut self, newcomer: ConnectionId) {
        if let Some(victim) = self.pending_evictions.remove(&newcomer) {
            self.to_close.push_back(victim);
            self.refusals.evicted += 1;
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    /// The newcomer was refused after all: the victim stays, and the
    /// eviction's token is given back (refusing newcomers later must not
    /// starve honest evictions).
    fn cancel_eviction(&mut self, newcomer: ConnectionId) {
        if let Some((victim, _)) = self.pending_evictions.remove(&newcomer) {
            self.evicting.remove(&victim);
            self.eviction_bucket.refund();
        }
    }

    fn release_established(&mut self, connection: ConnectionId) {
        self.evicting.remove(&connection);
        self.cancel_eviction(connection);
        if let Some(Some(source)) = self.established.remove(&connection) {
            self.inbound_untrusted = self.inbound_untrusted.saturating_sub(1);
            if let Some(list) = self.connections_by_source.get_mut(&source) {
                list.retain(|(c, _)| *c != connection);
                if list.is_empty() {
                    self.connections_by_source.remove(&source);
                }
            }
            let wide = source.wide();
            for key in std::iter::once(source).chain(wide) {
                if let Some(n) = self.established_by_source.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.established_by_source.remove(&key);
                    }
                }
            }
        }
    }
}

/// The gate's refusal, as libp2p reports it.
#[derive(Debug)]
struct GateDenied(&'static str);

impl std::fmt::Display for GateDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for GateDenied {}

impl NetworkBehaviour for ConnectionGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let now = Instant::now();
        let source = GateSource::of_connection(local, remote, &self.limits.unlimited_sources);
        let kind = kind_of(local);
        if self.over_memory(now) {
            self.refusals.memory += 1;
            return Err(Self::deny("over the memory limit"));
        }
        if *self.pending_of(kind) >= self.limits.max_pending_incoming {
            self.refusals.pending_full += 1;
            return Err(Self::deny("too many handshakes pending"));
        }
        if !source.is_unlimited() {
            let key = (source.clone(), kind);
            let n = self.pending_by_source.get(&key).copied().unwrap_or(0);
            let wide_key = source.wide().map(|w| (w, kind));
            let wide_n = wide_key
                .as_ref()
                .and_then(|k| self.pending_by_source.get(k))
                .copied()
                .unwrap_or(0);
            if n >= self.share(&source).1
                || wide_n
                    >= self
                        .limits
                        .max_pending_per_source
                        .saturating_mul(WIDE_FACTOR)
            {
                self.refusals.pending_per_source += 1;
                return Err(Self::deny("too many handshakes pending from this source"));
            }
            if !self.take_token(&key, now) {
                self.refusals.rate += 1;
                return Err(Self::deny("this source opens connections too fast"));
            }
            *self.pending_by_source.entry(key).or_insert(0) += 1;
            if let Some(wide_key) = wide_key {
                *self.pending_by_source.entry(wide_key).or_insert(0) += 1;
            }
        }
        *self.pending_of(kind) += 1;
        self.pending.insert(connection, (source, kind));
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit_established_inbound(connection, peer, local, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Outbound connections are ours (bounded by the total limit and
        // the pending-dial limit in `connection_limits`).
        self.established.insert(connection, None);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            // A connection another behaviour refused after we admitted it
            // ends in a failure, not a close: release it either way.
            FromSwarm::ListenFailure(failure) => {
                self.release_pending(failure.connection_id);
                self.release_established(failure.connection_id);
            }
            FromSwarm::ConnectionEstablished(established) => {
                self.carry_out_eviction(established.connection_id);
            }
            FromSwarm::DialFailure(failure) => self.release_established(failure.connection_id),
            FromSwarm::ConnectionClosed(closed) => self.release_established(closed.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        if let Some((connection, peer_id)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: libp2p::swarm::CloseConnection::One(connection),
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
