//! Sneakernet bundles: live envelopes in a file carried on a USB stick
//! (format `ferry.v1`, `proto/schema/ferry/v1/bundle.proto`; sans-IO:
//! bytes in, bytes out, the node does the file I/O).
//!
//! ```text
//! "FERRYBDL" | u32 BE header length | BundleHeader (protobuf)
//!            | envelope_count × ( u32 BE length | Envelope )
//! ```
//!
//! The header carries the body's SHA-256 and a one-time Ed25519 key with
//! its signature over the header's other fields (as the canonical
//! encoding of the header with an empty signature, after the context
//! string `ferry/bundle/v1`). The fresh key binds the file together (a
//! spliced, truncated or altered bundle fails) without linking bundles to
//! each other or to their exporter. It is integrity, not authority:
//! anyone can write a valid bundle, so every envelope in it is still
//! checked on its own, as if a stranger had sent it.
//!
//! Integrity failures refuse the whole bundle: a damaged file imports
//! nothing. Envelopes refused on their own (expired, duplicate, over
//! quota, malformed) do not stop the others.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::proto::{
    self,
    limits::{MAX_BUNDLE_HEADER_LEN, MAX_ENVELOPE_LEN, WIRE_VERSION},
    v1::BundleHeader,
};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"FERRYBDL";
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
    /// A header this code does not read (another version, or malformed).
    #[error("unreadable bundle header: {0}")]
    Header(String),
    /// More envelopes or bytes than the limits allow.
    #[error("bundle too large: {0}")]
    TooLarge(String),
    /// The file ends early or has bytes after the last envelope.
    #[error("bundle truncated or padded (damaged in transit?)")]
    Truncated,
    /// A record's length is zero or over the envelope limit.
    #[error("bundle record {0} has an impossible length")]
    RecordLength(u32),
    /// The body does not match the header's digest.
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

/// What the signature covers: the header without its signature.
fn signed_message(header: &BundleHeader) -> Vec<u8> {
    let unsigned = BundleHeader {
        signature: Vec::new(),
        ..header.clone()
    };
    let mut message = SIGNATURE_CONTEXT.to_vec();
    prost::Message::encode(&unsigned, &mut message).unwrap_or_default();
    message
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
    let mut body = Vec::with_capacity(envelopes.iter().map(|e| 4 + e.len()).sum());
    for (i, envelope) in envelopes.iter().enumerate() {
        if envelope.is_empty() || envelope.len() > MAX_ENVELOPE_LEN {
            return Err(BundleError::RecordLength(i as u32));
        }
        body.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        body.extend_from_slice(envelope);
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    let mut header = BundleHeader {
        version: WIRE_VERSION,
        created_at,
        envelope_count: count,
        body_digest: Sha256::digest(&body).to_vec(),
        signer_key: key.verifying_key().as_bytes().to_vec(),
        signature: Vec::new(),
    };
    header.signature = key.sign(&signed_message(&header)).to_bytes().to_vec();
    let header = proto::encode(&header);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The one-time key named in a bundle's header, without any check of the
/// rest (for the exporter's report; importers use [`decode`]).
pub fn signer_key(bytes: &[u8]) -> Option<[u8; 32]> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let header = rest.get(..u32::from_be_bytes(*len) as usize)?;
    let header = proto::decode::<BundleHeader>(header).ok()?;
    header.signer_key.as_slice().try_into().ok()
}

/// Checks everything about `bytes` that concerns the bundle as a whole
/// (magic, header, limits, every record's length, digest, signature)
/// and returns its envelopes, unchecked as envelopes.
///
/// # Errors
/// The first problem found; nothing about a refused bundle is used.
pub fn decode(bytes: &[u8], limits: BundleLimits) -> Result<Bundle<'_>, BundleError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(BundleError::TooLarge(format!("{} bytes", bytes.len())));
    }
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BundleError::NotABundle)?;
    let (header_len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(BundleError::Truncated)?;
    let header_len = u32::from_be_bytes(*header_len) as usize;
    if header_len > MAX_BUNDLE_HEADER_LEN {
        return Err(BundleError::Header(format!("{header_len}-byte header")));
    }
    if rest.len() < header_len {
        return Err(BundleError::Truncated);
    }
    let (header, body) = rest.split_at(header_len);
    let header = proto::decode_canonical::<BundleHeader>(header)
        .map_err(|e| BundleError::Header(e.to_string()))?;
    if header.envelope_count > limits.max_envelopes {
        return Err(BundleError::TooLarge(format!(
            "{} envelopes",
            header.envelope_count
        )));
    }
    let key: [u8; 32] = header
        .signer_key
        .as_slice()
        .try_into()
        .map_err(|_| BundleError::Signature)?;
    let signature = Signature::from_slice(&header.signature).map_err(|_| BundleError::Signature)?;
    VerifyingKey::from_bytes(&key)
        .map_err(|_| BundleError::Signature)?
        .verify_strict(&signed_message(&header), &signature)
        .map_err(|_| BundleError::Signature)?;
    let mut envelopes = Vec::with_capacity(header.envelope_count.min(1 << 16) as usize);
    let mut records = body;
    for i in 0..header.envelope_count {
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
    let computed = Sha256::digest(body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        computed.as_slice(),
        header.body_digest.as_slice(),
    )) {
        return Err(BundleError::Digest);
    }
    Ok(Bundle {
        created_at: header.created_at,
        key,
        envelopes,
    })
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
