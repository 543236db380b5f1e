//! Object storage that checks every call against the job's IAM policies first.
//!
//! Tenants share one server and one execution role, so the storage backend cannot tell
//! them apart: on the embedded store nobody else checks anything, and against a real S3
//! service trainyard signs with its own credentials. What keeps a job inside its tenant's
//! data is this wrapper. Every call is turned into the IAM request S3 itself would
//! authorize and evaluated against the job principal's policies, with its session tags as
//! `aws:PrincipalTag/*`, *before* the call reaches the backend:
//!
//! | call | action | resource | condition keys |
//! |---|---|---|---|
//! | `list_page`, `list_all` | `s3:ListBucket` | `arn:aws:s3:::<bucket>` | `s3:prefix` (and `s3:delimiter` when given) |
//! | `head`, `get`, `local_file` | `s3:GetObject` | `arn:aws:s3:::<bucket>/<key>` | |
//! | `put` | `s3:PutObject` | `arn:aws:s3:::<bucket>/<key>` | |
//! | `delete` | `s3:DeleteObject` | `arn:aws:s3:::<bucket>/<key>` | |
//!
//! A refusal is `ObjectError::AccessDenied` naming the action, the resource and whether the
//! deny was explicit (a `Deny` statement, named) or implicit (nothing allows it); nothing is
//! forwarded. `local_file` (the embedded store's zero-copy shortcut) returns `None` when a
//! get would be refused, and the caller's later `get` reports the denial.
//!
//! `file://` locations (empty bucket) are local paths of the server, not S3 resources, and
//! no IAM policy can name them (`arn:aws:s3:::` is meaningless). They are therefore not
//! evaluated; [`LocalPaths`] decides whether they pass through unchecked (the default,
//! for single-user installations) or are refused outright (for multi-tenant servers, where
//! a local path would bypass ABAC).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use trainyard_s3::{GetObject, ListPage, ObjectClient, ObjectError, ObjectMeta, PutBody};

use super::principal::{AuthorizeError, JobPrincipal};

/// What to do with `file://` locations (empty bucket), which IAM policies cannot describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalPaths {
    /// Forward them without evaluation.
    #[default]
    PassThrough,
    /// Refuse them with `AccessDenied`.
    Deny,
}

/// An [`ObjectClient`] that authorizes every call as the job principal before forwarding it.
#[derive(Debug, Clone)]
pub struct AuthorizingClient {
    inner: Arc<dyn ObjectClient>,
    principal: Arc<JobPrincipal>,
    local_paths: LocalPaths,
}

impl AuthorizingClient {
    /// Wraps `inner`; calls are evaluated as `principal`. `file://` locations pass through
    /// (see [`AuthorizingClient::with_local_paths`]).
    pub fn new(inner: Arc<dyn ObjectClient>, principal: JobPrincipal) -> Self {
        AuthorizingClient {
            inner,
            principal: Arc::new(principal),
            local_paths: LocalPaths::default(),
        }
    }

    /// Sets what happens to `file://` locations.
    pub fn with_local_paths(mut self, local_paths: LocalPaths) -> Self {
        self.local_paths = local_paths;
        self
    }

    /// The principal calls are evaluated as.
    pub fn principal(&self) -> &JobPrincipal {
        &self.principal
    }

    /// The wrapped client.
    pub fn inner(&self) -> &Arc<dyn ObjectClient> {
        &self.inner
    }

    /// `Ok` when `action` on the bucket (`key` = `None`) or object is allowed.
    fn check(
        &self,
        action: &'static str,
        bucket: &str,
        key: Option<&str>,
        context: &[(&str, Vec<String>)],
    ) -> Result<(), ObjectError> {
        if bucket.is_empty() {
            return match self.local_paths {
                LocalPaths::PassThrough => Ok(()),
                LocalPaths::Deny => {
                    let resource = format!("file:///{}", key.unwrap_or_default());
                    tracing::warn!(principal = %self.principal.arn(), action, %resource, "local path refused");
                    Err(ObjectError::AccessDenied {
                        action: action.to_owned(),
                        resource,
                        message: "local paths (file://) are not allowed for this job".to_owned(),
                    })
                }
            };
        }
        let resource = match key {
            Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
            None => format!("arn:aws:s3:::{bucket}"),
        };
        let message = match self.principal.authorize(action, &resource, context) {
            Ok(()) => {
                tracing::trace!(principal = %self.principal.arn(), action, %resource, "object access allowed");
                return Ok(());
            }
            Err(AuthorizeError::Denied(denial)) if denial.is_explicit() => format!(
                "explicit deny by statement {} for {}",
                denial.statements.join(", "),
                denial.principal_arn
            ),
            Err(AuthorizeError::Denied(denial)) => format!(
                "implicit deny: no policy of {} allows it",
                denial.principal_arn
            ),
            Err(AuthorizeError::Evaluation(failure)) => {
                format!("the request cannot be evaluated, so it is denied: {failure}")
            }
        };
        tracing::warn!(principal = %self.principal.arn(), action, %resource, %message, "object access denied");
        Err(ObjectError::AccessDenied {
            action: action.to_owned(),
            resource,
            message,
        })
    }

