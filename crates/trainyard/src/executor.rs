//! The seam between the control plane and where a job's hosts run.
//!
//! Why: the API, the job records and validation are the same whether hosts are processes on
//! this machine or tasks on a cluster; only this enum knows which. What: `Local` is the
//! [`Runner`] (processes here); `Slurm` places hosts on a Slurm cluster
//! ([`crate::cluster::slurm`]). A Kubernetes executor would be a third arm: one Indexed Job
//! per training job (completion index = host index), a headless service giving `algo-k` a
//! DNS name, and the same `trainyard host run` in each pod talking to the server.

use std::sync::Arc;

use crate::cluster::slurm::SlurmExecutor;
use crate::db::JobRecord;
use crate::runner::{RunContext, RunError, Runner};

/// Where jobs' hosts run (`TRAINYARD_EXECUTOR=local|slurm`).
#[derive(Debug, Clone)]
pub enum Executor {
    /// Processes on this machine.
    Local(Box<Runner>),
    /// Tasks of a Slurm allocation.
    Slurm(Arc<SlurmExecutor>),
}

impl Executor {
    /// Runs a job in `Starting` until it ends.
    pub async fn run(&self, name: &str, ctx: RunContext) -> Result<JobRecord, RunError> {
        match self {
            Executor::Local(r) => r.run(name, ctx).await,
            Executor::Slurm(s) => s.run(name, ctx).await,
        }
    }

    /// After a server restart: the handle of a job that still runs elsewhere and can be
    /// watched again (local processes cannot: their output pipes died with the server).
    pub fn reattachable(&self, rec: &JobRecord) -> Option<String> {
        match self {
            Executor::Local(_) => None,
            Executor::Slurm(s) => s.reattachable(rec),
        }
    }

    /// Watches a job found by [`Executor::reattachable`] until it ends.
    pub async fn reattach(
        &self,
        name: &str,
        handle: &str,
        ctx: RunContext,
    ) -> Result<JobRecord, RunError> {
        match self {
            Executor::Local(_) => Err(RunError::Io(std::io::Error::other(format!(
                "training job {name:?}: local processes cannot be re-attached ({handle})"
            )))),
            Executor::Slurm(s) => s.reattach(name, handle, ctx).await,
        }
    }

    /// The cluster executor, which answers the hosts' calls.
    pub fn cluster(&self) -> Option<&Arc<SlurmExecutor>> {
        match self {
            Executor::Local(_) => None,
            Executor::Slurm(s) => Some(s),
        }
    }
}
