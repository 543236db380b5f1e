//! The real S3 client: [`S3Client`], an [`ObjectClient`] for AWS S3 and S3-compatible servers
//! (garage, MinIO, Ceph RGW, ...).
//!
//! # Why `aws-sdk-s3` and not `object_store`
//!
//! `object_store` (feature `aws`) was the first choice, being lighter and generic. It has a
//! concrete blocker: every key passes through its `Path` type, which cannot represent keys
//! that are legal in S3 and that trainyard must handle verbatim. `Path::parse` rejects `.`
//! and `..` segments and empty segments (`a//b`), and strips a leading and a trailing `/`,
//! and its S3 listing parses every returned key with `Path::parse`. A single object named
//! `x/../y` in a bucket therefore makes the whole listing fail, and folder markers (`dir/`,
//! which the data plane must see in order to skip them) come back as `dir`. The data plane's
//! rule is the opposite: list hostile keys exactly as stored, then refuse them by name when
//! they would escape a channel directory. `aws-sdk-s3` addresses keys as plain strings and
//! also handles S3 Express One Zone session authentication for directory buckets.
//!
//! # Shape
//!
//! * One HTTP client (hyper, rustls with ring) per `S3Client`, so connections are pooled and
//!   reused across every request; the SDK clients built on it are cheap handles. Since the
//!   SDK's clients are not per bucket, no per-bucket cache is needed: one SDK client addresses
//!   buckets path-style (custom endpoints), one virtual-hosted (AWS, and directory buckets,
//!   which S3 Express only serves virtual-hosted); both share the connection pool.
//! * The SDK's retry layer is off; [`RetryConfig`] (see `retry.rs`) wraps every request, and
//!   a get body that breaks off is resumed from the byte it reached (see `get.rs`).
//! * Request checksums are computed only where S3 requires them and responses are validated
//!   only where S3 requires it, which keeps S3-compatible servers that lack the newer
//!   checksum headers working and spares the CPU on the download path; integrity is checked
//!   by the callers through sizes and ETags.
//! * Bodies stream: gets yield the chunks as hyper delivers them; uploads hold at most
//!   `upload_concurrency` parts of `multipart_part_size` bytes in memory.

mod assume_role;
mod config;
mod errors;
#[cfg(test)]
mod fake_server;
mod get;
mod list;
mod profile;
mod retry;
mod upload;

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use futures::stream::BoxStream;

pub use assume_role::AssumeRole;
pub use config::{AddressingStyle, ConfigError, MIN_PART_SIZE, S3Config, S3Credentials};
pub use retry::RetryConfig;

use crate::ObjectError;
use crate::client::{GetObject, ListPage, ObjectClient, ObjectMeta, PutBody};
use errors::Target;

/// An [`ObjectClient`] that speaks the S3 REST API. Cheap to clone; clones share one
/// connection pool.
#[derive(Clone)]
pub struct S3Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: S3Config,
    path_style: aws_sdk_s3::Client,
    virtual_hosted: aws_sdk_s3::Client,
    describe: String,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("describe", &self.inner.describe)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The HTTP(S) client of the SDK clients (rustls with ring).
fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl S3Client {
    /// Builds a client; no request is sent until the first operation.
    pub fn new(config: S3Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = https_client();
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.response_timeout)
            .build();
        let stall = StalledStreamProtectionConfig::enabled()
            .grace_period(config.stall_timeout)
            .build();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::v2025_08_07())
            .region(Region::new(config.region.clone()))
            .http_client(http)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .stalled_stream_protection(stall)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        if let Some(role) = &config.assume_role {
            builder = builder.credentials_provider(assume_role::AssumeRoleProvider::new(
                role.clone(),
                &config.region,
                config.credentials.as_ref(),
                https_client(),
            ));
        } else if let Some(c) = &config.credentials {
            builder = builder.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "trainyard",
            ));
        }
        let sdk_config = builder.build();
        let path_style =
            aws_sdk_s3::Client::from_conf(sdk_config.to_builder().force_path_style(true).build());
        let virtual_hosted =
            aws_sdk_s3::Client::from_conf(sdk_config.to_builder().force_path_style(false).build());
        let describe = match &config.endpoint {
            Some(ep) => format!("s3 {ep}"),
            None => format!("s3 aws {}", config.region),
        };
        Ok(S3Client {
            inner: Arc::new(Inner {
                config,
                path_style,
                virtual_hosted,
                describe,
            }),
        })
    }

    /// Builds a client from [`S3Config::from_env`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(S3Config::from_env()?)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }
}

