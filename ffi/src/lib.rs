//! The C ABI of the Ferry node: what Android, iOS and desktop apps link.
//!
//! A thin layer over [`ferry_node::Node`]; the header `include/ferry.h` is
//! generated from this crate by cbindgen (a test regenerates it and fails
//! on a difference). See `docs/embedding.md` for building and lifecycle.
//!
//! # Rules every function follows
//! - **Handles are opaque** (`FerryConfig`, `FerryNode`, `FerryLink`,
//!   `FerryEvent`, lists); each is freed only by its own `*_free`
//!   function, which takes the address of the app's pointer and sets it to
//!   NULL, so a second free of the same variable does nothing.
//! - **Inputs are borrowed** only for the duration of the call; nothing the
//!   app passes is kept.
//! - **Outputs** (strings, byte buffers, lists, events) are allocated by
//!   the library and freed by the library's free functions only.
//! - **Errors**: every function returns a [`FerryResult`] with a fixed
//!   number; [`ferry_result_str`] names it and `ferry_*_last_error` gives
//!   the handle's last message. NULL pointers, invalid UTF-8 and wrong
//!   lengths are errors, never crashes.
//! - **Panics** never cross the boundary: each entry point runs inside
//!   `catch_unwind` and a panic becomes [`FerryResult::Panic`].
//! - **Threads**: every function may be called from any thread, several
//!   at once on the same handle. Each node owns its tokio runtime; Ferry
//!   keeps no process-wide state (two of its dependencies do run shared
//!   background threads: sled's I/O pool and a timer thread). Nothing
//!   calls back into the app.
//! - **Shutdown order**: stop the node ([`node::ferry_node_stop`]), let
//!   every thread blocked in [`events::ferry_next_event`] or a link call
//!   return (they return `FERRY_RESULT_CLOSED`), free links, then free the
//!   node. `ferry_node_free` refuses new calls and waits for calls still
//!   running on other threads before it frees anything.

mod boundary;
pub mod config;
pub mod events;
pub mod link;
pub mod lists;
pub mod node;
mod runtime;
pub mod types;

pub use boundary::FerryResult;

/// The ABI version: bumped whenever a function's signature, a struct's
/// layout or a result code's meaning changes. Compare it with
/// [`ferry_abi_version`] at start-up to catch a header/library mismatch.
pub const FERRY_ABI_VERSION: u32 = 1;

/// The version of this ABI the library implements ([`FERRY_ABI_VERSION`]
/// when the library was built).
#[unsafe(no_mangle)]
pub extern "C" fn ferry_abi_version() -> u32 {
    boundary::guard_value(0, || FERRY_ABI_VERSION)
}

/// The library's version, a static NUL-terminated string (never freed).
#[unsafe(no_mangle)]
pub extern "C" fn ferry_version() -> *const std::ffi::c_char {
    boundary::guard_value(std::ptr::null(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0")
            .as_ptr()
            .cast::<std::ffi::c_char>()
    })
}

/// A static NUL-terminated description of a result code (never freed);
/// unknown codes give "unknown result code".
#[unsafe(no_mangle)]
pub extern "C" fn ferry_result_str(code: u32) -> *const std::ffi::c_char {
    boundary::guard_value(std::ptr::null(), || {
        FerryResult::describe(code).as_ptr().cast()
    })
}
