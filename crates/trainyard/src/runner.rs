//! Running one training job from its stored record to a terminal status.
//!
//! The stages run in a fixed order and each hands the next a plain value: prepare the host
//! trees (`layout`), download File-mode channels per host with its shard (`trainyard-data`),
//! start one process per host (`process`, `env`), watch them against the stop signal and the
//! runtime limit, then pack and upload the artifacts (`artifacts`). Every status change goes
//! through the [`JobStore`] first and is then reported to the [`Observer`], so what the user
//! sees is what DescribeTrainingJob will say.

pub mod artifacts;
pub mod cgroup;
pub mod checkpoints;
pub mod env;
pub mod layout;
pub mod logs;
pub mod network;
pub mod process;
pub mod toolkit_env;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use trainyard_data::{DownloadOptions, Progress};
use trainyard_s3::Location;

use crate::config::Settings;
use crate::db::{JobRecord, JobStore, Move};
use crate::jobs::spec::{CreateTrainingJobRequest, Distribution, InputMode, S3DataType};
use crate::jobs::state::Phase;
use crate::storage::{Resolved, Storage};
use crate::warm_pools::{self, WarmPool};
use layout::HostLayout;
use logs::{HostLog, Metrics};

/// Receives what happens to a job as it happens.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// The job moved to a new phase.
    fn phase(&self, job: &JobRecord, message: &str);
    /// A host printed a line.
    fn log(&self, host: &str, line: &str);
    /// A platform message (also written to the job's platform log).
    fn info(&self, message: &str);
    /// A download started; the counters advance until it ends.
    fn download_started(&self, _channel: &str, _progress: Arc<Progress>) {}
    /// The download of a channel ended.
    fn download_finished(&self, _channel: &str) {}
}

/// How a job's processes ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Completed,
    Failed(String),
    Stopped,
    MaxRuntime,
}

/// Runs jobs of one installation.
#[derive(Debug, Clone)]
pub struct Runner {
    settings: Settings,
    store: Arc<dyn JobStore>,
    storage: Storage,
    identity: Option<Arc<crate::identity::Identity>>,
    /// Whether jobs' processes get trainyard's own object-store credentials: yes for a
    /// single-tenant installation, never for a job running under ABAC (they would bypass it).
    share_store_credentials: bool,
    /// Leaves the artifacts in the host trees instead of uploading them (a cluster node's run
    /// of one host: the server merges every host's artifacts and uploads them).
    keep_artifacts: bool,
}

/// What a run needs beyond the record.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Progress reporting.
    pub observer: Arc<dyn Observer>,
    /// Becomes `true` when the job must stop (StopTrainingJob, Ctrl-C).
    pub stop: watch::Receiver<bool>,
    /// Working directory for `host` images without one.
    pub workdir: PathBuf,
    /// Set when this machine runs one host of a job placed by a cluster executor
    /// (`trainyard host run`): only that host is materialised here.
    pub host: Option<HostAssignment>,
}

/// One host of a job, run on a cluster node.
#[derive(Debug, Clone)]
pub struct HostAssignment {
    /// 0-based host index (`algo-{index+1}`).
    pub index: usize,
    /// Every host's address, by index, for `/etc/hosts` and rendezvous.
    pub addresses: Vec<String>,
}

/// Keeps the platform log and the observer in step.
#[derive(Debug)]
pub(crate) struct Journal {
    file: std::sync::Mutex<std::fs::File>,
    observer: Arc<dyn Observer>,
}

impl Journal {
    /// Appends to the platform log at `path`.
    pub(crate) fn append(path: &Path, observer: Arc<dyn Observer>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Journal {
            file: std::sync::Mutex::new(file),
            observer,
        })
    }

    pub(crate) fn info(&self, msg: &str) {
        use std::io::Write;
        let stamp = crate::jobs::describe::format_time(crate::db::now());
        let _ = writeln!(
            self.file.lock().unwrap_or_else(|p| p.into_inner()),
            "{stamp} {msg}"
        );
        self.observer.info(msg);
    }
}

impl Runner {
    /// A runner over the given store and storage.
    pub fn new(settings: Settings, store: Arc<dyn JobStore>, storage: Storage) -> Self {
        Runner {
            settings,
            store,
            storage,
            identity: None,
            share_store_credentials: true,
            keep_artifacts: false,
        }
    }

    /// Moves to `Stopping` unless the API already did (it records the stop before signalling).
    pub(crate) fn stopping(
        &self,
        name: &str,
        message: &str,
        obs: &dyn Observer,
    ) -> anyhow::Result<()> {
        match self.store.get(name)? {
            Some(rec) if rec.phase == Phase::Stopping => Ok(()),
            _ => self
                .advance(name, Phase::Stopping, message, None, obs)
                .map(|_| ()),
        }
    }

    /// Enters a working phase unless a stop came first (the API may have moved the job to
    /// `Stopping` at any moment); returns whether the job goes on.
    fn enter(
        &self,
        name: &str,
        to: Phase,
        message: &str,
        stop: &watch::Receiver<bool>,
        obs: &dyn Observer,
    ) -> anyhow::Result<bool> {
        if *stop.borrow() {
            self.stopping(name, "Stopping the training job", obs)?;
            return Ok(false);
        }
        match self.advance(name, to, message, None, obs) {
            Ok(_) => Ok(true),
            Err(e) => match self.store.get(name)? {
                Some(rec) if rec.phase == Phase::Stopping => Ok(false),
                _ => Err(e),
            },
        }
    }

    pub(crate) fn advance(
        &self,
        name: &str,
        to: Phase,
        message: &str,
        reason: Option<&str>,
        obs: &dyn Observer,
    ) -> anyhow::Result<JobRecord> {
        let rec = self.store.move_to(
            name,
            Move {
                to,
                message,
                failure_reason: reason,
            },
        )?;
        obs.phase(&rec, message);
        Ok(rec)
    }

