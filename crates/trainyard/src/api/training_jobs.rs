//! `CreateTrainingJob`, `DescribeTrainingJob`, `ListTrainingJobs`, `StopTrainingJob`.
//!
//! Requests are parsed here and handed to the same domain code the CLI uses (`jobs::submit`,
//! `describe`, the scheduler), so the API and the CLI cannot disagree about a job. Unknown
//! request members are ignored (and logged) unless the server runs with `--strict`, because
//! SDKs built from a newer service model may send members trainyard does not know yet.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{ApiError, AppState, Caller};
use crate::authz::control::{self, Account, FileSystemUse, Operation};
use crate::jobs::describe::{describe, summary};
use crate::jobs::spec::{CreateTrainingJobRequest, lower_first, remove_member};
use crate::jobs::{SubmitError, submit};
use crate::scheduler::StopError;

/// Parses a CreateTrainingJob body, dropping unknown members unless `strict`; returns the
/// request and the paths of the members it dropped.
pub fn parse_create(
    body: &Value,
    strict: bool,
) -> Result<(CreateTrainingJobRequest, Vec<String>), ApiError> {
    let mut value = body.clone();
    let mut ignored = Vec::new();
    loop {
        match CreateTrainingJobRequest::from_json(&value.to_string()) {
            Ok(req) => return Ok((req, ignored)),
            Err(e) if !strict && e.message.starts_with("unknown field") && ignored.len() < 100 => {
                if !remove_member(&mut value, &e.path) {
                    return Err(ApiError::validation(format!("{}: {}", e.path, e.message)));
                }
                ignored.push(e.path);
            }
            Err(e) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: {e}"
                )));
            }
        }
    }
}

pub(super) async fn create(
    st: &Arc<AppState>,
    body: Value,
    caller: Caller,
) -> Result<Value, ApiError> {
    let (req, ignored) = parse_create(&body, st.strict)?;
    if !ignored.is_empty() {
        tracing::warn!(job = %req.training_job_name, ?ignored, "ignored unknown request members");
    }
    if req.instance_count() > st.scheduler.capacity() {
        return Err(ApiError::limit(format!(
            "The request needs {} hosts but this trainyard server runs at most {} at once (--capacity)",
            req.instance_count(),
            st.scheduler.capacity()
        )));
    }
    // With access control, the caller must be allowed to create the job, pass the role and
    // mount its file systems, the role must be assumable for the job, its session must be
    // allowed to mount the file systems, and the S3 check at creation already runs as the
    // job's principal.
    let storage = match &caller {
        Caller::Unverified(_) => st.storage.clone(),
        Caller::Verified(principal) => {
            let identity = st
                .identity
                .as_ref()
                .ok_or_else(|| ApiError::internal("verified caller without identity"))?;
            // The tags the job is created with are `aws:RequestTag/...` and `aws:TagKeys`, so a
            // policy can require each tenant to tag its jobs with its own tenant.
            // File-system channels need their mount actions too, from the caller and from the
            // job's session that will mount them.
            let tags_of = |id: &str| st.settings.file_systems.tags(id);
            let account = Account::of(&st.settings);
            super::enforce(&control::authorize(
                &caller,
                &Operation::create(&req, tags_of),
                account,
            ))?;
            let job_principal = identity
                .job_principal(&req.role_arn, principal.session_tags(), req.tag_chaining())
                .map_err(|e| {
                    ApiError::validation(format!("1 validation error detected: roleArn: {e}"))
                })?;
            super::enforce(&control::authorize_job(
                &job_principal,
                &FileSystemUse::of_request(&req, tags_of),
                account,
            ))?;
            st.storage.authorized(job_principal)
        }
    };
    // Under access control a job runs only in its container: an authorized request is refused
    // now, naming why, on a machine that cannot give it one (issue 15), rather than failed or
    // run unsandboxed later.
    if st.identity.is_some()
        && st.sandbox_check
        && let Some(why) = crate::runner::isolation::refusal(&st.settings).await
    {
        return Err(ApiError::validation(why));
    }
    let caller_json = caller.record().map(|r| r.to_json());
    let rec = submit(
        &st.settings,
        &*st.store,
        &storage,
        req,
        Path::new(&st.workdir),
        caller_json.as_deref(),
    )
    .await
    .map_err(|e| match e {
        SubmitError::Parse(p) => ApiError::validation(format!("1 validation error detected: {p}")),
        SubmitError::Invalid(v) => ApiError::validation(v.to_string()),
        SubmitError::InUse(_) => ApiError::in_use(
            e.to_string()
                .trim_start_matches("ResourceInUse: ")
                .to_string(),
        ),
        SubmitError::DiskFull(m) => ApiError::unavailable(m),
        SubmitError::Internal(m) => ApiError::internal(m),
    })?;
    st.scheduler.notify();
    Ok(json!({"TrainingJobArn": rec.arn}))
}

