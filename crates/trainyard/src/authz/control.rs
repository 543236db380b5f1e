//! Control-plane decisions: may this caller perform this API operation on this job?
//!
//! Why: tenants share one server, and a job's record, status and logs are the tenant's data as
//! much as its objects are. So each operation is turned into the IAM requests SageMaker and
//! CloudWatch Logs evaluate for it ([`Operation::requests`]), evaluated against the caller's
//! policies, with the job's tags as condition keys, as SageMaker evaluates them; a policy such
//! as `"Condition": {"StringEquals": {"aws:ResourceTag/tenant-id":
//! "${aws:PrincipalTag/tenant-id}"}}` then keeps each tenant to its own jobs:
//!
//! | operation | action | resource | condition keys |
//! |---|---|---|---|
//! | `CreateTrainingJob` | `sagemaker:CreateTrainingJob`, then `iam:PassRole` | job ARN, then `RoleArn` | `aws:RequestTag/<key>`, `aws:TagKeys` (create only) |
//! | … with a `FileSystemDataSource` channel | then, per channel, `elasticfilesystem:ClientMount` (and `elasticfilesystem:ClientWrite` for `rw`) for EFS, `fsx:DescribeFileSystems` for FSx for Lustre | the file system's ARN | `aws:ResourceTag/<key>` (the file system's tags in `filesystems.json`), `sagemaker:FileSystemId`, `sagemaker:FileSystemType`, `sagemaker:FileSystemAccessMode`, `sagemaker:FileSystemDirectoryPath` |
//! | `DescribeTrainingJob`, `StopTrainingJob`, `UpdateTrainingJob` | the operation's | job ARN | `aws:ResourceTag/<key>`, `sagemaker:ResourceTag/<key>` |
//! | `ListTrainingJobs` | `sagemaker:ListTrainingJobs` | `*` | |
//! | `DescribeLogStreams`, `GetLogEvents` | `logs:<operation>`, then `sagemaker:DescribeTrainingJob` | log group ARN, then the stream's job ARN | the job's tags (second request) |
//! | `GetMetricStatistics`, `GetMetricData` (CloudWatch) | `cloudwatch:<operation>`, then `sagemaker:DescribeTrainingJob` per job | `*`, then the ARN of the job named by the `TrainingJobName` dimension | the job's tags (second request) |
//! | `ListMetrics` (CloudWatch) | `cloudwatch:ListMetrics` | `*` | (then filtered by [`visible`]) |
//!
//! An operation on a job that does not exist needs nothing beyond its `logs:` action: the
//! operation itself answers as the service does ("Requested resource not found."). So a
//! caller *can* tell a job it may not see (`AccessDeniedException`) from a missing one; the
//! answer of the API and its tests are kept as they were. `ListTrainingJobs` needs its action
//! and then shows only the jobs the caller may describe ([`visible`]), which goes beyond
//! SageMaker (there, listing shows every job of the account) so that a tenant never learns
//! another's job names or data locations.
//!
//! A file-system channel is checked twice with the same requests ([`FileSystemUse`]): as the
//! caller here, and as the job's execution-role session ([`authorize_job`]) at creation and
//! again when the job runs, since that session is what mounts it (as it is what reads the S3
//! channels). FSx for Lustre has no IAM action for clients (AWS controls Lustre clients by
//! network and POSIX permissions), so trainyard asks for `fsx:DescribeFileSystems` on the file
//! system, the call SageMaker makes to find it; a policy keeps a tenant read-only on it with
//! the `sagemaker:FileSystemAccessMode` condition key.
//!
//! [`authorize`] never fails: it returns a [`ControlDecision`], the decision plus, for each
//! request evaluated, the request as evaluated (action, resource, condition keys), its
//! decision, the statements that determined it (the allowing ones, or the explicit `Deny`s;
//! none for an implicit deny) and whatever could not be evaluated, as the IAM crate does for
//! the data plane. The API logs it and turns a deny into `AccessDeniedException`. The rules
//! are exercised as data in `tests/authz/control_plane.json`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use trainyard_iam::Decision;

use super::Caller;
use super::principal::AccessDenial;
use crate::db::JobRecord;
use crate::identity::JobPrincipal;
use crate::jobs::spec::{CreateTrainingJobRequest, FileSystemAccessMode, FileSystemType, Tag};

/// The log group training jobs write to, as CloudWatch names it.
pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";

