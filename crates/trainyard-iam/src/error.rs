//! Errors for policies that cannot be loaded.
//!
//! Only malformed input is an error here. A request that is denied is a
//! [`Decision`](crate::Decision), never an `Err`, and problems met while evaluating a
//! well-formed policy (an unresolvable variable, a context value that is not a number)
//! are reported as [`Diagnostics`](crate::Diagnostics). That keeps "the policy is
//! broken" (refuse it when it is stored) apart from "this request is not allowed"
//! (normal operation).
//!
//! Every load error names the element at fault with a path such as
//! `Statement[1].Condition.StringEquals.aws:PrincipalTag/team`, so that a tenant who
//! uploads a policy can find the mistake without reading evaluator code.

use std::fmt;

use crate::variables::VariableError;

/// Where in a policy document an element sits, e.g. `Statement[1].Resource[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ElementPath(Vec<PathSegment>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PathSegment {
    Key(String),
    Index(usize),
}

impl ElementPath {
    /// The path of the document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by an object key.
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(PathSegment::Key(key.to_owned()));
        path
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(PathSegment::Index(index));
        path
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ElementPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("policy");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if i == 0 => f.write_str(key)?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A policy document that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("policy is not valid JSON at line {line}, column {column}")]
    Json {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON does not follow the IAM policy grammar.
    #[error("{path}: {reason}")]
    Invalid {
        /// The offending element.
        path: ElementPath,
        /// What is wrong with it.
        reason: InvalidReason,
    },
}

impl PolicyError {
    pub(crate) fn invalid(path: &ElementPath, reason: InvalidReason) -> Self {
        Self::Invalid {
            path: path.clone(),
            reason,
        }
    }

    /// The offending element, for grammar errors.
    pub fn path(&self) -> Option<&ElementPath> {
        match self {
            Self::Json { .. } => None,
            Self::Invalid { path, .. } => Some(path),
        }
    }

    /// What is wrong, for grammar errors.
    pub fn reason(&self) -> Option<&InvalidReason> {
        match self {
            Self::Json { .. } => None,
            Self::Invalid { reason, .. } => Some(reason),
        }
    }
}

/// What is wrong with a policy element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The element has the wrong JSON type.
    #[error("expected {expected}")]
    ExpectedType {
        /// What was expected, e.g. `string or list of strings`.
        expected: &'static str,
    },
    /// An object has a key the grammar does not allow here.
    #[error("unknown key `{key}`")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// An object has the same key twice.
    #[error("duplicate key `{key}`")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A required element is absent.
    #[error("missing {element}")]
    Missing {
        /// The element, e.g. `` `Action` or `NotAction` ``.
        element: &'static str,
    },
    /// Two mutually exclusive elements are both present.
    #[error("`{first}` and `{second}` cannot both be present")]
    Conflict {
        /// The first element.
        first: &'static str,
        /// The second element.
        second: &'static str,
    },
    /// A list that must have members is empty.
    #[error("expected at least one value")]
    EmptyList,
    /// `Version` is not one IAM knows.
    #[error("unsupported version `{version}`: expected `2012-10-17` or `2008-10-17`")]
    UnsupportedVersion {
        /// The version given.
        version: String,
    },
    /// `Effect` is neither `Allow` nor `Deny`.
    #[error("invalid effect `{effect}`: expected `Allow` or `Deny`")]
    InvalidEffect {
        /// The effect given.
        effect: String,
    },
    /// An action is not `*` or `service:action`.
    #[error("invalid action `{action}`: expected `*` or `service:action`")]
    InvalidAction {
        /// The action given.
        action: String,
    },
    /// A resource, principal or condition key is empty.
    #[error("empty string")]
    EmptyString,
    /// A `Principal` map has a key other than `AWS`, `Service`, `Federated` or
    /// `CanonicalUser`.
    #[error(
        "unknown principal type `{kind}`: expected `AWS`, `Service`, `Federated` or `CanonicalUser`"
    )]
    UnknownPrincipalType {
        /// The key given.
        kind: String,
    },
    /// A condition operator name is not known.
    #[error("unknown condition operator `{operator}`")]
    UnknownOperator {
        /// The name given.
        operator: String,
    },
    /// A known operator is combined with a qualifier it does not support.
    #[error("condition operator `{operator}` is not supported: {why}")]
    UnsupportedOperator {
        /// The name given.
        operator: String,
        /// Why not.
        why: &'static str,
    },
    /// A condition value does not fit its operator.
    #[error("invalid value `{value}` for `{operator}`: expected {expected}")]
    InvalidConditionValue {
        /// The operator.
        operator: String,
        /// The value given.
        value: String,
        /// What the operator needs, e.g. `a number`.
        expected: &'static str,
    },
    /// A `${…}` reference is malformed.
    #[error("invalid policy variable in `{value}`: {error}")]
    InvalidVariable {
        /// The whole string containing the reference.
        value: String,
        /// What is wrong with it.
        error: VariableError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_display() {
        let root = ElementPath::root();
        let cases: &[(ElementPath, &str)] = &[
            (root.clone(), "policy"),
            (root.key("Version"), "Version"),
            (root.key("Statement").index(1), "Statement[1]"),
            (
                root.key("Statement")
                    .index(1)
                    .key("Condition")
                    .key("StringEquals")
                    .key("aws:PrincipalTag/team"),
                "Statement[1].Condition.StringEquals.aws:PrincipalTag/team",
            ),
            (
                root.key("Statement").key("Resource").index(0),
                "Statement.Resource[0]",
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(path.to_string(), *expected);
        }
    }

    #[test]
    fn invalid_message() {
        let err = PolicyError::invalid(
            &ElementPath::root().key("Statement").index(0),
            InvalidReason::ExpectedType {
                expected: "string or list of strings",
            },
        );
        assert_eq!(
            err.to_string(),
            "Statement[0]: expected string or list of strings"
        );
        assert!(err.path().is_some());
    }
}
