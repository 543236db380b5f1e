//! The grammar walker: from an ordered JSON tree to a compiled [`Policy`].
//!
//! Each function takes the element and its [`ElementPath`], so every refusal can say
//! exactly where it happened. The walker checks, in document order: keys known and not
//! repeated, JSON types, required and mutually exclusive elements, and the content of
//! actions, resources, variables and condition values.

use super::json::Json;
use super::{
    ActionClause, ActionPattern, Effect, OneOrMany, Policy, Principal, PrincipalClause,
    PrincipalType, ResourceClause, ResourcePattern, Statement, Version,
};
use crate::condition::{Condition, ConditionValue, Operator, ValueError};
use crate::error::{ElementPath, InvalidReason, PolicyError};
use crate::variables::Template;

const POLICY_KEYS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];
const STRINGS: &str = "string or list of strings";

type Entries = [(String, Json)];

fn invalid<T>(path: &ElementPath, reason: InvalidReason) -> Result<T, PolicyError> {
    Err(PolicyError::invalid(path, reason))
}

fn expected<T>(path: &ElementPath, expected: &'static str) -> Result<T, PolicyError> {
    invalid(path, InvalidReason::ExpectedType { expected })
}

fn object<'a>(
    json: &'a Json,
    path: &ElementPath,
    what: &'static str,
) -> Result<&'a Entries, PolicyError> {
    match json {
        Json::Object(entries) => Ok(entries),
        _ => expected(path, what),
    }
}

/// Refuses repeated keys and, when `allowed` is given, keys not in it.
fn check_keys(
    entries: &Entries,
    allowed: Option<&[&str]>,
    path: &ElementPath,
) -> Result<(), PolicyError> {
    for (i, (key, _)) in entries.iter().enumerate() {
        if allowed.is_some_and(|allowed| !allowed.contains(&key.as_str())) {
            return invalid(path, InvalidReason::UnknownKey { key: key.clone() });
        }
        if entries[..i].iter().any(|(earlier, _)| earlier == key) {
            return invalid(path, InvalidReason::DuplicateKey { key: key.clone() });
        }
    }
    Ok(())
}

fn get<'a>(entries: &'a Entries, key: &str) -> Option<&'a Json> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Returns whichever of two mutually exclusive keys is present, and whether it was the
/// second (negated) one.
fn one_of<'a>(
    entries: &'a Entries,
    first: &'static str,
    second: &'static str,
    path: &ElementPath,
) -> Result<Option<(&'a Json, &'static str, bool)>, PolicyError> {
    match (get(entries, first), get(entries, second)) {
        (Some(_), Some(_)) => invalid(path, InvalidReason::Conflict { first, second }),
        (Some(json), None) => Ok(Some((json, first, false))),
        (None, Some(json)) => Ok(Some((json, second, true))),
        (None, None) => Ok(None),
    }
}

fn string<'a>(json: &'a Json, path: &ElementPath) -> Result<&'a str, PolicyError> {
    match json {
        Json::String(s) => Ok(s),
        _ => expected(path, "string"),
    }
}

/// A string or a non-empty list of strings, each with its own path.
fn strings(
    json: &Json,
    path: &ElementPath,
) -> Result<OneOrMany<(String, ElementPath)>, PolicyError> {
    match json {
        Json::String(s) => Ok(OneOrMany::One((s.clone(), path.clone()))),
        Json::Array(items) if items.is_empty() => invalid(path, InvalidReason::EmptyList),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::String(s) => Ok((s.clone(), path.index(i))),
                _ => expected(&path.index(i), "string"),
            })
            .collect::<Result<_, _>>()
            .map(OneOrMany::Many),
        _ => expected(path, STRINGS),
    }
}

