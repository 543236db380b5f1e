//! Background execution of submitted jobs, for `trainyard serve`.
//!
//! Jobs wait in the store, not in memory: a job in `Starting` or `Pending` that no task runs is
//! queued by definition, so a restart loses nothing. One worker loop starts queued jobs oldest
//! first while their hosts fit in the configured capacity (hosts that may run at once); a job
//! that does not fit moves to `Pending` with a message saying why, and later jobs wait behind
//! it (first come, first served). A finished job wakes the loop.
//!
//! Stops are recorded before they are signalled: `StopTrainingJob` moves the job to `Stopping`
//! in the store, then tells its runner, which takes it from there (SIGTERM, grace, SIGKILL,
//! upload). A queued job is stopped on the spot.
//!
//! After a crash, [`Scheduler::recover`] settles what the previous process left: queued jobs
//! stay queued, jobs that were running are marked `Failed` (their processes cannot be
//! re-attached: their output pipes died with the server) after any orphaned process groups
//! are killed, and jobs that were stopping are marked `Stopped`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::db::{DbError, JobRecord, JobStore};
use crate::executor::Executor;
use crate::jobs::state::Phase;
use crate::lifecycle::{Lifecycle, Observer, StopRequest};
use crate::runner::RunContext;

/// Why a stop was refused.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// No such job.
    #[error("Requested resource not found.")]
    NotFound,
    /// The job has already ended.
    #[error("The request was rejected because the training job is in status {0}.")]
    Finished(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, Default)]
struct Running {
    hosts_in_use: usize,
    stops: HashMap<String, watch::Sender<bool>>,
}

/// Runs queued jobs within a host capacity.
#[derive(Debug)]
pub struct Scheduler {
    settings: Settings,
    store: Arc<dyn JobStore>,
    lifecycle: Lifecycle,
    executor: Executor,
    capacity: usize,
    observer: Arc<dyn Observer>,
    workdir: PathBuf,
    running: Mutex<Running>,
    wake: Notify,
    /// Jobs a previous server left running elsewhere, to watch again: (name, handle).
    reattach: Mutex<Vec<(String, String)>>,
}

