//! Starting, signalling and reaping the training process of one host.
//!
//! A host's process is started either as `runc run` of its container (`container.rs`: the
//! normal case) or, on a machine that cannot run containers and only without access control,
//! directly on the host. Either way it leads its own process group, so a stop reaches what it
//! started: SIGTERM to the main process (`runc` forwards it to the container's first process,
//! as `docker stop` does), SIGKILL after the grace period to the whole group (and the
//! container), and any stragglers are killed once the main process has exited.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A directory bound into a host's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host directory.
    pub source: PathBuf,
    /// Path the process sees (must exist as a directory).
    pub target: PathBuf,
    /// Writes fail with `EROFS`.
    pub read_only: bool,
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

/// Starts a host's container with `runc run` (its bundle prepared first). Output is piped.
pub fn spawn_container(
    container: &super::container::Container,
    program: &super::container::Program,
) -> io::Result<Child> {
    container.prepare(program)?;
    container.command().spawn()
}

/// Spawns the process directly on the host (no container), in `cgroup` when given. Output
/// is piped.
pub fn spawn(spec: &Spec, cgroup: Option<std::fs::File>) -> io::Result<Child> {
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