/// Like [`strings`], but numbers and booleans are accepted as their text, as IAM does
/// for condition values (`"NumericLessThan": {"s3:max-keys": 10}`).
fn condition_values(
    json: &Json,
    path: &ElementPath,
) -> Result<OneOrMany<(String, ElementPath)>, PolicyError> {
    let scalar = |json: &Json| match json {
        Json::String(s) | Json::Number(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match json {
        Json::Array(items) if items.is_empty() => invalid(path, InvalidReason::EmptyList),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match scalar(item) {
                Some(s) => Ok((s, path.index(i))),
                None => expected(&path.index(i), "string"),
            })
            .collect::<Result<_, _>>()
            .map(OneOrMany::Many),
        other => match scalar(other) {
            Some(s) => Ok(OneOrMany::One((s, path.clone()))),
            None => expected(path, STRINGS),
        },
    }
}

fn map_values<T>(
    values: OneOrMany<(String, ElementPath)>,
    mut f: impl FnMut(&str, &ElementPath) -> Result<T, PolicyError>,
) -> Result<OneOrMany<T>, PolicyError> {
    Ok(match values {
        OneOrMany::One((value, path)) => OneOrMany::One(f(&value, &path)?),
        OneOrMany::Many(values) => OneOrMany::Many(
            values
                .iter()
                .map(|(value, path)| f(value, path))
                .collect::<Result<_, _>>()?,
        ),
    })
}

pub(super) fn policy(json: &Json) -> Result<Policy, PolicyError> {
    let root = ElementPath::root();
    let entries = object(json, &root, "policy object")?;
    check_keys(entries, Some(POLICY_KEYS), &root)?;
    let (version, version_written) = match get(entries, "Version") {
        None => (Version::V2008_10_17, false),
        Some(json) => {
            let path = root.key("Version");
            let version = match string(json, &path)? {
                "2012-10-17" => Version::V2012_10_17,
                "2008-10-17" => Version::V2008_10_17,
                other => {
                    return invalid(
                        &path,
                        InvalidReason::UnsupportedVersion {
                            version: other.to_owned(),
                        },
                    );
                }
            };
            (version, true)
        }
    };
    let id = get(entries, "Id")
        .map(|json| string(json, &root.key("Id")).map(str::to_owned))
        .transpose()?;
    let path = root.key("Statement");
    let statements = match get(entries, "Statement") {
        None => {
            return invalid(
                &root,
                InvalidReason::Missing {
                    element: "`Statement`",
                },
            );
        }
        Some(json @ Json::Object(_)) => OneOrMany::One(statement(json, &path, version)?),
        Some(Json::Array(items)) => OneOrMany::Many(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| statement(item, &path.index(i), version))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return expected(&path, "statement object or list of statement objects"),
    };
    Ok(Policy {
        version,
        version_written,
        id,
        statements,
    })
}

fn statement(json: &Json, path: &ElementPath, version: Version) -> Result<Statement, PolicyError> {
    let entries = object(json, path, "statement object")?;
    check_keys(entries, Some(STATEMENT_KEYS), path)?;
    let sid = get(entries, "Sid")
        .map(|json| string(json, &path.key("Sid")).map(str::to_owned))
        .transpose()?;
    let effect = match get(entries, "Effect") {
        None => {
            return invalid(
                path,
                InvalidReason::Missing {
                    element: "`Effect`",
                },
            );
        }
        Some(json) => {
            let effect_path = path.key("Effect");
            match string(json, &effect_path)? {
                "Allow" => Effect::Allow,
                "Deny" => Effect::Deny,
                other => {
                    return invalid(
                        &effect_path,
                        InvalidReason::InvalidEffect {
                            effect: other.to_owned(),
                        },
                    );
                }
            }
        }
    };
    let principal = one_of(entries, "Principal", "NotPrincipal", path)?
        .map(|(json, key, negated)| {
            principal(json, &path.key(key)).map(|principal| PrincipalClause { negated, principal })
        })
        .transpose()?;
    let Some((json, key, negated)) = one_of(entries, "Action", "NotAction", path)? else {
        return invalid(
            path,
            InvalidReason::Missing {
                element: "`Action` or `NotAction`",
            },
        );
    };
    let patterns = map_values(strings(json, &path.key(key))?, action)?;
    let action = ActionClause { negated, patterns };
    let resource = one_of(entries, "Resource", "NotResource", path)?
        .map(|(json, key, negated)| {
            let patterns = map_values(strings(json, &path.key(key))?, |raw, path| {
                resource(raw, path, version)
            })?;
            Ok(ResourceClause { negated, patterns })
        })
        .transpose()?;
    let (conditions, condition_written) = match get(entries, "Condition") {
        None => (Vec::new(), false),
        Some(json) => (conditions(json, &path.key("Condition"), version)?, true),
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
        condition_written,
    })
}

