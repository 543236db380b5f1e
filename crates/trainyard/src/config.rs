//! Settings of one trainyard installation: one tree, read once, handed to the library.
//!
//! With nothing configured, trainyard is self-contained: state, the embedded object store and
//! job trees all live under `$TRAINYARD_HOME` (default `~/.trainyard`). Every knob is one field
//! here with its default; `$TRAINYARD_HOME/trainyard.json` may set it, and the environment
//! variable named beside it overrides the file. Only the binary's entry points read the
//! environment (through [`Settings::from_env`]); library code receives a [`Settings`]
//! (`doc/configuration.md` lists every setting).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::images::ImageTable;

/// A table under `$TRAINYARD_HOME` (`images.json`, `filesystems.json`,
/// `instance-types.json`, `trainyard.json`) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file exists but cannot be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the table's JSON; the error names the member by its path.
    #[error("parsing {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: serde_path_to_error::Error<serde_json::Error>,
    },
    /// An entry breaks a rule.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry and the rule.
        message: String,
    },
}

/// Settings that cannot be used; each names the setting and the rule.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A table or `trainyard.json` is unusable.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A setting has a value it cannot take.
    #[error("{setting} {rule}, got {value:?}")]
    Invalid {
        /// The environment variable (or `trainyard.json` key).
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
        /// What it was.
        value: String,
    },
    /// The S3 client's configuration (`AWS_*`) is unusable.
    #[error("configuring the S3 client: {0}")]
    S3(#[from] trainyard_s3::ConfigError),
    /// A directory could not be made or found.
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// No home directory.
    #[error("neither TRAINYARD_HOME nor HOME is set")]
    NoHome,
}

fn invalid(setting: &'static str, rule: &'static str, value: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting,
        rule,
        value: value.into(),
    }
}

type Result<T, E = SettingsError> = std::result::Result<T, E>;

/// Reads the JSON table at `path`; `None` when there is no such file.
pub fn read_table<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, TableError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TableError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de)
        .map(Some)
        .map_err(|source| TableError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

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
    /// Whether jobs run in containers (`TRAINYARD_ISOLATION`, `on` by default; `off` runs
    /// processes directly on the host tree with `SM_*` paths pointing into it, e.g. inside a
    /// container that cannot nest one; refused under access control).
    pub isolation: bool,
    /// The OCI runtime that runs jobs' containers (`TRAINYARD_CONTAINER_RUNTIME`, default
    /// `runc` from `PATH`).
    pub container_runtime: PathBuf,
    /// Bytes the machine's image store may use before images no job uses are evicted
    /// (`images_budget_gib` in `trainyard.json`, `TRAINYARD_IMAGES_BUDGET_GIB`; default 50).
    pub images_budget_bytes: u64,
    /// Registries (`host` or `host:port`) pulled from over plain HTTP besides loopback ones
    /// (`insecure_registries`, `TRAINYARD_INSECURE_REGISTRIES` comma-separated).
    pub insecure_registries: Vec<String>,
    /// Host paths the `host` runtime shows its jobs read-only besides the system directories
    /// and the Python installation trainyard finds (`host_paths` in `trainyard.json`,
    /// `TRAINYARD_HOST_PATHS` as a `:`-separated list).
    pub host_paths: Vec<PathBuf>,
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
    /// Leaves host trees in place after a job (`TRAINYARD_KEEP_HOSTS`, for debugging; they
    /// hold the downloaded data and can be large).
    pub keep_hosts: bool,
    /// Where jobs' hosts run (`TRAINYARD_EXECUTOR`: `local`, the default, or `slurm`).
    pub executor: ExecutorKind,
    /// How the Slurm executor submits jobs.
    pub slurm: SlurmSettings,
    /// The environment trainyard was started with, which the `host` runtime's processes
    /// inherit (less credentials and trainyard's own variables, `runner::env`).
    pub host_env: Vec<(String, String)>,
}