/// The observer of server-run jobs: status changes go to the server's log.
#[derive(Debug)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn phase(&self, job: &JobRecord, message: &str) {
        tracing::info!(status = %job.phase.status(), secondary = job.phase.secondary(), "{message}");
    }
    fn log(&self, _host: &str, _line: &str) {}
    fn info(&self, message: &str) {
        tracing::info!("{message}");
    }
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl Scheduler {
    /// A scheduler; call [`Scheduler::recover`] then [`Scheduler::start`].
    pub fn new(
        settings: Settings,
        store: Arc<dyn JobStore>,
        executor: Executor,
        capacity: usize,
        workdir: PathBuf,
    ) -> Arc<Self> {
        let observer: Arc<dyn Observer> = Arc::new(TracingObserver);
        Arc::new(Scheduler {
            settings,
            lifecycle: Lifecycle::new(store.clone(), observer.clone()),
            store,
            executor,
            reattach: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            observer,
            workdir,
            running: Mutex::new(Running::default()),
            wake: Notify::new(),
        })
    }

    /// Where hosts run.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Hosts that may run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Settles jobs a previous server process left unfinished; returns how many were touched.
    pub fn recover(&self) -> Result<usize, DbError> {
        let mut touched = 0;
        for job in self.store.unfinished()? {
            match job.phase {
                Phase::Starting | Phase::Pending => continue,
                Phase::Stopping => {}
                _ => {
                    if let Some(handle) = self.executor.reattachable(&job) {
                        tracing::warn!(job = %job.name, "re-attaching to a job still running on the cluster");
                        self.reattach
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((job.name.clone(), handle));
                        touched += 1;
                        continue;
                    }
                }
            }
            let dir = self.settings.job_dir(&job.name);
            kill_orphans(&dir.pids(), &job.name);
            // Its containers (a killed server's `runc` leaves them running) and their roots.
            for id in crate::runner::container::remove_leftovers(
                &self.settings.container_runtime,
                &crate::runner::container::container_prefix(&job.name),
            ) {
                tracing::warn!(job = %job.name, container = %id, "deleted a container the previous server left");
            }
            crate::runner::network::JobNetwork::remove_stale(&job.name);
            // Dead FastFile mounts and the host trees (the data they hold can be large).
            for m in dir.remove_leftovers() {
                tracing::warn!(job = %job.name, mount = %m.display(), "detached a mount the previous server left");
            }
            // A pool whose job was cut short is not known to be healthy: released below.
            self.store
                .end_warm_pool(&job.name, false, crate::db::now())?;
            self.lifecycle.abandoned(&job)?;
            tracing::warn!(job = %job.name, "settled a job the previous server left unfinished");
            touched += 1;
        }
        crate::warm_pools::reap(&self.settings, &*self.store)?;
        Ok(touched)
    }

    /// Starts the worker loop.
    pub fn start(self: &Arc<Self>) {
        let reattach =
            std::mem::take(&mut *self.reattach.lock().unwrap_or_else(|p| p.into_inner()));
        for (name, handle) in reattach {
            if let Ok(Some(job)) = self.store.get(&name) {
                self.launch(job, Some(handle));
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut reaped = std::time::Instant::now();
            loop {
                if let Err(e) = this.schedule() {
                    tracing::error!("scheduling: {e}");
                }
                // Expired warm pools give their resources back within seconds.
                if reaped.elapsed() >= Duration::from_secs(5) {
                    reaped = std::time::Instant::now();
                    if let Err(e) = crate::warm_pools::reap(&this.settings, &*this.store) {
                        tracing::error!("releasing warm pools: {e}");
                    }
                }
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    /// Wakes the worker loop (after a create).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    fn schedule(self: &Arc<Self>) -> Result<(), DbError> {
        let queued: Vec<_> = self
            .store
            .summaries()?
            .into_iter()
            .filter(|s| matches!(s.phase, Phase::Starting | Phase::Pending))
            .collect();
        for s in queued {
            let running = self.lock();
            if running.stops.contains_key(&key(&s.name)) {
                continue;
            }
            // Re-read under the lock: a stop may have settled it meanwhile.
            let Some(job) = self.store.get(&s.name)? else {
                continue;
            };
            if !matches!(job.phase, Phase::Starting | Phase::Pending) {
                continue;
            }
            let need = job.request.instance_count();
            if running.hosts_in_use + need > self.capacity {
                let message = format!(
                    "Waiting for capacity: {need} host(s) needed, {} of {} in use",
                    running.hosts_in_use, self.capacity
                );
                self.lifecycle.pending(&job.name, &message)?;
                // First come, first served: later jobs wait behind this one.
                break;
            }
            self.lifecycle.starting(&job.name)?;
            drop(running);
            self.launch(job, None);
        }
        Ok(())
    }

    /// Runs a job in the background (or watches it again, with the handle a previous server
    /// left), holding its hosts' capacity until it ends.
    fn launch(self: &Arc<Self>, job: JobRecord, reattach: Option<String>) {
        let need = job.request.instance_count();
        let (tx, rx) = watch::channel(false);
        {
            let mut running = self.lock();
            running.hosts_in_use += need;
            running.stops.insert(key(&job.name), tx);
        }
        let this = self.clone();
        let name = job.name.clone();
        tokio::spawn(async move {
            let ctx = RunContext {
                observer: this.observer.clone(),
                stop: rx,
                workdir: this.workdir.clone(),
            };
            let result = match &reattach {
                Some(handle) => this.executor.reattach(&name, handle, ctx).await,
                None => this.executor.run(&name, ctx).await,
            };
            if let Err(e) = result {
                tracing::error!(job = %name, "run failed: {e}");
                this.lifecycle.fail_after(&name, &e, None).await;
            }
            let mut running = this.lock();
            running.hosts_in_use -= need;
            running.stops.remove(&key(&name));
            drop(running);
            this.wake.notify_one();
        });
    }

    /// `StopTrainingJob`.
    pub fn stop(&self, name: &str) -> Result<(), StopError> {
        let running = self.lock();
        match self.lifecycle.request_stop(name)? {
            StopRequest::NotFound => Err(StopError::NotFound),
            StopRequest::Finished(status) => Err(StopError::Finished(status.as_str().to_string())),
            StopRequest::Stopping => {
                let Some(job) = self.store.get(name)? else {
                    return Err(StopError::NotFound);
                };
                match running.stops.get(&key(&job.name)) {
                    Some(tx) => {
                        let _ = tx.send(true);
                    }
                    None if job.phase == Phase::Stopping => {
                        self.lifecycle.stopped_before_start(&job.name)?;
                    }
                    None => {}
                }
                Ok(())
            }
        }
    }
}

/// Kills process groups a dead server left running for `job` (recorded in the job's `pids`
/// file), checking each process's environment so a reused pid is never hit.
fn kill_orphans(pid_file: &std::path::Path, job: &str) {
    let Ok(pids) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let marker = format!("TRAINING_JOB_NAME={job}\0");
    for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            tracing::warn!(job, pid, "killing an orphaned training process group");
            crate::runner::process::kill_group(pid);
        }
    }
    let _ = std::fs::remove_file(pid_file);
}
