//! Ferry's durable store: [`ferry_core::engine::Store`] on sled, encrypted
//! at rest.
//!
//! - **Trees per concern**: `envelopes`, `seen`, `delivered`, `outbox`,
//!   `inbox`, `meta` (keyring state), and the app's `history` (with its
//!   index `history_ids`) and message `status`.
//! - **Atomic and durable**: every [`Store::commit`] is one sled transaction
//!   over all trees, then `flush` (fsync) before it returns.
//! - **Encrypted at rest**: a random 32-byte data key, drawn from the
//!   operating system's generator when the store is created, is wrapped
//!   under a key derived from the passphrase with Argon2id and kept in a
//!   small key file beside sled's files (`<dir>/key`), never in sled. Every
//!   value is sealed with XChaCha20-Poly1305 under keys derived from the
//!   data key, its tree and key bound as associated data; tree keys are
//!   keyed hashes of the IDs, so a seized disk does not reveal which
//!   (captured) envelopes this device held or opened. Records whose length
//!   would reveal a body's length are padded to buckets.
//! - **Wipe**: [`SledStore::wipe`] first overwrites the key file in place
//!   and fsyncs (from then on the passphrase opens nothing, even though
//!   sled's log keeps old values), then removes it, then sled's files;
//!   [`SledStore::wipe_steps`] runs it one step at a time.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use ferry_core::{
    crypto::{aead, tags::ContentId},
    engine::{Custody, Loaded, MessageId, StatusRecord, Store, StoreOp},
};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use sled::{
    Transactional as _,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};
use thiserror::Error;
use zeroize::Zeroizing;

mod keyfile;
mod padding;
mod wipe;

pub use wipe::{Wipe, WipeStep};

/// Store failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// The passphrase does not open this store's key file. Ask again; the
    /// data is intact.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The key file was destroyed (a wipe ran, perhaps interrupted) or is
    /// missing while sled still holds records. No passphrase opens this
    /// store any more; finish the wipe ([`Wipe::of_closed`]) and create a
    /// new one.
    #[error("the store's key was destroyed")]
    KeyDestroyed,
    /// The directory holds a store of a format this version does not open
    /// (the pre-release format with the salt inside sled, or a newer key
    /// file). There is no migration: wipe it and create a new store.
    #[error("unsupported store format")]
    UnsupportedFormat,
    /// Reading or writing the key file failed (permissions, full disk):
    /// fix the file system and retry.
    #[error("key file error: {0}")]
    KeyFile(std::io::Error),
    /// The operating system's random generator failed; retry later.
    #[error("the operating system's random generator failed")]
    Entropy,
    /// A record is too large to pad (over 4 GiB): a bug in the caller.
    #[error("record too large")]
    RecordTooLarge,
    /// [`Wipe::of_closed`] was pointed at a directory that holds no store;
    /// nothing was touched. Check the path.
    #[error("not a store directory")]
    NotAStore,
    /// A record failed authentication or parsing: tampering or corruption.
    #[error("corrupted record in tree {0}")]
    Corrupted(&'static str),
    /// The key-derivation parameters are invalid, or above the bounds a key
    /// file may ask for (1 GiB, 64 iterations, 16 lanes). Pick others.
    #[error("invalid key-derivation parameters")]
    KdfParams,
    /// A wipe step failed (the file system refused it). Retry the step;
    /// once [`WipeStep::DestroyKey`] has completed, the data no longer opens.
    #[error("wipe failed: {0}")]
    Wipe(std::io::Error),
    /// Another open handle (another process, or one in this process) holds
    /// the store, and did not let go within [`LOCK_WAIT`].
    #[error("the store is in use by another handle or process")]
    Locked,
}

/// How long [`SledStore::open`] waits for the store's file lock.
///
/// Why wait at all: sled releases its lock when the last of its background
/// I/O threads lets go of the file, which can be a moment after the handle
/// is dropped. An app that shuts a node down and starts it again on the
/// same directory would otherwise see a spurious failure. A lock still
/// held after this long belongs to a live handle: [`StoreError::Locked`].
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 iterations, 1 lane (about 0.2–0.5 s on a phone).
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and benchmarks only: a stolen store
    /// created with them falls to a passphrase search quickly.
    pub fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    }
}

