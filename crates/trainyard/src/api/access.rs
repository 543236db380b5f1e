//! Who may see and act on which job, when access control is on.
//!
//! Why: tenants share one server, and a job's record, status and logs are the tenant's data as
//! much as its objects are. What: `DescribeTrainingJob`, `StopTrainingJob` and
//! `UpdateTrainingJob` need their action on the job's ARN, evaluated with the job's tags as
//! `aws:ResourceTag/<key>` (and `sagemaker:ResourceTag/<key>`), as SageMaker evaluates them;
//! so a policy such as `"Condition": {"StringEquals": {"aws:ResourceTag/tenant-id":
//! "${aws:PrincipalTag/tenant-id}"}}` keeps each tenant to its own jobs. Reading a job's logs
//! needs the `logs:` action and `sagemaker:DescribeTrainingJob` on the job. `ListTrainingJobs`
//! needs `sagemaker:ListTrainingJobs` and then shows only the jobs the caller may describe, which
//! goes beyond SageMaker (there, listing shows every job of the account) so that a tenant never
//! learns another's job names or data locations.

use super::{ApiError, AppState, Caller};
use crate::db::JobRecord;
use crate::jobs::spec::Tag;

/// Tags as condition keys: `<prefix><key>` with the tag's value.
pub(super) fn tag_keys(prefix: &str, tags: &[Tag]) -> Vec<(String, Vec<String>)> {
    tags.iter()
        .map(|t| (format!("{prefix}{}", t.key), vec![t.value.clone()]))
        .collect()
}

/// The condition keys a job contributes: its tags.
fn resource_tags(job: &JobRecord) -> Vec<(String, Vec<String>)> {
    let tags = job.request.tags.as_deref().unwrap_or(&[]);
    let mut keys = tag_keys("aws:ResourceTag/", tags);
    keys.extend(tag_keys("sagemaker:ResourceTag/", tags));
    keys
}

/// Whether the caller may perform `action` on `job` (always, without access control).
pub(super) fn allowed(st: &AppState, caller: &Caller, action: &str, job: &JobRecord) -> bool {
    check(st, caller, action, job).is_ok()
}

/// Refuses `action` on `job` unless the caller's policies allow it.
pub(super) fn check(
    st: &AppState,
    caller: &Caller,
    action: &str,
    job: &JobRecord,
) -> Result<(), ApiError> {
    check_with(
        caller,
        action,
        &st.settings.job_arn(&job.name),
        &resource_tags(job),
    )
}

/// Refuses `action` on `job_name` when the job exists and the caller may not; an unknown job
/// is left to the operation, which answers as the service does.
pub(super) fn check_named(
    st: &AppState,
    caller: &Caller,
    action: &str,
    job_name: &str,
) -> Result<(), ApiError> {
    if matches!(caller, Caller::Unverified(_)) {
        return Ok(());
    }
    match st.store.get(job_name).map_err(ApiError::internal)? {
        Some(job) => check(st, caller, action, &job),
        None => Ok(()),
    }
}

/// Refuses an account-wide `action` (resource `*`) unless the caller's policies allow it.
pub(super) fn check_account(caller: &Caller, action: &str) -> Result<(), ApiError> {
    check_with(caller, action, "*", &[])
}

/// Refuses `action` on `resource` unless the caller's policies allow it.
pub(super) fn check_resource(
    caller: &Caller,
    action: &str,
    resource: &str,
) -> Result<(), ApiError> {
    check_with(caller, action, resource, &[])
}

/// Refuses `action` on `resource`, with extra condition keys, unless the caller's policies
/// allow it; the refusal names the caller, the action and the resource, as IAM's does.
pub(super) fn check_with(
    caller: &Caller,
    action: &str,
    resource: &str,
    keys: &[(String, Vec<String>)],
) -> Result<(), ApiError> {
    let Caller::Verified(principal) = caller else {
        return Ok(());
    };
    let context: Vec<(&str, Vec<String>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    principal
        .authorize(action, resource, &context)
        .map_err(|e| {
            ApiError::access_denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} ({e})",
                principal.arn()
            ))
        })
}
