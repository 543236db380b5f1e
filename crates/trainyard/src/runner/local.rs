//! The local executor: every host of a job as processes on this machine.
//!
//! Why here and not in each host: what the hosts of one machine can share is made once (the
//! isolation probe, the job network, each channel's listing, the warm pool), and the
//! job-level policy (stop, deadline, one failed host stops the others) needs all of them.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Settings;
use crate::db::{DbError, JobRecord, JobStore};
use crate::jobs::failure::FailureReason;
use crate::jobs::state::Phase;
use crate::lifecycle::Lifecycle;
use crate::storage::Storage;
use crate::warm_pools::{self, WarmPool};

use super::container::Net;
use super::finish::{self, Artifacts, Finish};
use super::host::{HostEnd, HostReporter, HostRun, ProcessEnv};
use super::jobdir::JobDir;
use super::layout::{self, HostLayout};
use super::plan::JobPlan;
use super::supervise::{HostResult, JobClock, PidFile};
use super::{RunContext, RunError, authorize, inputs, isolation, logs};

/// The local executor: runs jobs' hosts as processes on this machine.
#[derive(Debug, Clone)]
pub struct Runner {
    settings: Settings,
    lifecycle: Lifecycle,
    storage: Storage,
    identity: Option<Arc<crate::identity::Identity>>,
}

/// The lifecycle, seen from a host: the first host to reach a phase moves the job.
#[derive(Debug)]
struct LocalReporter {
    lifecycle: Lifecycle,
    name: String,
}

impl HostReporter for LocalReporter {
    fn reached(&self, phase: Phase) -> bool {
        self.lifecycle
            .reached(&self.name, phase)
            .unwrap_or_else(|e| {
                tracing::error!(job = %self.name, "recording {phase:?}: {e}");
                false
            })
    }

    fn pulling_image(&self) -> bool {
        self.lifecycle
            .pulling_image(&self.name)
            .unwrap_or_else(|e| {
                tracing::error!(job = %self.name, "recording the image pull: {e}");
                false
            })
    }
}

impl Runner {
    /// A runner over the given store and storage.
    pub fn new(settings: Settings, store: Arc<dyn JobStore>, storage: Storage) -> Self {
        let lifecycle = Lifecycle::new(store, Arc::new(crate::scheduler::TracingObserver));
        Runner {
            settings,
            lifecycle,
            storage,
            identity: None,
        }
    }

    /// Enforces access control on every object access of the jobs it runs: each job's data
    /// plane runs as its execution role, with the creating session's tags when chaining is on.
    pub fn with_identity(mut self, identity: Option<Arc<crate::identity::Identity>>) -> Self {
        self.identity = identity;
        self
    }

    /// The status writer.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The installation's storage (before any job's grant narrows it).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The installation's settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The access-control configuration, when there is one.
    pub fn identity(&self) -> Option<&crate::identity::Identity> {
        self.identity.as_deref()
    }

    /// Runs a job that is in `Starting` until it ends; returns the final record.
    pub async fn run(&self, name: &str, ctx: RunContext) -> Result<JobRecord, RunError> {
        let span = tracing::info_span!("job", job = %name);
        self.run_in_span(name, ctx).instrument(span).await
    }

