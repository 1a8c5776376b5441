//! The key file: the store's random data key, wrapped under a key derived
//! from the passphrase, in a small file beside sled's (never in sled).
//!
//! Why a separate file: sled is log-structured, so a value overwritten in a
//! tree stays in its files until segments are reclaimed. A small file
//! overwritten in place is what a wipe can actually destroy: once its bytes
//! are gone, the passphrase derives nothing that opens the data.
//!
//! Layout (101 bytes): `version (1) || salt (16) || Argon2id memory KiB,
//! iterations, lanes (u32 BE each) || XChaCha20-Poly1305(KEK, nonce,
//! data key)` with the first 29 bytes as associated data and
//! `KEK = Argon2id(passphrase, salt, params)`. Version 0 marks a file a
//! wipe overwrote (the rest is random).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    path::Path,
};

use argon2::{Algorithm, Argon2, Params};
use ferry_core::crypto::aead;
use rand::{TryRng as _, rngs::SysRng};
use zeroize::Zeroizing;

use crate::{KdfParams, StoreError};

/// The live key file.
pub(crate) const NAME: &str = "key";
/// A new key file being written at creation, renamed to [`NAME`].
const CREATING: &str = "key.tmp";
/// The next wrapping during a passphrase change, kept until [`NAME`] has
/// been overwritten with it (a crash in between leaves one of the two
/// whole).
const NEXT: &str = "key.next";
/// Every name under which a wrapping of the data key may sit: a wipe
/// destroys them all.
pub(crate) const ALL: [&str; 3] = [NAME, NEXT, CREATING];

const VERSION: u8 = 1;
const DESTROYED: u8 = 0;
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = 1 + SALT_LEN + 12;
/// Length of a key file.
pub(crate) const LEN: usize = HEADER_LEN + aead::OVERHEAD + 32;

/// Upper bounds on the Argon2id parameters a key file may ask for: the
/// file is read before anything is authenticated, and a planted file must
/// not make `open` allocate gigabytes or run for hours.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 16;

/// The store's data key: every other store key is derived from it.
pub(crate) type DataKey = Zeroizing<[u8; 32]>;

