//! An in-memory [`ObjectClient`] for the FastFile unit tests.
//!
//! The unit tests need to see what the file system asks of storage (how many GETs, how many
//! bytes), to split bodies into awkward chunk sizes, and to make an object fail, none of which
//! the directory store can do; so this small client keeps objects in a map and counts.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use trainyard_s3::{GetObject, ListPage, ObjectClient, ObjectError, ObjectMeta, PutBody};

/// Objects in memory, with request counters. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemClient {
    inner: Arc<Inner>,
    chunk: usize,
}

#[derive(Debug, Default)]
struct Inner {
    objects: Mutex<HashMap<(String, String), Bytes>>,
    failing: Mutex<HashSet<String>>,
    gets: AtomicU64,
    bytes_requested: AtomicU64,
}

impl MemClient {
    /// A client holding one object.
    pub(crate) fn with_object(bucket: &str, key: &str, data: Vec<u8>) -> Self {
        let c = MemClient {
            chunk: 64 << 10,
            ..Default::default()
        };
        c.insert(bucket, key, data);
        c
    }

    /// Splits get bodies into chunks of `n` bytes.
    pub(crate) fn chunk_size(mut self, n: usize) -> Self {
        self.chunk = n.max(1);
        self
    }

    /// Adds or replaces an object.
    pub(crate) fn insert(&self, bucket: &str, key: &str, data: Vec<u8>) {
        lock(&self.inner.objects).insert((bucket.into(), key.into()), Bytes::from(data));
    }

    /// Makes every get of `key` fail with a service error.
    pub(crate) fn fail(&self, key: &str) {
        lock(&self.inner.failing).insert(key.into());
    }

    /// Number of get requests so far.
    pub(crate) fn gets(&self) -> u64 {
        self.inner.gets.load(Ordering::Relaxed)
    }

    /// Sum of the lengths of all requested ranges.
    pub(crate) fn bytes_requested(&self) -> u64 {
        self.inner.bytes_requested.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn meta(key: &str, size: u64) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size,
        last_modified: SystemTime::UNIX_EPOCH,
        etag: None,
    }
}

#[async_trait]
impl ObjectClient for MemClient {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        _delimiter: Option<&str>,
        _continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        let mut objects: Vec<ObjectMeta> = lock(&self.inner.objects)
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), v)| meta(k, v.len() as u64))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(ListPage {
            objects,
            ..Default::default()
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        let objects = lock(&self.inner.objects);
        let data = objects
            .get(&(bucket.to_string(), key.to_string()))
            .ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        Ok(meta(key, data.len() as u64))
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        self.inner.gets.fetch_add(1, Ordering::Relaxed);
        if lock(&self.inner.failing).contains(key) {
            return Err(ObjectError::Service {
                operation: "GetObject",
                bucket: bucket.into(),
                key: key.into(),
                status: 500,
                code: "InternalError".into(),
                message: "injected".into(),
            });
        }
        let data = lock(&self.inner.objects)
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            })?;
        let size = data.len() as u64;
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
        self.inner
            .bytes_requested
            .fetch_add(range.end - range.start, Ordering::Relaxed);
        let body = data.slice(range.start as usize..range.end as usize);
        let chunks: Vec<Result<Bytes, ObjectError>> = (0..body.len())
            .step_by(self.chunk)
            .map(|i| Ok(body.slice(i..(i + self.chunk).min(body.len()))))
            .collect();
        Ok(GetObject {
            meta: meta(key, size),
            body: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        let data = match body {
            PutBody::Bytes(b) => b.to_vec(),
            PutBody::File(p) => std::fs::read(&p).map_err(|source| ObjectError::Io {
                operation: "PutObject",
                bucket: bucket.into(),
                key: key.into(),
                source,
            })?,
        };
        let size = data.len() as u64;
        self.insert(bucket, key, data);
        Ok(meta(key, size))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        lock(&self.inner.objects).remove(&(bucket.to_string(), key.to_string()));
        Ok(())
    }
}
