//! The one writer of a job's status, secondary-status history and failure reason.
//!
//! Why one writer: the scheduler, the local runner, the Slurm executor and `StopTrainingJob`
//! all move jobs, and each used to carry its own copy of the messages and of the rules ("a
//! stop that came first wins", "the first host to reach a phase moves the job"). Here each
//! move is a method named after what happened; the messages are SageMaker's, written once;
//! every move goes through the store's state machine ([`crate::jobs::state::Phase`]) and is
//! then reported to the [`Observer`], so what a user sees is what `DescribeTrainingJob` says.

use std::sync::Arc;

use crate::db::{DbError, JobRecord, JobStore, MetricValue, Move};
use crate::jobs::failure::FailureReason;
use crate::jobs::state::Phase;

/// Receives what happens to a job as it happens.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// The job moved to a new phase.
    fn phase(&self, job: &JobRecord, message: &str);
    /// A host printed a line.
    fn log(&self, host: &str, line: &str);
    /// A platform message (also written to the job's platform log).
    fn info(&self, message: &str);
    /// A download started; the counters advance until it ends.
    fn download_started(&self, _channel: &str, _progress: Arc<trainyard_data::Progress>) {}
    /// The download of a channel ended.
    fn download_finished(&self, _channel: &str) {}
}

/// How a job's hosts ended, before the artifacts are uploaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every host exited 0.
    Completed,
    /// A host (or a stage before it) failed.
    Failed(FailureReason),
    /// `StopTrainingJob` (or Ctrl-C).
    Stopped,
    /// `MaxRuntimeInSeconds` ran out.
    MaxRuntime,
}

/// Why a running job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Someone asked (`StopTrainingJob`, Ctrl-C, SIGTERM to `trainyard train`).
    Requested,
    /// `MaxRuntimeInSeconds` ran out.
    Deadline,
}

impl StopCause {
    /// The outcome a stop of this cause leads to.
    pub fn outcome(self) -> Outcome {
        match self {
            StopCause::Requested => Outcome::Stopped,
            StopCause::Deadline => Outcome::MaxRuntime,
        }
    }
}

/// What `StopTrainingJob` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// The job now stops (or already was stopping).
    Stopping,
    /// The job has ended in this status; nothing to stop.
    Finished(crate::jobs::state::JobStatus),
    /// No such job.
    NotFound,
}

const DOWNLOADING: &str = "Downloading input data";
const TRAINING: &str = "Training image download completed. Training in progress.";
const PULLING: &str = "Downloading the training image";
const STOPPING: &str = "Stopping the training job";
const FAILED: &str = "Training job failed";

/// Orders the working phases: a host report never moves a job back.
fn rank(p: Phase) -> u8 {
    match p {
        Phase::Starting | Phase::Pending => 0,
        Phase::Downloading => 1,
        Phase::Training => 2,
        _ => 3,
    }
}

/// Writes job status.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    store: Arc<dyn JobStore>,
    observer: Arc<dyn Observer>,
}

impl Lifecycle {
    /// Moves jobs of `store`, reporting to `observer`.
    pub fn new(store: Arc<dyn JobStore>, observer: Arc<dyn Observer>) -> Self {
        Lifecycle { store, observer }
    }

    /// The same store, reporting to another observer (each run has its own).
    pub fn with_observer(&self, observer: Arc<dyn Observer>) -> Self {
        Lifecycle {
            store: self.store.clone(),
            observer,
        }
    }

    /// The job store (read access for the stages).
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    fn mv(
        &self,
        name: &str,
        to: Phase,
        message: &str,
        reason: Option<&FailureReason>,
    ) -> Result<JobRecord, DbError> {
        let text = reason.map(FailureReason::to_wire);
        let rec = self.store.move_to(
            name,
            Move {
                to,
                message,
                failure_reason: text.as_deref(),
            },
        )?;
        self.observer.phase(&rec, message);
        Ok(rec)
    }

    /// The stored job (an error if there is none).
    pub fn current(&self, name: &str) -> Result<JobRecord, DbError> {
        self.store
            .get(name)?
            .ok_or_else(|| DbError::NotFound(name.to_string()))
    }

