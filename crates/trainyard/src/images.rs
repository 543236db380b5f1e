//! The image table: what `AlgorithmSpecification.TrainingImage` means on this installation.
//!
//! As in SageMaker, a `TrainingImage` is an OCI image reference, pulled and run in a container
//! (`runner::image`). The table adds names that run on the built-in `host` runtime instead: the
//! entry point from the host's system directories and the job's code, read-only, in the same
//! container sandbox. `host` itself is always there; `$TRAINYARD_HOME/images.json` adds
//! names, e.g. to run an ECR image name that existing job definitions use with a local entry
//! point:
//!
//! ```json
//! {"images": {"123456789012.dkr.ecr.us-east-1.amazonaws.com/my-train:latest":
//!               {"runtime": "host", "entrypoint": ["python3", "/srv/train.py"]}}}
//! ```
//!
//! `entrypoint` plays the image's ENTRYPOINT, `workdir` its WORKDIR. A name that is not in
//! the table is an image reference; one that is not a valid reference is refused at
//! submission.

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

    /// Resolves an image name: a table entry (a tag-less `host:latest` style name also
    /// matches `host`), else an OCI image reference.
    pub fn resolve<'a>(&'a self, name: &'a str) -> Result<Resolved<'a>, String> {
        if let Some(i) = self.images.get(name) {
            return Ok(Resolved::Host(i));
        }
        if let Some(base) = name.strip_suffix(":latest") {
            if let Some(i) = self.images.get(base) {
                return Ok(Resolved::Host(i));
            }
        }
        match trainyard_oci::check_reference(name) {
            Ok(kind) => Ok(Resolved::Oci {
                reference: name,
                local_layout: kind == trainyard_oci::ReferenceKind::Layout,
            }),
            Err(e) => Err(format!(
                "{e} (names of the image table {}: {})",
                self.source.display(),
                self.images
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// What an image name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A table entry: the `host` runtime.
    Host(&'a Image),
    /// An OCI image, pulled and run in a container.
    Oci {
        /// The reference.
        reference: &'a str,
        /// `oci:DIR`: a directory of this machine (refused under access control).
        local_layout: bool,
    },
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
        let host = |name| match t.resolve(name).unwrap() {
            Resolved::Host(i) => i.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(host("host").runtime, Runtime::Host);
        assert_eq!(host("host:latest").runtime, Runtime::Host);
        assert_eq!(host("acme/train:1").entrypoint, ["python3", "t.py"]);
        assert_eq!(
            t.resolve("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-train:latest")
                .unwrap(),
            Resolved::Oci {
                reference: "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-train:latest",
                local_layout: false
            }
        );
        assert!(matches!(
            t.resolve("oci:/srv/images/x:1").unwrap(),
            Resolved::Oci {
                local_layout: true,
                ..
            }
        ));
        let err = t.resolve("Not A Reference").unwrap_err();
        assert!(
            err.contains("images.json") && err.contains("acme/train:1"),
            "{err}"
        );
    }
}
