//! `AssumeRole`: turning a caller and a role into a tagged session.
//!
//! This is where session tags are born, so it is where ABAC can be subverted: a tenant that
//! could pass another tenant's `tenant-id`, or drop an inherited one, would read that
//! tenant's data. So every rule of STS that guards tags is applied here, in STS's order and
//! with its error codes: parameter validation (`ValidationError`), the session policy
//! (`MalformedPolicyDocument`), then the role's trust policy for `sts:AssumeRole`, and for
//! `sts:TagSession` when tags are passed (with the requested tags as `aws:RequestTag/*` and
//! `aws:TagKeys`, and the caller's as `aws:PrincipalTag/*`), and the caller's own identity
//! policies (`AccessDenied`). Incoming transitive tags of a parent session are merged under
//! the explicit ones (an explicit key overrides a transitive one, keys compared
//! case-insensitively) and stay transitive down the chain.
//!
//! The same kind of trust check, with the service principal `sagemaker.amazonaws.com`,
//! decides which principal a training job runs as ([`Identity::job_principal`], in
//! `authz::principal`).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use time::OffsetDateTime;
use trainyard_iam::{
    Decision, OneOrMany, Policy, PolicySet, Principal as PolicyPrincipal, PrincipalType, Request,
    Response,
};

use super::secret::{
    RandomError, Secret, new_secret_key, new_session_key_id, new_session_token, sha256_hex,
};
use super::sessions::StoredSession;
use super::{Identity, Role, policy_error_location};
use crate::authz::principal::{
    AccessDenial, EvaluationFailure, MAX_SESSION_TAGS, Principal, SessionTag, build_request,
    is_tag_key, merge_tags, validate_tags,
};

const DEFAULT_DURATION: i64 = 3600;
const MIN_DURATION: i64 = 900;
const MAX_DURATION: i64 = 43200;
const CHAINED_MAX_DURATION: i64 = 3600;
const MAX_SESSION_POLICY: usize = 2048;
/// What [`Credentials::packed_policy_size`] is a percentage of: the largest session policy
/// plus the largest set of tags STS accepts.
const PACKED_BUDGET: usize = MAX_SESSION_POLICY + MAX_SESSION_TAGS * (128 + 256);

static SESSION_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_+=,.@-]*$").expect("the session name pattern is a valid regex")
});
static EXTERNAL_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_+=,.@:/-]*$").expect("the external id pattern is a valid regex")
});

/// The `sts:AssumeRole` request parameters trainyard supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssumeRoleInput {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`: 2–64 characters of `[\w+=,.@-]`.
    pub role_session_name: String,
    /// `DurationSeconds`: 900–43200, at most the role's `MaxSessionDuration`, at most 3600
    /// when a role session assumes a role. Default 3600.
    pub duration_seconds: Option<i64>,
    /// `Tags`: session tags.
    pub tags: Vec<SessionTag>,
    /// `TransitiveTagKeys`: which of `tags` pass on to chained sessions.
    pub transitive_tag_keys: Vec<String>,
    /// `Policy`: an inline session policy that narrows the session's permissions.
    pub policy: Option<String>,
    /// `ExternalId`, available to the trust policy as `sts:ExternalId`.
    pub external_id: Option<String>,
    /// `SourceIdentity`, available as `sts:SourceIdentity`; fixed once set in a chain.
    pub source_identity: Option<String>,
}

/// Temporary credentials and the session they belong to: the `AssumeRole` result.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `AccessKeyId` (`ASIA…`).
    pub access_key_id: String,
    /// `SecretAccessKey` (redacted in `Debug`).
    pub secret_access_key: Secret,
    /// `SessionToken` (redacted in `Debug`).
    pub session_token: Secret,
    /// `Expiration`.
    pub expiration: OffsetDateTime,
    /// `AssumedRoleUser.Arn`: `arn:aws:sts::<acct>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// `AssumedRoleUser.AssumedRoleId`: `AROA…:<session>`.
    pub assumed_role_id: String,
    /// `PackedPolicySize`: percent of the session-policy-and-tags budget used.
    pub packed_policy_size: u32,
    /// `SourceIdentity`, when set.
    pub source_identity: Option<String>,
    /// The session's tags (explicit and inherited), for logs and tests.
    pub tags: Vec<SessionTag>,
}

