//! `ManifestFile` and `AugmentedManifestFile` channels (`doc/contract/data.md` §4.1, §4.2).
//!
//! A manifest is user input that decides which objects a job reads, so it is parsed strictly and
//! every error says where: the manifest's URI, the 1-based line of the offending element or JSON
//! line, and the rule broken. That message becomes the job's `FailureReason`, and a user with a
//! million-line manifest needs the line number, not "invalid JSON".
//!
//! Parsing is split from I/O: [`parse_manifest`] and [`parse_augmented_manifest`] take bytes (a
//! fuzz target calls them directly), [`manifest_objects`] turns a parsed manifest into the
//! channel's object list by asking storage for each object's size (HEAD requests, many at once
//! but bounded, results kept in manifest order), and the `load_*` functions do both from a URI.
//!
//! * ManifestFile: a JSON array `[{"prefix": "s3://bucket/p/"}, "rel/a", ...]`; each object's
//!   key is the prefix's key part and the entry concatenated as strings (no `/` inserted); its
//!   path in the channel is the entry itself, checked like any key-derived path. To report line
//!   numbers, the array's elements are parsed as raw JSON slices of the input, whose position
//!   gives the line.
//! * AugmentedManifestFile: JSON Lines; the selected attributes of each line become records in
//!   `AttributeNames` order. An attribute whose name ends in `-ref` names an object (its bytes
//!   are the record, fetched at delivery time); any other attribute's value is the record: a
//!   JSON string as its raw UTF-8, anything else as compact JSON.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::value::RawValue;
use trainyard_s3::{ObjectClient, ObjectClientExt, S3Uri};

use crate::DataError;
use crate::objects::{ChannelObject, safe_relative_path};

/// A parsed ManifestFile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bucket of every object (the prefix's bucket).
    pub bucket: String,
    /// The key part of the prefix URI; each entry is appended to it.
    pub prefix: String,
    /// The entries, in manifest order.
    pub entries: Vec<ManifestEntry>,
}

/// One relative entry of a ManifestFile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The entry string (the object's path in the channel).
    pub path: String,
}

impl Manifest {
    /// The full key of `entry`.
    pub fn key(&self, entry: &ManifestEntry) -> String {
        format!("{}{}", self.prefix, entry.path)
    }
}

/// One line of an AugmentedManifestFile, reduced to its selected attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AugmentedLine {
    /// 1-based line number in the manifest.
    pub line: usize,
    /// One record per entry of `AttributeNames`, in that order.
    pub records: Vec<AugmentedRecord>,
}

/// One record of an augmented manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AugmentedRecord {
    /// A value delivered as it is.
    Value(Bytes),
    /// A `-ref` attribute: the object's bytes are delivered.
    Object {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
}

fn manifest_err(uri: &str, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Manifest {
        uri: uri.to_string(),
        line,
        reason: reason.into(),
    }
}

/// serde_json's message without its " at line L column C" suffix (the line is reported apart).
fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    format!("invalid JSON: {msg} (column {})", e.column())
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Counts lines incrementally over increasing byte offsets of one text.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of byte `offset` (offsets must not decrease between calls).
    fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset > self.offset {
            self.line += self.text[self.offset..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = offset;
        }
        self.line
    }
}

