//! Condition operators and their evaluation.
//!
//! A statement's `Condition` is a map of operator to (key to values). Each entry becomes
//! one [`Condition`]: an [`Operator`], a condition key and the policy values, compiled at
//! load so that a bad number, date, CIDR or base64 value is refused up front and
//! evaluation never re-parses policy text.
//!
//! The semantics follow the IAM documentation:
//!
//! - Values listed for one key are OR-ed; keys and operators are AND-ed (the caller
//!   ANDs the [`Condition`]s of a statement).
//! - Condition keys are case-insensitive; values are case-sensitive unless the operator
//!   says `IgnoreCase`.
//! - A key that is absent from the request (or has no values) makes a positive operator
//!   false and a negated one (`StringNotEquals`, `NotIpAddress`, …) true. With the
//!   `…IfExists` suffix an absent key is true for every operator.
//! - `ForAnyValue:` is true when at least one request value matches, false when the key
//!   is absent; `ForAllValues:` is true when every request value matches, and true when
//!   the key is absent. Without a qualifier a multivalued key behaves like
//!   `ForAnyValue:` for positive operators and requires that no value match for negated
//!   ones.
//! - `Null` is `true` when the key is absent and `false` when it is present.
//! - Policy variables are substituted in `String…` and `Arn…` values only, as AWS
//!   documents. A comparison with a value whose variable cannot be resolved is
//!   *unknown*, and so is one with a request value that does not parse for a typed
//!   operator (a non-number for `NumericEquals`). Unknowns propagate through the
//!   OR/AND/NOT above in three-valued logic; the evaluator then resolves an unknown
//!   statement by its effect (see [`crate::eval`]), and reports each unknown.
//!
//! `ArnEquals` and `ArnLike` are the same operator in AWS: both allow wildcards and
//! compare the six colon-separated ARN segments separately, so a `*` never spills from
//! one segment into the next. A policy value with fewer than six segments (such as
//! `*`) is compared with the whole request value as one wildcard pattern.

mod binary;
mod date;
mod ip;

use std::fmt;
use std::net::IpAddr;

use crate::context::Context;
use crate::error::InvalidReason;
use crate::eval::{Issue, Truth};
use crate::pattern::{Token, matches_tokens};
use crate::variables::{Template, VariableError};

/// The comparison an operator performs, without qualifier or `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperatorKind {
    /// Exact, case-sensitive string match.
    StringEquals,
    /// Negated [`OperatorKind::StringEquals`].
    StringNotEquals,
    /// Exact string match ignoring case.
    StringEqualsIgnoreCase,
    /// Negated [`OperatorKind::StringEqualsIgnoreCase`].
    StringNotEqualsIgnoreCase,
    /// Case-sensitive match with `*` and `?` wildcards.
    StringLike,
    /// Negated [`OperatorKind::StringLike`].
    StringNotLike,
    /// Numbers equal.
    NumericEquals,
    /// Negated [`OperatorKind::NumericEquals`].
    NumericNotEquals,
    /// Request value less than the policy value.
    NumericLessThan,
    /// Request value less than or equal to the policy value.
    NumericLessThanEquals,
    /// Request value greater than the policy value.
    NumericGreaterThan,
    /// Request value greater than or equal to the policy value.
    NumericGreaterThanEquals,
    /// Instants equal.
    DateEquals,
    /// Negated [`OperatorKind::DateEquals`].
    DateNotEquals,
    /// Request instant before the policy instant.
    DateLessThan,
    /// Request instant at or before the policy instant.
    DateLessThanEquals,
    /// Request instant after the policy instant.
    DateGreaterThan,
    /// Request instant at or after the policy instant.
    DateGreaterThanEquals,
    /// Booleans equal (`true`/`false`, case-insensitive).
    Bool,
    /// Base64-decoded bytes equal.
    BinaryEquals,
    /// Request address inside one of the CIDR blocks.
    IpAddress,
    /// Negated [`OperatorKind::IpAddress`].
    NotIpAddress,
    /// ARN match, segment by segment, with wildcards.
    ArnEquals,
    /// Same as [`OperatorKind::ArnEquals`].
    ArnLike,
    /// Negated [`OperatorKind::ArnEquals`].
    ArnNotEquals,
    /// Negated [`OperatorKind::ArnLike`].
    ArnNotLike,
    /// Key absent (`true`) or present (`false`).
    Null,
}

