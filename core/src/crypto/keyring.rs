//! The keyring: one person's identity, contacts, Olm sessions, and the
//! sealing and opening of envelopes.

use std::{collections::HashMap, fmt};

use rand_core::CryptoRng;
use thiserror::Error;
use vodozemac::{
    Curve25519PublicKey,
    olm::{OlmMessage, Session, SessionConfig},
};

use super::{
    aead, padding,
    pairing::PairingOutcome,
    pairwise::{PairwiseKeys, RequestKeys},
    replay::ReplayGuard,
    request,
    tags::{self, ContentId, DeliverySecret, RecipientTag, content_id, envelope_aad, epoch_of},
};
use crate::{
    contact::ContactCard,
    identity::Identity,
    keys::IdentityKey,
    proto::{self, limits::WIRE_VERSION, v1},
};

/// Messages a sender puts on one Olm sending chain before it starts a fresh
/// session. vodozemac keeps at most 40 skipped message keys per receiving
/// chain (and refuses gaps over 2000): with store-and-forward, messages
/// arrive in any order, so a chain longer than 40 would lose messages that
/// arrive after 40 later ones. 32 leaves a margin. Counted per actual
/// sending chain (the chain index of the last message sent), so a late
/// message read on an old chain does not reset it.
pub const MAX_MESSAGES_PER_CHAIN: u32 = 32;
/// Sending chains (reply turns) a sender uses in one session before it
/// starts a fresh one. vodozemac keeps only the newest 5 receiving chains
/// of a session: a message on a sixth-newest chain could never be read. With
/// at most 4 chains per session and side, every chain of a session the
/// receiver still holds stays readable.
pub const MAX_CHAINS_PER_SESSION: u32 = 4;
/// Sessions kept per contact; older ones are dropped (their messages can no
/// longer be read). Unacknowledged messages written in a dropped session are
/// reported by [`Keyring::take_dropped`].
pub const MAX_SESSIONS_PER_CONTACT: usize = 64;
/// Epochs whose tag tables are cached: every epoch an envelope we accept can
/// expire in (14 days of 6-hour epochs is 56, plus partial ones at both
/// ends), so the per-envelope cost does not grow with the spread of expiries.
pub const TAG_CACHE_EPOCHS: usize = 64;
/// Remote ratchet keys remembered per session, to tell a new reply turn from
/// a late message on a known chain (vodozemac keeps 5 receiving chains).
const REMOTE_CHAINS_TRACKED: usize = 8;
/// Contact requests we try to open per [`REQUEST_WINDOW_SECS`]: each costs
/// two X25519 operations and a card check. Further ones are refused with
/// [`OpenError::Throttled`] before any public-key operation; they are not
/// recorded as seen, so a peer offers them again later.
pub const MAX_REQUESTS_PER_WINDOW: u32 = 32;
/// The window of [`MAX_REQUESTS_PER_WINDOW`], in seconds.
pub const REQUEST_WINDOW_SECS: u64 = 3600;
/// One-time keys given to a contact whose new session with us started from
/// our fallback key (they had none left); a session from a one-time key
/// earns one replacement. Sessions rotate every few turns, so without this
/// most would start from the fallback key, whose first chain has weaker
/// forward secrecy.
pub const TOP_UP_AFTER_FALLBACK: usize = 4;
/// One-time keys a contact may hold from our top-ups and not yet have used.
/// vodozemac keeps at most 5000 one-time keys and drops the oldest beyond:
/// without a bound per contact, one contact starting sessions over and over
/// would push out the keys other contacts hold, and their next sessions
/// would be unreadable.
pub const MAX_TOPPED_UP_PER_CONTACT: u32 = 8;

/// How much a contact is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Keys came over an unauthenticated channel (a pasted code, a request).
    Unverified,
    /// Keys were confirmed out of band: safety number compared, or paired in
    /// person with matching short authentication strings.
    Verified,
}

/// What [`Keyring::add_contact`] did. Never ignore `KeysChanged`: show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ContactUpdate {
    /// A new contact.
    Added,
    /// A newer card with the same keys (e.g. fresh one-time keys, new name).
    Refreshed,
    /// Same identity key, but different encryption keys: the contact lost
    /// "verified" (if it had it) until it is verified again. The app must
    /// tell the user.
    KeysChanged {
        /// Whether the contact was verified before the change.
        was_verified: bool,
    },
    /// The card was older than (or identical to) the one we have.
    Unchanged,
}

/// Why a message could not be sealed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// No contact with that identity key.
    #[error("unknown contact")]
    UnknownContact,
    /// The payload exceeds the largest padding bucket.
    #[error("payload too large")]
    TooLarge,
    /// The contact's keys are unusable (e.g. a low-order request key).
    #[error("the contact's keys are unusable")]
    BadContactKeys,
    /// The session layer refused (should not happen with valid keys).
    #[error("session error")]
    Session,
}

