//! Token buckets: the one rate limiter the gate, the relay limits and
//! eviction share.

use std::{collections::HashMap, hash::Hash, time::Instant};

/// `burst` tokens, refilled at `per_sec` a second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            burst,
            per_sec,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.at = now;
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives one token back (up to the burst).
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Whether the bucket would be full at `now` (the same as no bucket).
    fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec
            >= self.burst
    }
}

/// A token bucket per key, for at most `max_keys` keys: beyond, keys whose
/// bucket has refilled are forgotten, and if none has (every key is
/// mid-burst: a distributed flood), newcomers are refused rather than the
/// map grown without bound.
#[derive(Debug)]
pub(crate) struct KeyedBuckets<K> {
    burst: f64,
    per_sec: f64,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub(crate) fn new(burst: f64, per_sec: f64, max_keys: usize) -> Self {
        Self {
            burst,
            per_sec,
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token from `key`'s bucket.
    pub(crate) fn take(&mut self, key: &K, now: Instant) -> bool {
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(key) {
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(burst, per_sec, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate_and_takes_refunds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 1.0, t0);
        assert_eq!((0..10).filter(|_| b.take(t0)).count(), 3);
        assert!(b.take(t0 + std::time::Duration::from_secs(1)));
        b.refund();
        assert!(b.take(t0 + std::time::Duration::from_secs(1)));
    }

    #[test]
    fn keyed_buckets_stay_bounded() {
        let t0 = Instant::now();
        let mut k = KeyedBuckets::new(1.0, 0.001, 2);
        assert!(k.take(&1, t0) && k.take(&2, t0));
        assert!(!k.take(&3, t0), "every tracked key is mid-burst");
        assert!(!k.take(&1, t0), "the first key's burst is spent");
    }
}
