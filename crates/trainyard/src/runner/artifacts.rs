//! Packing and uploading a job's artifacts (`doc/contract/container.md` §6).
//!
//! `/opt/ml/model` of every host, merged, becomes `<S3OutputPath>/<job>/output/model.tar.gz`;
//! `/opt/ml/output/data` becomes `output.tar.gz` beside it. Archives hold paths relative to
//! the directory (no `model/` prefix), symlinks are stored as links (never followed, so a link
//! cannot pull host files into an archive), and an empty directory still yields a valid, empty
//! archive so `S3ModelArtifacts` always resolves. Archives are built in the job directory and
//! uploaded as files, so memory does not depend on model size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use trainyard_s3::PutBody;

use super::beneath::{Kind, Tree};
use crate::storage::Resolved;

impl Source {
    /// `sub` of the host tree `root`.
    pub fn dir(root: impl Into<PathBuf>, sub: impl Into<PathBuf>) -> Self {
        Source::Dir {
            root: root.into(),
            sub: sub.into(),
        }
    }
}

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
    /// The directory `sub` of the host tree `root`; its contents go in at the archive's root.
    /// `root` is trusted (the server made it); `sub` and everything under it belong to the job
    /// and are read through [`Tree`], following no symbolic link.
    Dir {
        /// The host tree (`/opt/ml` of a host).
        root: PathBuf,
        /// The directory inside it (`model`, `output/data`; empty for `root` itself).
        sub: PathBuf,
    },
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
            Source::Dir { root, sub } => {
                let dir = match Tree::open(root).and_then(|t| t.dir(sub)) {
                    Ok(dir) => dir,
                    // No directory, or one the job replaced by a link or a file: nothing of it
                    // goes in.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ENOTDIR)
                            || super::beneath::is_refused_link(&e) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                add_tree(&mut tar, &dir, Path::new(""))?;
            }
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

/// Appends the contents of `dir` under `rel`: directories and regular files opened through the
/// tree, symbolic links stored as links (their target is never read), anything else left out.
fn add_tree(
    tar: &mut tar::Builder<GzEncoder<File>>,
    dir: &Tree,
    rel: &Path,
) -> std::io::Result<()> {
    for e in dir.entries()? {
        let name = rel.join(&e.name);
        let here = Path::new(&e.name);
        let mut header = tar::Header::new_gnu();
        match e.kind {
            Kind::Dir => {
                let sub = dir.dir(here)?;
                header.set_metadata_in_mode(&sub.metadata()?, tar::HeaderMode::Complete);
                tar.append_data(&mut header, &name, std::io::empty())?;
                add_tree(tar, &sub, &name)?;
            }
            Kind::File => {
                let file = match dir.file(here) {
                    Ok(f) => f,
                    // Swapped for something else since the listing: left out.
                    Err(e)
                        if super::beneath::is_refused_link(&e)
                            || e.kind() == std::io::ErrorKind::InvalidInput
                            || e.kind() == std::io::ErrorKind::NotFound =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let meta = file.metadata()?;
                header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                // The size in the header is what is copied, even if the job grows the file.
                tar.append_data(&mut header, &name, file.take(meta.len()))?;
            }
            Kind::Symlink => {
                let target = dir.read_link(here)?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, &name, &target)?;
            }
            Kind::Other => {}
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
        pack(&[Source::dir(a, ""), Source::dir(b, "")], &dest).unwrap();
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

    /// Issue 15 item 9: a model directory the job replaced by a link to a host directory
    /// packs as nothing, and a link inside is stored as a link, its target never read.
    #[test]
    fn a_model_directory_swapped_for_a_link_packs_nothing_from_outside() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("shadow"), b"SECRET").unwrap();
        let root = d.path().join("opt_ml");
        std::fs::create_dir_all(root.join("output")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("model")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("output/data")).unwrap();
        let dest = d.path().join("model.tar.gz");
        pack(
            &[
                Source::dir(&root, "model"),
                Source::dir(&root, "output/data"),
            ],
            &dest,
        )
        .unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()));
        assert_eq!(ar.entries().unwrap().count(), 0);

        // `output` itself a link: `output/data` is not reached through it.
        std::fs::remove_file(root.join("output/data")).unwrap();
        std::fs::remove_dir(root.join("output")).unwrap();
        std::fs::create_dir_all(outside.join("data")).unwrap();
        std::fs::write(outside.join("data/x"), b"SECRET").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("output")).unwrap();
        pack(&[Source::dir(&root, "output/data")], &dest).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&dest).unwrap()));
        assert_eq!(ar.entries().unwrap().count(), 0);
    }

    #[test]
    fn empty_model_dir_gives_a_valid_empty_archive() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m")).unwrap();
        let dest = d.path().join("model.tar.gz");
        pack(&[Source::dir(d.path(), "m")], &dest).unwrap();
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
        pack(&[Source::dir(a, "")], &node).unwrap();
        let dest = d.path().join("model.tar.gz");
        let missing = Source::Archive(d.path().join("never-sent.tar.gz"));
        pack(&[Source::Archive(node), missing, Source::dir(b, "")], &dest).unwrap();
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
