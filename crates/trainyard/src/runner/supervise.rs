//! Stage 4b, run: start a host's process and see it to its end, under one stop policy.
//!
//! Why one policy: a stop request, the runtime limit and another host's failure all end a
//! job the same way, `docker stop` style: SIGTERM to the main process, a grace period, then
//! SIGKILL to its whole process group. The job-level half ([`JobClock`]) decides *when* a
//! job must stop and is shared by the local and the Slurm executors; the host-level half
//! ([`run_process`]) applies it to one process, wherever that host runs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::cgroup::HostCgroup;
use super::container::{Container, Program};
use super::inputs::InputGuard;
use super::jobdir::Journal;
use super::layout::HostLayout;
use super::logs::HostLog;
use super::process;
use crate::jobs::failure::FailureReason;
use crate::lifecycle::StopCause;

/// How long output is read after the main process exited and its processes were killed.
const PUMP_GRACE: Duration = Duration::from_secs(5);

/// When a job must stop: a stop request, or its `MaxRuntimeInSeconds` running out.
#[derive(Debug)]
pub struct JobClock {
    deadline: tokio::time::Instant,
    stop: watch::Receiver<bool>,
}

impl JobClock {
    /// A clock with `remaining` runtime and the job's stop signal.
    pub fn new(remaining: Duration, stop: watch::Receiver<bool>) -> Self {
        JobClock {
            deadline: tokio::time::Instant::now() + remaining,
            stop,
        }
    }

    /// Resolves when the job must stop, with why. A stop already requested comes first.
    pub async fn expired(&mut self) -> StopCause {
        if *self.stop.borrow() {
            return StopCause::Requested;
        }
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|s| *s) => StopCause::Requested,
            _ = tokio::time::sleep_until(self.deadline) => StopCause::Deadline,
        }
    }
}

/// How one host's process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum HostResult {
    /// Exit 0.
    Completed,
    /// It failed on its own (or a stage before it did).
    Failed(FailureReason),
    /// It was told to stop and ended.
    Stopped,
}

/// The process groups of the job's hosts here, written to the job's `pids` file so a
/// restarted server can end processes a crash left behind.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pids: Mutex<Vec<u32>>,
}

impl PidFile {
    /// The file at `path`.
    pub fn new(path: PathBuf) -> Self {
        PidFile {
            path,
            pids: Mutex::new(Vec::new()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Vec<u32>)) {
        let mut pids = self.pids.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut pids);
        if pids.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
            let _ = std::fs::write(&self.path, text);
        }
    }
}

/// How a host's process is started.
#[derive(Debug)]
pub enum Launch {
    /// In its container (the normal case).
    Container(Box<Container>, Program),
    /// Directly on the host (no containers on this machine, no access control).
    Direct(process::Spec),
}

impl Launch {
    fn program(&self) -> &str {
        let argv = match self {
            Launch::Container(_, p) => &p.argv,
            Launch::Direct(s) => &s.argv,
        };
        argv.first().map_or("", String::as_str)
    }

    fn container(&self) -> Option<&Container> {
        match self {
            Launch::Container(c, _) => Some(c),
            Launch::Direct(_) => None,
        }
    }
}

/// What a host's process needs.
#[derive(Debug)]
pub struct ProcessRun<'a> {
    /// The host.
    pub host: &'a HostLayout,
    /// What to start, and how.
    pub launch: Launch,
    /// The host's memory cgroup.
    pub cgroup: Option<&'a HostCgroup>,
    /// The instance type, for an out-of-memory reason.
    pub instance_type: &'a str,
    /// Its output.
    pub log: Arc<HostLog>,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// Where the pid is recorded.
    pub pids: &'a PidFile,
    /// Platform messages.
    pub journal: &'a Journal,
}

