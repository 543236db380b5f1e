//! The S3 client against a real, third-party S3-compatible server.
//!
//! Unit tests cannot show that requests are signed, addressed and parsed the way a real
//! server expects, so this binary runs the shared conformance suite and the client's own
//! guarantees (resumed bodies, multipart boundaries, error mapping) against one. The tests are
//! ignored unless the `real-s3` feature is on; with it they need `TRAINYARD_TEST_S3_ENDPOINT`
//! and `TRAINYARD_TEST_S3_BUCKET`, with credentials and region from the usual `AWS_*`
//! variables (`scripts/s3-server-up.sh` prints all of them), and fail without them.
//! `TRAINYARD_TEST_S3_PREFIX` (default `trainyard-tests/`) places its objects.
//!
//! Faults are injected by the shared fault proxy ([`trainyard_s3::mock::FaultProxy`]) on
//! loopback between client and server, which cuts connections after a set number of response
//! bytes, so the resumption logic meets real truncated HTTP responses rather than a mock.

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use trainyard_s3::conformance::{self, pattern, unique_prefix};
use trainyard_s3::mock::{Cut, FaultProxy, ProxyPlan};
use trainyard_s3::{
    ObjectClient, ObjectClientExt, ObjectError, PutBody, RetryConfig, S3Client, S3Config,
    S3Credentials,
};

/// Where the server is, from the environment.
struct Server {
    endpoint: String,
    bucket: String,
    prefix: String,
    config: S3Config,
}

