//! Packing and uploading a job's artifacts (`spec/container.md` §6).
//!
//! `/opt/ml/model` of every host, merged, becomes `<S3OutputPath>/<job>/output/model.tar.gz`;
//! `/opt/ml/output/data` becomes `output.tar.gz` beside it. Archives hold paths relative to
//! the directory (no `model/` prefix), symlinks are stored as links (never followed, so a link
//! cannot pull host files into an archive), and an empty directory still yields a valid, empty
//! archive so `S3ModelArtifacts` always resolves. Archives are built in the job directory and
//! uploaded as files, so memory does not depend on model size.

use std::fs::File;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use trainyard_s3::PutBody;

use crate::storage::Resolved;

/// `<S3OutputPath>/<job>/output/<file>` as a URI string (for DescribeTrainingJob).
pub fn artifact_uri(output_path: &str, job: &str, file: &str) -> String {
    format!("{}/{job}/output/{file}", output_path.trim_end_matches('/'))
}

/// The key of `<job>/output/<file>` under the resolved output location.
pub fn artifact_key(output: &Resolved, job: &str, file: &str) -> String {
    let base = output.key.trim_end_matches('/');
    if base.is_empty() {
        format!("{job}/output/{file}")
    } else {
        format!("{base}/{job}/output/{file}")
    }
}

/// Writes a gzip-compressed tar of the contents of `dirs` (merged, in order) to `dest`.
pub fn pack(dirs: &[PathBuf], dest: &Path) -> std::io::Result<u64> {
    let file = File::create(dest)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.follow_symlinks(false);
    for dir in dirs {
        if dir.is_dir() {
            add_tree(&mut tar, dir, Path::new(""))?;
        }
    }
    let gz = tar.into_inner()?;
    let file = gz.finish()?;
    file.sync_all()?;
    Ok(std::fs::metadata(dest)?.len())
}

fn add_tree(
    tar: &mut tar::Builder<GzEncoder<File>>,
    dir: &Path,
    rel: &Path,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_dir() {
            tar.append_dir(&name, &path)?;
            add_tree(tar, &path, &name)?;
        } else if ft.is_file() || ft.is_symlink() {
            tar.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}

/// Packs `dirs` into `<job_dir>/<file>` and uploads it; returns the archive size.
pub async fn pack_and_upload(
    dirs: Vec<PathBuf>,
    job_dir: &Path,
    file: &str,
    output: &Resolved,
    job: &str,
) -> Result<u64, String> {
    let local = job_dir.join(file);
    let l = local.clone();
    let size = tokio::task::spawn_blocking(move || pack(&dirs, &l))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("packing {file}: {e}"))?;
    let key = artifact_key(output, job, file);
    output
        .client
        .put(&output.bucket, &key, PutBody::File(local.clone()))
        .await
        .map_err(|e| format!("uploading {file}: {e}"))?;
    let _ = std::fs::remove_file(&local);
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_hold_relative_paths_merged_across_hosts() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("sub/w.bin"), b"weights").unwrap();
        std::fs::write(b.join("host2.txt"), b"2").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.join("link")).unwrap();
        let dest = d.path().join("model.tar.gz");
        pack(&[a, b], &dest).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()));
        let mut names: Vec<(String, bool)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type().is_symlink(),
                )
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("host2.txt".into(), false),
                ("link".into(), true),
                ("sub".into(), false),
                ("sub/w.bin".into(), false)
            ]
        );
    }

    #[test]
    fn empty_model_dir_gives_a_valid_empty_archive() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m")).unwrap();
        let dest = d.path().join("model.tar.gz");
        pack(&[d.path().join("m")], &dest).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()));
        assert_eq!(ar.entries().unwrap().count(), 0);
    }

    #[test]
    fn artifact_locations() {
        assert_eq!(
            artifact_uri("s3://b/out/", "j", "model.tar.gz"),
            "s3://b/out/j/output/model.tar.gz"
        );
    }
}
