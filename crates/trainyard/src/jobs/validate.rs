//! Validation of `CreateTrainingJob` requests with SageMaker's own limits.
//!
//! Every rule of `doc/contract/api.md` §2 that the types cannot express is checked here, and every
//! violation is reported (not just the first), each naming the field in SageMaker's
//! camelCase path style (`inputDataConfig.1.member.channelName`) and the rule it breaks, in the
//! wording the service uses. Rules about what *this* trainyard build can run (as opposed to what
//! SageMaker accepts) are kept apart in [`unsupported`], so lifting a limitation is one edit.
//!
//! The limits are the service model's, written out by hand for every member of the request,
//! including those trainyard stores without acting on them: a member that is echoed by
//! DescribeTrainingJob must have a shape SDKs can parse. The model's "any text" patterns (`.*`,
//! `.+`, `[\S\s]*`) are not applied beyond their lengths, so arguments and hyperparameters
//! may hold line breaks as they always could here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::spec::ChannelCompression;
use super::spec::{
    Channel, CreateTrainingJobRequest, DataSource, InputMode, OutputCompression, RecordWrapper,
    RuleConfiguration, S3DataType,
};

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// camelCase path of the field, as SageMaker writes it.
    pub field: String,
    /// The offending value, when there is one to show.
    pub value: Option<String>,
    /// The rule, e.g. `Member must have length less than or equal to 63`.
    pub rule: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(
                f,
                "Value '{}' at '{}' failed to satisfy constraint: {}",
                v, self.field, self.rule
            ),
            None => write!(f, "{}: {}", self.field, self.rule),
        }
    }
}

/// All violations of one request, displayed as SageMaker's `ValidationException` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} validation error{} detected: ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A model pattern: the regex that checks it, and the model's own text, which the message shows
/// (they differ where the model's Java syntax has no Rust equivalent).
struct Pattern {
    re: Regex,
    shown: &'static str,
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        pattern!($name, $re, $re);
    };
    ($name:ident, $re:expr, $shown:expr) => {
        static $name: LazyLock<Pattern> = LazyLock::new(|| Pattern {
            re: Regex::new(concat!("^(?:", $re, ")$")).expect("valid pattern"),
            shown: $shown,
        });
    };
}

pattern!(JOB_NAME, r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}");
pattern!(
    ROLE_ARN,
    r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
);
pattern!(CHANNEL_NAME, r"[A-Za-z0-9\.\-_]+");
pattern!(S3_URI, r"(https|s3)://([^/]+)/?(.*)");
pattern!(FILE_URI, r"file://.+");
pattern!(KMS_KEY, r"[a-zA-Z0-9:/_-]*");
pattern!(ENV_KEY, r"[a-zA-Z_][a-zA-Z0-9_]*");
pattern!(TAG, r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*");
pattern!(VPC_ID, r"[-0-9a-zA-Z]+");
pattern!(FS_ID, r"(fs-[0-9a-f]{8,})");
// The form of the model's instance-type enums (`ml.p6-b200.48xlarge`); which types run is
// the instance-type table's business.
pattern!(
    INSTANCE_TYPE,
    r"ml\.[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+|local|local_gpu"
);
pattern!(ML_INSTANCE_TYPE, r"ml\.[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+");
// AlgorithmName: the model's pattern ends with `(?<!-)` (no trailing hyphen), checked apart.
pattern!(
    ALGORITHM_NAME,
    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*/)?([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})",
    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*\/)?([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)"
);
pattern!(
    LAMBDA_ARN,
    r"arn:[a-zA-Z0-9\-]+:lambda:[a-zA-Z0-9\-]+:[0-9]{12}:function:.*",
    r"arn:[\p{Alnum}\-]+:lambda:[\p{Alnum}\-]+:[0-9]{12}:function:.*"
);
pattern!(
    HUB_DATASET_ARN,
    r"(arn:[a-z0-9-\.]{1,63}:sagemaker:\w+(?:-\w+)+:(\d{12}|aws):hub-content/)[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}/DataSet/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}(/\d{1,4}.\d{1,4}.\d{1,4})?",
    r"(arn:[a-z0-9-\.]{1,63}:sagemaker:\w+(?:-\w+)+:(\d{12}|aws):hub-content\/)[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\/DataSet\/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}(\/\d{1,4}.\d{1,4}.\d{1,4})?"
);
pattern!(
    HUB_MODEL_ARN,
    r"(arn:[a-z0-9-\.]{1,63}:sagemaker:\w+(?:-\w+)+:(\d{12}|aws):hub-content/)[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}/Model/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}(/\d{1,4}.\d{1,4}.\d{1,4})?",
    r"(arn:[a-z0-9-\.]{1,63}:sagemaker:\w+(?:-\w+)+:(\d{12}|aws):hub-content\/)[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\/Model\/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}(\/\d{1,4}.\d{1,4}.\d{1,4})?"
);
pattern!(
    TRAINING_PLAN_ARN,
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:training-plan/.*"
);
pattern!(EXPERIMENT_NAME, r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}");
pattern!(
    MLFLOW_ARN,
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:mlflow-[a-zA-Z-]*/.*"
);
// `[\S]{1,2048}` is checked as `\S+`: the member's length limit already bounds it.
pattern!(
    MODEL_PACKAGE_GROUP_ARN,
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]{9,16}:[0-9]{12}:model-package-group/\S+",
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]{9,16}:[0-9]{12}:model-package-group/[\S]{1,2048}"
);
pattern!(
    MODEL_PACKAGE_ARN,
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]{9,16}:[0-9]{12}:model-package/\S+",
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]{9,16}:[0-9]{12}:model-package/[\S]{1,2048}"
);
pattern!(SEQUENCE_LENGTH, r"\d+K");

