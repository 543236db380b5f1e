//! The one error type of the storage layer.
//!
//! Callers act on the kind of failure: a missing key is a user error, a throttled or reset
//! request is worth retrying, an invalid key must never be retried. So the variants separate
//! "the service said no" from "the transport failed", and [`ObjectError::is_retryable`] is the
//! single place that decides what a retry loop may repeat.

use std::io;

/// What went wrong with an object-storage operation, with the bucket and key it concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket {
        /// Bucket name.
        bucket: String,
    },
    /// The object does not exist.
    #[error("object s3://{bucket}/{key} does not exist")]
    NotFound {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
    /// The caller may not perform this operation on this resource.
    #[error("access denied: {action} on {resource}: {message}")]
    AccessDenied {
        /// IAM action, e.g. `s3:GetObject`.
        action: String,
        /// Resource ARN or URI.
        resource: String,
        /// Why.
        message: String,
    },
    /// The key cannot be stored or used (for example it would escape a directory).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A file in a local store whose name is no object key the store can read back exactly
    /// (put there by hand); listing it would name a key whose GET misses, so the listing fails
    /// naming it.
    #[error("s3://{bucket}: the file {path:?} in the store is not an object: {reason}")]
    UnreadableName {
        /// Bucket name.
        bucket: String,
        /// The file, relative to the bucket's directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The requested byte range is outside the object.
    #[error("range {start}..{end} is outside s3://{bucket}/{key} (size {size})")]
    InvalidRange {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Object size.
        size: u64,
    },
    /// The service answered with an error status.
    #[error("{operation} s3://{bucket}/{key}: service error {status} {code}: {message}")]
    Service {
        /// Operation name, e.g. `GetObject`.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key or prefix.
        key: String,
        /// HTTP status.
        status: u16,
        /// S3 error code, e.g. `SlowDown`.
        code: String,
        /// Service message.
        message: String,
    },
    /// The body ended before the announced length.
    #[error("{operation} s3://{bucket}/{key}: body truncated: got {got} of {expected} bytes")]
    Truncated {
        /// Operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The connection or local I/O failed.
    #[error("{operation} s3://{bucket}/{key}: {source}")]
    Io {
        /// Operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Any other client-side failure (configuration, decoding).
    #[error("{operation} s3://{bucket}/{key}: {message}")]
    Client {
        /// Operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// What failed.
        message: String,
    },
}

impl ObjectError {
    /// Whether repeating the same request may succeed: throttling, server errors, resets and
    /// truncated bodies are; missing objects, denials and invalid input are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ObjectError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"
                    )
            }
            ObjectError::Truncated { .. } => true,
            ObjectError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::Interrupted
            ),
            _ => false,
        }
    }

    /// Whether the error means "no such object".
    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectError::NotFound { .. })
    }
}
