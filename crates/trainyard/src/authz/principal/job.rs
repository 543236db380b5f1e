//! The job principal: what a training job's data plane runs as. SageMaker assumes the job's
//! execution role as the service `sagemaker.amazonaws.com`; trainyard does the same check
//! against the role's trust policy (and `sts:TagSession` when the creator's session tags are
//! chained), then evaluates every object access of the job as this session
//! ([`crate::authz::client::AuthorizingClient`]).

use std::path::PathBuf;
use std::sync::Arc;

use trainyard_iam::{Policy, PolicySet, Request, Response};

use super::{
    AuthorizeError, ContextKeys, EvaluationFailure, SessionTag, authorize_response, evaluate_for,
    merge_tags, validate_tags,
};
use crate::identity::{Identity, session_arn};

/// What a training job's data plane runs as: the execution role's session, with the
/// role's permission policies and the principal tags the job was given.
#[derive(Debug, Clone)]
pub struct JobPrincipal {
    arn: String,
    policies: Vec<Arc<Policy>>,
    tags: Vec<SessionTag>,
}

impl JobPrincipal {
    /// A job principal from its parts (see [`crate::identity::Identity::job_principal`]
    /// for the one built from configuration).
    pub fn new(arn: impl Into<String>, policies: Vec<Arc<Policy>>, tags: Vec<SessionTag>) -> Self {
        JobPrincipal {
            arn: arn.into(),
            policies,
            tags,
        }
    }

    /// The session ARN, e.g. `arn:aws:sts::<acct>:assumed-role/<role>/SageMaker`.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The permission policies.
    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }

    /// The principal tags (`aws:PrincipalTag/<key>`).
    pub fn tags(&self) -> &[SessionTag] {
        &self.tags
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
            &self.tags,
            &self.policies,
            None,
            action,
            resource,
            context,
        )
    }

    /// `Ok` when the policies allow `action` on `resource`.
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

/// The service principal that assumes execution roles for training jobs.
pub const SAGEMAKER_SERVICE: &str = "sagemaker.amazonaws.com";
/// The role session name of a job's execution-role session (as SageMaker uses).
pub const JOB_SESSION_NAME: &str = "SageMaker";

/// Why a job's execution-role principal could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobPrincipalError {
    /// No role with this ARN is configured.
    #[error(
        "Could not assume role {role_arn}: no role with this ARN is configured in {config} \
         (the ARN is arn:aws:iam::<AccountId>:role<Path><RoleName>)"
    )]
    RoleNotFound {
        /// The job's `RoleArn`.
        role_arn: String,
        /// The configuration file.
        config: PathBuf,
    },
    /// The role's trust policy does not let SageMaker assume it (or tag the session).
    #[error(
        "Could not assume role {role_arn}: its trust policy does not allow principal \
         '{SAGEMAKER_SERVICE}' to perform {action}{hint}",
        hint = if *action == "sts:TagSession" { " (needed because EnableSessionTagChaining passes the caller's session tags)" } else { "" }
    )]
    TrustDenied {
        /// The job's `RoleArn`.
        role_arn: String,
        /// `sts:AssumeRole` or `sts:TagSession`.
        action: &'static str,
    },
    /// The tags to chain break STS's tag rules.
    #[error("Could not assume role {role_arn} with the caller's session tags: {message}")]
    InvalidTags {
        /// The job's `RoleArn`.
        role_arn: String,
        /// Which tag, and why.
        message: String,
    },
    /// The trust check could not be evaluated.
    #[error(transparent)]
    Evaluation(#[from] EvaluationFailure),
}

