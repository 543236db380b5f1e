//! The S3 client against a real, third-party S3-compatible server.
//!
//! Unit tests cannot show that requests are signed, addressed and parsed the way a real
//! server expects, so this binary runs the shared conformance suite and the client's own
//! guarantees (resumed bodies, multipart boundaries, error mapping) against one. It runs when
//! `TRAINYARD_TEST_S3_ENDPOINT` and `TRAINYARD_TEST_S3_BUCKET` are set, with credentials and
//! region from the usual `AWS_*` variables (`scripts/s3-server-up.sh` prints all of them);
//! `TRAINYARD_TEST_S3_PREFIX` (default `trainyard-tests/`) places its objects. Without them
//! every test says on stderr that it was skipped.
//!
//! Faults are injected by a small TCP proxy on loopback between client and server that cuts
//! responses after a set number of bytes, so the resumption logic meets real truncated HTTP
//! responses rather than a mock.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trainyard_s3::conformance::{self, pattern, unique_prefix};
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

/// Prints to the real stderr, past the test harness's capture, so a skip is always visible.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn server(test: &str) -> Option<Server> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(bucket)) = (
        var("TRAINYARD_TEST_S3_ENDPOINT"),
        var("TRAINYARD_TEST_S3_BUCKET"),
    ) else {
        say(&format!(
            "s3_server::{test}: SKIPPED: set TRAINYARD_TEST_S3_ENDPOINT and TRAINYARD_TEST_S3_BUCKET \
             (and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), e.g. \
             eval \"$(scripts/s3-server-up.sh)\""
        ));
        return None;
    };
    let config = S3Config::from_env()
        .expect("S3 configuration from the environment")
        .with_endpoint(endpoint.clone());
    assert!(
        config.credentials.is_some(),
        "TRAINYARD_TEST_S3_ENDPOINT is set but no credentials were found (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    );
    let base = var("TRAINYARD_TEST_S3_PREFIX").unwrap_or_else(|| "trainyard-tests/".into());
    Some(Server {
        endpoint,
        bucket,
        prefix: unique_prefix(&format!("{base}{test}-")),
        config,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(s) = server("conformance_suite") else {
        return;
    };
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

/// A loopback TCP proxy that forwards to `upstream` and cuts the server-to-client direction of
/// the next `cuts` connections it accepts after `after` bytes, with a FIN or (`reset`) an RST.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    cuts_left: Arc<AtomicUsize>,
    cuts_done: Arc<AtomicUsize>,
    /// Response bytes forwarded to the client since the last `arm`, over all connections.
    forwarded: Arc<AtomicUsize>,
}

/// How the proxy cuts one connection.
#[derive(Clone, Copy)]
struct Cut {
    after: usize,
    reset: bool,
}

/// The proxy's counters, shared with its relay tasks.
#[derive(Clone)]
struct Counters {
    done: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
}

impl CuttingProxy {
    async fn start(upstream: String, after: usize, reset: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts_left = Arc::new(AtomicUsize::new(0));
        let counters = Counters {
            done: Arc::new(AtomicUsize::new(0)),
            forwarded: Arc::new(AtomicUsize::new(0)),
        };
        let left = cuts_left.clone();
        let shared = counters.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let up = TcpStream::connect(&upstream).await.unwrap();
                let armed = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let cut = armed.then_some(Cut { after, reset });
                tokio::spawn(relay(down, up, cut, shared.clone()));
            }
        });
        CuttingProxy {
            addr,
            cuts_left,
            cuts_done: counters.done,
            forwarded: counters.forwarded,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn arm(&self, cuts: usize) {
        self.cuts_done.store(0, Ordering::SeqCst);
        self.forwarded.store(0, Ordering::SeqCst);
        self.cuts_left.store(cuts, Ordering::SeqCst);
    }
}

async fn relay(down: TcpStream, up: TcpStream, cut: Option<Cut>, counters: Counters) {
    let (mut down_r, mut down_w) = down.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let to_server = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut down_r, &mut up_w).await;
    });
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match up_r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match cut {
            Some(c) => n.min(c.after - sent),
            None => n,
        };
        if down_w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n;
        counters.forwarded.fetch_add(n, Ordering::SeqCst);
        if let Some(c) = cut.filter(|c| c.after == sent) {
            counters.done.fetch_add(1, Ordering::SeqCst);
            if c.reset {
                // Dropping a write half sends FIN first, and a client that reads the FIN
                // before the RST sees a clean end of stream. Forgetting it leaves the close
                // to the read half, which with zero linger sends only the RST.
                let _ = down_w.as_ref().set_zero_linger();
                down_w.forget();
                to_server.abort();
                return;
            }
            break;
        }
    }
    to_server.abort();
}

