//! Checkpoint synchronisation between a host's checkpoint directory and S3 (`doc/contract/container.md`
//! §7).
//!
//! Spot restarts and retries only resume if what the algorithm saved reaches S3 while the job
//! runs, not just at the end: a killed job gets no final upload. So the directory is mirrored
//! continuously, and the next attempt starts from what the last one managed to save. Three
//! things shape the design:
//!
//! * **Never a torn object.** A checkpoint is written over seconds; uploading it mid-write
//!   would store a file that later restores as corrupt. Uploads are triggered by inotify
//!   close-write and moved-to events after a debounce, never by plain modifications; a file
//!   that saw writes without a close is left alone. Each upload reads a snapshot: the file is
//!   copied to a private staging directory (outside the mirrored tree, so the copy itself is
//!   never uploaded) and the copy is used only if size, mtime and inode were the same before
//!   and after the copy.
//! * **Events can be lost.** The inotify queue may overflow and a new directory's watch is added
//!   a moment after the directory appears. A full reconcile therefore runs every 60 s (and at
//!   the end): it walks the tree, uploads files whose size/mtime/inode changed since their last
//!   upload (skipping files written to within the debounce window) and deletes the objects of
//!   files that are gone.
//! * **Failures must not kill training.** A failed upload or delete is logged with its key and
//!   retried by the next reconcile; only the final sync in [`SyncHandle::finish`] reports an
//!   error, naming a file it could not upload.
//!
//! The restore side reuses the File-mode downloader of `trainyard-data`, so checkpoints arrive
//! with the same guarantees as channel data (checked relative paths, no partial files).
//!
//! Only objects this host knows about (restored at start, or uploaded since) are ever deleted:
//! all hosts share one prefix, and a host must not delete what another host wrote. Objects
//! added to S3 after the start are never copied down.
//!
//! The directory belongs to the job, which can swap any of its subdirectories for a symbolic
//! link while the server walks it. So nothing is read by path: the directory is opened once
//! before the process starts, and every listing and upload goes through that handle
//! ([`super::beneath::Tree`], `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). A
//! symbolic link is uploaded as the content of its target only when it is a relative link to a
//! regular file inside the directory (resolved by the kernel, confined beneath the handle);
//! directory symlinks and links that are absolute or lead out of the directory are ignored.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};
use trainyard_data::{DataError, DownloadOptions, Progress};
use trainyard_s3::{ObjectClient, ObjectClientExt, ObjectError, PutBody};

mod tree;

use super::beneath::Tree;
use tree::{Shared, Snap, Staging, Stamp, SyncMode, Walk};

/// Name fragment of the temporary files the `trainyard-data` downloader writes beside their
/// destination; such files are never uploaded.
const DOWNLOAD_TEMP_MARKER: &str = ".trainyard-part-";
/// Name prefix of the staging directory created beside the checkpoint directory.
const STAGING_PREFIX: &str = ".trainyard-checkpoint-staging-";
/// Events buffered between the watcher thread and the sync task; beyond this, events are
/// dropped and a full reconcile takes their place.
const EVENT_BUFFER: usize = 4096;
/// Passes of the final sync before a file that cannot be uploaded is reported.
const FINAL_ATTEMPTS: u32 = 3;
/// Pause between the passes of the final sync.
const FINAL_RETRY_DELAY: Duration = Duration::from_millis(300);

/// Where a job's checkpoints live in object storage.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    /// The store holding the checkpoints.
    pub client: Arc<dyn ObjectClient>,
    /// Bucket of `CheckpointConfig.S3Uri`.
    pub bucket: String,
    /// Key prefix of `CheckpointConfig.S3Uri`, used verbatim and treated as a folder: a `/` is
    /// added when it does not end with one (an empty prefix is the whole bucket).
    pub prefix: String,
}

impl CheckpointTarget {
    /// The prefix as a folder: empty, or ending in `/`.
    fn folder(&self) -> String {
        if self.prefix.is_empty() || self.prefix.ends_with('/') {
            self.prefix.clone()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// The target as an `s3://` URI, for messages.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.folder())
    }
}

/// What a restore downloaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestoreSummary {
    /// Files written into the checkpoint directory.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a sync session did, from its start to the end of its final sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Objects uploaded (a file uploaded twice counts twice).
    pub uploaded: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Objects deleted because their file was deleted.
    pub deleted: u64,
    /// Uploads or deletes that failed and were retried later.
    pub failed_attempts: u64,
}

/// Tuning of a sync session.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Quiet time after a close-write, move or delete event before the file is synced; further
    /// events for the same file restart it (default 1 s).
    pub debounce: Duration,
    /// Period of the full reconcile (default 60 s).
    pub reconcile_interval: Duration,
    /// Uploads and deletes in flight at once (default 8).
    pub max_concurrent_uploads: usize,
    /// Where upload snapshots are copied. A fresh subdirectory is created inside it and removed
    /// when the session ends. Default: a hidden directory beside the checkpoint directory (same
    /// file system, so copies can be cheap), or the system temporary directory when that
    /// cannot be created.
    pub staging_dir: Option<PathBuf>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            debounce: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(60),
            max_concurrent_uploads: 8,
            staging_dir: None,
        }
    }
}

