//! Pairwise keys between two contacts, from a static-static X25519 exchange
//! of their request keys. They protect only the *outer* envelope (hiding the
//! Olm message's cleartext keys and giving receivers O(1) tag matching); the
//! inner Olm layer gives forward secrecy. Compromise of a request key exposes
//! tags and outer layers, never message contents.

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::tags::{RecipientTag, tag};
use crate::keys::{Curve25519Key, IdentityKey};

/// Keys one contact pair derives.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct PairwiseKeys {
    /// AEAD key for envelopes in both directions (random 192-bit nonces).
    pub(crate) envelope_key: [u8; 32],
    /// Tag key for envelopes *to us*.
    incoming_tag_key: [u8; 32],
    /// Tag key for envelopes *to them*.
    outgoing_tag_key: [u8; 32],
}

impl PairwiseKeys {
    /// Derives the keys; `None` if the exchange is non-contributory (their
    /// request key is a low-order point).
    pub(crate) fn derive(
        our_secret: &StaticSecret,
        our_identity: &IdentityKey,
        their_request_key: &Curve25519Key,
        their_identity: &IdentityKey,
    ) -> Option<Self> {
        let shared = our_secret.diffie_hellman(&PublicKey::from(*their_request_key.as_bytes()));
        if !shared.was_contributory() {
            return None;
        }
        let (ours, theirs) = (our_identity.to_bytes(), their_identity.to_bytes());
        // Both sides must derive identical bytes: order the identities.
        let (low, high) = if ours <= theirs {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        let mut salt = Vec::with_capacity(64);
        salt.extend_from_slice(&low);
        salt.extend_from_slice(&high);
        let hk = Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
        let mut keys = Self {
            envelope_key: [0; 32],
            incoming_tag_key: [0; 32],
            outgoing_tag_key: [0; 32],
        };
        let expand = |info: &[u8], out: &mut [u8; 32]| hk.expand(info, out).is_ok();
        let mut to_us = b"ferry/pairwise/tag-to/".to_vec();
        to_us.extend_from_slice(&ours);
        let mut to_them = b"ferry/pairwise/tag-to/".to_vec();
        to_them.extend_from_slice(&theirs);
        let ok = expand(b"ferry/pairwise/envelope", &mut keys.envelope_key)
            && expand(&to_us, &mut keys.incoming_tag_key)
            && expand(&to_them, &mut keys.outgoing_tag_key);
        ok.then_some(keys)
    }

    pub(crate) fn incoming_tag(&self, epoch: u64) -> RecipientTag {
        tag(&self.incoming_tag_key, epoch)
    }

    pub(crate) fn outgoing_tag(&self, epoch: u64) -> RecipientTag {
        tag(&self.outgoing_tag_key, epoch)
    }
}

/// Keys for contact requests to the holder of `request_key`. They derive
/// from the *public* key, so anyone holding the card can compute them: they
/// only give contact requests the same envelope shape as everything else.
/// Confidentiality comes from the Noise `X` layer inside.
pub(crate) struct RequestKeys {
    pub(crate) envelope_key: [u8; 32],
    tag_key: [u8; 32],
}

impl RequestKeys {
    pub(crate) fn for_request_key(request_key: &Curve25519Key) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"ferry/request/v1"), request_key.as_bytes());
        let mut keys = Self {
            envelope_key: [0; 32],
            tag_key: [0; 32],
        };
        // 32-byte outputs are always within HKDF's limit.
        let _ = hk.expand(b"envelope", &mut keys.envelope_key);
        let _ = hk.expand(b"tag", &mut keys.tag_key);
        keys
    }

    pub(crate) fn tag(&self, epoch: u64) -> RecipientTag {
        tag(&self.tag_key, epoch)
    }
}