impl Identity {
    /// The principal a training job's data plane runs as: the execution role `role_arn`,
    /// assumed by `sagemaker.amazonaws.com`, with the role's permission policies. With
    /// `enable_session_tag_chaining`, the creating caller's session tags
    /// (`Principal::session_tags`) become the job's principal tags (over the role's own
    /// tags), and the trust policy must also allow `sts:TagSession`; without it the job gets
    /// the role's tags only.
    pub fn job_principal(
        &self,
        role_arn: &str,
        creator_session_tags: &[SessionTag],
        enable_session_tag_chaining: bool,
    ) -> Result<JobPrincipal, JobPrincipalError> {
        let role =
            self.config()
                .role_by_arn(role_arn)
                .ok_or_else(|| JobPrincipalError::RoleNotFound {
                    role_arn: role_arn.to_owned(),
                    config: self.config().source().to_path_buf(),
                })?;
        let chained: &[SessionTag] = if enable_session_tag_chaining {
            creator_session_tags
        } else {
            &[]
        };
        validate_tags(chained).map_err(|message| JobPrincipalError::InvalidTags {
            role_arn: role_arn.to_owned(),
            message,
        })?;
        let mut actions = vec!["sts:AssumeRole"];
        if !chained.is_empty() {
            actions.push("sts:TagSession");
        }
        for action in actions {
            let mut builder = Request::builder()
                .principal_service(SAGEMAKER_SERVICE)
                .action(action)
                .resource(&role.arn)
                .context("aws:TagKeys", chained.iter().map(|t| t.key.as_str()))
                .context_value("sts:RoleSessionName", JOB_SESSION_NAME);
            for tag in chained {
                builder = builder.context_value(&format!("aws:RequestTag/{}", tag.key), &tag.value);
            }
            let request = builder.build().map_err(|source| EvaluationFailure {
                principal_arn: SAGEMAKER_SERVICE.to_owned(),
                action: action.to_owned(),
                resource: role.arn.clone(),
                source,
            })?;
            let response = PolicySet::new()
                .resource(&role.trust_policy)
                .evaluate(&request);
            if !response.is_allowed() {
                return Err(JobPrincipalError::TrustDenied {
                    role_arn: role_arn.to_owned(),
                    action,
                });
            }
        }
        Ok(JobPrincipal::new(
            session_arn(self.account_id(), &role.name, JOB_SESSION_NAME),
            role.policies.iter().map(|p| p.document.clone()).collect(),
            merge_tags(&role.tags, chained),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_principal_chains_tags_only_when_enabled() {
        const CREATOR: &str = "arn:aws:iam::111122223333:role/creator";
        let identity = crate::identity::testing::identity();
        let tags = vec![SessionTag::new("tenant-id", "acme")];
        let exec = "arn:aws:iam::111122223333:role/exec";
        let job = identity.job_principal(exec, &tags, true).unwrap();
        assert_eq!(
            job.arn(),
            "arn:aws:sts::111122223333:assumed-role/exec/SageMaker"
        );
        assert_eq!(job.tags(), tags.as_slice());
        job.authorize("s3:GetObject", "arn:aws:s3:::shared-bucket/acme/x", &[])
            .unwrap();

        let untagged = identity.job_principal(exec, &tags, false).unwrap();
        assert!(untagged.tags().is_empty());
        assert!(
            untagged
                .authorize("s3:GetObject", "arn:aws:s3:::shared-bucket/acme/x", &[])
                .is_err()
        );

        let error = identity
            .job_principal("arn:aws:iam::111122223333:role/missing", &tags, true)
            .unwrap_err();
        assert!(matches!(error, JobPrincipalError::RoleNotFound { .. }));
        assert!(error.to_string().contains("/test/iam.json"), "{error}");

        // The role trusts SageMaker for AssumeRole but not TagSession: fine without tags.
        let no_tag = "arn:aws:iam::111122223333:role/exec-untagged";
        identity.job_principal(no_tag, &tags, false).unwrap();
        identity.job_principal(no_tag, &[], true).unwrap();
        let error = identity.job_principal(no_tag, &tags, true).unwrap_err();
        assert_eq!(
            error,
            JobPrincipalError::TrustDenied {
                role_arn: no_tag.into(),
                action: "sts:TagSession"
            }
        );
        // A role that does not trust SageMaker at all.
        let error = identity.job_principal(CREATOR, &[], false).unwrap_err();
        assert!(
            error.to_string().contains("sagemaker.amazonaws.com"),
            "{error}"
        );
    }
}
