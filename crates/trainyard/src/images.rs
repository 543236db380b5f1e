//! The image table: what `AlgorithmSpecification.TrainingImage` means on this installation.
//!
//! SageMaker pulls a container image; trainyard maps image names to runtimes. The built-in
//! `host` runtime runs the entry point on the host file system (inside the job's private mount
//! namespace). `$TRAINYARD_HOME/images.json` adds names, e.g. to run an ECR image name that
//! existing job definitions use with a local entry point:
//!
//! ```json
//! {"images": {"123456789012.dkr.ecr.us-east-1.amazonaws.com/my-train:latest":
//!               {"runtime": "host", "entrypoint": ["python3", "/srv/train.py"]}}}
//! ```
//!
//! `entrypoint` plays the image's ENTRYPOINT, `workdir` its WORKDIR. An image that is not in
//! the table is refused at submission, naming the table file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{TableError, read_table};
use serde::Deserialize;

/// How an image runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Only `host` exists today.
    pub runtime: Runtime,
    /// ENTRYPOINT of the image (empty: the command is the arguments).
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Working directory of the process (default: where the job was submitted from).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// The runtime kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Run on the host file system.
    Host,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    images: BTreeMap<String, Image>,
}

/// Image name → how to run it.
#[derive(Debug, Clone)]
pub struct ImageTable {
    images: BTreeMap<String, Image>,
    source: PathBuf,
}

impl ImageTable {
    /// The built-in table merged with `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, TableError> {
        let mut images = BTreeMap::new();
        images.insert(
            "host".to_string(),
            Image {
                runtime: Runtime::Host,
                entrypoint: Vec::new(),
                workdir: None,
            },
        );
        if let Some(file) = read_table::<TableFile>(path)? {
            images.extend(file.images);
        }
        Ok(ImageTable {
            images,
            source: path.to_path_buf(),
        })
    }

    /// Resolves an image name; a tag-less `host:latest` style name also matches `host`.
    pub fn resolve(&self, name: &str) -> Result<&Image, String> {
        if let Some(i) = self.images.get(name) {
            return Ok(i);
        }
        if let Some(base) = name.strip_suffix(":latest") {
            if let Some(i) = self.images.get(base) {
                return Ok(i);
            }
        }
        Err(format!(
            "TrainingImage {name:?} is not in the image table (known: {}); add it to {}",
            self.images
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            self.source.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_host_and_file_entries_resolve() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("images.json");
        std::fs::write(
            &p,
            r#"{"images":{"acme/train:1":{"runtime":"host","entrypoint":["python3","t.py"]}}}"#,
        )
        .unwrap();
        let t = ImageTable::load(&p).unwrap();
        assert_eq!(t.resolve("host").unwrap().runtime, Runtime::Host);
        assert_eq!(t.resolve("host:latest").unwrap().runtime, Runtime::Host);
        assert_eq!(
            t.resolve("acme/train:1").unwrap().entrypoint,
            ["python3", "t.py"]
        );
        let err = t.resolve("nvcr.io/x").unwrap_err();
        assert!(
            err.contains("images.json") && err.contains("acme/train:1"),
            "{err}"
        );
    }
}
