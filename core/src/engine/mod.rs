//! The store-and-forward engine: a sans-IO state machine.
//!
//! # Driving contract
//!
//! The engine never performs I/O, never reads the clock and never spawns
//! anything. A driver (the libp2p node, the simulator, a test harness) owns
//! it and:
//!
//! 1. feeds it inputs with [`Engine::handle`] (peer up/down, a gossip
//!    envelope, a sync frame, a timeout), and app calls with
//!    [`Engine::send`] / [`Engine::add_contact`], always with the current
//!    time `now` (seconds since the Unix epoch);
//! 2. after **every** such call, drains [`Engine::poll_output`] until it
//!    returns `None`, carrying out each [`Output`] (publish on gossip, send a
//!    frame to one peer, deliver a message to the app, raise an event);
//! 3. calls [`Engine::handle`] with [`Input::Timeout`] once `now` reaches
//!    [`Engine::poll_timeout`].
//!
//! ```text
//! loop {
//!     let input = next_network_event_or_timer(engine.poll_timeout());
//!     let verdict = engine.handle(input, now)?;   // gossip: report verdict
//!     while let Some(output) = engine.poll_output() { carry_out(output) }
//! }
//! ```
//!
//! Every state change is committed to the [`Store`] (atomically, durably)
//! *before* the outputs that depend on it are queued: a message is reported
//! as accepted by [`Engine::send`] only after its envelope is on disk, and a
//! message is delivered to the app only after its replay-guard entry is.
//!
//! # Custody, routing and anti-packets
//!
//! Every node carries others' envelopes until they expire, within quotas
//! (per recipient tag, per peer, global), never evicting its own or trusted
//! peers' envelopes for strangers'. Routing is per envelope: `copy_budget`
//! 0 means epidemic; `n > 1` means binary spray-and-wait (give half to the
//! next carrier); 1 means "wait": shown to directly met peers, stored by none
//! but the recipient. Recipients return encrypted receipts carrying the
//! envelope's delivery secret; the secret, published as an anti-packet, lets
//! every relay verify the delivery against the envelope's commitment and drop
//! its copy.

mod bundles;
mod outbox;
mod status;
mod store;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use prost::Message as _;
use rand_core::CryptoRng;
use thiserror::Error;

pub use self::bundles::{ExportFilter, ImportSummary};
use self::outbox::OutboxRecord;
pub use self::status::{FailReason, InvalidMessageId, MessageId, MessageStatus, StatusRecord};
pub use self::store::{Custody, Loaded, MemoryStore, Store, StoreOp, apply};
use crate::{
    contact::ContactCard,
    crypto::{
        ContactUpdate, Keyring, OpenError, Opened, ReplayGuard, SealError, Trust,
        tags::{self, ContentId},
    },
    identity::Identity,
    keys::IdentityKey,
    proto::{self, limits, v1},
    reconcile::{IdSet, Role},
};

/// What processing one envelope yields: the verdict, the store operations
/// to commit, and the outputs to queue once they are durable.
type Step = (Verdict, Vec<StoreOp>, Vec<Output>);

/// How long a reconciliation round may stay unanswered before
/// [`Input::Resync`] abandons it and starts a new one.
pub const RESYNC_ROUND_TIMEOUT_SECS: u64 = 120;

/// Bytes of reconciliation frames one round may cost us with one peer: a
/// fixed part plus [`ROUND_BYTES_PER_ID`] per envelope we hold (an honest
/// round lists each ID at most once, at 32 bytes, plus about 4 bytes of
/// fingerprints per ID). Each link starts with one round's worth of credit,
/// which refills at one round's worth per [`ROUND_REFILL_SECS`]; a reply
/// the credit cannot pay for abandons the round and is counted in
/// [`Counters::sync_refused`]. A peer thus cannot make us describe our set
/// again and again: honest initiators resync once a minute.
pub const ROUND_BYTES_BASE: u64 = 16 * 1024;

/// See [`ROUND_BYTES_BASE`].
pub const ROUND_REFILL_SECS: u64 = 20;

/// Most declined IDs remembered (see `Engine::decline`): 2 MiB of IDs.
pub const MAX_DECLINED: usize = 64 * 1024;

/// Sync frames to one peer that may be unacknowledged before envelope
/// batches wait (see [`Input::FrameAcked`]). A batch is at most about
/// 1 MiB, so a link holds a few MiB of pushes in flight at most.
pub const PUSH_WINDOW: u32 = 4;

/// Receipts live [`EngineConfig::message_ttl_secs`] plus a random part of up
/// to this many seconds (one 6-hour tag epoch), so that a receipt's expiry
/// says nothing about the expiry of the message it answers.
pub const RECEIPT_EXPIRY_JITTER_SECS: u64 = 6 * 3600;

/// The largest spray budget a copy keeps (a larger one, which only a
/// misbehaving sender sets, is cut to this).
pub const MAX_COPY_BUDGET: u32 = 1024;

/// Peers remembered per wait-phase copy as already shown it (the oldest
/// is forgotten first: at worst it is shown again).
pub const MAX_SHOWN_PEERS: usize = 64;

/// See [`ROUND_BYTES_BASE`].
pub const ROUND_BYTES_PER_ID: u64 = 64;

/// A peer as the driver names it (a small handle the driver maps to its own
/// peer identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// The quota account of a peer's network source, chosen by the driver: the
/// node uses the remote address (one shared account for loopback, one per
/// relay for circuits); the simulator uses the node. Custody accounting per source survives reconnects, so a
/// peer that reconnects under a fresh PeerId does not get a fresh quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SourceId(pub u64);

/// How new messages are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every node that meets a carrier gets a copy (best delivery, most
    /// traffic). The default for small networks.
    Epidemic,
    /// Binary spray-and-wait: `copies` copies in total; carriers hand over
    /// half of their budget; the last copy waits for the recipient.
    SprayAndWait {
        /// Total copies, at least 2.
        copies: u32,
    },
    /// Only the sender carries the message, to the recipient in person.
    DirectOnly,
}

/// Storage quotas for envelopes in custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// All envelopes together, in encoded bytes.
    pub global_bytes: u64,
    /// Envelopes with one recipient tag.
    pub per_tag_bytes: u64,
    /// Envelopes received from one source ([`SourceId`]), across
    /// reconnects. When the global quota is full, a source below its fair
    /// share (global ÷ sources holding custody) may displace strangers'
    /// envelopes of the source holding the most.
    pub per_peer_bytes: u64,
}

/// Engine configuration; [`EngineConfig::default`] suits a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Routing of messages we send.
    pub strategy: Strategy,
    /// Lifetime of messages we send, in seconds.
    pub message_ttl_secs: u64,
    /// Hop limit of messages we send.
    pub hop_limit: u32,
    /// Longest lifetime accepted on others' envelopes, in seconds.
    pub max_ttl_secs: u64,
    /// Quotas for envelopes in custody.
    pub quotas: Quotas,
    /// Interval of the expiry sweeper, in seconds.
    pub sweep_interval_secs: u64,
    /// Whether recipients return receipts and publish delivery proofs
    /// (anti-packets). Off only for experiments (e.g. to compare with
    /// routing studies that have none).
    pub receipts: bool,
    /// How long we carry strangers' envelopes at most, whatever their
    /// expiry: junk with the longest lifetime peers accept cannot occupy
    /// the store for that long. Contacts' and our own mail is kept until
    /// it expires.
    pub stranger_custody_secs: u64,
    /// Delivery proofs a node learns (as recipient, as sender from a
    /// receipt, or from a peer) go to every peer in one batch after a
    /// random delay in this range (seconds), whoever learned them: an
    /// immediate, lone proof would mark its sender as the recipient.
    pub proof_delay_secs: (u64, u64),
    /// Receipts are sealed at once (durably) but released after a random
    /// delay in this range (seconds), batched per contact meanwhile, so a
    /// watcher cannot pair a message with its receipt by timing.
    pub receipt_delay_secs: (u64, u64),
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Epidemic,
            message_ttl_secs: 3 * 24 * 3600,
            hop_limit: 16,
            max_ttl_secs: 14 * 24 * 3600,
            quotas: Quotas {
                global_bytes: 64 * 1024 * 1024,
                per_tag_bytes: 2 * 1024 * 1024,
                per_peer_bytes: 16 * 1024 * 1024,
            },
            sweep_interval_secs: 60,
            receipts: true,
            stranger_custody_secs: 3 * 24 * 3600,
            proof_delay_secs: (30, 120),
            receipt_delay_secs: (30, 300),
        }
    }
}

/// What the engine asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Publish an encoded envelope on the gossip overlay.
    Publish {
        /// Its content ID (the gossip message ID).
        content_id: ContentId,
        /// The encoded envelope.
        bytes: Vec<u8>,
    },
    /// Send an encoded sync frame to one peer.
    SendFrame {
        /// The peer.
        peer: PeerId,
        /// The encoded frame.
        bytes: Vec<u8>,
    },
    /// Hand a received message to the app (exactly once).
    Deliver(Delivery),
    /// Tell the app something happened.
    Event(Event),
}

/// A message for the app.
pub struct Delivery {
    /// The sender.
    pub from: IdentityKey,
    /// The sender's message ID.
    pub message_id: MessageId,
    /// The sender's clock at sending (self-asserted).
    pub sent_at: u64,
    /// The application bytes.
    pub body: Vec<u8>,
    /// `true` if this message was already handed out before a restart but
    /// not acknowledged with [`Engine::ack_delivery`]: the app may have
    /// seen it, so it deduplicates by `message_id`.
    pub redelivery: bool,
}

impl Delivery {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56 + self.body.len());
        out.extend_from_slice(&self.from.to_bytes());
        out.extend_from_slice(&self.message_id.0);
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (from, rest) = bytes.split_first_chunk::<32>()?;
        let (message_id, rest) = rest.split_first_chunk::<16>()?;
        let (sent_at, body) = rest.split_first_chunk::<8>()?;
        Some(Self {
            from: IdentityKey::from_bytes(from).ok()?,
            message_id: MessageId(*message_id),
            sent_at: u64::from_be_bytes(*sent_at),
            body: body.to_vec(),
            redelivery: true,
        })
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Something the app should know.
#[derive(Debug)]
pub enum Event {
    /// A message we sent reached its recipient (end-to-end receipt).
    Delivered {
        /// Our message ID.
        message_id: MessageId,
    },
    /// A message we sent expired without a receipt.
    Expired {
        /// Our message ID.
        message_id: MessageId,
    },
    /// A message we sent left this device (see [`MessageStatus::Sent`]).
    Sent {
        /// Our message ID.
        message_id: MessageId,
    },
    /// A peer holds a message we sent (see [`MessageStatus::Carried`]).
    Carried {
        /// Our message ID.
        message_id: MessageId,
    },
    /// A message we sent failed for a reason other than
    /// [`Event::Unreadable`] (which keeps its own event).
    Failed {
        /// Our message ID.
        message_id: MessageId,
        /// Why.
        reason: FailReason,
    },
    /// Someone who has our card asks to become a contact.
    ContactRequest {
        /// Their card (signature verified, identity not).
        card: Box<ContactCard>,
        /// Their introduction.
        introduction: String,
        /// Our trust in this identity if it is already a contact.
        existing: Option<Trust>,
        /// Whether we know this identity with other encryption keys:
        /// accepting the card would be a key change.
        keys_changed: bool,
    },
    /// A message we sent is presumed unreadable: the session it was written
    /// in was dropped (too many newer sessions with the contact, or their
    /// keys changed) before its receipt came. Send it again if it matters;
    /// a receipt may still follow if the recipient had kept the session.
    Unreadable {
        /// Our message ID.
        message_id: MessageId,
    },
    /// A contact's keys changed; they are no longer verified.
    KeyChanged {
        /// The contact.
        contact: IdentityKey,
        /// Whether they were verified before.
        was_verified: bool,
    },
    /// An envelope was refused custody.
    Rejected {
        /// Its content ID.
        content_id: ContentId,
        /// Why.
        reason: RejectReason,
    },
}

