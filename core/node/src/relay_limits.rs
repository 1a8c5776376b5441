//! Per-source rate limits for the relay v2 server.
//!
//! libp2p's relay limits reservations and circuits per PeerId (free) and
//! per IP address (one IPv6 host has 2⁶⁴ of them); this limiter counts by
//! the gate's source (an IPv4 /24, an IPv6 /56, see
//! [`crate::gate::GateSource`]).

use std::{collections::HashMap, net::IpAddr, time::Instant};

use libp2p::{Multiaddr, PeerId, relay};

use crate::{gate::GateSource, rate::KeyedBuckets};

/// Sources tracked at most (see [`KeyedBuckets`]).
const MAX_SOURCES: usize = 8192;

/// A token bucket per source: `per_minute` requests in a burst, refilled
/// at `per_minute` a minute.
pub(crate) struct SourceRateLimiter {
    unlimited: Vec<IpAddr>,
    buckets: KeyedBuckets<GateSource>,
}

impl SourceRateLimiter {
    pub(crate) fn new(per_minute: u32, unlimited: Vec<IpAddr>) -> Self {
        let burst = f64::from(per_minute);
        Self {
            unlimited,
            buckets: KeyedBuckets::new(burst, burst / 60.0, MAX_SOURCES),
        }
    }

    fn allow(&mut self, addr: &Multiaddr, now: Instant) -> bool {
        let source = GateSource::of(addr, &self.unlimited);
        source == GateSource::Unlimited || self.buckets.take(&source, now)
    }
}

impl relay::RateLimiter for SourceRateLimiter {
    fn try_next(&mut self, _peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        self.allow(addr, now)
    }
}

/// Circuit requests waiting for the relay's answer, node-wide, at most;
/// beyond, new requests are refused.
const MAX_PENDING: usize = 4096;

/// A request the relay has not answered in this long (libp2p gives the
/// destination 60 s) is forgotten and its charge released: some denials
/// cannot be told apart from denials of requests never charged (see
/// [`CircuitBook::denied`]).
const PENDING_EXPIRY: std::time::Duration = std::time::Duration::from_secs(120);

/// Relay circuits per source, charged when a request is admitted (before
/// the destination answers, which an attacker controlling it can delay)
/// and released when it is denied, fails or closes. The relay v2 server
/// limits circuits in total and per PeerId (free), so without this one
/// network could hold every circuit for their whole duration. A wider
/// network (IPv4 /16, IPv6 /48) holds at most
/// [`crate::gate::WIDE_FACTOR`] shares.
#[derive(Debug, Default)]
pub(crate) struct CircuitBook {
    per_source: u32,
    unlimited: Vec<IpAddr>,
    /// Requests admitted and not yet answered, per requesting peer, in
    /// order (libp2p answers a peer's requests in order); `None` for
    /// unlimited sources.
    pending: HashMap<PeerId, std::collections::VecDeque<(Option<GateSource>, Instant)>>,
    pending_total: usize,
    last_expiry: Option<Instant>,
    /// Open circuits by (source peer, destination peer): what each was
    /// charged to.
    circuits: HashMap<(PeerId, PeerId), Vec<Option<GateSource>>>,
    /// Closes still expected for circuits already released (see
    /// [`CircuitBook::closed`]).
    duplicates: HashMap<(PeerId, PeerId), u32>,
    /// Charges per source and per wider network.
    charged: HashMap<GateSource, u32>,
    refused: u64,
}

impl CircuitBook {
    pub(crate) fn new(per_source: u32, unlimited: Vec<IpAddr>) -> Self {
        Self {
            per_source,
            unlimited,
            ..Self::default()
        }
    }

    fn keys(source: &GateSource) -> impl Iterator<Item = GateSource> {
        std::iter::once(source.clone()).chain(source.wide())
    }

    fn charge(&mut self, source: &GateSource) {
        for key in Self::keys(source) {
            *self.charged.entry(key).or_insert(0) += 1;
        }
    }

