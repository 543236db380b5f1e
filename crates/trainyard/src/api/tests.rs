//! The API driven in process: `app(state)` answers `tower::ServiceExt::oneshot` requests
//! signed with `authz::sigv4::sign`, as an SDK signs them, against an installation with an
//! `iam.json` of two tenants. The scheduler is never started, so created jobs stay queued and
//! nothing runs; what is tested is the request path: authentication, the control-plane
//! decisions and the answers clients see.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

use super::{AppState, app};
use crate::authz::CreatorRecord;
use crate::authz::sigv4::{ClientCredentials, sign};
use crate::config::Settings;
use crate::db::{JobStore, SqliteStore};
use crate::executor::Executor;
use crate::identity::{IamConfig, Identity, Secret, SessionStore};
use crate::runner::Runner;
use crate::scheduler::Scheduler;
use crate::storage::Storage;

const ACCOUNT: &str = "111122223333";
const ALICE: (&str, &str) = ("AKIAALICE00000000001", "secret-of-alice-0123456789");
const BOB: (&str, &str) = ("AKIABOB0000000000001", "secret-of-bob-0123456789");

/// Two tenants' users, each tagged with its tenant, allowed to create jobs tagged with it and
/// to see and act on those only (the policy of `tests/python/test_abac.py`'s strict mode).
fn iam_json() -> String {
    let user = |name: &str, (key, secret): (&str, &str), tenant: &str| {
        json!({
            "UserName": name,
            "AccessKeys": [{"AccessKeyId": key, "SecretAccessKey": secret}],
            "Tags": [{"Key": "tenant-id", "Value": tenant}],
            "Policies": [{"PolicyName": "tenant", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["sagemaker:ListTrainingJobs", "iam:PassRole", "logs:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "sagemaker:CreateTrainingJob", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}},
                {"Effect": "Allow", "Action": ["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:UpdateTrainingJob"],
                 "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}}
            ]}}]
        })
    };
    json!({
        "AccountId": ACCOUNT,
        "Users": [user("alice", ALICE, "a"), user("bob", BOB, "b")],
        "Roles": [{
            "RoleName": "exec",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
            "Policies": [{"PolicyName": "data", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]
        }]
    })
    .to_string()
}

/// A server of its own home; `iam` switches access control on. Also returns its job store.
fn server(iam: bool) -> (Router, Arc<dyn JobStore>, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_home(home.path()).unwrap();
    settings.account_id = ACCOUNT.into();
    settings.stop_grace = Duration::from_secs(1);
    settings.isolation = false;
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&settings.db_path()).unwrap());
    let storage = Storage::new(&settings).unwrap();
    let identity = iam.then(|| {
        let path = home.path().join("iam.json");
        let config = IamConfig::parse(&iam_json(), &path, ACCOUNT).unwrap();
        Arc::new(Identity::new(config, SessionStore::in_memory().unwrap()))
    });
    let runner = Runner::new(settings.clone(), store.clone(), storage.clone())
        .with_identity(identity.clone());
    let scheduler = Scheduler::new(
        settings.clone(),
        store.clone(),
        Executor::Local(Box::new(runner)),
        4,
        home.path().to_path_buf(),
    );
    let s3 = crate::api::s3::Endpoint::new(&settings, identity.clone());
    let state = AppState {
        settings,
        store: store.clone(),
        storage,
        scheduler,
        strict: false,
        sandbox_check: false,
        workdir: home.path().to_string_lossy().into_owned(),
        s3,
        identity,
    };
    (app(Arc::new(state)), store, home)
}

fn credentials((key, secret): (&str, &str)) -> ClientCredentials {
    ClientCredentials {
        access_key_id: key.into(),
        secret_access_key: Secret::new(secret),
        session_token: None,
    }
}

