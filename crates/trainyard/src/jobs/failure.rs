//! Why a job failed, as a value: a kind SageMaker clients branch on, and a message for people.
//!
//! SageMaker's `FailureReason` starts with the party at fault (`ClientError:`,
//! `AlgorithmError:`, `InternalServerError:`, `CapacityError:`), except when the algorithm
//! wrote `/opt/ml/output/failure`, whose text is reported as written (`doc/contract/container.md` §5).
//! Stages build a [`FailureReason`] and hand it on; only the lifecycle turns it into the stored
//! string, so the prefix and the length limit are applied in one place.

use std::fmt;

/// The longest `FailureReason` SageMaker reports (its API limit is 1024 characters).
pub const MAX_CHARS: usize = 1024;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The request or its data (`ClientError`): a missing object, a denied access, a bad path.
    Client,
    /// The training code (`AlgorithmError`): a non-zero exit, a signal, out of memory.
    Algorithm,
    /// trainyard itself (`InternalServerError`).
    Internal,
    /// The cluster cannot provide the hosts (`CapacityError`).
    Capacity,
    /// The algorithm's own `/opt/ml/output/failure` text, reported as written.
    Reported,
}

impl FailureKind {
    /// The wire prefix, without the colon (`None` for [`FailureKind::Reported`]).
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            FailureKind::Client => Some("ClientError"),
            FailureKind::Algorithm => Some("AlgorithmError"),
            FailureKind::Internal => Some("InternalServerError"),
            FailureKind::Capacity => Some("CapacityError"),
            FailureKind::Reported => None,
        }
    }
}

/// A job's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReason {
    /// Who is at fault.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

impl FailureReason {
    /// A reason of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        FailureReason {
            kind,
            message: message.into(),
        }
    }
    /// `ClientError: ...`.
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Client, message)
    }
    /// `AlgorithmError: ...`.
    pub fn algorithm(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Algorithm, message)
    }
    /// `ClientError: No space left on device: <where>`: the disk filled while the job ran;
    /// `where` names the stage and the path (downloading a channel, writing the training log,
    /// packing an artifact, recording the job's status).
    pub fn disk_full(place: impl std::fmt::Display) -> Self {
        Self::client(format!("No space left on device: {place}"))
    }
    /// `ClientError: <message>`, or [`FailureReason::disk_full`] naming `stage` when the
    /// message says the disk is full (errors of the data plane arrive as text).
    pub fn client_or_disk_full(stage: &str, message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        if mentions_disk_full(&message) {
            Self::disk_full(format!("{stage}: {message}"))
        } else {
            Self::client(message)
        }
    }
    /// `InternalServerError: ...`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }
    /// `CapacityError: ...`.
    pub fn capacity(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Capacity, message)
    }

    /// Reads a stored or transmitted reason back (a cluster node sends its host's reason as
    /// text); text without a known prefix is the algorithm's own.
    pub fn parse(text: &str) -> Self {
        for kind in [
            FailureKind::Client,
            FailureKind::Algorithm,
            FailureKind::Internal,
            FailureKind::Capacity,
        ] {
            let prefix = kind.prefix().expect("prefixed kinds");
            if let Some(rest) = text.strip_prefix(prefix).and_then(|r| r.strip_prefix(": ")) {
                return Self::new(kind, rest);
            }
        }
        Self::new(FailureKind::Reported, text)
    }

    /// Whether the host was ended by a signal trainyard (or the cluster) sent because the job
    /// was stopping, rather than failing on its own.
    pub fn is_termination(&self) -> bool {
        self.kind == FailureKind::Algorithm
            && (self.message.contains("killed by signal SIGTERM")
                || self.message.contains("killed by signal SIGKILL"))
    }

    /// The stored text: prefix, message, at most [`MAX_CHARS`] characters.
    pub fn to_wire(&self) -> String {
        let full = self.to_string();
        if full.chars().count() <= MAX_CHARS {
            full
        } else {
            full.chars().take(MAX_CHARS).collect()
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.prefix() {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Whether an I/O error means the file system is full (or the quota is used up).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Whether an error's text says the file system is full: how `ENOSPC` reads once an error has
/// crossed a crate as text, and SQLite's `SQLITE_FULL`.
pub fn mentions_disk_full(text: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "database or disk is full",
    ]
    .iter()
    .any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_round_trips_and_is_bounded() {
        for r in [
            FailureReason::client("channel train: no objects"),
            FailureReason::algorithm("algo-1 exited with status 3"),
            FailureReason::internal("x"),
            FailureReason::capacity("Slurm cannot run job 7"),
            FailureReason::new(FailureKind::Reported, "my own words: ClientError"),
        ] {
            assert_eq!(FailureReason::parse(&r.to_wire()), r);
        }
        assert_eq!(
            FailureReason::client("a").to_string(),
            "ClientError: a",
            "SageMaker's prefix"
        );
        let long = FailureReason::algorithm("é".repeat(5000)).to_wire();
        assert_eq!(long.chars().count(), MAX_CHARS);
        assert!(FailureReason::algorithm("algo-2 killed by signal SIGTERM").is_termination());
        assert!(!FailureReason::client("killed by signal SIGTERM").is_termination());
    }
}
