//! File mode: download a channel's objects into its directory before training starts.
//!
//! Throughput comes from concurrency at two levels under one budget: many objects at once,
//! and large objects split into ranged GETs written in place with positioned writes. A single
//! semaphore bounds the requests in flight, so a few huge objects cannot starve the small ones
//! nor the other way round, and memory stays at (permits × chunk size) whatever the dataset.
//!
//! Nothing incomplete is ever visible under its final name: each object is written to a hidden
//! temporary file beside its destination, its size checked against the listing, and renamed
//! only when whole. A guard removes the temporary file if the download fails or is cancelled.
//! When the store keeps objects as local files, the copy is left to the kernel.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use trainyard_s3::ObjectClient;

use crate::DataError;
use crate::objects::{ChannelObject, check_collisions, safe_relative_path};

/// Tuning of the downloader. Defaults suit a loopback or LAN S3 endpoint.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Requests in flight at once (default 64).
    pub concurrency: usize,
    /// Objects larger than this are fetched as several ranged GETs (default 16 MiB).
    pub multipart_threshold: u64,
    /// Size of each ranged GET of a large object (default 8 MiB).
    pub part_size: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            concurrency: 64,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
        }
    }
}

/// Counters a caller can poll to draw progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Objects to fetch.
    pub objects_total: AtomicU64,
    /// Objects fetched.
    pub objects_done: AtomicU64,
    /// Bytes to fetch.
    pub bytes_total: AtomicU64,
    /// Bytes fetched.
    pub bytes_done: AtomicU64,
}

/// What a download did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadSummary {
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl DownloadSummary {
    /// Throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }
}

