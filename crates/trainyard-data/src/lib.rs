//! Input channels: from a channel description to bytes where the training process reads them.
//!
//! A channel is first expanded into an ordered object list ([`objects`]), each object with the
//! relative path it will have inside the channel directory; that list is checked for keys that
//! would escape the directory before anything is written. Then it is split per host
//! ([`shard`](mod@shard)) and delivered by input mode ([`file_mode`], [`fastfile`]).
//!
//! `ManifestFile` and `AugmentedManifestFile` channels are expanded by [`manifest`]; the
//! per-epoch order of `ShuffleConfig` is [`shuffle`]; Pipe mode ([`pipe_mode`]) streams each
//! epoch through a FIFO, optionally gunzipped and framed as RecordIO ([`recordio`]).

pub mod error;
pub mod fastfile;
pub mod file_mode;
pub mod manifest;
pub mod objects;
pub mod pipe_mode;
pub mod recordio;
pub mod shard;
pub mod shuffle;

pub use error::DataError;
pub use file_mode::{DownloadOptions, DownloadSummary, Progress, download};
pub use manifest::{
    AugmentedLine, AugmentedRecord, Manifest, load_augmented_manifest, load_manifest,
    parse_augmented_manifest, parse_manifest,
};
pub use objects::{ChannelObject, list_prefix, relative_path, safe_relative_path};
pub use pipe_mode::{
    HostShard, PipeChannel, PipeOptions, PipeProducer, PipeSource, PipeSummary, serve_pipe,
};
pub use shard::shard;
