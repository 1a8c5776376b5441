//! Wipe residue (threat item 23): after every step of a wipe, as if the
//! power were cut right there, nothing on disk opens with the passphrase.
//!
//! The attacker has the raw files and the passphrase. It scans every file
//! for the old salt, the old wrapped key and the data key, and tries the
//! passphrase on every file with its own reading of the key-file layout
//! (not the store's code), as well as through `SledStore::open`.
//!
//! The blocks an unlinked or renamed-over file occupied stay on the disk;
//! a hard link to the key file, taken before the wipe and kept outside
//! the store, stands for them: it shows what is left in those blocks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use ferry_core::{
    crypto::aead,
    engine::{Custody, Store, StoreOp},
};
use ferry_store::{KdfParams, SledStore, StoreError, Wipe, WipeStep};

const PASS: &[u8] = b"correct horse battery staple";
const HEADER_LEN: usize = 29;

fn open(dir: &Path, pass: &[u8]) -> Result<SledStore, StoreError> {
    SledStore::open(dir, pass, KdfParams::insecure_for_tests())
}

/// The attacker's own key-file reader: `version || salt || m, t, p ||
/// sealed data key`, the header as associated data.
fn attacker_unwrap(file: &[u8], pass: &[u8]) -> Option<[u8; 32]> {
    let header = file.get(..HEADER_LEN)?;
    let word = |i: usize| u32::from_be_bytes(file[17 + 4 * i..21 + 4 * i].try_into().unwrap());
    // Bytes that are not a key file may read as absurd costs: skip them.
    if word(0) > 1 << 20 || word(1) > 64 || word(2) > 16 {
        return None;
    }
    let params = Params::new(word(0), word(1), word(2), Some(32)).ok()?;
    let mut kek = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass, &file[1..17], &mut kek)
        .ok()?;
    aead::open(&kek, header, &file[HEADER_LEN..])?
        .try_into()
        .ok()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What an attacker who saw the store before the wipe would look for.
struct Secrets {
    salt: Vec<u8>,
    wrapped: Vec<u8>,
    data_key: [u8; 32],
    keyring_key: [u8; 32],
}

/// A store with records in every tree, written over two sessions so sled
/// holds overwritten values in its log.
fn populated(dir: &Path) -> SledStore {
    {
        let mut store = open(dir, PASS).unwrap();
        store
            .commit(vec![
                StoreOp::PutKeyring(vec![1; 300]),
                StoreOp::PutInbox {
                    id: [1; 32],
                    record: b"first message".to_vec(),
                },
            ])
            .unwrap();
    }
    let mut store = open(dir, PASS).unwrap();
    store
        .commit(vec![
            StoreOp::PutEnvelope {
                id: [2; 32],
                custody: Custody::Own,
                bytes: vec![7; 600],
            },
            StoreOp::PutOutbox {
                id: [2; 32],
                record: vec![8; 60],
            },
            StoreOp::PutSeen {
                id: [3; 32],
                expiry: 9,
            },
            StoreOp::PutDelivered {
                id: [4; 32],
                secret: [5; 16],
                expiry: 9,
            },
            StoreOp::PutKeyring(vec![2; 310]),
        ])
        .unwrap();
    store
}

/// Creates a populated store in `dir`, links its key file's inode at
/// `link`, and returns what the attacker learns before the wipe.
fn prepare(dir: &Path, link: &Path) -> (SledStore, Secrets) {
    let store = populated(dir);
    std::fs::hard_link(dir.join("key"), link).unwrap();
    let file = std::fs::read(dir.join("key")).unwrap();
    let data_key = attacker_unwrap(&file, PASS).expect("the documented layout opens");
    let secrets = Secrets {
        salt: file[1..17].to_vec(),
        wrapped: file[HEADER_LEN..].to_vec(),
        data_key,
        keyring_key: store.keyring_key(),
    };
    // The key material lives in the key file and nowhere else.
    for f in walk(dir).iter().filter(|f| !f.ends_with("key")) {
        let bytes = std::fs::read(f).unwrap();
        assert!(!contains(&bytes, &secrets.salt), "salt in {f:?}");
        assert!(!contains(&bytes, &secrets.wrapped), "wrapped key in {f:?}");
        assert!(!contains(&bytes, &secrets.data_key), "data key in {f:?}");
    }
    (store, secrets)
}

