//! Stage 3, materialise: one host's input channels and checkpoints, before its process starts.
//!
//! Why one module: every input mode ends the same way (something at
//! `/opt/ml/input/data/<channel>` when the process starts, torn down when it ends), and the
//! shard a host gets is decided in one place ([`Listings::share`]), for File, FastFile and
//! Pipe alike. File channels are downloaded by [`download`]; FastFile mounts, Pipe FIFOs
//! and the checkpoint restore and sync are set up by [`start`], which returns an
//! [`InputGuard`] that owns them until [`InputGuard::teardown`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OnceCell, watch};
use tracing::Instrument;
use trainyard_data::{ChannelObject, DownloadOptions, Progress};

use super::checkpoints;
use super::jobdir::{JobDir, Journal};
use super::layout::HostLayout;
use super::plan::{ChannelPlan, ChannelSource, JobPlan};
use crate::jobs::failure::FailureReason;
use crate::jobs::spec::{InputMode, S3DataType};
use crate::storage::{Resolved, Storage};

type Listing = Arc<Vec<ChannelObject>>;
/// A channel's listing, made by whichever host asks first (keyed by channel and whether it
/// is shuffled once).
type ListingCell = Arc<OnceCell<Listing>>;

/// Channel listings of one job, made once and shared by the hosts that run here.
#[derive(Debug, Default)]
pub struct Listings {
    cells: Mutex<HashMap<(String, bool), ListingCell>>,
}

impl Listings {
    /// The objects of an S3 channel in key order (prefix listing or manifest); with
    /// `shuffle_once`, shuffled by its seed for epoch 0, as File and FastFile deliver them
    /// (Pipe reshuffles every epoch itself).
    async fn objects(
        &self,
        ch: &ChannelPlan,
        res: &Resolved,
        shuffle_once: bool,
    ) -> Result<Listing, FailureReason> {
        let cell = self
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((ch.name.clone(), shuffle_once))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let ChannelSource::S3 {
                target, data_type, ..
            } = &ch.source
            else {
                return Err(fail(ch, "it has no S3 data source"));
            };
            let mut objects = match data_type {
                S3DataType::ManifestFile => {
                    trainyard_data::load_manifest(&*res.client, &target.uri, 64).await
                }
                _ => {
                    trainyard_data::list_prefix(&*res.client, &res.bucket, &res.key, &target.uri)
                        .await
                }
            }
            .map_err(|e| fail(ch, e))?;
            if let (Some(seed), true) = (ch.shuffle_seed, shuffle_once) {
                trainyard_data::shuffle::shuffle_epoch(&mut objects, seed, 0);
            }
            Ok(Arc::new(objects))
        })
        .await
        .cloned()
    }

    /// Host `index`'s share of a channel: every object, or every N-th when sharded by key.
    async fn share(
        &self,
        ch: &ChannelPlan,
        res: &Resolved,
        host: &HostLayout,
        host_count: usize,
    ) -> Result<Vec<ChannelObject>, FailureReason> {
        let all = self.objects(ch, res, true).await?;
        Ok(if sharded(ch) {
            trainyard_data::shard((*all).clone(), host.index, host_count)
        } else {
            (*all).clone()
        })
    }
}

fn sharded(ch: &ChannelPlan) -> bool {
    matches!(ch.source, ChannelSource::S3 { sharded: true, .. })
}

fn fail(ch: &ChannelPlan, e: impl std::fmt::Display) -> FailureReason {
    FailureReason::client_or_disk_full(
        "downloading the input data",
        format!("channel {}: {e}", ch.name),
    )
}

fn resolve(storage: &Storage, ch: &ChannelPlan) -> Option<Resolved> {
    match &ch.source {
        ChannelSource::S3 { target, .. } => Some(storage.resolve(&target.location)),
        ChannelSource::FileSystem { .. } => None,
    }
}

/// What the input stages of one host need.
#[derive(Debug, Clone, Copy)]
pub struct HostInputs<'a> {
    /// The job.
    pub plan: &'a JobPlan,
    /// The host.
    pub host: &'a HostLayout,
    /// The job's (authorized) storage.
    pub storage: &'a Storage,
    /// Listings shared with the job's other hosts here.
    pub listings: &'a Listings,
    /// Platform messages.
    pub journal: &'a Journal,
    /// A label for the host in messages (`""` for a one-host job).
    pub label: &'a str,
}

impl HostInputs<'_> {
    fn channel_label(&self, ch: &ChannelPlan) -> String {
        if self.label.is_empty() {
            ch.name.clone()
        } else {
            format!("{} ({})", ch.name, self.label)
        }
    }
}

