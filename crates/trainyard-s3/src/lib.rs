//! Object storage for trainyard.
//!
//! Everything trainyard reads or writes in object storage (channel data, manifests, model and
//! output archives, checkpoints) goes through the [`ObjectClient`] trait defined here, so the
//! data plane never knows whether it talks to the embedded directory store, a local `file://`
//! tree or a real S3-compatible endpoint. The trait is deliberately small: list (streaming, in
//! key order), head, ranged get as a stream of chunks, put, delete.

mod client;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod dir_store;
mod error;
mod http;
mod key_codec;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "server")]
pub mod server;
mod types;

pub use client::{
    ByteStream, GetObject, ListPage, ObjectClient, ObjectClientExt, ObjectMeta, PutBody,
};
pub use dir_store::DirStore;
pub use error::ObjectError;
pub use http::{
    AddressingStyle, AssumeRole, ConfigError, MIN_PART_SIZE, RetryConfig, S3Client, S3Config,
    S3Credentials,
};
pub use types::{Location, S3Uri, UriError, is_directory_bucket, validate_bucket_name};
