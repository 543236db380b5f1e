//! AWS Signature Version 4: who sent this request, proven, and the signing the CLI does.
//!
//! The access key in an `Authorization` header is only a claim; ABAC is worthless if a
//! tenant can claim another tenant's session. So every request is re-signed here with the
//! secret the server holds for that key and compared with the client's signature, in
//! constant time, exactly as AWS does: canonical request (method, URI-encoded path,
//! canonical query string, signed headers lower-cased, trimmed and sorted, payload hash),
//! string to sign (`AWS4-HMAC-SHA256`, `X-Amz-Date`, credential scope, hash of the canonical
//! request) and the derived signing key (`AWS4<secret>` → date → region → service →
//! `aws4_request`). Only then are the session token and the session's expiry checked and
//! the [`Principal`] returned.
//!
//! Credentials are read in one place, [`authorization`], whichever form they take (the
//! `Authorization` header, or presigned query parameters), so verification, the unverified
//! [`Claim`] recorded when access control is off, and any other reader cannot disagree
//! about what a request claims. [`sign`] is the client side (the CLI's `--endpoint`
//! requests) and shares the canonical request and the signature computation with
//! [`verify`], so the two cannot drift apart; the tests hold both to botocore.
//!
//! Refusals carry the error codes clients know, which differ between the JSON services
//! (`sagemaker`, `logs`) and the STS query protocol ([`Protocol`]): a missing or malformed
//! header (`MissingAuthenticationToken`, `IncompleteSignature`), an unknown key or bad token
//! (`UnrecognizedClientException` / `InvalidClientTokenId`), a wrong signature or a
//! timestamp more than 15 minutes off (`InvalidSignatureException` / `SignatureDoesNotMatch`),
//! an expired session (`ExpiredTokenException` / `ExpiredToken`).
//!
//! Not supported, and refused: presigned (query-string) authentication (parsed, so the
//! refusal is precise, but no route of the API takes the `GET` it is made for),
//! `UNSIGNED-PAYLOAD` and streaming payloads (the control-plane APIs always sign their small
//! bodies), and the `Date` header in place of `X-Amz-Date`. The credential scope's region and service are
//! taken as the client states them (the signature covers them); they are not matched
//! against the server's region. Nothing secret (signature, token, secret key, canonical
//! request, which contains the token) is ever logged.
//!
//! Layout: `credentials.rs` reads credentials, `canonical.rs` computes what both sides sign,
//! `sign.rs` is the signer, this file the verifier; `tests.rs` holds them to botocore.

mod canonical;
mod credentials;
mod sign;
#[cfg(test)]
mod tests;

use axum::http::{HeaderMap, StatusCode};
use hmac::Mac;
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

pub use canonical::{canonical_request, derive_signing_key};
pub use credentials::{
    Authorization, Claim, SignatureForm, authorization, parse_authorization, parse_presigned,
    scope_service,
};
pub use sign::{ClientCredentials, SignError, sign};

use crate::identity::{CredentialError, Identity, Principal};
use canonical::{Scope, signature_mac};

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far the request time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::minutes(15);

/// The parts of an HTTP request that a signature covers. `path` and `query` are as received
/// (still percent-encoded): `uri.path()` and `uri.query().unwrap_or("")`.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Raw path.
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    /// All headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Which wire protocol the refusal is reported in: the error codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.1 (`sagemaker`, `logs`).
    Json,
    /// AWS Query (`sts`).
    Query,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// No `Authorization` header.
    MissingAuthenticationToken,
    /// The header, its credential scope or `X-Amz-Date` is malformed or incomplete.
    IncompleteSignature,
    /// The access key id is not known, or the session token is missing or wrong.
    InvalidClientToken,
    /// The signature (or the payload hash) does not match.
    SignatureMismatch,
    /// The request time is more than 15 minutes from the server's.
    SignatureExpired,
    /// The session's credentials have expired.
    ExpiredToken,
    /// The server could not check (session table failure).
    Internal,
}

/// A refused request: kind and message (the message is safe to show the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    /// What went wrong.
    pub kind: AuthErrorKind,
    /// Why, for the client.
    pub message: String,
}

impl AuthError {
    fn new(kind: AuthErrorKind, message: impl Into<String>) -> Self {
        AuthError {
            kind,
            message: message.into(),
        }
    }