fn principal(json: &Json, path: &ElementPath) -> Result<Principal, PolicyError> {
    const EXPECTED: &str = "`*` or an object mapping principal types to principals";
    let entries = match json {
        Json::String(s) if s == "*" => return Ok(Principal::Any),
        Json::Object(entries) if !entries.is_empty() => entries,
        _ => return expected(path, EXPECTED),
    };
    check_keys(entries, None, path)?;
    entries
        .iter()
        .map(|(key, value)| {
            let kind = PrincipalType::ALL
                .into_iter()
                .find(|kind| kind.as_str() == key)
                .ok_or_else(|| {
                    PolicyError::invalid(
                        path,
                        InvalidReason::UnknownPrincipalType { kind: key.clone() },
                    )
                })?;
            let values = map_values(strings(value, &path.key(key))?, |raw, path| {
                if raw.is_empty() {
                    invalid(path, InvalidReason::EmptyString)
                } else {
                    Ok(raw.to_owned())
                }
            })?;
            Ok((kind, values))
        })
        .collect::<Result<_, _>>()
        .map(Principal::Specific)
}

fn action(raw: &str, path: &ElementPath) -> Result<ActionPattern, PolicyError> {
    let valid = raw == "*"
        || raw
            .split_once(':')
            .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty());
    if !valid {
        return invalid(
            path,
            InvalidReason::InvalidAction {
                action: raw.to_owned(),
            },
        );
    }
    Ok(ActionPattern::new(raw))
}

fn template(raw: &str, path: &ElementPath, version: Version) -> Result<Template, PolicyError> {
    if version.supports_variables() {
        Template::parse(raw).map_err(|error| {
            PolicyError::invalid(
                path,
                InvalidReason::InvalidVariable {
                    value: raw.to_owned(),
                    error,
                },
            )
        })
    } else {
        Ok(Template::literal(raw))
    }
}

fn resource(
    raw: &str,
    path: &ElementPath,
    version: Version,
) -> Result<ResourcePattern, PolicyError> {
    if raw.is_empty() {
        return invalid(path, InvalidReason::EmptyString);
    }
    Ok(ResourcePattern::new(raw, template(raw, path, version)?))
}