/// Everything the attacker tries on the raw files; panics on success.
fn attack(dir: &Path, link: &Path, secrets: &Secrets, after: &str) {
    let mut files = walk(dir);
    files.push(link.to_path_buf());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !contains(&bytes, &secrets.salt),
            "{after}: old salt in {f:?}"
        );
        assert!(
            !contains(&bytes, &secrets.wrapped),
            "{after}: old wrapped key in {f:?}"
        );
        assert!(
            !contains(&bytes, &secrets.data_key),
            "{after}: data key in {f:?}"
        );
        assert!(
            !contains(&bytes, &secrets.keyring_key),
            "{after}: keyring key in {f:?}"
        );
        assert!(
            attacker_unwrap(&bytes, PASS).is_none(),
            "{after}: the passphrase opens {f:?}"
        );
    }
}

#[test]
fn after_every_wipe_step_nothing_on_disk_opens_with_the_passphrase() {
    let root = tempfile::tempdir().unwrap();
    for steps in 1..=WipeStep::ALL.len() {
        let dir = root.path().join(format!("store{steps}"));
        let link = root.path().join(format!("key-blocks{steps}"));
        let (store, secrets) = prepare(&dir, &link);
        let mut wipe = store.wipe_steps();
        for expected in &WipeStep::ALL[..steps] {
            assert_eq!(wipe.step().unwrap().as_ref(), Some(expected));
        }
        drop(wipe); // the power goes out here
        let after = format!("after {:?}", WipeStep::ALL[steps - 1]);

        attack(&dir, &link, &secrets, &after);
        if dir.exists() {
            let refused = open(&dir, PASS).map(|_| ()).unwrap_err();
            assert!(
                matches!(refused, StoreError::KeyDestroyed),
                "{after}: {refused:?}"
            );
            // Still refused on a second try: a refused open does not
            // quietly create a fresh key over the old data.
            assert!(matches!(open(&dir, PASS), Err(StoreError::KeyDestroyed)));
            // The wipe can be finished without the passphrase.
            Wipe::of_closed(&dir).unwrap().finish().unwrap();
        }
        assert!(!dir.exists(), "{after}: the wipe did not finish");
    }
}

#[test]
fn a_whole_wipe_leaves_nothing_and_is_fast() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let link = root.path().join("key-blocks");
    let (store, secrets) = prepare(&dir, &link);
    let started = std::time::Instant::now();
    let mut wipe = store.wipe_steps();
    wipe.step().unwrap();
    let key_gone = started.elapsed();
    wipe.finish().unwrap();
    let all_gone = started.elapsed();
    eprintln!("wipe: key destroyed after {key_gone:?}, files gone after {all_gone:?}");
    // A panic wipe has seconds at most; the key step is two small fsyncs.
    assert!(key_gone < std::time::Duration::from_secs(2));
    assert!(!dir.exists());
    attack(&dir, &link, &secrets, "after the wipe");
}

#[test]
fn a_wipe_of_a_closed_store_needs_no_passphrase_and_spares_other_directories() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let link = root.path().join("key-blocks");
    let (store, secrets) = prepare(&dir, &link);
    drop(store);
    Wipe::of_closed(&dir).unwrap().finish().unwrap();
    assert!(!dir.exists());
    attack(&dir, &link, &secrets, "after a closed wipe");

    let unrelated = root.path().join("photos");
    std::fs::create_dir(&unrelated).unwrap();
    std::fs::write(unrelated.join("a.jpg"), b"x").unwrap();
    assert!(matches!(
        Wipe::of_closed(&unrelated),
        Err(StoreError::NotAStore)
    ));
    assert!(unrelated.join("a.jpg").exists());
}

#[test]
fn a_passphrase_change_leaves_no_wrapping_the_old_passphrase_opens() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let link = root.path().join("key-blocks");
    let (mut store, secrets) = prepare(&dir, &link);
    let before = store.load().unwrap();
    store
        .change_passphrase(b"new passphrase", KdfParams::insecure_for_tests())
        .unwrap();
    drop(store);

    // The old key file's blocks were overwritten with the new wrapping.
    let blocks = std::fs::read(&link).unwrap();
    assert!(!contains(&blocks, &secrets.salt));
    assert_eq!(blocks, std::fs::read(dir.join("key")).unwrap());
    for f in walk(&dir) {
        assert!(attacker_unwrap(&std::fs::read(&f).unwrap(), PASS).is_none());
    }
    assert!(matches!(open(&dir, PASS), Err(StoreError::WrongPassphrase)));
    let store = open(&dir, b"new passphrase").unwrap();
    // Same data key: the data and the keyring key carry over.
    assert_eq!(store.keyring_key(), secrets.keyring_key);
    let after = store.load().unwrap();
    assert_eq!(after.inbox, before.inbox);
    assert_eq!(after.keyring, before.keyring);
}