    fn uncharge(&mut self, source: Option<GateSource>) {
        let Some(source) = source else {
            return;
        };
        for key in Self::keys(&source) {
            if let Some(n) = self.charged.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.charged.remove(&key);
                }
            }
        }
    }

    fn pop_pending(&mut self, peer: PeerId) -> Option<Option<GateSource>> {
        let queue = self.pending.get_mut(&peer)?;
        let entry = queue.pop_front();
        if queue.is_empty() {
            self.pending.remove(&peer);
        }
        if entry.is_some() {
            self.pending_total = self.pending_total.saturating_sub(1);
        }
        entry.map(|(source, _)| source)
    }

    /// Forgets requests unanswered for [`PENDING_EXPIRY`] (at most once a
    /// second).
    fn expire(&mut self, now: Instant) {
        if self
            .last_expiry
            .is_some_and(|t| now.saturating_duration_since(t).as_secs() < 1)
        {
            return;
        }
        self.last_expiry = Some(now);
        let mut released = Vec::new();
        for queue in self.pending.values_mut() {
            while queue
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= PENDING_EXPIRY)
            {
                if let Some((source, _)) = queue.pop_front() {
                    released.push(source);
                }
            }
        }
        self.pending.retain(|_, queue| !queue.is_empty());
        self.pending_total = self.pending_total.saturating_sub(released.len());
        for source in released {
            self.uncharge(source);
        }
    }

    /// Whether `peer` at `addr` may ask for one more circuit; if so, the
    /// request is charged to its source.
    pub(crate) fn allow(&mut self, peer: PeerId, addr: &Multiaddr) -> bool {
        self.allow_at(peer, addr, Instant::now())
    }

    fn allow_at(&mut self, peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        self.expire(now);
        if self.pending_total >= MAX_PENDING {
            self.refused += 1;
            return false;
        }
        let source = GateSource::of(addr, &self.unlimited);
        let entry = if source == GateSource::Unlimited {
            None
        } else {
            let held = |key: &GateSource| self.charged.get(key).copied().unwrap_or(0);
            let wide_full = source.wide().is_some_and(|w| {
                held(&w) >= self.per_source.saturating_mul(crate::gate::WIDE_FACTOR)
            });
            if held(&source) >= self.per_source || wide_full {
                self.refused += 1;
                return false;
            }
            self.charge(&source);
            Some(source)
        };
        self.pending
            .entry(peer)
            .or_default()
            .push_back((entry, now));
        self.pending_total += 1;
        true
    }

    /// The relay accepted the oldest pending request of `src`, to `dst`.
    pub(crate) fn opened(&mut self, src: PeerId, dst: PeerId) {
        if let Some(entry) = self.pop_pending(src) {
            self.circuits.entry((src, dst)).or_default().push(entry);
        }
    }

    /// The relay denied (or failed) the oldest pending request of `src`.
    /// Only for denials that come after the limiter admitted the request
    /// (no reservation, the destination refused, the accept failed): a
    /// "resource limit exceeded" denial may come from a check made before
    /// the limiter was asked, and is left to expire instead.
    pub(crate) fn denied(&mut self, src: PeerId) {
        if let Some(entry) = self.pop_pending(src) {
            self.uncharge(entry);
        }
    }

    /// A circuit from `src` to `dst` closed. libp2p reports a circuit
    /// twice when one of its connections closes (`aborted`: at once, from
    /// the relay; and again when the copy ends, which the source can delay
    /// for as long as the circuit may last): the later report is expected
    /// and releases nothing, so it cannot release a newer circuit's charge
    /// on the same pair. A close with no open circuit left for the pair is
    /// ignored.
    pub(crate) fn closed(&mut self, src: PeerId, dst: PeerId, aborted: bool) {
        let pair = (src, dst);
        if !aborted && let Some(n) = self.duplicates.get_mut(&pair) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.duplicates.remove(&pair);
            }
            return;
        }
        let Some(list) = self.circuits.get_mut(&pair) else {
            return;
        };
        if aborted && self.duplicates.len() < MAX_PENDING {
            *self.duplicates.entry(pair).or_insert(0) += 1;
        }
        let entry = list.pop();
        if list.is_empty() {
            self.circuits.remove(&(src, dst));
        }
        if let Some(entry) = entry {
            self.uncharge(entry);
        }
    }

    /// `peer`'s last connection closed: its unanswered requests will never
    /// be answered.
    pub(crate) fn peer_gone(&mut self, peer: PeerId) {
        while let Some(entry) = self.pop_pending(peer) {
            self.uncharge(entry);
        }
    }

    /// Circuit requests refused for their source's share.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }
}

