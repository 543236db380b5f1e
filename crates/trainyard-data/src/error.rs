//! Errors of the data plane. Each says which channel object or path it concerns, because the
//! message becomes a job's `FailureReason`.

use std::path::PathBuf;

use trainyard_s3::ObjectError;

/// Why a channel could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A key would land outside the channel directory (or is otherwise not a safe relative path).
    #[error("object key {key:?} cannot be placed in the channel directory: {reason}")]
    UnsafeKey {
        /// The key.
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Two objects map to the same path, or one object's path is another's directory.
    #[error("objects {first:?} and {second:?} map to conflicting paths in the channel directory")]
    Collision {
        /// One key.
        first: String,
        /// The other key.
        second: String,
    },
    /// No object matched the channel's URI.
    #[error("no objects found under {uri}")]
    NoObjects {
        /// The channel URI.
        uri: String,
    },
    /// Storage failed for one object.
    #[error("{key}: {source}")]
    Object {
        /// The key being read.
        key: String,
        /// The storage error.
        #[source]
        source: ObjectError,
    },
    /// Storage failed while listing.
    #[error("listing {uri}: {source}")]
    List {
        /// What was listed.
        uri: String,
        /// The storage error.
        #[source]
        source: ObjectError,
    },
    /// The object's size on arrival differs from the listing.
    #[error("{key}: expected {expected} bytes, received {got}")]
    SizeMismatch {
        /// The key.
        key: String,
        /// Size from the listing.
        expected: u64,
        /// Bytes written.
        got: u64,
    },
    /// A manifest (ManifestFile or AugmentedManifestFile) is malformed.
    #[error("manifest {uri} line {line}: {reason}")]
    Manifest {
        /// The manifest's URI.
        uri: String,
        /// 1-based line of the offending element or JSON line (0 when the error concerns the
        /// manifest as a whole, such as its URI or `AttributeNames`).
        line: usize,
        /// The rule it breaks.
        reason: String,
    },
    /// An object named by a manifest could not be found or read.
    #[error("manifest {uri} line {line}: s3://{bucket}/{key}: {source}")]
    ManifestObject {
        /// The manifest's URI.
        uri: String,
        /// 1-based line of the entry naming the object.
        line: usize,
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// The storage error (for example `NotFound`), boxed to keep `DataError` small.
        #[source]
        source: Box<ObjectError>,
    },
    /// An object of a `CompressionType: Gzip` channel is not valid gzip data.
    #[error("{key}: not a valid gzip stream: {source}")]
    Gzip {
        /// The key.
        key: String,
        /// What the decoder reported.
        #[source]
        source: std::io::Error,
    },
    /// A Pipe channel cannot be served (bad channel name, FIFO path taken, internal task failure).
    #[error("pipe channel {channel:?}: {reason}")]
    Pipe {
        /// The channel name.
        channel: String,
        /// What went wrong.
        reason: String,
    },
    /// Local file-system failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