/// Why an envelope was not opened.
///
/// Every cryptographic or format failure is the single variant
/// [`OpenError::Rejected`]: callers (and through them, senders and relays)
/// cannot tell a bad tag from a bad ratchet from a bad padding.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The tag is not addressed to us: relay it, don't open it.
    #[error("not addressed to us")]
    NotForUs,
    /// Already opened (replay guard).
    #[error("duplicate")]
    Duplicate,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Addressed to us but undecryptable or invalid.
    #[error("rejected")]
    Rejected,
    /// The replay guard's storage failed; the envelope was not accepted.
    #[error("replay guard storage failed: {0}")]
    Storage(String),
    /// A contact request over the rate limit ([`MAX_REQUESTS_PER_WINDOW`]):
    /// not opened and not recorded; count it, and let it be offered again.
    #[error("too many contact requests")]
    Throttled,
}

/// An opened envelope. Its `Debug` output shows neither keys nor content.
#[allow(clippy::large_enum_variant)] // one short-lived value per opened envelope
pub enum Opened {
    /// A message in a session with a contact.
    Message {
        /// Who sent it.
        from: IdentityKey,
        /// What they sent.
        payload: v1::Payload,
        /// The envelope's content ID.
        content_id: ContentId,
    },
    /// A first-contact request from someone who has our card.
    ContactRequest {
        /// Their verified-signature (but unverified-identity) card.
        card: Box<ContactCard>,
        /// Their introduction text.
        introduction: String,
        /// What adding them would mean for an existing contact, if any.
        existing: Option<Trust>,
        /// Whether we already know this identity with other encryption keys
        /// (adding the card would be a key change).
        keys_changed: bool,
        /// The envelope's content ID.
        content_id: ContentId,
    },
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message { .. } => f.write_str("Opened::Message { .. }"),
            Self::ContactRequest { .. } => f.write_str("Opened::ContactRequest { .. }"),
        }
    }
}

pub(crate) struct SessionEntry {
    pub(crate) session: Session,
    /// Messages on our current sending chain (chain index of the last + 1).
    pub(crate) sent_on_chain: u32,
    /// Sending chains we have used in this session.
    pub(crate) chains_sent: u32,
    /// Whether our next message starts a new sending chain: nothing sent
    /// yet, or a reply on a new chain of theirs was read since.
    pub(crate) turn_pending: bool,
    /// Ratchet keys of their chains read in this session, oldest first.
    pub(crate) remote_chains: Vec<[u8; 32]>,
    /// Envelopes sealed in this session whose delivery is not settled
    /// (receipt or expiry, see [`Keyring::settle`]).
    pub(crate) in_flight: Vec<ContentId>,
}

