//! SigV4 held to botocore: its signatures verify and tampered copies do not, the signer
//! produces its signatures, and malformed credentials get the codes clients know.

use axum::http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use time::macros::datetime;

use super::canonical::{canonical_query, canonical_uri, percent_decode};
use super::*;
use crate::identity::testing::{self, ALICE_KEY, ALICE_SECRET};
use crate::identity::{AssumeRoleInput, Credentials, Secret, SessionTag};

/// The moment botocore is told it is while signing.
const SIGNED_AT: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

/// Signs requests with botocore itself: real clients (with a `before-send` hook that
/// captures the signed request instead of sending it) and `SigV4Auth` on a hand-made
/// request with an awkward path and query. Input: {"alice": [key, secret],
/// "session": [key, secret, token]}; output: a list of captured requests.
const BOTOCORE_SIGNER: &str = r#"
import datetime, json, sys
from urllib.parse import urlsplit
import botocore.auth, botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

botocore.auth.get_current_datetime = lambda *a, **k: datetime.datetime(2024, 5, 1, 12, 0, 0)
creds = json.load(sys.stdin)
captured = []

class Captured(Exception):
    pass

def record(name, method, url, headers, body):
    parts = urlsplit(url)
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, (bytes, bytearray)):
        body = body.read()
    hs = [[k, v.decode() if isinstance(v, bytes) else v] for k, v in headers.items()]
    hs.append(["host", parts.netloc])
    captured.append({"name": name, "method": method, "path": parts.path, "query": parts.query,
                     "headers": hs, "body": bytes(body).hex()})

def client(service, key):
    session = botocore.session.get_session()
    c = session.create_client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:8080",
                              aws_access_key_id=key[0], aws_secret_access_key=key[1],
                              aws_session_token=key[2] if len(key) > 2 else None)
    def before_send(request, **kw):
        record(f"{service}", request.method, request.url, request.headers, request.body)
        raise Captured()
    c.meta.events.register("before-send", before_send)
    return c

def call(fn, **kw):
    try:
        fn(**kw)
    except Captured:
        pass

call(client("sagemaker", creds["alice"]).describe_training_job, TrainingJobName="job-1")
call(client("sts", creds["alice"]).get_caller_identity)
call(client("sts", creds["session"]).assume_role, RoleArn="arn:aws:iam::111122223333:role/chained",
     RoleSessionName="chained-1", Tags=[{"Key": "project", "Value": "p 1"}], TransitiveTagKeys=["project"])
call(client("logs", creds["session"]).get_log_events, logGroupName="/aws/sagemaker/TrainingJobs",
     logStreamName="job-1/algo-1-1700000000")

request = AWSRequest(method="GET", url="http://127.0.0.1:8080/some%20dir/./x/../caf%C3%A9//file.txt?b=2&a=1&a=0&c=x%20y%2Bz&empty=&tilde=~",
                     headers={"X-Custom": "  spaced   out  value ", "Content-Type": "text/plain"}, data=b"")
botocore.auth.SigV4Auth(Credentials(*creds["alice"]), "sagemaker", "eu-west-1").add_auth(request)
record("manual", request.method, request.url, request.headers, request.body)
print(json.dumps(captured))
"#;

