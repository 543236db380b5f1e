//! Warm pools (`ResourceConfig.KeepAlivePeriodInSeconds`).
//!
//! Why: consecutive jobs of an experiment should not pay the start-up cost again, and a job
//! should find what its predecessor cached (SageMaker's persistent cache directory). What a
//! pool retains here is what a local "instance" is made of: each host's persistent cache
//! directory (`/opt/ml/sagemaker/warmpoolcache`, also named by
//! `SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY`) and, for a multi-host job, its network (the
//! namespaces and the bridge).
//!
//! What: the bookkeeping follows `doc/contract/api.md` §7. Each job with a keep-alive period has one
//! row: `Cold` while it runs on resources of its own (no `WarmPoolStatus` is shown yet),
//! `InUse` while it runs on a pool it took over, `Available` after it ended while the period
//! lasts, then `Reused` (a matching job took the pool), or `Terminated` (the period elapsed or
//! `UpdateTrainingJob` set it to 0). Expiry is evaluated when a row is read, so a pool's
//! status is right even when no server runs; [`reap`] frees the resources of pools no live
//! row refers to any more.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Settings;
use crate::db::{DbError, JobStore, Timestamp};
use crate::jobs::spec::CreateTrainingJobRequest;
use crate::jobs::state::JobStatus;

/// Where the persistent cache directory appears inside a job.
pub const CACHE_MOUNT: &str = "/opt/ml/sagemaker/warmpoolcache";
/// The variable naming it.
pub const CACHE_ENV: &str = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY";

/// A row's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// The job runs on new resources that become a pool when it ends.
    Cold,
    /// The job runs on a pool it took over.
    InUse,
    /// The job ended; its resources wait for a matching job.
    Available,
    /// A later job took the resources.
    Reused,
    /// The resources were released.
    Terminated,
}

impl PoolState {
    /// The stored (and, except `Cold`, the API's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Cold => "Cold",
            PoolState::InUse => "InUse",
            PoolState::Available => "Available",
            PoolState::Reused => "Reused",
            PoolState::Terminated => "Terminated",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Cold" => PoolState::Cold,
            "InUse" => PoolState::InUse,
            "Available" => PoolState::Available,
            "Reused" => PoolState::Reused,
            "Terminated" => PoolState::Terminated,
            _ => return None,
        })
    }
}

/// One job's warm-pool row.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmPool {
    /// The job.
    pub job: String,
    /// The physical pool (its resources are named after it): the name of the job that
    /// created it.
    pub pool_id: String,
    /// Stored state (see [`WarmPool::state_at`] for the effective one).
    pub state: PoolState,
    /// What a job must equal to take the pool over ([`match_key`]).
    pub match_key: String,
    /// The job's keep-alive period.
    pub keep_alive: u64,
    /// When the pool became available (the job's end).
    pub available_at: Option<Timestamp>,
    /// When it stopped being available (reused or terminated early).
    pub ended_at: Option<Timestamp>,
    /// The job that took it over.
    pub reused_by: Option<String>,
}

impl WarmPool {
    /// When an available pool expires.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.available_at.map(|a| a + self.keep_alive as f64)
    }

    /// The state at `now`: an available pool past its period is terminated.
    pub fn state_at(&self, now: Timestamp) -> PoolState {
        match (self.state, self.expires_at()) {
            (PoolState::Available, Some(end)) if now >= end => PoolState::Terminated,
            (s, _) => s,
        }
    }

    /// Seconds the resources were retained while available (`ResourceRetainedBillableTime`).
    pub fn retained_seconds(&self, now: Timestamp) -> u64 {
        let Some(start) = self.available_at else {
            return 0;
        };
        let end = match self.state {
            PoolState::Available => now.min(self.expires_at().unwrap_or(now)),
            _ => self
                .ended_at
                .unwrap_or_else(|| self.expires_at().unwrap_or(start)),
        };
        (end - start).max(0.0) as u64
    }

    /// The `WarmPoolStatus` member of DescribeTrainingJob, absent while a cold job runs.
    pub fn describe(&self, now: Timestamp) -> Option<Value> {
        let state = self.state_at(now);
        if state == PoolState::Cold {
            return None;
        }
        let mut v = json!({
            "Status": state.as_str(),
            "ResourceRetainedBillableTimeInSeconds": self.retained_seconds(now),
        });
        if let Some(by) = &self.reused_by {
            v["ReusedByJob"] = json!(by);
        }
        Some(v)
    }

    /// Whether the pool's resources must be kept.
    pub fn is_live(&self, now: Timestamp) -> bool {
        matches!(
            self.state_at(now),
            PoolState::Cold | PoolState::InUse | PoolState::Available
        )
    }
}

