//! The `DescribeTrainingJob` and `TrainingJobSummary` views of a stored job.
//!
//! The response echoes the request as stored (defaults applied) except the members the
//! response shape does not have (`Tags`, `SessionChainingConfig`), and adds the status fields.
//! Timestamps are epoch seconds as JSON numbers, the protocol's format, so the same value
//! serves the CLI and the HTTP API.

use serde_json::{Map, Value, json};

use crate::db::{JobRecord, JobSummary, Timestamp};
use crate::runner::artifacts::artifact_uri;
use crate::warm_pools::WarmPool;

/// The full DescribeTrainingJob response; `pool` is the job's warm-pool row, if it asked for
/// one (its keep-alive period may have been changed by UpdateTrainingJob since).
pub fn describe(job: &JobRecord, pool: Option<&WarmPool>) -> Value {
    let mut out = match serde_json::to_value(&job.request) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(p) = pool {
        if let Some(rc) = out.get_mut("ResourceConfig").and_then(Value::as_object_mut) {
            rc.insert("KeepAlivePeriodInSeconds".into(), json!(p.keep_alive));
        }
        if let Some(status) = p.describe(crate::db::now()) {
            out.insert("WarmPoolStatus".into(), status);
        }
    }
    out.remove("Tags");
    out.remove("SessionChainingConfig");
    out.insert("TrainingJobArn".into(), json!(job.arn));
    out.insert(
        "TrainingJobStatus".into(),
        json!(job.phase.status().as_str()),
    );
    out.insert("SecondaryStatus".into(), json!(job.phase.secondary()));
    let out_path = &job.request.output_data_config.s3_output_path;
    out.insert(
        "ModelArtifacts".into(),
        json!({"S3ModelArtifacts": artifact_uri(out_path, &job.name, "model.tar.gz")}),
    );
    out.insert("CreationTime".into(), json!(job.creation_time));
    out.insert("LastModifiedTime".into(), json!(job.last_modified_time));
    if let Some(t) = job.training_start_time {
        out.insert("TrainingStartTime".into(), json!(t));
    }
    if let Some(t) = job.training_end_time {
        out.insert("TrainingEndTime".into(), json!(t));
        if let Some(s) = job.training_start_time {
            let secs = ((t - s).round() as i64).max(1);
            out.insert("TrainingTimeInSeconds".into(), json!(secs));
            out.insert("BillableTimeInSeconds".into(), json!(secs));
        }
    }
    if let Some(r) = &job.failure_reason {
        out.insert("FailureReason".into(), json!(r));
    }
    let transitions: Vec<Value> = job
        .transitions
        .iter()
        .map(|t| {
            let mut m = Map::new();
            m.insert("Status".into(), json!(t.status));
            m.insert("StartTime".into(), json!(t.start_time));
            if let Some(e) = t.end_time {
                m.insert("EndTime".into(), json!(e));
            }
            m.insert("StatusMessage".into(), json!(t.message));
            Value::Object(m)
        })
        .collect();
    out.insert(
        "SecondaryStatusTransitions".into(),
        Value::Array(transitions),
    );
    if !job.metrics.is_empty() {
        let metrics: Vec<Value> = job
            .metrics
            .iter()
            .map(|m| json!({"MetricName": m.name, "Value": m.value, "Timestamp": m.timestamp}))
            .collect();
        out.insert("FinalMetricDataList".into(), Value::Array(metrics));
    }
    Value::Object(out)
}

/// One `TrainingJobSummary`.
pub fn summary(job: &JobSummary, pool: Option<&WarmPool>) -> Value {
    let mut m = Map::new();
    m.insert("TrainingJobName".into(), json!(job.name));
    m.insert("TrainingJobArn".into(), json!(job.arn));
    m.insert("CreationTime".into(), json!(job.creation_time));
    m.insert(
        "TrainingJobStatus".into(),
        json!(job.phase.status().as_str()),
    );
    m.insert("SecondaryStatus".into(), json!(job.phase.secondary()));
    m.insert("LastModifiedTime".into(), json!(job.last_modified_time));
    if let Some(t) = job.training_end_time {
        m.insert("TrainingEndTime".into(), json!(t));
    }
    if let Some(status) = pool.and_then(|p| p.describe(crate::db::now())) {
        m.insert("WarmPoolStatus".into(), status);
    }
    Value::Object(m)
}

/// `2026-11-23 04:53:01` (UTC) for humans.
pub fn format_time(t: Timestamp) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos((t * 1e9) as i128)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| format!("{t:.3}"))
}
