//! The one error type of the crate.
//!
//! Every variant that comes from a pull names the image and the registry (or the local source)
//! it came from, because the message ends up as a job's `FailureReason`, read by someone who
//! did not see the pull happen. Variants are split by what the user has to do about them
//! (fix the name, fix the credentials, fix the registry, free disk), not by which library
//! failed.

use std::path::PathBuf;

/// Why an image could not be pulled, verified, unpacked or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The reference does not parse as `[registry/]repository[:tag|@sha256:digest]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not know the repository.
    #[error("image {image}: repository {repository} is unknown to registry {registry}")]
    UnknownRepository {
        /// The image reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The repository exists (or the registry does not say) but has no such tag or digest.
    #[error("image {image}: tag or digest {tag} not found in registry {registry}")]
    UnknownTag {
        /// The image reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The tag or digest asked for.
        tag: String,
    },
    /// The registry refused the credentials (or wants some and none were configured).
    #[error("image {image}: registry {registry} refused the credentials ({detail})")]
    Unauthorized {
        /// The image reference.
        image: String,
        /// The registry host.
        registry: String,
        /// Which credentials were sent, and the registry's answer.
        detail: String,
    },
    /// A blob's content does not match its digest or size: corrupted or truncated in the
    /// registry, in transit or in a local layout. Nothing of it is kept.
    #[error(
        "image {image} from {source_name}: {what} {digest} is corrupt: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// The image reference.
        image: String,
        /// The registry host or local source.
        source_name: String,
        /// What the blob is: "layer", "config", "manifest", "uncompressed layer".
        what: &'static str,
        /// The blob's digest (as the manifest names it).
        digest: String,
        /// Expected digest or size.
        expected: String,
        /// Actual digest or size.
        actual: String,
    },
    /// Something trainyard does not run: no linux/amd64 image in an index, a layer media type
    /// it cannot unpack, a foreign layer.
    #[error("image {image} from {source_name}: unsupported: {what}")]
    Unsupported {
        /// The image reference.
        image: String,
        /// The registry host or local source.
        source_name: String,
        /// What is unsupported.
        what: String,
    },
    /// A layer is malformed or hostile: a path escaping the root file system, a write through
    /// a symbolic link, an unreadable tar stream.
    #[error("image {image}: layer {digest} refused: {reason}")]
    BadLayer {
        /// The image reference.
        image: String,
        /// The layer digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached or answered something unexpected.
    #[error("image {image}: registry {registry}: {detail}")]
    Registry {
        /// The image reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The failure.
        detail: String,
    },
    /// A local source (containers-storage through skopeo, an `oci:` layout) failed.
    #[error("image {image}: local source {source_name}: {detail}")]
    Local {
        /// The image reference.
        image: String,
        /// The source.
        source_name: String,
        /// The failure.
        detail: String,
    },
    /// The docker configuration or a credential helper failed.
    #[error("image {image}: credentials for registry {registry}: {detail}")]
    Credentials {
        /// The image reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The failure.
        detail: String,
    },
    /// The image would not fit in the store's budget even with every unused image evicted.
    #[error("image {image} needs {needed} bytes but the image store's budget is {budget} bytes")]
    OverBudget {
        /// The image reference.
        image: String,
        /// Bytes the image takes unpacked plus its blobs.
        needed: u64,
        /// The store's budget.
        budget: u64,
    },
    /// Local file-system work failed.
    #[error("image store: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ImageError {
    /// Wraps an I/O error with what was done and where.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Adds what and where to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(what, path, e))
    }
}