/// An STS error: the code a client sees, and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// The caller may not do this (trust policy, identity policy, unknown role).
    #[error("AccessDenied: {0}")]
    AccessDenied(String),
    /// A parameter breaks a constraint.
    #[error("ValidationError: {0}")]
    Validation(String),
    /// The `Policy` parameter is not a valid policy.
    #[error("MalformedPolicyDocument: {0}")]
    MalformedPolicyDocument(String),
    /// The caller's session has expired.
    #[error("ExpiredToken: {0}")]
    ExpiredToken(String),
    /// The `Action` is not one trainyard's STS implements.
    #[error("InvalidAction: {0}")]
    InvalidAction(String),
    /// A server-side failure; the message goes to the log, not to the client.
    #[error("InternalFailure: {0}")]
    Internal(String),
}

impl StsError {
    /// The STS error code.
    pub fn code(&self) -> &'static str {
        match self {
            StsError::AccessDenied(_) => "AccessDenied",
            StsError::Validation(_) => "ValidationError",
            StsError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            StsError::ExpiredToken(_) => "ExpiredToken",
            StsError::InvalidAction(_) => "InvalidAction",
            StsError::Internal(_) => "InternalFailure",
        }
    }

    /// The HTTP status: 403 for `AccessDenied`, 500 for internal failures, else 400.
    pub fn status(&self) -> u16 {
        match self {
            StsError::AccessDenied(_) => 403,
            StsError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The message (for `Internal`, the detail meant for the log).
    pub fn message(&self) -> &str {
        match self {
            StsError::AccessDenied(m)
            | StsError::Validation(m)
            | StsError::MalformedPolicyDocument(m)
            | StsError::ExpiredToken(m)
            | StsError::InvalidAction(m)
            | StsError::Internal(m) => m,
        }
    }

    /// Whether the fault is the server's (`Receiver`) rather than the caller's (`Sender`).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, StsError::Internal(_))
    }
}

impl From<RandomError> for StsError {
    fn from(e: RandomError) -> Self {
        StsError::Internal(e.to_string())
    }
}

impl From<EvaluationFailure> for StsError {
    fn from(e: EvaluationFailure) -> Self {
        StsError::Internal(e.to_string())
    }
}

/// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
pub(crate) fn session_arn(account: &str, role_name: &str, session_name: &str) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}")
}

fn validation_errors(errors: Vec<String>) -> StsError {
    let n = errors.len();
    StsError::Validation(format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        errors.join("; ")
    ))
}

