//! What a cluster node and the server exchange while a job's host runs on the node.
//!
//! Routes, all under `/_trainyard/jobs/{job}/hosts/{index}/` and authorized by the job's token
//! (`Authorization: Bearer <token>`; the token is made for one job, given to its tasks in their
//! environment, and never logged):
//!
//! * `POST register` `{"Address": ip}`: the node says where it is reachable.
//! * `GET assignment`: `409` until every host registered, then [`Assignment`].
//! * `POST events` [`EventBatch`]: status changes, log lines, platform messages, the end.
//! * `PUT artifacts/{model.tar.gz|output.tar.gz}`: the host's `/opt/ml/model` and
//!   `/opt/ml/output/data` as gzip tarballs; the server copies every host's entries into
//!   the job's one archive of each (`runner::artifacts::Source::Archive`) and uploads it.

use serde::{Deserialize, Serialize};

/// The route prefix of host calls.
pub const PREFIX: &str = "/_trainyard/jobs";

/// The environment variable carrying the job token to a node.
pub const TOKEN_ENV: &str = "TRAINYARD_HOST_TOKEN";

/// The artifact files a host sends.
pub const ARTIFACTS: [&str; 2] = ["model.tar.gz", "output.tar.gz"];

/// What a node needs to run its host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Assignment {
    /// The job's ARN.
    pub arn: String,
    /// The job's request as stored (validated, defaults applied); the node plans it.
    pub request: serde_json::Value,
    /// Every host's address, by index.
    pub addresses: Vec<String>,
    /// What the job's data plane may do, decided by the server (ABAC crosses the seam here).
    pub grant: crate::runner::authorize::Grant,
}

/// `register`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    /// The node's address as the other nodes reach it.
    pub address: String,
}

/// One thing that happened on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Event {
    /// The host entered a phase (`Downloading`, `Training`).
    Phase(String),
    /// A line the training process printed.
    Log(String),
    /// A platform message about the host.
    Info(String),
    /// The host's run ended.
    Exit(HostExit),
}

/// How a host's run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostExit {
    /// The host's final `TrainingJobStatus`.
    pub status: String,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Final metric values (name, value, epoch seconds).
    #[serde(default)]
    pub metrics: Vec<(String, f64, f64)>,
    /// Whether the host's process started (its artifacts count even when it failed).
    #[serde(default)]
    pub trained: bool,
}

/// `events`' body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventBatch {
    /// In order.
    pub events: Vec<Event>,
}

/// The path of a host call.
pub fn path(job: &str, index: usize, what: &str) -> String {
    format!("{PREFIX}/{job}/hosts/{index}/{what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_in_their_wire_shape() {
        let batch = EventBatch {
            events: vec![
                Event::Phase("Training".into()),
                Event::Log("loss=0.5".into()),
                Event::Exit(HostExit {
                    status: "Failed".into(),
                    failure_reason: Some("AlgorithmError: boom".into()),
                    metrics: vec![("loss".into(), 0.5, 1.0)],
                    trained: true,
                }),
            ],
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert!(text.contains(r#"{"Phase":"Training"}"#), "{text}");
        assert!(
            text.contains(r#""FailureReason":"AlgorithmError: boom""#),
            "{text}"
        );
        let back: EventBatch = serde_json::from_str(&text).unwrap();
        assert_eq!(back.events, batch.events);
        assert_eq!(path("j", 1, "events"), "/_trainyard/jobs/j/hosts/1/events");
    }
}
