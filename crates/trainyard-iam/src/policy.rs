//! The IAM policy document model.
//!
//! Policies arrive as JSON written by people (tenants, operators), so loading is where
//! mistakes must surface: a typo in a condition operator or a list where a string
//! belongs would otherwise turn into a silent "deny everything" or, worse, "allow
//! everything". [`Policy::parse`] therefore walks the JSON grammar by hand (see
//! `policy/parse.rs`) instead of deriving serde impls: it refuses unknown and duplicate
//! keys, and every error names the offending element by path (see
//! [`ElementPath`](crate::ElementPath)).
//!
//! Loading also compiles: action patterns are lower-cased into wildcard tokens,
//! resources and condition values become [`Template`]s (with `${…}` recognised only in
//! `2012-10-17` policies), and typed condition values (numbers, dates, CIDRs, base64)
//! are parsed. Evaluation then only substitutes variables and compares.
//!
//! The model keeps the document's shape (single value or list) so that
//! [`Policy::to_json_value`] writes back what was read, modulo formatting.

mod json;
mod parse;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use self::json::Json;

use crate::arn::Arn;
use crate::condition::Condition;
use crate::context::{Context, Request};
use crate::error::PolicyError;
use crate::eval::{Issue, PolicySet, Response, Truth};
use crate::pattern::{Token, matches_tokens, tokenize};
use crate::variables::Template;

/// The policy language version (`Version` element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2008-10-17`: the original language, without policy variables; `${…}` is text.
    V2008_10_17,
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
}

impl Version {
    /// The version string as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2008_10_17 => "2008-10-17",
            Self::V2012_10_17 => "2012-10-17",
        }
    }

    /// Whether `${…}` policy variables are substituted in this version.
    pub fn supports_variables(self) -> bool {
        self == Self::V2012_10_17
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON element that may be written as a single value or as a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany<T> {
    /// Written as a single value.
    One(T),
    /// Written as a list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, whichever way they were written.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }

    /// Iterates over the values.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    fn to_json(&self, f: impl Fn(&T) -> Json) -> Json {
        match self {
            Self::One(value) => f(value),
            Self::Many(values) => Json::Array(values.iter().map(f).collect()),
        }
    }
}

/// Whether a statement allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// The statement grants access.
    Allow,
    /// The statement denies access, overriding any allow.
    Deny,
}

impl Effect {
    /// `Allow` or `Deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed and compiled IAM policy document.
///
/// ```
/// use trainyard_iam::{Policy, Version};
/// let policy = Policy::parse(r#"{"Version":"2012-10-17","Statement":
///     {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#).unwrap();
/// assert_eq!(policy.version(), Version::V2012_10_17);
/// assert_eq!(policy.statements().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: Version,
    version_written: bool,
    id: Option<String>,
    statements: OneOrMany<Statement>,
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let json: Json = serde_json::from_str(text).map_err(|source| PolicyError::Json {
            line: source.line(),
            column: source.column(),
            source,
        })?;
        parse::policy(&json)
    }

    /// Validates a policy document that is already a JSON value.
    pub fn from_json_value(value: &Value) -> Result<Self, PolicyError> {
        parse::policy(&Json::from_value(value))
    }

    /// Writes the policy back as JSON, keeping single values and lists as they were.
    /// (Serialising the policy with serde also keeps the document's key order.)
    pub fn to_json_value(&self) -> Value {
        self.to_json().to_value()
    }

    fn to_json(&self) -> Json {
        let mut entries = Vec::new();
        if self.version_written {
            entries.push(("Version".to_owned(), text(self.version.as_str())));
        }
        if let Some(id) = &self.id {
            entries.push(("Id".to_owned(), text(id)));
        }
        entries.push((
            "Statement".to_owned(),
            self.statements.to_json(Statement::to_json),
        ));
        Json::Object(entries)
    }

    /// The language version; `2008-10-17` when the document has no `Version`.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The optional `Id` element.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements in document order.
    pub fn statements(&self) -> &[Statement] {
        self.statements.as_slice()
    }

    /// Evaluates `request` against this policy alone, as an identity policy.
    pub fn evaluate(&self, request: &Request) -> Response {
        PolicySet::new().identity(self).evaluate(request)
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(deserializer)?;
        parse::policy(&json).map_err(serde::de::Error::custom)
    }
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    principal: Option<PrincipalClause>,
    action: ActionClause,
    resource: Option<ResourceClause>,
    conditions: Vec<Condition>,
    // Whether a `Condition` element was written at all (it may be empty).
    condition_written: bool,
}

