//! S3 REST for the embedded store, on the API's own address.
//!
//! SageMaker's SDKs upload code and data to S3 and expect `AWS_ENDPOINT_URL` to be the whole
//! client configuration, so the server answers S3 next to SageMaker, STS and Logs, telling
//! them apart by the request's shape ([`is_s3_request`]): the JSON services are `POST` with
//! `X-Amz-Target`, STS a form-encoded `POST /`, everything else is S3 (path-style, or
//! virtual-hosted as `BUCKET.localhost:PORT`).
//!
//! The protocol is the `s3s` crate's, the backend `trainyard_s3::server::StoreEndpoint` over
//! the same directory store the data plane reads. What this module adds is who may call:
//!
//! * **Without `iam.json`** every request is accepted, as the rest of the API accepts it: the
//!   signature is taken off before `s3s` sees the request (the server does not know the
//!   client's secret, so it could not verify it). Streaming signed bodies
//!   (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`) cannot be
//!   decoded without verifying their seed signature, so they are refused with a message;
//!   boto3, the aws CLI v1 and the SageMaker SDKs do not send them over `http://`.
//! * **With `iam.json`** `s3s` verifies every SigV4 signature (header, presigned URL,
//!   `UNSIGNED-PAYLOAD`, chunk signatures and trailers) against the secret [`IdentityAuth`]
//!   looks up (a user's key or a session's), and [`IdentityAccess`] then resolves the
//!   principal (session token, expiry) and authorizes the operation through the same
//!   evaluator as the data plane ([`crate::identity::Principal::authorize`]): the IAM action
//!   S3 itself requires ([`action_of`]), on `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`,
//!   with `s3:prefix`/`s3:delimiter`/`s3:max-keys` for listings and the caller's tags as
//!   `aws:PrincipalTag/*`. `CopyObject` also needs `s3:GetObject` on its source and
//!   `DeleteObjects` `s3:DeleteObject` on every key. Unsigned requests are refused.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{
    CopyObjectInput, CopySource, DeleteObjectsInput, ListObjectsInput, ListObjectsV2Input,
};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Result, s3_error};
use time::OffsetDateTime;
use trainyard_s3::DirStore;
use trainyard_s3::server::StoreEndpoint;

use crate::config::{ObjectStore, Settings};
use crate::identity::{Identity, Principal};

/// The S3 endpoint of one server: `None` when the installation's object store is not the
/// embedded one (then clients talk to that store directly).
#[derive(Debug, Clone)]
pub struct Endpoint {
    service: Option<S3Service>,
    verified: bool,
}

impl Endpoint {
    /// The endpoint for `settings`, with authentication and authorization when `identity`.
    pub fn new(settings: &Settings, identity: Option<Arc<Identity>>) -> Self {
        if !matches!(settings.object_store, ObjectStore::Embedded) {
            return Endpoint {
                service: None,
                verified: false,
            };
        }
        let store = DirStore::embedded(settings.store_root());
        let backend = StoreEndpoint::new(store, &settings.account_id, &settings.region);
        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_host(LocalhostBuckets);
        let verified = identity.is_some();
        if let Some(identity) = identity {
            builder.set_auth(IdentityAuth(identity.clone()));
            builder.set_access(IdentityAccess(identity));
        }
        Endpoint {
            service: Some(builder.build()),
            verified,
        }
    }