fn proxied_client(s: &Server, proxy: &CuttingProxy, retry: RetryConfig) -> S3Client {
    let config = s
        .config
        .clone()
        .with_endpoint(proxy.endpoint())
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
async fn get_resumes_where_a_cut_response_stopped() {
    let Some(s) = server("get_resumes_where_a_cut_response_stopped") else {
        return;
    };
    let direct = S3Client::new(s.config.clone()).unwrap();
    let key = format!("{}object.bin", s.prefix);
    let data = pattern(8 << 20, 9);
    direct
        .put(&s.bucket, &key, PutBody::Bytes(Bytes::from(data.clone())))
        .await
        .unwrap();
    let upstream = s.endpoint.trim_start_matches("http://").to_string();
    let proxy = CuttingProxy::start(upstream.clone(), 1 << 20, false).await;
    let client = proxied_client(&s, &proxy, fast_retries());

    // Whole object: three responses in a row are cut after 1 MiB.
    proxy.arm(3);
    let got = body_of(&client, &s, &key, None).await.unwrap();
    assert_eq!(
        proxy.cuts_done.load(Ordering::SeqCst),
        3,
        "three responses were cut"
    );
    assert!(got == data, "resumed body is bit-exact");
    // Resumed, not restarted: what went over the wire is the object plus four sets of headers.
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    assert!(
        forwarded < data.len() + (16 << 10),
        "resumption fetched bytes again: {forwarded} bytes for a {} byte object",
        data.len()
    );

    // A range, cut twice; a fresh client, so no pooled (uncut) connection is reused.
    let client = proxied_client(&s, &proxy, fast_retries());
    proxy.arm(2);
    let got = body_of(&client, &s, &key, Some(1_000_000..7_000_000))
        .await
        .unwrap();
    assert_eq!(proxy.cuts_done.load(Ordering::SeqCst), 2);
    assert!(
        got[..] == data[1_000_000..7_000_000],
        "resumed range is bit-exact"
    );

    // Connections reset (RST) mid-body are resumed the same way.
    let proxy = CuttingProxy::start(upstream, 1 << 20, true).await;
    let client = proxied_client(&s, &proxy, fast_retries());
    proxy.arm(2);
    let got = body_of(&client, &s, &key, None).await.unwrap();
    assert_eq!(proxy.cuts_done.load(Ordering::SeqCst), 2);
    assert!(got == data, "body resumed after resets is bit-exact");
    direct.delete(&s.bucket, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_response_without_retries_is_truncated_not_short() {
    let Some(s) = server("a_cut_response_without_retries_is_truncated_not_short") else {
        return;
    };
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
    let upstream = s.endpoint.trim_start_matches("http://").to_string();
    let proxy = CuttingProxy::start(upstream, 256 << 10, false).await;
    let client = proxied_client(&s, &proxy, RetryConfig::disabled());
    proxy.arm(1);
    match body_of(&client, &s, &key, None).await {
        Err(ObjectError::Truncated { got, expected, .. }) => {
            assert!(got < expected, "got {got} of {expected}");
            assert_eq!(expected, 4 << 20);
        }
        other => panic!("expected Truncated, got {:?}", other.map(|b| b.len())),
    }
    // A reset connection is a retryable I/O error with its real kind.
    let upstream = s.endpoint.trim_start_matches("http://").to_string();
    let proxy = CuttingProxy::start(upstream, 256 << 10, true).await;
    let client = proxied_client(&s, &proxy, RetryConfig::disabled());
    proxy.arm(1);
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
async fn multipart_upload_with_small_parts() {
    let Some(s) = server("multipart_upload_with_small_parts") else {
        return;
    };
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
async fn wrong_secret_is_access_denied() {
    let Some(s) = server("wrong_secret_is_access_denied") else {
        return;
    };
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
async fn many_small_gets_reuse_connections() {
    let Some(s) = server("many_small_gets_reuse_connections") else {
        return;
    };
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
async fn parallel_ranged_reads_of_a_large_object() {
    let Some(s) = server("parallel_ranged_reads_of_a_large_object") else {
        return;
    };
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
