//! Applying one layer (an uncompressed tar stream) onto a root file system being built.
//!
//! Layers come from registries trainyard does not control, so every entry is treated as
//! hostile: a path with `..` is refused, no entry is ever written *through* a symbolic link
//! (every parent component is checked with `lstat` and must be a real directory; a link is
//! created as a link and never followed while unpacking, whatever its target), and files are
//! created with `O_CREAT|O_EXCL` after the old entry is removed, so a link planted by an earlier
//! entry or layer cannot redirect a write. Absolute link targets are fine: they are resolved
//! only inside the container, later.
//!
//! OCI whiteouts: `.wh.NAME` deletes `NAME` from lower layers, `.wh..wh..opq` empties its
//! directory of everything lower layers put there (what this layer adds, before or after the
//! marker, stays). Hard links must point inside the root file system. Device nodes and FIFOs
//! are skipped (the runtime provides `/dev`); extended attributes are not applied. Owners are
//! applied (shifted by the store's `IdShift`) when the process may `chown`, silently kept as
//! the unpacking user otherwise (a rootless store). Directory modes and times are applied after
//! the whole layer, deepest first, so a read-only directory does not block its own entries.

use std::collections::HashSet;
use std::fs::{self, FileTimes, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

/// Why a layer could not be applied.
#[derive(Debug)]
pub(crate) enum UnpackError {
    /// The layer is malformed or hostile (the message says which entry and why).
    Refused(String),
    /// Writing to the local file system failed.
    Io(PathBuf, io::Error),
}

/// What unpacking a layer did, for the progress log.
#[derive(Debug, Default)]
pub(crate) struct LayerStats {
    pub entries: u64,
    pub skipped_devices: u64,
}

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";

/// Applies the tar stream `reader` onto `root` (an existing directory), adding `id_shift` to
/// every owner.
pub(crate) fn unpack_layer(
    reader: impl Read,
    root: &Path,
    id_shift: u32,
) -> Result<LayerStats, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = LayerStats::default();
    // Relative paths this layer wrote, with their ancestors: what an opaque marker keeps.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut dirs: Vec<(PathBuf, u32, u64, u64, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| UnpackError::Refused(format!("unreadable tar stream: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| UnpackError::Refused(format!("unreadable tar stream: {e}")))?;
        stats.entries += 1;
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Refused(format!("entry with an unreadable path: {e}")))?
            .into_owned();
        let rel = normalize(&raw)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root itself ("./"): its owner and mode stay the store's
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();

        if name == OPAQUE {
            let dir = existing_dir(root, &parent_rel, &raw)?;
            if let Some(dir) = dir {
                clear_opaque(&dir, &parent_rel, &written)?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) || hidden.is_empty() {
                continue; // other aufs metadata (.wh..wh.plnk ...): nothing to apply
            }
            if let Some(dir) = existing_dir(root, &parent_rel, &raw)? {
                remove_existing(&dir.join(hidden))?;
            }
            continue;
        }

        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header
            .uid()
            .unwrap_or(0)
            .saturating_add(u64::from(id_shift));
        let gid = header
            .gid()
            .unwrap_or(0)
            .saturating_add(u64::from(id_shift));
        let mtime = header.mtime().unwrap_or(0);
        let dest = prepare_parent(root, &rel, &raw)?;
        mark_written(&mut written, &rel);

        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&dest)?;
                        create_dir(&dest)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(&dest)?,
                    Err(e) => return Err(UnpackError::Io(dest, e)),
                }
                chown(&dest, uid, gid)?;
                dirs.push((dest, mode, uid, gid, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_existing(&dest)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| UnpackError::Io(dest.clone(), e))?;
                io::copy(&mut entry, &mut file)
                    .map_err(|e| UnpackError::Refused(format!("reading {}: {e}", raw.display())))?;
                chown(&dest, uid, gid)?;
                // After chown, which clears set-id bits.
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                    .map_err(|e| UnpackError::Io(dest.clone(), e))?;
                file.set_times(FileTimes::new().set_modified(epoch(mtime)))
                    .map_err(|e| UnpackError::Io(dest.clone(), e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| UnpackError::Refused(format!("{}: {e}", raw.display())))?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!(
                            "symbolic link {} has no target",
                            raw.display()
                        ))
                    })?
                    .into_owned();
                remove_existing(&dest)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| UnpackError::Io(dest.clone(), e))?;
                chown(&dest, uid, gid)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(|e| UnpackError::Refused(format!("{}: {e}", raw.display())))?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!("hard link {} has no target", raw.display()))
                    })?
                    .into_owned();
                let target_rel = normalize(&target_raw)?;
                let target_parent = target_rel.parent().unwrap_or(Path::new(""));
                let Some(dir) = existing_dir(root, target_parent, &target_raw)? else {
                    return Err(UnpackError::Refused(format!(
                        "hard link {} points to {}, which does not exist",
                        raw.display(),
                        target_raw.display()
                    )));
                };
                let source = match target_rel.file_name() {
                    Some(n) => dir.join(n),
                    None => {
                        return Err(UnpackError::Refused(format!(
                            "hard link {} points to the root",
                            raw.display()
                        )));
                    }
                };
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(UnpackError::Refused(format!(
                            "hard link {} points to {}, which is not a file in the image",
                            raw.display(),
                            target_raw.display()
                        )));
                    }
                }
                if source != dest {
                    remove_existing(&dest)?;
                    // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                    fs::hard_link(&source, &dest).map_err(|e| UnpackError::Io(dest.clone(), e))?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                stats.skipped_devices += 1;
            }
            other => {
                tracing::debug!(path = %raw.display(), kind = ?other, "layer entry of an unhandled kind skipped");
            }
        }
    }
    // Deepest first, so setting a parent's time is not undone by work on its children.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (dir, mode, _, _, mtime) in dirs {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(|e| UnpackError::Io(dir.clone(), e))?;
        if let Ok(handle) = fs::File::open(&dir) {
            // Times on a directory are cosmetic; a failure is not worth refusing the image.
            let _ = handle.set_times(FileTimes::new().set_modified(epoch(mtime)));
        }
    }
    Ok(stats)
}

