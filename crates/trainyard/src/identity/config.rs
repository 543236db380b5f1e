//! The users and roles of one installation, read from `$TRAINYARD_HOME/iam.json`.
//!
//! trainyard has no IAM API: who may call it, and which roles exist, is configuration that
//! the operator writes once. It is read and checked completely at start-up, so a typo in a
//! policy is an error with its location (`Roles[1].Policies[0].PolicyDocument.Statement[2]
//! .Effect: ...`) before any tenant is served, never a silent implicit deny later. The
//! format is described with an example in the [`identity`](crate::identity) module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use trainyard_iam::Policy;

use super::IdentityError;
use super::secret::{Secret, stable_unique_id};
use crate::authz::principal::{SessionTag, validate_tags};

/// The default and bounds of a role's `MaxSessionDuration`, in seconds (IAM's).
pub const DEFAULT_MAX_SESSION_DURATION: u32 = 3600;
const MAX_SESSION_DURATION_RANGE: std::ops::RangeInclusive<u32> = 3600..=43200;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_+=,.@-]{1,64}$").expect("the IAM name pattern is a valid regex")
});
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^/(?:[\x21-\x7E]+/)?$").expect("the IAM path pattern is a valid regex")
});
static ACCESS_KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_]{16,128}$").expect("the access key id pattern is a valid regex")
});

/// An identity policy attached to a user or role, with its name.
#[derive(Debug, Clone)]
pub struct NamedPolicy {
    /// `PolicyName`.
    pub name: String,
    /// The parsed document.
    pub document: Arc<Policy>,
}

/// Long-term credentials of a user.
#[derive(Debug, Clone)]
pub struct AccessKey {
    /// `AccessKeyId`.
    pub id: String,
    /// `SecretAccessKey` (redacted in `Debug`).
    pub secret: Secret,
}

/// An IAM user: a person or program with long-term access keys.
#[derive(Debug, Clone)]
pub struct User {
    /// `UserName`.
    pub name: String,
    /// `arn:aws:iam::<account>:user<path><name>`.
    pub arn: String,
    /// Stable unique id (`AIDA…`), as `GetCallerIdentity` reports it.
    pub user_id: String,
    /// Access keys.
    pub access_keys: Vec<AccessKey>,
    /// Identity policies.
    pub policies: Vec<NamedPolicy>,
    /// IAM tags, visible as `aws:PrincipalTag/<key>` when the user calls.
    pub tags: Vec<SessionTag>,
}

/// An IAM role: permissions that principals trusted by it obtain with `sts:AssumeRole`.
#[derive(Debug, Clone)]
pub struct Role {
    /// `RoleName`.
    pub name: String,
    /// `arn:aws:iam::<account>:role<path><name>`.
    pub arn: String,
    /// Stable unique id (`AROA…`), the first half of an assumed role's `AssumedRoleId`.
    pub role_id: String,
    /// `AssumeRolePolicyDocument`: who may assume the role (a resource policy).
    pub trust_policy: Arc<Policy>,
    /// Permission policies of the role's sessions.
    pub policies: Vec<NamedPolicy>,
    /// `MaxSessionDuration` in seconds.
    pub max_session_duration: u32,
    /// IAM tags of the role; session tags with the same key override them.
    pub tags: Vec<SessionTag>,
}

