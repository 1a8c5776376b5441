#![no_main]
//! Stateful: two honest engines and one adversarial peer feeding arbitrary
//! sequences of frames and envelopes; invariants checked after every step
//! (see `core/tests/support/peer_session.rs`).
//!
//! Build it with `cargo fuzz run --no-cfg-fuzzing peer_session`: under the
//! `fuzzing` cfg vodozemac skips Olm MAC checks, so a message tried against
//! the wrong session "decrypts" and corrupts it, which this target then
//! reports as honest mail lost.

use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/support/peer_session.rs"]
mod peer_session;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = peer_session::run(data) {
        panic!("invariant violated: {violation}");
    }
});
