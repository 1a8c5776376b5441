//! Plain C value types, owned buffers, and their free functions.

use std::ffi::c_char;

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

/// A byte buffer the library allocated; free it with `ferry_bytes_free`
/// (pass it back with `data` unchanged).
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

    /// A copy of `bytes` in memory from the C allocator (empty, or the
    /// allocator failed: NULL and 0).
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        let data = boundary::c_alloc_copy(bytes, false);
        if data.is_null() {
            return Self::empty();
        }
        Self {
            data,
            len: bytes.len(),
        }
    }

    /// Frees the buffer (its length is not needed) and empties `self`.
    ///
    /// # Safety
    /// `data` is NULL or came from [`FerryBytes::copy_of`], not freed yet.
    pub(crate) unsafe fn release(&mut self) {
        // SAFETY: as the caller promises.
        unsafe { boundary::c_free(self.data) };
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
        // SAFETY: NULL or a string the library allocated with `malloc`
        // (`free` needs no length: a string shortened in place is fine).
        unsafe { boundary::c_free(inner.cast()) };
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
        // SAFETY: NULL or a valid `FerryBytes` filled by this library, as
        // the caller promises.
        if let Some(bytes) = unsafe { bytes.as_mut() } {
            // SAFETY: `data` came from `copy_of` (or is NULL).
            unsafe { bytes.release() };
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
        // Empty at once: on any failure the app's struct is safe to free.
        // SAFETY: checked non-NULL above.
        unsafe { out.write(FerryBytes::empty()) };
        if !(1..=32).contains(&scale) {
            return Err(Failure::invalid("scale is 1 to 32 pixels per module"));
        }
        // SAFETY: NULL (refused) or a NUL-terminated string.
        let code = unsafe { boundary::read_str(code, "code") }?;
        let png = ferry_core::contact::qr::to_png(code, scale)
            .map_err(|e| Failure::invalid(format!("QR code: {e}")))?;
        // SAFETY: checked non-NULL above.
        unsafe { boundary::write_out(out, FerryBytes::copy_of(&png), "out") }
    })
}

/// The largest message body `ferry_node_send` accepts, in bytes.
#[unsafe(no_mangle)]
pub extern "C" fn ferry_max_message_body() -> usize {
    boundary::guard_value(0, || ferry_node::MAX_MESSAGE_BODY)
}
