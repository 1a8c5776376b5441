//! In-person pairing over a direct link: Noise `XX`, then a commit-then-reveal
//! exchange of nonces that the short authentication string depends on.
//!
//! Five messages over any duplex byte stream (LAN socket, Bluetooth pipe, a
//! cable), alternating, initiator first:
//!
//! 0. `-> e` (no payload);
//! 1. `<- e, ee, s, es` + responder's card;
//! 2. `-> s, se` + commitment `C = SHA-256(label || h₁ || Na)` + initiator's
//!    card, where `h₁` is the handshake hash before this message;
//! 3. `<- Nb` (Noise transport message);
//! 4. `-> Na` (Noise transport message); the responder checks `C`.
//!
//! Both show `SAS = HKDF(salt = h, ikm = Na || Nb) mod 10⁶` where `h` is the
//! final handshake hash. The initiator commits to `Na` before it sees `Nb`,
//! and the responder sends `Nb` before it sees `Na`: neither side, and so no
//! man in the middle playing either side, can choose its contribution after
//! learning the other's. A man in the middle matches the two codes with
//! probability 10⁻⁶ per attempt (the argument is in `docs/crypto.md` §8).
//!
//! [`Pairing`] is sans-IO: the caller moves frames between
//! [`Pairing::write_message`] and the peer's [`Pairing::read_message`].

use std::fmt;

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest as _, Sha256};
use snow::{Builder, HandshakeState, TransportState};
use subtle::ConstantTimeEq as _;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{contact::ContactCard, identity::Identity};

const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// v2: commit-then-reveal nonces. A v1 peer fails at message 1 (the prologue
/// is mixed into the handshake hash) instead of waiting for message 3.
const PROLOGUE: &[u8] = b"ferry/pairing/v2";
const COMMIT_LABEL: &[u8] = b"ferry/pairing/commit/v2";
const SAS_INFO: &[u8] = b"ferry/pairing/sas/v2";
const NOISE_MAX: usize = 65535;
/// Length of each side's nonce.
const PAIRING_NONCE_LEN: usize = 32;
/// Messages in a complete pairing.
const MESSAGES: u8 = 5;

/// Why a pairing failed. Whatever the reason, nothing was added and the
/// [`Pairing`] refuses every further message: start a new one.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PairingError {
    /// A frame could not be read: corrupted, truncated or from a different
    /// protocol. Abort and start again.
    #[error("pairing handshake failed")]
    Handshake,
    /// The card the peer sent is invalid, non-canonical or not signed by its
    /// identity. Abort.
    #[error("the peer's card is invalid")]
    InvalidCard,
    /// The peer's card does not belong to the key it used in the handshake:
    /// someone relayed another person's card. Abort.
    #[error("the peer's card does not match its handshake key")]
    CardMismatch,
    /// The initiator's revealed nonce does not open its commitment: it tried
    /// to choose its contribution to the code after seeing ours, which only
    /// a man in the middle does. Abort and warn the user.
    #[error("the peer's nonce does not match its commitment")]
    CommitmentMismatch,
    /// A message was requested or delivered out of turn, or after a failure.
    /// Abort.
    #[error("pairing message out of order")]
    OutOfOrder,
}

/// Which side of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRole {
    /// The side that sends the first message (and commits to its nonce).
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

type Nonce = Zeroizing<[u8; PAIRING_NONCE_LEN]>;

/// The commitment to the initiator's nonce, bound to this handshake.
fn commitment(hash_before_commit: &[u8], nonce: &[u8; PAIRING_NONCE_LEN]) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMIT_LABEL)
        .chain_update(hash_before_commit)
        .chain_update(nonce)
        .finalize()
        .into()
}

/// The code from the final handshake hash (it binds both static and
/// ephemeral keys and both cards) and both nonces, initiator's first.
fn sas(
    handshake_hash: &[u8],
    initiator_nonce: &[u8; PAIRING_NONCE_LEN],
    responder_nonce: &[u8; PAIRING_NONCE_LEN],
) -> Result<ShortAuthString, PairingError> {
    let mut ikm = Zeroizing::new([0u8; 2 * PAIRING_NONCE_LEN]);
    let (a, b) = ikm.split_at_mut(PAIRING_NONCE_LEN);
    a.copy_from_slice(initiator_nonce);
    b.copy_from_slice(responder_nonce);
    let hk = Hkdf::<Sha256>::new(Some(handshake_hash), ikm.as_slice());
    let mut okm = [0u8; 8];
    hk.expand(SAS_INFO, &mut okm)
        .map_err(|_| PairingError::Handshake)?;
    // 2⁶⁴ mod 10⁶ is negligible next to 2⁶⁴: the code is uniform to 2⁻⁴⁴.
    let code = u32::try_from(u64::from_be_bytes(okm) % 1_000_000).unwrap_or(0);
    Ok(ShortAuthString(code))
}