/// Downloads the host's share of every File channel into `/opt/ml/input/data/<channel>`.
pub async fn download(inp: HostInputs<'_>) -> Result<(), FailureReason> {
    let opts = DownloadOptions::default();
    for ch in inp.plan.file_channels() {
        let res = resolve(inp.storage, ch).expect("File channels read S3");
        let share = inp
            .listings
            .share(ch, &res, inp.host, inp.plan.host_count)
            .await?;
        let label = inp.channel_label(ch);
        let progress = Arc::new(Progress::default());
        let obs = inp.journal.observer();
        obs.download_started(&label, progress.clone());
        let dest = inp.host.channel_dir(&ch.name);
        let result = trainyard_data::download(res.client.clone(), &share, &dest, &opts, &progress)
            .instrument(tracing::info_span!("channel", channel = %ch.name))
            .await;
        obs.download_finished(&label);
        let sum = result.map_err(|e| fail(ch, e))?;
        let ChannelSource::S3 { target, .. } = &ch.source else {
            unreachable!("File channels read S3")
        };
        inp.journal.info(&format!(
            "Downloaded channel {label} from {}: {} objects, {} bytes in {:.2} s ({:.1} MB/s)",
            target.uri,
            sum.objects,
            sum.bytes,
            sum.seconds,
            sum.mb_per_s()
        ));
    }
    Ok(())
}

/// A host's streaming inputs and checkpoint sync, alive while its process runs.
#[derive(Debug)]
pub struct InputGuard {
    mounts: Vec<trainyard_data::fastfile::MountHandle>,
    pipes: Vec<(String, trainyard_data::PipeProducer)>,
    checkpoint: Option<checkpoints::SyncHandle>,
    producers: FuturesUnordered<tokio::task::JoinHandle<(String, Result<(), String>)>>,
    stop_producers: Option<watch::Sender<bool>>,
}

/// Restores checkpoints into the host's tree (`LocalPath` is under `/opt/ml`, the plan made
/// sure), mounts FastFile channels and creates the first FIFO of each Pipe channel of one
/// host.
pub async fn start(inp: HostInputs<'_>, dir: &JobDir) -> Result<InputGuard, FailureReason> {
    let mut guard = InputGuard {
        mounts: Vec::new(),
        pipes: Vec::new(),
        checkpoint: None,
        producers: FuturesUnordered::new(),
        stop_producers: None,
    };
    if let Some(cfg) = &inp.plan.checkpoint {
        let host = inp.host;
        let local = host.root.join(&cfg.relative_path);
        let res = inp.storage.resolve(&cfg.target.location);
        let target = checkpoints::CheckpointTarget {
            client: res.client.clone(),
            bucket: res.bucket.clone(),
            prefix: res.key.clone(),
        };
        let sum = checkpoints::restore(&target, &local).await.map_err(|e| {
            FailureReason::client_or_disk_full(
                "restoring checkpoints",
                format!("restoring checkpoints from {}: {e}", cfg.target.uri),
            )
        })?;
        if sum.objects > 0 {
            inp.journal.info(&format!(
                "{}: restored {} checkpoint files ({} bytes) from {}",
                host.name, sum.objects, sum.bytes, cfg.target.uri
            ));
        }
        let opts = checkpoints::SyncOptions {
            staging_dir: Some(dir.checkpoint_staging(host.index)),
            ..Default::default()
        };
        guard.checkpoint = Some(
            checkpoints::start_sync(target, local, opts)
                .map_err(|e| FailureReason::internal(format!("watching checkpoints: {e}")))?,
        );
    }
    for ch in &inp.plan.channels {
        let Some(res) = resolve(inp.storage, ch) else {
            continue;
        };
        match ch.mode {
            InputMode::File => {}
            InputMode::FastFile => guard.mounts.push(
                mount(inp, ch, &res)
                    .instrument(tracing::info_span!("channel", channel = %ch.name))
                    .await?,
            ),
            InputMode::Pipe => {
                let producer = pipe(inp, ch, &res)
                    .instrument(tracing::info_span!("channel", channel = %ch.name))
                    .await?;
                guard.pipes.push((inp.channel_label(ch), producer));
            }
        }
    }
    Ok(guard)
}