    /// Leaves artifacts in the host trees (see [`Runner::artifact_dirs`]) instead of uploading.
    pub fn keeping_artifacts(mut self) -> Self {
        self.keep_artifacts = true;
        self
    }

    /// Where host `index` of job `name` left its artifacts on this machine: its model and
    /// output-data directories (kept by [`Runner::keeping_artifacts`]).
    pub fn artifact_dirs(&self, name: &str, index: usize) -> [PathBuf; 2] {
        let root = layout::host_root(&self.settings.job_dir(name), index);
        [
            root.join(layout::MODEL_DIR),
            root.join(layout::OUTPUT_DATA_DIR),
        ]
    }

    /// Enforces access control on every object access of the jobs it runs: each job's data
    /// plane runs as its execution role, with the creating session's tags when chaining is on.
    pub fn with_identity(mut self, identity: Option<Arc<crate::identity::Identity>>) -> Self {
        self.identity = identity;
        self
    }

    /// The tags of the session that created the job, as recorded with it.
    fn creator_tags(&self, rec: &JobRecord) -> Result<Vec<crate::identity::SessionTag>, String> {
        Ok(self
            .store
            .caller(&rec.name)
            .map_err(|e| e.to_string())?
            .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
            .and_then(|c| serde_json::from_value(c["SessionTags"].clone()).ok())
            .unwrap_or_default())
    }

    /// The principal a job's data plane runs as, rebuilt from the stored record (so it is the
    /// same after a restart).
    fn job_principal(
        &self,
        identity: &crate::identity::Identity,
        rec: &JobRecord,
    ) -> Result<crate::identity::JobPrincipal, String> {
        identity
            .job_principal(
                &rec.request.role_arn,
                &self.creator_tags(rec)?,
                rec.request.tag_chaining(),
            )
            .map_err(|e| e.to_string())
    }