#[derive(Debug)]
struct Captured {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Captured {
    fn request(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

fn sign_with_botocore(session: &Credentials) -> Vec<Captured> {
    let input = json!({
        "alice": [ALICE_KEY, ALICE_SECRET],
        "session": [session.access_key_id, session.secret_access_key.expose(), session.session_token.expose()],
    });
    let list: Vec<Value> =
        serde_json::from_value(testing::python_json(BOTOCORE_SIGNER, &input)).unwrap();
    list.into_iter()
        .map(|v| {
            let mut headers = HeaderMap::new();
            for pair in v["headers"].as_array().unwrap() {
                headers.append(
                    HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
                    HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
                );
            }
            Captured {
                name: v["name"].as_str().unwrap().to_owned(),
                method: v["method"].as_str().unwrap().to_owned(),
                path: v["path"].as_str().unwrap().to_owned(),
                query: v["query"].as_str().unwrap().to_owned(),
                headers,
                body: hex::decode(v["body"].as_str().unwrap()).unwrap(),
            }
        })
        .collect()
}

fn session_credentials(identity: &Identity, issued: OffsetDateTime, duration: i64) -> Credentials {
    let alice = identity.resolve(ALICE_KEY, None, issued).unwrap();
    identity
        .assume_role_at(
            &alice,
            AssumeRoleInput {
                role_arn: "arn:aws:iam::111122223333:role/creator".into(),
                role_session_name: "botocore".into(),
                duration_seconds: Some(duration),
                tags: vec![SessionTag::new("tenant-id", "acme")],
                ..AssumeRoleInput::default()
            },
            issued,
        )
        .unwrap()
}

fn kind(result: Result<Principal, AuthError>) -> AuthErrorKind {
    match result {
        Ok(p) => panic!("expected a refusal, got {}", p.arn()),
        Err(e) => e.kind,
    }
}

#[test]
fn botocore_signatures_verify_and_tampered_copies_do_not() {
    let identity = testing::identity();
    let session = session_credentials(&identity, SIGNED_AT - Duration::minutes(5), 3600);
    let vectors = sign_with_botocore(&session);
    let names: Vec<&str> = vectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["sagemaker", "sts", "sts", "logs", "manual"]);
    let expected = [
        "arn:aws:iam::111122223333:user/alice",
        "arn:aws:iam::111122223333:user/alice",
        "arn:aws:sts::111122223333:assumed-role/creator/botocore",
        "arn:aws:sts::111122223333:assumed-role/creator/botocore",
        "arn:aws:iam::111122223333:user/alice",
    ];
    for (captured, arn) in vectors.iter().zip(expected) {
        let principal = verify_at(&identity, &captured.request(), SIGNED_AT)
            .unwrap_or_else(|e| panic!("{}: {e:?}", captured.name));
        assert_eq!(principal.arn(), arn, "{}", captured.name);

        // A changed body.
        let mut body = captured.body.clone();
        body.extend_from_slice(b" ");
        let tampered = SignedRequest {
            body: &body,
            ..captured.request()
        };
        assert_eq!(
            kind(verify_at(&identity, &tampered, SIGNED_AT)),
            AuthErrorKind::SignatureMismatch,
            "{}",
            captured.name
        );
        // A changed path, method and query.
        for (method, path, query) in [
            ("PUT", captured.path.as_str(), captured.query.as_str()),
            (captured.method.as_str(), "/other", captured.query.as_str()),
            (captured.method.as_str(), captured.path.as_str(), "x=1"),
        ] {
            let tampered = SignedRequest {
                method,
                path,
                query,
                ..captured.request()
            };
            assert_eq!(
                kind(verify_at(&identity, &tampered, SIGNED_AT)),
                AuthErrorKind::SignatureMismatch,
                "{}",
                captured.name
            );
        }
        // A changed signed header.
        let mut headers = captured.headers.clone();
        headers.insert("x-amz-date", HeaderValue::from_static("20240501T120001Z"));
        let tampered = SignedRequest {
            headers: &headers,
            ..captured.request()
        };
        assert_eq!(
            kind(verify_at(&identity, &tampered, SIGNED_AT)),
            AuthErrorKind::SignatureMismatch,
            "{}",
            captured.name
        );
        // The clock: 15 minutes either way is fine, more is not.
        verify_at(&identity, &captured.request(), SIGNED_AT + MAX_SKEW).unwrap();
        let late = verify_at(
            &identity,
            &captured.request(),
            SIGNED_AT + MAX_SKEW + Duration::seconds(1),
        )
        .unwrap_err();
        assert_eq!(late.kind, AuthErrorKind::SignatureExpired);
        assert!(
            late.message
                .starts_with("Signature expired: 20240501T120000Z"),
            "{}",
            late.message
        );
        assert_eq!(late.code(Protocol::Json), "InvalidSignatureException");
        assert_eq!(late.code(Protocol::Query), "SignatureDoesNotMatch");
        let early = verify_at(
            &identity,
            &captured.request(),
            SIGNED_AT - MAX_SKEW - Duration::seconds(1),
        )
        .unwrap_err();
        assert!(
            early.message.starts_with("Signature not yet current"),
            "{}",
            early.message
        );
    }
}

#[test]
fn session_tokens_and_expiry_are_enforced() {
    let identity = testing::identity();
    // Expired five minutes before the requests were signed.
    let expired = session_credentials(&identity, SIGNED_AT - Duration::minutes(20), 900);
    let vectors = sign_with_botocore(&expired);
    let signed = &vectors[2];
    let error = verify_at(&identity, &signed.request(), SIGNED_AT).unwrap_err();
    assert_eq!(error.kind, AuthErrorKind::ExpiredToken);
    assert_eq!(error.code(Protocol::Json), "ExpiredTokenException");
    assert_eq!(error.code(Protocol::Query), "ExpiredToken");

    let live = session_credentials(&identity, SIGNED_AT, 3600);
    let vectors = sign_with_botocore(&live);
    let signed = &vectors[2];
    // Without the token header (unsigned here, so the signature would still match).
    let mut headers = signed.headers.clone();
    headers.remove("x-amz-security-token");
    let request = SignedRequest {
        headers: &headers,
        ..signed.request()
    };
    let error = verify_at(&identity, &request, SIGNED_AT).unwrap_err();
    // x-amz-security-token is a signed header: removing it breaks the signature first.
    assert!(matches!(
        error.kind,
        AuthErrorKind::SignatureMismatch | AuthErrorKind::InvalidClientToken
    ));
    // A user's request carrying a token is refused as an invalid token.
    let user = &vectors[0];
    let mut headers = user.headers.clone();
    headers.insert("x-amz-security-token", HeaderValue::from_static("bogus"));
    let request = SignedRequest {
        headers: &headers,
        ..user.request()
    };
    assert_eq!(
        kind(verify_at(&identity, &request, SIGNED_AT)),
        AuthErrorKind::InvalidClientToken
    );
}

#[test]
fn malformed_and_unknown_credentials_are_refused_with_the_right_codes() {
    let identity = testing::identity();
    let body = b"{}";
    let hash = hex::encode(Sha256::digest(body));
    let with_auth = |auth: Option<&str>| {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("x-amz-date", HeaderValue::from_static("20240501T120000Z"));
        if let Some(a) = auth {
            h.insert("authorization", HeaderValue::from_str(a).unwrap());
        }
        h
    };
    let check = |headers: HeaderMap, expected: AuthErrorKind, json: &str, query: &str| {
        let request = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let error = verify_at(&identity, &request, SIGNED_AT).unwrap_err();
        assert_eq!(error.kind, expected, "{}", error.message);
        assert_eq!(
            (error.code(Protocol::Json), error.code(Protocol::Query)),
            (json, query)
        );
    };
    check(
        with_auth(None),
        AuthErrorKind::MissingAuthenticationToken,
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
    );
    check(
        with_auth(Some("Basic dXNlcjpwdw==")),
        AuthErrorKind::IncompleteSignature,
        "IncompleteSignatureException",
        "IncompleteSignature",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date",
        )),
        AuthErrorKind::IncompleteSignature,
        "IncompleteSignatureException",
        "IncompleteSignature",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/2024/us-east-1/sagemaker, SignedHeaders=host;x-amz-date, Signature=00",
        )),
        AuthErrorKind::IncompleteSignature,
        "IncompleteSignatureException",
        "IncompleteSignature",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=x-amz-date, Signature=00",
        )),
        AuthErrorKind::IncompleteSignature,
        "IncompleteSignatureException",
        "IncompleteSignature",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIANOBODY0000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )),
        AuthErrorKind::InvalidClientToken,
        "UnrecognizedClientException",
        "InvalidClientTokenId",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240502/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )),
        AuthErrorKind::SignatureMismatch,
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    );
    check(
        with_auth(Some(
            "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=zz",
        )),
        AuthErrorKind::SignatureMismatch,
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    );
    let mut unsigned = with_auth(Some(
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ));
    unsigned.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    check(
        unsigned,
        AuthErrorKind::SignatureMismatch,
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    );
    let mut wrong_hash = with_auth(Some(
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ));
    wrong_hash.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&hash.replace('a', "b")).unwrap(),
    );
    check(
        wrong_hash,
        AuthErrorKind::SignatureMismatch,
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    );
    let mut no_date = with_auth(Some(
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    ));
    no_date.remove("x-amz-date");
    check(
        no_date,
        AuthErrorKind::IncompleteSignature,
        "IncompleteSignatureException",
        "IncompleteSignature",
    );
    let refused = AuthError::new(AuthErrorKind::InvalidClientToken, "m");
    assert_eq!(
        (refused.status(Protocol::Json), refused.code(Protocol::Json)),
        (StatusCode::BAD_REQUEST, "UnrecognizedClientException")
    );
}

