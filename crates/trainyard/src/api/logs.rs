//! Training logs in the CloudWatch Logs shape (`DescribeLogStreams`, `GetLogEvents`).
//!
//! SageMaker writes each host's output to the log group `/aws/sagemaker/TrainingJobs`, stream
//! `<job>/algo-<k>-<epoch seconds>`, and the SageMaker SDK (`logs=True`) and the aws CLI read
//! it from there. Serving the same two operations from the host log files means those clients
//! work when pointed at trainyard (e.g. `AWS_ENDPOINT_URL`), and `trainyard logs -f` uses them
//! too. Tokens are byte offsets of line starts in the host's log file, tagged `f/` or `b/`; a
//! forward token that does not move means no new events yet, as in CloudWatch. A call reads
//! only the window it answers ([`crate::runner::log_window`]): a job decides how large its
//! log grows, and the server's memory must not follow. A page holds at most `limit` events and
//! about 1 MB of them, CloudWatch's response limit.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::runner::log_window::{Anchor, LogFile, TimeFilter, WindowError};

pub use crate::authz::control::LOG_GROUP;

fn not_found(what: &str) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::BAD_REQUEST,
        code: "ResourceNotFoundException",
        message: format!("The specified {what} does not exist."),
    }
}

fn check_group(body: &Value) -> Result<(), ApiError> {
    match body.get("logGroupName").and_then(Value::as_str) {
        Some(LOG_GROUP) => Ok(()),
        Some(_) => Err(not_found("log group")),
        None => Err(ApiError::validation("logGroupName is required")),
    }
}

/// The streams of one job: (stream name, log file, job creation time in ms).
fn streams(st: &AppState, job: &str) -> Result<Vec<(String, PathBuf, i64)>, ApiError> {
    let Some(rec) = st.store.get(job).map_err(ApiError::internal)? else {
        return Ok(Vec::new());
    };
    let dir = st.settings.job_dir(&rec.name).logs();
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            let Some(host) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.starts_with("algo-"))
            else {
                continue;
            };
            if p.extension().is_none_or(|x| x != "log") {
                continue;
            }
            out.push((
                format!("{}/{host}-{}", rec.name, rec.creation_time as i64),
                p.clone(),
                (rec.creation_time * 1000.0) as i64,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub(super) fn describe_log_streams(st: &AppState, body: &Value) -> Result<Value, ApiError> {
    check_group(body)?;
    let prefix = body
        .get("logStreamNamePrefix")
        .and_then(Value::as_str)
        .unwrap_or("");
    let job = prefix.split('/').next().unwrap_or("");
    if job.is_empty() {
        return Err(ApiError::validation(
            "logStreamNamePrefix must name a training job (`<job>/`)",
        ));
    }
    let mut items = Vec::new();
    for (name, path, created) in streams(st, job)? {
        if !name.starts_with(prefix) {
            continue;
        }
        let span = open_log(&path)
            .and_then(|log| log.first_and_last())
            .unwrap_or_default();
        let mut s = json!({"logStreamName": name, "creationTime": created, "arn": format!("arn:aws:logs:{}:{}:log-group:{LOG_GROUP}:log-stream:{name}", st.settings.region, st.settings.account_id), "storedBytes": 0});
        if let Some((f, l)) = span {
            s["firstEventTimestamp"] = json!(f);
            s["lastEventTimestamp"] = json!(l);
            s["lastIngestionTime"] = json!(l);
        }
        items.push(s);
    }
    if body.get("descending").and_then(Value::as_bool) == Some(true) {
        items.reverse();
    }
    Ok(json!({"logStreams": items}))
}

fn open_log(path: &Path) -> std::io::Result<LogFile<std::fs::File>> {
    LogFile::open(std::fs::File::open(path)?)
}

fn bad_token() -> ApiError {
    ApiError::validation("The specified nextToken is invalid.")
}

pub(super) fn get_log_events(st: &AppState, body: &Value) -> Result<Value, ApiError> {
    check_group(body)?;
    let stream = body
        .get("logStreamName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("logStreamName is required"))?;
    let job = stream.split('/').next().unwrap_or("");
    let (_, path, _) = streams(st, job)?
        .into_iter()
        .find(|(n, _, _)| n == stream)
        .ok_or_else(|| not_found("log stream"))?;
    let filter = TimeFilter {
        start: body.get("startTime").and_then(Value::as_i64),
        end: body.get("endTime").and_then(Value::as_i64),
    };
    let limit = body
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(10_000)
        .clamp(1, 10_000) as usize;
    let anchor = match body.get("nextToken").and_then(Value::as_str) {
        Some(t) => {
            let (dir, n) = t.split_once('/').ok_or_else(bad_token)?;
            let n: u64 = n.parse().map_err(|_| bad_token())?;
            match dir {
                "f" => Anchor::Forward(n),
                "b" => Anchor::Backward(n),
                _ => return Err(bad_token()),
            }
        }
        None if body.get("startFromHead").and_then(Value::as_bool) == Some(true) => Anchor::Head,
        None => Anchor::Tail,
    };
    let log = open_log(&path).map_err(ApiError::internal)?;
    let page = log.page(anchor, limit, &filter).map_err(|e| match e {
        WindowError::BadToken => bad_token(),
        WindowError::Io(e) => ApiError::internal(e),
    })?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp}))
        .collect();
    Ok(json!({
        "events": events,
        "nextForwardToken": format!("f/{}", page.forward),
        "nextBackwardToken": format!("b/{}", page.backward),
    }))
}
