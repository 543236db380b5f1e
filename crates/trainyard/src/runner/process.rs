//! Starting, signalling and reaping the training process of one host.
//!
//! The process must see its tree at the real path `/opt/ml`. On Linux as root that is a
//! private mount namespace per host: the child unshares its mount and UTS namespaces, makes
//! every mount private (so nothing leaks back to the host), binds the host tree at `/opt/ml`
//! and a per-job `/etc/hosts` that resolves `algo-1..N`, and takes `algo-k` as its host name.
//! All of that happens between fork and exec with raw system calls on strings prepared before
//! the fork, the only things allowed there. If the kernel refuses (no privilege), the caller
//! falls back to running without isolation and says so in the job log.
//!
//! Each process leads its own process group, so a stop reaches everything it started: SIGTERM
//! goes to the main process (as `docker stop` does to PID 1), SIGKILL after the grace period to
//! the whole group, and any stragglers are killed once the main process has exited.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// What the process needs to see its tree at `/opt/ml`.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The host tree to bind at `/opt/ml`.
    pub host_tree: PathBuf,
    /// The file to bind at `/etc/hosts`.
    pub hosts_file: PathBuf,
    /// Host name inside the UTS namespace (`algo-k`).
    pub hostname: String,
    /// Further directories to bind (file-system channels, checkpoint paths), applied after
    /// `/opt/ml`, so targets under `/opt/ml` land in the host's view of its tree.
    pub binds: Vec<Bind>,
    /// A network namespace to join (`/run/netns/<name>`), for multi-host jobs.
    pub netns: Option<PathBuf>,
}

/// A directory bound into the process's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host directory.
    pub source: PathBuf,
    /// Path the process sees (must exist as a directory).
    pub target: PathBuf,
    /// Writes fail with `EROFS`.
    pub read_only: bool,
}

/// One `mount(2)` call, with its strings prepared before the fork.
#[derive(Debug)]
struct MountOp {
    source: Option<CString>,
    target: CString,
    flags: libc::c_ulong,
}

impl Isolation {
    /// The mount calls, in order: make everything private, bind the tree, `/etc/hosts`, binds.
    fn plan(&self) -> io::Result<Vec<MountOp>> {
        let op = |source: Option<&Path>, target: &Path, flags| -> io::Result<MountOp> {
            Ok(MountOp {
                source: source.map(cstring).transpose()?,
                target: cstring(target)?,
                flags,
            })
        };
        let mut ops = vec![
            op(None, Path::new("/"), libc::MS_REC | libc::MS_PRIVATE)?,
            op(
                Some(&self.host_tree),
                Path::new(OPT_ML),
                libc::MS_BIND | libc::MS_REC,
            )?,
            op(
                Some(&self.hosts_file),
                Path::new("/etc/hosts"),
                libc::MS_BIND,
            )?,
        ];
        for b in &self.binds {
            ops.push(op(
                Some(&b.source),
                &b.target,
                libc::MS_BIND | libc::MS_REC,
            )?);
            if b.read_only {
                ops.push(op(
                    None,
                    &b.target,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                )?);
            }
        }
        Ok(ops)
    }
}

/// The container path of the tree.
pub const OPT_ML: &str = "/opt/ml";

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// argv; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Makes sure `/opt/ml` exists as a mount point (creating it needs root, as isolation does).
pub fn ensure_mount_point() -> io::Result<()> {
    std::fs::create_dir_all(OPT_ML)
}

/// Spawns the process, isolated when `isolation` is given. Output is piped.
pub fn spawn(
    spec: &Spec,
    isolation: Option<&Isolation>,
    cgroup: Option<std::fs::File>,
) -> io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(procs) = cgroup {
        join_cgroup(&mut cmd, procs);
    }
    if let Some(iso) = isolation {
        let netns = iso.netns.as_ref().map(std::fs::File::open).transpose()?;
        enter_namespace(
            &mut cmd,
            iso.plan()?,
            iso.hostname.clone().into_bytes(),
            netns,
        );
    }
    cmd.spawn()
}

#[allow(
    unsafe_code,
    reason = "joining the cgroup must happen between fork and exec"
)]
fn join_cgroup(cmd: &mut Command, procs: std::fs::File) {
    // SAFETY: the closure runs in the forked child before exec and makes one write(2) on a
    // descriptor opened before the fork, which is async-signal-safe; "0" means the writer.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

#[allow(unsafe_code, reason = "namespace setup must run between fork and exec")]
fn enter_namespace(
    cmd: &mut Command,
    ops: Vec<MountOp>,
    hostname: Vec<u8>,
    netns: Option<std::fs::File>,
) {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // (setns, unshare, mount, sethostname) on buffers and descriptors prepared before the
    // fork, which is
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(ns) = &netns {
                check(libc::setns(
                    std::os::fd::AsRawFd::as_raw_fd(ns),
                    libc::CLONE_NEWNET,
                ))?;
            }
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
            for op in &ops {
                let source = op.source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
                check(libc::mount(
                    source,
                    op.target.as_ptr(),
                    std::ptr::null(),
                    op.flags,
                    std::ptr::null(),
                ))?;
            }
            check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
            Ok(())
        });
    }
}

/// Checks that isolation works here by running `true` with it.
pub async fn probe(iso: &Isolation) -> io::Result<()> {
    let spec = Spec {
        argv: vec!["true".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: PathBuf::from("/"),
    };
    let status = spawn(&spec, Some(iso), None)?.wait().await?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("probe {}", describe_exit(status))))
    }
}

/// Sends SIGTERM to the main process only (`docker stop` semantics).
pub fn terminate(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
}

/// Sends SIGKILL to the whole process group led by `pid`.
pub fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Describes an exit status for a failure reason.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => {
            let name = Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| s.to_string());
            format!("killed by signal {name}")
        }
        _ => "unknown exit status".to_string(),
    }
}
