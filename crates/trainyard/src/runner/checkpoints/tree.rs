//! The checkpoint directory as the uploader sees it: walking it, taking a consistent copy of a
//! file for upload, and the private staging directory those copies go to. Everything is read
//! through the directory's handle ([`Tree`]), never by path, so a subdirectory the job swaps
//! for a symbolic link is not followed (see the parent module's documentation).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{debug, warn};
use trainyard_s3::ObjectClient;

use super::{CheckpointError, DOWNLOAD_TEMP_MARKER, STAGING_PREFIX, UploadFailure};
use crate::runner::beneath::{Kind, Tree, is_refused_link};

/// The private directory upload snapshots are copied into; removed with everything in it when
/// the session ends (including when its task is aborted).
#[derive(Debug)]
pub(super) struct Staging {
    pub(super) dir: PathBuf,
}

impl Staging {
    pub(super) fn create(root: &Path, base: Option<&Path>) -> Result<Staging, CheckpointError> {
        static SESSIONS: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{STAGING_PREFIX}{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let io_err = |path: PathBuf| {
            move |source| CheckpointError::Io {
                action: "creating the checkpoint staging directory",
                path,
                source,
            }
        };
        let dir = match base {
            Some(base) => {
                fs::create_dir_all(base).map_err(io_err(base.to_path_buf()))?;
                let dir = base.join(&name);
                fs::create_dir(&dir).map_err(io_err(dir.clone()))?;
                dir
            }
            None => {
                let beside = root.parent().map(|p| p.join(&name));
                match beside.filter(|d| fs::create_dir(d).is_ok()) {
                    Some(dir) => dir,
                    None => {
                        let dir = std::env::temp_dir().join(&name);
                        fs::create_dir(&dir).map_err(io_err(dir.clone()))?;
                        dir
                    }
                }
            }
        };
        let canonical = fs::canonicalize(&dir).unwrap_or(dir);
        Ok(Staging { dir: canonical })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(dir = %self.dir.display(), error = %e, "could not remove checkpoint staging directory");
            }
        }
    }
}

/// What identifies a version of a file: when any of these change, the file is uploaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    pub(super) dev: u64,
    pub(super) ino: u64,
}

impl Stamp {
    pub(super) fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Whether the file was modified less than `window` ago.
    pub(super) fn recent(&self, window: Duration) -> bool {
        SystemTime::now()
            .duration_since(self.mtime)
            .is_ok_and(|age| age < window)
    }
}

/// What the sync task and its upload tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) client: Arc<dyn ObjectClient>,
    pub(super) bucket: String,
    /// Key prefix as a folder (empty or ending in `/`).
    pub(super) prefix: String,
    /// Canonical checkpoint directory (for names and messages; nothing is opened by it).
    pub(super) root: PathBuf,
    /// The checkpoint directory, opened before the process started: every file is read
    /// through it ([`Tree`]), never by path.
    pub(super) tree: Tree,
    /// Canonical staging directory; never mirrored, even if configured inside `root`.
    pub(super) staging_dir: PathBuf,
    pub(super) copies: AtomicU64,
}

impl Shared {
    pub(super) fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    pub(super) fn ignored(&self, path: &Path, name: &str) -> bool {
        path.starts_with(&self.staging_dir)
            || (name.starts_with('.') && name.contains(DOWNLOAD_TEMP_MARKER))
    }

