//! `FerryNode`: a running node and the calls an app makes on it.

use std::{
    ffi::c_char,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use ferry_node::{EventStream, ExportFilter, FailReason, MessageStatus, Multiaddr, Node, PeerId};

use crate::{
    boundary::{self, Failure, FerryResult, LastError, guard},
    config::FerryConfig,
    types::{FerryIdentityKey, FerryMessageId},
};

/// A running node (opaque). Made by `ferry_node_start`; stopped by
/// `ferry_node_stop` (or `ferry_node_wipe`); freed by `ferry_node_free`.
#[derive(Debug)]
pub struct FerryNode {
    pub(crate) runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) node: Arc<Node>,
    /// An async lock: a thread waiting for it still honours its timeout.
    pub(crate) events: tokio::sync::Mutex<Option<EventStream>>,
    pub(crate) errors: LastError,
    /// Calls running now (`ferry_node_free` waits for them).
    in_flight: AtomicUsize,
    /// Stopped or wiped: only draining the events is still allowed.
    stopped: AtomicBool,
    /// Being freed: every new call is refused.
    closing: AtomicBool,
}

// Handles cross the boundary as raw pointers; these say, at compile time,
// that sharing them between the app's threads is sound.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<FerryNode>();
    shared::<crate::config::FerryConfig>();
    shared::<crate::link::FerryLink>();
};

/// Counts a running call (see `FerryNode::in_flight`).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FerryNode {
    /// Runs `future` on the node's runtime from the app's thread.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }
}

/// Runs one call on a live node handle; after `ferry_node_stop` (or a
/// wipe) it returns `FERRY_RESULT_CLOSED`.
///
/// # Safety
/// `node` is NULL or a live handle from `ferry_node_start`.
pub(crate) unsafe fn with_node(
    node: *const FerryNode,
    f: impl FnOnce(&FerryNode) -> Result<(), Failure>,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_node_draining(node, |n| {
            if n.stopped.load(Ordering::SeqCst) {
                return Err(Failure::new(FerryResult::Closed, "the node has stopped"));
            }
            f(n)
        })
    }
}

/// As [`with_node`], but also after a stop (reading the last events).
///
/// # Safety
/// `node` is NULL or a live handle from `ferry_node_start`.
pub(crate) unsafe fn with_node_draining(
    node: *const FerryNode,
    f: impl FnOnce(&FerryNode) -> Result<(), Failure>,
) -> FerryResult {
    // SAFETY: NULL or live, as the caller promises.
    let Some(node) = (unsafe { node.as_ref() }) else {
        return FerryResult::NullArgument;
    };
    node.in_flight.fetch_add(1, Ordering::SeqCst);
    let _call = InFlight(&node.in_flight);
    if node.closing.load(Ordering::SeqCst) {
        return FerryResult::Closed;
    }
    guard(Some(&node.errors), || f(node))
}

/// How long `ferry_node_free` waits for calls running on other threads.
const FREE_WAIT: Duration = Duration::from_secs(30);

/// Where a message we sent is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerryMessageStatus {
    /// Not a message this node sent (or its history entry was deleted).
    Unknown = 0,
    /// Durable in the outbox.
    Queued = 1,
    /// Left this device (gossip, a link, a bundle).
    Sent = 2,
    /// A peer holds it.
    Carried = 3,
    /// The recipient's node stored it (not: a person read it).
    Delivered = 4,
    /// Its lifetime ended without a receipt.
    Expired = 5,
    /// It failed; see the fail reason.
    Failed = 6,
}

/// Why a message failed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerryFailReason {
    /// Not failed.
    None = 0,
    /// Its session was dropped before the receipt: probably unreadable.
    Unreadable = 1,
    /// The contact was removed while it travelled.
    ContactRemoved = 2,
    /// A reason this header does not know yet.
    Other = 99,
}

/// A message's status and since when.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FerryStatus {
    /// The status.
    pub status: FerryMessageStatus,
    /// Why it failed, for `FERRY_MESSAGE_STATUS_FAILED`.
    pub fail_reason: FerryFailReason,
    /// When it was reached (seconds since the Unix epoch, our clock); 0
    /// for `FERRY_MESSAGE_STATUS_UNKNOWN`.
    pub at: u64,
}