/// The circuit limiter the relay server consults: the per-source cap on
/// open circuits, then the per-source rate.
pub(crate) struct CircuitLimiter {
    pub(crate) book: std::sync::Arc<std::sync::Mutex<CircuitBook>>,
    pub(crate) rate: SourceRateLimiter,
}

impl relay::RateLimiter for CircuitLimiter {
    fn try_next(&mut self, peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        // The rate first: a request it refuses must not hold a charge.
        // A poisoned lock means a panic elsewhere; refuse rather than
        // guess.
        self.rate.allow(addr, now)
            && self
                .book
                .lock()
                .is_ok_and(|mut book| book.allow(peer, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_network_holds_a_bounded_number_of_circuits_pending_or_open() {
        let parse = |s: &str| {
            s.parse::<Multiaddr>()
                .unwrap_or_else(|_| Multiaddr::empty())
        };
        let mut book = CircuitBook::new(2, vec![]);
        let addr = parse("/ip4/44.1.2.3/tcp/1");
        let dst = PeerId::random();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(book.allow(a, &addr));
        book.opened(a, dst);
        // b's request is still waiting for the destination: it counts.
        assert!(book.allow(b, &addr));
        assert!(!book.allow(PeerId::random(), &addr), "a third from the /24");
        assert_eq!(book.refused(), 1);
        assert!(
            book.allow(PeerId::random(), &parse("/ip4/45.1.2.3/tcp/1")),
            "another network is unaffected"
        );
        // A denied request and a closed circuit free their charges; a
        // second close of the same circuit frees nothing more.
        book.denied(b);
        book.closed(a, dst, false);
        book.closed(a, dst, false);
        assert!(book.allow(PeerId::random(), &addr));
        assert!(book.allow(PeerId::random(), &addr));
        assert!(!book.allow(PeerId::random(), &addr));
        // A peer that leaves with requests unanswered frees them.
        let c = PeerId::random();
        let mut fresh = CircuitBook::new(1, vec![]);
        assert!(fresh.allow(c, &addr));
        fresh.peer_gone(c);
        assert!(fresh.allow(PeerId::random(), &addr));
        // A request never answered is forgotten after PENDING_EXPIRY.
        let mut stale = CircuitBook::new(1, vec![]);
        let t0 = Instant::now();
        assert!(stale.allow_at(PeerId::random(), &addr, t0));
        assert!(!stale.allow_at(PeerId::random(), &addr, t0));
        assert!(stale.allow_at(PeerId::random(), &addr, t0 + PENDING_EXPIRY));
    }

    #[test]
    fn a_late_duplicate_close_does_not_release_a_newer_circuit() {
        let addr: Multiaddr = "/ip4/44.1.2.3/tcp/1"
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty());
        let mut book = CircuitBook::new(1, vec![]);
        let (src, dst) = (PeerId::random(), PeerId::random());
        assert!(book.allow(src, &addr));
        book.opened(src, dst);
        // The destination's connection drops: the relay reports at once.
        book.closed(src, dst, true);
        // A new circuit on the same pair…
        assert!(book.allow(src, &addr));
        book.opened(src, dst);
        // …then the old copy's late report: the new charge stays.
        book.closed(src, dst, false);
        assert!(
            !book.allow(PeerId::random(), &addr),
            "the new circuit is still charged"
        );
    }

    #[test]
    fn a_wider_network_holds_four_shares_of_circuits() {
        let mut book = CircuitBook::new(2, vec![]);
        let allowed = (0..40u32)
            .filter(|i| {
                let addr: Multiaddr = format!("/ip6/2a00:1:2:{i:x}00::1/tcp/1")
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty());
                book.allow(PeerId::random(), &addr)
            })
            .count();
        assert_eq!(allowed, 2 * crate::gate::WIDE_FACTOR as usize);
    }
}
