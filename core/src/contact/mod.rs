//! Contact cards and the ways people exchange them.
//!
//! - [`ContactCard`]: a person's public keys and optional display name,
//!   signed by their identity key; only verified cards can be constructed
//!   from outside bytes.
//! - Contact codes ([`ContactCard::to_code`], [`ContactCard::from_code`]): the
//!   card as a bech32m string `ferry1…` with a checksum, to paste or read out.
//! - QR codes (feature `qr`, module [`qr`]): the same code as SVG, PNG or
//!   terminal art.

mod card;
mod code;
#[cfg(feature = "qr")]
pub mod qr;

pub(crate) use card::UnsignedCard;
pub use card::{CardError, ContactCard};
pub use code::{CODE_PREFIX, CodeError, MAX_CODE_LEN};