impl FerryStatus {
    pub(crate) fn of(status: Option<(MessageStatus, u64)>) -> Self {
        let Some((status, at)) = status else {
            return Self {
                status: FerryMessageStatus::Unknown,
                fail_reason: FerryFailReason::None,
                at: 0,
            };
        };
        let (status, fail_reason) = convert_status(status);
        Self {
            status,
            fail_reason,
            at,
        }
    }
}

pub(crate) fn convert_status(status: MessageStatus) -> (FerryMessageStatus, FerryFailReason) {
    match status {
        MessageStatus::Queued => (FerryMessageStatus::Queued, FerryFailReason::None),
        MessageStatus::Sent => (FerryMessageStatus::Sent, FerryFailReason::None),
        MessageStatus::Carried => (FerryMessageStatus::Carried, FerryFailReason::None),
        MessageStatus::Delivered => (FerryMessageStatus::Delivered, FerryFailReason::None),
        MessageStatus::Expired => (FerryMessageStatus::Expired, FerryFailReason::None),
        MessageStatus::Failed(FailReason::Unreadable) => {
            (FerryMessageStatus::Failed, FerryFailReason::Unreadable)
        }
        MessageStatus::Failed(FailReason::ContactRemoved) => {
            (FerryMessageStatus::Failed, FerryFailReason::ContactRemoved)
        }
        MessageStatus::Failed(_) => (FerryMessageStatus::Failed, FerryFailReason::Other),
        _ => (FerryMessageStatus::Unknown, FerryFailReason::None),
    }
}

/// Starts a node from `config` (which stays the app's; free it when you
/// like) and writes its handle to `*out`. Opens (or creates) the
/// encrypted store, which takes the Argon2id time of `ferry_config_set_kdf`
/// and, if another handle still holds the store, up to 3 s of waiting.
/// On failure the config's last error says why.
///
/// # Safety
/// `config` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_start(
    config: *const FerryConfig,
    out: *mut *mut FerryNode,
) -> FerryResult {
    // SAFETY: NULL or live, as the caller promises.
    let Some(config) = (unsafe { config.as_ref() }) else {
        return FerryResult::NullArgument;
    };
    guard(Some(&config.errors), || {
        // SAFETY: NULL (refused) or valid for a write.
        unsafe { boundary::need_ptr(out, "out") }?;
        let builder = config
            .inner
            .lock()
            .map_err(|_| Failure::new(FerryResult::Internal, "config lock poisoned"))?
            .builder()?;
        let built = builder
            .build()
            .map_err(|e| Failure::new(FerryResult::Config, e.to_string()))?;
        let runtime = crate::runtime::new_runtime()?;
        let node = match runtime.block_on(Node::start(built)) {
            Ok(node) => node,
            Err(e) => {
                runtime.shutdown_timeout(Duration::from_secs(5));
                return Err(e.into());
            }
        };
        let events = node.events();
        let handle = runtime.handle().clone();
        let node = Box::new(FerryNode {
            runtime: Mutex::new(Some(runtime)),
            handle,
            node: Arc::new(node),
            events: tokio::sync::Mutex::new(events),
            errors: LastError::default(),
            in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_out(out, Box::into_raw(node), "out") }
    })
}

/// Stops the node: connections close, the store finishes its last commit
/// (messages in flight stay for the next start). Threads blocked in
/// `ferry_next_event` get the remaining events, then
/// `FERRY_RESULT_CLOSED`; every other call returns `FERRY_RESULT_CLOSED`.
/// Stopping twice is harmless.
///
/// # Safety
/// `node` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_stop(node: *const FerryNode) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_node_draining(node, |n| {
            n.stopped.store(true, Ordering::SeqCst);
            n.block_on(n.node.shutdown());
            Ok(())
        })
    }
}

