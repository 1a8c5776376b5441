//! Per-source rate limits for the relay v2 server.
//!
//! libp2p's relay limits reservations and circuits per PeerId (free) and
//! per IP address (one IPv6 host has 2⁶⁴ of them); this limiter counts by
//! the gate's source (an IPv4 /24, an IPv6 /56, see
//! [`crate::gate::GateSource`]).

use std::{collections::HashMap, net::IpAddr, time::Instant};

use libp2p::{Multiaddr, PeerId, relay};

use crate::gate::GateSource;

/// Sources tracked at most; beyond, sources whose bucket has refilled are
/// forgotten, and if none has, newcomers are refused.
const MAX_SOURCES: usize = 8192;

/// A token bucket per source: `per_minute` requests in a burst, refilled
/// at `per_minute` a minute.
pub(crate) struct SourceRateLimiter {
    per_minute: u32,
    unlimited: Vec<IpAddr>,
    buckets: HashMap<GateSource, (f64, Instant)>,
}

impl SourceRateLimiter {
    pub(crate) fn new(per_minute: u32, unlimited: Vec<IpAddr>) -> Self {
        Self {
            per_minute,
            unlimited,
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, addr: &Multiaddr, now: Instant) -> bool {
        let source = GateSource::of(addr, &self.unlimited);
        if source == GateSource::Unlimited {
            return true;
        }
        let burst = f64::from(self.per_minute);
        let rate = burst / 60.0;
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(source).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl relay::RateLimiter for SourceRateLimiter {
    fn try_next(&mut self, _peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        self.allow(addr, now)
    }
}

/// Peers whose source is remembered at most (the latest circuit request
/// of each); beyond, the memory is cleared (an open circuit of a
/// forgotten peer is then released under "unknown").
const MAX_PEERS: usize = 8192;

/// Open relay circuits per source: the relay v2 server limits circuits in
/// total and per PeerId (free), so without this one network could hold
/// every circuit for their whole duration.
#[derive(Debug, Default)]
pub(crate) struct CircuitBook {
    per_source: u32,
    unlimited: Vec<IpAddr>,
    /// The source of each peer's latest circuit request.
    sources: HashMap<PeerId, GateSource>,
    /// Open circuits by (source peer, destination peer): the source each
    /// was charged to.
    circuits: HashMap<(PeerId, PeerId), Vec<GateSource>>,
    open: HashMap<GateSource, u32>,
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

    /// Whether `peer` at `addr` may open one more circuit.
    pub(crate) fn allow(&mut self, peer: PeerId, addr: &Multiaddr) -> bool {
        let source = GateSource::of(addr, &self.unlimited);
        if source == GateSource::Unlimited {
            return true;
        }
        if self.open.get(&source).copied().unwrap_or(0) >= self.per_source {
            self.refused += 1;
            return false;
        }
        if self.sources.len() >= MAX_PEERS {
            self.sources.clear();
        }
        self.sources.insert(peer, source);
        true
    }

    /// The relay accepted a circuit from `src` to `dst`.
    pub(crate) fn opened(&mut self, src: PeerId, dst: PeerId) {
        let source = self
            .sources
            .get(&src)
            .cloned()
            .unwrap_or(GateSource::Unlimited);
        if source == GateSource::Unlimited {
            return;
        }
        *self.open.entry(source.clone()).or_insert(0) += 1;
        self.circuits.entry((src, dst)).or_default().push(source);
    }

    /// A circuit from `src` to `dst` closed.
    pub(crate) fn closed(&mut self, src: PeerId, dst: PeerId) {
        let Some(list) = self.circuits.get_mut(&(src, dst)) else {
            return;
        };
        if let Some(source) = list.pop()
            && let Some(n) = self.open.get_mut(&source)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&source);
            }
        }
        if list.is_empty() {
            self.circuits.remove(&(src, dst));
        }
    }

    /// Circuit requests refused for their source's open circuits.
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
        // A poisoned lock means a panic elsewhere; refuse rather than
        // guess.
        let allowed = self
            .book
            .lock()
            .is_ok_and(|mut book| book.allow(peer, addr));
        allowed && self.rate.allow(addr, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_network_holds_a_bounded_number_of_open_circuits() {
        let mut book = CircuitBook::new(2, vec![]);
        let addr: Multiaddr = "/ip4/44.1.2.3/tcp/1"
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty());
        let dst = PeerId::random();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let p = PeerId::random();
            assert!(book.allow(p, &addr));
            book.opened(p, dst);
            peers.push(p);
        }
        let newcomer = PeerId::random();
        assert!(!book.allow(newcomer, &addr), "a third circuit from the /24");
        assert_eq!(book.refused(), 1);
        let other: Multiaddr = "/ip4/45.1.2.3/tcp/1"
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty());
        assert!(
            book.allow(newcomer, &other),
            "another network is unaffected"
        );
        book.closed(peers[0], dst);
        assert!(
            book.allow(PeerId::random(), &addr),
            "a closed circuit frees its slot"
        );
    }
}
