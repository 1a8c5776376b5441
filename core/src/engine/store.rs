//! The storage interface the engine calls synchronously.
//!
//! One atomic, durable [`Store::commit`] per engine step: when it returns,
//! every operation in it survives a crash (`kill -9`), and none is visible
//! without the others. The engine reports a message as accepted (to the app,
//! or to a peer as custody) only after that commit returned.

use std::collections::BTreeMap;

use crate::crypto::tags::ContentId;

use super::{MessageId, StatusRecord};

/// Who an envelope in custody belongs to; decides eviction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Custody {
    /// Received from an untrusted peer: first to go when space runs out.
    Stranger = 0,
    /// Received from a trusted peer (a contact's device): never evicted for
    /// a stranger's envelope.
    Contact = 1,
    /// Our own (outbox, receipts): never evicted.
    Own = 2,
}

impl Custody {
    /// The stored byte.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// Parses the stored byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Stranger),
            1 => Some(Self::Contact),
            2 => Some(Self::Own),
            _ => None,
        }
    }
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Keep an envelope (encoded) in custody.
    PutEnvelope {
        /// Its content ID.
        id: ContentId,
        /// Whose it is.
        custody: Custody,
        /// The encoded envelope.
        bytes: Vec<u8>,
    },
    /// Drop an envelope.
    RemoveEnvelope(ContentId),
    /// Remember an opened envelope until its expiry (replay guard).
    PutSeen {
        /// Content ID.
        id: ContentId,
        /// Forget after this time.
        expiry: u64,
    },
    /// Forget a seen ID.
    RemoveSeen(ContentId),
    /// Remember a delivery proof (anti-packet) until expiry.
    PutDelivered {
        /// Content ID.
        id: ContentId,
        /// The delivery secret.
        secret: [u8; 16],
        /// Forget after this time.
        expiry: u64,
    },
    /// Forget a delivery proof.
    RemoveDelivered(ContentId),
    /// An outbox entry (encoded by the engine), keyed by content ID.
    PutOutbox {
        /// Content ID of the envelope carrying the message.
        id: ContentId,
        /// The engine's record.
        record: Vec<u8>,
    },
    /// Remove an outbox entry.
    RemoveOutbox(ContentId),
    /// A received message waiting for the app's acknowledgement.
    PutInbox {
        /// Content ID of the envelope that carried it.
        id: ContentId,
        /// The engine's record.
        record: Vec<u8>,
    },
    /// The app acknowledged a received message.
    RemoveInbox(ContentId),
    /// Replace the keyring state (already encrypted by the keyring).
    PutKeyring(Vec<u8>),
    /// The status of a message we sent (kept after the message is
    /// delivered or expired, until the app deletes it from the history).
    PutStatus {
        /// Our message ID.
        message_id: MessageId,
        /// The status and when it was reached.
        record: StatusRecord,
    },
    /// Keep a message in the conversation history. The store gives it the
    /// next place in the history; a second put of the same message (same
    /// direction and ID) is ignored, so redeliveries are not doubled.
    PutHistory {
        /// The contact's identity key (sender or recipient).
        contact: [u8; 32],
        /// The message ID.
        message_id: MessageId,
        /// Whether we sent it.
        outgoing: bool,
        /// The caller's record (time, body, …), opaque to the store.
        record: Vec<u8>,
    },
    /// Drop a message from the history, with its status.
    RemoveHistory {
        /// The message ID.
        message_id: MessageId,
        /// Whether we sent it.
        outgoing: bool,
    },
}

/// Everything a store holds, as loaded at start-up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Envelopes in custody: id → (custody, encoded envelope).
    pub envelopes: BTreeMap<ContentId, (Custody, Vec<u8>)>,
    /// Seen IDs → expiry.
    pub seen: BTreeMap<ContentId, u64>,
    /// Delivery proofs: id → (secret, expiry).
    pub delivered: BTreeMap<ContentId, ([u8; 16], u64)>,
    /// Outbox records by content ID.
    pub outbox: BTreeMap<ContentId, Vec<u8>>,
    /// Inbox records (received, not yet acknowledged by the app).
    pub inbox: BTreeMap<ContentId, Vec<u8>>,
    /// The keyring state, if saved.
    pub keyring: Option<Vec<u8>>,
}