fn epoch(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The entry's path relative to the root: leading `/` and `.` dropped, `..` refused.
fn normalize(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Refused(format!(
                    "path {} escapes the root file system",
                    raw.display()
                )));
            }
        }
    }
    Ok(out)
}

fn mark_written(written: &mut HashSet<PathBuf>, rel: &Path) {
    let mut p = rel.to_path_buf();
    loop {
        if !written.insert(p.clone()) {
            break;
        }
        if !p.pop() || p.as_os_str().is_empty() {
            break;
        }
    }
}

/// Creates the missing directories above `rel` and returns the absolute destination; refuses
/// when a component above it is a symbolic link or not a directory.
fn prepare_parent(root: &Path, rel: &Path, raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for comp in parent.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Refused(format!(
                        "{} would be written through the symbolic link {}",
                        raw.display(),
                        cur.strip_prefix(root).unwrap_or(&cur).display()
                    )));
                }
                Ok(_) => {
                    return Err(UnpackError::Refused(format!(
                        "{} would be written under {}, which is not a directory",
                        raw.display(),
                        cur.strip_prefix(root).unwrap_or(&cur).display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(&cur)?,
                Err(e) => return Err(UnpackError::Io(cur, e)),
            }
        }
    }
    Ok(root.join(rel))
}

/// The absolute path of directory `rel` if it exists as a real directory reached without
/// symbolic links; `None` if any component is missing. A component that is a link is refused.
fn existing_dir(root: &Path, rel: &Path, raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Refused(format!(
                    "{} would be applied through the symbolic link {}",
                    raw.display(),
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                )));
            }
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(UnpackError::Io(cur, e)),
        }
    }
    Ok(Some(cur))
}