/// The request an SDK sends: JSON 1.1, signed by `signer` when given.
fn request(target: &str, body: &Value, signer: Option<&ClientCredentials>) -> Request<Body> {
    let body = body.to_string();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("trainyard.test"));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert("x-amz-target", HeaderValue::from_str(target).unwrap());
    if let Some(credentials) = signer {
        sign(
            "POST",
            "/",
            "",
            &mut headers,
            body.as_bytes(),
            credentials,
            ("us-east-1", "sagemaker"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    }
    let mut request = Request::post("/").body(Body::from(body)).unwrap();
    *request.headers_mut() = headers;
    request
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert!(
        response.headers().contains_key("x-amzn-requestid"),
        "every answer carries a request id"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn call(
    app: &Router,
    target: &str,
    body: Value,
    signer: &ClientCredentials,
) -> (StatusCode, Value) {
    send(app, request(target, &body, Some(signer))).await
}

fn create_body(name: &str, tenant: &str) -> Value {
    json!({
        "TrainingJobName": name,
        "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/exec"),
        "AlgorithmSpecification": {"TrainingImage": "host", "TrainingInputMode": "File",
                                   "ContainerEntrypoint": ["true"]},
        "OutputDataConfig": {"S3OutputPath": format!("s3://shared-bucket/{tenant}/out")},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "Tags": [{"Key": "tenant-id", "Value": tenant}]
    })
}

fn code(answer: &Value) -> &str {
    answer["__type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn unsigned_and_badly_signed_requests_are_refused() {
    let (app, _store, _home) = server(true);
    let list = "SageMaker.ListTrainingJobs";
    let (status, answer) = send(&app, request(list, &json!({}), None)).await;
    assert_eq!(
        (status, code(&answer)),
        (
            StatusCode::BAD_REQUEST,
            "MissingAuthenticationTokenException"
        )
    );

    // Alice's key with a wrong secret.
    let forged = credentials((ALICE.0, "not-alices-secret"));
    let (status, answer) = call(&app, list, json!({}), &forged).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "InvalidSignatureException")
    );

    // A correctly signed request whose body was changed on the way.
    let mut tampered = request(list, &json!({}), Some(&credentials(ALICE)));
    *tampered.body_mut() = Body::from(json!({"MaxResults": 1}).to_string());
    let (_, answer) = send(&app, tampered).await;
    assert_eq!(code(&answer), "InvalidSignatureException");

    // An unknown key.
    let stranger = credentials(("AKIANOBODY0000000001", "whatever"));
    let (_, answer) = call(&app, list, json!({}), &stranger).await;
    assert_eq!(code(&answer), "UnrecognizedClientException");

    // The same request, correctly signed, is answered.
    let (status, answer) = call(&app, list, json!({}), &credentials(ALICE)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["TrainingJobSummaries"], json!([]));
}

#[tokio::test]
async fn tenants_see_and_act_on_only_their_own_jobs() {
    let (app, store, _home) = server(true);
    let (alice, bob) = (credentials(ALICE), credentials(BOB));
    let create = "SageMaker.CreateTrainingJob";
    for (who, name, tenant) in [(&alice, "a-job", "a"), (&bob, "b-job", "b")] {
        let (status, answer) = call(&app, create, create_body(name, tenant), who).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // The creator is recorded with the job, and reads back.
    let record = CreatorRecord::parse(&store.caller("a-job").unwrap().unwrap()).unwrap();
    assert!(
        matches!(&record, CreatorRecord::Verified(c) if c.arn == format!("arn:aws:iam::{ACCOUNT}:user/alice")),
        "{record:?}"
    );
    // A job must carry its creator's tenant.
    let (_, answer) = call(&app, create, create_body("a-as-b", "b"), &alice).await;
    assert_eq!(code(&answer), "AccessDeniedException");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("sagemaker:CreateTrainingJob"),
        "{answer}"
    );

    // Each tenant lists only its own jobs.
    let list = "SageMaker.ListTrainingJobs";
    let names = |answer: &Value| -> Vec<String> {
        answer["TrainingJobSummaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["TrainingJobName"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, answer) = call(&app, list, json!({}), &alice).await;
    assert_eq!(names(&answer), ["a-job"]);
    let (_, answer) = call(&app, list, json!({}), &bob).await;
    assert_eq!(names(&answer), ["b-job"]);

    // Alice describes her job; not Bob's. The refusal is AccessDeniedException naming the
    // job, which differs from the answer for a job that does not exist (as the API has
    // always answered, and tests/python/test_abac.py asserts).
    let describe = "SageMaker.DescribeTrainingJob";
    let (status, answer) = call(&app, describe, json!({"TrainingJobName": "a-job"}), &alice).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["TrainingJobName"], "a-job");
    let (status, denied) = call(&app, describe, json!({"TrainingJobName": "b-job"}), &alice).await;
    assert_eq!(
        (status, code(&denied)),
        (StatusCode::BAD_REQUEST, "AccessDeniedException")
    );
    let message = denied["message"].as_str().unwrap();
    assert!(
        message.contains("user/alice")
            && message.contains("sagemaker:DescribeTrainingJob")
            && message.contains("training-job/b-job")
            && !message.contains(ALICE.1),
        "{message}"
    );
    let (status, missing) = call(
        &app,
        describe,
        json!({"TrainingJobName": "no-such-job"}),
        &alice,
    )
    .await;
    assert_eq!(
        (status, code(&missing), missing["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            "ValidationException",
            Some("Requested resource not found.")
        )
    );

    // Nor stop, update or read the logs of Bob's job.
    for (target, body) in [
        (
            "SageMaker.StopTrainingJob",
            json!({"TrainingJobName": "b-job"}),
        ),
        (
            "SageMaker.UpdateTrainingJob",
            json!({"TrainingJobName": "b-job", "ResourceConfig": {"KeepAlivePeriodInSeconds": 0}}),
        ),
        (
            "Logs_20140328.GetLogEvents",
            json!({"logGroupName": super::LOG_GROUP, "logStreamName": "b-job/algo-1-0"}),
        ),
        (
            "Logs_20140328.DescribeLogStreams",
            json!({"logGroupName": super::LOG_GROUP, "logStreamNamePrefix": "b-job/"}),
        ),
    ] {
        let (_, answer) = call(&app, target, body, &alice).await;
        assert_eq!(code(&answer), "AccessDeniedException", "{target}: {answer}");
    }
    // Bob still sees his job running as it was.
    let (_, answer) = call(&app, describe, json!({"TrainingJobName": "b-job"}), &bob).await;
    assert_eq!(answer["TrainingJobStatus"], "InProgress", "{answer}");
}

#[tokio::test]
async fn without_iam_json_requests_need_no_signature() {
    let (app, store, _home) = server(false);
    let list = || request("SageMaker.ListTrainingJobs", &json!({}), None);
    let (status, answer) = send(&app, list()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Any key, even one no server knows, is taken as claimed, and recorded with the job.
    let claimed = credentials(("AKIACLAIMED000000001", "never-checked"));
    let create = request(
        "SageMaker.CreateTrainingJob",
        &create_body("anyone", "a"),
        Some(&claimed),
    );
    let (status, answer) = send(&app, create).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, answer) = send(&app, list()).await;
    assert_eq!(
        answer["TrainingJobSummaries"][0]["TrainingJobName"],
        "anyone"
    );
    let record = CreatorRecord::parse(&store.caller("anyone").unwrap().unwrap()).unwrap();
    assert!(
        matches!(&record, CreatorRecord::Claimed(k) if k.access_key_id == "AKIACLAIMED000000001" && k.region == "us-east-1"),
        "{record:?}"
    );
}

/// `GetLogEvents` over a 20 MB log: tokens are byte offsets of line starts, heads, tails and
/// token steps answer as before, and a page without a limit stops at about 1 MB.
#[tokio::test]
async fn log_events_are_served_in_windows_with_offset_tokens() {
    use crate::runner::logs::format_event;
    let (app, _store, home) = server(false);
    let (status, answer) = send(
        &app,
        request(
            "SageMaker.CreateTrainingJob",
            &create_body("logged", "a"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // 20 MB of log: short lines, every 100th of 200 KiB.
    let logs = Settings::for_home(home.path())
        .unwrap()
        .job_dir("logged")
        .logs();
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 20 << 20 {
        let msg = if n % 100 == 99 {
            "w".repeat(200 << 10)
        } else {
            format!("line {n}")
        };
        text.push_str(&format_event(1_700_000_000.0 + f64::from(n), &msg));
        text.push('\n');
        n += 1;
    }
    std::fs::write(logs.join("algo-1.log"), &text).unwrap();
    let (_, streams) = send(
        &app,
        request(
            "Logs_20140328.DescribeLogStreams",
            &json!({"logGroupName": super::LOG_GROUP, "logStreamNamePrefix": "logged/"}),
            None,
        ),
    )
    .await;
    let stream = &streams["logStreams"][0];
    let name = stream["logStreamName"].as_str().unwrap().to_string();
    assert_eq!(stream["firstEventTimestamp"], 1_700_000_000_000i64);
    assert_eq!(
        stream["lastEventTimestamp"],
        1_700_000_000_000i64 + i64::from(n - 1) * 1000
    );
    let page = |body: Value| {
        let mut b = json!({"logGroupName": super::LOG_GROUP, "logStreamName": name});
        b.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        request("Logs_20140328.GetLogEvents", &b, None)
    };
    // Head, one at a time.
    let (_, first) = send(&app, page(json!({"startFromHead": true, "limit": 1}))).await;
    assert_eq!(first["events"][0]["message"], "line 0");
    let token = first["nextForwardToken"].as_str().unwrap().to_string();
    assert_eq!(token, format!("f/{}", text.find('\n').unwrap() + 1));
    let (_, second) = send(&app, page(json!({"nextToken": token, "limit": 1}))).await;
    assert_eq!(second["events"][0]["message"], "line 1");
    // The tail, then back one page.
    let stored: Vec<String> = text
        .lines()
        .map(|l| {
            crate::runner::logs::parse_event(l)
                .1
                .chars()
                .take(20)
                .collect()
        })
        .collect();
    let msgs = |p: &Value| -> Vec<String> {
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().chars().take(20).collect())
            .collect()
    };
    let (_, tail) = send(&app, page(json!({"limit": 2}))).await;
    assert_eq!(msgs(&tail), stored[stored.len() - 2..]);
    let back = tail["nextBackwardToken"].as_str().unwrap().to_string();
    let (_, before) = send(&app, page(json!({"nextToken": back, "limit": 2}))).await;
    assert_eq!(msgs(&before), stored[stored.len() - 4..stored.len() - 2]);
    // A forward token at the end does not move; one that names no line start is invalid.
    let end = tail["nextForwardToken"].as_str().unwrap().to_string();
    let (_, none) = send(&app, page(json!({"nextToken": end}))).await;
    assert_eq!(none["events"], json!([]));
    assert_eq!(none["nextForwardToken"], json!(end));
    let (status, bad) = send(&app, page(json!({"nextToken": "f/3"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&bad), "ValidationException", "{bad}");
    // Without a limit a page stops at about 1 MB.
    let (_, all) = send(&app, page(json!({"startFromHead": true}))).await;
    let bytes: usize = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= 1 << 20 && bytes > 512 << 10, "{bytes}");
}
