//! The STS query protocol (`AssumeRole`, `GetCallerIdentity`) on the SageMaker endpoint.
//!
//! Tenants get their tagged sessions from STS; for clients pointed at trainyard with one
//! `endpoint_url`, STS has to answer on the same port. STS speaks the AWS Query protocol,
//! not JSON: `POST /` with a form-encoded body (`Action=AssumeRole&Version=2011-06-15&
//! RoleArn=…&Tags.member.1.Key=…`), answered with XML in the
//! `https://sts.amazonaws.com/doc/2011-06-15/` namespace, wrapped in `<Action>Result`, and
//! errors as `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`. The
//! documents are written by hand (every text node escaped) in exactly the shape botocore's
//! query parser reads; the tests check that with botocore itself and with boto3 against a
//! live server.
//!
//! The dispatcher recognises an STS request by its content type ([`is_sts_request`]),
//! verifies its signature (`sigv4`), and calls [`handle_sts`]; an authentication failure is
//! answered with [`auth_error_response`], in STS's codes.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::authz::sigv4::{AuthError, Protocol};
use crate::identity::{AssumeRoleInput, Credentials, Identity, Principal, SessionTag, StsError};

/// The XML namespace of STS documents.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The API version clients send as `Version`.
pub const STS_VERSION: &str = "2011-06-15";

/// Whether a request is in the query protocol (form-encoded body), i.e. meant for STS.
pub fn is_sts_request(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Answers one STS request from `principal` (already authenticated). `request_id` goes in
/// the XML body and the `x-amzn-RequestId` header.
pub async fn handle_sts(
    identity: &Identity,
    principal: &Principal,
    form_body: &[u8],
    request_id: &str,
) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(form_body).into_owned().collect();
    let action = param(&params, "Action").unwrap_or_default();
    let result = match param(&params, "Version") {
        Some(version) if version != STS_VERSION => Err(StsError::InvalidAction(format!(
            "Could not find operation {action} for version {version}"
        ))),
        _ => match action {
            "AssumeRole" => parse_assume_role(&params)
                .and_then(|input| identity.assume_role(principal, input))
                .map(|credentials| assume_role_xml(&credentials, request_id)),
            "GetCallerIdentity" => Ok(caller_identity_xml(principal, request_id)),
            "" => Err(StsError::InvalidAction(
                "The request has no Action parameter".into(),
            )),
            other => Err(StsError::InvalidAction(format!(
                "Could not find operation {other} for version {STS_VERSION}: trainyard's STS implements AssumeRole and GetCallerIdentity"
            ))),
        },
    };
    match result {
        Ok(xml) => xml_response(StatusCode::OK, xml, request_id),
        Err(error) => {
            if error.is_server_fault() {
                tracing::error!(action, caller = %principal.arn(), %error, "STS request failed");
            } else {
                tracing::debug!(action, caller = %principal.arn(), %error, "STS request refused");
            }
            error_response(&error, request_id)
        }
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the `AssumeRole` parameters of a form body.
pub fn parse_assume_role(params: &[(String, String)]) -> Result<AssumeRoleInput, StsError> {
    let null = |member: &str| {
        StsError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    };
    let mut input = AssumeRoleInput {
        role_arn: param(params, "RoleArn")
            .ok_or_else(|| null("roleArn"))?
            .to_owned(),
        role_session_name: param(params, "RoleSessionName")
            .ok_or_else(|| null("roleSessionName"))?
            .to_owned(),
        ..AssumeRoleInput::default()
    };
    if let Some(d) = param(params, "DurationSeconds") {
        input.duration_seconds = Some(d.trim().parse().map_err(|_| {
            StsError::Validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must be an integer"
            ))
        })?);
    }
    input.policy = param(params, "Policy").map(str::to_owned);
    input.external_id = param(params, "ExternalId").map(str::to_owned);
    input.source_identity = param(params, "SourceIdentity").map(str::to_owned);
    let mut tags: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut transitive: BTreeMap<usize, String> = BTreeMap::new();
    for (name, value) in params {
        let unsupported = [
            "PolicyArns",
            "SerialNumber",
            "TokenCode",
            "ProvidedContexts",
        ]
        .into_iter()
        .find(|p| name == p || name.starts_with(&format!("{p}.")));
        if let Some(p) = unsupported {
            // An empty list is how the query protocol writes "none given".
            if name == p && value.is_empty() {
                continue;
            }
            return Err(StsError::Validation(format!(
                "The {p} parameter is not supported by trainyard's STS"
            )));
        }
        if let Some(rest) = name.strip_prefix("Tags.member.") {
            let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
            let index = member_index(index, name)?;
            let entry = tags.entry(index).or_default();
            match field {
                "Key" => entry.0 = Some(value.clone()),
                "Value" => entry.1 = Some(value.clone()),
                _ => return Err(malformed_member(name)),
            }
        } else if let Some(index) = name.strip_prefix("TransitiveTagKeys.member.") {
            transitive.insert(member_index(index, name)?, value.clone());
        }
    }
    for (index, (key, value)) in tags {
        input.tags.push(SessionTag {
            key: key.ok_or_else(|| null(&format!("tags.{index}.member.key")))?,
            value: value.ok_or_else(|| null(&format!("tags.{index}.member.value")))?,
        });
    }
    input.transitive_tag_keys = transitive.into_values().collect();
    Ok(input)
}

