//! In-person pairing over a direct link with Noise `XX`.
//!
//! Three messages over any duplex byte stream (LAN socket, Bluetooth pipe,
//! a cable): `-> e`, `<- e, ee, s, es` + responder's card,
//! `-> s, se` + initiator's card. Each side checks that the Noise static key
//! is the request key on the card it received, and both show a six-digit
//! short authentication string (SAS) derived from the handshake hash. If the
//! two people see the same digits, no one sits in the middle of the link and
//! the contact is added as verified.
//!
//! [`Pairing`] is sans-IO: the caller moves frames between
//! [`Pairing::write_message`] and the peer's [`Pairing::read_message`].

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use snow::{Builder, HandshakeState};
use thiserror::Error;

use crate::{contact::ContactCard, identity::Identity};

const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const PROLOGUE: &[u8] = b"ferry/pairing/v1";
const NOISE_MAX: usize = 65535;

/// Why a pairing failed. Whatever the reason, nothing was added.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PairingError {
    /// A frame could not be read: corrupted, truncated or from a different
    /// protocol. Abort and start again.
    #[error("pairing handshake failed")]
    Handshake,
    /// The card the peer sent is invalid or not signed by its identity.
    #[error("the peer's card is invalid")]
    InvalidCard,
    /// The peer's card does not belong to the key it used in the handshake:
    /// someone relayed another person's card.
    #[error("the peer's card does not match its handshake key")]
    CardMismatch,
    /// A message was requested or delivered out of turn.
    #[error("pairing message out of order")]
    OutOfOrder,
}

/// Which side of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRole {
    /// The side that sends the first message.
    Initiator,
    /// The side that answers.
    Responder,
}

/// The result of a completed pairing.
pub struct PairingOutcome {
    /// The peer's verified card.
    pub card: ContactCard,
    /// The short authentication string both people compare.
    pub sas: ShortAuthString,
}

impl fmt::Debug for PairingOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingOutcome").finish_non_exhaustive()
    }
}

/// A six-digit code shown on both devices, as `123 456`.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortAuthString(u32);

impl ShortAuthString {
    /// The code as a number below 1 000 000.
    pub fn value(&self) -> u32 {
        self.0
    }
}

impl fmt::Display for ShortAuthString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for ShortAuthString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShortAuthString(..)")
    }
}

/// A pairing in progress (sans-IO).
pub struct Pairing {
    state: HandshakeState,
    role: PairingRole,
    our_card: Vec<u8>,
    their_card: Option<ContactCard>,
    step: u8,
}

impl fmt::Debug for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairing")
            .field("role", &self.role)
            .field("step", &self.step)
            .finish()
    }
}

impl Pairing {
    /// Starts a pairing as `role`, offering `our_card` (issue one with
    /// one-time keys: it goes to one person only).
    ///
    /// # Errors
    /// [`PairingError::Handshake`] if the Noise state cannot be built.
    pub fn new(
        identity: &Identity,
        our_card: &ContactCard,
        role: PairingRole,
    ) -> Result<Self, PairingError> {
        let params = PATTERN.parse().map_err(|_| PairingError::Handshake)?;
        let secret = identity.request_secret().to_bytes();
        let builder = Builder::new(params)
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(&secret))
            .map_err(|_| PairingError::Handshake)?;
        let state = match role {
            PairingRole::Initiator => builder.build_initiator(),
            PairingRole::Responder => builder.build_responder(),
        }
        .map_err(|_| PairingError::Handshake)?;
        Ok(Self {
            state,
            role,
            our_card: our_card.to_bytes(),
            their_card: None,
            step: 0,
        })
    }

    fn our_turn(&self) -> bool {
        // Messages 0 and 2 are the initiator's, message 1 the responder's.
        self.step.is_multiple_of(2) == (self.role == PairingRole::Initiator)
    }

    /// Whether the next step is to send (`write_message`) rather than to
    /// receive (`read_message`); `false` once finished.
    pub fn wants_to_send(&self) -> bool {
        !self.is_finished() && self.our_turn()
    }

    /// Whether all three messages have passed.
    pub fn is_finished(&self) -> bool {
        self.step >= 3
    }

    /// Produces the next frame to send to the peer.
    ///
    /// # Errors
    /// [`PairingError::OutOfOrder`] if it is the peer's turn.
    pub fn write_message(&mut self) -> Result<Vec<u8>, PairingError> {
        if !self.wants_to_send() {
            return Err(PairingError::OutOfOrder);
        }
        // The first message carries no payload: nothing is encrypted yet.
        let payload: &[u8] = if self.step == 0 { &[] } else { &self.our_card };
        let mut out = vec![0u8; NOISE_MAX];
        let len = self
            .state
            .write_message(payload, &mut out)
            .map_err(|_| PairingError::Handshake)?;
        out.truncate(len);
        self.step += 1;
        Ok(out)
    }

    /// Consumes a frame from the peer.
    ///
    /// # Errors
    /// [`PairingError`] if the frame is invalid or its card does not match.
    pub fn read_message(&mut self, frame: &[u8]) -> Result<(), PairingError> {
        if self.is_finished() || self.our_turn() {
            return Err(PairingError::OutOfOrder);
        }
        let mut payload = vec![0u8; frame.len()];
        let len = self
            .state
            .read_message(frame, &mut payload)
            .map_err(|_| PairingError::Handshake)?;
        payload.truncate(len);
        if self.step > 0 {
            let card = ContactCard::from_bytes(&payload).map_err(|_| PairingError::InvalidCard)?;
            let remote = self
                .state
                .get_remote_static()
                .ok_or(PairingError::Handshake)?;
            if remote != card.request_key().as_bytes() {
                return Err(PairingError::CardMismatch);
            }
            self.their_card = Some(card);
        } else if len != 0 {
            return Err(PairingError::Handshake);
        }
        self.step += 1;
        Ok(())
    }

    /// The outcome once [`Pairing::is_finished`].
    ///
    /// # Errors
    /// [`PairingError::OutOfOrder`] if the handshake is not complete.
    pub fn finish(self) -> Result<PairingOutcome, PairingError> {
        if !self.is_finished() || !self.state.is_handshake_finished() {
            return Err(PairingError::OutOfOrder);
        }
        let card = self.their_card.ok_or(PairingError::OutOfOrder)?;
        let hk = Hkdf::<Sha256>::new(None, self.state.get_handshake_hash());
        let mut okm = [0u8; 8];
        hk.expand(b"ferry/pairing/sas", &mut okm)
            .map_err(|_| PairingError::Handshake)?;
        let sas = u32::try_from(u64::from_be_bytes(okm) % 1_000_000).unwrap_or(0);
        Ok(PairingOutcome {
            card,
            sas: ShortAuthString(sas),
        })
    }
}
