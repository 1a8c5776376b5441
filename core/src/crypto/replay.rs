//! The replay guard: content IDs of envelopes already opened, kept until the
//! envelope expires. The store (engine issue) implements [`ReplayGuard`]
//! durably; [`MemoryReplayGuard`] serves tests and the simulator.

use std::collections::{BTreeSet, HashMap};

use super::tags::ContentId;

/// Remembers which envelopes were already accepted, for their whole lifetime.
pub trait ReplayGuard {
    /// The error of the backing storage.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether `id` was recorded and has not expired by `now`.
    ///
    /// # Errors
    /// A storage error; callers treat the envelope as not accepted.
    fn contains(&self, id: &ContentId, now: u64) -> Result<bool, Self::Error>;

    /// Records `id` until `expiry`. Must be durable when it returns if the
    /// implementation is persistent.
    ///
    /// # Errors
    /// A storage error; the caller must not deliver the message.
    fn insert(&mut self, id: ContentId, expiry: u64) -> Result<(), Self::Error>;

    /// Forgets entries that expired before `now`.
    ///
    /// # Errors
    /// A storage error.
    fn purge_expired(&mut self, now: u64) -> Result<(), Self::Error>;
}

/// An in-memory [`ReplayGuard`].
#[derive(Debug, Default, Clone)]
pub struct MemoryReplayGuard {
    entries: HashMap<ContentId, u64>,
    by_expiry: BTreeSet<(u64, ContentId)>,
}

impl MemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of remembered IDs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl ReplayGuard for MemoryReplayGuard {
    type Error = std::convert::Infallible;

    fn contains(&self, id: &ContentId, now: u64) -> Result<bool, Self::Error> {
        Ok(self.entries.get(id).is_some_and(|expiry| *expiry >= now))
    }

    fn insert(&mut self, id: ContentId, expiry: u64) -> Result<(), Self::Error> {
        if let Some(old) = self.entries.insert(id, expiry) {
            self.by_expiry.remove(&(old, id));
        }
        self.by_expiry.insert((expiry, id));
        Ok(())
    }

    fn purge_expired(&mut self, now: u64) -> Result<(), Self::Error> {
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&id);
        }
        Ok(())
    }
}
