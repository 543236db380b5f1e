//! Asking Slurm about a job: `squeue` while it is queued or running, `scontrol` after.
//!
//! Why apart: these are the only places that parse Slurm's output, and the words they look
//! for (states, pending reasons) are Slurm's own, documented in `squeue(1)`.

use std::process::Command;

/// A Slurm command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmCommandError {
    /// The command could not be started.
    #[error("running {command} (is Slurm installed on this machine?): {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited non-zero.
    #[error("{command} failed: {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The state of a Slurm job as `squeue`/`scontrol` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmState {
    /// `RUNNING`, `PENDING`, `COMPLETED`, `FAILED`, `CANCELLED`, `NODE_FAIL`, ...
    pub state: String,
    /// `ExitCode` (`code:signal`), when known.
    pub exit_code: Option<String>,
    /// `Reason`, when Slurm gives one.
    pub reason: Option<String>,
}

impl SlurmState {
    pub(super) fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "STAGE_OUT"
                | "SIGNALING"
        )
    }

    /// A pending job whose reason says it can never be scheduled as requested.
    pub(super) fn never_starts(&self) -> bool {
        self.state == "PENDING"
            && matches!(
                self.reason.as_deref(),
                Some(
                    "PartitionConfig"
                        | "PartitionNodeLimit"
                        | "PartitionTimeLimit"
                        | "BadConstraints"
                        | "InvalidAccount"
                        | "InvalidQOS"
                )
            )
    }

    pub(super) fn describe(&self) -> String {
        let mut s = self.state.clone();
        if let Some(c) = &self.exit_code {
            s.push_str(&format!(", exit code {c}"));
        }
        if let Some(r) = self.reason.as_deref().filter(|r| *r != "None") {
            s.push_str(&format!(", reason {r}"));
        }
        s
    }
}

pub(super) fn run(cmd: &mut Command) -> Result<String, SlurmCommandError> {
    let command = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| SlurmCommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(SlurmCommandError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state of Slurm job `id`: `squeue` while it is known to the queue, then `scontrol`;
/// `None` when Slurm has forgotten it.
pub fn query(id: &str) -> Option<SlurmState> {
    if let Ok(out) = run(Command::new("squeue").args(["-h", "-j", id, "-o", "%T|%r"])) {
        if let Some(line) = out.lines().next().filter(|l| !l.trim().is_empty()) {
            let (state, reason) = line.split_once('|').unwrap_or((line, ""));
            let st = SlurmState {
                state: state.trim().to_string(),
                exit_code: None,
                reason: Some(reason.trim().to_string()).filter(|r| !r.is_empty()),
            };
            if st.active() {
                return Some(st);
            }
        }
    }
    let out = run(Command::new("scontrol").args(["-o", "show", "job", id])).ok()?;
    let field = |name: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    Some(SlurmState {
        state: field("JobState")?,
        exit_code: field("ExitCode"),
        reason: field("Reason"),
    })
}

/// Single-quotes a word for `sh`.
pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
