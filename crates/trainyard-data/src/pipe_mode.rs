//! Pipe mode (`doc/contract/data.md` §3): a channel's data streamed through named pipes
//! `<data_dir>/<channel>_<epoch>`, one full pass over the (shuffled, sharded) dataset per epoch.
//!
//! The training process sees only a FIFO, so everything that makes Pipe mode fast or safe
//! happens on the producer side, and this module is shaped by three facts:
//!
//! * **The FIFO must exist before training starts, but opening it blocks until a reader comes.**
//!   So the API is two steps: [`PipeProducer::prepare`] creates `<channel>_0` synchronously (the
//!   runner prepares every Pipe channel, then starts the process), and [`PipeProducer::run`] is the
//!   long-lived future. Opening for write uses `O_NONBLOCK` and polls (1 ms doubling up to
//!   [`PipeOptions::open_poll`]) while `ENXIO` says no reader is there yet, so no thread is
//!   blocked and `stop` can always interrupt it. An unread channel costs a timer, nothing else.
//! * **A FIFO is one sequential stream, and object storage is fast only in parallel.** While a
//!   reader is awaited, a small amount ([`PipeOptions::idle_prefetch_bytes`]) is fetched so the
//!   first bytes are ready; once it opens, the prefetcher (`fetch`) runs up to
//!   [`PipeOptions::prefetch_bytes`] ahead with up to [`PipeOptions::max_requests`] ranged GETs
//!   in flight, and the writer (`writer`) consumes them in order, gunzipping and RecordIO-framing
//!   on the fly. Memory is bounded by those budgets, never by object or dataset size.
//! * **A FIFO cannot carry an error; closing it always reads as a clean end of data.** So when
//!   delivery fails (a storage error after retries, a corrupt gzip object), [`PipeProducer::run`]
//!   returns the error *without closing the FIFO*: the open write end is handed to a detached
//!   task that keeps it open until `stop` turns true (or its sender is dropped). The reader
//!   therefore blocks instead of seeing an EOF that would look like a complete epoch, and the
//!   runner, which got the error, stops the job with it as the failure reason. A failure before
//!   any reader opened the FIFO is returned at once; a reader that opens later blocks in `open`.
//!
//! Epochs: a reader that reads to the end gets EOF when the writer closes; a reader that closes
//! early makes the next write fail with `EPIPE`, which ends that epoch without error (the Rust
//! runtime ignores `SIGPIPE`; a host program embedding this must do the same). Either way the
//! producer creates `<channel>_<n+1>`, unlinks `<channel>_<n>`, and starts over with the next
//! epoch's order: a fresh permutation (§5) when the channel has a shuffle seed, then this host's
//! round-robin shard (§2), so with both a host's share changes every epoch. When `stop` turns
//! true the producer closes the write end, removes the current FIFO and returns its summary.

mod fetch;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::unix::pipe;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;
use trainyard_s3::ObjectClient;

use crate::DataError;
use crate::manifest::{AugmentedLine, AugmentedRecord};
use crate::objects::ChannelObject;
use fetch::{FetchCtx, Payload, Task, fetch_epoch};
use writer::{EpochWriter, Halt, WriterCtx};

/// Size of the buffer that coalesces small writes into the FIFO.
const WRITE_BUFFER: usize = 256 << 10;
/// How long the bytes written before a failure may still take to reach the reader after `stop`.
const FLUSH_GRACE: Duration = Duration::from_millis(500);
/// Largest range a single GET asks for.
const MAX_PART_SIZE: u64 = 1 << 30;

/// What a Pipe channel delivers, in §0 order (before shuffle and shard).
#[derive(Debug, Clone)]
pub enum PipeSource {
    /// Objects of an `S3Prefix` or a `ManifestFile`: each object's bytes, back to back.
    Objects(Vec<ChannelObject>),
    /// Lines of an `AugmentedManifestFile`: each selected attribute of each line is one
    /// record. Shuffling and sharding move whole lines.
    Augmented(Vec<AugmentedLine>),
}