/// Why an envelope was not taken into custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The global store quota is full of envelopes we may not evict.
    GlobalQuota,
    /// Too many bytes for one recipient tag.
    TagQuota,
    /// Too many bytes from one peer.
    PeerQuota,
}

/// The driver's input.
#[derive(Debug)]
pub enum Input<'a> {
    /// A direct link to a peer came up.
    PeerUp {
        /// The peer.
        peer: PeerId,
        /// Whether the peer is a known device of a contact (its envelopes
        /// get contact priority).
        trusted: bool,
        /// Whether we start reconciliation (exactly one side should).
        initiator: bool,
        /// The quota account the peer's envelopes are charged to.
        source: SourceId,
    },
    /// The link went down.
    PeerDown {
        /// The peer.
        peer: PeerId,
    },
    /// An encoded envelope arrived by gossip.
    Gossip {
        /// The peer that forwarded it.
        from: PeerId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// An encoded sync frame arrived on a direct link.
    Frame {
        /// The peer.
        from: PeerId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// Reconcile again with a connected peer (periodic anti-entropy on a
    /// long-lived link: gossip only repairs losses within its short
    /// window). Only the link's initiator starts a round; the other side
    /// ignores this.
    Resync {
        /// The peer.
        peer: PeerId,
    },
    /// The peer acknowledged one sync frame we sent it, or the transport
    /// gave up on it. Drivers report every frame's fate: envelope batches
    /// go out only while fewer than [`PUSH_WINDOW`] frames to the peer are
    /// unacknowledged, so a peer that asks for everything (or never
    /// acknowledges) costs one batch of memory at a time, not the store.
    FrameAcked {
        /// The peer.
        peer: PeerId,
    },
    /// [`Engine::poll_timeout`] was reached.
    Timeout,
}

/// The verdict on a gossip message, for the overlay's validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: propagate.
    Accept,
    /// Valid but not to propagate (duplicate, expired, wait-phase, …).
    Ignore,
    /// Invalid: drop and penalise the peer.
    Reject,
}

/// Engine failures. Peer misbehaviour is never an error (it is a
/// [`Verdict::Reject`]); these are local problems.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed; the operation did not take effect.
    #[error("store failure: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// The saved keyring could not be read (wrong key or corrupted).
    #[error("keyring state unreadable")]
    Keyring,
    /// A stored record could not be parsed.
    #[error("corrupted store record")]
    Corrupted,
}

/// Why [`Engine::send`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SendError {
    /// Sealing failed (unknown contact, payload too large, …).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The store failed; the message was not accepted.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The entries of a receipt not yet released, to re-seal with one more.
struct ReceiptBatch {
    envelope: ContentId,
    message_ids: Vec<Vec<u8>>,
    content_ids: Vec<Vec<u8>>,
    secrets: Vec<Vec<u8>>,
}

struct Held {
    custody: Custody,
    bytes: u64,
    expiry: u64,
    tag: [u8; 16],
    commitment: [u8; 16],
    copy_budget: u32,
    /// Where it came from (quota accounting); `None` for our own and for
    /// envelopes loaded at start.
    origin: Option<SourceId>,
    /// When the sweeper drops it: its expiry, or sooner for strangers'.
    keep_until: u64,
}

#[derive(Default)]
struct PeerState {
    trusted: bool,
    /// Its quota account.
    source: SourceId,
    /// Whether we started reconciliation on this link.
    initiator: bool,
    /// When our current reconciliation round started (initiator only;
    /// `None` once it completed).
    round_started: Option<u64>,
    /// Our messages in the set our current round started from (initiator
    /// only): those the peer does not list as missing, it says it holds.
    /// Only these IDs, not the whole set: a peer that never answers pins
    /// no more than our outbox.
    round_own: Vec<ContentId>,
    /// Reconciliation in progress (we are the initiator): what we learned.
    have: Vec<ContentId>,
    need: Vec<ContentId>,
    /// Initiator: we sent a reconciliation frame and accept exactly one
    /// answer to it. Anything else is unsolicited and ignored.
    awaiting_reply: bool,
    /// Responder: when the round we are answering opened (`None`: none is
    /// open; the next reconciliation frame opens one, if allowed).
    responder_round: Option<u64>,
    /// Bytes of reconciliation replies we may still send this peer
    /// (see [`ROUND_BYTES_BASE`]), and when that was last refilled.
    sync_credit: u64,
    credit_refilled_at: u64,
    /// Responder: IDs we listed to this peer in the current round. Only
    /// these may be asked for, each once.
    offered: HashSet<ContentId>,
    /// IDs handed to this peer on this link. Each goes at most once, so
    /// repeated asks neither multiply traffic nor split a spray budget
    /// twice.
    pushed: HashSet<ContentId>,
    /// IDs waiting to be sent, in priority order (batches are built one at
    /// a time, as the window allows).
    push_queue: VecDeque<ContentId>,
    /// Frames sent to this peer and not yet acknowledged.
    in_flight: u32,
    /// A reconciliation round with this peer completed (either role): it
    /// speaks the protocol, and may be handed copies unasked.
    reconciled: bool,
    /// Wait-phase copies shown to this peer in frames not yet acknowledged:
    /// if the link goes down first, they count as not shown.
    shown_unacked: Vec<ContentId>,
}

/// Counters for observability and the simulator.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Envelopes taken into custody from peers.
    pub stored: u64,
    /// Envelopes dropped at expiry.
    pub expired: u64,
    /// Envelopes refused custody by quota.
    pub rejected_quota: u64,
    /// Invalid envelopes or frames from peers: what any relay could have
    /// detected (structure, content ID, lifetime beyond the protocol's);
    /// these are penalised.
    pub invalid: u64,
    /// Envelopes bearing our tag that did not open (forged, corrupted,
    /// junk inside a valid outer layer). Counted, never penalised: the
    /// relays that forwarded them could not have known.
    pub unreadable: u64,
    /// Envelopes whose lifetime exceeds what we accept but not the
    /// protocol's limit: not carried, not penalised (another node may
    /// accept longer lifetimes, and clocks differ).
    pub too_long_lived: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Envelopes sent to peers in sync batches.
    pub sync_envelopes_sent: u64,
    /// Envelopes received in sync batches.
    pub sync_envelopes_received: u64,
    /// Bytes of sync frames sent.
    pub sync_bytes_sent: u64,
    /// Relay copies dropped because of a delivery proof.
    pub purged_by_receipt: u64,
    /// Messages delivered to the app.
    pub delivered: u64,
    /// Sync frames or requested IDs refused: reconciliation frames outside an
    /// open round, over the round's byte budget or too soon after the last
    /// round; asks for IDs we did not offer in the round or already gave.
    pub sync_refused: u64,
    /// Contact requests refused unopened by the rate limit
    /// ([`crate::crypto::MAX_REQUESTS_PER_WINDOW`]).
    pub requests_throttled: u64,
    /// Reconciliation rounds this node started (initiator) or answered
    /// (responder).
    pub sync_rounds: u64,
}

/// The engine. See the module documentation for the driving contract.
pub struct Engine<S: Store, R: CryptoRng> {
    config: EngineConfig,
    keyring: Keyring,
    state_key: [u8; 32],
    store: S,
    rng: R,
    held: HashMap<ContentId, Held>,
    /// The held IDs in order, and the reconciliation view built from them
    /// (rebuilt lazily after a change).
    held_sorted: std::collections::BTreeSet<ContentId>,
    id_set: Option<std::sync::Arc<IdSet>>,
    global_bytes: u64,
    tag_bytes: HashMap<[u8; 16], u64>,
    /// Bytes in custody per source; entries at zero are removed.
    source_bytes: HashMap<SourceId, u64>,
    seen: HashMap<ContentId, u64>,
    /// IDs we declined to carry (out of hops), until they expire: never
    /// asked for again. Bounded by [`MAX_DECLINED`].
    declined: HashMap<ContentId, u64>,
    delivered: HashMap<ContentId, ([u8; 16], u64)>,
    outbox: HashMap<ContentId, OutboxRecord>,
    /// Delivered to the app, not yet acknowledged: message ID → content ID.
    inbox: HashMap<MessageId, ContentId>,
    peers: BTreeMap<PeerId, PeerState>,
    outputs: VecDeque<Output>,
    next_sweep: u64,
    /// Proofs learned and not yet sent on, and when they go.
    pending_proofs: Vec<v1::DeliveryProof>,
    proof_flush_at: Option<u64>,
    /// Receipts sealed and stored but not yet released: when each goes.
    /// (release time, sequence number, envelope): the sequence number
    /// orders releases due together, so the order is the same in every
    /// run (content IDs are random in full-crypto runs).
    unreleased: HashMap<ContentId, (u64, u64, v1::Envelope)>,
    unreleased_seq: u64,
    /// The receipt still open for more entries, per contact.
    receipt_batches: HashMap<IdentityKey, ReceiptBatch>,
    /// Budgeted envelopes (spray-and-wait, direct) new here, to hand to the
    /// peers already connected at the next [`Input::Timeout`] (due at
    /// once): a message created or taken while links are up must not wait
    /// for the next link-up to be sprayed.
    pending_spray: Vec<(ContentId, Option<PeerId>)>,
    /// Wait-phase copies shown to a peer (see [`Engine::pump_pushes`]):
    /// never shown to the same peer twice. At most [`MAX_SHOWN_PEERS`]
    /// peers per copy are remembered.
    shown: HashMap<ContentId, Vec<PeerId>>,
    counters: Counters,
    /// The latest time the driver passed in (for status records made
    /// by calls that take no time).
    last_now: u64,
    /// The status of our messages in the outbox, as far as this run has
    /// read or written it (saves a store read per envelope and frame).
    known_status: HashMap<ContentId, MessageStatus>,
}

impl<S: Store, R: CryptoRng> std::fmt::Debug for Engine<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("held", &self.held.len())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn store_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> EngineError {
    EngineError::Store(Box::new(e))
}

/// A replay guard that reads the engine's in-memory view and collects the
/// insertions for the engine's next commit.
struct PendingGuard<'a> {
    seen: &'a HashMap<ContentId, u64>,
    inserted: Vec<(ContentId, u64)>,
}