/// Stops the node if it runs, frees it and its runtime, and sets `*node`
/// to NULL (a second call on the same variable does nothing). New calls on
/// the node from other threads are refused from the start, and calls
/// already running (a thread blocked in `ferry_next_event`) end with
/// `FERRY_RESULT_CLOSED`; this waits for them (up to 30 s; if one is still
/// inside after that, the node's memory is left allocated rather than
/// freed under it).
///
/// # Safety
/// `node` is NULL or points to NULL or to a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_free(node: *mut *mut FerryNode) {
    let _ = guard(None, || {
        if node.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's handle pointer.
        let inner = unsafe { node.replace(std::ptr::null_mut()) };
        // SAFETY: NULL or a live handle, as the caller promises.
        let Some(shared) = (unsafe { inner.as_ref() }) else {
            return Ok(());
        };
        shared.closing.store(true, Ordering::SeqCst);
        shared.stopped.store(true, Ordering::SeqCst);
        // Ends every running call: the event stream closes with the node.
        shared.block_on(shared.node.shutdown());
        let deadline = Instant::now() + FREE_WAIT;
        while shared.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return Err(Failure::new(
                    FerryResult::Internal,
                    "a call on the node did not return: not freed",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: made by `Box::into_raw` in `ferry_node_start`; the app's
        // pointer is NULL now and no call is running or can start, so this
        // is the only reference and it runs once.
        let owned = unsafe { Box::from_raw(inner) };
        let runtime = owned.runtime.lock().ok().and_then(|mut r| r.take());
        drop(owned);
        if let Some(runtime) = runtime {
            // The node's tasks are done; give blocking threads (the store's
            // flush) a moment, then return without leaking them.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        Ok(())
    });
}

/// The node's last error message (free with `ferry_string_free`), or NULL
/// if the last call on it succeeded. Each handle keeps its own; with
/// several threads, read it right after the failing call.
///
/// # Safety
/// `node` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_last_error(node: *const FerryNode) -> *mut c_char {
    boundary::guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or live, as the caller promises.
        match unsafe { node.as_ref() } {
            Some(node) => node.errors.copy(),
            None => std::ptr::null_mut(),
        }
    })
}

/// This node's identity key.
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_identity(
    node: *const FerryNode,
    out: *mut FerryIdentityKey,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::write_out(out, FerryIdentityKey::from_key(&n.node.identity()), "out")
        })
    }
}

/// This node's network ID this run (a libp2p peer ID, unlinkable to the
/// identity), as text (free with `ferry_string_free`).
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_peer_id(
    node: *const FerryNode,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            boundary::write_string(out, &n.node.peer_id().to_string(), "out")
        })
    }
}

/// A fresh contact code (`ferry1…`) to give to one person (free with
/// `ferry_string_free`); `ferry_qr_svg` / `ferry_qr_png` draw it.
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_contact_code(
    node: *const FerryNode,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let code = n.block_on(n.node.contact_code())?;
            boundary::write_string(out, &code, "out")
        })
    }
}

/// Adds a contact from their code (unverified until the safety number is
/// compared) and writes their key to `*out` (may be NULL if not wanted).
/// `FERRY_RESULT_INVALID_CODE` with the reason in the last error;
/// `FERRY_RESULT_OWN_IDENTITY` for this node's own code.
///
/// # Safety
/// `node` is NULL or live; `code` is NULL or a NUL-terminated string;
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_add_contact(
    node: *const FerryNode,
    code: *const c_char,
    out: *mut FerryIdentityKey,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let code = boundary::read_str(code, "code")?;
            let key = n.block_on(n.node.add_contact(code))?;
            if !out.is_null() {
                boundary::write_out(out, FerryIdentityKey::from_key(&key), "out")?;
            }
            Ok(())
        })
    }
}

/// Removes a contact; `*removed` (may be NULL) tells whether it was one.
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads;
/// `removed` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_remove_contact(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
    removed: *mut bool,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let key = boundary::handle(contact, "contact")?.to_key()?;
            let was = n.block_on(n.node.remove_contact(&key))?;
            if !removed.is_null() {
                boundary::write_out(removed, was, "removed")?;
            }
            Ok(())
        })
    }
}

