//! Object storage on the local file system: the embedded default store and `file://` trees.
//!
//! Two layouts share one implementation:
//!
//! * **Embedded** (`DirStore::embedded(root)`): `s3://bucket/key` is the file
//!   `root/bucket/<encoded key>` (see `key_codec` for the encoding, which is the identity for
//!   ordinary keys and for names users put there by hand, `%` included; a hand-made name the
//!   codec cannot read back exactly fails the listing, naming it, rather than vanish). Writes go to `root/.tmp/` and are renamed into place, so a reader never sees
//!   a half-written object. Buckets are created on first write.
//! * **File tree** (`DirStore::file_tree()`): a `file://` URI names a real path; the "bucket" is
//!   empty and the key is the absolute path without its leading `/`. Names are used as they are.
//!
//! Listings walk only the directory the prefix points into, then sort by key bytes, which is
//! the order S3 lists in (a directory walk alone would put `a/b` before `a-c`).

use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::client::{GetObject, ListPage, ObjectClient, ObjectMeta, PutBody};
use crate::key_codec::{encode_segment, legacy_encode_segment, read_name};
use crate::{ObjectError, validate_bucket_name};

/// How many keys one listing page returns, as S3 does.
const PAGE_SIZE: usize = 1000;
/// Read size of a get stream.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Embedded,
    FileTree,
}

/// Objects kept as files under a directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DirStore {
    inner: Arc<Inner>,
    /// Whether [`ObjectClient::local_file`] reveals the files (see [`DirStore::remote_view`]).
    local_files: bool,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    layout: Layout,
}

impl DirStore {
    /// The embedded store rooted at `root` (normally `$TRAINYARD_HOME/store`).
    pub fn embedded(root: impl Into<PathBuf>) -> Self {
        DirStore {
            inner: Arc::new(Inner {
                root: root.into(),
                layout: Layout::Embedded,
            }),
            local_files: true,
        }
    }

    /// Plain local paths, addressed with an empty bucket and the absolute path (without the
    /// leading `/`) as key.
    pub fn file_tree() -> Self {
        DirStore {
            inner: Arc::new(Inner {
                root: PathBuf::from("/"),
                layout: Layout::FileTree,
            }),
            local_files: true,
        }
    }

    /// The same store without the `local_file` shortcut, so readers take the ranged-GET path
    /// a remote store would make them take (tests and benchmarks of that path).
    pub fn remote_view(&self) -> Self {
        DirStore {
            inner: self.inner.clone(),
            local_files: false,
        }
    }