impl PipeSource {
    /// Number of items that are shuffled and sharded (objects or lines).
    pub fn len(&self) -> usize {
        match self {
            PipeSource::Objects(v) => v.len(),
            PipeSource::Augmented(v) => v.len(),
        }
    }

    /// Whether there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// This host's place among the hosts of a `ShardedByS3Key` channel (`algo-k` has index `k-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostShard {
    /// 0-based host index.
    pub index: usize,
    /// Number of hosts.
    pub count: usize,
}

/// One Pipe channel as this host serves it.
#[derive(Debug, Clone)]
pub struct PipeChannel {
    /// Channel name; the FIFOs are `<name>_<epoch>`.
    pub name: String,
    /// What to deliver.
    pub source: PipeSource,
    /// `Some` for `ShardedByS3Key`, `None` for `FullyReplicated`.
    pub shard: Option<HostShard>,
    /// `ShuffleConfig.Seed`, if the channel shuffles.
    pub shuffle_seed: Option<i64>,
    /// `CompressionType: Gzip`: objects (and `-ref` objects) are decompressed while streaming.
    pub gzip: bool,
    /// `RecordWrapperType: RecordIO`: each object or augmented-manifest record is one record.
    pub recordio: bool,
}

/// Tuning of the producer. Memory per channel is about `prefetch_bytes + recordio_buffer`.
#[derive(Debug, Clone)]
pub struct PipeOptions {
    /// Bytes fetched ahead of the FIFO writer (default 128 MiB).
    pub prefetch_bytes: u64,
    /// Bytes fetched before a reader has opened the FIFO (default 8 MiB).
    pub idle_prefetch_bytes: u64,
    /// Size of each ranged GET; larger objects are fetched as several (default 8 MiB, at most
    /// `prefetch_bytes`).
    pub part_size: u64,
    /// Requests in flight at once, HEADs included (default 32).
    pub max_requests: usize,
    /// A RecordIO payload up to this size is framed from memory; beyond it the object is read
    /// a second time to find the part boundaries (default 16 MiB).
    pub recordio_buffer: usize,
    /// Kernel buffer requested for each FIFO with `F_SETPIPE_SZ`, best effort (default 1 MiB,
    /// the unprivileged maximum on Linux; 0 leaves the kernel default of 64 KiB).
    pub pipe_buffer: usize,
    /// Times a transient error in the middle of an object body is resumed (default 3).
    pub body_retries: u32,
    /// Longest wait between two attempts to open the FIFO for a reader (default 50 ms).
    pub open_poll: Duration,
}

impl Default for PipeOptions {
    fn default() -> Self {
        PipeOptions {
            prefetch_bytes: 128 << 20,
            idle_prefetch_bytes: 8 << 20,
            part_size: 8 << 20,
            max_requests: 32,
            recordio_buffer: 16 << 20,
            pipe_buffer: 1 << 20,
            body_retries: 3,
            open_poll: Duration::from_millis(50),
        }
    }
}

/// What a producer did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeSummary {
    /// Epochs delivered to the end (EOF reached the reader).
    pub epochs_completed: u64,
    /// Epochs the reader closed before the end.
    pub epochs_closed_early: u64,
    /// Bytes written into FIFOs, framing included.
    pub bytes: u64,
    /// Payloads (objects, augmented-manifest records) written whole.
    pub records: u64,
}

/// `<data_dir>/<channel>_<epoch>`.
pub fn fifo_path(data_dir: &Path, channel: &str, epoch: u64) -> PathBuf {
    data_dir.join(format!("{channel}_{epoch}"))
}

/// The producer of one Pipe channel on one host; see the module doc for the life cycle.
#[derive(Debug)]
pub struct PipeProducer {
    client: Arc<dyn ObjectClient>,
    channel: Arc<PipeChannel>,
    data_dir: PathBuf,
    opts: PipeOptions,
}

