//! Byte-pipe links from the app: a Bluetooth L2CAP channel, a Wi-Fi
//! Direct socket, anything the app's radios open. The app pumps bytes both
//! ways with `ferry_link_write` and `ferry_link_read`; the node runs its
//! encrypted, multiplexed connection over them like over TCP.
//!
//! No callbacks: the app calls in from its own threads (a reader thread
//! and a writer thread per link is the usual shape), and nothing runs
//! under one of the library's locks when it returns.

use std::{
    collections::VecDeque,
    ffi::c_char,
    io,
    pin::Pin,
    sync::{Arc, Condvar, Mutex},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use crate::{
    boundary::{self, Failure, FerryResult, LastError, guard},
    node::{FerryNode, with_node},
};

/// Bytes buffered each way before a writer waits: about one Noise frame
/// plus headroom, so a slow radio pushes back instead of filling memory.
const BUFFER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Pipe {
    /// From the node to the app (`ferry_link_read`).
    to_app: VecDeque<u8>,
    /// From the app to the node (`ferry_link_write`).
    to_node: VecDeque<u8>,
    /// The app closed its end (`ferry_link_close` / free).
    app_closed: bool,
    /// The node closed its end (the connection ended).
    node_closed: bool,
    /// The node's reader and writer, waiting for bytes or room.
    node_read: Option<Waker>,
    node_write: Option<Waker>,
}

#[derive(Debug, Default)]
struct Shared {
    pipe: Mutex<Pipe>,
    /// Wakes app threads waiting in `ferry_link_read` / `ferry_link_write`.
    app: Condvar,
}

/// The node's end: a futures `AsyncRead + AsyncWrite`.
struct NodeEnd(Arc<Shared>);

impl futures::AsyncRead for NodeEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut pipe) = self.0.pipe.lock() else {
            return Poll::Ready(Err(io::Error::other("link lock poisoned")));
        };
        if pipe.to_node.is_empty() {
            if pipe.app_closed || pipe.node_closed {
                return Poll::Ready(Ok(0));
            }
            pipe.node_read = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(pipe.to_node.len());
        for (slot, byte) in buf.iter_mut().zip(pipe.to_node.drain(..n)) {
            *slot = byte;
        }
        drop(pipe);
        // Room for the app's writer.
        self.0.app.notify_all();
        Poll::Ready(Ok(n))
    }
}

impl futures::AsyncWrite for NodeEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut pipe) = self.0.pipe.lock() else {
            return Poll::Ready(Err(io::Error::other("link lock poisoned")));
        };
        if pipe.app_closed || pipe.node_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = BUFFER.saturating_sub(pipe.to_app.len());
        if room == 0 {
            pipe.node_write = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        pipe.to_app.extend(buf.iter().take(n));
        drop(pipe);
        self.0.app.notify_all();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wakers = match self.0.pipe.lock() {
            Ok(mut pipe) => {
                pipe.node_closed = true;
                (pipe.node_read.take(), pipe.node_write.take())
            }
            Err(_) => (None, None),
        };
        // Woken outside the lock: a reader waiting on this end sees EOF.
        if let Some(w) = wakers.0 {
            w.wake();
        }
        if let Some(w) = wakers.1 {
            w.wake();
        }
        self.0.app.notify_all();
        Poll::Ready(Ok(()))
    }
}

impl Drop for NodeEnd {
    fn drop(&mut self) {
        let wakers = match self.0.pipe.lock() {
            Ok(mut pipe) => {
                pipe.node_closed = true;
                (pipe.node_read.take(), pipe.node_write.take())
            }
            Err(_) => (None, None),
        };
        drop(wakers);
        self.0.app.notify_all();
    }
}

/// A link the app pumps (opaque). Made by `ferry_link_open`, freed by
/// `ferry_link_free`.
#[derive(Debug)]
pub struct FerryLink {
    shared: Arc<Shared>,
    id: u64,
    errors: LastError,
}

impl FerryLink {
    /// Closes the app's end: the node sees end-of-stream.
    fn close(&self) {
        let wakers = match self.shared.pipe.lock() {
            Ok(mut pipe) => {
                pipe.app_closed = true;
                (pipe.node_read.take(), pipe.node_write.take())
            }
            Err(_) => (None, None),
        };
        // Woken outside the lock.
        if let Some(w) = wakers.0 {
            w.wake();
        }
        if let Some(w) = wakers.1 {
            w.wake();
        }
        self.shared.app.notify_all();
    }
}

fn poisoned() -> Failure {
    Failure::new(FerryResult::Internal, "link lock poisoned")
}

/// Runs one call on a live link handle.
///
/// # Safety
/// `link` is NULL or a live handle from `ferry_link_open`.
unsafe fn with_link(
    link: *const FerryLink,
    f: impl FnOnce(&FerryLink) -> Result<(), Failure>,
) -> FerryResult {
    // SAFETY: NULL or live, as the caller promises.
    let Some(link) = (unsafe { link.as_ref() }) else {
        return FerryResult::NullArgument;
    };
    guard(Some(&link.errors), || f(link))
}

/// Opens a link on `node` for a byte stream the app carries (the other
/// end must reach another Ferry node's link, over any reliable, ordered
/// channel), labelled `label` (1 to 128 bytes, the app's own name for it;
/// it comes back in `LINK_UP`/`LINK_DOWN`/`LINK_FAILED` events). Which side
/// opened the radio channel does not matter. Pump each direction from its
/// own thread: one thread blocked writing into a full buffer stops reading
/// the other way, and both ends can then wait on each other.
///
/// # Safety
/// `node` is NULL or live; `label` is NULL or a NUL-terminated string;
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_open(
    node: *const FerryNode,
    label: *const c_char,
    out: *mut *mut FerryLink,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_node(node, |n| {
            boundary::need_ptr(out, "out")?;
            let label = boundary::read_str(label, "label")?;
            let shared = Arc::new(Shared::default());
            let end = NodeEnd(shared.clone());
            let id = n.block_on(n.node.attach_link(end, label))?;
            let link = Box::new(FerryLink {
                shared,
                id: id.0,
                errors: LastError::default(),
            });
            boundary::write_out(out, Box::into_raw(link), "out")
        })
    }
}

