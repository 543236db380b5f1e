//! Base64 for `BinaryEquals`.
//!
//! IAM writes binary condition values base64-encoded, and request contexts carry
//! binary keys the same way. Comparing decoded bytes (rather than the text) makes
//! padding and line-length differences irrelevant. Only the standard alphabet is used;
//! padding is optional.

/// Decodes standard base64; `None` for anything else.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in trimmed.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = ((buffer << 6) | u32::from(value)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    // Leftover bits must be zero padding, as in canonical encodings.
    if buffer & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("Zg==", Some(b"f")),
            ("Zg", Some(b"f")),
            ("Zm8=", Some(b"fo")),
            ("Zm9v", Some(b"foo")),
            ("Zm9vYmFy", Some(b"foobar")),
            ("QmluYXJ5VmFsdWVJbkJhc2U2NA==", Some(b"BinaryValueInBase64")),
            ("+/+/", Some(&[0xfb, 0xff, 0xbf])),
            ("Zh==", None),
            ("Z===", None),
            ("Zm9v!", None),
            ("Z", None),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input).as_deref(), *expected, "input {input:?}");
        }
    }
}
