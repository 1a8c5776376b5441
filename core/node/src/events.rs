//! What the node tells the app, and the stream it arrives on.

use std::fmt;

use ferry_core::{
    contact::ContactCard, crypto::ShortAuthString, engine::MessageId, engine::RejectReason,
    keys::IdentityKey,
};
use ferry_transports::{pipe::LinkId, pt::PtEvent};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

/// A message for the app. It stays in the node's durable inbox until
/// [`crate::Node::ack`] is called with its ID; unacknowledged messages are
/// handed out again after a restart (or after [`NodeEvent::Lagged`]) with
/// `redelivery` set, so apps deduplicate by `message_id`.
pub struct ReceivedMessage {
    /// The sender (a contact).
    pub from: IdentityKey,
    /// The sender's message ID.
    pub message_id: MessageId,
    /// The sender's clock when sending (self-asserted, seconds).
    pub sent_at: u64,
    /// The application bytes.
    pub body: Vec<u8>,
    /// Whether this message may have been handed out before.
    pub redelivery: bool,
}

impl fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the body.
        f.debug_struct("ReceivedMessage")
            .field("len", &self.body.len())
            .field("redelivery", &self.redelivery)
            .finish_non_exhaustive()
    }
}

/// Something that happened in the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeEvent {
    /// The node listens on this address.
    Listening {
        /// The address.
        address: Multiaddr,
    },
    /// A message arrived.
    Message(ReceivedMessage),
    /// A message we sent moved on: `Sent`, `Carried`, `Delivered` (the
    /// recipient's node stored it; not that a person read it), `Expired`,
    /// or `Failed` with the reason. The same status is stored
    /// ([`crate::Node::message_status`]). Statuses only move forward; an
    /// event lost to [`NodeEvent::Lagged`] can be read back from the store.
    MessageStatus {
        /// Our message ID.
        message_id: MessageId,
        /// Where it is now.
        status: ferry_core::engine::MessageStatus,
    },
    /// Someone who holds our card asks to become a contact; accept with
    /// [`crate::Node::add_contact_card`].
    ContactRequest {
        /// Their card (signature checked, identity not verified).
        card: Box<ContactCard>,
        /// Their introduction.
        introduction: String,
        /// Our trust in this identity if it is already a contact.
        existing: Option<ferry_core::crypto::Trust>,
        /// Whether we know this identity with other encryption keys
        /// (accepting would be a key change).
        keys_changed: bool,
    },
    /// A contact's keys changed: they are no longer verified.
    KeyChanged {
        /// The contact.
        contact: IdentityKey,
        /// Whether they were verified before.
        was_verified: bool,
    },
    /// A direct link to a peer came up.
    PeerUp {
        /// The peer's network ID (not a Ferry identity).
        peer: PeerId,
    },
    /// An attached link ([`crate::Node::attach_link`]) is authenticated:
    /// the peer at its other end is connected through it.
    LinkUp {
        /// The link.
        link: LinkId,
        /// The app's label for it.
        label: String,
        /// The peer at the other end.
        peer: PeerId,
    },
    /// An attached link closed (the stream ended or failed, or the peer
    /// left).
    LinkDown {
        /// The link.
        link: LinkId,
        /// The app's label for it.
        label: String,
        /// The peer that was at its other end.
        peer: PeerId,
    },
    /// An attached link never came up: the other end is not a Ferry node,
    /// the handshake failed or timed out, or the connection was refused.
    LinkFailed {
        /// The link.
        link: LinkId,
        /// The app's label for it.
        label: String,
        /// Why.
        error: String,
    },
    /// A pluggable transport started, exited, is restarting or failed to
    /// restart.
    PluggableTransport(PtEvent),
    /// The last link to a peer went down.
    PeerDown {
        /// The peer.
        peer: PeerId,
    },
    /// Reconciliation with a peer brought envelopes we lacked.
    SyncProgress {
        /// The peer.
        peer: PeerId,
        /// Envelopes received in this step.
        envelopes: u64,
    },
    /// Envelopes from a peer were refused custody. Refusals are collapsed:
    /// at most one event per peer and reason a second, with the count
    /// (a flooder's envelopes never become a flood of events).
    QuotaRejected {
        /// The peer they came from, if known.
        peer: Option<PeerId>,
        /// Which quota was full.
        reason: RejectReason,
        /// Envelopes refused since the last such event.
        envelopes: u64,
    },
    /// A pairing handshake finished: show `code` and ask the user whether
    /// the other device shows the same, then call
    /// [`crate::Node::confirm_pairing`].
    PairingCode {
        /// The peer.
        peer: PeerId,
        /// The six-digit code.
        code: ShortAuthString,
    },
    /// A pairing completed and the contact was added as verified.
    Paired {
        /// The new contact.
        contact: IdentityKey,
    },
    /// A pairing failed (bad handshake, mismatched card, timeout).
    PairingFailed {
        /// The peer.
        peer: PeerId,
    },
    /// mDNS found a Ferry-capable peer on the LAN. It is not dialled (unless
    /// it is trusted or auto-dial is on): the app may offer to connect
    /// ([`crate::Node::dial`]), e.g. to pair.
    PeerDiscovered {
        /// The peer.
        peer: PeerId,
        /// Where mDNS says it listens.
        address: Multiaddr,
    },
    /// A pairing attempt was refused before any key was issued: pairing
    /// closed, one already running with this peer, or attempts bounded per
    /// peer and overall. Also counted in `NodeStats::pairing_refusals`.
    PairingRefused {
        /// The peer that tried (or that we tried to pair with).
        peer: PeerId,
        /// Why.
        reason: crate::pairing_gate::PairingRefusal,
    },
    /// The app did not keep up with messages, receipts or safety events:
    /// `missed` of them were dropped. Unacknowledged messages are handed out
    /// again (with `redelivery`).
    Lagged {
        /// Events dropped.
        missed: u64,
    },
}

