//! The store's small index: which reference resolved to which image, when each image was
//! last used and how big it is.
//!
//! A JSON file rewritten whole (temporary file + rename) under an exclusive `flock` on
//! `index.lock`, so the processes of one machine (the server, `trainyard host run` on a Slurm
//! node) see one consistent index. It is small (one entry per image and reference), so a
//! database would add nothing; the unpacked trees, not the index, are the truth about what
//! is present, and a lost index only loses LRU order.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ImageError;
use crate::error::IoContext;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    /// Reference as the user wrote it -> image key.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// Local source identity (`containers-storage:<sha256 of its manifest>`) -> image key.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Image key -> entry.
    #[serde(default)]
    pub images: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub digest: String,
    pub last_used_ms: u64,
    pub rootfs_bytes: u64,
    /// Blob hex digests and sizes the image was built from.
    pub blobs: Vec<(String, u64)>,
}

impl Index {
    /// Bytes used: every unpacked tree plus every blob an image references (once).
    pub(crate) fn usage(&self) -> u64 {
        let mut blobs = BTreeMap::new();
        let mut total = 0u64;
        for e in self.images.values() {
            total = total.saturating_add(e.rootfs_bytes);
            for (hex, size) in &e.blobs {
                blobs.insert(hex.as_str(), *size);
            }
        }
        total.saturating_add(blobs.values().sum::<u64>())
    }

    /// Forgets `key` and every reference to it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Entry> {
        self.refs.retain(|_, k| k != key);
        self.sources.retain(|_, k| k != key);
        self.images.remove(key)
    }
}

/// The index, read under the exclusive lock, which is held until this is dropped.
#[derive(Debug)]
pub(crate) struct Locked {
    _lock: File,
    path: PathBuf,
    pub index: Index,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Locks and reads the index of the store at `root` (blocking).
pub(crate) fn lock(root: &Path) -> Result<Locked, ImageError> {
    let lock_path = root.join("index.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx("opening", &lock_path)?;
    fs4::FileExt::lock(&lock).ctx("locking", &lock_path)?;
    let path = root.join("index.json");
    let index = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "image index unreadable; starting a new one");
            Index::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
        Err(e) => return Err(ImageError::io("reading", &path, e)),
    };
    Ok(Locked {
        _lock: lock,
        path,
        index,
    })
}

impl Locked {
    /// Writes the index back (temporary file + rename).
    pub(crate) fn save(&self) -> Result<(), ImageError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.index)
            .map_err(|e| ImageError::io("encoding", &self.path, std::io::Error::other(e)))?;
        fs::write(&tmp, bytes).ctx("writing", &tmp)?;
        fs::rename(&tmp, &self.path).ctx("renaming into", &self.path)
    }
}