    fn check_list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(), ObjectError> {
        let mut context = vec![("s3:prefix", vec![prefix.to_owned()])];
        if let Some(d) = delimiter {
            context.push(("s3:delimiter", vec![d.to_owned()]));
        }
        let key = bucket.is_empty().then_some(prefix);
        self.check("s3:ListBucket", bucket, key, &context)
    }
}

#[async_trait]
impl ObjectClient for AuthorizingClient {
    fn describe(&self) -> String {
        format!("{} as {}", self.inner.describe(), self.principal.arn())
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        self.check_list(bucket, prefix, delimiter)?;
        self.inner
            .list_page(bucket, prefix, delimiter, continuation)
            .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        self.check("s3:GetObject", bucket, Some(key), &[])?;
        self.inner.head(bucket, key).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        self.check("s3:GetObject", bucket, Some(key), &[])?;
        self.inner.get(bucket, key, range).await
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        self.check("s3:PutObject", bucket, Some(key), &[])?;
        self.inner.put(bucket, key, body).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.check("s3:DeleteObject", bucket, Some(key), &[])?;
        self.inner.delete(bucket, key).await
    }

    fn local_file(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        self.check("s3:GetObject", bucket, Some(key), &[]).ok()?;
        self.inner.local_file(bucket, key)
    }

