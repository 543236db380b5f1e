//! The Slurm executor: a job becomes one Slurm allocation with one task per host.
//!
//! Why Slurm first: it is what GPU clusters run, and Debian ships it, so it is tested here
//! against real `slurmctld`/`slurmd`. What: `sbatch` submits a batch script whose single step,
//! `srun --kill-on-bad-exit=1`, starts `trainyard host run` once per host (task k is
//! `algo-{k+1}`); one task failing ends the others, as one host failing fails a SageMaker job.
//! Tasks talk to the server through [`super::protocol`] with a token made for the job and
//! handed over in their environment (with the rest of the server's environment, which is how
//! object-store credentials reach the nodes: `--export=ALL`). The server watches the
//! allocation with `squeue`/`scontrol`, enforces `MaxRuntimeInSeconds` itself besides Slurm's
//! time limit, stops with `scancel --signal=TERM` then `scancel` after the grace period, and
//! when the allocation is gone merges the hosts' artifacts and ends the job through the same
//! code as a local run. The token and the Slurm job id are kept in the job directory, so a
//! restarted server re-attaches to allocations that still run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::HostExit;
use crate::config::Settings;
use crate::db::{JobRecord, MetricValue};
use crate::jobs::failure::FailureReason;
use crate::lifecycle::{Lifecycle, Outcome, StopCause};
use crate::runner::authorize::{self, Grant};
use crate::runner::finish::{self, Artifacts, Finish};
use crate::runner::host::HostEnd;
use crate::runner::jobdir::{JobDir, Journal};
use crate::runner::plan::JobPlan;
use crate::runner::supervise::{HostResult, JobClock};
use crate::runner::{RunContext, RunError, Runner};

mod hosts;
mod queue;

pub use hosts::HostCallError;
use hosts::{LiveJob, random_token, write_private};
pub use queue::{SlurmCommandError, SlurmState, query};
use queue::{run, shell_quote};

/// How jobs are submitted, resolved from [`crate::config::SlurmSettings`] for a server.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// Partition (the cluster's default when unset).
    pub partition: Option<String>,
    /// The server's URL as nodes reach it.
    pub callback_url: String,
    /// The `trainyard` binary on the nodes.
    pub binary: PathBuf,
    /// Node-local scratch directory for host trees.
    pub scratch: PathBuf,
    /// Further `sbatch` arguments.
    pub extra_args: Vec<String>,
    /// Where a node writes the allocation's own output.
    pub output: String,
}

