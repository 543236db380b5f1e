//! Combining policies into a decision.
//!
//! A denial is the normal outcome of authorisation, not a failure, so evaluation never
//! returns `Err`: it returns a [`Response`] with a [`Decision`] and [`Diagnostics`]
//! (which statements matched, and what could not be evaluated). This mirrors cedar's
//! authorizer and lets callers log *why* a tenant was refused.
//!
//! The combination rules are those of IAM within one account:
//!
//! 1. An explicit `Deny` in any policy wins.
//! 2. Otherwise the request is allowed when an identity policy or the resource policy
//!    allows it, and, if session policies were given, a session policy also allows it
//!    (session policies only ever narrow what the session may do).
//! 3. Otherwise it is implicitly denied.
//!
//! In the resource policy, a statement without `Principal` or `NotPrincipal` never
//! applies (AWS requires the element there and refuses the policy; trainyard must not
//! read a forgotten principal as "everyone"). An `Allow` whose principal names only the
//! caller's account (`"111122223333"` or `"arn:aws:iam::111122223333:root"`) delegates
//! to that account's identity policies, as AWS documents for account principals: it
//! grants nothing by itself, so the caller also needs an identity-policy `Allow`. One
//! naming the caller's ARN, its role, its service or `*` grants by itself. A `Deny`
//! naming the account applies to every principal of it. These statements are listed in
//! [`Diagnostics::delegated`].
//!
//! A statement matches when its principal (if any), action and resource (if any) match
//! and all its conditions hold. An element can also be undetermined: a policy variable
//! has no value (a session without the `tenant-id` tag), or a request value cannot be
//! read for its operator. AWS only says such a statement "may be invalid"; trainyard
//! fails safe instead of guessing. An undetermined `Allow` statement does not apply,
//! and an undetermined `Deny` statement does, so a missing tag can neither grant access
//! nor lift a guard such as
//! `Deny … "StringNotEquals": {"aws:ResourceTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}`.
//! An element that is definitely false still rules the statement out, whatever its
//! effect. Each undetermined element is reported in [`Diagnostics::errors`].
//! Evaluation looks at every statement, not just until the
//! first deny, so the diagnostics are complete; policies are small enough that this
//! costs little. Permission boundaries, SCPs and cross-account rules (where both sides
//! must allow) are not modelled: trainyard runs one account.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::context::Request;
use crate::policy::{Effect, Policy, PrincipalMatch};
use crate::variables::Variable;

/// The outcome of an authorisation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// At least one applicable policy allows and no statement denies.
    Allow,
    /// A matching `Deny` statement refuses the request.
    ExplicitDeny,
    /// Nothing allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "Allow",
            Self::ExplicitDeny => "ExplicitDeny",
            Self::ImplicitDeny => "ImplicitDeny",
        })
    }
}

/// Which policy of a [`PolicySet`] a statement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// The identity policy at this index.
    Identity(usize),
    /// The session policy at this index.
    Session(usize),
    /// The resource policy.
    Resource,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity(i) => write!(f, "identity[{i}]"),
            Self::Session(i) => write!(f, "session[{i}]"),
            Self::Resource => f.write_str("resource"),
        }
    }
}

/// A statement, located in the evaluated policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatementRef {
    /// The policy.
    pub source: PolicySource,
    /// The statement's index in that policy.
    pub index: usize,
    /// The statement's `Sid`, if any.
    pub sid: Option<String>,
    /// The statement's effect.
    pub effect: Effect,
}

impl StatementRef {
    /// A short identifier: the `Sid` when present, otherwise
    /// `<source>.Statement[<index>]`, e.g. `identity[0].Statement[1]`.
    pub fn id(&self) -> String {
        match &self.sid {
            Some(sid) if !sid.is_empty() => sid.clone(),
            _ => format!("{}.Statement[{}]", self.source, self.index),
        }
    }
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.Statement[{}]", self.source, self.index)?;
        if let Some(sid) = &self.sid {
            write!(f, " ({sid})")?;
        }
        Ok(())
    }
}