    fn list_all<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<ObjectMeta, ObjectError>> {
        match self.check_list(bucket, prefix, None) {
            Ok(()) => self.inner.list_all(bucket, prefix),
            Err(denied) => futures::stream::once(async move { Err(denied) }).boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use trainyard_iam::Policy;
    use trainyard_s3::{DirStore, ObjectClientExt};

    use super::*;
    use crate::identity::testing::{self, TENANT_POLICY};
    use crate::identity::{AssumeRoleInput, SessionTag};

    const BUCKET: &str = "shared-bucket";

    fn principal(policy: &str, tags: &[(&str, &str)]) -> JobPrincipal {
        JobPrincipal::new(
            "arn:aws:sts::111122223333:assumed-role/exec/SageMaker",
            vec![Arc::new(Policy::parse(policy).unwrap())],
            tags.iter().map(|(k, v)| SessionTag::new(*k, *v)).collect(),
        )
    }

    async fn seeded_store() -> (tempfile::TempDir, Arc<dyn ObjectClient>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectClient> = Arc::new(DirStore::embedded(dir.path()));
        for key in [
            "a/data/1.txt",
            "a/data/2.txt",
            "b/data/1.txt",
            "b/secret.txt",
            "c.txt",
        ] {
            store
                .put(BUCKET, key, PutBody::Bytes(Bytes::from(key.to_owned())))
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[track_caller]
    fn assert_denied<T: std::fmt::Debug>(
        result: Result<T, ObjectError>,
        action: &str,
        resource: &str,
        kind: &str,
    ) {
        match result {
            Err(ObjectError::AccessDenied {
                action: a,
                resource: r,
                message,
            }) => {
                assert_eq!((a.as_str(), r.as_str()), (action, resource), "{message}");
                assert!(message.contains(kind), "{message}");
            }
            other => panic!("expected AccessDenied for {action} on {resource}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tenant_matrix() {
        let (_dir, store) = seeded_store().await;
        for (me, other) in [("a", "b"), ("b", "a")] {
            let client = AuthorizingClient::new(
                store.clone(),
                principal(TENANT_POLICY, &[("tenant-id", me)]),
            );
            // Own prefix: list, read, write.
            let page = client
                .list_page(BUCKET, &format!("{me}/"), None, None)
                .await
                .unwrap();
            assert_eq!(page.objects.len(), 2);
            assert!(
                page.objects
                    .iter()
                    .all(|o| o.key.starts_with(&format!("{me}/")))
            );
            let page = client
                .list_page(BUCKET, &format!("{me}/"), Some("/"), None)
                .await
                .unwrap();
            assert!(!page.common_prefixes.is_empty() || !page.objects.is_empty());
            assert_eq!(
                client
                    .list_vec(BUCKET, &format!("{me}/data/"))
                    .await
                    .unwrap()
                    .len(),
                1 + usize::from(me == "a")
            );
            let own = format!("{me}/data/1.txt");
            assert_eq!(
                client.get_bytes(BUCKET, &own).await.unwrap(),
                Bytes::from(own.clone())
            );
            assert_eq!(
                client.head(BUCKET, &own).await.unwrap().size,
                own.len() as u64
            );
            assert!(client.local_file(BUCKET, &own).is_some());
            client
                .put(
                    BUCKET,
                    &format!("{me}/out/model.tar.gz"),
                    PutBody::Bytes(Bytes::from_static(b"m")),
                )
                .await
                .unwrap();

            // The other tenant's prefix: every call denied, naming its action.
            let theirs = format!("{other}/data/1.txt");
            let object_arn = format!("arn:aws:s3:::{BUCKET}/{theirs}");
            let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
            assert_denied(
                client
                    .list_page(BUCKET, &format!("{other}/"), None, None)
                    .await,
                "s3:ListBucket",
                &bucket_arn,
                "implicit deny",
            );
            let listed: Vec<_> = client
                .list_all(BUCKET, &format!("{other}/"))
                .collect()
                .await;
            assert_eq!(listed.len(), 1);
            assert_denied(
                listed.into_iter().next().unwrap(),
                "s3:ListBucket",
                &bucket_arn,
                "implicit deny",
            );
            assert_denied(
                client.get(BUCKET, &theirs, None).await,
                "s3:GetObject",
                &object_arn,
                "implicit deny",
            );
            assert_denied(
                client.get(BUCKET, &theirs, Some(0..1)).await,
                "s3:GetObject",
                &object_arn,
                "implicit deny",
            );
            assert_denied(
                client.head(BUCKET, &theirs).await,
                "s3:GetObject",
                &object_arn,
                "implicit deny",
            );
            assert!(client.local_file(BUCKET, &theirs).is_none());
            let planted = format!("{other}/planted");
            assert_denied(
                client
                    .put(BUCKET, &planted, PutBody::Bytes(Bytes::from_static(b"x")))
                    .await,
                "s3:PutObject",
                &format!("arn:aws:s3:::{BUCKET}/{planted}"),
                "implicit deny",
            );
            assert!(
                store
                    .head(BUCKET, &planted)
                    .await
                    .unwrap_err()
                    .is_not_found(),
                "a denied put must not reach the store"
            );
            // Deleting is not granted by the policy, not even for the own prefix.
            assert_denied(
                client.delete(BUCKET, &own).await,
                "s3:DeleteObject",
                &format!("arn:aws:s3:::{BUCKET}/{own}"),
                "implicit deny",
            );
            assert!(store.head(BUCKET, &own).await.is_ok());
            // The whole bucket, a prefix without its slash, and other buckets.
            assert_denied(
                client.list_page(BUCKET, "", None, None).await,
                "s3:ListBucket",
                &bucket_arn,
                "implicit deny",
            );
            assert_denied(
                client.list_page(BUCKET, me, None, None).await,
                "s3:ListBucket",
                &bucket_arn,
                "implicit deny",
            );
            assert_denied(
                client.get(BUCKET, "c.txt", None).await,
                "s3:GetObject",
                &format!("arn:aws:s3:::{BUCKET}/c.txt"),
                "implicit deny",
            );
            assert_denied(
                client.get("other-bucket", &own, None).await,
                "s3:GetObject",
                &format!("arn:aws:s3:::other-bucket/{own}"),
                "implicit deny",
            );
        }
    }

    #[tokio::test]
    async fn a_principal_without_tags_is_denied_everything() {
        let (_dir, store) = seeded_store().await;
        let client = AuthorizingClient::new(store.clone(), principal(TENANT_POLICY, &[]));
        let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
        for prefix in ["a/", "b/", "", "/"] {
            assert_denied(
                client.list_page(BUCKET, prefix, None, None).await,
                "s3:ListBucket",
                &bucket_arn,
                "implicit deny",
            );
        }
        for key in ["a/data/1.txt", "b/data/1.txt", "/x", "c.txt"] {
            let arn = format!("arn:aws:s3:::{BUCKET}/{key}");
            assert_denied(
                client.get(BUCKET, key, None).await,
                "s3:GetObject",
                &arn,
                "implicit deny",
            );
            assert_denied(
                client.put(BUCKET, key, PutBody::Bytes(Bytes::new())).await,
                "s3:PutObject",
                &arn,
                "implicit deny",
            );
        }
        // A tag with another key does not help either.
        let client = AuthorizingClient::new(store, principal(TENANT_POLICY, &[("team", "a")]));
        assert_denied(
            client.get(BUCKET, "a/data/1.txt", None).await,
            "s3:GetObject",
            &format!("arn:aws:s3:::{BUCKET}/a/data/1.txt"),
            "implicit deny",
        );
    }

    #[tokio::test]
    async fn explicit_denies_are_named_and_delimiters_are_condition_keys() {
        let (_dir, store) = seeded_store().await;
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Sid":"NoSecrets","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::shared-bucket/b/secret*"},
            {"Sid":"FlatOnly","Effect":"Deny","Action":"s3:ListBucket","Resource":"*","Condition":{"StringNotEquals":{"s3:delimiter":"/"}}}]}"#;
        let client = AuthorizingClient::new(store, principal(policy, &[]));
        client.get_bytes(BUCKET, "b/data/1.txt").await.unwrap();
        assert_denied(
            client.get(BUCKET, "b/secret.txt", None).await,
            "s3:GetObject",
            "arn:aws:s3:::shared-bucket/b/secret.txt",
            "explicit deny by statement NoSecrets",
        );
        client
            .list_page(BUCKET, "b/", Some("/"), None)
            .await
            .unwrap();
        assert_denied(
            client.list_page(BUCKET, "b/", Some("|"), None).await,
            "s3:ListBucket",
            "arn:aws:s3:::shared-bucket",
            "FlatOnly",
        );
    }

    #[tokio::test]
    async fn local_paths_pass_through_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), b"local").unwrap();
        let key = dir
            .path()
            .join("f.txt")
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        let files: Arc<dyn ObjectClient> = Arc::new(DirStore::file_tree());
        let client = AuthorizingClient::new(files, principal(TENANT_POLICY, &[]));
        assert_eq!(
            client.get_bytes("", &key).await.unwrap(),
            Bytes::from_static(b"local")
        );
        let strict = client.with_local_paths(LocalPaths::Deny);
        assert_denied(
            strict.get("", &key, None).await,
            "s3:GetObject",
            &format!("file:///{key}"),
            "not allowed",
        );
        assert_denied(
            strict.list_page("", &key, None, None).await,
            "s3:ListBucket",
            &format!("file:///{key}"),
            "not allowed",
        );
        assert!(strict.local_file("", &key).is_none());
    }

    #[tokio::test]
    async fn the_sts_flow_end_to_end_confines_a_job_to_its_tenant() {
        let identity = testing::identity();
        let (_dir, store) = seeded_store().await;
        let alice = identity
            .resolve(testing::ALICE_KEY, None, testing::now())
            .unwrap();
        let creds = identity
            .assume_role_at(
                &alice,
                AssumeRoleInput {
                    role_arn: "arn:aws:iam::111122223333:role/creator".into(),
                    role_session_name: "tenant-a".into(),
                    tags: vec![SessionTag::new("tenant-id", "a")],
                    ..AssumeRoleInput::default()
                },
                testing::now(),
            )
            .unwrap();
        let creator = identity
            .resolve(
                &creds.access_key_id,
                Some(creds.session_token.expose()),
                testing::now(),
            )
            .unwrap();
        let exec = "arn:aws:iam::111122223333:role/exec";
        let job = identity
            .job_principal(exec, creator.session_tags(), true)
            .unwrap();
        let client = AuthorizingClient::new(store.clone(), job);
        client.get_bytes(BUCKET, "a/data/1.txt").await.unwrap();
        assert_denied(
            client.get(BUCKET, "b/data/1.txt", None).await,
            "s3:GetObject",
            "arn:aws:s3:::shared-bucket/b/data/1.txt",
            "implicit deny",
        );
        // Without chaining the job has no tenant and reaches nothing.
        let untagged = AuthorizingClient::new(
            store,
            identity
                .job_principal(exec, creator.session_tags(), false)
                .unwrap(),
        );
        assert!(untagged.get(BUCKET, "a/data/1.txt", None).await.is_err());
    }

    #[tokio::test]
    async fn an_allowed_principal_sees_the_backend_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let client = AuthorizingClient::new(
            Arc::new(DirStore::embedded(dir.path())),
            principal(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
                &[],
            ),
        );
        assert!(client.describe().contains("assumed-role/exec/SageMaker"));
        trainyard_s3::conformance::run_all(&client, "conformance", "authz/").await;
    }
}