/// Collects violations while walking a request.
struct Checker {
    errors: Vec<ValidationError>,
    allow_file_uris: bool,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, value: Option<&str>, rule: impl Into<String>) {
        self.errors.push(ValidationError {
            field: field.into(),
            value: value.map(str::to_string),
            rule: rule.into(),
        });
    }

    fn len(&mut self, field: &str, value: &str, min: usize, max: usize) -> bool {
        let n = value.chars().count();
        if n < min {
            self.fail(
                field,
                Some(value),
                format!("Member must have length greater than or equal to {min}"),
            );
            false
        } else if n > max {
            self.fail(
                field,
                Some(&truncate(value)),
                format!("Member must have length less than or equal to {max}"),
            );
            false
        } else {
            true
        }
    }

    fn pattern(&mut self, field: &str, value: &str, p: &Pattern) {
        if !p.re.is_match(value) {
            self.fail(
                field,
                Some(&truncate(value)),
                format!(
                    "Member must satisfy regular expression pattern: {}",
                    p.shown
                ),
            );
        }
    }

    /// Length, then (if the length is right) pattern.
    fn string(&mut self, field: &str, value: &str, min: usize, max: usize, p: &Pattern) {
        if self.len(field, value, min, max) {
            self.pattern(field, value, p);
        }
    }

    /// A string map: its number of entries, then each key's and value's length.
    fn map(
        &mut self,
        field: &str,
        map: &BTreeMap<String, String>,
        max_entries: usize,
        key: (usize, usize),
        value: (usize, usize),
    ) {
        if map.len() > max_entries {
            self.fail(
                field,
                None,
                format!("Map value must have length less than or equal to {max_entries}"),
            );
        }
        for (k, v) in map {
            let shown = truncate(k);
            self.len(&format!("{field}.'{shown}'.key"), k, key.0, key.1);
            self.len(&format!("{field}.'{shown}'.value"), v, value.0, value.1);
        }
    }

    fn count<T>(&mut self, field: &str, items: &[T], min: usize, max: usize) {
        if items.len() < min {
            self.fail(
                field,
                None,
                format!("Member must have length greater than or equal to {min}"),
            );
        } else if items.len() > max {
            self.fail(
                field,
                None,
                format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.fail(
                field,
                Some(&value.to_string()),
                format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.fail(
                field,
                Some(&value.to_string()),
                format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    fn uri(&mut self, field: &str, value: &str) {
        if self.len(field, value, 0, 1024) {
            if self.allow_file_uris && value.starts_with("file://") {
                self.pattern(field, value, &FILE_URI);
            } else {
                self.pattern(field, value, &S3_URI);
            }
        }
    }
}

/// A value as shown in a message: at most 80 characters.
pub(crate) fn truncate(v: &str) -> String {
    if v.chars().count() > 80 {
        format!("{}...", v.chars().take(80).collect::<String>())
    } else {
        v.to_string()
    }
}

/// Checks a request against SageMaker's rules. `allow_file_uris` admits `file://` locations, as
/// SageMaker local mode does (the CLI and a local server allow them).
pub fn validate(
    req: &CreateTrainingJobRequest,
    allow_file_uris: bool,
) -> Result<(), ValidationErrors> {
    let mut c = Checker {
        errors: Vec::new(),
        allow_file_uris,
    };

    if c.len("trainingJobName", &req.training_job_name, 1, 63) {
        c.pattern("trainingJobName", &req.training_job_name, &JOB_NAME);
    }
    if c.len("roleArn", &req.role_arn, 20, 2048) {
        c.pattern("roleArn", &req.role_arn, &ROLE_ARN);
    }

    match &req.algorithm_specification {
        None => c.fail("algorithmSpecification", None, "Member must not be null"),
        Some(a) => {
            match (&a.training_image, &a.algorithm_name) {
                (Some(_), Some(_)) => c.fail(
                    "algorithmSpecification",
                    None,
                    "TrainingImage and AlgorithmName are mutually exclusive: specify exactly one",
                ),
                (None, None) => c.fail(
                    "algorithmSpecification",
                    None,
                    "Either TrainingImage or AlgorithmName must be specified",
                ),
                _ => {}
            }
            if let Some(img) = &a.training_image {
                c.len("algorithmSpecification.trainingImage", img, 0, 255);
            }
            if let Some(name) = &a.algorithm_name {
                let f = "algorithmSpecification.algorithmName";
                c.string(f, name, 1, 170, &ALGORITHM_NAME);
                if name.ends_with('-') {
                    c.fail(
                        f,
                        Some(name),
                        format!(
                            "Member must satisfy regular expression pattern: {}",
                            ALGORITHM_NAME.shown
                        ),
                    );
                }
            }
            if let Some(auth) = a
                .training_image_config
                .as_ref()
                .and_then(|t| t.training_repository_auth_config.as_ref())
            {
                c.string(
                    "algorithmSpecification.trainingImageConfig.trainingRepositoryAuthConfig.trainingRepositoryCredentialsProviderArn",
                    &auth.training_repository_credentials_provider_arn,
                    1,
                    2048,
                    &LAMBDA_ARN,
                );
            }
            for (field, list) in [
                (
                    "algorithmSpecification.containerEntrypoint",
                    &a.container_entrypoint,
                ),
                (
                    "algorithmSpecification.containerArguments",
                    &a.container_arguments,
                ),
            ] {
                if let Some(list) = list {
                    c.count(field, list, 1, 100);
                    for (i, item) in list.iter().enumerate() {
                        c.len(&format!("{field}.{}.member", i + 1), item, 0, 256);
                    }
                }
            }
            if let Some(defs) = &a.metric_definitions {
                c.count("algorithmSpecification.metricDefinitions", defs, 0, 40);
                let mut names = HashSet::new();
                for (i, d) in defs.iter().enumerate() {
                    let base = format!("algorithmSpecification.metricDefinitions.{}.member", i + 1);
                    c.len(&format!("{base}.name"), &d.name, 1, 255);
                    if c.len(&format!("{base}.regex"), &d.regex, 1, 500) {
                        if let Err(e) = Regex::new(&d.regex) {
                            c.fail(
                                format!("{base}.regex"),
                                Some(&d.regex),
                                format!("Member must be a valid regular expression: {e}"),
                            );
                        }
                    }
                    if !names.insert(d.name.as_str()) {
                        c.fail(
                            format!("{base}.name"),
                            Some(&d.name),
                            "Metric names must be unique",
                        );
                    }
                }
            }
        }
    }

    check_output(&mut c, req);
    check_resources(&mut c, req);
    check_stopping(&mut c, req);
    check_debugger_and_profiler(&mut c, req);
    check_integrations(&mut c, req);

    if let Some(hp) = &req.hyper_parameters {
        if hp.len() > 100 {
            c.fail(
                "hyperParameters",
                None,
                "Map value must have length less than or equal to 100",
            );
        }
        for (k, v) in hp {
            let shown = truncate(k);
            c.len(&format!("hyperParameters.'{shown}'.key"), k, 0, 256);
            c.len(&format!("hyperParameters.'{shown}'.value"), v, 0, 2500);
        }
    }
    if let Some(env) = &req.environment {
        if env.len() > 100 {
            c.fail(
                "environment",
                None,
                "Map value must have length less than or equal to 100",
            );
        }
        for (k, v) in env {
            if c.len(&format!("environment.'{k}'.key"), k, 0, 512) {
                c.pattern(&format!("environment.'{k}'.key"), k, &ENV_KEY);
            }
            c.len(&format!("environment.'{k}'.value"), v, 0, 512);
        }
    }
    if let Some(tags) = &req.tags {
        c.count("tags", tags, 0, 50);
        let mut keys: HashMap<String, &str> = HashMap::new();
        for (i, t) in tags.iter().enumerate() {
            let base = format!("tags.{}.member", i + 1);
            if c.len(&format!("{base}.key"), &t.key, 1, 128) {
                c.pattern(&format!("{base}.key"), &t.key, &TAG);
            }
            // AWS reserves the prefix in any case, and a policy's `aws:RequestTag` must not
            // see two values for one key (tag keys compare case-insensitively there).
            if t.key.to_lowercase().starts_with("aws:") {
                c.fail(
                    format!("{base}.key"),
                    Some(&truncate(&t.key)),
                    "Member must not start with 'aws:' (the prefix is reserved for AWS use)",
                );
            }
            if let Some(first) = keys.insert(t.key.to_lowercase(), &t.key) {
                c.fail(
                    "tags",
                    Some(&truncate(&t.key)),
                    format!(
                        "Tag keys must be unique (case-insensitively): '{}' repeats '{}'",
                        truncate(&t.key),
                        truncate(first)
                    ),
                );
            }
            if c.len(&format!("{base}.value"), &t.value, 0, 256) {
                c.pattern(&format!("{base}.value"), &t.value, &TAG);
            }
        }
    }
    if let Some(vpc) = &req.vpc_config {
        c.count("vpcConfig.securityGroupIds", &vpc.security_group_ids, 1, 5);
        c.count("vpcConfig.subnets", &vpc.subnets, 1, 16);
        for (field, list) in [
            ("vpcConfig.securityGroupIds", &vpc.security_group_ids),
            ("vpcConfig.subnets", &vpc.subnets),
        ] {
            for (i, id) in list.iter().enumerate() {
                let f = format!("{field}.{}.member", i + 1);
                if c.len(&f, id, 0, 32) {
                    c.pattern(&f, id, &VPC_ID);
                }
            }
        }
    }
    if let Some(cp) = &req.checkpoint_config {
        c.uri("checkpointConfig.s3Uri", &cp.s3_uri);
        if let Some(p) = &cp.local_path {
            if c.len("checkpointConfig.localPath", p, 0, 4096) {
                if let Err(rule) = check_local_path(p) {
                    c.fail("checkpointConfig.localPath", Some(&truncate(p)), rule);
                }
            }
        }
    }
    if let Some(r) = &req.retry_strategy {
        c.range(
            "retryStrategy.maximumRetryAttempts",
            r.maximum_retry_attempts,
            1,
            30,
        );
    }

    if let Some(channels) = &req.input_data_config {
        c.count("inputDataConfig", channels, 1, 20);
        let mut seen = HashSet::new();
        for (i, ch) in channels.iter().enumerate() {
            check_channel(&mut c, req, i + 1, ch);
            if !seen.insert(ch.channel_name.as_str()) {
                c.fail(
                    format!("inputDataConfig.{}.member.channelName", i + 1),
                    Some(&ch.channel_name),
                    "Channel names must be unique within a training job",
                );
            }
        }
    }

    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(c.errors))
    }
}

/// `CheckpointConfig.LocalPath` lives in the job's own tree: anything else would make the
/// server create (or bind) a directory on the host. One trailing `/` is tolerated.
fn check_local_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("Member must be an absolute path");
    }
    let body = p.strip_suffix('/').unwrap_or(p);
    let segs: Vec<&str> = body.split('/').skip(1).collect();
    if segs.iter().any(|s| *s == "." || *s == "..") {
        return Err("Member must not contain '.' or '..' path segments");
    }
    if segs.iter().any(|s| s.is_empty()) {
        return Err("Member must be a normalised path (no empty segments)");
    }
    if segs.len() < 3 || segs[..2] != ["opt", "ml"] {
        return Err("Member must be a path under /opt/ml");
    }
    Ok(())
}

