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
