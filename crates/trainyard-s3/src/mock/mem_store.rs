//! [`MemStore`]: objects in a map, for tests that must see exactly what storage holds and how
//! bodies are chunked.
//!
//! The embedded directory store needs a temporary directory and hands out whole files; tests
//! of readers that must cope with awkward chunk boundaries, and tests that run thousands of
//! generated cases, want something smaller and faster that still behaves like a backend. So
//! this store keeps the semantics the conformance suite checks (byte-wise order, pages with
//! continuation, common prefixes, precise errors, buckets created by the first write) and lets
//! the test choose the chunk size of get bodies.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::{GetObject, ListPage, ObjectClient, ObjectError, ObjectMeta, PutBody};

/// Keys per listing page, as S3's default `max-keys`.
const PAGE: usize = 1_000;

/// Default size of the chunks a get body is split into.
const DEFAULT_CHUNK: usize = 64 << 10;

/// Object storage in memory. Cheap to clone; clones share the objects.
#[derive(Debug, Clone)]
pub struct MemStore {
    inner: Arc<Inner>,
    chunk: usize,
    page: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bucket → key → object. A bucket exists once something was written to it.
    buckets: Mutex<BTreeMap<String, BTreeMap<String, Stored>>>,
    /// Version counter behind the ETags, so every write gets a new one.
    writes: AtomicU64,
}

#[derive(Debug, Clone)]
struct Stored {
    data: Bytes,
    last_modified: SystemTime,
    etag: String,
}

impl Stored {
    fn meta(&self, key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: self.data.len() as u64,
            last_modified: self.last_modified,
            etag: Some(self.etag.clone()),
        }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            inner: Arc::default(),
            chunk: DEFAULT_CHUNK,
            page: PAGE,
        }
    }
}

impl MemStore {
    /// An empty store (no buckets).
    pub fn new() -> Self {
        MemStore::default()
    }

    /// A store holding one object.
    pub fn with_object(bucket: &str, key: &str, data: impl Into<Bytes>) -> Self {
        let store = MemStore::new();
        store.insert(bucket, key, data);
        store
    }

    /// Splits get bodies into chunks of `n` bytes (at least 1; default 64 KiB).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk = n.max(1);
        self
    }

    /// Lists at most `n` entries per page (at least 1; default 1,000).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page = n.max(1);
        self
    }

    /// Adds or replaces an object, creating its bucket; returns its metadata.
    pub fn insert(&self, bucket: &str, key: &str, data: impl Into<Bytes>) -> ObjectMeta {
        let version = self.inner.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let data = data.into();
        let stored = Stored {
            etag: format!("mem-{version:x}-{:x}", data.len()),
            data,
            last_modified: SystemTime::now(),
        };
        let meta = stored.meta(key);
        self.buckets()
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), stored);
        meta
    }

    /// The bytes of one object, if it exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.buckets()
            .get(bucket)
            .and_then(|b| b.get(key))
            .map(|s| s.data.clone())
    }

    /// Every key of `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.buckets()
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn buckets(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<String, Stored>>> {
        self.inner
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stored(&self, bucket: &str, key: &str) -> Result<Stored, ObjectError> {
        self.buckets()
            .get(bucket)
            .and_then(|b| b.get(key))
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })
    }
}

/// Where a listing resumes: after a key, or after every key under a common prefix.
fn encode_token(after: &str, rolled_up: bool) -> String {
    format!("{}{after}", if rolled_up { 'p' } else { 'k' })
}

fn decode_token(token: &str) -> Option<(bool, &str)> {
    match token.split_at_checked(1)? {
        ("p", rest) => Some((true, rest)),
        ("k", rest) => Some((false, rest)),
        _ => None,
    }
}