impl Statement {
    /// The `Sid`, if the statement has one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `Allow` or `Deny`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The `Principal` or `NotPrincipal` element, if present.
    pub fn principal(&self) -> Option<&PrincipalClause> {
        self.principal.as_ref()
    }

    /// The `Action` or `NotAction` element.
    pub fn action(&self) -> &ActionClause {
        &self.action
    }

    /// The `Resource` or `NotResource` element. Absent in trust policies, where the
    /// statement then applies to any resource.
    pub fn resource(&self) -> Option<&ResourceClause> {
        self.resource.as_ref()
    }

    /// The conditions, one per (operator, key) pair, all of which must hold.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn to_json(&self) -> Json {
        let mut entries = Vec::new();
        let mut push = |key: &str, value: Json| entries.push((key.to_owned(), value));
        if let Some(sid) = &self.sid {
            push("Sid", text(sid));
        }
        push("Effect", text(self.effect.as_str()));
        if let Some(principal) = &self.principal {
            let key = if principal.negated {
                "NotPrincipal"
            } else {
                "Principal"
            };
            push(key, principal.principal.to_json());
        }
        let key = if self.action.negated {
            "NotAction"
        } else {
            "Action"
        };
        push(key, self.action.patterns.to_json(|p| text(&p.raw)));
        if let Some(resource) = &self.resource {
            let key = if resource.negated {
                "NotResource"
            } else {
                "Resource"
            };
            push(key, resource.patterns.to_json(|p| text(&p.raw)));
        }
        if self.condition_written {
            let mut operators: Vec<(String, Json)> = Vec::new();
            for condition in &self.conditions {
                let name = condition.operator().to_string();
                let position = match operators.iter().position(|(op, _)| *op == name) {
                    Some(position) => position,
                    None => {
                        operators.push((name, Json::Object(Vec::new())));
                        operators.len() - 1
                    }
                };
                let values: Vec<Json> = condition.values().iter().map(|v| text(v.raw())).collect();
                let values = match (condition.is_list(), values.as_slice()) {
                    (false, [one]) => one.clone(),
                    _ => Json::Array(values),
                };
                if let Some((_, Json::Object(keys))) = operators.get_mut(position) {
                    keys.push((condition.key().to_owned(), values));
                }
            }
            push("Condition", Json::Object(operators));
        }
        Json::Object(entries)
    }

    /// How the statement's `Principal` or `NotPrincipal` admits the caller; a statement
    /// without either admits it directly (identity and session policies name no principal).
    pub(crate) fn principal_match(&self, request: &Request) -> PrincipalMatch {
        self.principal
            .as_ref()
            .map_or(PrincipalMatch::Direct, |clause| clause.admits(request))
    }

    /// Whether the statement applies to `request`: action, resource and every condition,
    /// AND-ed in three-valued logic and stopping at the first `False`. The principal is
    /// not checked here but by [`Statement::principal_match`], because what a missing or
    /// account-wide principal means depends on the kind of policy.
    pub(crate) fn applies(&self, request: &Request, issues: &mut dyn FnMut(Issue<'_>)) -> Truth {
        if !self.action.matches_lowercase(request.action_lowercase()) {
            return Truth::False;
        }
        let resource = self.resource.as_ref().map_or(Truth::True, |resource| {
            resource.evaluate(request.resource(), request.context(), issues)
        });
        if resource == Truth::False {
            return Truth::False;
        }
        let conditions = Truth::all(
            self.conditions
                .iter()
                .map(|condition| condition.evaluate(request.context(), &mut *issues)),
        );
        resource.min(conditions)
    }
}

