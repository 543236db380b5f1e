//! Who is calling: the access key of a SigV4-signed request.
//!
//! boto3, the aws CLI and the SageMaker SDK always sign. Until the ABAC work verifies
//! signatures, the server parses the `Authorization` header, records the access key (and
//! whether a session token came along) with each job it creates, and does not check the
//! signature. No secret is ever in a request, so nothing here can leak one.

use axum::http::HeaderMap;
use serde_json::{Value, json};

/// The parsed credential scope of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Access key id.
    pub access_key: String,
    /// Date of the credential scope (`YYYYMMDD`).
    pub date: String,
    /// Region of the scope.
    pub region: String,
    /// Service of the scope (`sagemaker`, `logs`).
    pub service: String,
    /// Whether `X-Amz-Security-Token` was present (temporary credentials).
    pub session: bool,
}

impl Caller {
    /// JSON recorded with a job.
    pub fn to_json(&self) -> Value {
        json!({"AccessKeyId": self.access_key, "Region": self.region, "TemporaryCredentials": self.session})
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sagemaker/aws4_request, ...`.
pub fn caller(headers: &HeaderMap) -> Option<Caller> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let cred = rest
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("Credential="))?;
    let mut parts = cred.split('/');
    let (access_key, date, region, service) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next()? != "aws4_request" || access_key.is_empty() {
        return None;
    }
    Some(Caller {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        session: headers.contains_key("x-amz-security-token"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        let c = caller(&h).unwrap();
        assert_eq!(
            (
                c.access_key.as_str(),
                c.region.as_str(),
                c.service.as_str(),
                c.session
            ),
            ("AKIDEXAMPLE", "us-east-1", "sagemaker", false)
        );
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(caller(&h).is_none());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/2024/r/s".parse().unwrap(),
        );
        assert!(caller(&h).is_none());
    }
}
