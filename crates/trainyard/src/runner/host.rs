//! One host of a job, from its plan to its process's end, with no database.
//!
//! Why: the same host must run on this machine (the local executor runs N of them) and on a
//! cluster node (`trainyard host run` runs one), and a node has no job store. A [`HostRun`]
//! therefore reports what it reaches through a [`HostReporter`] (the lifecycle locally, the
//! server's host API on a node) and returns a [`HostEnd`]; the executor that started it
//! decides what that means for the job. Its artifacts stay in its tree for the finish stage.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::cgroup::HostCgroup;
use super::container::{Container, IdMap, Net, Program, Root};
use super::env;
use super::image;
use super::inputs::{self, HostInputs, Listings};
use super::isolation::{HostView, host_view};
use super::jobdir::{JobDir, Journal};
use super::layout::HostLayout;
use super::logs::{HostLog, Metrics};
use super::plan::{JobPlan, Runtime};
use super::process::{self, Bind, OPT_ML};
use super::supervise::{self, HostResult, Launch, PidFile, ProcessRun};
use crate::jobs::failure::FailureReason;
use crate::jobs::state::Phase;

/// Where a host tells how far it got.
pub trait HostReporter: Send + Sync + std::fmt::Debug {
    /// The host reached `Downloading` or `Training`; `false` when the job is stopping and the
    /// host must not go on.
    fn reached(&self, phase: Phase) -> bool;

    /// The host starts pulling the job's image (`Training`, "Downloading the training
    /// image"); `false` as for [`HostReporter::reached`]. A reporter that cannot say so
    /// reports `Training`.
    fn pulling_image(&self) -> bool {
        self.reached(Phase::Training)
    }
}

/// The environment a host's process gets from the installation.
#[derive(Debug, Clone)]
pub struct ProcessEnv {
    /// The S3 endpoint jobs use, when not AWS.
    pub s3_endpoint: Option<String>,
    /// The store's credentials, for single-tenant installations only.
    pub credentials: Option<trainyard_s3::S3Credentials>,
    /// The working directory when the image names none.
    pub workdir: PathBuf,
    /// What the `host` runtime's containers see of the host.
    pub host_view: HostView,
    /// The installation: the region, the stop grace, the container runtime, trainyard's own
    /// environment, the image store's settings.
    pub settings: Arc<crate::config::Settings>,
}

impl ProcessEnv {
    /// The installation's part of a job's environment. `share_credentials`: the job runs
    /// without access control and its processes get the store's own credentials; under ABAC
    /// they get none (they would bypass the checks), which the job log says.
    pub fn new(
        settings: &crate::config::Settings,
        share_credentials: bool,
        workdir: PathBuf,
        journal: &Journal,
    ) -> Self {
        let s3_endpoint = crate::storage::Storage::s3_endpoint(settings);
        let credentials = if share_credentials {
            crate::storage::Storage::store_credentials(settings)
        } else {
            if s3_endpoint.is_some() {
                journal.info("The job's processes get no object-store credentials: its data access is checked by trainyard against the job's session, which the store's own credentials would bypass");
            }
            None
        };
        ProcessEnv {
            s3_endpoint,
            credentials,
            host_view: host_view(settings, &workdir),
            workdir,
            settings: Arc::new(settings.clone()),
        }
    }
}

/// One host, ready to run.
#[derive(Debug)]
pub struct HostRun {
    /// The job.
    pub plan: Arc<JobPlan>,
    /// The host's prepared tree.
    pub layout: HostLayout,
    /// The job's directory here.
    pub dir: JobDir,
    /// The job's authorized storage.
    pub storage: crate::storage::Storage,
    /// Listings shared with the job's other hosts here.
    pub listings: Arc<Listings>,
    /// Platform messages.
    pub journal: Arc<Journal>,
    /// Phase reports.
    pub reporter: Arc<dyn HostReporter>,
    /// Whether the process runs in a container.
    pub isolated: bool,
    /// The container's network.
    pub network: Net,
    /// Its memory cgroup.
    pub cgroup: Option<HostCgroup>,
    /// Further binds (file-system channels, a warm pool's cache).
    pub binds: Vec<Bind>,
    /// Whether a warm pool's cache is bound.
    pub warm_pool_cache: bool,
    /// The installation's part of the environment.
    pub env: Arc<ProcessEnv>,
    /// The job's metrics (shared by its hosts here).
    pub metrics: Arc<Metrics>,
    /// Where its pid is recorded.
    pub pids: Arc<PidFile>,
}

