//! Mapping between S3 keys and file names in the embedded directory store.
//!
//! The store keeps objects as ordinary files so a user can look at (and drop data into)
//! `$TRAINYARD_HOME/store/<bucket>/...` directly. So a file name must read back as itself:
//! `report%20final.csv` and `100%.csv` are the keys `report%20final.csv` and `100%.csv`. Only
//! the few segments a file system cannot hold are escaped, so that every S3 key, including
//! hostile ones such as `a/../../etc/passwd`, can be stored and listed back exactly, without
//! ever naming a path outside the bucket directory:
//!
//! | segment | file name |
//! |---|---|
//! | empty (`a//b`, trailing `/`) | `%` |
//! | `.` / `..` | `%2E` / `%2E%2E` |
//! | NUL | `%00` |
//! | `%` followed by `25`, `00` or `2E`, or the segment `%` alone | `%25` for that `%` |
//! | anything else | itself (a `%` followed by anything else is literal) |
//!
//! The decoder reads exactly these escapes (`%25`, `%00`, `%2E`, a lone `%`) and nothing else,
//! so every key round-trips, and every hand-made name without them reads as itself. A name
//! that uses them yet is not what the encoder writes for the key it decodes to (`a%2Eb`,
//! `%2520`) cannot be read back exactly: [`read_name`] refuses it, naming it, rather than
//! list a key whose GET would miss. Names written by the earlier encoder, which escaped
//! every `%` as `%25`, still read (see [`legacy_encode_segment`]).

/// The escapes inside a name, after their `%`, and what they stand for.
const ESCAPES: [(&str, char); 3] = [("25", '%'), ("00", '\0'), ("2E", '.')];

/// Whether the `%` at byte `i` of `s` would be read as the start of an escape.
fn escape_at(s: &str, i: usize) -> bool {
    let after = &s[i + 1..];
    ESCAPES.iter().any(|(hex, _)| after.starts_with(hex))
}

/// Encodes one key segment into a file name.
pub(crate) fn encode_segment(seg: &str) -> String {
    match seg {
        "" => "%".to_string(),
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        "%" => "%25".to_string(),
        _ => {
            let mut out = String::with_capacity(seg.len());
            for (i, c) in seg.char_indices() {
                match c {
                    '%' if escape_at(seg, i) => out.push_str("%25"),
                    '\0' => out.push_str("%00"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

/// The earlier encoding, which escaped every `%`: files it wrote must still be found.
pub(crate) fn legacy_encode_segment(seg: &str) -> String {
    match seg {
        "" => "%".to_string(),
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => seg.replace('%', "%25").replace('\0', "%00"),
    }
}

/// Decodes a file name into a key segment (total: unknown `%` sequences are literal).
pub(crate) fn decode_segment(name: &str) -> String {
    if name == "%" {
        return String::new();
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match ESCAPES.iter().find(|(hex, _)| after.starts_with(hex)) {
            Some((_, c)) => {
                out.push(*c);
                rest = &after[2..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why a file name is not an object of the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    /// S3 keys are UTF-8.
    #[error("the name is not UTF-8")]
    NotUtf8,
    /// It uses the store's escapes but is not what the store writes for any key.
    #[error(
        "the name reads as {decoded:?} through the store's escapes (%25, %00, %2E, a lone %), \
         which is stored as {canonical:?}; rename the file"
    )]
    Ambiguous {
        /// The key segment it decodes to.
        decoded: String,
        /// The name that segment is stored under.
        canonical: String,
    },
}

/// The key segment a file name in the store stands for, or why it stands for none.
pub(crate) fn read_name(name: &std::ffi::OsStr) -> Result<String, NameError> {
    let name = name.to_str().ok_or(NameError::NotUtf8)?;
    let decoded = decode_segment(name);
    let canonical = encode_segment(&decoded);
    if canonical == name || legacy_encode_segment(&decoded) == name {
        Ok(decoded)
    } else {
        Err(NameError::Ambiguous { decoded, canonical })
    }
}

/// Encodes a whole key into a relative path (segments joined with `/`; the store resolves
/// segment by segment, see `dir_store::resolve`).
#[cfg(test)]
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
        assert_eq!(encode_key("nul\0/x"), "nul%00/x");
        assert_eq!(encode_key("plain/key.csv"), "plain/key.csv");
    }

    #[test]
    fn percent_signs_users_write_are_literal() {
        for name in ["100%.csv", "report%20final.csv", "%", "50%%", "%2e", "%2"] {
            let want = if name == "%" { "" } else { name };
            assert_eq!(decode_segment(name), want, "{name}");
        }
        assert_eq!(encode_segment("100%.csv"), "100%.csv");
        assert_eq!(encode_segment("report%20final.csv"), "report%20final.csv");
        // The key `%` cannot be the file `%` (that is the empty segment).
        assert_eq!(encode_segment("%"), "%25");
        assert_eq!(encode_segment("%25"), "%2525");
        assert_eq!(encode_segment("a%2Eb"), "a%252Eb");
    }

    #[test]
    fn names_that_misuse_the_escapes_are_refused_and_legacy_names_read() {
        use std::ffi::OsStr;
        assert_eq!(read_name(OsStr::new("100%.csv")).unwrap(), "100%.csv");
        assert_eq!(read_name(OsStr::new("%2E%2E")).unwrap(), "..");
        // The earlier encoder wrote `100%` as `100%25`.
        assert_eq!(read_name(OsStr::new("100%25")).unwrap(), "100%");
        assert!(matches!(
            read_name(OsStr::new("a%2Eb")),
            Err(NameError::Ambiguous { .. })
        ));
        assert!(matches!(
            read_name(OsStr::new("%2E%2E%2E")),
            Err(NameError::Ambiguous { .. })
        ));
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            read_name(OsStr::from_bytes(b"bad\xff")),
            Err(NameError::NotUtf8)
        );
    }

    proptest! {
        #[test]
        fn segments_round_trip(seg in "[a-zE0-5./%\\x00 é]{0,12}") {
            let seg: String = seg.replace('/', "");
            let enc = encode_segment(&seg);
            prop_assert!(enc != "." && enc != ".." && !enc.is_empty() && !enc.contains('/') && !enc.contains('\0'));
            prop_assert_eq!(decode_segment(&enc), seg.clone());
            prop_assert_eq!(read_name(std::ffi::OsStr::new(&enc)), Ok(seg));
        }

        #[test]
        fn legacy_names_read_as_their_key(seg in "[a-zE0-5.%\\x00 ]{0,12}") {
            let old = legacy_encode_segment(&seg);
            prop_assert_eq!(read_name(std::ffi::OsStr::new(&old)), Ok(seg));
        }

        #[test]
        fn a_hand_made_name_reads_as_itself_or_is_refused(name in "[a-zE0-5.% é]{1,12}") {
            prop_assume!(name != "." && name != "..");
            match read_name(std::ffi::OsStr::new(&name)) {
                Ok(seg) => {
                    // Read back exactly, or (escape syntax) as a key stored under this name.
                    let escapes = name == "%" || ["%25", "%00", "%2E"].iter().any(|e| name.contains(e));
                    prop_assert!(seg == name || escapes, "{name:?} read as {seg:?}");
                    let back = encode_segment(&seg);
                    prop_assert!(back == name || legacy_encode_segment(&seg) == name);
                }
                Err(NameError::Ambiguous { .. }) => {
                    prop_assert!(["%25", "%00", "%2E"].iter().any(|e| name.contains(e)));
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