fn member_index(text: &str, name: &str) -> Result<usize, StsError> {
    text.parse::<usize>()
        .ok()
        .filter(|i| (1..=1000).contains(i))
        .ok_or_else(|| malformed_member(name))
}

fn malformed_member(name: &str) -> StsError {
    StsError::Validation(format!(
        "Malformed list parameter '{name}': expected <List>.member.<N>[.<Field>] with N from 1"
    ))
}

/// Escapes text for an XML text node or attribute.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn iso8601(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

fn element(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", xml_escape(text))
}

fn document(action: &str, result: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{STS_NAMESPACE}\">\n  <{action}Result>\n{result}  </{action}Result>\n  <ResponseMetadata>\n    {}\n  </ResponseMetadata>\n</{action}Response>\n",
        element("RequestId", request_id)
    )
}

/// The `AssumeRole` response document.
pub fn assume_role_xml(c: &Credentials, request_id: &str) -> String {
    let mut result = String::new();
    if let Some(si) = &c.source_identity {
        result.push_str(&format!("    {}\n", element("SourceIdentity", si)));
    }
    result.push_str(&format!(
        "    <AssumedRoleUser>\n      {}\n      {}\n    </AssumedRoleUser>\n",
        element("AssumedRoleId", &c.assumed_role_id),
        element("Arn", &c.assumed_role_arn)
    ));
    result.push_str(&format!(
        "    <Credentials>\n      {}\n      {}\n      {}\n      {}\n    </Credentials>\n",
        element("AccessKeyId", &c.access_key_id),
        element("SecretAccessKey", c.secret_access_key.expose()),
        element("SessionToken", c.session_token.expose()),
        element("Expiration", &iso8601(c.expiration))
    ));
    result.push_str(&format!(
        "    {}\n",
        element("PackedPolicySize", &c.packed_policy_size.to_string())
    ));
    document("AssumeRole", &result, request_id)
}

/// The `GetCallerIdentity` response document.
pub fn caller_identity_xml(principal: &Principal, request_id: &str) -> String {
    identity_xml(
        principal.arn(),
        principal.user_id(),
        principal.account(),
        request_id,
    )
}

fn identity_xml(arn: &str, user_id: &str, account: &str, request_id: &str) -> String {
    let result = format!(
        "    {}\n    {}\n    {}\n",
        element("Arn", arn),
        element("UserId", user_id),
        element("Account", account)
    );
    document("GetCallerIdentity", &result, request_id)
}