    /// The directory that holds `bucket`'s objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        match self.inner.layout {
            Layout::Embedded => self.inner.root.join(bucket),
            Layout::FileTree => self.inner.root.clone(),
        }
    }

    /// The file that holds `bucket/key` (whether or not it exists).
    pub fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        self.check_bucket(bucket)?;
        match self.inner.layout {
            Layout::Embedded => Ok(resolve(&self.bucket_dir(bucket), key)),
            Layout::FileTree => {
                check_plain_key(key)?;
                Ok(self.inner.root.join(key))
            }
        }
    }

    fn check_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        match self.inner.layout {
            Layout::Embedded => {
                validate_bucket_name(bucket).map_err(|reason| ObjectError::InvalidKey {
                    key: bucket.to_string(),
                    reason,
                })
            }
            Layout::FileTree if bucket.is_empty() => Ok(()),
            Layout::FileTree => Err(ObjectError::InvalidKey {
                key: bucket.to_string(),
                reason: "a file:// location has no bucket".into(),
            }),
        }
    }

    /// The key segment of a directory entry: `Ok(None)` for entries that are no object.
    fn decode(
        &self,
        bucket: &str,
        dir: &Path,
        name: &std::ffi::OsStr,
    ) -> Result<Option<String>, ObjectError> {
        match self.inner.layout {
            Layout::Embedded => read_name(name).map(Some).map_err(|e| {
                let path = dir.join(name);
                ObjectError::UnreadableName {
                    bucket: bucket.to_string(),
                    path: path
                        .strip_prefix(self.bucket_dir(bucket))
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                    reason: e.to_string(),
                }
            }),
            Layout::FileTree => Ok(name
                .to_str()
                .filter(|n| !n.starts_with(TMP_MARKER))
                .map(str::to_string)),
        }
    }

    /// Every object under `prefix`, sorted by key.
    fn walk(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        self.check_bucket(bucket)?;
        let bucket_dir = self.bucket_dir(bucket);
        if self.inner.layout == Layout::Embedded && !bucket_dir.is_dir() {
            return Err(ObjectError::NoSuchBucket {
                bucket: bucket.to_string(),
            });
        }
        let dir_key = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let start = if dir_key.is_empty() && !prefix.starts_with('/') {
            bucket_dir
        } else if self.inner.layout == Layout::Embedded {
            resolve(&bucket_dir, dir_key)
        } else {
            bucket_dir.join(dir_key)
        };
        let mut out = Vec::new();
        let key_base = if prefix.contains('/') {
            format!("{dir_key}/")
        } else {
            String::new()
        };
        self.walk_dir(&start, &key_base, prefix, bucket, &mut out)?;
        out.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        // A key both under its name and under the earlier encoding: reads take the former.
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    fn walk_dir(
        &self,
        dir: &Path,
        key_base: &str,
        prefix: &str,
        bucket: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> Result<(), ObjectError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Ok(());
            }
            Err(e) => return Err(io_err("ListObjectsV2", bucket, prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("ListObjectsV2", bucket, prefix, e))?;
            let name = entry.file_name();
            let Some(seg) = self.decode(bucket, dir, &name)? else {
                continue;
            };
            let key = format!("{key_base}{seg}");
            // Follow symlinks, as `cp -r` of a dataset would.
            let Ok(meta) = fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                let sub = format!("{key}/");
                if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    self.walk_dir(&entry.path(), &sub, prefix, bucket, out)?;
                }
            } else if meta.is_file() && key.starts_with(prefix) {
                out.push(meta_of(key, &meta));
            }
        }
        Ok(())
    }

    fn head_sync(&self, bucket: &str, key: &str) -> Result<(PathBuf, ObjectMeta), ObjectError> {
        let path = self.object_path(bucket, key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok((path, meta_of(key.to_string(), &m))),
            Ok(_) => Err(not_found(bucket, key)),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                if self.inner.layout == Layout::Embedded && !self.bucket_dir(bucket).is_dir() {
                    Err(ObjectError::NoSuchBucket {
                        bucket: bucket.to_string(),
                    })
                } else {
                    Err(not_found(bucket, key))
                }
            }
            Err(e) => Err(io_err("HeadObject", bucket, key, e)),
        }
    }

    fn put_sync(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        let dest = self.prepare_destination(bucket, key)?;
        let tmp_dir = match self.inner.layout {
            Layout::Embedded => self.inner.root.join(".tmp"),
            Layout::FileTree => dest.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        fs::create_dir_all(&tmp_dir).map_err(|e| io_err("PutObject", bucket, key, e))?;
        let tmp = tmp_dir.join(format!("{TMP_MARKER}{}-{}", std::process::id(), unique()));
        let write = || -> io::Result<()> {
            match &body {
                PutBody::Bytes(b) => fs::write(&tmp, b)?,
                PutBody::File(src) => {
                    fs::copy(src, &tmp)?;
                }
            }
            fs::rename(&tmp, &dest)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("PutObject", bucket, key, e));
        }
        let m = fs::metadata(&dest).map_err(|e| io_err("PutObject", bucket, key, e))?;
        Ok(meta_of(key.to_string(), &m))
    }

    /// The file `bucket/key` is to be written to, after the checks every write makes (a
    /// non-empty key, no object where a "folder" of the key is, no folder where the object
    /// goes), with its parent directory created.
    fn prepare_destination(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        let dest = self.object_path(bucket, key)?;
        if key.is_empty() {
            return Err(ObjectError::InvalidKey {
                key: key.into(),
                reason: "key must not be empty".into(),
            });
        }
        let bucket_dir = self.bucket_dir(bucket);
        // A key cannot be both an object and a "folder" of other objects on a file system.
        if dest.is_dir() {
            return Err(ObjectError::InvalidKey {
                key: key.into(),
                reason: "other objects are stored under this key followed by '/'".into(),
            });
        }
        let mut ancestor = dest.parent();
        while let Some(a) = ancestor {
            if a == bucket_dir || a == Path::new("/") {
                break;
            }
            if a.is_file() {
                return Err(ObjectError::InvalidKey {
                    key: key.into(),
                    reason: format!(
                        "an object is stored at {:?}, a prefix of this key",
                        a.strip_prefix(&bucket_dir).unwrap_or(a)
                    ),
                });
            }
            ancestor = a.parent();
        }
        let parent = dest.parent().unwrap_or(&bucket_dir);
        fs::create_dir_all(parent).map_err(|e| io_err("PutObject", bucket, key, e))?;
        Ok(dest)
    }

    /// A new temporary file name on the embedded store's file system (under `root/.tmp/`,
    /// which no bucket can name), for data that [`DirStore::commit_file`] later moves into
    /// place. The directory is created; the file is not.
    pub fn temp_path(&self) -> io::Result<PathBuf> {
        let dir = self.inner.root.join(".tmp");
        fs::create_dir_all(&dir)?;
        Ok(dir.join(format!("{TMP_MARKER}{}-{}", std::process::id(), unique())))
    }

    /// Moves a finished temporary file (from [`DirStore::temp_path`]) into place as
    /// `bucket/key`, atomically replacing any previous object: readers see the old object or
    /// the new one, never part of either. The temporary file is removed on failure.
    pub fn commit_file(
        &self,
        bucket: &str,
        key: &str,
        tmp: &Path,
    ) -> Result<ObjectMeta, ObjectError> {
        let result = self.prepare_destination(bucket, key).and_then(|dest| {
            fs::rename(tmp, &dest).map_err(|e| io_err("PutObject", bucket, key, e))?;
            let m = fs::metadata(&dest).map_err(|e| io_err("PutObject", bucket, key, e))?;
            Ok(meta_of(key.to_string(), &m))
        });
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// The root directory of the store.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Metadata and file of one object (blocking).
    pub fn head_file(&self, bucket: &str, key: &str) -> Result<(PathBuf, ObjectMeta), ObjectError> {
        self.head_sync(bucket, key)
    }

    /// Every object under `prefix` in key order (blocking; the listing the endpoint pages).
    pub fn walk_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        self.walk(bucket, prefix)
    }

    /// Deletes one object (blocking); a missing object is no error.
    pub fn delete_file(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.delete_sync(bucket, key)
    }

    fn delete_sync(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let path = self.object_path(bucket, key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("DeleteObject", bucket, key, e)),
        }
        if self.inner.layout == Layout::Embedded {
            // Drop directories the delete left empty, so the tree mirrors the keys.
            let bucket_dir = self.bucket_dir(bucket);
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == bucket_dir || fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
    }
}

