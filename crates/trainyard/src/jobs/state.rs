//! The training-job status model: primary status, secondary status, and which moves are legal.
//!
//! SageMaker reports two statuses: `TrainingJobStatus` (InProgress, Completed, ...) and a finer
//! `SecondaryStatus` (Starting, Downloading, Training, ...), with an append-only history of
//! secondary transitions. Both are derived from one value here, [`Phase`], so they can never
//! disagree, and the legal moves are one table ([`Phase::can_move_to`]) with a test beside it.

use std::fmt;

/// `TrainingJobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    InProgress,
    Completed,
    Failed,
    Stopping,
    Stopped,
}

impl JobStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Stopping => "Stopping",
            JobStatus::Stopped => "Stopped",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::InProgress,
            Self::Completed,
            Self::Failed,
            Self::Stopping,
            Self::Stopped,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Stopped
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is: the pair (primary, secondary) SageMaker reports, as one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// InProgress/Starting: preparing hosts.
    Starting,
    /// InProgress/Pending: waiting for capacity.
    Pending,
    /// InProgress/Downloading: File-mode input being fetched.
    Downloading,
    /// InProgress/Training: the training process runs.
    Training,
    /// InProgress/Uploading: artifacts being uploaded.
    Uploading,
    /// Stopping/Stopping: a stop was requested or the runtime limit hit.
    Stopping,
    /// Completed/Completed.
    Completed,
    /// Failed/Failed.
    Failed,
    /// Stopped/Stopped.
    Stopped,
    /// Stopped/MaxRuntimeExceeded.
    MaxRuntimeExceeded,
}

impl Phase {
    /// The primary status.
    pub fn status(self) -> JobStatus {
        match self {
            Phase::Starting
            | Phase::Pending
            | Phase::Downloading
            | Phase::Training
            | Phase::Uploading => JobStatus::InProgress,
            Phase::Stopping => JobStatus::Stopping,
            Phase::Completed => JobStatus::Completed,
            Phase::Failed => JobStatus::Failed,
            Phase::Stopped | Phase::MaxRuntimeExceeded => JobStatus::Stopped,
        }
    }

    /// The secondary status wire name.
    pub fn secondary(self) -> &'static str {
        match self {
            Phase::Starting => "Starting",
            Phase::Pending => "Pending",
            Phase::Downloading => "Downloading",
            Phase::Training => "Training",
            Phase::Uploading => "Uploading",
            Phase::Stopping => "Stopping",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
            Phase::Stopped => "Stopped",
            Phase::MaxRuntimeExceeded => "MaxRuntimeExceeded",
        }
    }

    /// Rebuilds a phase from its stored pair.
    pub fn from_pair(status: &str, secondary: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.status().as_str() == status && p.secondary() == secondary)
    }

    const ALL: [Phase; 10] = [
        Phase::Starting,
        Phase::Pending,
        Phase::Downloading,
        Phase::Training,
        Phase::Uploading,
        Phase::Stopping,
        Phase::Completed,
        Phase::Failed,
        Phase::Stopped,
        Phase::MaxRuntimeExceeded,
    ];

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        self.status().is_terminal()
    }

    /// The legal moves (`doc/contract/api.md` §5.3). A stopping job stays `Stopping` while it uploads.
    pub fn can_move_to(self, next: Phase) -> bool {
        use Phase::*;
        match self {
            Starting => matches!(next, Pending | Downloading | Training | Stopping | Failed),
            Pending => matches!(next, Starting | Stopping | Failed),
            Downloading => matches!(next, Training | Stopping | Failed),
            Training => matches!(next, Uploading | Stopping | Failed),
            // A stop during the upload is accepted; the upload finishes and the job is Stopped.
            Uploading => matches!(next, Completed | Stopping | Failed),
            Stopping => matches!(next, Stopped | MaxRuntimeExceeded | Failed),
            Completed | Failed | Stopped | MaxRuntimeExceeded => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match_the_documented_table() {
        for p in Phase::ALL {
            let allowed: &[&str] = match p.status() {
                JobStatus::InProgress => &[
                    "Starting",
                    "Pending",
                    "Downloading",
                    "Training",
                    "Uploading",
                ],
                JobStatus::Completed => &["Completed"],
                JobStatus::Failed => &["Failed"],
                JobStatus::Stopping => &["Stopping"],
                JobStatus::Stopped => &["Stopped", "MaxRuntimeExceeded"],
            };
            assert!(allowed.contains(&p.secondary()), "{p:?}");
            assert_eq!(
                Phase::from_pair(p.status().as_str(), p.secondary()),
                Some(p)
            );
        }
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use Phase::*;
        let happy = [Starting, Downloading, Training, Uploading, Completed];
        assert!(happy.windows(2).all(|w| w[0].can_move_to(w[1])));
        assert!(Training.can_move_to(Stopping) && Stopping.can_move_to(MaxRuntimeExceeded));
        assert!(Training.can_move_to(Failed) && Uploading.can_move_to(Failed));
        for terminal in [Completed, Failed, Stopped, MaxRuntimeExceeded] {
            assert!(
                Phase::ALL.iter().all(|n| !terminal.can_move_to(*n)),
                "{terminal:?} must be final"
            );
        }
        assert!(
            !Training.can_move_to(Completed),
            "a job uploads before it completes"
        );
        assert!(!Downloading.can_move_to(Starting));
    }
}