/// Something that could not be evaluated as written. The evaluation still completes;
/// the element concerned is treated as not matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvaluationError {
    /// A policy variable had no single value in the request and no default.
    #[error("{statement}: policy variable `{variable}` has no value in the request")]
    UnresolvedVariable {
        /// Where.
        statement: StatementRef,
        /// The variable's key as written.
        variable: String,
    },
    /// A request value could not be read for the operator comparing it.
    #[error("{statement}: value `{value}` of condition key `{key}` is not {expected}")]
    InvalidContextValue {
        /// Where.
        statement: StatementRef,
        /// The condition key.
        key: String,
        /// The request's value.
        value: String,
        /// What the operator needed.
        expected: &'static str,
    },
}

/// Why the decision is what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// Every statement that matched the request, in evaluation order (identity, then
    /// session, then resource policies).
    pub matched: Vec<StatementRef>,
    /// Elements that could not be evaluated, each counted as not matching.
    pub errors: Vec<EvaluationError>,
    /// Resource-policy `Allow` statements that matched but name only the caller's account
    /// (`"111122223333"`, `"arn:aws:iam::111122223333:root"`). They delegate to the
    /// account's identity policies and grant nothing by themselves, so they are not in
    /// [`Diagnostics::matched`].
    pub delegated: Vec<StatementRef>,
}

/// A decision with its diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The decision.
    pub decision: Decision,
    /// Why.
    pub diagnostics: Diagnostics,
}

impl Response {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// The statements that determined the decision: the matching `Deny` statements for
    /// an explicit deny, the matching `Allow` statements for an allow, none otherwise.
    pub fn determining_statements(&self) -> impl Iterator<Item = &StatementRef> {
        let effect = match self.decision {
            Decision::Allow => Some(Effect::Allow),
            Decision::ExplicitDeny => Some(Effect::Deny),
            Decision::ImplicitDeny => None,
        };
        self.diagnostics
            .matched
            .iter()
            .filter(move |statement| Some(statement.effect) == effect)
    }
}

/// Three-valued truth for elements that may be undetermined (Kleene logic).
///
/// An element is `Unknown` when a policy variable in it cannot be resolved or a request
/// value cannot be read for its operator. `and` is the minimum and `or` the maximum in
/// the order `False < Unknown < True`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Truth {
    False,
    Unknown,
    True,
}

impl Truth {
    pub(crate) fn not(self) -> Self {
        match self {
            Self::False => Self::True,
            Self::Unknown => Self::Unknown,
            Self::True => Self::False,
        }
    }

    /// Kleene OR over `items`, stopping at the first `True`.
    pub(crate) fn any<I: IntoIterator<Item = Self>>(items: I) -> Self {
        let mut result = Self::False;
        for item in items {
            result = result.max(item);
            if result == Self::True {
                break;
            }
        }
        result
    }

    /// Kleene AND over `items`, stopping at the first `False`.
    pub(crate) fn all<I: IntoIterator<Item = Self>>(items: I) -> Self {
        let mut result = Self::True;
        for item in items {
            result = result.min(item);
            if result == Self::False {
                break;
            }
        }
        result
    }
}

impl From<bool> for Truth {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Something met while evaluating one statement; turned into an [`EvaluationError`].
#[derive(Debug)]
pub(crate) enum Issue<'a> {
    UnresolvedVariable(&'a Variable),
    InvalidContextValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

/// The policies that apply to one request.
///
/// ```
/// use trainyard_iam::{Decision, Policy, PolicySet, Request};
/// let identity = Policy::parse(r#"{"Version":"2012-10-17","Statement":
///     {"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#).unwrap();
/// let session = Policy::parse(r#"{"Version":"2012-10-17","Statement":
///     {"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#).unwrap();
/// let put = Request::builder().action("s3:PutObject").resource("arn:aws:s3:::b/k").build().unwrap();
/// let set = PolicySet::new().identity(&identity).session(&session);
/// assert_eq!(set.evaluate(&put).decision, Decision::ImplicitDeny);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PolicySet<'a> {
    identity: Vec<&'a Policy>,
    session: Vec<&'a Policy>,
    resource: Option<&'a Policy>,
}

impl<'a> PolicySet<'a> {
    /// An empty set, which denies everything implicitly.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an identity policy (attached to the user or role). Any of them may allow.
    pub fn identity(mut self, policy: &'a Policy) -> Self {
        self.identity.push(policy);
        self
    }