/// Creates the FIFO for a channel's first epoch and returns the producer that will serve it.
/// Equivalent to [`PipeProducer::prepare`] followed by [`PipeProducer::run`].
pub async fn serve_pipe(
    client: Arc<dyn ObjectClient>,
    channel: PipeChannel,
    data_dir: &Path,
    opts: PipeOptions,
    stop: watch::Receiver<bool>,
) -> Result<PipeSummary, DataError> {
    PipeProducer::prepare(client, channel, data_dir, opts)?
        .run(stop)
        .await
}

impl PipeProducer {
    /// Checks the channel and creates `<data_dir>/<name>_0` (mode 0600; a stale FIFO of that
    /// name is replaced). `data_dir` must exist. Call it for every Pipe channel before starting
    /// the training process, then drive [`PipeProducer::run`].
    pub fn prepare(
        client: Arc<dyn ObjectClient>,
        channel: PipeChannel,
        data_dir: &Path,
        opts: PipeOptions,
    ) -> Result<Self, DataError> {
        let bad = |reason: &str| DataError::Pipe {
            channel: channel.name.clone(),
            reason: reason.to_string(),
        };
        let name = channel.name.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(bad("the channel name cannot be used in a file name"));
        }
        if let Some(s) = channel.shard {
            if s.count == 0 || s.index >= s.count {
                return Err(bad(&format!(
                    "host index {} out of range for {} hosts",
                    s.index, s.count
                )));
            }
        }
        if opts.prefetch_bytes == 0 || opts.part_size == 0 {
            return Err(bad("prefetch_bytes and part_size must be positive"));
        }
        let producer = PipeProducer {
            client,
            channel: Arc::new(channel),
            data_dir: data_dir.to_path_buf(),
            opts,
        };
        create_fifo(&producer.fifo_path(0))?;
        Ok(producer)
    }

    /// The FIFO of `epoch`.
    pub fn fifo_path(&self, epoch: u64) -> PathBuf {
        fifo_path(&self.data_dir, &self.channel.name, epoch)
    }

    /// Serves epochs until `stop` is true (or its sender is dropped). Returns the summary on
    /// stop, or the error that made delivery fail (the FIFO is then left open; see the module
    /// doc: set `stop` once the training process is gone).
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<PipeSummary, DataError> {
        let span = tracing::info_span!("channel", channel = %self.channel.name, mode = "Pipe");
        self.serve(stop).instrument(span).await
    }

    async fn serve(self, mut stop: watch::Receiver<bool>) -> Result<PipeSummary, DataError> {
        let part_size = self
            .opts
            .part_size
            .min(self.opts.prefetch_bytes)
            .min(MAX_PART_SIZE);
        let fetch_ctx = Arc::new(FetchCtx {
            client: self.client.clone(),
            channel: self.channel.name.clone(),
            part_size,
            requests: Arc::new(Semaphore::new(self.opts.max_requests.max(1))),
            lookahead: self.opts.max_requests.max(1),
            body_retries: self.opts.body_retries,
        });
        let writer_ctx = WriterCtx {
            client: self.client.clone(),
            channel: self.channel.name.clone(),
            gzip: self.channel.gzip,
            recordio: self.channel.recordio,
            recordio_buffer: self.opts.recordio_buffer,
            body_retries: self.opts.body_retries,
        };
        let mut summary = PipeSummary::default();
        let mut epoch = 0u64;
        loop {
            let path = self.fifo_path(epoch);
            let outcome = self
                .epoch(
                    epoch,
                    &path,
                    &fetch_ctx,
                    &writer_ctx,
                    &mut stop,
                    &mut summary,
                )
                .await;
            match outcome {
                Outcome::Delivered => {}
                Outcome::Stopped => {
                    remove_fifo(&path);
                    tracing::info!(?summary, "pipe channel stopped");
                    return Ok(summary);
                }
                Outcome::Failed(failure) => {
                    let Failure { error: e, held } = *failure;
                    if let Some(held) = held {
                        let mut stop = stop.clone();
                        tokio::spawn(async move {
                            // Hand over what was written before the failure (with a short
                            // grace after `stop`, so a stop right after the error does not
                            // drop it), then keep the write end open so the reader cannot
                            // mistake the failure for the end of the epoch.
                            let mut held = held;
                            tokio::select! {
                                _ = held.flush() => {}
                                _ = async {
                                    stopped(&mut stop).await;
                                    tokio::time::sleep(FLUSH_GRACE).await;
                                } => return,
                            }
                            stopped(&mut stop).await;
                        });
                    }
                    return Err(e);
                }
            }
            create_fifo(&self.fifo_path(epoch + 1))?;
            remove_fifo(&path);
            epoch += 1;
        }
    }

    /// The order of `epoch` as positions into the source: shuffled, then sharded.
    fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.channel.source.len();
        let order = match self.channel.shuffle_seed {
            Some(seed) => crate::shuffle::permutation(n, seed, epoch),
            None => (0..n).collect(),
        };
        match self.channel.shard {
            Some(s) => crate::shard::shard(order, s.index, s.count),
            None => order,
        }
    }

    async fn epoch(
        &self,
        epoch: u64,
        path: &Path,
        fetch_ctx: &Arc<FetchCtx>,
        writer_ctx: &WriterCtx,
        stop: &mut watch::Receiver<bool>,
        summary: &mut PipeSummary,
    ) -> Outcome {
        let order = self.order(epoch);
        tracing::debug!(epoch, items = order.len(), fifo = %path.display(), "epoch waiting for a reader");
        let payloads = payloads(self.channel.clone(), order);
        let idle = self.opts.idle_prefetch_bytes.min(self.opts.prefetch_bytes);
        let budget = Arc::new(Semaphore::new(to_permits(idle)));
        let (tx, mut rx) = mpsc::channel(self.opts.max_requests.max(1) * 2 + 16);
        let mut fetcher = Task::spawn(fetch_epoch(fetch_ctx.clone(), payloads, budget.clone(), tx));
        let mut fetched: Option<Result<(), DataError>> = None;

        let sender = loop {
            tokio::select! {
                biased;
                _ = stopped(stop) => return Outcome::Stopped,
                r = &mut fetcher, if fetched.is_none() => match r {
                    Ok(Ok(())) => fetched = Some(Ok(())),
                    Ok(Err(e)) => return Outcome::failed(e, None),
                    Err(e) => return Outcome::failed(fetch_ctx.task_failed(e), None),
                },
                s = open_writer(path, self.opts.open_poll) => match s {
                    Ok(s) => break s,
                    Err(e) => return Outcome::failed(e, None),
                },
            }
        };
        budget.add_permits(to_permits(self.opts.prefetch_bytes - idle));
        if self.opts.pipe_buffer > 0 {
            if let Err(e) = rustix::pipe::fcntl_setpipe_size(&sender, self.opts.pipe_buffer) {
                tracing::debug!(error = %e, "could not enlarge the pipe buffer");
            }
        }
        let started = Instant::now();
        tracing::info!(epoch, "reader connected");
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, sender);
        let (result, bytes, records) = {
            let mut w = EpochWriter::new(&mut out, writer_ctx, path.to_path_buf());
            let result = tokio::select! {
                biased;
                _ = stopped(stop) => None,
                r = w.run(&mut rx) => Some(r),
            };
            (result, w.bytes, w.records)
        };
        summary.bytes += bytes;
        summary.records += records;
        let Some(result) = result else {
            return Outcome::Stopped;
        };
        let result = match result {
            Ok(()) | Err(Halt::Starved) => {
                let fetch_result = match fetched {
                    Some(r) => r,
                    None => fetcher
                        .await
                        .unwrap_or_else(|e| Err(fetch_ctx.task_failed(e))),
                };
                match (fetch_result, result) {
                    (Err(e), _) => Err(Halt::Failed(e)),
                    (Ok(()), Err(Halt::Starved)) => Err(Halt::Failed(DataError::Pipe {
                        channel: self.channel.name.clone(),
                        reason: "internal error: prefetch ended in the middle of an object".into(),
                    })),
                    (Ok(()), r) => r,
                }
            }
            other => other,
        };
        let seconds = started.elapsed().as_secs_f64();
        let mb_per_s = if seconds > 0.0 {
            bytes as f64 / 1e6 / seconds
        } else {
            0.0
        };
        match result {
            Ok(()) => {
                summary.epochs_completed += 1;
                tracing::info!(epoch, bytes, records, seconds, mb_per_s, "epoch delivered");
                Outcome::Delivered
            }
            Err(Halt::ReaderClosed) => {
                summary.epochs_closed_early += 1;
                tracing::info!(
                    epoch,
                    bytes,
                    records,
                    "reader closed the FIFO before the end"
                );
                Outcome::Delivered
            }
            Err(Halt::Failed(e)) => Outcome::failed(e, Some(out)),
            Err(Halt::Starved) => Outcome::failed(
                DataError::Pipe {
                    channel: self.channel.name.clone(),
                    reason: "internal error: prefetch ended early".into(),
                },
                Some(out),
            ),
        }
    }
}

