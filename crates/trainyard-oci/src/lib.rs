//! OCI images for trainyard jobs: pulled, verified, cached and unpacked into a root file
//! system a container runtime can run.
//!
//! A job's `TrainingImage` is resolved by [`ImageStore::pull`]: an `oci:DIR[:TAG]` layout, an
//! image in the local containers-storage (what `podman build`/`buildah` made, used before any
//! registry, through Debian's `skopeo`), or an OCI registry over the distribution API
//! (`oci-client`: manifests, indexes with linux/amd64 selection, bearer and basic auth; plain
//! HTTP for loopback and configured insecure registries). The result is an [`Image`]: the
//! manifest digest, the unpacked root file system and the image's run configuration, plus a
//! lease that keeps the image from eviction while the job runs.
//!
//! Why a store of unpacked trees rather than a snapshotter or an engine: the runtime mounts an
//! overlay over a read-only lower directory, which is exactly an unpacked image, and one tree
//! per manifest digest is shared by every job and host of the machine. Trust comes from
//! digests only: every blob is written to a temporary file, checked against its sha256 and
//! size and only then renamed into `blobs/sha256/`; layers are also checked against the
//! config's `diff_ids` while they unpack into a temporary directory that is renamed into place
//! when complete. So nothing of a partial or corrupted pull can ever be used.
//!
//! Layout under the store's root (`$TRAINYARD_HOME/images`):
//!
//! ```text
//! blobs/sha256/<hex>        verified blobs (config, layers)
//! images/<key>/rootfs/      an unpacked image; <key> is the manifest digest's hex (+ "-s<base>"
//!                           when unpacked with an id shift)
//! images/<key>/image.json   digest, run configuration, blobs and size
//! index.json                reference -> digest, last use and size of each image (LRU)
//! locks/<key>.lock|.lease   cross-process pull lock; shared lock held by every lease
//! tmp/                      partial downloads and unpacks, never read back
//! ```

mod config;
mod error;
mod index;
mod local;
mod reference;
mod registry;
mod store;
mod unpack;

pub use config::RunConfig;

/// What kind of image a reference names, checked without pulling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// `[registry/]repository[:tag|@sha256:digest]`: a registry (or the local engine's store).
    Registry,
    /// `oci:DIR[:TAG]`: a layout directory of this machine.
    Layout,
}

/// Checks a reference's syntax (docker's grammar, or `oci:DIR[:TAG]`).
pub fn check_reference(reference: &str) -> Result<ReferenceKind, ImageError> {
    Ok(match reference::parse(reference)? {
        reference::Source::Registry(_) => ReferenceKind::Registry,
        reference::Source::Layout { .. } => ReferenceKind::Layout,
    })
}
pub use error::ImageError;
pub use store::{Image, ImageStore};

use std::path::PathBuf;

/// How an [`ImageStore`] pulls and keeps images.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Bytes the store may use (unpacked trees plus blobs) before images no job holds are
    /// evicted, least recently used first.
    pub budget_bytes: u64,
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback registries
    /// (`127.0.0.0/8`, `localhost`, `::1`) always are, as docker allows.
    pub insecure_registries: Vec<String>,
    /// Adds `base` to every owner when unpacking, so that inside a user namespace that maps 0
    /// to `base` the files keep their owners. `None` keeps the owners of the layers.
    pub id_shift: Option<IdShift>,
    /// The docker `config.json` with `auths` and credential helpers. `None`:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

impl Default for StoreSettings {
    /// 50 GiB, no insecure registries, no id shift, the default docker configuration.
    fn default() -> Self {
        StoreSettings {
            budget_bytes: 50 << 30,
            insecure_registries: Vec::new(),
            id_shift: None,
            docker_config: None,
        }
    }
}

/// An owner shift for unpacked files (see [`StoreSettings::id_shift`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShift {
    /// Added to every uid and gid.
    pub base: u32,
}

/// Credentials for a pull.
#[derive(Clone, Default)]
pub enum PullAuth {
    /// The docker configuration's `auths` and credential helpers for the registry, anonymous
    /// when it has none.
    #[default]
    Default,
    /// HTTP basic credentials (also what a registry's token service is asked with).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullAuth::Default => f.write_str("Default"),
            PullAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}
