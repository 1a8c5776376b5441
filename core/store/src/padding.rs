//! Bucket padding for records whose length would say how long a message
//! body is (inbox, outbox, envelopes, keyring state).
//!
//! Layout of a padded plaintext: `u32 BE length || content || zeros`, sized
//! so that, once sealed, the record is exactly one bucket long. The buckets
//! are the wire's sealed-body buckets plus 384 bytes of headroom for the
//! record's own fields (ID, custody, envelope header), so a record on disk
//! says no more about a body's length than the envelope on the wire did.
//! Content beyond the largest bucket (a keyring with very many contacts)
//! is rounded up to a multiple of the largest bucket.

use ferry_core::{
    crypto::aead::OVERHEAD,
    proto::limits::{MAX_ENVELOPE_LEN, MAX_SEALED_BODY_LEN, SEALED_BODY_BUCKETS},
};

const LEN_PREFIX: usize = 4;
const HEADROOM: usize = 384;
/// What an envelope record adds to its sealed body: the envelope's header
/// fields, the content ID and custody byte, the length prefix, the AEAD.
/// Each envelope stays in its wire bucket's store bucket. The margin is
/// kept small: relays hold many envelopes.
const ENVELOPE_RECORD_OVERHEAD: usize =
    (MAX_ENVELOPE_LEN - MAX_SEALED_BODY_LEN) + 33 + LEN_PREFIX + OVERHEAD;
const _: () = assert!(HEADROOM >= ENVELOPE_RECORD_OVERHEAD);

/// The sealed length of a record whose content is `len` bytes.
pub(crate) fn sealed_len(len: usize) -> usize {
    let needed = len.saturating_add(LEN_PREFIX + OVERHEAD);
    let mut largest = 0;
    for bucket in SEALED_BODY_BUCKETS.map(|b| b + HEADROOM) {
        if needed <= bucket {
            return bucket;
        }
        largest = bucket;
    }
    needed.div_ceil(largest.max(1)).saturating_mul(largest)
}

/// Pads `content` so that, sealed, it is [`sealed_len`] bytes long; `None`
/// beyond the length prefix's range (4 GiB, far above any record the
/// engine makes).
pub(crate) fn pad(content: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(content.len()).ok()?;
    let padded_len = sealed_len(content.len()).saturating_sub(OVERHEAD);
    let mut out = Vec::with_capacity(padded_len);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(content);
    out.resize(padded_len, 0);
    Some(out)
}

/// Removes the padding; `None` if the length prefix is inconsistent.
pub(crate) fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let (len, rest) = padded.split_first_chunk::<LEN_PREFIX>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    rest.get(..len)
}
