//! The FastFile file system without the kernel: lookups, attributes, handles and reads.
//!
//! Everything a FUSE request needs is decided here, in plain Rust that takes inode numbers and
//! offsets and returns values or an [`FsError`], so unit and property tests drive it directly
//! and the FUSE adapter stays a translation layer. Metadata operations are synchronous and
//! touch only the immutable [`InodeTable`]; only [`FastFs::read`] is async, because it may wait
//! for storage.
//!
//! Each open file gets a handle holding its sequential stream (see [`super::prefetch`]). A read
//! belongs to the stream when the stream already has or is fetching that offset, or when it
//! starts where the handle's previous read ended (or at offset 0): a new stream is started
//! there. Every other read is random access: it is fetched exactly, and the stream's lock is
//! only held to classify it, not while fetching, so concurrent random readers of one handle
//! proceed in parallel.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use trainyard_s3::ObjectClient;

use crate::DataError;
use crate::fastfile::error::FsError;
use crate::fastfile::inode::{InodeTable, NodeKind};
use crate::fastfile::prefetch::{Budget, ReadCtx, SeqStream, Tuning, fetch_exact};
use crate::fastfile::{FastFileConfig, MountEntry};

/// Block size reported by `stat` and `statfs`.
const BLOCK_SIZE: u32 = 4096;
/// Longest file name reported by `statfs` (the limit `safe_relative_path` enforces).
const NAME_MAX: u32 = 255;

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory (synthesised from key segments).
    Directory,
    /// A regular file (one object).
    File,
}

/// What `stat` says about an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: FileKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Size in 512-byte blocks.
    pub blocks: u64,
    /// Modification time: the object's from the listing, or the mount time.
    pub mtime: SystemTime,
    /// Permission bits: 0444 for files, 0555 for directories.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

/// One `readdir` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Inode of the entry.
    pub ino: u64,
    /// Offset to pass to the next `readdir` to continue after this entry.
    pub next_offset: u64,
    /// File or directory.
    pub kind: FileKind,
    /// Name inside the directory.
    pub name: &'a str,
}

/// What `statfs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total size in `block_size` blocks (free is always 0: the mount is read-only).
    pub blocks: u64,
    /// Number of inodes.
    pub files: u64,
    /// Block size.
    pub block_size: u32,
    /// Longest name.
    pub name_max: u32,
}

/// One open file.
#[derive(Debug)]
struct OpenFile {
    entry: usize,
    /// End of the previous read on this handle (0 before the first), to detect sequences.
    last_end: AtomicU64,
    stream: tokio::sync::Mutex<Option<SeqStream>>,
}

/// The file system of one FastFile mount, independent of FUSE.
#[derive(Debug)]
pub struct FastFs {
    inodes: InodeTable,
    client: Arc<dyn ObjectClient>,
    budget: Arc<Budget>,
    tuning: Tuning,
    handles: RwLock<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

impl FastFs {
    /// Builds the tree of `entries` (see [`MountEntry`]) and prepares to read them through
    /// `client`. Costs one pass over the entries; no object is touched.
    pub fn new(
        config: &FastFileConfig,
        client: Arc<dyn ObjectClient>,
        entries: Vec<MountEntry>,
    ) -> Result<Self, DataError> {
        let inodes = InodeTable::build(entries)?;
        let (uid, gid) = config.owner.unwrap_or_else(process_ids);
        Ok(FastFs {
            inodes,
            client,
            budget: Budget::new(config.cache_budget),
            tuning: config.tuning(),
            handles: RwLock::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            uid,
            gid,
            mounted_at: SystemTime::now(),
        })
    }

    /// Attributes of inode `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let node = self.inodes.get(ino)?;
        Ok(match &node.kind {
            NodeKind::Dir { subdirs, .. } => Attr {
                ino,
                kind: FileKind::Directory,
                size: 0,
                blocks: 0,
                mtime: self.mounted_at,
                perm: 0o555,
                nlink: 2 + subdirs,
                uid: self.uid,
                gid: self.gid,
                blksize: BLOCK_SIZE,
            },
            NodeKind::File { entry } => {
                let e = self.inodes.entry(*entry);
                Attr {
                    ino,
                    kind: FileKind::File,
                    size: e.object.size,
                    blocks: e.object.size.div_ceil(512),
                    mtime: e.last_modified.unwrap_or(self.mounted_at),
                    perm: 0o444,
                    nlink: 1,
                    uid: self.uid,
                    gid: self.gid,
                    blksize: BLOCK_SIZE,
                }
            }
        })
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let Some(name) = name.to_str() else {
            // Keys are UTF-8, so no entry has a name that is not.
            return Err(FsError::NotFound {
                parent,
                name: name.to_string_lossy().into_owned(),
            });
        };
        let ino = self.inodes.lookup(parent, name)?;
        self.getattr(ino)
    }