/// Durable storage for one node.
pub trait Store {
    /// The storage error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `ops` atomically and durably (flushed) before returning.
    ///
    /// A store may defer the flush of a commit whose operations only change
    /// relay custody (others' envelopes, removals, anti-packets, sweeps),
    /// provided commits still reach the disk in order: a crash then loses a
    /// relay's copies, never a message, a replay-guard entry or ratchet
    /// state. `ferry-store` does this to keep an fsync off every hop.
    ///
    /// # Errors
    /// A storage error; then none of `ops` took effect.
    fn commit(&mut self, ops: Vec<StoreOp>) -> Result<(), Self::Error>;

    /// Reads one envelope in custody.
    ///
    /// # Errors
    /// A storage error.
    fn envelope(&self, id: &ContentId) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Reads everything (at start-up). History and statuses are not
    /// loaded: they are read on demand.
    ///
    /// # Errors
    /// A storage error, or data that cannot be decrypted or parsed.
    fn load(&self) -> Result<Loaded, Self::Error>;

    /// The stored status of a message we sent, if any.
    ///
    /// # Errors
    /// A storage error.
    fn status(&self, message_id: &MessageId) -> Result<Option<StatusRecord>, Self::Error>;
}

/// An in-memory [`Store`] for tests and the simulator. Clone it to simulate
/// a restart from the same "disk".
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    data: Loaded,
    statuses: BTreeMap<MessageId, StatusRecord>,
    commits: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

/// Applies one operation to loaded data (shared by stores that keep a
/// [`Loaded`] image).
pub fn apply(data: &mut Loaded, op: StoreOp) {
    match op {
        StoreOp::PutEnvelope { id, custody, bytes } => {
            data.envelopes.insert(id, (custody, bytes));
        }
        StoreOp::RemoveEnvelope(id) => {
            data.envelopes.remove(&id);
        }
        StoreOp::PutSeen { id, expiry } => {
            data.seen.insert(id, expiry);
        }
        StoreOp::RemoveSeen(id) => {
            data.seen.remove(&id);
        }
        StoreOp::PutDelivered { id, secret, expiry } => {
            data.delivered.insert(id, (secret, expiry));
        }
        StoreOp::RemoveDelivered(id) => {
            data.delivered.remove(&id);
        }
        StoreOp::PutOutbox { id, record } => {
            data.outbox.insert(id, record);
        }
        StoreOp::RemoveOutbox(id) => {
            data.outbox.remove(&id);
        }
        StoreOp::PutInbox { id, record } => {
            data.inbox.insert(id, record);
        }
        StoreOp::RemoveInbox(id) => {
            data.inbox.remove(&id);
        }
        StoreOp::PutKeyring(state) => data.keyring = Some(state),
        // Not part of the start-up image.
        StoreOp::PutStatus { .. } | StoreOp::PutHistory { .. } | StoreOp::RemoveHistory { .. } => {}
    }
}

impl Store for MemoryStore {
    type Error = std::convert::Infallible;

    fn commit(&mut self, ops: Vec<StoreOp>) -> Result<(), Self::Error> {
        for op in ops {
            match op {
                StoreOp::PutStatus { message_id, record } => {
                    self.statuses.insert(message_id, record);
                }
                StoreOp::RemoveHistory {
                    message_id,
                    outgoing: true,
                } => {
                    self.statuses.remove(&message_id);
                }
                op => apply(&mut self.data, op),
            }
        }
        self.commits += 1;
        Ok(())
    }

    fn envelope(&self, id: &ContentId) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.data.envelopes.get(id).map(|(_, b)| b.clone()))
    }

    fn load(&self) -> Result<Loaded, Self::Error> {
        Ok(self.data.clone())
    }

    fn status(&self, message_id: &MessageId) -> Result<Option<StatusRecord>, Self::Error> {
        Ok(self.statuses.get(message_id).copied())
    }
}
