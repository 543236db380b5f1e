//! Packing and uploading a job's artifacts (`doc/contract/container.md` §6).
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

/// What goes into an archive: a host's directory here, or the archive a cluster node made of
/// its host's directory (its entries are copied, never unpacked on the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory; its contents go in at the archive's root.
    Dir(PathBuf),
    /// A gzip-compressed tar; a missing file is an empty source (the host sent nothing).
    Archive(PathBuf),
}

/// Writes one gzip-compressed tar of the contents of `sources`, merged in order (a later
/// entry of the same path wins when unpacked, as a later host's file did on disk).
pub fn pack(sources: &[Source], dest: &Path) -> std::io::Result<u64> {
    let file = File::create(dest)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.follow_symlinks(false);
    for source in sources {
        match source {
            Source::Dir(dir) if dir.is_dir() => add_tree(&mut tar, dir, Path::new(""))?,
            Source::Dir(_) => {}
            Source::Archive(path) => match File::open(path) {
                Ok(f) => copy_entries(&mut tar, f)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
    }
    let gz = tar.into_inner()?;
    let file = gz.finish()?;
    file.sync_all()?;
    Ok(std::fs::metadata(dest)?.len())
}

/// Appends every entry of a host's archive; an entry whose path is absolute or climbs out
/// with `..` is refused (it would escape the directory a user unpacks into).
fn copy_entries(tar: &mut tar::Builder<GzEncoder<File>>, archive: File) -> std::io::Result<()> {
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in input.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a host's archive holds the unsafe path {}", path.display()),
            ));
        }
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()?
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "a link without a target")
                })?
                .into_owned();
            tar.append_link(&mut header, &path, &target)?;
        } else {
            tar.append_data(&mut header, &path, &mut entry)?;
        }
    }
    Ok(())
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

/// Packs `sources` into `local` and uploads it as `<output>/<job>/output/<file>`; returns
/// the archive size.
pub async fn pack_and_upload(
    sources: Vec<Source>,
    local: PathBuf,
    file: &str,
    output: &Resolved,
    job: &str,
) -> Result<u64, String> {
    let l = local.clone();
    let size = tokio::task::spawn_blocking(move || pack(&sources, &l))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("packing {file}: {e}"))?;
    let key = artifact_key(output, job, file);
    let put = output
        .client
        .put(&output.bucket, &key, PutBody::File(local.clone()))
        .await
        .map_err(|e| format!("uploading {file}: {e}"));
    let _ = std::fs::remove_file(&local);
    put?;
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
        pack(&[Source::Dir(a), Source::Dir(b)], &dest).unwrap();
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
        pack(&[Source::Dir(d.path().join("m"))], &dest).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()));
        assert_eq!(ar.entries().unwrap().count(), 0);
    }

    #[test]
    fn a_nodes_archive_is_merged_entry_by_entry() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("deep")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let long = "n".repeat(150);
        std::fs::write(a.join("deep").join(&long), b"from node").unwrap();
        std::os::unix::fs::symlink("deep", a.join("link")).unwrap();
        std::fs::write(b.join("local.txt"), b"here").unwrap();
        let node = d.path().join("node.tar.gz");
        pack(&[Source::Dir(a)], &node).unwrap();
        let dest = d.path().join("model.tar.gz");
        let missing = Source::Archive(d.path().join("never-sent.tar.gz"));
        pack(&[Source::Archive(node), missing, Source::Dir(b)], &dest).unwrap();
        let out = d.path().join("out");
        tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()))
            .unpack(&out)
            .unwrap();
        assert_eq!(
            std::fs::read(out.join("deep").join(&long)).unwrap(),
            b"from node"
        );
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("deep")
        );
        assert_eq!(std::fs::read(out.join("local.txt")).unwrap(), b"here");
    }

    #[test]
    fn an_archive_entry_that_climbs_out_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let evil = d.path().join("evil.tar.gz");
        {
            let f = File::create(&evil).unwrap();
            let mut b = tar::Builder::new(GzEncoder::new(f, Compression::default()));
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            // Written raw: the tar crate's own setters refuse `..`.
            h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let err = pack(&[Source::Archive(evil)], &d.path().join("m.tar.gz")).unwrap_err();
        assert!(err.to_string().contains("unsafe path"), "{err}");
    }

    #[test]
    fn artifact_locations() {
        assert_eq!(
            artifact_uri("s3://b/out/", "j", "model.tar.gz"),
            "s3://b/out/j/output/model.tar.gz"
        );
    }
}
