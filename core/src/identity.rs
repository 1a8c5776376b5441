//! A user's identity: the secret keys behind a contact card.
//!
//! An [`Identity`] holds
//! - an Ed25519 signing key: the long-term identity, signs contact cards;
//! - an X25519 static key: receives sealed first-contact requests (Noise `X`)
//!   and derives pairwise envelope secrets with each contact;
//! - an Olm account (vodozemac): Curve25519 identity key, one-time prekeys and
//!   a fallback prekey, from which 1:1 double-ratchet sessions start.
//!
//! Secret keys are zeroized when dropped and never appear in `Debug` output.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use rand_core::CryptoRng;
use thiserror::Error;
use vodozemac::olm::Account;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    contact::{CardError, ContactCard, UnsignedCard},
    keys::{Curve25519Key, IdentityKey},
    proto::limits::MAX_ONE_TIME_KEYS,
};

/// Why a contact card could not be issued.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IssueCardError {
    /// More one-time prekeys were asked for than a card can carry.
    #[error("a card carries at most {max} one-time prekeys, {requested} requested")]
    TooManyOneTimeKeys {
        /// The number asked for.
        requested: usize,
        /// The limit ([`MAX_ONE_TIME_KEYS`]).
        max: usize,
    },
    /// The display name is not acceptable (see [`CardError::InvalidDisplayName`]).
    #[error(transparent)]
    Card(#[from] CardError),
}

/// The secret half of a person's identity.
pub struct Identity {
    signing: SigningKey,
    request: StaticSecret,
    account: Account,
    /// The account's current fallback prekey. vodozemac only reports a
    /// fallback key until it is marked published, but every card we issue
    /// must carry it, so we remember it.
    fallback: Curve25519Key,
}

impl Identity {
    /// Creates a fresh identity with keys drawn from `rng` (the Olm account
    /// draws its own keys from the operating system's generator).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let request = StaticSecret::random_from_rng(rng);
        let mut account = Account::new();
        let fallback = Self::rotate_fallback(&mut account);
        Self {
            signing,
            request,
            account,
            fallback,
        }
    }

    fn rotate_fallback(account: &mut Account) -> Curve25519Key {
        account.generate_fallback_key();
        let key = account
            .fallback_key()
            .into_values()
            .next()
            .map(|k| Curve25519Key::from_bytes(k.to_bytes()))
            .unwrap_or(Curve25519Key::from_bytes([0; 32]));
        account.mark_keys_as_published();
        key
    }

    /// The public identity key (Ed25519).
    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey::from_verifying_key(self.signing.verifying_key())
    }

    /// The public request key (X25519) that contact requests are sealed to.
    pub fn request_key(&self) -> Curve25519Key {
        Curve25519Key::from_bytes(X25519Public::from(&self.request).to_bytes())
    }

    /// The Olm account's Curve25519 identity key.
    pub fn olm_identity_key(&self) -> Curve25519Key {
        Curve25519Key::from_bytes(self.account.curve25519_key().to_bytes())
    }

    /// The fallback prekey currently published on cards.
    pub fn fallback_key(&self) -> Curve25519Key {
        self.fallback
    }

    /// Issues a signed contact card carrying `one_time_keys` fresh one-time
    /// prekeys (generated now and kept by the account until used).
    ///
    /// `issued_at` is the caller's clock (seconds since the Unix epoch): the
    /// core never reads the wall clock.
    ///
    /// # Errors
    /// [`IssueCardError`] if too many prekeys are requested or the display
    /// name is not acceptable.
    pub fn contact_card(
        &mut self,
        display_name: Option<&str>,
        issued_at: u64,
        one_time_keys: usize,
    ) -> Result<ContactCard, IssueCardError> {
        if one_time_keys > MAX_ONE_TIME_KEYS {
            return Err(IssueCardError::TooManyOneTimeKeys {
                requested: one_time_keys,
                max: MAX_ONE_TIME_KEYS,
            });
        }
        let one_time_keys = self.fresh_one_time_keys(one_time_keys);
        let unsigned = UnsignedCard::new(
            self.identity_key(),
            self.olm_identity_key(),
            self.request_key(),
            self.fallback,
            one_time_keys,
            display_name.map(str::to_owned),
            issued_at,
        )?;
        let signature = self.signing.sign(&unsigned.signing_bytes()).to_bytes();
        Ok(unsigned.into_signed(signature))
    }

    /// Replaces the request key and the Olm account (and with it every
    /// prekey) while keeping the identity key: recovery after a suspected
    /// compromise of the device's encryption keys. Contacts who receive the
    /// re-issued card see a key change and must verify again.
    pub fn rotate_encryption_keys<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        self.request = StaticSecret::random_from_rng(rng);
        self.account = Account::new();
        self.fallback = Self::rotate_fallback(&mut self.account);
    }

    pub(crate) fn fresh_one_time_keys(&mut self, count: usize) -> Vec<Curve25519Key> {
        if count == 0 {
            return Vec::new();
        }
        let created = self.account.generate_one_time_keys(count).created;
        self.account.mark_keys_as_published();
        created
            .into_iter()
            .map(|k| Curve25519Key::from_bytes(k.to_bytes()))
            .collect()
    }
}

impl Identity {
    pub(crate) fn request_secret(&self) -> &StaticSecret {
        &self.request
    }

    pub(crate) fn account(&self) -> &Account {
        &self.account
    }

    pub(crate) fn account_mut(&mut self) -> &mut Account {
        &mut self.account
    }

    /// The secret parts, for state export: (signing seed, request secret).
    pub(crate) fn secret_bytes(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (
            Zeroizing::new(self.signing.to_bytes()),
            Zeroizing::new(self.request.to_bytes()),
        )
    }

    /// Rebuilds an identity from exported parts.
    pub(crate) fn from_parts(
        signing_seed: &[u8; 32],
        request_secret: [u8; 32],
        account: Account,
        fallback: Curve25519Key,
    ) -> Self {
        Self {
            signing: SigningKey::from_bytes(signing_seed),
            request: StaticSecret::from(request_secret),
            account,
            fallback,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}
