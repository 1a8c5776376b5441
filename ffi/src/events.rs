//! Events the app pulls: `ferry_next_event`.
//!
//! Events are typed C structs, not protobuf bytes: an app reads them with
//! no schema compiler and no decoding step (Swift, Kotlin through JNI and
//! plain C all see a struct), and each field's meaning is in this header.
//! The price is an ABI version bump when a field is added; protobuf would
//! avoid that, but every app would then carry a decoder for a handful of
//! fields.

use std::{ffi::c_char, time::Duration};

use ferry_node::NodeEvent;

use crate::{
    boundary::{self, Failure, FerryResult, guard},
    node::{FerryFailReason, FerryMessageStatus, FerryNode, convert_status, with_node_draining},
    types::{FerryBytes, FerryIdentityKey, FerryMessageId},
};

/// What kind of event it is; the fields each kind fills are listed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerryEventKind {
    /// A kind this header does not know (a newer library): ignore it.
    Other = 0,
    /// A message arrived: `contact` (sender), `message_id`, `sent_at`
    /// (sender's clock), `body`, `flag` (redelivery: the app may have seen
    /// it before; deduplicate by `message_id`). Acknowledge it with
    /// `ferry_node_ack` once stored.
    Message = 1,
    /// A message we sent moved on: `message_id`, `status`, `fail_reason`.
    MessageStatus = 2,
    /// A contact's keys changed: `contact`, `flag` (whether they were
    /// verified). Tell the user; they are unverified now.
    KeyChanged = 3,
    /// Someone who has our code asks to become a contact: `text` is their
    /// contact code (add it with `ferry_node_add_contact` to accept),
    /// `text2` their introduction, `flag` whether it changes known keys.
    ContactRequest = 4,
    /// A peer connected: `text` (peer ID).
    PeerUp = 5,
    /// A peer's last connection closed: `text` (peer ID).
    PeerDown = 6,
    /// mDNS found a peer on the LAN: `text` (peer ID), `text2` (address).
    PeerDiscovered = 7,
    /// A pairing handshake finished: `text` (peer ID), `text2` (the
    /// six-digit code to compare; answer with `ferry_node_confirm_pairing`).
    PairingCode = 8,
    /// A pairing completed: `contact` is the new verified contact.
    Paired = 9,
    /// A pairing failed or was refused: `text` (peer ID), `text2` (why).
    PairingFailed = 10,
    /// A link (`ferry_link_open`) came up: `link_id`, `text` (its label),
    /// `text2` (the peer ID at the other end).
    LinkUp = 11,
    /// A link went down: `link_id`, `text` (label), `text2` (peer ID).
    LinkDown = 12,
    /// A link never came up: `link_id`, `text` (label), `text2` (why).
    LinkFailed = 13,
    /// Reconciliation brought envelopes: `text` (peer ID), `count`.
    SyncProgress = 14,
    /// Envelopes were refused custody: `text` (peer ID or empty), `text2`
    /// (which quota), `count`.
    QuotaRejected = 15,
    /// The node listens on a new address: `text`.
    Listening = 16,
    /// A pluggable transport started, exited or is restarting: `text`.
    PluggableTransport = 17,
    /// The app fell behind and `count` events were dropped. Unacknowledged
    /// messages come again (with `flag` redelivery); statuses can be read
    /// back with `ferry_node_message_status`.
    Lagged = 18,
}

/// One event (freed with `ferry_event_free`). Fields a kind does not use
/// are zero, NULL or empty.
#[repr(C)]
#[derive(Debug)]
pub struct FerryEvent {
    /// What happened.
    pub kind: FerryEventKind,
    /// A message ID (`MESSAGE`, `MESSAGE_STATUS`).
    pub message_id: FerryMessageId,
    /// A contact (`MESSAGE`, `KEY_CHANGED`, `PAIRED`).
    pub contact: FerryIdentityKey,
    /// A status (`MESSAGE_STATUS`).
    pub status: FerryMessageStatus,
    /// Why it failed (`MESSAGE_STATUS` with `FERRY_MESSAGE_STATUS_FAILED`).
    pub fail_reason: FerryFailReason,
    /// The sender's clock at sending, seconds (`MESSAGE`).
    pub sent_at: u64,
    /// A count (`SYNC_PROGRESS`, `QUOTA_REJECTED`, `LAGGED`).
    pub count: u64,
    /// A link (`LINK_UP`, `LINK_DOWN`, `LINK_FAILED`).
    pub link_id: u64,
    /// A flag whose meaning depends on the kind (see each kind).
    pub flag: bool,
    /// The message body (`MESSAGE`), owned by the event.
    pub body: FerryBytes,
    /// Text (see each kind), NUL-terminated, owned by the event; NULL when
    /// unused.
    pub text: *mut c_char,
    /// More text (see each kind), as `text`.
    pub text2: *mut c_char,
}