/// Whether a job that ended this way leaves its resources as a pool (`doc/contract/api.md` §7):
/// after completing, stopping, or failing with an algorithm or client error; not after a
/// platform error, which may have left them unhealthy.
pub fn kept_after(status: JobStatus, failure_reason: Option<&str>) -> bool {
    match status {
        JobStatus::Completed | JobStatus::Stopped => true,
        JobStatus::Failed => !failure_reason
            .unwrap_or("")
            .starts_with("InternalServerError"),
        _ => false,
    }
}

/// The keep-alive period of a request, when it asks for a pool.
pub fn keep_alive(req: &CreateTrainingJobRequest) -> Option<u64> {
    req.resource_config
        .as_ref()
        .and_then(|r| r.keep_alive_period_in_seconds)
        .filter(|k| *k > 0)
        .map(|k| k as u64)
}

/// What two jobs must share for one to run on the other's pool (`doc/contract/api.md` §7): the role,
/// the resource shape, the VPC and encryption settings, and, since the resources here are
/// the image's environment, the image; plus the session tags the job runs with (issue: a
/// pool is reused only by a job with identical tags, so no tenant finds another's cache).
pub fn match_key(req: &CreateTrainingJobRequest, session_tags: &[(String, String)]) -> String {
    let rc = req.resource_config.as_ref();
    let mut vpc = req
        .vpc_config
        .as_ref()
        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    for field in ["SecurityGroupIds", "Subnets"] {
        if let Some(list) = vpc.get_mut(field).and_then(Value::as_array_mut) {
            list.sort_by_key(|a| a.to_string());
        }
    }
    let mut tags: Vec<(String, String)> = session_tags
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    tags.sort();
    json!({
        "RoleArn": req.role_arn,
        "InstanceType": rc.and_then(|r| r.instance_type.clone()),
        "InstanceCount": rc.and_then(|r| r.instance_count),
        "VolumeSizeInGB": rc.and_then(|r| r.volume_size_in_g_b),
        "VolumeKmsKeyId": rc.and_then(|r| r.volume_kms_key_id.clone()),
        "VpcConfig": vpc,
        "EnableInterContainerTrafficEncryption": req.enable_inter_container_traffic_encryption.unwrap_or(false),
        "EnableNetworkIsolation": req.enable_network_isolation.unwrap_or(false),
        "TrainingImage": req.algorithm_specification.as_ref().and_then(|a| a.training_image.clone()),
        "SessionTags": tags,
    })
    .to_string()
}