/// `arn:aws:sagemaker:<region>:<account>:training-job/<name, lower-cased>` (SageMaker
/// lower-cases job names in ARNs).
pub fn job_arn(region: &str, account_id: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:{region}:{account_id}:training-job/{}",
        name.to_ascii_lowercase()
    )
}

/// Where the control plane's resources live: the region and account its ARNs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account<'a> {
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Twelve digits.
    pub account_id: &'a str,
}

impl<'a> Account<'a> {
    /// The installation's account.
    pub fn of(settings: &'a crate::config::Settings) -> Self {
        Account {
            region: &settings.region,
            account_id: &settings.account_id,
        }
    }

    /// The ARN of job `name`.
    pub fn job_arn(&self, name: &str) -> String {
        job_arn(self.region, self.account_id, name)
    }

    /// The ARN of a file system: `arn:aws:elasticfilesystem:<region>:<account>:file-system/<id>`
    /// for EFS, `arn:aws:fsx:<region>:<account>:file-system/<id>` for FSx for Lustre.
    pub fn file_system_arn(&self, kind: FileSystemType, id: &str) -> String {
        let service = match kind {
            FileSystemType::Efs => "elasticfilesystem",
            FileSystemType::FsxLustre => "fsx",
        };
        format!(
            "arn:aws:{service}:{}:{}:file-system/{id}",
            self.region, self.account_id
        )
    }

    /// The ARN of the training jobs' log group.
    pub fn log_group_arn(&self) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{LOG_GROUP}",
            self.region, self.account_id
        )
    }
}

/// A job as authorization sees it: its name and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's name.
    pub name: String,
    /// Its tags (`Tags` of `CreateTrainingJob`).
    pub tags: Vec<Tag>,
}

impl Job {
    /// The job of a stored record.
    pub fn of(record: &JobRecord) -> Self {
        Job {
            name: record.name.clone(),
            tags: record.request.tags.clone().unwrap_or_default(),
        }
    }
}

/// A `FileSystemDataSource` channel as authorization sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSystemUse {
    /// `FileSystemId`.
    pub id: String,
    /// `FileSystemType`.
    pub kind: FileSystemType,
    /// `FileSystemAccessMode` is `rw`.
    pub write: bool,
    /// `DirectoryPath`.
    pub directory: String,
    /// The file system's tags (`filesystems.json`), as `aws:ResourceTag/<key>`.
    pub tags: Vec<Tag>,
}

impl FileSystemUse {
    /// The file-system channels of `request`, each with the tags `tags_of` gives its id.
    pub fn of_request(
        request: &CreateTrainingJobRequest,
        tags_of: impl Fn(&str) -> Vec<Tag>,
    ) -> Vec<Self> {
        request
            .input_data_config
            .iter()
            .flatten()
            .filter_map(|ch| ch.data_source.file_system_data_source.as_ref())
            .map(|fs| FileSystemUse {
                id: fs.file_system_id.clone(),
                kind: fs.file_system_type,
                write: fs.file_system_access_mode == FileSystemAccessMode::Rw,
                directory: fs.directory_path.clone(),
                tags: tags_of(&fs.file_system_id),
            })
            .collect()
    }

    /// The requests mounting it needs: see the module's table.
    pub fn requests(&self, account: Account<'_>) -> Vec<ControlRequest> {
        let resource = account.file_system_arn(self.kind, &self.id);
        let mut context = tag_keys("aws:ResourceTag/", &self.tags);
        for (key, value) in [
            ("sagemaker:FileSystemId", self.id.as_str()),
            (
                "sagemaker:FileSystemType",
                match self.kind {
                    FileSystemType::Efs => "EFS",
                    FileSystemType::FsxLustre => "FSxLustre",
                },
            ),
            (
                "sagemaker:FileSystemAccessMode",
                if self.write { "rw" } else { "ro" },
            ),
            ("sagemaker:FileSystemDirectoryPath", self.directory.as_str()),
        ] {
            context.insert(key.into(), vec![value.to_owned()]);
        }
        let actions: &[&str] = match (self.kind, self.write) {
            (FileSystemType::Efs, false) => &["elasticfilesystem:ClientMount"],
            (FileSystemType::Efs, true) => &[
                "elasticfilesystem:ClientMount",
                "elasticfilesystem:ClientWrite",
            ],
            (FileSystemType::FsxLustre, _) => &["fsx:DescribeFileSystems"],
        };
        actions
            .iter()
            .map(|action| ControlRequest {
                action: (*action).to_owned(),
                resource: resource.clone(),
                context: context.clone(),
            })
            .collect()
    }
}