/// The API version IAM's query protocol sends (STS's is [`STS_VERSION`]).
pub const IAM_VERSION: &str = "2010-05-08";

/// Whether a query-protocol body is an IAM request (`Version=2010-05-08`).
pub fn is_iam_request(form_body: &[u8]) -> bool {
    form_urlencoded::parse(form_body).any(|(k, v)| k == "Version" && v == IAM_VERSION)
}

/// IAM is not implemented: every IAM request is refused with `AccessDenied`, which is what
/// SDKs that only check a role (SageMaker v3's `SimulatePrincipalPolicy` and `GetRole`
/// before a training job) treat as "cannot verify, proceed".
pub fn iam_refusal(form_body: &[u8], request_id: &str) -> Response {
    let action = form_urlencoded::parse(form_body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    tracing::debug!(action, "IAM request refused: IAM is not implemented");
    error_response(
        &StsError::AccessDenied(format!(
            "trainyard does not implement IAM ({action}): roles and policies are configured in $TRAINYARD_HOME/iam.json"
        )),
        request_id,
    )
}

/// The ARN `GetCallerIdentity` answers without `iam.json`: the account's root user, the
/// identity every unauthenticated caller acts as (see `doc/contract/api.md`).
pub fn default_identity_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:root")
}

/// STS without `iam.json`: `GetCallerIdentity` answers the default identity, the account's
/// root user (`arn:aws:iam::ACCOUNT:root`, user id the account id), so SDKs that start by
/// asking who they are (SageMaker's, for the default bucket `sagemaker-REGION-ACCOUNT`) work;
/// `AssumeRole` needs roles, so it is refused naming `iam.json`.
pub fn handle_without_identity(account_id: &str, form_body: &[u8], request_id: &str) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(form_body).into_owned().collect();
    let action = param(&params, "Action").unwrap_or_default();
    let result = match param(&params, "Version") {
        Some(version) if version != STS_VERSION => Err(StsError::InvalidAction(format!(
            "Could not find operation {action} for version {version}"
        ))),
        _ => match action {
            "GetCallerIdentity" => Ok(identity_xml(
                &default_identity_arn(account_id),
                account_id,
                account_id,
                request_id,
            )),
            "" => Err(StsError::InvalidAction(
                "The request has no Action parameter".into(),
            )),
            other => Err(StsError::InvalidAction(format!(
                "Could not find operation {other}: without $TRAINYARD_HOME/iam.json trainyard's STS answers only GetCallerIdentity (configure iam.json for AssumeRole)"
            ))),
        },
    };
    match result {
        Ok(xml) => xml_response(StatusCode::OK, xml, request_id),
        Err(error) => error_response(&error, request_id),
    }
}

fn error_xml(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{STS_NAMESPACE}\">\n  <Error>\n    {}\n    {}\n    {}\n  </Error>\n  {}\n</ErrorResponse>\n",
        element("Type", kind),
        element("Code", code),
        element("Message", message),
        element("RequestId", request_id)
    )
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// An STS error document with its HTTP status. Internal failures show a generic message
/// (the detail was logged).
pub fn error_response(error: &StsError, request_id: &str) -> Response {
    let (kind, message) = if error.is_server_fault() {
        (
            "Receiver",
            "An internal error occurred; see the trainyard server log",
        )
    } else {
        ("Sender", error.message())
    };
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(
        status,
        error_xml(kind, error.code(), message, request_id),
        request_id,
    )
}