    async fn run_in_span(&self, name: &str, ctx: RunContext) -> Result<JobRecord, RunError> {
        let lc = self.lifecycle.with_observer(ctx.observer.clone());
        let rec = lc.current(name)?;
        let plan = match JobPlan::build(&self.settings, &rec.arn, &rec.request) {
            Ok(p) => Arc::new(p),
            Err(reason) => return Ok(lc.fail(name, &reason)?),
        };
        let creator = lc.store().caller(name)?;
        let grant = match authorize::decide(
            &self.settings,
            self.identity.as_deref(),
            &rec,
            creator.as_deref(),
        ) {
            Ok(g) => g,
            Err(reason) => return Ok(lc.fail(name, &reason)?),
        };
        let (storage, share_credentials) =
            match authorize::storage(&self.settings, &self.storage, &grant, name) {
                Ok(s) => s,
                Err(reason) => return Ok(lc.fail(name, &reason)?),
            };
        let Some(keep_alive) = warm_pools::keep_alive(&rec.request) else {
            return self
                .run_hosts(&lc, plan, storage, share_credentials, None, &ctx)
                .await;
        };
        let key = warm_pools::match_key(&rec.request, &grant.session_tags);
        let store = lc.store().clone();
        let pool = store.start_warm_pool(name, &key, keep_alive, crate::db::now())?;
        let result = self
            .run_hosts(&lc, plan, storage, share_credentials, Some(&pool), &ctx)
            .await;
        let keep = matches!(&result, Ok(r) if warm_pools::kept_after(r.phase.status(), r.failure_reason.as_deref()));
        store.end_warm_pool(name, keep, crate::db::now())?;
        if let Err(e) = warm_pools::reap(&self.settings, &*store) {
            tracing::warn!("releasing expired warm pools: {e}");
        }
        result
    }

    async fn run_hosts(
        &self,
        lc: &Lifecycle,
        plan: Arc<JobPlan>,
        storage: Storage,
        share_credentials: bool,
        pool: Option<&WarmPool>,
        ctx: &RunContext,
    ) -> Result<JobRecord, RunError> {
        let name = plan.name.clone();
        let dir = JobDir::of(&self.settings, &name);
        dir.reset()?;
        let journal = Arc::new(dir.journal(ctx.observer.clone())?);
        if let Some(p) = pool.filter(|p| p.state == warm_pools::PoolState::InUse) {
            journal.info(&format!(
                "Reusing warm pool {}: its hosts' persistent caches and network are kept from an earlier job",
                p.pool_id
            ));
        }
        let mut hosts = match (0..plan.host_count)
            .map(|i| layout::prepare_host(&dir, &plan.request, i))
            .collect::<std::io::Result<Vec<_>>>()
        {
            Ok(h) => h,
            Err(e) => {
                let reason = FailureReason::internal(format!(
                    "preparing the host directories in {}: {e}",
                    dir.root().display()
                ));
                return Ok(lc.fail(&name, &reason)?);
            }
        };
        let isolated = match isolation::isolated(
            &self.settings,
            &hosts[0],
            &journal,
            !share_credentials,
        )
        .await
        {
            Ok(i) => i,
            Err(reason) => return Ok(lc.fail(&name, &reason)?),
        };
        let mut network = match isolation::job_network(
            &self.settings,
            &plan,
            &mut hosts,
            isolated,
            pool,
            &journal,
        ) {
            Ok(n) => n,
            Err(reason) => return Ok(lc.fail(&name, &reason)?),
        };
        let mut cgroups = isolation::host_cgroups(&plan, &hosts, &journal);
        let env = Arc::new(ProcessEnv::new(
            &self.settings,
            share_credentials,
            ctx.workdir.clone(),
            &journal,
        ));
        if let Some(net) = network.as_mut() {
            isolation::reach_store(net, &plan, &env, &journal);
        }
        let metrics = Arc::new(logs::Metrics::new(&plan.metric_definitions));
        let pids = Arc::new(PidFile::new(dir.pids()));
        let listings = Arc::new(inputs::Listings::default());
        let reporter: Arc<dyn HostReporter> = Arc::new(LocalReporter {
            lifecycle: lc.clone(),
            name: name.clone(),
        });

        let mut runs = Vec::new();
        for (host, cgroup) in hosts.iter().zip(cgroups.iter_mut()) {
            let binds =
                match isolation::binds(&self.settings, &plan, host, isolated, pool, &journal) {
                    Ok(b) => b,
                    Err(reason) => return Ok(lc.fail(&name, &reason)?),
                };
            runs.push(HostRun {
                plan: plan.clone(),
                layout: host.clone(),
                dir: dir.clone(),
                storage: storage.clone(),
                listings: listings.clone(),
                journal: journal.clone(),
                reporter: reporter.clone(),
                isolated,
                network: network
                    .as_ref()
                    .map_or(Net::Own, |n| Net::Join(n.netns_path(host.index))),
                cgroup: cgroup.take(),
                binds,
                warm_pool_cache: pool.is_some(),
                env: env.clone(),
                metrics: metrics.clone(),
                pids: pids.clone(),
            });
        }
        // The metric time series is written while the job runs too, so CloudWatch's
        // GetMetricStatistics shows a running job's values (at most METRICS_FLUSH late).
        let flusher = tokio::spawn(flush_metric_series(
            lc.clone(),
            name.clone(),
            metrics.clone(),
        ));
        let ran = run_all(
            lc,
            &name,
            runs,
            JobClock::new(plan.max_runtime, ctx.stop.clone()),
        )
        .await;
        flusher.abort();
        let (ends, stop) = ran?;
        lc.metrics(&name, &metrics.values())?;
        lc.metric_series(&name, &metrics.series())?;
        let outcome = finish::outcome(stop, &ends, plan.host_count);
        let trained = ends.iter().any(|e| e.trained);
        let artifacts = Artifacts::left_in(&hosts);
        let finish = Finish {
            lifecycle: lc,
            plan: &plan,
            dir: &dir,
            storage: &storage,
            journal: &journal,
        };
        let rec = finish.run(outcome, trained, artifacts).await?;
        drop(network);
        self.cleanup(&hosts);
        Ok(rec)
    }

