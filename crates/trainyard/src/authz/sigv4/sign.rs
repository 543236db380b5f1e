//! The client side of SigV4, for the CLI's `--endpoint` requests: the canonical request and
//! the signature are those [`super::verify`] computes (`canonical.rs`), and the tests hold
//! both to botocore.

use axum::http::{HeaderMap, HeaderValue};
use hmac::Mac;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

use super::canonical::{Scope, canonical_request, signature_mac};
use super::{ALGORITHM, SignedRequest};
use crate::identity::Secret;

/// Credentials a client signs with (the CLI reads them from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`). `Debug` shows the key id only.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The request has no `host` header (it is signed, so it must be set before signing).
    #[error("the request to sign has no `host` header")]
    MissingHost,
    /// A credential cannot be sent as a header value.
    #[error("the {what} is not a valid HTTP header value")]
    InvalidHeaderValue {
        /// Which value.
        what: &'static str,
    },
}

/// Headers the SDKs leave unsigned because proxies may change them.
const UNSIGNED_HEADERS: [&str; 3] = ["user-agent", "expect", "x-amzn-trace-id"];

/// Signs a request as the SDKs do, with the same canonicalisation [`super::verify`] checks: sets
/// `x-amz-date`, `x-amz-security-token` (with a session token) and `authorization`, and signs
/// every header present except `user-agent`, `expect` and `x-amzn-trace-id`. `headers` must
/// hold `host`; `path` and `query` are as they will be sent (percent-encoded).
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one request plus who signs it, where and when; a struct would only rename them"
)]
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    credentials: &ClientCredentials,
    region_service: (&str, &str),
    now: OffsetDateTime,
) -> Result<(), SignError> {
    if !headers.contains_key("host") {
        return Err(SignError::MissingHost);
    }
    let amz_date = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("a UTC time formats as ISO 8601 basic");
    headers.remove("authorization");
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("digits and letters are a valid header value"),
    );
    match &credentials.session_token {
        Some(token) => {
            let value = HeaderValue::from_str(token.expose()).map_err(|_| {
                SignError::InvalidHeaderValue {
                    what: "session token",
                }
            })?;
            headers.insert("x-amz-security-token", value);
        }
        None => {
            headers.remove("x-amz-security-token");
        }
    }
    let mut signed: Vec<String> = headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| !UNSIGNED_HEADERS.contains(&name.as_str()))
        .collect();
    signed.sort();
    signed.dedup();
    let request = SignedRequest {
        method,
        path,
        query,
        headers,
        body,
    };
    let payload = hex::encode(Sha256::digest(body));
    let canonical = canonical_request(&request, &signed, &payload);
    let (region, service) = region_service;
    let scope = Scope {
        date: &amz_date[..8],
        region,
        service,
    };
    let signature = hex::encode(
        signature_mac(
            credentials.secret_access_key.expose(),
            &scope,
            &amz_date,
            &canonical,
        )
        .finalize()
        .into_bytes(),
    );
    let value = format!(
        "{ALGORITHM} Credential={}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={signature}",
        credentials.access_key_id,
        scope.date,
        signed.join(";")
    );
    headers.insert(
        "authorization",
        HeaderValue::from_str(&value).map_err(|_| SignError::InvalidHeaderValue {
            what: "access key id",
        })?,
    );
    Ok(())
}
