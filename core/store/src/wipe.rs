//! The panic wipe, as steps a power cut may interrupt.
//!
//! Order matters: the key file goes first. Once it is overwritten nothing
//! on disk opens with the passphrase, whatever else survives (sled's
//! files, whose log keeps overwritten values, are sealed under the data
//! key only that file held).

use std::path::{Path, PathBuf};

use crate::{SledStore, StoreError, keyfile};

/// One step of a wipe, in the order [`Wipe::step`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WipeStep {
    /// Every key file was overwritten in place with random bytes and
    /// fsynced, and the keys in memory were zeroized. From here on the
    /// passphrase opens nothing.
    DestroyKey,
    /// The (overwritten) key files were unlinked and the directory fsynced.
    RemoveKey,
    /// sled's files and the store's directory were removed.
    RemoveData,
}

impl WipeStep {
    /// Every step, in order.
    pub const ALL: [WipeStep; 3] = [Self::DestroyKey, Self::RemoveKey, Self::RemoveData];
}

/// A wipe in progress: [`Wipe::step`] runs the next step. Dropping it
/// part-way leaves the store as a power cut at that point would.
pub struct Wipe {
    dir: PathBuf,
    store: Option<SledStore>,
    db: Option<sled::Db>,
    done: usize,
}

impl std::fmt::Debug for Wipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wipe")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Wipe {
    pub(crate) fn of_store(store: SledStore) -> Self {
        Self {
            dir: store.path.clone(),
            store: Some(store),
            db: None,
            done: 0,
        }
    }

    /// A wipe of a store that is not open here: the passphrase is not
    /// needed (the key file is destroyed, not opened), and neither is
    /// sled's lock, so it also works while another handle (a running node)
    /// holds the store. That handle keeps its keys in memory until it is
    /// closed; nothing on disk opens from the first step on.
    ///
    /// # Errors
    /// [`StoreError::NotAStore`] if `dir` holds neither a key file nor
    /// sled's files, so a wrong path cannot delete an unrelated directory.
    pub fn of_closed(dir: &Path) -> Result<Self, StoreError> {
        let is_store = keyfile::ALL
            .iter()
            .chain(&["conf", "db"])
            .any(|name| dir.join(name).exists());
        if !is_store {
            return Err(StoreError::NotAStore);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            store: None,
            db: None,
            done: 0,
        })
    }

    /// Runs the next step and returns it; `None` once the wipe is
    /// complete. A step that fails can be retried by calling this again.
    ///
    /// # Errors
    /// [`StoreError::Wipe`] if the file system refused a step.
    pub fn step(&mut self) -> Result<Option<WipeStep>, StoreError> {
        let Some(&step) = WipeStep::ALL.get(self.done) else {
            return Ok(None);
        };
        match step {
            WipeStep::DestroyKey => {
                keyfile::destroy(&self.dir).map_err(StoreError::Wipe)?;
                // Keys in memory are zeroized on drop; sled's handle (and
                // its lock) is kept until the files go.
                if let Some(store) = self.store.take() {
                    self.db = Some(store.into_db());
                }
            }
            WipeStep::RemoveKey => keyfile::remove(&self.dir).map_err(StoreError::Wipe)?,
            WipeStep::RemoveData => {
                drop(self.db.take());
                match std::fs::remove_dir_all(&self.dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::Wipe(e)),
                }
            }
        }
        self.done += 1;
        Ok(Some(step))
    }

    /// Runs every remaining step.
    ///
    /// # Errors
    /// As [`Wipe::step`].
    pub fn finish(mut self) -> Result<(), StoreError> {
        while self.step()?.is_some() {}
        Ok(())
    }
}