    /// Host trees hold the downloaded data and can be large; logs are kept apart and survive.
    fn cleanup(&self, hosts: &[HostLayout]) {
        if self.settings.keep_hosts {
            return;
        }
        for h in hosts {
            let _ = std::fs::remove_dir_all(&h.root);
        }
    }
}

/// Runs the hosts concurrently under the job-level policy: a stop request or the deadline
/// stops every host (recorded as `Stopping` first); one host failing stops the others, as one
/// failed instance fails a SageMaker job. Returns every host's end and the stop, if any.
async fn run_all(
    lc: &Lifecycle,
    name: &str,
    runs: Vec<HostRun>,
    mut clock: JobClock,
) -> Result<(Vec<HostEnd>, Option<crate::lifecycle::StopCause>), DbError> {
    let mut stops = Vec::new();
    let mut tasks = FuturesUnordered::new();
    for run in runs {
        let index = run.layout.index;
        let (tx, rx) = watch::channel(false);
        stops.push(tx);
        let task = tokio::spawn(run.run(rx).in_current_span());
        tasks.push(async move {
            task.await.unwrap_or_else(|e| HostEnd {
                index,
                result: HostResult::Failed(FailureReason::internal(format!(
                    "algo-{}: the host's task ended abnormally: {e}",
                    index + 1
                ))),
                trained: true,
            })
        });
    }
    let stop_all = |stops: &[watch::Sender<bool>]| {
        stops.iter().for_each(|s| {
            let _ = s.send(true);
        })
    };
    let mut ends = Vec::new();
    let mut stop = None;
    loop {
        tokio::select! {
            end = tasks.next() => match end {
                None => break,
                Some(end) => {
                    if matches!(end.result, HostResult::Failed(_)) {
                        stop_all(&stops);
                    }
                    ends.push(end);
                }
            },
            cause = clock.expired(), if stop.is_none() => {
                lc.stopping(name, cause)?;
                stop = Some(cause);
                stop_all(&stops);
            }
        }
    }
    ends.sort_by_key(|e| e.index);
    Ok((ends, stop))
}

/// How often a running job's metric time series is written when it has new values.
const METRICS_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes the job's metric time series every [`METRICS_FLUSH`] while it has new values; the
/// final write happens when the job ends. A failed write is logged and retried next time.
async fn flush_metric_series(lc: Lifecycle, name: String, metrics: Arc<logs::Metrics>) {
    let mut written = 0;
    loop {
        tokio::time::sleep(METRICS_FLUSH).await;
        let observed = metrics.observed();
        if observed == written {
            continue;
        }
        match lc.metric_series(&name, &metrics.series()) {
            Ok(()) => written = observed,
            Err(e) => tracing::warn!(job = %name, "writing the metric time series: {e}"),
        }
    }
}
