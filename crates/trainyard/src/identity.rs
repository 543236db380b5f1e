//! Identity and access control: who is calling, and what a job may touch.
//!
//! Many tenants share one trainyard server and one execution role; what keeps a job inside
//! its tenant's data is ABAC, as on AWS. A tenant assumes a *job-creation role* with STS
//! `AssumeRole`, passing session tags such as `tenant-id=acme`; it signs `CreateTrainingJob`
//! with those temporary credentials and `EnableSessionTagChaining`; the job then runs as the
//! execution role with the same tags, and every object access is checked against the role's
//! policy with `${aws:PrincipalTag/tenant-id}` substituted. This module holds the pieces of
//! that flow that need state:
//!
//! - [`IamConfig`]: users (long-term access keys, identity policies, tags) and roles (trust
//!   policy, permission policies, `MaxSessionDuration`, tags), read from
//!   `$TRAINYARD_HOME/iam.json`;
//! - [`SessionStore`]: temporary credentials issued by `AssumeRole`, persisted in the
//!   `sessions` table of `$TRAINYARD_HOME/trainyard.db`;
//! - [`Identity`]: both together; resolves an access key to a [`Principal`]
//!   ([`Identity::signing_key`], [`Identity::principal`]), runs `AssumeRole`
//!   ([`Identity::assume_role`]); a job's [`JobPrincipal`] is built from it by
//!   [`Identity::job_principal`] (in [`crate::authz::principal`]).
//!
//! What is *decided* with this state lives in [`crate::authz`]: signature checking
//! ([`crate::authz::sigv4`]), the principals and their evaluation, control-plane decisions and
//! the authorizing object client. The STS wire protocol is in `api::sts`.
//!
//! # `iam.json`
//!
//! Field names are those of the IAM API. Policy documents are JSON objects, or strings
//! holding JSON (as IAM returns them). Every policy is parsed at load time; a malformed one
//! is refused with the path of the offending element. Secrets never appear in `Debug`
//! output or logs.
//!
//! ```json
//! {
//!   "AccountId": "111122223333",
//!   "Users": [{
//!     "UserName": "acme-ci",
//!     "Path": "/",
//!     "AccessKeys": [{"AccessKeyId": "AKIAACMECI0000000001", "SecretAccessKey": "…"}],
//!     "Tags": [{"Key": "team", "Value": "ml"}],
//!     "Policies": [{"PolicyName": "create-jobs", "PolicyDocument": {
//!       "Version": "2012-10-17",
//!       "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
//!                      "Resource": "arn:aws:iam::111122223333:role/job-creator"}]}}]
//!   }],
//!   "Roles": [{
//!     "RoleName": "job-creator",
//!     "MaxSessionDuration": 43200,
//!     "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
//!       "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/acme-ci"},
//!       "Action": ["sts:AssumeRole", "sts:TagSession"],
//!       "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "acme"}}}]},
//!     "Policies": [{"PolicyName": "sagemaker", "PolicyDocument": {"Version": "2012-10-17",
//!       "Statement": [{"Effect": "Allow", "Action": ["sagemaker:*", "iam:PassRole"], "Resource": "*"}]}}]
//!   }, {
//!     "RoleName": "exec",
//!     "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
//!       "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
//!       "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
//!     "Policies": [{"PolicyName": "tenant-data", "PolicyDocument": {"Version": "2012-10-17",
//!       "Statement": [
//!         {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
//!          "Resource": "arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*"},
//!         {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared-bucket",
//!          "Condition": {"StringLike": {"s3:prefix": ["${aws:PrincipalTag/tenant-id}/*"]}}}]}}]
//!   }]
//! }
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `AccountId` | 12 digits; default `TRAINYARD_ACCOUNT_ID` (the settings' account) |
//! | `Users[].UserName`, `Path` | ARN `arn:aws:iam::<acct>:user<Path><UserName>`; `Path` defaults to `/` |
//! | `Users[].AccessKeys[]` | `AccessKeyId` (16–128 of `[A-Za-z0-9_]`, not `ASIA…`, unique) and `SecretAccessKey` |
//! | `Users[].Policies[]`, `Roles[].Policies[]` | inline identity / permission policies: `PolicyName`, `PolicyDocument` |
//! | `Users[].Tags`, `Roles[].Tags` | IAM tags, seen as `aws:PrincipalTag/<key>`; session tags override role tags |
//! | `Roles[].RoleName`, `Path` | ARN `arn:aws:iam::<acct>:role<Path><RoleName>` (the `RoleArn` clients pass) |
//! | `Roles[].AssumeRolePolicyDocument` | trust policy: who may `sts:AssumeRole` / `sts:TagSession` / `sts:SetSourceIdentity` |
//! | `Roles[].MaxSessionDuration` | 3600–43200 seconds, default 3600 |
//! | `Roles[].Description` | free text, ignored |
//!
//! Without an `iam.json`, [`Identity::load`] returns `None` and the server runs without
//! authentication, as before this module existed.

mod assume;
mod config;
mod secret;
mod sessions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use trainyard_iam::{Policy, PolicyError};

pub(crate) use assume::session_arn;
pub use assume::{AssumeRoleInput, Credentials, StsError};
pub use config::{AccessKey, DEFAULT_MAX_SESSION_DURATION, IamConfig, NamedPolicy, Role, User};
// The principals and their evaluation live with the rest of authorization; these paths stay
// for the runner and other callers that name them here.
pub use crate::authz::principal::{
    AccessDenial, AuthorizeError, ContextKeys, EvaluationFailure, JOB_SESSION_NAME, JobPrincipal,
    JobPrincipalError, MAX_SESSION_TAGS, Principal, PrincipalKind, SAGEMAKER_SERVICE, SessionTag,
    merge_tags, validate_tags,
};
pub use secret::{RandomError, Secret, constant_time_eq};
pub use sessions::{SessionStore, SessionStoreError, StoredSession};

/// The configuration file under `$TRAINYARD_HOME`.
pub const CONFIG_FILE: &str = "iam.json";

/// Why the identity configuration or the session store could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An element has the wrong shape or value.
    #[error("{path}: {element}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The element, e.g. `Users[0].AccessKeys[1].AccessKeyId`.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// A policy document is malformed.
    #[error("{path}: {element}: {reason}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// The offending element, down into the policy
        /// (`Roles[0].Policies[1].PolicyDocument.Statement[2].Effect`).
        element: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The session table could not be opened.
    #[error(transparent)]
    Sessions(#[from] SessionStoreError),
}

/// The full location and the reason of a policy error, `element` being where the document
/// sits (`Roles[0].AssumeRolePolicyDocument`).
pub(crate) fn policy_error_location(element: &str, error: &PolicyError) -> (String, String) {
    match (error.path(), error.reason()) {
        (Some(path), Some(reason)) if !path.is_root() => {
            (format!("{element}.{path}"), reason.to_string())
        }
        (_, Some(reason)) => (element.to_owned(), reason.to_string()),
        _ => (element.to_owned(), error.to_string()),
    }
}

/// Why an access key does not resolve to a usable principal.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No user key and no session has this id.
    #[error("access key {access_key_id} is not known")]
    UnknownAccessKey {
        /// The key presented.
        access_key_id: String,
    },
    /// A temporary key without its session token, with another session's token, or a
    /// long-term key with a session token.
    #[error("the security token presented with access key {access_key_id} is invalid")]
    InvalidToken {
        /// The key presented.
        access_key_id: String,
    },
    /// The session has expired.
    #[error("the session of access key {access_key_id} expired at {expiration}")]
    Expired {
        /// The key presented.
        access_key_id: String,
        /// When it expired.
        expiration: OffsetDateTime,
    },
    /// The session's role is no longer configured.
    #[error("the role {role_arn} of session {access_key_id} is no longer configured")]
    RoleRemoved {
        /// The key presented.
        access_key_id: String,
        /// The role.
        role_arn: String,
    },
    /// The stored session does not decode, or its session policy no longer parses.
    #[error("the session of access key {access_key_id} is unusable: {message}")]
    Corrupt {
        /// The key presented.
        access_key_id: String,
        /// What is wrong.
        message: String,
    },
    /// The session table failed.
    #[error(transparent)]
    Store(#[from] SessionStoreError),
}

/// The secret behind an access key id, and what it belongs to: enough to verify a signature
/// before anything else is decided.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The access key id.
    pub access_key_id: String,
    /// Its secret (redacted in `Debug`).
    pub secret: Secret,
    /// A user's key, or a role session's.
    pub owner: KeyOwner,
}

