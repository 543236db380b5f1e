use std::process::Command;

use serde_json::json;

use crate::common::*;

const ALICE: (&str, &str) = ("AKIAALICE00000000001", "secret-of-alice-0123456789");
const AUDITOR: (&str, &str) = ("AKIAAUDITOR000000001", "secret-of-auditor-0123456789");

/// `trainyard --endpoint <server> args...` with `keys` as the AWS credential environment
/// (none: no credentials at all).
fn remote(h: &Home, server: &Server, keys: Option<(&str, &str)>, args: &[&str]) -> Command {
    let mut cmd = h.cmd(&[&["--endpoint", server.url.as_str()], args].concat());
    for name in FOREIGN_ENV {
        cmd.env_remove(name);
    }
    if let Some((key, secret)) = keys {
        cmd.env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "eu-west-1");
    }
    cmd
}

fn iam_json() -> String {
    let user = |name: &str, (key, secret): (&str, &str), actions: &[&str]| {
        json!({
            "UserName": name,
            "AccessKeys": [{"AccessKeyId": key, "SecretAccessKey": secret}],
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}]
        })
    };
    json!({
        "AccountId": "000000000000",
        "Users": [
            user("alice", ALICE, &["sagemaker:*", "iam:PassRole", "logs:*"]),
            user("auditor", AUDITOR, &["sagemaker:ListTrainingJobs"]),
        ],
        "Roles": [{
            "RoleName": "trainyard-test",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "data", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]
        }]
    })
    .to_string()
}

#[test]
fn the_cli_signs_its_requests_with_the_aws_environment() {
    let h = Home::new();
    std::fs::write(h.home.path().join("iam.json"), iam_json()).unwrap();
    let server = Server::start(&h);

    // A job trained through the server, followed with its logs (the `logs` service).
    let j = job("signed-job", "echo hello from a signed job", None);
    let path = h.work.path().join("signed-job.json");
    std::fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
    let out = remote(&h, &server, Some(ALICE), &["train", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from a signed job"),
        "{}",
        text(&out)
    );

    let out = remote(&h, &server, Some(ALICE), &["jobs", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("signed-job ") && l.contains("Completed")),
        "{}",
        text(&out)
    );

    // A user who may list but not describe sees no job.
    let out = remote(&h, &server, Some(AUDITOR), &["jobs", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["TrainingJobSummaries"], json!([]), "{}", text(&out));

    // Without credentials: refused, saying what to set.
    let out = remote(&h, &server, None, &["jobs", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MissingAuthenticationTokenException")
            && err.contains("AWS_ACCESS_KEY_ID")
            && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        text(&out)
    );

    // A wrong secret: refused as a bad signature, and the secret is not echoed.
    let out = remote(
        &h,
        &server,
        Some((ALICE.0, "wrong-secret-0123")),
        &["jobs", "list"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidSignatureException") && !err.contains("wrong-secret-0123"),
        "{}",
        text(&out)
    );

    // Half a key pair is a usage error, before any request.
    let out = remote(&h, &server, None, &["jobs", "list"])
        .env("AWS_ACCESS_KEY_ID", ALICE.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        "{}",
        text(&out)
    );

    // No secret reached the server's log.
    let log = std::fs::read_to_string(h.home.path().join("serve.log")).unwrap();
    assert!(
        !log.contains(ALICE.1) && !log.contains(AUDITOR.1),
        "a secret in the server log"
    );
}
