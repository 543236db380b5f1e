//! Settings of one trainyard installation, from the environment and `$TRAINYARD_HOME`.
//!
//! With nothing configured, trainyard is self-contained: state, the embedded object store and
//! job trees all live under `$TRAINYARD_HOME` (default `~/.trainyard`). Every knob is one field
//! here with its default and the environment variable that sets it, so the documentation and
//! the code cannot drift apart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::images::ImageTable;

/// Installation settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root of all state (`TRAINYARD_HOME`, default `~/.trainyard`).
    pub home: PathBuf,
    /// Region in ARNs and given to jobs as `AWS_REGION` (`TRAINYARD_REGION`, default `us-east-1`).
    pub region: String,
    /// Account id in ARNs (`TRAINYARD_ACCOUNT_ID`, default `000000000000`).
    pub account_id: String,
    /// Time between SIGTERM and SIGKILL when a job is stopped
    /// (`TRAINYARD_STOP_GRACE_SECONDS`, default 120 as SageMaker's `docker stop -t 120`).
    pub stop_grace: Duration,
    /// Image name → runtime (`$TRAINYARD_HOME/images.json` merged over the built-in `host`).
    pub images: ImageTable,
    /// Whether jobs get a private mount namespace with `/opt/ml` at its real path
    /// (`TRAINYARD_ISOLATION`, `on` by default; `off` runs processes on the host tree with
    /// `SM_*` paths pointing into it, e.g. inside a container without `CAP_SYS_ADMIN`).
    pub isolation: bool,
    /// File-system ids → directories (`$TRAINYARD_HOME/filesystems.json`).
    pub file_systems: crate::filesystems::FileSystems,
    /// The STS of the S3-compatible store (`TRAINYARD_STORE_STS`: its URL, or `aws` for AWS's
    /// own): when set, each ABAC job accesses the store with credentials from `AssumeRole` of
    /// its execution role with its session tags, so the store enforces its policies too.
    pub store_sts: Option<String>,
    /// Instance types → CPUs, GPUs, memory (`$TRAINYARD_HOME/instance-types.json` merged over
    /// the built-in rows).
    pub instance_types: crate::instance_types::InstanceTypes,
    /// Where `s3://` locations live (`TRAINYARD_STORE`): the embedded directory store, or an
    /// S3-compatible service configured the AWS way (`AWS_ENDPOINT_URL[_S3]`, `AWS_REGION`,
    /// keys or a profile). Default: S3 when an endpoint variable is set, else embedded.
    pub object_store: ObjectStore,
}

/// The backend of `s3://` locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStore {
    /// `$TRAINYARD_HOME/store/<bucket>/<key>`.
    Embedded,
    /// An S3-compatible service (boxed: the configuration is large and read once).
    S3(Box<trainyard_s3::S3Config>),
}

impl ObjectStore {
    fn from_env() -> Result<Self> {
        let has_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        let choice = std::env::var("TRAINYARD_STORE")
            .ok()
            .filter(|v| !v.is_empty());
        match choice.as_deref() {
            Some("embedded") => Ok(ObjectStore::Embedded),
            Some("s3") => Ok(ObjectStore::S3(Box::new(
                trainyard_s3::S3Config::from_env().context("configuring the S3 client")?,
            ))),
            None if has_endpoint => Ok(ObjectStore::S3(Box::new(
                trainyard_s3::S3Config::from_env().context("configuring the S3 client")?,
            ))),
            None => Ok(ObjectStore::Embedded),
            Some(other) => {
                anyhow::bail!("TRAINYARD_STORE must be `embedded` or `s3`, got {other:?}")
            }
        }
    }
}

impl Settings {
    /// Reads settings from the environment.
    pub fn from_env() -> Result<Self> {
        let home = match std::env::var_os("TRAINYARD_HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h),
            _ => {
                let base =
                    std::env::var_os("HOME").context("neither TRAINYARD_HOME nor HOME is set")?;
                PathBuf::from(base).join(".trainyard")
            }
        };
        let home = absolute(&home)?;
        let region = std::env::var("TRAINYARD_REGION").unwrap_or_else(|_| "us-east-1".to_string());
        let account_id =
            std::env::var("TRAINYARD_ACCOUNT_ID").unwrap_or_else(|_| "000000000000".to_string());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("TRAINYARD_ACCOUNT_ID must be 12 digits, got {account_id:?}");
        }
        let stop_grace = match std::env::var("TRAINYARD_STOP_GRACE_SECONDS") {
            Ok(v) => Duration::from_secs_f64(
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .with_context(|| {
                        format!(
                            "TRAINYARD_STOP_GRACE_SECONDS must be a non-negative number, got {v:?}"
                        )
                    })?,
            ),
            Err(_) => Duration::from_secs(120),
        };
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let images = ImageTable::load(&home.join("images.json"))?;
        let object_store = ObjectStore::from_env()?;
        let file_systems = crate::filesystems::FileSystems::load(&home.join("filesystems.json"))?;
        let instance_types =
            crate::instance_types::InstanceTypes::load(&home.join("instance-types.json"))?;
        let isolation = match std::env::var("TRAINYARD_ISOLATION").as_deref() {
            Ok("on") | Ok("") | Err(_) => true,
            Ok("off") => false,
            Ok(other) => anyhow::bail!("TRAINYARD_ISOLATION must be `on` or `off`, got {other:?}"),
        };
        Ok(Settings {
            home,
            region,
            account_id,
            stop_grace,
            images,
            isolation,
            file_systems,
            instance_types,
            store_sts: std::env::var("TRAINYARD_STORE_STS")
                .ok()
                .filter(|v| !v.is_empty()),
            object_store,
        })
    }

    /// The SQLite database of job records.
    pub fn db_path(&self) -> PathBuf {
        self.home.join("trainyard.db")
    }

    /// Root of the embedded object store: `s3://bucket/key` is `store/bucket/key`.
    pub fn store_root(&self) -> PathBuf {
        self.home.join("store")
    }

    /// Where a job's host trees and logs live.
    pub fn job_dir(&self, name: &str) -> PathBuf {
        self.home.join("jobs").join(name)
    }

    /// The ARN of a training job (the name lower-cased, `spec/api.md` §2.4).
    pub fn job_arn(&self, name: &str) -> String {
        crate::authz::control::job_arn(&self.region, &self.account_id, name)
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(p))
    }
}