/// UpdateTrainingJob's rules for `ResourceConfig.KeepAlivePeriodInSeconds`: 0 to 21600, and
/// only for a job that asked for a warm pool whose pool has not been reused or terminated.
/// The error is the message of a `ValidationException`.
pub fn update_keep_alive(store: &dyn JobStore, job: &str, keep_alive: i64) -> Result<(), String> {
    if !(0..=21600).contains(&keep_alive) {
        return Err(format!(
            "1 validation error detected: Value '{keep_alive}' at 'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy constraint: Member must have value less than or equal to 21600 and greater than or equal to 0"
        ));
    }
    let now = crate::db::now();
    let before = store.warm_pool(job).map_err(|e| e.to_string())?;
    match before.map(|p| p.state_at(now)) {
        None => Err(format!(
            "training job {job} has no warm pool (it was created without KeepAlivePeriodInSeconds)"
        )),
        Some(s @ (PoolState::Reused | PoolState::Terminated)) => Err(format!(
            "the warm pool of training job {job} is {} and cannot be updated",
            s.as_str()
        )),
        Some(_) => store
            .set_keep_alive(job, keep_alive as u64, now)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// The directory holding a pool's resources.
pub fn pool_dir(settings: &Settings, pool_id: &str) -> PathBuf {
    settings.home.join("warm-pools").join(pool_id)
}

/// Host `index`'s persistent cache directory in a pool (created if missing).
pub fn cache_dir(settings: &Settings, pool_id: &str, index: usize) -> std::io::Result<PathBuf> {
    let dir = pool_dir(settings, pool_id).join(format!("algo-{}", index + 1));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Frees the resources (cache directories, networks) of every pool no live row refers to,
/// and returns the pool ids it freed. Safe to run at any time: a pool is created as a live
/// (`Cold`) row before any of its resources exist.
pub fn reap(settings: &Settings, store: &dyn JobStore) -> Result<Vec<String>, DbError> {
    let now = crate::db::now();
    let live: std::collections::BTreeSet<String> = store
        .warm_pools()?
        .into_iter()
        .filter(|p| p.is_live(now))
        .map(|p| p.pool_id)
        .collect();
    let root = settings.home.join("warm-pools");
    let mut freed = Vec::new();
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if !live.contains(&id) {
            free(&root, &id);
            freed.push(id);
        }
    }
    Ok(freed)
}

fn free(root: &Path, id: &str) {
    if root.join(id).join("network").exists() {
        crate::runner::network::JobNetwork::remove_stale(&network_name(id));
    }
    let _ = std::fs::remove_dir_all(root.join(id));
    tracing::info!(pool = %id, "warm pool released");
}

/// The name a pool's network is created under (distinct from any job's own network).
pub fn network_name(pool_id: &str) -> String {
    format!("pool/{pool_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(state: PoolState, available_at: Option<f64>, ended_at: Option<f64>) -> WarmPool {
        WarmPool {
            job: "j".into(),
            pool_id: "j".into(),
            state,
            match_key: String::new(),
            keep_alive: 60,
            available_at,
            ended_at,
            reused_by: None,
        }
    }

    #[test]
    fn platform_errors_end_the_pool_other_ends_keep_it() {
        assert!(kept_after(JobStatus::Completed, None));
        assert!(kept_after(JobStatus::Stopped, None));
        assert!(kept_after(
            JobStatus::Failed,
            Some("AlgorithmError: algo-1 exited with code 7")
        ));
        assert!(kept_after(
            JobStatus::Failed,
            Some("ClientError: channel train: ...")
        ));
        assert!(!kept_after(
            JobStatus::Failed,
            Some("InternalServerError: the trainyard server restarted")
        ));
        assert!(!kept_after(JobStatus::InProgress, None));
    }

    #[test]
    fn available_pools_expire_when_read() {
        let p = pool(PoolState::Available, Some(100.0), None);
        assert_eq!(p.state_at(159.0), PoolState::Available);
        assert_eq!(p.state_at(160.0), PoolState::Terminated);
        assert_eq!(p.retained_seconds(130.0), 30);
        assert_eq!(p.retained_seconds(500.0), 60, "billing stops at expiry");
        assert!(p.is_live(120.0) && !p.is_live(161.0));
    }

    #[test]
    fn cold_jobs_show_no_status_and_reused_ones_name_the_taker() {
        assert_eq!(pool(PoolState::Cold, None, None).describe(0.0), None);
        let mut p = pool(PoolState::Reused, Some(100.0), Some(110.0));
        p.reused_by = Some("next".into());
        let d = p.describe(1000.0).unwrap();
        assert_eq!(d["Status"], "Reused");
        assert_eq!(d["ReusedByJob"], "next");
        assert_eq!(d["ResourceRetainedBillableTimeInSeconds"], 10);
    }

    #[test]
    fn the_match_key_ignores_order_and_tag_key_case_but_not_values() {
        let req = |ty: &str| {
            let mut r = CreateTrainingJobRequest::from_json(&format!(
                r#"{{"TrainingJobName":"a","RoleArn":"arn:aws:iam::000000000000:role/r",
                    "OutputDataConfig":{{"S3OutputPath":"s3://b/o"}},
                    "AlgorithmSpecification":{{"TrainingInputMode":"File","TrainingImage":"host"}},
                    "ResourceConfig":{{"InstanceType":"{ty}","InstanceCount":1,"VolumeSizeInGB":1,"KeepAlivePeriodInSeconds":60}}}}"#
            ))
            .unwrap();
            r.apply_defaults();
            r
        };
        let t = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let a = match_key(
            &req("ml.m5.large"),
            &t(&[("tenant-id", "a"), ("team", "x")]),
        );
        let b = match_key(
            &req("ml.m5.large"),
            &t(&[("team", "x"), ("Tenant-Id", "a")]),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            match_key(
                &req("ml.m5.large"),
                &t(&[("tenant-id", "b"), ("team", "x")])
            )
        );
        assert_ne!(
            a,
            match_key(
                &req("ml.m5.xlarge"),
                &t(&[("tenant-id", "a"), ("team", "x")])
            )
        );
        assert_eq!(keep_alive(&req("ml.m5.large")), Some(60));
    }
}