/// How an epoch ended.
enum Outcome {
    /// EOF delivered or the reader left: go on with the next epoch.
    Delivered,
    /// `stop` turned true.
    Stopped,
    /// Delivery failed.
    Failed(Box<Failure>),
}

/// Why delivery failed, and the write end that must stay open if the reader had opened it.
struct Failure {
    error: DataError,
    held: Option<BufWriter<pipe::Sender>>,
}

impl Outcome {
    fn failed(error: DataError, held: Option<BufWriter<pipe::Sender>>) -> Self {
        Outcome::Failed(Box::new(Failure { error, held }))
    }
}

fn to_permits(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// The payloads of one epoch, produced lazily from the shared source.
fn payloads(
    channel: Arc<PipeChannel>,
    order: Vec<usize>,
) -> impl Iterator<Item = Payload> + Send + 'static {
    order.into_iter().flat_map(move |i| -> Vec<Payload> {
        match &channel.source {
            PipeSource::Objects(objs) => {
                let o = &objs[i];
                vec![Payload::Object {
                    bucket: o.bucket.clone(),
                    key: o.key.clone(),
                    size: Some(o.size),
                }]
            }
            PipeSource::Augmented(lines) => lines[i]
                .records
                .iter()
                .map(|r| match r {
                    AugmentedRecord::Value(v) => Payload::Inline(Bytes::clone(v)),
                    AugmentedRecord::Object { bucket, key } => Payload::Object {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        size: None,
                    },
                })
                .collect(),
        }
    })
}