/// The comparison behind an operator, with negation factored out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Ordering),
    Date(Ordering),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordering {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Ordering {
    fn holds<T: PartialOrd>(self, actual: &T, expected: &T) -> bool {
        match self {
            Self::Equal => actual == expected,
            Self::Less => actual < expected,
            Self::LessOrEqual => actual <= expected,
            Self::Greater => actual > expected,
            Self::GreaterOrEqual => actual >= expected,
        }
    }
}

impl OperatorKind {
    const ALL: [Self; 27] = [
        Self::StringEquals,
        Self::StringNotEquals,
        Self::StringEqualsIgnoreCase,
        Self::StringNotEqualsIgnoreCase,
        Self::StringLike,
        Self::StringNotLike,
        Self::NumericEquals,
        Self::NumericNotEquals,
        Self::NumericLessThan,
        Self::NumericLessThanEquals,
        Self::NumericGreaterThan,
        Self::NumericGreaterThanEquals,
        Self::DateEquals,
        Self::DateNotEquals,
        Self::DateLessThan,
        Self::DateLessThanEquals,
        Self::DateGreaterThan,
        Self::DateGreaterThanEquals,
        Self::Bool,
        Self::BinaryEquals,
        Self::IpAddress,
        Self::NotIpAddress,
        Self::ArnEquals,
        Self::ArnLike,
        Self::ArnNotEquals,
        Self::ArnNotLike,
        Self::Null,
    ];

    /// The operator's name as written in policies.
    pub fn name(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::StringLike => "StringLike",
            Self::StringNotLike => "StringNotLike",
            Self::NumericEquals => "NumericEquals",
            Self::NumericNotEquals => "NumericNotEquals",
            Self::NumericLessThan => "NumericLessThan",
            Self::NumericLessThanEquals => "NumericLessThanEquals",
            Self::NumericGreaterThan => "NumericGreaterThan",
            Self::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Self::DateEquals => "DateEquals",
            Self::DateNotEquals => "DateNotEquals",
            Self::DateLessThan => "DateLessThan",
            Self::DateLessThanEquals => "DateLessThanEquals",
            Self::DateGreaterThan => "DateGreaterThan",
            Self::DateGreaterThanEquals => "DateGreaterThanEquals",
            Self::Bool => "Bool",
            Self::BinaryEquals => "BinaryEquals",
            Self::IpAddress => "IpAddress",
            Self::NotIpAddress => "NotIpAddress",
            Self::ArnEquals => "ArnEquals",
            Self::ArnLike => "ArnLike",
            Self::ArnNotEquals => "ArnNotEquals",
            Self::ArnNotLike => "ArnNotLike",
            Self::Null => "Null",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// Whether the operator is the negation of another (`StringNotEquals`, …).
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NumericNotEquals
                | Self::DateNotEquals
                | Self::NotIpAddress
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    /// Whether policy variables are substituted in this operator's values.
    pub fn supports_variables(self) -> bool {
        matches!(
            self.comparison(),
            Comparison::StringEquals
                | Comparison::StringEqualsIgnoreCase
                | Comparison::StringLike
                | Comparison::Arn
        )
    }

    fn comparison(self) -> Comparison {
        match self {
            Self::StringEquals | Self::StringNotEquals => Comparison::StringEquals,
            Self::StringEqualsIgnoreCase | Self::StringNotEqualsIgnoreCase => {
                Comparison::StringEqualsIgnoreCase
            }
            Self::StringLike | Self::StringNotLike => Comparison::StringLike,
            Self::NumericEquals | Self::NumericNotEquals => Comparison::Numeric(Ordering::Equal),
            Self::NumericLessThan => Comparison::Numeric(Ordering::Less),
            Self::NumericLessThanEquals => Comparison::Numeric(Ordering::LessOrEqual),
            Self::NumericGreaterThan => Comparison::Numeric(Ordering::Greater),
            Self::NumericGreaterThanEquals => Comparison::Numeric(Ordering::GreaterOrEqual),
            Self::DateEquals | Self::DateNotEquals => Comparison::Date(Ordering::Equal),
            Self::DateLessThan => Comparison::Date(Ordering::Less),
            Self::DateLessThanEquals => Comparison::Date(Ordering::LessOrEqual),
            Self::DateGreaterThan => Comparison::Date(Ordering::Greater),
            Self::DateGreaterThanEquals => Comparison::Date(Ordering::GreaterOrEqual),
            Self::Bool => Comparison::Bool,
            Self::BinaryEquals => Comparison::Binary,
            Self::IpAddress | Self::NotIpAddress => Comparison::Ip,
            Self::ArnEquals | Self::ArnLike | Self::ArnNotEquals | Self::ArnNotLike => {
                Comparison::Arn
            }
            Self::Null => Comparison::Null,
        }
    }
}

/// `ForAnyValue:` or `ForAllValues:`, for multivalued condition keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    /// At least one request value must match; false when the key is absent.
    ForAnyValue,
    /// Every request value must match; true when the key is absent.
    ForAllValues,
}

impl SetQualifier {
    /// The prefix as written, without the colon.
    pub fn name(self) -> &'static str {
        match self {
            Self::ForAnyValue => "ForAnyValue",
            Self::ForAllValues => "ForAllValues",
        }
    }
}