impl SlurmConfig {
    /// The settings, with the defaults that depend on the server filled in: the callback URL
    /// is the listening address `listen`, the binary is this one.
    pub fn resolve(
        s: &crate::config::SlurmSettings,
        listen: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
        let callback_url = s.callback_url.clone().unwrap_or_else(|| {
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                listen.ip().to_string()
            };
            format!("http://{host}:{}", listen.port())
        });
        Ok(SlurmConfig {
            partition: s.partition.clone(),
            callback_url,
            binary: match &s.binary {
                Some(b) => b.clone(),
                None => std::env::current_exe().map_err(|e| {
                    std::io::Error::new(e.kind(), format!("locating the trainyard binary: {e}"))
                })?,
            },
            scratch: s.scratch.clone(),
            extra_args: s.sbatch_args.clone(),
            output: s.output.clone(),
        })
    }
}
/// The Slurm executor.
#[derive(Debug)]
pub struct SlurmExecutor {
    settings: Settings,
    lifecycle: Lifecycle,
    runner: Runner,
    config: SlurmConfig,
    live: Mutex<HashMap<String, Arc<LiveJob>>>,
}
impl SlurmExecutor {
    /// An executor submitting to the Slurm cluster this machine is a client of.
    pub fn new(runner: Runner, config: SlurmConfig) -> Self {
        SlurmExecutor {
            settings: runner.settings().clone(),
            lifecycle: runner.lifecycle().clone(),
            runner,
            config,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn slurm_dir(&self, name: &str) -> PathBuf {
        self.settings.job_dir(name).slurm()
    }
    /// The `sbatch` command for a job (the token goes in the environment, never on a
    /// command line).
    fn sbatch(&self, rec: &JobRecord, script: &Path, token: &str) -> Command {
        let req = &rec.request;
        let n = req.instance_count();
        let ty = req
            .resource_config
            .as_ref()
            .and_then(|r| r.instance_type.as_deref())
            .unwrap_or("local");
        let minutes = req.max_runtime_seconds().div_ceil(60) + 1;
        let mut cmd = Command::new("sbatch");
        cmd.args(["--parsable", "--export=ALL"])
            .arg(format!("--job-name=trainyard-{}", rec.name))
            .arg(format!("--ntasks={n}"))
            .arg(format!("--time={minutes}"))
            .arg(format!("--output={}", self.config.output));
        let row = self.settings.instance_types.resolve(ty).ok().flatten();
        if let Some(t) = &row {
            cmd.arg(format!("--cpus-per-task={}", t.vcpus));
            cmd.arg(format!(
                "--mem-per-cpu={}M",
                (t.memory_mib / u64::from(t.vcpus)).max(1)
            ));
            if t.gpus > 0 {
                cmd.arg(format!("--gpus-per-task={}", t.gpus));
            }
            if let Some(c) = &t.slurm_constraint {
                cmd.arg(format!("--constraint={c}"));
            }
        }
        let partition = row
            .and_then(|t| t.slurm_partition)
            .or_else(|| self.config.partition.clone());
        if let Some(p) = partition {
            cmd.arg(format!("--partition={p}"));
        }
        cmd.args(&self.config.extra_args)
            .arg(script)
            .env(super::protocol::TOKEN_ENV, token)
            .env("TRAINYARD_SLURM_SCRATCH", &self.config.scratch);
        cmd
    }

    /// Runs a job in `Starting` on the cluster until it ends.
    pub async fn run(&self, name: &str, ctx: RunContext) -> Result<JobRecord, RunError> {
        use tracing::Instrument;
        let span = tracing::info_span!("job", job = %name, executor = "slurm");
        self.run_in_span(name, ctx).instrument(span).await
    }

    async fn run_in_span(&self, name: &str, ctx: RunContext) -> Result<JobRecord, RunError> {
        let lc = self.lifecycle.with_observer(ctx.observer.clone());
        let rec = lc.current(name)?;
        let dir = JobDir::of(&self.settings, &rec.name);
        dir.reset()?;
        std::fs::create_dir_all(dir.slurm())?;
        let journal = dir.journal(ctx.observer.clone())?;
        // Planned on the server too, so a job that cannot run fails before it takes a Slurm
        // allocation, and the finish stage uploads with the same plan and grant.
        let (plan, grant) = match self.plan_and_grant(&rec) {
            Ok(p) => p,
            Err(reason) => return Ok(self.fail(&lc, name, &reason, &journal)?),
        };
        let token = random_token();
        write_private(&dir.slurm().join("token"), token.as_bytes())?;
        let n = rec.request.instance_count();
        let script = dir.slurm().join("batch.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# trainyard job {name}: one task per host.\nmkdir -p \"$TRAINYARD_SLURM_SCRATCH\"\nexec srun --kill-on-bad-exit=1 --ntasks={n} {} host run --server {} --job {}\n",
                shell_quote(&self.config.binary.to_string_lossy()),
                shell_quote(&self.config.callback_url),
                shell_quote(&rec.name),
            ),
        )?;
        let live = self.register_live(&rec, token.clone(), plan, grant);
        let submitted = run(&mut self.sbatch(&rec, &script, &token));
        let id = match submitted {
            Ok(out) => out.trim().split(';').next().unwrap_or("").to_string(),
            Err(e) => {
                self.forget(&rec.name);
                let reason = FailureReason::internal(format!("submitting to Slurm: {e:#}"));
                return Ok(self.fail(&lc, name, &reason, &journal)?);
            }
        };
        std::fs::write(dir.slurm().join("job_id"), &id)?;
        journal.info(&format!(
            "Submitted to Slurm as job {id}: {n} task(s), one per host"
        ));
        let result = self.watch(&lc, &rec, &id, live, ctx, &journal).await;
        self.forget(&rec.name);
        result
    }

    /// The job's plan and grant, decided by the server as for a local run.
    fn plan_and_grant(&self, rec: &JobRecord) -> Result<(Arc<JobPlan>, Grant), FailureReason> {
        let plan = JobPlan::build(&self.settings, &rec.arn, &rec.request)?;
        let creator = self
            .lifecycle
            .store()
            .caller(&rec.name)
            .map_err(|e| FailureReason::internal(e.to_string()))?;
        let grant = authorize::decide(
            &self.settings,
            self.runner.identity(),
            rec,
            creator.as_deref(),
        )?;
        Ok((Arc::new(plan), grant))
    }

    /// Fails the job with `reason`, also written to its platform log.
    fn fail(
        &self,
        lc: &Lifecycle,
        name: &str,
        reason: &FailureReason,
        journal: &Journal,
    ) -> Result<JobRecord, crate::db::DbError> {
        journal.info(&reason.to_string());
        lc.fail(name, reason)
    }
    /// Whether a job left by a previous server still runs on Slurm; if so, returns its
    /// Slurm id after restoring what host calls need.
    pub fn reattachable(&self, rec: &JobRecord) -> Option<String> {
        let dir = self.slurm_dir(&rec.name);
        let id = std::fs::read_to_string(dir.join("job_id")).ok()?;
        let token = std::fs::read_to_string(dir.join("token")).ok()?;
        let state = query(id.trim())?;
        if !state.active() {
            return None;
        }
        let (plan, grant) = match self.plan_and_grant(rec) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(job = %rec.name, "re-deciding the job's plan and grant: {e}");
                return None;
            }
        };
        let live = self.register_live(rec, token, plan, grant);
        if let Ok(text) = std::fs::read_to_string(dir.join("addresses.json")) {
            if let Ok(addrs) = serde_json::from_str::<Vec<String>>(&text) {
                let mut a = live.addresses.lock().unwrap_or_else(|p| p.into_inner());
                for (slot, addr) in a.iter_mut().zip(addrs) {
                    *slot = Some(addr);
                }
            }
        }
        Some(id.trim().to_string())
    }

    /// Watches a job a previous server submitted (see [`SlurmExecutor::reattachable`]).
    pub async fn reattach(
        &self,
        name: &str,
        id: &str,
        ctx: RunContext,
    ) -> Result<JobRecord, RunError> {
        let lc = self.lifecycle.with_observer(ctx.observer.clone());
        let rec = lc.current(name)?;
        let journal = self.settings.job_dir(name).journal(ctx.observer.clone())?;
        journal.info(&format!(
            "The trainyard server restarted; re-attached to Slurm job {id}"
        ));
        let Some(live) = self.live_job(name) else {
            let reason = FailureReason::internal(format!(
                "Slurm job {id} was not registered for re-attachment"
            ));
            return Ok(self.fail(&lc, name, &reason, &journal)?);
        };
        let result = self.watch(&lc, &rec, id, live, ctx, &journal).await;
        self.forget(name);
        result
    }

    async fn watch(
        &self,
        lc: &Lifecycle,
        rec: &JobRecord,
        id: &str,
        live: Arc<LiveJob>,
        ctx: RunContext,
        journal: &Journal,
    ) -> Result<JobRecord, RunError> {
        let name = rec.name.as_str();
        // From the training start when a previous server saw it, else from now.
        let spent = rec
            .training_start_time
            .map_or(0.0, |t| (crate::db::now() - t).clamp(0.0, 1e9));
        let mut clock = JobClock::new(
            Duration::from_secs(rec.request.max_runtime_seconds())
                .saturating_sub(Duration::from_secs_f64(spent)),
            ctx.stop.clone(),
        );
        let mut term_sent = false;
        let grace = self.settings.stop_grace;
        let mut stopping: Option<StopCause> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let final_state = loop {
            tokio::select! {
                _ = live.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                cause = clock.expired(), if stopping.is_none() => {
                    lc.stopping(name, cause)?;
                    stopping = Some(cause);
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                    journal.info(&format!("Slurm job {id} still running {} s after SIGTERM: scancel", grace.as_secs_f64()));
                    if let Err(e) = run(Command::new("scancel").arg(id)) {
                        journal.info(&format!("scancel {id}: {e:#}"));
                    }
                    kill_at = None;
                }
            }
            if stopping.is_some() && !term_sent {
                term_sent = true;
                journal.info(&format!("scancel --signal=TERM {id}"));
                if let Err(e) = run(Command::new("scancel").args(["--signal=TERM", id])) {
                    journal.info(&format!("scancel --signal=TERM {id}: {e:#}"));
                }
                // The tasks get the grace period, and a little more to report and send.
                kill_at = Some(tokio::time::Instant::now() + grace + Duration::from_secs(5));
            }
            let polled = tokio::task::spawn_blocking({
                let id = id.to_string();
                move || query(&id)
            })
            .await
            .map_err(|e| std::io::Error::other(format!("polling Slurm: {e}")))?;
            match polled {
                Some(st) if st.never_starts() && stopping.is_none() => {
                    // Slurm keeps such a job pending for ever: end it and say why.
                    let _ = run(Command::new("scancel").arg(id));
                    let reason = FailureReason::capacity(format!(
                        "Slurm cannot run job {id} as requested ({}): the instance type's CPUs, memory or GPUs per host, or its partition and constraint, exceed what the cluster offers",
                        st.describe()
                    ));
                    return Ok(self.fail(lc, name, &reason, journal)?);
                }
                Some(st) if st.active() => continue,
                other => break other,
            }
        };
        let state = final_state.unwrap_or(SlurmState {
            state: "UNKNOWN".into(),
            exit_code: None,
            reason: Some("Slurm no longer knows the job".into()),
        });
        journal.info(&format!("Slurm job {id} ended: {}", state.describe()));
        // The last events may still be in flight.
        let all_reported = || {
            live.exits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(Option::is_some)
        };
        let settle = tokio::time::Instant::now() + Duration::from_secs(3);
        while !all_reported() && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let exits = live.exits.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.conclude(lc, rec, id, &state, &live, exits, stopping, journal)
            .await
    }

    /// Ends the job from what its hosts reported, through the same finish stage as a local
    /// run; the hosts' archives are copied entry by entry into the job's archives.
    #[allow(clippy::too_many_arguments, reason = "one call site")]
    async fn conclude(
        &self,
        lc: &Lifecycle,
        rec: &JobRecord,
        id: &str,
        state: &SlurmState,
        live: &LiveJob,
        exits: Vec<Option<HostExit>>,
        stopping: Option<StopCause>,
        journal: &Journal,
    ) -> Result<JobRecord, RunError> {
        let name = rec.name.as_str();
        lc.metrics(name, &merge_metrics(&exits))?;
        let ends = host_ends(&exits, id, state);
        let n = rec.request.instance_count();
        let outcome = match finish::outcome(stopping, &ends, n) {
            Outcome::Completed if state.state != "COMPLETED" => {
                Outcome::Failed(FailureReason::internal(format!(
                    "every host completed but Slurm job {id} is {}",
                    state.describe()
                )))
            }
            other => other,
        };
        let trained = ends.iter().any(|e| e.trained);
        let plan = &live.plan;
        let storage =
            match authorize::storage(&self.settings, self.runner.storage(), &live.grant, name) {
                Ok((s, _)) => s,
                Err(reason) => return Ok(self.fail(lc, name, &reason, journal)?),
            };
        let dir = self.settings.job_dir(name);
        let artifacts = Artifacts::sent(&dir, n);
        let finish = Finish {
            lifecycle: lc,
            plan,
            dir: &dir,
            storage: &storage,
            journal,
        };
        Ok(finish.run(outcome, trained, artifacts).await?)
    }
}