/// Where `key` lives under `bucket_dir`: its encoded path, except that a segment whose name
/// is missing there but exists under the earlier encoding (which escaped every `%`) is taken
/// from that, so objects written before read, and a file put by hand into such a directory
/// too.
fn resolve(bucket_dir: &Path, key: &str) -> PathBuf {
    let mut path = bucket_dir.to_path_buf();
    for seg in key.split('/') {
        let name = encode_segment(seg);
        let legacy = legacy_encode_segment(seg);
        if name != legacy
            && fs::symlink_metadata(path.join(&name)).is_err()
            && fs::symlink_metadata(path.join(&legacy)).is_ok()
        {
            path.push(legacy);
        } else {
            path.push(name);
        }
    }
    path
}

/// Prefix of temporary files, hidden from listings.
const TMP_MARKER: &str = ".trainyard-tmp-";

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Keys of a plain file tree must be ordinary relative paths.
fn check_plain_key(key: &str) -> Result<(), ObjectError> {
    let bad = |reason: &str| {
        Err(ObjectError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.starts_with('/') {
        return bad("must not start with '/'");
    }
    if key.contains('\0') {
        return bad("must not contain NUL");
    }
    let segs: Vec<&str> = key.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if *s == "." || *s == ".." {
            return bad("must not contain '.' or '..' segments");
        }
        if s.is_empty() && i + 1 != segs.len() {
            return bad("must not contain empty segments");
        }
    }
    Ok(())
}

fn meta_of(key: String, m: &fs::Metadata) -> ObjectMeta {
    let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let nanos = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    ObjectMeta {
        key,
        size: m.len(),
        last_modified: mtime,
        etag: Some(format!("{nanos:x}-{:x}", m.len())),
    }
}

fn not_found(bucket: &str, key: &str) -> ObjectError {
    ObjectError::NotFound {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }
}

fn io_err(operation: &'static str, bucket: &str, key: &str, source: io::Error) -> ObjectError {
    ObjectError::Io {
        operation,
        bucket: bucket.to_string(),
        key: key.to_string(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ObjectError::Client {
            operation: "blocking task",
            bucket: String::new(),
            key: String::new(),
            message: e.to_string(),
        })
    })
}