impl KdfParams {
    fn argon2(self) -> Result<Argon2<'static>, StoreError> {
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_LANES
        {
            return Err(StoreError::KdfParams);
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| StoreError::KdfParams)?;
        Ok(Argon2::new(
            Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// Fills `buf` from the operating system's generator (not a userspace
/// one: a data key must not depend on a generator state that could be
/// cloned or snapshotted with the process).
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), StoreError> {
    SysRng.try_fill_bytes(buf).map_err(|_| StoreError::Entropy)
}

/// A fresh random data key.
pub(crate) fn new_data_key() -> Result<DataKey, StoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    os_random(key.as_mut())?;
    Ok(key)
}

fn kek(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<DataKey, StoreError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(passphrase, salt, kek.as_mut())
        .map_err(|_| StoreError::KdfParams)?;
    Ok(kek)
}

/// The key file's bytes: `data_key` wrapped under `passphrase` with a
/// fresh salt.
fn wrap(passphrase: &[u8], data_key: &[u8; 32], params: KdfParams) -> Result<Vec<u8>, StoreError> {
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt)?;
    let mut out = Vec::with_capacity(LEN);
    out.push(VERSION);
    out.extend_from_slice(&salt);
    for word in [params.memory_kib, params.iterations, params.parallelism] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    let kek = kek(passphrase, &salt, params)?;
    let sealed = aead::seal(&kek, &out, data_key, &mut rand::rng());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The data key in a key file's `bytes`, if `passphrase` opens it.
fn unwrap(passphrase: &[u8], bytes: &[u8]) -> Result<DataKey, StoreError> {
    let (header, sealed) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(StoreError::KeyDestroyed)?;
    let (version, rest) = header.split_first().ok_or(StoreError::KeyDestroyed)?;
    match *version {
        VERSION => {}
        DESTROYED => return Err(StoreError::KeyDestroyed),
        _ => return Err(StoreError::UnsupportedFormat),
    }
    if bytes.len() != LEN {
        return Err(StoreError::Corrupted("key"));
    }
    let (salt, words) = rest
        .split_first_chunk::<SALT_LEN>()
        .ok_or(StoreError::Corrupted("key"))?;
    let word = |i: usize| {
        words
            .get(i * 4..i * 4 + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_be_bytes)
            .ok_or(StoreError::Corrupted("key"))
    };
    let params = KdfParams {
        memory_kib: word(0)?,
        iterations: word(1)?,
        parallelism: word(2)?,
    };
    let kek = kek(passphrase, salt, params)?;
    let plain =
        Zeroizing::new(aead::open(&kek, header, sealed).ok_or(StoreError::WrongPassphrase)?);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(
        plain
            .get(..32)
            .filter(|_| plain.len() == 32)
            .ok_or(StoreError::Corrupted("key"))?,
    );
    Ok(key)
}

fn io(e: io::Error) -> StoreError {
    StoreError::KeyFile(e)
}

/// Reads the key file `name`, `None` if there is none. At most a little
/// more than a key file's length is read: the length check is the
/// parser's.
fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let file = match File::open(dir.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::with_capacity(LEN + 1);
    file.take(LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(Some(bytes))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `name` (truncating any previous one), writes `bytes`, fsyncs.
fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(dir.join(name))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Overwrites the existing file `name` in place (same inode, no
/// truncation, so the file system rewrites the blocks that held the old
/// bytes rather than allocating new ones), then fsyncs.
fn overwrite(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(dir.join(name))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates the key file for a new store: a fresh data key wrapped under
/// `passphrase`, written to a temporary file, fsynced, renamed into place
/// and the directory fsynced, so a crash leaves either no key file or a
/// whole one.
pub(crate) fn create(
    dir: &Path,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<DataKey, StoreError> {
    let data_key = new_data_key()?;
    let bytes = wrap(passphrase, &data_key, params)?;
    write_new(dir, CREATING, &bytes).map_err(io)?;
    fs::rename(dir.join(CREATING), dir.join(NAME)).map_err(io)?;
    sync_dir(dir).map_err(io)?;
    Ok(data_key)
}

/// Opens the key file with `passphrase`: the data key, or `None` if there
/// is no key file.
///
/// Finishes or rolls back a passphrase change a crash interrupted: if the
/// live file does not open but the next one does, the change is completed;
/// if the live one opens, a leftover next wrapping is destroyed.
/// A wrapping [`peek`] opened: its bytes and the key in it.
pub(crate) struct Opened {
    bytes: Vec<u8>,
    key: DataKey,
}

/// Checks `passphrase` against the key file (the current wrapping, else
/// the next one of an interrupted change) without writing anything:
/// `Ok(None)` without a key file. Run before sled opens, so that a wrong
/// passphrase leaves every file as it was (sled's open writes).
pub(crate) fn peek(dir: &Path, passphrase: &[u8]) -> Result<Option<Opened>, StoreError> {
    let Some(current) = read(dir, NAME)? else {
        return Ok(None);
    };
    match unwrap(passphrase, &current) {
        Ok(key) => Ok(Some(Opened {
            bytes: current,
            key,
        })),
        Err(e) => match read(dir, NEXT)? {
            Some(next) => match unwrap(passphrase, &next) {
                Ok(key) => Ok(Some(Opened { bytes: next, key })),
                Err(_) => Err(e),
            },
            None => Err(e),
        },
    }
}

/// [`unwrap`], reusing what [`peek`] derived when the bytes are the same
/// (Argon2 runs once per open, not twice).
fn unwrap_known(
    passphrase: &[u8],
    bytes: &[u8],
    known: Option<&Opened>,
) -> Result<DataKey, StoreError> {
    match known {
        Some(k) if k.bytes == bytes => Ok(k.key.clone()),
        _ => unwrap(passphrase, bytes),
    }
}

/// Unlocks the key file, finishing an interrupted passphrase change;
/// `known` is what [`peek`] opened before the lock was taken.
pub(crate) fn unlock(
    dir: &Path,
    passphrase: &[u8],
    known: Option<&Opened>,
) -> Result<Option<DataKey>, StoreError> {
    let Some(current) = read(dir, NAME)? else {
        return Ok(None);
    };
    match unwrap_known(passphrase, &current, known) {
        Ok(key) => {
            if read(dir, NEXT)?.is_some() {
                destroy_one(dir, NEXT).map_err(io)?;
                remove_one(dir, NEXT).map_err(io)?;
            }
            Ok(Some(key))
        }
        Err(e) => {
            let Some(next) = read(dir, NEXT)? else {
                return Err(e);
            };
            let Ok(key) = unwrap_known(passphrase, &next, known) else {
                return Err(e);
            };
            overwrite(dir, NAME, &next).map_err(io)?;
            destroy_one(dir, NEXT).map_err(io)?;
            remove_one(dir, NEXT).map_err(io)?;
            Ok(Some(key))
        }
    }
}

/// Rewraps `data_key` under `passphrase`. The old wrapping is overwritten
/// in place, not replaced by a rename: a renamed-over file's blocks stay
/// on disk, and they open with the old passphrase.
pub(crate) fn rewrap(
    dir: &Path,
    data_key: &[u8; 32],
    passphrase: &[u8],
    params: KdfParams,
) -> Result<(), StoreError> {
    let bytes = wrap(passphrase, data_key, params)?;
    write_new(dir, NEXT, &bytes).map_err(io)?;
    sync_dir(dir).map_err(io)?;
    overwrite(dir, NAME, &bytes).map_err(io)?;
    // The next file holds the live wrapping too: destroyed, not just
    // unlinked, so a later wipe has only one copy to destroy.
    destroy_one(dir, NEXT).map_err(io)?;
    remove_one(dir, NEXT).map_err(io)
}

/// Overwrites `name` in place with random bytes behind a "destroyed"
/// version byte (at least its own length, at least a key file's), fsyncs.
/// A missing file is not an error.
fn destroy_one(dir: &Path, name: &str) -> io::Result<()> {
    let len = match fs::metadata(dir.join(name)) {
        Ok(m) => usize::try_from(m.len()).unwrap_or(usize::MAX).max(LEN),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // A key file is 101 bytes; anything far longer was not written by us,
    // and its first 4 KiB covers every byte we could have written.
    let mut noise = vec![0u8; len.min(4096)];
    os_random(&mut noise).map_err(|_| io::Error::other("no entropy"))?;
    if let Some(first) = noise.first_mut() {
        *first = DESTROYED;
    }
    overwrite(dir, name, &noise)
}

fn remove_one(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Overwrites every key file in `dir` in place (see [`destroy_one`]).
pub(crate) fn destroy(dir: &Path) -> io::Result<()> {
    ALL.iter().try_for_each(|name| destroy_one(dir, name))
}

/// Removes every key file in `dir`, then fsyncs the directory.
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    ALL.iter().try_for_each(|name| remove_one(dir, name))
}
