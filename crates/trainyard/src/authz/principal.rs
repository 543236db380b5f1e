//! Who is acting, with what permissions and which tags.
//!
//! Every authorisation in trainyard needs the same three facts about the actor: its ARN
//! (trust policies name principals by ARN), its permission policies, and its principal tags
//! (ABAC policies read `${aws:PrincipalTag/tenant-id}`). A [`Principal`] is a caller of the
//! API resolved from an access key (an IAM user or an assumed-role session); a
//! [`JobPrincipal`] is what a training job's data plane runs as (the execution role's
//! session, built by [`Identity::job_principal`] from the role's trust policy). Both
//! evaluate requests the same way, through [`trainyard_iam`], and both turn a denial into an
//! [`AccessDenial`] that says who was refused what, and why, in the words AWS uses.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use trainyard_iam::{Decision, Policy, PolicySet, Request, RequestError, Response};

use crate::identity::{Identity, session_arn};

/// Most session tags one session may carry (STS's limit).
pub const MAX_SESSION_TAGS: usize = 50;

/// The characters of tag keys and values (lengths are checked separately: bounded
/// repetitions of Unicode classes make large automata).
pub(crate) static TAG_CHARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("the tag pattern is a valid regex")
});

/// Whether `key` is a valid tag key: 1–128 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
pub(crate) fn is_tag_key(key: &str) -> bool {
    (1..=128).contains(&key.chars().count()) && TAG_CHARS.is_match(key)
}

/// A session (or IAM) tag, written `{"Key": "...", "Value": "..."}` as in STS and IAM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SessionTag {
    /// Tag key; compared case-insensitively.
    pub key: String,
    /// Tag value; case-sensitive.
    pub value: String,
}