/// Parses a ManifestFile (`uri` is only used in error messages).
pub fn parse_manifest(uri: &str, data: &[u8]) -> Result<Manifest, DataError> {
    let text = std::str::from_utf8(data).map_err(|e| {
        let line = LineCounter::new(data).line_at(e.valid_up_to());
        manifest_err(uri, line, "the manifest is not valid UTF-8")
    })?;
    let mut lines = LineCounter::new(data);
    let start = text.len() - text.trim_start().len();
    let first_line = lines.line_at(start);
    if !text[start..].starts_with('[') {
        let what = match text[start..].chars().next() {
            None => "it is empty".to_string(),
            Some('{') => "found an object".to_string(),
            Some(_) => "found something else".to_string(),
        };
        return Err(manifest_err(
            uri,
            first_line,
            format!("the manifest must be a JSON array ({what})"),
        ));
    }
    let elements: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| manifest_err(uri, e.line(), json_reason(&e)))?;
    // `RawValue::get` borrows from `text`, so its address gives the element's offset.
    let offset_of = |raw: &RawValue| raw.get().as_ptr() as usize - text.as_ptr() as usize;
    let Some((head, rest)) = elements.split_first() else {
        return Err(manifest_err(
            uri,
            first_line,
            "the manifest array is empty; its first element must be {\"prefix\": \"s3://...\"}",
        ));
    };
    let head_line = lines.line_at(offset_of(head));
    let prefix_err = |reason: &str| {
        manifest_err(
            uri,
            head_line,
            format!("the first element must be {{\"prefix\": \"s3://bucket/prefix\"}}: {reason}"),
        )
    };
    let head: serde_json::Value =
        serde_json::from_str(head.get()).map_err(|e| prefix_err(&e.to_string()))?;
    let serde_json::Value::Object(map) = &head else {
        return Err(prefix_err(&format!("found {}", kind_of(&head))));
    };
    let prefix_uri = match map.get("prefix") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(serde_json::Value::String(_)) => return Err(prefix_err("the prefix is empty")),
        Some(v) => return Err(prefix_err(&format!("the prefix is {}", kind_of(v)))),
        None => return Err(prefix_err("there is no \"prefix\" key")),
    };
    let prefix = S3Uri::parse(prefix_uri).map_err(|e| prefix_err(&e.to_string()))?;
    let mut entries = Vec::with_capacity(rest.len());
    for raw in rest {
        let line = lines.line_at(offset_of(raw));
        let path: String = match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(v) => {
                return Err(manifest_err(
                    uri,
                    line,
                    format!("an entry must be a string, found {}", kind_of(&v)),
                ));
            }
            Err(e) => return Err(manifest_err(uri, line, json_reason(&e))),
        };
        let key = format!("{}{}", prefix.key, path);
        safe_relative_path(&key, &path).map_err(|e| manifest_err(uri, line, e.to_string()))?;
        entries.push(ManifestEntry { line, path });
    }
    Ok(Manifest {
        bucket: prefix.bucket,
        prefix: prefix.key,
        entries,
    })
}

