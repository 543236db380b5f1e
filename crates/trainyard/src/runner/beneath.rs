//! Reading a job's tree without following anything the job put there.
//!
//! Everything under a host's `/opt/ml` belongs to the job: while the server lists, packs or
//! uploads it, the job can swap any directory for a symbolic link (`ckpt/sub` → `/etc`), so a
//! path checked a moment ago may lead elsewhere now, and `O_NOFOLLOW` guards only the last
//! component. So every file the server reads from a job's tree is opened here, relative to a
//! handle of a directory the server trusts, with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`: the kernel refuses a symbolic link at *any* component and any path
//! that leaves the directory, at the moment of the open, so there is no window between a check
//! and the use (issue 15, item 9). A [`Tree`] is such a handle; a directory opened through it
//! is again a `Tree`, so walking a tree never goes back to path names.
//!
//! Users: the checkpoint uploader (`checkpoints`), the artifact packer (`artifacts`) and the
//! failure file (`supervise::read_failure_file`). The one deliberate exception is
//! [`Tree::file_through_links`], which follows symbolic links *confined to the tree*
//! (`RESOLVE_BENEATH` alone: the kernel refuses absolute links and `..` past the top), so that a
//! checkpoint `latest -> step-100.pt` is uploaded as the file it names.
//!
//! `openat2` needs Linux 5.6; older kernels get an error (`ENOSYS`) rather than an unsafe read.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// What an entry of a directory is, as seen without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (never followed by [`Tree::file`] or [`Tree::dir`]).
    Symlink,
    /// A FIFO, socket or device: never read.
    Other,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name.
    pub name: OsString,
    /// What it is.
    pub kind: Kind,
}

/// An open directory of a job's tree; everything opened through it stays beneath it and
/// follows no symbolic link.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    /// Where it was when opened, for messages only (never used to open anything).
    shown: PathBuf,
}

/// The flags of every open: no controlling terminal, closed on exec, and non-blocking so that
/// a FIFO the job put in place of a file cannot hang the server.
fn base_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW
}

/// Whether an open failed because a symbolic link was met (`ELOOP`) or the path would have left
/// the tree (`EXDEV`).
pub fn is_refused_link(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
}

impl Tree {
    /// Opens `trusted`, a directory the server made and the job cannot replace (a host's root,
    /// a job directory); its own last component is not followed if it is a symbolic link.
    pub fn open(trusted: &Path) -> io::Result<Tree> {
        let fd = nix::fcntl::open(trusted, base_flags() | OFlag::O_DIRECTORY, Mode::empty())
            .map_err(io::Error::from)?;
        Ok(Tree {
            fd,
            shown: trusted.to_path_buf(),
        })
    }

    /// Where the tree was when it was opened (for messages).
    pub fn path(&self) -> &Path {
        &self.shown
    }

    fn open_beneath(&self, rel: &Path, flags: OFlag, resolve: ResolveFlag) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new().flags(flags).resolve(resolve);
        loop {
            match openat2(self.fd.as_fd(), rel, how) {
                // The kernel could not rule out a concurrent rename racing the resolution.
                Err(Errno::EAGAIN) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// The directory at `rel` (relative; empty for this one), no symbolic link followed at any
    /// component.
    pub fn dir(&self, rel: &Path) -> io::Result<Tree> {
        // Without O_NOFOLLOW: with it, a link as last component would be ENOTDIR (O_DIRECTORY);
        // RESOLVE_NO_SYMLINKS refuses it, as any other component, with ELOOP.
        let fd = self.open_beneath(
            rel,
            (base_flags() & !OFlag::O_NOFOLLOW) | OFlag::O_DIRECTORY,
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        )?;
        Ok(Tree {
            fd,
            shown: self.shown.join(rel),
        })
    }

    /// The regular file at `rel`, opened for reading with no symbolic link followed at any
    /// component; anything but a regular file is refused (`InvalidInput`).
    pub fn file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_beneath(
            rel,
            base_flags(),
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        )?;
        regular(File::from(fd))
    }

    /// The regular file at `rel`, following symbolic links only while they stay inside this
    /// tree (the kernel refuses absolute links, `..` past the top and magic links).
    pub fn file_through_links(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_beneath(
            rel,
            base_flags() & !OFlag::O_NOFOLLOW,
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )?;
        regular(File::from(fd))
    }

    /// The target of the symbolic link `name` of this directory (a plain name).
    pub fn read_link(&self, name: &Path) -> io::Result<PathBuf> {
        nix::fcntl::readlinkat(self.fd.as_fd(), name)
            .map(PathBuf::from)
            .map_err(io::Error::from)
    }

    /// What is at `rel` (not empty), without following it: its parent is opened as by
    /// [`Tree::dir`], and the last component is looked at, not through.
    pub fn kind_of(&self, rel: &Path) -> io::Result<Kind> {
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        let dir = self.dir(parent)?;
        let st = nix::sys::stat::fstatat(
            dir.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        })
    }

