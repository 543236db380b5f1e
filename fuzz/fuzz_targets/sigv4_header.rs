//! The SigV4 `Authorization` header, the first thing the server reads of an untrusted request.
//! Checks: parsing any string never panics; a parsed header, written back in the canonical
//! form, parses to the same credential scope and signed headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard::authz::sigv4::parse_authorization;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(a) = parse_authorization(text) else {
        return;
    };
    assert!(!a.access_key_id.is_empty() && !a.region.is_empty() && !a.service.is_empty());
    assert!(a.date.len() == 8 && a.date.bytes().all(|b| b.is_ascii_digit()));
    // Parts containing the separators cannot be written back unambiguously.
    let plain = |s: &str| !s.contains([',', '/', ';', '=']) && s.trim() == s;
    if ![&a.access_key_id, &a.region, &a.service]
        .into_iter()
        .all(|s| plain(s))
        || !a.signed_headers.iter().all(|h| plain(h) && !h.is_empty())
    {
        return;
    }
    let again = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature=00",
        a.access_key_id,
        a.date,
        a.region,
        a.service,
        a.signed_headers.join(";")
    );
    let b = parse_authorization(&again).expect("a written-back header parses");
    assert_eq!(
        (
            &b.access_key_id,
            &b.date,
            &b.region,
            &b.service,
            &b.signed_headers
        ),
        (
            &a.access_key_id,
            &a.date,
            &a.region,
            &a.service,
            &a.signed_headers
        )
    );
});