/// Who an access key belongs to.
#[derive(Debug, Clone)]
pub enum KeyOwner {
    /// A user, by index into [`IamConfig::users`].
    User(usize),
    /// A role session.
    Session(Box<StoredSession>),
}

/// Users, roles and sessions of one installation.
#[derive(Debug)]
pub struct Identity {
    config: IamConfig,
    sessions: SessionStore,
}

impl Identity {
    /// Loads `$TRAINYARD_HOME/iam.json` and opens the session table in
    /// `$TRAINYARD_HOME/trainyard.db`. `None` when there is no `iam.json` (authentication
    /// off). `default_account` is the settings' account id.
    pub fn load(home: &Path, default_account: &str) -> Result<Option<Self>, IdentityError> {
        let path = home.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let config = IamConfig::load(&path, default_account)?;
        let sessions = SessionStore::open(&home.join("trainyard.db"))?;
        tracing::info!(
            path = %path.display(),
            users = config.users().len(),
            roles = config.roles().len(),
            "identity configuration loaded"
        );
        Ok(Some(Identity { config, sessions }))
    }

    /// An identity from parts (tests, or a configuration from elsewhere).
    pub fn new(config: IamConfig, sessions: SessionStore) -> Self {
        Identity { config, sessions }
    }

    /// The configuration.
    pub fn config(&self) -> &IamConfig {
        &self.config
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        self.config.account_id()
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionStore {
        &self.sessions
    }

    /// The secret of an access key id, from the users' keys or the session table.
    pub fn signing_key(&self, access_key_id: &str) -> Result<SigningKey, CredentialError> {
        if let Some((user, key)) = self.config.access_key_location(access_key_id) {
            return Ok(SigningKey {
                access_key_id: access_key_id.to_owned(),
                secret: self.config.users()[user].access_keys[key].secret.clone(),
                owner: KeyOwner::User(user),
            });
        }
        match self.sessions.get(access_key_id)? {
            Some(session) => Ok(SigningKey {
                access_key_id: access_key_id.to_owned(),
                secret: session.secret_access_key.clone(),
                owner: KeyOwner::Session(Box::new(session)),
            }),
            None => Err(CredentialError::UnknownAccessKey {
                access_key_id: access_key_id.to_owned(),
            }),
        }
    }

    /// The principal behind a key whose signature has been verified: checks the session
    /// token (required for temporary keys, refused for long-term ones) and the expiry.
    pub fn principal(
        &self,
        key: &SigningKey,
        session_token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Principal, CredentialError> {
        let invalid = || CredentialError::InvalidToken {
            access_key_id: key.access_key_id.clone(),
        };
        match &key.owner {
            KeyOwner::User(index) => {
                if session_token.is_some() {
                    return Err(invalid());
                }
                let user = self.config.users().get(*index).ok_or_else(invalid)?;
                Ok(Principal {
                    arn: user.arn.clone(),
                    user_id: user.user_id.clone(),
                    account: self.account_id().to_owned(),
                    kind: PrincipalKind::User {
                        name: user.name.clone(),
                    },
                    policies: user.policies.iter().map(|p| p.document.clone()).collect(),
                    session_policy: None,
                    principal_tags: user.tags.clone(),
                    session_tags: Vec::new(),
                    transitive_tag_keys: Vec::new(),
                    source_identity: None,
                    expiration: None,
                })
            }
            KeyOwner::Session(session) => {
                if !session_token.is_some_and(|t| session.token_matches(t)) {
                    return Err(invalid());
                }
                if session.is_expired(now) {
                    return Err(CredentialError::Expired {
                        access_key_id: key.access_key_id.clone(),
                        expiration: session.expiration,
                    });
                }
                self.session_principal(session)
            }
        }
    }

    /// Resolves an access key and session token without a signature check. For callers
    /// that authenticated the request some other way; the API verifies signatures first
    /// (`authz::sigv4`).
    pub fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Principal, CredentialError> {
        let key = self.signing_key(access_key_id)?;
        self.principal(&key, session_token, now)
    }

    fn session_principal(&self, session: &StoredSession) -> Result<Principal, CredentialError> {
        let role = self.config.role_by_arn(&session.role_arn).ok_or_else(|| {
            CredentialError::RoleRemoved {
                access_key_id: session.access_key_id.clone(),
                role_arn: session.role_arn.clone(),
            }
        })?;
        let session_policy = session
            .session_policy
            .as_deref()
            .map(|text| {
                Policy::parse(text)
                    .map(Arc::new)
                    .map_err(|e| CredentialError::Corrupt {
                        access_key_id: session.access_key_id.clone(),
                        message: format!("stored session policy: {e}"),
                    })
            })
            .transpose()?;
        Ok(Principal {
            arn: assume::session_arn(self.account_id(), &role.name, &session.role_session_name),
            user_id: format!("{}:{}", role.role_id, session.role_session_name),
            account: self.account_id().to_owned(),
            kind: PrincipalKind::AssumedRole {
                role_arn: role.arn.clone(),
                role_name: role.name.clone(),
                session_name: session.role_session_name.clone(),
                access_key_id: session.access_key_id.clone(),
                chained: session.chained,
            },
            policies: role.policies.iter().map(|p| p.document.clone()).collect(),
            session_policy,
            principal_tags: merge_tags(&role.tags, &session.tags),
            session_tags: session.tags.clone(),
            transitive_tag_keys: session.transitive_tag_keys.clone(),
            source_identity: session.source_identity.clone(),
            expiration: Some(session.expiration),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A small installation shared by the tests of this module, `api::sts` and `authz`.

    use super::*;

    /// Tenant data policy of the shared execution role.
    pub const TENANT_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"TenantObjects","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*"},{"Sid":"TenantList","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::shared-bucket","Condition":{"StringLike":{"s3:prefix":["${aws:PrincipalTag/tenant-id}/*","${aws:PrincipalTag/tenant-id}/"]}}}]}"#;

    /// Runs a Python script (botocore signing or parsing for the SigV4 and STS tests) with
    /// `input` as JSON on its standard input; returns the JSON it prints.
    pub fn python_json(script: &str, input: &serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is needed to check against botocore");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the botocore script failed (is botocore installed?): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Access key of user `alice` (may assume `creator` with tenant tags).
    pub const ALICE_KEY: &str = "AKIAALICE00000000001";
    /// Secret of `alice`.
    pub const ALICE_SECRET: &str = "alice/secret+KEY0123456789abcdefghijklmn";
    /// Access key of user `mallory` (no permissions).
    pub const MALLORY_KEY: &str = "AKIAMALLORY000000001";
    /// Secret of `mallory`.
    pub const MALLORY_SECRET: &str = "mallory-secret";

    /// The configuration text.
    pub fn config_text() -> String {
        format!(
            r#"{{
  "AccountId": "111122223333",
  "Users": [
    {{"UserName": "alice",
      "AccessKeys": [{{"AccessKeyId": "{ALICE_KEY}", "SecretAccessKey": "{ALICE_SECRET}"}}],
      "Tags": [{{"Key": "team", "Value": "ml"}}],
      "Policies": [{{"PolicyName": "assume", "PolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"], "Resource": "*"}},
        {{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::111122223333:role/forbidden"}}]}}}}]}},
    {{"UserName": "mallory",
      "AccessKeys": [{{"AccessKeyId": "{MALLORY_KEY}", "SecretAccessKey": "{MALLORY_SECRET}"}}]}}
  ],
  "Roles": [
    {{"RoleName": "creator", "MaxSessionDuration": 43200,
      "Tags": [{{"Key": "tenant-id", "Value": "role-default"}}, {{"Key": "kind", "Value": "creator"}}],
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:user/alice"}},
          "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]}},
        {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:user/alice"}},
          "Action": "sts:TagSession",
          "Condition": {{"StringLike": {{"aws:RequestTag/tenant-id": "?*"}},
                        "ForAllValues:StringEquals": {{"aws:TagKeys": ["tenant-id", "project"]}}}}}}]}},
      "Policies": [{{"PolicyName": "create", "PolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Action": ["sagemaker:*", "iam:PassRole", "sts:AssumeRole", "sts:TagSession"], "Resource": "*"}}]}}}}]}},
    {{"RoleName": "chained", "MaxSessionDuration": 43200,
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:role/creator"}},
          "Action": ["sts:AssumeRole", "sts:TagSession"]}}]}}}},
    {{"RoleName": "account-trust",
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"AWS": "111122223333"}}, "Action": "sts:AssumeRole"}}]}}}},
    {{"RoleName": "forbidden",
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:user/alice"}}, "Action": "sts:AssumeRole"}}]}}}},
    {{"RoleName": "exec",
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"Service": "sagemaker.amazonaws.com"}},
          "Action": ["sts:AssumeRole", "sts:TagSession"]}}]}},
      "Policies": [{{"PolicyName": "tenant-data", "PolicyDocument": {TENANT_POLICY}}}]}},
    {{"RoleName": "exec-untagged",
      "AssumeRolePolicyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": "Allow", "Principal": {{"Service": "sagemaker.amazonaws.com"}}, "Action": "sts:AssumeRole"}}]}},
      "Policies": [{{"PolicyName": "tenant-data", "PolicyDocument": {TENANT_POLICY}}}]}}
  ]
}}"#
        )
    }

    /// The installation, with sessions in memory.
    pub fn identity() -> Identity {
        let config =
            IamConfig::parse(&config_text(), Path::new("/test/iam.json"), "000000000000").unwrap();
        Identity::new(config, SessionStore::in_memory().unwrap())
    }

    /// A fixed "now" for tests.
    pub fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn load_returns_none_without_a_config_file_and_loads_one_that_exists() {
        let home = tempfile::tempdir().unwrap();
        assert!(
            Identity::load(home.path(), "000000000000")
                .unwrap()
                .is_none()
        );
        std::fs::write(home.path().join(CONFIG_FILE), config_text()).unwrap();
        let identity = Identity::load(home.path(), "000000000000")
            .unwrap()
            .unwrap();
        assert_eq!(identity.account_id(), "111122223333");
        assert!(home.path().join("trainyard.db").exists());
        let shown = format!("{identity:?}");
        assert!(!shown.contains(ALICE_SECRET) && !shown.contains(MALLORY_SECRET));
    }

    #[test]
    fn user_keys_resolve_to_users_with_their_tags() {
        let identity = identity();
        let alice = identity.resolve(ALICE_KEY, None, now()).unwrap();
        assert_eq!(alice.arn(), "arn:aws:iam::111122223333:user/alice");
        assert_eq!(alice.principal_tags(), &[SessionTag::new("team", "ml")]);
        assert!(alice.session_tags().is_empty());
        assert!(alice.expiration().is_none());
        assert!(matches!(
            identity.resolve(ALICE_KEY, Some("token"), now()),
            Err(CredentialError::InvalidToken { .. })
        ));
        assert!(matches!(
            identity.resolve("AKIANOBODY0000000001", None, now()),
            Err(CredentialError::UnknownAccessKey { .. })
        ));
    }
}