    /// This directory's own metadata.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        File::from(self.fd.try_clone()?).metadata()
    }

    /// The entries of this directory (not `.` and `..`), sorted by name.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        use nix::dir::{Dir, Type};
        let mut dir = Dir::from_fd(self.fd.try_clone()?).map_err(io::Error::from)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io::Error::from)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                Some(t) => t,
                // Some file systems do not fill in the type: ask without following.
                None => match nix::sys::stat::fstatat(
                    self.fd.as_fd(),
                    entry.file_name(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => match st.st_mode & libc::S_IFMT {
                        libc::S_IFDIR => Type::Directory,
                        libc::S_IFREG => Type::File,
                        libc::S_IFLNK => Type::Symlink,
                        _ => Type::Fifo,
                    },
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            out.push(Entry {
                name: std::ffi::OsStr::from_bytes(name).to_os_string(),
                kind: match kind {
                    Type::Directory => Kind::Dir,
                    Type::File => Kind::File,
                    Type::Symlink => Kind::Symlink,
                    _ => Kind::Other,
                },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// At most `max` bytes of the regular file at `rel`; `None` when there is no such file.
    pub fn read_bounded(&self, rel: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
        let file = match self.file(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        file.take(max).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }
}

/// `file` if it is a regular file; a FIFO, device or directory is refused.
fn regular(file: File) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A tree `t/` with `t/sub/f`, and a secret outside it.
    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("sub/f"), b"inside").unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::fs::write(d.path().join("outside/f"), b"SECRET").unwrap();
        (d, t)
    }

    #[test]
    fn files_and_directories_beneath_are_read() {
        let (_d, t) = fixture();
        let tree = Tree::open(&t).unwrap();
        let mut s = String::new();
        tree.file(Path::new("sub/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        let sub = tree.dir(Path::new("sub")).unwrap();
        assert_eq!(
            sub.entries().unwrap(),
            [Entry {
                name: "f".into(),
                kind: Kind::File
            }]
        );
        assert_eq!(
            sub.read_bounded(Path::new("f"), 3).unwrap().unwrap(),
            b"ins"
        );
        assert!(sub.read_bounded(Path::new("none"), 3).unwrap().is_none());
    }

    #[test]
    fn a_symlinked_intermediate_directory_is_refused() {
        let (d, t) = fixture();
        symlink(d.path().join("outside"), t.join("link")).unwrap();
        symlink("sub", t.join("rel")).unwrap();
        let tree = Tree::open(&t).unwrap();
        for rel in ["link/f", "rel/f"] {
            let e = tree.file(Path::new(rel)).unwrap_err();
            assert!(is_refused_link(&e), "{rel}: {e}");
        }
        for rel in ["link", "rel"] {
            let e = tree.dir(Path::new(rel)).unwrap_err();
            assert!(is_refused_link(&e), "{rel}: {e}");
        }
        let e = tree.file(Path::new("../outside/f")).unwrap_err();
        assert!(is_refused_link(&e), "{e}");
        let e = tree.file(Path::new("/etc/passwd")).unwrap_err();
        assert!(is_refused_link(&e), "{e}");
    }

    #[test]
    fn a_symlinked_last_component_is_refused_and_links_inside_follow_only_inside() {
        let (d, t) = fixture();
        symlink(d.path().join("outside/f"), t.join("abs")).unwrap();
        symlink("../outside/f", t.join("climb")).unwrap();
        symlink("sub/f", t.join("latest")).unwrap();
        let tree = Tree::open(&t).unwrap();
        for rel in ["abs", "climb", "latest"] {
            assert!(is_refused_link(&tree.file(Path::new(rel)).unwrap_err()));
        }
        let mut s = String::new();
        tree.file_through_links(Path::new("latest"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        for rel in ["abs", "climb"] {
            let e = tree.file_through_links(Path::new(rel)).unwrap_err();
            assert!(is_refused_link(&e), "{rel}: {e}");
        }
        assert_eq!(
            tree.read_link(Path::new("latest")).unwrap(),
            Path::new("sub/f")
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_d, t) = fixture();
        nix::unistd::mkfifo(&t.join("pipe"), Mode::S_IRWXU).unwrap();
        let tree = Tree::open(&t).unwrap();
        let e = tree.file(Path::new("pipe")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(tree.entries().unwrap()[0].kind, Kind::Other);
    }

    /// The race of issue 15 item 9, made deterministic: the directory is listed, then swapped
    /// for a link to somewhere else, then the file the listing named is opened.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_listing_is_not_followed() {
        let (d, t) = fixture();
        let tree = Tree::open(&t).unwrap();
        let listed = tree.dir(Path::new("sub")).unwrap().entries().unwrap();
        assert_eq!(listed[0].name, "f");
        std::fs::rename(t.join("sub"), t.join("sub.old")).unwrap();
        symlink(d.path().join("outside"), t.join("sub")).unwrap();
        let e = tree
            .file(&Path::new("sub").join(&listed[0].name))
            .unwrap_err();
        assert!(is_refused_link(&e), "{e}");
    }
}
