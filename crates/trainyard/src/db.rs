//! Durable job records.
//!
//! Everything `DescribeTrainingJob` reports is stored here: the validated request, the current
//! phase, the secondary-status history, timestamps, failure reason and final metrics. The rest
//! of trainyard talks to the [`JobStore`] trait so a PostgreSQL store can follow; the default is
//! SQLite (`sqlite.rs`). A status change is one transaction that checks the move against the
//! state machine, closes the previous history entry and opens the next, so a crash can never
//! leave a half-recorded transition.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::jobs::spec::CreateTrainingJobRequest;
use crate::jobs::state::Phase;

/// Seconds since the Unix epoch, with a fractional part (the API's timestamp format).
pub type Timestamp = f64;

/// The current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One entry of `SecondaryStatusTransitions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Secondary status name.
    pub status: String,
    /// When it began.
    pub start_time: Timestamp,
    /// When the next one began (or the job ended).
    pub end_time: Option<Timestamp>,
    /// Free text shown to the user.
    pub message: String,
}

/// The last value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// `MetricDefinitions[].Name`.
    pub name: String,
    /// Last parsed value.
    pub value: f64,
    /// When the log line was seen.
    pub timestamp: Timestamp,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Job name as submitted.
    pub name: String,
    /// Job ARN.
    pub arn: String,
    /// The validated request with defaults applied.
    pub request: CreateTrainingJobRequest,
    /// Current phase.
    pub phase: Phase,
    /// Why the job failed.
    pub failure_reason: Option<String>,
    /// Creation time.
    pub creation_time: Timestamp,
    /// Entry into Downloading or Training, whichever came first.
    pub training_start_time: Option<Timestamp>,
    /// When the job ended.
    pub training_end_time: Option<Timestamp>,
    /// Last status change.
    pub last_modified_time: Timestamp,
    /// Secondary status history, oldest first.
    pub transitions: Vec<Transition>,
    /// Final metric values.
    pub metrics: Vec<MetricValue>,
}

/// The fields of `TrainingJobSummary`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// Job name.
    pub name: String,
    /// Job ARN.
    pub arn: String,
    /// Current phase.
    pub phase: Phase,
    /// Creation time.
    pub creation_time: Timestamp,
    /// Last status change.
    pub last_modified_time: Timestamp,
    /// When the job ended.
    pub training_end_time: Option<Timestamp>,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A job of that name exists (names are unique regardless of case).
    #[error("training job {0:?} already exists")]
    AlreadyExists(String),
    /// No such job.
    #[error("training job {0:?} does not exist")]
    NotFound(String),
    /// The requested status change is not a legal move.
    #[error("training job {name:?} cannot move from {from:?} to {to:?}")]
    IllegalTransition {
        /// Job name.
        name: String,
        /// Current phase.
        from: Phase,
        /// Requested phase.
        to: Phase,
    },
    /// The database failed.
    #[error("job database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database's disk is full: SQLite's `SQLITE_FULL`, or an I/O error while the file
    /// system holding the database has no space left (SQLite reports a `-shm` or WAL file it
    /// cannot grow as an I/O error).
    #[error("job database {}: No space left on device ({message})", path.display())]
    DiskFull {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's error.
        message: String,
    },
    /// A stored record could not be decoded.
    #[error("job database: corrupt record for {name:?}: {message}")]
    Corrupt {
        /// Job name.
        name: String,
        /// What was wrong.
        message: String,
    },
}

impl DbError {
    /// Whether the database could not write because its disk is full (`SQLITE_FULL`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            DbError::DiskFull { .. } => true,
            _ => false,
        }
    }
}

/// A status change to record.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    /// Target phase.
    pub to: Phase,
    /// Message for the history entry.
    pub message: &'a str,
    /// Failure reason (recorded when the target is `Failed`).
    pub failure_reason: Option<&'a str>,
}

/// Job persistence.
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Records a new job in `Starting`. Fails with [`DbError::AlreadyExists`] on a duplicate name.
    fn create(
        &self,
        name: &str,
        arn: &str,
        request: &CreateTrainingJobRequest,
        message: &str,
        caller: Option<&str>,
    ) -> Result<JobRecord, DbError>;
    /// The identity that created a job (JSON), if recorded.
    fn caller(&self, name: &str) -> Result<Option<String>, DbError>;
    /// Every job's summary fields, oldest first, without loading requests or histories.
    fn summaries(&self) -> Result<Vec<JobSummary>, DbError>;
    /// Loads a job by name (case-insensitive).
    fn get(&self, name: &str) -> Result<Option<JobRecord>, DbError>;
    /// All jobs, oldest first.
    fn list(&self) -> Result<Vec<JobRecord>, DbError>;
    /// Applies a status change if legal; returns the new record.
    fn move_to(&self, name: &str, mv: Move<'_>) -> Result<JobRecord, DbError>;
    /// Replaces the final metric values.
    fn set_metrics(&self, name: &str, metrics: &[MetricValue]) -> Result<(), DbError>;
    /// Replaces the job's metric time series (every value its `MetricDefinitions` extracted,
    /// bounded by the runner), which CloudWatch's `GetMetricStatistics` answers from.
    fn set_metric_series(&self, name: &str, points: &[MetricValue]) -> Result<(), DbError>;
    /// The job's metric time series, by metric name then time.
    fn metric_series(&self, name: &str) -> Result<Vec<MetricValue>, DbError>;
    /// Every warm-pool row (`warm_pools.rs`).
    fn warm_pools(&self) -> Result<Vec<crate::warm_pools::WarmPool>, DbError>;
    /// The warm-pool row of one job.
    fn warm_pool(&self, job: &str) -> Result<Option<crate::warm_pools::WarmPool>, DbError>;
    /// A job with a keep-alive period starts: in one transaction, it takes over the oldest
    /// unexpired available pool with the same match key (that job's row becomes `Reused`),
    /// or records a `Cold` row for resources of its own.
    fn start_warm_pool(
        &self,
        job: &str,
        match_key: &str,
        keep_alive: u64,
        now: Timestamp,
    ) -> Result<crate::warm_pools::WarmPool, DbError>;
    /// The job ended: its resources become available (`keep`) or are terminated.
    fn end_warm_pool(&self, job: &str, keep: bool, now: Timestamp) -> Result<(), DbError>;
    /// UpdateTrainingJob: a new keep-alive period; 0 terminates an available pool.
    fn set_keep_alive(
        &self,
        job: &str,
        keep_alive: u64,
        now: Timestamp,
    ) -> Result<Option<crate::warm_pools::WarmPool>, DbError>;
    /// Jobs not yet in a terminal phase (for recovery after a restart).
    fn unfinished(&self) -> Result<Vec<JobRecord>, DbError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|j| !j.phase.is_terminal())
            .collect())
    }
}
