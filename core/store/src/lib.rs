//! Ferry's durable store: [`ferry_core::engine::Store`] on sled, encrypted
//! at rest.
//!
//! - **Trees per concern**: `envelopes`, `seen`, `delivered`, `outbox`,
//!   `inbox`, `meta` (salt, KDF parameters, key check, keyring state).
//! - **Atomic and durable**: every [`Store::commit`] is one sled transaction
//!   over all trees, then `flush` (fsync) before it returns.
//! - **Encrypted at rest**: the store key is derived from the user's
//!   passphrase with Argon2id (salt and parameters in `meta`). Every value is
//!   sealed with XChaCha20-Poly1305, its tree and key bound as associated
//!   data; tree keys are keyed hashes of the IDs, so a seized disk does not
//!   reveal which (captured) envelopes this device held or opened.
//! - **Wipe**: [`SledStore::wipe`] first destroys the key material on disk
//!   (salt and key check overwritten and flushed: the passphrase no longer
//!   derives the key), then deletes the files.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use argon2::{Algorithm, Argon2, Params, Version};
use ferry_core::{
    crypto::{aead, tags::ContentId},
    engine::{Custody, Loaded, Store, StoreOp},
};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngExt as _;
use sha2::Sha256;
use sled::{
    Transactional as _,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};
use thiserror::Error;
use zeroize::Zeroizing;

/// Store failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// The passphrase does not open this store (or its key was wiped).
    #[error("wrong passphrase, or the store was wiped")]
    WrongPassphrase,
    /// A record failed authentication or parsing: tampering or corruption.
    #[error("corrupted record in tree {0}")]
    Corrupted(&'static str),
    /// The key-derivation parameters are invalid.
    #[error("invalid key-derivation parameters")]
    KdfParams,
    /// Removing the files during a wipe failed.
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
    keys: Keys,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn derive(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Keys, StoreError> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|_| StoreError::KdfParams)?;
    let mut master = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase, salt, master.as_mut())
        .map_err(|_| StoreError::KdfParams)?;
    let hk = Hkdf::<Sha256>::new(Some(b"ferry/store/v1"), master.as_ref());
    let mut keys = Keys {
        seal: Zeroizing::new([0; 32]),
        index: Zeroizing::new([0; 32]),
        keyring: Zeroizing::new([0; 32]),
    };
    // 32-byte outputs are always within HKDF's limit.
    let _ = hk.expand(b"seal", keys.seal.as_mut());
    let _ = hk.expand(b"index", keys.index.as_mut());
    let _ = hk.expand(b"keyring", keys.keyring.as_mut());
    Ok(keys)
}

fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    aead::seal(key, aad, plaintext, &mut rand::rng())
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    aead::open(key, aad, sealed).map(Zeroizing::new)
}

const KEY_CHECK: &[u8] = b"ferry-store-key-check-v1";

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