fn check_output(c: &mut Checker, req: &CreateTrainingJobRequest) {
    let o = &req.output_data_config;
    c.uri("outputDataConfig.s3OutputPath", &o.s3_output_path);
    if let Some(k) = &o.kms_key_id {
        if c.len("outputDataConfig.kmsKeyId", k, 0, 2048) {
            c.pattern("outputDataConfig.kmsKeyId", k, &KMS_KEY);
        }
        if let Ok(u) = trainyard_s3::S3Uri::parse(&o.s3_output_path) {
            if trainyard_s3::is_directory_bucket(&u.bucket) && !k.is_empty() {
                c.fail(
                    "outputDataConfig.kmsKeyId",
                    Some(k),
                    "KmsKeyId is not supported for an S3 Express One Zone directory bucket (objects are SSE-S3 encrypted)",
                );
            }
        }
    }
}

fn check_resources(c: &mut Checker, req: &CreateTrainingJobRequest) {
    let Some(r) = &req.resource_config else {
        c.fail("resourceConfig", None, "Member must not be null");
        return;
    };
    if r.instance_groups.as_ref().is_some_and(|g| !g.is_empty()) {
        if r.instance_type.is_some() || r.instance_count.is_some() {
            c.fail(
                "resourceConfig.instanceGroups",
                None,
                "InstanceGroups cannot be combined with InstanceType or InstanceCount",
            );
        }
    } else {
        match &r.instance_type {
            None => c.fail(
                "resourceConfig.instanceType",
                None,
                "Member must not be null",
            ),
            Some(t) => c.pattern("resourceConfig.instanceType", t, &INSTANCE_TYPE),
        }
        match r.instance_count {
            None => c.fail(
                "resourceConfig.instanceCount",
                None,
                "Member must not be null",
            ),
            Some(n) => c.range("resourceConfig.instanceCount", n, 1, 1000),
        }
    }
    match r.volume_size_in_g_b {
        None => c.fail(
            "resourceConfig.volumeSizeInGB",
            None,
            "Member must not be null",
        ),
        Some(v) => c.range("resourceConfig.volumeSizeInGB", v, 1, 16384),
    }
    if let Some(k) = &r.volume_kms_key_id {
        if c.len("resourceConfig.volumeKmsKeyId", k, 0, 2048) {
            c.pattern("resourceConfig.volumeKmsKeyId", k, &KMS_KEY);
        }
    }
    if let Some(k) = r.keep_alive_period_in_seconds {
        c.range("resourceConfig.keepAlivePeriodInSeconds", k, 0, 21600);
    }
    if let Some(groups) = &r.instance_groups {
        c.count("resourceConfig.instanceGroups", groups, 0, 5);
        for (i, g) in groups.iter().enumerate() {
            let base = format!("resourceConfig.instanceGroups.{}.member", i + 1);
            c.pattern(
                &format!("{base}.instanceType"),
                &g.instance_type,
                &ML_INSTANCE_TYPE,
            );
            c.range(
                &format!("{base}.instanceCount"),
                g.instance_count,
                0,
                i64::MAX,
            );
            c.len(
                &format!("{base}.instanceGroupName"),
                &g.instance_group_name,
                1,
                64,
            );
        }
    }
    if let Some(arn) = &r.training_plan_arn {
        c.string(
            "resourceConfig.trainingPlanArn",
            arn,
            50,
            2048,
            &TRAINING_PLAN_ARN,
        );
    }
    if let Some(specs) = r
        .instance_placement_config
        .as_ref()
        .and_then(|p| p.placement_specifications.as_ref())
    {
        let f = "resourceConfig.instancePlacementConfig.placementSpecifications";
        c.count(f, specs, 0, 10);
        for (i, p) in specs.iter().enumerate() {
            let base = format!("{f}.{}.member", i + 1);
            if let Some(id) = &p.ultra_server_id {
                c.len(&format!("{base}.ultraServerId"), id, 0, 256);
            }
            c.range(
                &format!("{base}.instanceCount"),
                p.instance_count,
                0,
                i64::MAX,
            );
        }
    }
    if let Some(prefs) = &r.instance_preferences {
        let f = "resourceConfig.instancePreferences";
        c.count(f, prefs, 1, 5);
        for (i, p) in prefs.iter().enumerate() {
            let base = format!("{f}.{}.member", i + 1);
            c.pattern(
                &format!("{base}.instanceType"),
                &p.instance_type,
                &ML_INSTANCE_TYPE,
            );
            if let Some(n) = p.instance_count {
                c.range(&format!("{base}.instanceCount"), n, 0, i64::MAX);
            }
            if let Some(arns) = &p.training_plan_arns {
                c.count(&format!("{base}.trainingPlanArns"), arns, 1, 1);
                for (j, arn) in arns.iter().enumerate() {
                    c.string(
                        &format!("{base}.trainingPlanArns.{}.member", j + 1),
                        arn,
                        50,
                        2048,
                        &TRAINING_PLAN_ARN,
                    );
                }
            }
        }
    }
    if let Some(t) = &r.selected_instance_type {
        c.pattern("resourceConfig.selectedInstanceType", t, &ML_INSTANCE_TYPE);
    }
    if let Some(n) = r.selected_instance_count {
        c.range("resourceConfig.selectedInstanceCount", n, 0, i64::MAX);
    }
}

