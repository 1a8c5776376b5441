//! XChaCha20-Poly1305 with random 192-bit nonces: the outer envelope layer and
//! state at rest. Random nonces of this length never need coordination, which
//! suits keys shared by two devices that send without talking to each other.

use chacha20poly1305::{
    AeadInOut, KeyInit, XChaCha20Poly1305,
    aead::{Tag, array::Array},
};
use rand_core::CryptoRng;

/// Nonce length.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Bytes added to a plaintext by [`seal`].
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Seals `plaintext` under `key`: `nonce || ciphertext || tag`.
pub fn seal<R: CryptoRng + ?Sized>(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&Array::from(*key));
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let (_, body) = out.split_at_mut(NONCE_LEN);
    // Encryption only fails for messages longer than 2^38 bytes.
    match cipher.encrypt_inout_detached(&Array::from(nonce), aad, body.into()) {
        Ok(tag) => out.extend_from_slice(&tag),
        Err(_) => out.clear(),
    }
    out
}

/// Opens what [`seal`] produced; `None` if anything is wrong (tampered,
/// truncated, wrong key or AAD). The tag check
/// is constant-time (inside the AEAD).
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new(&Array::from(*key));
    let (nonce, rest) = sealed.split_at_checked(NONCE_LEN)?;
    let (body, tag) = rest.split_at_checked(rest.len().checked_sub(TAG_LEN)?)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
    let mut plaintext = body.to_vec();
    cipher
        .decrypt_inout_detached(
            &Array::from(nonce),
            aad,
            plaintext.as_mut_slice().into(),
            &Tag::<XChaCha20Poly1305>::from(tag),
        )
        .ok()?;
    Some(plaintext)
}