/// An API operation, with what authorizing it depends on. A job operation carries the job
/// when it exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `SageMaker.CreateTrainingJob`: the job to be, and the role it is to pass.
    CreateTrainingJob {
        /// The job, with the tags it is created with.
        job: Job,
        /// `RoleArn`.
        role_arn: String,
        /// Its `FileSystemDataSource` channels.
        file_systems: Vec<FileSystemUse>,
    },
    /// `SageMaker.DescribeTrainingJob`.
    DescribeTrainingJob(Option<Job>),
    /// `SageMaker.StopTrainingJob`.
    StopTrainingJob(Option<Job>),
    /// `SageMaker.UpdateTrainingJob`.
    UpdateTrainingJob(Option<Job>),
    /// `SageMaker.ListTrainingJobs` (the list is then filtered by [`visible`]).
    ListTrainingJobs,
    /// `Logs_20140328.DescribeLogStreams`, with the job named by `logStreamNamePrefix`.
    DescribeLogStreams(Option<Job>),
    /// `Logs_20140328.GetLogEvents`, with the job named by `logStreamName`.
    GetLogEvents(Option<Job>),
    /// CloudWatch `ListMetrics` (the metrics are then filtered by [`visible`]).
    ListMetrics,
    /// CloudWatch `GetMetricStatistics`, with the job named by its `TrainingJobName` dimension.
    GetMetricStatistics(Option<Job>),
    /// CloudWatch `GetMetricData`, with the job of each query's `TrainingJobName` dimension.
    GetMetricData(Vec<Option<Job>>),
}

/// The value of the `TrainingJobName` dimension in a CloudWatch `Dimensions` list, or "".
pub fn training_job_dimension(dimensions: Option<&Value>) -> &str {
    dimensions
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|d| d.get("Name").and_then(Value::as_str) == Some("TrainingJobName"))
        .and_then(|d| d.get("Value").and_then(Value::as_str))
        .unwrap_or("")
}

impl Operation {
    /// `CreateTrainingJob`, once its body has been parsed; `tags_of` gives a file system's
    /// tags by id (`FileSystems::tags`).
    pub fn create(request: &CreateTrainingJobRequest, tags_of: impl Fn(&str) -> Vec<Tag>) -> Self {
        Operation::CreateTrainingJob {
            job: Job {
                name: request.training_job_name.clone(),
                tags: request.tags.clone().unwrap_or_default(),
            },
            role_arn: request.role_arn.clone(),
            file_systems: FileSystemUse::of_request(request, tags_of),
        }
    }

    /// The operation of an API call other than `CreateTrainingJob` (which is authorized once
    /// its body is parsed, [`Operation::create`]): `target` is the `X-Amz-Target`, `input` the
    /// JSON body, `lookup` finds a job by name. `None` for targets that are not operations of
    /// the control plane.
    pub fn from_request<E>(
        target: &str,
        input: &Value,
        mut lookup: impl FnMut(&str) -> Result<Option<Job>, E>,
    ) -> Result<Option<Self>, E> {
        let field = |key: &str| input.get(key).and_then(Value::as_str).unwrap_or("");
        // The job a log call reads: streams are named `<job>/algo-k-...`.
        let job_of_stream = |key: &str| field(key).split('/').next().unwrap_or("");
        let operation = match target {
            "SageMaker.DescribeTrainingJob" => {
                Operation::DescribeTrainingJob(lookup(field("TrainingJobName"))?)
            }
            "SageMaker.StopTrainingJob" => {
                Operation::StopTrainingJob(lookup(field("TrainingJobName"))?)
            }
            "SageMaker.UpdateTrainingJob" => {
                Operation::UpdateTrainingJob(lookup(field("TrainingJobName"))?)
            }
            "SageMaker.ListTrainingJobs" => Operation::ListTrainingJobs,
            "Logs_20140328.DescribeLogStreams" => {
                Operation::DescribeLogStreams(lookup(job_of_stream("logStreamNamePrefix"))?)
            }
            "Logs_20140328.GetLogEvents" => {
                Operation::GetLogEvents(lookup(job_of_stream("logStreamName"))?)
            }
            "GraniteServiceVersion20100801.ListMetrics" => Operation::ListMetrics,
            "GraniteServiceVersion20100801.GetMetricStatistics" => Operation::GetMetricStatistics(
                lookup(training_job_dimension(input.get("Dimensions")))?,
            ),
            "GraniteServiceVersion20100801.GetMetricData" => {
                let queries = input.get("MetricDataQueries").and_then(Value::as_array);
                let mut jobs = Vec::new();
                for query in queries.into_iter().flatten() {
                    let dimensions = query.pointer("/MetricStat/Metric/Dimensions");
                    jobs.push(lookup(training_job_dimension(dimensions))?);
                }
                Operation::GetMetricData(jobs)
            }
            _ => return Ok(None),
        };
        Ok(Some(operation))
    }

