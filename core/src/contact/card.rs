use std::fmt;

use thiserror::Error;

use crate::{
    keys::{Curve25519Key, IdentityKey},
    proto::{self, DecodeError, limits, v1},
};

/// Domain separation for card signatures: a signature over a card can never
/// be mistaken for a signature over anything else Ferry signs.
const SIGNING_CONTEXT: &[u8] = b"ferry/contact-card/v1\0";

/// Why bytes or a code were not accepted as a contact card.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CardError {
    /// The bytes are not a well-formed card.
    #[error("malformed card: {0}")]
    Decode(#[from] DecodeError),
    /// The identity key is not a valid Ed25519 public key.
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// The display name is too long or contains control characters.
    #[error(
        "display name must be at most {} bytes without control characters",
        limits::MAX_DISPLAY_NAME_LEN
    )]
    InvalidDisplayName,
    /// The signature does not verify: the card was modified or forged.
    #[error("card signature does not verify")]
    BadSignature,
}

/// A verified contact card: someone's public keys, optionally a display
/// name, signed by their identity key.
///
/// A `ContactCard` obtained from outside ([`ContactCard::from_bytes`],
/// [`ContactCard::from_code`]) has had its signature verified; any change to
/// any field makes decoding fail with [`CardError::BadSignature`].
#[derive(Clone, PartialEq, Eq)]
pub struct ContactCard {
    unsigned: UnsignedCard,
    signature: [u8; 64],
}

/// The signed content of a card.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct UnsignedCard {
    identity_key: IdentityKey,
    olm_identity_key: Curve25519Key,
    request_key: Curve25519Key,
    fallback_key: Curve25519Key,
    one_time_keys: Vec<Curve25519Key>,
    display_name: Option<String>,
    issued_at: u64,
}

