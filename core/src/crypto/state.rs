//! Keyring state at rest: everything secret, sealed under a key the app
//! provides (the store derives it from the user's passphrase with Argon2id).
//!
//! Layout: `"FERRYKR1" || XChaCha20-Poly1305(state key, KeyringState)`. The
//! Olm account and sessions inside are vodozemac pickles, themselves
//! encrypted under a second subkey. Plaintext buffers are zeroized.

use hkdf::Hkdf;
use prost::Message as _;
use rand_core::CryptoRng;
use sha2::Sha256;
use thiserror::Error;
use vodozemac::olm::{Account, AccountPickle, Session, SessionPickle};
use zeroize::Zeroizing;

use super::{
    aead,
    keyring::{Contact, Keyring, MAX_TOPPED_UP_PER_CONTACT, SessionEntry, Trust},
    pairwise::PairwiseKeys,
};
use crate::{contact::ContactCard, identity::Identity, keys::Curve25519Key};

const MAGIC: &[u8; 8] = b"FERRYKR1";
/// Largest state accepted on import (bounded before decoding).
const MAX_STATE_LEN: usize = 64 * 1024 * 1024;

/// Why saved state could not be loaded. Wrong key and corrupted data are
/// deliberately the same variant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not Ferry keyring state, wrong key, or corrupted.
    #[error("keyring state is unreadable (wrong key or corrupted)")]
    Unreadable,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyringState {
    #[prost(bytes = "vec", tag = "1")]
    signing_seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    request_secret: Vec<u8>,
    #[prost(string, tag = "3")]
    account: String,
    #[prost(bytes = "vec", tag = "4")]
    fallback_key: Vec<u8>,
    #[prost(message, repeated, tag = "5")]
    contacts: Vec<ContactState>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContactState {
    #[prost(bytes = "vec", tag = "1")]
    card: Vec<u8>,
    #[prost(bool, tag = "2")]
    verified: bool,
    #[prost(message, repeated, tag = "3")]
    sessions: Vec<SessionState>,
    #[prost(uint32, tag = "4")]
    used_one_time_keys: u32,
    #[prost(bytes = "vec", repeated, tag = "5")]
    topped_up: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "6")]
    fallback_override: Vec<u8>,
    #[prost(bool, tag = "7")]
    private_card: bool,
    #[prost(uint32, tag = "8")]
    keys_outstanding: u32,
    /// The user's own name for the contact (empty: none).
    #[prost(string, tag = "9")]
    nickname: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionState {
    #[prost(string, tag = "1")]
    pickle: String,
    /// Messages on the current sending chain.
    #[prost(uint32, tag = "2")]
    sent_on_chain: u32,
    #[prost(uint32, tag = "3")]
    chains_sent: u32,
    #[prost(bool, tag = "4")]
    turn_pending: bool,
    #[prost(bytes = "vec", repeated, tag = "5")]
    remote_chains: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    in_flight: Vec<Vec<u8>>,
}

struct Subkeys {
    state: Zeroizing<[u8; 32]>,
    pickle: Zeroizing<[u8; 32]>,
}

fn subkeys(key: &[u8; 32]) -> Subkeys {
    let hk = Hkdf::<Sha256>::new(Some(b"ferry/keyring-state/v1"), key);
    let mut subkeys = Subkeys {
        state: Zeroizing::new([0; 32]),
        pickle: Zeroizing::new([0; 32]),
    };
    // 32-byte outputs are always within HKDF's limit.
    let _ = hk.expand(b"state", subkeys.state.as_mut());
    let _ = hk.expand(b"pickle", subkeys.pickle.as_mut());
    subkeys
}