fn job_name(body: &Value) -> Result<String, ApiError> {
    match body.get("TrainingJobName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n.len() <= 63 => Ok(n.to_string()),
        Some(n) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'trainingJobName' failed to satisfy constraint: Member must have length between 1 and 63"
        ))),
        None => Err(ApiError::validation(
            "1 validation error detected: Value null at 'trainingJobName' failed to satisfy constraint: Member must not be null",
        )),
    }
}

pub(super) fn describe_job(st: &AppState, body: &Value) -> Result<Value, ApiError> {
    let name = job_name(body)?;
    match st.store.get(&name).map_err(ApiError::internal)? {
        Some(job) => {
            let pool = st.store.warm_pool(&name).map_err(ApiError::internal)?;
            Ok(describe(&job, pool.as_ref()))
        }
        // The real service answers an unknown name this way, and waiters rely on it.
        None => Err(ApiError::validation("Requested resource not found.")),
    }
}

/// UpdateTrainingJob: only `ResourceConfig.KeepAlivePeriodInSeconds` (warm pools) is
/// supported; the profiler and remote-debug members are refused by name.
pub(super) fn update(st: &AppState, body: &Value) -> Result<Value, ApiError> {
    let name = job_name(body)?;
    for member in [
        "ProfilerConfig",
        "ProfilerRuleConfigurations",
        "RemoteDebugConfig",
    ] {
        if body.get(member).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(format!(
                "{member} is not supported by trainyard; UpdateTrainingJob changes ResourceConfig.KeepAlivePeriodInSeconds only"
            )));
        }
    }
    let Some(job) = st.store.get(&name).map_err(ApiError::internal)? else {
        return Err(ApiError::not_found("Requested resource not found."));
    };
    let keep_alive = match body
        .get("ResourceConfig")
        .map(|r| r.get("KeepAlivePeriodInSeconds"))
    {
        Some(Some(v)) => v.as_i64().ok_or_else(|| {
            ApiError::serialization("ResourceConfig.KeepAlivePeriodInSeconds must be an integer")
        })?,
        _ => {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    crate::warm_pools::update_keep_alive(&*st.store, &job.name, keep_alive)
        .map_err(ApiError::validation)?;
    if let Err(e) = crate::warm_pools::reap(&st.settings, &*st.store) {
        tracing::warn!("releasing warm pools: {e}");
    }
    Ok(json!({"TrainingJobArn": job.arn}))
}

pub(super) fn stop(st: &AppState, body: &Value) -> Result<Value, ApiError> {
    let name = job_name(body)?;
    match st.scheduler.stop(&name) {
        Ok(()) => Ok(json!({})),
        Err(StopError::NotFound) => Err(ApiError::not_found("Requested resource not found.")),
        Err(e @ StopError::Finished(_)) => Err(ApiError::validation(e.to_string())),
        Err(StopError::Db(e)) => Err(ApiError::internal(e)),
    }
}

fn timestamp(body: &Value, key: &str) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => {
            if let Ok(v) = s.parse::<f64>() {
                return Ok(Some(v));
            }
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| Some(t.unix_timestamp_nanos() as f64 / 1e9))
                .map_err(|_| {
                    ApiError::validation(format!(
                        "{key}: {s:?} is not a timestamp (epoch seconds or RFC 3339)"
                    ))
                })
        }
        Some(other) => Err(ApiError::validation(format!(
            "{key}: {other} is not a timestamp"
        ))),
    }
}

fn string<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::validation(format!(
            "{key}: expected a string, got {other}"
        ))),
    }
}