/// The parsed and checked `iam.json`.
#[derive(Debug, Clone)]
pub struct IamConfig {
    account_id: String,
    source: PathBuf,
    users: Vec<User>,
    roles: Vec<Role>,
    // Access key id → (user index, key index).
    keys: HashMap<String, (usize, usize)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawConfig {
    account_id: Option<String>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    roles: Vec<RawRole>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawUser {
    user_name: String,
    #[serde(default = "root_path")]
    path: String,
    #[serde(default)]
    access_keys: Vec<RawAccessKey>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    tags: Vec<SessionTag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawAccessKey {
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawPolicy {
    policy_name: String,
    policy_document: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawRole {
    role_name: String,
    #[serde(default = "root_path")]
    path: String,
    #[serde(default)]
    description: Option<String>,
    assume_role_policy_document: Value,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    max_session_duration: Option<u32>,
    #[serde(default)]
    tags: Vec<SessionTag>,
}

fn root_path() -> String {
    "/".to_owned()
}

impl IamConfig {
    /// Reads and checks `path`; `default_account` is used when the file has no `AccountId`.
    pub fn load(path: &Path, default_account: &str) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, default_account)
    }

    /// Parses and checks the text of an `iam.json`; `source` names it in errors.
    pub fn parse(text: &str, source: &Path, default_account: &str) -> Result<Self, IdentityError> {
        let invalid = |element: String, message: String| IdentityError::Invalid {
            path: source.to_path_buf(),
            element,
            message,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let element = e.path().to_string();
            invalid(element, e.into_inner().to_string())
        })?;
        let account_id = raw.account_id.unwrap_or_else(|| default_account.to_owned());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "AccountId".into(),
                format!("must be 12 digits, got {account_id:?}"),
            ));
        }
        let mut config = IamConfig {
            account_id,
            source: source.to_path_buf(),
            users: Vec::new(),
            roles: Vec::new(),
            keys: HashMap::new(),
        };
        let mut user_names = HashMap::new();
        for (i, user) in raw.users.into_iter().enumerate() {
            let at = format!("Users[{i}]");
            check_name(&user.user_name, &format!("{at}.UserName"), &invalid)?;
            check_path(&user.path, &format!("{at}.Path"), &invalid)?;
            if let Some(other) = user_names.insert(user.user_name.to_lowercase(), i) {
                return Err(invalid(
                    format!("{at}.UserName"),
                    format!(
                        "user {:?} is already defined at Users[{other}] (names are case-insensitive)",
                        user.user_name
                    ),
                ));
            }
            validate_tags(&user.tags).map_err(|m| invalid(format!("{at}.Tags"), m))?;
            let mut access_keys = Vec::new();
            for (k, key) in user.access_keys.into_iter().enumerate() {
                let kat = format!("{at}.AccessKeys[{k}]");
                if !ACCESS_KEY_ID.is_match(&key.access_key_id) {
                    return Err(invalid(
                        format!("{kat}.AccessKeyId"),
                        format!(
                            "{:?} must be 16 to 128 characters of [A-Za-z0-9_]",
                            key.access_key_id
                        ),
                    ));
                }
                if key.access_key_id.starts_with("ASIA") {
                    return Err(invalid(
                        format!("{kat}.AccessKeyId"),
                        format!(
                            "{:?} starts with ASIA, which is reserved for temporary credentials",
                            key.access_key_id
                        ),
                    ));
                }
                if key.secret_access_key.is_empty() {
                    return Err(invalid(
                        format!("{kat}.SecretAccessKey"),
                        "must not be empty".into(),
                    ));
                }
                if config
                    .keys
                    .insert(key.access_key_id.clone(), (config.users.len(), k))
                    .is_some()
                {
                    return Err(invalid(
                        format!("{kat}.AccessKeyId"),
                        format!("{:?} is used twice", key.access_key_id),
                    ));
                }
                access_keys.push(AccessKey {
                    id: key.access_key_id,
                    secret: Secret::new(key.secret_access_key),
                });
            }
            let arn = format!(
                "arn:aws:iam::{}:user{}{}",
                config.account_id, user.path, user.user_name
            );
            config.users.push(User {
                user_id: stable_unique_id("AIDA", &arn),
                arn,
                name: user.user_name,
                access_keys,
                policies: parse_policies(user.policies, &at, source)?,
                tags: user.tags,
            });
        }
        let mut role_names = HashMap::new();
        for (i, role) in raw.roles.into_iter().enumerate() {
            let at = format!("Roles[{i}]");
            check_name(&role.role_name, &format!("{at}.RoleName"), &invalid)?;
            check_path(&role.path, &format!("{at}.Path"), &invalid)?;
            if let Some(other) = role_names.insert(role.role_name.to_lowercase(), i) {
                return Err(invalid(
                    format!("{at}.RoleName"),
                    format!(
                        "role {:?} is already defined at Roles[{other}] (names are case-insensitive)",
                        role.role_name
                    ),
                ));
            }
            if role.description.as_ref().is_some_and(|d| d.len() > 1000) {
                return Err(invalid(
                    format!("{at}.Description"),
                    "must be at most 1000 characters".into(),
                ));
            }
            let max_session_duration = role
                .max_session_duration
                .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
            if !MAX_SESSION_DURATION_RANGE.contains(&max_session_duration) {
                return Err(invalid(
                    format!("{at}.MaxSessionDuration"),
                    format!("{max_session_duration} is not between 3600 and 43200 seconds"),
                ));
            }
            validate_tags(&role.tags).map_err(|m| invalid(format!("{at}.Tags"), m))?;
            let trust_policy = parse_document(
                &role.assume_role_policy_document,
                &format!("{at}.AssumeRolePolicyDocument"),
                source,
            )?;
            let arn = format!(
                "arn:aws:iam::{}:role{}{}",
                config.account_id, role.path, role.role_name
            );
            config.roles.push(Role {
                role_id: stable_unique_id("AROA", &arn),
                arn,
                name: role.role_name,
                trust_policy,
                policies: parse_policies(role.policies, &at, source)?,
                max_session_duration,
                tags: role.tags,
            });
        }
        Ok(config)
    }

    /// The account id in every ARN.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The file this configuration was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// All users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// All roles.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The user owning a long-term access key, and the key.
    pub fn user_by_access_key(&self, access_key_id: &str) -> Option<(&User, &AccessKey)> {
        let (u, k) = *self.keys.get(access_key_id)?;
        let user = &self.users[u];
        Some((user, &user.access_keys[k]))
    }

    /// Where a long-term access key is: (index into [`IamConfig::users`], index into that
    /// user's keys).
    pub fn access_key_location(&self, access_key_id: &str) -> Option<(usize, usize)> {
        self.keys.get(access_key_id).copied()
    }

    /// The role with exactly this ARN.
    pub fn role_by_arn(&self, arn: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.arn == arn)
    }

    /// The role with this name (case-insensitive, as IAM names are).
    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }
}

