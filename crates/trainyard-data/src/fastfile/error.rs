//! Why a FastFile operation failed, and the one place that turns that into an errno.
//!
//! The kernel only understands errno values, but the file-system logic should say what went
//! wrong in its own terms (which inode, which key, which storage error) so tests can assert on
//! it and logs can name the object. So the logic returns [`FsError`] and the FUSE adapter calls
//! [`FsError::errno`] at the edge; no other code picks errno numbers.

use trainyard_s3::ObjectError;

/// A failed file-system operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No inode with this number exists in the mount.
    #[error("no inode {ino}")]
    NoInode {
        /// The inode number the kernel passed.
        ino: u64,
    },
    /// The directory has no entry of that name.
    #[error("no entry `{name}` in directory inode {parent}")]
    NotFound {
        /// The directory's inode.
        parent: u64,
        /// The name looked up (lossily decoded).
        name: String,
    },
    /// A directory operation on a file.
    #[error("inode {ino} is not a directory")]
    NotADirectory {
        /// The inode.
        ino: u64,
    },
    /// A file operation on a directory.
    #[error("inode {ino} is a directory")]
    IsADirectory {
        /// The inode.
        ino: u64,
    },
    /// The mount is read-only; every operation that would change it is refused.
    #[error("{operation} refused: FastFile channels are read-only")]
    ReadOnly {
        /// The refused operation, e.g. `write`.
        operation: &'static str,
    },
    /// The file handle is unknown (never opened, or already released).
    #[error("unknown file handle {fh}")]
    BadHandle {
        /// The handle.
        fh: u64,
    },
    /// Storage failed while reading an object; retries, if any, already happened in the client.
    #[error("reading s3://{bucket}/{key}: {source}")]
    Object {
        /// Bucket of the object.
        bucket: String,
        /// Key of the object.
        key: String,
        /// What storage said (boxed: storage errors are large and reads are hot).
        #[source]
        source: Box<ObjectError>,
    },
}

impl FsError {
    /// The errno the kernel receives for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NoInode { .. } | FsError::NotFound { .. } => libc::ENOENT,
            FsError::NotADirectory { .. } => libc::ENOTDIR,
            FsError::IsADirectory { .. } => libc::EISDIR,
            FsError::ReadOnly { .. } => libc::EROFS,
            FsError::BadHandle { .. } => libc::EBADF,
            FsError::Object { .. } => libc::EIO,
        }
    }

    /// Whether the error is worth an error line in the log: storage failures are (the training
    /// process only sees `EIO`), lookups of missing names are routine and are not.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, FsError::Object { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_the_documented_errno() {
        let io = ObjectError::NotFound {
            bucket: "b".into(),
            key: "k".into(),
        };
        let cases = [
            (FsError::NoInode { ino: 9 }, libc::ENOENT),
            (
                FsError::NotFound {
                    parent: 1,
                    name: "x".into(),
                },
                libc::ENOENT,
            ),
            (FsError::NotADirectory { ino: 2 }, libc::ENOTDIR),
            (FsError::IsADirectory { ino: 1 }, libc::EISDIR),
            (FsError::ReadOnly { operation: "write" }, libc::EROFS),
            (FsError::BadHandle { fh: 3 }, libc::EBADF),
            (
                FsError::Object {
                    bucket: "b".into(),
                    key: "k".into(),
                    source: Box::new(io),
                },
                libc::EIO,
            ),
        ];
        for (err, errno) in cases {
            assert_eq!(err.errno(), errno, "{err}");
            assert_eq!(err.is_storage_failure(), errno == libc::EIO);
        }
    }
}
