//! Public key types that appear on contact cards.
//!
//! Public keys are identifiers: linking them to traffic is what the threat
//! model forbids, so their `Debug` output never shows key bytes. Use
//! [`IdentityKey::to_hex`] where an app deliberately displays one.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

/// The key is not a valid public key of its kind.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("invalid public key")]
pub struct InvalidKey;

/// A person's long-term Ed25519 identity key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey(VerifyingKey);

impl IdentityKey {
    /// Parses and validates (canonical point, not weak) an Ed25519 public key.
    ///
    /// # Errors
    /// [`InvalidKey`] if the bytes are not a usable Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, InvalidKey> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| InvalidKey)?;
        if key.is_weak() {
            return Err(InvalidKey);
        }
        Ok(Self(key))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lowercase hex of the key, for apps that show it on purpose.
    pub fn to_hex(&self) -> String {
        hex(&self.to_bytes())
    }

    /// Verifies a signature made with this identity (strict: rejects
    /// malleable and small-order forms).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }
}

impl fmt::Debug for IdentityKey {
    /// A label that tells keys apart within this process and links to
    /// nothing outside it: a keyed hash under a key drawn at random once
    /// per process, so two runs' logs (or a leaked log and a seized
    /// contact list) cannot be matched by it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey(~{})", debug_label(&self.to_bytes()))
    }
}

/// Eight hex digits of a keyed hash of `bytes` under a per-process random
/// key (std's randomly seeded SipHash; see `IdentityKey`'s `Debug`).
pub(crate) fn debug_label(bytes: &[u8]) -> String {
    use std::hash::BuildHasher as _;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let hash = KEY
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(bytes);
    format!("{:08x}", hash >> 32)
}

/// A 32-byte Curve25519 / X25519 public key (Olm identity, prekeys, request key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Curve25519Key([u8; 32]);

impl Curve25519Key {
    /// Wraps 32 key bytes. Every 32-byte string is a valid X25519 input;
    /// low-order points are caught where a shared secret is computed.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Curve25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Curve25519Key(..)")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