fn check_name(
    name: &str,
    element: &str,
    invalid: &impl Fn(String, String) -> IdentityError,
) -> Result<(), IdentityError> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(invalid(
            element.to_owned(),
            format!("{name:?} must be 1 to 64 characters of [A-Za-z0-9_+=,.@-]"),
        ))
    }
}

fn check_path(
    path: &str,
    element: &str,
    invalid: &impl Fn(String, String) -> IdentityError,
) -> Result<(), IdentityError> {
    if path.len() <= 512 && PATH.is_match(path) {
        Ok(())
    } else {
        Err(invalid(
            element.to_owned(),
            format!("{path:?} must be `/` or start and end with `/` (at most 512 characters)"),
        ))
    }
}

fn parse_policies(
    raw: Vec<RawPolicy>,
    owner: &str,
    source: &Path,
) -> Result<Vec<NamedPolicy>, IdentityError> {
    let mut names = HashMap::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, policy)| {
            let at = format!("{owner}.Policies[{i}]");
            if !NAME.is_match(&policy.policy_name) || policy.policy_name.len() > 128 {
                return Err(IdentityError::Invalid {
                    path: source.to_path_buf(),
                    element: format!("{at}.PolicyName"),
                    message: format!(
                        "{:?} must be 1 to 128 characters of [A-Za-z0-9_+=,.@-]",
                        policy.policy_name
                    ),
                });
            }
            if let Some(other) = names.insert(policy.policy_name.clone(), i) {
                return Err(IdentityError::Invalid {
                    path: source.to_path_buf(),
                    element: format!("{at}.PolicyName"),
                    message: format!(
                        "policy {:?} is already attached at {owner}.Policies[{other}]",
                        policy.policy_name
                    ),
                });
            }
            Ok(NamedPolicy {
                document: parse_document(
                    &policy.policy_document,
                    &format!("{at}.PolicyDocument"),
                    source,
                )?,
                name: policy.policy_name,
            })
        })
        .collect()
}