fn conditions(
    json: &Json,
    path: &ElementPath,
    version: Version,
) -> Result<Vec<Condition>, PolicyError> {
    let operators = object(json, path, "object mapping condition operators to keys")?;
    check_keys(operators, None, path)?;
    let mut conditions = Vec::new();
    for (name, body) in operators {
        let operator_path = path.key(name);
        let operator =
            Operator::parse(name).map_err(|reason| PolicyError::invalid(&operator_path, reason))?;
        let keys = object(
            body,
            &operator_path,
            "object mapping condition keys to values",
        )?;
        check_keys(keys, None, &operator_path)?;
        for (key, values) in keys {
            let key_path = operator_path.key(key);
            if key.is_empty() {
                return invalid(&key_path, InvalidReason::EmptyString);
            }
            let values = condition_values(values, &key_path)?;
            let list = matches!(values, OneOrMany::Many(_));
            let compiled = map_values(values, |raw, value_path| {
                ConditionValue::compile(operator.kind(), raw, version.supports_variables()).map_err(
                    |error| {
                        let reason = match error {
                            ValueError::Invalid(expected) => InvalidReason::InvalidConditionValue {
                                operator: name.clone(),
                                value: raw.to_owned(),
                                expected,
                            },
                            ValueError::Variable(error) => InvalidReason::InvalidVariable {
                                value: raw.to_owned(),
                                error,
                            },
                        };
                        PolicyError::invalid(value_path, reason)
                    },
                )
            })?;
            let values = match compiled {
                OneOrMany::One(value) => vec![value],
                OneOrMany::Many(values) => values,
            };
            conditions.push(Condition::new(operator, key, values, list));
        }
    }
    Ok(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match Policy::parse(text) {
            Ok(_) => panic!("policy should be refused: {text}"),
            Err(err) => err.to_string(),
        }
    }

    fn statement_error(statement: &str) -> String {
        error(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"*","Resource":"*"}},{statement}]}}"#
        ))
    }

    #[test]
    fn document_errors() {
        let cases: &[(&str, &str)] = &[
            ("[]", "policy: expected policy object"),
            ("{", "policy is not valid JSON at line 1, column 1"),
            (
                r#"{"Statement":[]} x"#,
                "policy is not valid JSON at line 1",
            ),
            (r#"{"Version":"2012-10-17"}"#, "policy: missing `Statement`"),
            (
                r#"{"Version":"2012-10-18","Statement":[]}"#,
                "Version: unsupported version `2012-10-18`: expected `2012-10-17` or `2008-10-17`",
            ),
            (
                r#"{"Version":20121017,"Statement":[]}"#,
                "Version: expected string",
            ),
            (
                r#"{"Statement":[],"Extra":1}"#,
                "policy: unknown key `Extra`",
            ),
            (
                r#"{"Statement":[],"Statement":[]}"#,
                "policy: duplicate key `Statement`",
            ),
            (r#"{"Id":5,"Statement":[]}"#, "Id: expected string"),
            (
                r#"{"Statement":"x"}"#,
                "Statement: expected statement object or list of statement objects",
            ),
            (
                r#"{"Statement":["x"]}"#,
                "Statement[0]: expected statement object",
            ),
        ];
        for (text, expected) in cases {
            let got = error(text);
            assert!(got.starts_with(expected), "{text}: got {got:?}");
        }
    }

    #[test]
    fn statement_errors() {
        let cases: &[(&str, &str)] = &[
            (r#"{"Action":"*"}"#, "Statement[1]: missing `Effect`"),
            (
                r#"{"Effect":"allow","Action":"*"}"#,
                "Statement[1].Effect: invalid effect `allow`: expected `Allow` or `Deny`",
            ),
            (
                r#"{"Effect":"Allow"}"#,
                "Statement[1]: missing `Action` or `NotAction`",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","NotAction":"*"}"#,
                "Statement[1]: `Action` and `NotAction` cannot both be present",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}"#,
                "Statement[1]: `Resource` and `NotResource` cannot both be present",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Principal":"*","NotPrincipal":"*"}"#,
                "Statement[1]: `Principal` and `NotPrincipal` cannot both be present",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Effect":"Deny"}"#,
                "Statement[1]: duplicate key `Effect`",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Resources":"*"}"#,
                "Statement[1]: unknown key `Resources`",
            ),
            (
                r#"{"Effect":"Allow","Action":"GetObject"}"#,
                "Statement[1].Action: invalid action `GetObject`: expected `*` or `service:action`",
            ),
            (
                r#"{"Effect":"Allow","Action":["s3:GetObject","s3:"]}"#,
                "Statement[1].Action[1]: invalid action `s3:`",
            ),
            (
                r#"{"Effect":"Allow","Action":[]}"#,
                "Statement[1].Action: expected at least one value",
            ),
            (
                r#"{"Effect":"Allow","Action":["s3:GetObject",3]}"#,
                "Statement[1].Action[1]: expected string",
            ),
            (
                r#"{"Effect":"Allow","Action":{"a":1}}"#,
                "Statement[1].Action: expected string or list of strings",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Resource":""}"#,
                "Statement[1].Resource: empty string",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${aws:username"}"#,
                "Statement[1].Resource: invalid policy variable in `arn:aws:s3:::b/${aws:username`: `${` is not closed by `}`",
            ),
            (
                r#"{"Sid":1,"Effect":"Allow","Action":"*"}"#,
                "Statement[1].Sid: expected string",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Principal":"someone"}"#,
                "Statement[1].Principal: expected `*` or an object mapping principal types to principals",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","Principal":{"User":"x"}}"#,
                "Statement[1].Principal: unknown principal type `User`",
            ),
            (
                r#"{"Effect":"Allow","Action":"*","NotPrincipal":{"AWS":[""]}}"#,
                "Statement[1].NotPrincipal.AWS[0]: empty string",
            ),
        ];
        for (statement, expected) in cases {
            let got = statement_error(statement);
            assert!(got.starts_with(expected), "{statement}: got {got:?}");
        }
    }

    #[test]
    fn condition_errors() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"StringEquals":{"aws:PrincipalTag/team":{"a":"b"}}}"#,
                "Statement[1].Condition.StringEquals.aws:PrincipalTag/team: expected string or list of strings",
            ),
            (
                r#"{"StringEquals":{"aws:PrincipalTag/team":["a",["b"]]}}"#,
                "Statement[1].Condition.StringEquals.aws:PrincipalTag/team[1]: expected string",
            ),
            (
                r#"{"StringEquals":{"aws:PrincipalTag/team":null}}"#,
                "Statement[1].Condition.StringEquals.aws:PrincipalTag/team: expected string or list of strings",
            ),
            (
                r#"{"StringEquals":{"aws:PrincipalTag/team":[]}}"#,
                "Statement[1].Condition.StringEquals.aws:PrincipalTag/team: expected at least one value",
            ),
            (
                r#"{"StringEqualz":{"k":"v"}}"#,
                "Statement[1].Condition.StringEqualz: unknown condition operator `StringEqualz`",
            ),
            (
                r#"{"ForAnyValue:Null":{"k":"true"}}"#,
                "Statement[1].Condition.ForAnyValue:Null: condition operator `ForAnyValue:Null` is not supported",
            ),
            (
                r#"{"NumericLessThan":{"s3:max-keys":["10","ten"]}}"#,
                "Statement[1].Condition.NumericLessThan.s3:max-keys[1]: invalid value `ten` for `NumericLessThan`: expected a number",
            ),
            (
                r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#,
                "Statement[1].Condition.IpAddress.aws:SourceIp: invalid value `10.0.0.0/33` for `IpAddress`: expected an IP address or CIDR block",
            ),
            (
                r#"{"StringLike":{"s3:prefix":"${}"}}"#,
                "Statement[1].Condition.StringLike.s3:prefix: invalid policy variable in `${}`: empty variable name",
            ),
            (
                r#"{"StringEquals":"v"}"#,
                "Statement[1].Condition.StringEquals: expected object mapping condition keys to values",
            ),
            (
                r#"[]"#,
                "Statement[1].Condition: expected object mapping condition operators to keys",
            ),
            (
                r#"{"StringEquals":{"":"v"}}"#,
                "Statement[1].Condition.StringEquals.: empty string",
            ),
            (
                r#"{"StringEquals":{"k":"a","k":"b"}}"#,
                "Statement[1].Condition.StringEquals: duplicate key `k`",
            ),
        ];
        for (condition, expected) in cases {
            let got = statement_error(&format!(
                r#"{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{condition}}}"#
            ));
            assert!(got.starts_with(expected), "{condition}: got {got:?}");
        }
    }

    #[test]
    fn accepted_shapes() {
        let cases: &[&str] = &[
            r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#,
            r#"{"Version":"2008-10-17","Statement":[]}"#,
            r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"","Effect":"Deny","NotAction":["s3:*"],"NotResource":"arn:aws:s3:::b"}]}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"*","Condition":{"NumericLessThanEquals":{"s3:max-keys":10},"Bool":{"aws:SecureTransport":true}}}}"#,
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${unclosed"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"*","Principal":{"AWS":["111122223333","*"],"Service":"s.amazonaws.com"}}}"#,
        ];
        for text in cases {
            if let Err(err) = Policy::parse(text) {
                panic!("{text}: {err}");
            }
        }
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let policy = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Condition":{"NumericLessThanEquals":{"s3:max-keys":[10, 2.5]},"Bool":{"aws:SecureTransport":true}}}}"#,
        )
        .unwrap();
        let raw: Vec<&str> = policy.statements()[0]
            .conditions()
            .iter()
            .flat_map(|c| c.values().iter().map(ConditionValue::raw))
            .collect();
        assert_eq!(raw, ["10", "2.5", "true"]);
    }
}
