//! The canonical request, the derived signing key and the signature over them: what SigV4's
//! verifier and signer both compute, written once so the two cannot disagree about a request.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{ALGORITHM, SignedRequest};

/// HMAC-SHA256, the MAC of every SigV4 step.
pub(super) type HmacSha256 = Hmac<Sha256>;

/// A credential scope: `<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope<'a> {
    pub(super) date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
}

/// The MAC over the string to sign (`AWS4-HMAC-SHA256`, `X-Amz-Date`, scope, hash of the
/// canonical request) keyed by the derived signing key: the one computation behind both
/// [`super::verify`] (which compares it in constant time) and [`super::sign`].
pub(super) fn signature_mac(
    secret: &str,
    scope: &Scope<'_>,
    amz_date: &str,
    canonical: &str,
) -> HmacSha256 {
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
pub(super) fn canonical_uri(path: &str) -> String {
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
pub(super) fn canonical_query(query: &str) -> String {
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
pub(super) fn percent_decode(text: &str) -> Vec<u8> {
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