    /// A host reached `Downloading` or `Training`: the first host to get there moves the job;
    /// later reports change nothing. Returns whether the job goes on (`false` once it is
    /// stopping: a stop that came first wins).
    pub fn reached(&self, name: &str, to: Phase) -> Result<bool, DbError> {
        let message = match to {
            Phase::Downloading => DOWNLOADING,
            Phase::Training => TRAINING,
            other => unreachable!("hosts report working phases only, not {other:?}"),
        };
        self.advance(name, to, message)
    }

    /// A host starts pulling the job's image: `Training` with SageMaker's "Downloading the
    /// training image" until a host reaches `Training` proper, which restates the message.
    pub fn pulling_image(&self, name: &str) -> Result<bool, DbError> {
        self.advance(name, Phase::Training, PULLING)
    }

    fn advance(&self, name: &str, to: Phase, message: &str) -> Result<bool, DbError> {
        // Hosts report concurrently: a move refused because another host (or a stop) got
        // there first is decided again on what is now stored.
        for _ in 0..3 {
            let rec = self.current(name)?;
            if rec.phase == Phase::Stopping || rec.phase.is_terminal() {
                return Ok(false);
            }
            if rank(rec.phase) > rank(to) {
                return Ok(true);
            }
            if rec.phase == to {
                // The image pulled: the same status with SageMaker's next message.
                let pulled = message == TRAINING
                    && rec.transitions.last().map(|t| t.message.as_str()) == Some(PULLING);
                if pulled {
                    self.mv(name, to, message, None)?;
                }
                return Ok(true);
            }
            match self.mv(name, to, message, None) {
                Ok(_) => return Ok(true),
                Err(DbError::IllegalTransition { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.current(name)?.phase != Phase::Stopping)
    }

    /// The job must stop: moves it to `Stopping` unless the API already did (it records a
    /// stop before signalling it).
    pub fn stopping(&self, name: &str, cause: StopCause) -> Result<(), DbError> {
        let rec = self.current(name)?;
        if rec.phase == Phase::Stopping || rec.phase.is_terminal() {
            return Ok(());
        }
        let message = match (cause, rec.phase) {
            (StopCause::Requested, _) => STOPPING,
            (StopCause::Deadline, Phase::Downloading) => {
                "Maximum runtime exceeded while downloading input data"
            }
            (StopCause::Deadline, _) => "Maximum runtime exceeded; stopping the training job",
        };
        self.mv(name, Phase::Stopping, message, None).map(|_| ())
    }

    /// Fails the job at once (nothing to upload: it failed before training).
    pub fn fail(&self, name: &str, reason: &FailureReason) -> Result<JobRecord, DbError> {
        self.mv(name, Phase::Failed, FAILED, Some(reason))
    }

    /// Ends a job whose run could not record its own end (`Err` from a run): `Failed`, with a
    /// disk-full reason naming the database when that is why, retried (the store gives up its
    /// reserve on a full disk, `SqliteStore::move_to`) until the store takes it, the job is
    /// no longer there to end, or `give_up_after` has passed. So a job does not stay
    /// `InProgress` with nothing running. `None` when it could not be recorded.
    pub async fn fail_after(
        &self,
        name: &str,
        error: &crate::runner::RunError,
        give_up_after: Option<std::time::Duration>,
    ) -> Option<JobRecord> {
        use crate::runner::RunError;
        let reason = match error {
            RunError::Db(e) if e.is_disk_full() => FailureReason::disk_full(format!(
                "recording the job's status in the job database ({e})"
            )),
            RunError::Io(e) if crate::jobs::failure::is_disk_full(e) => {
                FailureReason::disk_full(format!("preparing the job directory ({e})"))
            }
            other => FailureReason::internal(other.to_string()),
        };
        let deadline = give_up_after.map(|d| tokio::time::Instant::now() + d);
        let mut pause = std::time::Duration::from_secs(1);
        loop {
            match self.fail(name, &reason) {
                Ok(rec) => return Some(rec),
                Err(DbError::NotFound(_) | DbError::IllegalTransition { .. }) => {
                    return self.current(name).ok();
                }
                Err(e) => {
                    tracing::error!(job = %name, "cannot record the job's failure ({reason}); retrying in {pause:?}: {e}");
                    if deadline.is_some_and(|d| tokio::time::Instant::now() + pause > d) {
                        return None;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }

    /// The hosts trained and ended: the artifacts are uploaded next (a stopping job stays in
    /// `Stopping` while it uploads, as SageMaker's does).
    pub fn uploading(&self, name: &str) -> Result<(), DbError> {
        let rec = self.current(name)?;
        if rec.phase == Phase::Stopping {
            return Ok(());
        }
        self.mv(
            name,
            Phase::Uploading,
            "Uploading generated training model",
            None,
        )
        .map(|_| ())
    }

    /// The final move, once the artifacts are uploaded (or failed to be).
    pub fn end(
        &self,
        name: &str,
        outcome: Outcome,
        upload: Result<(), FailureReason>,
    ) -> Result<JobRecord, DbError> {
        // A stop that arrived while the artifacts were uploading: the job ends Stopped.
        let outcome = match outcome {
            Outcome::Completed if self.current(name)?.phase == Phase::Stopping => Outcome::Stopped,
            other => other,
        };
        match (outcome, upload) {
            (Outcome::Failed(reason), _) => self.fail(name, &reason),
            (_, Err(reason)) => self.mv(
                name,
                Phase::Failed,
                "Uploading the artifacts failed",
                Some(&reason),
            ),
            (Outcome::Completed, Ok(())) => {
                self.mv(name, Phase::Completed, "Training job completed", None)
            }
            (Outcome::Stopped, Ok(())) => {
                self.mv(name, Phase::Stopped, "Training job stopped", None)
            }
            (Outcome::MaxRuntime, Ok(())) => self.mv(
                name,
                Phase::MaxRuntimeExceeded,
                "Training job stopped: MaxRuntimeInSeconds exceeded",
                None,
            ),
        }
    }

    /// Records the final metric values (`FinalMetricDataList`).
    pub fn metrics(&self, name: &str, metrics: &[MetricValue]) -> Result<(), DbError> {
        if metrics.is_empty() {
            return Ok(());
        }
        self.store.set_metrics(name, metrics)
    }

    /// Records the metric time series (CloudWatch `GetMetricStatistics`).
    pub fn metric_series(&self, name: &str, points: &[MetricValue]) -> Result<(), DbError> {
        if points.is_empty() {
            return Ok(());
        }
        self.store.set_metric_series(name, points)
    }

    /// The scheduler cannot start the job yet.
    pub fn pending(&self, name: &str, why: &str) -> Result<(), DbError> {
        if self.current(name)?.phase == Phase::Starting {
            self.mv(name, Phase::Pending, why, None)?;
        }
        Ok(())
    }

    /// The scheduler starts a job that was waiting.
    pub fn starting(&self, name: &str) -> Result<(), DbError> {
        if self.current(name)?.phase == Phase::Pending {
            self.mv(
                name,
                Phase::Starting,
                "Preparing the instances for training",
                None,
            )?;
        }
        Ok(())
    }

    /// `StopTrainingJob`: records the stop (before anyone signals it).
    pub fn request_stop(&self, name: &str) -> Result<StopRequest, DbError> {
        let Some(rec) = self.store.get(name)? else {
            return Ok(StopRequest::NotFound);
        };
        match rec.phase {
            Phase::Stopping => Ok(StopRequest::Stopping),
            p if p.is_terminal() => Ok(StopRequest::Finished(p.status())),
            _ => {
                self.mv(&rec.name, Phase::Stopping, STOPPING, None)?;
                Ok(StopRequest::Stopping)
            }
        }
    }

    /// A stopped job that no runner had started.
    pub fn stopped_before_start(&self, name: &str) -> Result<(), DbError> {
        self.mv(
            name,
            Phase::Stopped,
            "Training job stopped before it started",
            None,
        )
        .map(|_| ())
    }

    /// After a restart: settles a job the previous server left running or stopping.
    pub fn abandoned(&self, rec: &JobRecord) -> Result<(), DbError> {
        let reason = FailureReason::internal(
            "the trainyard server restarted while the job was running; its processes were stopped and it was not resumed",
        );
        if rec.phase == Phase::Stopping {
            self.mv(
                &rec.name,
                Phase::Stopped,
                "Training job stopped (the trainyard server restarted while it was stopping)",
                None,
            )
        } else {
            self.mv(
                &rec.name,
                Phase::Failed,
                "Training job failed: the trainyard server restarted",
                Some(&reason),
            )
        }
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SqliteStore;

    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);
    impl Observer for Seen {
        fn phase(&self, job: &JobRecord, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}: {message}", job.phase.secondary()));
        }
        fn log(&self, _: &str, _: &str) {}
        fn info(&self, _: &str) {}
    }

    fn job() -> (Lifecycle, Arc<Seen>) {
        let store: Arc<dyn JobStore> = Arc::new(SqliteStore::in_memory().unwrap());
        let mut req = crate::jobs::spec::CreateTrainingJobRequest::from_json(
            r#"{"TrainingJobName":"j","RoleArn":"arn:aws:iam::000000000000:role/r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
               "AlgorithmSpecification":{"TrainingInputMode":"File","TrainingImage":"host"},
               "ResourceConfig":{"InstanceType":"ml.m5.large","InstanceCount":2,"VolumeSizeInGB":1},
               "StoppingCondition":{"MaxRuntimeInSeconds":60}}"#,
        )
        .unwrap();
        req.apply_defaults();
        store.create("j", "arn", &req, "Starting", None).unwrap();
        let seen = Arc::new(Seen::default());
        (Lifecycle::new(store, seen.clone()), seen)
    }

    #[test]
    fn hosts_move_the_job_forward_once_and_never_back() {
        let (lc, seen) = job();
        assert!(lc.reached("j", Phase::Downloading).unwrap());
        assert!(lc.reached("j", Phase::Training).unwrap());
        assert!(
            lc.reached("j", Phase::Downloading).unwrap(),
            "host 2 is late"
        );
        assert!(lc.reached("j", Phase::Training).unwrap());
        lc.uploading("j").unwrap();
        lc.end("j", Outcome::Completed, Ok(())).unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                "Downloading: Downloading input data",
                "Training: Training image download completed. Training in progress.",
                "Uploading: Uploading generated training model",
                "Completed: Training job completed"
            ]
        );
    }

    #[test]
    fn hosts_reporting_at_once_move_the_job_once() {
        let (lc, seen) = job();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    assert!(lc.reached("j", Phase::Downloading).unwrap());
                    assert!(lc.reached("j", Phase::Training).unwrap());
                });
            }
        });
        assert_eq!(
            seen.0.lock().unwrap().len(),
            2,
            "{:?}",
            seen.0.lock().unwrap()
        );
    }

    #[test]
    fn a_stop_recorded_first_wins_and_deadlines_say_where_they_hit() {
        let (lc, _) = job();
        lc.reached("j", Phase::Downloading).unwrap();
        lc.stopping("j", StopCause::Deadline).unwrap();
        let rec = lc.store().get("j").unwrap().unwrap();
        assert_eq!(
            rec.transitions.last().unwrap().message,
            "Maximum runtime exceeded while downloading input data"
        );
        assert!(!lc.reached("j", Phase::Training).unwrap(), "stopping wins");
        lc.stopping("j", StopCause::Requested).unwrap();
        assert_eq!(
            lc.request_stop("j").unwrap(),
            StopRequest::Stopping,
            "idempotent"
        );
        lc.uploading("j").unwrap();
        let end = lc.end("j", Outcome::MaxRuntime, Ok(())).unwrap();
        assert_eq!(end.phase, Phase::MaxRuntimeExceeded);
        assert_eq!(
            lc.request_stop("j").unwrap(),
            StopRequest::Finished(crate::jobs::state::JobStatus::Stopped)
        );
        assert_eq!(lc.request_stop("nope").unwrap(), StopRequest::NotFound);
    }

    #[test]
    fn a_stop_during_the_upload_is_accepted_and_the_job_ends_stopped() {
        let (lc, _) = job();
        lc.reached("j", Phase::Training).unwrap();
        lc.uploading("j").unwrap();
        assert_eq!(lc.request_stop("j").unwrap(), StopRequest::Stopping);
        let end = lc.end("j", Outcome::Completed, Ok(())).unwrap();
        assert_eq!(end.phase, Phase::Stopped);
    }

    #[test]
    fn failure_reasons_are_stored_with_their_prefix_and_upload_failures_fail() {
        let (lc, _) = job();
        lc.reached("j", Phase::Training).unwrap();
        lc.uploading("j").unwrap();
        let rec = lc
            .end(
                "j",
                Outcome::Completed,
                Err(FailureReason::client("uploading model.tar.gz: denied")),
            )
            .unwrap();
        assert_eq!(rec.phase, Phase::Failed);
        assert_eq!(
            rec.failure_reason.as_deref(),
            Some("ClientError: uploading model.tar.gz: denied")
        );
    }
}