/// Where jobs' hosts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorKind {
    /// Processes on this machine.
    #[default]
    Local,
    /// Tasks of a Slurm allocation.
    Slurm,
}

/// The Slurm executor's settings (`TRAINYARD_SLURM_*`, or `"slurm"` in `trainyard.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSettings {
    /// Partition (`TRAINYARD_SLURM_PARTITION`; the cluster's default when unset).
    pub partition: Option<String>,
    /// The server's URL as nodes reach it (`TRAINYARD_SLURM_CALLBACK_URL`; default: the
    /// listening address).
    pub callback_url: Option<String>,
    /// The `trainyard` binary on the nodes (`TRAINYARD_SLURM_BINARY`; default: this one).
    pub binary: Option<PathBuf>,
    /// Node-local scratch directory for host trees (`TRAINYARD_SLURM_SCRATCH`).
    pub scratch: PathBuf,
    /// Further `sbatch` arguments (`TRAINYARD_SLURM_SBATCH_ARGS`, split on whitespace).
    pub sbatch_args: Vec<String>,
    /// Where a node writes the allocation's own output (`TRAINYARD_SLURM_OUTPUT`; its
    /// directory must exist on the node when the job starts, or Slurm fails the launch).
    pub output: String,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            callback_url: None,
            binary: None,
            scratch: PathBuf::from("/tmp/trainyard-hosts"),
            sbatch_args: Vec::new(),
            output: "/tmp/trainyard-slurm-%j.out".to_string(),
        }
    }
}

/// `$TRAINYARD_HOME/trainyard.json`: the same settings as the environment variables.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    region: Option<String>,
    account_id: Option<String>,
    stop_grace_seconds: Option<f64>,
    isolation: Option<bool>,
    container_runtime: Option<PathBuf>,
    host_paths: Option<Vec<PathBuf>>,
    images_budget_gib: Option<f64>,
    insecure_registries: Option<Vec<String>>,
    store: Option<String>,
    store_sts: Option<String>,
    keep_hosts: Option<bool>,
    executor: Option<String>,
    slurm: Option<SlurmSettings>,
}

impl FileConfig {
    fn load(path: &Path) -> Result<Self, TableError> {
        Ok(read_table(path)?.unwrap_or_default())
    }
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
    fn from_env(choice: Option<String>) -> Result<Self> {
        let has_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        match choice.as_deref() {
            Some("embedded") => Ok(ObjectStore::Embedded),
            Some("s3") => Ok(ObjectStore::S3(Box::new(
                trainyard_s3::S3Config::from_env()?
            ))),
            None if has_endpoint => Ok(ObjectStore::S3(Box::new(
                trainyard_s3::S3Config::from_env()?,
            ))),
            None => Ok(ObjectStore::Embedded),
            Some(other) => Err(invalid(
                "TRAINYARD_STORE",
                "must be `embedded` or `s3`",
                other,
            )),
        }
    }
}

impl Settings {
    /// The defaults for an installation at `home`, with its tables (`images.json`,
    /// `filesystems.json`, `instance-types.json`) read from there and nothing from the
    /// environment: what library code and tests get when no one configured anything.
    pub fn for_home(home: &Path) -> Result<Self> {
        let home = absolute(home)?;
        std::fs::create_dir_all(&home).map_err(|source| SettingsError::Io {
            what: format!("creating {}", home.display()),
            source,
        })?;
        Ok(Settings {
            images: ImageTable::load(&home.join("images.json"))?,
            file_systems: crate::filesystems::FileSystems::load(&home.join("filesystems.json"))?,
            instance_types: crate::instance_types::InstanceTypes::load(
                &home.join("instance-types.json"),
            )?,
            home,
            region: "us-east-1".to_string(),
            account_id: "000000000000".to_string(),
            stop_grace: Duration::from_secs(120),
            isolation: true,
            container_runtime: PathBuf::from("runc"),
            host_paths: Vec::new(),
            images_budget_bytes: 50 << 30,
            insecure_registries: Vec::new(),
            store_sts: None,
            object_store: ObjectStore::Embedded,
            keep_hosts: false,
            executor: ExecutorKind::Local,
            slurm: SlurmSettings::default(),
            host_env: Vec::new(),
        })
    }