/// The kind of principal named in a `Principal` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalType {
    /// `AWS`: account ids, account root ARNs, user and role ARNs, or `*`.
    Aws,
    /// `Service`: a service principal such as `sagemaker.amazonaws.com`.
    Service,
    /// `Federated`: an identity provider. Kept but never matched by this evaluator.
    Federated,
    /// `CanonicalUser`: an S3 canonical user id. Kept but never matched.
    CanonicalUser,
}

impl PrincipalType {
    const ALL: [Self; 4] = [
        Self::Aws,
        Self::Service,
        Self::Federated,
        Self::CanonicalUser,
    ];

    /// The key as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "AWS",
            Self::Service => "Service",
            Self::Federated => "Federated",
            Self::CanonicalUser => "CanonicalUser",
        }
    }
}

/// The value of a `Principal` or `NotPrincipal` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"`: everyone, including anonymous callers.
    Any,
    /// A map from principal type to principals, in document order.
    Specific(Vec<(PrincipalType, OneOrMany<String>)>),
}

impl Principal {
    fn to_json(&self) -> Json {
        match self {
            Self::Any => text("*"),
            Self::Specific(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(kind, values)| (kind.as_str().to_owned(), values.to_json(|v| text(v))))
                    .collect(),
            ),
        }
    }

    /// Whether the request's principal is one of those named.
    ///
    /// `AWS` entries match `*`, an account id or account root ARN (any principal of that
    /// account), or the principal's ARN exactly; a role ARN also matches sessions of
    /// that role (`arn:…:sts::ACCOUNT:assumed-role/ROLE/…`). `Service` entries match
    /// the request's service principal, ignoring ASCII case.
    pub fn matches(&self, request: &Request) -> bool {
        self.admits(request) != PrincipalMatch::None
    }

    /// How the request's principal is named: directly (`*`, its own ARN, its role, its
    /// service) or only through its account (an account id or `arn:…:iam::ACCOUNT:root`).
    /// A direct match wins when both occur.
    pub fn admits(&self, request: &Request) -> PrincipalMatch {
        match self {
            Self::Any => PrincipalMatch::Direct,
            Self::Specific(entries) => entries
                .iter()
                .flat_map(|(kind, values)| values.iter().map(move |value| (*kind, value)))
                .map(|(kind, value)| match kind {
                    PrincipalType::Aws if value == "*" => PrincipalMatch::Direct,
                    PrincipalType::Aws => request
                        .principal_arn()
                        .map_or(PrincipalMatch::None, |arn| aws_principal_match(value, arn)),
                    PrincipalType::Service => {
                        if request
                            .principal_service()
                            .is_some_and(|service| service.eq_ignore_ascii_case(value))
                        {
                            PrincipalMatch::Direct
                        } else {
                            PrincipalMatch::None
                        }
                    }
                    PrincipalType::Federated | PrincipalType::CanonicalUser => PrincipalMatch::None,
                })
                .max()
                .unwrap_or(PrincipalMatch::None),
        }
    }
}

/// How a `Principal` element names the caller.
///
/// AWS treats an account principal (`"123456789012"` or `"arn:aws:iam::123456789012:root"`)
/// in a resource policy as a delegation: the resource trusts the account, and the
/// account's identity policies decide which of its principals may act
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html>,
/// "AWS account principals"). A statement that names the caller itself grants directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalMatch {
    /// The caller is not named.
    None,
    /// Only the caller's account is named: a resource-policy `Allow` delegates to the
    /// caller's identity policies and grants nothing by itself.
    Account,
    /// The caller is named: its ARN, its role, its service, or `*`.
    Direct,
}

fn text(value: &str) -> Json {
    Json::String(value.to_owned())
}

fn aws_principal_match(named: &str, caller: &Arn) -> PrincipalMatch {
    let matched = |hit: bool, kind: PrincipalMatch| {
        if hit { kind } else { PrincipalMatch::None }
    };
    if named.len() == 12 && named.bytes().all(|b| b.is_ascii_digit()) {
        return matched(caller.account() == named, PrincipalMatch::Account);
    }
    let Ok(named) = Arn::parse(named) else {
        return PrincipalMatch::None;
    };
    if named.partition() != caller.partition() || named.account() != caller.account() {
        return PrincipalMatch::None;
    }
    if named.service() == "iam" && named.resource() == "root" {
        return PrincipalMatch::Account;
    }
    let direct = named == *caller
        || matches!(
            (named.role_name(), caller.assumed_role_name()),
            (Some(role), Some(session_role)) if role == session_role
        );
    matched(direct, PrincipalMatch::Direct)
}