/// Downloads `objects` into `dest` (each at `dest/<rel_path>`).
pub async fn download(
    client: Arc<dyn ObjectClient>,
    objects: &[ChannelObject],
    dest: &Path,
    opts: &DownloadOptions,
    progress: &Progress,
) -> Result<DownloadSummary, DataError> {
    let started = Instant::now();
    // Check every path before writing anything.
    let mut targets = Vec::with_capacity(objects.len());
    for o in objects {
        targets.push(dest.join(safe_relative_path(&o.key, &o.rel_path)?));
    }
    check_collisions("", objects)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut dirs: Vec<&Path> = targets.iter().filter_map(|t| t.parent()).collect();
    dirs.dedup();
    for d in dirs {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }

    progress
        .objects_total
        .fetch_add(objects.len() as u64, Ordering::Relaxed);
    progress
        .bytes_total
        .fetch_add(objects.iter().map(|o| o.size).sum(), Ordering::Relaxed);
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let bytes: u64 = futures::stream::iter(objects.iter().cloned().zip(targets))
        .map(|(o, target)| {
            let client = client.clone();
            let permits = permits.clone();
            async move {
                let n = fetch_object(client, &o, &target, opts, &permits, progress).await?;
                progress.objects_done.fetch_add(1, Ordering::Relaxed);
                Ok::<u64, DataError>(n)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    Ok(DownloadSummary {
        objects: objects.len() as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Removes its file on drop unless the download committed it.
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn temp_path(target: &Path) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name.chars().take(100).collect();
    target.with_file_name(format!(
        ".{short}.trainyard-part-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

async fn fetch_object(
    client: Arc<dyn ObjectClient>,
    o: &ChannelObject,
    target: &Path,
    opts: &DownloadOptions,
    permits: &Arc<Semaphore>,
    progress: &Progress,
) -> Result<u64, DataError> {
    let mut tmp = TempFile {
        path: temp_path(target),
        committed: false,
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    if let Some(src) = client.local_file(&o.bucket, &o.key) {
        let _permit = permits.acquire().await.expect("semaphore never closed");
        let dst = tmp.path.clone();
        let copied = tokio::task::spawn_blocking(move || std::fs::copy(&src, &dst))
            .await
            .map_err(|e| DataError::Io {
                path: tmp.path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(io(&tmp.path))?;
        if copied != o.size {
            return Err(DataError::SizeMismatch {
                key: o.key.clone(),
                expected: o.size,
                got: copied,
            });
        }
        progress.bytes_done.fetch_add(copied, Ordering::Relaxed);
    } else {
        let file = std::fs::File::create(&tmp.path).map_err(io(&tmp.path))?;
        file.set_len(o.size).map_err(io(&tmp.path))?;
        let file = Arc::new(file);
        let ranges: Vec<(u64, u64)> = if o.size > opts.multipart_threshold {
            (0..o.size)
                .step_by(opts.part_size as usize)
                .map(|s| (s, (s + opts.part_size).min(o.size)))
                .collect()
        } else {
            vec![(0, o.size)]
        };
        let whole = ranges.len() == 1;
        futures::stream::iter(ranges)
            .map(|(start, end)| {
                let file = file.clone();
                let client = client.clone();
                async move {
                    let _permit = permits.acquire().await.expect("semaphore never closed");
                    fetch_range(&*client, o, file, start, end, whole, progress).await
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    }
    std::fs::rename(&tmp.path, target).map_err(io(target))?;
    tmp.committed = true;
    Ok(o.size)
}

async fn fetch_range(
    client: &dyn ObjectClient,
    o: &ChannelObject,
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
    whole: bool,
    progress: &Progress,
) -> Result<(), DataError> {
    if end == start && whole {
        // Empty object: nothing to fetch, but it must exist.
        return Ok(());
    }
    let obj_err = |source| DataError::Object {
        key: o.key.clone(),
        source,
    };
    let range = if whole { None } else { Some(start..end) };
    let mut got = client
        .get(&o.bucket, &o.key, range)
        .await
        .map_err(obj_err)?;
    if whole && got.meta.size != o.size {
        return Err(DataError::SizeMismatch {
            key: o.key.clone(),
            expected: o.size,
            got: got.meta.size,
        });
    }
    let mut offset = start;
    while let Some(chunk) = got.body.next().await {
        let chunk = chunk.map_err(obj_err)?;
        let n = chunk.len() as u64;
        if offset + n > end {
            return Err(DataError::SizeMismatch {
                key: o.key.clone(),
                expected: end - start,
                got: offset + n - start,
            });
        }
        let f = file.clone();
        let at = offset;
        tokio::task::spawn_blocking(move || f.write_all_at(&chunk, at))
            .await
            .map_err(|e| DataError::Io {
                path: PathBuf::from(&o.rel_path),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| DataError::Io {
                path: PathBuf::from(&o.rel_path),
                source,
            })?;
        offset += n;
        progress.bytes_done.fetch_add(n, Ordering::Relaxed);
    }
    if offset != end {
        return Err(DataError::SizeMismatch {
            key: o.key.clone(),
            expected: end - start,
            got: offset - start,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::list_prefix;
    use bytes::Bytes;
    use trainyard_s3::mock::{Fault, FaultyClient};
    use trainyard_s3::{DirStore, PutBody};

    async fn seeded() -> (tempfile::TempDir, DirStore) {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::embedded(d.path().join("store"));
        for (k, v) in [
            ("ds/train/a.csv", &b"1,2\n"[..]),
            ("ds/train/sub/b.csv", b"3,4\n"),
            ("ds/train/empty", b""),
        ] {
            s.put("bkt", k, PutBody::Bytes(Bytes::copy_from_slice(v)))
                .await
                .unwrap();
        }
        (d, s)
    }

    #[tokio::test]
    async fn downloads_a_prefix_into_the_channel_directory() {
        let (d, s) = seeded().await;
        let objs = list_prefix(&s, "bkt", "ds/train/", "s3://bkt/ds/train/")
            .await
            .unwrap();
        let dest = d.path().join("ch");
        let p = Progress::default();
        let sum = download(Arc::new(s), &objs, &dest, &DownloadOptions::default(), &p)
            .await
            .unwrap();
        assert_eq!((sum.objects, sum.bytes), (3, 8));
        assert_eq!(std::fs::read(dest.join("sub/b.csv")).unwrap(), b"3,4\n");
        assert_eq!(std::fs::metadata(dest.join("empty")).unwrap().len(), 0);
        assert_eq!(p.bytes_done.load(Ordering::Relaxed), 8);
        let leftovers: Vec<_> = walk(&dest)
            .into_iter()
            .filter(|p| p.contains("trainyard-part"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn a_short_body_fails_and_leaves_no_file() {
        let (d, s) = seeded().await;
        let objs = list_prefix(&s, "bkt", "ds/train/", "uri").await.unwrap();
        let dest = d.path().join("ch");
        // Seen as a remote store (no `local_file`), with the body of b.csv cut short.
        let truncating =
            FaultyClient::new(Arc::new(s)).with(Fault::truncate(2).key_suffix("b.csv"));
        let err = download(
            Arc::new(truncating),
            &objs,
            &dest,
            &DownloadOptions::default(),
            &Progress::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, DataError::SizeMismatch { key, .. } if key == "ds/train/sub/b.csv"),
            "{err}"
        );
        let files = walk(&dest);
        assert!(
            !files
                .iter()
                .any(|f| f.ends_with("b.csv") || f.contains("trainyard-part")),
            "{files:?}"
        );
    }

    #[tokio::test]
    async fn large_objects_are_fetched_in_ranges() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::embedded(d.path().join("store"));
        let data: Vec<u8> = (0..5_000_003u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        s.put(
            "bkt",
            "big/x.bin",
            PutBody::Bytes(Bytes::from(data.clone())),
        )
        .await
        .unwrap();
        let objs = list_prefix(&s, "bkt", "big/", "uri").await.unwrap();
        let opts = DownloadOptions {
            concurrency: 4,
            multipart_threshold: 1 << 20,
            part_size: 1 << 20,
        };
        // Wrap so the local-file shortcut is not taken and ranged GETs are exercised.
        let client = Arc::new(s.remote_view());
        download(
            client,
            &objs,
            &d.path().join("ch"),
            &opts,
            &Progress::default(),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(d.path().join("ch/x.bin")).unwrap(), data);
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p.to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}