/// Sets the user's own name for a contact (NULL or "" clears it).
/// `FERRY_RESULT_UNKNOWN_CONTACT` if it is not a contact.
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads; `name` is
/// NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_rename_contact(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
    name: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let key = boundary::handle(contact, "contact")?.to_key()?;
            let name = if name.is_null() {
                None
            } else {
                Some(boundary::read_str(name, "name")?)
            };
            if !n.block_on(n.node.rename_contact(&key, name))? {
                return Err(Failure::new(FerryResult::UnknownContact, "unknown contact"));
            }
            Ok(())
        })
    }
}

/// Marks a contact verified after the user compared safety numbers.
/// `FERRY_RESULT_UNKNOWN_CONTACT` if it is not a contact.
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_mark_verified(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let key = boundary::handle(contact, "contact")?.to_key()?;
            if !n.block_on(n.node.mark_verified(&key))? {
                return Err(Failure::new(FerryResult::UnknownContact, "unknown contact"));
            }
            Ok(())
        })
    }
}

/// The safety number to compare with `contact` (60 digits in groups of
/// five, free with `ferry_string_free`).
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads; `out` is
/// NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_safety_number(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let key = boundary::handle(contact, "contact")?.to_key()?;
            let number = n.node.safety_number(&key).groups().join(" ");
            boundary::write_string(out, &number, "out")
        })
    }
}

/// Sends `body` (`len` bytes, at most `ferry_max_message_body()`) to a
/// contact. Returns once it is durable (it survives a crash), with its ID
/// in `*out`; its status then moves through
/// `FERRY_EVENT_MESSAGE_STATUS` events.
///
/// # Safety
/// `node` is NULL or live; `to` is NULL or valid for reads; `body` is NULL
/// (with `len` 0) or `len` readable bytes; `out` is NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_send(
    node: *const FerryNode,
    to: *const FerryIdentityKey,
    body: *const u8,
    len: usize,
    out: *mut FerryMessageId,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need(out, "out")?;
            let key = boundary::handle(to, "to")?.to_key()?;
            let body = boundary::read_bytes(body, len, "body")?;
            let id = n.block_on(n.node.send(&key, body))?;
            boundary::write_out(out, FerryMessageId::from(id), "out")
        })
    }
}

/// Acknowledges a received message (the app has stored or shown it): it is
/// not handed out again after a restart.
///
/// # Safety
/// `node` is NULL or live; `id` is NULL or valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_ack(
    node: *const FerryNode,
    id: *const FerryMessageId,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let id = *boundary::handle(id, "id")?;
            n.block_on(n.node.ack(id.into()))?;
            Ok(())
        })
    }
}

/// The stored status of a message this node sent (survives restarts).
///
/// # Safety
/// `node` is NULL or live; `id` is NULL or valid for reads; `out` is NULL
/// or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_message_status(
    node: *const FerryNode,
    id: *const FerryMessageId,
    out: *mut FerryStatus,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need(out, "out")?;
            let id = *boundary::handle(id, "id")?;
            let status = n.block_on(n.node.message_status(id.into()))?;
            boundary::write_out(out, FerryStatus::of(status), "out")
        })
    }
}

/// Deletes one message from the history: one we sent (`outgoing` non-zero)
/// or one we received (0; IDs are chosen by senders, so the direction says
/// which);
/// `*removed` (may be NULL) tells whether it was there.
///
/// # Safety
/// `node` is NULL or live; `id` is NULL or valid for reads; `removed` is
/// NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_delete_message(
    node: *const FerryNode,
    id: *const FerryMessageId,
    outgoing: u32,
    removed: *mut bool,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let id = *boundary::handle(id, "id")?;
            let was = n.block_on(n.node.delete_message(id.into(), outgoing != 0))?;
            if !removed.is_null() {
                boundary::write_out(removed, was, "removed")?;
            }
            Ok(())
        })
    }
}