/// The link's ID (as in its events).
///
/// # Safety
/// `link` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_id(link: *const FerryLink) -> u64 {
    boundary::guard_value(0, || {
        // SAFETY: NULL or live, as the caller promises.
        unsafe { link.as_ref() }.map_or(0, |l| l.id)
    })
}

/// Feeds bytes that arrived on the radio into the node. Waits up to
/// `timeout_ms` for room (64 KiB are buffered); `*written` gets how many
/// bytes were taken (possibly fewer than `len`: call again with the rest).
/// `FERRY_RESULT_TIMEOUT` if none fit in time, `FERRY_RESULT_CLOSED` once
/// either end closed.
///
/// # Safety
/// `link` is NULL or live; `data` is NULL (with `len` 0) or `len` readable
/// bytes; `written` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_write(
    link: *const FerryLink,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    written: *mut usize,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_link(link, |l| {
            boundary::need(written, "written")?;
            boundary::write_out(written, 0, "written")?;
            let data = boundary::read_bytes(data, len, "data")?;
            if data.is_empty() {
                return Ok(());
            }
            let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
            let mut pipe = l.shared.pipe.lock().map_err(|_| poisoned())?;
            loop {
                if pipe.app_closed || pipe.node_closed {
                    return Err(Failure::new(FerryResult::Closed, "the link is closed"));
                }
                let room = BUFFER.saturating_sub(pipe.to_node.len());
                if room > 0 {
                    let n = room.min(data.len());
                    pipe.to_node.extend(data.iter().take(n));
                    let waker = pipe.node_read.take();
                    drop(pipe);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return boundary::write_out(written, n, "written");
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Failure::new(FerryResult::Timeout, "no room"));
                }
                pipe = l
                    .shared
                    .app
                    .wait_timeout(pipe, deadline - now)
                    .map(|(guard, _)| guard)
                    .map_err(|_| poisoned())?;
            }
        })
    }
}

/// Takes bytes the node wants sent over the radio into `buf` (up to
/// `capacity`), waiting up to `timeout_ms` for some; `*read` gets how
/// many. `FERRY_RESULT_TIMEOUT` if none came in time, `FERRY_RESULT_CLOSED`
/// once either end closed and nothing is left to read.
///
/// # Safety
/// `link` is NULL or live; `buf` is NULL or valid for `capacity` bytes of
/// writes; `read` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_read(
    link: *const FerryLink,
    buf: *mut u8,
    capacity: usize,
    timeout_ms: u32,
    read: *mut usize,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with_link(link, |l| {
            boundary::need(read, "read")?;
            boundary::write_out(read, 0, "read")?;
            if buf.is_null() {
                return Err(Failure::null("buf"));
            }
            if capacity == 0 || capacity > isize::MAX as usize {
                return Err(Failure::invalid("capacity is 1 or more"));
            }
            let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
            let mut pipe = l.shared.pipe.lock().map_err(|_| poisoned())?;
            loop {
                if !pipe.to_app.is_empty() {
                    let n = capacity.min(pipe.to_app.len());
                    // SAFETY: not NULL, and the caller promises `capacity`
                    // writable bytes; `n <= capacity`.
                    let out = std::slice::from_raw_parts_mut(buf, n);
                    for (slot, byte) in out.iter_mut().zip(pipe.to_app.drain(..n)) {
                        *slot = byte;
                    }
                    let waker = pipe.node_write.take();
                    drop(pipe);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return boundary::write_out(read, n, "read");
                }
                if pipe.app_closed || pipe.node_closed {
                    return Err(Failure::new(FerryResult::Closed, "the link is closed"));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Failure::new(FerryResult::Timeout, "no bytes"));
                }
                pipe = l
                    .shared
                    .app
                    .wait_timeout(pipe, deadline - now)
                    .map(|(guard, _)| guard)
                    .map_err(|_| poisoned())?;
            }
        })
    }
}

/// Closes the link (the radio channel went away): the node sees the
/// stream end and reports `LINK_DOWN`; threads waiting in read or write
/// return `FERRY_RESULT_CLOSED`. The handle stays valid until
/// `ferry_link_free`.
///
/// # Safety
/// `link` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_close(link: *const FerryLink) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_link(link, |l| {
            l.close();
            Ok(())
        })
    }
}

/// The link's last error message (free with `ferry_string_free`), or NULL.
///
/// # Safety
/// `link` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_last_error(link: *const FerryLink) -> *mut c_char {
    boundary::guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or live, as the caller promises.
        match unsafe { link.as_ref() } {
            Some(link) => link.errors.copy(),
            None => std::ptr::null_mut(),
        }
    })
}

/// Closes (if still open) and frees a link, and sets `*link` to NULL; NULL
/// and a pointer to NULL are ignored. No other thread may be inside a call
/// on it. The link may be freed before or after its node.
///
/// # Safety
/// `link` is NULL or points to NULL or to a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_link_free(link: *mut *mut FerryLink) {
    let _ = guard(None, || {
        if link.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's handle pointer.
        let inner = unsafe { link.replace(std::ptr::null_mut()) };
        if inner.is_null() {
            return Ok(());
        }
        // SAFETY: made by `Box::into_raw` in `ferry_link_open`, once.
        let owned = unsafe { Box::from_raw(inner) };
        owned.close();
        Ok(())
    });
}