    /// Adds several identity policies.
    pub fn identities(mut self, policies: impl IntoIterator<Item = &'a Policy>) -> Self {
        self.identity.extend(policies);
        self
    }

    /// Adds a session policy (passed when the role was assumed). Once any session
    /// policy is present, an allow also needs a session policy that allows.
    pub fn session(mut self, policy: &'a Policy) -> Self {
        self.session.push(policy);
        self
    }

    /// Sets the resource policy (bucket policy, trust policy). Its statements must carry
    /// a `Principal` or `NotPrincipal`: one without never applies. An `Allow` naming only
    /// the caller's account delegates to the identity policies (see the module docs).
    pub fn resource(mut self, policy: &'a Policy) -> Self {
        self.resource = Some(policy);
        self
    }

    /// Evaluates `request` against every policy of the set.
    pub fn evaluate(&self, request: &Request) -> Response {
        let mut diagnostics = Diagnostics::default();
        let identity = self
            .identity
            .iter()
            .enumerate()
            .map(|(i, policy)| (PolicySource::Identity(i), *policy));
        let session = self
            .session
            .iter()
            .enumerate()
            .map(|(i, policy)| (PolicySource::Session(i), *policy));
        let resource = self
            .resource
            .into_iter()
            .map(|policy| (PolicySource::Resource, policy));
        let (mut granted, mut session_allows, mut denied) = (false, false, false);
        for (source, policy) in identity.chain(session).chain(resource) {
            for (index, statement) in policy.statements().iter().enumerate() {
                let location = StatementRef {
                    source,
                    index,
                    sid: statement.sid().map(str::to_owned),
                    effect: statement.effect(),
                };
                let mut record = |issue: Issue<'_>| {
                    let error = match issue {
                        Issue::UnresolvedVariable(variable) => {
                            EvaluationError::UnresolvedVariable {
                                statement: location.clone(),
                                variable: variable.name().to_owned(),
                            }
                        }
                        Issue::InvalidContextValue {
                            key,
                            value,
                            expected,
                        } => EvaluationError::InvalidContextValue {
                            statement: location.clone(),
                            key: key.to_owned(),
                            value: value.to_owned(),
                            expected,
                        },
                    };
                    if !diagnostics.errors.contains(&error) {
                        diagnostics.errors.push(error);
                    }
                };
                // A resource-policy statement must name who it is for: without `Principal`
                // or `NotPrincipal` it never applies (AWS refuses such a policy; applying it
                // to every caller would turn a forgotten principal into a public grant).
                let admitted = match (source, statement.principal()) {
                    (PolicySource::Resource, None) => PrincipalMatch::None,
                    _ => statement.principal_match(request),
                };
                if admitted == PrincipalMatch::None {
                    continue;
                }
                // An undetermined statement fails safe: an Allow does not apply, a Deny does.
                let applies = match statement.applies(request, &mut record) {
                    Truth::True => true,
                    Truth::False => false,
                    Truth::Unknown => statement.effect() == Effect::Deny,
                };
                if !applies {
                    continue;
                }
                match (statement.effect(), source) {
                    (Effect::Deny, _) => denied = true,
                    // Naming only the caller's account delegates to its identity policies.
                    (Effect::Allow, PolicySource::Resource)
                        if admitted == PrincipalMatch::Account =>
                    {
                        diagnostics.delegated.push(location);
                        continue;
                    }
                    (Effect::Allow, PolicySource::Session(_)) => session_allows = true,
                    (Effect::Allow, _) => granted = true,
                }
                diagnostics.matched.push(location);
            }
        }
        let decision = if denied {
            Decision::ExplicitDeny
        } else if granted && (self.session.is_empty() || session_allows) {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        };
        Response {
            decision,
            diagnostics,
        }
    }
}