    /// The `/`-separated path of `path` inside the directory; `None` for the directory itself,
    /// paths outside it, non-UTF-8 names and files that are never mirrored.
    pub(super) fn rel_of(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for c in rest.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str()?),
                _ => return None,
            }
        }
        let name = parts.last()?;
        if self.ignored(path, name) {
            return None;
        }
        Some(parts.join("/"))
    }

    /// Every file under `start_rel` (the whole directory when empty), with its stamp.
    /// A missing directory is empty; an unreadable subdirectory makes the walk incomplete.
    /// Directories are opened through the tree, so one the job swaps for a symbolic link is
    /// not entered; a symbolic link counts as the regular file it names only while it stays
    /// inside the directory ([`Tree::file_through_links`]).
    pub(super) fn walk(&self, start_rel: &str) -> io::Result<Walk> {
        let mut walk = Walk {
            files: HashMap::new(),
            complete: true,
        };
        let start = match self.tree.dir(Path::new(start_rel)) {
            Ok(dir) => dir,
            Err(e) if start_rel.is_empty() => return Err(e),
            Err(e) if is_gone(&e) || is_refused_link(&e) => return Ok(walk),
            Err(e) => {
                warn!(dir = %self.root.join(start_rel).display(), error = %e, "cannot read checkpoint subdirectory");
                walk.complete = false;
                return Ok(walk);
            }
        };
        let mut stack = vec![(start, start_rel.to_string())];
        while let Some((dir, rel_dir)) = stack.pop() {
            let entries = match dir.entries() {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if rel_dir.is_empty() => return Err(e),
                Err(e) => {
                    warn!(dir = %dir.path().display(), error = %e, "cannot read checkpoint subdirectory");
                    walk.complete = false;
                    continue;
                }
            };
            for entry in entries {
                let Some(name) = entry.name.to_str() else {
                    debug!(dir = %dir.path().display(), name = ?entry.name, "file name is not UTF-8; not mirrored");
                    continue;
                };
                let rel = if rel_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel_dir}/{name}")
                };
                if self.ignored(&self.root.join(&rel), name) {
                    continue;
                }
                match entry.kind {
                    Kind::Dir => match dir.dir(Path::new(name)) {
                        Ok(sub) => stack.push((sub, rel)),
                        Err(e) if is_gone(&e) || is_refused_link(&e) => {}
                        Err(e) => {
                            warn!(dir = %dir.path().join(name).display(), error = %e, "cannot read checkpoint subdirectory");
                            walk.complete = false;
                        }
                    },
                    Kind::File => {
                        if let Ok(meta) = dir.file(Path::new(name)).and_then(|f| f.metadata()) {
                            walk.files.insert(rel, Stamp::of(&meta));
                        }
                    }
                    Kind::Symlink => match self
                        .tree
                        .file_through_links(Path::new(&rel))
                        .and_then(|f| f.metadata())
                    {
                        Ok(meta) => {
                            walk.files.insert(rel, Stamp::of(&meta));
                        }
                        Err(e) => {
                            debug!(link = %self.root.join(&rel).display(), error = %e, "symlink does not name a file inside the checkpoint directory; not uploaded");
                        }
                    },
                    Kind::Other => {}
                }
            }
        }
        Ok(walk)
    }

    /// Takes a consistent copy of the file at `rel` for upload. The file is opened through the
    /// tree: a component the job swapped for a symbolic link since the listing makes it gone.
    pub(super) fn snapshot(&self, rel: &str, mode: SyncMode) -> Result<Snap, UploadFailure> {
        let path = self.root.join(rel);
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| UploadFailure::Read { path, source }
        };
        let rel_path = Path::new(rel);
        let opened = match self.tree.kind_of(rel_path) {
            Ok(Kind::Dir) => {
                let walk = self.walk(rel).map_err(read_err(&path))?;
                return Ok(Snap::Dir(walk.files.into_keys().collect()));
            }
            Ok(Kind::File) => self.tree.file(rel_path),
            Ok(Kind::Symlink) => self.tree.file_through_links(rel_path),
            Ok(Kind::Other) => return Ok(Snap::Gone),
            Err(e) if is_gone(&e) || is_refused_link(&e) => return Ok(Snap::Gone),
            Err(e) => return Err(read_err(&path)(e)),
        };
        let source = path;
        let mut file = match opened {
            Ok(file) => file,
            Err(e)
                if is_gone(&e)
                    || is_refused_link(&e)
                    || e.kind() == io::ErrorKind::InvalidInput =>
            {
                return Ok(Snap::Gone);
            }
            Err(e) => return Err(read_err(&source)(e)),
        };
        let meta = file.metadata().map_err(read_err(&source))?;
        if !meta.is_file() {
            return Ok(Snap::Gone);
        }
        let before = Stamp::of(&meta);
        if mode.skip_if == Some(before) {
            return Ok(Snap::Unchanged);
        }
        if mode.quiet.is_some_and(|window| before.recent(window)) {
            return Ok(Snap::Busy);
        }
        let copy_path = self.staging_dir.join(format!(
            "{}.snapshot",
            self.copies.fetch_add(1, Ordering::Relaxed)
        ));
        let copy = StagedCopy {
            path: copy_path.clone(),
        };
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy_path)
            .map_err(read_err(&copy_path))?;
        let copied = io::copy(&mut file, &mut out).map_err(read_err(&source))?;
        drop(out);
        let after = Stamp::of(&file.metadata().map_err(read_err(&source))?);
        if copied != before.size || after != before {
            return Ok(Snap::Unstable);
        }
        Ok(Snap::Ready {
            copy,
            stamp: before,
        })
    }
}

pub(super) fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A snapshot copy in the staging directory, removed when dropped.
#[derive(Debug)]
pub(super) struct StagedCopy {
    pub(super) path: PathBuf,
}

impl Drop for StagedCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[derive(Debug)]
pub(super) struct Walk {
    pub(super) files: HashMap<String, Stamp>,
    /// False when some subdirectory could not be read: its files may exist, so nothing is
    /// deleted on the strength of this walk.
    pub(super) complete: bool,
}

/// How an upload attempt treats an unchanged or busy file.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncMode {
    /// Skip the upload when the file still has this stamp.
    pub(super) skip_if: Option<Stamp>,
    /// Put the upload off when the file was modified within this window.
    pub(super) quiet: Option<Duration>,
}

#[derive(Debug)]
pub(super) enum Snap {
    Ready { copy: StagedCopy, stamp: Stamp },
    Unchanged,
    Busy,
    Unstable,
    Gone,
    Dir(Vec<String>),
}