/// `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalClause {
    negated: bool,
    principal: Principal,
}

impl PrincipalClause {
    /// Whether this is `NotPrincipal`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// The principals named.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// How the clause admits the caller. `NotPrincipal` admits everyone it does not
    /// name, directly.
    pub fn admits(&self, request: &Request) -> PrincipalMatch {
        match (self.negated, self.principal.admits(request)) {
            (false, admitted) => admitted,
            (true, PrincipalMatch::None) => PrincipalMatch::Direct,
            (true, _) => PrincipalMatch::None,
        }
    }
}

/// One entry of an `Action` or `NotAction` element, e.g. `s3:Get*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    raw: String,
    // INVARIANT: compiled from `raw` lower-cased; actions match case-insensitively.
    tokens: Vec<Token>,
}

impl ActionPattern {
    fn new(raw: &str) -> Self {
        Self {
            raw: raw.to_owned(),
            tokens: tokenize(&raw.to_lowercase()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// `Action` or `NotAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionClause {
    negated: bool,
    patterns: OneOrMany<ActionPattern>,
}

impl ActionClause {
    /// Whether this is `NotAction`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// The patterns; at least one.
    pub fn patterns(&self) -> &[ActionPattern] {
        self.patterns.as_slice()
    }

    /// Whether `action` is covered (case-insensitive), taking `NotAction` into account.
    pub fn matches(&self, action: &str) -> bool {
        self.matches_lowercase(&action.to_lowercase())
    }

    /// Like [`ActionClause::matches`] for an action that is already lower-case.
    pub(crate) fn matches_lowercase(&self, action: &str) -> bool {
        let listed = self
            .patterns
            .iter()
            .any(|pattern| matches_tokens(&pattern.tokens, action));
        listed != self.negated
    }
}

/// One entry of a `Resource` or `NotResource` element, e.g.
/// `arn:aws:s3:::bucket/${aws:PrincipalTag/tenant-id}/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    raw: String,
    template: Template,
    // Precompiled tokens when the template has no variables.
    tokens: Option<Vec<Token>>,
}

impl ResourcePattern {
    fn new(raw: &str, template: Template) -> Self {
        let tokens = if template.variables().next().is_none() {
            template.resolve_tokens(&Context::new(), true).ok()
        } else {
            None
        };
        Self {
            raw: raw.to_owned(),
            template,
            tokens,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The pattern with its variables located.
    pub fn template(&self) -> &Template {
        &self.template
    }
}

/// `Resource` or `NotResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceClause {
    negated: bool,
    patterns: OneOrMany<ResourcePattern>,
}

impl ResourceClause {
    /// Whether this is `NotResource`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// The patterns; at least one.
    pub fn patterns(&self) -> &[ResourcePattern] {
        self.patterns.as_slice()
    }

    /// Whether `resource` is covered (case-sensitive, `*` may span `:` and `/`).
    ///
    /// A pattern whose variable cannot be resolved is `Unknown`; the patterns are
    /// OR-ed, so another pattern that matches still makes the element `True`.
    fn evaluate(
        &self,
        resource: &str,
        context: &Context,
        issues: &mut dyn FnMut(Issue<'_>),
    ) -> Truth {
        let listed = Truth::any(self.patterns.iter().map(|pattern| match &pattern.tokens {
            Some(tokens) => matches_tokens(tokens, resource).into(),
            None => match pattern.template.resolve_tokens(context, true) {
                Ok(tokens) => matches_tokens(&tokens, resource).into(),
                Err(variable) => {
                    issues(Issue::UnresolvedVariable(variable));
                    Truth::Unknown
                }
            },
        }));
        if self.negated { listed.not() } else { listed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(principal: Option<&str>, service: Option<&str>) -> Request {
        let mut builder = Request::builder().action("sts:AssumeRole").resource("*");
        if let Some(arn) = principal {
            builder = builder.principal_arn(arn);
        }
        if let Some(service) = service {
            builder = builder.principal_service(service);
        }
        builder.build().unwrap()
    }

    #[test]
    fn principal_matching() {
        let session = "arn:aws:sts::111122223333:assumed-role/exec/job-1";
        let user = "arn:aws:iam::111122223333:user/alice";
        let cases: &[(&str, Option<&str>, Option<&str>, bool)] = &[
            (r#""*""#, None, None, true),
            (r#"{"AWS":"*"}"#, Some(user), None, true),
            (r#"{"AWS":"*"}"#, None, None, true),
            (r#"{"AWS":"111122223333"}"#, Some(user), None, true),
            (r#"{"AWS":"444455556666"}"#, Some(user), None, false),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
                Some(session),
                None,
                true,
            ),
            (
                r#"{"AWS":"arn:aws:iam::444455556666:root"}"#,
                Some(session),
                None,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:role/exec"}"#,
                Some(session),
                None,
                true,
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:role/path/exec"}"#,
                Some(session),
                None,
                true,
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:role/other"}"#,
                Some(session),
                None,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::444455556666:role/exec"}"#,
                Some(session),
                None,
                false,
            ),
            (
                r#"{"AWS":["arn:aws:iam::111122223333:user/bob", "arn:aws:iam::111122223333:user/alice"]}"#,
                Some(user),
                None,
                true,
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:user/bob"}"#,
                Some(user),
                None,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
                None,
                None,
                false,
            ),
            (
                r#"{"Service":"sagemaker.amazonaws.com"}"#,
                None,
                Some("sagemaker.amazonaws.com"),
                true,
            ),
            (
                r#"{"Service":["ec2.amazonaws.com","sagemaker.amazonaws.com"]}"#,
                None,
                Some("SageMaker.amazonaws.com"),
                true,
            ),
            (
                r#"{"Service":"ec2.amazonaws.com"}"#,
                None,
                Some("sagemaker.amazonaws.com"),
                false,
            ),
            (
                r#"{"Service":"sagemaker.amazonaws.com"}"#,
                Some(user),
                None,
                false,
            ),
            (
                r#"{"Federated":"cognito-identity.amazonaws.com"}"#,
                Some(user),
                None,
                false,
            ),
        ];
        for (principal, arn, service, expected) in cases {
            let text = format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}}}"#
            );
            let policy = Policy::parse(&text).unwrap();
            let clause = policy.statements()[0].principal().unwrap();
            assert_eq!(
                clause.principal().matches(&request(*arn, *service)),
                *expected,
                "{principal} vs {arn:?} {service:?}"
            );
        }
    }

    #[test]
    fn action_matching() {
        let cases: &[(&str, &str, bool)] = &[
            (r#""s3:GetObject""#, "s3:GetObject", true),
            (r#""s3:GetObject""#, "S3:getobject", true),
            (r#""s3:get*""#, "s3:GetObjectTagging", true),
            (r#""*""#, "iam:CreateUser", true),
            (r#"["s3:PutObject","s3:GetObject"]"#, "s3:GetObject", true),
            (
                r#"["s3:PutObject","s3:GetObject"]"#,
                "s3:DeleteObject",
                false,
            ),
            (r#""s3:Get?bject""#, "s3:GetObject", true),
            (r#""s3:*""#, "s3express:CreateSession", false),
        ];
        for (action, request_action, expected) in cases {
            for (key, negated) in [("Action", false), ("NotAction", true)] {
                let text = format!(
                    r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","{key}":{action},"Resource":"*"}}}}"#
                );
                let policy = Policy::parse(&text).unwrap();
                let clause = policy.statements()[0].action();
                assert_eq!(clause.is_negated(), negated);
                assert_eq!(
                    clause.matches(request_action),
                    *expected != negated,
                    "{key} {action} vs {request_action}"
                );
            }
        }
    }

    #[test]
    fn resource_matching() {
        let mut context = Context::new();
        context.insert("aws:PrincipalTag/tenant-id", ["a"]);
        use Truth::{False as F, True as T, Unknown as U};
        let cases: &[(&str, &str, Truth, Truth)] = &[
            // (resource element, request resource, as Resource, as NotResource)
            (r#""*""#, "arn:aws:s3:::b/k", T, F),
            (r#""arn:aws:s3:::b/*""#, "arn:aws:s3:::b/k/x:y", T, F),
            (r#""arn:aws:s3:::b/*""#, "arn:aws:s3:::B/k", F, T),
            (
                r#""arn:aws:s3:::b/${aws:PrincipalTag/tenant-id}/*""#,
                "arn:aws:s3:::b/a/k",
                T,
                F,
            ),
            (
                r#""arn:aws:s3:::b/${aws:PrincipalTag/tenant-id}/*""#,
                "arn:aws:s3:::b/c/k",
                F,
                T,
            ),
            (
                r#""arn:aws:s3:::b/${aws:PrincipalTag/missing}/*""#,
                "arn:aws:s3:::b/c/k",
                U,
                U,
            ),
            (
                r#"["arn:aws:s3:::b/${aws:PrincipalTag/missing}/*", "arn:aws:s3:::c/*"]"#,
                "arn:aws:s3:::c/k",
                T,
                F,
            ),
            (
                r#"["arn:aws:s3:::b/${aws:PrincipalTag/missing}/*", "arn:aws:s3:::c/*"]"#,
                "arn:aws:s3:::d/k",
                U,
                U,
            ),
            (r#""arn:aws:s3:::b/${*}""#, "arn:aws:s3:::b/*", T, F),
            (r#""arn:aws:s3:::b/${*}""#, "arn:aws:s3:::b/k", F, T),
        ];
        for (resource, request_resource, matches, not_matches) in cases {
            for (key, expected) in [("Resource", matches), ("NotResource", not_matches)] {
                let text = format!(
                    r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"*","{key}":{resource}}}}}"#
                );
                let policy = Policy::parse(&text).unwrap();
                let clause = policy.statements()[0].resource().unwrap();
                assert_eq!(
                    clause.evaluate(request_resource, &context, &mut |_| {}),
                    *expected,
                    "{key} {resource} vs {request_resource}"
                );
            }
        }
    }

    #[test]
    fn version_2008_keeps_variables_literal() {
        let mut context = Context::new();
        context.insert("aws:username", ["alice"]);
        let policy = Policy::parse(
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${aws:username}/*"}}"#,
        )
        .unwrap();
        let clause = policy.statements()[0].resource().unwrap();
        let evaluate = |resource: &str| clause.evaluate(resource, &context, &mut |_| {});
        assert_eq!(evaluate("arn:aws:s3:::b/${aws:username}/x"), Truth::True);
        assert_eq!(evaluate("arn:aws:s3:::b/alice/x"), Truth::False);
    }

    #[test]
    fn json_round_trip() {
        let texts = [
            r#"{"Version":"2012-10-17","Id":"p","Statement":[{"Sid":"A","Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*","Condition":{"StringLike":{"s3:prefix":["a/*","b/"]},"Bool":{"aws:SecureTransport":"true"}}}]}"#,
            r#"{"Statement":{"Effect":"Deny","NotAction":"iam:*","NotResource":["*"],"Condition":{}}}"#,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["sagemaker.amazonaws.com"]},"Action":["sts:AssumeRole","sts:TagSession"]},{"Effect":"Deny","NotPrincipal":"*","Action":"*"}]}"#,
        ];
        for text in texts {
            let policy = Policy::parse(text).unwrap();
            let value = policy.to_json_value();
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(value, expected, "{text}");
            let again = Policy::from_json_value(&value).unwrap();
            assert_eq!(again.to_json_value(), value);
            // Serde output keeps the document order, so it reproduces the input text.
            assert_eq!(serde_json::to_string(&policy).unwrap(), text);
            let via_serde: Policy = serde_json::from_str(text).unwrap();
            assert_eq!(via_serde, policy);
        }
    }
}