    /// The IAM requests the operation needs allowed, in the order they are evaluated.
    pub fn requests(&self, account: Account<'_>) -> Vec<ControlRequest> {
        let on_job = |action: &str, job: &Option<Job>| {
            job.iter()
                .map(|job| ControlRequest::on_job(action, &account.job_arn(&job.name), &job.tags))
                .collect()
        };
        match self {
            Operation::CreateTrainingJob {
                job,
                role_arn,
                file_systems,
            } => {
                let mut context = tag_keys("aws:RequestTag/", &job.tags);
                context.insert(
                    "aws:TagKeys".into(),
                    job.tags.iter().map(|t| t.key.clone()).collect(),
                );
                let mut requests = vec![
                    ControlRequest {
                        action: "sagemaker:CreateTrainingJob".into(),
                        resource: account.job_arn(&job.name),
                        context,
                    },
                    ControlRequest::on("iam:PassRole", role_arn),
                ];
                requests.extend(file_systems.iter().flat_map(|fs| fs.requests(account)));
                requests
            }
            Operation::DescribeTrainingJob(job) => on_job("sagemaker:DescribeTrainingJob", job),
            Operation::StopTrainingJob(job) => on_job("sagemaker:StopTrainingJob", job),
            Operation::UpdateTrainingJob(job) => on_job("sagemaker:UpdateTrainingJob", job),
            Operation::ListTrainingJobs => {
                vec![ControlRequest::on("sagemaker:ListTrainingJobs", "*")]
            }
            Operation::DescribeLogStreams(job) | Operation::GetLogEvents(job) => {
                let action = match self {
                    Operation::GetLogEvents(_) => "logs:GetLogEvents",
                    _ => "logs:DescribeLogStreams",
                };
                let mut requests = vec![ControlRequest::on(action, &account.log_group_arn())];
                requests.extend(on_job("sagemaker:DescribeTrainingJob", job));
                requests
            }
            // CloudWatch metric actions have no resource-level permissions (`*`); the job's
            // metrics are the job's data, so reading them also needs DescribeTrainingJob.
            Operation::ListMetrics => vec![ControlRequest::on("cloudwatch:ListMetrics", "*")],
            Operation::GetMetricStatistics(job) => {
                let mut requests = vec![ControlRequest::on("cloudwatch:GetMetricStatistics", "*")];
                requests.extend(on_job("sagemaker:DescribeTrainingJob", job));
                requests
            }
            Operation::GetMetricData(jobs) => {
                let mut requests = vec![ControlRequest::on("cloudwatch:GetMetricData", "*")];
                for job in jobs {
                    requests.extend(on_job("sagemaker:DescribeTrainingJob", job));
                }
                requests
            }
        }
    }
}

/// Tags as condition keys: `<prefix><key>` with the tag's value.
fn tag_keys(prefix: &str, tags: &[Tag]) -> BTreeMap<String, Vec<String>> {
    tags.iter()
        .map(|t| (format!("{prefix}{}", t.key), vec![t.value.clone()]))
        .collect()
}

/// One IAM request: an action on a resource, with the condition keys the operation adds to
/// those of the principal (`aws:PrincipalTag/*`, which the evaluator derives itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlRequest {
    /// E.g. `sagemaker:DescribeTrainingJob`.
    pub action: String,
    /// The resource ARN, or `*` for account-wide actions.
    pub resource: String,
    /// Condition keys and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl ControlRequest {
    /// `action` on `resource`, without condition keys.
    pub fn on(action: &str, resource: &str) -> Self {
        ControlRequest {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
        }
    }

    /// `action` on a job, its tags as `aws:ResourceTag/<key>` and `sagemaker:ResourceTag/<key>`.
    pub fn on_job(action: &str, job_arn: &str, tags: &[Tag]) -> Self {
        let mut context = tag_keys("aws:ResourceTag/", tags);
        context.extend(tag_keys("sagemaker:ResourceTag/", tags));
        ControlRequest {
            action: action.to_owned(),
            resource: job_arn.to_owned(),
            context,
        }
    }
}

