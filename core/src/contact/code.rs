use bech32::{Bech32m, Hrp, primitives::decode::CheckedHrpstring};
use thiserror::Error;

use super::{CardError, ContactCard};

/// The human-readable prefix of a contact code: codes start with `ferry1`.
pub const CODE_PREFIX: &str = "ferry";

/// Longest contact code accepted: bech32m's checksum is defined for strings
/// of up to 1023 characters, so longer strings are refused before decoding.
pub const MAX_CODE_LEN: usize = 1023;

/// Why a string was not accepted as a contact code.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The string is longer than any valid code.
    #[error("contact code is longer than {MAX_CODE_LEN} characters")]
    TooLong,
    /// The card does not fit in a code; issue one with fewer one-time keys.
    #[error("card too large for a contact code ({0} characters)")]
    CardTooLarge(usize),
    /// Not a bech32m string, or the checksum does not match (a typo).
    #[error("not a valid contact code (bad characters or checksum)")]
    Checksum,
    /// A valid bech32m string, but not a Ferry contact code.
    #[error("not a Ferry contact code (expected the prefix `{CODE_PREFIX}1`)")]
    WrongPrefix,
    /// The checksum is right but the card inside is invalid or forged.
    #[error(transparent)]
    Card(#[from] CardError),
}

fn hrp() -> Hrp {
    // A constant, valid prefix; `Hrp::parse_unchecked` would panic on a bad
    // literal, so we parse it and fall back to the same value by construction.
    Hrp::parse(CODE_PREFIX).unwrap_or(bech32::hrp::BC)
}

impl ContactCard {
    /// Encodes the card as a contact code: bech32m over the card's protobuf
    /// bytes with the prefix `ferry`, e.g. `ferry1qyp…`.
    ///
    /// # Errors
    /// [`CodeError::CardTooLarge`] if the card (with many one-time keys or a
    /// long name) exceeds [`MAX_CODE_LEN`] characters.
    pub fn to_code(&self) -> Result<String, CodeError> {
        let bytes = self.to_bytes();
        match bech32::encoded_length::<Bech32m>(hrp(), &bytes) {
            Ok(_) => bech32::encode_lower::<Bech32m>(hrp(), &bytes)
                .map_err(|_| CodeError::CardTooLarge(bytes.len() * 8 / 5)),
            Err(e) => Err(CodeError::CardTooLarge(e.encoded_length)),
        }
    }

    /// Decodes and verifies a contact code typed, pasted or scanned by a user.
    /// Surrounding whitespace is ignored; the code may be all lowercase or
    /// all uppercase (QR codes carry it uppercase).
    ///
    /// # Errors
    /// [`CodeError`] for overlong strings, typos (checksum), foreign prefixes
    /// and invalid or forged cards.
    pub fn from_code(code: &str) -> Result<Self, CodeError> {
        let code = code.trim();
        if code.len() > MAX_CODE_LEN {
            return Err(CodeError::TooLong);
        }
        let checked = CheckedHrpstring::new::<Bech32m>(code).map_err(|_| CodeError::Checksum)?;
        if checked.hrp() != hrp() {
            return Err(CodeError::WrongPrefix);
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        Ok(Self::from_bytes(&bytes)?)
    }
}