/// Runs the process until it ends. `stop` becoming `true` sends SIGTERM, then SIGKILL after
/// the grace period; a failing Pipe producer of `inputs` fails the host the same way.
pub async fn run_process(
    run: ProcessRun<'_>,
    inputs: &mut InputGuard,
    mut stop: watch::Receiver<bool>,
) -> HostResult {
    let spawned = match &run.launch {
        Launch::Container(c, program) => process::spawn_container(c, program).map_err(|e| {
            c.remove();
            FailureReason::internal(format!(
                "cannot start the container of {}: {e}",
                run.host.name
            ))
        }),
        Launch::Direct(spec) => match run.cgroup.map(HostCgroup::procs).transpose() {
            Ok(procs) => process::spawn(spec, procs).map_err(|e| {
                FailureReason::algorithm(format!(
                    "cannot start {:?} on {}: {e}",
                    run.launch.program(),
                    run.host.name
                ))
            }),
            Err(e) => Err(FailureReason::internal(format!(
                "opening the memory cgroup of {}: {e}",
                run.host.name
            ))),
        },
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(reason) => return HostResult::Failed(reason),
    };
    let container = run.launch.container();
    let pid = child.id().expect("a running child has a pid");
    run.pids.update(|p| p.push(pid));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(run.log.clone().pump(out, false)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(run.log.clone().pump(err, true)));
    }
    inputs.start_producers();

    let mut stopped = false;
    let mut failure: Option<FailureReason> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = stop.wait_for(|s| *s), if !stopped && failure.is_none() => {
                stopped = true;
                process::terminate(pid);
                kill_at = Some(tokio::time::Instant::now() + run.grace);
            }
            reason = inputs.producer_failed(), if !stopped && failure.is_none() => {
                run.journal.info(&reason.to_string());
                failure = Some(reason);
                process::terminate(pid);
                kill_at = Some(tokio::time::Instant::now() + run.grace);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                run.journal.info(&format!(
                    "{}: processes still running {} s after SIGTERM: sending SIGKILL",
                    run.host.name,
                    run.grace.as_secs_f64()
                ));
                process::kill_group(pid);
                if let Some(c) = container {
                    c.kill();
                }
                if let Some(cg) = run.cgroup {
                    cg.kill_all();
                }
                kill_at = None;
            }
        }
    };
    // The reason quotes the host's last stderr lines: let the pumps read them first (briefly:
    // a leftover child may hold the pipes open until it is killed below).
    let drained = tokio::time::Instant::now() + Duration::from_secs(2);
    while pumps.iter().any(|p| !p.is_finished()) && tokio::time::Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Whatever the process left behind ends with it, as a container's would: its process
    // group, and everything in its cgroup (a `setsid` daemon leaves the group, not the cgroup).
    process::kill_group(pid);
    let container_failed = container.is_some_and(|c| !c.started());
    if let Some(c) = container {
        c.remove();
    }
    if let Some(cg) = run.cgroup {
        let left = cg.kill_all();
        if left > 0 {
            run.journal.info(&format!(
                "{}: killed {left} process(es) still running after the main process exited",
                run.host.name
            ));
        }
    }
    run.pids.update(|p| p.retain(|x| *x != pid));
    // A process that escaped both still holds the output pipes: stop reading after a while
    // rather than wait for it for ever.
    let cut = tokio::time::Instant::now() + PUMP_GRACE;
    for mut p in pumps {
        if tokio::time::timeout_at(cut, &mut p).await.is_err() {
            p.abort();
            run.journal.info(&format!(
                "{}: its output is still held open by a process outside the host's control; no longer reading it",
                run.host.name
            ));
        }
    }
    if let Some(reason) = failure.or_else(|| run.log.write_failure()) {
        return HostResult::Failed(reason);
    }
    let ok = matches!(&status, Ok(s) if s.success());
    if ok {
        return HostResult::Completed;
    }
    if stopped {
        return HostResult::Stopped;
    }
    let what = match &status {
        Ok(s) => process::describe_exit(*s),
        Err(e) => format!("wait failed: {e}"),
    };
    if container_failed {
        let said = run.log.stderr_tail();
        // `runc` could not exec the command: the job's entry point is wrong, not trainyard.
        if let Some(cause) = said
            .split_once("exec: ")
            .map(|(_, c)| c.trim_end_matches('"'))
        {
            return HostResult::Failed(FailureReason::algorithm(format!(
                "cannot start the entry point on {}: {cause}",
                run.host.name
            )));
        }
        return HostResult::Failed(FailureReason::internal(format!(
            "the container of {} did not start ({what}): {said}",
            run.host.name
        )));
    }
    let killed = matches!(&status, Ok(s) if s.code() == Some(137) || std::os::unix::process::ExitStatusExt::signal(s) == Some(libc::SIGKILL));
    if run.cgroup.is_some_and(|cg| cg.oom_killed(killed)) {
        return HostResult::Failed(FailureReason::algorithm(format!(
            "{} ran out of memory ({what}): its processes used more than the memory of instance type {} less trainyard's reserve; choose a larger InstanceType",
            run.host.name, run.instance_type
        )));
    }
    HostResult::Failed(failure_reason(run.host, &run.log, run.journal, &what))
}

