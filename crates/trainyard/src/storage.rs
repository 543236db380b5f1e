//! Which object client serves a location.
//!
//! `s3://` locations go to the embedded directory store under `$TRAINYARD_HOME/store`, or to
//! an S3-compatible service when one is configured (`Settings::object_store`); `file://`
//! locations go to the local file system. Nothing downstream knows which.

use std::sync::Arc;

use trainyard_s3::{DirStore, Location, ObjectClient, S3Client};

use crate::config::{ObjectStore, Settings};

/// A resolved location: the client that serves it, and the bucket/key in that client's terms.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The client.
    pub client: Arc<dyn ObjectClient>,
    /// Bucket (empty for `file://`).
    pub bucket: String,
    /// Key or prefix.
    pub key: String,
}

/// Object clients of one installation.
#[derive(Debug, Clone)]
pub struct Storage {
    s3: Arc<dyn ObjectClient>,
    files: Arc<dyn ObjectClient>,
}

impl Storage {
    /// The clients the settings call for.
    pub fn new(settings: &Settings) -> Result<Self, trainyard_s3::ConfigError> {
        let s3: Arc<dyn ObjectClient> = match &settings.object_store {
            ObjectStore::Embedded => Arc::new(DirStore::embedded(settings.store_root())),
            ObjectStore::S3(cfg) => Arc::new(S3Client::new((**cfg).clone())?),
        };
        Ok(Storage {
            s3,
            files: Arc::new(DirStore::file_tree()),
        })
    }

    /// The S3 endpoint jobs should use for their own S3 access, when it is not AWS itself.
    pub fn s3_endpoint(settings: &Settings) -> Option<String> {
        match &settings.object_store {
            ObjectStore::S3(cfg) => cfg.endpoint.clone(),
            ObjectStore::Embedded => None,
        }
    }

    /// The credentials trainyard itself uses for an S3-compatible store, which a job of a
    /// single-tenant installation is given too (as SageMaker local mode passes the caller's
    /// credentials into the container), so code in the job that reads the store directly (the
    /// toolkit's source download, a user's boto3 calls) works.
    pub fn store_credentials(settings: &Settings) -> Option<trainyard_s3::S3Credentials> {
        match &settings.object_store {
            ObjectStore::S3(cfg) => cfg.credentials.clone(),
            ObjectStore::Embedded => None,
        }
    }

    /// The same clients, except that the S3-compatible store is accessed with temporary
    /// credentials of `role_arn` carrying `tags`, obtained from the store's STS
    /// (`TRAINYARD_STORE_STS`): the store then enforces the role's policies itself. `None`
    /// when no STS is configured or the store is the embedded one.
    pub fn assuming(
        &self,
        settings: &Settings,
        role_arn: &str,
        session_name: &str,
        tags: &[(String, String)],
    ) -> Option<Result<Self, trainyard_s3::ConfigError>> {
        let (ObjectStore::S3(cfg), Some(sts)) = (&settings.object_store, &settings.store_sts)
        else {
            return None;
        };
        let role = trainyard_s3::AssumeRole {
            sts_endpoint: (sts != "aws").then(|| sts.clone()),
            role_arn: role_arn.to_string(),
            session_name: session_name.chars().take(64).collect(),
            transitive_tag_keys: tags.iter().map(|(k, _)| k.clone()).collect(),
            tags: tags.to_vec(),
            duration_seconds: 3600,
        };
        Some(
            S3Client::new((**cfg).clone().with_assume_role(role)).map(|c| Storage {
                s3: Arc::new(c),
                files: self.files.clone(),
            }),
        )
    }

    /// The same clients seen through a job's principal: every object access is authorized
    /// against its policies first (ABAC), and `file://` locations are refused, since a tenant's
    /// job must not reach the server's own file system.
    pub fn authorized(&self, principal: crate::identity::JobPrincipal) -> Self {
        use crate::authz::client::{AuthorizingClient, LocalPaths};
        Storage {
            s3: Arc::new(AuthorizingClient::new(self.s3.clone(), principal.clone())),
            files: Arc::new(
                AuthorizingClient::new(self.files.clone(), principal)
                    .with_local_paths(LocalPaths::Deny),
            ),
        }
    }

    /// Resolves a parsed location.
    pub fn resolve(&self, loc: &Location) -> Resolved {
        match loc {
            Location::S3(u) => Resolved {
                client: self.s3.clone(),
                bucket: u.bucket.clone(),
                key: u.key.clone(),
            },
            Location::File(p) => Resolved {
                client: self.files.clone(),
                bucket: String::new(),
                key: p.to_string_lossy().trim_start_matches('/').to_string(),
            },
        }
    }
}