impl Keyring {
    /// Exports the whole keyring (identity, account, contacts, sessions),
    /// sealed under `key`.
    pub fn export<R: CryptoRng + ?Sized>(&self, key: &[u8; 32], rng: &mut R) -> Vec<u8> {
        let subkeys = subkeys(key);
        let (seed, request) = self.identity.secret_bytes();
        let contacts = self
            .contacts
            .values()
            .map(|c| ContactState {
                card: c.card.to_bytes(),
                verified: c.trust == Trust::Verified,
                sessions: c
                    .sessions
                    .iter()
                    .map(|s| SessionState {
                        pickle: s.session.pickle().encrypt(&subkeys.pickle),
                        sent_on_chain: s.sent_on_chain,
                        chains_sent: s.chains_sent,
                        turn_pending: s.turn_pending,
                        remote_chains: s.remote_chains.iter().map(|k| k.to_vec()).collect(),
                        in_flight: s.in_flight.iter().map(|id| id.to_vec()).collect(),
                    })
                    .collect(),
                used_one_time_keys: u32::try_from(c.used_one_time_keys).unwrap_or(u32::MAX),
                topped_up: c.topped_up.iter().map(|k| k.as_bytes().to_vec()).collect(),
                fallback_override: c
                    .fallback_override
                    .map(|k| k.as_bytes().to_vec())
                    .unwrap_or_default(),
                private_card: c.private_card,
                nickname: c.nickname.clone().unwrap_or_default(),
                keys_outstanding: c.keys_outstanding,
            })
            .collect();
        let state = KeyringState {
            signing_seed: seed.to_vec(),
            request_secret: request.to_vec(),
            account: self.identity.account().pickle().encrypt(&subkeys.pickle),
            fallback_key: self.identity.fallback_key().as_bytes().to_vec(),
            contacts,
        };
        let plaintext = Zeroizing::new(state.encode_to_vec());
        let mut state = state;
        zeroize::Zeroize::zeroize(&mut state.signing_seed);
        zeroize::Zeroize::zeroize(&mut state.request_secret);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&aead::seal(&subkeys.state, MAGIC, &plaintext, rng));
        out
    }

    /// Loads a keyring exported with [`Keyring::export`].
    ///
    /// # Errors
    /// [`StateError::Unreadable`] for a wrong key or any corruption.
    pub fn import(bytes: &[u8], key: &[u8; 32]) -> Result<Self, StateError> {
        let bad = |_| StateError::Unreadable;
        if bytes.len() > MAX_STATE_LEN {
            return Err(StateError::Unreadable);
        }
        let sealed = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(StateError::Unreadable)?;
        let subkeys = subkeys(key);
        let plaintext = Zeroizing::new(
            aead::open(&subkeys.state, MAGIC, sealed).ok_or(StateError::Unreadable)?,
        );
        let mut state =
            KeyringState::decode(plaintext.as_slice()).map_err(|_| StateError::Unreadable)?;
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(state.signing_seed.as_slice().try_into().map_err(bad)?);
        let request: [u8; 32] = state.request_secret.as_slice().try_into().map_err(bad)?;
        zeroize::Zeroize::zeroize(&mut state.signing_seed);
        zeroize::Zeroize::zeroize(&mut state.request_secret);
        let account = Account::from_pickle(
            AccountPickle::from_encrypted(&state.account, &subkeys.pickle)
                .map_err(|_| StateError::Unreadable)?,
        );
        let fallback: [u8; 32] = state.fallback_key.as_slice().try_into().map_err(bad)?;
        let identity =
            Identity::from_parts(&seed, request, account, Curve25519Key::from_bytes(fallback));
        let mut keyring = Keyring::new(identity);
        for c in state.contacts {
            let card = ContactCard::from_bytes(&c.card).map_err(|_| StateError::Unreadable)?;
            let keys = PairwiseKeys::derive(
                keyring.identity.request_secret(),
                &keyring.identity.identity_key(),
                card.request_key(),
                card.identity_key(),
            )
            .ok_or(StateError::Unreadable)?;
            let sessions = c
                .sessions
                .iter()
                .map(|s| {
                    let pickle = SessionPickle::from_encrypted(&s.pickle, &subkeys.pickle)
                        .map_err(|_| StateError::Unreadable)?;
                    Ok(SessionEntry {
                        session: Session::from_pickle(pickle),
                        sent_on_chain: s.sent_on_chain,
                        chains_sent: s.chains_sent,
                        turn_pending: s.turn_pending,
                        remote_chains: s
                            .remote_chains
                            .iter()
                            .map(|k| <[u8; 32]>::try_from(k.as_slice()))
                            .collect::<Result<_, _>>()
                            .map_err(bad)?,
                        in_flight: s
                            .in_flight
                            .iter()
                            .map(|id| <[u8; 32]>::try_from(id.as_slice()))
                            .collect::<Result<_, _>>()
                            .map_err(bad)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let trust = if c.verified {
                Trust::Verified
            } else {
                Trust::Unverified
            };
            let key32 =
                |k: &Vec<u8>| <[u8; 32]>::try_from(k.as_slice()).map(Curve25519Key::from_bytes);
            let mut contact = Contact::new(card, trust, keys);
            contact.sessions = sessions;
            contact.used_one_time_keys =
                usize::try_from(c.used_one_time_keys).unwrap_or(usize::MAX);
            contact.topped_up = c
                .topped_up
                .iter()
                .map(key32)
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            contact.fallback_override = key32(&c.fallback_override).ok();
            contact.private_card = c.private_card;
            contact.nickname = Some(c.nickname.clone()).filter(|n| !n.is_empty());
            contact.keys_outstanding = c.keys_outstanding.min(MAX_TOPPED_UP_PER_CONTACT);
            keyring
                .contacts
                .insert(*contact.card.identity_key(), contact);
        }
        Ok(keyring)
    }
}