/// The failure reason of a host that exited badly (`doc/contract/container.md` §5): the algorithm's
/// own `/opt/ml/output/failure`, else its exit and the tail of its stderr. A failure file that
/// cannot be used safely is ignored, and the job's log says why.
fn failure_reason(
    host: &HostLayout,
    log: &HostLog,
    journal: &Journal,
    what: &str,
) -> FailureReason {
    match read_failure_file(&host.root) {
        Ok(Some(text)) => {
            let text = text.trim_end();
            if !text.is_empty() {
                return FailureReason::new(
                    crate::jobs::failure::FailureKind::Reported,
                    text.chars()
                        .take(crate::jobs::failure::MAX_CHARS)
                        .collect::<String>(),
                );
            }
        }
        Ok(None) => {}
        Err(e) => journal.info(&format!("{}: {e}", host.name)),
    }
    let head = format!("{} {what}", host.name);
    let tail = log.stderr_tail();
    if tail.is_empty() {
        return FailureReason::algorithm(head);
    }
    let room =
        crate::jobs::failure::MAX_CHARS.saturating_sub("AlgorithmError: ".len() + head.len() + 2);
    let chars: Vec<char> = tail.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(room)..].iter().collect();
    FailureReason::algorithm(format!("{head}: {tail}"))
}

/// The most of the failure file ever read: SageMaker keeps 1024 characters of
/// `FailureReason`, and 1024 characters of UTF-8 take at most 4096 bytes.
pub const FAILURE_FILE_MAX_BYTES: u64 = 4 * crate::jobs::failure::MAX_CHARS as u64;

