//! Plain C value types, owned buffers, and their free functions.

use std::ffi::{CString, c_char};

use ferry_node::{IdentityKey, MessageId};

use crate::boundary::{self, Failure, FerryResult, guard};

/// A Ferry identity key (a contact, or this node): 32 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FerryIdentityKey {
    /// The Ed25519 public key.
    pub bytes: [u8; 32],
}

impl FerryIdentityKey {
    pub(crate) fn from_key(key: &IdentityKey) -> Self {
        Self {
            bytes: key.to_bytes(),
        }
    }

    pub(crate) fn to_key(self) -> Result<IdentityKey, Failure> {
        IdentityKey::from_bytes(&self.bytes)
            .map_err(|_| Failure::invalid("not a valid identity key"))
    }
}

/// A message ID: 16 bytes (`ferry_message_id_to_hex` for display).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FerryMessageId {
    /// The ID's bytes.
    pub bytes: [u8; 16],
}

impl From<MessageId> for FerryMessageId {
    fn from(id: MessageId) -> Self {
        Self { bytes: id.0 }
    }
}

impl From<FerryMessageId> for MessageId {
    fn from(id: FerryMessageId) -> Self {
        MessageId(id.bytes)
    }
}

/// A byte buffer the library allocated; free it with `ferry_bytes_free`.
#[repr(C)]
#[derive(Debug)]
pub struct FerryBytes {
    /// The bytes (NULL when `len` is 0).
    pub data: *mut u8,
    /// How many.
    pub len: usize,
}

impl FerryBytes {
    pub(crate) fn empty() -> Self {
        Self {
            data: std::ptr::null_mut(),
            len: 0,
        }
    }

    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Self::empty();
        }
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        let data = Box::into_raw(boxed).cast::<u8>();
        Self { data, len }
    }

    /// Frees what [`FerryBytes::from_vec`] made and empties `self`.
    pub(crate) fn release(&mut self) {
        if self.data.is_null() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(self.data, self.len);
        // SAFETY: `data`/`len` came from `Box<[u8]>::into_raw` in
        // `from_vec` and were not changed by the app (the header says
        // so); they are cleared below so this runs once.
        drop(unsafe { Box::from_raw(slice) });
        *self = Self::empty();
    }
}

/// Frees a string the library returned and sets `*string` to NULL.
/// NULL and a pointer to NULL are ignored.
///
/// # Safety
/// `string` is NULL or points to a pointer that is NULL or was returned
/// by this library as a string to free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_string_free(string: *mut *mut c_char) {
    let _ = guard(None, || {
        if string.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; the caller promises it points to a pointer.
        let inner = unsafe { string.replace(std::ptr::null_mut()) };
        if !inner.is_null() {
            // SAFETY: the library made it with `CString::into_raw`.
            drop(unsafe { CString::from_raw(inner) });
        }
        Ok(())
    });
}

/// Frees a byte buffer the library returned and empties it (data NULL,
/// len 0), so a second call does nothing. NULL is ignored.
///
/// # Safety
/// `bytes` is NULL or points to a `FerryBytes` filled by this library (or
/// emptied by this function).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_bytes_free(bytes: *mut FerryBytes) {
    let _ = guard(None, || {
        // SAFETY: NULL or a valid `FerryBytes`, as the caller promises.
        if let Some(bytes) = unsafe { bytes.as_mut() } {
            bytes.release();
        }
        Ok(())
    });
}

/// Writes the 32 lowercase hex digits of `id` to `*out` (free with
/// `ferry_string_free`).
///
/// # Safety
/// `id` is NULL or valid for reads; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_message_id_to_hex(
    id: *const FerryMessageId,
    out: *mut *mut c_char,
) -> FerryResult {
    guard(None, || {
        boundary::need(out, "out")?;
        // SAFETY: NULL (refused) or valid for reads.
        let id = unsafe { boundary::handle(id, "id") }?;
        let text = MessageId::from(*id).to_string();
        // SAFETY: checked non-NULL above; valid for a write.
        unsafe { boundary::write_string(out, &text, "out") }
    })
}

/// Parses 32 hex digits into a message ID.
///
/// # Safety
/// `hex` is NULL or a NUL-terminated string; `out` is NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_message_id_from_hex(
    hex: *const c_char,
    out: *mut FerryMessageId,
) -> FerryResult {
    guard(None, || {
        boundary::need(out, "out")?;
        // SAFETY: NULL (refused) or a NUL-terminated string.
        let hex = unsafe { boundary::read_str(hex, "hex") }?;
        let id: MessageId = hex
            .parse()
            .map_err(|_| Failure::invalid("a message ID is 32 hex digits"))?;
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_out(out, FerryMessageId::from(id), "out") }
    })
}

/// The lowercase hex of an identity key (64 digits) to `*out` (free with
/// `ferry_string_free`); `FERRY_RESULT_INVALID_ARGUMENT` for 32 bytes that
/// are not a valid key.
///
/// # Safety
/// `key` is NULL or valid for reads; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_identity_key_to_hex(
    key: *const FerryIdentityKey,
    out: *mut *mut c_char,
) -> FerryResult {
    guard(None, || {
        boundary::need(out, "out")?;
        // SAFETY: NULL (refused) or valid for reads.
        let key = unsafe { boundary::handle(key, "key") }?.to_key()?;
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_string(out, &key.to_hex(), "out") }
    })
}

/// The QR code of a contact code as an SVG document (free with
/// `ferry_string_free`).
///
/// # Safety
/// `code` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_qr_svg(code: *const c_char, out: *mut *mut c_char) -> FerryResult {
    guard(None, || {
        boundary::need(out, "out")?;
        // SAFETY: NULL (refused) or a NUL-terminated string.
        let code = unsafe { boundary::read_str(code, "code") }?;
        let svg = ferry_core::contact::qr::to_svg(code)
            .map_err(|e| Failure::invalid(format!("QR code: {e}")))?;
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_string(out, &svg, "out") }
    })
}

/// The QR code of a contact code as PNG bytes, `scale` pixels per module
/// (1 to 32), into `*out` (free with `ferry_bytes_free`).
///
/// # Safety
/// `code` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_qr_png(
    code: *const c_char,
    scale: u32,
    out: *mut FerryBytes,
) -> FerryResult {
    guard(None, || {
        boundary::need(out, "out")?;
        if !(1..=32).contains(&scale) {
            return Err(Failure::invalid("scale is 1 to 32 pixels per module"));
        }
        // SAFETY: NULL (refused) or a NUL-terminated string.
        let code = unsafe { boundary::read_str(code, "code") }?;
        let png = ferry_core::contact::qr::to_png(code, scale)
            .map_err(|e| Failure::invalid(format!("QR code: {e}")))?;
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_out(out, FerryBytes::from_vec(png), "out") }
    })
}

/// The largest message body `ferry_node_send` accepts, in bytes.
#[unsafe(no_mangle)]
pub extern "C" fn ferry_max_message_body() -> usize {
    ferry_node::MAX_MESSAGE_BODY
}
