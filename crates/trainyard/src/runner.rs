//! Running a job: one way through five stages, each in the module named after it.
//!
//! ```text
//! JobRecord ─ plan ──────────► JobPlan          locations parsed, channels typed, command
//!           ─ authorize ─────► Grant, Storage   the job principal (ABAC), scoped storage
//!           ─ per host (HostRun, no database):
//!               layout ──────► HostLayout       /opt/ml tree and config files
//!               inputs ──────► InputGuard       File download, FastFile, Pipe, checkpoints
//!               isolation ───► binds, netns     namespaces, cgroups, file-system channels
//!               supervise ───► HostResult       spawn; stop → SIGTERM, grace, SIGKILL
//!           ─ finish ────────► JobRecord        outcome, artifacts written once, upload
//! ```
//!
//! Status moves only through [`crate::lifecycle`]. The local executor ([`local::Runner`]) runs
//! every host of a job as processes on this machine, shares what they can share (the listing
//! of each channel, the job network, the isolation probe) and applies the job-level stop
//! policy ([`supervise::JobClock`]); the Slurm executor runs the same [`host::HostRun`] on each
//! node (`cluster::node`) and ends through the same [`finish`].

pub mod artifacts;
pub mod authorize;
pub mod beneath;
pub mod cgroup;
pub mod checkpoints;
pub mod container;
pub mod env;
pub mod finish;
pub mod host;
pub mod image;
pub mod inputs;
pub mod isolation;
pub mod jobdir;
pub mod layout;
pub mod local;
pub mod log_window;
pub mod logs;
pub mod network;
pub mod plan;
pub mod process;
pub mod supervise;
pub mod toolkit_env;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::db::DbError;
pub use crate::lifecycle::{Observer, Outcome};
pub use local::Runner;

/// Why a run could not be carried to a terminal status (the job's own failures are
/// recorded in its status instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The job's directory could not be prepared.
    #[error("preparing the job directory: {0}")]
    Io(#[from] std::io::Error),
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
}