impl SessionTag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        SessionTag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Checks a list of tags against STS's rules: at most 50, keys of 1–128 characters of
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]` not starting with `aws:`, values of 0–256 such
/// characters, and no key twice in any case. The message names the offending tag.
pub fn validate_tags(tags: &[SessionTag]) -> Result<(), String> {
    if tags.len() > MAX_SESSION_TAGS {
        return Err(format!(
            "{} tags given: Member must have length less than or equal to {MAX_SESSION_TAGS}",
            tags.len()
        ));
    }
    let mut seen = HashSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let n = i + 1;
        if !is_tag_key(&tag.key) {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.key' failed to satisfy constraint: Member must have length between 1 and 128 and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]+",
                tag.key
            ));
        }
        if tag.key.len() >= 4 && tag.key[..4].eq_ignore_ascii_case("aws:") {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.key': the prefix aws: is reserved for AWS use",
                tag.key
            ));
        }
        if tag.value.chars().count() > 256 || !TAG_CHARS.is_match(&tag.value) {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*",
                tag.value
            ));
        }
        if !seen.insert(tag.key.to_lowercase()) {
            return Err(format!(
                "Duplicate tag keys found ('{}'). Please note that Tag keys are case insensitive.",
                tag.key
            ));
        }
    }
    Ok(())
}

/// `base` with every tag of `overrides` applied on top: a key of `overrides` replaces the
/// tag of `base` with the same key in any case (session tags over role tags, explicit tags
/// over incoming transitive ones).
pub fn merge_tags(base: &[SessionTag], overrides: &[SessionTag]) -> Vec<SessionTag> {
    let replaced: HashSet<String> = overrides.iter().map(|t| t.key.to_lowercase()).collect();
    base.iter()
        .filter(|t| !replaced.contains(&t.key.to_lowercase()))
        .chain(overrides)
        .cloned()
        .collect()
}

/// A request that the policies do not allow, phrased as AWS phrases it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal_arn} is not authorized to perform: {action} on resource: {resource} {why}", why = self.reason())]
pub struct AccessDenial {
    /// Who asked.
    pub principal_arn: String,
    /// The action, e.g. `s3:GetObject`.
    pub action: String,
    /// The resource ARN.
    pub resource: String,
    /// `ExplicitDeny` or `ImplicitDeny`.
    pub decision: Decision,
    /// The denying statements (explicit deny), as `Sid` or `identity[0].Statement[1]`.
    pub statements: Vec<String>,
    /// What was evaluated, for the message: "an identity-based policy", "the role trust
    /// policy", ...
    pub policy_kind: &'static str,
}

impl AccessDenial {
    /// Whether a `Deny` statement refused the request (rather than nothing allowing it).
    pub fn is_explicit(&self) -> bool {
        self.decision == Decision::ExplicitDeny
    }

    fn reason(&self) -> String {
        if self.is_explicit() {
            format!(
                "with an explicit deny in {} (statement {})",
                self.policy_kind,
                self.statements.join(", ")
            )
        } else {
            format!(
                "because no {} allows the {} action (implicit deny)",
                self.policy_kind
                    .trim_start_matches("an ")
                    .trim_start_matches("the "),
                self.action
            )
        }
    }

    pub(crate) fn from_response(
        principal_arn: &str,
        action: &str,
        resource: &str,
        response: &Response,
        policy_kind: &'static str,
    ) -> Self {
        AccessDenial {
            principal_arn: principal_arn.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            decision: response.decision,
            statements: response.determining_statements().map(|s| s.id()).collect(),
            policy_kind,
        }
    }
}

/// Why a request could not even be evaluated (a malformed principal ARN or an empty action).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot evaluate {action} on {resource} for {principal_arn}: {source}")]
pub struct EvaluationFailure {
    /// Who asked.
    pub principal_arn: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// Why the request could not be built.
    #[source]
    pub source: RequestError,
}

/// Condition keys of one request beyond those derived from the principal:
/// `("s3:prefix", vec!["a/".into()])`.
pub type ContextKeys<'a> = &'a [(&'a str, Vec<String>)];

/// Evaluates `action` on `resource` for a principal: identity policies, optional session
/// policy, principal tags and extra condition keys.
pub(crate) fn evaluate_for(
    principal_arn: &str,
    tags: &[SessionTag],
    identity: &[Arc<Policy>],
    session: Option<&Policy>,
    action: &str,
    resource: &str,
    context: ContextKeys<'_>,
) -> Result<Response, EvaluationFailure> {
    let request = build_request(principal_arn, tags, action, resource, context)?;
    let mut set = PolicySet::new().identities(identity.iter().map(Arc::as_ref));
    if let Some(session) = session {
        set = set.session(session);
    }
    Ok(set.evaluate(&request))
}

pub(crate) fn build_request(
    principal_arn: &str,
    tags: &[SessionTag],
    action: &str,
    resource: &str,
    context: ContextKeys<'_>,
) -> Result<Request, EvaluationFailure> {
    let mut builder = Request::builder()
        .principal_arn(principal_arn)
        .principal_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())))
        .action(action)
        .resource(resource);
    for (key, values) in context {
        builder = builder.context(key, values.iter().map(String::as_str));
    }
    builder.build().map_err(|source| EvaluationFailure {
        principal_arn: principal_arn.to_owned(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        source,
    })
}

/// Why an [`Principal::authorize`] or [`JobPrincipal::authorize`] call refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The policies do not allow the request.
    #[error(transparent)]
    Denied(#[from] AccessDenial),
    /// The request could not be evaluated; treated as a denial by every caller.
    #[error(transparent)]
    Evaluation(#[from] EvaluationFailure),
}

fn authorize_response(
    principal_arn: &str,
    action: &str,
    resource: &str,
    response: Result<Response, EvaluationFailure>,
) -> Result<(), AuthorizeError> {
    let response = response?;
    if response.is_allowed() {
        Ok(())
    } else {
        Err(AccessDenial::from_response(
            principal_arn,
            action,
            resource,
            &response,
            "an identity-based policy",
        )
        .into())
    }
}

/// What kind of caller a [`Principal`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An IAM user signing with a long-term access key.
    User {
        /// `UserName`.
        name: String,
    },
    /// A role session signing with temporary credentials from `AssumeRole`.
    AssumedRole {
        /// The role's ARN.
        role_arn: String,
        /// The role's name.
        role_name: String,
        /// `RoleSessionName`.
        session_name: String,
        /// The temporary access key id (`ASIA…`).
        access_key_id: String,
        /// Whether the session was itself created by a role session (role chaining).
        chained: bool,
    },
}

/// A caller of the API, resolved from its access key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub(crate) arn: String,
    pub(crate) user_id: String,
    pub(crate) account: String,
    pub(crate) kind: PrincipalKind,
    pub(crate) policies: Vec<Arc<Policy>>,
    pub(crate) session_policy: Option<Arc<Policy>>,
    pub(crate) principal_tags: Vec<SessionTag>,
    pub(crate) session_tags: Vec<SessionTag>,
    pub(crate) transitive_tag_keys: Vec<String>,
    pub(crate) source_identity: Option<String>,
    pub(crate) expiration: Option<OffsetDateTime>,
}

impl Principal {
    /// `arn:aws:iam::<acct>:user/<name>` or `arn:aws:sts::<acct>:assumed-role/<role>/<session>`.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// `UserId` of `GetCallerIdentity`: `AIDA…` for a user, `AROA…:<session>` for a session.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// User or role session, with the details of each.
    pub fn kind(&self) -> &PrincipalKind {
        &self.kind
    }

    /// Whether this is a role session (temporary credentials).
    pub fn is_role_session(&self) -> bool {
        matches!(self.kind, PrincipalKind::AssumedRole { .. })
    }

    /// The tags policies see as `aws:PrincipalTag/<key>`: the user's IAM tags, or the
    /// role's IAM tags overridden by the session tags.
    pub fn principal_tags(&self) -> &[SessionTag] {
        &self.principal_tags
    }

    /// The session tags (passed to `AssumeRole` or inherited as transitive tags); empty for
    /// a user. These are what `EnableSessionTagChaining` passes on to a job.
    pub fn session_tags(&self) -> &[SessionTag] {
        &self.session_tags
    }

    /// The keys of the session tags that pass on to sessions this session creates.
    pub fn transitive_tag_keys(&self) -> &[String] {
        &self.transitive_tag_keys
    }

    /// The session tags that pass on to a chained session: those whose key is transitive.
    pub fn transitive_tags(&self) -> Vec<SessionTag> {
        let keys: HashSet<String> = self
            .transitive_tag_keys
            .iter()
            .map(|k| k.to_lowercase())
            .collect();
        self.session_tags
            .iter()
            .filter(|t| keys.contains(&t.key.to_lowercase()))
            .cloned()
            .collect()
    }

    /// `SourceIdentity` set when the session (or one it was chained from) was created.
    pub fn source_identity(&self) -> Option<&str> {
        self.source_identity.as_deref()
    }

    /// When the credentials stop working; `None` for long-term keys.
    pub fn expiration(&self) -> Option<OffsetDateTime> {
        self.expiration
    }

    /// The identity policies (a user's, or the assumed role's permission policies).
    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }

    /// Evaluates `action` on `resource` with extra condition keys.
    pub fn evaluate(
        &self,
        action: &str,
        resource: &str,
        context: ContextKeys<'_>,
    ) -> Result<Response, EvaluationFailure> {
        evaluate_for(
            &self.arn,
            &self.principal_tags,
            &self.policies,
            self.session_policy.as_deref(),
            action,
            resource,
            context,
        )
    }

    /// `Ok` when the caller's policies allow `action` on `resource`, for checks such as
    /// `sagemaker:CreateTrainingJob` on the job ARN or `iam:PassRole` on the execution role.
    pub fn authorize(
        &self,
        action: &str,
        resource: &str,
        context: ContextKeys<'_>,
    ) -> Result<(), AuthorizeError> {
        authorize_response(
            &self.arn,
            action,
            resource,
            self.evaluate(action, resource, context),
        )
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// What a training job's data plane runs as: the execution role's session, with the
/// role's permission policies and the principal tags the job was given.
#[derive(Debug, Clone)]
pub struct JobPrincipal {
    arn: String,
    policies: Vec<Arc<Policy>>,
    tags: Vec<SessionTag>,
}

impl JobPrincipal {
    /// A job principal from its parts (see [`crate::identity::Identity::job_principal`]
    /// for the one built from configuration).
    pub fn new(arn: impl Into<String>, policies: Vec<Arc<Policy>>, tags: Vec<SessionTag>) -> Self {
        JobPrincipal {
            arn: arn.into(),
            policies,
            tags,
        }
    }

    /// The session ARN, e.g. `arn:aws:sts::<acct>:assumed-role/<role>/SageMaker`.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The permission policies.
    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }

    /// The principal tags (`aws:PrincipalTag/<key>`).
    pub fn tags(&self) -> &[SessionTag] {
        &self.tags
    }

    /// Evaluates `action` on `resource` with extra condition keys.
    pub fn evaluate(
        &self,
        action: &str,
        resource: &str,
        context: ContextKeys<'_>,
    ) -> Result<Response, EvaluationFailure> {
        evaluate_for(
            &self.arn,
            &self.tags,
            &self.policies,
            None,
            action,
            resource,
            context,
        )
    }

    /// `Ok` when the policies allow `action` on `resource`.
    pub fn authorize(
        &self,
        action: &str,
        resource: &str,
        context: ContextKeys<'_>,
    ) -> Result<(), AuthorizeError> {
        authorize_response(
            &self.arn,
            action,
            resource,
            self.evaluate(action, resource, context),
        )
    }
}

/// The service principal that assumes execution roles for training jobs.
pub const SAGEMAKER_SERVICE: &str = "sagemaker.amazonaws.com";
/// The role session name of a job's execution-role session (as SageMaker uses).
pub const JOB_SESSION_NAME: &str = "SageMaker";

/// Why a job's execution-role principal could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobPrincipalError {
    /// No role with this ARN is configured.
    #[error(
        "Could not assume role {role_arn}: no role with this ARN is configured in {config} \
         (the ARN is arn:aws:iam::<AccountId>:role<Path><RoleName>)"
    )]
    RoleNotFound {
        /// The job's `RoleArn`.
        role_arn: String,
        /// The configuration file.
        config: PathBuf,
    },
    /// The role's trust policy does not let SageMaker assume it (or tag the session).
    #[error(
        "Could not assume role {role_arn}: its trust policy does not allow principal \
         '{SAGEMAKER_SERVICE}' to perform {action}{hint}",
        hint = if *action == "sts:TagSession" { " (needed because EnableSessionTagChaining passes the caller's session tags)" } else { "" }
    )]
    TrustDenied {
        /// The job's `RoleArn`.
        role_arn: String,
        /// `sts:AssumeRole` or `sts:TagSession`.
        action: &'static str,
    },
    /// The tags to chain break STS's tag rules.
    #[error("Could not assume role {role_arn} with the caller's session tags: {message}")]
    InvalidTags {
        /// The job's `RoleArn`.
        role_arn: String,
        /// Which tag, and why.
        message: String,
    },
    /// The trust check could not be evaluated.
    #[error(transparent)]
    Evaluation(#[from] EvaluationFailure),
}

impl Identity {
    /// The principal a training job's data plane runs as: the execution role `role_arn`,
    /// assumed by `sagemaker.amazonaws.com`, with the role's permission policies. With
    /// `enable_session_tag_chaining`, the creating caller's session tags
    /// (`Principal::session_tags`) become the job's principal tags (over the role's own
    /// tags), and the trust policy must also allow `sts:TagSession`; without it the job gets
    /// the role's tags only.
    pub fn job_principal(
        &self,
        role_arn: &str,
        creator_session_tags: &[SessionTag],
        enable_session_tag_chaining: bool,
    ) -> Result<JobPrincipal, JobPrincipalError> {
        let role =
            self.config()
                .role_by_arn(role_arn)
                .ok_or_else(|| JobPrincipalError::RoleNotFound {
                    role_arn: role_arn.to_owned(),
                    config: self.config().source().to_path_buf(),
                })?;
        let chained: &[SessionTag] = if enable_session_tag_chaining {
            creator_session_tags
        } else {
            &[]
        };
        validate_tags(chained).map_err(|message| JobPrincipalError::InvalidTags {
            role_arn: role_arn.to_owned(),
            message,
        })?;
        let mut actions = vec!["sts:AssumeRole"];
        if !chained.is_empty() {
            actions.push("sts:TagSession");
        }
        for action in actions {
            let mut builder = Request::builder()
                .principal_service(SAGEMAKER_SERVICE)
                .action(action)
                .resource(&role.arn)
                .context("aws:TagKeys", chained.iter().map(|t| t.key.as_str()))
                .context_value("sts:RoleSessionName", JOB_SESSION_NAME);
            for tag in chained {
                builder = builder.context_value(&format!("aws:RequestTag/{}", tag.key), &tag.value);
            }
            let request = builder.build().map_err(|source| EvaluationFailure {
                principal_arn: SAGEMAKER_SERVICE.to_owned(),
                action: action.to_owned(),
                resource: role.arn.clone(),
                source,
            })?;
            let response = PolicySet::new()
                .resource(&role.trust_policy)
                .evaluate(&request);
            if !response.is_allowed() {
                return Err(JobPrincipalError::TrustDenied {
                    role_arn: role_arn.to_owned(),
                    action,
                });
            }
        }
        Ok(JobPrincipal::new(
            session_arn(self.account_id(), &role.name, JOB_SESSION_NAME),
            role.policies.iter().map(|p| p.document.clone()).collect(),
            merge_tags(&role.tags, chained),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<SessionTag> {
        pairs.iter().map(|(k, v)| SessionTag::new(*k, *v)).collect()
    }

    #[test]
    fn tag_rules() {
        assert!(validate_tags(&tags(&[("tenant-id", "acme"), ("cost center", "")])).is_ok());
        let too_many: Vec<SessionTag> = (0..51)
            .map(|i| SessionTag::new(format!("k{i}"), "v"))
            .collect();
        let cases: Vec<(Vec<SessionTag>, &str)> = vec![
            (tags(&[("", "v")]), "tags.1.member.key"),
            (tags(&[("ok", "v"), ("bad*key", "v")]), "tags.2.member.key"),
            (tags(&[(&"k".repeat(129), "v")]), "tags.1.member.key"),
            (tags(&[("k", &"v".repeat(257))]), "tags.1.member.value"),
            (tags(&[("k", "a;b")]), "tags.1.member.value"),
            (tags(&[("AWS:thing", "v")]), "reserved"),
            (
                tags(&[("Tenant", "a"), ("tenant", "b")]),
                "Duplicate tag keys",
            ),
            (too_many, "less than or equal to 50"),
        ];
        for (input, expected) in cases {
            let error = validate_tags(&input).unwrap_err();
            assert!(error.contains(expected), "{input:?}: {error}");
        }
    }

    #[test]
    fn merge_overrides_case_insensitively() {
        let merged = merge_tags(
            &tags(&[("Tenant-Id", "old"), ("team", "ml")]),
            &tags(&[("tenant-id", "new")]),
        );
        assert_eq!(merged, tags(&[("team", "ml"), ("tenant-id", "new")]));
    }

    #[test]
    fn denial_messages_say_explicit_or_implicit() {
        let policy = Arc::new(
            Policy::parse(
                r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Sid":"NoSecrets","Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/secret/*"}]}"#,
            )
            .unwrap(),
        );
        let job = JobPrincipal::new(
            "arn:aws:sts::111122223333:assumed-role/exec/SageMaker",
            vec![policy],
            vec![],
        );
        job.authorize("s3:GetObject", "arn:aws:s3:::b/public/x", &[])
            .unwrap();
        let Err(AuthorizeError::Denied(denial)) =
            job.authorize("s3:GetObject", "arn:aws:s3:::b/secret/x", &[])
        else {
            panic!("expected a denial");
        };
        assert!(denial.is_explicit());
        let text = denial.to_string();
        assert!(
            text.contains("explicit deny") && text.contains("NoSecrets"),
            "{text}"
        );
        let Err(AuthorizeError::Denied(denial)) =
            job.authorize("iam:PassRole", "arn:aws:iam::111122223333:role/x", &[])
        else {
            panic!("expected a denial");
        };
        assert!(!denial.is_explicit());
        let text = denial.to_string();
        assert!(
            text.contains("implicit deny")
                && text.contains("iam:PassRole")
                && text.contains("assumed-role/exec/SageMaker"),
            "{text}"
        );
    }

    #[test]
    fn job_principal_chains_tags_only_when_enabled() {
        const CREATOR: &str = "arn:aws:iam::111122223333:role/creator";
        let identity = crate::identity::testing::identity();
        let tags = vec![SessionTag::new("tenant-id", "acme")];
        let exec = "arn:aws:iam::111122223333:role/exec";
        let job = identity.job_principal(exec, &tags, true).unwrap();
        assert_eq!(
            job.arn(),
            "arn:aws:sts::111122223333:assumed-role/exec/SageMaker"
        );
        assert_eq!(job.tags(), tags.as_slice());
        job.authorize("s3:GetObject", "arn:aws:s3:::shared-bucket/acme/x", &[])
            .unwrap();

        let untagged = identity.job_principal(exec, &tags, false).unwrap();
        assert!(untagged.tags().is_empty());
        assert!(
            untagged
                .authorize("s3:GetObject", "arn:aws:s3:::shared-bucket/acme/x", &[])
                .is_err()
        );

        let error = identity
            .job_principal("arn:aws:iam::111122223333:role/missing", &tags, true)
            .unwrap_err();
        assert!(matches!(error, JobPrincipalError::RoleNotFound { .. }));
        assert!(error.to_string().contains("/test/iam.json"), "{error}");

        // The role trusts SageMaker for AssumeRole but not TagSession: fine without tags.
        let no_tag = "arn:aws:iam::111122223333:role/exec-untagged";
        identity.job_principal(no_tag, &tags, false).unwrap();
        identity.job_principal(no_tag, &[], true).unwrap();
        let error = identity.job_principal(no_tag, &tags, true).unwrap_err();
        assert_eq!(
            error,
            JobPrincipalError::TrustDenied {
                role_arn: no_tag.into(),
                action: "sts:TagSession"
            }
        );
        // A role that does not trust SageMaker at all.
        let error = identity.job_principal(CREATOR, &[], false).unwrap_err();
        assert!(
            error.to_string().contains("sagemaker.amazonaws.com"),
            "{error}"
        );
    }
}
