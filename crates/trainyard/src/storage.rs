//! Which object client serves a location.
//!
//! `s3://` locations go to the embedded directory store under `$TRAINYARD_HOME/store`;
//! `file://` locations go to the local file system. The real S3 client plugs in here when an
//! endpoint is configured, and nothing downstream changes.

use std::sync::Arc;

use trainyard_s3::{DirStore, Location, ObjectClient};

use crate::config::Settings;

/// A resolved location: the client that serves it, and the bucket/key in that client's terms.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The client.
    pub client: Arc<dyn ObjectClient>,
    /// Bucket (empty for `file://`).
    pub bucket: String,
    /// Key or prefix.
    pub key: String,
}

/// Object clients of one installation.
#[derive(Debug, Clone)]
pub struct Storage {
    s3: Arc<dyn ObjectClient>,
    files: Arc<dyn ObjectClient>,
}

impl Storage {
    /// The embedded default.
    pub fn new(settings: &Settings) -> Self {
        Storage {
            s3: Arc::new(DirStore::embedded(settings.store_root())),
            files: Arc::new(DirStore::file_tree()),
        }
    }

    /// Resolves a parsed location.
    pub fn resolve(&self, loc: &Location) -> Resolved {
        match loc {
            Location::S3(u) => Resolved {
                client: self.s3.clone(),
                bucket: u.bucket.clone(),
                key: u.key.clone(),
            },
            Location::File(p) => Resolved {
                client: self.files.clone(),
                bucket: String::new(),
                key: p.to_string_lossy().trim_start_matches('/').to_string(),
            },
        }
    }
}