    /// Reads settings: `$TRAINYARD_HOME/trainyard.json`, overridden by the environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok(), std::env::vars().collect())
    }

    /// [`Settings::from_env`] with the variables looked up by `lookup`; `host_env` is what
    /// jobs' processes inherit.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        host_env: Vec<(String, String)>,
    ) -> Result<Self> {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let home = match var("TRAINYARD_HOME") {
            Some(h) => PathBuf::from(h),
            None => {
                let base = var("HOME").ok_or(SettingsError::NoHome)?;
                PathBuf::from(base).join(".trainyard")
            }
        };
        let mut s = Settings::for_home(&home)?;
        let file = FileConfig::load(&s.home.join("trainyard.json"))?;
        s.region = var("TRAINYARD_REGION").or(file.region).unwrap_or(s.region);
        s.account_id = var("TRAINYARD_ACCOUNT_ID")
            .or(file.account_id)
            .unwrap_or(s.account_id);
        if s.account_id.len() != 12 || !s.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "TRAINYARD_ACCOUNT_ID",
                "must be 12 digits",
                &*s.account_id,
            ));
        }
        let grace = match var("TRAINYARD_STOP_GRACE_SECONDS") {
            Some(v) => Some(v.parse::<f64>().map_err(|_| {
                invalid(
                    "TRAINYARD_STOP_GRACE_SECONDS",
                    "must be a non-negative number",
                    &*v,
                )
            })?),
            None => file.stop_grace_seconds,
        };
        if let Some(g) = grace {
            if !(g.is_finite() && g >= 0.0) {
                return Err(invalid(
                    "TRAINYARD_STOP_GRACE_SECONDS",
                    "must be a non-negative number",
                    g.to_string(),
                ));
            }
            s.stop_grace = Duration::from_secs_f64(g);
        }
        s.isolation = match var("TRAINYARD_ISOLATION").as_deref() {
            Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    "TRAINYARD_ISOLATION",
                    "must be `on` or `off`",
                    other,
                ));
            }
            None => file.isolation.unwrap_or(true),
        };
        s.container_runtime = var("TRAINYARD_CONTAINER_RUNTIME")
            .map(PathBuf::from)
            .or(file.container_runtime)
            .unwrap_or(s.container_runtime);
        s.host_paths = match var("TRAINYARD_HOST_PATHS") {
            Some(list) => std::env::split_paths(&list).collect(),
            None => file.host_paths.unwrap_or_default(),
        };
        for p in &s.host_paths {
            if !p.is_absolute() {
                return Err(invalid(
                    "host_paths",
                    "must be absolute paths",
                    p.display().to_string(),
                ));
            }
        }
        if let Some(gib) = match var("TRAINYARD_IMAGES_BUDGET_GIB") {
            Some(v) => Some(v.parse::<f64>().map_err(|_| {
                invalid(
                    "TRAINYARD_IMAGES_BUDGET_GIB",
                    "must be a number of GiB",
                    v.clone(),
                )
            })?),
            None => file.images_budget_gib,
        } {
            if !(gib.is_finite() && gib > 0.0) {
                return Err(invalid(
                    "images_budget_gib",
                    "must be a positive number of GiB",
                    gib.to_string(),
                ));
            }
            s.images_budget_bytes = (gib * (1u64 << 30) as f64) as u64;
        }
        s.insecure_registries = match var("TRAINYARD_INSECURE_REGISTRIES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect(),
            None => file.insecure_registries.unwrap_or_default(),
        };
        s.object_store = ObjectStore::from_env(var("TRAINYARD_STORE").or(file.store))?;
        s.store_sts = var("TRAINYARD_STORE_STS").or(file.store_sts);
        s.keep_hosts = lookup("TRAINYARD_KEEP_HOSTS").is_some() || file.keep_hosts.unwrap_or(false);
        s.executor = match var("TRAINYARD_EXECUTOR").or(file.executor).as_deref() {
            None | Some("local") => ExecutorKind::Local,
            Some("slurm") => ExecutorKind::Slurm,
            Some(other) => {
                return Err(invalid(
                    "TRAINYARD_EXECUTOR",
                    "must be `local` or `slurm`",
                    other,
                ));
            }
        };
        let mut slurm = file.slurm.unwrap_or_default();
        if let Some(v) = var("TRAINYARD_SLURM_PARTITION") {
            slurm.partition = Some(v);
        }
        if let Some(v) = var("TRAINYARD_SLURM_CALLBACK_URL") {
            slurm.callback_url = Some(v);
        }
        if let Some(v) = var("TRAINYARD_SLURM_BINARY") {
            slurm.binary = Some(PathBuf::from(v));
        }
        if let Some(v) = var("TRAINYARD_SLURM_SCRATCH") {
            slurm.scratch = PathBuf::from(v);
        }
        if let Some(v) = var("TRAINYARD_SLURM_SBATCH_ARGS") {
            slurm.sbatch_args = v.split_whitespace().map(str::to_string).collect();
        }
        if let Some(v) = var("TRAINYARD_SLURM_OUTPUT") {
            slurm.output = v;
        }
        s.slurm = slurm;
        s.host_env = host_env;
        Ok(s)
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
    pub fn job_dir(&self, name: &str) -> crate::runner::jobdir::JobDir {
        crate::runner::jobdir::JobDir::of(self, name)
    }

    /// The ARN of a training job (the name lower-cased, `doc/contract/api.md` §2.4).
    pub fn job_arn(&self, name: &str) -> String {
        crate::authz::control::job_arn(&self.region, &self.account_id, name)
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(|source| SettingsError::Io {
                what: "reading the current directory".into(),
                source,
            })?
            .join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(home: &Path, env: &[(&str, &str)]) -> Result<Settings> {
        let mut vars: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("TRAINYARD_HOME".into(), home.display().to_string());
        Settings::from_lookup(|k| vars.get(k).cloned(), Vec::new())
    }

    #[test]
    fn the_file_sets_and_the_environment_overrides() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("trainyard.json"),
            r#"{"region": "eu-west-1", "stop_grace_seconds": 5, "executor": "slurm",
                "slurm": {"partition": "gpu", "sbatch_args": ["--qos=low"]}}"#,
        )
        .unwrap();
        let s = settings(d.path(), &[("TRAINYARD_SLURM_PARTITION", "cpu")]).unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.stop_grace, Duration::from_secs(5));
        assert_eq!(s.executor, ExecutorKind::Slurm);
        assert_eq!(
            s.slurm.partition.as_deref(),
            Some("cpu"),
            "the environment wins"
        );
        assert_eq!(s.slurm.sbatch_args, ["--qos=low"]);
        assert_eq!(
            s.slurm.scratch,
            PathBuf::from("/tmp/trainyard-hosts"),
            "default kept"
        );
        let s = settings(d.path(), &[("TRAINYARD_REGION", "us-west-2")]).unwrap();
        assert_eq!(s.region, "us-west-2");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let d = tempfile::tempdir().unwrap();
        let e = settings(d.path(), &[("TRAINYARD_EXECUTOR", "k8s")]).unwrap_err();
        assert!(e.to_string().contains("TRAINYARD_EXECUTOR"), "{e}");
        std::fs::write(
            d.path().join("trainyard.json"),
            r#"{"slurm": {"partitoin": "x"}}"#,
        )
        .unwrap();
        let e = format!("{:#}", settings(d.path(), &[]).unwrap_err());
        assert!(
            e.contains("slurm.partitoin") || e.contains("partitoin"),
            "{e}"
        );
    }
}