/// How a host ended.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEnd {
    /// 0-based host index.
    pub index: usize,
    /// How.
    pub result: HostResult,
    /// Whether its process started (so its artifacts are uploaded even on failure).
    pub trained: bool,
}

impl HostRun {
    fn label(&self) -> String {
        if self.plan.host_count > 1 {
            self.layout.name.clone()
        } else {
            String::new()
        }
    }

    /// Runs the host until its process ends or `stop` ends it.
    pub async fn run(self, stop: watch::Receiver<bool>) -> HostEnd {
        use tracing::Instrument;
        let span = tracing::info_span!("host", host = %self.layout.name);
        self.run_in_span(stop).instrument(span).await
    }

    async fn run_in_span(self, mut stop: watch::Receiver<bool>) -> HostEnd {
        let index = self.layout.index;
        let end = |result, trained| HostEnd {
            index,
            result,
            trained,
        };
        let label = self.label();
        let inp = HostInputs {
            plan: &self.plan,
            host: &self.layout,
            storage: &self.storage,
            listings: &self.listings,
            journal: &self.journal,
            label: &label,
        };
        if self.plan.file_channels().next().is_some() {
            if *stop.borrow() || !self.reporter.reached(Phase::Downloading) {
                return end(HostResult::Stopped, false);
            }
            tokio::select! {
                r = inputs::download(inp) => if let Err(reason) = r {
                    return end(HostResult::Failed(reason), false);
                },
                _ = stop.wait_for(|s| *s) => return end(HostResult::Stopped, false),
            }
        }
        let image = match &self.plan.command.runtime {
            Runtime::Host { .. } => None,
            Runtime::Image { reference } => {
                if !self.isolated {
                    return end(
                        HostResult::Failed(FailureReason::client(format!(
                            "TrainingImage {reference} is a container image, and this machine cannot run containers (the job log says why); use the host runtime or a machine with {}",
                            self.env.settings.container_runtime.display()
                        ))),
                        false,
                    );
                }
                if *stop.borrow() || !self.reporter.pulling_image() {
                    return end(HostResult::Stopped, false);
                }
                let pulled = tokio::select! {
                    r = image::pull(&self.env.settings, reference, &self.journal) => r,
                    _ = stop.wait_for(|s| *s) => return end(HostResult::Stopped, false),
                };
                let pulled = match pulled.and_then(|i| image::process(&i).map(|p| (i, p))) {
                    Ok(p) => p,
                    Err(reason) => return end(HostResult::Failed(reason), false),
                };
                if pulled.1.entrypoint.is_empty() && self.plan.command.entrypoint.is_none() {
                    self.journal.info(&format!(
                        "The training image {reference} has no ENTRYPOINT: `train` is run from its PATH"
                    ));
                }
                Some(pulled)
            }
        };
        if *stop.borrow() || !self.reporter.reached(Phase::Training) {
            return end(HostResult::Stopped, false);
        }
        let user = image.as_ref().map_or((0, 0), |(_, p)| p.user);
        // The tree belongs to the container's user: before the inputs start (FIFOs and
        // FastFile mounts take their directory's owner), and again after (the checkpoints
        // they restored).
        let hand_over = || {
            if !self.isolated {
                return Ok(());
            }
            super::container::hand_over(&self.layout.root, IdMap::DEFAULT, user).map_err(|e| {
                FailureReason::internal(format!(
                    "handing {}'s tree to its container: {e}",
                    self.layout.name
                ))
            })
        };
        if let Err(reason) = hand_over() {
            return end(HostResult::Failed(reason), true);
        }
        let mut guard = match inputs::start(inp, &self.dir).await {
            Ok(g) => g,
            Err(reason) => return end(HostResult::Failed(reason), true),
        };
        if let Err(reason) = hand_over() {
            guard.teardown(&self.layout.name, &self.journal).await;
            return end(HostResult::Failed(reason), true);
        }
        let binds = self.binds.clone();
        let ml_root = if self.isolated {
            OPT_ML.to_string()
        } else {
            self.layout.root.to_string_lossy().into_owned()
        };
        let network_isolated = self.plan.request.enable_network_isolation.unwrap_or(false);
        let base_env = match (&image, self.isolated) {
            (Some((_, p)), _) => p.env.clone(),
            (None, true) => self.env.host_view.env.clone(),
            (None, false) => self.env.settings.host_env.clone(),
        };
        let env = env::build(&env::EnvInputs {
            warm_pool_cache: self.warm_pool_cache,
            request: &self.plan.request,
            arn: &self.plan.arn,
            host: &self.layout,
            region: &self.env.settings.region,
            ml_root: &ml_root,
            host_env: base_env,
            filter_base: image.is_none(),
            // A network-isolated job gets neither: it could not use them (SageMaker gives
            // such containers no credentials either).
            s3_endpoint: self
                .env
                .s3_endpoint
                .as_deref()
                .filter(|_| !network_isolated),
            credentials: self.env.credentials.as_ref().filter(|_| !network_isolated),
        });
        let (argv, cwd, root) = match (&image, &self.plan.command.runtime) {
            (Some((pulled, p)), _) => (
                self.plan.command.argv(&p.entrypoint),
                p.cwd.clone(),
                Root::Image {
                    lower: pulled.rootfs.clone(),
                },
            ),
            (
                None,
                Runtime::Host {
                    entrypoint,
                    workdir,
                },
            ) => (
                self.plan.command.argv(entrypoint),
                workdir.clone().unwrap_or_else(|| self.env.workdir.clone()),
                Root::Host {
                    read_only: self.env.host_view.read_only.clone(),
                },
            ),
            (None, Runtime::Image { .. }) => unreachable!("an image job pulled its image above"),
        };
        let launch = if self.isolated {
            Launch::Container(
                Box::new(Container {
                    id: super::container::container_id(&self.plan.name, &self.layout.name),
                    bundle: self.dir.root().join(format!("{}.bundle", self.layout.name)),
                    runtime: self.env.settings.container_runtime.clone(),
                    root,
                    host_tree: self.layout.root.clone(),
                    hosts_file: self.layout.hosts_file.clone(),
                    hostname: self.layout.name.clone(),
                    binds,
                    network: self.network.clone(),
                    ids: IdMap::DEFAULT,
                    user,
                    cgroup: self.cgroup.as_ref().and_then(HostCgroup::runtime_path),
                    masked: self.env.host_view.masked.clone(),
                }),
                Program { argv, env, cwd },
            )
        } else {
            Launch::Direct(process::Spec { argv, env, cwd })
        };
        let log = match HostLog::open(
            &self.layout.name,
            &self.layout.log_file,
            self.metrics.clone(),
            self.journal.observer().clone(),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                guard.teardown(&self.layout.name, &self.journal).await;
                return end(
                    HostResult::Failed(FailureReason::internal(format!(
                        "opening the log of {}: {e}",
                        self.layout.name
                    ))),
                    true,
                );
            }
        };
        let result = supervise::run_process(
            ProcessRun {
                host: &self.layout,
                launch,
                cgroup: self.cgroup.as_ref(),
                instance_type: &self.plan.instance_type,
                log,
                grace: self.env.settings.stop_grace,
                pids: &self.pids,
                journal: &self.journal,
            },
            &mut guard,
            stop,
        )
        .await;
        guard.teardown(&self.layout.name, &self.journal).await;
        end(result, true)
    }
}
