use serde_json::json;

use crate::common::*;

/// Lists the channel (path and content) into the model so the test can compare.
const DUMP: &str = "cd /opt/ml/input/data/train && find . -type f | LC_ALL=C sort | while read f; do printf '%s=' \"$f\"; cat \"$f\"; echo; done > /opt/ml/model/$(hostname).txt";

#[test]
fn file_mode_delivers_nested_odd_and_empty_keys_from_the_store() {
    let h = Home::new();
    let objects: &[(&str, &[u8])] = &[
        ("ds/train/a.csv", b"a"),
        ("ds/train/sub dir/b c.csv", b"b"),
        ("ds/train/ünï/çødé.txt", b"u"),
        ("ds/train/deep/x/y/z.bin", b"z"),
        ("ds/train/empty", b""),
        ("ds/train/folder/", b""),
        ("ds/other/not-me", b"no"),
    ];
    for (k, v) in objects {
        h.put("data", k, v);
    }
    let out = h.train(&job("odd-keys", DUMP, Some("s3://data/ds/train/")));
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/odd-keys/output/model.tar.gz"));
    let listing = String::from_utf8(files[0].1.clone()).unwrap();
    assert_eq!(
        listing,
        "./a.csv=a\n./deep/x/y/z.bin=z\n./empty=\n./sub dir/b c.csv=b\n./ünï/çødé.txt=u\n"
    );
    let d = h.describe("odd-keys");
    assert_eq!(
        statuses(&d),
        [
            "Starting",
            "Downloading",
            "Training",
            "Uploading",
            "Completed"
        ]
    );
}

#[test]
fn a_partial_prefix_keeps_full_basenames() {
    let h = Home::new();
    for k in [
        "ds/train-1.csv",
        "ds/train-2.csv",
        "ds/training/x.csv",
        "ds/test.csv",
    ] {
        h.put("data", k, k.as_bytes());
    }
    let out = h.train(&job("partial", DUMP, Some("s3://data/ds/train")));
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/partial/output/model.tar.gz"));
    assert_eq!(
        String::from_utf8(files[0].1.clone()).unwrap(),
        "./train-1.csv=ds/train-1.csv\n./train-2.csv=ds/train-2.csv\n./training/x.csv=ds/training/x.csv\n"
    );
}

#[test]
fn a_key_escaping_the_channel_directory_fails_the_job_before_anything_runs() {
    let h = Home::new();
    h.put("data", "evil/ok.csv", b"fine");
    h.put("data", "evil/../../../escape.txt", b"pwned");
    let out = h.train(&job(
        "escape",
        "touch /opt/ml/model/ran",
        Some("s3://data/evil/"),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = h.describe("escape");
    assert_eq!(d["TrainingJobStatus"], "Failed");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.starts_with("ClientError: channel train:")
            && reason.contains("evil/../../../escape.txt")
            && reason.contains("'..'"),
        "{reason}"
    );
    assert_eq!(statuses(&d), ["Starting", "Downloading", "Failed"]);
    let found: Vec<_> = walk(h.home.path())
        .into_iter()
        .chain(walk(h.work.path()))
        .filter(|p| p.ends_with("escape.txt") && !p.contains("/store/"))
        .collect();
    assert!(found.is_empty(), "escaped file written: {found:?}");
}

#[test]
fn sharded_by_s3_key_splits_objects_round_robin_across_hosts() {
    let h = Home::new();
    for i in 0..5 {
        h.put(
            "data",
            &format!("shards/part-{i}"),
            format!("{i}").as_bytes(),
        );
        h.put("data", &format!("full/f-{i}"), b"f");
    }
    let mut j = job(
        "sharded",
        "cd /opt/ml/input/data && ls train > /opt/ml/model/$(hostname).train && ls all > /opt/ml/model/$(hostname).all",
        None,
    );
    j["ResourceConfig"]["InstanceCount"] = json!(2);
    j["InputDataConfig"] = json!([
        {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/shards/", "S3DataDistributionType": "ShardedByS3Key"}}},
        {"ChannelName": "all", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/full/"}}}
    ]);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/sharded/output/model.tar.gz"));
    let get = |n: &str| file_text(&files, n);
    assert_eq!(get("algo-1.train"), "part-0\npart-2\npart-4\n");
    assert_eq!(get("algo-2.train"), "part-1\npart-3\n");
    assert_eq!(get("algo-1.all"), get("algo-2.all"));
    assert_eq!(get("algo-1.all").lines().count(), 5);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Downloaded channel train (algo-2)"),
        "{stdout}"
    );
}

#[test]
fn one_failing_host_fails_the_job_and_stops_the_others() {
    let h = Home::new();
    let mut j = job(
        "one-fails",
        "if [ $(hostname) = algo-2 ]; then echo 'algo-2 broke' >&2; exit 4; fi; exec sleep 60",
        None,
    );
    j["ResourceConfig"]["InstanceCount"] = json!(2);
    let t = std::time::Instant::now();
    let out = h.train(&j);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let reason = h.describe("one-fails")["FailureReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("AlgorithmError: algo-2 exit code 4") && reason.contains("algo-2 broke"),
        "{reason}"
    );
}

#[test]
fn file_uris_serve_as_input_and_output() {
    let h = Home::new();
    h.data("local/in", &[("x.txt", b"hello")]);
    let mut j = job(
        "local-io",
        "cp /opt/ml/input/data/train/x.txt /opt/ml/model/",
        Some("file://local/in"),
    );
    j["OutputDataConfig"]["S3OutputPath"] = json!("file://local/out");
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let archive = h.work.path().join("local/out/local-io/output/model.tar.gz");
    assert_eq!(untar(&archive), [("x.txt".to_string(), b"hello".to_vec())]);
    let d = h.describe("local-io");
    let expected = format!(
        "file://{}/local/out/local-io/output/model.tar.gz",
        h.work.path().display()
    );
    assert_eq!(d["ModelArtifacts"]["S3ModelArtifacts"], expected.as_str());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p.to_string_lossy().into_owned())
            }
        }
    }
    out
}