impl FerryEvent {
    fn blank(kind: FerryEventKind) -> Self {
        Self {
            kind,
            message_id: FerryMessageId::default(),
            contact: FerryIdentityKey::default(),
            status: FerryMessageStatus::Unknown,
            fail_reason: FerryFailReason::None,
            sent_at: 0,
            count: 0,
            link_id: 0,
            flag: false,
            body: FerryBytes::empty(),
            text: std::ptr::null_mut(),
            text2: std::ptr::null_mut(),
        }
    }

    fn with_text(mut self, text: &str, text2: Option<&str>) -> Self {
        self.text = boundary::c_string(text);
        self.text2 = text2.map_or(std::ptr::null_mut(), boundary::c_string);
        self
    }

    /// Boxes the event with private copies of what it owns: the free
    /// reads only those, never a field the app may have changed.
    fn into_owned(self) -> *mut FerryEvent {
        let owned = Box::new(OwnedEvent {
            body: self.body.data,
            text: self.text,
            text2: self.text2,
            public: self,
        });
        // `public` is the first field of a `repr(C)` struct: a pointer to
        // the whole is a pointer to it.
        Box::into_raw(owned).cast()
    }

    pub(crate) fn from_event(event: NodeEvent) -> Self {
        use FerryEventKind as K;
        match event {
            NodeEvent::Message(m) => {
                let mut e = Self::blank(K::Message);
                e.contact = FerryIdentityKey::from_key(&m.from);
                e.message_id = m.message_id.into();
                e.sent_at = m.sent_at;
                e.flag = m.redelivery;
                e.body = FerryBytes::copy_of(&m.body);
                e
            }
            NodeEvent::MessageStatus { message_id, status } => {
                let mut e = Self::blank(K::MessageStatus);
                e.message_id = message_id.into();
                (e.status, e.fail_reason) = convert_status(status);
                e
            }
            NodeEvent::KeyChanged {
                contact,
                was_verified,
            } => {
                let mut e = Self::blank(K::KeyChanged);
                e.contact = FerryIdentityKey::from_key(&contact);
                e.flag = was_verified;
                e
            }
            NodeEvent::ContactRequest {
                card,
                introduction,
                keys_changed,
                ..
            } => {
                let code = card.to_code().unwrap_or_default();
                let mut e = Self::blank(K::ContactRequest).with_text(&code, Some(&introduction));
                e.contact = FerryIdentityKey::from_key(card.identity_key());
                e.flag = keys_changed;
                e
            }
            NodeEvent::PeerUp { peer } => Self::blank(K::PeerUp).with_text(&peer.to_string(), None),
            NodeEvent::PeerDown { peer } => {
                Self::blank(K::PeerDown).with_text(&peer.to_string(), None)
            }
            NodeEvent::PeerDiscovered { peer, address } => Self::blank(K::PeerDiscovered)
                .with_text(&peer.to_string(), Some(&address.to_string())),
            NodeEvent::PairingCode { peer, code } => Self::blank(K::PairingCode)
                .with_text(&peer.to_string(), Some(&format!("{:06}", code.value()))),
            NodeEvent::Paired { contact } => {
                let mut e = Self::blank(K::Paired);
                e.contact = FerryIdentityKey::from_key(&contact);
                e
            }
            NodeEvent::PairingFailed { peer } => {
                Self::blank(K::PairingFailed).with_text(&peer.to_string(), Some("failed"))
            }
            NodeEvent::PairingRefused { peer, reason } => Self::blank(K::PairingFailed)
                .with_text(&peer.to_string(), Some(&format!("{reason:?}"))),
            NodeEvent::LinkUp { link, label, peer } => {
                let mut e = Self::blank(K::LinkUp).with_text(&label, Some(&peer.to_string()));
                e.link_id = link.0;
                e
            }
            NodeEvent::LinkDown { link, label, peer } => {
                let mut e = Self::blank(K::LinkDown).with_text(&label, Some(&peer.to_string()));
                e.link_id = link.0;
                e
            }
            NodeEvent::LinkFailed { link, label, error } => {
                let mut e = Self::blank(K::LinkFailed).with_text(&label, Some(&error));
                e.link_id = link.0;
                e
            }
            NodeEvent::SyncProgress { peer, envelopes } => {
                let mut e = Self::blank(K::SyncProgress).with_text(&peer.to_string(), None);
                e.count = envelopes;
                e
            }
            NodeEvent::QuotaRejected {
                peer,
                reason,
                envelopes,
            } => {
                let peer = peer.map(|p| p.to_string()).unwrap_or_default();
                let mut e =
                    Self::blank(K::QuotaRejected).with_text(&peer, Some(&format!("{reason:?}")));
                e.count = envelopes;
                e
            }
            NodeEvent::Listening { address } => {
                Self::blank(K::Listening).with_text(&address.to_string(), None)
            }
            NodeEvent::PluggableTransport(pt) => {
                Self::blank(K::PluggableTransport).with_text(&format!("{pt:?}"), None)
            }
            NodeEvent::Lagged { missed } => {
                let mut e = Self::blank(K::Lagged);
                e.count = missed;
                e
            }
            _ => Self::blank(K::Other),
        }
    }
}

