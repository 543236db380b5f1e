//! Stage 5, upload: how the hosts ended becomes the job's outcome, its artifacts are
//! written once and uploaded, and the lifecycle records the end.
//!
//! Why shared: the local executor and the Slurm executor both end here, with the hosts'
//! ends ([`HostEnd`]) and where their artifacts are (directories here, archives a node
//! sent). The rules (which host's failure explains the job, whether anything is uploaded)
//! exist once.

use super::artifacts::{self, Source};
use super::host::HostEnd;
use super::jobdir::{JobDir, Journal};
use super::plan::JobPlan;
use super::supervise::HostResult;
use crate::db::{DbError, JobRecord};
use crate::jobs::failure::FailureReason;
use crate::lifecycle::{Lifecycle, Outcome, StopCause};
use crate::storage::Storage;

/// The host whose end explains a failed job: a host that failed on its own comes before one
/// that was merely terminated because another failed (`srun --kill-on-bad-exit` and the
/// local executor both stop the others), and among equals the lowest index.
pub fn root_cause(ends: &[HostEnd]) -> Option<&FailureReason> {
    ends.iter()
        .filter_map(|e| match &e.result {
            HostResult::Failed(r) => Some((r.is_termination(), e.index, r)),
            _ => None,
        })
        .min_by_key(|(terminated, index, _)| (*terminated, *index))
        .map(|(_, _, r)| r)
}

/// The job's outcome: a stop decides it; else the root cause of a failure; else success
/// when every host completed.
pub fn outcome(stop: Option<StopCause>, ends: &[HostEnd], host_count: usize) -> Outcome {
    if let Some(cause) = stop {
        return cause.outcome();
    }
    if let Some(reason) = root_cause(ends) {
        return Outcome::Failed(reason.clone());
    }
    let completed = ends
        .iter()
        .filter(|e| e.result == HostResult::Completed)
        .count();
    if completed == host_count {
        Outcome::Completed
    } else {
        Outcome::Failed(FailureReason::internal(format!(
            "{completed} of {host_count} hosts completed and none reported a failure"
        )))
    }
}

/// What the finish stage needs.
#[derive(Debug)]
pub struct Finish<'a> {
    /// The status writer.
    pub lifecycle: &'a Lifecycle,
    /// The job.
    pub plan: &'a JobPlan,
    /// Its directory here.
    pub dir: &'a JobDir,
    /// Its authorized storage.
    pub storage: &'a Storage,
    /// Platform messages.
    pub journal: &'a Journal,
}

/// Each host's `/opt/ml/model` and `/opt/ml/output/data`, in host order.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// Sources of `model.tar.gz`.
    pub model: Vec<Source>,
    /// Sources of `output.tar.gz`.
    pub output: Vec<Source>,
}

impl Artifacts {
    /// The directories hosts on this machine left their artifacts in.
    pub fn left_in(hosts: &[super::layout::HostLayout]) -> Self {
        Artifacts {
            model: hosts
                .iter()
                .map(|h| Source::dir(&h.root, super::layout::MODEL_DIR))
                .collect(),
            output: hosts
                .iter()
                .map(|h| Source::dir(&h.root, super::layout::OUTPUT_DATA_DIR))
                .collect(),
        }
    }

    /// The archives `hosts` cluster nodes sent (a host that sent none adds nothing).
    pub fn sent(dir: &JobDir, hosts: usize) -> Self {
        let of = |file| {
            (0..hosts)
                .map(|i| Source::Archive(dir.host_artifact(i, file)))
                .collect()
        };
        Artifacts {
            model: of("model.tar.gz"),
            output: of("output.tar.gz"),
        }
    }
}

impl Finish<'_> {
    /// Ends the job: a failure before any process started fails it at once; otherwise the
    /// artifacts are uploaded (also after a stop, as SageMaker does) and the job ends.
    pub async fn run(
        &self,
        outcome: Outcome,
        trained: bool,
        artifacts: Artifacts,
    ) -> Result<JobRecord, DbError> {
        let name = &self.plan.name;
        if let (Outcome::Failed(reason), false) = (&outcome, trained) {
            self.journal.info(&reason.to_string());
            return self.lifecycle.fail(name, reason);
        }
        if matches!(outcome, Outcome::Completed | Outcome::Failed(_)) {
            match self.lifecycle.uploading(name) {
                Ok(()) => {}
                // No room to record the upload: the job ends now, with its own failure when it
                // has one (a host that found the disk full says where), which is what the
                // database's reserve is kept for.
                Err(e) if e.is_disk_full() => {
                    let reason = match outcome {
                        Outcome::Failed(reason) => reason,
                        _ => FailureReason::disk_full(format!(
                            "recording the job's status in the job database ({e})"
                        )),
                    };
                    self.journal.info(&reason.to_string());
                    return self.lifecycle.fail(name, &reason);
                }
                Err(e) => return Err(e),
            }
        }
        let upload = self.upload(artifacts).await;
        match (&outcome, &upload) {
            (Outcome::Failed(reason), _) => {
                self.journal.info(&format!("Training job failed: {reason}"))
            }
            (_, Err(reason)) => self.journal.info(&reason.to_string()),
            _ => {}
        }
        self.lifecycle.end(name, outcome, upload)
    }

    async fn upload(&self, artifacts: Artifacts) -> Result<(), FailureReason> {
        let out = self.storage.resolve(&self.plan.output.location);
        let uri = &self.plan.output.uri;
        for (file, sources) in [
            ("model.tar.gz", artifacts.model),
            ("output.tar.gz", artifacts.output),
        ] {
            let size = artifacts::pack_and_upload(
                sources,
                self.dir.artifact(file),
                file,
                &out,
                &self.plan.name,
            )
            .await
            .map_err(|e| {
                FailureReason::client_or_disk_full(
                    &format!(
                        "writing the artifacts in {}",
                        self.dir.artifact(file).display()
                    ),
                    format!(
                        "{e} to {}",
                        artifacts::artifact_uri(uri, &self.plan.name, file)
                    ),
                )
            })?;
            self.journal.info(&format!(
                "Uploaded {} ({size} bytes)",
                artifacts::artifact_uri(uri, &self.plan.name, file)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(index: usize, result: HostResult) -> HostEnd {
        HostEnd {
            index,
            result,
            trained: true,
        }
    }

    #[test]
    fn the_host_that_failed_on_its_own_explains_the_job() {
        let term = HostResult::Failed(FailureReason::algorithm("algo-1 killed by signal SIGTERM"));
        let own = HostResult::Failed(FailureReason::algorithm("algo-3 exit code 2"));
        let ends = [
            end(0, term.clone()),
            end(1, HostResult::Stopped),
            end(2, own),
        ];
        assert_eq!(
            outcome(None, &ends, 3),
            Outcome::Failed(FailureReason::algorithm("algo-3 exit code 2"))
        );
        assert_eq!(
            outcome(None, &[end(1, term.clone()), end(0, term)], 2),
            Outcome::Failed(FailureReason::algorithm("algo-1 killed by signal SIGTERM")),
            "the lowest index among equals"
        );
        assert_eq!(
            outcome(Some(StopCause::Deadline), &ends, 3),
            Outcome::MaxRuntime,
            "a stop decides"
        );
        let done = [end(0, HostResult::Completed), end(1, HostResult::Completed)];
        assert_eq!(outcome(None, &done, 2), Outcome::Completed);
        assert!(
            matches!(outcome(None, &done[..1], 2), Outcome::Failed(r) if r.message.contains("1 of 2 hosts")),
            "a host that never reported is not a success"
        );
    }
}