/// A full condition operator: optional set qualifier, comparison, optional `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operator {
    qualifier: Option<SetQualifier>,
    kind: OperatorKind,
    if_exists: bool,
}

impl Operator {
    /// Parses an operator name such as `ForAllValues:StringLikeIfExists`.
    /// Names are matched case-insensitively.
    pub fn parse(name: &str) -> Result<Self, InvalidReason> {
        let unknown = || InvalidReason::UnknownOperator {
            operator: name.to_owned(),
        };
        let (qualifier, rest) = match name.split_once(':') {
            Some((prefix, rest)) => {
                let qualifier = [SetQualifier::ForAnyValue, SetQualifier::ForAllValues]
                    .into_iter()
                    .find(|q| q.name().eq_ignore_ascii_case(prefix))
                    .ok_or_else(unknown)?;
                (Some(qualifier), rest)
            }
            None => (None, name),
        };
        let (kind, if_exists) = match OperatorKind::from_name(rest) {
            Some(kind) => (kind, false),
            None => {
                let split = rest
                    .len()
                    .checked_sub("IfExists".len())
                    .ok_or_else(unknown)?;
                let (base, suffix) = (rest.get(..split), rest.get(split..));
                match (base, suffix) {
                    (Some(base), Some(suffix)) if suffix.eq_ignore_ascii_case("IfExists") => {
                        (OperatorKind::from_name(base).ok_or_else(unknown)?, true)
                    }
                    _ => return Err(unknown()),
                }
            }
        };
        if kind == OperatorKind::Null && (if_exists || qualifier.is_some()) {
            return Err(InvalidReason::UnsupportedOperator {
                operator: name.to_owned(),
                why: "`Null` takes neither a set qualifier nor `IfExists`",
            });
        }
        Ok(Self {
            qualifier,
            kind,
            if_exists,
        })
    }

    /// The set qualifier, if any.
    pub fn qualifier(&self) -> Option<SetQualifier> {
        self.qualifier
    }