/// Deletes the whole conversation with a contact from the history;
/// `*removed` (may be NULL) gets the number of messages deleted.
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads; `removed`
/// is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_delete_conversation(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
    removed: *mut usize,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let key = boundary::handle(contact, "contact")?.to_key()?;
            let count = n.block_on(n.node.delete_conversation(&key))?;
            if !removed.is_null() {
                boundary::write_out(removed, count, "removed")?;
            }
            Ok(())
        })
    }
}

/// Connects to a peer at `address` (a multiaddr) and waits (up to 30 s)
/// until the connection is up; writes the peer's ID to `*peer` (free with
/// `ferry_string_free`; may be NULL if not wanted).
///
/// # Safety
/// `node` is NULL or live; `address` is NULL or a NUL-terminated string;
/// `peer` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_dial(
    node: *const FerryNode,
    address: *const c_char,
    peer: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            if !peer.is_null() {
                boundary::need_ptr(peer, "peer")?;
            }
            let address: Multiaddr = boundary::read_str(address, "address")?
                .parse()
                .map_err(|e| Failure::invalid(format!("address: {e}")))?;
            if address.is_empty() {
                return Err(Failure::invalid("address is empty"));
            }
            let id = n.block_on(n.node.dial(address))?;
            if !peer.is_null() {
                boundary::write_string(peer, &id.to_string(), "peer")?;
            }
            Ok(())
        })
    }
}

/// The addresses the node listens on, one per line, each ending in
/// `/p2p/<peer id>` (free with `ferry_string_free`). Give one to another
/// node's `ferry_node_dial` to connect the two directly.
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_listen_addresses(
    node: *const FerryNode,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let addresses = n.block_on(n.node.listen_addrs())?;
            let text: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            boundary::write_string(out, &text.join("\n"), "out")
        })
    }
}

/// The connected peers, one per line: `<peer id> <transport> <address>`
/// for each of its connections (free with `ferry_string_free`).
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_peers(
    node: *const FerryNode,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let peers = n.block_on(n.node.peers())?;
            let mut lines = Vec::new();
            for peer in peers {
                for route in &peer.routes {
                    lines.push(format!(
                        "{} {} {}",
                        peer.peer,
                        route.transport.as_ref().map_or("unknown", |t| t.name()),
                        route.address
                    ));
                }
            }
            boundary::write_string(out, &lines.join("\n"), "out")
        })
    }
}

/// The bridge line of this node's pluggable-transport server into `*out`
/// (free with `ferry_string_free`), or NULL when it runs none.
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_bridge_line(
    node: *const FerryNode,
    out: *mut *mut c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let line = n.block_on(n.node.bridge_line())?;
            let text = line.map_or(std::ptr::null_mut(), |l| boundary::c_string(&l.to_string()));
            boundary::write_out(out, text, "out")
        })
    }
}

fn parse_peer(text: &str) -> Result<PeerId, Failure> {
    text.parse().map_err(|_| Failure::invalid("not a peer ID"))
}

/// Accepts (`open` non-zero) or stops accepting (0) in-person pairing from
/// peers on a direct link: open it only while the user is pairing.
///
/// # Safety
/// `node` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_allow_pairing(
    node: *const FerryNode,
    open: u32,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_node(node, |n| {
            n.block_on(n.node.allow_pairing(open != 0))?;
            Ok(())
        })
    }
}

/// Starts an in-person pairing with a connected peer (its peer ID as
/// text); both sides then get `FERRY_EVENT_PAIRING_CODE`.
///
/// # Safety
/// `node` is NULL or live; `peer` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_pair(
    node: *const FerryNode,
    peer: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let peer = parse_peer(boundary::read_str(peer, "peer")?)?;
            n.block_on(n.node.pair(peer))?;
            Ok(())
        })
    }
}

