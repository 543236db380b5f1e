//! Input channels: from a channel description to bytes where the training process reads them.
//!
//! A channel is first expanded into an ordered object list ([`objects`]), each object with the
//! relative path it will have inside the channel directory; that list is checked for keys that
//! would escape the directory before anything is written. Then it is split per host
//! ([`shard`]) and delivered by input mode ([`file_mode`]).

pub mod error;
pub mod file_mode;
pub mod objects;
pub mod shard;

pub use error::DataError;
pub use file_mode::{DownloadOptions, DownloadSummary, Progress, download};
pub use objects::{ChannelObject, list_prefix, relative_path, safe_relative_path};
pub use shard::shard;