fn one_of<'a>(body: &'a Value, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, ApiError> {
    match string(body, key)? {
        Some(v) if !allowed.contains(&v) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            lower_first(key),
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

/// Pagination tokens are opaque to clients; this one is an offset into the filtered, sorted
/// list, tagged so a token from elsewhere is refused rather than misread.
const TOKEN_PREFIX: &str = "trainyard-list-v1:";

/// ListTrainingJobs over the jobs `visible` admits (see `authz::control::visible`).
pub(super) fn list(
    st: &AppState,
    body: &Value,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Value, ApiError> {
    let max = match body.get("MaxResults") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_i64() {
            Some(n @ 1..=100) => n as usize,
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{v}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100"
                )));
            }
        },
    };
    let name_contains = string(body, "NameContains")?.map(str::to_ascii_lowercase);
    if let Some(n) = &name_contains {
        if n.len() > 63 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at 'nameContains' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9\\-]+"
            )));
        }
    }
    let status = one_of(
        body,
        "StatusEquals",
        &[
            "InProgress",
            "Completed",
            "Failed",
            "Stopping",
            "Stopped",
            "Deleting",
        ],
    )?;
    let sort_by =
        one_of(body, "SortBy", &["Name", "CreationTime", "Status"])?.unwrap_or("CreationTime");
    let descending = one_of(body, "SortOrder", &["Ascending", "Descending"])? == Some("Descending");
    let warm = one_of(
        body,
        "WarmPoolStatusEquals",
        &["Available", "Terminated", "Reused", "InUse"],
    )?;
    let (ca, cb) = (
        timestamp(body, "CreationTimeAfter")?,
        timestamp(body, "CreationTimeBefore")?,
    );
    let (ma, mb) = (
        timestamp(body, "LastModifiedTimeAfter")?,
        timestamp(body, "LastModifiedTimeBefore")?,
    );
    let offset = match string(body, "NextToken")? {
        None => 0,
        Some(t) => t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::validation("Invalid pagination token"))?,
    };

    let now = crate::db::now();
    let pools: std::collections::HashMap<String, crate::warm_pools::WarmPool> = st
        .store
        .warm_pools()
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|p| (p.job.to_ascii_lowercase(), p))
        .collect();
    let pool_of = |name: &str| pools.get(&name.to_ascii_lowercase());
    let mut jobs: Vec<_> = st
        .store
        .summaries()
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|j| status.is_none_or(|s| j.phase.status().as_str() == s))
        .filter(|j| {
            name_contains
                .as_ref()
                .is_none_or(|n| j.name.to_ascii_lowercase().contains(n))
        })
        .filter(|j| {
            ca.is_none_or(|t| j.creation_time > t) && cb.is_none_or(|t| j.creation_time < t)
        })
        .filter(|j| {
            ma.is_none_or(|t| j.last_modified_time > t)
                && mb.is_none_or(|t| j.last_modified_time < t)
        })
        .filter(|j| visible(&j.name))
        .filter(|j| {
            warm.is_none_or(|w| {
                pool_of(&j.name)
                    .and_then(|p| p.describe(now))
                    .is_some_and(|d| d["Status"] == w)
            })
        })
        .collect();
    jobs.sort_by(|a, b| {
        let ord = match sort_by {
            "Name" => a.name.cmp(&b.name),
            "Status" => a.phase.status().as_str().cmp(b.phase.status().as_str()),
            _ => a.creation_time.total_cmp(&b.creation_time),
        };
        ord.then_with(|| a.creation_time.total_cmp(&b.creation_time))
            .then_with(|| a.name.cmp(&b.name))
    });
    if descending {
        jobs.reverse();
    }
    let page: Vec<Value> = jobs
        .iter()
        .skip(offset)
        .take(max)
        .map(|j| summary(j, pool_of(&j.name)))
        .collect();
    let mut out = Map::new();
    out.insert("TrainingJobSummaries".into(), Value::Array(page));
    if offset + max < jobs.len() {
        out.insert(
            "NextToken".into(),
            json!(format!("{TOKEN_PREFIX}{}", offset + max)),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_members_are_dropped_unless_strict() {
        let body = json!({
            "TrainingJobName": "j", "RoleArn": "arn:aws:iam::000000000000:role/r",
            "OutputDataConfig": {"S3OutputPath": "s3://b/o", "FutureThing": 1},
            "NewTopLevel": {"x": 1},
            "InputDataConfig": [{"ChannelName": "c", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p", "Extra": true}}}]
        });
        let (req, ignored) = parse_create(&body, false).unwrap();
        assert_eq!(req.training_job_name, "j");
        let mut ignored = ignored;
        ignored.sort();
        assert_eq!(
            ignored,
            [
                "InputDataConfig[0].DataSource.S3DataSource.Extra",
                "NewTopLevel",
                "OutputDataConfig.FutureThing"
            ]
        );
        let err = parse_create(&body, true).unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }
}