/// Answers a pairing code: `accept` non-zero if both devices show the
/// same code, 0 to decline.
/// The new verified contact goes to `*contact` (may be NULL); it is
/// all-zero when the pairing was declined.
///
/// # Safety
/// `node` is NULL or live; `peer` is NULL or a NUL-terminated string;
/// `contact` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_confirm_pairing(
    node: *const FerryNode,
    peer: *const c_char,
    accept: u32,
    contact: *mut FerryIdentityKey,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let peer = parse_peer(boundary::read_str(peer, "peer")?)?;
            let key = n.block_on(n.node.confirm_pairing(peer, accept != 0))?;
            if !contact.is_null() {
                let value = key
                    .map(|k| FerryIdentityKey::from_key(&k))
                    .unwrap_or_default();
                boundary::write_out(contact, value, "contact")?;
            }
            Ok(())
        })
    }
}

/// What an export wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FerryExportSummary {
    /// Envelopes written.
    pub envelopes: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// What an import did (each envelope counted once).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FerryImportSummary {
    /// Envelopes in the bundle.
    pub total: u64,
    /// Taken into custody, to carry on.
    pub imported: u64,
    /// Addressed to us (messages, receipts).
    pub for_us: u64,
    /// Already held, seen or delivered.
    pub duplicate: u64,
    /// Past their expiry.
    pub expired: u64,
    /// Malformed.
    pub invalid: u64,
    /// Refused by a custody quota.
    pub over_quota: u64,
    /// Not carried for another reason.
    pub declined: u64,
}

/// Writes the live envelopes to a sneakernet bundle at `path` (a USB
/// stick): all of them, or only this node's messages to `only_to` when it
/// is not NULL.
///
/// # Safety
/// `node` is NULL or live; `path` is NULL or a NUL-terminated string;
/// `only_to` is NULL or valid for reads; `out` is NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_export_bundle(
    node: *const FerryNode,
    path: *const c_char,
    only_to: *const FerryIdentityKey,
    out: *mut FerryExportSummary,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let path = boundary::read_str(path, "path")?;
            let filter = match only_to.as_ref() {
                None => ExportFilter::All,
                Some(key) => ExportFilter::To(vec![key.to_key()?]),
            };
            let report = n.block_on(n.node.export_bundle(path, filter))?;
            if !out.is_null() {
                let summary = FerryExportSummary {
                    envelopes: report.envelopes,
                    bytes: report.bytes,
                };
                boundary::write_out(out, summary, "out")?;
            }
            Ok(())
        })
    }
}

/// Imports a sneakernet bundle from `path`: checked whole first (a bundle
/// that fails any check imports nothing: `FERRY_RESULT_BUNDLE`), then each
/// envelope as if a stranger had sent it.
///
/// # Safety
/// `node` is NULL or live; `path` is NULL or a NUL-terminated string;
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_import_bundle(
    node: *const FerryNode,
    path: *const c_char,
    out: *mut FerryImportSummary,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            let path = boundary::read_str(path, "path")?;
            let report = n.block_on(n.node.import_bundle(path))?;
            if !out.is_null() {
                let s = report.summary;
                let summary = FerryImportSummary {
                    total: s.total,
                    imported: s.imported,
                    for_us: s.for_us,
                    duplicate: s.duplicate,
                    expired: s.expired,
                    invalid: s.invalid,
                    over_quota: s.over_quota,
                    declined: s.declined,
                };
                boundary::write_out(out, summary, "out")?;
            }
            Ok(())
        })
    }
}

/// Destroys the node's keys and store (the key file is overwritten in
/// place first) and stops it. Free the handle afterwards as usual.
///
/// # Safety
/// `node` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_wipe(node: *const FerryNode) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_node(node, |n| {
            n.stopped.store(true, Ordering::SeqCst);
            n.block_on(n.node.wipe())?;
            Ok(())
        })
    }
}

/// The panic button: destroys the store in `dir` without its passphrase,
/// whether or not a node has it open. `FERRY_RESULT_STORE` if `dir` holds
/// no Ferry store (nothing is touched). Blocking; no handle, so no last
/// error: the code is the answer.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_wipe_store(dir: *const c_char) -> FerryResult {
    guard(None, || {
        // SAFETY: NULL (refused) or a NUL-terminated string.
        let dir = unsafe { boundary::read_str(dir, "dir") }?;
        Node::wipe_store(dir)?;
        Ok(())
    })
}