/// Why a file could not be uploaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadFailure {
    /// The local file could not be read or snapshotted.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file (or staging copy) concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The store refused or failed the upload.
    #[error(transparent)]
    Store(#[from] ObjectError),
    /// The file changed while it was being copied, every time it was tried.
    #[error("the file kept changing while it was being read")]
    Unstable,
}

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Listing or downloading the checkpoints before the start failed.
    #[error("restoring checkpoints from {uri} into {}: {source}", local.display())]
    Restore {
        /// The checkpoint location.
        uri: String,
        /// The local checkpoint directory.
        local: PathBuf,
        /// What the downloader reported (boxed: the data-plane error is large).
        #[source]
        source: Box<DataError>,
    },
    /// A local file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `creating the checkpoint directory`.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The inotify watch could not be set up.
    #[error("watching checkpoint directory {}: {source}", path.display())]
    Watch {
        /// The checkpoint directory.
        path: PathBuf,
        /// What the watcher reported.
        #[source]
        source: notify::Error,
    },
    /// [`start_sync`] was called outside a Tokio runtime.
    #[error("checkpoint sync of {} must be started inside a Tokio runtime", path.display())]
    NoRuntime {
        /// The checkpoint directory.
        path: PathBuf,
    },
    /// The final sync could not upload a file (`others` more failed as well).
    #[error(
        "final checkpoint sync could not upload {} to s3://{bucket}/{key} ({others} other files failed too): {source}",
        path.display()
    )]
    FinalUpload {
        /// The local file.
        path: PathBuf,
        /// Bucket.
        bucket: String,
        /// Key it should have been stored under.
        key: String,
        /// How many other files failed too.
        others: usize,
        /// Why it failed (boxed: storage errors are large).
        #[source]
        source: Box<UploadFailure>,
    },
    /// The sync task itself died.
    #[error("checkpoint sync task of {} failed: {reason}", path.display())]
    Task {
        /// The checkpoint directory.
        path: PathBuf,
        /// What happened to it.
        reason: String,
    },
}

/// Downloads everything under the target into `local` (created if missing) before the process
/// starts. An empty prefix, or a bucket that does not exist yet, restores nothing.
pub async fn restore(
    target: &CheckpointTarget,
    local: &Path,
) -> Result<RestoreSummary, CheckpointError> {
    fs::create_dir_all(local).map_err(|source| CheckpointError::Io {
        action: "creating the checkpoint directory",
        path: local.to_path_buf(),
        source,
    })?;
    let uri = target.uri();
    let prefix = target.folder();
    let restore_err = |source| CheckpointError::Restore {
        uri: uri.clone(),
        local: local.to_path_buf(),
        source: Box::new(source),
    };
    let objects =
        match trainyard_data::list_prefix(&*target.client, &target.bucket, &prefix, &uri).await {
            Ok(objects) => objects,
            Err(DataError::NoObjects { .. }) => Vec::new(),
            Err(DataError::List {
                source: ObjectError::NoSuchBucket { .. },
                ..
            }) => {
                info!(uri = %uri, "checkpoint bucket does not exist yet; nothing to restore");
                Vec::new()
            }
            Err(e) => return Err(restore_err(e)),
        };
    if objects.is_empty() {
        return Ok(RestoreSummary {
            objects: 0,
            bytes: 0,
            seconds: 0.0,
        });
    }
    let summary = trainyard_data::download(
        target.client.clone(),
        &objects,
        local,
        &DownloadOptions::default(),
        &Progress::default(),
    )
    .await
    .map_err(restore_err)?;
    info!(
        uri = %uri,
        objects = summary.objects,
        bytes = summary.bytes,
        "checkpoints restored"
    );
    Ok(RestoreSummary {
        objects: summary.objects,
        bytes: summary.bytes,
        seconds: summary.seconds,
    })
}

/// Starts watching `local` (created if missing): files closed after writing, or moved in, are
/// uploaded to `prefix/<relative path>` after the debounce, deleted files have their object
/// deleted, and a full reconcile runs every `reconcile_interval`. Must be called inside a Tokio
/// runtime, after [`restore`] and before the process starts: the watch is in place when this
/// returns, and the files present now (listed here, on the calling thread) are the ones whose
/// deletion is mirrored even if the store has not seen an upload of them in this session.
pub fn start_sync(
    target: CheckpointTarget,
    local: PathBuf,
    opts: SyncOptions,
) -> Result<SyncHandle, CheckpointError> {
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| CheckpointError::NoRuntime {
            path: local.clone(),
        })?;
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(&local).map_err(io_err("creating the checkpoint directory", &local))?;
    let root = fs::canonicalize(&local).map_err(io_err("resolving", &local))?;
    let staging = Staging::create(&root, opts.staging_dir.as_deref())?;

    let (tx, events) = mpsc::channel(EVENT_BUFFER);
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let mut watcher = RecommendedWatcher::new(
        move |ev: notify::Result<Event>| {
            if tx.try_send(ev).is_err() {
                flag.store(true, Ordering::Relaxed);
            }
        },
        notify::Config::default().with_follow_symlinks(false),
    )
    .map_err(|source| CheckpointError::Watch {
        path: root.clone(),
        source,
    })?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|source| CheckpointError::Watch {
            path: root.clone(),
            source,
        })?;

    let shared = Arc::new(Shared {
        prefix: target.folder(),
        client: target.client,
        bucket: target.bucket,
        root: root.clone(),
        tree: Tree::open(&root).map_err(io_err("opening", &root))?,
        staging_dir: staging.dir.clone(),
        copies: AtomicU64::new(0),
    });
    // What is here before the process starts (normally what `restore` just wrote), taken now
    // rather than in the task, so a file the process deletes right away is still known and
    // its object deleted. The watch is already in place, so later changes raise events.
    let at_start = shared.walk("").map_err(io_err("reading", &root))?.files;
    let worker = Worker {
        permits: Arc::new(Semaphore::new(opts.max_concurrent_uploads.max(1))),
        shared,
        opts,
        overflowed,
        staging,
        synced: HashMap::new(),
        pending: HashMap::new(),
        writing: HashSet::new(),
        in_flight: HashSet::new(),
        tasks: HashMap::new(),
        ops: JoinSet::new(),
        summary: SyncSummary::default(),
        final_failures: HashMap::new(),
        finishing: false,
        reconcile_requested: false,
    };
    let (stop, stop_rx) = oneshot::channel();
    let task = runtime.spawn(worker.run(at_start, events, stop_rx, watcher));
    debug!(dir = %root.display(), "checkpoint sync started");
    Ok(SyncHandle {
        stop: Some(stop),
        task: Some(task),
        local: root,
    })
}