struct Keys {
    seal: Zeroizing<[u8; 32]>,
    index: Zeroizing<[u8; 32]>,
    keyring: Zeroizing<[u8; 32]>,
}

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    path: PathBuf,
    envelopes: sled::Tree,
    seen: sled::Tree,
    delivered: sled::Tree,
    outbox: sled::Tree,
    inbox: sled::Tree,
    meta: sled::Tree,
    status: sled::Tree,
    history: sled::Tree,
    history_ids: sled::Tree,
    data_key: keyfile::DataKey,
    keys: Keys,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

/// The store's working keys, from the data key (HKDF-SHA-256).
fn derive(data_key: &[u8; 32]) -> Keys {
    let hk = Hkdf::<Sha256>::new(Some(b"ferry/store/v2"), data_key);
    let mut keys = Keys {
        seal: Zeroizing::new([0; 32]),
        index: Zeroizing::new([0; 32]),
        keyring: Zeroizing::new([0; 32]),
    };
    // 32-byte outputs are always within HKDF's limit.
    let _ = hk.expand(b"seal", keys.seal.as_mut());
    let _ = hk.expand(b"index", keys.index.as_mut());
    let _ = hk.expand(b"keyring", keys.keyring.as_mut());
    keys
}

fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    aead::seal(key, aad, plaintext, &mut rand::rng())
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    aead::open(key, aad, sealed).map(Zeroizing::new)
}

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for a lock that a
/// closing handle still holds.
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new().path(path).mode(sled::Mode::LowSpace);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_conflict(&e) => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether any tree holds a record.
fn holds_records(db: &sled::Db) -> Result<bool, StoreError> {
    for name in db.tree_names() {
        if !db.open_tree(name)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// sled 0.34 reports a held lock only as an I/O error with this text.
fn is_lock_conflict(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the store at `path` with `passphrase`. `params`
    /// apply to a new store; an existing one keeps those in its key file.
    ///
    /// # Errors
    /// [`StoreError::WrongPassphrase`] if the passphrase does not match;
    /// [`StoreError::KeyDestroyed`] after a (possibly interrupted) wipe;
    /// [`StoreError::UnsupportedFormat`] for a store of another format;
    /// [`StoreError::Locked`], or a storage or key-file error.
    pub fn open(path: &Path, passphrase: &[u8], params: KdfParams) -> Result<Self, StoreError> {
        // The passphrase is checked before sled opens, read-only: sled's
        // open writes (a snapshot, a grown file), and a wrong passphrase
        // must leave the directory exactly as it was.
        let known = keyfile::peek(path, passphrase)?;
        // Then sled: its lock keeps another handle from racing us on the
        // key file (creation, passphrase change, wipe); the key file is
        // read again under it.
        let db = open_db(path)?;
        let meta = db.open_tree("meta")?;
        let data_key = match keyfile::unlock(path, passphrase, known.as_ref())? {
            Some(key) => key,
            // The pre-release format kept its salt and key check in sled.
            None if meta.contains_key("salt")? => return Err(StoreError::UnsupportedFormat),
            // Records are written only once a key file exists: records
            // without one mean it was destroyed. A fresh key would open
            // an empty-looking store over data no one can read.
            None if holds_records(&db)? => return Err(StoreError::KeyDestroyed),
            None => keyfile::create(path, passphrase, params)?,
        };
        let keys = derive(&data_key);
        Ok(Self {
            envelopes: db.open_tree("envelopes")?,
            seen: db.open_tree("seen")?,
            delivered: db.open_tree("delivered")?,
            outbox: db.open_tree("outbox")?,
            inbox: db.open_tree("inbox")?,
            status: db.open_tree("status")?,
            history: db.open_tree("history")?,
            history_ids: db.open_tree("history_ids")?,
            meta,
            db,
            path: path.to_path_buf(),
            data_key,
            keys,
        })
    }

    /// The key the engine should seal its keyring state with (derived from
    /// the data key, distinct from the store's own keys; it survives a
    /// passphrase change).
    pub fn keyring_key(&self) -> [u8; 32] {
        *self.keys.keyring
    }

    /// Rewraps the data key under `passphrase` (with a fresh salt and
    /// `params`); the data is not re-encrypted. The old wrapping is
    /// overwritten in place, so the old passphrase opens nothing left in
    /// the live files. A crash part-way leaves the old or the new
    /// passphrase working (the next open finishes or drops the change).
    ///
    /// # Errors
    /// [`StoreError::KdfParams`], or a key-file error.
    pub fn change_passphrase(
        &mut self,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<(), StoreError> {
        keyfile::rewrap(&self.path, &self.data_key, passphrase, params)
    }

    /// Writes every commit still in memory to disk (the deferred relay
    /// commits of [`Store::commit`]) and waits for it: a graceful shutdown
    /// calls this so that a stopped relay loses nothing it held.
    ///
    /// # Errors
    /// [`StoreError::Sled`].
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Destroys the store: the key file first (overwritten in place and
    /// fsynced: from then on the passphrase opens nothing), then the key
    /// file's name, then sled's files. See [`WipeStep`].
    ///
    /// Flash storage and copy-on-write file systems may keep the old
    /// blocks of an overwritten file; see ARCHITECTURE ("Store").
    ///
    /// # Errors
    /// [`StoreError::Wipe`].
    pub fn wipe(self) -> Result<(), StoreError> {
        self.wipe_steps().finish()
    }

    /// The wipe of [`SledStore::wipe`], to run one step at a time.
    pub fn wipe_steps(self) -> Wipe {
        Wipe::of_store(self)
    }

    /// Closes the store, keeping only sled's handle (and its lock); the
    /// keys are zeroized as they drop.
    fn into_db(self) -> sled::Db {
        self.db
    }

    fn index_key(&self, tree: &str, id: &ContentId) -> [u8; 32] {
        // HMAC accepts any key length, so this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(self.keys.index.as_ref()) else {
            return *id;
        };
        mac.update(tree.as_bytes());
        mac.update(id);
        mac.finalize().into_bytes().into()
    }

    /// The keyed hash naming `parts` in tree `tree` (as [`Self::index_key`]
    /// for IDs of other lengths).
    fn keyed(&self, tree: &str, parts: &[&[u8]]) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(self.keys.index.as_ref()) else {
            return [0; 32];
        };
        mac.update(tree.as_bytes());
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Where a contact's conversation starts in the `history` tree: a
    /// keyed hash, so the disk does not say whose it is.
    fn history_prefix(&self, contact: &[u8; 32]) -> [u8; 32] {
        self.keyed("history", &[contact])
    }

    fn history_id_key(&self, message_id: &MessageId, outgoing: bool) -> [u8; 32] {
        self.keyed(
            "history_ids",
            &[&[u8::from(outgoing)], message_id.as_bytes()],
        )
    }

    fn status_key(&self, message_id: &MessageId) -> [u8; 32] {
        self.keyed("status", &[message_id.as_bytes()])
    }

    /// A page of a contact's conversation, newest first: up to `limit`
    /// entries placed before `before` (all when `None`).
    ///
    /// # Errors
    /// A storage error, or a record that does not decrypt.
    pub fn history(
        &self,
        contact: &[u8; 32],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let prefix = self.history_prefix(contact);
        let mut start = prefix.to_vec();
        start.extend_from_slice(&0u64.to_be_bytes());
        let mut end = prefix.to_vec();
        end.extend_from_slice(&before.unwrap_or(u64::MAX).to_be_bytes());
        let mut out = Vec::new();
        for item in self.history.range(start..end).rev().take(limit) {
            let (key, value) = item?;
            let seq = key
                .get(32..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(StoreError::Corrupted("history"))?;
            let plain = self.open_record("history", &Self::aad("history", &key), &value)?;
            let (&[outgoing], rest) = plain
                .split_first_chunk::<1>()
                .ok_or(StoreError::Corrupted("history"))?;
            let (message_id, record) = rest
                .split_first_chunk::<16>()
                .ok_or(StoreError::Corrupted("history"))?;
            out.push(HistoryEntry {
                seq,
                outgoing: outgoing == 1,
                message_id: MessageId(*message_id),
                record: record.to_vec(),
            });
        }
        Ok(out)
    }

    /// The contact a message in the history belongs to, if it is there.
    ///
    /// # Errors
    /// A storage error, or a record that does not decrypt.
    pub fn history_contact(
        &self,
        message_id: &MessageId,
        outgoing: bool,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let key = self.history_id_key(message_id, outgoing);
        let Some(value) = self.history_ids.get(key)? else {
            return Ok(None);
        };
        let plain = self.open_record("history_ids", &Self::aad("history_ids", &key), &value)?;
        let contact = plain
            .first_chunk::<32>()
            .ok_or(StoreError::Corrupted("history_ids"))?;
        Ok(Some(*contact))
    }

    fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tree.len() + 1 + key.len());
        aad.extend_from_slice(tree.as_bytes());
        aad.push(b'/');
        aad.extend_from_slice(key);
        aad
    }

    /// Seals a record of tree `name`, padded first if its length could
    /// reveal a body's (see [`PADDED`]).
    fn seal_record(&self, name: &str, aad: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        if !PADDED.contains(&name) {
            return Ok(seal(&self.keys.seal, aad, value));
        }
        let padded = Zeroizing::new(padding::pad(value).ok_or(StoreError::RecordTooLarge)?);
        Ok(seal(&self.keys.seal, aad, &padded))
    }

    /// Opens what [`SledStore::seal_record`] sealed.
    fn open_record(
        &self,
        name: &'static str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let plain = open(&self.keys.seal, aad, sealed).ok_or(StoreError::Corrupted(name))?;
        if !PADDED.contains(&name) {
            return Ok(plain);
        }
        padding::unpad(&plain)
            .map(|content| Zeroizing::new(content.to_vec()))
            .ok_or(StoreError::Corrupted(name))
    }

    fn put(
        &self,
        tree: &TransactionalTree,
        name: &str,
        id: &ContentId,
        value: &[u8],
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let key = self.index_key(name, id);
        let sealed = self
            .seal_record(name, &Self::aad(name, &key), value)
            .map_err(ConflictableTransactionError::Abort)?;
        tree.insert(&key, sealed)?;
        Ok(())
    }

    fn read_tree(
        &self,
        tree: &sled::Tree,
        name: &'static str,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        tree.iter()
            .map(|item| {
                let (k, v) = item?;
                self.open_record(name, &Self::aad(name, &k), &v)
            })
            .collect()
    }
}

/// Trees whose records are padded to buckets: their length would say how
/// long a message body (or the keyring) is. `seen` and `delivered` records
/// have a fixed length already.
const PADDED: [&str; 5] = ["envelopes", "outbox", "inbox", "meta", "history"];

/// One message in a conversation, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its place in the history (increasing with time of storing): pass it
    /// as `before` to read the page before it.
    pub seq: u64,
    /// Whether we sent it.
    pub outgoing: bool,
    /// Its message ID.
    pub message_id: MessageId,
    /// The caller's record.
    pub record: Vec<u8>,
}

impl fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the record: it holds a message body.
        f.debug_struct("HistoryEntry")
            .field("seq", &self.seq)
            .field("outgoing", &self.outgoing)
            .finish_non_exhaustive()
    }
}