#[async_trait]
impl ObjectClient for DirStore {
    fn describe(&self) -> String {
        match self.inner.layout {
            Layout::Embedded => format!("embedded store at {}", self.inner.root.display()),
            Layout::FileTree => "local file system".to_string(),
        }
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        let this = self.clone();
        let (b, p) = (bucket.to_string(), prefix.to_string());
        let all = blocking(move || this.walk(&b, &p)).await?;
        let after = continuation.unwrap_or("");
        let mut page = ListPage::default();
        let mut last = None;
        for obj in all.into_iter().filter(|o| o.key.as_str() > after) {
            if page.objects.len() + page.common_prefixes.len() == PAGE_SIZE {
                page.next_token = last;
                break;
            }
            if let Some(d) = delimiter.filter(|d| !d.is_empty()) {
                if let Some(pos) = obj.key[prefix.len()..].find(d) {
                    let cp = obj.key[..prefix.len() + pos + d.len()].to_string();
                    if page.common_prefixes.last() != Some(&cp) {
                        page.common_prefixes.push(cp.clone());
                    }
                    // Continue after every key sharing this common prefix.
                    last = Some(format!("{cp}\u{10FFFF}"));
                    continue;
                }
            }
            last = Some(obj.key.clone());
            page.objects.push(obj);
        }
        Ok(page)
    }

    fn local_file(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        if !self.local_files {
            return None;
        }
        self.object_path(bucket, key).ok()
    }