fn validate_input(input: &AssumeRoleInput) -> Result<(), StsError> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, value: &str, member: &str, constraint: &str| {
        if !ok {
            errors.push(format!(
                "Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}"
            ));
        }
    };
    let arn_len = input.role_arn.chars().count();
    check(
        (20..=2048).contains(&arn_len),
        &input.role_arn,
        "roleArn",
        "have length between 20 and 2048",
    );
    check(
        trainyard_iam::Arn::parse(&input.role_arn).is_ok(),
        &input.role_arn,
        "roleArn",
        "be an ARN (arn:partition:service:region:account:resource)",
    );
    let name = &input.role_session_name;
    check(
        (2..=64).contains(&name.chars().count()),
        name,
        "roleSessionName",
        "have length between 2 and 64",
    );
    check(
        SESSION_NAME.is_match(name),
        name,
        "roleSessionName",
        "satisfy regular expression pattern: [\\w+=,.@-]*",
    );
    if let Some(d) = input.duration_seconds {
        check(
            (MIN_DURATION..=MAX_DURATION).contains(&d),
            &d.to_string(),
            "durationSeconds",
            "have value between 900 and 43200",
        );
    }
    if let Some(policy) = &input.policy {
        check(
            (1..=MAX_SESSION_POLICY).contains(&policy.chars().count()),
            "(policy document)",
            "policy",
            "have length between 1 and 2048",
        );
    }
    if let Some(id) = &input.external_id {
        check(
            (2..=1224).contains(&id.chars().count()) && EXTERNAL_ID.is_match(id),
            id,
            "externalId",
            "have length between 2 and 1224 and satisfy regular expression pattern: [\\w+=,.@:\\/-]*",
        );
    }
    if let Some(si) = &input.source_identity {
        check(
            (2..=64).contains(&si.chars().count()) && SESSION_NAME.is_match(si),
            si,
            "sourceIdentity",
            "have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*",
        );
    }
    check(
        input.transitive_tag_keys.len() <= MAX_SESSION_TAGS,
        &format!("{} keys", input.transitive_tag_keys.len()),
        "transitiveTagKeys",
        "have length less than or equal to 50",
    );
    for (i, key) in input.transitive_tag_keys.iter().enumerate() {
        check(
            is_tag_key(key),
            key,
            &format!("transitiveTagKeys.{}.member", i + 1),
            "have length between 1 and 128 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
        );
    }
    if let Err(message) = validate_tags(&input.tags) {
        errors.push(message);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(validation_errors(errors))
    }
}

/// Whether a statement that allowed `request` in `trust` names the caller itself (its user,
/// role or session ARN) rather than the whole account or everyone. Only such a grant lets a
/// caller in without its own identity policy also allowing the action, as in IAM.
fn trust_names_caller(trust: &Policy, response: &Response, request: &Request) -> bool {
    let specific = |value: &str| {
        value != "*"
            && !(value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()))
            && !value.ends_with(":root")
    };
    response.determining_statements().any(|statement| {
        let Some(clause) = trust
            .statements()
            .get(statement.index)
            .and_then(|s| s.principal())
        else {
            return false;
        };
        if clause.is_negated() {
            return false;
        }
        let PolicyPrincipal::Specific(entries) = clause.principal() else {
            return false;
        };
        entries.iter().any(|(kind, values)| {
            *kind == PrincipalType::Aws
                && values.iter().any(|value| {
                    specific(value)
                        && PolicyPrincipal::Specific(vec![(
                            PrincipalType::Aws,
                            OneOrMany::One(value.clone()),
                        )])
                        .matches(request)
                })
        })
    })
}

fn packed_policy_size(policy: Option<&str>, tags: &[SessionTag]) -> u32 {
    let used = policy.map_or(0, str::len)
        + tags
            .iter()
            .map(|t| t.key.len() + t.value.len())
            .sum::<usize>();
    u32::try_from(used.saturating_mul(100).div_ceil(PACKED_BUDGET)).unwrap_or(u32::MAX)
}

impl Identity {
    /// `sts:AssumeRole` by `caller` now. See [`Identity::assume_role_at`].
    pub fn assume_role(
        &self,
        caller: &Principal,
        input: AssumeRoleInput,
    ) -> Result<Credentials, StsError> {
        self.assume_role_at(caller, input, OffsetDateTime::now_utc())
    }