impl SessionEntry {
    pub(crate) fn new(session: Session) -> Self {
        Self {
            session,
            sent_on_chain: 0,
            chains_sent: 0,
            turn_pending: true,
            remote_chains: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// Whether one more message fits this session without making a chain
    /// longer than the receiver's skipped-key store, or a session with more
    /// chains than the receiver keeps.
    fn has_room(&self) -> bool {
        if self.turn_pending {
            self.chains_sent < MAX_CHAINS_PER_SESSION
        } else {
            self.sent_on_chain < MAX_MESSAGES_PER_CHAIN
        }
    }

    fn record_sent(&mut self, message: &OlmMessage) {
        let chain_index = match message {
            OlmMessage::Normal(m) => m.chain_index(),
            OlmMessage::PreKey(p) => p.message().chain_index(),
        };
        if chain_index == 0 {
            self.chains_sent = self.chains_sent.saturating_add(1);
        }
        self.sent_on_chain = u32::try_from(chain_index)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        self.turn_pending = false;
    }

    fn record_received(&mut self, message: &OlmMessage) {
        let ratchet_key = match message {
            OlmMessage::Normal(m) => m.ratchet_key(),
            OlmMessage::PreKey(p) => p.message().ratchet_key(),
        }
        .to_bytes();
        // A late message on a chain we know does not move our sending
        // chain; only a new chain of theirs (a reply turn) does.
        if !self.remote_chains.contains(&ratchet_key) {
            self.remote_chains.push(ratchet_key);
            let excess = self
                .remote_chains
                .len()
                .saturating_sub(REMOTE_CHAINS_TRACKED);
            self.remote_chains.drain(..excess);
            self.turn_pending = true;
        }
    }
}

pub(crate) struct Contact {
    pub(crate) card: ContactCard,
    pub(crate) trust: Trust,
    pub(crate) keys: PairwiseKeys,
    /// Most recently used first.
    pub(crate) sessions: Vec<SessionEntry>,
    /// How many of the card's one-time keys we have used.
    pub(crate) used_one_time_keys: usize,
    /// One-time keys received in-band (`PrekeyTopUp`), used after the card's.
    pub(crate) topped_up: Vec<crate::keys::Curve25519Key>,
    /// A fallback key received in-band, replacing the card's.
    pub(crate) fallback_override: Option<crate::keys::Curve25519Key>,
    /// One-time keys we gave this contact in top-ups that it has not used
    /// yet (as far as we know), at most [`MAX_TOPPED_UP_PER_CONTACT`].
    pub(crate) keys_outstanding: u32,
    /// Whether the card reached us privately (in-person pairing), so its
    /// one-time keys are ours alone. A card from a code or a request may
    /// have reached others too: its one-time keys are not used.
    pub(crate) private_card: bool,
    /// The user's own name for the contact.
    pub(crate) nickname: Option<String>,
}

impl Contact {
    pub(crate) fn new(card: ContactCard, trust: Trust, keys: PairwiseKeys) -> Self {
        Self {
            card,
            trust,
            keys,
            sessions: Vec::new(),
            used_one_time_keys: 0,
            topped_up: Vec::new(),
            fallback_override: None,
            keys_outstanding: 0,
            private_card: false,
            nickname: None,
        }
    }

    /// The prekey for the next new session: the card's one-time keys in
    /// order (only for a private card), then topped-up ones, then the
    /// fallback key.
    fn next_prekey(&mut self) -> crate::keys::Curve25519Key {
        // A one-time key can open one session only: if the same card reached
        // several people, all but the first would write unreadable messages.
        let from_card = self
            .private_card
            .then(|| self.card.one_time_keys().get(self.used_one_time_keys))
            .flatten()
            .copied();
        if let Some(key) = from_card {
            self.used_one_time_keys = self.used_one_time_keys.saturating_add(1);
            return key;
        }
        if !self.topped_up.is_empty() {
            return self.topped_up.remove(0);
        }
        self.fallback_override.unwrap_or(*self.card.fallback_key())
    }

    fn apply_top_up(&mut self, top_up: &v1::PrekeyTopUp) {
        let keys = top_up
            .one_time_keys
            .iter()
            .filter_map(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .map(crate::keys::Curve25519Key::from_bytes);
        self.topped_up.extend(keys);
        // Bounded: a contact cannot make us hold more than one card's worth.
        let excess = self
            .topped_up
            .len()
            .saturating_sub(crate::proto::limits::MAX_ONE_TIME_KEYS);
        self.topped_up.drain(..excess);
        if let Ok(fallback) = <[u8; 32]>::try_from(top_up.fallback_key.as_slice()) {
            self.fallback_override = Some(crate::keys::Curve25519Key::from_bytes(fallback));
        }
    }
}

#[derive(Clone, Copy)]
enum TagOwner {
    Contact(IdentityKey),
    Request,
}

/// Contacts, sessions and the sealing/opening of envelopes.
pub struct Keyring {
    pub(crate) identity: Identity,
    pub(crate) contacts: HashMap<IdentityKey, Contact>,
    request_keys: RequestKeys,
    /// Tag → owner, per epoch in use (at most [`TAG_CACHE_EPOCHS`]).
    tag_cache: HashMap<u64, HashMap<RecipientTag, TagOwner>>,
    /// Unsettled envelopes whose session was dropped (see
    /// [`Keyring::take_dropped`]).
    dropped: Vec<ContentId>,
    /// Contact requests tried in the current rate window: (window, count).
    request_window: (u64, u32),
    /// Contacts that started a session with us and should get one-time
    /// keys, and how many (see [`Keyring::take_top_ups_due`]).
    top_ups_due: Vec<(IdentityKey, usize)>,
    /// Inbound sessions started from our fallback key since this keyring
    /// was loaded.
    fallback_sessions: u64,
    /// Simulation only: skip the Olm layer (see
    /// [`Keyring::insecure_skip_sessions_for_simulation`]).
    skip_sessions: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("contacts", &self.contacts.len())
            .finish_non_exhaustive()
    }
}

fn curve(key: &crate::keys::Curve25519Key) -> Curve25519PublicKey {
    Curve25519PublicKey::from_bytes(*key.as_bytes())
}

fn keys_differ(a: &ContactCard, b: &ContactCard) -> bool {
    a.olm_identity_key() != b.olm_identity_key() || a.request_key() != b.request_key()
}

impl Keyring {
    /// A keyring for `identity` with no contacts.
    pub fn new(identity: Identity) -> Self {
        let request_keys = RequestKeys::for_request_key(&identity.request_key());
        Self {
            identity,
            contacts: HashMap::new(),
            request_keys,
            tag_cache: HashMap::new(),
            dropped: Vec::new(),
            request_window: (0, 0),
            top_ups_due: Vec::new(),
            fallback_sessions: 0,
            skip_sessions: false,
        }
    }

    /// **Simulation only — never in a real node.** Skips the Olm session
    /// layer: payloads go into envelopes without the double ratchet (still
    /// padded, AEAD-sealed under the pairwise key and tagged). No forward
    /// secrecy, no healing; both ends must be in this mode. It exists so the
    /// simulator can run at large scale and reproduce runs byte for byte
    /// (vodozemac draws session keys from the OS, which no seed controls).
    /// Not persisted: a keyring loaded from state is always in normal mode.
    pub fn insecure_skip_sessions_for_simulation(&mut self) {
        self.skip_sessions = true;
    }

    /// Whether [`Keyring::insecure_skip_sessions_for_simulation`] is on.
    pub fn skips_sessions(&self) -> bool {
        self.skip_sessions
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Our identity, to issue cards (which generates one-time keys).
    pub fn identity_mut(&mut self) -> &mut Identity {
        &mut self.identity
    }

    /// The contact's current card and trust, if known.
    pub fn contact(&self, key: &IdentityKey) -> Option<(&ContactCard, Trust)> {
        self.contacts.get(key).map(|c| (&c.card, c.trust))
    }

    /// Identity keys of all contacts.
    pub fn contact_keys(&self) -> impl Iterator<Item = &IdentityKey> {
        self.contacts.keys()
    }

    /// Adds or updates a contact from a verified card.
    ///
    /// A card for a known identity with different encryption keys drops
    /// "verified" and returns [`ContactUpdate::KeysChanged`] (threat item 4):
    /// it is never silent. Sessions with the old keys are discarded.
    ///
    /// # Errors
    /// [`SealError::BadContactKeys`] if the card's request key is unusable.
    pub fn add_contact(
        &mut self,
        card: ContactCard,
        trust: Trust,
    ) -> Result<ContactUpdate, SealError> {
        let key = *card.identity_key();
        let keys = PairwiseKeys::derive(
            self.identity.request_secret(),
            &self.identity.identity_key(),
            card.request_key(),
            &key,
        )
        .ok_or(SealError::BadContactKeys)?;
        let Some(existing) = self.contacts.get_mut(&key) else {
            cache_contact_tags(&mut self.tag_cache, key, &keys);
            self.contacts.insert(key, Contact::new(card, trust, keys));
            return Ok(ContactUpdate::Added);
        };
        if keys_differ(&existing.card, &card) {
            let was_verified = existing.trust == Trust::Verified;
            // The old keys' tags must no longer count as ours.
            for table in self.tag_cache.values_mut() {
                table.retain(|_, owner| !matches!(owner, TagOwner::Contact(k) if *k == key));
            }
            cache_contact_tags(&mut self.tag_cache, key, &keys);
            for entry in &existing.sessions {
                self.dropped.extend_from_slice(&entry.in_flight);
            }
            *existing = Contact::new(card, trust, keys);
            // Even a caller claiming `Verified` for new keys gets the event;
            // it decides, with the user, what to show.
            return Ok(ContactUpdate::KeysChanged { was_verified });
        }
        if card.issued_at() <= existing.card.issued_at() && card == existing.card {
            if trust == Trust::Verified {
                existing.trust = Trust::Verified;
            }
            return Ok(ContactUpdate::Unchanged);
        }
        if card.issued_at() < existing.card.issued_at() {
            return Ok(ContactUpdate::Unchanged);
        }
        existing.card = card;
        existing.private_card = false;
        existing.used_one_time_keys = 0;
        existing.topped_up.clear();
        existing.fallback_override = None;
        if trust == Trust::Verified {
            existing.trust = Trust::Verified;
        }
        Ok(ContactUpdate::Refreshed)
    }

    /// The user's own name for a contact, if set.
    pub fn nickname(&self, key: &IdentityKey) -> Option<&str> {
        self.contacts.get(key).and_then(|c| c.nickname.as_deref())
    }

    /// Sets (or clears, with `None`) the user's own name for a contact.
    /// Returns `false` if the contact is unknown.
    pub fn set_nickname(&mut self, key: &IdentityKey, nickname: Option<String>) -> bool {
        self.contacts
            .get_mut(key)
            .map(|c| c.nickname = nickname)
            .is_some()
    }

    /// Forgets a contact: its card, sessions and tags. Messages from it
    /// can no longer be opened; receipts for ours can no longer be
    /// matched. Returns `false` if it was not a contact.
    pub fn remove_contact(&mut self, key: &IdentityKey) -> bool {
        if self.contacts.remove(key).is_none() {
            return false;
        }
        for table in self.tag_cache.values_mut() {
            table.retain(|_, owner| !matches!(owner, TagOwner::Contact(k) if k == key));
        }
        self.top_ups_due.retain(|(k, _)| k != key);
        true
    }

    /// Marks a contact verified after the user compared safety numbers.
    /// Returns `false` if the contact is unknown.
    pub fn mark_verified(&mut self, key: &IdentityKey) -> bool {
        self.contacts
            .get_mut(key)
            .map(|c| c.trust = Trust::Verified)
            .is_some()
    }

    /// Adds the peer of a completed in-person pairing as a verified contact,
    /// if `sas_confirmed` (both people saw the same code).
    ///
    /// # Errors
    /// As [`Keyring::add_contact`].
    pub fn complete_pairing(
        &mut self,
        outcome: PairingOutcome,
        sas_confirmed: bool,
    ) -> Result<Option<ContactUpdate>, SealError> {
        if !sas_confirmed {
            return Ok(None);
        }
        let key = *outcome.card.identity_key();
        let update = self.add_contact(outcome.card, Trust::Verified)?;
        // The card came over the pairing channel, to us alone: its one-time
        // keys are safe to use (unless it was older than the one we had).
        if update != ContactUpdate::Unchanged
            && let Some(contact) = self.contacts.get_mut(&key)
        {
            contact.private_card = true;
        }
        Ok(Some(update))
    }

    /// Settles the delivery of an envelope sealed with
    /// [`Keyring::seal_with_commitment`] (its receipt arrived, or it
    /// expired): dropping its session later is no longer worth reporting.
    pub fn settle(&mut self, to: &IdentityKey, content_id: &ContentId) {
        if let Some(contact) = self.contacts.get_mut(to) {
            for entry in &mut contact.sessions {
                entry.in_flight.retain(|id| id != content_id);
            }
        }
    }

    /// In-band prekey top-ups to seal and send now: one per contact that
    /// started a new session with us since the last call, with
    /// [`TOP_UP_AFTER_FALLBACK`] fresh one-time keys if it started from our
    /// fallback key, else one (replacing the key it used). Persist the
    /// keyring with the sealed top-ups: the keys live in our account.
    pub fn take_top_ups_due(&mut self) -> Vec<(IdentityKey, v1::Payload)> {
        let due = std::mem::take(&mut self.top_ups_due);
        due.into_iter()
            .map(|(to, count)| (to, self.prekey_top_up(count)))
            .collect()
    }

    /// Inbound sessions started from our fallback key since this keyring
    /// was loaded (the first chain of each has weaker forward secrecy): an
    /// observability counter.
    pub fn inbound_sessions_from_fallback(&self) -> u64 {
        self.fallback_sessions
    }

    /// Content IDs of unsettled envelopes whose session we dropped (to make
    /// room for newer ones, or because the contact's keys changed) since
    /// the last call. The recipient has most likely dropped it too, or
    /// will, so the message is presumed unreadable: the app should be told
    /// and may send it again. Drain it after every seal and open (the
    /// engine does): the list grows until then.
    pub fn take_dropped(&mut self) -> Vec<ContentId> {
        std::mem::take(&mut self.dropped)
    }

    /// How many of our one-time prekeys are still unused: the engine tops
    /// contacts up when it runs low.
    pub fn unused_one_time_keys(&self) -> usize {
        self.identity.account().stored_one_time_key_count()
    }

    /// A payload giving a contact `count` fresh one-time prekeys (at most
    /// [`MAX_ONE_TIME_KEYS`](crate::proto::limits::MAX_ONE_TIME_KEYS)), to
    /// seal to them: their next sessions with us then start from keys only
    /// they received, with full forward secrecy.
    pub fn prekey_top_up(&mut self, count: usize) -> v1::Payload {
        let count = count.min(crate::proto::limits::MAX_ONE_TIME_KEYS);
        let keys = self.identity.fresh_one_time_keys(count);
        v1::Payload {
            kind: Some(v1::payload::Kind::PrekeyTopUp(v1::PrekeyTopUp {
                one_time_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
                fallback_key: Vec::new(),
            })),
        }
    }

    /// Seals `payload` for a contact into an envelope expiring at `expiry`
    /// (rounded up to [`tags::EXPIRY_GRANULARITY_SECS`]). The envelope's
    /// hop limit and copy budget are 0; the engine sets them.
    ///
    /// # Errors
    /// [`SealError`] if the contact is unknown or the payload too large.
    pub fn seal<R: CryptoRng + ?Sized>(
        &mut self,
        to: &IdentityKey,
        payload: &v1::Payload,
        expiry: u64,
        rng: &mut R,
    ) -> Result<v1::Envelope, SealError> {
        // No receipt expected: a random commitment nobody can open, and
        // nothing to settle later.
        let mut commitment = [0u8; 16];
        rng.fill_bytes(&mut commitment);
        self.seal_tracked(to, payload, expiry, commitment, false, rng)
    }

    /// As [`Keyring::seal`], with the delivery commitment of a secret the
    /// payload carries (see [`tags::delivery_commitment`]).
    ///
    /// # Errors
    /// [`SealError`] if the contact is unknown or the payload too large.
    pub fn seal_with_commitment<R: CryptoRng + ?Sized>(
        &mut self,
        to: &IdentityKey,
        payload: &v1::Payload,
        expiry: u64,
        commitment: DeliverySecret,
        rng: &mut R,
    ) -> Result<v1::Envelope, SealError> {
        self.seal_tracked(to, payload, expiry, commitment, true, rng)
    }

    fn seal_tracked<R: CryptoRng + ?Sized>(
        &mut self,
        to: &IdentityKey,
        payload: &v1::Payload,
        expiry: u64,
        commitment: DeliverySecret,
        track: bool,
        rng: &mut R,
    ) -> Result<v1::Envelope, SealError> {
        let plaintext = zeroize::Zeroizing::new(proto::encode(payload));
        if plaintext.len() > padding::MAX_CONTENT_LEN {
            return Err(SealError::TooLarge);
        }
        let contact = self.contacts.get_mut(to).ok_or(SealError::UnknownContact)?;
        let (message_type, ciphertext) = if self.skip_sessions {
            (1, plaintext.to_vec())
        } else {
            encrypt_in_session(&self.identity, contact, &plaintext, &mut self.dropped)?.to_parts()
        };
        let content = v1::EnvelopeContent {
            body: Some(v1::envelope_content::Body::Olm(v1::OlmMessage {
                message_type: u32::try_from(message_type).map_err(|_| SealError::Session)?,
                ciphertext,
            })),
        };
        let expiry = tags::coarse_expiry(expiry);
        let tag = contact.keys.outgoing_tag(epoch_of(expiry));
        let key = contact.keys.envelope_key;
        let envelope = seal_envelope(&key, tag, expiry, commitment, &proto::encode(&content), rng)?;
        if track
            && !self.skip_sessions
            && let Some(entry) = contact.sessions.first_mut()
        {
            entry.in_flight.push(tags::content_id_of(&envelope));
        }
        Ok(envelope)
    }

    /// Seals a first-contact request to a contact whose card we have but
    /// who may not have ours, carrying `our_card` and an introduction.
    ///
    /// # Errors
    /// [`SealError`] if the contact is unknown or the request too large.
    pub fn seal_contact_request<R: CryptoRng + ?Sized>(
        &mut self,
        to: &IdentityKey,
        our_card: &ContactCard,
        introduction: &str,
        expiry: u64,
        rng: &mut R,
    ) -> Result<v1::Envelope, SealError> {
        let contact = self.contacts.get(to).ok_or(SealError::UnknownContact)?;
        let payload = request::payload(our_card.to_wire(), introduction);
        let inner = proto::encode(&payload);
        let noise = request::seal(&self.identity, contact.card.request_key(), &inner)
            .ok_or(SealError::TooLarge)?;
        let content = v1::EnvelopeContent {
            body: Some(v1::envelope_content::Body::ContactRequest(noise)),
        };
        let keys = RequestKeys::for_request_key(contact.card.request_key());
        let expiry = tags::coarse_expiry(expiry);
        // Requests get no receipt: a random commitment nobody can open.
        let mut commitment = [0u8; 16];
        rng.fill_bytes(&mut commitment);
        seal_envelope(
            &keys.envelope_key,
            keys.tag(epoch_of(expiry)),
            expiry,
            commitment,
            &proto::encode(&content),
            rng,
        )
    }

    fn owner_of(&mut self, tag: &RecipientTag, expiry: u64) -> Option<TagOwner> {
        let epoch = epoch_of(expiry);
        if let Some(table) = self.tag_cache.get(&epoch) {
            return table.get(tag).copied();
        }
        let mut table = HashMap::with_capacity(self.contacts.len() + 1);
        for (key, contact) in &self.contacts {
            table.insert(contact.keys.incoming_tag(epoch), TagOwner::Contact(*key));
        }
        table.insert(self.request_keys.tag(epoch), TagOwner::Request);
        let owner = table.get(tag).copied();
        if self.tag_cache.len() >= TAG_CACHE_EPOCHS {
            // Time only moves forward: the earliest epoch expires first. An
            // epoch earlier than every cached one is answered uncached.
            let Some(&earliest) = self.tag_cache.keys().min() else {
                return owner;
            };
            if epoch < earliest {
                return owner;
            }
            self.tag_cache.remove(&earliest);
        }
        self.tag_cache.insert(epoch, table);
        owner
    }

    /// Whether an envelope with this tag and expiry is addressed to us:
    /// O(1) after the first lookup in an epoch.
    pub fn is_for_us(&mut self, recipient_tag: &[u8], expiry: u64) -> bool {
        let Ok(tag) = <RecipientTag>::try_from(recipient_tag) else {
            return false;
        };
        self.owner_of(&tag, expiry).is_some()
    }

    /// Opens an envelope addressed to us.
    ///
    /// Order of checks, cheapest first: tag, expiry, content ID, replay
    /// guard, outer AEAD, padding, inner layer. The content ID is recorded
    /// in `replay` only after everything succeeded.
    ///
    /// # Errors
    /// See [`OpenError`]; all cryptographic failures are `Rejected`.
    pub fn open<G: ReplayGuard>(
        &mut self,
        envelope: &v1::Envelope,
        now: u64,
        replay: &mut G,
    ) -> Result<Opened, OpenError> {
        let tag = <RecipientTag>::try_from(envelope.recipient_tag.as_slice())
            .map_err(|_| OpenError::Rejected)?;
        let owner = self
            .owner_of(&tag, envelope.expiry)
            .ok_or(OpenError::NotForUs)?;
        if envelope.expiry < now {
            return Err(OpenError::Expired);
        }
        if envelope.version != WIRE_VERSION {
            return Err(OpenError::Rejected);
        }
        let id = tags::content_id_of(envelope);
        if envelope.content_id.as_slice() != id {
            return Err(OpenError::Rejected);
        }
        if replay
            .contains(&id, now)
            .map_err(|e| OpenError::Storage(e.to_string()))?
        {
            return Err(OpenError::Duplicate);
        }
        let aad = envelope_aad(
            envelope.version,
            &envelope.recipient_tag,
            envelope.expiry,
            &envelope.delivery_commitment,
        );
        if matches!(owner, TagOwner::Request) && !self.request_allowed(now) {
            return Err(OpenError::Throttled);
        }
        let opened = match owner {
            TagOwner::Contact(from) => self.open_from_contact(from, &aad, envelope, id),
            TagOwner::Request => self.open_request(&aad, envelope, id),
        }
        .ok_or(OpenError::Rejected)?;
        replay
            .insert(id, envelope.expiry)
            .map_err(|e| OpenError::Storage(e.to_string()))?;
        Ok(opened)
    }

    /// Counts one contact request attempt against the rate limit. Garbage
    /// counts too: it costs as much to find out.
    fn request_allowed(&mut self, now: u64) -> bool {
        let window = now / REQUEST_WINDOW_SECS;
        if self.request_window.0 != window {
            self.request_window = (window, 0);
        }
        if self.request_window.1 >= MAX_REQUESTS_PER_WINDOW {
            return false;
        }
        self.request_window.1 += 1;
        true
    }

    fn open_from_contact(
        &mut self,
        from: IdentityKey,
        aad: &[u8],
        envelope: &v1::Envelope,
        content_id: ContentId,
    ) -> Option<Opened> {
        let contact = self.contacts.get_mut(&from)?;
        let padded = zeroize::Zeroizing::new(aead::open(
            &contact.keys.envelope_key,
            aad,
            &envelope.sealed_body,
        )?);
        let content: v1::EnvelopeContent = proto::decode(padding::unpad(&padded)?).ok()?;
        let Some(v1::envelope_content::Body::Olm(olm)) = content.body else {
            return None;
        };
        let plaintext = if self.skip_sessions {
            zeroize::Zeroizing::new(olm.ciphertext)
        } else {
            let message =
                OlmMessage::from_parts(usize::try_from(olm.message_type).ok()?, &olm.ciphertext)
                    .ok()?;
            let mut inbound = None;
            let plaintext = zeroize::Zeroizing::new(decrypt_in_session(
                &mut self.identity,
                contact,
                &message,
                &mut self.dropped,
                &mut inbound,
            )?);
            if let Some(from_fallback) = inbound {
                let wanted = if from_fallback {
                    self.fallback_sessions = self.fallback_sessions.saturating_add(1);
                    TOP_UP_AFTER_FALLBACK
                } else {
                    // It used one of ours (from a top-up or a private card).
                    contact.keys_outstanding = contact.keys_outstanding.saturating_sub(1);
                    1
                };
                let room = MAX_TOPPED_UP_PER_CONTACT.saturating_sub(contact.keys_outstanding);
                let count = wanted.min(usize::try_from(room).unwrap_or(0));
                if count > 0 {
                    contact.keys_outstanding = contact
                        .keys_outstanding
                        .saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
                    self.top_ups_due.push((from, count));
                }
            }
            plaintext
        };
        let payload: v1::Payload = proto::decode(&plaintext).ok()?;
        match &payload.kind {
            // Contact requests only travel inside Noise X, never in sessions.
            Some(v1::payload::Kind::ContactRequest(_)) => return None,
            // Authenticated by the session: apply it here, report it too.
            Some(v1::payload::Kind::PrekeyTopUp(top_up)) => contact.apply_top_up(top_up),
            _ => {}
        }
        Some(Opened::Message {
            from,
            payload,
            content_id,
        })
    }

    fn open_request(
        &mut self,
        aad: &[u8],
        envelope: &v1::Envelope,
        content_id: ContentId,
    ) -> Option<Opened> {
        let padded = aead::open(&self.request_keys.envelope_key, aad, &envelope.sealed_body)?;
        let content: v1::EnvelopeContent = proto::decode(padding::unpad(&padded)?).ok()?;
        let Some(v1::envelope_content::Body::ContactRequest(noise)) = content.body else {
            return None;
        };
        let (sender_key, inner) = request::open(&self.identity, &noise)?;
        // Canonical: the request carries a signed card, and only the
        // encoding the signer produced is accepted (docs/crypto.md §2).
        let payload: v1::Payload = proto::decode_canonical(&inner).ok()?;
        let Some(v1::payload::Kind::ContactRequest(req)) = payload.kind else {
            return None;
        };
        let card = ContactCard::from_wire(req.card.as_ref()?).ok()?;
        // The Noise static key must be the card's: nobody can send someone
        // else's card as a request in their name.
        if card.request_key() != &sender_key {
            return None;
        }
        let known = self.contacts.get(card.identity_key());
        let existing = known.map(|c| c.trust);
        let keys_changed = known.is_some_and(|c| keys_differ(&c.card, &card));
        Some(Opened::ContactRequest {
            card: Box::new(card),
            introduction: req.introduction,
            existing,
            keys_changed,
            content_id,
        })
    }
}

fn seal_envelope<R: CryptoRng + ?Sized>(
    key: &[u8; 32],
    tag: RecipientTag,
    expiry: u64,
    commitment: DeliverySecret,
    content: &[u8],
    rng: &mut R,
) -> Result<v1::Envelope, SealError> {
    let padded = zeroize::Zeroizing::new(padding::pad(content).ok_or(SealError::TooLarge)?);
    let aad = envelope_aad(WIRE_VERSION, &tag, expiry, &commitment);
    let sealed_body = aead::seal(key, &aad, &padded, rng);
    Ok(v1::Envelope {
        version: WIRE_VERSION,
        content_id: content_id(&tag, expiry, &commitment, &sealed_body).to_vec(),
        delivery_commitment: commitment.to_vec(),
        expiry,
        hop_limit: 0,
        copy_budget: 0,
        recipient_tag: tag.to_vec(),
        stamp: Vec::new(),
        sealed_body,
    })
}

fn cache_contact_tags(
    cache: &mut HashMap<u64, HashMap<RecipientTag, TagOwner>>,
    key: IdentityKey,
    keys: &PairwiseKeys,
) {
    for (epoch, table) in cache.iter_mut() {
        table.insert(keys.incoming_tag(*epoch), TagOwner::Contact(key));
    }
}

/// Puts a session first, dropping the least recently used beyond
/// [`MAX_SESSIONS_PER_CONTACT`] and reporting their unsettled envelopes.
fn push_session(contact: &mut Contact, entry: SessionEntry, dropped: &mut Vec<ContentId>) {
    contact.sessions.insert(0, entry);
    if contact.sessions.len() > MAX_SESSIONS_PER_CONTACT {
        for old in contact.sessions.drain(MAX_SESSIONS_PER_CONTACT..) {
            dropped.extend(old.in_flight);
        }
    }
}

fn encrypt_in_session(
    identity: &Identity,
    contact: &mut Contact,
    plaintext: &[u8],
    dropped: &mut Vec<ContentId>,
) -> Result<OlmMessage, SealError> {
    let reusable = contact.sessions.first().is_some_and(SessionEntry::has_room);
    if !reusable {
        let prekey = contact.next_prekey();
        let session = identity
            .account()
            .create_outbound_session(
                SessionConfig::version_1(),
                curve(contact.card.olm_identity_key()),
                curve(&prekey),
            )
            .map_err(|_| SealError::BadContactKeys)?;
        push_session(contact, SessionEntry::new(session), dropped);
    }
    let entry = contact.sessions.first_mut().ok_or(SealError::Session)?;
    let message = entry
        .session
        .encrypt(plaintext)
        .map_err(|_| SealError::Session)?;
    entry.record_sent(&message);
    Ok(message)
}

fn decrypt_in_session(
    identity: &mut Identity,
    contact: &mut Contact,
    message: &OlmMessage,
    dropped: &mut Vec<ContentId>,
    inbound: &mut Option<bool>,
) -> Option<Vec<u8>> {
    // Existing sessions first (a failed attempt does not change a session).
    let mut found = None;
    for (i, entry) in contact.sessions.iter_mut().enumerate() {
        if let OlmMessage::PreKey(pre) = message
            && pre.session_id() != entry.session.session_id()
        {
            continue;
        }
        if let Ok(plaintext) = entry.session.decrypt(message) {
            found = Some((i, plaintext));
            break;
        }
    }
    if let Some((i, plaintext)) = found {
        let mut entry = contact.sessions.remove(i);
        entry.record_received(message);
        contact.sessions.insert(0, entry);
        return Some(plaintext);
    }
    let OlmMessage::PreKey(pre) = message else {
        return None;
    };
    // A pre-key message of a session we hold that it could not open is a
    // replay (its key is spent) or garbage: starting the session again from
    // a fallback key would open a replay a second time.
    let session_id = pre.session_id();
    if contact
        .sessions
        .iter()
        .any(|entry| entry.session.session_id() == session_id)
    {
        return None;
    }
    let created = identity
        .account_mut()
        .create_inbound_session(
            SessionConfig::version_1(),
            curve(contact.card.olm_identity_key()),
            pre,
        )
        .ok()?;
    let mut entry = SessionEntry::new(created.session);
    entry.record_received(message);
    push_session(contact, entry, dropped);
    // Whether the sender had run out of our one-time keys.
    *inbound = Some(pre.one_time_key().to_bytes() == *identity.fallback_key().as_bytes());
    Some(created.plaintext)
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;
