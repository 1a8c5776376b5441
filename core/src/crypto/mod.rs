//! End-to-end encryption that survives store-and-forward.
//!
//! Layers, inside out (see `docs/crypto.md` for the full specification):
//!
//! 1. **Payload** ([`crate::proto::v1::Payload`]): text, receipt, prekey
//!    top-up, or (only in requests) a contact request.
//! 2. **Session**: an Olm double ratchet (vodozemac) per contact, started
//!    from a one-time or fallback prekey on the contact's card; or, for
//!    first contact, a Noise `X` message to the contact's request key.
//! 3. **Envelope**: the session message, padded to a fixed bucket and sealed
//!    with XChaCha20-Poly1305 under a pairwise key, addressed with a 16-byte
//!    rotating recipient tag; the content ID is a hash of tag, expiry and
//!    sealed body.
//!
//! [`Keyring`] holds identity, contacts and sessions and does the sealing and
//! opening; [`Pairing`] runs in-person pairing (Noise `XX`, then committed
//! nonces, and a short
//! authentication string); [`ReplayGuard`] remembers opened envelopes.
//! Nothing here performs I/O or reads the clock.

pub mod aead;
mod keyring;
mod padding;
mod pairing;
mod pairwise;
mod replay;
mod request;
mod state;
pub mod tags;

pub use keyring::{
    ContactUpdate, Keyring, MAX_CHAINS_PER_SESSION, MAX_MESSAGES_PER_CHAIN,
    MAX_REQUESTS_PER_WINDOW, MAX_SESSIONS_PER_CONTACT, MAX_TOPPED_UP_PER_CONTACT, OpenError,
    Opened, REQUEST_WINDOW_SECS, SealError, TAG_CACHE_EPOCHS, TOP_UP_AFTER_FALLBACK, Trust,
};
pub use padding_api::{MAX_PAYLOAD_LEN, sealed_len_for};
pub use pairing::{Pairing, PairingError, PairingOutcome, PairingRole, ShortAuthString};
pub use replay::{MemoryReplayGuard, ReplayGuard};
pub use state::StateError;

mod padding_api {
    //! Public view of the padding rules.

    /// Largest encoded payload plus session overhead that fits an envelope.
    pub const MAX_PAYLOAD_LEN: usize = super::padding::MAX_CONTENT_LEN;

    /// The sealed-body length (bucket) an envelope content of `len` bytes
    /// gets, or `None` if it is too large.
    pub fn sealed_len_for(len: usize) -> Option<usize> {
        super::padding::pad(&vec![0; len]).map(|p| p.len() + super::aead::OVERHEAD)
    }
}