    /// The error code clients expect in `protocol`.
    pub fn code(&self, protocol: Protocol) -> &'static str {
        use AuthErrorKind::*;
        match (self.kind, protocol) {
            (MissingAuthenticationToken, Protocol::Json) => "MissingAuthenticationTokenException",
            (MissingAuthenticationToken, Protocol::Query) => "MissingAuthenticationToken",
            (IncompleteSignature, Protocol::Json) => "IncompleteSignatureException",
            (IncompleteSignature, Protocol::Query) => "IncompleteSignature",
            (InvalidClientToken, Protocol::Json) => "UnrecognizedClientException",
            (InvalidClientToken, Protocol::Query) => "InvalidClientTokenId",
            (SignatureMismatch | SignatureExpired, Protocol::Json) => "InvalidSignatureException",
            (SignatureMismatch | SignatureExpired, Protocol::Query) => "SignatureDoesNotMatch",
            (ExpiredToken, Protocol::Json) => "ExpiredTokenException",
            (ExpiredToken, Protocol::Query) => "ExpiredToken",
            (Internal, _) => "InternalFailure",
        }
    }

    /// The HTTP status in `protocol`.
    pub fn status(&self, protocol: Protocol) -> StatusCode {
        use AuthErrorKind::*;
        match (self.kind, protocol) {
            (Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
            (_, Protocol::Json) => StatusCode::BAD_REQUEST,
            (
                MissingAuthenticationToken
                | InvalidClientToken
                | SignatureMismatch
                | SignatureExpired,
                Protocol::Query,
            ) => StatusCode::FORBIDDEN,
            (IncompleteSignature | ExpiredToken, Protocol::Query) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Verifies the request's signature at the current time and returns the caller.
pub fn verify(identity: &Identity, request: &SignedRequest<'_>) -> Result<Principal, AuthError> {
    verify_at(identity, request, OffsetDateTime::now_utc())
}

/// Verifies the request's signature as of `now` and returns the caller.
pub fn verify_at(
    identity: &Identity,
    request: &SignedRequest<'_>,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    let result = verify_inner(identity, request, now);
    if let Err(e) = &result {
        tracing::debug!(kind = ?e.kind, message = %e.message, "request authentication failed");
    }
    result
}

fn verify_inner(
    identity: &Identity,
    request: &SignedRequest<'_>,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    use AuthErrorKind::*;
    let headers = request.headers;
    let auth = match authorization(headers, request.query)? {
        Some(auth) if auth.form == SignatureForm::Header => auth,
        Some(_) => {
            return Err(AuthError::new(
                IncompleteSignature,
                "Query-string (presigned) authentication is not supported by trainyard; sign with the Authorization header",
            ));
        }
        None => {
            return Err(AuthError::new(
                MissingAuthenticationToken,
                "Missing Authentication Token",
            ));
        }
    };
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(AuthError::new(
                IncompleteSignature,
                format!("'{required}' must be a 'SignedHeader' in the AWS Authorization."),
            ));
        }
    }
    let amz_date = header_str(headers, "x-amz-date").ok_or_else(|| {
        AuthError::new(
            IncompleteSignature,
            "Authorization header requires existence of a 'X-Amz-Date' header.",
        )
    })?;
    let request_time = PrimitiveDateTime::parse(
        amz_date,
        format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map(PrimitiveDateTime::assume_utc)
    .map_err(|_| {
        AuthError::new(
            IncompleteSignature,
            format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"),
        )
    })?;
    if amz_date[..8] != auth.date {
        return Err(AuthError::new(
            SignatureMismatch,
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            ),
        ));
    }
    let basic = format_description!("[year][month][day]T[hour][minute][second]Z");
    let show = |t: OffsetDateTime| t.format(basic).unwrap_or_default();
    if request_time < now - MAX_SKEW {
        return Err(AuthError::new(
            SignatureExpired,
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
                show(now - MAX_SKEW),
                show(now)
            ),
        ));
    }
    if request_time > now + MAX_SKEW {
        return Err(AuthError::new(
            SignatureExpired,
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
                show(now + MAX_SKEW),
                show(now)
            ),
        ));
    }
    let key = identity
        .signing_key(&auth.access_key_id)
        .map_err(|e| credential_error(&e))?;
    let payload_hash = payload_hash(headers, request.body)?;
    let canonical = canonical_request(request, &auth.signed_headers, &payload_hash);
    let mismatch = || {
        AuthError::new(
            SignatureMismatch,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    };
    let provided = hex::decode(&auth.signature).map_err(|_| mismatch())?;
    let mac = signature_mac(
        key.secret.expose(),
        &Scope {
            date: &auth.date,
            region: &auth.region,
            service: &auth.service,
        },
        amz_date,
        &canonical,
    );
    mac.verify_slice(&provided).map_err(|_| mismatch())?;
    let token = header_str(headers, "x-amz-security-token");
    let principal = identity
        .principal(&key, token, now)
        .map_err(|e| credential_error(&e))?;
    tracing::trace!(principal = %principal.arn(), access_key_id = %auth.access_key_id, "request authenticated");
    Ok(principal)
}

fn credential_error(e: &CredentialError) -> AuthError {
    use AuthErrorKind::*;
    match e {
        CredentialError::UnknownAccessKey { .. }
        | CredentialError::InvalidToken { .. }
        | CredentialError::RoleRemoved { .. } => AuthError::new(
            InvalidClientToken,
            "The security token included in the request is invalid.",
        ),
        CredentialError::Expired { .. } => AuthError::new(
            ExpiredToken,
            "The security token included in the request is expired",
        ),
        CredentialError::Corrupt { .. } | CredentialError::Store(_) => {
            tracing::error!(error = %e, "cannot resolve an access key");
            AuthError::new(
                Internal,
                "An internal error occurred; see the trainyard server log",
            )
        }
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The payload hash to sign: `x-amz-content-sha256` when present (it must then be the
/// body's real hash), else the SHA-256 of the body.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, AuthError> {
    let computed = hex::encode(Sha256::digest(body));
    match header_str(headers, "x-amz-content-sha256") {
        None => Ok(computed),
        Some(claimed) if claimed.eq_ignore_ascii_case(&computed) => Ok(claimed.to_owned()),
        Some(claimed) if claimed == "UNSIGNED-PAYLOAD" || claimed.starts_with("STREAMING-") => {
            Err(AuthError::new(
                AuthErrorKind::SignatureMismatch,
                format!(
                    "x-amz-content-sha256 '{claimed}' is not accepted: trainyard requires a signed payload"
                ),
            ))
        }
        Some(_) => Err(AuthError::new(
            AuthErrorKind::SignatureMismatch,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )),
    }
}
