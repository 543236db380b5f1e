//! File-mode jobs against a real third-party S3 server (garage on loopback, started by
//! `scripts/test.sh`), directly and through the fault-injecting proxy. Ignored without the
//! `real-s3` feature; with it, a test fails when `TRAINYARD_TEST_S3_ENDPOINT` is not set.

use bytes::Bytes;
use serde_json::json;
use trainyard_s3::mock::{FaultProxy, HttpFault, ProxyPlan};
use trainyard_s3::{ObjectClient, PutBody, S3Client, S3Config, S3Credentials};

use crate::common::*;

struct Server {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
    client: S3Client,
    rt: tokio::runtime::Runtime,
}

/// The server named by the environment; a test that runs without one fails, saying why.
fn server(test: &str) -> Server {
    let Ok(endpoint) = std::env::var("TRAINYARD_TEST_S3_ENDPOINT") else {
        panic!(
            "{test}: TRAINYARD_TEST_S3_ENDPOINT is not set: run scripts/test.sh (it starts \
             garage) or set TRAINYARD_SKIP_S3_SERVER=1 to leave out the real-s3 feature"
        );
    };
    let bucket =
        std::env::var("TRAINYARD_TEST_S3_BUCKET").unwrap_or_else(|_| "trainyard-test".into());
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID for the test server");
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY for the test server");
    let cfg = S3Config::for_endpoint(
        endpoint.clone(),
        S3Credentials::new(key.clone(), secret.clone()),
    )
    .with_region("us-east-1");
    let client = S3Client::new(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Server {
        endpoint,
        bucket,
        key,
        secret,
        client,
        rt,
    }
}

impl Server {
    /// A prefix no other test run uses.
    fn prefix(&self, test: &str) -> String {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("it/{test}-{n}/")
    }

    fn put_all(&self, objects: &[(String, Vec<u8>)]) {
        self.rt.block_on(async {
            use futures::StreamExt;
            futures::stream::iter(objects)
                .map(|(k, v)| {
                    self.client
                        .put(&self.bucket, k, PutBody::Bytes(Bytes::from(v.clone())))
                })
                .buffer_unordered(32)
                .for_each(|r| async {
                    r.unwrap();
                })
                .await;
        });
    }

    /// Runs `trainyard train` with the S3 server (or a proxy in front of it) as the store.
    fn train(&self, h: &Home, job: &serde_json::Value, endpoint: &str) -> std::process::Output {
        self.train_with(h, job, endpoint, &[])
    }

    /// `train` with extra environment variables for the trainyard process.
    fn train_with(
        &self,
        h: &Home,
        job: &serde_json::Value,
        endpoint: &str,
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        let path = h.work.path().join("job.json");
        std::fs::write(&path, job.to_string()).unwrap();
        h.cmd(&["train", path.to_str().unwrap()])
            .env("TRAINYARD_STORE", "s3")
            .env("AWS_ENDPOINT_URL_S3", endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", "us-east-1")
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    }

    fn model(&self, prefix: &str, job: &str) -> Vec<(String, Vec<u8>)> {
        let d = tempfile::tempdir().unwrap();
        let bytes = self.rt.block_on(async {
            use trainyard_s3::ObjectClientExt;
            self.client
                .get_bytes(
                    &self.bucket,
                    &format!("{prefix}out/{job}/output/model.tar.gz"),
                )
                .await
                .unwrap()
        });
        let p = d.path().join("m.tar.gz");
        std::fs::write(&p, &bytes).unwrap();
        untar(&p)
    }
}

/// Dumps the channel as `path<TAB>size<TAB>sha256` lines into the model.
const SUMS: &str = "cd /opt/ml/input/data/train && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum > /opt/ml/model/$(hostname).sums; find . -type f | wc -l > /opt/ml/model/$(hostname).count";

fn s3_job(
    name: &str,
    bucket: &str,
    prefix: &str,
    count: usize,
    sharded: bool,
) -> serde_json::Value {
    let mut j = job(name, SUMS, Some(&format!("s3://{bucket}/{prefix}data/")));
    j["OutputDataConfig"]["S3OutputPath"] = json!(format!("s3://{bucket}/{prefix}out"));
    j["ResourceConfig"]["InstanceCount"] = json!(count);
    if sharded {
        j["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] =
            json!("ShardedByS3Key");
    }
    j
}

fn sha256_lines(objects: &[(String, Vec<u8>)], prefix: &str) -> String {
    use std::io::Write;
    let mut sorted: Vec<_> = objects
        .iter()
        .map(|(k, v)| (format!("./{}", &k[prefix.len() + 5..]), v))
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::new();
    for (path, body) in sorted {
        let digest = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(body)?;
                c.wait_with_output()
            });
        let hex = String::from_utf8(digest.unwrap().stdout).unwrap();
        writeln!(out, "{}  {path}", hex.split_whitespace().next().unwrap()).unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn file_mode_delivers_every_object_from_a_real_server() {
    let s = server("file_mode_delivers_every_object_from_a_real_server");
    let prefix = s.prefix("many");
    let mut objects: Vec<(String, Vec<u8>)> = (0..1100)
        .map(|i| {
            (
                format!("{prefix}data/part-{i:05}.csv"),
                format!("row {i}\n").into_bytes(),
            )
        })
        .collect();
    objects.push((
        format!("{prefix}data/nested/deep/a b.txt"),
        b"spaces".to_vec(),
    ));
    objects.push((format!("{prefix}data/ünïcødé/ß.bin"), vec![0, 1, 2, 255]));
    objects.push((format!("{prefix}data/empty"), Vec::new()));
    objects.push((format!("{prefix}data/plus+sign=eq"), b"+".to_vec()));
    s.put_all(&objects);
    let h = Home::new();
    let out = s.train(
        &h,
        &s3_job("many-objects", &s.bucket, &prefix, 1, false),
        &s.endpoint,
    );
    assert!(out.status.success(), "{}", text(&out));
    let model = s.model(&prefix, "many-objects");
    let sums = file_text(&model, "algo-1.sums");
    assert_eq!(sums, sha256_lines(&objects, &prefix));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1104 objects"),
        "{}",
        text(&out)
    );
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn sharded_by_s3_key_across_two_and_three_hosts() {
    let s = server("sharded_by_s3_key_across_two_and_three_hosts");
    let prefix = s.prefix("shards");
    let objects: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("{prefix}data/s-{i:02}"), vec![i as u8; 10]))
        .collect();
    s.put_all(&objects);
    for hosts in [2usize, 3] {
        let h = Home::new();
        let name = format!("sharded-{hosts}");
        let out = s.train(
            &h,
            &s3_job(&name, &s.bucket, &prefix, hosts, true),
            &s.endpoint,
        );
        assert!(out.status.success(), "{}", text(&out));
        let model = s.model(&prefix, &name);
        let mut union = Vec::new();
        for k in 0..hosts {
            let sums = file_text(&model, &format!("algo-{}.sums", k + 1));
            let names: Vec<String> = sums
                .lines()
                .map(|l| l.rsplit("./").next().unwrap().to_string())
                .collect();
            let expected: Vec<String> = (0..10)
                .filter(|i| i % hosts == k)
                .map(|i| format!("s-{i:02}"))
                .collect();
            assert_eq!(names, expected, "host algo-{} of {hosts}", k + 1);
            union.extend(names);
        }
        union.sort();
        assert_eq!(union.len(), 10);
    }
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn a_large_object_arrives_through_parallel_ranged_gets_despite_faults() {
    let s = server("a_large_object_arrives_through_parallel_ranged_gets_despite_faults");
    let prefix = s.prefix("large");
    // 300 MiB, deterministic, not trivially compressible.
    let mut big = vec![0u8; 300 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut objects = vec![(format!("{prefix}data/big.bin"), big)];
    objects.extend((0..50).map(|i| {
        (
            format!("{prefix}data/small-{i:02}"),
            vec![i as u8; 1000 + i],
        )
    }));
    s.put_all(&objects);
    let proxy = FaultProxy::start(
        &s.endpoint,
        ProxyPlan {
            every: 4,
            faults: vec![
                HttpFault::SlowDown,
                HttpFault::Truncate,
                HttpFault::Internal,
            ],
            always_fail: None,
        },
    )
    .unwrap();
    let h = Home::new();
    let out = s.train(
        &h,
        &s3_job("large", &s.bucket, &prefix, 1, false),
        proxy.url(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let model = s.model(&prefix, "large");
    let sums = file_text(&model, "algo-1.sums");
    assert_eq!(
        sums,
        sha256_lines(&objects, &prefix),
        "data must arrive bit-exact"
    );
    assert!(
        proxy.stats().ranged_gets() >= 38,
        "300 MiB should be fetched as 8 MiB ranges"
    );
    assert!(proxy.stats().injected() >= 10, "faults were injected");
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn a_key_that_keeps_failing_fails_the_job_cleanly() {
    let s = server("a_key_that_keeps_failing_fails_the_job_cleanly");
    let prefix = s.prefix("broken");
    let objects: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("{prefix}data/f-{i:02}"), vec![7u8; 100_000]))
        .collect();
    s.put_all(&objects);
    let proxy = FaultProxy::start(
        &s.endpoint,
        ProxyPlan {
            always_fail: Some("f-13".into()),
            ..ProxyPlan::default()
        },
    )
    .unwrap();
    let h = Home::new();
    let out = s.train_with(
        &h,
        &s3_job("broken", &s.bucket, &prefix, 1, false),
        proxy.url(),
        &[("TRAINYARD_KEEP_HOSTS", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = h.describe("broken");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.starts_with("ClientError: channel train:")
            && reason.contains("f-13")
            && reason.contains("500"),
        "{reason}"
    );
    let channel = h.home.path().join("jobs/broken/algo-1/input/data/train");
    let names: Vec<String> = std::fs::read_dir(&channel)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("f-13") || n.contains("trainyard-part")),
        "partial file left: {names:?}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn manifest_file_channels_read_the_listed_objects_from_a_real_server() {
    let s = server("manifest_file_channels_read_the_listed_objects_from_a_real_server");
    let prefix = s.prefix("manifest");
    let mut objects: Vec<(String, Vec<u8>)> = vec![
        (format!("{prefix}raw/a.csv"), b"a".to_vec()),
        (format!("{prefix}raw/sub/b.csv"), b"bb".to_vec()),
        (format!("{prefix}raw/not-listed.csv"), b"no".to_vec()),
    ];
    let manifest =
        json!([{"prefix": format!("s3://{}/{prefix}raw/", s.bucket)}, "sub/b.csv", "a.csv"])
            .to_string();
    objects.push((
        format!("{prefix}lists/train.manifest"),
        manifest.into_bytes(),
    ));
    s.put_all(&objects);
    let h = Home::new();
    let mut j = s3_job("manifest-real", &s.bucket, &prefix, 1, false);
    j["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataType"] = json!("ManifestFile");
    j["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] =
        json!(format!("s3://{}/{prefix}lists/train.manifest", s.bucket));
    let out = s.train(&h, &j, &s.endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let model = s.model(&prefix, "manifest-real");
    let count = file_text(&model, "algo-1.count");
    assert_eq!(count.trim(), "2", "only the listed objects");
    let sums = file_text(&model, "algo-1.sums");
    assert!(
        sums.contains("./a.csv") && sums.contains("./sub/b.csv") && !sums.contains("not-listed"),
        "{sums}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "real-s3"),
    ignore = "needs --features real-s3 and a real S3 server"
)]
fn fastfile_and_pipe_jobs_stream_from_a_real_server() {
    let s = server("fastfile_and_pipe_jobs_stream_from_a_real_server");
    let prefix = s.prefix("streaming");
    let mut objects: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("{prefix}data/f-{i:03}.bin"),
                vec![(i % 251) as u8; 1000 + i],
            )
        })
        .collect();
    // One object larger than the FastFile readahead and Pipe part sizes.
    objects.push((
        format!("{prefix}data/z-large.bin"),
        (0..40_000_000u32).map(|i| (i % 253) as u8).collect(),
    ));
    s.put_all(&objects);

    // FastFile: the mount shows every object with its exact bytes.
    let h = Home::new();
    let mut j = s3_job("fastfile-real", &s.bucket, &prefix, 1, false);
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("FastFile");
    let out = s.train(&h, &j, &s.endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let model = s.model(&prefix, "fastfile-real");
    let sums = file_text(&model, "algo-1.sums");
    assert_eq!(sums, sha256_lines(&objects, &prefix));

    // Pipe: two epochs, each the objects back to back in key order.
    let mut all = Vec::new();
    let mut sorted = objects.clone();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (_, v) in &sorted {
        all.extend_from_slice(v);
    }
    let expected = sha256_lines(&[(format!("{prefix}data/x"), all)], &prefix);
    let expected = expected.split_whitespace().next().unwrap().to_string();
    let h = Home::new();
    let mut j = s3_job("pipe-real", &s.bucket, &prefix, 1, false);
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("Pipe");
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!([
        "sh",
        "-c",
        "for e in 0 1; do while [ ! -p /opt/ml/input/data/train_$e ]; do sleep 0.05; done; sha256sum < /opt/ml/input/data/train_$e | cut -d' ' -f1 > /opt/ml/model/epoch-$e; done"
    ]);
    let out = s.train(&h, &j, &s.endpoint);
    assert!(out.status.success(), "{}", text(&out));
    let model = s.model(&prefix, "pipe-real");
    for e in ["epoch-0", "epoch-1"] {
        let got = file_text(&model, e);
        assert_eq!(got.trim(), expected, "{e} streams every byte in key order");
    }
}
