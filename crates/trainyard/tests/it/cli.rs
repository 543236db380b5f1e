use serde_json::json;

use crate::common::*;

/// Runs `train` on a mutated request and expects exit code 2 with `needle` in stderr.
fn refused(h: &Home, name: &str, mutate: impl FnOnce(&mut serde_json::Value), needle: &str) {
    let mut j = job(name, "true", None);
    mutate(&mut j);
    let out = h.train(&j);
    assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "{name}: expected {needle:?} in:\n{err}"
    );
    assert!(
        h.describe_opt(name).is_none(),
        "{name}: a refused job must not be recorded"
    );
}

#[test]
fn invalid_requests_are_refused_naming_field_and_rule() {
    let h = Home::new();
    h.data("d", &[("x", b"1")]);
    refused(
        &h,
        "unknown-field",
        |j| j["Bogus"] = json!(1),
        "unknown field `Bogus`",
    );
    refused(
        &h,
        "bad-enum",
        |j| j["AlgorithmSpecification"]["TrainingInputMode"] = json!("Stream"),
        "Value 'Stream' at 'algorithmSpecification.trainingInputMode' failed to satisfy constraint: Member must satisfy enum value set: [File, FastFile, Pipe]",
    );
    refused(
        &h,
        "bad-limit",
        |j| j["StoppingCondition"]["MaxRuntimeInSeconds"] = json!(0),
        "Value '0' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 1",
    );
    refused(
        &h,
        "dup-channels",
        |j| {
            let ch = json!({"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://d/"}}});
            j["InputDataConfig"] = json!([ch.clone(), ch]);
        },
        "Channel names must be unique",
    );
    refused(
        &h,
        "cross-field",
        |j| {
            j["InputDataConfig"] = json!([{"ChannelName": "t", "CompressionType": "Gzip", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://d/"}}}]);
        },
        "CompressionType Gzip is supported only in Pipe input mode",
    );
    refused(
        &h,
        "bad-image-reference",
        |j| j["AlgorithmSpecification"]["TrainingImage"] = json!("Acme/Trainer:1"),
        "invalid image reference",
    );
    refused(
        &h,
        "no-objects",
        |j| j["InputDataConfig"] = json!([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://nobucket/none/"}}}]),
        "No S3 objects found under S3 URL",
    );
    refused(
        &h,
        "warm-pool",
        |j| j["ResourceConfig"]["KeepAlivePeriodInSeconds"] = json!(21601),
        "'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy constraint: Member must have value less than or equal to 21600",
    );
    refused(
        &h,
        "bad-bucket",
        |j| j["OutputDataConfig"]["S3OutputPath"] = json!("s3://b/out"),
        "bucket name \"b\" must be 3 to 63 characters long",
    );
    let bad_name = h.train(&job("bad_name", "true", None));
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern"));
}

#[test]
fn s3_helper_puts_lists_and_gets() {
    let h = Home::new();
    h.data("up", &[("a.txt", b"A"), ("sub/b.txt", b"BB")]);
    let out = h.run(&["s3", "cp", "--recursive", "up", "s3://bkt/data/"]);
    assert!(out.status.success(), "{}", text(&out));
    let ls = h.run(&["s3", "ls", "s3://bkt/data/"]);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "         PRE sub/\n           1 a.txt\n"
    );
    let ls = h.run(&["s3", "ls", "--recursive", "s3://bkt/"]);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "           1 data/a.txt\n           2 data/sub/b.txt\n"
    );
    let out = h.run(&["s3", "cp", "--recursive", "s3://bkt/data", "down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(h.work.path().join("down/sub/b.txt")).unwrap(),
        b"BB"
    );
    let out = h.run(&["s3", "cp", "s3://bkt/data/a.txt", "single.txt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(h.work.path().join("single.txt")).unwrap(),
        b"A"
    );
    assert_eq!(h.run(&["s3", "cp", "up", "down"]).status.code(), Some(2));
}