/// A running sync session. Dropping it without [`SyncHandle::finish`] stops the session
/// without a final sync.
#[derive(Debug)]
pub struct SyncHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<SyncSummary, CheckpointError>>>,
    local: PathBuf,
}

impl SyncHandle {
    /// Stops watching and runs a final full sync; returns what was uploaded and deleted over the
    /// whole session. Fails only when some file could not be uploaded (the error names it).
    pub async fn finish(mut self) -> Result<SyncSummary, CheckpointError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Err(CheckpointError::Task {
                path: self.local.clone(),
                reason: "the session was already finished".into(),
            });
        };
        task.await.map_err(|e| CheckpointError::Task {
            path: self.local.clone(),
            reason: e.to_string(),
        })?
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What one upload or delete task ended with.
#[derive(Debug)]
enum Outcome {
    Uploaded { rel: String, stamp: Stamp },
    Unchanged { rel: String },
    Busy { rel: String },
    Unstable { rel: String },
    Gone { rel: String },
    Dir { rel: String, files: Vec<String> },
    UploadFailed { rel: String, error: UploadFailure },
    Deleted { rel: String },
    DeleteFailed { rel: String, error: ObjectError },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    due: Instant,
    /// Upload even if the stamp matches the last upload (a close-write proves a write).
    force: bool,
}

/// What woke the sync loop.
enum Step {
    Stop(bool),
    Event(Option<notify::Result<Event>>),
    Done(Option<Result<(tokio::task::Id, Outcome), tokio::task::JoinError>>),
    Due,
    Reconcile,
}

/// The sync task: owns all state, so no locks; uploads and deletes run as child tasks.
struct Worker {
    shared: Arc<Shared>,
    opts: SyncOptions,
    permits: Arc<Semaphore>,
    overflowed: Arc<AtomicBool>,
    staging: Staging,
    /// Stamp of each file as last uploaded (or as found matching the store at the start).
    synced: HashMap<String, Stamp>,
    /// Debounced work per relative path.
    pending: HashMap<String, Pending>,
    /// Files written to since their last close: never uploaded until closed.
    writing: HashSet<String>,
    /// Paths with an upload or delete running; at most one operation per path at a time.
    in_flight: HashSet<String>,
    tasks: HashMap<tokio::task::Id, String>,
    ops: JoinSet<Outcome>,
    summary: SyncSummary,
    /// Upload failures of the current final-sync pass.
    final_failures: HashMap<String, UploadFailure>,
    finishing: bool,
    reconcile_requested: bool,
}

