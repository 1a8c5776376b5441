//! Sneakernet bundles on disk: the node's file I/O around the engine's
//! format ([`ferry_core::bundle`]) and import
//! ([`ferry_core::engine::Engine::import_envelopes`]).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use ferry_core::bundle::{self, BundleError, BundleLimits};
use rand::RngExt as _;
use thiserror::Error;

/// Why an export or import did not happen.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleFileError {
    /// The file could not be read or written.
    #[error("bundle file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The bundle was refused whole (nothing was imported).
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn io_err(path: &Path, e: std::io::Error) -> BundleFileError {
    BundleFileError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Envelopes written.
    pub envelopes: u64,
    /// The file's size.
    pub bytes: u64,
    /// The bundle's one-time key, hex: the importer sees the same one.
    pub fingerprint: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Per-envelope outcomes.
    pub summary: ferry_core::engine::ImportSummary,
    /// The bundle's one-time key, hex (compare it with the exporter's).
    pub fingerprint: String,
    /// When the exporter says it wrote the bundle.
    pub created_at: u64,
}

pub(crate) fn fingerprint(key: &[u8; 32]) -> String {
    key.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Encodes and writes `envelopes` to `path` atomically: a temporary file
/// beside it, flushed to the device, then renamed, so a stick pulled
/// mid-write leaves either the old file or none, never a half bundle
/// under the final name.
pub(crate) fn write(
    path: &Path,
    envelopes: &[Vec<u8>],
    created_at: u64,
) -> Result<ExportReport, BundleFileError> {
    let bytes = bundle::encode(envelopes, created_at, &mut rand::rng())?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Short enough that the temporary name fits where the final one does.
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(64).collect())
        .unwrap_or_else(|| "bundle".into());
    let suffix: u64 = rand::rng().random();
    let temp = dir.join(format!(".{name}.{suffix:016x}.partial"));
    let result = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        // The rename itself must reach the device too.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(io_err(path, e));
    }
    // Only the header: the bundle was just made, verifying it again would
    // hash and check the whole file a second time.
    let key = bundle::signer_key(&bytes).unwrap_or_default();
    Ok(ExportReport {
        envelopes: envelopes.len() as u64,
        bytes: bytes.len() as u64,
        fingerprint: fingerprint(&key),
    })
}

/// Reads `path` whole (it is checked, then imported, from this one copy:
/// a file that changes on the stick meanwhile cannot slip anything in),
/// refusing files over the limit before reading them.
pub(crate) fn read(path: &Path, limits: BundleLimits) -> Result<Vec<u8>, BundleFileError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.len() > limits.max_bytes {
        return Err(BundleError::TooLarge(format!("{} bytes", meta.len())).into());
    }
    let mut bytes = Vec::new();
    use std::io::Read as _;
    std::fs::File::open(path)
        .map_err(|e| io_err(path, e))?
        .take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(BundleError::TooLarge(format!("{} bytes", bytes.len())).into());
    }
    Ok(bytes)
}
