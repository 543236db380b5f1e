//! Mount lifecycle: mount a [`FastFs`] at a path, unmount it, and clean up after a crash.
//!
//! A FUSE mount whose process died stays in the mount table and answers every access with
//! `ENOTCONN` ("transport endpoint is not connected"); a job host that re-runs must not trip
//! over it, and a finished job must not leave one behind. So:
//!
//! * [`mount`] first removes a stale mount at the path ([`clean_stale_mount`]), builds the
//!   tree (so a bad listing fails before anything is mounted), mounts read-only with
//!   `default_permissions` (plus `allow_other` only when configured), and serves requests on
//!   `fuse_threads` threads that hand reads to a tokio runtime.
//! * [`MountHandle::unmount`] (also run on drop) unmounts; if the mount is busy (a process
//!   still has a file open) it detaches it lazily, so the path is free at once and the kernel
//!   finishes the file system when the last file closes. After `unmount_timeout` a still-busy
//!   connection is aborted through `fusectl` when that is mounted; otherwise the serving
//!   threads live on, detached, until the last open file is closed.
//!
//! Mounting as root uses mount(2) directly; other users go through the setuid `fusermount3`
//! helper (Debian package `fuse3`), which is also the lazy-unmount fallback.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{MountOption, Session, SessionACL, SessionUnmounter};
use trainyard_s3::ObjectClient;

use crate::DataError;
use crate::fastfile::fs::FastFs;
use crate::fastfile::fuse::FuseAdapter;
use crate::fastfile::{FastFileConfig, MountEntry, list_mount_entries};

/// How long to wait for the kernel to finish an aborted connection.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// A mounted FastFile channel. Dropping it unmounts, as [`MountHandle::unmount`] does.
#[derive(Debug)]
pub struct MountHandle {
    mountpoint: PathBuf,
    fs: Arc<FastFs>,
    unmounter: Option<SessionUnmounter>,
    session: Option<JoinHandle<io::Result<()>>>,
    done: mpsc::Receiver<()>,
    runtime: Option<tokio::runtime::Runtime>,
    connection: Option<u32>,
    timeout: Duration,
}

/// What is at a path, as far as mounts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountState {
    /// Nothing is mounted there.
    NotMounted,
    /// A working file system is mounted there.
    Live,
    /// A FUSE file system whose server is gone is mounted there (`ENOTCONN`).
    Stale,
}

/// Mounts `entries` read-only at `mountpoint` (created if missing) and returns once the kernel
/// has accepted the mount. Blocking: from async code call it in `spawn_blocking`.
///
/// `entries` usually come from [`crate::list_prefix`] after [`crate::shard()`]; an empty list
/// mounts an empty directory (a host whose shard is empty).
pub fn mount(
    config: &FastFileConfig,
    client: Arc<dyn ObjectClient>,
    entries: Vec<MountEntry>,
    mountpoint: &Path,
) -> Result<MountHandle, DataError> {
    let started = Instant::now();
    let path = absolute(mountpoint);
    let io_err = |source: io::Error| DataError::Io {
        path: path.clone(),
        source,
    };
    clean_stale_mount(&path)?;
    std::fs::create_dir_all(&path).map_err(io_err)?;
    let fs = Arc::new(FastFs::new(config, client, entries)?);
    let built = started.elapsed();

    let (runtime, handle) = match &config.runtime {
        Some(handle) => (None, handle.clone()),
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.io_threads.max(1))
                .thread_name("fastfile-io")
                .enable_all()
                .build()
                .map_err(io_err)?;
            let handle = rt.handle().clone();
            (Some(rt), handle)
        }
    };

    let mut options = fuser::Config::default();
    options.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
        MountOption::FSName(config.fs_name.clone()),
    ];
    options.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    options.n_threads = Some(config.fuse_threads.max(1));
    options.clone_fd = true;

    let adapter = FuseAdapter::new(fs.clone(), handle, config.attr_ttl);
    let mut session = Session::new(adapter, &path, &options).map_err(io_err)?;
    let unmounter = session.unmount_callable();
    let (tx, done) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("fastfile-session".into())
        .spawn(move || {
            let result = session.run();
            let _ = tx.send(());
            result
        })
        .map_err(io_err)?;
    let connection = mounts_at(&path)
        .ok()
        .and_then(|m| m.last().map(|m| m.minor));
    tracing::info!(
        mountpoint = %path.display(),
        files = fs.file_count(),
        dirs = fs.dir_count(),
        tree_ms = built.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "fastfile mounted"
    );
    Ok(MountHandle {
        mountpoint: path,
        fs,
        unmounter: Some(unmounter),
        session: Some(thread),
        done,
        runtime,
        connection,
        timeout: config.unmount_timeout,
    })
}

/// Lists `s3://bucket/prefix` ([`list_mount_entries`]) and mounts it at `mountpoint`: the
/// standalone `trainyard mount` path.
pub async fn mount_prefix(
    config: &FastFileConfig,
    client: Arc<dyn ObjectClient>,
    bucket: &str,
    prefix: &str,
    mountpoint: &Path,
) -> Result<MountHandle, DataError> {
    let entries = list_mount_entries(&*client, bucket, prefix).await?;
    let (config, path) = (config.clone(), mountpoint.to_path_buf());
    tokio::task::spawn_blocking(move || mount(&config, client, entries, &path))
        .await
        .map_err(|e| DataError::Io {
            path: mountpoint.to_path_buf(),
            source: io::Error::other(e),
        })?
}

impl MountHandle {
    /// Where the channel is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The file system behind the mount (counts and cache statistics).
    pub fn fs(&self) -> &FastFs {
        &self.fs
    }

