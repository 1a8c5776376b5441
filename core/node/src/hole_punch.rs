//! Hole punching (DCUtR) that dials only what a hole punch can use.
//!
//! The peer at the other end of a relayed connection names the addresses
//! to punch towards, and libp2p's DCUtR dials them all, unconditionally,
//! up to three rounds: a peer could make us dial hundreds of addresses,
//! including hosts on our LAN or loopback. This wrapper lets a hole-punch
//! dial through only if it names at most [`MAX_CANDIDATES`] addresses,
//! all of them global; otherwise the whole attempt is refused (and
//! counted) and the relayed connection stays as it is. Attempts are also
//! bounded in time ([`MAX_PER_MINUTE`]): every new relayed connection
//! starts up to three of them, and each dials the peer's addresses from
//! our own.

use std::{
    collections::HashSet,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    dcutr,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
};

/// Addresses a hole-punch attempt may name.
pub(crate) const MAX_CANDIDATES: usize = 8;

/// Hole-punch dials let through per minute, all peers together…
pub(crate) const MAX_PER_MINUTE: u32 = 12;

/// …and per peer (so one peer cannot spend everyone's).
pub(crate) const MAX_PER_PEER_PER_MINUTE: u32 = 2;

/// Hole-punch dials remembered at most (each is forgotten when it ends).
const MAX_TRACKED: usize = 256;

/// DCUtR with its dials checked.
pub(crate) struct HolePunch {
    inner: dcutr::Behaviour,
    dials: HashSet<ConnectionId>,
    refused: u64,
    /// Dials let through in the current minute, and when it started.
    window: (u32, Option<std::time::Instant>),
    /// Dials per peer in the current minute (cleared with it).
    per_peer: std::collections::HashMap<PeerId, u32>,
}

impl HolePunch {
    pub(crate) fn new(inner: dcutr::Behaviour) -> Self {
        Self {
            inner,
            dials: HashSet::new(),
            refused: 0,
            window: (0, None),
            per_peer: std::collections::HashMap::new(),
        }
    }

    /// Hole-punch attempts refused for their addresses.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }
}

impl HolePunch {
    /// Whether a hole-punch dial to `addresses` may go ahead.
    fn admit(&mut self, peer: Option<PeerId>, addresses: &[Multiaddr]) -> bool {
        if addresses.len() > MAX_CANDIDATES || !addresses.iter().all(crate::ip_class::is_global) {
            return false;
        }
        let now = std::time::Instant::now();
        let (count, start) = &mut self.window;
        if start.is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 60) {
            *count = 0;
            *start = Some(now);
            self.per_peer.clear();
        }
        let mine = peer.map_or(0, |p| self.per_peer.get(&p).copied().unwrap_or(0));
        if *count >= MAX_PER_MINUTE || mine >= MAX_PER_PEER_PER_MINUTE {
            return false;
        }
        *count += 1;
        if let Some(p) = peer {
            *self.per_peer.entry(p).or_insert(0) += 1;
        }
        true
    }
}

impl NetworkBehaviour for HolePunch {
    type ConnectionHandler = THandler<dcutr::Behaviour>;
    type ToSwarm = dcutr::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if self.dials.contains(&connection) && !self.admit(peer, addresses) {
            self.dials.remove(&connection);
            self.refused += 1;
            tracing::debug!(
                candidates = addresses.len(),
                "hole punch refused: too many or non-global candidates, or too many attempts"
            );
            return Err(ConnectionDenied::new(std::io::Error::other(
                "hole-punch candidates refused",
            )));
        }
        self.inner
            .handle_pending_outbound_connection(connection, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.dials.remove(&connection);
        self.inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::DialFailure(failure) = &event {
            self.dials.remove(&failure.connection_id);
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer, connection, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let polled = self.inner.poll(cx);
        if let Poll::Ready(ToSwarm::Dial { opts }) = &polled {
            if self.dials.len() >= MAX_TRACKED {
                self.dials.clear();
            }
            self.dials.insert(opts.connection_id());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_bounded_per_minute_and_by_their_candidates() {
        let mut punch = HolePunch::new(dcutr::Behaviour::new(PeerId::random()));
        let global: Vec<Multiaddr> = vec![
            "/ip4/8.8.8.8/tcp/1"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
        ];
        let nine: Vec<Multiaddr> = (0..9).map(|_| global[0].clone()).collect();
        assert!(
            !punch.admit(None, &nine),
            "more than {MAX_CANDIDATES} candidates"
        );
        let one = PeerId::random();
        let from_one = (0..10).filter(|_| punch.admit(Some(one), &global)).count();
        assert_eq!(from_one, MAX_PER_PEER_PER_MINUTE as usize);
        let admitted = (0..30)
            .filter(|_| punch.admit(Some(PeerId::random()), &global))
            .count();
        assert_eq!(
            admitted,
            (MAX_PER_MINUTE - MAX_PER_PEER_PER_MINUTE) as usize
        );
    }

    #[test]
    fn only_global_addresses_are_hole_punch_candidates() {
        let ok =
            |s: &str| crate::ip_class::is_global(&s.parse().unwrap_or_else(|_| Multiaddr::empty()));
        assert!(ok("/ip4/8.8.8.8/tcp/1"));
        assert!(ok("/ip6/2a00:1450::1/udp/1/quic-v1"));
        for bad in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/224.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
            "/dns4/example.org/tcp/1",
        ] {
            assert!(!ok(bad), "{bad} is not a hole-punch candidate");
        }
    }
}
