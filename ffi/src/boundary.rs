//! The boundary: result codes, the panic guard, last-error messages, and
//! the checked reading of what C passes in.

use std::{
    ffi::{CStr, c_char},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Mutex,
};

use ferry_node::{NodeError, SealError, SendError, StoreError};

/// What a call did. The numbers are fixed: new codes are only ever added.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerryResult {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL.
    NullArgument = 1,
    /// An argument was refused: invalid UTF-8, a wrong length, an address
    /// or bridge line that does not parse, a value out of range.
    InvalidArgument = 2,
    /// A contact code was refused (typo, not a Ferry code, forged card);
    /// the last error says which.
    InvalidCode = 3,
    /// The key is this node's own identity.
    OwnIdentity = 4,
    /// No contact with that key.
    UnknownContact = 5,
    /// A message body is over the limit (`ferry_max_message_body`).
    TooLarge = 6,
    /// The passphrase does not open the store.
    WrongPassphrase = 7,
    /// Another node (or process) has the store open.
    StoreLocked = 8,
    /// The store failed (I/O, corruption, a destroyed key).
    Store = 9,
    /// The network could not start, or a transport failed.
    Network = 10,
    /// A dial failed or timed out.
    Dial = 11,
    /// The configuration was refused; the last error says why.
    Config = 12,
    /// A bundle could not be written or was refused whole.
    Bundle = 13,
    /// The node has stopped (or was wiped); for `ferry_next_event`: it
    /// stopped and every event was read.
    Closed = 14,
    /// Nothing happened before the timeout (`ferry_next_event`, links).
    Timeout = 15,
    /// The library panicked; the call did nothing else. Please report it.
    Panic = 16,
    /// The peer is not connected, or no pairing waits with it.
    UnknownPeer = 17,
    /// A pairing was refused or failed.
    Pairing = 18,
    /// Any other failure; the last error has the message.
    Internal = 99,
}

impl FerryResult {
    fn text(self) -> &'static str {
        match self {
            Self::Ok => "ok\0",
            Self::NullArgument => "a required pointer was NULL\0",
            Self::InvalidArgument => "invalid argument\0",
            Self::InvalidCode => "invalid contact code\0",
            Self::OwnIdentity => "that is this node's own identity\0",
            Self::UnknownContact => "unknown contact\0",
            Self::TooLarge => "message body too large\0",
            Self::WrongPassphrase => "wrong passphrase\0",
            Self::StoreLocked => "the store is in use by another node or process\0",
            Self::Store => "store failure\0",
            Self::Network => "network failure\0",
            Self::Dial => "dial failed\0",
            Self::Config => "configuration refused\0",
            Self::Bundle => "bundle refused or not written\0",
            Self::Closed => "the node has stopped\0",
            Self::Timeout => "timed out\0",
            Self::Panic => "internal panic (a bug; please report it)\0",
            Self::UnknownPeer => "unknown peer\0",
            Self::Pairing => "pairing refused or failed\0",
            Self::Internal => "internal error\0",
        }
    }

    /// The static, NUL-terminated description of `code`.
    pub(crate) fn describe(code: u32) -> &'static str {
        const ALL: [FerryResult; 20] = [
            FerryResult::Ok,
            FerryResult::NullArgument,
            FerryResult::InvalidArgument,
            FerryResult::InvalidCode,
            FerryResult::OwnIdentity,
            FerryResult::UnknownContact,
            FerryResult::TooLarge,
            FerryResult::WrongPassphrase,
            FerryResult::StoreLocked,
            FerryResult::Store,
            FerryResult::Network,
            FerryResult::Dial,
            FerryResult::Config,
            FerryResult::Bundle,
            FerryResult::Closed,
            FerryResult::Timeout,
            FerryResult::Panic,
            FerryResult::UnknownPeer,
            FerryResult::Pairing,
            FerryResult::Internal,
        ];
        ALL.iter()
            .find(|r| **r as u32 == code)
            .map_or("unknown result code\0", |r| r.text())
    }
}