async fn mount(
    inp: HostInputs<'_>,
    ch: &ChannelPlan,
    res: &Resolved,
) -> Result<trainyard_data::fastfile::MountHandle, FailureReason> {
    let started = Instant::now();
    let all = inp.listings.objects(ch, res, true).await?;
    trainyard_data::fastfile::check_folder_prefix(&res.key, &all).map_err(|e| fail(ch, e))?;
    let share = inp
        .listings
        .share(ch, res, inp.host, inp.plan.host_count)
        .await?;
    let n = share.len();
    let entries = share
        .into_iter()
        .map(trainyard_data::fastfile::MountEntry::from)
        .collect();
    let dir = inp.host.channel_dir(&ch.name);
    std::fs::create_dir_all(&dir).map_err(|e| fail(ch, e))?;
    let client = res.client.clone();
    // The job's user (the owner of its tree, a container's unprivileged root) reads it.
    let owner = std::fs::metadata(inp.host.root.join("input/data"))
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })
        .ok()
        .filter(|(uid, _)| *uid != nix::unistd::geteuid().as_raw());
    let cfg = trainyard_data::fastfile::FastFileConfig {
        allow_other: owner.is_some(),
        owner,
        ..Default::default()
    };
    let mount_dir = dir.clone();
    let handle = tokio::task::spawn_blocking(move || {
        trainyard_data::fastfile::mount(&cfg, client, entries, &mount_dir)
    })
    .await
    .map_err(|e| fail(ch, e))?
    .map_err(|e| fail(ch, e))?;
    let ChannelSource::S3 { target, .. } = &ch.source else {
        unreachable!("resolved channels read S3")
    };
    inp.journal.info(&format!(
        "{}: channel {} mounted (FastFile) with {n} objects from {} in {:.3} s",
        inp.host.name,
        ch.name,
        target.uri,
        started.elapsed().as_secs_f64()
    ));
    Ok(handle)
}

async fn pipe(
    inp: HostInputs<'_>,
    ch: &ChannelPlan,
    res: &Resolved,
) -> Result<trainyard_data::PipeProducer, FailureReason> {
    let ChannelSource::S3 {
        target,
        data_type,
        attribute_names,
        ..
    } = &ch.source
    else {
        unreachable!("resolved channels read S3")
    };
    let source = match data_type {
        S3DataType::AugmentedManifestFile => trainyard_data::PipeSource::Augmented(
            trainyard_data::load_augmented_manifest(&*res.client, &target.uri, attribute_names)
                .await
                .map_err(|e| fail(ch, e))?,
        ),
        // Pipe reshuffles every epoch itself.
        _ => trainyard_data::PipeSource::Objects(
            (*inp.listings.objects(ch, res, false).await?).clone(),
        ),
    };
    let pipe = trainyard_data::PipeChannel {
        name: ch.name.clone(),
        source,
        shard: sharded(ch).then_some(trainyard_data::HostShard {
            index: inp.host.index,
            count: inp.plan.host_count,
        }),
        shuffle_seed: ch.shuffle_seed,
        gzip: ch.gzip,
        recordio: ch.recordio,
    };
    trainyard_data::PipeProducer::prepare(
        res.client.clone(),
        pipe,
        &inp.host.root.join("input/data"),
        Default::default(),
    )
    .map_err(|e| fail(ch, e))
}

impl InputGuard {
    /// Starts feeding the Pipe channels (once the process runs).
    pub fn start_producers(&mut self) {
        let (tx, rx) = watch::channel(false);
        for (label, producer) in self.pipes.drain(..) {
            let stop = rx.clone();
            self.producers.push(tokio::spawn(async move {
                let result = producer
                    .run(stop)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                (label, result)
            }));
        }
        self.stop_producers = Some(tx);
    }

    /// Resolves with the first Pipe producer that failed; pending for ever if none does.
    pub async fn producer_failed(&mut self) -> FailureReason {
        while let Some(done) = self.producers.next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((channel, Err(e))) => {
                    return FailureReason::client(format!("channel {channel}: {e}"));
                }
                Err(e) => {
                    return FailureReason::internal(format!("a Pipe producer failed: {e}"));
                }
            }
        }
        std::future::pending().await
    }

    /// The process has ended: stops the producers, unmounts FastFile channels and runs the
    /// final checkpoint sync (best effort, as SageMaker's, `doc/contract/container.md` §7).
    pub async fn teardown(mut self, host: &str, journal: &Journal) {
        if let Some(tx) = self.stop_producers.take() {
            let _ = tx.send(true);
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.producers.next()).await {}
        for m in self.mounts.drain(..) {
            let _ = tokio::task::spawn_blocking(move || m.unmount()).await;
        }
        if let Some(sync) = self.checkpoint.take() {
            match sync.finish().await {
                Ok(sum) => journal.info(&format!(
                    "{host}: checkpoints synced ({} uploaded, {} bytes, {} deleted)",
                    sum.uploaded, sum.bytes_uploaded, sum.deleted
                )),
                Err(e) => journal.info(&format!("{host}: final checkpoint sync incomplete: {e}")),
            }
        }
    }
}