/// The Debugger hook and rules, the profiler and its rules, and TensorBoard output: shape only,
/// as the model gives it.
fn check_debugger_and_profiler(c: &mut Checker, req: &CreateTrainingJobRequest) {
    if let Some(h) = &req.debug_hook_config {
        if let Some(p) = &h.local_path {
            c.len("debugHookConfig.localPath", p, 0, 4096);
        }
        c.uri("debugHookConfig.s3OutputPath", &h.s3_output_path);
        if let Some(m) = &h.hook_parameters {
            c.map("debugHookConfig.hookParameters", m, 20, (1, 256), (0, 256));
        }
        if let Some(cols) = &h.collection_configurations {
            let f = "debugHookConfig.collectionConfigurations";
            c.count(f, cols, 0, 20);
            for (i, col) in cols.iter().enumerate() {
                let base = format!("{f}.{}.member", i + 1);
                if let Some(n) = &col.collection_name {
                    c.len(&format!("{base}.collectionName"), n, 1, 256);
                }
                if let Some(m) = &col.collection_parameters {
                    c.map(
                        &format!("{base}.collectionParameters"),
                        m,
                        20,
                        (1, 256),
                        (0, 256),
                    );
                }
            }
        }
    }
    for (field, rules) in [
        ("debugRuleConfigurations", &req.debug_rule_configurations),
        (
            "profilerRuleConfigurations",
            &req.profiler_rule_configurations,
        ),
    ] {
        let Some(rules) = rules else { continue };
        c.count(field, rules, 0, 20);
        for (i, r) in rules.iter().enumerate() {
            check_rule(c, &format!("{field}.{}.member", i + 1), r);
        }
    }
    if let Some(t) = &req.tensor_board_output_config {
        if let Some(p) = &t.local_path {
            c.len("tensorBoardOutputConfig.localPath", p, 0, 4096);
        }
        c.uri("tensorBoardOutputConfig.s3OutputPath", &t.s3_output_path);
    }
    if let Some(p) = &req.profiler_config {
        if let Some(u) = &p.s3_output_path {
            c.uri("profilerConfig.s3OutputPath", u);
        }
        if let Some(m) = &p.profiling_parameters {
            c.map(
                "profilerConfig.profilingParameters",
                m,
                20,
                (1, 256),
                (0, 256),
            );
        }
    }
}

fn check_rule(c: &mut Checker, base: &str, r: &RuleConfiguration) {
    c.len(
        &format!("{base}.ruleConfigurationName"),
        &r.rule_configuration_name,
        1,
        256,
    );
    if let Some(p) = &r.local_path {
        c.len(&format!("{base}.localPath"), p, 0, 4096);
    }
    if let Some(u) = &r.s3_output_path {
        c.uri(&format!("{base}.s3OutputPath"), u);
    }
    c.len(
        &format!("{base}.ruleEvaluatorImage"),
        &r.rule_evaluator_image,
        0,
        255,
    );
    if let Some(t) = &r.instance_type {
        c.pattern(&format!("{base}.instanceType"), t, &ML_INSTANCE_TYPE);
    }
    if let Some(v) = r.volume_size_in_g_b {
        c.range(&format!("{base}.volumeSizeInGB"), v, 0, i64::MAX);
    }
    if let Some(m) = &r.rule_parameters {
        c.map(
            &format!("{base}.ruleParameters"),
            m,
            100,
            (1, 256),
            (0, 256),
        );
    }
}

/// Experiments, serverless customization, MLflow and the model registry: shape only.
fn check_integrations(c: &mut Checker, req: &CreateTrainingJobRequest) {
    if let Some(e) = &req.experiment_config {
        for (field, name) in [
            ("experimentConfig.experimentName", &e.experiment_name),
            ("experimentConfig.trialName", &e.trial_name),
            (
                "experimentConfig.trialComponentDisplayName",
                &e.trial_component_display_name,
            ),
            ("experimentConfig.runName", &e.run_name),
        ] {
            if let Some(n) = name {
                c.string(field, n, 1, 120, &EXPERIMENT_NAME);
            }
        }
    }
    if let Some(s) = &req.serverless_job_config {
        c.string(
            "serverlessJobConfig.baseModelArn",
            &s.base_model_arn,
            1,
            2048,
            &HUB_MODEL_ARN,
        );
        if let Some(l) = &s.sequence_length {
            c.string(
                "serverlessJobConfig.sequenceLength",
                l,
                1,
                50,
                &SEQUENCE_LENGTH,
            );
        }
    }
    if let Some(m) = &req.mlflow_config {
        c.string(
            "mlflowConfig.mlflowResourceArn",
            &m.mlflow_resource_arn,
            0,
            2048,
            &MLFLOW_ARN,
        );
        for (field, v) in [
            (
                "mlflowConfig.mlflowExperimentName",
                &m.mlflow_experiment_name,
            ),
            ("mlflowConfig.mlflowRunName", &m.mlflow_run_name),
        ] {
            if let Some(v) = v {
                c.len(field, v, 1, 256);
            }
        }
    }
    if let Some(m) = &req.model_package_config {
        c.string(
            "modelPackageConfig.modelPackageGroupArn",
            &m.model_package_group_arn,
            1,
            2048,
            &MODEL_PACKAGE_GROUP_ARN,
        );
        if let Some(a) = &m.source_model_package_arn {
            c.string(
                "modelPackageConfig.sourceModelPackageArn",
                a,
                1,
                2048,
                &MODEL_PACKAGE_ARN,
            );
        }
    }
}

fn check_stopping(c: &mut Checker, req: &CreateTrainingJobRequest) {
    let sc = req.stopping_condition.as_ref();
    let max_runtime = sc.and_then(|s| s.max_runtime_in_seconds);
    if let Some(v) = max_runtime {
        c.range("stoppingCondition.maxRuntimeInSeconds", v, 1, 2_419_200);
    }
    let max_wait = sc.and_then(|s| s.max_wait_time_in_seconds);
    if let Some(v) = max_wait {
        c.range("stoppingCondition.maxWaitTimeInSeconds", v, 1, i64::MAX);
    }
    if let Some(v) = sc.and_then(|s| s.max_pending_time_in_seconds) {
        c.range(
            "stoppingCondition.maxPendingTimeInSeconds",
            v,
            7200,
            2_419_200,
        );
    }
    if req.enable_managed_spot_training == Some(true) {
        match max_wait {
            None => c.fail(
                "stoppingCondition.maxWaitTimeInSeconds",
                None,
                "MaxWaitTimeInSeconds is required when EnableManagedSpotTraining is true",
            ),
            Some(w)
                if w < max_runtime.unwrap_or(super::spec::DEFAULT_MAX_RUNTIME_SECONDS as i64) =>
            {
                c.fail(
                    "stoppingCondition.maxWaitTimeInSeconds",
                    Some(&w.to_string()),
                    "MaxWaitTimeInSeconds must be greater than or equal to MaxRuntimeInSeconds",
                )
            }
            _ => {}
        }
    } else if max_wait.is_some() {
        c.fail(
            "stoppingCondition.maxWaitTimeInSeconds",
            None,
            "MaxWaitTimeInSeconds is only allowed when EnableManagedSpotTraining is true",
        );
    }
}

