//! Padding to fixed buckets, so a ciphertext's length says only which bucket
//! it fell into. Layout of a padded plaintext: `u32 BE length || content ||
//! zeros`. There is no compression anywhere before encryption (a compression
//! ratio would leak content through the length).

use ferry_proto::limits::SEALED_BODY_BUCKETS;

use super::aead::OVERHEAD;

const LEN_PREFIX: usize = 4;

/// Content capacity of a sealed body of `bucket` bytes.
const fn capacity(bucket: usize) -> usize {
    bucket - OVERHEAD - LEN_PREFIX
}

/// Largest content that fits the largest bucket.
pub(crate) const MAX_CONTENT_LEN: usize = capacity(ferry_proto::limits::MAX_SEALED_BODY_LEN);

/// Pads `content` so that, once sealed, it is exactly one bucket long.
/// `None` if it exceeds [`MAX_CONTENT_LEN`].
pub(crate) fn pad(content: &[u8]) -> Option<Vec<u8>> {
    let bucket = SEALED_BODY_BUCKETS
        .into_iter()
        .find(|b| content.len() <= capacity(*b))?;
    let len = u32::try_from(content.len()).ok()?;
    let mut out = Vec::with_capacity(bucket - OVERHEAD);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(content);
    out.resize(bucket - OVERHEAD, 0);
    Some(out)
}

/// Removes the padding; `None` if the length prefix is inconsistent.
pub(crate) fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let (len, rest) = padded.split_at_checked(LEN_PREFIX)?;
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    rest.get(..len)
}

#[cfg(test)]
#[path = "padding_tests.rs"]
mod tests;
