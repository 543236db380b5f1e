//! AugmentedManifestFile parsing: JSON Lines whose selected attributes become Pipe-mode
//! records. Checks: any bytes parse or fail without panicking; an error names a line that
//! exists; every line keeps one record per attribute, `-ref` attributes name an object
//! (non-empty key, not a folder); and lines written back from the records parse to the same
//! records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard_data::DataError;
use trainyard_data::manifest::{AugmentedRecord, parse_augmented_manifest};

const URI: &str = "s3://fuzz-bucket/augmented.jsonl";

fuzz_target!(|data: &[u8]| {
    let attributes = ["source-ref".to_string(), "class".to_string()];
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let parsed = match parse_augmented_manifest(URI, data, &attributes) {
        Ok(p) => p,
        Err(DataError::Manifest { line, .. }) => {
            assert!(
                line <= lines,
                "error at line {line} of a {lines}-line input"
            );
            return;
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    };
    let mut written = Vec::new();
    for line in &parsed {
        assert!((1..=lines).contains(&line.line), "line {}", line.line);
        assert_eq!(line.records.len(), attributes.len());
        let mut object = serde_json::Map::new();
        for (name, record) in attributes.iter().zip(&line.records) {
            let value = match record {
                AugmentedRecord::Object { bucket, key } => {
                    assert!(name.ends_with("-ref"));
                    assert!(!key.is_empty() && !key.ends_with('/'), "{key:?}");
                    format!("s3://{bucket}/{key}")
                }
                AugmentedRecord::Value(bytes) => {
                    assert!(!name.ends_with("-ref"));
                    String::from_utf8(bytes.to_vec()).expect("records of JSON are UTF-8")
                }
            };
            object.insert(name.clone(), serde_json::Value::String(value));
        }
        written.extend(serde_json::to_vec(&object).expect("serialises"));
        written.push(b'\n');
    }
    let again =
        parse_augmented_manifest(URI, &written, &attributes).expect("the written manifest parses");
    let records = |v: &[trainyard_data::manifest::AugmentedLine]| {
        v.iter().map(|l| l.records.clone()).collect::<Vec<_>>()
    };
    assert_eq!(records(&again), records(&parsed));
});