fn check_channel(c: &mut Checker, req: &CreateTrainingJobRequest, n: usize, ch: &Channel) {
    let base = format!("inputDataConfig.{n}.member");
    if c.len(&format!("{base}.channelName"), &ch.channel_name, 1, 64) {
        c.pattern(
            &format!("{base}.channelName"),
            &ch.channel_name,
            &CHANNEL_NAME,
        );
        // The name becomes a directory (`/opt/ml/input/data/<name>`) and a FIFO prefix.
        if ch.channel_name == "." || ch.channel_name == ".." {
            c.fail(
                format!("{base}.channelName"),
                Some(&ch.channel_name),
                "Member must not be '.' or '..'",
            );
        }
    }
    if let Some(ct) = &ch.content_type {
        c.len(&format!("{base}.contentType"), ct, 0, 256);
    }
    let mode = req.channel_mode(ch);
    let DataSource {
        s3_data_source,
        file_system_data_source,
        dataset_source,
    } = &ch.data_source;
    let set = [
        s3_data_source.is_some(),
        file_system_data_source.is_some(),
        dataset_source.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        c.fail(
            format!("{base}.dataSource"),
            None,
            "Exactly one of S3DataSource, FileSystemDataSource or DatasetSource must be specified",
        );
    }
    if let Some(ds) = dataset_source {
        c.string(
            &format!("{base}.dataSource.datasetSource.datasetArn"),
            &ds.dataset_arn,
            0,
            2048,
            &HUB_DATASET_ARN,
        );
    }
    if let Some(s3) = s3_data_source {
        let f = format!("{base}.dataSource.s3DataSource");
        c.uri(&format!("{f}.s3Uri"), &s3.s3_uri);
        if let Some(groups) = &s3.instance_group_names {
            c.count(&format!("{f}.instanceGroupNames"), groups, 0, 5);
            for (i, g) in groups.iter().enumerate() {
                c.len(
                    &format!("{f}.instanceGroupNames.{}.member", i + 1),
                    g,
                    1,
                    64,
                );
            }
        }
        if let Some(h) = &s3.hub_access_config {
            c.len(
                &format!("{f}.hubAccessConfig.hubContentArn"),
                &h.hub_content_arn,
                0,
                255,
            );
        }
        if let Some(names) = &s3.attribute_names {
            c.count(&format!("{f}.attributeNames"), names, 0, 16);
            for (i, a) in names.iter().enumerate() {
                c.len(&format!("{f}.attributeNames.{}.member", i + 1), a, 1, 256);
            }
            if s3.s3_data_type != S3DataType::AugmentedManifestFile && !names.is_empty() {
                c.fail(
                    format!("{f}.attributeNames"),
                    None,
                    "AttributeNames is only allowed with S3DataType AugmentedManifestFile",
                );
            }
        }
        if s3.s3_data_type == S3DataType::AugmentedManifestFile {
            if mode != InputMode::Pipe {
                c.fail(
                    format!("{f}.s3DataType"),
                    Some("AugmentedManifestFile"),
                    format!("AugmentedManifestFile is supported only with Pipe input mode (channel input mode is {})", mode.as_str()),
                );
            }
            if s3.attribute_names.as_ref().is_none_or(|a| a.is_empty()) {
                c.fail(
                    format!("{f}.attributeNames"),
                    None,
                    "AttributeNames is required with S3DataType AugmentedManifestFile",
                );
            }
        }
        if mode == InputMode::FastFile && s3.s3_data_type != S3DataType::S3Prefix {
            c.fail(
                format!("{f}.s3DataType"),
                Some(&format!("{:?}", s3.s3_data_type)),
                "FastFile input mode supports only S3DataType S3Prefix (not ManifestFile or AugmentedManifestFile)",
            );
        }
    }
    if let Some(fs) = file_system_data_source {
        let f = format!("{base}.dataSource.fileSystemDataSource");
        if c.len(&format!("{f}.fileSystemId"), &fs.file_system_id, 11, 21) {
            c.pattern(&format!("{f}.fileSystemId"), &fs.file_system_id, &FS_ID);
        }
        c.len(&format!("{f}.directoryPath"), &fs.directory_path, 0, 4096);
        if mode != InputMode::File {
            c.fail(
                format!("{base}.inputMode"),
                Some(mode.as_str()),
                "FileSystemDataSource channels support only File input mode",
            );
        }
    }
    if mode != InputMode::Pipe {
        if ch.compression_type == Some(ChannelCompression::Gzip) {
            c.fail(
                format!("{base}.compressionType"),
                Some("Gzip"),
                format!("CompressionType Gzip is supported only in Pipe input mode (channel input mode is {})", mode.as_str()),
            );
        }
        if ch.record_wrapper_type == Some(RecordWrapper::RecordIo) {
            c.fail(
                format!("{base}.recordWrapperType"),
                Some("RecordIO"),
                format!("RecordWrapperType RecordIO is supported only in Pipe input mode (channel input mode is {})", mode.as_str()),
            );
        }
    }
}