impl Worker {
    async fn run(
        mut self,
        at_start: HashMap<String, Stamp>,
        mut events: mpsc::Receiver<notify::Result<Event>>,
        mut stop: oneshot::Receiver<()>,
        watcher: RecommendedWatcher,
    ) -> Result<SyncSummary, CheckpointError> {
        self.seed(at_start).await;
        let mut reconcile = tokio::time::interval(self.opts.reconcile_interval);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            if self.overflowed.swap(false, Ordering::Relaxed) {
                warn!(dir = %self.shared.root.display(), "checkpoint events were dropped; running a full reconcile");
                self.writing.clear();
                self.reconcile_requested = true;
            }
            if std::mem::take(&mut self.reconcile_requested) {
                self.reconcile().await;
            }
            let next_due = self.next_due();
            let step = tokio::select! {
                biased;
                r = &mut stop => Step::Stop(r.is_ok()),
                done = self.ops.join_next_with_id(), if !self.ops.is_empty() => Step::Done(done),
                ev = events.recv(), if events_open => Step::Event(ev),
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(far_future)), if next_due.is_some() => Step::Due,
                _ = reconcile.tick() => Step::Reconcile,
            };
            match step {
                Step::Stop(true) => break,
                // The handle was dropped without `finish`: stop without a final sync.
                Step::Stop(false) => return Ok(self.summary),
                Step::Event(Some(ev)) => self.on_event(ev),
                Step::Event(None) => events_open = false,
                Step::Done(Some(done)) => self.on_done(done),
                Step::Done(None) => {}
                Step::Due => self.run_due(),
                Step::Reconcile => self.reconcile().await,
            }
        }
        drop(watcher);
        while let Ok(ev) = events.try_recv() {
            self.on_event(ev);
        }
        self.finishing = true;
        self.final_sync().await?;
        debug!(dir = %self.staging.dir.display(), "checkpoint sync finished");
        Ok(self.summary)
    }

    /// Marks the files found at the start that already match the store (typically just
    /// restored) as synced: the first reconcile does not upload them again, and deleting one
    /// deletes its object.
    async fn seed(&mut self, at_start: HashMap<String, Stamp>) {
        let remote: HashMap<String, u64> = match self
            .shared
            .client
            .list_vec(&self.shared.bucket, &self.shared.prefix)
            .await
        {
            Ok(objects) => objects.into_iter().map(|o| (o.key, o.size)).collect(),
            Err(ObjectError::NoSuchBucket { .. }) => HashMap::new(),
            Err(e) => {
                warn!(prefix = %self.shared.prefix, error = %e, "cannot list checkpoints; every local file will be uploaded");
                HashMap::new()
            }
        };
        for (rel, stamp) in at_start {
            if remote.get(&self.shared.key(&rel)) == Some(&stamp.size) {
                self.synced.insert(rel, stamp);
            }
        }
    }

    async fn walk(&self) -> io::Result<Walk> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.walk(""))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    fn on_event(&mut self, ev: notify::Result<Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                warn!(dir = %self.shared.root.display(), error = %e, "checkpoint watcher error; running a full reconcile");
                self.reconcile_requested = true;
                return;
            }
        };
        if ev.need_rescan() {
            self.writing.clear();
            self.reconcile_requested = true;
        }
        if matches!(
            ev.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both))
        ) {
            // Its two halves arrive as separate From and To events.
            return;
        }
        for path in &ev.paths {
            let Some(rel) = self.shared.rel_of(path) else {
                continue;
            };
            match ev.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    self.writing.remove(&rel);
                    self.schedule(rel, true);
                }
                EventKind::Modify(ModifyKind::Data(_)) => {
                    self.writing.insert(rel);
                }
                EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                    self.writing.remove(&rel);
                    self.schedule(rel, true);
                }
                // Files written into a new directory before its watch was added raise no
                // events: look inside it once it has settled.
                EventKind::Create(CreateKind::Folder) => self.schedule(rel, false),
                _ => {}
            }
        }
    }

    fn schedule(&mut self, rel: String, force: bool) {
        let due = Instant::now() + self.opts.debounce;
        self.pending
            .entry(rel)
            .and_modify(|p| {
                p.due = due;
                p.force |= force;
            })
            .or_insert(Pending { due, force });
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter(|(rel, _)| !self.in_flight.contains(*rel))
            .map(|(_, p)| p.due)
            .min()
    }

    fn run_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, Pending)> = self
            .pending
            .iter()
            .filter(|(rel, p)| p.due <= now && !self.in_flight.contains(*rel))
            .map(|(rel, p)| (rel.clone(), *p))
            .collect();
        for (rel, p) in due {
            if self.writing.contains(&rel) {
                // Still open for writing: its close will schedule it again.
                self.pending.remove(&rel);
                continue;
            }
            let mode = if p.force {
                SyncMode {
                    skip_if: None,
                    quiet: None,
                }
            } else {
                SyncMode {
                    skip_if: self.synced.get(&rel).copied(),
                    quiet: Some(self.opts.debounce),
                }
            };
            self.spawn_sync(rel, mode);
        }
    }

    /// Full pass: uploads what changed since its last upload, deletes the objects of files
    /// that are gone. Files with pending events or being written are left to the event path.
    async fn reconcile(&mut self) {
        let walk = match self.walk().await {
            Ok(walk) => walk,
            Err(e) => {
                warn!(dir = %self.shared.root.display(), error = %e, "cannot read checkpoint directory; reconcile skipped");
                return;
            }
        };
        let mut uploads = 0usize;
        for (rel, stamp) in &walk.files {
            if self.in_flight.contains(rel)
                || self.pending.contains_key(rel)
                || self.writing.contains(rel)
                || self.synced.get(rel) == Some(stamp)
                || stamp.recent(self.opts.debounce)
            {
                continue;
            }
            uploads += 1;
            let mode = SyncMode {
                skip_if: self.synced.get(rel).copied(),
                quiet: Some(self.opts.debounce),
            };
            self.spawn_sync(rel.clone(), mode);
        }
        let mut deletes = 0usize;
        if walk.complete {
            let gone: Vec<String> = self
                .synced
                .keys()
                .filter(|rel| {
                    !walk.files.contains_key(*rel)
                        && !self.in_flight.contains(*rel)
                        && !self.pending.contains_key(*rel)
                })
                .cloned()
                .collect();
            deletes = gone.len();
            for rel in gone {
                self.spawn_delete(rel);
            }
        }
        debug!(
            dir = %self.shared.root.display(),
            files = walk.files.len(),
            uploads,
            deletes,
            "checkpoint reconcile"
        );
    }

    fn spawn_sync(&mut self, rel: String, mode: SyncMode) {
        self.pending.remove(&rel);
        self.in_flight.insert(rel.clone());
        let shared = self.shared.clone();
        let permits = self.permits.clone();
        let task_rel = rel.clone();
        let handle = self.ops.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            sync_one(shared, task_rel, mode).await
        });
        self.tasks.insert(handle.id(), rel);
    }

    fn spawn_delete(&mut self, rel: String) {
        self.pending.remove(&rel);
        self.in_flight.insert(rel.clone());
        let shared = self.shared.clone();
        let permits = self.permits.clone();
        let task_rel = rel.clone();
        let handle = self.ops.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let key = shared.key(&task_rel);
            match shared.client.delete(&shared.bucket, &key).await {
                Ok(()) => Outcome::Deleted { rel: task_rel },
                Err(error) => Outcome::DeleteFailed {
                    rel: task_rel,
                    error,
                },
            }
        });
        self.tasks.insert(handle.id(), rel);
    }

    fn on_done(&mut self, done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        let outcome = match done {
            Ok((id, outcome)) => {
                self.tasks.remove(&id);
                outcome
            }
            Err(e) => {
                let rel = self.tasks.remove(&e.id()).unwrap_or_default();
                self.in_flight.remove(&rel);
                self.summary.failed_attempts += 1;
                let key = self.shared.key(&rel);
                warn!(key = %key, error = %e, "checkpoint sync task failed; will retry");
                if self.finishing {
                    let error = UploadFailure::Read {
                        path: self.shared.root.join(&rel),
                        source: io::Error::other(e.to_string()),
                    };
                    self.final_failures.insert(rel, error);
                }
                return;
            }
        };
        match outcome {
            Outcome::Uploaded { rel, stamp } => {
                self.in_flight.remove(&rel);
                self.summary.uploaded += 1;
                self.summary.bytes_uploaded += stamp.size;
                debug!(key = %self.shared.key(&rel), bytes = stamp.size, "checkpoint uploaded");
                self.synced.insert(rel, stamp);
            }
            Outcome::Unchanged { rel } => {
                self.in_flight.remove(&rel);
            }
            Outcome::Busy { rel } => {
                self.in_flight.remove(&rel);
                if !self.finishing {
                    self.schedule(rel, false);
                }
            }
            Outcome::Unstable { rel } => {
                self.in_flight.remove(&rel);
                debug!(key = %self.shared.key(&rel), "checkpoint changed while being read; upload put off");
                if self.finishing {
                    self.final_failures.insert(rel, UploadFailure::Unstable);
                } else {
                    self.schedule(rel, true);
                }
            }
            Outcome::Gone { rel } => {
                self.in_flight.remove(&rel);
                let under = format!("{rel}/");
                let mut gone: Vec<String> = self
                    .synced
                    .keys()
                    .filter(|k| k.starts_with(&under))
                    .cloned()
                    .collect();
                if self.synced.contains_key(&rel) {
                    gone.push(rel);
                }
                for rel in gone {
                    if self.in_flight.contains(&rel) {
                        self.schedule(rel, true);
                    } else {
                        self.spawn_delete(rel);
                    }
                }
            }
            Outcome::Dir { rel, files } => {
                self.in_flight.remove(&rel);
                if !self.finishing {
                    for file in files {
                        self.schedule(file, false);
                    }
                }
            }
            Outcome::UploadFailed { rel, error } => {
                self.in_flight.remove(&rel);
                self.summary.failed_attempts += 1;
                warn!(key = %self.shared.key(&rel), error = %error, "checkpoint upload failed; will retry");
                if self.finishing {
                    self.final_failures.insert(rel, error);
                }
            }
            Outcome::Deleted { rel } => {
                self.in_flight.remove(&rel);
                self.summary.deleted += 1;
                debug!(key = %self.shared.key(&rel), "checkpoint object deleted");
                self.synced.remove(&rel);
            }
            Outcome::DeleteFailed { rel, error } => {
                self.in_flight.remove(&rel);
                self.summary.failed_attempts += 1;
                warn!(key = %self.shared.key(&rel), error = %error, "checkpoint delete failed; will retry");
            }
        }
    }

    /// Waits for every running operation, including those spawned as a consequence.
    async fn drain(&mut self) {
        while let Some(done) = self.ops.join_next_with_id().await {
            self.on_done(done);
        }
    }

    /// The last sync, after the process exited: everything that differs from the store is
    /// uploaded, open-for-write state and quiet windows notwithstanding; failed uploads are
    /// retried a few times before being reported.
    async fn final_sync(&mut self) -> Result<(), CheckpointError> {
        self.drain().await;
        let mut forced: HashSet<String> = self
            .pending
            .drain()
            .filter(|(_, p)| p.force)
            .map(|(rel, _)| rel)
            .collect();
        for attempt in 1..=FINAL_ATTEMPTS {
            self.final_failures.clear();
            let walk = self.walk().await.map_err(|source| CheckpointError::Io {
                action: "reading the checkpoint directory",
                path: self.shared.root.clone(),
                source,
            })?;
            for (rel, stamp) in &walk.files {
                if forced.contains(rel) || self.synced.get(rel) != Some(stamp) {
                    let mode = SyncMode {
                        skip_if: None,
                        quiet: None,
                    };
                    self.spawn_sync(rel.clone(), mode);
                }
            }
            forced.clear();
            if walk.complete {
                let gone: Vec<String> = self
                    .synced
                    .keys()
                    .filter(|rel| !walk.files.contains_key(*rel))
                    .cloned()
                    .collect();
                for rel in gone {
                    self.spawn_delete(rel);
                }
            }
            self.drain().await;
            if self.final_failures.is_empty() {
                return Ok(());
            }
            if attempt < FINAL_ATTEMPTS {
                tokio::time::sleep(FINAL_RETRY_DELAY).await;
            }
        }
        let mut failures: Vec<(String, UploadFailure)> = self.final_failures.drain().collect();
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        let others = failures.len() - 1;
        let (rel, source) = failures.swap_remove(0);
        Err(CheckpointError::FinalUpload {
            path: self.shared.root.join(&rel),
            bucket: self.shared.bucket.clone(),
            key: self.shared.key(&rel),
            others,
            source: Box::new(source),
        })
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// One upload attempt: snapshot the file (on a blocking thread), then put the copy.
async fn sync_one(shared: Arc<Shared>, rel: String, mode: SyncMode) -> Outcome {
    let task_shared = shared.clone();
    let task_rel = rel.clone();
    let snap = tokio::task::spawn_blocking(move || task_shared.snapshot(&task_rel, mode))
        .await
        .unwrap_or_else(|e| {
            Err(UploadFailure::Read {
                path: shared.root.join(&rel),
                source: io::Error::other(e),
            })
        });
    match snap {
        Ok(Snap::Ready { copy, stamp }) => {
            let key = shared.key(&rel);
            let put = shared
                .client
                .put(&shared.bucket, &key, PutBody::File(copy.path.clone()))
                .await;
            drop(copy);
            match put {
                Ok(_) => Outcome::Uploaded { rel, stamp },
                Err(e) => Outcome::UploadFailed {
                    rel,
                    error: UploadFailure::Store(e),
                },
            }
        }
        Ok(Snap::Unchanged) => Outcome::Unchanged { rel },
        Ok(Snap::Busy) => Outcome::Busy { rel },
        Ok(Snap::Unstable) => Outcome::Unstable { rel },
        Ok(Snap::Gone) => Outcome::Gone { rel },
        Ok(Snap::Dir(files)) => Outcome::Dir { rel, files },
        Err(error) => Outcome::UploadFailed { rel, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;
    use trainyard_s3::DirStore;
    use trainyard_s3::mock::{Fault, FaultyClient, Op};

    const BUCKET: &str = "ckpt-bucket";

    struct Fixture {
        dir: tempfile::TempDir,
        store: DirStore,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = DirStore::embedded(dir.path().join("store"));
            Fixture { dir, store }
        }

        fn target(&self, prefix: &str) -> CheckpointTarget {
            CheckpointTarget {
                client: Arc::new(self.store.clone()),
                bucket: BUCKET.into(),
                prefix: prefix.into(),
            }
        }

        fn local(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// The stored object's bytes, if it exists.
        fn object(&self, key: &str) -> Option<Vec<u8>> {
            fs::read(self.store.object_path(BUCKET, key).unwrap()).ok()
        }

        async fn put(&self, key: &str, body: &[u8]) {
            self.store
                .put(BUCKET, key, PutBody::Bytes(Bytes::copy_from_slice(body)))
                .await
                .unwrap();
        }

        async fn keys(&self) -> Vec<String> {
            match self.store.list_vec(BUCKET, "").await {
                Ok(v) => v.into_iter().map(|o| o.key).collect(),
                Err(ObjectError::NoSuchBucket { .. }) => Vec::new(),
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn fast() -> SyncOptions {
        SyncOptions {
            debounce: Duration::from_millis(150),
            ..SyncOptions::default()
        }
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_downloads_nested_files() {
        let fx = Fixture::new();
        fx.put("jobs/run/step.txt", b"3").await;
        fx.put("jobs/run/model/layer/0.bin", b"weights").await;
        fx.put("jobs/run/empty", b"").await;
        fx.put("jobs/run-other/x", b"not ours").await;
        let local = fx.local("ckpt");
        let sum = restore(&fx.target("jobs/run"), &local).await.unwrap();
        assert_eq!((sum.objects, sum.bytes), (3, 8));
        assert_eq!(fs::read(local.join("step.txt")).unwrap(), b"3");
        assert_eq!(
            fs::read(local.join("model/layer/0.bin")).unwrap(),
            b"weights"
        );
        assert_eq!(fs::metadata(local.join("empty")).unwrap().len(), 0);
        assert!(!local.join("x").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_of_nothing_creates_an_empty_directory() {
        let fx = Fixture::new();
        let local = fx.local("a/b/ckpt");
        let sum = restore(&fx.target("none/"), &local).await.unwrap();
        assert_eq!(sum.objects, 0);
        assert!(local.is_dir());
        fx.put("other/x", b"1").await;
        let sum = restore(&fx.target("none/"), &local).await.unwrap();
        assert_eq!(sum.objects, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_files_are_uploaded_rewritten_files_reuploaded_deleted_files_deleted() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let sync = start_sync(fx.target("jobs/run"), local.clone(), fast()).unwrap();

        fs::create_dir_all(local.join("epoch/1")).unwrap();
        fs::write(local.join("epoch/1/model.pt"), b"version one").unwrap();
        eventually("the first upload", || {
            fx.object("jobs/run/epoch/1/model.pt").as_deref() == Some(b"version one")
        })
        .await;

        fs::write(local.join("epoch/1/model.pt"), b"version two, longer").unwrap();
        eventually("the re-upload", || {
            fx.object("jobs/run/epoch/1/model.pt").as_deref() == Some(b"version two, longer")
        })
        .await;

        fs::remove_file(local.join("epoch/1/model.pt")).unwrap();
        eventually("the delete", || {
            fx.object("jobs/run/epoch/1/model.pt").is_none()
        })
        .await;

        let sum = sync.finish().await.unwrap();
        assert_eq!((sum.uploaded, sum.deleted), (2, 1), "{sum:?}");
        assert!(fx.keys().await.is_empty(), "{:?}", fx.keys().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_moved_in_are_uploaded_and_moved_out_are_deleted() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let outside = fx.local("elsewhere");
        fs::create_dir_all(&outside).unwrap();
        let sync = start_sync(fx.target("p/"), local.clone(), fast()).unwrap();

        fs::write(local.join(".model.pt.tmp"), b"atomic save").unwrap();
        fs::rename(local.join(".model.pt.tmp"), local.join("model.pt")).unwrap();
        eventually("the moved-in file", || {
            fx.object("p/model.pt").as_deref() == Some(b"atomic save")
        })
        .await;

        fs::rename(local.join("model.pt"), outside.join("model.pt")).unwrap();
        eventually("the moved-out file's delete", || {
            fx.object("p/model.pt").is_none()
        })
        .await;
        sync.finish().await.unwrap();
        assert!(fx.keys().await.is_empty(), "{:?}", fx.keys().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_file_deleted_locally_is_deleted_in_the_store_and_others_are_kept() {
        let fx = Fixture::new();
        fx.put("p/old.pt", b"old").await;
        fx.put("p/keep.pt", b"keep").await;
        let local = fx.local("ckpt");
        restore(&fx.target("p"), &local).await.unwrap();
        let sync = start_sync(fx.target("p"), local.clone(), fast()).unwrap();
        // Written by another host after the start: neither copied down nor deleted.
        fx.put("p/other-host.pt", b"theirs").await;
        fs::remove_file(local.join("old.pt")).unwrap();
        eventually("the delete", || fx.object("p/old.pt").is_none()).await;
        let sum = sync.finish().await.unwrap();
        assert_eq!((sum.uploaded, sum.deleted), (0, 1), "{sum:?}");
        assert_eq!(fx.keys().await, ["p/keep.pt", "p/other-host.pt"]);
        assert!(!local.join("other-host.pt").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_written_file_is_never_uploaded() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let opts = SyncOptions {
            debounce: Duration::from_millis(100),
            reconcile_interval: Duration::from_millis(100),
            ..SyncOptions::default()
        };
        let sync = start_sync(fx.target("p"), local.clone(), opts).unwrap();
        let object = fx.store.object_path(BUCKET, "p/big.bin").unwrap();
        let chunk = vec![7u8; 256 << 10];
        let chunks = 24;
        let full = (chunk.len() * chunks) as u64;

        let watching = Arc::new(AtomicBool::new(true));
        let short_seen = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (watching, short_seen, object) =
                (watching.clone(), short_seen.clone(), object.clone());
            tokio::task::spawn_blocking(move || {
                while watching.load(Ordering::Relaxed) {
                    if let Ok(meta) = fs::metadata(&object) {
                        if meta.len() != full {
                            short_seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };

        let path = local.join("big.bin");
        let mut file = fs::File::create(&path).unwrap();
        for _ in 0..chunks {
            file.write_all(&chunk).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        drop(file);
        eventually("the complete upload", || {
            fs::metadata(&object).is_ok_and(|m| m.len() == full)
        })
        .await;
        sync.finish().await.unwrap();
        watching.store(false, Ordering::Relaxed);
        watcher.await.unwrap();
        assert_eq!(short_seen.load(Ordering::Relaxed), 0);
        assert_eq!(fx.object("p/big.bin").unwrap().len() as u64, full);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finish_syncs_a_file_written_just_before() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let opts = SyncOptions {
            debounce: Duration::from_secs(30),
            ..SyncOptions::default()
        };
        let sync = start_sync(fx.target("p"), local.clone(), opts).unwrap();
        fs::create_dir_all(local.join("last")).unwrap();
        fs::write(local.join("last/final.pt"), b"the end").unwrap();
        let sum = sync.finish().await.unwrap();
        assert_eq!(sum.uploaded, 1, "{sum:?}");
        assert_eq!(
            fx.object("p/last/final.pt").as_deref(),
            Some(&b"the end"[..])
        );
    }

    /// One job attempt: restore, read the step counter, write it incremented, finish.
    async fn job_attempt(fx: &Fixture, local: &Path) -> u32 {
        let target = fx.target("resume/job");
        restore(&target, local).await.unwrap();
        let sync = start_sync(target, local.to_path_buf(), fast()).unwrap();
        let step = fs::read_to_string(local.join("state/step"))
            .map(|s| s.trim().parse::<u32>().unwrap())
            .unwrap_or(0)
            + 1;
        fs::create_dir_all(local.join("state")).unwrap();
        fs::write(local.join("state/step"), step.to_string()).unwrap();
        sync.finish().await.unwrap();
        step
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_job_resumes_from_the_first_ones_checkpoint() {
        let fx = Fixture::new();
        assert_eq!(job_attempt(&fx, &fx.local("host-a")).await, 1);
        assert_eq!(
            fx.object("resume/job/state/step").as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(job_attempt(&fx, &fx.local("host-b")).await, 2);
        assert_eq!(
            fx.object("resume/job/state/step").as_deref(),
            Some(&b"2"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staging_copies_and_links_out_of_the_directory_are_never_uploaded() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        fs::create_dir_all(&local).unwrap();
        let secret = fx.local("secret.txt");
        fs::write(&secret, b"host file").unwrap();
        fs::write(local.join("real.pt"), b"inside").unwrap();
        std::os::unix::fs::symlink(&secret, local.join("escape")).unwrap();
        std::os::unix::fs::symlink("real.pt", local.join("latest")).unwrap();
        std::os::unix::fs::symlink(local.join("real.pt"), local.join("absolute")).unwrap();
        std::os::unix::fs::symlink(fx.dir.path(), local.join("dirlink")).unwrap();
        let opts = SyncOptions {
            staging_dir: Some(local.join(".staging")),
            ..fast()
        };
        let sync = start_sync(fx.target("p"), local.clone(), opts).unwrap();
        for i in 0..5 {
            fs::write(local.join(format!("f{i}")), vec![i as u8; 1000]).unwrap();
        }
        let sum = sync.finish().await.unwrap();
        let mut keys = fx.keys().await;
        keys.sort();
        assert_eq!(
            keys,
            [
                "p/f0",
                "p/f1",
                "p/f2",
                "p/f3",
                "p/f4",
                "p/latest",
                "p/real.pt"
            ],
            "{sum:?}"
        );
        assert_eq!(fx.object("p/latest").as_deref(), Some(&b"inside"[..]));
        let leftovers: Vec<_> = fs::read_dir(&local)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
            .flat_map(|e| fs::read_dir(e.path()).into_iter().flatten())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Issue 15 item 9, made deterministic: the lister sees `sub/weights`, the job then swaps
    /// `sub` for a link to a host directory holding a file of the same name, and the opener
    /// must find the file gone rather than copy the host's file.
    #[tokio::test]
    async fn a_directory_swapped_for_a_symlink_between_listing_and_opening_is_not_followed() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        fs::create_dir_all(local.join("sub")).unwrap();
        fs::write(local.join("sub/weights"), b"mine").unwrap();
        let host = fx.local("host-etc");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("weights"), b"root:$6$SECRET").unwrap();
        let root = fs::canonicalize(&local).unwrap();
        let staging = Staging::create(&root, Some(&fx.local("staging"))).unwrap();
        let shared = Shared {
            client: fx.target("p").client,
            bucket: "b".into(),
            prefix: "p/".into(),
            root: root.clone(),
            tree: Tree::open(&root).unwrap(),
            staging_dir: staging.dir.clone(),
            copies: AtomicU64::new(0),
        };
        let listed = shared.walk("").unwrap();
        assert!(listed.files.contains_key("sub/weights"), "{listed:?}");
        fs::rename(local.join("sub"), local.join("sub.old")).unwrap();
        std::os::unix::fs::symlink(&host, local.join("sub")).unwrap();
        let snap = shared
            .snapshot(
                "sub/weights",
                SyncMode {
                    skip_if: None,
                    quiet: None,
                },
            )
            .unwrap();
        assert!(matches!(snap, Snap::Gone), "{snap:?}");
        // Nothing was copied out of the host directory, and a new listing does not enter it.
        assert_eq!(fs::read_dir(&staging.dir).unwrap().count(), 0);
        let again = shared.walk("").unwrap();
        assert!(
            again.files.keys().all(|k| !k.starts_with("sub/")),
            "{again:?}"
        );
        assert!(matches!(
            shared
                .snapshot(
                    "sub",
                    SyncMode {
                        skip_if: None,
                        quiet: None
                    }
                )
                .unwrap(),
            Snap::Gone
        ));
    }

    /// The fixture's store, seen as a remote one, whose first `n` uploads fail with a
    /// retryable `503 SlowDown`.
    fn flaky_puts(fx: &Fixture, n: u64) -> Arc<dyn ObjectClient> {
        Arc::new(
            FaultyClient::new(Arc::new(fx.store.clone()))
                .with(Fault::error(Op::Put, 503, "SlowDown").times(n)),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_upload_is_retried_by_the_next_reconcile() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let target = CheckpointTarget {
            client: flaky_puts(&fx, 1),
            bucket: BUCKET.into(),
            prefix: "p".into(),
        };
        let opts = SyncOptions {
            debounce: Duration::from_millis(100),
            reconcile_interval: Duration::from_millis(300),
            ..SyncOptions::default()
        };
        let sync = start_sync(target, local.clone(), opts).unwrap();
        fs::write(local.join("a.pt"), b"retry me").unwrap();
        eventually("the retried upload", || {
            fx.object("p/a.pt").as_deref() == Some(b"retry me")
        })
        .await;
        let sum = sync.finish().await.unwrap();
        assert_eq!((sum.uploaded, sum.failed_attempts), (1, 1), "{sum:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finish_names_a_file_it_could_not_upload() {
        let fx = Fixture::new();
        let local = fx.local("ckpt");
        let target = CheckpointTarget {
            client: flaky_puts(&fx, u64::MAX),
            bucket: BUCKET.into(),
            prefix: "p".into(),
        };
        let sync = start_sync(target, local.clone(), fast()).unwrap();
        fs::write(local.join("doomed.pt"), b"x").unwrap();
        let err = sync.finish().await.unwrap_err();
        assert!(
            matches!(&err, CheckpointError::FinalUpload { key, .. } if key == "p/doomed.pt"),
            "{err}"
        );
        assert!(err.to_string().contains("doomed.pt"), "{err}");
    }
}
