//! IAM policy model and evaluator for trainyard.
//!
//! trainyard runs many tenants' training jobs under one execution role. What keeps one
//! tenant out of another's data is attribute-based access control: the job's session
//! carries tags such as `tenant-id`, and every data access is checked against IAM
//! policy documents in which `${aws:PrincipalTag/tenant-id}` is substituted. This crate
//! is that check. It is pure, synchronous and free of I/O so that it can be tested
//! exhaustively and called from anywhere (the embedded S3 store, the data plane, the
//! `trainyard policy eval` command).
//!
//! - [`Policy`] parses and validates a policy document; malformed documents are refused
//!   with an error naming the element at fault ([`PolicyError`]).
//! - [`Request`] describes one access: principal, tags, action, resource and condition
//!   keys, built with [`Request::builder`].
//! - [`evaluate`] and [`PolicySet`] combine identity, session and resource policies and
//!   return a [`Response`]: a [`Decision`] plus [`Diagnostics`]. A denial is a decision,
//!   never an error.
//!
//! ```
//! use trainyard_iam::{evaluate, Decision, Policy, Request};
//!
//! let tenant_policy = Policy::parse(r#"{"Version":"2012-10-17","Statement":[
//!  {"Sid":"TenantObjects","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],
//!   "Resource":"arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*"},
//!  {"Sid":"TenantList","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::shared-bucket",
//!   "Condition":{"StringLike":{"s3:prefix":["${aws:PrincipalTag/tenant-id}/*","${aws:PrincipalTag/tenant-id}/"]}}}]}"#)?;
//!
//! let list = Request::builder()
//!     .principal_arn("arn:aws:sts::111122223333:assumed-role/exec/job-1")
//!     .principal_tag("tenant-id", "a")
//!     .action("s3:ListBucket")
//!     .resource("arn:aws:s3:::shared-bucket")
//!     .context("s3:prefix", ["a/"])
//!     .build()?;
//! let response = evaluate(&[tenant_policy], None, &list);
//! assert_eq!(response.decision, Decision::Allow);
//! assert_eq!(response.diagnostics.matched[0].id(), "TenantList");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![warn(clippy::allow_attributes_without_reason)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod arn;
mod condition;
mod context;
mod error;
mod eval;
mod pattern;
mod policy;
mod variables;

pub use arn::{Arn, ArnError};
pub use condition::{Condition, ConditionValue, Operator, OperatorKind, SetQualifier};
pub use context::{Context, Request, RequestBuilder, RequestError};
pub use error::{ElementPath, InvalidReason, PolicyError};
pub use eval::{
    Decision, Diagnostics, EvaluationError, PolicySet, PolicySource, Response, StatementRef,
    evaluate,
};
pub use pattern::{Pattern, wildcard_match};
pub use policy::{
    ActionClause, ActionPattern, Effect, OneOrMany, Policy, Principal, PrincipalClause,
    PrincipalMatch, PrincipalType, ResourceClause, ResourcePattern, Statement, Version,
};
pub use variables::{Template, Variable, VariableError};