    fn list_all<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<ObjectMeta, ObjectError>> {
        let this = self.clone();
        let (b, p) = (bucket.to_string(), prefix.to_string());
        futures::stream::once(async move { blocking(move || this.walk(&b, &p)).await })
            .flat_map(|r| match r {
                Ok(v) => futures::stream::iter(v.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .boxed()
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        blocking(move || this.head_sync(&b, &k).map(|(_, m)| m)).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        let (file, meta, range) = blocking(move || {
            let (path, meta) = this.head_sync(&b, &k)?;
            let range = range.unwrap_or(0..meta.size);
            if range.start > range.end || range.end > meta.size {
                return Err(ObjectError::InvalidRange {
                    bucket: b,
                    key: k,
                    start: range.start,
                    end: range.end,
                    size: meta.size,
                });
            }
            let mut file = fs::File::open(&path).map_err(|e| io_err("GetObject", &b, &k, e))?;
            file.seek(SeekFrom::Start(range.start))
                .map_err(|e| io_err("GetObject", &b, &k, e))?;
            Ok((file, meta, range))
        })
        .await?;
        let (b, k) = (bucket.to_string(), key.to_string());
        let remaining = range.end - range.start;
        let body = futures::stream::unfold(
            (file, remaining, b, k),
            |(file, remaining, b, k)| async move {
                if remaining == 0 {
                    return None;
                }
                let want = remaining.min(CHUNK as u64) as usize;
                let read = tokio::task::spawn_blocking(move || read_chunk(file, want)).await;
                let (file, res) = match read {
                    Ok(v) => v,
                    Err(e) => {
                        return Some((
                            Err(io_err("GetObject", &b, &k, io::Error::other(e))),
                            (fs::File::open("/dev/null").ok()?, 0, b, k),
                        ));
                    }
                };
                match res {
                    Ok(buf) if buf.is_empty() => {
                        let err = ObjectError::Truncated {
                            operation: "GetObject",
                            bucket: b.clone(),
                            key: k.clone(),
                            got: 0,
                            expected: remaining,
                        };
                        Some((Err(err), (file, 0, b, k)))
                    }
                    Ok(buf) => {
                        let n = buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), (file, remaining - n, b, k)))
                    }
                    Err(e) => Some((Err(io_err("GetObject", &b, &k, e)), (file, 0, b, k))),
                }
            },
        )
        .boxed();
        Ok(GetObject { meta, body })
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        blocking(move || this.put_sync(&b, &k, body)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        blocking(move || this.delete_sync(&b, &k)).await
    }
}

/// Reads up to `want` bytes from `file` (fewer only at its end), handing the file back for
/// the next chunk: the blocking half of the stores' streamed reads.
pub(crate) fn read_chunk(
    mut file: std::fs::File,
    want: usize,
) -> (std::fs::File, io::Result<Vec<u8>>) {
    use std::io::Read;
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (file, Err(e)),
        }
    }
    buf.truncate(filled);
    (file, Ok(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectClientExt;

    fn store() -> (tempfile::TempDir, DirStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::embedded(dir.path());
        (dir, s)
    }

    #[tokio::test]
    async fn put_get_list_delete_round_trip() {
        let (_d, s) = store();
        for k in [
            "data/train/b.csv",
            "data/train-x.csv",
            "data/train/a/1.bin",
            "data/trainx",
            "other/z",
        ] {
            s.put("bkt", k, PutBody::Bytes(Bytes::from(k.as_bytes().to_vec())))
                .await
                .unwrap();
        }
        let keys: Vec<String> = s
            .list_vec("bkt", "data/train")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            keys,
            [
                "data/train-x.csv",
                "data/train/a/1.bin",
                "data/train/b.csv",
                "data/trainx"
            ]
        );
        let keys: Vec<String> = s
            .list_vec("bkt", "data/train/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["data/train/a/1.bin", "data/train/b.csv"]);
        assert_eq!(
            &s.get_bytes("bkt", "data/train/b.csv").await.unwrap()[..],
            b"data/train/b.csv"
        );
        s.delete("bkt", "data/train/a/1.bin").await.unwrap();
        assert!(!s.bucket_dir("bkt").join("data/train/a").exists());
        assert!(
            s.head("bkt", "data/train/a/1.bin")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(matches!(
            s.list_vec("nobucket", "").await,
            Err(ObjectError::NoSuchBucket { .. })
        ));
    }

    #[tokio::test]
    async fn hostile_keys_stay_inside_the_bucket() {
        let (d, s) = store();
        s.put(
            "bkt",
            "ch/../../escape",
            PutBody::Bytes(Bytes::from_static(b"x")),
        )
        .await
        .unwrap();
        s.put(
            "bkt",
            "ch//double",
            PutBody::Bytes(Bytes::from_static(b"y")),
        )
        .await
        .unwrap();
        assert!(!d.path().join("escape").exists());
        let keys: Vec<String> = s
            .list_vec("bkt", "ch/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["ch/../../escape", "ch//double"]);
    }

    #[tokio::test]
    async fn ranged_gets_return_exact_bytes() {
        let (_d, s) = store();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        s.put("bkt", "big", PutBody::Bytes(Bytes::from(data.clone())))
            .await
            .unwrap();
        let mut g = s
            .get("bkt", "big", Some(1_000_000..2_500_001))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = g.body.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, &data[1_000_000..2_500_001]);
        assert!(matches!(
            s.get("bkt", "big", Some(0..3_000_001)).await,
            Err(ObjectError::InvalidRange { .. })
        ));
    }

    #[tokio::test]
    async fn pages_follow_continuation_and_delimiters() {
        let (_d, s) = store();
        for i in 0..2500 {
            s.put("bkt", &format!("p/{i:05}"), PutBody::Bytes(Bytes::new()))
                .await
                .unwrap();
        }
        s.put("bkt", "p/sub/x", PutBody::Bytes(Bytes::new()))
            .await
            .unwrap();
        s.put("bkt", "p/sub/y", PutBody::Bytes(Bytes::new()))
            .await
            .unwrap();
        let p1 = s.list_page("bkt", "p/", None, None).await.unwrap();
        assert_eq!(p1.objects.len(), 1000);
        let p2 = s
            .list_page("bkt", "p/", None, p1.next_token.as_deref())
            .await
            .unwrap();
        assert_eq!(p2.objects[0].key, "p/01000");
        assert_eq!(s.list_vec("bkt", "p/").await.unwrap().len(), 2502);
        let d = s.list_page("bkt", "p/s", Some("/"), None).await.unwrap();
        assert_eq!(d.common_prefixes, ["p/sub/"]);
        assert!(d.objects.is_empty());
    }

    #[tokio::test]
    async fn object_and_folder_of_the_same_name_conflict() {
        let (_d, s) = store();
        s.put("bkt", "a/b", PutBody::Bytes(Bytes::new()))
            .await
            .unwrap();
        assert!(matches!(
            s.put("bkt", "a", PutBody::Bytes(Bytes::new())).await,
            Err(ObjectError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.put("bkt", "a/b/c", PutBody::Bytes(Bytes::new())).await,
            Err(ObjectError::InvalidKey { .. })
        ));
    }

    #[tokio::test]
    async fn hand_made_files_with_percent_signs_read_back_exactly() {
        let (d, s) = store();
        let dir = d.path().join("bkt/data");
        fs::create_dir_all(&dir).unwrap();
        for name in ["report%20final.csv", "100%.csv", "50%%", "%zz"] {
            fs::write(dir.join(name), name).unwrap();
        }
        // Written by the earlier encoder, which escaped every `%`: the key `old%`, and a
        // directory `5%/` into which a user then put `9%.csv` by hand.
        fs::write(dir.join("old%25"), "legacy").unwrap();
        fs::create_dir(dir.join("5%25")).unwrap();
        fs::write(dir.join("5%25/9%.csv"), "mixed").unwrap();
        let keys: Vec<String> = s
            .list_vec("bkt", "data/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            keys,
            [
                "data/%zz",
                "data/100%.csv",
                "data/5%/9%.csv",
                "data/50%%",
                "data/old%",
                "data/report%20final.csv"
            ]
        );
        for name in ["report%20final.csv", "100%.csv", "50%%", "%zz"] {
            let got = s.get_bytes("bkt", &format!("data/{name}")).await.unwrap();
            assert_eq!(&got[..], name.as_bytes());
        }
        assert_eq!(
            &s.get_bytes("bkt", "data/old%").await.unwrap()[..],
            b"legacy"
        );
        assert_eq!(
            &s.get_bytes("bkt", "data/5%/9%.csv").await.unwrap()[..],
            b"mixed"
        );
        let under: Vec<String> = s
            .list_vec("bkt", "data/5%/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(under, ["data/5%/9%.csv"]);
        // Overwriting a legacy object keeps one file for the key.
        s.put(
            "bkt",
            "data/old%",
            PutBody::Bytes(Bytes::from_static(b"new")),
        )
        .await
        .unwrap();
        assert_eq!(s.list_vec("bkt", "data/old").await.unwrap().len(), 1);
        assert_eq!(&s.get_bytes("bkt", "data/old%").await.unwrap()[..], b"new");
    }

    #[tokio::test]
    async fn a_name_the_codec_cannot_read_back_fails_the_listing_naming_it() {
        use std::os::unix::ffi::OsStrExt;
        let (d, s) = store();
        fs::create_dir_all(d.path().join("bkt/in")).unwrap();
        fs::write(d.path().join("bkt/in/a%2Eb"), "x").unwrap();
        let e = s.list_vec("bkt", "in/").await.unwrap_err();
        assert!(
            matches!(&e, ObjectError::UnreadableName { path, .. } if path == "in/a%2Eb"),
            "{e}"
        );
        fs::remove_file(d.path().join("bkt/in/a%2Eb")).unwrap();
        fs::write(
            d.path()
                .join("bkt/in")
                .join(std::ffi::OsStr::from_bytes(b"latin\xe9.csv")),
            "x",
        )
        .unwrap();
        let e = s.list_vec("bkt", "").await.unwrap_err().to_string();
        assert!(e.contains("latin") && e.contains("not UTF-8"), "{e}");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn uses_escapes(seg: &str) -> bool {
        seg == "%" || ["%25", "%00", "%2E"].iter().any(|e| seg.contains(e))
    }

    proptest::proptest! {
        #[test]
        fn any_key_put_is_listed_and_read_back(
            segs in proptest::collection::vec("[a-zE0-5.% \\x00é]{0,6}", 1..4)
        ) {
            let key = segs.join("/");
            proptest::prop_assume!(!key.is_empty());
            let (_d, s) = store();
            runtime().block_on(async {
                s.put("bkt", &key, PutBody::Bytes(Bytes::from(key.clone().into_bytes())))
                    .await
                    .unwrap();
                let keys: Vec<String> =
                    s.list_vec("bkt", "").await.unwrap().into_iter().map(|o| o.key).collect();
                assert_eq!(keys, std::slice::from_ref(&key));
                let under: Vec<String> =
                    s.list_vec("bkt", &key).await.unwrap().into_iter().map(|o| o.key).collect();
                assert_eq!(under, std::slice::from_ref(&key));
                assert_eq!(&s.get_bytes("bkt", &key).await.unwrap()[..], key.as_bytes());
            });
        }

        #[test]
        fn a_hand_made_file_is_listed_as_itself_or_refused_by_name(
            segs in proptest::collection::vec("[a-zE0-5.% é]{1,6}", 1..4)
        ) {
            proptest::prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
            let (d, s) = store();
            let rel = segs.join("/");
            let path = d.path().join("bkt").join(&rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, rel.as_bytes()).unwrap();
            runtime().block_on(async {
                match s.list_vec("bkt", "").await {
                    Ok(objs) => {
                        assert_eq!(objs.len(), 1, "{rel:?}: {objs:?}");
                        let key = &objs[0].key;
                        assert!(
                            *key == rel || segs.iter().any(|s| uses_escapes(s)),
                            "{rel:?} listed as {key:?}"
                        );
                        assert_eq!(&s.get_bytes("bkt", key).await.unwrap()[..], rel.as_bytes());
                    }
                    Err(ObjectError::UnreadableName { path, .. }) => {
                        assert!(rel.starts_with(&path), "{rel:?}: the error names {path:?}");
                        assert!(segs.iter().any(|s| uses_escapes(s)), "{rel:?} refused");
                    }
                    Err(e) => panic!("{rel:?}: {e}"),
                }
            });
        }
    }

    #[tokio::test]
    async fn file_tree_lists_real_paths() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("train/sub")).unwrap();
        fs::write(d.path().join("train/sub/a.txt"), b"a").unwrap();
        fs::write(d.path().join("train/b.txt"), b"bb").unwrap();
        let s = DirStore::file_tree();
        let root = d
            .path()
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string();
        let objs = s.list_vec("", &format!("{root}/train/")).await.unwrap();
        let keys: Vec<&str> = objs
            .iter()
            .map(|o| o.key.strip_prefix(&root).unwrap())
            .collect();
        assert_eq!(keys, ["/train/b.txt", "/train/sub/a.txt"]);
        assert!(matches!(
            s.put("", &format!("{root}/../x"), PutBody::Bytes(Bytes::new()))
                .await,
            Err(ObjectError::InvalidKey { .. })
        ));
    }
}