#[test]
fn aws_documentation_example_signing_key() {
    // The example of the SigV4 documentation ("Examples of how to derive a signing key").
    let key = derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        hex::encode(key),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

#[test]
fn canonical_parts() {
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
    assert_eq!(
        canonical_uri("/some%20dir/caf%C3%A9"),
        "/some%2520dir/caf%25C3%25A9"
    );
    assert_eq!(
        canonical_query("b=2&a=1&a=0&c=x%20y%2Bz&empty=&flag"),
        "a=0&a=1&b=2&c=x%20y%2Bz&empty=&flag="
    );
    assert_eq!(canonical_query("k=a+b&bad=%zz"), "bad=%25zz&k=a%2Bb");
    assert_eq!(percent_decode("%4"), b"%4");
    assert_eq!(scope_service(&{
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=K/20240501/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00"));
        h
    }, "").as_deref(), Some("sts"));
}

#[test]
fn the_claim_is_read_from_either_form() {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
            .parse()
            .unwrap(),
    );
    let c = Claim::of(&h, "").unwrap();
    assert_eq!(
        (
            c.access_key.as_str(),
            c.region.as_str(),
            c.service.as_str(),
            c.session
        ),
        ("AKIDEXAMPLE", "us-east-1", "sagemaker", false)
    );
    h.insert("x-amz-security-token", "t".parse().unwrap());
    assert!(Claim::of(&h, "").unwrap().session);
    h.insert("authorization", "Basic abc".parse().unwrap());
    assert!(Claim::of(&h, "").is_none());
    h.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AK/2024/r/s".parse().unwrap(),
    );
    assert!(Claim::of(&h, "").is_none());

    let presigned = "Action=GetCallerIdentity&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20240501%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok&X-Amz-Signature=00";
    let c = Claim::of(&HeaderMap::new(), presigned).unwrap();
    assert_eq!(
        (
            c.access_key.as_str(),
            c.region.as_str(),
            c.service.as_str(),
            c.session
        ),
        ("ASIAEXAMPLE", "eu-west-1", "sts", true)
    );
    assert!(Claim::of(&HeaderMap::new(), "Action=GetCallerIdentity").is_none());
}