/// A SigV4 refusal of an STS request, in STS's codes (`InvalidClientTokenId`,
/// `SignatureDoesNotMatch`, `ExpiredToken`, ...).
pub fn auth_error_response(error: &AuthError, request_id: &str) -> Response {
    let status = error.status(Protocol::Query);
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    xml_response(
        status,
        error_xml(
            kind,
            error.code(Protocol::Query),
            &error.message,
            request_id,
        ),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, Uri};
    use axum::routing::post;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;
    use crate::authz::sigv4::{SignedRequest, verify};
    use crate::identity::testing::{self, ALICE_KEY, ALICE_SECRET, MALLORY_KEY, MALLORY_SECRET};

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn assume_role_parameters_are_read_from_the_form() {
        let body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fcreator\
            &RoleSessionName=s1&DurationSeconds=1800&Tags.member.2.Key=project&Tags.member.2.Value=p+1\
            &Tags.member.1.Key=tenant-id&Tags.member.1.Value=acme&TransitiveTagKeys.member.1=tenant-id\
            &PolicyArns=&ExternalId=ext-1";
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let input = parse_assume_role(&params).unwrap();
        assert_eq!(input.role_arn, "arn:aws:iam::111122223333:role/creator");
        assert_eq!(input.duration_seconds, Some(1800));
        assert_eq!(
            input.tags,
            vec![
                SessionTag::new("tenant-id", "acme"),
                SessionTag::new("project", "p 1")
            ]
        );
        assert_eq!(input.transitive_tag_keys, vec!["tenant-id".to_owned()]);
        assert_eq!(input.external_id.as_deref(), Some("ext-1"));

        const ROLE: (&str, &str) = ("RoleArn", "arn:aws:iam::111122223333:role/creator");
        const NAME: (&str, &str) = ("RoleSessionName", "s1");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![NAME], "roleArn"),
            (vec![ROLE], "roleSessionName"),
            (
                vec![ROLE, NAME, ("DurationSeconds", "soon")],
                "durationSeconds",
            ),
            (
                vec![ROLE, NAME, ("Tags.member.1.Key", "k")],
                "tags.1.member.value",
            ),
            (
                vec![ROLE, NAME, ("Tags.member.0.Key", "k")],
                "Malformed list parameter",
            ),
            (
                vec![ROLE, NAME, ("Tags.member.x.Key", "k")],
                "Malformed list parameter",
            ),
            (
                vec![ROLE, NAME, ("Tags.member.1.Colour", "k")],
                "Malformed list parameter",
            ),
            (
                vec![
                    ROLE,
                    NAME,
                    ("PolicyArns.member.1.arn", "arn:aws:iam::aws:policy/x"),
                ],
                "PolicyArns parameter is not supported",
            ),
            (
                vec![ROLE, NAME, ("TokenCode", "123456")],
                "TokenCode parameter is not supported",
            ),
        ];
        for (pairs, needle) in cases {
            let error = parse_assume_role(&form(&pairs)).unwrap_err();
            assert_eq!(error.code(), "ValidationError");
            assert!(error.message().contains(needle), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn xml_escapes_text() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }

    /// Parses documents with botocore's query parser and the STS model; prints the parsed
    /// dicts as JSON.
    const BOTOCORE_PARSER: &str = r#"
import json, sys
import botocore.session, botocore.parsers
model = botocore.session.get_session().get_service_model("sts")
out = []
for item in json.load(sys.stdin):
    parser = botocore.parsers.create_parser("query")
    response = {"status_code": item["status"], "headers": {"x-amzn-requestid": item["request_id"]},
                "body": item["body"].encode()}
    out.append(parser.parse(response, model.operation_model(item["operation"]).output_shape))
print(json.dumps(out, default=str))
"#;

    async fn body_text(response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn botocore_parses_the_documents() {
        let identity = testing::identity();
        let alice = identity.resolve(ALICE_KEY, None, testing::now()).unwrap();
        let body = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fcreator&RoleSessionName=a%26b&Tags.member.1.Key=tenant-id&Tags.member.1.Value=acme&SourceIdentity=alice";
        // `&` is not allowed in a session name: a validation error, in XML.
        let (ok_status, ok) = body_text(handle_sts(&identity, &alice, body, "rid-1").await).await;
        assert!(ok.contains("ValidationError"), "{ok}");
        let body = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fcreator&RoleSessionName=a.b%40c&Tags.member.1.Key=tenant-id&Tags.member.1.Value=acme&SourceIdentity=alice";
        let (assume_status, assume) =
            body_text(handle_sts(&identity, &alice, body, "rid-2").await).await;
        let (who_status, who) = body_text(
            handle_sts(
                &identity,
                &alice,
                b"Action=GetCallerIdentity&Version=2011-06-15",
                "rid-3",
            )
            .await,
        )
        .await;
        let (denied_status, denied) = body_text(
            handle_sts(&identity, &alice, b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fexec&RoleSessionName=x1", "rid-4").await,
        )
        .await;
        let (unknown_status, unknown) = body_text(
            handle_sts(
                &identity,
                &alice,
                b"Action=GetSessionToken&Version=2011-06-15",
                "rid-5",
            )
            .await,
        )
        .await;
        assert_eq!(
            (
                ok_status,
                assume_status,
                who_status,
                denied_status,
                unknown_status
            ),
            (400, 200, 200, 403, 400)
        );
        let input = json!([
            {"operation": "AssumeRole", "status": ok_status, "body": ok, "request_id": "rid-1"},
            {"operation": "AssumeRole", "status": assume_status, "body": assume, "request_id": "rid-2"},
            {"operation": "GetCallerIdentity", "status": who_status, "body": who, "request_id": "rid-3"},
            {"operation": "AssumeRole", "status": denied_status, "body": denied, "request_id": "rid-4"},
            {"operation": "GetSessionToken", "status": unknown_status, "body": unknown, "request_id": "rid-5"},
        ]);
        let parsed: Vec<Value> =
            serde_json::from_value(testing::python_json(BOTOCORE_PARSER, &input)).unwrap();

        assert_eq!(parsed[0]["Error"]["Code"], "ValidationError");
        assert_eq!(parsed[0]["Error"]["Type"], "Sender");
        let creds = &parsed[1]["Credentials"];
        assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
        assert_eq!(creds["SecretAccessKey"].as_str().unwrap().len(), 40);
        assert_eq!(creds["SessionToken"].as_str().unwrap().len(), 128);
        assert!(
            creds["Expiration"].as_str().unwrap().contains("+00:00"),
            "{creds}"
        );
        assert_eq!(
            parsed[1]["AssumedRoleUser"]["Arn"],
            "arn:aws:sts::111122223333:assumed-role/creator/a.b@c"
        );
        assert!(
            parsed[1]["AssumedRoleUser"]["AssumedRoleId"]
                .as_str()
                .unwrap()
                .ends_with(":a.b@c")
        );
        assert_eq!(parsed[1]["SourceIdentity"], "alice");
        assert!(parsed[1]["PackedPolicySize"].is_u64());
        assert_eq!(parsed[1]["ResponseMetadata"]["RequestId"], "rid-2");
        assert_eq!(parsed[2]["Arn"], "arn:aws:iam::111122223333:user/alice");
        assert_eq!(parsed[2]["Account"], "111122223333");
        assert!(parsed[2]["UserId"].as_str().unwrap().starts_with("AIDA"));
        assert_eq!(parsed[3]["Error"]["Code"], "AccessDenied");
        assert!(
            parsed[3]["Error"]["Message"]
                .as_str()
                .unwrap()
                .contains("sts:AssumeRole")
        );
        assert_eq!(parsed[3]["ResponseMetadata"]["RequestId"], "rid-4");
        assert_eq!(parsed[4]["Error"]["Code"], "InvalidAction");
    }

    async fn harness(
        State(identity): State<Arc<Identity>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        assert!(is_sts_request(&headers));
        let request = SignedRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            body: &body,
        };
        match verify(&identity, &request) {
            Ok(principal) => handle_sts(&identity, &principal, &body, &request_id).await,
            Err(error) => auth_error_response(&error, &request_id),
        }
    }

    /// boto3 against a live server: signing, AssumeRole with tags, the new credentials
    /// used for GetCallerIdentity and a chained AssumeRole, and every refusal surfacing as
    /// the ClientError code boto3 users match on.
    const BOTO3_CLIENT: &str = r#"
import datetime, json, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
url, alice_key, alice_secret, mallory_key, mallory_secret = sys.argv[1:6]
cfg = Config(retries={"max_attempts": 1})
def sts(key, secret, token=None):
    return boto3.client("sts", endpoint_url=url, region_name="us-east-1", config=cfg,
                        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
def error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Message"]]
    return None
out = {}
alice = sts(alice_key, alice_secret)
out["alice"] = alice.get_caller_identity()["Arn"]
r = alice.assume_role(RoleArn="arn:aws:iam::111122223333:role/creator", RoleSessionName="tenant-acme",
                      DurationSeconds=1800, Tags=[{"Key": "tenant-id", "Value": "acme"}], TransitiveTagKeys=["tenant-id"])
c = r["Credentials"]
out["expires_in"] = (c["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
session = sts(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["session"] = session.get_caller_identity()["Arn"]
chained = session.assume_role(RoleArn="arn:aws:iam::111122223333:role/chained", RoleSessionName="chained")
out["chained"] = chained["AssumedRoleUser"]["Arn"]
out["chained_too_long"] = error(session.assume_role, RoleArn="arn:aws:iam::111122223333:role/chained", RoleSessionName="c2", DurationSeconds=7200)
out["denied"] = error(sts(mallory_key, mallory_secret).assume_role, RoleArn="arn:aws:iam::111122223333:role/creator", RoleSessionName="m1")
out["validation"] = error(alice.assume_role, RoleArn="arn:aws:iam::111122223333:role/creator", RoleSessionName="no spaces")
out["bad_signature"] = error(sts(alice_key, "not-the-secret").get_caller_identity)
out["unknown_key"] = error(sts("AKIANOBODY0000000001", "x").get_caller_identity)
out["no_token"] = error(sts(c["AccessKeyId"], c["SecretAccessKey"]).get_caller_identity)
out["wrong_token"] = error(sts(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"][:-1] + "A").get_caller_identity)
print(json.dumps(out, default=str))
"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn boto3_against_a_live_endpoint() {
        let identity = Arc::new(testing::identity());
        let app = Router::new().route("/", post(harness)).with_state(identity);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .args([
                    "-c",
                    BOTO3_CLIENT,
                    &url,
                    ALICE_KEY,
                    ALICE_SECRET,
                    MALLORY_KEY,
                    MALLORY_SECRET,
                ])
                .output()
                .expect("python3 is needed to run boto3")
        })
        .await
        .unwrap();
        server.abort();
        assert!(
            output.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(out["alice"], "arn:aws:iam::111122223333:user/alice");
        assert_eq!(
            out["session"],
            "arn:aws:sts::111122223333:assumed-role/creator/tenant-acme"
        );
        assert_eq!(
            out["chained"],
            "arn:aws:sts::111122223333:assumed-role/chained/chained"
        );
        let expires_in = out["expires_in"].as_f64().unwrap();
        assert!((1700.0..=1800.0).contains(&expires_in), "{expires_in}");
        let code = |name: &str| {
            (
                out[name][0].as_str().unwrap_or("none").to_owned(),
                out[name][1].as_u64().unwrap_or(0),
            )
        };
        assert_eq!(code("chained_too_long"), ("ValidationError".into(), 400));
        assert_eq!(code("denied"), ("AccessDenied".into(), 403));
        assert_eq!(code("validation"), ("ValidationError".into(), 400));
        assert_eq!(code("bad_signature"), ("SignatureDoesNotMatch".into(), 403));
        assert_eq!(code("unknown_key"), ("InvalidClientTokenId".into(), 403));
        assert_eq!(code("no_token"), ("InvalidClientTokenId".into(), 403));
        // A different token changes a signed header, but the signature is made with it, so
        // the signature verifies and the token comparison refuses it.
        assert_eq!(code("wrong_token"), ("InvalidClientTokenId".into(), 403));
    }
}