    /// Answers one S3 request.
    pub async fn handle(&self, request: Request<Body>) -> Response {
        let Some(service) = &self.service else {
            return (
                StatusCode::NOT_IMPLEMENTED,
                "trainyard serves S3 only for its embedded store; this installation uses an S3-compatible service: send S3 requests there\n",
            )
                .into_response();
        };
        let request = if self.verified {
            request
        } else {
            match unsigned(request) {
                Ok(r) => r,
                Err(response) => return response,
            }
        };
        match service.call(request.map(s3s::Body::http_body_unsync)).await {
            Ok(response) => response.map(Body::new),
            Err(e) => {
                tracing::error!("S3 endpoint: {e:?}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// Whether a request is for S3 rather than the JSON services or STS: anything that is not a
/// `POST` with `X-Amz-Target`, a form-encoded `POST /` (STS), or a bare `POST /` on the
/// server's own host name (answered by the JSON dispatcher as a missing target).
pub fn is_s3_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    if *method != Method::POST {
        return true;
    }
    if headers.contains_key("x-amz-target") {
        return false;
    }
    if uri.path() != "/" {
        return true;
    }
    if super::sts::is_sts_request(headers) {
        return false;
    }
    uri.query().is_some() || host_bucket(headers).is_some()
}

fn host_bucket(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get("host")?.to_str().ok()?;
    bucket_of_host(host)
}

/// The bucket of a virtual-hosted request: `BUCKET.localhost[:port]`.
fn bucket_of_host(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name.strip_suffix(".localhost").filter(|b| !b.is_empty())
}

/// Virtual-hosted style for `BUCKET.localhost`, path style for every other host.
#[derive(Debug)]
struct LocalhostBuckets;

impl S3Host for LocalhostBuckets {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match bucket_of_host(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

/// Takes the signature off a request the server will not verify (no `iam.json`).
#[allow(clippy::result_large_err, reason = "the error is the response itself")]
fn unsigned(mut request: Request<Body>) -> Result<Request<Body>, Response> {
    let streaming = request
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    if streaming {
        return Err(s3_refusal(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "aws-chunked (streaming) uploads are decoded only with signature verification: configure $TRAINYARD_HOME/iam.json, or have the client sign the payload (boto3 and the aws CLI do over http)",
        ));
    }
    request.headers_mut().remove("authorization");
    if let Some(query) = request.uri().query() {
        let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .filter(|(k, _)| !k.starts_with("X-Amz-"))
            .collect();
        if kept.len() != form_urlencoded::parse(query.as_bytes()).count() {
            let mut parts = request.uri().clone().into_parts();
            let path = request.uri().path();
            let new_query = kept
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        encode(k)
                    } else {
                        format!("{}={}", encode(k), encode(v))
                    }
                })
                .collect::<Vec<_>>()
                .join("&");
            let pq = if new_query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{new_query}")
            };
            parts.path_and_query = pq.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    Ok(request)
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn s3_refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>\n",
        message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Secrets of `iam.json`'s users and of STS sessions, for `s3s`'s signature checks.
struct IdentityAuth(Arc<Identity>);

#[async_trait::async_trait]
impl S3Auth for IdentityAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.signing_key(access_key) {
            Ok(key) => Ok(SecretKey::from(key.secret.expose())),
            Err(crate::identity::CredentialError::UnknownAccessKey { .. }) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Err(e) => {
                tracing::error!("S3 endpoint: looking up an access key: {e}");
                Err(s3_error!(InternalError))
            }
        }
    }
}

/// The principal of a verified request, kept in the request's extensions for the
/// per-operation checks.
#[derive(Debug, Clone)]
struct Caller(Arc<Principal>);

/// Authorization of S3 requests by the caller's IAM policies.
struct IdentityAccess(Arc<Identity>);

/// The IAM action S3 requires for an operation (by `s3s`'s operation name), as in the
/// service authorization reference. Operations the store does not implement map to
/// `s3:<Operation>`; the backend answers them `NotImplemented` if they are allowed.
pub fn action_of(operation: &str) -> String {
    let action = match operation {
        "ListBuckets" => "ListAllMyBuckets",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "HeadObject" | "GetObject" => "GetObject",
        "PutObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => "PutObject",
        "DeleteObjects" => "DeleteObject",
        "ListParts" => "ListMultipartUploadParts",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        other => other,
    };
    format!("s3:{action}")
}

fn resource_of(path: &S3Path) -> String {
    match path {
        S3Path::Root => "*".to_owned(),
        S3Path::Bucket { bucket } => format!("arn:aws:s3:::{bucket}"),
        S3Path::Object { bucket, key } => format!("arn:aws:s3:::{bucket}/{key}"),
    }
}

fn session_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<String> {
    if let Some(t) = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.to_owned());
    }
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v.into_owned())
}

fn authorize(
    principal: &Principal,
    action: &str,
    resource: &str,
    context: &[(&str, Vec<String>)],
) -> S3Result<()> {
    match principal.authorize(action, resource, context) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(caller = %principal.arn(), action, resource, "S3 request denied: {e}");
            Err(s3_error!(AccessDenied, "{e}"))
        }
    }
}

fn caller_of<T>(req: &S3Request<T>) -> S3Result<Arc<Principal>> {
    req.extensions
        .get::<Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| s3_error!(AccessDenied, "the request is not authenticated"))
}

fn list_context(
    prefix: Option<&str>,
    delimiter: Option<&str>,
    max_keys: Option<i32>,
) -> Vec<(&'static str, Vec<String>)> {
    let mut context = vec![("s3:prefix", vec![prefix.unwrap_or("").to_owned()])];
    if let Some(d) = delimiter {
        context.push(("s3:delimiter", vec![d.to_owned()]));
    }
    if let Some(m) = max_keys {
        context.push(("s3:max-keys", vec![m.to_string()]));
    }
    context
}

