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
//! refusal is precise, but no route of the API takes the `GET` it is made for), `UNSIGNED-PAYLOAD`
//! and streaming payloads (the control-plane APIs always sign their small bodies), and the
//! `Date` header in place of `X-Amz-Date`. The credential scope's region and service are
//! taken as the client states them (the signature covers them); they are not matched
//! against the server's region. Nothing secret (signature, token, secret key, canonical
//! request, which contains the token) is ever logged.

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::identity::{CredentialError, Identity, Principal, Secret};

type HmacSha256 = Hmac<Sha256>;

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

/// Where a request carries its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureForm {
    /// The `Authorization` header (every SDK call).
    Header,
    /// Presigned: `X-Amz-Credential`, `X-Amz-Signature`, ... in the query string.
    Query,
}

/// A request's SigV4 credentials, from the `Authorization` header or a presigned query:
/// the one parse of either form that verification, the unverified [`Claim`] and the STS
/// dispatch all use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id.
    pub access_key_id: String,
    /// Scope date, `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service (`sagemaker`, `logs`, `sts`).
    pub service: String,
    /// Lower-case signed header names, as listed.
    pub signed_headers: Vec<String>,
    /// Where the signature was found.
    pub form: SignatureForm,
    /// Hex signature (not secret once sent, but never logged either).
    signature: String,
}

fn incomplete(message: String) -> AuthError {
    AuthError::new(AuthErrorKind::IncompleteSignature, message)
}

/// The named parameters of either form, checked for presence; `what` names the form in
/// messages.
fn required<'a, const N: usize>(
    found: [(&'static str, Option<&'a str>); N],
    what: &str,
) -> Result<[&'a str; N], AuthError> {
    let missing: Vec<String> = found
        .iter()
        .filter(|(_, v)| v.is_none_or(str::is_empty))
        .map(|(n, _)| format!("{what} requires '{n}' parameter."))
        .collect();
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }
    Ok(found.map(|(_, v)| v.unwrap_or_default()))
}

/// Parses the credential `<key>/<YYYYMMDD>/<region>/<service>/aws4_request` and builds the
/// [`Authorization`] around it: shared by both forms.
fn from_parts(
    credential: &str,
    signed: &str,
    signature: &str,
    form: SignatureForm,
) -> Result<Authorization, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = parts[..] else {
        return Err(incomplete(format!(
            "Credential should have the form <access key>/<YYYYMMDD>/<region>/<service>/aws4_request, got '{}'",
            redact_credential(credential)
        )));
    };
    if terminator != "aws4_request"
        || key.is_empty()
        || region.is_empty()
        || service.is_empty()
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(incomplete(format!(
            "Credential should be scoped as <access key>/<YYYYMMDD>/<region>/<service>/aws4_request, got '{}'",
            redact_credential(credential)
        )));
    }
    Ok(Authorization {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        form,
        signature: signature.to_owned(),
    })
}

/// Parses `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<h1;h2>, Signature=<hex>`.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let algorithm = value.split_whitespace().next().unwrap_or_default();
        return Err(incomplete(format!(
            "Unsupported authorization algorithm '{algorithm}': trainyard accepts only {ALGORITHM}"
        )));
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, v) = part.split_once('=').unwrap_or((part, ""));
        match name.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let [credential, signed, signature] = required(
        [
            ("Credential", credential),
            ("SignedHeaders", signed),
            ("Signature", signature),
        ],
        "Authorization header",
    )?;
    from_parts(credential, signed, signature, SignatureForm::Header)
}

/// Parses presigned query authentication (`X-Amz-Algorithm=AWS4-HMAC-SHA256&
/// X-Amz-Credential=...&X-Amz-SignedHeaders=...&X-Amz-Signature=...`); `None` when the
/// query carries none of its parameters. `query` is raw (percent-encoded).
pub fn parse_presigned(query: &str) -> Result<Option<Authorization>, AuthError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k.starts_with("X-Amz-"))
        .collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (algorithm, credential, signed, signature) = (
        get("X-Amz-Algorithm"),
        get("X-Amz-Credential"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    );
    if [algorithm, credential, signed, signature]
        .iter()
        .all(Option::is_none)
    {
        return Ok(None);
    }
    let [algorithm, credential, signed, signature] = required(
        [
            ("X-Amz-Algorithm", algorithm),
            ("X-Amz-Credential", credential),
            ("X-Amz-SignedHeaders", signed),
            ("X-Amz-Signature", signature),
        ],
        "Query-string authentication",
    )?;
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported authorization algorithm '{algorithm}': trainyard accepts only {ALGORITHM}"
        )));
    }
    from_parts(credential, signed, signature, SignatureForm::Query).map(Some)
}