impl NodeEvent {
    /// Whether this event is network churn (peers coming and going, sync
    /// progress, refusals, discovery): events anyone on the network can
    /// cause at will. They travel in their own queue, so they can never
    /// push a message, a receipt or a safety event out of the app's
    /// queue; when that queue is full they are dropped and counted
    /// (`NodeStats::churn_events_dropped`), with no `Lagged`.
    pub fn is_churn(&self) -> bool {
        matches!(
            self,
            NodeEvent::PeerUp { .. }
                | NodeEvent::PeerDown { .. }
                | NodeEvent::SyncProgress { .. }
                | NodeEvent::QuotaRejected { .. }
                | NodeEvent::PairingFailed { .. }
                | NodeEvent::PairingRefused { .. }
                | NodeEvent::PeerDiscovered { .. }
        )
    }
}

/// The node's events. Take it once with [`crate::Node::events`].
///
/// Events come from two queues: messages, receipts and safety events
/// (which only contacts, the user, or rate-bounded requests can cause),
/// and churn ([`NodeEvent::is_churn`]). Each keeps its order; when both
/// have events, messages and safety events come first.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: mpsc::Receiver<NodeEvent>,
    pub(crate) churn: mpsc::Receiver<NodeEvent>,
}

impl EventStream {
    /// The next event; `None` once the node has shut down and every event
    /// was read.
    pub async fn next(&mut self) -> Option<NodeEvent> {
        tokio::select! {
            biased;
            Some(event) = self.rx.recv() => Some(event),
            Some(event) = self.churn.recv() => Some(event),
            else => None,
        }
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<NodeEvent> {
        self.rx.try_recv().or_else(|_| self.churn.try_recv()).ok()
    }

    /// Blocks the calling (non-async) thread for the next event, for
    /// callers outside tokio such as the C ABI.
    pub fn blocking_next(&mut self) -> Option<NodeEvent> {
        futures::executor::block_on(self.next())
    }
}