    /// Opens file `ino` with open(2) `flags`; anything but read-only access is refused.
    pub fn open(&self, ino: u64, flags: i32) -> Result<u64, FsError> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(FsError::ReadOnly { operation: "open" });
        }
        let NodeKind::File { entry } = self.inodes.get(ino)?.kind else {
            return Err(FsError::IsADirectory { ino });
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(OpenFile {
            entry,
            last_end: AtomicU64::new(0),
            stream: tokio::sync::Mutex::new(None),
        });
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fh, file);
        Ok(fh)
    }

    /// Closes handle `fh`, stopping its prefetching and returning its memory to the budget.
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh)
            .map(drop)
            .ok_or(FsError::BadHandle { fh })
    }

    /// Reads up to `size` bytes at `offset` of the file open as `fh`. Short only at the end of
    /// the file; empty at or past it.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let file = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle { fh })?;
        let entry = self.inodes.entry(file.entry);
        let object = &entry.object;
        if offset >= object.size || size == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(u64::from(size)).min(object.size);
        let ctx = ReadCtx {
            client: &self.client,
            bucket: &object.bucket,
            key: &object.key,
            size: object.size,
            budget: &self.budget,
            tuning: &self.tuning,
        };
        let streamed = {
            let mut stream = file.stream.lock().await;
            let hit = stream.as_ref().is_some_and(|s| s.covers(offset));
            if hit || offset == file.last_end.load(Ordering::Relaxed) {
                if !hit {
                    // A new sequential run: start a stream here, dropping the old one.
                    *stream = None;
                }
                let s = stream.get_or_insert_with(|| SeqStream::new(offset, &self.tuning));
                let result = s.read(&ctx, offset, end).await;
                if result.is_err() {
                    *stream = None;
                }
                Some(result)
            } else {
                None
            }
        };
        let result = match streamed {
            Some(result) => result,
            None => fetch_exact(&ctx, offset..end).await,
        };
        file.last_end.store(end, Ordering::Relaxed);
        result.map_err(|source| FsError::Object {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            source: Box::new(source),
        })
    }

    /// Checks that `ino` is a directory that can be listed.
    pub fn opendir(&self, ino: u64) -> Result<(), FsError> {
        self.inodes.children(ino).map(drop)
    }

    /// The entries of directory `ino` from position `offset` on: `.`, `..`, then the children
    /// in byte-wise name order. Offsets stay valid for the mount's lifetime.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
    ) -> Result<impl Iterator<Item = DirEntry<'_>> + '_, FsError> {
        let children = self.inodes.children(ino)?;
        let parent = self.inodes.get(ino)?.parent;
        let dots = [(ino, "."), (parent, "..")]
            .into_iter()
            .map(|(ino, name)| DirEntry {
                ino,
                next_offset: 0,
                kind: FileKind::Directory,
                name,
            });
        let kids = children.iter().map(|c| {
            // INVARIANT: children only hold inode numbers of this table.
            let node = self.inodes.node(*c);
            DirEntry {
                ino: *c,
                next_offset: 0,
                kind: match node.map(|n| &n.kind) {
                    Some(NodeKind::File { .. }) => FileKind::File,
                    _ => FileKind::Directory,
                },
                name: node.map_or("", |n| &n.name),
            }
        });
        Ok(dots
            .chain(kids)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .map(|(i, e)| DirEntry {
                next_offset: i as u64 + 1,
                ..e
            }))
    }

    /// File-system totals.
    pub fn statfs(&self) -> StatFs {
        StatFs {
            blocks: self.inodes.total_bytes().div_ceil(u64::from(BLOCK_SIZE)),
            files: self.inodes.len() as u64,
            block_size: BLOCK_SIZE,
            name_max: NAME_MAX,
        }
    }

    /// Number of files (objects) in the mount.
    pub fn file_count(&self) -> usize {
        self.inodes.files()
    }

    /// Number of directories in the mount, root included.
    pub fn dir_count(&self) -> usize {
        self.inodes.dirs()
    }

    /// Bytes of the cache budget in use right now.
    pub fn cache_used(&self) -> u64 {
        self.budget.used()
    }

    /// The most of the cache budget ever in use at once.
    pub fn cache_peak(&self) -> u64 {
        self.budget.peak()
    }

    /// Number of open file handles.
    pub fn open_handles(&self) -> usize {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The effective uid and gid of this process (the owner of `/proc/self`), or root when that
/// cannot be read.
fn process_ids() -> (u32, u32) {
    std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelObject;
    use crate::fastfile::ROOT_INO;
    use trainyard_s3::mock::{Fault, FaultyClient, MemStore, Op};

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    fn setup(files: &[(&str, usize)], config: FastFileConfig) -> (FaultyClient, FastFs) {
        let store = MemStore::new().chunk_size(10_000);
        let mut entries = Vec::new();
        for (i, (rel, len)) in files.iter().enumerate() {
            let key = format!("pre/{rel}");
            store.insert("b", &key, data(*len, i as u8));
            entries.push(MountEntry {
                object: ChannelObject {
                    bucket: "b".into(),
                    key,
                    size: *len as u64,
                    etag: None,
                    rel_path: rel.to_string(),
                },
                last_modified: (i == 0).then_some(SystemTime::UNIX_EPOCH),
            });
        }
        let mem = FaultyClient::new(Arc::new(store));
        let fs = FastFs::new(&config, Arc::new(mem.clone()), entries).unwrap();
        (mem, fs)
    }

    fn path(fs: &FastFs, p: &str) -> Result<Attr, FsError> {
        let mut attr = fs.getattr(ROOT_INO)?;
        for seg in p.split('/') {
            attr = fs.lookup(attr.ino, OsStr::new(seg))?;
        }
        Ok(attr)
    }

    #[test]
    fn attributes_follow_the_contract() {
        let config = FastFileConfig::default().with_owner(1000, 1001);
        let (_, fs) = setup(&[("a/x.bin", 1000), ("a/b/y", 0), ("z", 5)], config);
        let root = fs.getattr(ROOT_INO).unwrap();
        assert_eq!(
            (root.kind, root.perm, root.nlink),
            (FileKind::Directory, 0o555, 3)
        );
        let x = path(&fs, "a/x.bin").unwrap();
        assert_eq!(
            (
                x.kind, x.perm, x.size, x.blocks, x.nlink, x.uid, x.gid, x.mtime
            ),
            (
                FileKind::File,
                0o444,
                1000,
                2,
                1,
                1000,
                1001,
                SystemTime::UNIX_EPOCH
            )
        );
        assert_eq!(path(&fs, "a").unwrap().nlink, 3);
        assert_eq!(path(&fs, "a/b/y").unwrap().size, 0);
        assert!(matches!(path(&fs, "a/nope"), Err(FsError::NotFound { .. })));
        assert!(matches!(
            path(&fs, "z/under-a-file"),
            Err(FsError::NotADirectory { .. })
        ));
        let s = fs.statfs();
        assert_eq!((s.files, s.blocks), (6, 1));
        assert_eq!((fs.file_count(), fs.dir_count()), (3, 3));
    }

    #[test]
    fn readdir_lists_dots_then_sorted_children_and_resumes_at_offsets() {
        let (_, fs) = setup(&[("b", 1), ("a/x", 1), ("c", 1)], FastFileConfig::default());
        let all: Vec<_> = fs.readdir(ROOT_INO, 0).unwrap().collect();
        let names: Vec<_> = all.iter().map(|e| e.name).collect();
        assert_eq!(names, [".", "..", "a", "b", "c"]);
        assert_eq!(all[2].kind, FileKind::Directory);
        assert_eq!(all[3].kind, FileKind::File);
        assert_eq!(all[1].ino, ROOT_INO);
        let rest: Vec<_> = fs
            .readdir(ROOT_INO, all[2].next_offset)
            .unwrap()
            .map(|e| e.name)
            .collect();
        assert_eq!(rest, ["b", "c"]);
        assert_eq!(fs.readdir(ROOT_INO, 99).unwrap().count(), 0);
        let b = path(&fs, "b").unwrap().ino;
        assert!(matches!(
            fs.readdir(b, 0),
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(fs.opendir(b), Err(FsError::NotADirectory { .. })));
        let a = path(&fs, "a").unwrap().ino;
        let dots: Vec<_> = fs.readdir(a, 0).unwrap().take(2).map(|e| e.ino).collect();
        assert_eq!(dots, [a, ROOT_INO]);
    }

    #[test]
    fn writes_and_directories_are_refused_at_open() {
        let (_, fs) = setup(&[("f", 10)], FastFileConfig::default());
        let f = path(&fs, "f").unwrap().ino;
        for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
            assert_eq!(fs.open(f, flags).unwrap_err().errno(), libc::EROFS);
        }
        assert_eq!(fs.open(ROOT_INO, 0).unwrap_err().errno(), libc::EISDIR);
        assert_eq!(fs.open(77, 0).unwrap_err().errno(), libc::ENOENT);
        let fh = fs.open(f, libc::O_RDONLY).unwrap();
        assert_eq!(fs.open_handles(), 1);
        fs.release(fh).unwrap();
        assert_eq!(fs.release(fh).unwrap_err().errno(), libc::EBADF);
    }

    #[tokio::test]
    async fn whole_and_partial_reads_return_object_bytes() {
        let (_, fs) = setup(&[("f", 300_000), ("e", 0)], FastFileConfig::default());
        let f = path(&fs, "f").unwrap().ino;
        let fh = fs.open(f, libc::O_RDONLY).unwrap();
        let want = data(300_000, 0);
        let mut got = Vec::new();
        while let Ok(b) = fs.read(fh, got.len() as u64, 65_536).await {
            if b.is_empty() {
                break;
            }
            got.extend_from_slice(&b);
        }
        assert_eq!(got, want);
        assert_eq!(fs.read(fh, 299_990, 100).await.unwrap().len(), 10);
        assert!(fs.read(fh, 400_000, 100).await.unwrap().is_empty());
        assert!(fs.read(fh, 0, 0).await.unwrap().is_empty());
        let e = fs.open(path(&fs, "e").unwrap().ino, 0).unwrap();
        assert!(fs.read(e, 0, 4096).await.unwrap().is_empty());
        assert!(matches!(
            fs.read(999, 0, 1).await,
            Err(FsError::BadHandle { fh: 999 })
        ));
        fs.release(fh).unwrap();
        assert_eq!(fs.cache_used(), 0);
    }

    #[tokio::test]
    async fn random_reads_fetch_only_what_they_need() {
        let (mem, fs) = setup(&[("f", 8 << 20)], FastFileConfig::default());
        let want = data(8 << 20, 0);
        let fh = fs.open(path(&fs, "f").unwrap().ino, 0).unwrap();
        for off in [5_000_000u64, 123_457, 7_777_777, 2_000_000, 4096] {
            let got = fs.read(fh, off, 4096).await.unwrap();
            assert_eq!(&got[..], &want[off as usize..off as usize + 4096]);
        }
        assert_eq!(mem.bytes_requested(), 5 * 4096);
        assert_eq!(mem.calls(Op::Get), 5);
    }

    #[tokio::test]
    async fn a_file_larger_than_the_budget_streams_within_it() {
        let config = FastFileConfig::default()
            .with_cache_budget(2 << 20)
            .with_max_window(8 << 20);
        let (mem, fs) = setup(&[("big", 24 << 20)], config);
        let want = data(24 << 20, 0);
        let fh = fs.open(path(&fs, "big").unwrap().ino, 0).unwrap();
        let mut off = 0usize;
        while off < want.len() {
            let got = fs.read(fh, off as u64, 131_072).await.unwrap();
            assert_eq!(&got[..], &want[off..off + got.len()]);
            off += got.len();
        }
        assert!(fs.cache_peak() <= 2 << 20, "peak {}", fs.cache_peak());
        assert!(fs.cache_peak() > 0);
        assert_eq!(mem.bytes_requested(), 24 << 20, "every byte fetched once");
        assert!(
            mem.calls(Op::Get) < 200,
            "readahead batches reads: {} gets",
            mem.calls(Op::Get)
        );
    }

    #[tokio::test]
    async fn storage_failures_name_the_key_and_map_to_eio() {
        let (mem, fs) = setup(&[("f", 1000)], FastFileConfig::default());
        mem.inject(Fault::error(Op::Get, 500, "InternalError").key("pre/f"));
        let fh = fs.open(path(&fs, "f").unwrap().ino, 0).unwrap();
        for off in [0, 500] {
            let err = fs.read(fh, off, 100).await.unwrap_err();
            assert_eq!(err.errno(), libc::EIO);
            assert!(err.to_string().contains("s3://b/pre/f"), "{err}");
        }
        mem.delete("b", "pre/f").await.unwrap();
        assert_eq!(fs.read(fh, 0, 10).await.unwrap_err().errno(), libc::EIO);
    }

    #[tokio::test]
    async fn concurrent_readers_of_one_handle_get_their_own_bytes() {
        let (_, fs) = setup(&[("f", 2 << 20)], FastFileConfig::default());
        let fs = Arc::new(fs);
        let want = Arc::new(data(2 << 20, 0));
        let fh = fs.open(path(&fs, "f").unwrap().ino, 0).unwrap();
        let tasks: Vec<_> = (0..16u64)
            .map(|i| {
                let (fs, want) = (fs.clone(), want.clone());
                tokio::spawn(async move {
                    for j in 0..20u64 {
                        let off = (i * 131_071 + j * 65_537) % (2 << 20);
                        let got = fs.read(fh, off, 8192).await.unwrap();
                        let end = (off as usize + 8192).min(want.len());
                        assert_eq!(&got[..], &want[off as usize..end]);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}
