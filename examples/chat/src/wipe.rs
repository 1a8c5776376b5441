//! Destroying the chat's data: the store (key file first, by the node),
//! then only what the chat itself put in the data directory. Anything
//! else there is left alone: `--data-dir ~` must not cost anyone their
//! home directory.

use std::{io, path::Path};

/// The store's directory name inside the data directory.
pub(crate) const STORE: &str = "store";

/// What the chat writes next to the store.
const OURS: [&str; 3] = ["obfs4-client", "crash.log", "config.toml"];

/// Removes the chat's files from `data_dir` (the store must be wiped
/// already), then the directory if nothing else is in it. `Ok(Some(_))`
/// says what was left and why.
pub(crate) fn remove_ours(data_dir: &Path) -> io::Result<Option<String>> {
    for name in std::iter::once(STORE).chain(OURS) {
        let path = data_dir.join(name);
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed?;
    }
    match std::fs::remove_dir(data_dir) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(Some(format!(
            "other files in {} are not the chat's and were left alone",
            data_dir.display()
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_the_chats_own_files_go() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("home");
        std::fs::create_dir_all(dir.join("store/blobs")).unwrap();
        std::fs::create_dir_all(dir.join("obfs4-client")).unwrap();
        std::fs::write(dir.join("crash.log"), "x").unwrap();
        std::fs::write(dir.join("thesis.pdf"), "years of work").unwrap();
        let left = remove_ours(&dir).unwrap();
        assert!(left.unwrap().contains("left alone"));
        assert_eq!(
            std::fs::read(dir.join("thesis.pdf")).unwrap(),
            b"years of work"
        );
        assert!(!dir.join("store").exists() && !dir.join("crash.log").exists());
        std::fs::remove_file(dir.join("thesis.pdf")).unwrap();
        std::fs::create_dir_all(dir.join("store")).unwrap();
        assert_eq!(remove_ours(&dir).unwrap(), None);
        assert!(!dir.exists());
    }
}