/// sled 0.34 reports a held lock only as an I/O error with this text.
fn is_lock_conflict(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the store at `path` with `passphrase`.
    ///
    /// # Errors
    /// [`StoreError::WrongPassphrase`] if the passphrase does not match (or
    /// the store was wiped), or a storage error.
    pub fn open(path: &Path, passphrase: &[u8], params: KdfParams) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        let meta = db.open_tree("meta")?;
        let keys = match (meta.get("salt")?, meta.get("kdf")?) {
            (Some(salt), Some(kdf)) => {
                let kdf: [u8; 12] = kdf
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupted("meta"))?;
                let word = |i: usize| {
                    u32::from_be_bytes(
                        kdf.get(i..i + 4)
                            .and_then(|s| s.try_into().ok())
                            .unwrap_or([0; 4]),
                    )
                };
                let params = KdfParams {
                    memory_kib: word(0),
                    iterations: word(4),
                    parallelism: word(8),
                };
                let keys = derive(passphrase, &salt, params)?;
                let check = meta.get("check")?.ok_or(StoreError::WrongPassphrase)?;
                let ok = open(&keys.seal, b"meta/check", &check)
                    .is_some_and(|p| p.as_slice() == KEY_CHECK);
                if !ok {
                    return Err(StoreError::WrongPassphrase);
                }
                keys
            }
            _ => {
                let salt: [u8; 16] = rand::rng().random();
                let keys = derive(passphrase, &salt, params)?;
                let mut kdf = Vec::with_capacity(12);
                for word in [params.memory_kib, params.iterations, params.parallelism] {
                    kdf.extend_from_slice(&word.to_be_bytes());
                }
                meta.insert("salt", &salt)?;
                meta.insert("kdf", kdf)?;
                meta.insert("check", seal(&keys.seal, b"meta/check", KEY_CHECK))?;
                db.flush()?;
                keys
            }
        };
        Ok(Self {
            envelopes: db.open_tree("envelopes")?,
            seen: db.open_tree("seen")?,
            delivered: db.open_tree("delivered")?,
            outbox: db.open_tree("outbox")?,
            inbox: db.open_tree("inbox")?,
            meta,
            db,
            path: path.to_path_buf(),
            keys,
        })
    }

    /// The key the engine should seal its keyring state with (derived from
    /// the passphrase, distinct from the store's own keys).
    pub fn keyring_key(&self) -> [u8; 32] {
        *self.keys.keyring
    }

    /// Destroys the store: key material on disk first (flushed), then all
    /// files. After the first step the data is unreadable even with the
    /// passphrase.
    ///
    /// Flash storage may keep stale copies of overwritten blocks; the salt
    /// is what a passphrase search needs, and it is gone from the live file.
    ///
    /// # Errors
    /// A storage or file-system error.
    pub fn wipe(self) -> Result<(), StoreError> {
        self.destroy_key_material()?;
        let path = self.path.clone();
        drop(self);
        std::fs::remove_dir_all(&path).map_err(StoreError::Wipe)
    }

    /// The first step of [`SledStore::wipe`]: overwrites the salt and key
    /// check and flushes, so the passphrase no longer opens the store.
    ///
    /// # Errors
    /// A storage error.
    pub fn destroy_key_material(&self) -> Result<(), StoreError> {
        let noise: [u8; 64] = rand::rng().random();
        self.meta.insert("salt", &noise[..16])?;
        self.meta.insert("check", &noise[..])?;
        self.meta.remove("keyring")?;
        self.db.flush()?;
        Ok(())
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

    fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tree.len() + 1 + key.len());
        aad.extend_from_slice(tree.as_bytes());
        aad.push(b'/');
        aad.extend_from_slice(key);
        aad
    }

    fn put(
        &self,
        tree: &TransactionalTree,
        name: &str,
        id: &ContentId,
        value: &[u8],
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let key = self.index_key(name, id);
        tree.insert(&key, seal(&self.keys.seal, &Self::aad(name, &key), value))?;
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
                open(&self.keys.seal, &Self::aad(name, &k), &v).ok_or(StoreError::Corrupted(name))
            })
            .collect()
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
        );
        let result = trees.transaction(|(envelopes, seen, delivered, outbox, inbox, meta)| {
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
                        meta.insert("keyring", seal(&self.keys.seal, b"meta/keyring", state))?;
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
        let plain = open(&self.keys.seal, &Self::aad("envelopes", &key), &value)
            .ok_or(StoreError::Corrupted("envelopes"))?;
        let (_, rest) = id_of(&plain, "envelopes")?;
        Ok(rest.get(1..).map(<[u8]>::to_vec))
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
            let state = open(&self.keys.seal, b"meta/keyring", &sealed)
                .ok_or(StoreError::Corrupted("meta"))?;
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
        | StoreOp::PutKeyring(_) => true,
        StoreOp::RemoveEnvelope(_)
        | StoreOp::RemoveSeen(_)
        | StoreOp::PutDelivered { .. }
        | StoreOp::RemoveDelivered(_) => false,
    })
}