/// A failure with its code and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: FerryResult,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: FerryResult, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(FerryResult::NullArgument, format!("{what} is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(FerryResult::InvalidArgument, message)
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::Config(_) => FerryResult::Config,
            NodeError::Store(StoreError::WrongPassphrase) => FerryResult::WrongPassphrase,
            NodeError::Store(StoreError::Locked) => FerryResult::StoreLocked,
            NodeError::Store(_) | NodeError::Engine(_) => FerryResult::Store,
            NodeError::Send(SendError::Seal(SealError::UnknownContact)) => {
                FerryResult::UnknownContact
            }
            NodeError::Send(SendError::Seal(SealError::TooLarge)) | NodeError::TooLarge { .. } => {
                FerryResult::TooLarge
            }
            NodeError::Send(_) => FerryResult::Store,
            NodeError::InvalidCode(_) | NodeError::Card(_) => FerryResult::InvalidCode,
            NodeError::OwnIdentity => FerryResult::OwnIdentity,
            NodeError::Network(_) | NodeError::PluggableTransport(_) => FerryResult::Network,
            NodeError::Dial(_) => FerryResult::Dial,
            NodeError::UnknownPeer => FerryResult::UnknownPeer,
            NodeError::PairingRefused(_) | NodeError::Pairing(_) => FerryResult::Pairing,
            NodeError::Bundle(_) => FerryResult::Bundle,
            NodeError::InvalidArgument(_) => FerryResult::InvalidArgument,
            NodeError::Closed => FerryResult::Closed,
            _ => FerryResult::Internal,
        };
        Self::new(code, e.to_string())
    }
}

/// A handle's last error message: the message of the last call on the
/// handle that failed (a timeout is not a failure). Successes do not clear
/// it, so another thread's success cannot erase a message before the
/// failing thread reads it.
#[derive(Debug, Default)]
pub(crate) struct LastError(Mutex<Option<String>>);

impl LastError {
    pub(crate) fn set(&self, message: &str) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(message.to_owned());
    }

    /// A copy for the app (freed with `ferry_string_free`), or NULL if no
    /// call on this handle has failed.
    pub(crate) fn copy(&self) -> *mut c_char {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_deref().map_or(std::ptr::null_mut(), c_string)
    }
}

/// Runs one entry point: a panic becomes [`FerryResult::Panic`], a
/// failure is recorded in `errors` (when there is a handle to hold it).
pub(crate) fn guard(
    errors: Option<&LastError>,
    body: impl FnOnce() -> Result<(), Failure>,
) -> FerryResult {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let failure = match outcome {
        Ok(Ok(())) => return FerryResult::Ok,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            // The payload's own Drop could panic too: never outside a
            // boundary (a panic while unwinding would abort the app).
            if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                std::mem::forget(again);
            }
            Failure::new(FerryResult::Panic, format!("internal panic: {what}"))
        }
    };
    if let Some(errors) = errors
        && failure.code != FerryResult::Timeout
    {
        errors.set(&failure.message);
    }
    failure.code
}

/// Runs an entry point that returns a value rather than a result: a panic
/// gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                std::mem::forget(again);
            }
            fallback
        }
    }
}

/// Reads a borrowed C string: NULL and invalid UTF-8 are refused.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn read_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string
    // that outlives this call.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Reads a borrowed byte buffer; `len` 0 with a NULL pointer is empty.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for the call.
pub(crate) unsafe fn read_bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("{what}: length out of range")));
    }
    // SAFETY: not NULL, `len` fits in isize, and the caller promises `len`
    // readable bytes that outlive this call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows what a handle pointer points to.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` made by this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller promises a live handle (or NULL, refused here).
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Writes `value` through an out-pointer.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL; the caller promises it is valid for a write. The
    // old value is not read or dropped (it may be uninitialised).
    unsafe { out.write(value) };
    Ok(())
}

/// Writes a new C string (freed with `ferry_string_free`) through an
/// out-pointer; nothing is allocated when `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn write_string(
    out: *mut *mut c_char,
    text: &str,
    what: &str,
) -> Result<(), Failure> {
    need(out, what)?;
    // SAFETY: not NULL; the caller promises it is valid for a write.
    unsafe { write_out(out, c_string(text), what) }
}

