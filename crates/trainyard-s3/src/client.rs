//! The [`ObjectClient`] trait: the only way trainyard touches object storage.
//!
//! It is limited to what the data plane needs and shaped for streaming: listings come a page
//! at a time in key order (so memory follows the page, not the bucket), and a get returns its
//! body as a stream of chunks (so no object is ever buffered whole). Helpers built from these
//! primitives live in [`ObjectClientExt`], so every backend gets them for free.

use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::ObjectError;

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, ObjectError>>;

/// What a listing or a head request says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// Entity tag, without quotes, when the backend gives one.
    pub etag: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects in ascending byte-wise key order.
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes, when a delimiter was given.
    pub common_prefixes: Vec<String>,
    /// Token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// The body of a get, with the object's metadata.
pub struct GetObject {
    /// Metadata of the whole object (size is the full size, not the range length).
    pub meta: ObjectMeta,
    /// The requested bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for GetObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetObject")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// What to upload.
#[derive(Debug, Clone)]
pub enum PutBody {
    /// Bytes in memory (small objects).
    Bytes(Bytes),
    /// A local file, streamed (large objects use multipart where the backend has it).
    File(PathBuf),
}

/// Object storage as trainyard uses it.
#[async_trait]
pub trait ObjectClient: Send + Sync + std::fmt::Debug {
    /// A short name for logs (`embedded`, `file`, `s3 http://127.0.0.1:3900`).
    fn describe(&self) -> String;

    /// Lists one page of objects whose keys start with `prefix`, after the continuation token.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError>;

    /// Metadata of one object.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError>;

    /// The bytes of `range` (the whole object when `None`) as a stream.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError>;

    /// Stores an object, replacing any previous one atomically.
    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError>;

    /// The local file holding the object, when the backend keeps objects as plain files (the
    /// embedded store). Lets the downloader copy with the kernel instead of streaming bytes.
    fn local_file(&self, _bucket: &str, _key: &str) -> Option<PathBuf> {
        None
    }

    /// Streams every object under `prefix` in key order. Backends that can walk their store in
    /// one pass override this; the default follows continuation tokens page by page.
    fn list_all<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<ObjectMeta, ObjectError>> {
        let state = (Some(None::<String>), self);
        futures::stream::unfold(state, move |(token, client)| async move {
            let token = token?;
            match client
                .list_page(bucket, prefix, None, token.as_deref())
                .await
            {
                Ok(page) => {
                    let next = page.next_token.map(Some);
                    let items: Vec<Result<ObjectMeta, ObjectError>> =
                        page.objects.into_iter().map(Ok).collect();
                    Some((futures::stream::iter(items), (next, client)))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(e)]), (None, client))),
            }
        })
        .flatten()
        .boxed()
    }
}

/// Helpers every [`ObjectClient`] gets.
#[async_trait]
pub trait ObjectClientExt: ObjectClient {
    /// Reads a whole (small) object into memory, e.g. a manifest.
    async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Bytes, ObjectError> {
        let mut obj = self.get(bucket, key, None).await?;
        let mut buf = Vec::with_capacity(obj.meta.size as usize);
        while let Some(chunk) = obj.body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        if buf.len() as u64 != obj.meta.size {
            return Err(ObjectError::Truncated {
                operation: "GetObject",
                bucket: bucket.to_string(),
                key: key.to_string(),
                got: buf.len() as u64,
                expected: obj.meta.size,
            });
        }
        Ok(Bytes::from(buf))
    }

    /// Collects every object under `prefix`, in key order.
    async fn list_vec(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        let mut out = Vec::new();
        let mut stream = self.list_all(bucket, prefix);
        while let Some(item) = stream.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

impl<T: ObjectClient + ?Sized> ObjectClientExt for T {}
