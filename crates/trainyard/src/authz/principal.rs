//! Who is acting, with what permissions and which tags.
//!
//! Every authorisation in trainyard needs the same three facts about the actor: its ARN
//! (trust policies name principals by ARN), its permission policies, and its principal tags
//! (ABAC policies read `${aws:PrincipalTag/tenant-id}`). A [`Principal`] is a caller of the
//! API resolved from an access key (an IAM user or an assumed-role session); a
//! [`JobPrincipal`] is what a training job's data plane runs as (the execution role's
//! session, built by [`crate::identity::Identity::job_principal`] from the role's trust policy). Both
//! evaluate requests the same way, through [`trainyard_iam`], and both turn a denial into an
//! [`AccessDenial`] that says who was refused what, and why, in the words AWS uses.
//!
//! `tags.rs` holds the tag rules both share (STS's limits, merging session over role tags),
//! `job.rs` the job principal and how it is built from the execution role.

mod job;
mod tags;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;
use trainyard_iam::{Decision, Policy, PolicySet, Request, RequestError, Response};

pub use job::{JOB_SESSION_NAME, JobPrincipal, JobPrincipalError, SAGEMAKER_SERVICE};
pub(crate) use tags::is_tag_key;
pub use tags::{MAX_SESSION_TAGS, SessionTag, merge_tags, validate_tags};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