fn id_of<'a>(bytes: &'a [u8], name: &'static str) -> Result<(ContentId, &'a [u8]), StoreError> {
    let (id, rest) = bytes
        .split_first_chunk::<32>()
        .ok_or(StoreError::Corrupted(name))?;
    Ok((*id, rest))
}

fn expiry_of(bytes: &[u8], name: &'static str) -> Result<u64, StoreError> {
    bytes
        .first_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .ok_or(StoreError::Corrupted(name))
}

impl Store for SledStore {
    type Error = StoreError;

    fn commit(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let trees = (
            &self.envelopes,
            &self.seen,
            &self.delivered,
            &self.outbox,
            &self.inbox,
            &self.meta,
            &self.status,
            &self.history,
            &self.history_ids,
        );
        let result = trees.transaction(|trees| {
            let (envelopes, seen, delivered, outbox, inbox, meta, status, history, history_ids) =
                trees;
            for op in &ops {
                match op {
                    StoreOp::PutEnvelope { id, custody, bytes } => {
                        let mut value = Vec::with_capacity(33 + bytes.len());
                        value.extend_from_slice(id);
                        value.push(custody.to_byte());
                        value.extend_from_slice(bytes);
                        self.put(envelopes, "envelopes", id, &value)?;
                    }
                    StoreOp::RemoveEnvelope(id) => {
                        envelopes.remove(&self.index_key("envelopes", id))?;
                    }
                    StoreOp::PutSeen { id, expiry } => {
                        let mut value = id.to_vec();
                        value.extend_from_slice(&expiry.to_be_bytes());
                        self.put(seen, "seen", id, &value)?;
                    }
                    StoreOp::RemoveSeen(id) => {
                        seen.remove(&self.index_key("seen", id))?;
                    }
                    StoreOp::PutDelivered { id, secret, expiry } => {
                        let mut value = id.to_vec();
                        value.extend_from_slice(secret);
                        value.extend_from_slice(&expiry.to_be_bytes());
                        self.put(delivered, "delivered", id, &value)?;
                    }
                    StoreOp::RemoveDelivered(id) => {
                        delivered.remove(&self.index_key("delivered", id))?;
                    }
                    StoreOp::PutOutbox { id, record } => {
                        let mut value = id.to_vec();
                        value.extend_from_slice(record);
                        self.put(outbox, "outbox", id, &value)?;
                    }
                    StoreOp::RemoveOutbox(id) => {
                        outbox.remove(&self.index_key("outbox", id))?;
                    }
                    StoreOp::PutInbox { id, record } => {
                        let mut value = id.to_vec();
                        value.extend_from_slice(record);
                        self.put(inbox, "inbox", id, &value)?;
                    }
                    StoreOp::RemoveInbox(id) => {
                        inbox.remove(&self.index_key("inbox", id))?;
                    }
                    StoreOp::PutKeyring(state) => {
                        let sealed = self
                            .seal_record("meta", b"meta/keyring", state)
                            .map_err(ConflictableTransactionError::Abort)?;
                        meta.insert("keyring", sealed)?;
                    }
                    StoreOp::PutStatus { message_id, record } => {
                        let key = self.status_key(message_id);
                        let sealed = self
                            .seal_record("status", &Self::aad("status", &key), &record.encode())
                            .map_err(ConflictableTransactionError::Abort)?;
                        status.insert(&key, sealed)?;
                    }
                    StoreOp::PutHistory {
                        contact,
                        message_id,
                        outgoing,
                        record,
                    } => {
                        let id_key = self.history_id_key(message_id, *outgoing);
                        if history_ids.get(id_key)?.is_some() {
                            continue;
                        }
                        let seq = match meta.get("history_seq")? {
                            Some(sealed) => {
                                let plain = self
                                    .open_record("meta", b"meta/history_seq", &sealed)
                                    .map_err(ConflictableTransactionError::Abort)?;
                                plain
                                    .first_chunk::<8>()
                                    .map(|b| u64::from_be_bytes(*b))
                                    .ok_or(ConflictableTransactionError::Abort(
                                        StoreError::Corrupted("meta"),
                                    ))?
                            }
                            None => 1,
                        };
                        let next = self
                            .seal_record("meta", b"meta/history_seq", &(seq + 1).to_be_bytes())
                            .map_err(ConflictableTransactionError::Abort)?;
                        meta.insert("history_seq", next)?;
                        let mut key = self.history_prefix(contact).to_vec();
                        key.extend_from_slice(&seq.to_be_bytes());
                        let mut value = Zeroizing::new(Vec::with_capacity(17 + record.len()));
                        value.push(u8::from(*outgoing));
                        value.extend_from_slice(message_id.as_bytes());
                        value.extend_from_slice(record);
                        let sealed = self
                            .seal_record("history", &Self::aad("history", &key), &value)
                            .map_err(ConflictableTransactionError::Abort)?;
                        history.insert(key.as_slice(), sealed)?;
                        let mut index = contact.to_vec();
                        index.extend_from_slice(&seq.to_be_bytes());
                        let sealed = self
                            .seal_record("history_ids", &Self::aad("history_ids", &id_key), &index)
                            .map_err(ConflictableTransactionError::Abort)?;
                        history_ids.insert(&id_key, sealed)?;
                    }
                    StoreOp::RemoveHistory {
                        message_id,
                        outgoing,
                    } => {
                        if *outgoing {
                            status.remove(&self.status_key(message_id))?;
                        }
                        let id_key = self.history_id_key(message_id, *outgoing);
                        let Some(sealed) = history_ids.remove(&id_key)? else {
                            continue;
                        };
                        let index = self
                            .open_record("history_ids", &Self::aad("history_ids", &id_key), &sealed)
                            .map_err(ConflictableTransactionError::Abort)?;
                        let (contact, seq) = index.split_first_chunk::<32>().ok_or(
                            ConflictableTransactionError::Abort(StoreError::Corrupted(
                                "history_ids",
                            )),
                        )?;
                        let mut key = self.history_prefix(contact).to_vec();
                        key.extend_from_slice(seq);
                        history.remove(key)?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
        }
        // Durable before the engine reports anything, except for commits
        // that only touch relay custody (see `needs_flush`).
        if needs_flush(&ops) {
            self.db.flush()?;
        }
        Ok(())
    }

    fn envelope(&self, id: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.index_key("envelopes", id);
        let Some(value) = self.envelopes.get(key)? else {
            return Ok(None);
        };
        let plain = self.open_record("envelopes", &Self::aad("envelopes", &key), &value)?;
        let (_, rest) = id_of(&plain, "envelopes")?;
        Ok(rest.get(1..).map(<[u8]>::to_vec))
    }

    fn status(&self, message_id: &MessageId) -> Result<Option<StatusRecord>, StoreError> {
        let key = self.status_key(message_id);
        let Some(value) = self.status.get(key)? else {
            return Ok(None);
        };
        let plain = self.open_record("status", &Self::aad("status", &key), &value)?;
        StatusRecord::decode(&plain)
            .map(Some)
            .ok_or(StoreError::Corrupted("status"))
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        for value in self.read_tree(&self.envelopes, "envelopes")? {
            let (id, rest) = id_of(&value, "envelopes")?;
            let (custody, bytes) = rest
                .split_first()
                .ok_or(StoreError::Corrupted("envelopes"))?;
            let custody = Custody::from_byte(*custody).ok_or(StoreError::Corrupted("envelopes"))?;
            loaded.envelopes.insert(id, (custody, bytes.to_vec()));
        }
        for value in self.read_tree(&self.seen, "seen")? {
            let (id, rest) = id_of(&value, "seen")?;
            loaded.seen.insert(id, expiry_of(rest, "seen")?);
        }
        for value in self.read_tree(&self.delivered, "delivered")? {
            let (id, rest) = id_of(&value, "delivered")?;
            let (secret, rest) = rest
                .split_first_chunk::<16>()
                .ok_or(StoreError::Corrupted("delivered"))?;
            loaded
                .delivered
                .insert(id, (*secret, expiry_of(rest, "delivered")?));
        }
        for value in self.read_tree(&self.outbox, "outbox")? {
            let (id, rest) = id_of(&value, "outbox")?;
            loaded.outbox.insert(id, rest.to_vec());
        }
        for value in self.read_tree(&self.inbox, "inbox")? {
            let (id, rest) = id_of(&value, "inbox")?;
            loaded.inbox.insert(id, rest.to_vec());
        }
        if let Some(sealed) = self.meta.get("keyring")? {
            let state = self.open_record("meta", b"meta/keyring", &sealed)?;
            loaded.keyring = Some(state.to_vec());
        }
        Ok(loaded)
    }
}

/// Whether a commit must reach the disk before the engine goes on.
///
/// Our own envelopes and outbox, the inbox, the replay guard and the
/// keyring (ratchet state) must: losing them loses or duplicates messages.
/// Commits that only change relay custody (others' envelopes taken or
/// dropped, anti-packets learned, expiry sweeps) need not: sled applies
/// them atomically and writes them with its next flush (its background
/// flush runs every 500 ms, and any later durable commit flushes them
/// too, in order). A crash loses at most a relay's copies of others'
/// envelopes, which their senders and other carriers still hold. This
/// keeps an fsync off the forwarding path of every hop.
fn needs_flush(ops: &[StoreOp]) -> bool {
    ops.iter().any(|op| match op {
        StoreOp::PutEnvelope { custody, .. } => *custody == Custody::Own,
        StoreOp::PutOutbox { .. }
        | StoreOp::RemoveOutbox(_)
        | StoreOp::PutInbox { .. }
        | StoreOp::RemoveInbox(_)
        | StoreOp::PutSeen { .. }
        | StoreOp::PutKeyring(_)
        | StoreOp::PutHistory { .. }
        | StoreOp::RemoveHistory { .. } => true,
        // Sent and Carried are hints a crash may lose (the message then
        // shows an earlier status); the rest come with commits that flush.
        StoreOp::PutStatus { record, .. } => !matches!(
            record.status,
            ferry_core::engine::MessageStatus::Sent | ferry_core::engine::MessageStatus::Carried
        ),
        StoreOp::RemoveEnvelope(_)
        | StoreOp::RemoveSeen(_)
        | StoreOp::PutDelivered { .. }
        | StoreOp::RemoveDelivered(_) => false,
    })
}