/// One request as evaluated, and why it came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluated {
    /// The request.
    pub request: ControlRequest,
    /// Its decision.
    pub decision: Decision,
    /// The statements that determined it: the allowing ones for `Allow`, the `Deny`s for
    /// `ExplicitDeny`, none for `ImplicitDeny`; each a `Sid` or `identity[0].Statement[1]`.
    pub statements: Vec<String>,
    /// What could not be evaluated (a policy variable without a value, a request that cannot
    /// be built), each counted as not matching.
    pub errors: Vec<String>,
}

/// The answer to "may this caller do this?": a decision and its diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlDecision {
    /// `Allow`, or the decision of the first request that was not allowed.
    pub decision: Decision,
    /// The caller's ARN; `None` when access control is off (nothing is evaluated and
    /// everything is allowed).
    pub principal: Option<String>,
    /// The requests evaluated, in order, up to and including the one that was refused.
    pub evaluated: Vec<Evaluated>,
}

impl ControlDecision {
    /// Whether the operation may proceed.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// The refusal, in AWS's words, when the operation may not proceed.
    pub fn denial(&self) -> Option<AccessDenial> {
        if self.is_allowed() {
            return None;
        }
        let refused = self.evaluated.last()?;
        Some(AccessDenial {
            principal_arn: self.principal.clone().unwrap_or_default(),
            action: refused.request.action.clone(),
            resource: refused.request.resource.clone(),
            decision: refused.decision,
            statements: refused.statements.clone(),
            policy_kind: "an identity-based policy",
        })
    }
}

/// Decides whether `caller` may perform `operation`: every request of the operation must be
/// allowed; evaluation stops at the first that is not.
pub fn authorize(caller: &Caller, operation: &Operation, account: Account<'_>) -> ControlDecision {
    let Caller::Verified(principal) = caller else {
        return ControlDecision {
            decision: Decision::Allow,
            principal: None,
            evaluated: Vec::new(),
        };
    };
    decide(
        principal.arn(),
        |action, resource, context| principal.evaluate(action, resource, context),
        operation.requests(account),
    )
}

/// Decides whether a job's execution-role session may mount the job's file systems: the same
/// requests as the caller's ([`FileSystemUse::requests`]), evaluated as the job's principal, at
/// creation and when the job runs.
pub fn authorize_job(
    principal: &JobPrincipal,
    file_systems: &[FileSystemUse],
    account: Account<'_>,
) -> ControlDecision {
    decide(
        principal.arn(),
        |action, resource, context| principal.evaluate(action, resource, context),
        file_systems
            .iter()
            .flat_map(|fs| fs.requests(account))
            .collect(),
    )
}

/// Evaluates `requests` in order with `evaluate`, stopping at the first that is not allowed.
fn decide(
    principal_arn: &str,
    evaluate: impl Fn(
        &str,
        &str,
        super::principal::ContextKeys<'_>,
    ) -> Result<trainyard_iam::Response, super::principal::EvaluationFailure>,
    requests: Vec<ControlRequest>,
) -> ControlDecision {
    let mut evaluated = Vec::new();
    let mut decision = Decision::Allow;
    for request in requests {
        let context: Vec<(&str, Vec<String>)> = request
            .context
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let outcome = match evaluate(&request.action, &request.resource, &context) {
            Ok(response) => Evaluated {
                decision: response.decision,
                statements: response.determining_statements().map(|s| s.id()).collect(),
                errors: response
                    .diagnostics
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                request,
            },
            // A request that cannot even be built is refused, never allowed.
            Err(failure) => Evaluated {
                decision: Decision::ImplicitDeny,
                statements: Vec::new(),
                errors: vec![failure.to_string()],
                request,
            },
        };
        decision = outcome.decision;
        evaluated.push(outcome);
        if !decision.is_allowed() {
            break;
        }
    }
    ControlDecision {
        decision,
        principal: Some(principal_arn.to_owned()),
        evaluated,
    }
}