/// Evaluates `request` against identity-like policies and an optional resource policy.
///
/// Every policy in `identity_policies` is treated as an identity policy: policies
/// attached to the role, inline policies, and the tenant policy trainyard generates
/// all go here, and any of them may allow. An explicit `Deny` anywhere, the resource
/// policy included, wins; otherwise an `Allow` from any identity policy or from the
/// resource policy allows; otherwise the request is implicitly denied. Use
/// [`PolicySet`] when session policies must narrow the result.
///
/// ```
/// use trainyard_iam::{evaluate, Decision, Policy, Request};
/// let tenant = Policy::parse(r#"{"Version":"2012-10-17","Statement":[
///   {"Sid":"TenantObjects","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],
///    "Resource":"arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*"}]}"#).unwrap();
/// let request = |key: &str| Request::builder()
///     .principal_arn("arn:aws:sts::111122223333:assumed-role/exec/job-1")
///     .principal_tag("tenant-id", "a")
///     .action("s3:GetObject")
///     .resource(format!("arn:aws:s3:::shared-bucket/{key}"))
///     .build()
///     .unwrap();
/// let own = evaluate(std::slice::from_ref(&tenant), None, &request("a/data.csv"));
/// assert_eq!(own.decision, Decision::Allow);
/// assert_eq!(own.diagnostics.matched[0].id(), "TenantObjects");
/// let other = evaluate(std::slice::from_ref(&tenant), None, &request("b/data.csv"));
/// assert_eq!(other.decision, Decision::ImplicitDeny);
/// ```
pub fn evaluate(
    identity_policies: &[Policy],
    resource_policy: Option<&Policy>,
    request: &Request,
) -> Response {
    let mut set = PolicySet::new().identities(identity_policies);
    if let Some(policy) = resource_policy {
        set = set.resource(policy);
    }
    set.evaluate(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(statements: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#
        ))
        .unwrap()
    }

    fn request(action: &str, resource: &str) -> Request {
        Request::builder()
            .principal_arn("arn:aws:sts::111122223333:assumed-role/exec/job")
            .principal_tag("tenant-id", "a")
            .action(action)
            .resource(resource)
            .build()
            .unwrap()
    }

    const ALLOW_GET: &str =
        r#"{"Sid":"Get","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#;
    const DENY_B: &str =
        r#"{"Sid":"DenyB","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::b/secret/*"}"#;
    const ALLOW_ALL: &str = r#"{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}"#;
    // Resource-policy statements, which name their principal.
    const R_DENY_B: &str = r#"{"Sid":"DenyB","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/secret/*"}"#;
    const R_ALLOW_ROLE: &str = r#"{"Sid":"Role","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/exec"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#;
    const R_ALLOW_ROOT: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#;
    const R_ALLOW_ACCOUNT: &str = r#"{"Sid":"Account","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#;
    const R_DENY_ROOT: &str = r#"{"Sid":"DenyRoot","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"*"}"#;
    const R_DENY_NOBODY: &str =
        r#"{"Sid":"DenyNobody","Effect":"Deny","Action":"*","Resource":"*"}"#;

    #[test]
    fn combination_table() {
        let get = |key: &str| request("s3:GetObject", &format!("arn:aws:s3:::b/{key}"));
        struct Case {
            identity: Vec<&'static str>,
            session: Vec<&'static str>,
            resource: Option<&'static str>,
            key: &'static str,
            decision: Decision,
            matched: &'static [&'static str],
            delegated: &'static [&'static str],
        }
        let cases = [
            Case {
                identity: vec![],
                session: vec![],
                resource: None,
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &[],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_GET],
                session: vec![],
                resource: None,
                key: "x",
                decision: Decision::Allow,
                matched: &["Get"],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_GET, DENY_B],
                session: vec![],
                resource: None,
                key: "secret/x",
                decision: Decision::ExplicitDeny,
                matched: &["Get", "DenyB"],
                delegated: &[],
            },
            Case {
                identity: vec![DENY_B, ALLOW_GET],
                session: vec![],
                resource: None,
                key: "secret/x",
                decision: Decision::ExplicitDeny,
                matched: &["DenyB", "Get"],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_GET],
                session: vec![],
                resource: Some(R_DENY_B),
                key: "secret/x",
                decision: Decision::ExplicitDeny,
                matched: &["Get", "DenyB"],
                delegated: &[],
            },
            Case {
                identity: vec![],
                session: vec![],
                resource: Some(R_ALLOW_ROLE),
                key: "x",
                decision: Decision::Allow,
                matched: &["Role"],
                delegated: &[],
            },
            // A resource-policy statement without a principal applies to nobody.
            Case {
                identity: vec![],
                session: vec![],
                resource: Some(ALLOW_GET),
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &[],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_GET],
                session: vec![],
                resource: Some(R_DENY_NOBODY),
                key: "x",
                decision: Decision::Allow,
                matched: &["Get"],
                delegated: &[],
            },
            // An account principal delegates: alone it grants nothing...
            Case {
                identity: vec![],
                session: vec![],
                resource: Some(R_ALLOW_ROOT),
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &[],
                delegated: &["Root"],
            },
            Case {
                identity: vec![],
                session: vec![],
                resource: Some(R_ALLOW_ACCOUNT),
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &[],
                delegated: &["Account"],
            },
            // ...with an identity-policy Allow the request is allowed...
            Case {
                identity: vec![ALLOW_GET],
                session: vec![],
                resource: Some(R_ALLOW_ROOT),
                key: "x",
                decision: Decision::Allow,
                matched: &["Get"],
                delegated: &["Root"],
            },
            // ...and a Deny naming the account applies.
            Case {
                identity: vec![ALLOW_ALL],
                session: vec![],
                resource: Some(R_DENY_ROOT),
                key: "x",
                decision: Decision::ExplicitDeny,
                matched: &["All", "DenyRoot"],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_ALL],
                session: vec![ALLOW_GET],
                resource: None,
                key: "x",
                decision: Decision::Allow,
                matched: &["All", "Get"],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_ALL],
                session: vec![DENY_B],
                resource: None,
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &["All"],
                delegated: &[],
            },
            Case {
                identity: vec![],
                session: vec![ALLOW_ALL],
                resource: None,
                key: "x",
                decision: Decision::ImplicitDeny,
                matched: &["All"],
                delegated: &[],
            },
            Case {
                identity: vec![ALLOW_ALL],
                session: vec![ALLOW_ALL],
                resource: Some(R_DENY_B),
                key: "secret/x",
                decision: Decision::ExplicitDeny,
                matched: &["All", "All", "DenyB"],
                delegated: &[],
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let identity: Vec<Policy> = case.identity.iter().map(|s| policy(s)).collect();
            let session: Vec<Policy> = case.session.iter().map(|s| policy(s)).collect();
            let resource = case.resource.map(policy);
            let mut set = PolicySet::new().identities(&identity);
            for p in &session {
                set = set.session(p);
            }
            if let Some(p) = &resource {
                set = set.resource(p);
            }
            let response = set.evaluate(&get(case.key));
            assert_eq!(response.decision, case.decision, "case {i}");
            let ids: Vec<String> = response
                .diagnostics
                .matched
                .iter()
                .map(StatementRef::id)
                .collect();
            assert_eq!(ids, case.matched, "case {i}");
            let delegated: Vec<String> = response
                .diagnostics
                .delegated
                .iter()
                .map(StatementRef::id)
                .collect();
            assert_eq!(delegated, case.delegated, "case {i}");
        }
    }

    #[test]
    fn statement_ids_and_determining_statements() {
        let p = policy(
            r#"{"Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"D","Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}"#,
        );
        let allowed = p.evaluate(&request("s3:GetObject", "arn:aws:s3:::b/k"));
        assert_eq!(
            allowed.diagnostics.matched[0].id(),
            "identity[0].Statement[0]"
        );
        assert_eq!(allowed.determining_statements().count(), 1);
        let denied = p.evaluate(&request("s3:DeleteObject", "arn:aws:s3:::b/k"));
        assert_eq!(denied.decision, Decision::ExplicitDeny);
        let determining: Vec<String> = denied
            .determining_statements()
            .map(StatementRef::id)
            .collect();
        assert_eq!(determining, ["D"]);
        assert_eq!(
            denied.diagnostics.matched[1].to_string(),
            "identity[0].Statement[1] (D)"
        );
    }

    #[test]
    fn errors_are_collected_once() {
        let p = policy(
            r#"{"Sid":"T","Effect":"Allow","Action":"*","Resource":["arn:aws:s3:::b/${aws:PrincipalTag/team}/*","arn:aws:s3:::c/${aws:PrincipalTag/team}/*"]},
               {"Sid":"N","Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"10"}}}"#,
        );
        let request = Request::builder()
            .action("s3:ListBucket")
            .resource("arn:aws:s3:::b")
            .context_value("s3:max-keys", "lots")
            .build()
            .unwrap();
        let response = p.evaluate(&request);
        assert_eq!(response.decision, Decision::ImplicitDeny);
        let messages: Vec<String> = response
            .diagnostics
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "identity[0].Statement[0] (T): policy variable `aws:PrincipalTag/team` has no value in the request",
                "identity[0].Statement[1] (N): value `lots` of condition key `s3:max-keys` is not a number",
            ]
        );
    }

    #[test]
    fn undetermined_statements_fail_safe() {
        let guarded = policy(
            r#"{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"},
               {"Sid":"Guard","Effect":"Deny","Action":"*","Resource":"*",
                "Condition":{"StringNotEquals":{"aws:ResourceTag/tenant-id":"${aws:PrincipalTag/tenant-id}"}}}"#,
        );
        let widened = policy(
            r#"{"Sid":"NotOthers","Effect":"Allow","Action":"*","NotResource":"arn:aws:s3:::b/${aws:PrincipalTag/other}/*"}"#,
        );
        /// (policy, principal tag, resource tag, decision, matched statement ids)
        type Case<'a> = (
            &'a Policy,
            Option<&'a str>,
            Option<&'a str>,
            Decision,
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            (&guarded, Some("a"), Some("a"), Decision::Allow, &["All"]),
            (
                &guarded,
                Some("a"),
                Some("b"),
                Decision::ExplicitDeny,
                &["All", "Guard"],
            ),
            (
                &guarded,
                None,
                Some("a"),
                Decision::ExplicitDeny,
                &["All", "Guard"],
            ),
            (
                &guarded,
                Some("a"),
                None,
                Decision::ExplicitDeny,
                &["All", "Guard"],
            ),
            (&widened, Some("a"), None, Decision::ImplicitDeny, &[]),
        ];
        for (i, (policy, tag, resource_tag, decision, matched)) in cases.iter().enumerate() {
            let mut builder = Request::builder()
                .action("s3:GetObject")
                .resource("arn:aws:s3:::b/a/k");
            if let Some(tag) = tag {
                builder = builder.principal_tag("tenant-id", *tag);
            }
            if let Some(resource_tag) = resource_tag {
                builder = builder.context_value("aws:ResourceTag/tenant-id", *resource_tag);
            }
            let response = policy.evaluate(&builder.build().unwrap());
            assert_eq!(response.decision, *decision, "case {i}");
            let ids: Vec<String> = response
                .diagnostics
                .matched
                .iter()
                .map(StatementRef::id)
                .collect();
            assert_eq!(ids, *matched, "case {i}");
        }
    }

    #[test]
    fn truth_tables() {
        use Truth::{False as F, True as T, Unknown as U};
        assert_eq!([F.not(), U.not(), T.not()], [T, U, F]);
        assert_eq!(Truth::any([]), F);
        assert_eq!(Truth::all([]), T);
        assert_eq!(Truth::any([F, U]), U);
        assert_eq!(Truth::any([U, T]), T);
        assert_eq!(Truth::all([T, U]), U);
        assert_eq!(Truth::all([U, F]), F);
    }

    #[test]
    fn trust_policy() {
        let trust = policy(
            r#"{"Sid":"Trust","Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}"#,
        );
        let cases: &[(&str, &str, Decision)] = &[
            ("sagemaker.amazonaws.com", "sts:AssumeRole", Decision::Allow),
            ("sagemaker.amazonaws.com", "sts:TagSession", Decision::Allow),
            (
                "ec2.amazonaws.com",
                "sts:AssumeRole",
                Decision::ImplicitDeny,
            ),
            (
                "sagemaker.amazonaws.com",
                "sts:AssumeRoleWithSAML",
                Decision::ImplicitDeny,
            ),
        ];
        for (service, action, decision) in cases {
            let request = Request::builder()
                .principal_service(*service)
                .action(*action)
                .resource("arn:aws:iam::111122223333:role/exec")
                .build()
                .unwrap();
            assert_eq!(
                evaluate(&[], Some(&trust), &request).decision,
                *decision,
                "{service} {action}"
            );
        }
    }
}
