//! Every path a job has on disk, in one type.
//!
//! Why: the host trees, logs, pid file, staging files and executor state used to be joined
//! from strings in eight modules, so moving one meant finding them all. Nothing else builds a
//! path under a job's directory; the layout is:
//!
//! ```text
//! $TRAINYARD_HOME/jobs/<name>/
//!   logs/platform.log, logs/algo-k.log   what `trainyard logs` and GetLogEvents read (kept)
//!   algo-k/                              host k's tree, bound at /opt/ml (removed at the end)
//!   algo-k.hosts                         host k's /etc/hosts
//!   algo-k-checkpoint-staging/           checkpoint uploads being staged
//!   pids                                 process groups, for the restart after a crash
//!   model.tar.gz, output.tar.gz          artifacts being packed for upload
//!   slurm/                               the Slurm executor's token, job id, hosts' archives
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Settings;
use crate::lifecycle::Observer;

/// The directory of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    /// Job `name` of the installation.
    pub fn of(settings: &Settings, name: &str) -> Self {
        JobDir {
            root: settings.home.join("jobs").join(name),
        }
    }

    /// A job directory at `root` (a cluster node's scratch directory).
    pub fn at(root: PathBuf) -> Self {
        JobDir { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a run afresh: removes what an earlier run of the same name left, creates `logs/`.
    pub fn reset(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&self.root);
        std::fs::create_dir_all(self.logs())
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The platform messages of the job.
    pub fn platform_log(&self) -> PathBuf {
        self.logs().join("platform.log")
    }
    /// What host `algo-k` printed.
    pub fn host_log(&self, host: &str) -> PathBuf {
        self.logs().join(format!("{host}.log"))
    }
    /// Host `index`'s tree (bound at `/opt/ml`).
    pub fn host_root(&self, index: usize) -> PathBuf {
        self.root.join(host_name(index))
    }
    /// Host `index`'s `/etc/hosts`.
    pub fn hosts_file(&self, index: usize) -> PathBuf {
        self.root.join(format!("{}.hosts", host_name(index)))
    }
    /// Where host `index`'s checkpoint uploads are staged.
    pub fn checkpoint_staging(&self, index: usize) -> PathBuf {
        self.root
            .join(format!("{}-checkpoint-staging", host_name(index)))
    }
    /// The process groups of the job's hosts.
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }
    /// An artifact archive being packed (`model.tar.gz`, `output.tar.gz`).
    pub fn artifact(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }
    /// The Slurm executor's state.
    pub fn slurm(&self) -> PathBuf {
        self.root.join("slurm")
    }
    /// An artifact archive host `index` sent from its node.
    pub fn host_artifact(&self, index: usize, file: &str) -> PathBuf {
        self.slurm().join(host_name(index)).join(file)
    }

    /// Appends platform messages to `logs/platform.log` and tells `observer`.
    pub fn journal(&self, observer: Arc<dyn Observer>) -> std::io::Result<Journal> {
        std::fs::create_dir_all(self.logs())?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.platform_log())?;
        Ok(Journal {
            file: std::sync::Mutex::new(file),
            observer,
        })
    }
}

/// `algo-{index+1}`.
pub fn host_name(index: usize) -> String {
    format!("algo-{}", index + 1)
}

/// Keeps the platform log and the observer in step.
#[derive(Debug)]
pub struct Journal {
    file: std::sync::Mutex<std::fs::File>,
    observer: Arc<dyn Observer>,
}

impl Journal {
    /// Records a platform message.
    pub fn info(&self, msg: &str) {
        use std::io::Write;
        let stamp = crate::jobs::describe::format_time(crate::db::now());
        let _ = writeln!(
            self.file.lock().unwrap_or_else(|p| p.into_inner()),
            "{stamp} {msg}"
        );
        self.observer.info(msg);
    }

    /// The observer messages are reported to.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_job_directory() {
        let d = JobDir::at(PathBuf::from("/h/jobs/j"));
        for p in [
            d.platform_log(),
            d.host_log("algo-2"),
            d.host_root(1),
            d.hosts_file(1),
            d.checkpoint_staging(1),
            d.pids(),
            d.artifact("model.tar.gz"),
            d.host_artifact(1, "model.tar.gz"),
        ] {
            assert!(p.starts_with(d.root()), "{}", p.display());
        }
        assert_eq!(d.host_root(1), PathBuf::from("/h/jobs/j/algo-2"));
        assert_eq!(
            d.host_artifact(0, "model.tar.gz"),
            PathBuf::from("/h/jobs/j/slurm/algo-1/model.tar.gz")
        );
    }
}