/// Prints to the real stderr, past the test harness's capture, so a measurement is always
/// visible.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// The server named by the environment; a test that runs without one fails, saying why.
fn server(test: &str) -> Server {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(bucket)) = (
        var("TRAINYARD_TEST_S3_ENDPOINT"),
        var("TRAINYARD_TEST_S3_BUCKET"),
    ) else {
        panic!(
            "s3_server::{test}: set TRAINYARD_TEST_S3_ENDPOINT and TRAINYARD_TEST_S3_BUCKET \
             (and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), e.g. \
             eval \"$(scripts/s3-server-up.sh)\", or build without the real-s3 feature"
        );
    };
    let config = S3Config::from_env()
        .expect("S3 configuration from the environment")
        .with_endpoint(endpoint.clone());
    assert!(
        config.credentials.is_some(),
        "TRAINYARD_TEST_S3_ENDPOINT is set but no credentials were found (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    );
    let base = var("TRAINYARD_TEST_S3_PREFIX").unwrap_or_else(|| "trainyard-tests/".into());
    Server {
        endpoint,
        bucket,
        prefix: unique_prefix(&format!("{base}{test}-")),
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn conformance_suite() {
    let s = server("conformance_suite");
    let client = S3Client::new(s.config.clone()).unwrap();
    let started = Instant::now();
    let timings = conformance::run_all(&client, &s.bucket, &s.prefix).await;
    let mut report = format!(
        "s3_server::conformance_suite against {}: {} cases passed in {:.2} s",
        s.endpoint,
        timings.len(),
        started.elapsed().as_secs_f64()
    );
    for (name, took) in &timings {
        report.push_str(&format!(
            "\n  {name:<24} {:>8.1} ms",
            took.as_secs_f64() * 1e3
        ));
    }
    say(&report);
}

fn proxied_client(s: &Server, proxy: &FaultProxy, retry: RetryConfig) -> S3Client {
    let config = s
        .config
        .clone()
        .with_endpoint(proxy.url().to_string())
        .with_retry(retry);
    S3Client::new(config).unwrap()
}

fn fast_retries() -> RetryConfig {
    RetryConfig::default()
        .with_base_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(50))
}

async fn body_of(
    client: &S3Client,
    s: &Server,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>, ObjectError> {
    let mut got = client.get(&s.bucket, key, range).await?;
    let mut out = Vec::new();
    while let Some(chunk) = got.body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn get_resumes_where_a_cut_response_stopped() {
    let s = server("get_resumes_where_a_cut_response_stopped");
    let direct = S3Client::new(s.config.clone()).unwrap();
    let key = format!("{}object.bin", s.prefix);
    let data = pattern(8 << 20, 9);
    direct
        .put(&s.bucket, &key, PutBody::Bytes(Bytes::from(data.clone())))
        .await
        .unwrap();
    let proxy = FaultProxy::start(&s.endpoint, ProxyPlan::default()).unwrap();
    let fin = Cut {
        after: 1 << 20,
        reset: false,
    };
    let client = proxied_client(&s, &proxy, fast_retries());

    // Whole object: three responses in a row are cut after 1 MiB.
    proxy.cut_connections(3, fin);
    let got = body_of(&client, &s, &key, None).await.unwrap();
    assert_eq!(proxy.stats().cuts(), 3, "three responses were cut");
    assert!(got == data, "resumed body is bit-exact");
    // Resumed, not restarted: what went over the wire is the object plus four sets of headers.
    let forwarded = proxy.stats().forwarded();
    assert!(
        forwarded < data.len() + (16 << 10),
        "resumption fetched bytes again: {forwarded} bytes for a {} byte object",
        data.len()
    );

    // A range, cut twice; a fresh client, so no pooled (uncut) connection is reused.
    let client = proxied_client(&s, &proxy, fast_retries());
    proxy.cut_connections(2, fin);
    let got = body_of(&client, &s, &key, Some(1_000_000..7_000_000))
        .await
        .unwrap();
    assert_eq!(proxy.stats().cuts(), 2);
    assert!(
        got[..] == data[1_000_000..7_000_000],
        "resumed range is bit-exact"
    );

    // Connections reset (RST) mid-body are resumed the same way.
    let proxy = FaultProxy::start(&s.endpoint, ProxyPlan::default()).unwrap();
    let client = proxied_client(&s, &proxy, fast_retries());
    proxy.cut_connections(
        2,
        Cut {
            after: 1 << 20,
            reset: true,
        },
    );
    let got = body_of(&client, &s, &key, None).await.unwrap();
    assert_eq!(proxy.stats().cuts(), 2);
    assert!(got == data, "body resumed after resets is bit-exact");
    direct.delete(&s.bucket, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn a_cut_response_without_retries_is_truncated_not_short() {
    let s = server("a_cut_response_without_retries_is_truncated_not_short");
    let direct = S3Client::new(s.config.clone()).unwrap();
    let key = format!("{}object.bin", s.prefix);
    direct
        .put(
            &s.bucket,
            &key,
            PutBody::Bytes(Bytes::from(pattern(4 << 20, 1))),
        )
        .await
        .unwrap();
    let proxy = FaultProxy::start(&s.endpoint, ProxyPlan::default()).unwrap();
    let client = proxied_client(&s, &proxy, RetryConfig::disabled());
    proxy.cut_connections(
        1,
        Cut {
            after: 256 << 10,
            reset: false,
        },
    );
    match body_of(&client, &s, &key, None).await {
        Err(ObjectError::Truncated { got, expected, .. }) => {
            assert!(got < expected, "got {got} of {expected}");
            assert_eq!(expected, 4 << 20);
        }
        other => panic!("expected Truncated, got {:?}", other.map(|b| b.len())),
    }
    // A reset connection is a retryable I/O error with its real kind.
    let proxy = FaultProxy::start(&s.endpoint, ProxyPlan::default()).unwrap();
    let client = proxied_client(&s, &proxy, RetryConfig::disabled());
    proxy.cut_connections(
        1,
        Cut {
            after: 256 << 10,
            reset: true,
        },
    );
    match body_of(&client, &s, &key, None).await {
        Err(ObjectError::Io { source, .. }) => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{source}"
            );
        }
        other => panic!(
            "expected Io(ConnectionReset), got {:?}",
            other.map(|b| b.len())
        ),
    }
    direct.delete(&s.bucket, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn multipart_upload_with_small_parts() {
    let s = server("multipart_upload_with_small_parts");
    let config = S3Config {
        multipart_threshold: 5 << 20,
        multipart_part_size: 5 << 20,
        upload_concurrency: 3,
        ..s.config.clone()
    };
    let client = S3Client::new(config).unwrap();
    let key = format!("{}parts.bin", s.prefix);
    // Three full parts and a one-byte last part.
    let data = pattern((15 << 20) + 1, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    std::fs::write(&path, &data).unwrap();
    let put = client
        .put(&s.bucket, &key, PutBody::File(path))
        .await
        .unwrap();
    assert_eq!(put.size, data.len() as u64);
    let etag = put.etag.clone().unwrap_or_default();
    assert!(
        etag.ends_with("-4"),
        "a four-part upload has a multipart ETag, got {etag:?}"
    );
    let head = client.head(&s.bucket, &key).await.unwrap();
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    let back = client.get_bytes(&s.bucket, &key).await.unwrap();
    assert!(
        back[..] == data[..],
        "multipart object reads back bit-exact"
    );
    client.delete(&s.bucket, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn wrong_secret_is_access_denied() {
    let s = server("wrong_secret_is_access_denied");
    let mut config = s.config.clone();
    let id = config.credentials.as_ref().unwrap().access_key_id.clone();
    config.credentials = Some(S3Credentials::new(id, "not-the-right-secret-at-all"));
    let client = S3Client::new(config).unwrap();
    let err = client
        .list_page(&s.bucket, &s.prefix, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectError::AccessDenied { .. }),
        "a bad signature is AccessDenied, got {err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn many_small_gets_reuse_connections() {
    let s = server("many_small_gets_reuse_connections");
    let client = S3Client::new(s.config.clone()).unwrap();
    const N: usize = 500;
    let body = Bytes::from(pattern(64 << 10, 3));
    let keys: Vec<String> = (0..N).map(|i| format!("{}k{i:04}", s.prefix)).collect();
    futures::stream::iter(keys.iter())
        .map(|k| client.put(&s.bucket, k, PutBody::Bytes(body.clone())))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;
    let started = Instant::now();
    let total: usize = futures::stream::iter(keys.iter())
        .map(|k| client.get_bytes(&s.bucket, k))
        .buffer_unordered(32)
        .map(|r| r.unwrap().len())
        .fold(0, |a, b| async move { a + b })
        .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(total, N * (64 << 10));
    say(&format!(
        "s3_server::many_small_gets_reuse_connections: {N} x 64 KiB GETs, 32 in flight: {:.0} objects/s, {:.0} MB/s",
        N as f64 / secs,
        total as f64 / secs / 1e6
    ));
    conformance::delete_all(&client, &s.bucket, &s.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
async fn parallel_ranged_reads_of_a_large_object() {
    let s = server("parallel_ranged_reads_of_a_large_object");
    let client = S3Client::new(s.config.clone()).unwrap();
    const SIZE: u64 = 64 << 20;
    const PART: u64 = 8 << 20;
    let key = format!("{}large.bin", s.prefix);
    let data = Bytes::from(pattern(SIZE as usize, 11));
    client
        .put(&s.bucket, &key, PutBody::Bytes(data.clone()))
        .await
        .unwrap();
    let started = Instant::now();
    let parts: Vec<(u64, Vec<u8>)> = futures::stream::iter((0..SIZE / PART).map(|i| i * PART))
        .map(|start| {
            let (client, s, key) = (&client, &s, &key);
            async move {
                let got = body_of(client, s, key, Some(start..start + PART)).await;
                (start, got.unwrap())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    for (start, got) in &parts {
        let start = *start as usize;
        assert!(
            got[..] == data[start..start + PART as usize],
            "range at {start}"
        );
    }
    say(&format!(
        "s3_server::parallel_ranged_reads_of_a_large_object: 64 MiB as 8 x 8 MiB ranges: {:.0} MB/s",
        SIZE as f64 / secs / 1e6
    ));
    client.delete(&s.bucket, &key).await.unwrap();
}