    /// `sts:AssumeRole` by `caller` at time `now`: validates the parameters, checks the
    /// role's trust policy and the caller's identity policies, merges incoming transitive
    /// tags, stores the new session and returns its credentials.
    pub fn assume_role_at(
        &self,
        caller: &Principal,
        input: AssumeRoleInput,
        now: OffsetDateTime,
    ) -> Result<Credentials, StsError> {
        if caller.expiration().is_some_and(|e| now >= e) {
            return Err(StsError::ExpiredToken(
                "The security token included in the request is expired".into(),
            ));
        }
        validate_input(&input)?;
        let not_authorized = || {
            StsError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.arn(),
                input.role_arn
            ))
        };
        let role = self
            .config()
            .role_by_arn(&input.role_arn)
            .ok_or_else(not_authorized)?;
        let chained = caller.is_role_session();
        let duration = input.duration_seconds.unwrap_or(DEFAULT_DURATION);
        if duration > i64::from(role.max_session_duration) {
            return Err(StsError::Validation(format!(
                "The requested DurationSeconds ({duration}) exceeds the MaxSessionDuration set for this role ({}).",
                role.max_session_duration
            )));
        }
        if chained && duration > CHAINED_MAX_DURATION {
            return Err(StsError::Validation(format!(
                "The requested DurationSeconds ({duration}) exceeds the 1 hour session limit for roles assumed by role chaining."
            )));
        }
        let explicit_keys: HashSet<String> =
            input.tags.iter().map(|t| t.key.to_lowercase()).collect();
        if let Some(key) = input
            .transitive_tag_keys
            .iter()
            .find(|k| !explicit_keys.contains(&k.to_lowercase()))
        {
            return Err(StsError::Validation(format!(
                "The specified transitive tag key '{key}' must be included in the requested tags."
            )));
        }
        let session_policy = input
            .policy
            .as_deref()
            .map(|text| {
                Policy::parse(text).map_err(|e| {
                    let (element, reason) = policy_error_location("Policy", &e);
                    StsError::MalformedPolicyDocument(format!("{element}: {reason}"))
                })
            })
            .transpose()?;
        let incoming = caller.transitive_tags();
        let tags = merge_tags(&incoming, &input.tags);
        if tags.len() > MAX_SESSION_TAGS {
            return Err(StsError::Validation(format!(
                "The session would carry {} tags ({} passed, {} inherited as transitive); at most {MAX_SESSION_TAGS} are allowed.",
                tags.len(),
                input.tags.len(),
                incoming.len()
            )));
        }
        let transitive_lower: HashSet<String> = incoming
            .iter()
            .map(|t| t.key.to_lowercase())
            .chain(input.transitive_tag_keys.iter().map(|k| k.to_lowercase()))
            .collect();
        let transitive_tag_keys: Vec<String> = tags
            .iter()
            .filter(|t| transitive_lower.contains(&t.key.to_lowercase()))
            .map(|t| t.key.clone())
            .collect();
        let source_identity = match (caller.source_identity(), &input.source_identity) {
            (Some(parent), Some(new)) if parent != new => {
                return Err(StsError::Validation(format!(
                    "SourceIdentity '{new}' differs from the SourceIdentity '{parent}' of the calling session; it cannot be changed in a role chain."
                )));
            }
            (Some(parent), _) => Some(parent.to_owned()),
            (None, new) => new.clone(),
        };

        let mut context: Vec<(String, Vec<String>)> = input
            .tags
            .iter()
            .map(|t| (format!("aws:RequestTag/{}", t.key), vec![t.value.clone()]))
            .collect();
        context.push((
            "aws:TagKeys".into(),
            input.tags.iter().map(|t| t.key.clone()).collect(),
        ));
        context.push((
            "sts:TransitiveTagKeys".into(),
            input.transitive_tag_keys.clone(),
        ));
        context.extend(incoming.iter().map(|t| {
            (
                format!("sts:TransitiveTag/{}", t.key),
                vec![t.value.clone()],
            )
        }));
        context.push((
            "sts:RoleSessionName".into(),
            vec![input.role_session_name.clone()],
        ));
        if let Some(id) = &input.external_id {
            context.push(("sts:ExternalId".into(), vec![id.clone()]));
        }
        if let Some(si) = &source_identity {
            context.push(("sts:SourceIdentity".into(), vec![si.clone()]));
        }
        let context: Vec<(&str, Vec<String>)> = context
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let mut actions = vec!["sts:AssumeRole"];
        if !input.tags.is_empty() {
            actions.push("sts:TagSession");
        }
        if input.source_identity.is_some() {
            actions.push("sts:SetSourceIdentity");
        }
        for action in actions {
            self.check_assume(caller, role, action, &context)?;
        }

        let access_key_id = new_session_key_id()?;
        let secret = new_secret_key()?;
        let token = new_session_token()?;
        let expiration = OffsetDateTime::from_unix_timestamp(now.unix_timestamp() + duration)
            .map_err(|e| StsError::Internal(format!("session expiration: {e}")))?;
        let source_access_key_id = match caller.kind() {
            super::PrincipalKind::AssumedRole { access_key_id, .. } => access_key_id.clone(),
            super::PrincipalKind::User { .. } => String::new(),
        };
        let stored = StoredSession {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret.clone(),
            session_token_sha256: sha256_hex(token.expose().as_bytes()),
            role_arn: role.arn.clone(),
            role_session_name: input.role_session_name.clone(),
            tags: tags.clone(),
            transitive_tag_keys,
            source_arn: caller.arn().to_owned(),
            source_access_key_id,
            source_identity: source_identity.clone(),
            session_policy: session_policy
                .as_ref()
                .map(|p| p.to_json_value().to_string()),
            chained,
            issued: now,
            expiration,
        };
        self.sessions()
            .insert(&stored, now)
            .map_err(|e| StsError::Internal(e.to_string()))?;
        let assumed_role_arn = session_arn(self.account_id(), &role.name, &input.role_session_name);
        tracing::info!(
            caller = %caller.arn(),
            role = %role.arn,
            session = %assumed_role_arn,
            access_key_id = %access_key_id,
            tags = ?tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            duration_seconds = duration,
            "AssumeRole issued temporary credentials"
        );
        Ok(Credentials {
            access_key_id,
            secret_access_key: secret,
            session_token: token,
            expiration,
            assumed_role_id: format!("{}:{}", role.role_id, input.role_session_name),
            assumed_role_arn,
            packed_policy_size: packed_policy_size(stored.session_policy.as_deref(), &input.tags),
            source_identity,
            tags,
        })
    }

    /// The trust policy must allow `action` for the caller, no identity policy of the caller
    /// may deny it, and unless the trust policy names the caller itself, an identity policy
    /// must allow it too.
    fn check_assume(
        &self,
        caller: &Principal,
        role: &Role,
        action: &str,
        context: &[(&str, Vec<String>)],
    ) -> Result<(), StsError> {
        let request = build_request(
            caller.arn(),
            caller.principal_tags(),
            action,
            &role.arn,
            context,
        )?;
        let trust = PolicySet::new()
            .resource(&role.trust_policy)
            .evaluate(&request);
        let mut identity_set =
            PolicySet::new().identities(caller.policies().iter().map(Arc::as_ref));
        if let Some(session) = caller.session_policy.as_deref() {
            identity_set = identity_set.session(session);
        }
        let identity = identity_set.evaluate(&request);
        let denial = |response: &Response, kind: &'static str| {
            let denial =
                AccessDenial::from_response(caller.arn(), action, &role.arn, response, kind);
            tracing::info!(%denial, "AssumeRole refused");
            StsError::AccessDenied(denial.to_string())
        };
        if trust.decision == Decision::ExplicitDeny {
            return Err(denial(&trust, "the role trust policy"));
        }
        if identity.decision == Decision::ExplicitDeny {
            return Err(denial(&identity, "an identity-based policy"));
        }
        // A trust statement naming only the caller's account admits it without granting
        // (the evaluator lists it as delegated): the identity policies must then allow.
        if trust.decision != Decision::Allow && trust.diagnostics.delegated.is_empty() {
            return Err(denial(&trust, "the role trust policy"));
        }
        if identity.decision != Decision::Allow
            && !trust_names_caller(&role.trust_policy, &trust, &request)
        {
            return Err(denial(&identity, "an identity-based policy"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{CredentialError, PrincipalKind};
    use super::*;

    const CREATOR: &str = "arn:aws:iam::111122223333:role/creator";

    fn input(role: &str, tags: &[(&str, &str)], transitive: &[&str]) -> AssumeRoleInput {
        AssumeRoleInput {
            role_arn: role.to_owned(),
            role_session_name: "tenant-session".to_owned(),
            tags: tags.iter().map(|(k, v)| SessionTag::new(*k, *v)).collect(),
            transitive_tag_keys: transitive.iter().map(|k| (*k).to_owned()).collect(),
            ..AssumeRoleInput::default()
        }
    }

    fn alice(identity: &Identity) -> Principal {
        identity.resolve(ALICE_KEY, None, now()).unwrap()
    }

    fn session(identity: &Identity, creds: &Credentials) -> Principal {
        identity
            .resolve(
                &creds.access_key_id,
                Some(creds.session_token.expose()),
                now(),
            )
            .unwrap()
    }

    #[test]
    fn alice_assumes_the_creator_role_with_tenant_tags() {
        let identity = identity();
        let creds = identity
            .assume_role_at(
                &alice(&identity),
                input(CREATOR, &[("tenant-id", "acme")], &["tenant-id"]),
                now(),
            )
            .unwrap();
        assert!(creds.access_key_id.starts_with("ASIA"));
        assert_eq!(creds.expiration, now() + time::Duration::hours(1));
        assert_eq!(
            creds.assumed_role_arn,
            "arn:aws:sts::111122223333:assumed-role/creator/tenant-session"
        );
        assert!(
            creds.assumed_role_id.starts_with("AROA")
                && creds.assumed_role_id.ends_with(":tenant-session")
        );
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains(creds.secret_access_key.expose())
                && !shown.contains(creds.session_token.expose())
        );

        let session = session(&identity, &creds);
        assert_eq!(session.arn(), creds.assumed_role_arn);
        assert_eq!(
            session.session_tags(),
            &[SessionTag::new("tenant-id", "acme")]
        );
        // Session tags override the role's tag of the same key; other role tags stay.
        assert_eq!(
            session.principal_tags(),
            &[
                SessionTag::new("kind", "creator"),
                SessionTag::new("tenant-id", "acme")
            ]
        );
        assert_eq!(
            session.transitive_tags(),
            vec![SessionTag::new("tenant-id", "acme")]
        );
        assert!(matches!(
            session.kind(),
            PrincipalKind::AssumedRole { chained: false, .. }
        ));
        session
            .authorize(
                "sagemaker:CreateTrainingJob",
                "arn:aws:sagemaker:us-east-1:111122223333:training-job/x",
                &[],
            )
            .unwrap();
    }

    #[test]
    fn sessions_expire_and_need_their_token() {
        let identity = identity();
        let creds = identity
            .assume_role_at(
                &alice(&identity),
                AssumeRoleInput {
                    duration_seconds: Some(900),
                    ..input(CREATOR, &[], &[])
                },
                now(),
            )
            .unwrap();
        let token = creds.session_token.expose();
        let later = now() + time::Duration::seconds(900);
        assert!(matches!(
            identity.resolve(&creds.access_key_id, Some(token), later),
            Err(CredentialError::Expired { .. })
        ));
        assert!(matches!(
            identity.resolve(&creds.access_key_id, None, now()),
            Err(CredentialError::InvalidToken { .. })
        ));
        assert!(matches!(
            identity.resolve(&creds.access_key_id, Some("forged"), now()),
            Err(CredentialError::InvalidToken { .. })
        ));
        let mut expired_caller = session(&identity, &creds);
        expired_caller.expiration = Some(now());
        let error = identity
            .assume_role_at(&expired_caller, input(CREATOR, &[], &[]), now())
            .unwrap_err();
        assert_eq!(error.code(), "ExpiredToken");
    }

    #[test]
    fn parameters_are_validated() {
        let identity = identity();
        let caller = alice(&identity);
        let cases: Vec<(AssumeRoleInput, &str, &str)> = vec![
            (AssumeRoleInput { role_session_name: "x".into(), ..input(CREATOR, &[], &[]) }, "ValidationError", "roleSessionName"),
            (AssumeRoleInput { role_session_name: "has space".into(), ..input(CREATOR, &[], &[]) }, "ValidationError", "regular expression"),
            (AssumeRoleInput { role_session_name: "a".repeat(65), ..input(CREATOR, &[], &[]) }, "ValidationError", "between 2 and 64"),
            (AssumeRoleInput { duration_seconds: Some(899), ..input(CREATOR, &[], &[]) }, "ValidationError", "durationSeconds"),
            (AssumeRoleInput { duration_seconds: Some(43201), ..input(CREATOR, &[], &[]) }, "ValidationError", "durationSeconds"),
            (input("arn:aws:iam::1:r/x", &[], &[]), "ValidationError", "roleArn"),
            (input("not-an-arn-but-long-enough", &[], &[]), "ValidationError", "be an ARN"),
            (input(CREATOR, &[("tenant-id", "a"), ("TENANT-ID", "b")], &[]), "ValidationError", "Duplicate tag keys"),
            (input(CREATOR, &[("bad key!", "a")], &[]), "ValidationError", "tags.1.member.key"),
            (input(CREATOR, &[("tenant-id", "a")], &["project"]), "ValidationError", "transitive tag key 'project'"),
            (
                AssumeRoleInput { duration_seconds: Some(7200), ..input("arn:aws:iam::111122223333:role/exec", &[], &[]) },
                "ValidationError",
                "MaxSessionDuration",
            ),
            (
                AssumeRoleInput { policy: Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"s3:*","Resource":"*"}]}"#.into()), ..input(CREATOR, &[], &[]) },
                "MalformedPolicyDocument",
                "Policy.Statement[0].Effect",
            ),
            (
                AssumeRoleInput { policy: Some("not json".into()), ..input(CREATOR, &[], &[]) },
                "MalformedPolicyDocument",
                "Policy",
            ),
        ];
        for (request, code, needle) in cases {
            let error = identity
                .assume_role_at(&caller, request.clone(), now())
                .unwrap_err();
            assert_eq!(error.code(), code, "{request:?}: {error}");
            assert!(error.message().contains(needle), "{request:?}: {error}");
        }
        let error = identity
            .assume_role_at(
                &caller,
                AssumeRoleInput {
                    role_session_name: "!".into(),
                    duration_seconds: Some(1),
                    ..input(CREATOR, &[], &[])
                },
                now(),
            )
            .unwrap_err();
        assert!(
            error.message().starts_with("3 validation errors detected"),
            "{error}"
        );
    }

    #[test]
    fn trust_policy_decides_who_may_assume_and_tag() {
        let identity = identity();
        let alice = alice(&identity);
        let mallory = identity.resolve(MALLORY_KEY, None, now()).unwrap();
        let denied = |caller: &Principal, request: AssumeRoleInput, needle: &str| {
            let error = identity
                .assume_role_at(caller, request.clone(), now())
                .unwrap_err();
            assert_eq!(error.code(), "AccessDenied", "{request:?}: {error}");
            assert_eq!(error.status(), 403);
            assert!(error.message().contains(needle), "{request:?}: {error}");
        };
        // Not in the trust policy.
        denied(
            &mallory,
            input(CREATOR, &[], &[]),
            "user/mallory is not authorized to perform: sts:AssumeRole",
        );
        // Unknown roles look exactly like refused ones.
        denied(
            &alice,
            input("arn:aws:iam::111122223333:role/nope", &[], &[]),
            "sts:AssumeRole on resource: arn:aws:iam::111122223333:role/nope",
        );
        // TagSession is conditioned on the tag keys and a non-empty tenant-id.
        denied(
            &alice,
            input(CREATOR, &[("tenant-id", "acme"), ("admin", "true")], &[]),
            "sts:TagSession",
        );
        denied(
            &alice,
            input(CREATOR, &[("tenant-id", "")], &[]),
            "sts:TagSession",
        );
        denied(
            &alice,
            input(CREATOR, &[("project", "p")], &[]),
            "sts:TagSession",
        );
        // The service role cannot be assumed by a user at all.
        denied(
            &alice,
            input("arn:aws:iam::111122223333:role/exec", &[], &[]),
            "role trust policy",
        );
        // The caller's own explicit deny wins over the trust policy.
        denied(
            &alice,
            input("arn:aws:iam::111122223333:role/forbidden", &[], &[]),
            "explicit deny in an identity-based policy",
        );
        // A trust policy naming only the account needs the caller's identity policy too.
        identity
            .assume_role_at(
                &alice,
                input("arn:aws:iam::111122223333:role/account-trust", &[], &[]),
                now(),
            )
            .unwrap();
        denied(
            &mallory,
            input("arn:aws:iam::111122223333:role/account-trust", &[], &[]),
            "identity-based policy allows the sts:AssumeRole action",
        );
        // SourceIdentity needs sts:SetSourceIdentity in the trust policy.
        let with_source = AssumeRoleInput {
            source_identity: Some("alice@example.com".into()),
            ..input(CREATOR, &[], &[])
        };
        let creds = identity.assume_role_at(&alice, with_source, now()).unwrap();
        assert_eq!(creds.source_identity.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn chaining_passes_transitive_tags_and_caps_the_duration() {
        let identity = identity();
        let creds = identity
            .assume_role_at(
                &alice(&identity),
                input(
                    CREATOR,
                    &[("tenant-id", "acme"), ("project", "p1")],
                    &["tenant-id"],
                ),
                now(),
            )
            .unwrap();
        let parent = session(&identity, &creds);
        let chained_role = "arn:aws:iam::111122223333:role/chained";
        let error = identity
            .assume_role_at(
                &parent,
                AssumeRoleInput {
                    duration_seconds: Some(3601),
                    ..input(chained_role, &[], &[])
                },
                now(),
            )
            .unwrap_err();
        assert!(error.message().contains("1 hour session limit"), "{error}");

        let child_creds = identity
            .assume_role_at(&parent, input(chained_role, &[], &[]), now())
            .unwrap();
        let child = session(&identity, &child_creds);
        // Only the transitive tag is inherited, and it stays transitive.
        assert_eq!(
            child.session_tags(),
            &[SessionTag::new("tenant-id", "acme")]
        );
        assert_eq!(child.transitive_tag_keys(), &["tenant-id".to_owned()]);
        assert!(matches!(
            child.kind(),
            PrincipalKind::AssumedRole { chained: true, .. }
        ));

        // An explicit tag with the same key (in another case) overrides the inherited one.
        let override_creds = identity
            .assume_role_at(
                &parent,
                input(chained_role, &[("Tenant-ID", "other"), ("x", "y")], &[]),
                now(),
            )
            .unwrap();
        let overridden = session(&identity, &override_creds);
        assert_eq!(
            overridden.session_tags(),
            &[
                SessionTag::new("Tenant-ID", "other"),
                SessionTag::new("x", "y")
            ]
        );
        assert_eq!(overridden.transitive_tag_keys(), &["Tenant-ID".to_owned()]);
    }

    #[test]
    fn session_policies_narrow_the_session() {
        let identity = identity();
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sagemaker:Describe*","Resource":"*"}]}"#;
        let creds = identity
            .assume_role_at(
                &alice(&identity),
                AssumeRoleInput {
                    policy: Some(policy.into()),
                    ..input(CREATOR, &[], &[])
                },
                now(),
            )
            .unwrap();
        assert!(creds.packed_policy_size > 0 && creds.packed_policy_size <= 100);
        let session = session(&identity, &creds);
        let job = "arn:aws:sagemaker:us-east-1:111122223333:training-job/x";
        session
            .authorize("sagemaker:DescribeTrainingJob", job, &[])
            .unwrap();
        assert!(
            session
                .authorize("sagemaker:CreateTrainingJob", job, &[])
                .is_err()
        );
    }
}
