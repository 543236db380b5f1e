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

    /// After a crash: detaches every mount a dead run left under the job directory (a FastFile
    /// channel whose FUSE daemon died with the server answers `ENOTCONN` for ever), then
    /// removes everything but the logs. Returns the mount points detached.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        let mut detached = Vec::new();
        let mut mounts = mounts_under(&self.root);
        // Deepest first, so a mount inside another is detached before its parent.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            if nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).is_ok() {
                detached.push(m);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_name() == "logs" {
                    continue;
                }
                let path = e.path();
                let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        detached
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

/// The mount points of this process's namespace at or below `dir` (`/proc/self/mountinfo`,
/// whose fifth field is the mount point with spaces and the like written as octal escapes).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount_point(m)))
        .filter(|m| m.starts_with(dir))
        .collect()
}

fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn mount_points_are_read_as_the_kernel_escapes_them() {
        assert_eq!(
            unescape_mount_point(r"/h/my\040home/jobs"),
            "/h/my home/jobs"
        );
        assert_eq!(unescape_mount_point(r"/a\134b"), r"/a\b");
        assert_eq!(
            unescape_mount_point(r"/odd\09"),
            r"/odd\09",
            "not an escape"
        );
    }

    #[test]
    fn leftovers_go_and_logs_stay() {
        let d = tempfile::tempdir().unwrap();
        let dir = JobDir::at(d.path().join("j"));
        dir.reset().unwrap();
        std::fs::write(dir.platform_log(), "kept").unwrap();
        std::fs::create_dir_all(dir.host_root(0).join("input/data/train")).unwrap();
        std::fs::write(dir.hosts_file(0), "").unwrap();
        std::fs::write(dir.pids(), "1\n").unwrap();
        assert!(
            dir.remove_leftovers().is_empty(),
            "nothing mounted in a temp dir"
        );
        let left: Vec<_> = std::fs::read_dir(dir.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["logs"]);
        assert_eq!(std::fs::read_to_string(dir.platform_log()).unwrap(), "kept");
    }

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
