//! Mapping between S3 keys and file names in the embedded directory store.
//!
//! The store keeps objects as ordinary files so a user can look at (and drop data into)
//! `$TRAINYARD_HOME/store/<bucket>/...` directly. Most keys map to themselves, segment by
//! segment. The few segments a file system cannot hold are percent-encoded, so that every S3
//! key, including hostile ones such as `a/../../etc/passwd`, can be stored and listed back
//! exactly, without ever naming a path outside the bucket directory:
//!
//! | segment | file name |
//! |---|---|
//! | contains `%` or NUL | `%` → `%25`, NUL → `%00` |
//! | `.` | `%2E` |
//! | `..` | `%2E%2E` |
//! | empty (`a//b`, trailing `/`) | `%` (a lone percent never arises otherwise) |

/// Encodes one key segment into a file name.
pub(crate) fn encode_segment(seg: &str) -> String {
    match seg {
        "" => "%".to_string(),
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => {
            let mut out = String::with_capacity(seg.len());
            for c in seg.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    '\0' => out.push_str("%00"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

/// Decodes a file name back into a key segment; `None` for names the codec never produces
/// (such names are not objects, e.g. a stray file with a malformed escape).
pub(crate) fn decode_segment(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    if !name.contains('%') {
        return Some(name.to_string());
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a whole key into a relative path (segments joined with `/`).
pub(crate) fn encode_key(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_segments_become_plain_names() {
        assert_eq!(
            encode_key("a/../../etc/passwd"),
            "a/%2E%2E/%2E%2E/etc/passwd"
        );
        assert_eq!(encode_key("a//b"), "a/%/b");
        assert_eq!(encode_key("dir/"), "dir/%");
        assert_eq!(encode_key("100%/x"), "100%25/x");
        assert_eq!(encode_key("plain/key.csv"), "plain/key.csv");
    }

    proptest! {
        #[test]
        fn segments_round_trip(seg in "[a-z./%\\x00 é]{0,8}") {
            let seg: String = seg.replace('/', "");
            let enc = encode_segment(&seg);
            prop_assert!(enc != "." && enc != ".." && !enc.is_empty() && !enc.contains('/') && !enc.contains('\0'));
            prop_assert_eq!(decode_segment(&enc), Some(seg));
        }
    }
}