#[test]
fn presigned_queries_parse_like_headers_and_are_refused_precisely() {
    let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAALICE00000000001%2F20240501%2Fus-east-1%2Fsagemaker%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-SignedHeaders=host%3Bx-amz-date&X-Amz-Signature=00";
    let from_query = parse_presigned(query).unwrap().unwrap();
    let from_header = parse_authorization(
        "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20240501/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    )
    .unwrap();
    assert_eq!(from_query.form, SignatureForm::Query);
    assert_eq!(
        Authorization {
            form: SignatureForm::Header,
            ..from_query
        },
        from_header
    );
    assert_eq!(parse_presigned("a=1&b=2").unwrap(), None);
    let missing = parse_presigned("X-Amz-Signature=00").unwrap_err();
    assert_eq!(missing.kind, AuthErrorKind::IncompleteSignature);
    assert!(
        missing.message.contains("'X-Amz-Credential'"),
        "{}",
        missing.message
    );
    let wrong =
        parse_presigned(&query.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")).unwrap_err();
    assert!(
        wrong.message.contains("AWS4-ECDSA-P256-SHA256"),
        "{}",
        wrong.message
    );

    let identity = testing::identity();
    let headers = HeaderMap::new();
    let request = SignedRequest {
        method: "POST",
        path: "/",
        query,
        headers: &headers,
        body: b"",
    };
    let refused = verify_at(&identity, &request, SIGNED_AT).unwrap_err();
    assert_eq!(refused.kind, AuthErrorKind::IncompleteSignature);
    assert!(refused.message.contains("presigned"), "{}", refused.message);
}

#[test]
fn the_signer_matches_botocore_and_its_requests_verify() {
    let identity = testing::identity();
    let session = session_credentials(&identity, SIGNED_AT - Duration::minutes(5), 3600);
    let alice = ClientCredentials {
        access_key_id: ALICE_KEY.into(),
        secret_access_key: Secret::new(ALICE_SECRET),
        session_token: None,
    };
    let temporary = ClientCredentials {
        access_key_id: session.access_key_id.clone(),
        secret_access_key: session.secret_access_key.clone(),
        session_token: Some(session.session_token.clone()),
    };
    for captured in sign_with_botocore(&session) {
        let theirs = captured.headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        let scope = parse_authorization(&theirs).unwrap();
        let credentials = if scope.access_key_id == ALICE_KEY {
            &alice
        } else {
            &temporary
        };
        // botocore adds `amz-sdk-*` and `content-length` after signing; keep what it
        // signed, minus what the signer adds itself.
        let mut headers = HeaderMap::new();
        for (name, value) in &captured.headers {
            let added = ["x-amz-date", "x-amz-security-token"].contains(&name.as_str());
            if scope.signed_headers.iter().any(|h| h == name.as_str()) && !added {
                headers.append(name.clone(), value.clone());
            }
        }
        sign(
            &captured.method,
            &captured.path,
            &captured.query,
            &mut headers,
            &captured.body,
            credentials,
            (&scope.region, &scope.service),
            SIGNED_AT,
        )
        .unwrap();
        let ours = headers["authorization"].to_str().unwrap();
        assert_eq!(ours, theirs, "{}", captured.name);
        let signed = SignedRequest {
            headers: &headers,
            ..captured.request()
        };
        verify_at(&identity, &signed, SIGNED_AT).unwrap();
    }
    // Without a host header there is nothing to sign against.
    let mut bare = HeaderMap::new();
    assert!(matches!(
        sign(
            "POST",
            "/",
            "",
            &mut bare,
            b"",
            &alice,
            ("us-east-1", "sagemaker"),
            SIGNED_AT
        ),
        Err(SignError::MissingHost)
    ));
    // The secret never shows in Debug output.
    assert!(!format!("{alice:?}").contains(ALICE_SECRET));
}

mod properties {
    //! What must hold for any input, not only the captured vectors: the parsers never panic,
    //! and whatever the signer signs, the verifier accepts, and no longer once the body
    //! changes.

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn parsers_never_panic(text in any::<String>(), ascii in "[ -~]{0,200}") {
            let _ = parse_authorization(&text);
            let _ = parse_authorization(&format!("{ALGORITHM} {ascii}"));
            let _ = parse_presigned(&text);
            let _ = parse_presigned(&ascii);
            let _ = parse_presigned(&format!("X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={ascii}"));
        }

        #[test]
        fn signed_requests_verify_until_changed(
            method in "(GET|POST|PUT)",
            segments in proptest::collection::vec("[A-Za-z0-9._~%-]{0,12}", 0..4),
            query in proptest::collection::vec(("[A-Za-z0-9%+._-]{1,8}", "[A-Za-z0-9%+._ -]{0,8}"), 0..4),
            header in "[ -~]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
        ) {
            let identity = testing::identity();
            let alice = ClientCredentials {
                access_key_id: ALICE_KEY.into(),
                secret_access_key: Secret::new(ALICE_SECRET),
                session_token: None,
            };
            let path = format!("/{}", segments.join("/"));
            let query = query
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20")))
                .collect::<Vec<_>>()
                .join("&");
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_static("trainyard.test"));
            headers.insert("x-custom", HeaderValue::from_str(&header).unwrap());
            sign(&method, &path, &query, &mut headers, &body, &alice, (&region, "sagemaker"), SIGNED_AT)
                .unwrap();
            let parsed = parse_authorization(headers["authorization"].to_str().unwrap()).unwrap();
            prop_assert_eq!(
                (parsed.access_key_id.as_str(), parsed.region.as_str(), parsed.date.as_str()),
                (ALICE_KEY, region.as_str(), "20240501")
            );
            let request = SignedRequest { method: &method, path: &path, query: &query, headers: &headers, body: &body };
            prop_assert!(verify_at(&identity, &request, SIGNED_AT).is_ok());
            let mut changed = body.clone();
            changed.push(b'!');
            let tampered = SignedRequest { body: &changed, ..request };
            prop_assert_eq!(
                verify_at(&identity, &tampered, SIGNED_AT).map(|p| p.arn().to_owned()).unwrap_err().kind,
                AuthErrorKind::SignatureMismatch
            );
        }
    }
}