/// An event as allocated: what the app sees, then what the library frees.
#[repr(C)]
struct OwnedEvent {
    public: FerryEvent,
    body: *mut u8,
    text: *mut c_char,
    text2: *mut c_char,
}

/// Waits up to `timeout_ms` milliseconds (0: do not wait) for the node's
/// next event, in the calling thread, and writes it to `*out` (free it with
/// `ferry_event_free`). Returns `FERRY_RESULT_OK` with an event,
/// `FERRY_RESULT_TIMEOUT` with none (`*out` is NULL), or
/// `FERRY_RESULT_CLOSED` once the node has stopped and every event was
/// read. Messages, receipts and safety events come before network churn.
/// Several threads may wait at once; each event goes to one of them.
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_next_event(
    node: *const FerryNode,
    timeout_ms: u32,
    out: *mut *mut FerryEvent,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node_draining(node, |n| {
            boundary::need_ptr(out, "out")?;
            let wait = Duration::from_millis(u64::from(timeout_ms));
            // The lock is taken inside the timeout: a thread waiting behind
            // another one's long wait still returns after its own timeout.
            let next = n.block_on(async {
                tokio::time::timeout(wait, async {
                    let mut slot = n.events.lock().await;
                    let stream = slot.as_mut()?;
                    let event = stream.next().await;
                    if event.is_none() {
                        // Drained: release the stream; later calls say Closed.
                        *slot = None;
                    }
                    event
                })
                .await
            });
            match next {
                Ok(Some(event)) => {
                    let event = FerryEvent::from_event(event).into_owned();
                    boundary::write_out(out, event, "out")
                }
                Ok(None) => Err(Failure::new(FerryResult::Closed, "the node has stopped")),
                Err(_) => Err(Failure::new(FerryResult::Timeout, "no event")),
            }
        })
    }
}

/// Frees an event (its body and texts with it) and sets `*event` to NULL;
/// NULL and a pointer to NULL are ignored.
///
/// # Safety
/// `event` is NULL or points to NULL or to an event from
/// `ferry_next_event` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_event_free(event: *mut *mut FerryEvent) {
    let _ = guard(None, || {
        if event.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's event pointer.
        let inner = unsafe { event.replace(std::ptr::null_mut()) };
        if inner.is_null() {
            return Ok(());
        }
        let owned = inner.cast::<OwnedEvent>();
        // SAFETY: `inner` came from `into_owned` (an `OwnedEvent` whose
        // first field is the event); the app's pointer is NULL now, so this
        // runs once. Only the private fields are read, and the allocation
        // is released without reading the public part (the app may have
        // changed it).
        unsafe {
            boundary::c_free(std::ptr::addr_of!((*owned).body).read());
            boundary::c_free(std::ptr::addr_of!((*owned).text).read().cast());
            boundary::c_free(std::ptr::addr_of!((*owned).text2).read().cast());
            std::alloc::dealloc(owned.cast(), std::alloc::Layout::new::<OwnedEvent>());
        }
        Ok(())
    });
}
