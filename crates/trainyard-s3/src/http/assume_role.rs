//! Credentials from STS `AssumeRole`, refreshed before they expire.
//!
//! Why: when the object store has an STS of its own (AWS, or a service that speaks the STS
//! query protocol), a job's data access should be checked by the store itself, as the job's
//! execution role with its session tags, not only by trainyard. What: an [`AssumeRole`]
//! description in [`super::S3Config`] makes the client sign with temporary credentials that
//! a provider obtains from `AssumeRole` (with `Tags` and `TransitiveTagKeys`), using the
//! configured static credentials as the caller. The SDK's identity cache asks the provider
//! again shortly before the credentials' expiration, so a job longer than one session works.

use std::fmt;

use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
use aws_sdk_s3::config::Credentials;

use super::S3Credentials;

/// What to assume, and where.
#[derive(Clone, PartialEq, Eq)]
pub struct AssumeRole {
    /// The STS endpoint (`None`: the region's AWS endpoint).
    pub sts_endpoint: Option<String>,
    /// The role.
    pub role_arn: String,
    /// `RoleSessionName` (2 to 64 of `[\w+=,.@-]`).
    pub session_name: String,
    /// Session tags.
    pub tags: Vec<(String, String)>,
    /// Tag keys that stay with the session through role chaining.
    pub transitive_tag_keys: Vec<String>,
    /// `DurationSeconds` (900 to the role's maximum).
    pub duration_seconds: i32,
}

impl fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRole")
            .field("sts_endpoint", &self.sts_endpoint)
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("tags", &self.tags)
            .field("duration_seconds", &self.duration_seconds)
            .finish()
    }
}

/// Calls `AssumeRole` whenever the SDK needs credentials.
#[derive(Debug)]
pub(crate) struct AssumeRoleProvider {
    sts: aws_sdk_sts::Client,
    role: AssumeRole,
}

impl AssumeRoleProvider {
    pub(crate) fn new(
        role: AssumeRole,
        region: &str,
        caller: Option<&S3Credentials>,
        http: aws_sdk_s3::config::SharedHttpClient,
    ) -> Self {
        let mut b = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::v2025_08_07())
            .region(aws_sdk_sts::config::Region::new(region.to_string()))
            .http_client(http);
        if let Some(ep) = &role.sts_endpoint {
            b = b.endpoint_url(ep.trim_end_matches('/'));
        }
        if let Some(c) = caller {
            b = b.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "trainyard",
            ));
        }
        AssumeRoleProvider {
            sts: aws_sdk_sts::Client::from_conf(b.build()),
            role,
        }
    }

    async fn assume(&self) -> provider::Result {
        let r = &self.role;
        let mut req = self
            .sts
            .assume_role()
            .role_arn(&r.role_arn)
            .role_session_name(&r.session_name)
            .duration_seconds(r.duration_seconds);
        for (k, v) in &r.tags {
            req = req.tags(
                aws_sdk_sts::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(CredentialsError::invalid_configuration)?,
            );
        }
        for k in &r.transitive_tag_keys {
            req = req.transitive_tag_keys(k);
        }
        let out = req.send().await.map_err(|e| {
            CredentialsError::provider_error(format!(
                "AssumeRole {} failed: {}",
                r.role_arn,
                aws_sdk_sts::error::DisplayErrorContext(&e)
            ))
        })?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(format!(
                "AssumeRole {} returned no credentials",
                r.role_arn
            ))
        })?;
        let expiry = std::time::SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "trainyard-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumeRoleProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.assume())
    }
}