/// Each host's end as the finish stage takes it; a host that never reported died without a
/// word (its node or task vanished), which explains a failure before merely terminated hosts.
fn host_ends(exits: &[Option<HostExit>], id: &str, state: &SlurmState) -> Vec<HostEnd> {
    exits
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let host = crate::runner::jobdir::host_name(i);
            let (result, trained) = match e {
                None => (
                    HostResult::Failed(FailureReason::algorithm(format!(
                        "{host} (Slurm task {i}) ended without reporting: Slurm job {id} is {}",
                        state.describe()
                    ))),
                    true,
                ),
                Some(e) => {
                    let result = match (e.status.as_str(), &e.failure_reason) {
                        ("Completed", _) => HostResult::Completed,
                        ("Stopped", _) => HostResult::Stopped,
                        (_, Some(r)) => HostResult::Failed(FailureReason::parse(r)),
                        (_, None) => HostResult::Failed(FailureReason::algorithm(format!(
                            "{host} failed (Slurm job {id} is {})",
                            state.describe()
                        ))),
                    };
                    (result, e.trained)
                }
            };
            HostEnd {
                index: i,
                result,
                trained,
            }
        })
        .collect()
}

fn merge_metrics(exits: &[Option<HostExit>]) -> Vec<MetricValue> {
    let mut last: HashMap<String, MetricValue> = HashMap::new();
    for (name, value, timestamp) in exits
        .iter()
        .flatten()
        .flat_map(|e| e.metrics.iter().cloned())
    {
        let newer = last.get(&name).is_none_or(|m| m.timestamp <= timestamp);
        if newer {
            last.insert(
                name.clone(),
                MetricValue {
                    name,
                    value,
                    timestamp,
                },
            );
        }
    }
    let mut out: Vec<MetricValue> = last.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_quote_and_metrics() {
        let st = SlurmState {
            state: "FAILED".into(),
            exit_code: Some("0:9".into()),
            reason: Some("NonZeroExitCode".into()),
        };
        assert!(!st.active());
        let stuck = SlurmState {
            state: "PENDING".into(),
            exit_code: None,
            reason: Some("PartitionConfig".into()),
        };
        assert!(stuck.active() && stuck.never_starts());
        let waiting = SlurmState {
            reason: Some("Resources".into()),
            ..stuck
        };
        assert!(!waiting.never_starts(), "waiting for resources is normal");
        assert_eq!(
            st.describe(),
            "FAILED, exit code 0:9, reason NonZeroExitCode"
        );
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
        let exit = |m: Vec<(String, f64, f64)>| {
            Some(HostExit {
                status: "Completed".into(),
                failure_reason: None,
                metrics: m,
                trained: true,
            })
        };
        let merged = merge_metrics(&[
            exit(vec![("loss".into(), 0.5, 10.0)]),
            exit(vec![("loss".into(), 0.4, 12.0), ("acc".into(), 0.9, 1.0)]),
            None,
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[1].name.as_str(), merged[1].value), ("loss", 0.4));
    }

    #[test]
    fn the_root_cause_is_the_host_that_vanished_or_failed_on_its_own() {
        let failed = |r: &str| {
            Some(HostExit {
                status: "Failed".into(),
                failure_reason: Some(r.into()),
                metrics: Vec::new(),
                trained: true,
            })
        };
        let st = SlurmState {
            state: "FAILED".into(),
            exit_code: Some("1:0".into()),
            reason: None,
        };
        let cause = |exits: &[Option<HostExit>]| match finish::outcome(
            None,
            &host_ends(exits, "7", &st),
            exits.len(),
        ) {
            Outcome::Failed(r) => r.to_string(),
            other => format!("{other:?}"),
        };
        let term = failed("AlgorithmError: algo-1 killed by signal SIGTERM");
        assert_eq!(
            cause(&[term.clone(), None]),
            "AlgorithmError: algo-2 (Slurm task 1) ended without reporting: Slurm job 7 is FAILED, exit code 1:0"
        );
        let own = failed("AlgorithmError: algo-2 exited with status 3");
        assert_eq!(
            cause(&[term.clone(), own]),
            "AlgorithmError: algo-2 exited with status 3",
            "the host that failed on its own, not the one srun terminated"
        );
        assert_eq!(
            cause(&[term]),
            "AlgorithmError: algo-1 killed by signal SIGTERM"
        );
        let reported = failed("my own words");
        assert_eq!(
            cause(&[reported]),
            "my own words",
            "the algorithm's text as written"
        );
    }
}
