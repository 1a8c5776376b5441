//! Admission of pairing attempts.
//!
//! Every admitted attempt costs a card with one-time prekeys (the Olm
//! account keeps a bounded number, so a flood of attempts would push out
//! the keys on cards already handed out) and a Noise handshake. Anyone on a
//! direct link can start one while pairing is open, and peer IDs are free,
//! so attempts are bounded per peer *and* overall, both at once and per
//! time window. Every refusal is reported with its reason.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use libp2p::PeerId;
use tokio::time::Instant;

/// Pairings at once (handshakes running and codes awaiting confirmation),
/// across all peers. Pairing is done in person: a handful is plenty.
pub(crate) const MAX_CONCURRENT: usize = 4;
/// Attempts one peer may start per [`WINDOW`].
pub(crate) const PER_PEER_PER_WINDOW: usize = 3;
/// Attempts all peers together may start per [`WINDOW`].
pub(crate) const OVERALL_PER_WINDOW: usize = 10;
/// The rate-limit window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// A handshake still running after this is abandoned (five messages on a
/// direct link take milliseconds).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A code the user has not confirmed or rejected after this is dropped.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a pairing attempt was refused before any key was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PairingRefusal {
    /// This node does not accept pairing now: the user has not called
    /// `allow_pairing(true)`.
    Closed,
    /// A pairing with this peer is already running or awaiting
    /// confirmation; finish or reject it first.
    AlreadyPairing,
    /// Too many pairings at once across all peers; retry when one finishes.
    TooManyAtOnce,
    /// This peer started too many attempts recently; retry in a minute.
    PeerRateLimited,
    /// Too many attempts recently across all peers; retry in a minute.
    RateLimited,
}

/// Counts of refused attempts, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PairingRefusals {
    /// Pairing was closed.
    pub closed: u64,
    /// A pairing with the same peer was in progress.
    pub already_pairing: u64,
    /// The concurrency bound was reached.
    pub too_many_at_once: u64,
    /// The per-peer rate was exceeded.
    pub peer_rate_limited: u64,
    /// The overall rate was exceeded.
    pub rate_limited: u64,
}

impl PairingRefusals {
    /// All refusals.
    pub fn total(&self) -> u64 {
        self.closed
            + self.already_pairing
            + self.too_many_at_once
            + self.peer_rate_limited
            + self.rate_limited
    }

    fn count(&mut self, reason: PairingRefusal) {
        let counter = match reason {
            PairingRefusal::Closed => &mut self.closed,
            PairingRefusal::AlreadyPairing => &mut self.already_pairing,
            PairingRefusal::TooManyAtOnce => &mut self.too_many_at_once,
            PairingRefusal::PeerRateLimited => &mut self.peer_rate_limited,
            PairingRefusal::RateLimited => &mut self.rate_limited,
        };
        *counter += 1;
    }
}

/// Attempts started in the current window, and the refusals so far.
#[derive(Default)]
pub(crate) struct PairingGate {
    starts: VecDeque<(Instant, PeerId)>,
    per_peer: HashMap<PeerId, usize>,
    refusals: PairingRefusals,
}

impl PairingGate {
    /// Admits an attempt with `peer` (counting it) or says why not (counting
    /// the refusal). `active` is the number of pairings now held;
    /// `with_peer` whether one of them is with `peer`.
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        now: Instant,
        active: usize,
        with_peer: bool,
    ) -> Result<(), PairingRefusal> {
        self.forget_before(now);
        let refusal = if with_peer {
            Some(PairingRefusal::AlreadyPairing)
        } else if active >= MAX_CONCURRENT {
            Some(PairingRefusal::TooManyAtOnce)
        } else if self.per_peer.get(&peer).copied().unwrap_or(0) >= PER_PEER_PER_WINDOW {
            Some(PairingRefusal::PeerRateLimited)
        } else if self.starts.len() >= OVERALL_PER_WINDOW {
            Some(PairingRefusal::RateLimited)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.refusals.count(reason);
            return Err(reason);
        }
        self.starts.push_back((now, peer));
        *self.per_peer.entry(peer).or_default() += 1;
        Ok(())
    }

    /// Counts a refusal decided elsewhere (pairing closed).
    pub(crate) fn refuse(&mut self, reason: PairingRefusal) {
        self.refusals.count(reason);
    }

    pub(crate) fn refusals(&self) -> PairingRefusals {
        self.refusals
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.starts.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.starts.pop_front();
            if let Some(n) = self.per_peer.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(&peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_peer_overall_and_at_once_then_recovers() {
        let mut gate = PairingGate::default();
        let t0 = Instant::now();
        let one = PeerId::random();
        for _ in 0..PER_PEER_PER_WINDOW {
            assert_eq!(gate.admit(one, t0, 0, false), Ok(()));
        }
        assert_eq!(
            gate.admit(one, t0, 0, false),
            Err(PairingRefusal::PeerRateLimited)
        );
        assert_eq!(
            gate.admit(one, t0, 1, true),
            Err(PairingRefusal::AlreadyPairing)
        );
        assert_eq!(
            gate.admit(PeerId::random(), t0, MAX_CONCURRENT, false),
            Err(PairingRefusal::TooManyAtOnce)
        );
        // Fresh peer IDs are free: the overall bound still holds.
        let mut admitted = PER_PEER_PER_WINDOW;
        while gate.admit(PeerId::random(), t0, 0, false).is_ok() {
            admitted += 1;
        }
        assert_eq!(admitted, OVERALL_PER_WINDOW);
        assert_eq!(gate.refusals().rate_limited, 1);
        assert_eq!(gate.refusals().total(), 4);
        // A window later, attempts are admitted again.
        let later = t0 + WINDOW;
        assert_eq!(gate.admit(one, later, 0, false), Ok(()));
    }
}