    /// Unmounts, lazily if files are still open, and waits (up to the configured timeout)
    /// for the serving threads to stop. Blocking.
    pub fn unmount(mut self) -> Result<(), DataError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), DataError> {
        let Some(mut unmounter) = self.unmounter.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed; detaching lazily");
            if let Err(source) = lazy_unmount(&self.mountpoint) {
                result = Err(DataError::Io {
                    path: self.mountpoint.clone(),
                    source,
                });
            }
        }
        let mut finished = wait(&self.done, self.timeout);
        if !finished {
            if let Some(conn) = self.connection {
                let abort = format!("/sys/fs/fuse/connections/{conn}/abort");
                if std::fs::write(&abort, "1").is_ok() {
                    finished = wait(&self.done, ABORT_GRACE);
                }
            }
        }
        let session = self.session.take();
        let runtime = self.runtime.take();
        if finished {
            if let Some(Ok(Err(e))) = session.map(JoinHandle::join) {
                tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "fuse session ended with an error");
            }
            if let Some(rt) = runtime {
                rt.shutdown_background();
            }
        } else {
            tracing::warn!(
                mountpoint = %self.mountpoint.display(),
                "files are still open on the detached mount; it is served until they are closed"
            );
            let (_, done) = mpsc::channel();
            let done = std::mem::replace(&mut self.done, done);
            // Keep serving the open files; tidy up once the kernel ends the session.
            std::thread::spawn(move || {
                let _ = done.recv();
                drop(session.map(JoinHandle::join));
                if let Some(rt) = runtime {
                    rt.shutdown_background();
                }
            });
        }
        if result.is_ok() {
            tracing::info!(mountpoint = %self.mountpoint.display(), "fastfile unmounted");
        }
        result
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "unmounting fastfile channel");
        }
    }
}

/// Whether the session ended within `timeout` (a dropped sender also means it ended).
fn wait(done: &mpsc::Receiver<()>, timeout: Duration) -> bool {
    !matches!(done.recv_timeout(timeout), Err(RecvTimeoutError::Timeout))
}

/// What is mounted at `path`: nothing, a working file system, or a dead FUSE mount.
pub fn mount_state(path: &Path) -> Result<MountState, DataError> {
    let path = absolute(path);
    let mounts = mounts_at(&path).map_err(|source| DataError::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let Some(top) = mounts.last() else {
        return Ok(MountState::NotMounted);
    };
    match std::fs::metadata(&path) {
        Err(e)
            if top.fstype.starts_with("fuse")
                && matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
                ) =>
        {
            Ok(MountState::Stale)
        }
        _ => Ok(MountState::Live),
    }
}

/// Removes dead FUSE mounts at `path` (left by a crashed process); returns whether one was
/// removed. A working mount is left alone.
pub fn clean_stale_mount(path: &Path) -> Result<bool, DataError> {
    let path = absolute(path);
    let mut cleaned = false;
    // Stale mounts can be stacked (several crashed runs); remove them all, within reason.
    for _ in 0..16 {
        if mount_state(&path)? != MountState::Stale {
            break;
        }
        tracing::warn!(mountpoint = %path.display(), "removing stale FUSE mount");
        lazy_unmount(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        cleaned = true;
    }
    Ok(cleaned)
}

/// Detaches the mount at `path` now, letting the kernel finish it when it is no longer busy:
/// umount2(MNT_DETACH) as root, `fusermount3 -u -z` otherwise.
fn lazy_unmount(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let mut last = io::Error::other("no fusermount binary found");
            for bin in ["fusermount3", "fusermount"] {
                match Command::new(bin)
                    .args(["-u", "-z", "--"])
                    .arg(path)
                    .stdin(Stdio::null())
                    .output()
                {
                    Ok(out) if out.status.success() => return Ok(()),
                    Ok(out) => {
                        last = io::Error::other(format!(
                            "{bin} -u -z failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Err(e) => Err(e.into()),
    }
}

/// `path` made absolute without touching it (a stale mount cannot be stat'ed): the parent is
/// canonicalised, the last component kept.
fn absolute(path: &Path) -> PathBuf {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent.canonicalize().map(|p| p.join(name)).unwrap_or(path),
        _ => path,
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountInfo {
    minor: u32,
    mount_point: PathBuf,
    fstype: String,
}

/// The mounts whose mount point is `path`, bottom first.
fn mounts_at(path: &Path) -> io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect())
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let minor = fields.get(2)?.split_once(':')?.1.parse().ok()?;
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let fstype = right.split(' ').next()?.to_string();
            Some(MountInfo {
                minor,
                mount_point,
                fstype,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && oct.is_some_and(|o| o.iter().all(|b| (b'0'..=b'7').contains(b))) {
            let v = oct
                .unwrap_or_default()
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let text = "\
36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
120 29 0:52 / /opt/ml/input/data/my\\040channel ro,nosuid,nodev,relatime - fuse trainyard-fastfile ro,user_id=0
bogus line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].minor, 52);
        assert_eq!(m[1].fstype, "fuse");
        assert_eq!(
            m[1].mount_point,
            PathBuf::from("/opt/ml/input/data/my channel")
        );
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }

    #[test]
    fn handles_can_move_between_threads_and_tasks() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<MountHandle>();
    }

    #[test]
    fn plain_directories_are_not_mounts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(mount_state(dir.path()).unwrap(), MountState::NotMounted);
        assert!(!clean_stale_mount(dir.path()).unwrap());
        assert_eq!(mount_state(Path::new("/proc")).unwrap(), MountState::Live);
        let rel = absolute(Path::new("some-relative-dir"));
        assert!(rel.is_absolute());
    }
}
