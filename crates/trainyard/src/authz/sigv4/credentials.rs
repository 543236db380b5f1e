//! A request's credentials, read once whichever form they take (the `Authorization` header
//! or presigned query parameters), so that verification, the unverified [`Claim`] recorded
//! when access control is off and the STS dispatch cannot disagree about what a request
//! claims.

use axum::http::HeaderMap;

use super::{ALGORITHM, AuthError, AuthErrorKind};

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
    pub(super) signature: String,
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