/// Checks an out-pointer before any work is done, so a call that would
/// fail on it has no effect.
pub(crate) fn need<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    Ok(())
}

/// Checks a pointer out-parameter and sets it to NULL at once, so that on
/// any failure the app's variable is NULL (safe to pass to a free).
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn need_ptr<T>(out: *mut *mut T, what: &str) -> Result<(), Failure> {
    need(out, what)?;
    // SAFETY: not NULL; the caller promises it is valid for a write.
    unsafe { out.write(std::ptr::null_mut()) };
    Ok(())
}

/// A NUL-terminated copy of `text` (cut at an interior NUL) in memory from
/// the C allocator, freed with `ferry_string_free` (`free`, which needs no
/// length: an app that shortens the string in place frees it correctly).
/// NULL if the allocator fails.
pub(crate) fn c_string(text: &str) -> *mut c_char {
    let text = text.split('\0').next().unwrap_or_default();
    c_alloc_copy(text.as_bytes(), true).cast()
}

/// Copies `bytes` (plus a NUL if `nul`) into memory from `malloc`; NULL
/// for an empty copy without NUL or if the allocator fails.
pub(crate) fn c_alloc_copy(bytes: &[u8], nul: bool) -> *mut u8 {
    let len = bytes.len() + usize::from(nul);
    if len == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: `malloc` with a non-zero size; the result is checked.
    let ptr = unsafe { libc::malloc(len) }.cast::<u8>();
    if ptr.is_null() {
        return ptr;
    }
    // SAFETY: `ptr` has room for `len` bytes and does not overlap `bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
        if nul {
            ptr.add(bytes.len()).write(0);
        }
    }
    ptr
}

/// Frees what [`c_alloc_copy`] (or [`c_string`]) returned; NULL is fine.
///
/// # Safety
/// `ptr` is NULL or came from [`c_alloc_copy`] and was not freed before.
pub(crate) unsafe fn c_free(ptr: *mut u8) {
    // SAFETY: NULL or from `malloc`, as the caller promises.
    unsafe { libc::free(ptr.cast()) };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_panic_inside_an_entry_point_is_an_error_code_not_an_abort() {
        let errors = LastError::default();
        let result = guard(Some(&errors), || panic!("boom in the library"));
        assert_eq!(result, FerryResult::Panic);
        let message = errors.copy();
        // SAFETY: a string this module just allocated, freed below.
        let text = unsafe { CStr::from_ptr(message) }
            .to_str()
            .unwrap()
            .to_owned();
        // SAFETY: as above.
        unsafe { c_free(message.cast()) };
        assert!(text.contains("boom in the library"));
        // A panic with a formatted payload, and no handle to record it in.
        let n = 3;
        assert_eq!(guard(None, || panic!("formatted {n}")), FerryResult::Panic);
        // A success keeps the message of the last failure; a timeout is
        // not a failure.
        assert_eq!(guard(Some(&errors), || Ok(())), FerryResult::Ok);
        assert_eq!(
            guard(Some(&errors), || Err(Failure::new(
                FerryResult::Timeout,
                "t"
            ))),
            FerryResult::Timeout
        );
        let kept = errors.copy();
        assert!(!kept.is_null());
        // SAFETY: allocated by `copy`.
        unsafe { c_free(kept.cast()) };
    }

    #[test]
    fn every_code_has_a_fixed_number_and_a_description() {
        assert_eq!(FerryResult::Ok as u32, 0);
        assert_eq!(FerryResult::Closed as u32, 14);
        assert_eq!(FerryResult::Panic as u32, 16);
        assert_eq!(FerryResult::Internal as u32, 99);
        for code in (0..=18).chain([99]) {
            assert_ne!(FerryResult::describe(code), "unknown result code\0");
            assert!(FerryResult::describe(code).ends_with('\0'));
        }
        assert_eq!(FerryResult::describe(19), "unknown result code\0");
        assert_eq!(FerryResult::describe(u32::MAX), "unknown result code\0");
    }
}
