//! Sneakernet bundles: live envelopes in a file carried on a USB stick
//! (format `ferry.v1`, sans-IO: bytes in, bytes out; the node does the
//! file I/O).
//!
//! ```text
//! header   "FERRYBDL" | version 1 | 3 zero bytes | created_at u64 BE
//!          | count u32 BE | bundle public key (32, Ed25519)
//! records  count × ( length u32 BE | envelope, 1..=MAX_ENVELOPE_LEN )
//! trailer  SHA-256 of header and records (32) | Ed25519 signature (64)
//!          of "ferry/bundle/v1" ‖ that digest, by the bundle key
//! ```
//!
//! Each bundle is signed by a fresh key: the signature binds the file
//! together (a spliced, truncated or altered bundle fails) without
//! linking bundles to each other or to their exporter. It is integrity,
//! not authority: anyone can write a valid bundle, so every envelope in
//! it is still checked on its own, as if a stranger had sent it.
//!
//! Integrity failures refuse the whole bundle: a damaged file imports
//! nothing. Envelopes refused on their own (expired, duplicate, over
//! quota, malformed) do not stop the others.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::proto::limits::MAX_ENVELOPE_LEN;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"FERRYBDL";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 3 + 8 + 4 + 32;
const TRAILER_LEN: usize = 32 + 64;
const SIGNATURE_CONTEXT: &[u8] = b"ferry/bundle/v1";

/// How much a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Most envelopes in one bundle.
    pub max_envelopes: u32,
    /// Largest bundle, in bytes.
    pub max_bytes: u64,
}

impl Default for BundleLimits {
    /// 100 000 envelopes, 256 MiB.
    fn default() -> Self {
        Self {
            max_envelopes: 100_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why a bundle was refused whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not a Ferry bundle.
    #[error("not a Ferry bundle")]
    NotABundle,
    /// A version this code does not read.
    #[error("bundle version {0} is not supported")]
    Version(u8),
    /// More envelopes or bytes than the limits allow.
    #[error("bundle too large: {0}")]
    TooLarge(String),
    /// The file ends early or has bytes after the trailer.
    #[error("bundle truncated or padded (damaged in transit?)")]
    Truncated,
    /// A record's length is zero or over the envelope limit.
    #[error("bundle record {0} has an impossible length")]
    RecordLength(u32),
    /// The digest does not match the content.
    #[error("bundle damaged: digest mismatch")]
    Digest,
    /// The signature does not verify under the bundle's key.
    #[error("bundle signature invalid")]
    Signature,
}

/// A decoded, verified bundle (borrowing its file's bytes).
#[derive(Debug)]
pub struct Bundle<'a> {
    /// When the exporter's clock said it was written (self-asserted).
    pub created_at: u64,
    /// The bundle's one-time public key: its fingerprint for the user.
    pub key: [u8; 32],
    /// The envelopes, as written.
    pub envelopes: Vec<&'a [u8]>,
}

/// Encodes `envelopes` into a bundle signed with a fresh key.
///
/// # Errors
/// [`BundleError::RecordLength`] for an empty or oversized envelope,
/// [`BundleError::TooLarge`] for more than `u32::MAX` of them.
pub fn encode<R: CryptoRng + ?Sized>(
    envelopes: &[Vec<u8>],
    created_at: u64,
    rng: &mut R,
) -> Result<Vec<u8>, BundleError> {
    let count = u32::try_from(envelopes.len())
        .map_err(|_| BundleError::TooLarge(format!("{} envelopes", envelopes.len())))?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    let total: usize = envelopes.iter().map(|e| 4 + e.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + total + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&created_at.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(key.verifying_key().as_bytes());
    for (i, envelope) in envelopes.iter().enumerate() {
        if envelope.is_empty() || envelope.len() > MAX_ENVELOPE_LEN {
            return Err(BundleError::RecordLength(i as u32));
        }
        out.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        out.extend_from_slice(envelope);
    }
    let digest: [u8; 32] = Sha256::digest(&out).into();
    let signature = key.sign(&signed_message(&digest));
    out.extend_from_slice(&digest);
    out.extend_from_slice(&signature.to_bytes());
    Ok(out)
}

fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32);
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(digest);
    message
}

/// Checks everything about `bytes` that concerns the bundle as a whole
/// (magic, version, limits, every record's length, digest, signature)
/// and returns its envelopes, unchecked as envelopes.
///
/// # Errors
/// The first problem found; nothing about a refused bundle is used.
pub fn decode(bytes: &[u8], limits: BundleLimits) -> Result<Bundle<'_>, BundleError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(BundleError::TooLarge(format!("{} bytes", bytes.len())));
    }
    let magic = bytes.get(..MAGIC.len()).ok_or(BundleError::NotABundle)?;
    if magic != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let header = bytes.get(..HEADER_LEN).ok_or(BundleError::Truncated)?;
    let (_, rest) = header.split_at(MAGIC.len());
    let (&version, rest) = rest.split_first().ok_or(BundleError::Truncated)?;
    if version != VERSION {
        return Err(BundleError::Version(version));
    }
    let (_reserved, rest) = rest
        .split_first_chunk::<3>()
        .ok_or(BundleError::Truncated)?;
    let (created_at, rest) = rest
        .split_first_chunk::<8>()
        .ok_or(BundleError::Truncated)?;
    let (count, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(BundleError::Truncated)?;
    let key: [u8; 32] = rest.try_into().map_err(|_| BundleError::Truncated)?;
    let count = u32::from_be_bytes(*count);
    if count > limits.max_envelopes {
        return Err(BundleError::TooLarge(format!("{count} envelopes")));
    }
    let body_end = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|end| *end >= HEADER_LEN)
        .ok_or(BundleError::Truncated)?;
    let (signed, trailer) = bytes.split_at(body_end);
    let mut envelopes = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut records = signed.get(HEADER_LEN..).ok_or(BundleError::Truncated)?;
    for i in 0..count {
        let (len, rest) = records
            .split_first_chunk::<4>()
            .ok_or(BundleError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > MAX_ENVELOPE_LEN {
            return Err(BundleError::RecordLength(i));
        }
        if rest.len() < len {
            return Err(BundleError::Truncated);
        }
        let (envelope, rest) = rest.split_at(len);
        envelopes.push(envelope);
        records = rest;
    }
    if !records.is_empty() {
        return Err(BundleError::Truncated);
    }
    let (digest, signature) = trailer.split_at(32);
    let computed: [u8; 32] = Sha256::digest(signed).into();
    let digest: [u8; 32] = digest.try_into().map_err(|_| BundleError::Truncated)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&computed[..], &digest[..])) {
        return Err(BundleError::Digest);
    }
    let signature = Signature::from_slice(signature).map_err(|_| BundleError::Signature)?;
    let verifying = VerifyingKey::from_bytes(&key).map_err(|_| BundleError::Signature)?;
    verifying
        .verify_strict(&signed_message(&digest), &signature)
        .map_err(|_| BundleError::Signature)?;
    Ok(Bundle {
        created_at: u64::from_be_bytes(*created_at),
        key,
        envelopes,
    })
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