/// Why `/opt/ml/output/failure` was not used.
#[derive(Debug, thiserror::Error)]
pub enum FailureFileError {
    /// The file or the `output` directory is a symbolic link (the job could point it anywhere
    /// on the host).
    #[error("{0} is a symbolic link: ignored")]
    Symlink(&'static str),
    /// Not a regular file (a FIFO could block the server, a device never end).
    #[error("/opt/ml/output/failure is not a regular file: ignored")]
    NotRegular,
    /// Anything else.
    #[error("reading {what}: {source}")]
    Io {
        /// What was being opened or read.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads the failure file of the host tree at `root` (trusted: the server made it): at most
/// [`FAILURE_FILE_MAX_BYTES`], through [`super::beneath::Tree`], so neither `output/` nor
/// `failure` is followed if it is a symbolic link. `None`: there is none.
pub fn read_failure_file(root: &std::path::Path) -> Result<Option<String>, FailureFileError> {
    use std::path::Path;

    use super::beneath::{Tree, is_refused_link};

    const OUTPUT: &str = "/opt/ml/output";
    const FAILURE: &str = "/opt/ml/output/failure";
    let io = |what, source| FailureFileError::Io { what, source };
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let tree = match Tree::open(root) {
        Ok(t) => t,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io("/opt/ml", e)),
    };
    let output = match tree.dir(Path::new("output")) {
        Ok(d) => d,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) if is_refused_link(&e) => return Err(FailureFileError::Symlink(OUTPUT)),
        Err(e) => return Err(io(OUTPUT, e)),
    };
    match output.read_bounded(Path::new("failure"), FAILURE_FILE_MAX_BYTES) {
        Ok(Some(buf)) => Ok(Some(String::from_utf8_lossy(&buf).into_owned())),
        Ok(None) => Ok(None),
        Err(e) if is_refused_link(&e) => Err(FailureFileError::Symlink(FAILURE)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(FailureFileError::NotRegular),
        Err(e) => Err(io(FAILURE, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_request_beats_the_deadline_and_the_deadline_fires() {
        let (tx, rx) = watch::channel(false);
        let mut clock = JobClock::new(Duration::ZERO, rx);
        tx.send(true).unwrap();
        assert_eq!(
            clock.expired().await,
            StopCause::Requested,
            "a stop comes first"
        );

        let (_tx, rx) = watch::channel(false);
        let mut clock = JobClock::new(Duration::from_millis(50), rx);
        let started = tokio::time::Instant::now();
        assert_eq!(clock.expired().await, StopCause::Deadline);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("output")).unwrap();
        d
    }

    #[test]
    fn the_failure_file_is_read_up_to_4096_bytes_even_when_huge() {
        let d = tree();
        let f = std::fs::File::create(d.path().join("output/failure")).unwrap();
        // 1 GiB, sparse: the first 4096 bytes are the message, the rest holes.
        let mut head = "é".repeat(3000).into_bytes();
        head.truncate(5000);
        std::os::unix::fs::FileExt::write_all_at(&f, &head, 0).unwrap();
        f.set_len(1 << 30).unwrap();
        let text = read_failure_file(d.path()).unwrap().unwrap();
        assert_eq!(text.len() as u64, FAILURE_FILE_MAX_BYTES);
        assert_eq!(text, "é".repeat(2048));
    }

    #[test]
    fn a_failure_file_that_is_a_symlink_is_not_followed() {
        let d = tree();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "root:$6$hash").unwrap();
        std::os::unix::fs::symlink(&secret, d.path().join("output/failure")).unwrap();
        let e = read_failure_file(d.path()).unwrap_err();
        assert!(
            matches!(e, FailureFileError::Symlink("/opt/ml/output/failure")),
            "{e}"
        );
        assert!(!e.to_string().contains("root:"), "{e}");
    }

    #[test]
    fn an_output_directory_that_is_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("failure"), "host secret").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), d.path().join("output")).unwrap();
        let e = read_failure_file(d.path()).unwrap_err();
        assert!(
            matches!(e, FailureFileError::Symlink("/opt/ml/output")),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_or_a_fifo_gives_no_reason_and_a_plain_file_does() {
        let d = tree();
        assert!(read_failure_file(d.path()).unwrap().is_none());
        assert!(
            read_failure_file(&d.path().join("absent"))
                .unwrap()
                .is_none()
        );
        nix::unistd::mkfifo(
            &d.path().join("output/failure"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        assert!(matches!(
            read_failure_file(d.path()),
            Err(FailureFileError::NotRegular)
        ));
        std::fs::remove_file(d.path().join("output/failure")).unwrap();
        std::fs::write(d.path().join("output/failure"), "my reason\n").unwrap();
        assert_eq!(
            read_failure_file(d.path()).unwrap().as_deref(),
            Some("my reason\n")
        );
    }

    #[derive(Debug)]
    struct Quiet;
    impl crate::runner::Observer for Quiet {
        fn phase(&self, _: &crate::db::JobRecord, _: &str) {}
        fn log(&self, _: &str, _: &str) {}
        fn info(&self, _: &str) {}
    }

    #[tokio::test]
    async fn a_symlinked_failure_file_falls_back_to_stderr_and_is_journaled() {
        let d = tempfile::tempdir().unwrap();
        let jobdir = crate::runner::jobdir::JobDir::at(d.path().join("job"));
        let journal = jobdir.journal(Arc::new(Quiet)).unwrap();
        let root = d.path().join("job/algo-1");
        std::fs::create_dir_all(root.join("output")).unwrap();
        std::fs::write(d.path().join("shadow"), "root:$6$secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("shadow"), root.join("output/failure")).unwrap();
        let host = HostLayout {
            name: "algo-1".into(),
            index: 0,
            root,
            hosts_file: d.path().join("hosts"),
            log_file: jobdir.host_log("algo-1"),
            input_data_config: serde_json::json!({}),
            resource_config: serde_json::json!({}),
        };
        let metrics = Arc::new(crate::runner::logs::Metrics::new(&[]));
        let log =
            Arc::new(HostLog::open("algo-1", &host.log_file, metrics, Arc::new(Quiet)).unwrap());
        log.clone().pump(&b"Traceback: boom\n"[..], true).await;
        let reason = failure_reason(&host, &log, &journal, "exited with status 1").to_string();
        assert!(!reason.contains("secret"), "{reason}");
        assert!(
            reason.contains("algo-1 exited with status 1: Traceback: boom"),
            "{reason}"
        );
        let platform = std::fs::read_to_string(jobdir.platform_log()).unwrap();
        assert!(
            platform.contains("algo-1: /opt/ml/output/failure is a symbolic link: ignored"),
            "{platform}"
        );
    }

    #[test]
    fn the_pid_file_lists_running_groups_and_goes_away_empty() {
        let d = tempfile::tempdir().unwrap();
        let f = PidFile::new(d.path().join("pids"));
        f.update(|p| p.extend([10, 11]));
        assert_eq!(
            std::fs::read_to_string(d.path().join("pids")).unwrap(),
            "10\n11\n"
        );
        f.update(|p| p.clear());
        assert!(!d.path().join("pids").exists());
    }
}