#[async_trait]
impl ObjectClient for MemStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        let buckets = self.buckets();
        let objects = buckets
            .get(bucket)
            .ok_or_else(|| ObjectError::NoSuchBucket {
                bucket: bucket.into(),
            })?;
        let (start, skip_under) = match continuation {
            None => (Bound::Included(prefix.to_string()), None),
            Some(token) => {
                let (rolled_up, after) =
                    decode_token(token).ok_or_else(|| ObjectError::Client {
                        operation: "ListObjectsV2",
                        bucket: bucket.into(),
                        key: prefix.into(),
                        message: format!("invalid continuation token {token:?}"),
                    })?;
                (
                    Bound::Excluded(after.to_string()),
                    rolled_up.then(|| after.to_string()),
                )
            }
        };
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        let mut last: Option<(String, bool)> = None;
        for (key, stored) in objects.range((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            if skip_under.as_deref().is_some_and(|p| key.starts_with(p)) {
                continue;
            }
            let common = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_string())
            });
            if let (Some(c), Some((prev, true))) = (&common, &last) {
                if c == prev {
                    continue;
                }
            }
            if page.objects.len() + page.common_prefixes.len() == self.page {
                page.next_token = last.map(|(after, rolled)| encode_token(&after, rolled));
                return Ok(page);
            }
            match common {
                Some(c) => {
                    page.common_prefixes.push(c.clone());
                    last = Some((c, true));
                }
                None => {
                    page.objects.push(stored.meta(key));
                    last = Some((key.clone(), false));
                }
            }
        }
        Ok(page)
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        Ok(self.stored(bucket, key)?.meta(key))
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        let stored = self.stored(bucket, key)?;
        let size = stored.data.len() as u64;
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(ObjectError::InvalidRange {
                bucket: bucket.into(),
                key: key.into(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        let body = stored.data.slice(range.start as usize..range.end as usize);
        let chunk = self.chunk;
        let chunks: Vec<Result<Bytes, ObjectError>> = (0..body.len())
            .step_by(chunk)
            .map(|i| Ok(body.slice(i..(i + chunk).min(body.len()))))
            .collect();
        Ok(GetObject {
            meta: stored.meta(key),
            body: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        let data = match body {
            PutBody::Bytes(b) => b,
            PutBody::File(path) => {
                tokio::fs::read(&path)
                    .await
                    .map(Bytes::from)
                    .map_err(|source| ObjectError::Io {
                        operation: "PutObject",
                        bucket: bucket.into(),
                        key: key.into(),
                        source,
                    })?
            }
        };
        Ok(self.insert(bucket, key, data))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        if let Some(objects) = self.buckets().get_mut(bucket) {
            objects.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectClientExt;
    use crate::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let store = MemStore::new();
        let timings = conformance::run_all(&store, "conformance", "run/").await;
        assert_eq!(timings.len(), 11);
    }

    #[tokio::test]
    async fn small_pages_roll_common_prefixes_up_across_pages() {
        let store = MemStore::new().page_size(2);
        for k in ["a", "d/1", "d/2", "d/3", "e", "f/x", "g"] {
            store.insert("b", k, &b"x"[..]);
        }
        let (mut objects, mut prefixes, mut token, mut pages) =
            (Vec::new(), Vec::new(), None::<String>, 0);
        loop {
            let page = store
                .list_page("b", "", Some("/"), token.as_deref())
                .await
                .unwrap();
            assert!(page.objects.len() + page.common_prefixes.len() <= 2);
            objects.extend(page.objects.into_iter().map(|o| o.key));
            prefixes.extend(page.common_prefixes);
            pages += 1;
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(objects, ["a", "e", "g"]);
        assert_eq!(prefixes, ["d/", "f/"]);
        assert_eq!(pages, 3);
        assert_eq!(store.list_vec("b", "d/").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn bodies_come_in_chunks_of_the_chosen_size() {
        let store = MemStore::with_object("b", "k", vec![7u8; 10]).chunk_size(4);
        let got = store.get("b", "k", Some(1..10)).await.unwrap();
        let sizes: Vec<usize> = got.body.map(|c| c.unwrap().len()).collect().await;
        assert_eq!(sizes, [4, 4, 1]);
        let err = store
            .list_page("b", "", None, Some("bogus"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("continuation token"), "{err}");
    }
}