/// A policy written inline as a JSON object, or as a string holding the JSON (as the IAM
/// API returns documents).
fn parse_document(
    value: &Value,
    element: &str,
    source: &Path,
) -> Result<Arc<Policy>, IdentityError> {
    let parsed = match value {
        Value::String(text) => Policy::parse(text),
        other => Policy::from_json_value(other),
    };
    parsed.map(Arc::new).map_err(|error| {
        let (element, reason) = super::policy_error_location(element, &error);
        IdentityError::Policy {
            path: source.to_path_buf(),
            element,
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "AccountId": "111122223333",
      "Users": [{
        "UserName": "alice",
        "AccessKeys": [{"AccessKeyId": "AKIAALICE00000000001", "SecretAccessKey": "alice-secret"}],
        "Tags": [{"Key": "team", "Value": "ml"}],
        "Policies": [{"PolicyName": "assume", "PolicyDocument": {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}}]
      }],
      "Roles": [{
        "RoleName": "exec", "Path": "/service/",
        "AssumeRolePolicyDocument": "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"sagemaker.amazonaws.com\"},\"Action\":[\"sts:AssumeRole\",\"sts:TagSession\"]}}",
        "MaxSessionDuration": 7200
      }]
    }"#;

    fn parse(text: &str) -> Result<IamConfig, IdentityError> {
        IamConfig::parse(text, Path::new("/h/iam.json"), "000000000000")
    }

    #[test]
    fn parses_users_roles_and_derives_arns() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.account_id(), "111122223333");
        let (user, key) = config.user_by_access_key("AKIAALICE00000000001").unwrap();
        assert_eq!(user.arn, "arn:aws:iam::111122223333:user/alice");
        assert_eq!(key.secret.expose(), "alice-secret");
        assert!(user.user_id.starts_with("AIDA"));
        let role = config
            .role_by_arn("arn:aws:iam::111122223333:role/service/exec")
            .unwrap();
        assert_eq!(role.max_session_duration, 7200);
        assert!(
            config
                .role_by_arn("arn:aws:iam::111122223333:role/exec")
                .is_none()
        );
        assert_eq!(config.role_by_name("EXEC").unwrap().name, "exec");
    }

    #[test]
    fn debug_output_has_no_secret() {
        let config = parse(EXAMPLE).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("alice-secret"), "{shown}");
        assert!(shown.contains("AKIAALICE00000000001"));
    }

    #[test]
    fn malformed_policy_is_refused_with_its_location() {
        let text = EXAMPLE.replace(r#""Effect": "Allow""#, r#""Effect": "Alow""#);
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("Users[0].Policies[0].PolicyDocument.Statement[0].Effect"),
            "{error}"
        );
        assert!(error.contains("/h/iam.json"), "{error}");
        assert!(error.contains("Alow"), "{error}");
    }

    #[test]
    fn malformed_trust_policy_string_is_refused() {
        let text = EXAMPLE.replace(r#"\"Action\":[\"sts"#, r#"\"Actio\":[\"sts"#);
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("Roles[0].AssumeRolePolicyDocument.Statement"),
            "{error}"
        );
    }

    #[test]
    fn structural_errors_name_the_element() {
        let cases: &[(&str, &str)] = &[
            (r#"{"Users":[{"UserName":"a","Bogus":1}]}"#, "Users[0]"),
            (r#"{"AccountId":"12"}"#, "AccountId"),
            (r#"{"Users":[{"UserName":"a b"}]}"#, "Users[0].UserName"),
            (
                r#"{"Users":[{"UserName":"a","AccessKeys":[{"AccessKeyId":"ASIAAAAAAAAAAAAAAAAA","SecretAccessKey":"s"}]}]}"#,
                "Users[0].AccessKeys[0].AccessKeyId",
            ),
            (
                r#"{"Users":[{"UserName":"a","AccessKeys":[{"AccessKeyId":"AKIAAAAAAAAAAAAAAAAA","SecretAccessKey":"s"}]},
                             {"UserName":"b","AccessKeys":[{"AccessKeyId":"AKIAAAAAAAAAAAAAAAAA","SecretAccessKey":"t"}]}]}"#,
                "Users[1].AccessKeys[0].AccessKeyId",
            ),
            (
                r#"{"Users":[{"UserName":"a"},{"UserName":"A"}]}"#,
                "Users[1].UserName",
            ),
            (
                r#"{"Roles":[{"RoleName":"r","AssumeRolePolicyDocument":{"Statement":[]},"MaxSessionDuration":60}]}"#,
                "Roles[0].MaxSessionDuration",
            ),
            (
                r#"{"Roles":[{"RoleName":"r","Path":"nope","AssumeRolePolicyDocument":{}}]}"#,
                "Roles[0].Path",
            ),
            (
                r#"{"Users":[{"UserName":"a","Tags":[{"Key":"aws:x","Value":"v"}]}]}"#,
                "Users[0].Tags",
            ),
        ];
        for (text, element) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(element), "{text}: {error}");
        }
    }
}