/// Resolves when `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

fn create_fifo(path: &Path) -> Result<(), DataError> {
    use rustix::fs::{CWD, Mode, mkfifoat};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io_err = |source: io::Error| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => std::fs::remove_file(path).map_err(io_err)?,
        Ok(_) => {
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a FIFO is in the way",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // Made under a temporary name and renamed into place once its mode and owner are final:
    // the job polls for the next epoch's FIFO and opens it the moment it appears.
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.fifo-tmp"));
    let _ = std::fs::remove_file(&tmp);
    mkfifoat(CWD, &tmp, Mode::RUSR | Mode::WUSR).map_err(|e| io_err(e.into()))?;
    let made = (|| {
        // mkfifo is subject to the umask; make the mode exact.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        // The FIFO belongs to whoever owns the directory it is made in: the job's user, when
        // its tree was handed to a container's unprivileged user.
        if let Some(parent) = path.parent() {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(parent)?;
            std::os::unix::fs::lchown(&tmp, Some(owner.uid()), Some(owner.gid()))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made.map_err(io_err)
}

fn remove_fifo(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(fifo = %path.display(), error = %e, "could not remove a finished FIFO");
        }
    }
}

/// Opens `path` for writing once a reader has it open, polling without blocking a thread.
async fn open_writer(path: &Path, max_poll: Duration) -> Result<pipe::Sender, DataError> {
    let mut delay = Duration::from_millis(1);
    loop {
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max_poll.max(Duration::from_millis(1)));
            }
            Err(source) => {
                return Err(DataError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ChannelObject {
        ChannelObject {
            bucket: "b".into(),
            key: key.into(),
            size: 1,
            etag: None,
            rel_path: key.into(),
        }
    }

    fn producer(dir: &Path, n: usize, seed: Option<i64>, shard: Option<HostShard>) -> PipeProducer {
        let store = trainyard_s3::DirStore::embedded(dir.join("store"));
        PipeProducer::prepare(
            Arc::new(store),
            PipeChannel {
                name: "train".into(),
                source: PipeSource::Objects((0..n).map(|i| obj(&format!("k{i}"))).collect()),
                shard,
                shuffle_seed: seed,
                gzip: false,
                recordio: false,
            },
            dir,
            PipeOptions::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn prepare_creates_the_first_fifo_with_mode_0600() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let p = producer(d.path(), 3, None, None);
        let m = std::fs::metadata(p.fifo_path(0)).unwrap();
        assert!(m.file_type().is_fifo());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(p.fifo_path(12), d.path().join("train_12"));
        // Preparing again replaces the stale FIFO.
        producer(d.path(), 3, None, None);
        std::fs::write(d.path().join("other_0"), b"x").unwrap();
        let err = PipeProducer::prepare(
            Arc::new(trainyard_s3::DirStore::embedded(d.path())),
            PipeChannel {
                name: "other".into(),
                source: PipeSource::Objects(vec![]),
                shard: None,
                shuffle_seed: None,
                gzip: false,
                recordio: false,
            },
            d.path(),
            PipeOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
    }

    #[tokio::test]
    async fn bad_channel_names_and_shards_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for (name, shard) in [
            ("a/b", None),
            ("..", None),
            ("", None),
            ("ok", Some(HostShard { index: 2, count: 2 })),
        ] {
            let r = PipeProducer::prepare(
                Arc::new(trainyard_s3::DirStore::embedded(d.path())),
                PipeChannel {
                    name: name.into(),
                    source: PipeSource::Objects(vec![]),
                    shard,
                    shuffle_seed: None,
                    gzip: false,
                    recordio: false,
                },
                d.path(),
                PipeOptions::default(),
            );
            assert!(matches!(r, Err(DataError::Pipe { .. })), "{name}");
        }
    }

    #[tokio::test]
    async fn epoch_order_is_shuffled_then_sharded() {
        let d = tempfile::tempdir().unwrap();
        let plain = producer(d.path(), 7, None, None);
        assert_eq!(plain.order(0), (0..7).collect::<Vec<_>>());
        assert_eq!(plain.order(3), plain.order(0));
        let sharded = producer(d.path(), 7, None, Some(HostShard { index: 1, count: 3 }));
        assert_eq!(sharded.order(5), [1, 4]);
        let shuffled = producer(d.path(), 7, Some(9), Some(HostShard { index: 0, count: 2 }));
        let perm = crate::shuffle::permutation(7, 9, 1);
        assert_eq!(shuffled.order(1), [perm[0], perm[2], perm[4], perm[6]]);
    }

    #[tokio::test]
    async fn stop_before_a_reader_removes_the_fifo() {
        let d = tempfile::tempdir().unwrap();
        let p = producer(d.path(), 2, None, None);
        let path = p.fifo_path(0);
        let (tx, rx) = watch::channel(false);
        let run = tokio::spawn(p.run(rx));
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send(true).unwrap();
        let summary = run.await.unwrap().unwrap();
        assert_eq!(summary, PipeSummary::default());
        assert!(!path.exists());
    }
}