/// What SageMaker accepts but this trainyard cannot run yet, one line per gap, so the user is
/// told at submission rather than finding out from a failed job.
pub fn unsupported(req: &CreateTrainingJobRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let mut add = |field: String, rule: &str| {
        errors.push(ValidationError {
            field,
            value: None,
            rule: rule.to_string(),
        })
    };
    if let Some(a) = &req.algorithm_specification {
        if a.algorithm_name.is_some() {
            add(
                "algorithmSpecification.algorithmName".into(),
                "AlgorithmName (marketplace algorithms) is not supported by trainyard; use TrainingImage",
            );
        }
        if a.training_image_config
            .as_ref()
            .is_some_and(|t| t.training_repository_auth_config.is_some())
        {
            add(
                "algorithmSpecification.trainingImageConfig.trainingRepositoryAuthConfig".into(),
                "a Lambda credentials provider is not supported by trainyard; registry credentials come from the docker configuration (~/.docker/config.json)",
            );
        }
    }
    if req
        .resource_config
        .as_ref()
        .and_then(|r| r.instance_groups.as_ref())
        .is_some_and(|g| !g.is_empty())
    {
        add(
            "resourceConfig.instanceGroups".into(),
            "heterogeneous clusters (InstanceGroups) are not supported by trainyard yet",
        );
    }
    for (i, ch) in req.input_data_config.iter().flatten().enumerate() {
        let base = format!("inputDataConfig.{}.member", i + 1);
        if ch.data_source.dataset_source.is_some() {
            add(
                format!("{base}.dataSource.datasetSource"),
                "DatasetSource is not supported by trainyard",
            );
        }
        if let Some(s3) = &ch.data_source.s3_data_source {
            if s3.s3_data_type == S3DataType::Converse {
                add(
                    format!("{base}.dataSource.s3DataSource.s3DataType"),
                    "S3DataType Converse (serverless fine-tuning data) is not supported by trainyard",
                );
            }
        }
    }
    if req.output_data_config.compression_type == Some(OutputCompression::None) {
        add(
            "outputDataConfig.compressionType".into(),
            "CompressionType NONE is not supported by this trainyard build yet (GZIP is)",
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn base() -> Value {
        json!({
            "TrainingJobName": "job-1",
            "RoleArn": "arn:aws:iam::123456789012:role/exec",
            "AlgorithmSpecification": {"TrainingImage": "host", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train/"}}}]
        })
    }

    fn check(v: &Value) -> Result<(), ValidationErrors> {
        let req = CreateTrainingJobRequest::from_json(&v.to_string()).expect("parses");
        validate(&req, false)
    }

    /// Sets `value` at a `/`-separated JSON pointer, creating objects on the way.
    fn set(v: &mut Value, pointer: &str, value: Value) {
        let mut cur = v;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            cur = match cur {
                Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
                Value::Object(m) => {
                    if last {
                        m.insert(p.to_string(), value);
                        return;
                    }
                    m.entry(p.to_string()).or_insert_with(|| json!({}))
                }
                _ => panic!("bad pointer {pointer}"),
            };
        }
    }

    #[test]
    fn the_base_request_is_valid() {
        check(&base()).unwrap();
    }

    #[test]
    fn valid_optional_configs_pass() {
        let mut v = base();
        let hub = "arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub";
        let arn = "arn:aws:sagemaker:us-east-1:123456789012";
        set(
            &mut v,
            "/AlgorithmSpecification/TrainingImageConfig",
            json!({"TrainingRepositoryAccessMode": "Vpc", "TrainingRepositoryAuthConfig": {"TrainingRepositoryCredentialsProviderArn": "arn:aws:lambda:us-east-1:123456789012:function:creds"}}),
        );
        set(
            &mut v,
            "/ResourceConfig/TrainingPlanArn",
            json!(format!("{arn}:training-plan/a-plan-name")),
        );
        set(
            &mut v,
            "/ResourceConfig/InstancePreferences",
            json!([{"InstanceType": "ml.p6-b200.48xlarge", "InstanceCount": 2, "TrainingPlanArns": [format!("{arn}:training-plan/a-plan-name")]}]),
        );
        set(
            &mut v,
            "/DebugHookConfig",
            json!({"S3OutputPath": "s3://b/t", "HookParameters": {"save_interval": "10"}, "CollectionConfigurations": [{"CollectionName": "losses"}]}),
        );
        set(
            &mut v,
            "/DebugRuleConfigurations",
            json!([{"RuleConfigurationName": "r", "RuleEvaluatorImage": "img", "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 0}]),
        );
        set(
            &mut v,
            "/ExperimentConfig",
            json!({"ExperimentName": "exp-1", "RunName": "run-1"}),
        );
        set(
            &mut v,
            "/ServerlessJobConfig",
            json!({"BaseModelArn": format!("{hub}/Model/m/1.0.0"), "JobType": "FineTuning", "CustomizationTechnique": "RLAIF", "Peft": "LORA", "EvaluationType": "LLMAJEvaluation", "SequenceLength": "32K"}),
        );
        set(
            &mut v,
            "/MlflowConfig",
            json!({"MlflowResourceArn": format!("{arn}:mlflow-tracking-server/t")}),
        );
        set(
            &mut v,
            "/ModelPackageConfig",
            json!({"ModelPackageGroupArn": format!("{arn}:model-package-group/g"), "SourceModelPackageArn": format!("{arn}:model-package/g/1")}),
        );
        set(
            &mut v,
            "/AlgorithmSpecification/AlgorithmName",
            json!("my-algo"),
        );
        v["AlgorithmSpecification"]
            .as_object_mut()
            .unwrap()
            .remove("TrainingImage");
        check(&v).unwrap();
        set(
            &mut v,
            "/AlgorithmSpecification/AlgorithmName",
            json!("my-algo-"),
        );
        let errs = check(&v).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!(errs.0[0].field, "algorithmSpecification.algorithmName");
    }

    #[test]
    fn every_rule_names_its_field_and_rule() {
        let long = |n: usize| "a".repeat(n);
        let channel = |extra: Value| {
            let mut c = json!({"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train/"}}});
            for (k, v) in extra.as_object().unwrap() {
                set(&mut c, k, v.clone());
            }
            json!([c])
        };
        // (pointer, value, expected field, expected rule fragment)
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "/TrainingJobName",
                json!(""),
                "trainingJobName",
                "length greater than or equal to 1",
            ),
            (
                "/TrainingJobName",
                json!(long(64)),
                "trainingJobName",
                "less than or equal to 63",
            ),
            (
                "/TrainingJobName",
                json!("bad_name"),
                "trainingJobName",
                "regular expression pattern",
            ),
            (
                "/TrainingJobName",
                json!("-lead"),
                "trainingJobName",
                "regular expression pattern",
            ),
            (
                "/RoleArn",
                json!("arn:aws:iam::123:role/x-too-short"),
                "roleArn",
                "regular expression pattern",
            ),
            (
                "/RoleArn",
                json!("short"),
                "roleArn",
                "length greater than or equal to 20",
            ),
            (
                "/AlgorithmSpecification/TrainingImage",
                json!(long(256)),
                "algorithmSpecification.trainingImage",
                "less than or equal to 255",
            ),
            (
                "/AlgorithmSpecification/AlgorithmName",
                json!("algo"),
                "algorithmSpecification",
                "mutually exclusive",
            ),
            (
                "/AlgorithmSpecification/ContainerEntrypoint",
                json!([]),
                "algorithmSpecification.containerEntrypoint",
                "greater than or equal to 1",
            ),
            (
                "/AlgorithmSpecification/ContainerArguments",
                json!([long(257)]),
                "algorithmSpecification.containerArguments.1.member",
                "less than or equal to 256",
            ),
            (
                "/AlgorithmSpecification/MetricDefinitions",
                json!([{"Name": "m", "Regex": "("}]),
                "algorithmSpecification.metricDefinitions.1.member.regex",
                "valid regular expression",
            ),
            (
                "/AlgorithmSpecification/MetricDefinitions",
                json!([{"Name": "", "Regex": "x"}]),
                "algorithmSpecification.metricDefinitions.1.member.name",
                "greater than or equal to 1",
            ),
            (
                "/AlgorithmSpecification/MetricDefinitions",
                json!(
                    (0..41)
                        .map(|i| json!({"Name": format!("m{i}"), "Regex": "x"}))
                        .collect::<Vec<_>>()
                ),
                "algorithmSpecification.metricDefinitions",
                "less than or equal to 40",
            ),
            (
                "/HyperParameters",
                json!({"k": long(2501)}),
                "hyperParameters.'k'.value",
                "less than or equal to 2500",
            ),
            (
                "/HyperParameters",
                json!({long(257): "v"}),
                ".key",
                "less than or equal to 256",
            ),
            (
                "/HyperParameters",
                Value::Object((0..101).map(|i| (format!("k{i}"), json!("v"))).collect()),
                "hyperParameters",
                "less than or equal to 100",
            ),
            (
                "/Environment",
                json!({"1BAD": "v"}),
                "environment.'1BAD'.key",
                "regular expression pattern",
            ),
            (
                "/Environment",
                json!({"K": long(513)}),
                "environment.'K'.value",
                "less than or equal to 512",
            ),
            (
                "/Tags",
                json!([{"Key": "", "Value": "v"}]),
                "tags.1.member.key",
                "greater than or equal to 1",
            ),
            (
                "/Tags",
                json!([{"Key": "k", "Value": "bad\u{0}"}]),
                "tags.1.member.value",
                "regular expression pattern",
            ),
            (
                "/VpcConfig",
                json!({"SecurityGroupIds": [], "Subnets": ["s"]}),
                "vpcConfig.securityGroupIds",
                "greater than or equal to 1",
            ),
            (
                "/OutputDataConfig/S3OutputPath",
                json!("gs://bucket/x"),
                "outputDataConfig.s3OutputPath",
                "regular expression pattern",
            ),
            (
                "/OutputDataConfig/S3OutputPath",
                json!(format!("s3://b/{}", long(1100))),
                "outputDataConfig.s3OutputPath",
                "less than or equal to 1024",
            ),
            (
                "/OutputDataConfig/KmsKeyId",
                json!("bad key!"),
                "outputDataConfig.kmsKeyId",
                "regular expression pattern",
            ),
            (
                "/OutputDataConfig",
                json!({"S3OutputPath": "s3://out--usw2-az1--x-s3/o", "KmsKeyId": "k"}),
                "outputDataConfig.kmsKeyId",
                "directory bucket",
            ),
            (
                "/ResourceConfig/InstanceType",
                json!("m5.large"),
                "resourceConfig.instanceType",
                "regular expression pattern",
            ),
            (
                "/ResourceConfig/InstanceCount",
                json!(0),
                "resourceConfig.instanceCount",
                "greater than or equal to 1",
            ),
            (
                "/ResourceConfig/VolumeSizeInGB",
                json!(0),
                "resourceConfig.volumeSizeInGB",
                "greater than or equal to 1",
            ),
            (
                "/ResourceConfig/KeepAlivePeriodInSeconds",
                json!(21601),
                "resourceConfig.keepAlivePeriodInSeconds",
                "less than or equal to 21600",
            ),
            (
                "/ResourceConfig/InstanceGroups",
                json!([{"InstanceType": "ml.m5.large", "InstanceCount": 1, "InstanceGroupName": "g"}]),
                "resourceConfig.instanceGroups",
                "cannot be combined",
            ),
            (
                "/StoppingCondition/MaxRuntimeInSeconds",
                json!(0),
                "stoppingCondition.maxRuntimeInSeconds",
                "greater than or equal to 1",
            ),
            (
                "/StoppingCondition/MaxRuntimeInSeconds",
                json!(2_419_201),
                "stoppingCondition.maxRuntimeInSeconds",
                "less than or equal to 2419200",
            ),
            (
                "/StoppingCondition/MaxPendingTimeInSeconds",
                json!(60),
                "stoppingCondition.maxPendingTimeInSeconds",
                "greater than or equal to 7200",
            ),
            (
                "/StoppingCondition/MaxWaitTimeInSeconds",
                json!(100),
                "stoppingCondition.maxWaitTimeInSeconds",
                "only allowed when EnableManagedSpotTraining",
            ),
            (
                "/EnableManagedSpotTraining",
                json!(true),
                "stoppingCondition.maxWaitTimeInSeconds",
                "required when EnableManagedSpotTraining",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "relative"}),
                "checkpointConfig.localPath",
                "absolute path",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/../etc"}),
                "checkpointConfig.localPath",
                "'..'",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/tmp/ckpt"}),
                "checkpointConfig.localPath",
                "under /opt/ml",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml"}),
                "checkpointConfig.localPath",
                "under /opt/ml",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/mlx/c"}),
                "checkpointConfig.localPath",
                "under /opt/ml",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/./c"}),
                "checkpointConfig.localPath",
                "'.' or '..'",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt//ml/c"}),
                "checkpointConfig.localPath",
                "normalised",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/checkpoints/../../../etc"}),
                "checkpointConfig.localPath",
                "'..'",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/ChannelName": "."})),
                "inputDataConfig.1.member.channelName",
                "must not be '.' or '..'",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/ChannelName": ".."})),
                "inputDataConfig.1.member.channelName",
                "must not be '.' or '..'",
            ),
            (
                "/Tags",
                json!([{"Key": "aws:createdBy", "Value": "v"}]),
                "tags.1.member.key",
                "must not start with 'aws:'",
            ),
            (
                "/Tags",
                json!([{"Key": "ok", "Value": "v"}, {"Key": "AWS:x", "Value": "v"}]),
                "tags.2.member.key",
                "must not start with 'aws:'",
            ),
            (
                "/Tags",
                json!([{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}]),
                "tags",
                "unique (case-insensitively): 'team' repeats 'team'",
            ),
            (
                "/Tags",
                json!([{"Key": "Team", "Value": "a"}, {"Key": "x", "Value": "v"}, {"Key": "tEAM", "Value": "b"}]),
                "tags",
                "'tEAM' repeats 'Team'",
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "ftp://b/c"}),
                "checkpointConfig.s3Uri",
                "regular expression pattern",
            ),
            (
                "/RetryStrategy",
                json!({"MaximumRetryAttempts": 31}),
                "retryStrategy.maximumRetryAttempts",
                "less than or equal to 30",
            ),
            (
                "/InputDataConfig",
                json!([]),
                "inputDataConfig",
                "greater than or equal to 1",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/ChannelName": "bad/name"})),
                "inputDataConfig.1.member.channelName",
                "regular expression pattern",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/ChannelName": long(65)})),
                "inputDataConfig.1.member.channelName",
                "less than or equal to 64",
            ),
            (
                "/InputDataConfig",
                json!([
                {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/a"}}},
                {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/b"}}}]),
                "inputDataConfig.2.member.channelName",
                "unique",
            ),
            (
                "/InputDataConfig",
                channel(
                    json!({"/DataSource/FileSystemDataSource": {"FileSystemId": "fs-0123abcd", "FileSystemAccessMode": "ro", "FileSystemType": "EFS", "DirectoryPath": "/x"}}),
                ),
                "inputDataConfig.1.member.dataSource",
                "Exactly one",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/DataSource/S3DataSource/S3Uri": "file:///x"})),
                "inputDataConfig.1.member.dataSource.s3DataSource.s3Uri",
                "regular expression pattern",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/ContentType": long(257)})),
                "inputDataConfig.1.member.contentType",
                "less than or equal to 256",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/DataSource/S3DataSource/AttributeNames": ["a"]})),
                "inputDataConfig.1.member.dataSource.s3DataSource.attributeNames",
                "only allowed with S3DataType AugmentedManifestFile",
            ),
            (
                "/InputDataConfig",
                channel(
                    json!({"/DataSource/S3DataSource/S3DataType": "AugmentedManifestFile", "/DataSource/S3DataSource/AttributeNames": ["a"]}),
                ),
                "inputDataConfig.1.member.dataSource.s3DataSource.s3DataType",
                "only with Pipe input mode",
            ),
            (
                "/InputDataConfig",
                channel(
                    json!({"/DataSource/S3DataSource/S3DataType": "AugmentedManifestFile", "/InputMode": "Pipe"}),
                ),
                "inputDataConfig.1.member.dataSource.s3DataSource.attributeNames",
                "required",
            ),
            (
                "/InputDataConfig",
                channel(
                    json!({"/DataSource/S3DataSource/S3DataType": "ManifestFile", "/InputMode": "FastFile"}),
                ),
                "inputDataConfig.1.member.dataSource.s3DataSource.s3DataType",
                "FastFile input mode supports only",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/CompressionType": "Gzip"})),
                "inputDataConfig.1.member.compressionType",
                "only in Pipe input mode",
            ),
            (
                "/InputDataConfig",
                channel(json!({"/RecordWrapperType": "RecordIO", "/InputMode": "FastFile"})),
                "inputDataConfig.1.member.recordWrapperType",
                "only in Pipe input mode",
            ),
            (
                "/InputDataConfig",
                json!([{"ChannelName": "fs", "InputMode": "Pipe", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-0123abcd", "FileSystemAccessMode": "ro", "FileSystemType": "FSxLustre", "DirectoryPath": "/fsx/x"}}}]),
                "inputDataConfig.1.member.inputMode",
                "only File input mode",
            ),
            (
                "/InputDataConfig",
                json!([{"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-12", "FileSystemAccessMode": "ro", "FileSystemType": "EFS", "DirectoryPath": "/x"}}}]),
                "inputDataConfig.1.member.dataSource.fileSystemDataSource.fileSystemId",
                "greater than or equal to 11",
            ),
            (
                "/AlgorithmSpecification/TrainingImageConfig",
                json!({"TrainingRepositoryAccessMode": "Vpc", "TrainingRepositoryAuthConfig": {"TrainingRepositoryCredentialsProviderArn": "arn:aws:s3:::bucket"}}),
                "algorithmSpecification.trainingImageConfig.trainingRepositoryAuthConfig.trainingRepositoryCredentialsProviderArn",
                "regular expression pattern",
            ),
            (
                "/InputDataConfig/0/DataSource/S3DataSource/InstanceGroupNames",
                json!([long(65)]),
                "inputDataConfig.1.member.dataSource.s3DataSource.instanceGroupNames.1.member",
                "less than or equal to 64",
            ),
            (
                "/InputDataConfig/0/DataSource/S3DataSource/HubAccessConfig",
                json!({"HubContentArn": long(256)}),
                "inputDataConfig.1.member.dataSource.s3DataSource.hubAccessConfig.hubContentArn",
                "less than or equal to 255",
            ),
            (
                "/InputDataConfig",
                json!([{"ChannelName": "ds", "DataSource": {"DatasetSource": {"DatasetArn": "arn:aws:s3:::b"}}}]),
                "inputDataConfig.1.member.dataSource.datasetSource.datasetArn",
                "regular expression pattern",
            ),
            (
                "/ResourceConfig/TrainingPlanArn",
                json!(format!(
                    "arn:aws:sagemaker:us-east-1:123456789012:plan/{}",
                    long(40)
                )),
                "resourceConfig.trainingPlanArn",
                "regular expression pattern",
            ),
            (
                "/ResourceConfig/InstancePlacementConfig",
                json!({"PlacementSpecifications": [{"UltraServerId": long(257), "InstanceCount": -1}]}),
                "resourceConfig.instancePlacementConfig.placementSpecifications.1.member.instanceCount",
                "greater than or equal to 0",
            ),
            (
                "/ResourceConfig/InstancePreferences",
                json!([{"InstanceType": "ml.m5.large", "TrainingPlanArns": []}]),
                "resourceConfig.instancePreferences.1.member.trainingPlanArns",
                "greater than or equal to 1",
            ),
            (
                "/ResourceConfig/SelectedInstanceType",
                json!("m5"),
                "resourceConfig.selectedInstanceType",
                "regular expression pattern",
            ),
            (
                "/DebugHookConfig",
                json!({"S3OutputPath": "gs://b/t"}),
                "debugHookConfig.s3OutputPath",
                "regular expression pattern",
            ),
            (
                "/DebugHookConfig",
                json!({"S3OutputPath": "s3://b/t", "HookParameters": {"": "v"}}),
                "debugHookConfig.hookParameters.''.key",
                "greater than or equal to 1",
            ),
            (
                "/DebugHookConfig",
                json!({"S3OutputPath": "s3://b/t", "CollectionConfigurations": [{"CollectionParameters": Value::Object((0..21).map(|i| (format!("k{i}"), json!("v"))).collect())}]}),
                "debugHookConfig.collectionConfigurations.1.member.collectionParameters",
                "less than or equal to 20",
            ),
            (
                "/DebugRuleConfigurations",
                json!([{"RuleConfigurationName": "r", "RuleEvaluatorImage": long(256)}]),
                "debugRuleConfigurations.1.member.ruleEvaluatorImage",
                "less than or equal to 255",
            ),
            (
                "/ProfilerRuleConfigurations",
                json!([{"RuleConfigurationName": "r", "RuleEvaluatorImage": "i", "InstanceType": "big"}]),
                "profilerRuleConfigurations.1.member.instanceType",
                "regular expression pattern",
            ),
            (
                "/TensorBoardOutputConfig",
                json!({"S3OutputPath": "s3://b/t", "LocalPath": long(4097)}),
                "tensorBoardOutputConfig.localPath",
                "less than or equal to 4096",
            ),
            (
                "/ProfilerConfig",
                json!({"ProfilingParameters": {"k": long(257)}}),
                "profilerConfig.profilingParameters.'k'.value",
                "less than or equal to 256",
            ),
            (
                "/ExperimentConfig",
                json!({"TrialName": "bad_name"}),
                "experimentConfig.trialName",
                "regular expression pattern",
            ),
            (
                "/ServerlessJobConfig",
                json!({"BaseModelArn": "arn:aws:sagemaker:us-east-1:aws:hub-content/Hub/Model/m/1.0.0", "JobType": "FineTuning", "SequenceLength": "8k"}),
                "serverlessJobConfig.sequenceLength",
                "regular expression pattern",
            ),
            (
                "/ServerlessJobConfig",
                json!({"BaseModelArn": "m", "JobType": "Evaluation"}),
                "serverlessJobConfig.baseModelArn",
                "regular expression pattern",
            ),
            (
                "/MlflowConfig",
                json!({"MlflowResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:tracking/x"}),
                "mlflowConfig.mlflowResourceArn",
                "regular expression pattern",
            ),
            (
                "/ModelPackageConfig",
                json!({"ModelPackageGroupArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/g", "SourceModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/"}),
                "modelPackageConfig.sourceModelPackageArn",
                "regular expression pattern",
            ),
        ];
        for (pointer, value, field, rule) in cases {
            let mut v = base();
            set(&mut v, pointer, value);
            let errs = check(&v).expect_err(&format!("{pointer} should be refused"));
            assert!(
                errs.0.iter().any(|e| (e.field == field
                    || (field.starts_with('.') && e.field.ends_with(field)))
                    && e.rule.contains(rule)),
                "{pointer}: expected field {field:?} with rule containing {rule:?}, got: {errs}"
            );
        }
    }

    #[test]
    fn paths_names_and_tags_within_the_rules_pass() {
        for (pointer, value) in [
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/checkpoints"}),
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/checkpoints/"}),
            ),
            (
                "/CheckpointConfig",
                json!({"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/a/b.c/..d"}),
            ),
            ("/InputDataConfig/0/ChannelName", json!("..train")),
            ("/InputDataConfig/0/ChannelName", json!("a.b-c_d")),
            (
                "/Tags",
                json!([{"Key": "team", "Value": "a"}, {"Key": "awsome", "Value": "b"}, {"Key": "x:aws:", "Value": "c"}]),
            ),
        ] {
            let mut v = base();
            set(&mut v, pointer, value.clone());
            assert!(
                check(&v).is_ok(),
                "{pointer} = {value} should pass: {:?}",
                check(&v)
            );
        }
    }

    #[test]
    fn missing_required_structures_are_reported() {
        for (key, field) in [
            ("AlgorithmSpecification", "algorithmSpecification"),
            ("ResourceConfig", "resourceConfig"),
        ] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(key);
            let errs = check(&v).unwrap_err();
            assert!(
                errs.0
                    .iter()
                    .any(|e| e.field == field && e.rule == "Member must not be null"),
                "{errs}"
            );
        }
    }

    #[test]
    fn all_violations_are_reported_together_in_sagemaker_wording() {
        let mut v = base();
        set(&mut v, "/TrainingJobName", json!("bad_name"));
        set(&mut v, "/ResourceConfig/InstanceCount", json!(0));
        let errs = check(&v).unwrap_err();
        let msg = errs.to_string();
        assert!(msg.starts_with("2 validation errors detected: Value 'bad_name' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{msg}");
    }

    #[test]
    fn file_uris_only_where_allowed() {
        let mut v = base();
        set(
            &mut v,
            "/OutputDataConfig/S3OutputPath",
            json!("file:///tmp/out"),
        );
        let req = CreateTrainingJobRequest::from_json(&v.to_string()).unwrap();
        assert!(validate(&req, false).is_err());
        assert!(validate(&req, true).is_ok());
    }

    #[test]
    fn capabilities_not_built_yet_are_refused_clearly() {
        let mut v = base();
        set(
            &mut v,
            "/InputDataConfig/0/DataSource/S3DataSource/S3DataType",
            json!("Converse"),
        );
        let req = CreateTrainingJobRequest::from_json(&v.to_string()).unwrap();
        let errs = unsupported(&req).unwrap_err();
        assert!(errs.to_string().contains("S3DataType Converse"), "{errs}");
    }
}