fn check_display_name(name: &str) -> Result<(), CardError> {
    // Control characters are refused so a name cannot rewrite a terminal
    // (escape sequences) or hide text (bidi overrides) in the clients.
    let bad_char = |c: char| {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if name.is_empty() || name.len() > limits::MAX_DISPLAY_NAME_LEN || name.chars().any(bad_char) {
        return Err(CardError::InvalidDisplayName);
    }
    Ok(())
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], CardError> {
    // `decode` has already checked the length; this keeps the conversion total.
    bytes.try_into().map_err(|_| {
        CardError::Decode(DecodeError::Invalid {
            field: "ContactCard",
            rule: "key length",
        })
    })
}

impl UnsignedCard {
    pub(crate) fn new(
        identity_key: IdentityKey,
        olm_identity_key: Curve25519Key,
        request_key: Curve25519Key,
        fallback_key: Curve25519Key,
        one_time_keys: Vec<Curve25519Key>,
        display_name: Option<String>,
        issued_at: u64,
    ) -> Result<Self, CardError> {
        if let Some(name) = &display_name {
            check_display_name(name)?;
        }
        Ok(Self {
            identity_key,
            olm_identity_key,
            request_key,
            fallback_key,
            one_time_keys,
            display_name,
            issued_at,
        })
    }

    /// The canonical byte string the identity key signs: length-prefixed
    /// fields in a fixed order, independent of the protobuf encoding.
    pub(crate) fn signing_bytes(&self) -> Vec<u8> {
        let name = self.display_name.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(
            SIGNING_CONTEXT.len()
                + 4
                + 4 * 32
                + 1
                + 32 * self.one_time_keys.len()
                + 1
                + name.len()
                + 8,
        );
        out.extend_from_slice(SIGNING_CONTEXT);
        out.extend_from_slice(&limits::WIRE_VERSION.to_be_bytes());
        out.extend_from_slice(&self.identity_key.to_bytes());
        out.extend_from_slice(self.olm_identity_key.as_bytes());
        out.extend_from_slice(self.request_key.as_bytes());
        out.extend_from_slice(self.fallback_key.as_bytes());
        // Both counts are bounded far below 256 by the wire limits.
        out.push(u8::try_from(self.one_time_keys.len()).unwrap_or(u8::MAX));
        for key in &self.one_time_keys {
            out.extend_from_slice(key.as_bytes());
        }
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out
    }

    pub(crate) fn into_signed(self, signature: [u8; 64]) -> ContactCard {
        ContactCard {
            unsigned: self,
            signature,
        }
    }
}

impl ContactCard {
    /// The owner's long-term identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.unsigned.identity_key
    }

    /// The owner's Olm account identity key.
    pub fn olm_identity_key(&self) -> &Curve25519Key {
        &self.unsigned.olm_identity_key
    }

    /// The key first-contact requests are sealed to.
    pub fn request_key(&self) -> &Curve25519Key {
        &self.unsigned.request_key
    }

    /// The fallback prekey.
    pub fn fallback_key(&self) -> &Curve25519Key {
        &self.unsigned.fallback_key
    }

    /// One-time prekeys, each usable for one new session.
    pub fn one_time_keys(&self) -> &[Curve25519Key] {
        &self.unsigned.one_time_keys
    }

    /// The display name the owner chose, if any. It is self-asserted: show it
    /// as a hint, never as proof of who someone is.
    pub fn display_name(&self) -> Option<&str> {
        self.unsigned.display_name.as_deref()
    }

    /// When the card was issued (seconds since the Unix epoch, owner's clock).
    pub fn issued_at(&self) -> u64 {
        self.unsigned.issued_at
    }

    /// The card as its wire message.
    pub fn to_wire(&self) -> v1::ContactCard {
        let u = &self.unsigned;
        v1::ContactCard {
            version: limits::WIRE_VERSION,
            identity_key: u.identity_key.to_bytes().to_vec(),
            olm_identity_key: u.olm_identity_key.as_bytes().to_vec(),
            request_key: u.request_key.as_bytes().to_vec(),
            fallback_key: u.fallback_key.as_bytes().to_vec(),
            one_time_keys: u
                .one_time_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            display_name: u.display_name.clone().unwrap_or_default(),
            issued_at: u.issued_at,
            signature: self.signature.to_vec(),
        }
    }

    /// Verifies a card received as a wire message (e.g. inside a contact
    /// request, already size-checked by [`proto::decode`]). The caller
    /// decoded the enclosing message with [`proto::decode_canonical`]: the
    /// value no longer says how it was encoded.
    ///
    /// # Errors
    /// [`CardError`] if a field is invalid or the signature does not verify.
    pub fn from_wire(wire: &v1::ContactCard) -> Result<Self, CardError> {
        proto::WireMessage::validate(wire)?;
        let identity_key = IdentityKey::from_bytes(&key32(&wire.identity_key)?)
            .map_err(|_| CardError::InvalidIdentityKey)?;
        let one_time_keys = wire
            .one_time_keys
            .iter()
            .map(|k| key32(k).map(Curve25519Key::from_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let display_name = if wire.display_name.is_empty() {
            None
        } else {
            Some(wire.display_name.clone())
        };
        let unsigned = UnsignedCard::new(
            identity_key,
            Curve25519Key::from_bytes(key32(&wire.olm_identity_key)?),
            Curve25519Key::from_bytes(key32(&wire.request_key)?),
            Curve25519Key::from_bytes(key32(&wire.fallback_key)?),
            one_time_keys,
            display_name,
            wire.issued_at,
        )?;
        let signature: [u8; 64] = wire
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| CardError::BadSignature)?;
        if !identity_key.verify(&unsigned.signing_bytes(), &signature) {
            return Err(CardError::BadSignature);
        }
        Ok(unsigned.into_signed(signature))
    }

    /// Encodes the card as protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        proto::encode(&self.to_wire())
    }

    /// Decodes and verifies a card from untrusted bytes. Only the canonical
    /// encoding is accepted: the signature covers the known fields, so any
    /// other byte string for the same card (an unknown field appended, a
    /// padded varint, a repeated field) would let whoever relays the card
    /// change its bytes, and every hash over them, without breaking the
    /// signature.
    ///
    /// # Errors
    /// [`CardError`] for oversized, malformed, non-canonical
    /// ([`DecodeError::NonCanonical`]), invalid or forged input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CardError> {
        Self::from_wire(&proto::decode_canonical::<v1::ContactCard>(bytes)?)
    }
}

impl fmt::Debug for ContactCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are identifiers and the name is personal: neither is printed.
        f.debug_struct("ContactCard")
            .field("one_time_keys", &self.unsigned.one_time_keys.len())
            .field("has_display_name", &self.unsigned.display_name.is_some())
            .field("issued_at", &self.unsigned.issued_at)
            .finish_non_exhaustive()
    }
}
