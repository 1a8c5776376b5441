//! Lists the app reads: contacts and a page of a conversation.

use std::ffi::c_char;

use crate::{
    boundary::{self, guard},
    node::{FerryNode, FerryStatus, with_node},
    types::{FerryBytes, FerryIdentityKey, FerryMessageId},
};

/// One contact.
#[repr(C)]
#[derive(Debug)]
pub struct FerryContact {
    /// Their identity key.
    pub identity: FerryIdentityKey,
    /// The name to show: the user's nickname, else the name on their card;
    /// NULL if neither. Owned by the list.
    pub name: *mut c_char,
    /// Whether the user verified them.
    pub verified: bool,
}

/// The contacts (free with `ferry_contact_list_free`).
#[repr(C)]
#[derive(Debug)]
pub struct FerryContactList {
    /// The contacts.
    pub items: *mut FerryContact,
    /// How many.
    pub len: usize,
}

/// One message of a conversation.
#[repr(C)]
#[derive(Debug)]
pub struct FerryStoredMessage {
    /// Its place in the history: pass it as `before` for older ones.
    pub seq: u64,
    /// The message ID.
    pub message_id: FerryMessageId,
    /// Whether we sent it.
    pub outgoing: bool,
    /// When it was sent (our clock for ours, the sender's otherwise).
    pub sent_at: u64,
    /// When it reached us (received messages), else 0.
    pub received_at: u64,
    /// For sent messages: the status (`FERRY_MESSAGE_STATUS_UNKNOWN` for
    /// received ones).
    pub status: FerryStatus,
    /// The body, owned by the list.
    pub body: FerryBytes,
}

/// A page of messages, newest first (free with `ferry_message_list_free`).
#[repr(C)]
#[derive(Debug)]
pub struct FerryMessageList {
    /// The messages.
    pub items: *mut FerryStoredMessage,
    /// How many.
    pub len: usize,
}

/// A list as allocated: what the app sees (`items`, `len`), then private
/// copies of what the library frees, so the free never reads a field the
/// app may have changed.
#[repr(C)]
struct OwnedList<L> {
    public: L,
    items: *mut u8,
    layout: std::alloc::Layout,
    /// Strings and buffers inside the items (from `malloc`).
    owned: Vec<*mut u8>,
}

/// Moves `items` into a raw array; returns it with its layout.
fn raw_array<T>(items: Vec<T>) -> (*mut T, usize, std::alloc::Layout) {
    let boxed = items.into_boxed_slice();
    let len = boxed.len();
    let layout = std::alloc::Layout::for_value::<[T]>(&boxed);
    (Box::into_raw(boxed).cast::<T>(), len, layout)
}

/// Frees a list made by `ferry_node_contacts` or `ferry_node_messages`.
///
/// # Safety
/// `list` came from one of them (an `OwnedList<L>`) and is freed once.
unsafe fn free_list<L>(list: *mut L) {
    let owned = list.cast::<OwnedList<L>>();
    // SAFETY: as the caller promises; only private fields are read, and
    // the allocations are released without reading what the app sees.
    unsafe {
        let items = std::ptr::addr_of!((*owned).items).read();
        let layout = std::ptr::addr_of!((*owned).layout).read();
        let inner = std::ptr::addr_of!((*owned).owned).read();
        for ptr in inner {
            boundary::c_free(ptr);
        }
        if layout.size() > 0 {
            std::alloc::dealloc(items, layout);
        }
        std::alloc::dealloc(owned.cast(), std::alloc::Layout::new::<OwnedList<L>>());
    }
}

/// Our contacts into `*out` (free with `ferry_contact_list_free`).
///
/// # Safety
/// `node` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_contacts(
    node: *const FerryNode,
    out: *mut *mut FerryContactList,
) -> crate::FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let contacts = n.block_on(n.node.contacts())?;
            let items: Vec<FerryContact> = contacts
                .iter()
                .map(|c| FerryContact {
                    identity: FerryIdentityKey::from_key(&c.identity),
                    name: c.name().map_or(std::ptr::null_mut(), boundary::c_string),
                    verified: c.verified,
                })
                .collect();
            let owned_names = items.iter().map(|c| c.name.cast::<u8>()).collect();
            let (items, len, layout) = raw_array(items);
            let list = Box::new(OwnedList {
                public: FerryContactList { items, len },
                items: items.cast(),
                layout,
                owned: owned_names,
            });
            boundary::write_out(out, Box::into_raw(list).cast(), "out")
        })
    }
}

/// Frees a contact list and sets `*list` to NULL; NULL and a pointer to
/// NULL are ignored.
///
/// # Safety
/// `list` is NULL or points to NULL or to a list from `ferry_node_contacts`
/// not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_contact_list_free(list: *mut *mut FerryContactList) {
    let _ = guard(None, || {
        if list.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's list pointer.
        let inner = unsafe { list.replace(std::ptr::null_mut()) };
        if inner.is_null() {
            return Ok(());
        }
        // SAFETY: made by `ferry_node_contacts`; the app's pointer is NULL
        // now, so this runs once.
        unsafe { free_list(inner) };
        Ok(())
    });
}

/// A page of the conversation with `contact`, newest first: up to `limit`
/// messages (at most 1000) stored before `before` (a `seq`; 0 for the
/// newest). Free it with `ferry_message_list_free`.
///
/// # Safety
/// `node` is NULL or live; `contact` is NULL or valid for reads; `out` is
/// NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_node_messages(
    node: *const FerryNode,
    contact: *const FerryIdentityKey,
    before: u64,
    limit: u32,
    out: *mut *mut FerryMessageList,
) -> crate::FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let key = boundary::handle(contact, "contact")?.to_key()?;
            let before = (before != 0).then_some(before);
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let page = n.block_on(n.node.messages(&key, before, limit))?;
            let items: Vec<FerryStoredMessage> = page
                .into_iter()
                .map(|m| FerryStoredMessage {
                    seq: m.seq,
                    message_id: m.message_id.into(),
                    outgoing: m.outgoing,
                    sent_at: m.sent_at,
                    received_at: m.received_at.unwrap_or(0),
                    status: FerryStatus::of(m.status),
                    body: FerryBytes::copy_of(&m.body),
                })
                .collect();
            let owned_bodies = items.iter().map(|m| m.body.data).collect();
            let (items, len, layout) = raw_array(items);
            let list = Box::new(OwnedList {
                public: FerryMessageList { items, len },
                items: items.cast(),
                layout,
                owned: owned_bodies,
            });
            boundary::write_out(out, Box::into_raw(list).cast(), "out")
        })
    }
}

/// Frees a message list and sets `*list` to NULL; NULL and a pointer to
/// NULL are ignored.
///
/// # Safety
/// `list` is NULL or points to NULL or to a list from `ferry_node_messages`
/// not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_message_list_free(list: *mut *mut FerryMessageList) {
    let _ = guard(None, || {
        if list.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's list pointer.
        let inner = unsafe { list.replace(std::ptr::null_mut()) };
        if inner.is_null() {
            return Ok(());
        }
        // SAFETY: made by `ferry_node_messages`; the app's pointer is NULL
        // now, so this runs once.
        unsafe { free_list(inner) };
        Ok(())
    });
}
