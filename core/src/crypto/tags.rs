//! Rotating recipient tags and content IDs.
//!
//! A tag is `HMAC-SHA256(tag key, "ferry/tag/v1" || epoch)[..16]` where the
//! epoch is derived from the envelope's (cleartext, coarse) expiry, not from
//! the time of sending: an envelope may sit in a carrier's store for days, and
//! the recipient must still recognise it in O(1) when it finally arrives.
//! Tags of one sender-recipient direction therefore change every epoch, and
//! envelopes expiring in different epochs cannot be linked by their tags.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::proto::limits::{CONTENT_ID_LEN, DELIVERY_COMMITMENT_LEN, RECIPIENT_TAG_LEN};

/// Length of one tag epoch, in seconds (6 hours).
pub const TAG_EPOCH_SECS: u64 = 6 * 3600;
/// Granularity of envelope expiries, in seconds: expiries are rounded up to
/// a multiple of it so they do not reveal the exact time of sending.
pub const EXPIRY_GRANULARITY_SECS: u64 = 600;

/// A 16-byte recipient tag.
pub type RecipientTag = [u8; RECIPIENT_TAG_LEN];
/// A 32-byte content ID.
pub type ContentId = [u8; CONTENT_ID_LEN];

/// The epoch an expiry falls into.
pub const fn epoch_of(expiry: u64) -> u64 {
    expiry / TAG_EPOCH_SECS
}

/// Rounds an expiry up to the granularity (saturating).
pub const fn coarse_expiry(expiry: u64) -> u64 {
    match expiry.checked_next_multiple_of(EXPIRY_GRANULARITY_SECS) {
        Some(e) => e,
        None => u64::MAX - u64::MAX % EXPIRY_GRANULARITY_SECS,
    }
}

/// The tag for `epoch` under `tag_key`.
pub(crate) fn tag(tag_key: &[u8; 32], epoch: u64) -> RecipientTag {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(tag_key) else {
        return [0; RECIPIENT_TAG_LEN];
    };
    mac.update(b"ferry/tag/v1");
    mac.update(&epoch.to_be_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; RECIPIENT_TAG_LEN];
    out.copy_from_slice(
        full.get(..RECIPIENT_TAG_LEN)
            .unwrap_or(&[0; RECIPIENT_TAG_LEN]),
    );
    out
}

/// A 16-byte delivery commitment or secret.
pub type DeliverySecret = [u8; DELIVERY_COMMITMENT_LEN];

/// The content ID of an envelope: SHA-256 over its immutable fields.
pub fn content_id(
    recipient_tag: &[u8],
    expiry: u64,
    delivery_commitment: &[u8],
    sealed_body: &[u8],
) -> ContentId {
    let mut hash = Sha256::new();
    hash.update(b"ferry/content-id/v1");
    hash.update(recipient_tag);
    hash.update(expiry.to_be_bytes());
    hash.update(delivery_commitment);
    hash.update(sealed_body);
    hash.finalize().into()
}

/// The content ID of a decoded envelope, recomputed from its fields.
pub fn content_id_of(envelope: &crate::proto::v1::Envelope) -> ContentId {
    content_id(
        &envelope.recipient_tag,
        envelope.expiry,
        &envelope.delivery_commitment,
        &envelope.sealed_body,
    )
}

/// The commitment to a delivery secret:
/// `SHA-256("ferry/delivery/v1" || secret)[..16]`.
pub fn delivery_commitment(secret: &DeliverySecret) -> DeliverySecret {
    let mut hash = Sha256::new();
    hash.update(b"ferry/delivery/v1");
    hash.update(secret);
    let full = hash.finalize();
    let mut out = [0u8; DELIVERY_COMMITMENT_LEN];
    out.copy_from_slice(
        full.get(..DELIVERY_COMMITMENT_LEN)
            .unwrap_or(&[0; DELIVERY_COMMITMENT_LEN]),
    );
    out
}

/// Whether `secret` opens the envelope's delivery commitment (constant time).
pub fn proves_delivery(envelope_commitment: &[u8], secret: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    let Ok(secret) = <DeliverySecret>::try_from(secret) else {
        return false;
    };
    envelope_commitment
        .ct_eq(&delivery_commitment(&secret))
        .into()
}

/// Associated data binding the outer AEAD to the envelope's cleartext header
/// (a relay that changes tag or expiry makes the envelope undecryptable).
pub(crate) fn envelope_aad(
    version: u32,
    recipient_tag: &[u8],
    expiry: u64,
    delivery_commitment: &[u8],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(17 + 4 + RECIPIENT_TAG_LEN + 8 + DELIVERY_COMMITMENT_LEN);
    aad.extend_from_slice(b"ferry/envelope/v1");
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(recipient_tag);
    aad.extend_from_slice(&expiry.to_be_bytes());
    aad.extend_from_slice(delivery_commitment);
    aad
}