    /// Runs a job that is in `Starting` until it ends; returns the final record.
    pub async fn run(&self, name: &str, ctx: RunContext) -> anyhow::Result<JobRecord> {
        let rec = self
            .store
            .get(name)?
            .ok_or_else(|| anyhow::anyhow!("training job {name:?} does not exist"))?;
        if let Some(identity) = &self.identity {
            // With the store's own STS, the store checks the job's session too.
            let base = match self.storage.assuming(
                &self.settings,
                &rec.request.role_arn,
                &rec.name,
                &self.chained_tags(&rec),
            ) {
                None => self.storage.clone(),
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    let reason = format!(
                        "ClientError: configuring object storage as {}: {e}",
                        rec.request.role_arn
                    );
                    return self.advance(
                        name,
                        Phase::Failed,
                        "Training job failed",
                        Some(&reason),
                        &*ctx.observer,
                    );
                }
            };
            return match self.job_principal(identity, &rec) {
                Ok(principal) => {
                    let scoped = Runner {
                        storage: base.authorized(principal),
                        identity: None,
                        share_store_credentials: false,
                        ..self.clone()
                    };
                    scoped.run_job(rec, ctx).await
                }
                Err(e) => {
                    let reason = format!(
                        "ClientError: the execution role cannot be assumed for this job: {e}"
                    );
                    self.advance(
                        name,
                        Phase::Failed,
                        "Training job failed",
                        Some(&reason),
                        &*ctx.observer,
                    )
                }
            };
        }
        self.run_job(rec, ctx).await
    }

    /// The session tags a job runs with: the creating session's when chaining is on.
    fn chained_tags(&self, rec: &JobRecord) -> Vec<(String, String)> {
        if !rec.request.tag_chaining() {
            return Vec::new();
        }
        self.creator_tags(rec)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect()
    }

    /// Runs the job, on a warm pool when it asks for one: a matching available pool is taken
    /// over, and when the job ends its resources stay available for its keep-alive period.
    async fn run_job(&self, rec: JobRecord, ctx: RunContext) -> anyhow::Result<JobRecord> {
        let Some(keep_alive) = warm_pools::keep_alive(&rec.request) else {
            return self.run_on(rec, ctx, None).await;
        };
        let key = warm_pools::match_key(&rec.request, &self.chained_tags(&rec));
        let pool = self
            .store
            .start_warm_pool(&rec.name, &key, keep_alive, crate::db::now())?;
        let name = rec.name.clone();
        let result = self.run_on(rec, ctx, Some(&pool)).await;
        let keep = matches!(&result, Ok(r) if warm_pools::kept_after(r.phase.status(), r.failure_reason.as_deref()));
        self.store.end_warm_pool(&name, keep, crate::db::now())?;
        if let Err(e) = warm_pools::reap(&self.settings, &*self.store) {
            tracing::warn!("releasing expired warm pools: {e}");
        }
        result
    }

    async fn run_on(
        &self,
        rec: JobRecord,
        ctx: RunContext,
        pool: Option<&WarmPool>,
    ) -> anyhow::Result<JobRecord> {
        let name = rec.name.as_str();
        let req = rec.request.clone();
        let obs = ctx.observer.clone();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(req.max_runtime_seconds());
        let job_dir = self.settings.job_dir(&rec.name);
        let _ = std::fs::remove_dir_all(&job_dir);
        std::fs::create_dir_all(job_dir.join("logs"))?;
        let journal = Journal::append(&job_dir.join("logs/platform.log"), obs.clone())?;
        if let Some(p) = pool.filter(|p| p.state == warm_pools::PoolState::InUse) {
            journal.info(&format!(
                "Reusing warm pool {}: its hosts' persistent caches and network are kept from an earlier job",
                p.pool_id
            ));
        }

        let indices: Vec<usize> = match &ctx.host {
            Some(a) => vec![a.index],
            None => (0..req.instance_count()).collect(),
        };
        let mut hosts: Vec<HostLayout> = match indices
            .into_iter()
            .map(|i| layout::prepare_host(&job_dir, &req, i))
            .collect()
        {
            Ok(h) => h,
            Err(e) => {
                let reason = format!(
                    "InternalServerError: preparing the host directories in {}: {e}",
                    job_dir.display()
                );
                return self.advance(
                    name,
                    Phase::Failed,
                    "Preparing the hosts failed",
                    Some(&reason),
                    &*obs,
                );
            }
        };
        if let Some(a) = &ctx.host {
            // The hosts are cluster nodes: `algo-k` names node k's address.
            let entries: String = a
                .addresses
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("{addr}\talgo-{}\n", i + 1))
                .collect();
            for host in hosts.iter_mut() {
                layout::use_network(host, &req, &entries)?;
            }
        }
        let mut stop = ctx.stop.clone();

        // Downloading.
        let file_channels: Vec<_> = req
            .input_data_config
            .iter()
            .flatten()
            .filter(|c| {
                req.channel_mode(c) == InputMode::File && c.data_source.s3_data_source.is_some()
            })
            .collect();
        if !file_channels.is_empty() {
            if !self.enter(
                name,
                Phase::Downloading,
                "Downloading input data",
                &stop,
                &*obs,
            )? {
                return self
                    .finish_without_training(
                        name,
                        &hosts,
                        &job_dir,
                        &req,
                        Outcome::Stopped,
                        &journal,
                        &*obs,
                    )
                    .await;
            }
            let download = self.download_all(
                req.instance_count(),
                &hosts,
                &file_channels,
                &journal,
                &*obs,
            );
            let interrupted = tokio::select! {
                r = download => r.err().map(Outcome::Failed),
                _ = tokio::time::sleep_until(deadline.into()) => Some(Outcome::MaxRuntime),
                _ = stopped(&mut stop) => Some(Outcome::Stopped),
            };
            if let Some(outcome) = interrupted {
                match &outcome {
                    Outcome::MaxRuntime => self.stopping(
                        name,
                        "Maximum runtime exceeded while downloading input data",
                        &*obs,
                    )?,
                    Outcome::Stopped => self.stopping(name, "Stopping the training job", &*obs)?,
                    _ => {}
                }
                return self
                    .finish_without_training(name, &hosts, &job_dir, &req, outcome, &journal, &*obs)
                    .await;
            }
        }

        // Training.
        if !self.enter(
            name,
            Phase::Training,
            "Training image download completed. Training in progress.",
            &stop,
            &*obs,
        )? {
            return self
                .finish_without_training(
                    name,
                    &hosts,
                    &job_dir,
                    &req,
                    Outcome::Stopped,
                    &journal,
                    &*obs,
                )
                .await;
        }
        let metrics = Arc::new(Metrics::new(
            req.algorithm_specification
                .as_ref()
                .and_then(|a| a.metric_definitions.as_deref())
                .unwrap_or(&[]),
        ));
        let outcome = self
            .train(
                name, &rec.arn, &req, &mut hosts, &metrics, deadline, &mut stop, &ctx, &journal,
                pool,
            )
            .await?;
        self.store.set_metrics(name, &metrics.values())?;
        self.finish(name, &hosts, &job_dir, &req, outcome, &journal, &*obs)
            .await
    }

    /// The ordered objects of an S3 channel (prefix listing or manifest); with `shuffle_once`,
    /// shuffled by its `ShuffleConfig` for epoch 0, as File and FastFile use it (Pipe shuffles
    /// every epoch itself).
    async fn channel_objects(
        &self,
        ch: &crate::jobs::spec::Channel,
        shuffle_once: bool,
    ) -> Result<(Resolved, Vec<trainyard_data::ChannelObject>), String> {
        let s3 = ch.data_source.s3_data_source.as_ref().ok_or_else(|| {
            format!(
                "ClientError: channel {} has no S3 data source",
                ch.channel_name
            )
        })?;
        let fail =
            |e: &dyn std::fmt::Display| format!("ClientError: channel {}: {e}", ch.channel_name);
        let loc = Location::parse(&s3.s3_uri, Path::new("/")).map_err(|e| fail(&e))?;
        let res = self.storage.resolve(&loc);
        let mut objects = match s3.s3_data_type {
            S3DataType::ManifestFile => trainyard_data::load_manifest(&*res.client, &s3.s3_uri, 64)
                .await
                .map_err(|e| fail(&e))?,
            _ => trainyard_data::list_prefix(&*res.client, &res.bucket, &res.key, &s3.s3_uri)
                .await
                .map_err(|e| fail(&e))?,
        };
        if let Some(shuffle) = ch.shuffle_config.as_ref().filter(|_| shuffle_once) {
            trainyard_data::shuffle::shuffle_epoch(&mut objects, shuffle.seed, 0);
        }
        Ok((res, objects))
    }

    async fn download_all(
        &self,
        host_count: usize,
        hosts: &[HostLayout],
        channels: &[&crate::jobs::spec::Channel],
        journal: &Journal,
        obs: &dyn Observer,
    ) -> Result<(), String> {
        let opts = DownloadOptions::default();
        for ch in channels {
            let s3 = ch
                .data_source
                .s3_data_source
                .as_ref()
                .expect("filtered on S3 sources");
            let (res, objects) = self.channel_objects(ch, true).await?;
            let sharded = s3.s3_data_distribution_type == Some(Distribution::ShardedByS3Key);
            for host in hosts {
                let share = if sharded {
                    trainyard_data::shard(objects.clone(), host.index, host_count)
                } else {
                    objects.clone()
                };
                let dest = host.channel_dir(&ch.channel_name);
                let progress = Arc::new(Progress::default());
                let label = if hosts.len() > 1 {
                    format!("{} ({})", ch.channel_name, host.name)
                } else {
                    ch.channel_name.clone()
                };
                obs.download_started(&label, progress.clone());
                let result =
                    trainyard_data::download(res.client.clone(), &share, &dest, &opts, &progress)
                        .await;
                obs.download_finished(&label);
                let sum =
                    result.map_err(|e| format!("ClientError: channel {}: {e}", ch.channel_name))?;
                journal.info(&format!(
                    "Downloaded channel {label} from {}: {} objects, {} bytes in {:.2} s ({:.1} MB/s)",
                    s3.s3_uri,
                    sum.objects,
                    sum.bytes,
                    sum.seconds,
                    sum.mb_per_s()
                ));
            }
        }
        Ok(())
    }

    fn command(
        &self,
        req: &CreateTrainingJobRequest,
    ) -> Result<(Vec<String>, Option<PathBuf>), String> {
        let algo = req
            .algorithm_specification
            .as_ref()
            .ok_or("AlgorithmSpecification is missing")?;
        let image_name = algo
            .training_image
            .as_deref()
            .ok_or("TrainingImage is missing")?;
        let image = self.settings.images.resolve(image_name)?;
        let mut argv = algo
            .container_entrypoint
            .clone()
            .unwrap_or_else(|| image.entrypoint.clone());
        match &algo.container_arguments {
            Some(args) => argv.extend(args.iter().cloned()),
            // `docker run <image> train`, unless the entry point was replaced.
            None if algo.container_entrypoint.is_none() => argv.push("train".into()),
            None => {}
        }
        Ok((argv, image.workdir.clone()))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the values are the job's"
    )]
    async fn train(
        &self,
        name: &str,
        arn: &str,
        req: &CreateTrainingJobRequest,
        hosts: &mut [HostLayout],
        metrics: &Arc<Metrics>,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
        ctx: &RunContext,
        journal: &Journal,
        pool: Option<&WarmPool>,
    ) -> anyhow::Result<Outcome> {
        let obs = &ctx.observer;
        let (argv, workdir) = match self.command(req) {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::Failed(format!("ClientError: {e}"))),
        };
        let cwd = workdir.unwrap_or_else(|| ctx.workdir.clone());
        // One probe per job: can this machine give the process a private /opt/ml?
        let isolation = match (
            self.settings.isolation.then(process::ensure_mount_point),
            hosts.first(),
        ) {
            (None, _) => Err("TRAINYARD_ISOLATION=off".to_string()),
            (Some(Err(e)), _) => Err(format!("cannot create {}: {e}", process::OPT_ML)),
            (Some(Ok(())), Some(h)) => process::probe(&process::Isolation {
                host_tree: h.root.clone(),
                hosts_file: h.hosts_file.clone(),
                hostname: h.name.clone(),
                binds: Vec::new(),
                netns: None,
            })
            .await
            .map_err(|e| e.to_string()),
            (Some(Ok(())), None) => Err("no hosts".to_string()),
        };
        if let Err(why) = &isolation {
            journal.info(&format!(
                "A private mount namespace is not available ({why}): processes see their files through the SM_* paths under {} instead of /opt/ml",
                self.settings.job_dir(name).display()
            ));
        }
        // Several hosts get a network each, so they are distinct machines to each other.
        let network = if hosts.len() > 1 && isolation.is_ok() {
            // A warm pool's network is named after the pool and outlives the job.
            let net_name = pool.map(|p| warm_pools::network_name(&p.pool_id));
            let adopted = net_name
                .as_deref()
                .and_then(|n| network::JobNetwork::adopt(n, hosts.len()));
            let reused = adopted.is_some();
            let created = match adopted {
                Some(net) => Ok(net),
                None => {
                    network::JobNetwork::create(net_name.as_deref().unwrap_or(name), hosts.len())
                }
            };
            match created {
                Ok(mut net) => {
                    if let Some(p) = pool {
                        net.keep();
                        let dir = warm_pools::pool_dir(&self.settings, &p.pool_id);
                        let _ = std::fs::create_dir_all(&dir)
                            .and_then(|()| std::fs::write(dir.join("network"), b""));
                    }
                    if reused {
                        journal.info("The warm pool's network is reused");
                    }
                    for host in hosts.iter_mut() {
                        layout::use_network(host, req, &net.hosts_entries())?;
                    }
                    journal.info(&format!(
                        "Hosts have their own network namespaces: {}",
                        (0..hosts.len())
                            .map(|i| format!("algo-{}={}", i + 1, net.address(i)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    Some(net)
                }
                Err(e) => {
                    journal.info(&format!(
                        "Hosts share this machine's loopback network (no job network: {e})"
                    ));
                    None
                }
            }
        } else {
            if hosts.len() > 1 {
                journal.info("Hosts share this machine's loopback network (no namespaces)");
            }
            None
        };
        let hosts: &[HostLayout] = hosts;
        let cgroups = self.memory_limits(name, req, hosts, journal);
        let host_env: Vec<(String, String)> = std::env::vars().collect();
        let s3_endpoint = Storage::s3_endpoint(&self.settings);
        let credentials = if self.share_store_credentials {
            Storage::store_credentials(&self.settings)
        } else {
            if s3_endpoint.is_some() {
                journal.info("The job's processes get no object-store credentials: its data access is checked by trainyard against the job's session, which the store's own credentials would bypass");
            }
            None
        };

        let (syncs, ckpt_binds) = match self
            .start_checkpoints(req, hosts, isolation.is_ok(), journal)
            .await
        {
            Ok(c) => c,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        // FastFile mounts and Pipe FIFOs exist before any process starts.
        let streaming = match self.prepare_streaming_inputs(req, hosts, journal).await {
            Ok(s) => s,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        let (pipe_stop, pipe_stop_rx) = watch::channel(false);

        let mut children = Vec::new();
        // Per host, the tasks copying its stdout and stderr into its log.
        let mut pumps: Vec<Vec<tokio::task::JoinHandle<()>>> = Vec::new();
        let mut host_logs = Vec::new();
        for host in hosts {
            let log = Arc::new(HostLog::open(
                &host.name,
                &host.log_file,
                metrics.clone(),
                obs.clone(),
            )?);
            let root = host.root.to_string_lossy().into_owned();
            let make_spec = |ml_root: &str| process::Spec {
                argv: argv.clone(),
                env: env::build(&env::EnvInputs {
                    warm_pool_cache: pool.is_some(),
                    request: req,
                    arn,
                    host,
                    region: &self.settings.region,
                    ml_root,
                    host_env: host_env.clone(),
                    s3_endpoint: s3_endpoint.as_deref(),
                    credentials: credentials.as_ref(),
                }),
                cwd: cwd.clone(),
            };
            let binds = match self
                .file_system_binds(req, host, isolation.is_ok(), journal)
                .and_then(|mut b| {
                    if let Some(p) = pool {
                        b.extend(self.warm_pool_cache(p, host, isolation.is_ok())?);
                    }
                    Ok(b)
                }) {
                Ok(mut b) => {
                    b.extend(ckpt_binds.get(host.index).cloned().flatten());
                    b
                }
                Err(reason) => {
                    for (pid, _) in &children {
                        process::kill_group(*pid);
                    }
                    return Ok(Outcome::Failed(reason));
                }
            };
            let iso = process::Isolation {
                host_tree: host.root.clone(),
                hosts_file: host.hosts_file.clone(),
                hostname: host.name.clone(),
                binds,
                netns: network.as_ref().map(|n| n.netns_path(host.index)),
            };
            let procs = match cgroups.get(host.index).and_then(Option::as_ref) {
                Some(cg) => match cg.procs() {
                    Ok(f) => Some(f),
                    Err(e) => {
                        for (pid, _) in &children {
                            process::kill_group(*pid);
                        }
                        return Ok(Outcome::Failed(format!(
                            "InternalServerError: opening the memory cgroup of {}: {e}",
                            host.name
                        )));
                    }
                },
                None => None,
            };
            let spawned = if isolation.is_ok() {
                process::spawn(&make_spec(process::OPT_ML), Some(&iso), procs)
            } else {
                process::spawn(&make_spec(&root), None, procs)
            };
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    for (pid, _) in &children {
                        process::kill_group(*pid);
                    }
                    let program = argv.first().cloned().unwrap_or_default();
                    return Ok(Outcome::Failed(format!(
                        "AlgorithmError: cannot start {program:?} on {}: {e}",
                        host.name
                    )));
                }
            };
            let pid = child.id().expect("running child has a pid");
            let mut copying = Vec::new();
            if let Some(out) = child.stdout.take() {
                copying.push(tokio::spawn(log.clone().pump(out, false)));
            }
            if let Some(err) = child.stderr.take() {
                copying.push(tokio::spawn(log.clone().pump(err, true)));
            }
            pumps.push(copying);
            host_logs.push(log);
            children.push((pid, child));
        }

        let mut producers: FuturesUnordered<_> = streaming
            .pipes
            .into_iter()
            .map(|(channel, producer)| {
                let stop = pipe_stop_rx.clone();
                tokio::spawn(async move { (channel, producer.run(stop).await) })
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(|(p, _)| *p).collect();
        // A restarted server finds and ends orphaned process groups through this file.
        let pid_file = self.settings.job_dir(name).join("pids");
        let _ = std::fs::write(
            &pid_file,
            pids.iter().map(|p| format!("{p}\n")).collect::<String>(),
        );
        let mut waits: FuturesUnordered<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut child))| async move { (i, child.wait().await) })
            .collect();
        let mut stopping: Option<Outcome> = None;
        let mut failure: Option<String> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let grace = self.settings.stop_grace;
        while !waits.is_empty() {
            tokio::select! {
                Some((i, status)) = waits.next() => {
                    let host = &hosts[i];
                    let ok = matches!(&status, Ok(s) if s.success());
                    if !ok && failure.is_none() && stopping.is_none() {
                        let what = match &status {
                            Ok(s) => process::describe_exit(*s),
                            Err(e) => format!("wait failed: {e}"),
                        };
                        // The reason quotes the host's last stderr lines: let its pumps read
                        // them first (briefly: a leftover child may hold the pipes open).
                        let drained = tokio::time::Instant::now() + Duration::from_secs(2);
                        while pumps[i].iter().any(|p| !p.is_finished())
                            && tokio::time::Instant::now() < drained
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        let oom = cgroups.get(i).and_then(Option::as_ref).is_some_and(|c| c.oom_killed());
                        failure = Some(if oom {
                            format!(
                                "AlgorithmError: {} ran out of memory ({what}): its processes used more than the memory of instance type {} less trainyard's reserve; choose a larger InstanceType",
                                host.name,
                                req.resource_config.as_ref().and_then(|r| r.instance_type.as_deref()).unwrap_or("?")
                            )
                        } else {
                            failure_reason(host, &host_logs[i], &what)
                        });
                        // One host failing fails the job: stop the others.
                        for (j, pid) in pids.iter().enumerate() {
                            if j != i {
                                process::terminate(*pid);
                            }
                        }
                        kill_at.get_or_insert(tokio::time::Instant::now() + grace);
                    }
                }
                Some(done) = producers.next(), if !producers.is_empty() => {
                    let failed = match done {
                        Ok((_, Ok(_))) => None,
                        Ok((channel, Err(e))) => Some(format!("ClientError: channel {channel}: {e}")),
                        Err(e) => Some(format!("InternalServerError: a Pipe producer failed: {e}")),
                    };
                    if let Some(reason) = failed.filter(|_| failure.is_none() && stopping.is_none()) {
                        journal.info(&reason);
                        failure = Some(reason);
                        pids.iter().for_each(|p| process::terminate(*p));
                        kill_at.get_or_insert(tokio::time::Instant::now() + grace);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()), if stopping.is_none() => {
                    self.stopping(name, "Maximum runtime exceeded; stopping the training job", &**obs)?;
                    stopping = Some(Outcome::MaxRuntime);
                    pids.iter().for_each(|p| process::terminate(*p));
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
                _ = stopped(stop), if stopping.is_none() => {
                    self.stopping(name, "Stopping the training job", &**obs)?;
                    stopping = Some(Outcome::Stopped);
                    pids.iter().for_each(|p| process::terminate(*p));
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                    journal.info(&format!("Processes still running {} s after SIGTERM: sending SIGKILL", grace.as_secs_f64()));
                    pids.iter().for_each(|p| process::kill_group(*p));
                    kill_at = None;
                }
            }
        }
        // Whatever the processes left behind ends with them, as a container's would.
        pids.iter().for_each(|p| process::kill_group(*p));
        let _ = std::fs::remove_file(&pid_file);
        for p in pumps.into_iter().flatten() {
            let _ = p.await;
        }
        // The processes are gone: end the producers and unmount the FastFile channels.
        let _ = pipe_stop.send(true);
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(10), producers.next()).await
        {}
        for m in streaming.mounts {
            let _ = tokio::task::spawn_blocking(move || m.unmount()).await;
        }
        for (host, sync) in syncs {
            match sync.finish().await {
                Ok(sum) => journal.info(&format!(
                    "{host}: checkpoints synced ({} uploaded, {} bytes, {} deleted)",
                    sum.uploaded, sum.bytes_uploaded, sum.deleted
                )),
                // Best effort, as SageMaker's final checkpoint sync (container.md §7).
                Err(e) => journal.info(&format!("{host}: final checkpoint sync incomplete: {e}")),
            }
        }
        Ok(match (stopping, failure) {
            (Some(s), _) => s,
            (None, Some(reason)) => Outcome::Failed(reason),
            (None, None) => Outcome::Completed,
        })
    }

    /// Mounts the FastFile channels and creates the first FIFO of the Pipe channels of every
    /// host. Each channel is listed once; hosts get their share.
    async fn prepare_streaming_inputs(
        &self,
        req: &CreateTrainingJobRequest,
        hosts: &[HostLayout],
        journal: &Journal,
    ) -> Result<StreamingInputs, String> {
        let mut out = StreamingInputs {
            mounts: Vec::new(),
            pipes: Vec::new(),
        };
        for ch in req.input_data_config.iter().flatten() {
            let Some(s3) = &ch.data_source.s3_data_source else {
                continue;
            };
            let sharded = s3.s3_data_distribution_type == Some(Distribution::ShardedByS3Key);
            let fail = |e: &dyn std::fmt::Display| {
                format!("ClientError: channel {}: {e}", ch.channel_name)
            };
            match req.channel_mode(ch) {
                InputMode::File => {}
                InputMode::FastFile => {
                    let started = Instant::now();
                    let (res, objects) = self.channel_objects(ch, true).await?;
                    trainyard_data::fastfile::check_folder_prefix(&res.key, &objects)
                        .map_err(|e| fail(&e))?;
                    for host in hosts {
                        let share = if sharded {
                            trainyard_data::shard(objects.clone(), host.index, req.instance_count())
                        } else {
                            objects.clone()
                        };
                        let n = share.len();
                        let entries = share
                            .into_iter()
                            .map(trainyard_data::fastfile::MountEntry::from)
                            .collect();
                        let dir = host.channel_dir(&ch.channel_name);
                        std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
                        let client = res.client.clone();
                        let cfg = trainyard_data::fastfile::FastFileConfig::default();
                        let handle = tokio::task::spawn_blocking(move || {
                            trainyard_data::fastfile::mount(&cfg, client, entries, &dir)
                        })
                        .await
                        .map_err(|e| fail(&e))?
                        .map_err(|e| fail(&e))?;
                        out.mounts.push(handle);
                        journal.info(&format!(
                            "{}: channel {} mounted (FastFile) with {n} objects from {} in {:.3} s",
                            host.name,
                            ch.channel_name,
                            s3.s3_uri,
                            started.elapsed().as_secs_f64()
                        ));
                    }
                }
                InputMode::Pipe => {
                    let (res, source) = match s3.s3_data_type {
                        S3DataType::AugmentedManifestFile => {
                            let loc = Location::parse(&s3.s3_uri, Path::new("/"))
                                .map_err(|e| fail(&e))?;
                            let res = self.storage.resolve(&loc);
                            let lines = trainyard_data::load_augmented_manifest(
                                &*res.client,
                                &s3.s3_uri,
                                s3.attribute_names.as_deref().unwrap_or(&[]),
                            )
                            .await
                            .map_err(|e| fail(&e))?;
                            (res, trainyard_data::PipeSource::Augmented(lines))
                        }
                        // Pipe reshuffles every epoch itself.
                        _ => {
                            let (res, objects) = self.channel_objects(ch, false).await?;
                            (res, trainyard_data::PipeSource::Objects(objects))
                        }
                    };
                    for host in hosts {
                        let pipe = trainyard_data::PipeChannel {
                            name: ch.channel_name.clone(),
                            source: source.clone(),
                            shard: sharded.then_some(trainyard_data::HostShard {
                                index: host.index,
                                count: req.instance_count(),
                            }),
                            shuffle_seed: ch.shuffle_config.as_ref().map(|c| c.seed),
                            gzip: ch.compression_type
                                == Some(crate::jobs::spec::ChannelCompression::Gzip),
                            recordio: ch.record_wrapper_type
                                == Some(crate::jobs::spec::RecordWrapper::RecordIo),
                        };
                        let producer = trainyard_data::PipeProducer::prepare(
                            res.client.clone(),
                            pipe,
                            &host.root.join("input/data"),
                            Default::default(),
                        )
                        .map_err(|e| fail(&e))?;
                        let label = if hosts.len() > 1 {
                            format!("{} ({})", ch.channel_name, host.name)
                        } else {
                            ch.channel_name.clone()
                        };
                        out.pipes.push((label, producer));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Restores `CheckpointConfig.S3Uri` into every host's checkpoint directory and starts
    /// syncing it back. The directory is `/opt/ml/checkpoints` (or a `LocalPath` under
    /// `/opt/ml`) inside the host tree; a `LocalPath` elsewhere is a per-host directory bound at
    /// that path (without a namespace, the path itself, shared by the hosts).
    #[allow(clippy::type_complexity, reason = "one caller destructures it at once")]
    async fn start_checkpoints(
        &self,
        req: &CreateTrainingJobRequest,
        hosts: &[HostLayout],
        isolated: bool,
        journal: &Journal,
    ) -> Result<
        (
            Vec<(String, checkpoints::SyncHandle)>,
            Vec<Option<process::Bind>>,
        ),
        String,
    > {
        let Some(cfg) = &req.checkpoint_config else {
            return Ok((Vec::new(), Vec::new()));
        };
        let loc = Location::parse(&cfg.s3_uri, Path::new("/"))
            .map_err(|e| format!("ClientError: CheckpointConfig.S3Uri: {e}"))?;
        let res = self.storage.resolve(&loc);
        let local = PathBuf::from(cfg.local_path.as_deref().unwrap_or("/opt/ml/checkpoints"));
        let mut syncs = Vec::new();
        let mut binds = Vec::new();
        for host in hosts {
            let (dir, bind) = match local.strip_prefix(process::OPT_ML) {
                Ok(rel) => (host.root.join(rel), None),
                Err(_) if isolated => {
                    let dir = host
                        .root
                        .with_file_name(format!("{}-checkpoints", host.name));
                    std::fs::create_dir_all(&local).map_err(|e| {
                        format!(
                            "InternalServerError: creating mount point {}: {e}",
                            local.display()
                        )
                    })?;
                    (
                        dir.clone(),
                        Some(process::Bind {
                            source: dir,
                            target: local.clone(),
                            read_only: false,
                        }),
                    )
                }
                Err(_) => (local.clone(), None),
            };
            let target = checkpoints::CheckpointTarget {
                client: res.client.clone(),
                bucket: res.bucket.clone(),
                prefix: res.key.clone(),
            };
            let sum = checkpoints::restore(&target, &dir).await.map_err(|e| {
                format!(
                    "ClientError: restoring checkpoints from {}: {e}",
                    cfg.s3_uri
                )
            })?;
            if sum.objects > 0 {
                journal.info(&format!(
                    "{}: restored {} checkpoint files ({} bytes) from {}",
                    host.name, sum.objects, sum.bytes, cfg.s3_uri
                ));
            }
            let opts = checkpoints::SyncOptions {
                staging_dir: Some(
                    host.root
                        .with_file_name(format!("{}-checkpoint-staging", host.name)),
                ),
                ..Default::default()
            };
            let handle = checkpoints::start_sync(target, dir, opts)
                .map_err(|e| format!("InternalServerError: watching checkpoints: {e}"))?;
            syncs.push((host.name.clone(), handle));
            binds.push(bind);
        }
        Ok((syncs, binds))
    }

    /// File-system channels of one host: binds at `/opt/ml/input/data/<channel>` (read-only
    /// for `ro`), or, without a mount namespace, a symbolic link (access mode not enforced, and
    /// the job log says so).
    /// One memory-limited cgroup per host, sized by the instance type (`instance_types.rs`);
    /// `None` entries run unlimited (a `local` type, or no writable memory controller, which
    /// the log says once).
    fn memory_limits(
        &self,
        name: &str,
        req: &CreateTrainingJobRequest,
        hosts: &[HostLayout],
        journal: &Journal,
    ) -> Vec<Option<cgroup::HostCgroup>> {
        let ty = req
            .resource_config
            .as_ref()
            .and_then(|r| r.instance_type.as_deref())
            .unwrap_or("local");
        let resolved = self.settings.instance_types.resolve(ty).ok().flatten();
        let Some(limit) = crate::instance_types::host_memory_limit(
            resolved.as_ref(),
            crate::instance_types::machine_memory_mib(),
        ) else {
            return hosts.iter().map(|_| None).collect();
        };
        let mut out = Vec::new();
        for host in hosts {
            match cgroup::HostCgroup::create(name, &host.name, limit) {
                Ok(cg) => out.push(Some(cg)),
                Err(e) => {
                    journal.info(&format!(
                        "Memory is not limited to {ty}'s ({} MiB): {e}",
                        limit >> 20
                    ));
                    return hosts.iter().map(|_| None).collect();
                }
            }
        }
        journal.info(&format!(
            "Each host's memory is limited to {} MiB ({ty}: {} MiB less trainyard's reserve)",
            limit >> 20,
            resolved.map_or(0, |t| t.memory_mib)
        ));
        out
    }

    /// Host `host`'s persistent cache directory of the pool, at
    /// `/opt/ml/sagemaker/warmpoolcache` (a bind mount, or a link in the host tree without a
    /// mount namespace).
    fn warm_pool_cache(
        &self,
        pool: &WarmPool,
        host: &HostLayout,
        isolated: bool,
    ) -> Result<Option<process::Bind>, String> {
        let fail = |e: std::io::Error| format!("InternalServerError: warm pool cache: {e}");
        let source =
            warm_pools::cache_dir(&self.settings, &pool.pool_id, host.index).map_err(fail)?;
        let inside = host.root.join("sagemaker/warmpoolcache");
        if isolated {
            std::fs::create_dir_all(&inside).map_err(fail)?;
            Ok(Some(process::Bind {
                source,
                target: PathBuf::from(warm_pools::CACHE_MOUNT),
                read_only: false,
            }))
        } else {
            std::fs::create_dir_all(host.root.join("sagemaker")).map_err(fail)?;
            std::os::unix::fs::symlink(&source, &inside).map_err(fail)?;
            Ok(None)
        }
    }

    fn file_system_binds(
        &self,
        req: &CreateTrainingJobRequest,
        host: &HostLayout,
        isolated: bool,
        journal: &Journal,
    ) -> Result<Vec<process::Bind>, String> {
        let mut binds = Vec::new();
        for ch in req.input_data_config.iter().flatten() {
            let Some(fs) = &ch.data_source.file_system_data_source else {
                continue;
            };
            let source = self
                .settings
                .file_systems
                .resolve(fs)
                .map_err(|(field, why)| {
                    format!("ClientError: channel {} ({field}): {why}", ch.channel_name)
                })?;
            let dir = host.channel_dir(&ch.channel_name);
            let read_only =
                fs.file_system_access_mode == crate::jobs::spec::FileSystemAccessMode::Ro;
            if isolated {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("InternalServerError: creating {}: {e}", dir.display()))?;
                binds.push(process::Bind {
                    source,
                    target: PathBuf::from(process::OPT_ML)
                        .join("input/data")
                        .join(&ch.channel_name),
                    read_only,
                });
            } else {
                let _ = std::fs::remove_dir(&dir);
                std::os::unix::fs::symlink(&source, &dir)
                    .map_err(|e| format!("InternalServerError: linking {}: {e}", dir.display()))?;
                if read_only {
                    journal.info(&format!(
                        "{}: channel {} is linked to {} without a mount namespace, so its read-only mode is not enforced",
                        host.name,
                        ch.channel_name,
                        source.display()
                    ));
                }
            }
        }
        Ok(binds)
    }

    #[allow(clippy::too_many_arguments, reason = "mirrors finish")]
    async fn finish_without_training(
        &self,
        name: &str,
        hosts: &[HostLayout],
        job_dir: &Path,
        req: &CreateTrainingJobRequest,
        outcome: Outcome,
        journal: &Journal,
        obs: &dyn Observer,
    ) -> anyhow::Result<JobRecord> {
        if let Outcome::Failed(reason) = &outcome {
            journal.info(reason);
            let rec = self.advance(
                name,
                Phase::Failed,
                "Training job failed",
                Some(reason),
                obs,
            )?;
            cleanup_hosts(hosts);
            return Ok(rec);
        }
        self.finish(name, hosts, job_dir, req, outcome, journal, obs)
            .await
    }

    #[allow(clippy::too_many_arguments, reason = "the job's values, passed once")]
    pub(crate) async fn finish(
        &self,
        name: &str,
        hosts: &[HostLayout],
        job_dir: &Path,
        req: &CreateTrainingJobRequest,
        outcome: Outcome,
        journal: &Journal,
        obs: &dyn Observer,
    ) -> anyhow::Result<JobRecord> {
        if matches!(outcome, Outcome::Completed | Outcome::Failed(_)) {
            self.advance(
                name,
                Phase::Uploading,
                "Uploading generated training model",
                None,
                obs,
            )?;
        }
        let upload = if self.keep_artifacts {
            Ok(())
        } else {
            self.upload(name, hosts, job_dir, req, journal).await
        };
        let rec = match (outcome, upload) {
            (Outcome::Failed(reason), _) => {
                journal.info(&format!("Training job failed: {reason}"));
                self.advance(
                    name,
                    Phase::Failed,
                    "Training job failed",
                    Some(&reason),
                    obs,
                )?
            }
            (_, Err(reason)) => {
                journal.info(&reason);
                self.advance(
                    name,
                    Phase::Failed,
                    "Uploading the artifacts failed",
                    Some(&reason),
                    obs,
                )?
            }
            (Outcome::Completed, Ok(())) => {
                self.advance(name, Phase::Completed, "Training job completed", None, obs)?
            }
            (Outcome::Stopped, Ok(())) => {
                self.advance(name, Phase::Stopped, "Training job stopped", None, obs)?
            }
            (Outcome::MaxRuntime, Ok(())) => self.advance(
                name,
                Phase::MaxRuntimeExceeded,
                "Training job stopped: MaxRuntimeInSeconds exceeded",
                None,
                obs,
            )?,
        };
        if !self.keep_artifacts {
            cleanup_hosts(hosts);
        }
        Ok(rec)
    }

    async fn upload(
        &self,
        name: &str,
        hosts: &[HostLayout],
        job_dir: &Path,
        req: &CreateTrainingJobRequest,
        journal: &Journal,
    ) -> Result<(), String> {
        let out_uri = &req.output_data_config.s3_output_path;
        let loc = Location::parse(out_uri, Path::new("/"))
            .map_err(|e| format!("ClientError: OutputDataConfig.S3OutputPath: {e}"))?;
        let out = self.storage.resolve(&loc);
        for (file, dirs) in [
            (
                "model.tar.gz",
                hosts.iter().map(HostLayout::model_dir).collect::<Vec<_>>(),
            ),
            (
                "output.tar.gz",
                hosts.iter().map(HostLayout::output_data_dir).collect(),
            ),
        ] {
            let size = artifacts::pack_and_upload(dirs, job_dir, file, &out, name)
                .await
                .map_err(|e| {
                    format!(
                        "ClientError: {e} to {}",
                        artifacts::artifact_uri(out_uri, name, file)
                    )
                })?;
            journal.info(&format!(
                "Uploaded {} ({size} bytes)",
                artifacts::artifact_uri(out_uri, name, file)
            ));
        }
        Ok(())
    }
}

/// FastFile mounts and Pipe producers of a job, alive while its processes run.
struct StreamingInputs {
    mounts: Vec<trainyard_data::fastfile::MountHandle>,
    pipes: Vec<(String, trainyard_data::PipeProducer)>,
}

/// Resolves once a stop has been requested (holds no borrow of the channel across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The failure reason of a host that exited badly (`spec/container.md` §5).
fn failure_reason(host: &HostLayout, log: &HostLog, what: &str) -> String {
    if let Ok(text) = std::fs::read_to_string(host.failure_file()) {
        let text = text.trim_end();
        if !text.is_empty() {
            return text.chars().take(1024).collect();
        }
    }
    let tail = log.stderr_tail();
    let head = format!("AlgorithmError: {} {what}", host.name);
    if tail.is_empty() {
        return head;
    }
    let room = 1024usize.saturating_sub(head.len() + 2);
    let chars: Vec<char> = tail.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(room)..].iter().collect();
    format!("{head}: {tail}")
}

/// Host trees hold the downloaded data and can be large; logs are kept apart and survive.
fn cleanup_hosts(hosts: &[HostLayout]) {
    if std::env::var_os("TRAINYARD_KEEP_HOSTS").is_some() {
        return;
    }
    for h in hosts {
        let _ = std::fs::remove_dir_all(&h.root);
    }
}