/// Removes whatever is at `path` (a link itself, never its target). Missing is fine.
fn remove_existing(path: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| UnpackError::Io(path.to_path_buf(), e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| UnpackError::Io(path.to_path_buf(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UnpackError::Io(path.to_path_buf(), e)),
    }
}

/// Empties `dir` (relative path `rel`) of everything this layer did not write.
fn clear_opaque(dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> Result<(), UnpackError> {
    let read = fs::read_dir(dir).map_err(|e| UnpackError::Io(dir.to_path_buf(), e))?;
    for child in read {
        let child = child.map_err(|e| UnpackError::Io(dir.to_path_buf(), e))?;
        let child_rel = rel.join(child.file_name());
        let path = child.path();
        if !written.contains(&child_rel) {
            remove_existing(&path)?;
        } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            clear_opaque(&path, &child_rel, written)?;
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), UnpackError> {
    fs::create_dir(path).map_err(|e| UnpackError::Io(path.to_path_buf(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| UnpackError::Io(path.to_path_buf(), e))
}

/// `lchown`; refused permission (not root) keeps the unpacking user as owner.
fn chown(path: &Path, uid: u64, gid: u64) -> Result<(), UnpackError> {
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(UnpackError::Refused(format!(
            "{} has an owner out of range ({uid}:{gid})",
            path.display()
        )));
    };
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(UnpackError::Io(path.to_path_buf(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A hand-built layer: (path, kind, content or link target).
    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a str),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Dev(&'a str),
        Owned(&'a str, &'a str, u64),
    }

    fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            let (path, data): (&str, &[u8]) = match e {
                E::Dir(p) => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_mode(0o755);
                    (p, b"")
                }
                E::File(p, c) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(0o644);
                    (p, c.as_bytes())
                }
                E::Owned(p, c, id) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(0o4755);
                    h.set_uid(*id);
                    h.set_gid(*id);
                    (p, c.as_bytes())
                }
                E::Link(p, t) | E::Hard(p, t) => {
                    h.set_entry_type(if matches!(e, E::Link(..)) {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    });
                    h.set_mode(0o777);
                    h.set_link_name_literal(t).unwrap();
                    (p, b"")
                }
                E::Dev(p) => {
                    h.set_entry_type(EntryType::Char);
                    h.set_mode(0o666);
                    (p, b"")
                }
            };
            h.set_size(data.len() as u64);
            // Bypass the builder's own path checks: layers in the wild carry anything.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn apply(root: &Path, entries: &[E<'_>]) -> Result<LayerStats, UnpackError> {
        unpack_layer(&layer(entries)[..], root, 0)
    }

    fn refused(r: Result<LayerStats, UnpackError>) -> String {
        match r {
            Err(UnpackError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn files_dirs_links_and_hard_links() {
        let t = tempfile::tempdir().unwrap();
        let stats = apply(
            t.path(),
            &[
                E::Dir("usr/"),
                E::Dir("usr/bin/"),
                E::File("usr/bin/python3", "py"),
                E::Link("usr/bin/python", "python3"),
                E::Link("bin", "/usr/bin"),
                E::Hard("usr/bin/python3.11", "usr/bin/python3"),
                E::File("./etc/hostname", "h"),
                E::Dev("dev/null"),
            ],
        )
        .unwrap();
        assert_eq!(stats.skipped_devices, 1);
        let r = t.path();
        assert_eq!(fs::read_to_string(r.join("usr/bin/python3")).unwrap(), "py");
        assert_eq!(
            fs::read_link(r.join("bin")).unwrap(),
            PathBuf::from("/usr/bin")
        );
        let a = fs::metadata(r.join("usr/bin/python3")).unwrap();
        let b = fs::metadata(r.join("usr/bin/python3.11")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mtime(), 1_600_000_000);
        assert!(!r.join("dev/null").exists());
        assert_eq!(fs::read_to_string(r.join("etc/hostname")).unwrap(), "h");
    }

    #[test]
    fn whiteouts_remove_lower_entries() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        apply(
            r,
            &[
                E::File("a/keep", "1"),
                E::File("a/gone", "2"),
                E::File("b/x/deep", "3"),
                E::Link("c", "/etc"),
            ],
        )
        .unwrap();
        apply(
            r,
            &[
                E::File("a/.wh.gone", ""),
                E::File(".wh.b", ""),
                E::File(".wh.c", ""),
            ],
        )
        .unwrap();
        assert!(r.join("a/keep").exists());
        assert!(!r.join("a/gone").exists());
        assert!(!r.join("b").exists());
        assert!(fs::symlink_metadata(r.join("c")).is_err());
    }

    #[test]
    fn opaque_directory_keeps_only_this_layer() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        apply(
            r,
            &[
                E::File("d/old", "1"),
                E::File("d/sub/old", "2"),
                E::File("other", "3"),
            ],
        )
        .unwrap();
        // This layer's own entry comes before the marker and one after: both stay.
        apply(
            r,
            &[
                E::File("d/before", "b"),
                E::Dir("d/sub/"),
                E::File("d/.wh..wh..opq", ""),
                E::File("d/after", "a"),
            ],
        )
        .unwrap();
        assert!(!r.join("d/old").exists());
        assert!(!r.join("d/sub/old").exists());
        assert!(r.join("d/sub").is_dir());
        assert!(r.join("d/before").exists());
        assert!(r.join("d/after").exists());
        assert!(r.join("other").exists());
    }

    #[test]
    fn dot_dot_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        fs::create_dir(&r).unwrap();
        let m = refused(apply(&r, &[E::File("../escape", "x")]));
        assert!(m.contains("escapes"), "{m}");
        let m = refused(apply(&r, &[E::File("a/../../escape", "x")]));
        assert!(m.contains("escapes"), "{m}");
        let m = refused(apply(&r, &[E::Hard("h", "../../etc/passwd")]));
        assert!(m.contains("escapes"), "{m}");
        assert!(!t.path().join("escape").exists());
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let r = t.path().join("root");
        fs::create_dir(&r).unwrap();
        let target = outside.to_str().unwrap();
        // A link to outside, then a file under it, in the same layer and across layers.
        let m = refused(apply(
            &r,
            &[E::Link("evil", target), E::File("evil/pwned", "x")],
        ));
        assert!(m.contains("symbolic link evil"), "{m}");
        let m = refused(apply(&r, &[E::File("evil/pwned2", "x")]));
        assert!(m.contains("symbolic link"), "{m}");
        // Whiteouts and opaque markers are not applied through links either.
        fs::write(outside.join("victim"), "v").unwrap();
        refused(apply(&r, &[E::File("evil/.wh.victim", "")]));
        refused(apply(&r, &[E::File("evil/.wh..wh..opq", "")]));
        // A file entry over an existing link replaces the link, never writes its target.
        apply(
            &r,
            &[
                E::Link("f", &format!("{target}/victim")),
                E::File("f", "new"),
            ],
        )
        .unwrap();
        assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "v");
        assert_eq!(fs::read_to_string(r.join("f")).unwrap(), "new");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        // A hard link to a path through a link is refused.
        refused(apply(&r, &[E::Hard("h", "evil/victim")]));
    }

    #[test]
    fn replaced_kinds_and_truncated_stream() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        apply(r, &[E::File("x/y", "1"), E::Dir("z/")]).unwrap();
        apply(r, &[E::File("x", "file now"), E::Link("z", "x")]).unwrap();
        assert_eq!(fs::read_to_string(r.join("x")).unwrap(), "file now");
        assert!(
            fs::symlink_metadata(r.join("z"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mut bytes = layer(&[E::File("big", &"x".repeat(4096))]);
        bytes.truncate(1024);
        refused(unpack_layer(&bytes[..], r, 0));
    }

    #[test]
    fn owners_are_shifted() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        unpack_layer(&layer(&[E::Owned("s", "x", 7)])[..], r, 100_000).unwrap();
        let m = fs::symlink_metadata(r.join("s")).unwrap();
        if nix_is_root() {
            assert_eq!((m.uid(), m.gid()), (100_007, 100_007));
            assert_eq!(m.mode() & 0o7777, 0o4755);
        }
    }

    fn nix_is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
}
