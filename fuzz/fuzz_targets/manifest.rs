//! ManifestFile parsing: a user's manifest decides which objects a job reads and which paths
//! it writes in the channel. Checks: any bytes parse or fail without panicking; an error
//! names a line that exists; every accepted entry is a safe relative path; and a manifest
//! written back from the parsed value parses to the same bucket, prefix and entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard_data::DataError;
use trainyard_data::manifest::parse_manifest;
use trainyard_data::safe_relative_path;

const URI: &str = "s3://fuzz-bucket/manifest.json";

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let manifest = match parse_manifest(URI, data) {
        Ok(m) => m,
        Err(DataError::Manifest { line, .. }) => {
            assert!(
                line <= lines,
                "error at line {line} of a {lines}-line input"
            );
            return;
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    };
    for entry in &manifest.entries {
        assert!(
            (1..=lines).contains(&entry.line),
            "entry line {}",
            entry.line
        );
        safe_relative_path(&manifest.key(entry), &entry.path)
            .expect("accepted entries are safe paths");
    }
    let mut doc = vec![serde_json::json!({
        "prefix": format!("s3://{}/{}", manifest.bucket, manifest.prefix)
    })];
    doc.extend(
        manifest
            .entries
            .iter()
            .map(|e| serde_json::Value::String(e.path.clone())),
    );
    let written = serde_json::to_vec_pretty(&doc).expect("serialises");
    let again = parse_manifest(URI, &written).expect("the written manifest parses");
    assert_eq!(
        (&again.bucket, &again.prefix),
        (&manifest.bucket, &manifest.prefix)
    );
    let paths = |m: &trainyard_data::manifest::Manifest| {
        m.entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>()
    };
    assert_eq!(paths(&again), paths(&manifest));
});