enum Noise {
    Handshake(Box<HandshakeState>),
    Transport(Box<TransportState>),
    /// After a failure, or transiently while switching to transport mode.
    Broken,
}

/// A pairing in progress (sans-IO).
pub struct Pairing {
    noise: Noise,
    role: PairingRole,
    our_card: Vec<u8>,
    their_card: Option<ContactCard>,
    our_nonce: Nonce,
    their_nonce: Option<Nonce>,
    /// Responder: the initiator's commitment and the hash it is bound to.
    their_commitment: Option<([u8; 32], Vec<u8>)>,
    /// The final handshake hash, once the handshake is complete.
    handshake_hash: Option<Vec<u8>>,
    step: u8,
    failed: bool,
}

impl fmt::Debug for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairing")
            .field("role", &self.role)
            .field("step", &self.step)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Pairing {
    /// Starts a pairing as `role`, offering `our_card` (issue one with
    /// one-time keys: it goes to one person only). The nonce this side
    /// contributes to the code is drawn from `rng` now.
    ///
    /// # Errors
    /// [`PairingError::Handshake`] if the Noise state cannot be built.
    pub fn new<R: CryptoRng + ?Sized>(
        identity: &Identity,
        our_card: &ContactCard,
        role: PairingRole,
        rng: &mut R,
    ) -> Result<Self, PairingError> {
        let params = PATTERN.parse().map_err(|_| PairingError::Handshake)?;
        let secret = Zeroizing::new(identity.request_secret().to_bytes());
        let builder = Builder::new(params)
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(secret.as_slice()))
            .map_err(|_| PairingError::Handshake)?;
        let state = match role {
            PairingRole::Initiator => builder.build_initiator(),
            PairingRole::Responder => builder.build_responder(),
        }
        .map_err(|_| PairingError::Handshake)?;
        let mut our_nonce = Zeroizing::new([0u8; PAIRING_NONCE_LEN]);
        rng.fill_bytes(our_nonce.as_mut());
        Ok(Self {
            noise: Noise::Handshake(Box::new(state)),
            role,
            our_card: our_card.to_bytes(),
            their_card: None,
            our_nonce,
            their_nonce: None,
            their_commitment: None,
            handshake_hash: None,
            step: 0,
            failed: false,
        })
    }

    fn our_turn(&self) -> bool {
        // Even messages are the initiator's, odd ones the responder's.
        self.step.is_multiple_of(2) == (self.role == PairingRole::Initiator)
    }

    /// Whether the next step is to send (`write_message`) rather than to
    /// receive (`read_message`); `false` once finished or failed.
    pub fn wants_to_send(&self) -> bool {
        !self.failed && !self.is_finished() && self.our_turn()
    }

    /// Whether all five messages have passed.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.step >= MESSAGES
    }

    /// Produces the next frame to send to the peer.
    ///
    /// # Errors
    /// [`PairingError::OutOfOrder`] if it is the peer's turn or the pairing
    /// failed; [`PairingError::Handshake`] if Noise refuses.
    pub fn write_message(&mut self) -> Result<Vec<u8>, PairingError> {
        if !self.wants_to_send() {
            return Err(PairingError::OutOfOrder);
        }
        let result = self.write_step();
        if result.is_err() {
            self.fail();
        }
        result
    }

    fn write_step(&mut self) -> Result<Vec<u8>, PairingError> {
        let mut out = vec![0u8; NOISE_MAX];
        let len = match (&mut self.noise, self.step) {
            // Nothing is encrypted yet: no payload.
            (Noise::Handshake(state), 0) => state.write_message(&[], &mut out),
            (Noise::Handshake(state), 1) => state.write_message(&self.our_card, &mut out),
            (Noise::Handshake(state), 2) => {
                // Commit to our nonce before the responder reveals its own.
                let mut payload = commitment(state.get_handshake_hash(), &self.our_nonce).to_vec();
                payload.extend_from_slice(&self.our_card);
                state.write_message(&payload, &mut out)
            }
            (Noise::Transport(state), 3 | 4) => {
                state.write_message(self.our_nonce.as_slice(), &mut out)
            }
            _ => return Err(PairingError::OutOfOrder),
        }
        .map_err(|_| PairingError::Handshake)?;
        out.truncate(len);
        if self.step == 2 {
            self.enter_transport()?;
        }
        self.step += 1;
        Ok(out)
    }

    /// Consumes a frame from the peer.
    ///
    /// # Errors
    /// [`PairingError`] if the frame is invalid, its card does not match or
    /// (responder, last message) the nonce does not open the commitment.
    pub fn read_message(&mut self, frame: &[u8]) -> Result<(), PairingError> {
        if self.failed || self.is_finished() || self.our_turn() {
            return Err(PairingError::OutOfOrder);
        }
        let result = self.read_step(frame);
        if result.is_err() {
            self.fail();
        }
        result
    }

    fn read_step(&mut self, frame: &[u8]) -> Result<(), PairingError> {
        let mut payload = Zeroizing::new(vec![0u8; frame.len()]);
        let step = self.step;
        let hash_before = match &self.noise {
            Noise::Handshake(state) => state.get_handshake_hash().to_vec(),
            _ => Vec::new(),
        };
        let len = match &mut self.noise {
            Noise::Handshake(state) if step <= 2 => state.read_message(frame, &mut payload),
            Noise::Transport(state) if step >= 3 => state.read_message(frame, &mut payload),
            _ => return Err(PairingError::OutOfOrder),
        }
        .map_err(|_| PairingError::Handshake)?;
        let payload = payload.get(..len).ok_or(PairingError::Handshake)?;
        match step {
            0 if payload.is_empty() => {}
            1 => self.accept_card(payload)?,
            2 => {
                let (commit, card) = payload
                    .split_at_checked(32)
                    .ok_or(PairingError::Handshake)?;
                let commit: [u8; 32] = commit.try_into().map_err(|_| PairingError::Handshake)?;
                self.accept_card(card)?;
                self.their_commitment = Some((commit, hash_before));
                self.enter_transport()?;
            }
            3 | 4 => {
                let nonce: [u8; PAIRING_NONCE_LEN] =
                    payload.try_into().map_err(|_| PairingError::Handshake)?;
                if let Some((commit, bound_to)) = &self.their_commitment {
                    // Constant time: a timing difference would tell the
                    // sender how much of a forged reveal was right.
                    let opened = commitment(bound_to, &nonce);
                    if !bool::from(opened.ct_eq(commit)) {
                        return Err(PairingError::CommitmentMismatch);
                    }
                } else if self.role == PairingRole::Responder {
                    return Err(PairingError::OutOfOrder);
                }
                self.their_nonce = Some(Zeroizing::new(nonce));
            }
            _ => return Err(PairingError::Handshake),
        }
        self.step += 1;
        Ok(())
    }

    /// Checks the peer's card and that it belongs to its Noise static key.
    fn accept_card(&mut self, bytes: &[u8]) -> Result<(), PairingError> {
        let Noise::Handshake(state) = &self.noise else {
            return Err(PairingError::OutOfOrder);
        };
        let card = ContactCard::from_bytes(bytes).map_err(|_| PairingError::InvalidCard)?;
        let remote = state.get_remote_static().ok_or(PairingError::Handshake)?;
        if remote != card.request_key().as_bytes() {
            return Err(PairingError::CardMismatch);
        }
        self.their_card = Some(card);
        Ok(())
    }

    /// After message 2: keep the final handshake hash, switch to transport.
    fn enter_transport(&mut self) -> Result<(), PairingError> {
        let Noise::Handshake(state) = std::mem::replace(&mut self.noise, Noise::Broken) else {
            return Err(PairingError::OutOfOrder);
        };
        self.handshake_hash = Some(state.get_handshake_hash().to_vec());
        let transport = state
            .into_transport_mode()
            .map_err(|_| PairingError::Handshake)?;
        self.noise = Noise::Transport(Box::new(transport));
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        self.noise = Noise::Broken;
        self.their_card = None;
    }

    /// The outcome once [`Pairing::is_finished`].
    ///
    /// # Errors
    /// [`PairingError::OutOfOrder`] if the pairing is not complete or failed.
    pub fn finish(self) -> Result<PairingOutcome, PairingError> {
        if !self.is_finished() {
            return Err(PairingError::OutOfOrder);
        }
        let (Some(card), Some(hash), Some(theirs)) =
            (self.their_card, self.handshake_hash, self.their_nonce)
        else {
            return Err(PairingError::OutOfOrder);
        };
        let sas = match self.role {
            PairingRole::Initiator => sas(&hash, &self.our_nonce, &theirs)?,
            PairingRole::Responder => sas(&hash, &theirs, &self.our_nonce)?,
        };
        Ok(PairingOutcome { card, sas })
    }
}