impl ReplayGuard for PendingGuard<'_> {
    type Error = std::convert::Infallible;

    fn contains(&self, id: &ContentId, now: u64) -> Result<bool, Self::Error> {
        Ok(self.seen.get(id).is_some_and(|e| *e >= now))
    }

    fn insert(&mut self, id: ContentId, expiry: u64) -> Result<(), Self::Error> {
        self.inserted.push((id, expiry));
        Ok(())
    }

    fn purge_expired(&mut self, _now: u64) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<S: Store, R: CryptoRng> Engine<S, R> {
    /// Opens an engine on `store`. If the store holds a keyring it is loaded
    /// with `state_key`; otherwise `new_identity` creates one, saved at once.
    ///
    /// # Errors
    /// [`EngineError`] if the store fails or its keyring cannot be read.
    pub fn open(
        mut store: S,
        state_key: [u8; 32],
        new_identity: impl FnOnce(&mut R) -> Identity,
        config: EngineConfig,
        mut rng: R,
        now: u64,
    ) -> Result<Self, EngineError> {
        let loaded = store.load().map_err(store_err)?;
        let keyring = match &loaded.keyring {
            Some(state) => Keyring::import(state, &state_key).map_err(|_| EngineError::Keyring)?,
            None => {
                let keyring = Keyring::new(new_identity(&mut rng));
                store
                    .commit(vec![StoreOp::PutKeyring(
                        keyring.export(&state_key, &mut rng),
                    )])
                    .map_err(store_err)?;
                keyring
            }
        };
        let mut engine = Self {
            config,
            keyring,
            state_key,
            store,
            rng,
            held: HashMap::new(),
            held_sorted: std::collections::BTreeSet::new(),
            id_set: None,
            global_bytes: 0,
            tag_bytes: HashMap::new(),
            source_bytes: HashMap::new(),
            seen: loaded.seen.into_iter().collect(),
            declined: HashMap::new(),
            delivered: loaded.delivered.into_iter().collect(),
            outbox: HashMap::new(),
            inbox: HashMap::new(),
            peers: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_sweep: now,
            pending_proofs: Vec::new(),
            proof_flush_at: None,
            unreleased: HashMap::new(),
            unreleased_seq: 0,
            receipt_batches: HashMap::new(),
            pending_spray: Vec::new(),
            shown: HashMap::new(),
            counters: Counters::default(),
            last_now: now,
            known_status: HashMap::new(),
        };
        for (id, (custody, bytes)) in loaded.envelopes {
            let envelope =
                proto::decode::<v1::Envelope>(&bytes).map_err(|_| EngineError::Corrupted)?;
            let keep_until = engine.keep_until(&envelope, custody, now);
            engine.index(id, &envelope, custody, bytes.len(), None, keep_until);
        }
        for (id, record) in loaded.inbox {
            let delivery = Delivery::decode(&record).ok_or(EngineError::Corrupted)?;
            engine.inbox.insert(delivery.message_id, id);
            engine.outputs.push_back(Output::Deliver(delivery));
        }
        for (id, record) in loaded.outbox {
            let record = OutboxRecord::decode(&record).ok_or(EngineError::Corrupted)?;
            engine.outbox.insert(id, record);
        }
        Ok(engine)
    }

    /// The keyring (identity, contacts).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The keyring, to issue cards; call [`Engine::save_keyring`] after
    /// changing it.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// The store (for inspection, e.g. to restart from it in tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of envelopes in custody (own and others').
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Number of our own envelopes in custody: messages waiting for their
    /// receipt, receipts and contact requests we sent. `held_count()`
    /// minus this is what we carry for others.
    pub fn held_own_count(&self) -> usize {
        self.held
            .values()
            .filter(|h| h.custody == Custody::Own)
            .count()
    }

    /// Bytes of envelopes in custody.
    pub fn held_bytes(&self) -> u64 {
        self.global_bytes
    }

    /// Whether an envelope is in custody.
    pub fn holds(&self, id: &ContentId) -> bool {
        self.held.contains_key(id)
    }

    /// Acknowledges a delivered message: the app has stored or shown it, so
    /// it is not handed out again after a restart. Returns `false` if the
    /// message is unknown (or already acknowledged).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn ack_delivery(&mut self, message_id: &MessageId) -> Result<bool, EngineError> {
        let Some(id) = self.inbox.remove(message_id) else {
            return Ok(false);
        };
        self.store
            .commit(vec![StoreOp::RemoveInbox(id)])
            .map_err(store_err)?;
        Ok(true)
    }

    /// Queues every received message not yet acknowledged again, as
    /// [`Output::Deliver`] with `redelivery` set: for a driver whose app
    /// missed deliveries (a full event queue) and must catch up.
    ///
    /// # Errors
    /// [`EngineError`] if the store fails or a record is corrupted.
    pub fn redeliver_inbox(&mut self) -> Result<usize, EngineError> {
        let loaded = self.store.load().map_err(store_err)?;
        let mut count = 0;
        for (id, record) in loaded.inbox {
            let delivery = Delivery::decode(&record).ok_or(EngineError::Corrupted)?;
            if self.inbox.get(&delivery.message_id) == Some(&id) {
                self.outputs.push_back(Output::Deliver(delivery));
                count += 1;
            }
        }
        Ok(count)
    }

    /// Whether a received message is still waiting for the app's
    /// acknowledgement.
    pub fn is_unacknowledged(&self, message_id: &MessageId) -> bool {
        self.inbox.contains_key(message_id)
    }

    /// IDs of received messages not yet acknowledged by the app.
    pub fn inbox_message_ids(&self) -> Vec<MessageId> {
        self.inbox.keys().copied().collect()
    }

    /// IDs of our messages still waiting for a receipt.
    pub fn outbox_message_ids(&self) -> Vec<MessageId> {
        self.outbox
            .values()
            .map(|r| MessageId(r.message_id))
            .collect()
    }

    /// Number of our messages still waiting for a receipt.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The next output to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        let release = self.unreleased.values().map(|(t, ..)| *t).min();
        // Due at once (0: whatever the driver's clock says).
        let spray = (!self.pending_spray.is_empty()).then_some(0);
        [Some(self.next_sweep), self.proof_flush_at, release, spray]
            .into_iter()
            .flatten()
            .min()
    }

    fn keyring_op(&mut self) -> StoreOp {
        StoreOp::PutKeyring(self.keyring.export(&self.state_key, &mut self.rng))
    }

    /// Persists the keyring (after cards were issued through
    /// [`Engine::keyring_mut`]).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn save_keyring(&mut self) -> Result<(), EngineError> {
        let op = self.keyring_op();
        self.store.commit(vec![op]).map_err(store_err)
    }

    /// Commits conversation-history operations ([`StoreOp::PutHistory`],
    /// [`StoreOp::RemoveHistory`]) durably; other operations are ignored
    /// (they are the engine's own to make).
    ///
    /// # Errors
    /// [`EngineError::Store`]; then nothing was written.
    pub fn commit_history(&mut self, ops: Vec<StoreOp>) -> Result<(), EngineError> {
        let ops: Vec<StoreOp> = ops
            .into_iter()
            .filter(|op| {
                matches!(
                    op,
                    StoreOp::PutHistory { .. } | StoreOp::RemoveHistory { .. }
                )
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        // A deleted message's status goes with it: stop tracking it.
        let forgotten: HashSet<MessageId> = ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::RemoveHistory {
                    message_id,
                    outgoing: true,
                } => Some(*message_id),
                _ => None,
            })
            .collect();
        self.store.commit(ops).map_err(store_err)?;
        if !forgotten.is_empty() {
            let outbox = &self.outbox;
            self.known_status.retain(|id, _| {
                outbox
                    .get(id)
                    .is_none_or(|r| !forgotten.contains(&MessageId(r.message_id)))
            });
        }
        Ok(())
    }

    /// Marks a contact verified (the user compared safety numbers) and
    /// saves it. Returns `false` for an unknown contact.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn mark_verified(&mut self, contact: &IdentityKey) -> Result<bool, EngineError> {
        if !self.keyring.mark_verified(contact) {
            return Ok(false);
        }
        self.save_keyring()?;
        Ok(true)
    }

    /// Sets or clears the user's own name for a contact and saves it.
    /// Returns `false` for an unknown contact.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn set_nickname(
        &mut self,
        contact: &IdentityKey,
        nickname: Option<String>,
    ) -> Result<bool, EngineError> {
        if !self.keyring.set_nickname(contact, nickname) {
            return Ok(false);
        }
        self.save_keyring()?;
        Ok(true)
    }

    /// Removes a contact (see [`Keyring::remove_contact`]). Our messages
    /// to it still travel until they expire (they cannot be recalled), but
    /// their receipts can no longer be matched: they become
    /// `Failed(ContactRemoved)` now. Returns `false` for an unknown contact.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn remove_contact(&mut self, contact: &IdentityKey) -> Result<bool, EngineError> {
        if !self.keyring.remove_contact(contact) {
            return Ok(false);
        }
        let to = contact.to_bytes();
        let at = self.last_now;
        let mut ops = vec![self.keyring_op()];
        let mut events = Vec::new();
        let status = MessageStatus::Failed(FailReason::ContactRemoved);
        let theirs: Vec<(ContentId, MessageId)> = self
            .outbox
            .iter()
            .filter(|(_, r)| r.to == to)
            .map(|(id, r)| (*id, MessageId(r.message_id)))
            .collect();
        for (id, message_id) in theirs {
            if self.tracked(&id, &message_id) {
                ops.push(StoreOp::PutStatus {
                    message_id,
                    record: StatusRecord { status, at },
                });
                self.known_status.insert(id, status);
            }
            events.push(Output::Event(Event::Failed {
                message_id,
                reason: FailReason::ContactRemoved,
            }));
        }
        self.store.commit(ops).map_err(store_err)?;
        self.outputs.extend(events);
        Ok(true)
    }

    /// Gives up the engine and returns its store (to wipe it, or close it).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Adds or updates a contact; a key change is also raised as
    /// [`Event::KeyChanged`].
    ///
    /// # Errors
    /// [`SealError`] for unusable keys, [`EngineError`] if saving fails.
    pub fn add_contact(
        &mut self,
        card: ContactCard,
        trust: Trust,
    ) -> Result<ContactUpdate, SendError> {
        let contact = *card.identity_key();
        let update = self.keyring.add_contact(card, trust)?;
        let mut ops = vec![self.keyring_op()];
        let unreadable = self.unreadable_events(&mut ops);
        self.store.commit(ops).map_err(store_err)?;
        self.outputs.extend(unreadable);
        if let ContactUpdate::KeysChanged { was_verified } = update {
            self.outputs.push_back(Output::Event(Event::KeyChanged {
                contact,
                was_verified,
            }));
        }
        Ok(update)
    }

    fn new_envelope_budget(&self) -> u32 {
        match self.config.strategy {
            Strategy::Epidemic => 0,
            Strategy::SprayAndWait { copies } => copies.max(2),
            Strategy::DirectOnly => 1,
        }
    }

    /// Sends `body` to a contact. Returns once the message is durably in the
    /// outbox; it then travels until a receipt arrives or it expires.
    ///
    /// # Errors
    /// [`SendError`]; on error nothing was stored or sent.
    pub fn send(
        &mut self,
        to: &IdentityKey,
        body: &[u8],
        now: u64,
    ) -> Result<MessageId, SendError> {
        self.send_with_ttl(to, body, self.config.message_ttl_secs, now)
    }

    /// As [`Engine::send`], with this message's lifetime instead of
    /// [`EngineConfig::message_ttl_secs`] (capped at
    /// [`EngineConfig::max_ttl_secs`], the most any peer accepts).
    ///
    /// # Errors
    /// [`SendError`]; on error nothing was stored or sent.
    pub fn send_with_ttl(
        &mut self,
        to: &IdentityKey,
        body: &[u8],
        ttl_secs: u64,
        now: u64,
    ) -> Result<MessageId, SendError> {
        self.send_recorded(to, body, ttl_secs, now, |_| Vec::new())
    }

    /// As [`Engine::send_with_ttl`], with `extra(message_id)`'s operations
    /// (a history record) in the same atomic commit as the outbox entry:
    /// the message is in both or in neither.
    ///
    /// # Errors
    /// [`SendError`]; on error nothing was stored or sent.
    pub fn send_recorded(
        &mut self,
        to: &IdentityKey,
        body: &[u8],
        ttl_secs: u64,
        now: u64,
        extra: impl FnOnce(MessageId) -> Vec<StoreOp>,
    ) -> Result<MessageId, SendError> {
        self.last_now = self.last_now.max(now);
        let mut message_id = [0u8; 16];
        self.rng.fill_bytes(&mut message_id);
        let mut secret = [0u8; 16];
        self.rng.fill_bytes(&mut secret);
        let payload = v1::Payload {
            kind: Some(v1::payload::Kind::Text(v1::TextMessage {
                message_id: message_id.to_vec(),
                sent_at: now,
                body: body.to_vec(),
                delivery_secret: secret.to_vec(),
            })),
        };
        let expiry = now.saturating_add(ttl_secs.clamp(1, self.config.max_ttl_secs));
        let commitment = tags::delivery_commitment(&secret);
        let mut envelope =
            self.keyring
                .seal_with_commitment(to, &payload, expiry, commitment, &mut self.rng)?;
        envelope.hop_limit = self.config.hop_limit;
        envelope.copy_budget = self.new_envelope_budget();
        let id = tags::content_id_of(&envelope);
        let record = OutboxRecord {
            message_id,
            to: to.to_bytes(),
            secret,
            expiry: envelope.expiry,
        };
        let bytes = proto::encode(&envelope);
        let keyring = self.keyring_op();
        let mut ops = vec![
            StoreOp::PutEnvelope {
                id,
                custody: Custody::Own,
                bytes: bytes.clone(),
            },
            StoreOp::PutOutbox {
                id,
                record: record.encode(),
            },
            keyring,
            StoreOp::PutStatus {
                message_id: MessageId(message_id),
                record: StatusRecord {
                    status: MessageStatus::Queued,
                    at: now,
                },
            },
        ];
        ops.extend(extra(MessageId(message_id)));
        let unreadable = self.unreadable_events(&mut ops);
        self.store.commit(ops).map_err(store_err)?;
        self.index(
            id,
            &envelope,
            Custody::Own,
            bytes.len(),
            None,
            envelope.expiry,
        );
        self.outbox.insert(id, record);
        self.known_status.insert(id, MessageStatus::Queued);
        self.announce_own(id, envelope.copy_budget, bytes);
        self.outputs.extend(unreadable);
        Ok(MessageId(message_id))
    }

    /// Seals a first-contact request to someone whose card we hold (added
    /// with [`Engine::add_contact`]), carrying `our_card`.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn send_contact_request(
        &mut self,
        to: &IdentityKey,
        our_card: &ContactCard,
        introduction: &str,
        now: u64,
    ) -> Result<ContentId, SendError> {
        let expiry = now.saturating_add(self.config.message_ttl_secs);
        let mut envelope =
            self.keyring
                .seal_contact_request(to, our_card, introduction, expiry, &mut self.rng)?;
        envelope.hop_limit = self.config.hop_limit;
        self.store_own(envelope, vec![])
    }

    fn store_own(
        &mut self,
        envelope: v1::Envelope,
        mut ops: Vec<StoreOp>,
    ) -> Result<ContentId, SendError> {
        let id = tags::content_id_of(&envelope);
        let bytes = proto::encode(&envelope);
        ops.push(StoreOp::PutEnvelope {
            id,
            custody: Custody::Own,
            bytes: bytes.clone(),
        });
        ops.push(self.keyring_op());
        self.store.commit(ops).map_err(store_err)?;
        self.index(
            id,
            &envelope,
            Custody::Own,
            bytes.len(),
            None,
            envelope.expiry,
        );
        self.announce_own(id, envelope.copy_budget, bytes);
        Ok(id)
    }

    fn index(
        &mut self,
        id: ContentId,
        envelope: &v1::Envelope,
        custody: Custody,
        len: usize,
        origin: Option<SourceId>,
        keep_until: u64,
    ) {
        let mut tag = [0u8; 16];
        tag.copy_from_slice(envelope.recipient_tag.get(..16).unwrap_or(&[0; 16]));
        let mut commitment = [0u8; 16];
        commitment.copy_from_slice(envelope.delivery_commitment.get(..16).unwrap_or(&[0; 16]));
        let bytes = len as u64;
        self.global_bytes += bytes;
        *self.tag_bytes.entry(tag).or_default() += bytes;
        if let Some(source) = origin {
            *self.source_bytes.entry(source).or_default() += bytes;
        }
        self.held_sorted.insert(id);
        self.id_set = None;
        self.held.insert(
            id,
            Held {
                custody,
                bytes,
                expiry: envelope.expiry,
                tag,
                commitment,
                copy_budget: envelope.copy_budget,
                origin,
                keep_until,
            },
        );
    }

    /// When the sweeper drops an envelope taken into custody at `now`.
    fn keep_until(&self, envelope: &v1::Envelope, custody: Custody, now: u64) -> u64 {
        match custody {
            Custody::Stranger => envelope
                .expiry
                .min(now.saturating_add(self.config.stranger_custody_secs)),
            Custody::Own | Custody::Contact => envelope.expiry,
        }
    }

    fn unindex(&mut self, id: &ContentId) -> Option<Held> {
        let held = self.held.remove(id)?;
        self.held_sorted.remove(id);
        self.shown.remove(id);
        self.id_set = None;
        self.global_bytes = self.global_bytes.saturating_sub(held.bytes);
        if let Some(t) = self.tag_bytes.get_mut(&held.tag) {
            *t = t.saturating_sub(held.bytes);
            if *t == 0 {
                self.tag_bytes.remove(&held.tag);
            }
        }
        if let Some(source) = held.origin
            && let Some(b) = self.source_bytes.get_mut(&source)
        {
            *b = b.saturating_sub(held.bytes);
            if *b == 0 {
                self.source_bytes.remove(&source);
            }
        }
        Some(held)
    }

    /// Feeds one input.
    ///
    /// # Errors
    /// [`EngineError`] only for local failures (the store); a misbehaving
    /// peer yields [`Verdict::Reject`].
    pub fn handle(&mut self, input: Input<'_>, now: u64) -> Result<Verdict, EngineError> {
        self.last_now = self.last_now.max(now);
        match input {
            Input::PeerUp {
                peer,
                trusted,
                initiator,
                source,
            } => {
                self.peers.insert(
                    peer,
                    PeerState {
                        trusted,
                        initiator,
                        source,
                        sync_credit: self.round_budget(),
                        credit_refilled_at: now,
                        ..PeerState::default()
                    },
                );
                self.send_proofs(peer);
                if initiator {
                    self.open_round(peer, now);
                }
                Ok(Verdict::Accept)
            }
            Input::PeerDown { peer } => {
                if let Some(state) = self.peers.remove(&peer) {
                    // Shown in frames that may not have arrived: not shown.
                    for id in state.shown_unacked {
                        if let Some(shown) = self.shown.get_mut(&id) {
                            shown.retain(|p| *p != peer);
                        }
                    }
                }
                Ok(Verdict::Accept)
            }
            Input::Gossip { from, bytes } => {
                let trusted = self.peers.get(&from).is_some_and(|p| p.trusted);
                let (verdict, ops, after) = self.ingest(bytes, Some(from), trusted, true, now)?;
                self.finish(ops, after)?;
                Ok(verdict)
            }
            Input::Frame { from, bytes } => self.handle_frame(from, bytes, now),
            Input::FrameAcked { peer } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.in_flight = state.in_flight.saturating_sub(1);
                    if state.in_flight == 0 {
                        state.shown_unacked.clear();
                    }
                }
                self.pump_pushes(peer)?;
                Ok(Verdict::Accept)
            }
            Input::Resync { peer } => {
                let Some(state) = self.peers.get_mut(&peer) else {
                    return Ok(Verdict::Ignore);
                };
                if !state.initiator {
                    return Ok(Verdict::Ignore);
                }
                // A round still in progress is left to finish: a second one
                // would push the same envelopes again. A round silent for
                // longer than `RESYNC_ROUND_TIMEOUT_SECS` (a lost frame) is
                // abandoned and restarted.
                if state
                    .round_started
                    .is_some_and(|t| now.saturating_sub(t) < RESYNC_ROUND_TIMEOUT_SECS)
                {
                    return Ok(Verdict::Ignore);
                }
                self.open_round(peer, now);
                Ok(Verdict::Accept)
            }
            Input::Timeout => {
                if self.proof_flush_at.is_some_and(|t| now >= t) {
                    self.flush_proofs()?;
                }
                self.release_receipts(now);
                self.spray_pending()?;
                if now >= self.next_sweep {
                    self.sweep(now)?;
                    self.next_sweep = now.saturating_add(self.config.sweep_interval_secs);
                }
                Ok(Verdict::Accept)
            }
        }
    }

    /// Opens a reconciliation round as the link's initiator.
    fn open_round(&mut self, peer: PeerId, now: u64) {
        let set = self.id_set();
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.round_started = Some(now);
        state.awaiting_reply = true;
        self.counters.sync_rounds += 1;
        state.have.clear();
        state.need.clear();
        state.round_own = self
            .outbox
            .keys()
            .filter(|id| set.ids().binary_search(id).is_ok())
            .copied()
            .collect();
        self.send_frame(peer, v1::sync_frame::Kind::Reconcile(set.initiate()));
    }

    /// What one reconciliation round may cost (see [`ROUND_BYTES_BASE`]).
    fn round_budget(&self) -> u64 {
        ROUND_BYTES_BASE + ROUND_BYTES_PER_ID * self.held.len() as u64
    }

    /// The reconciliation view of what we hold (cached until it changes).
    fn id_set(&mut self) -> std::sync::Arc<IdSet> {
        if let Some(set) = &self.id_set {
            return set.clone();
        }
        let set = std::sync::Arc::new(IdSet::from_sorted_unique(
            self.held_sorted.iter().copied().collect(),
        ));
        self.id_set = Some(set.clone());
        set
    }

    fn send_frame(&mut self, peer: PeerId, kind: v1::sync_frame::Kind) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight = state.in_flight.saturating_add(1);
        }
        let frame = v1::SyncFrame {
            version: limits::WIRE_VERSION,
            kind: Some(kind),
        };
        let bytes = proto::encode(&frame);
        self.counters.sync_bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::SendFrame { peer, bytes });
    }

    /// Publishes our own new envelope by gossip (epidemic), or queues it
    /// to be handed to connected peers through sync (budgeted copies never
    /// travel by gossip: peers would not store them, so gossip would only
    /// show them to direct neighbours, and again on every publish).
    fn announce_own(&mut self, id: ContentId, copy_budget: u32, bytes: Vec<u8>) {
        if copy_budget == 0 {
            self.outputs.push_back(Output::Publish {
                content_id: id,
                bytes,
            });
        } else {
            self.pending_spray.push((id, None));
        }
    }

    /// Hands the budgeted envelopes queued in `pending_spray` to every
    /// connected peer, in peer order: the first gets half the budget, the
    /// next half of the rest, and once one copy is left it is shown to the
    /// remaining peers (see [`Engine::pump_pushes`]).
    fn spray_pending(&mut self) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.pending_spray);
        if pending.is_empty() {
            return Ok(());
        }
        // Only peers that have completed a reconciliation round with us:
        // they speak the protocol (a budget handed to anything else is
        // lost). In a random order per batch, so that no peer (the oldest
        // connection, say) is always first and gets half of every budget.
        let mut peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.reconciled)
            .map(|(id, _)| *id)
            .collect();
        for i in (1..peers.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            peers.swap(i, j);
        }
        for peer in peers {
            let ids: Vec<ContentId> = pending
                .iter()
                .filter(|(_, from)| *from != Some(peer))
                .map(|(id, _)| *id)
                .collect();
            if let Err(error) = self.push_envelopes(peer, &ids) {
                // Kept for the next timeout.
                self.pending_spray.extend(pending);
                return Err(error);
            }
        }
        Ok(())
    }

    fn send_proofs(&mut self, peer: PeerId) {
        // Only proofs already sent on: one still waiting for its delay would
        // show a fresh link what we learned first.
        let pending: HashSet<&[u8]> = self
            .pending_proofs
            .iter()
            .map(|p| p.content_id.as_slice())
            .collect();
        let proofs: Vec<v1::DeliveryProof> = self
            .delivered
            .iter()
            .filter(|(id, _)| !pending.contains(id.as_slice()))
            .map(|(id, (secret, expiry))| v1::DeliveryProof {
                content_id: id.to_vec(),
                secret: secret.to_vec(),
                expiry: *expiry,
            })
            .collect();
        for chunk in proofs.chunks(limits::MAX_IDS_PER_FRAME) {
            self.send_frame(
                peer,
                v1::sync_frame::Kind::Delivered(v1::DeliveredIds {
                    proofs: chunk.to_vec(),
                }),
            );
        }
    }

    /// Commits `ops`, then queues the outputs that depend on them.
    fn finish(&mut self, ops: Vec<StoreOp>, after: Vec<Output>) -> Result<(), EngineError> {
        if !ops.is_empty() {
            self.store.commit(ops).map_err(store_err)?;
        }
        self.outputs.extend(after);
        Ok(())
    }

    /// Validates and processes one envelope from a peer. Returns the verdict,
    /// the store operations to commit, and the outputs to queue after them.
    fn ingest(
        &mut self,
        bytes: &[u8],
        from: Option<PeerId>,
        trusted: bool,
        via_gossip: bool,
        now: u64,
    ) -> Result<Step, EngineError> {
        let mut ops = Vec::new();
        let mut after = Vec::new();
        // Cheapest checks first: size and structure, then ID, then expiry.
        let Ok(envelope) = proto::decode::<v1::Envelope>(bytes) else {
            self.counters.invalid += 1;
            return Ok((Verdict::Reject, ops, after));
        };
        // An ID we already know needs no hashing: whatever the rest of the
        // envelope says, we hold (or opened, or know delivered) the one
        // that really has this ID, so this copy is ignored either way.
        if let Ok(claimed) = ContentId::try_from(envelope.content_id.as_slice())
            && self.known(&claimed)
        {
            self.counters.duplicates += 1;
            return Ok((Verdict::Ignore, ops, after));
        }
        let id = tags::content_id_of(&envelope);
        if envelope.content_id.as_slice() != id {
            self.counters.invalid += 1;
            return Ok((Verdict::Reject, ops, after));
        }
        if envelope.expiry
            > now.saturating_add(limits::MAX_LIFETIME_SECS + limits::MAX_CLOCK_SKEW_SECS)
        {
            // No node accepts this: whoever forwarded it broke the protocol.
            self.counters.invalid += 1;
            return Ok((Verdict::Reject, ops, after));
        }
        if envelope.expiry > now.saturating_add(self.config.max_ttl_secs) {
            // Longer than we carry, within what others may: not penalised.
            self.counters.too_long_lived += 1;
            return Ok((Verdict::Ignore, ops, after));
        }
        if envelope.expiry <= now {
            return Ok((Verdict::Ignore, ops, after));
        }
        if self.known(&id) {
            self.counters.duplicates += 1;
            return Ok((Verdict::Ignore, ops, after));
        }
        if self
            .keyring
            .is_for_us(&envelope.recipient_tag, envelope.expiry)
        {
            // The verdict is what a relay would give (Accept only for what
            // it would store and spread): a recipient that alone passes on
            // wait-phase or out-of-hops copies would name itself.
            let relay_would_spread = envelope.hop_limit > 1 && envelope.copy_budget == 0;
            // What a relay would keep (see below), the recipient keeps too,
            // and sprays on as a relay would: carriers comparing sets, and
            // watchers of its links, see a relay.
            let keep = (envelope.hop_limit > 1 && !(via_gossip && envelope.copy_budget != 0))
                .then_some(from);
            let (verdict, ops, after) = self.receive(envelope, id, keep, now)?;
            let verdict = match verdict {
                Verdict::Accept if !relay_would_spread => Verdict::Ignore,
                v => v,
            };
            return Ok((verdict, ops, after));
        }
        // Not ours: custody by routing rules and quotas.
        if envelope.hop_limit <= 1 {
            // Out of hops. Remembered, so we stop asking for it as the
            // recipient (who opened it) does: a relay asking again every
            // round while the recipient does not would name it.
            self.decline(id, envelope.expiry);
            return Ok((Verdict::Ignore, ops, after));
        }
        if via_gossip && envelope.copy_budget != 0 {
            // Budgeted copies change hands only through sync, which splits
            // the budget; by gossip they may only reach the recipient.
            // Remembered like any declined copy, so we do not ask for it
            // again (the recipient, who opened it, does not either).
            self.decline(id, envelope.expiry);
            return Ok((Verdict::Ignore, ops, after));
        }
        let custody = if trusted {
            Custody::Contact
        } else {
            Custody::Stranger
        };
        let mut stored = envelope;
        stored.hop_limit -= 1;
        stored.copy_budget = stored.copy_budget.min(MAX_COPY_BUDGET);
        let encoded = proto::encode(&stored);
        let len = encoded.len() as u64;
        if let Some(reason) = self.quota_check(&stored, custody, from, len, &mut ops) {
            self.counters.rejected_quota += 1;
            after.push(Output::Event(Event::Rejected {
                content_id: id,
                reason,
            }));
            return Ok((Verdict::Ignore, ops, after));
        }
        ops.push(StoreOp::PutEnvelope {
            id,
            custody,
            bytes: encoded.clone(),
        });
        let source = from.and_then(|p| self.peers.get(&p)).map(|p| p.source);
        let keep_until = self.keep_until(&stored, custody, now);
        self.index(id, &stored, custody, encoded.len(), source, keep_until);
        self.counters.stored += 1;
        let verdict = if stored.copy_budget == 0 {
            Verdict::Accept
        } else {
            // A budget to split, handed to us: on to our other peers now
            // (the one it came from holds its half already); at most about
            // log2(budget) peers get a copy. A wait-phase copy (budget 1)
            // is shown only through reconciliation, to peers that ask.
            if stored.copy_budget >= 2 {
                self.pending_spray.push((id, from));
            }
            Verdict::Ignore
        };
        Ok((verdict, ops, after))
    }

    /// `None` if there is room (evicting strangers' envelopes into `ops` if
    /// needed and allowed), else the reason.
    fn quota_check(
        &mut self,
        envelope: &v1::Envelope,
        custody: Custody,
        from: Option<PeerId>,
        len: u64,
        ops: &mut Vec<StoreOp>,
    ) -> Option<RejectReason> {
        let q = self.config.quotas;
        let tag: [u8; 16] = envelope
            .recipient_tag
            .as_slice()
            .try_into()
            .unwrap_or([0; 16]);
        let source = from.and_then(|p| self.peers.get(&p)).map(|p| p.source);
        let used = source
            .and_then(|s| self.source_bytes.get(&s))
            .copied()
            .unwrap_or(0);
        if source.is_some() && used + len > q.per_peer_bytes {
            return Some(RejectReason::PeerQuota);
        }
        let tag_used = self.tag_bytes.get(&tag).copied().unwrap_or(0);
        if tag_used + len > q.per_tag_bytes {
            // Anyone who saw a tag can fill its quota with junk; the tag's
            // honest mail must still get in. Same rule as for the whole
            // store, within the tag.
            let Some(victims) = self.fair_share_victims(
                |h| h.tag == tag,
                custody,
                source,
                len,
                tag_used + len - q.per_tag_bytes,
                q.per_tag_bytes,
            ) else {
                return Some(RejectReason::TagQuota);
            };
            self.evict(victims, ops);
            if self.tag_bytes.get(&tag).copied().unwrap_or(0) + len > q.per_tag_bytes {
                return Some(RejectReason::TagQuota);
            }
        }
        if self.global_bytes + len <= q.global_bytes {
            return None;
        }
        // The store is full. Our own and contacts' mail may displace any
        // stranger's. A stranger's envelope may displace only envelopes of
        // sources holding more than its own source would after taking it,
        // and only while its source stays within a fair share: one source
        // cannot fill the store and keep it against everyone else.
        let need = self.global_bytes + len - q.global_bytes;
        let Some(victims) =
            self.fair_share_victims(|_| true, custody, source, len, need, q.global_bytes)
        else {
            return Some(RejectReason::GlobalQuota);
        };
        self.evict(victims, ops);
        None
    }

    /// Strangers' envelopes (among those `within` selects) to displace so
    /// that `need` bytes are freed for an envelope of `len` bytes from
    /// `source` in custody `custody`, or `None` if fairness forbids it. Own
    /// and contacts' mail may displace any stranger's; a stranger's only
    /// envelopes of sources holding more (within the selection) than its
    /// own would after taking it, and only while its source holds at most
    /// a fair share of `limit` (`limit` ÷ sources holding any). Largest
    /// sources first, soonest expiry first within a source.
    fn fair_share_victims(
        &self,
        within: impl Fn(&Held) -> bool,
        custody: Custody,
        source: Option<SourceId>,
        len: u64,
        need: u64,
        limit: u64,
    ) -> Option<Vec<ContentId>> {
        let mut usage: HashMap<Option<SourceId>, u64> = HashMap::new();
        for h in self.held.values().filter(|h| within(h)) {
            *usage.entry(h.origin).or_default() += h.bytes;
        }
        let cap = if custody == Custody::Stranger {
            let source = source?;
            let mine = usage.get(&Some(source)).copied().unwrap_or(0);
            let known = usage.keys().filter(|k| k.is_some()).count() as u64;
            let sources = known + u64::from(!usage.contains_key(&Some(source)));
            if mine + len > limit / sources.max(1) {
                return None;
            }
            Some(mine + len)
        } else {
            None
        };
        // Loaded at start, source unknown: displaced first.
        let weight = |origin: Option<SourceId>| match origin {
            None => u64::MAX,
            Some(_) => usage.get(&origin).copied().unwrap_or(0),
        };
        let mut candidates: Vec<(std::cmp::Reverse<u64>, u64, ContentId, u64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.custody == Custody::Stranger && within(h))
            .map(|(id, h)| (std::cmp::Reverse(weight(h.origin)), h.expiry, *id, h.bytes))
            .filter(|(std::cmp::Reverse(u), ..)| cap.is_none_or(|c| *u > c))
            .collect();
        candidates.sort_unstable();
        let mut freed = 0u64;
        let mut victims = Vec::new();
        for (.., id, bytes) in candidates {
            if freed >= need {
                break;
            }
            freed += bytes;
            victims.push(id);
        }
        (freed >= need).then_some(victims)
    }

    fn evict(&mut self, victims: Vec<ContentId>, ops: &mut Vec<StoreOp>) {
        for id in victims {
            self.unindex(&id);
            ops.push(StoreOp::RemoveEnvelope(id));
        }
    }

    /// An envelope addressed to us.
    fn receive(
        &mut self,
        envelope: v1::Envelope,
        id: ContentId,
        keep: Option<Option<PeerId>>,
        now: u64,
    ) -> Result<Step, EngineError> {
        let mut ops = Vec::new();
        let mut after = Vec::new();
        let mut guard = PendingGuard {
            seen: &self.seen,
            inserted: Vec::new(),
        };
        let opened = self.keyring.open(&envelope, now, &mut guard);
        let inserted = guard.inserted;
        let opened = match opened {
            Ok(o) => o,
            Err(OpenError::Duplicate | OpenError::Expired | OpenError::NotForUs) => {
                return Ok((Verdict::Ignore, ops, after));
            }
            Err(OpenError::Throttled) => {
                // Not recorded as seen: a peer offers it again later.
                self.counters.requests_throttled += 1;
                return Ok((Verdict::Ignore, ops, after));
            }
            Err(_) => {
                // Anyone holding our card can make an envelope every relay
                // accepts and only we cannot open. Penalising it would
                // punish the honest relays that forwarded it (and, through
                // gossip scoring, every peer that sent a duplicate), so it
                // is counted and dropped, never reported invalid.
                self.counters.unreadable += 1;
                return Ok((Verdict::Ignore, ops, after));
            }
        };
        for (seen_id, expiry) in inserted {
            self.seen.insert(seen_id, expiry);
            ops.push(StoreOp::PutSeen {
                id: seen_id,
                expiry,
            });
        }
        match opened {
            Opened::Message { from, payload, .. } => match payload.kind {
                Some(v1::payload::Kind::Text(text)) => {
                    let mut message_id = MessageId::default();
                    message_id
                        .0
                        .copy_from_slice(text.message_id.get(..16).unwrap_or(&[0; 16]));
                    // The app gets it first (durably, in the inbox until it
                    // acknowledges), then the receipt goes out.
                    let delivery = Delivery {
                        from,
                        message_id,
                        sent_at: text.sent_at,
                        body: text.body,
                        redelivery: false,
                    };
                    ops.push(StoreOp::PutInbox {
                        id,
                        record: delivery.encode(),
                    });
                    self.inbox.insert(message_id, id);
                    self.counters.delivered += 1;
                    after.push(Output::Deliver(delivery));
                    if self.config.receipts
                        && let Ok(secret) = <[u8; 16]>::try_from(text.delivery_secret.as_slice())
                        && tags::proves_delivery(&envelope.delivery_commitment, &secret)
                    {
                        // The proof goes out with the next batch, as any
                        // relay's would; the receipt after its own delay.
                        self.keep_received(&envelope, id, keep, &mut ops);
                        self.learn_proof(id, secret, envelope.expiry, now, &mut ops);
                        self.queue_receipt(from, message_id, id, secret, now, &mut ops);
                    }
                }
                Some(v1::payload::Kind::Receipt(receipt)) => {
                    self.apply_receipt(&receipt, now, &mut ops, &mut after);
                    // The receipt's own secret: relays may drop it now.
                    if let Ok(secret) = <[u8; 16]>::try_from(receipt.receipt_secret.as_slice())
                        && tags::proves_delivery(&envelope.delivery_commitment, &secret)
                    {
                        self.keep_received(&envelope, id, keep, &mut ops);
                        self.learn_proof(id, secret, envelope.expiry, now, &mut ops);
                    }
                }
                _ => {}
            },
            Opened::ContactRequest {
                card,
                introduction,
                existing,
                keys_changed,
                ..
            } => {
                after.push(Output::Event(Event::ContactRequest {
                    card,
                    introduction,
                    existing,
                    keys_changed,
                }));
                // Opening a request changes no keyring state: nothing to
                // export (a whole-keyring write per request would let
                // strangers make us write at will).
                return Ok((Verdict::Accept, ops, after));
            }
        }
        self.send_top_ups(now, &mut ops);
        after.extend(self.unreadable_events(&mut ops));
        ops.push(self.keyring_op());
        // Envelopes for us are propagated like any other, so that who stops
        // forwarding does not reveal who the recipient is.
        Ok((Verdict::Accept, ops, after))
    }

    /// Seals the prekey top-ups the keyring owes contacts that started a
    /// session with us (see [`Keyring::take_top_ups_due`]): their next
    /// sessions then start from one-time keys, not the fallback key.
    fn send_top_ups(&mut self, now: u64, ops: &mut Vec<StoreOp>) {
        let expiry = now.saturating_add(self.config.message_ttl_secs);
        for (to, payload) in self.keyring.take_top_ups_due() {
            let Ok(mut envelope) = self.keyring.seal(&to, &payload, expiry, &mut self.rng) else {
                continue;
            };
            envelope.hop_limit = self.config.hop_limit;
            envelope.copy_budget = self.new_envelope_budget();
            let id = tags::content_id_of(&envelope);
            let bytes = proto::encode(&envelope);
            ops.push(StoreOp::PutEnvelope {
                id,
                custody: Custody::Own,
                bytes,
            });
            // Released after a delay, like receipts: a key top-up going
            // out the moment a first message arrived would name its
            // recipient.
            let release_at = now.saturating_add(self.random_delay(self.config.receipt_delay_secs));
            self.unreleased_seq += 1;
            self.unreleased
                .insert(id, (release_at, self.unreleased_seq, envelope));
        }
        self.release_receipts(now);
    }

    /// Events for our unacknowledged messages whose session the keyring
    /// dropped (see [`Keyring::take_dropped`]).
    /// Their `Failed(Unreadable)` statuses go into `ops`.
    fn unreadable_events(&mut self, ops: &mut Vec<StoreOp>) -> Vec<Output> {
        let at = self.last_now;
        let status = MessageStatus::Failed(FailReason::Unreadable);
        let mut events = Vec::new();
        for id in self.keyring.take_dropped() {
            let Some(record) = self.outbox.get(&id) else {
                continue;
            };
            let message_id = MessageId(record.message_id);
            if self.tracked(&id, &message_id) {
                ops.push(StoreOp::PutStatus {
                    message_id,
                    record: StatusRecord { status, at },
                });
                self.known_status.insert(id, status);
            }
            events.push(Output::Event(Event::Unreadable { message_id }));
        }
        events
    }

    /// The message ID of our message carried by envelope `id`, if it is
    /// still waiting for its receipt.
    pub fn own_message(&self, id: &ContentId) -> Option<MessageId> {
        self.outbox.get(id).map(|r| MessageId(r.message_id))
    }

    /// The envelope carrying our message `message_id`, if it is still
    /// waiting for its receipt (a scan of the outbox: for tools such as the
    /// simulator, not for hot paths).
    pub fn own_envelope(&self, message_id: &MessageId) -> Option<ContentId> {
        self.outbox
            .iter()
            .find(|(_, r)| r.message_id == message_id.0)
            .map(|(id, _)| *id)
    }

    /// Our message status of `message_id`, as stored.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn message_status(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<StatusRecord>, EngineError> {
        self.store.status(message_id).map_err(store_err)
    }

    /// Records that our envelope `id` left this device (the driver
    /// published it to at least one gossip peer, or it went into a bundle):
    /// its message becomes `Sent` (once; never backwards) and
    /// [`Event::Sent`] follows.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn mark_sent(&mut self, id: &ContentId, now: u64) -> Result<(), EngineError> {
        self.advance_status(id, MessageStatus::Sent, now)
    }

    /// Whether our message still has a status record (the app may have
    /// deleted it with its history entry: then none is written again).
    fn tracked(&self, id: &ContentId, message_id: &MessageId) -> bool {
        self.known_status.contains_key(id) || self.store.status(message_id).ok().flatten().is_some()
    }

    /// Moves our message in envelope `id` forward to `status` (if it is
    /// ours, still in the outbox, and `status` is ahead of its current
    /// one) and emits the matching event. Sent and Carried are written
    /// without waiting for the disk (see `ferry-store`): a crash may show
    /// an earlier status, never a later one.
    fn advance_status(
        &mut self,
        id: &ContentId,
        status: MessageStatus,
        now: u64,
    ) -> Result<(), EngineError> {
        let Some(message_id) = self.own_message(id) else {
            return Ok(());
        };
        let current = match self.known_status.get(id) {
            Some(current) => *current,
            // A message whose status record is gone (deleted from the
            // history by the app) is not tracked again.
            None => match self.store.status(&message_id).map_err(store_err)? {
                Some(record) => record.status,
                None => return Ok(()),
            },
        };
        self.known_status.insert(*id, current);
        if !current.may_become(status) {
            return Ok(());
        }
        self.store
            .commit(vec![StoreOp::PutStatus {
                message_id,
                record: StatusRecord { status, at: now },
            }])
            .map_err(store_err)?;
        self.known_status.insert(*id, status);
        let event = match status {
            MessageStatus::Carried => Event::Carried { message_id },
            _ => Event::Sent { message_id },
        };
        self.outputs.push_back(Output::Event(event));
        Ok(())
    }

    /// Keeps an envelope we opened as a relay would keep it, until its
    /// proof goes out with our next batch (a relay learning the proof drops
    /// its copy then too), so our reconciliation set looks like a relay's:
    /// a recipient whose set lacks what every relay holds would stand out.
    /// Only envelopes whose proof we are about to publish are kept: the
    /// copy lives one proof delay, so it needs no quota (kept without a
    /// proof, a card holder's requests could fill the store past it).
    /// Keeps a copy of an envelope addressed to us as a relay would keep
    /// it (`keep`: `Some(the peer it came from)` when a relay would), with
    /// its spray budget, handed on as a relay hands it on.
    fn keep_received(
        &mut self,
        envelope: &v1::Envelope,
        id: ContentId,
        keep: Option<Option<PeerId>>,
        ops: &mut Vec<StoreOp>,
    ) {
        let Some(from) = keep else {
            return;
        };
        if envelope.hop_limit <= 1 || self.held.contains_key(&id) {
            return;
        }
        let mut kept = envelope.clone();
        kept.hop_limit -= 1;
        kept.copy_budget = kept.copy_budget.min(MAX_COPY_BUDGET);
        if kept.copy_budget >= 2 {
            self.pending_spray.push((id, from));
        }
        let bytes = proto::encode(&kept);
        ops.push(StoreOp::PutEnvelope {
            id,
            custody: Custody::Contact,
            bytes: bytes.clone(),
        });
        self.index(id, &kept, Custody::Contact, bytes.len(), None, kept.expiry);
    }

    fn apply_receipt(
        &mut self,
        receipt: &v1::DeliveryReceipt,
        now: u64,
        ops: &mut Vec<StoreOp>,
        after: &mut Vec<Output>,
    ) {
        for (cid, secret) in receipt.content_ids.iter().zip(&receipt.delivery_secrets) {
            let Ok(cid) = ContentId::try_from(cid.as_slice()) else {
                continue;
            };
            let Ok(secret) = <[u8; 16]>::try_from(secret.as_slice()) else {
                continue;
            };
            let Some(record) = self.outbox.get(&cid) else {
                continue;
            };
            if tags::delivery_commitment(&secret) != tags::delivery_commitment(&record.secret) {
                continue;
            }
            let message_id = MessageId(record.message_id);
            let expiry = record.expiry;
            if let Ok(to) = IdentityKey::from_bytes(&record.to) {
                self.keyring.settle(&to, &cid);
            }
            self.outbox.remove(&cid);
            ops.push(StoreOp::RemoveOutbox(cid));
            if self.tracked(&cid, &message_id) {
                ops.push(StoreOp::PutStatus {
                    message_id,
                    record: StatusRecord {
                        status: MessageStatus::Delivered,
                        at: now,
                    },
                });
            }
            self.known_status.remove(&cid);
            // Our copy goes when the proof does, as everyone's.
            self.learn_proof(cid, secret, expiry, now, ops);
            after.push(Output::Event(Event::Delivered { message_id }));
        }
    }

    /// Remembers a delivery proof (durably, with the caller's commit) and
    /// schedules it for the next batch to every peer. Every node does this
    /// the same way, whether it is the recipient, the sender reading a
    /// receipt, or a relay that learned the proof from a peer.
    fn learn_proof(
        &mut self,
        id: ContentId,
        secret: [u8; 16],
        expiry: u64,
        now: u64,
        ops: &mut Vec<StoreOp>,
    ) {
        if self.delivered.contains_key(&id) {
            return;
        }
        self.delivered.insert(id, (secret, expiry));
        ops.push(StoreOp::PutDelivered { id, secret, expiry });
        self.pending_proofs.push(v1::DeliveryProof {
            content_id: id.to_vec(),
            secret: secret.to_vec(),
            expiry,
        });
        if self.proof_flush_at.is_none() {
            let delay = self.random_delay(self.config.proof_delay_secs);
            self.proof_flush_at = Some(now.saturating_add(delay));
        }
    }

    /// A delay drawn uniformly from `range` (seconds).
    fn random_delay(&mut self, (low, high): (u64, u64)) -> u64 {
        let span = high.saturating_sub(low);
        if span == 0 {
            return low;
        }
        let mut bytes = [0u8; 8];
        self.rng.fill_bytes(&mut bytes);
        low + u64::from_le_bytes(bytes) % (span + 1)
    }

    /// Sends the batch of learned proofs to every peer and drops our copies
    /// of the envelopes they prove delivered.
    fn flush_proofs(&mut self) -> Result<(), EngineError> {
        self.proof_flush_at = None;
        let proofs = std::mem::take(&mut self.pending_proofs);
        let mut ops = Vec::new();
        for proof in &proofs {
            let Ok(id) = ContentId::try_from(proof.content_id.as_slice()) else {
                continue;
            };
            if self.outbox.contains_key(&id) {
                continue;
            }
            if self.unindex(&id).is_some() {
                ops.push(StoreOp::RemoveEnvelope(id));
                self.counters.purged_by_receipt += 1;
            }
        }
        if !ops.is_empty() {
            self.store.commit(ops).map_err(store_err)?;
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            for chunk in proofs.chunks(limits::MAX_IDS_PER_FRAME) {
                self.send_frame(
                    peer,
                    v1::sync_frame::Kind::Delivered(v1::DeliveredIds {
                        proofs: chunk.to_vec(),
                    }),
                );
            }
        }
        Ok(())
    }

    /// Seals (or re-seals, one entry longer) the receipt to `to` that is
    /// still waiting for its release, and stores it in the caller's commit.
    /// Sealing at once keeps receipts durable; releasing later, with a
    /// lifetime of their own, keeps a watcher from pairing message and
    /// receipt by time or expiry.
    fn queue_receipt(
        &mut self,
        to: IdentityKey,
        message_id: MessageId,
        content_id: ContentId,
        secret: [u8; 16],
        now: u64,
        ops: &mut Vec<StoreOp>,
    ) {
        let mut batch = match self.receipt_batches.remove(&to) {
            Some(b) if b.message_ids.len() < limits::MAX_RECEIPT_IDS => b,
            // A full receipt keeps its release time; a new one starts.
            _ => ReceiptBatch {
                envelope: [0; 32],
                message_ids: Vec::new(),
                content_ids: Vec::new(),
                secrets: Vec::new(),
            },
        };
        let previous = batch.envelope;
        let release_at = match self.unreleased.get(&previous) {
            Some((at, ..)) => *at,
            None => now.saturating_add(self.random_delay(self.config.receipt_delay_secs)),
        };
        let before = batch.message_ids.len();
        batch.message_ids.push(message_id.0.to_vec());
        batch.content_ids.push(content_id.to_vec());
        batch.secrets.push(secret.to_vec());
        let mut receipt_secret = [0u8; 16];
        self.rng.fill_bytes(&mut receipt_secret);
        let payload = v1::Payload {
            kind: Some(v1::payload::Kind::Receipt(v1::DeliveryReceipt {
                message_ids: batch.message_ids.clone(),
                content_ids: batch.content_ids.clone(),
                delivery_secrets: batch.secrets.clone(),
                receipt_secret: receipt_secret.to_vec(),
            })),
        };
        // A lifetime of its own, jittered over a tag epoch, so the receipt's
        // expiry does not repeat the message's.
        let jitter = self.random_delay((0, RECEIPT_EXPIRY_JITTER_SECS));
        let expiry = now.saturating_add(
            self.config
                .message_ttl_secs
                .saturating_add(jitter)
                .clamp(1, self.config.max_ttl_secs),
        );
        let commitment = tags::delivery_commitment(&receipt_secret);
        let Ok(mut receipt) =
            self.keyring
                .seal_with_commitment(&to, &payload, expiry, commitment, &mut self.rng)
        else {
            // The contact is gone or its keys unusable: nothing to answer;
            // the receipt already sealed stays as it was.
            batch.message_ids.truncate(before);
            batch.content_ids.truncate(before);
            batch.secrets.truncate(before);
            if before > 0 {
                self.receipt_batches.insert(to, batch);
            }
            return;
        };
        if self.unreleased.remove(&previous).is_some() {
            ops.push(StoreOp::RemoveEnvelope(previous));
        }
        receipt.hop_limit = self.config.hop_limit;
        receipt.copy_budget = self.new_envelope_budget();
        let rid = tags::content_id_of(&receipt);
        ops.push(StoreOp::PutEnvelope {
            id: rid,
            custody: Custody::Own,
            bytes: proto::encode(&receipt),
        });
        batch.envelope = rid;
        self.unreleased_seq += 1;
        self.unreleased
            .insert(rid, (release_at, self.unreleased_seq, receipt));
        self.receipt_batches.insert(to, batch);
        // A zero delay (tests, demos) releases at once.
        self.release_receipts(now);
    }

    /// Publishes the receipts whose release time has come.
    fn release_receipts(&mut self, now: u64) {
        let mut due: Vec<(u64, u64, ContentId)> = self
            .unreleased
            .iter()
            .filter(|(_, (at, ..))| *at <= now)
            .map(|(id, (at, seq, _))| (*at, *seq, *id))
            .collect();
        // A fixed order (not the map's, nor the random IDs'), so the
        // simulator stays deterministic.
        due.sort_unstable_by_key(|(at, seq, _)| (*at, *seq));
        for (.., id) in due {
            let Some((_, _, receipt)) = self.unreleased.remove(&id) else {
                continue;
            };
            self.receipt_batches.retain(|_, b| b.envelope != id);
            let bytes = proto::encode(&receipt);
            self.index(
                id,
                &receipt,
                Custody::Own,
                bytes.len(),
                None,
                receipt.expiry,
            );
            self.announce_own(id, receipt.copy_budget, bytes);
        }
    }

    fn handle_frame(
        &mut self,
        from: PeerId,
        bytes: &[u8],
        now: u64,
    ) -> Result<Verdict, EngineError> {
        let Ok(frame) = proto::decode::<v1::SyncFrame>(bytes) else {
            self.counters.invalid += 1;
            return Ok(Verdict::Reject);
        };
        if !self.peers.contains_key(&from) {
            return Ok(Verdict::Ignore);
        }
        match frame.kind {
            Some(v1::sync_frame::Kind::Reconcile(message)) => {
                self.handle_reconcile(from, &message, now)
            }
            Some(v1::sync_frame::Kind::Want(want)) => {
                // Only what we offered in this round, each ID once: a want
                // list cannot name IDs the peer learned elsewhere or repeat
                // one to multiply our output.
                let mut ids = Vec::new();
                if let Some(state) = self.peers.get_mut(&from) {
                    for chunk in want.ids.chunks_exact(limits::CONTENT_ID_LEN) {
                        match ContentId::try_from(chunk) {
                            Ok(id) if state.offered.remove(&id) => ids.push(id),
                            _ => self.counters.sync_refused += 1,
                        }
                    }
                }
                self.push_envelopes(from, &ids)?;
                Ok(Verdict::Accept)
            }
            Some(v1::sync_frame::Kind::Envelopes(batch)) => {
                let trusted = self.peers.get(&from).is_some_and(|p| p.trusted);
                let mut all_ops = Vec::new();
                let mut all_after = Vec::new();
                let mut verdict = Verdict::Accept;
                for envelope in &batch.envelopes {
                    self.counters.sync_envelopes_received += 1;
                    let bytes = proto::encode(envelope);
                    let (v, ops, after) = self.ingest(&bytes, Some(from), trusted, false, now)?;
                    match v {
                        Verdict::Reject => verdict = Verdict::Reject,
                        // New to this side of the link: spread it on the
                        // local overlay, as if it had been published here.
                        Verdict::Accept => all_after.push(Output::Publish {
                            content_id: tags::content_id_of(envelope),
                            bytes,
                        }),
                        Verdict::Ignore => {}
                    }
                    all_ops.extend(ops);
                    all_after.extend(after);
                }
                // One durable commit for the whole batch.
                self.finish(all_ops, all_after)?;
                Ok(verdict)
            }
            Some(v1::sync_frame::Kind::Delivered(delivered)) => {
                let mut ops = Vec::new();
                for proof in &delivered.proofs {
                    let Ok(id) = ContentId::try_from(proof.content_id.as_slice()) else {
                        continue;
                    };
                    let Some(held) = self.held.get(&id) else {
                        continue;
                    };
                    if held.custody == Custody::Own && self.outbox.contains_key(&id) {
                        // Our own message: only an end-to-end receipt counts.
                        continue;
                    }
                    if !tags::proves_delivery(&held.commitment, &proof.secret) {
                        continue;
                    }
                    let Ok(secret) = <[u8; 16]>::try_from(proof.secret.as_slice()) else {
                        continue;
                    };
                    // Our copy goes, and the proof on to our other peers,
                    // with the next batch, as for every proof we learn.
                    let expiry = held.expiry;
                    self.learn_proof(id, secret, expiry, now, &mut ops);
                }
                self.finish(ops, Vec::new())?;
                Ok(Verdict::Accept)
            }
            None => Ok(Verdict::Reject),
        }
    }

    /// One reconciliation frame from `from`, in turn and within budget.
    fn handle_reconcile(
        &mut self,
        from: PeerId,
        message: &v1::Reconcile,
        now: u64,
    ) -> Result<Verdict, EngineError> {
        let budget = self.round_budget();
        let Some(state) = self.peers.get_mut(&from) else {
            return Ok(Verdict::Ignore);
        };
        let elapsed = now.saturating_sub(state.credit_refilled_at);
        state.sync_credit = state
            .sync_credit
            .saturating_add(elapsed.saturating_mul(budget) / ROUND_REFILL_SECS)
            .min(budget);
        state.credit_refilled_at = now;
        let role = if state.initiator {
            // Only the answer to the frame we sent last: an unsolicited
            // "I have nothing" would otherwise make us push our whole store.
            if !state.awaiting_reply {
                self.counters.sync_refused += 1;
                return Ok(Verdict::Ignore);
            }
            state.awaiting_reply = false;
            Role::Initiator
        } else {
            let open = state
                .responder_round
                .is_some_and(|t| now.saturating_sub(t) < RESYNC_ROUND_TIMEOUT_SECS);
            if !open {
                // A new round: what we offered in the last one is forgotten.
                state.responder_round = Some(now);
                self.counters.sync_rounds += 1;
                state.offered.clear();
            }
            Role::Responder
        };
        let set = self.id_set();
        let outcome = match set.process(message, role) {
            Ok(outcome) => outcome,
            Err(error) => {
                if let Some(state) = self.peers.get_mut(&from) {
                    state.responder_round = None;
                    state.round_started = None;
                    state.round_own.clear();
                }
                // Broken ranges are the peer's fault; a reply too large for
                // a frame depends on our set as much as on its message.
                if error == crate::reconcile::ReconcileError::BadRanges {
                    self.counters.invalid += 1;
                    return Ok(Verdict::Reject);
                }
                self.counters.sync_refused += 1;
                return Ok(Verdict::Ignore);
            }
        };
        // Our messages the peer's message says it holds (either role). Only
        // those not yet known as carried are looked at: each costs a binary
        // search here, however the peer shapes its frame.
        let carried: Vec<ContentId> = self
            .outbox
            .keys()
            .filter(|id| {
                self.known_status
                    .get(*id)
                    .is_none_or(|s| s.may_become(MessageStatus::Carried))
            })
            .filter(|id| {
                set.ids()
                    .binary_search(id)
                    .is_ok_and(|index| outcome.peer_holds(id, index))
            })
            .copied()
            .collect();
        for id in carried {
            self.advance_status(&id, MessageStatus::Carried, now)?;
        }
        let Some(state) = self.peers.get_mut(&from) else {
            return Ok(Verdict::Ignore);
        };
        state.have.extend(outcome.have);
        state.need.extend(outcome.need);
        let reply = match outcome.reply {
            Some(reply) => reply,
            None if role == Role::Initiator => {
                self.complete_reconciliation(from)?;
                return Ok(Verdict::Accept);
            }
            // Tell the initiator the round is over (it would otherwise wait
            // for a reply that never comes).
            None => {
                state.responder_round = None;
                state.reconciled = true;
                crate::reconcile::finished()
            }
        };
        let cost = reply.encoded_len() as u64;
        if cost > state.sync_credit {
            // Rounds with this peer have cost what honest ones could in
            // this time: abandon this one.
            self.counters.sync_refused += 1;
            state.responder_round = None;
            state.round_started = None;
            state.have.clear();
            state.need.clear();
            state.round_own.clear();
            return Ok(Verdict::Ignore);
        }
        state.sync_credit -= cost;
        let mut fingerprints = false;
        for range in &reply.ranges {
            match &range.payload {
                Some(v1::reconcile_range::Payload::IdList(list)) if role == Role::Responder => {
                    state.offered.extend(
                        list.chunks_exact(limits::CONTENT_ID_LEN)
                            .filter_map(|c| ContentId::try_from(c).ok()),
                    );
                }
                Some(v1::reconcile_range::Payload::Fingerprint(_)) => fingerprints = true,
                _ => {}
            }
        }
        match role {
            Role::Initiator => state.awaiting_reply = true,
            // Without fingerprints the initiator can settle every range from
            // this reply: the round is over on our side.
            Role::Responder if !fingerprints => {
                state.responder_round = None;
                state.reconciled = true;
            }
            Role::Responder => {}
        }
        self.send_frame(from, v1::sync_frame::Kind::Reconcile(reply));
        Ok(Verdict::Accept)
    }

    fn complete_reconciliation(&mut self, peer: PeerId) -> Result<(), EngineError> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        state.round_started = None;
        state.reconciled = true;
        let mut need = std::mem::take(&mut state.need);
        let have = std::mem::take(&mut state.have);
        let round_own = std::mem::take(&mut state.round_own);
        // Our messages that were in the set this round compared and that the
        // peer did not list as lacking: it says it holds them.
        if !round_own.is_empty() {
            let lacking: HashSet<&ContentId> = have.iter().collect();
            for id in round_own {
                if !lacking.contains(&id) {
                    self.advance_status(&id, MessageStatus::Carried, self.last_now)?;
                }
            }
        }
        // Never ask for what we already opened or know delivered: a node
        // asking for exactly its own mail and receipts would name itself.
        need.retain(|id| {
            !self.seen.contains_key(id)
                && !self.declined.contains_key(id)
                && !self.delivered.contains_key(id)
                && !self.held.contains_key(id)
        });
        for chunk in need.chunks(limits::MAX_IDS_PER_FRAME) {
            self.send_frame(
                peer,
                v1::sync_frame::Kind::Want(v1::WantEnvelopes {
                    ids: chunk.concat(),
                }),
            );
        }
        self.push_envelopes(peer, &have)
    }

    /// Queues the envelopes `ids` for `peer` (each at most once per link)
    /// and sends what the window allows; the rest follows as the peer
    /// acknowledges frames ([`Input::FrameAcked`]).
    fn push_envelopes(&mut self, peer: PeerId, ids: &[ContentId]) -> Result<(), EngineError> {
        // Priority order: our own and contacts' mail first, then the
        // soonest-expiring (newest expiry last), so a short contact gets the
        // most urgent envelopes across.
        let Some(state) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let mut ids: Vec<ContentId> = ids
            .iter()
            .filter(|id| self.held.contains_key(*id))
            .copied()
            .filter(|id| {
                let first = state.pushed.insert(*id);
                if !first {
                    self.counters.sync_refused += 1;
                }
                first
            })
            .collect();
        ids.sort_by_key(|id| {
            let h = self.held.get(id);
            (
                std::cmp::Reverse(h.map(|h| h.custody)),
                h.map_or(u64::MAX, |h| h.expiry),
            )
        });
        state.push_queue.extend(ids);
        self.pump_pushes(peer)
    }

    /// Builds and sends envelope batches for `peer` while fewer than
    /// [`PUSH_WINDOW`] of its frames are unacknowledged, halving spray
    /// budgets as copies are handed over. Only one batch is built at a
    /// time: however much a peer may ask for, memory holds one frame.
    fn pump_pushes(&mut self, peer: PeerId) -> Result<(), EngineError> {
        loop {
            let Some(state) = self.peers.get_mut(&peer) else {
                return Ok(());
            };
            if state.in_flight >= PUSH_WINDOW || state.push_queue.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::new();
            let mut batch_bytes = 0usize;
            let mut ops = Vec::new();
            let mut own = Vec::new();
            while let Some(id) = self
                .peers
                .get(&peer)
                .and_then(|s| s.push_queue.front())
                .copied()
            {
                let Some(bytes) = self.store.envelope(&id).map_err(store_err)? else {
                    self.pop_push(peer);
                    continue;
                };
                let Ok(mut envelope) = proto::decode::<v1::Envelope>(&bytes) else {
                    self.pop_push(peer);
                    continue;
                };
                let len = envelope.encoded_len() + 8;
                if !batch.is_empty()
                    && (batch_bytes + len > limits::MAX_SYNC_FRAME_LEN - 4096
                        || batch.len() >= limits::MAX_ENVELOPES_PER_BATCH)
                {
                    break;
                }
                self.pop_push(peer);
                let Some(held) = self.held.get_mut(&id) else {
                    continue;
                };
                match held.copy_budget {
                    0 => {}
                    // Wait phase: the last copy is only shown, with one hop
                    // left, so a relay declines it (and remembers, never
                    // asking again) and only the recipient keeps (opens) it.
                    // Each peer is shown a copy once.
                    1 => {
                        let shown = self.shown.entry(id).or_default();
                        if shown.contains(&peer) {
                            continue;
                        }
                        if shown.len() >= MAX_SHOWN_PEERS {
                            shown.remove(0);
                        }
                        shown.push(peer);
                        if let Some(state) = self.peers.get_mut(&peer) {
                            state.shown_unacked.push(id);
                        }
                        envelope.hop_limit = 1;
                    }
                    budget => {
                        let give = budget / 2;
                        let keep = budget - give;
                        held.copy_budget = keep;
                        envelope.copy_budget = give;
                        let mut kept = envelope.clone();
                        kept.copy_budget = keep;
                        ops.push(StoreOp::PutEnvelope {
                            id,
                            custody: held.custody,
                            bytes: proto::encode(&kept),
                        });
                    }
                }
                batch_bytes += len;
                batch.push(envelope);
                if self.outbox.contains_key(&id) {
                    own.push(id);
                }
            }
            if !ops.is_empty() {
                self.store.commit(ops).map_err(store_err)?;
            }
            if batch.is_empty() {
                return Ok(());
            }
            self.counters.sync_envelopes_sent += batch.len() as u64;
            self.send_frame(
                peer,
                v1::sync_frame::Kind::Envelopes(v1::EnvelopeBatch { envelopes: batch }),
            );
            for id in own {
                self.advance_status(&id, MessageStatus::Sent, self.last_now)?;
            }
        }
    }

    /// Whether we hold, opened or know delivered the envelope `id`.
    fn known(&self, id: &ContentId) -> bool {
        self.held.contains_key(id) || self.seen.contains_key(id) || self.delivered.contains_key(id)
    }

    /// Remembers an ID we declined; when the set is full, the entry that
    /// expires first makes room (at worst we ask for one again).
    fn decline(&mut self, id: ContentId, expiry: u64) {
        if self.declined.len() >= MAX_DECLINED
            && let Some(first) = self
                .declined
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(id, _)| *id)
        {
            self.declined.remove(&first);
        }
        self.declined.insert(id, expiry);
    }

    fn pop_push(&mut self, peer: PeerId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.push_queue.pop_front();
        }
    }

    fn sweep(&mut self, now: u64) -> Result<(), EngineError> {
        let mut ops = Vec::new();
        let expired: Vec<ContentId> = self
            .held
            .iter()
            .filter(|(_, h)| h.keep_until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.unindex(&id);
            ops.push(StoreOp::RemoveEnvelope(id));
            self.counters.expired += 1;
            if let Some(record) = self.outbox.remove(&id) {
                if let Ok(to) = IdentityKey::from_bytes(&record.to) {
                    self.keyring.settle(&to, &id);
                }
                ops.push(StoreOp::RemoveOutbox(id));
                let message_id = MessageId(record.message_id);
                if self.tracked(&id, &message_id) {
                    ops.push(StoreOp::PutStatus {
                        message_id,
                        record: StatusRecord {
                            status: MessageStatus::Expired,
                            at: now,
                        },
                    });
                }
                self.known_status.remove(&id);
                self.outputs
                    .push_back(Output::Event(Event::Expired { message_id }));
            }
        }
        let stale: Vec<ContentId> = self
            .seen
            .iter()
            .filter(|(_, e)| **e < now)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.seen.remove(&id);
            ops.push(StoreOp::RemoveSeen(id));
        }
        self.declined.retain(|_, expiry| *expiry >= now);
        let stale: Vec<ContentId> = self
            .delivered
            .iter()
            .filter(|(_, (_, e))| *e < now)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.delivered.remove(&id);
            ops.push(StoreOp::RemoveDelivered(id));
        }
        if !ops.is_empty() {
            self.store.commit(ops).map_err(store_err)?;
        }
        Ok(())
    }
}