    /// The comparison.
    pub fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// Whether the operator has the `IfExists` suffix.
    pub fn if_exists(&self) -> bool {
        self.if_exists
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(qualifier) = self.qualifier {
            write!(f, "{}:", qualifier.name())?;
        }
        f.write_str(self.kind.name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

/// One condition value as written in the policy, compiled for its operator.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionValue {
    raw: String,
    compiled: Compiled,
}

#[derive(Debug, Clone, PartialEq)]
enum Compiled {
    Text(Template),
    Arn {
        whole: Template,
        segments: Option<Vec<Template>>,
    },
    Number(f64),
    Date(date::Timestamp),
    Bool(bool),
    Binary(Vec<u8>),
    Ip(ip::IpNet),
    Null(bool),
}

/// Why a condition value does not compile.
pub(crate) enum ValueError {
    Invalid(&'static str),
    Variable(VariableError),
}

impl ConditionValue {
    /// Compiles `raw` for `kind`. `substitute` is false for `2008-10-17` policies.
    pub(crate) fn compile(
        kind: OperatorKind,
        raw: &str,
        substitute: bool,
    ) -> Result<Self, ValueError> {
        let template = |raw: &str| {
            if substitute {
                Template::parse(raw).map_err(ValueError::Variable)
            } else {
                Ok(Template::literal(raw))
            }
        };
        let compiled = match kind.comparison() {
            Comparison::StringEquals
            | Comparison::StringEqualsIgnoreCase
            | Comparison::StringLike => Compiled::Text(template(raw)?),
            Comparison::Arn => {
                let whole = template(raw)?;
                let segments = whole.split_arn_segments();
                Compiled::Arn { whole, segments }
            }
            Comparison::Numeric(_) => {
                Compiled::Number(parse_number(raw).ok_or(ValueError::Invalid("a number"))?)
            }
            Comparison::Date(_) => Compiled::Date(
                date::parse(raw).ok_or(ValueError::Invalid("an ISO 8601 date or epoch seconds"))?,
            ),
            Comparison::Bool => {
                Compiled::Bool(parse_bool(raw).ok_or(ValueError::Invalid("`true` or `false`"))?)
            }
            Comparison::Binary => {
                Compiled::Binary(binary::decode(raw).ok_or(ValueError::Invalid("base64"))?)
            }
            Comparison::Ip => Compiled::Ip(
                ip::IpNet::parse(raw).ok_or(ValueError::Invalid("an IP address or CIDR block"))?,
            ),
            Comparison::Null => {
                Compiled::Null(parse_bool(raw).ok_or(ValueError::Invalid("`true` or `false`"))?)
            }
        };
        Ok(Self {
            raw: raw.to_owned(),
            compiled,
        })
    }

    /// The value as written in the policy.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The value with variables resolved into what [`compare`] needs, or `None` when a
    /// variable cannot be resolved (reported through `issues`).
    fn resolve(
        &self,
        comparison: Comparison,
        context: &Context,
        issues: &mut dyn FnMut(Issue<'_>),
    ) -> Option<Expected<'_>> {
        let resolved = match (&self.compiled, comparison) {
            (Compiled::Text(template), Comparison::StringLike) => {
                template.resolve_tokens(context, true).map(Expected::Tokens)
            }
            (Compiled::Text(template), Comparison::StringEqualsIgnoreCase) => template
                .resolve(context)
                .map(|text| Expected::Text(text.to_lowercase())),
            (Compiled::Text(template), _) => template.resolve(context).map(Expected::Text),
            (
                Compiled::Arn {
                    segments: Some(segments),
                    ..
                },
                _,
            ) => segments
                .iter()
                .map(|segment| segment.resolve_tokens(context, true))
                .collect::<Result<Vec<_>, _>>()
                .map(Expected::ArnSegments),
            (Compiled::Arn { whole, .. }, _) => {
                whole.resolve_tokens(context, true).map(Expected::Tokens)
            }
            (constant, _) => Ok(Expected::Constant(constant)),
        };
        match resolved {
            Ok(expected) => Some(expected),
            Err(variable) => {
                issues(Issue::UnresolvedVariable(variable));
                None
            }
        }
    }
}

/// A policy value ready for comparison.
enum Expected<'a> {
    Text(String),
    Tokens(Vec<Token>),
    ArnSegments(Vec<Vec<Token>>),
    Constant(&'a Compiled),
}

/// A request value parsed for the operator's comparison.
enum Actual<'a> {
    Text(&'a str),
    Lowercase(String),
    Number(f64),
    Date(date::Timestamp),
    Bool(bool),
    Binary(Vec<u8>),
    Ip(IpAddr),
}

fn parse_number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses a request value; `Err` carries what was expected.
fn parse_actual(comparison: Comparison, value: &str) -> Result<Actual<'_>, &'static str> {
    Ok(match comparison {
        Comparison::StringEquals | Comparison::StringLike | Comparison::Arn | Comparison::Null => {
            Actual::Text(value)
        }
        Comparison::StringEqualsIgnoreCase => Actual::Lowercase(value.to_lowercase()),
        Comparison::Numeric(_) => Actual::Number(parse_number(value).ok_or("a number")?),
        Comparison::Date(_) => {
            Actual::Date(date::parse(value).ok_or("an ISO 8601 date or epoch seconds")?)
        }
        Comparison::Bool => Actual::Bool(parse_bool(value).ok_or("`true` or `false`")?),
        Comparison::Binary => Actual::Binary(binary::decode(value).ok_or("base64")?),
        Comparison::Ip => Actual::Ip(ip::parse_addr(value).ok_or("an IP address")?),
    })
}

/// The positive comparison of one request value with one policy value.
fn compare(comparison: Comparison, expected: &Expected<'_>, actual: &Actual<'_>) -> bool {
    match (comparison, expected, actual) {
        (Comparison::StringEquals, Expected::Text(e), Actual::Text(a)) => e == a,
        (Comparison::StringEqualsIgnoreCase, Expected::Text(e), Actual::Lowercase(a)) => e == a,
        (Comparison::StringLike | Comparison::Arn, Expected::Tokens(tokens), Actual::Text(a)) => {
            matches_tokens(tokens, a)
        }
        (Comparison::Arn, Expected::ArnSegments(segments), Actual::Text(a)) => {
            let parts: Vec<&str> = a.splitn(segments.len(), ':').collect();
            parts.len() == segments.len()
                && segments
                    .iter()
                    .zip(parts)
                    .all(|(tokens, part)| matches_tokens(tokens, part))
        }
        (
            Comparison::Numeric(ordering),
            Expected::Constant(Compiled::Number(e)),
            Actual::Number(a),
        ) => ordering.holds(a, e),
        (Comparison::Date(ordering), Expected::Constant(Compiled::Date(e)), Actual::Date(a)) => {
            ordering.holds(a, e)
        }
        (Comparison::Bool, Expected::Constant(Compiled::Bool(e)), Actual::Bool(a)) => e == a,
        (Comparison::Binary, Expected::Constant(Compiled::Binary(e)), Actual::Binary(a)) => e == a,
        (Comparison::Ip, Expected::Constant(Compiled::Ip(net)), Actual::Ip(a)) => net.contains(*a),
        // INVARIANT: `ConditionValue::compile` and `parse_actual` pick the variants from
        // the same `Comparison`, so other combinations do not occur.
        _ => false,
    }
}

/// One condition key under one operator, with its policy values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    operator: Operator,
    key: String,
    // INVARIANT: `key` lower-cased.
    key_lowercase: String,
    values: Vec<ConditionValue>,
    // Whether the values were written as a JSON list (kept for serialisation).
    list: bool,
}

impl Condition {
    pub(crate) fn new(
        operator: Operator,
        key: &str,
        values: Vec<ConditionValue>,
        list: bool,
    ) -> Self {
        Self {
            operator,
            key: key.to_owned(),
            key_lowercase: key.to_lowercase(),
            values,
            list,
        }
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The condition key as written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The policy values; at least one.
    pub fn values(&self) -> &[ConditionValue] {
        &self.values
    }

    /// Whether the values were written as a list rather than a single string.
    pub(crate) fn is_list(&self) -> bool {
        self.list
    }

    /// Evaluates this condition against the request context. `Unknown` when the
    /// outcome depends on an unresolvable variable or an unreadable request value.
    pub(crate) fn evaluate(&self, context: &Context, issues: &mut dyn FnMut(Issue<'_>)) -> Truth {
        let kind = self.operator.kind;
        let present = context.get_lowercase(&self.key_lowercase);
        if kind == OperatorKind::Null {
            let absent = present.is_none();
            return self
                .values
                .iter()
                .any(|value| value.compiled == Compiled::Null(absent))
                .into();
        }
        let Some(actual_values) = present else {
            let holds = self.operator.if_exists
                || match self.operator.qualifier {
                    Some(SetQualifier::ForAllValues) => true,
                    Some(SetQualifier::ForAnyValue) => false,
                    None => kind.is_negated(),
                };
            return holds.into();
        };
        let comparison = kind.comparison();
        let negated = kind.is_negated();
        let expected: Vec<Option<Expected<'_>>> = self
            .values
            .iter()
            .map(|value| value.resolve(comparison, context, issues))
            .collect();
        // Whether one request value satisfies the operator: it matches one of the policy
        // values (OR), or for a negated operator, none of them.
        let mut satisfies = |value: &str| -> Truth {
            let actual = match parse_actual(comparison, value) {
                Ok(actual) => actual,
                Err(wanted) => {
                    issues(Issue::InvalidContextValue {
                        key: &self.key,
                        value,
                        expected: wanted,
                    });
                    return Truth::Unknown;
                }
            };
            let listed = Truth::any(expected.iter().map(|e| match e {
                Some(e) => compare(comparison, e, &actual).into(),
                None => Truth::Unknown,
            }));
            if negated { listed.not() } else { listed }
        };
        let values = actual_values.iter().map(|value| satisfies(value));
        match (self.operator.qualifier, negated) {
            (Some(SetQualifier::ForAllValues), _) | (None, true) => Truth::all(values),
            (Some(SetQualifier::ForAnyValue), _) | (None, false) => Truth::any(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Truth::{False as F, True as T, Unknown as U};

    #[test]
    fn operator_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("StringEquals", Some("StringEquals")),
            ("stringequals", Some("StringEquals")),
            ("StringLikeIfExists", Some("StringLikeIfExists")),
            ("ForAnyValue:StringEquals", Some("ForAnyValue:StringEquals")),
            (
                "ForAllValues:StringNotLikeIfExists",
                Some("ForAllValues:StringNotLikeIfExists"),
            ),
            ("forallvalues:arnlike", Some("ForAllValues:ArnLike")),
            ("Null", Some("Null")),
            ("BoolIfExists", Some("BoolIfExists")),
            ("StringEqual", None),
            ("IfExists", None),
            ("ForSomeValues:StringEquals", None),
            ("NullIfExists", None),
            ("ForAnyValue:Null", None),
            ("", None),
        ];
        for (name, expected) in cases {
            let got = Operator::parse(name).ok().map(|op| op.to_string());
            assert_eq!(got.as_deref(), *expected, "operator {name:?}");
        }
        for kind in OperatorKind::ALL {
            assert_eq!(OperatorKind::from_name(kind.name()), Some(kind));
        }
    }

    fn condition(operator: &str, key: &str, values: &[&str]) -> Condition {
        let operator = Operator::parse(operator).unwrap();
        let values = values
            .iter()
            .map(|raw| {
                ConditionValue::compile(operator.kind(), raw, true)
                    .unwrap_or_else(|_| panic!("value {raw:?} should compile"))
            })
            .collect();
        Condition::new(operator, key, values, true)
    }

    /// (operator, policy values, request values or `None` for absent, expected).
    type Case<'a> = (&'a str, &'a [&'a str], Option<&'a [&'a str]>, Truth);

    /// Runs a table of cases against the key `k`.
    fn check(cases: &[Case<'_>]) {
        for (operator, policy, request, expected) in cases {
            let condition = condition(operator, "k", policy);
            let mut context = Context::new();
            context.insert("aws:PrincipalTag/team", ["blue"]);
            if let Some(request) = request {
                context.insert("K", request.iter().copied());
            }
            let got = condition.evaluate(&context, &mut |_| {});
            assert_eq!(got, *expected, "{operator} {policy:?} against {request:?}");
        }
    }

    #[test]
    fn string_operators() {
        check(&[
            ("StringEquals", &["a"], Some(&["a"]), T),
            ("StringEquals", &["a"], Some(&["A"]), F),
            ("StringEquals", &["a", "b"], Some(&["b"]), T),
            ("StringEquals", &["a*"], Some(&["ab"]), F),
            ("StringEquals", &["a*"], Some(&["a*"]), T),
            ("StringEquals", &["a"], None, F),
            ("StringNotEquals", &["a"], Some(&["a"]), F),
            ("StringNotEquals", &["a"], Some(&["b"]), T),
            ("StringNotEquals", &["a", "b"], Some(&["b"]), F),
            ("StringNotEquals", &["a"], None, T),
            ("StringEqualsIgnoreCase", &["Blue"], Some(&["bLUE"]), T),
            ("StringEqualsIgnoreCase", &["Blue"], Some(&["red"]), F),
            ("StringNotEqualsIgnoreCase", &["Blue"], Some(&["BLUE"]), F),
            ("StringNotEqualsIgnoreCase", &["Blue"], Some(&["red"]), T),
            ("StringLike", &["home/*"], Some(&["home/x/y"]), T),
            ("StringLike", &["home/?"], Some(&["home/xy"]), F),
            ("StringLike", &["Home/*"], Some(&["home/x"]), F),
            ("StringNotLike", &["home/*"], Some(&["etc/x"]), T),
            ("StringNotLike", &["home/*"], Some(&["home/x"]), F),
            ("StringNotLike", &["home/*"], None, T),
            (
                "StringEquals",
                &["${aws:PrincipalTag/team}"],
                Some(&["blue"]),
                T,
            ),
            (
                "StringEquals",
                &["${aws:PrincipalTag/team}"],
                Some(&["red"]),
                F,
            ),
            (
                "StringLike",
                &["${aws:PrincipalTag/team}/*"],
                Some(&["blue/x"]),
                T,
            ),
            (
                "StringLike",
                &["${aws:PrincipalTag/nope}/*"],
                Some(&["/x"]),
                U,
            ),
            (
                "StringLike",
                &["${aws:PrincipalTag/nope, 'x'}/*"],
                Some(&["x/y"]),
                T,
            ),
            (
                "StringNotEquals",
                &["${aws:PrincipalTag/nope}"],
                Some(&["red"]),
                U,
            ),
            ("StringEquals", &["${*}"], Some(&["*"]), T),
            ("StringLike", &["${*}"], Some(&["x"]), F),
            ("StringLike", &["a${?}"], Some(&["a?"]), T),
            ("StringLike", &["a${?}"], Some(&["ab"]), F),
        ]);
    }

    #[test]
    fn numeric_operators() {
        check(&[
            ("NumericEquals", &["10"], Some(&["10"]), T),
            ("NumericEquals", &["10"], Some(&["10.0"]), T),
            ("NumericEquals", &["10"], Some(&["11"]), F),
            ("NumericEquals", &["10"], Some(&["ten"]), U),
            ("NumericNotEquals", &["10"], Some(&["11"]), T),
            ("NumericNotEquals", &["10"], Some(&["10"]), F),
            ("NumericNotEquals", &["10"], Some(&["ten"]), U),
            ("NumericNotEquals", &["10"], None, T),
            ("NumericLessThan", &["10"], Some(&["9.5"]), T),
            ("NumericLessThan", &["10"], Some(&["10"]), F),
            ("NumericLessThanEquals", &["10"], Some(&["10"]), T),
            ("NumericLessThanEquals", &["10"], Some(&["-3"]), T),
            ("NumericGreaterThan", &["10"], Some(&["10"]), F),
            ("NumericGreaterThan", &["10"], Some(&["1e3"]), T),
            ("NumericGreaterThanEquals", &["10"], Some(&["10"]), T),
            ("NumericGreaterThanEquals", &["10"], None, F),
            ("NumericLessThanIfExists", &["10"], None, T),
        ]);
    }

    #[test]
    fn date_operators() {
        check(&[
            (
                "DateEquals",
                &["2024-01-01T00:00:00Z"],
                Some(&["1704067200"]),
                T,
            ),
            (
                "DateEquals",
                &["2024-01-01"],
                Some(&["2024-01-01T00:00:00Z"]),
                T,
            ),
            ("DateNotEquals", &["2024-01-01"], Some(&["2024-01-02"]), T),
            (
                "DateLessThan",
                &["2024-01-01T00:00:00Z"],
                Some(&["2023-12-31T23:59:59Z"]),
                T,
            ),
            (
                "DateLessThan",
                &["2024-01-01T00:00:00Z"],
                Some(&["2024-01-01T00:00:00Z"]),
                F,
            ),
            (
                "DateLessThanEquals",
                &["2024-01-01T00:00:00Z"],
                Some(&["2024-01-01T01:00:00+01:00"]),
                T,
            ),
            (
                "DateGreaterThan",
                &["2024-01-01"],
                Some(&["2024-06-01T12:00:00Z"]),
                T,
            ),
            (
                "DateGreaterThanEquals",
                &["1704067200"],
                Some(&["2024-01-01"]),
                T,
            ),
            ("DateGreaterThan", &["2024-01-01"], Some(&["not a date"]), U),
            ("DateGreaterThan", &["2024-01-01"], None, F),
        ]);
    }

    #[test]
    fn bool_binary_ip_null() {
        check(&[
            ("Bool", &["true"], Some(&["true"]), T),
            ("Bool", &["true"], Some(&["TRUE"]), T),
            ("Bool", &["true"], Some(&["false"]), F),
            ("Bool", &["false"], None, F),
            ("BoolIfExists", &["false"], None, T),
            ("BoolIfExists", &["false"], Some(&["true"]), F),
            ("Bool", &["true"], Some(&["yes"]), U),
            ("BinaryEquals", &["QmluYXJ5"], Some(&["QmluYXJ5"]), T),
            ("BinaryEquals", &["QmluYXJ5"], Some(&["QmluYXJ6"]), F),
            (
                "IpAddress",
                &["192.0.2.0/24", "203.0.113.0/24"],
                Some(&["203.0.113.9"]),
                T,
            ),
            ("IpAddress", &["192.0.2.0/24"], Some(&["198.51.100.1"]), F),
            ("IpAddress", &["2001:db8::/32"], Some(&["2001:db8::5"]), T),
            ("IpAddress", &["192.0.2.0/24"], None, F),
            (
                "NotIpAddress",
                &["192.0.2.0/24"],
                Some(&["198.51.100.1"]),
                T,
            ),
            ("NotIpAddress", &["192.0.2.0/24"], Some(&["192.0.2.1"]), F),
            ("NotIpAddress", &["192.0.2.0/24"], None, T),
            ("NotIpAddress", &["192.0.2.0/24"], Some(&["garbage"]), U),
            ("Null", &["true"], None, T),
            ("Null", &["true"], Some(&["x"]), F),
            ("Null", &["false"], Some(&["x"]), T),
            ("Null", &["false"], None, F),
        ]);
    }

    #[test]
    fn arn_operators() {
        for operator in ["ArnEquals", "ArnLike"] {
            let negated = operator.replace("Arn", "ArnNot");
            check(&[
                (
                    operator,
                    &["arn:aws:sns:*:111122223333:topic"],
                    Some(&["arn:aws:sns:us-east-1:111122223333:topic"]),
                    T,
                ),
                (
                    operator,
                    &["arn:aws:sns:*:111122223333:topic"],
                    Some(&["arn:aws:sns:us-east-1:444455556666:topic"]),
                    F,
                ),
                (
                    operator,
                    &["arn:aws:s3:::bucket/*"],
                    Some(&["arn:aws:s3:::bucket/a:b/c"]),
                    T,
                ),
                // Fewer than six segments: compared as one wildcard pattern.
                (
                    operator,
                    &["arn:aws:iam::*"],
                    Some(&["arn:aws:iam::1:role/x"]),
                    T,
                ),
                (
                    operator,
                    &["arn:aws:iam::*"],
                    Some(&["arn:aws:sts::1:role/x"]),
                    F,
                ),
                (
                    operator,
                    &["arn:aws:iam::*:*"],
                    Some(&["arn:aws:iam::1:role/x"]),
                    T,
                ),
                // `*` in a segment does not spill into the next one.
                (operator, &["arn:aws:s*:::b"], Some(&["arn:aws:s3:x::b"]), F),
                (operator, &["arn:aws:s3:::b"], Some(&["not-an-arn"]), F),
                (operator, &["*"], Some(&["anything"]), T),
                (
                    operator,
                    &["arn:aws:s3:::${aws:PrincipalTag/team}"],
                    Some(&["arn:aws:s3:::blue"]),
                    T,
                ),
                (&negated, &["arn:aws:s3:::b"], Some(&["arn:aws:s3:::c"]), T),
                (&negated, &["arn:aws:s3:::b"], Some(&["arn:aws:s3:::b"]), F),
                (&negated, &["arn:aws:s3:::b"], None, T),
            ]);
        }
    }

    #[test]
    fn set_qualifiers() {
        check(&[
            (
                "ForAllValues:StringEquals",
                &["a", "b"],
                Some(&["a", "b"]),
                T,
            ),
            (
                "ForAllValues:StringEquals",
                &["a", "b"],
                Some(&["a", "c"]),
                F,
            ),
            ("ForAllValues:StringEquals", &["a", "b"], None, T),
            ("ForAllValues:StringEquals", &["a", "b"], Some(&[]), T),
            (
                "ForAnyValue:StringEquals",
                &["a", "b"],
                Some(&["c", "b"]),
                T,
            ),
            (
                "ForAnyValue:StringEquals",
                &["a", "b"],
                Some(&["c", "d"]),
                F,
            ),
            ("ForAnyValue:StringEquals", &["a", "b"], None, F),
            ("ForAnyValue:StringEqualsIfExists", &["a"], None, T),
            (
                "ForAllValues:StringLike",
                &["key1*"],
                Some(&["key1a", "key1b"]),
                T,
            ),
            (
                "ForAllValues:StringLike",
                &["key1*"],
                Some(&["key1a", "key2"]),
                F,
            ),
            ("ForAnyValue:StringNotEquals", &["a"], Some(&["a", "b"]), T),
            ("ForAnyValue:StringNotEquals", &["a"], Some(&["a"]), F),
            ("ForAllValues:StringNotEquals", &["a"], Some(&["b", "c"]), T),
            ("ForAllValues:StringNotEquals", &["a"], Some(&["b", "a"]), F),
            ("ForAnyValue:StringNotEquals", &["a"], None, F),
            // No qualifier on a multivalued key.
            ("StringEquals", &["a"], Some(&["b", "a"]), T),
            ("StringNotEquals", &["a"], Some(&["b", "a"]), F),
            ("StringNotEquals", &["a"], Some(&["b", "c"]), T),
        ]);
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let condition = condition("StringEquals", "AWS:PrincipalTag/Team", &["blue"]);
        let mut context = Context::new();
        context.insert("aws:principaltag/team", ["blue"]);
        assert_eq!(condition.evaluate(&context, &mut |_| {}), T);
    }

    #[test]
    fn compile_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("NumericEquals", "ten", "a number"),
            ("NumericEquals", "inf", "a number"),
            (
                "DateEquals",
                "tomorrow",
                "an ISO 8601 date or epoch seconds",
            ),
            ("Bool", "yes", "`true` or `false`"),
            ("Null", "maybe", "`true` or `false`"),
            ("BinaryEquals", "!!", "base64"),
            ("IpAddress", "192.0.2.0/40", "an IP address or CIDR block"),
            ("NumericEquals", "${aws:username}", "a number"),
        ];
        for (operator, raw, expected) in cases {
            let kind = Operator::parse(operator).unwrap().kind();
            match ConditionValue::compile(kind, raw, true) {
                Err(ValueError::Invalid(message)) => assert_eq!(message, *expected),
                _ => panic!("{operator} {raw} should not compile"),
            }
        }
        assert!(matches!(
            ConditionValue::compile(OperatorKind::StringEquals, "${x", true),
            Err(ValueError::Variable(VariableError::Unterminated))
        ));
        assert!(ConditionValue::compile(OperatorKind::StringEquals, "${x", false).is_ok());
    }

    #[test]
    fn issues_are_reported() {
        let condition = condition("NumericEquals", "k", &["1"]);
        let mut context = Context::new();
        context.insert("k", ["one"]);
        let mut seen = Vec::new();
        condition.evaluate(&context, &mut |issue| seen.push(format!("{issue:?}")));
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("one"), "{seen:?}");
    }
}