impl Inner {
    /// The SDK client that addresses `bucket` the configured way.
    fn sdk(&self, bucket: &str) -> &aws_sdk_s3::Client {
        if self.config.path_style_for(bucket) {
            &self.path_style
        } else {
            &self.virtual_hosted
        }
    }

    fn retry(&self) -> &RetryConfig {
        &self.config.retry
    }
}

/// Refuses an empty key before it reaches the SDK (an empty key would address the bucket).
fn check_key(operation: &'static str, bucket: &str, key: &str) -> Result<(), ObjectError> {
    if key.is_empty() {
        return Err(ObjectError::InvalidKey {
            key: key.to_string(),
            reason: format!("{operation} on bucket `{bucket}` needs a non-empty key"),
        });
    }
    Ok(())
}

/// An S3 timestamp as `SystemTime` (the epoch when absent or out of range).
fn system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// An ETag without its surrounding quotes.
fn unquote_etag(etag: Option<&str>) -> Option<String> {
    etag.map(|e| e.trim_matches('"').to_string())
}

/// A size from the SDK's signed integers.
fn size_of(len: Option<i64>) -> Option<u64> {
    len.and_then(|l| u64::try_from(l).ok())
}

#[async_trait]
impl ObjectClient for S3Client {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        list::list_page(&self.inner, bucket, prefix, delimiter, continuation).await
    }

    fn list_all<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<ObjectMeta, ObjectError>> {
        list::list_all(&self.inner, bucket, prefix)
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        check_key("HeadObject", bucket, key)?;
        let t = Target {
            operation: "HeadObject",
            bucket,
            key,
        };
        let sdk = self.inner.sdk(bucket);
        let out = self
            .inner
            .retry()
            .run(t.operation, || async {
                sdk.head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| t.sdk(e))
            })
            .await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: size_of(out.content_length())
                .ok_or_else(|| t.client("the response has no Content-Length"))?,
            last_modified: system_time(out.last_modified()),
            etag: unquote_etag(out.e_tag()),
        })
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        check_key("GetObject", bucket, key)?;
        get::get(self, bucket, key, range).await
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        check_key("PutObject", bucket, key)?;
        upload::put(&self.inner, bucket, key, body).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        check_key("DeleteObject", bucket, key)?;
        let t = Target {
            operation: "DeleteObject",
            bucket,
            key,
        };
        let sdk = self.inner.sdk(bucket);
        let res = self
            .inner
            .retry()
            .run(t.operation, || async {
                sdk.delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| t.sdk(e))
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::fake_server::{FakeServer, Request, Response};
    use super::*;
    use crate::ObjectClientExt;

    const ETAG: &str = "\"0123abcd\"";
    const DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

    fn client(endpoint: &str, attempts: u32) -> S3Client {
        let config = S3Config::for_endpoint(endpoint, S3Credentials::new("AKIDTEST", "secret"))
            .with_retry(
                RetryConfig::default()
                    .with_max_attempts(attempts)
                    .with_base_delay(Duration::from_millis(1))
                    .with_max_delay(Duration::from_millis(5)),
            );
        S3Client::new(config).unwrap()
    }

    /// Serves `data` as object `/bkt/obj`, honouring `Range: bytes=a-b`.
    fn object(req: &Request, data: &[u8]) -> Response {
        let ok = |status, body: &[u8]| {
            Response::new(status)
                .header("etag", ETAG)
                .header("last-modified", DATE)
                .body(body.to_vec())
        };
        match req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let (a, b) = r.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                let b = b.min(data.len() - 1);
                ok(206, &data[a..=b])
                    .header("content-range", &format!("bytes {a}-{b}/{}", data.len()))
            }
            None => ok(200, data),
        }
    }

    async fn read(c: &S3Client, range: Option<Range<u64>>) -> Result<Vec<u8>, ObjectError> {
        let mut got = c.get("bkt", "obj", range).await?;
        let mut out = Vec::new();
        while let Some(chunk) = got.body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn service_errors_map_onto_variants() {
        let server = FakeServer::start(|req| match req.path() {
            "/bkt/missing" => Response::s3_error(404, "NoSuchKey"),
            "/bkt/denied" => Response::s3_error(403, "AccessDenied"),
            "/bkt/slow" => Response::s3_error(503, "SlowDown"),
            "/nobkt/x" => Response::s3_error(404, "NoSuchBucket"),
            _ => Response::s3_error(500, "InternalError"),
        })
        .await;
        let c = client(&server.endpoint, 3);
        assert!(
            c.get("bkt", "missing", None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(c.head("bkt", "missing").await.unwrap_err().is_not_found());
        assert!(matches!(
            c.get("bkt", "denied", None).await.unwrap_err(),
            ObjectError::AccessDenied { .. }
        ));
        assert!(matches!(
            c.get("nobkt", "x", None).await.unwrap_err(),
            ObjectError::NoSuchBucket { .. }
        ));
        let before = server.requests().len();
        match c.get("bkt", "slow", None).await.unwrap_err() {
            ObjectError::Service { status, code, .. } => {
                assert_eq!((status, code.as_str()), (503, "SlowDown"));
            }
            other => panic!("{other:?}"),
        }
        // Exactly `max_attempts` requests: the SDK's own retries are off.
        assert_eq!(server.requests().len() - before, 3);
        assert!(c.delete("bkt", "missing").await.is_ok());
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_invalid_range() {
        let server = FakeServer::start(|req| {
            if req.method == "HEAD" {
                Response::new(200).header("etag", ETAG)
            } else {
                Response::s3_error(416, "InvalidRange")
            }
        })
        .await;
        let c = client(&server.endpoint, 3);
        match c.get("bkt", "obj", Some(500..600)).await.unwrap_err() {
            ObjectError::InvalidRange {
                start, end, size, ..
            } => assert_eq!((start, end, size), (500, 600, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_retryable_io_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(&endpoint, 2).head("bkt", "obj").await.unwrap_err();
        match &err {
            ObjectError::Io { source, .. } => {
                assert_eq!(
                    source.kind(),
                    std::io::ErrorKind::ConnectionRefused,
                    "{err}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn a_short_response_is_resumed_with_if_match() {
        let data: Vec<u8> = (0..100u8).collect();
        let body = data.clone();
        // The first response stops cleanly after 50 of the 100 bytes asked for.
        let server = FakeServer::start(move |req| {
            if req.header("if-match").is_none() {
                Response::new(206)
                    .header("etag", ETAG)
                    .header("content-range", "bytes 0-49/100")
                    .body(body[..50].to_vec())
            } else {
                object(req, &body)
            }
        })
        .await;
        assert_eq!(
            read(&client(&server.endpoint, 3), Some(0..100))
                .await
                .unwrap(),
            data
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].header("range"), Some("bytes=50-99"));
        assert_eq!(reqs[1].header("if-match"), Some(ETAG));

        match read(&client(&server.endpoint, 1), Some(0..100)).await {
            Err(ObjectError::Truncated { got, expected, .. }) => {
                assert_eq!((got, expected), (50, 100))
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_cut_below_its_content_length_is_truncated_then_resumed() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let body = data.clone();
        let server = FakeServer::start(move |req| {
            if req.header("range").is_none() {
                // Announce 10,000 bytes, send 4,000, close.
                let mut r = object(req, &body[..4_000]);
                r.announce = Some(10_000);
                r
            } else {
                object(req, &body)
            }
        })
        .await;
        match read(&client(&server.endpoint, 1), None).await {
            Err(e @ ObjectError::Truncated { .. }) => assert!(e.is_retryable()),
            other => panic!("expected Truncated, got {other:?}"),
        }
        let c = client(&server.endpoint, 3);
        assert_eq!(read(&c, None).await.unwrap(), data);
        let last = server.requests().pop().unwrap();
        assert_eq!(last.header("range"), Some("bytes=4000-9999"));
        // Whole-object helpers see the same guarantee.
        assert_eq!(c.get_bytes("bkt", "obj").await.unwrap().len(), 10_000);
    }

    #[tokio::test]
    async fn empty_ranges_are_answered_from_head() {
        let server = FakeServer::start(|_| {
            Response::new(200)
                .header("etag", ETAG)
                .header("last-modified", DATE)
                .body(vec![0u8; 10])
        })
        .await;
        let c = client(&server.endpoint, 1);
        assert!(read(&c, Some(10..10)).await.unwrap().is_empty());
        assert!(matches!(
            read(&c, Some(11..11)).await,
            Err(ObjectError::InvalidRange { size: 10, .. })
        ));
        assert!(server.requests().iter().all(|r| r.method == "HEAD"));
        let meta = c.head("bkt", "obj").await.unwrap();
        assert_eq!((meta.size, meta.etag.as_deref()), (10, Some("0123abcd")));
    }

    #[tokio::test]
    async fn listings_decode_url_encoded_keys_and_follow_tokens() {
        let server = FakeServer::start(|req| {
            let body = if req.target.contains("continuation-token=tok1") {
                "<ListBucketResult><Name>bkt</Name><EncodingType>url</EncodingType>\
                 <IsTruncated>false</IsTruncated><KeyCount>1</KeyCount>\
                 <Contents><Key>z%2Fx%2E%2E</Key><Size>1</Size></Contents></ListBucketResult>"
            } else {
                "<ListBucketResult><Name>bkt</Name><EncodingType>url</EncodingType>\
                 <IsTruncated>true</IsTruncated><NextContinuationToken>tok1</NextContinuationToken>\
                 <Contents><Key>a+b%2Bc</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>\
                 <ETag>&quot;e1&quot;</ETag><Size>3</Size></Contents>\
                 <CommonPrefixes><Prefix>d%C3%A9/</Prefix></CommonPrefixes></ListBucketResult>"
            };
            Response::new(200)
                .header("content-type", "application/xml")
                .body(body)
        })
        .await;
        let c = client(&server.endpoint, 1);
        let page = c.list_page("bkt", "", Some("/"), None).await.unwrap();
        assert_eq!(page.objects[0].key, "a b+c");
        assert_eq!(page.objects[0].etag.as_deref(), Some("e1"));
        assert_eq!(page.common_prefixes, ["dé/"]);
        assert_eq!(page.next_token.as_deref(), Some("tok1"));
        let all = c.list_vec("bkt", "").await.unwrap();
        let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a b+c", "z/x.."]);
        assert!(server.requests()[0].target.contains("encoding-type=url"));
    }

    #[tokio::test]
    async fn puts_send_the_body_and_return_the_etag() {
        let server = FakeServer::start(|_| Response::new(200).header("etag", ETAG)).await;
        let c = client(&server.endpoint, 1);
        let meta = c
            .put(
                "bkt",
                "k",
                PutBody::Bytes(bytes::Bytes::from_static(b"abc")),
            )
            .await
            .unwrap();
        assert_eq!((meta.size, meta.etag.as_deref()), (3, Some("0123abcd")));
        let req = &server.requests()[0];
        assert_eq!((req.method.as_str(), req.path()), ("PUT", "/bkt/k"));
        assert_eq!(req.header("content-length"), Some("3"));
        assert!(matches!(
            c.put("bkt", "", PutBody::Bytes(bytes::Bytes::new())).await,
            Err(ObjectError::InvalidKey { .. })
        ));
    }

    #[tokio::test]
    async fn without_credentials_requests_go_unsigned() {
        let server = FakeServer::start(|_| {
            Response::new(200)
                .header("etag", ETAG)
                .body(vec![1u8, 2, 3])
        })
        .await;
        let c = S3Client::new(S3Config::default().with_endpoint(&server.endpoint)).unwrap();
        assert_eq!(c.head("bkt", "obj").await.unwrap().size, 3);
        assert!(server.requests()[0].header("authorization").is_none());
    }

    #[test]
    fn debug_output_of_the_client_hides_secrets() {
        let c = S3Client::new(S3Config::for_endpoint(
            "http://127.0.0.1:9",
            S3Credentials::new("AKIDTEST", "super-secret-key"),
        ))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDTEST") && !shown.contains("super-secret-key"));
        assert_eq!(c.describe(), "s3 http://127.0.0.1:9");
    }
}