/// Whether `job` appears in `caller`'s `ListTrainingJobs`: when the caller may describe it.
pub fn visible(caller: &Caller, job: &Job, account: Account<'_>) -> bool {
    authorize(
        caller,
        &Operation::DescribeTrainingJob(Some(job.clone())),
        account,
    )
    .is_allowed()
}

#[cfg(test)]
mod tests {
    //! Runs the API-level cases of `tests/authz/control_plane.json` (the file's
    //! `description` says what each field means). All cases run; failures are listed
    //! together.

    use std::sync::Arc;

    use serde::Deserialize;
    use trainyard_iam::Policy;

    use super::*;
    use crate::identity::{Principal, PrincipalKind, SessionTag};

    const CORPUS: &str = include_str!("../../tests/authz/control_plane.json");

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Corpus {
        #[allow(dead_code, reason = "documentation for readers of the file")]
        description: String,
        account: AccountSpec,
        policies: BTreeMap<String, Value>,
        callers: BTreeMap<String, CallerSpec>,
        #[serde(default)]
        file_systems: BTreeMap<String, BTreeMap<String, String>>,
        jobs: Vec<JobSpec>,
        cases: Vec<Case>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AccountSpec {
        region: String,
        account_id: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CallerSpec {
        arn: String,
        tags: BTreeMap<String, String>,
        policies: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct JobSpec {
        name: String,
        tags: BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        description: String,
        caller: Option<String>,
        target: String,
        input: Value,
        expect: Expect,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Expect {
        decision: Decision,
        action: Option<String>,
        resource: Option<String>,
        statements: Option<Vec<String>>,
        context: Option<BTreeMap<String, Vec<String>>>,
        errors: Option<Vec<String>>,
        evaluated: Option<usize>,
        listed: Option<Vec<String>>,
    }

    fn tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
        map.iter()
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }

    fn caller(corpus: &Corpus, name: &Option<String>) -> Caller {
        let Some(name) = name else {
            return Caller::Unverified(None);
        };
        let spec = &corpus.callers[name];
        let session_tags: Vec<SessionTag> = spec
            .tags
            .iter()
            .map(|(k, v)| SessionTag::new(k, v))
            .collect();
        Caller::Verified(Box::new(Principal {
            arn: spec.arn.clone(),
            user_id: format!("AIDA{name}"),
            account: corpus.account.account_id.clone(),
            kind: PrincipalKind::User { name: name.clone() },
            policies: spec
                .policies
                .iter()
                .map(|p| Arc::new(Policy::from_json_value(&corpus.policies[p]).unwrap()))
                .collect(),
            session_policy: None,
            principal_tags: session_tags.clone(),
            session_tags,
            transitive_tag_keys: Vec::new(),
            source_identity: None,
            expiration: None,
        }))
    }

    /// Builds the operation as the API does, decides it, and lists the failed expectations.
    fn run(corpus: &Corpus, case: &Case) -> Vec<String> {
        let account = Account {
            region: &corpus.account.region,
            account_id: &corpus.account.account_id,
        };
        let jobs: Vec<Job> = corpus
            .jobs
            .iter()
            .map(|j| Job {
                name: j.name.clone(),
                tags: tags(&j.tags),
            })
            .collect();
        // The job store looks names up case-insensitively.
        let lookup = |name: &str| -> Result<Option<Job>, ()> {
            Ok(jobs
                .iter()
                .find(|j| j.name.eq_ignore_ascii_case(name))
                .cloned())
        };
        let operation = if case.target == "SageMaker.CreateTrainingJob" {
            CreateTrainingJobRequest::from_json(&case.input.to_string())
                .map(|r| {
                    Operation::create(&r, |id| {
                        corpus.file_systems.get(id).map(tags).unwrap_or_default()
                    })
                })
                .map_err(|e| format!("the create request does not parse: {e:?}"))
        } else {
            match Operation::from_request(&case.target, &case.input, lookup) {
                Ok(Some(op)) => Ok(op),
                _ => Err(format!("{} is not a control-plane operation", case.target)),
            }
        };
        let operation = match operation {
            Ok(op) => op,
            Err(e) => return vec![e],
        };
        let caller = caller(corpus, &case.caller);
        let decision = authorize(&caller, &operation, account);
        let mut failed = Vec::new();
        let mut check = |what: &str, ok: bool, got: String| {
            if !ok {
                failed.push(format!("{what}: got {got}"));
            }
        };
        let expect = &case.expect;
        check(
            "decision",
            decision.decision == expect.decision,
            decision.decision.to_string(),
        );
        check(
            "principal",
            decision.principal.is_some() == case.caller.is_some(),
            format!("{:?}", decision.principal),
        );
        if let Some(n) = expect.evaluated {
            check(
                "evaluated",
                decision.evaluated.len() == n,
                decision.evaluated.len().to_string(),
            );
        }
        let last = decision.evaluated.last();
        let field = |f: &dyn Fn(&Evaluated) -> String| last.map(f).unwrap_or_default();
        if let Some(action) = &expect.action {
            let got = field(&|e| e.request.action.clone());
            check("action", &got == action, got);
        }
        if let Some(resource) = &expect.resource {
            let got = field(&|e| e.request.resource.clone());
            check("resource", &got == resource, got);
        }
        if let Some(statements) = &expect.statements {
            let got = last.map(|e| e.statements.clone()).unwrap_or_default();
            check("statements", &got == statements, format!("{got:?}"));
        }
        if let Some(context) = &expect.context {
            let got = last.map(|e| e.request.context.clone()).unwrap_or_default();
            check("context", &got == context, format!("{got:?}"));
        }
        if let Some(errors) = &expect.errors {
            let got = last.map(|e| e.errors.clone()).unwrap_or_default();
            let ok = errors
                .iter()
                .all(|want| got.iter().any(|e| e.contains(want)));
            check("errors", ok, format!("{got:?}"));
        }
        // An allow says nothing about a denial, and a deny names what decided it.
        match decision.denial() {
            None => check("denial", decision.is_allowed(), "none".into()),
            Some(denial) => {
                let text = denial.to_string();
                let ok = !decision.is_allowed()
                    && last.is_some_and(|e| {
                        text.contains(&e.request.action) && text.contains(&e.request.resource)
                    });
                check("denial", ok, text);
            }
        }
        if let Some(listed) = &expect.listed {
            let got: Vec<String> = if decision.is_allowed() {
                jobs.iter()
                    .filter(|j| visible(&caller, j, account))
                    .map(|j| j.name.clone())
                    .collect()
            } else {
                Vec::new()
            };
            check("listed", &got == listed, format!("{got:?}"));
        }
        failed
    }

    #[test]
    fn control_plane_corpus() {
        let corpus: Corpus = serde_json::from_str(CORPUS).unwrap();
        assert!(corpus.cases.len() >= 25, "the corpus lost cases");
        let failures: Vec<String> = corpus
            .cases
            .iter()
            .flat_map(|case| {
                run(&corpus, case)
                    .into_iter()
                    .map(move |f| format!("{}: {f}", case.description))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} failed expectation(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn operations_map_to_their_requests() {
        let account = Account {
            region: "eu-west-1",
            account_id: "111122223333",
        };
        let lookup = |name: &str| -> Result<Option<Job>, ()> {
            Ok((name == "j").then(|| Job {
                name: "j".into(),
                tags: Vec::new(),
            }))
        };
        for target in ["SageMaker.CreateTrainingJob", "SageMaker.Bogus", ""] {
            assert_eq!(
                Operation::from_request(target, &Value::Null, lookup),
                Ok(None)
            );
        }
        let logs = Operation::from_request(
            "Logs_20140328.GetLogEvents",
            &serde_json::json!({"logStreamName": "j/algo-1-1"}),
            lookup,
        )
        .unwrap()
        .unwrap();
        let requests = logs.requests(account);
        assert_eq!(
            requests
                .iter()
                .map(|r| (r.action.as_str(), r.resource.as_str()))
                .collect::<Vec<_>>(),
            [
                (
                    "logs:GetLogEvents",
                    "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/sagemaker/TrainingJobs"
                ),
                (
                    "sagemaker:DescribeTrainingJob",
                    "arn:aws:sagemaker:eu-west-1:111122223333:training-job/j"
                )
            ]
        );
        // A lookup failure is the caller's error, not a decision.
        let failing = |_: &str| -> Result<Option<Job>, &str> { Err("store down") };
        assert_eq!(
            Operation::from_request(
                "SageMaker.DescribeTrainingJob",
                &serde_json::json!({"TrainingJobName": "j"}),
                failing
            ),
            Err("store down")
        );
    }
}