/// The objects of a parsed manifest, in manifest order, with sizes from HEAD requests (at most
/// `concurrency` at once). A missing object fails with the entry's line.
pub async fn manifest_objects(
    client: &dyn ObjectClient,
    uri: &str,
    manifest: &Manifest,
    concurrency: usize,
) -> Result<Vec<ChannelObject>, DataError> {
    // Owned items: a stream over borrowed entries makes the future fail `Send` checks
    // (higher-ranked lifetimes), and callers run it inside spawned tasks.
    futures::stream::iter(manifest.entries.iter().cloned())
        .map(|entry| async move {
            let key = manifest.key(&entry);
            match client.head(&manifest.bucket, &key).await {
                Ok(meta) => Ok(ChannelObject {
                    bucket: manifest.bucket.clone(),
                    key,
                    size: meta.size,
                    etag: meta.etag,
                    rel_path: entry.path.clone(),
                }),
                Err(source) => Err(DataError::ManifestObject {
                    uri: uri.to_string(),
                    line: entry.line,
                    bucket: manifest.bucket.clone(),
                    key,
                    source: Box::new(source),
                }),
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

async fn fetch_manifest(client: &dyn ObjectClient, uri: &str) -> Result<Bytes, DataError> {
    let loc = S3Uri::parse(uri).map_err(|e| manifest_err(uri, 0, e.to_string()))?;
    client
        .get_bytes(&loc.bucket, &loc.key)
        .await
        .map_err(|source| DataError::Object {
            key: uri.to_string(),
            source,
        })
}

/// Reads the ManifestFile at `uri` and returns its objects (see [`manifest_objects`]).
pub async fn load_manifest(
    client: &dyn ObjectClient,
    uri: &str,
    concurrency: usize,
) -> Result<Vec<ChannelObject>, DataError> {
    let data = fetch_manifest(client, uri).await?;
    let manifest = parse_manifest(uri, &data)?;
    manifest_objects(client, uri, &manifest, concurrency).await
}

/// Parses an AugmentedManifestFile, keeping `attribute_names` of each line, in that order.
pub fn parse_augmented_manifest(
    uri: &str,
    data: &[u8],
    attribute_names: &[String],
) -> Result<Vec<AugmentedLine>, DataError> {
    if attribute_names.is_empty() {
        return Err(manifest_err(
            uri,
            0,
            "AttributeNames must name at least one attribute",
        ));
    }
    let mut out = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| manifest_err(uri, line, json_reason(&e)))?;
        let serde_json::Value::Object(map) = value else {
            return Err(manifest_err(
                uri,
                line,
                format!("each line must be a JSON object, found {}", kind_of(&value)),
            ));
        };
        let mut records = Vec::with_capacity(attribute_names.len());
        for name in attribute_names {
            let Some(v) = map.get(name) else {
                return Err(manifest_err(
                    uri,
                    line,
                    format!("attribute `{name}` is missing"),
                ));
            };
            records.push(if name.ends_with("-ref") {
                let serde_json::Value::String(s) = v else {
                    return Err(manifest_err(
                        uri,
                        line,
                        format!(
                            "attribute `{name}` must be an S3 URI string, found {}",
                            kind_of(v)
                        ),
                    ));
                };
                let loc = S3Uri::parse(s).map_err(|e| {
                    manifest_err(uri, line, format!("attribute `{name}`: bad S3 URI: {e}"))
                })?;
                if loc.key.is_empty() || loc.key.ends_with('/') {
                    return Err(manifest_err(
                        uri,
                        line,
                        format!("attribute `{name}`: `{s}` does not name an object"),
                    ));
                }
                AugmentedRecord::Object {
                    bucket: loc.bucket,
                    key: loc.key,
                }
            } else {
                match v {
                    serde_json::Value::String(s) => AugmentedRecord::Value(Bytes::from(s.clone())),
                    other => AugmentedRecord::Value(Bytes::from(
                        serde_json::to_vec(other).expect("a JSON value serialises"),
                    )),
                }
            });
        }
        out.push(AugmentedLine { line, records });
    }
    Ok(out)
}

/// Reads the AugmentedManifestFile at `uri` (see [`parse_augmented_manifest`]).
pub async fn load_augmented_manifest(
    client: &dyn ObjectClient,
    uri: &str,
    attribute_names: &[String],
) -> Result<Vec<AugmentedLine>, DataError> {
    let data = fetch_manifest(client, uri).await?;
    parse_augmented_manifest(uri, &data, attribute_names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use trainyard_s3::{DirStore, PutBody};

    const URI: &str = "s3://bkt/m.json";

    fn err_of(r: Result<impl std::fmt::Debug, DataError>) -> (usize, String) {
        match r.unwrap_err() {
            DataError::Manifest { line, reason, .. } => (line, reason),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_a_manifest() {
        let m = parse_manifest(
            URI,
            br#"[{"prefix": "s3://bkt/data/"},
                "a/x.csv",
                "b.csv", "b.csv"]"#,
        )
        .unwrap();
        assert_eq!((m.bucket.as_str(), m.prefix.as_str()), ("bkt", "data/"));
        let got: Vec<(usize, &str)> = m
            .entries
            .iter()
            .map(|e| (e.line, e.path.as_str()))
            .collect();
        assert_eq!(got, [(2, "a/x.csv"), (3, "b.csv"), (3, "b.csv")]);
        assert_eq!(m.key(&m.entries[0]), "data/a/x.csv");
    }

    #[test]
    fn the_prefix_is_concatenated_without_a_slash() {
        let m = parse_manifest(URI, br#"[{"prefix": "s3://bkt/data/part-"}, "001"]"#).unwrap();
        assert_eq!(m.key(&m.entries[0]), "data/part-001");
    }

    #[test]
    fn manifest_errors_name_the_line_and_rule() {
        let cases: [(&[u8], usize, &str); 10] = [
            (b"", 1, "must be a JSON array (it is empty)"),
            (
                b"\n\n{\"prefix\": 1}",
                3,
                "must be a JSON array (found an object)",
            ),
            (b"[]", 1, "array is empty"),
            (b"[\n\"a\"]", 2, "found a string"),
            (b"[{\"prefix\": 3}]", 1, "the prefix is a number"),
            (b"[{\"pre\": \"s3://bkt/\"}]", 1, "no \"prefix\" key"),
            (b"[{\"prefix\": \"ftp://x/\"}]", 1, "must start with s3://"),
            (
                b"[{\"prefix\": \"s3://bkt/\"},\n\n 7]",
                3,
                "must be a string, found a number",
            ),
            (b"[{\"prefix\": \"s3://bkt/\"},\n \"../etc\"]", 2, "'..'"),
            (
                b"[{\"prefix\": \"s3://bkt/\"},\n \"a\",\n",
                3,
                "invalid JSON",
            ),
        ];
        for (input, line, needle) in cases {
            let (got_line, reason) = err_of(parse_manifest(URI, input));
            assert_eq!(
                got_line,
                line,
                "{}: {reason}",
                String::from_utf8_lossy(input)
            );
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
        let full = parse_manifest(URI, b"[1]").unwrap_err().to_string();
        assert!(
            full.starts_with("manifest s3://bkt/m.json line 1: "),
            "{full}"
        );
    }

    #[tokio::test]
    async fn objects_get_sizes_and_a_missing_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::embedded(d.path());
        for (k, v) in [("d/a", "1"), ("d/b/c", "22")] {
            s.put("bkt", k, PutBody::Bytes(Bytes::from(v)))
                .await
                .unwrap();
        }
        s.put(
            "bkt",
            "m.json",
            PutBody::Bytes(Bytes::from(r#"[{"prefix":"s3://bkt/d/"},"b/c","a"]"#)),
        )
        .await
        .unwrap();
        let objs = load_manifest(&s, URI, 4).await.unwrap();
        let got: Vec<(&str, u64, &str)> = objs
            .iter()
            .map(|o| (o.key.as_str(), o.size, o.rel_path.as_str()))
            .collect();
        assert_eq!(got, [("d/b/c", 2, "b/c"), ("d/a", 1, "a")]);

        let m = parse_manifest(URI, b"[{\"prefix\":\"s3://bkt/d/\"},\n\"a\",\n\"nope\"]").unwrap();
        let err = manifest_objects(&s, URI, &m, 4).await.unwrap_err();
        assert!(
            matches!(&err, DataError::ManifestObject { line: 3, key, source, .. }
                if key == "d/nope" && source.is_not_found()),
            "{err}"
        );
        assert!(err.to_string().contains("s3://bkt/d/nope"), "{err}");
        assert!(matches!(
            load_manifest(&s, "s3://bkt/missing.json", 4).await,
            Err(DataError::Object { .. })
        ));
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn augmented_lines_select_attributes_in_order() {
        let data = br#"{"source-ref": "s3://bkt/img/1.jpg", "label": 1, "extra": "x"}

{"label": "cat", "source-ref": "s3://bkt/img/2.jpg"}
{"label": {"a": [1, true, null]}, "source-ref": "s3://bkt/img/3.jpg"}
"#;
        let lines = parse_augmented_manifest(URI, data, &names(&["label", "source-ref"])).unwrap();
        let obj = |k: &str| AugmentedRecord::Object {
            bucket: "bkt".into(),
            key: k.into(),
        };
        let val = |v: &'static str| AugmentedRecord::Value(Bytes::from(v));
        assert_eq!(
            lines,
            [
                AugmentedLine {
                    line: 1,
                    records: vec![val("1"), obj("img/1.jpg")]
                },
                AugmentedLine {
                    line: 3,
                    records: vec![val("cat"), obj("img/2.jpg")]
                },
                AugmentedLine {
                    line: 4,
                    records: vec![val(r#"{"a":[1,true,null]}"#), obj("img/3.jpg")]
                },
            ]
        );
    }

    #[test]
    fn augmented_errors_name_the_line_and_rule() {
        let attrs = names(&["source-ref", "label"]);
        let cases: [(&[u8], usize, &str); 6] = [
            (
                b"{\"source-ref\": \"s3://bkt/a\", \"label\": 1}\n[1]",
                2,
                "must be a JSON object, found an array",
            ),
            (
                b"\n\n{\"source-ref\": \"s3://bkt/a\"}",
                3,
                "attribute `label` is missing",
            ),
            (
                b"{\"source-ref\": 5, \"label\": 1}",
                1,
                "must be an S3 URI string, found a number",
            ),
            (
                b"{\"source-ref\": \"http:/x\", \"label\": 1}",
                1,
                "bad S3 URI",
            ),
            (
                b"{\"source-ref\": \"s3://bkt/\", \"label\": 1}",
                1,
                "does not name an object",
            ),
            (
                b"{\"source-ref\": \"s3://bkt/a\", \"label\": 1,}",
                1,
                "invalid JSON",
            ),
        ];
        for (input, line, needle) in cases {
            let (got_line, reason) = err_of(parse_augmented_manifest(URI, input, &attrs));
            assert_eq!(got_line, line, "{reason}");
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
    }

    fn entry() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-zA-Z0-9_.-]{1,8}", 1..4)
            .prop_map(|segs| segs.join("/"))
            .prop_filter("no dot segments", |s| {
                s.split('/').all(|seg| seg != "." && seg != "..")
            })
    }

    proptest! {
        #[test]
        fn manifests_round_trip(
            prefix in "[a-z0-9/_-]{0,12}",
            entries in prop::collection::vec(entry(), 0..20),
            pretty: bool,
        ) {
            let mut json = vec![serde_json::json!({"prefix": format!("s3://bucket-x/{prefix}")})];
            json.extend(entries.iter().map(|e| serde_json::Value::String(e.clone())));
            let text = if pretty {
                serde_json::to_vec_pretty(&json).unwrap()
            } else {
                serde_json::to_vec(&json).unwrap()
            };
            let m = parse_manifest(URI, &text).unwrap();
            prop_assert_eq!(&m.bucket, "bucket-x");
            prop_assert_eq!(&m.prefix, &prefix);
            let got: Vec<String> = m.entries.iter().map(|e| e.path.clone()).collect();
            prop_assert_eq!(got, entries);
            if pretty {
                // to_vec_pretty puts element i (0 = prefix object, 3 lines) on line i + 4.
                for (i, e) in m.entries.iter().enumerate() {
                    prop_assert_eq!(e.line, i + 5);
                }
            }
        }

        #[test]
        fn augmented_manifests_round_trip(
            rows in prop::collection::vec((entry(), any::<i64>(), "[ -~]{0,10}"), 0..20),
        ) {
            let mut text = String::new();
            for (k, n, s) in &rows {
                let line = serde_json::json!({"img-ref": format!("s3://bkt/{k}"), "n": n, "s": s});
                text.push_str(&line.to_string());
                text.push('\n');
            }
            let lines = parse_augmented_manifest(URI, text.as_bytes(), &names(&["s", "img-ref", "n"])).unwrap();
            prop_assert_eq!(lines.len(), rows.len());
            for (l, (k, n, s)) in lines.iter().zip(&rows) {
                prop_assert_eq!(&l.records, &vec![
                    AugmentedRecord::Value(Bytes::from(s.clone())),
                    AugmentedRecord::Object { bucket: "bkt".into(), key: k.clone() },
                    AugmentedRecord::Value(Bytes::from(n.to_string())),
                ]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_manifest(URI, &data);
            let _ = parse_augmented_manifest(URI, &data, &names(&["a", "b-ref"]));
        }

        #[test]
        fn json_like_text_never_panics(data in r#"[\[\]{}",:0-9a-z/ \n-]{0,80}"#) {
            let _ = parse_manifest(URI, data.as_bytes());
            let _ = parse_augmented_manifest(URI, data.as_bytes(), &names(&["a", "b-ref"]));
        }
    }
}