#[test]
fn a_passphrase_change_cut_short_leaves_one_passphrase_working() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let old = {
        let store = populated(&dir);
        drop(store);
        std::fs::read(dir.join("key")).unwrap()
    };
    let mut store = open(&dir, PASS).unwrap();
    store
        .change_passphrase(b"new", KdfParams::insecure_for_tests())
        .unwrap();
    drop(store);
    let new = std::fs::read(dir.join("key")).unwrap();

    // Cut after the next wrapping was written, before the live file was
    // overwritten: opening with the new passphrase completes the change.
    std::fs::write(dir.join("key"), &old).unwrap();
    std::fs::write(dir.join("key.next"), &new).unwrap();
    drop(open(&dir, b"new").unwrap());
    assert_eq!(std::fs::read(dir.join("key")).unwrap(), new);
    assert!(!dir.join("key.next").exists());
    assert!(matches!(open(&dir, PASS), Err(StoreError::WrongPassphrase)));

    // The same cut, then the old passphrase: the change is dropped, and
    // the unfinished wrapping destroyed.
    std::fs::write(dir.join("key"), &old).unwrap();
    std::fs::write(dir.join("key.next"), &new).unwrap();
    drop(open(&dir, PASS).unwrap());
    assert!(!dir.join("key.next").exists());
    assert!(matches!(
        open(&dir, b"new"),
        Err(StoreError::WrongPassphrase)
    ));
}

#[test]
fn a_store_of_the_old_format_is_refused_with_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("old");
    {
        // The pre-release layout: salt, parameters and key check in sled.
        let db = sled::open(&dir).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("salt", &[1u8; 16]).unwrap();
        meta.insert("kdf", &[0u8; 12]).unwrap();
        meta.insert("check", vec![2u8; 64]).unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open(&dir, PASS),
        Err(StoreError::UnsupportedFormat)
    ));
    assert!(!dir.join("key").exists(), "no key file was created over it");
}

#[test]
fn planted_key_files_are_refused_without_panics_or_huge_allocations() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    drop(populated(&dir));
    let good = std::fs::read(dir.join("key")).unwrap();
    let with = |at: usize, bytes: &[u8]| {
        let mut file = good.clone();
        file[at..at + bytes.len()].copy_from_slice(bytes);
        file
    };
    type Expected = fn(&StoreError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("empty", vec![], |e| matches!(e, StoreError::KeyDestroyed)),
        ("truncated", good[..50].to_vec(), |e| {
            matches!(e, StoreError::Corrupted("key"))
        }),
        ("longer", [good.as_slice(), &[0; 10]].concat(), |e| {
            matches!(e, StoreError::Corrupted("key"))
        }),
        ("future version", with(0, &[9]), |e| {
            matches!(e, StoreError::UnsupportedFormat)
        }),
        // 4 TiB of memory: refused before anything is allocated.
        ("huge memory", with(17, &u32::MAX.to_be_bytes()), |e| {
            matches!(e, StoreError::KdfParams)
        }),
        ("tampered parameters", with(21, &2u32.to_be_bytes()), |e| {
            matches!(e, StoreError::WrongPassphrase)
        }),
        ("flipped wrapped key", with(60, &[good[60] ^ 1]), |e| {
            matches!(e, StoreError::WrongPassphrase)
        }),
    ];
    for (name, bytes, expected) in cases {
        std::fs::write(dir.join("key"), &bytes).unwrap();
        let err = open(&dir, PASS).map(|_| ()).unwrap_err();
        assert!(expected(&err), "{name}: {err:?}");
    }
    std::fs::write(dir.join("key"), &good).unwrap();
    assert!(open(&dir, PASS).is_ok());
}

#[test]
fn a_panic_wipe_works_while_the_store_is_open_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let link = root.path().join("key-blocks");
    // A running node holds the store (and sled's lock).
    let (mut live, secrets) = prepare(&dir, &link);
    let mut wipe = Wipe::of_closed(&dir).unwrap();
    assert_eq!(wipe.step().unwrap(), Some(WipeStep::DestroyKey));
    // The node goes on committing; nothing it writes revives the key.
    live.commit(vec![StoreOp::PutInbox {
        id: [9; 32],
        record: b"late".to_vec(),
    }])
    .unwrap();
    attack(
        &dir,
        &link,
        &secrets,
        "after the key step, store still open",
    );
    drop(live);
    assert!(matches!(open(&dir, PASS), Err(StoreError::KeyDestroyed)));
    wipe.finish().unwrap();
    assert!(!dir.exists());
    attack(&dir, &link, &secrets, "after the wipe");
}
