//! The server's side of the host calls (`cluster/protocol.rs`): the nodes of a running job
//! register, fetch their assignment, report events and send their archives here.
//!
//! Why apart from the executor: these calls arrive on the API's connections while the
//! executor watches the allocation; they share only [`LiveJob`], the job's token and what its
//! hosts said, and every call is checked against the token first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::SlurmExecutor;
use crate::cluster::protocol::{Assignment, Event, HostExit};
use crate::db::JobRecord;
use crate::identity::constant_time_eq;
use crate::jobs::state::Phase;
use crate::runner::authorize::Grant;
use crate::runner::plan::JobPlan;

/// What the server knows of one job's hosts while it runs.
#[derive(Debug)]
pub(super) struct LiveJob {
    pub(super) token: String,
    pub(super) grant: Grant,
    /// The job's plan, made once when it was submitted (or re-attached); its request is what
    /// the nodes are told.
    pub(super) plan: Arc<JobPlan>,
    pub(super) addresses: Mutex<Vec<Option<String>>>,
    pub(super) exits: Mutex<Vec<Option<HostExit>>>,
    pub(super) changed: Notify,
}

/// Why a host call was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostCallError {
    /// Unknown job, or not running on Slurm.
    #[error("training job {0:?} has no hosts running on the cluster")]
    NotRunning(String),
    /// Wrong or missing token.
    #[error("the job token does not match")]
    Forbidden,
    /// Malformed call.
    #[error("{0}")]
    Invalid(String),
    /// Not every host has registered yet.
    #[error("{0} of {1} hosts registered")]
    Waiting(usize, usize),
    /// Storing what the host sent failed.
    #[error("{0}")]
    Io(String),
}

pub(super) fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system's random source");
    hex::encode(b)
}

impl SlurmExecutor {
    pub(super) fn live_job(&self, name: &str) -> Option<Arc<LiveJob>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    pub(super) fn register_live(
        &self,
        rec: &JobRecord,
        token: String,
        plan: Arc<JobPlan>,
        grant: Grant,
    ) -> Arc<LiveJob> {
        let hosts = rec.request.instance_count();
        let name = &rec.name;
        let live = Arc::new(LiveJob {
            token,
            plan,
            grant,
            addresses: Mutex::new(vec![None; hosts]),
            exits: Mutex::new(vec![None; hosts]),
            changed: Notify::new(),
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_ascii_lowercase(), live.clone());
        live
    }

    pub(super) fn forget(&self, name: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name.to_ascii_lowercase());
    }

    pub(super) fn artifact_path(&self, name: &str, index: usize, file: &str) -> PathBuf {
        self.settings.job_dir(name).host_artifact(index, file)
    }

    fn authorize(
        &self,
        name: &str,
        index: usize,
        token: &str,
    ) -> Result<Arc<LiveJob>, HostCallError> {
        let live = self
            .live_job(name)
            .ok_or_else(|| HostCallError::NotRunning(name.to_string()))?;
        if !constant_time_eq(live.token.as_bytes(), token.as_bytes()) {
            return Err(HostCallError::Forbidden);
        }
        if index >= live.exits.lock().unwrap_or_else(|p| p.into_inner()).len() {
            return Err(HostCallError::Invalid(format!(
                "no host with index {index}"
            )));
        }
        Ok(live)
    }

    /// `register`.
    pub fn register(
        &self,
        name: &str,
        index: usize,
        token: &str,
        address: &str,
    ) -> Result<(), HostCallError> {
        let live = self.authorize(name, index, token)?;
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(HostCallError::Invalid(format!(
                "{address:?} is not an IP address"
            )));
        }
        let all: Option<Vec<String>> = {
            let mut a = live.addresses.lock().unwrap_or_else(|p| p.into_inner());
            a[index] = Some(address.to_string());
            a.iter().cloned().collect()
        };
        if let Some(all) = all {
            let _ = std::fs::write(
                self.slurm_dir(name).join("addresses.json"),
                serde_json::to_vec(&all).unwrap_or_default(),
            );
        }
        live.changed.notify_one();
        Ok(())
    }

    /// `assignment`.
    pub fn assignment(
        &self,
        name: &str,
        index: usize,
        token: &str,
    ) -> Result<Assignment, HostCallError> {
        let live = self.authorize(name, index, token)?;
        let addresses = live
            .addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let known = addresses.iter().filter(|a| a.is_some()).count();
        if known < addresses.len() {
            return Err(HostCallError::Waiting(known, addresses.len()));
        }
        Ok(Assignment {
            arn: live.plan.arn.clone(),
            request: serde_json::to_value(&live.plan.request)
                .map_err(|e| HostCallError::Io(e.to_string()))?,
            addresses: addresses.into_iter().flatten().collect(),
            grant: live.grant.clone(),
        })
    }

    /// `events`.
    pub fn events(
        &self,
        name: &str,
        index: usize,
        token: &str,
        events: Vec<Event>,
    ) -> Result<(), HostCallError> {
        let live = self.authorize(name, index, token)?;
        let job_dir = self.settings.job_dir(name);
        let host = format!("algo-{}", index + 1);
        let io = |e: std::io::Error| HostCallError::Io(e.to_string());
        let mut log = String::new();
        let mut platform = String::new();
        for e in events {
            match e {
                Event::Phase(p) => self.reached(name, &p),
                Event::Log(line) => {
                    log.push_str(&crate::runner::logs::format_event(crate::db::now(), &line));
                    log.push('\n');
                }
                Event::Info(msg) => {
                    let stamp = crate::jobs::describe::format_time(crate::db::now());
                    platform.push_str(&format!("{stamp} {host}: {msg}\n"));
                }
                Event::Exit(exit) => {
                    live.exits.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(exit);
                    live.changed.notify_one();
                }
            }
        }
        append(&job_dir.host_log(&host), &log).map_err(io)?;
        append(&job_dir.platform_log(), &platform).map_err(io)?;
        Ok(())
    }

    /// A host reached a phase: the lifecycle moves the job if it is the first.
    fn reached(&self, name: &str, secondary: &str) {
        let to = match secondary {
            "Downloading" => Phase::Downloading,
            "Training" => Phase::Training,
            _ => return,
        };
        if let Err(e) = self.lifecycle.reached(name, to) {
            tracing::warn!(job = name, "recording {secondary}: {e}");
        }
    }

    /// `artifacts/{file}`: stores the body (written to a temporary name, renamed when
    /// complete).
    pub async fn artifact(
        &self,
        name: &str,
        index: usize,
        token: &str,
        file: &str,
        body: axum::body::Body,
    ) -> Result<(), HostCallError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        self.authorize(name, index, token)?;
        if !crate::cluster::protocol::ARTIFACTS.contains(&file) {
            return Err(HostCallError::Invalid(format!("unknown artifact {file:?}")));
        }
        let io = |e: std::io::Error| HostCallError::Io(e.to_string());
        let dest = self.artifact_path(name, index, file);
        tokio::fs::create_dir_all(dest.parent().expect("has a parent"))
            .await
            .map_err(io)?;
        let tmp = dest.with_extension("partial");
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| HostCallError::Io(e.to_string()))?;
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)?;
        drop(f);
        tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
        Ok(())
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if text.is_empty() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

pub(super) fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?
        .write_all(body)
}