#[async_trait::async_trait]
impl S3Access for IdentityAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(
                AccessDenied,
                "anonymous requests are refused: sign the request with the keys of iam.json or an STS session"
            ));
        };
        let key = self.0.signing_key(&credentials.access_key).map_err(|e| {
            tracing::debug!("S3 endpoint: {e}");
            s3_error!(InvalidAccessKeyId)
        })?;
        let token = session_token(cx.headers(), cx.uri());
        let principal = self
            .0
            .principal(&key, token.as_deref(), OffsetDateTime::now_utc())
            .map_err(|e| match e {
                crate::identity::CredentialError::Expired { .. } => {
                    s3_error!(ExpiredToken, "The provided token has expired.")
                }
                _ => s3_error!(
                    InvalidToken,
                    "The provided token is malformed or otherwise invalid."
                ),
            })?;
        let operation = cx.s3_op().name();
        // Listings, copies and batch deletes are decided with their input, below.
        if !matches!(
            operation,
            "ListObjects" | "ListObjectsV2" | "CopyObject" | "DeleteObjects"
        ) {
            let action = action_of(operation);
            authorize(&principal, &action, &resource_of(cx.s3_path()), &[])?;
        }
        cx.extensions_mut().insert(Caller(Arc::new(principal)));
        Ok(())
    }

    async fn list_objects(&self, req: &mut S3Request<ListObjectsInput>) -> S3Result<()> {
        let principal = caller_of(req)?;
        let i = &req.input;
        let context = list_context(i.prefix.as_deref(), i.delimiter.as_deref(), i.max_keys);
        authorize(
            &principal,
            "s3:ListBucket",
            &format!("arn:aws:s3:::{}", i.bucket),
            &context,
        )
    }

    async fn list_objects_v2(&self, req: &mut S3Request<ListObjectsV2Input>) -> S3Result<()> {
        let principal = caller_of(req)?;
        let i = &req.input;
        let context = list_context(i.prefix.as_deref(), i.delimiter.as_deref(), i.max_keys);
        authorize(
            &principal,
            "s3:ListBucket",
            &format!("arn:aws:s3:::{}", i.bucket),
            &context,
        )
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        let principal = caller_of(req)?;
        let i = &req.input;
        authorize(
            &principal,
            "s3:PutObject",
            &format!("arn:aws:s3:::{}/{}", i.bucket, i.key),
            &[],
        )?;
        match &i.copy_source {
            CopySource::Bucket { bucket, key, .. } => authorize(
                &principal,
                "s3:GetObject",
                &format!("arn:aws:s3:::{bucket}/{key}"),
                &[],
            ),
            _ => Err(s3_error!(
                NotImplemented,
                "copy sources other than bucket/key"
            )),
        }
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let principal = caller_of(req)?;
        let i = &req.input;
        for object in &i.delete.objects {
            authorize(
                &principal,
                "s3:DeleteObject",
                &format!("arn:aws:s3:::{}/{}", i.bucket, object.key),
                &[],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn requests_are_told_apart_by_shape() {
        let host = ("host", "127.0.0.1:8080");
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let sagemaker = headers(&[host, ("x-amz-target", "SageMaker.ListTrainingJobs")]);
        assert!(!is_s3_request(&Method::POST, &uri("/"), &sagemaker));
        let sts = headers(&[
            host,
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]);
        assert!(!is_s3_request(&Method::POST, &uri("/"), &sts));
        let bare = headers(&[host]);
        assert!(!is_s3_request(&Method::POST, &uri("/"), &bare));
        for (m, u) in [
            (Method::GET, "/"),
            (Method::PUT, "/bucket"),
            (Method::GET, "/bucket/key?list-type=2"),
            (Method::HEAD, "/bucket/key"),
            (Method::POST, "/bucket?delete"),
            (Method::POST, "/bucket/key?uploads"),
            (Method::DELETE, "/bucket/key"),
        ] {
            assert!(is_s3_request(&m, &uri(u), &bare), "{m} {u}");
        }
        let vhost = headers(&[
            ("host", "my-bucket.localhost:8080"),
            ("content-type", "application/xml"),
        ]);
        assert!(is_s3_request(&Method::POST, &uri("/?delete"), &vhost));
        assert!(is_s3_request(&Method::POST, &uri("/"), &vhost));
    }

    #[test]
    fn virtual_hosts_name_their_bucket() {
        assert_eq!(bucket_of_host("data.localhost:8080"), Some("data"));
        assert_eq!(bucket_of_host("a.b.localhost"), Some("a.b"));
        assert_eq!(bucket_of_host("localhost:8080"), None);
        assert_eq!(bucket_of_host("127.0.0.1:8080"), None);
        assert_eq!(bucket_of_host(".localhost"), None);
    }

    #[test]
    fn operations_need_the_actions_s3_requires() {
        assert_eq!(action_of("GetObject"), "s3:GetObject");
        assert_eq!(action_of("HeadObject"), "s3:GetObject");
        assert_eq!(action_of("UploadPart"), "s3:PutObject");
        assert_eq!(action_of("CompleteMultipartUpload"), "s3:PutObject");
        assert_eq!(action_of("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(action_of("HeadBucket"), "s3:ListBucket");
        assert_eq!(action_of("ListBuckets"), "s3:ListAllMyBuckets");
        assert_eq!(action_of("AbortMultipartUpload"), "s3:AbortMultipartUpload");
        assert_eq!(action_of("GetBucketLocation"), "s3:GetBucketLocation");
    }

    #[test]
    fn unverified_requests_lose_their_signature_only() {
        let req = Request::builder()
            .method("GET")
            .uri("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab&versionId=null&X-Amz-Credential=AK%2F2024")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .body(Body::empty())
            .unwrap();
        let req = unsigned(req).unwrap();
        assert_eq!(
            req.uri().path_and_query().unwrap().as_str(),
            "/b/k?versionId=null"
        );
        assert!(req.headers().get("authorization").is_none());
        let streaming = Request::builder()
            .method("PUT")
            .uri("/b/k")
            .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            unsigned(streaming).unwrap_err().status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