/// A request's credentials in either form: the `Authorization` header when present, else
/// presigned query parameters; `None` when it has neither.
pub fn authorization(headers: &HeaderMap, query: &str) -> Result<Option<Authorization>, AuthError> {
    match headers.get("authorization") {
        Some(value) => {
            let value = value.to_str().map_err(|_| {
                incomplete("The Authorization header is not valid ASCII".to_owned())
            })?;
            parse_authorization(value).map(Some)
        }
        None => parse_presigned(query),
    }
}

/// The credential string for messages: access key id and scope only (no secret is ever in
/// it, but keep it bounded).
fn redact_credential(credential: &str) -> String {
    credential.chars().take(200).collect()
}

/// The scope service of a request's credentials, if it has well-formed ones: lets the
/// dispatcher tell an STS request from a SageMaker one before verifying.
pub fn scope_service(headers: &HeaderMap, query: &str) -> Option<String> {
    authorization(headers, query)
        .ok()
        .flatten()
        .map(|a| a.service)
}

/// The access key a request *claims*, unverified: what the server records with a job when
/// access control is off (no `iam.json`), so an operator can still tell who submitted it.
/// No secret is ever in a request, so nothing here can leak one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Access key id.
    pub access_key: String,
    /// Date of the credential scope (`YYYYMMDD`).
    pub date: String,
    /// Region of the scope.
    pub region: String,
    /// Service of the scope (`sagemaker`, `logs`).
    pub service: String,
    /// Whether a session token came along (temporary credentials).
    pub session: bool,
}

impl Claim {
    /// The claim of a request with well-formed credentials in either form.
    pub fn of(headers: &HeaderMap, query: &str) -> Option<Claim> {
        let auth = authorization(headers, query).ok()??;
        let session = match auth.form {
            SignatureForm::Header => headers.contains_key("x-amz-security-token"),
            SignatureForm::Query => query
                .split('&')
                .any(|p| p.starts_with("X-Amz-Security-Token=")),
        };
        Some(Claim {
            access_key: auth.access_key_id,
            date: auth.date,
            region: auth.region,
            service: auth.service,
            session,
        })
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

/// A credential scope: `<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, Copy)]
struct Scope<'a> {
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

/// The MAC over the string to sign (`AWS4-HMAC-SHA256`, `X-Amz-Date`, scope, hash of the
/// canonical request) keyed by the derived signing key: the one computation behind both
/// [`verify`] (which compares it in constant time) and [`sign`].
fn signature_mac(secret: &str, scope: &Scope<'_>, amz_date: &str, canonical: &str) -> HmacSha256 {
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = derive_signing_key(secret, scope.date, scope.region, scope.service);
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(to_sign.as_bytes());
    mac
}

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

/// Signs a request as the SDKs do, with the same canonicalisation [`verify`] checks: sets
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
    use axum::http::HeaderValue;
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

/// Derives the SigV4 signing key from the secret and the credential scope.
pub fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let step = |key: &[u8], data: &str| -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().into()
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(&k_date, region);
    let k_service = step(&k_region, service);
    step(&k_service, "aws4_request")
}

/// The canonical request of SigV4 for `request`, signing `signed_headers` (lower-case).
pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut out = String::new();
    out.push_str(&request.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(&canonical_uri(request.path));
    out.push('\n');
    out.push_str(&canonical_query(request.query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// The path as SigV4 signs it for services other than S3: dot segments and empty segments
/// removed, then every byte outside `A-Za-z0-9-_.~/` percent-encoded. The path arrives
/// already encoded, so this encodes it a second time, as the SDKs do.
fn canonical_uri(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').fold(Vec::new(), |mut kept, segment| {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
        kept
    });
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// Query parameters decoded, re-encoded with SigV4's rules and sorted by key, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (a `+` stays a `+`); malformed escapes are kept literally.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let digit = |b: u8| char::from(b).to_digit(16);
            if let (Some(high), Some(low)) = (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                out.push(u8::try_from(high * 16 + low).unwrap_or_default());
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;
    use crate::identity::testing::{self, ALICE_KEY, ALICE_SECRET};
    use crate::identity::{AssumeRoleInput, Credentials, SessionTag};

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

    fn session_credentials(
        identity: &Identity,
        issued: OffsetDateTime,
        duration: i64,
    ) -> Credentials {
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
        let wrong = parse_presigned(&query.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"))
            .unwrap_err();
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
}
