//! File-system data sources: what `FileSystemId` means on this installation.
//!
//! SageMaker mounts EFS or FSx for Lustre into the job; trainyard binds a directory of this
//! machine (a local disk, an NFS or Lustre mount) that the configuration names for the id, in
//! `$TRAINYARD_HOME/filesystems.json`:
//!
//! ```json
//! {"fs-0123abcd": "/mnt/efs",
//!  "fs-89abcdef": {"path": "/mnt/fsx", "mount_name": "abcdefgh", "tags": {"tenant-id": "b"}}}
//! ```
//!
//! Under `iam.json`, mounting a file system is authorized like reading an S3 channel
//! (`authz::control::FileSystemUse`): its `tags` are the file system's resource tags
//! (`aws:ResourceTag/<key>`), so a policy can give each tenant only the file systems tagged
//! with its own tenant.
//!
//! `DirectoryPath` is a path inside that file system; for FSx for Lustre it must begin with
//! the file system's mount name (`/abcdefgh/train`; default mount name `fsx`), as SageMaker
//! requires. The resolved directory is canonicalised and must stay inside the configured root:
//! `..` or a symlink cannot reach outside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{TableError, read_table};
use serde::Deserialize;

use crate::jobs::spec::{FileSystemDataSource, FileSystemType, Tag};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Entry {
    Path(PathBuf),
    Full {
        path: PathBuf,
        #[serde(default)]
        mount_name: Option<String>,
        #[serde(default)]
        tags: BTreeMap<String, String>,
    },
}

/// Configured file systems by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSystems {
    entries: BTreeMap<String, (PathBuf, Option<String>)>,
    tags: BTreeMap<String, BTreeMap<String, String>>,
    source: PathBuf,
}

impl FileSystems {
    /// Reads `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, TableError> {
        let mut entries = BTreeMap::new();
        let mut tags = BTreeMap::new();
        if let Some(raw) = read_table::<BTreeMap<String, Entry>>(path)? {
            for (id, e) in raw {
                let (p, m) = match e {
                    Entry::Path(p) => (p, None),
                    Entry::Full {
                        path,
                        mount_name,
                        tags: t,
                    } => {
                        tags.insert(id.clone(), t);
                        (path, mount_name)
                    }
                };
                entries.insert(id, (p, m));
            }
        }
        Ok(FileSystems {
            entries,
            tags,
            source: path.to_path_buf(),
        })
    }

    /// The tags configured for file system `id` (none when it has none or is unknown).
    pub fn tags(&self, id: &str) -> Vec<Tag> {
        self.tags
            .get(id)
            .into_iter()
            .flatten()
            .map(|(key, value)| Tag {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// The host directory a channel's file-system source names, checked; the error says which
    /// field is wrong and why.
    pub fn resolve(&self, src: &FileSystemDataSource) -> Result<PathBuf, (&'static str, String)> {
        let Some((root, mount_name)) = self.entries.get(&src.file_system_id) else {
            return Err((
                "fileSystemId",
                format!(
                    "FileSystemId {} is not configured on this trainyard (add it to {})",
                    src.file_system_id,
                    self.source.display()
                ),
            ));
        };
        let dir = src.directory_path.as_str();
        let rel = match src.file_system_type {
            FileSystemType::FsxLustre => {
                let name = mount_name.as_deref().unwrap_or("fsx");
                let head = format!("/{name}");
                match dir.strip_prefix(&head) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
                    _ => {
                        return Err((
                            "directoryPath",
                            format!(
                                "DirectoryPath {dir:?} must begin with the mount name of the FSx for Lustre file system ({head})"
                            ),
                        ));
                    }
                }
            }
            FileSystemType::Efs => dir.to_string(),
        };
        let root = root.canonicalize().map_err(|e| {
            (
                "fileSystemId",
                format!(
                    "file system root {} of {}: {e}",
                    root.display(),
                    src.file_system_id
                ),
            )
        })?;
        let joined = root.join(rel.trim_start_matches('/'));
        let resolved = joined.canonicalize().map_err(|e| {
            (
                "directoryPath",
                format!("DirectoryPath {dir:?} ({}): {e}", joined.display()),
            )
        })?;
        if !resolved.starts_with(&root) {
            return Err((
                "directoryPath",
                format!(
                    "DirectoryPath {dir:?} leads outside the file system {}",
                    src.file_system_id
                ),
            ));
        }
        if !resolved.is_dir() {
            return Err((
                "directoryPath",
                format!("DirectoryPath {dir:?} is not a directory"),
            ));
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::spec::FileSystemAccessMode;

    fn src(id: &str, ty: FileSystemType, dir: &str) -> FileSystemDataSource {
        FileSystemDataSource {
            file_system_id: id.into(),
            file_system_access_mode: FileSystemAccessMode::Ro,
            file_system_type: ty,
            directory_path: dir.into(),
        }
    }

    #[test]
    fn resolves_and_refuses_by_the_rules() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("efs");
        std::fs::create_dir_all(root.join("train/x")).unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("link")).unwrap();
        let cfg = d.path().join("filesystems.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"fs-0123abcd": "{}", "fs-89abcdef": {{"path": "{}", "mount_name": "abc", "tags": {{"tenant-id": "b"}}}}}}"#,
                root.display(),
                root.display()
            ),
        )
        .unwrap();
        let fs = FileSystems::load(&cfg).unwrap();
        assert_eq!(
            fs.tags("fs-89abcdef"),
            [Tag {
                key: "tenant-id".into(),
                value: "b".into()
            }]
        );
        assert!(fs.tags("fs-0123abcd").is_empty());
        let canon = root.canonicalize().unwrap();
        assert_eq!(
            fs.resolve(&src("fs-0123abcd", FileSystemType::Efs, "/train"))
                .unwrap(),
            canon.join("train")
        );
        assert_eq!(
            fs.resolve(&src(
                "fs-89abcdef",
                FileSystemType::FsxLustre,
                "/abc/train/x"
            ))
            .unwrap(),
            canon.join("train/x")
        );
        let cases = [
            (
                src("fs-89abcdef", FileSystemType::FsxLustre, "/train"),
                "directoryPath",
                "mount name",
            ),
            (
                src("fs-89abcdef", FileSystemType::FsxLustre, "/abcd/train"),
                "directoryPath",
                "mount name",
            ),
            (
                src("fs-0123abcd", FileSystemType::Efs, "/../outside"),
                "directoryPath",
                "outside",
            ),
            (
                src("fs-0123abcd", FileSystemType::Efs, "/link"),
                "directoryPath",
                "outside",
            ),
            (
                src("fs-0123abcd", FileSystemType::Efs, "/missing"),
                "directoryPath",
                "No such file",
            ),
            (
                src("fs-11111111", FileSystemType::Efs, "/"),
                "fileSystemId",
                "not configured",
            ),
        ];
        for (s, field, why) in cases {
            let (f, msg) = fs.resolve(&s).unwrap_err();
            assert_eq!(f, field, "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
    }
}
