//! [`FaultyClient`]: any [`ObjectClient`] with failures injected and calls counted.
//!
//! Retry loops, body resumption, partial-file cleanup and bounded-memory streaming can only be
//! tested against storage that fails the way real storage does, at a chosen call, and that
//! says afterwards how often it was asked and how much the caller held. Each [`Fault`] names
//! the operation and keys it applies to, which matching calls it hits (every one, the first
//! n, or only the nth) and what happens: a service error, a GET body that ends early, or one
//! that breaks with a connection reset. The wrapper never reveals a local file
//! ([`ObjectClient::local_file`] is `None`), so every read goes through `get` as it would
//! against a remote server.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::{ByteStream, GetObject, ListPage, ObjectClient, ObjectError, ObjectMeta, PutBody};

/// One operation of [`ObjectClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `list_page` (and so `list_all`); keys match against the prefix.
    List,
    /// `head`.
    Head,
    /// `get`.
    Get,
    /// `put`.
    Put,
    /// `delete`.
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [Op::List, Op::Head, Op::Get, Op::Put, Op::Delete];

    /// The S3 operation name used in injected errors.
    pub fn operation(self) -> &'static str {
        match self {
            Op::List => "ListObjectsV2",
            Op::Head => "HeadObject",
            Op::Get => "GetObject",
            Op::Put => "PutObject",
            Op::Delete => "DeleteObject",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which keys a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMatch {
    Any,
    Exact(String),
    Suffix(String),
    Contains(String),
}

impl KeyMatch {
    fn matches(&self, key: &str) -> bool {
        match self {
            KeyMatch::Any => true,
            KeyMatch::Exact(k) => key == k,
            KeyMatch::Suffix(s) => key.ends_with(s.as_str()),
            KeyMatch::Contains(s) => key.contains(s.as_str()),
        }
    }
}

/// Which of the matching calls a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calls {
    Every,
    First(u64),
    Nth(u64),
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// The call fails with a service error of this status and code, without reaching the
    /// wrapped client.
    Status { status: u16, code: String },
    /// The GET body ends cleanly after `after` bytes.
    Truncate { after: u64 },
    /// The GET body fails with a connection reset after `after` bytes.
    Reset { after: u64 },
}

/// One failure to inject: built with [`Fault::error`], [`Fault::truncate`] or
/// [`Fault::reset`], narrowed with the key and call selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    op: Op,
    key: KeyMatch,
    calls: Calls,
    effect: Effect,
}

impl Fault {
    /// Calls of `op` fail with a service error (`500 InternalError`, `503 SlowDown`, ...).
    /// Whether a retry loop repeats it follows [`ObjectError::is_retryable`].
    pub fn error(op: Op, status: u16, code: &str) -> Self {
        Fault {
            op,
            key: KeyMatch::Any,
            calls: Calls::Every,
            effect: Effect::Status {
                status,
                code: code.to_string(),
            },
        }
    }

    /// GET bodies end cleanly after `after` bytes, as when a server closes the connection
    /// early; the announced size stays the object's.
    pub fn truncate(after: u64) -> Self {
        Fault {
            op: Op::Get,
            key: KeyMatch::Any,
            calls: Calls::Every,
            effect: Effect::Truncate { after },
        }
    }

    /// GET bodies fail with a connection reset (a retryable I/O error) after `after` bytes.
    pub fn reset(after: u64) -> Self {
        Fault {
            op: Op::Get,
            key: KeyMatch::Any,
            calls: Calls::Every,
            effect: Effect::Reset { after },
        }
    }

    /// Only calls for exactly this key (for listings: this prefix).
    pub fn key(mut self, key: &str) -> Self {
        self.key = KeyMatch::Exact(key.to_string());
        self
    }

    /// Only calls for keys ending with `suffix`.
    pub fn key_suffix(mut self, suffix: &str) -> Self {
        self.key = KeyMatch::Suffix(suffix.to_string());
        self
    }

    /// Only calls for keys containing `part`.
    pub fn key_contains(mut self, part: &str) -> Self {
        self.key = KeyMatch::Contains(part.to_string());
        self
    }

    /// Only the first `n` matching calls; later ones reach the wrapped client untouched.
    pub fn times(mut self, n: u64) -> Self {
        self.calls = Calls::First(n);
        self
    }

    /// Only the `n`th matching call (counting from 1).
    pub fn nth(mut self, n: u64) -> Self {
        self.calls = Calls::Nth(n);
        self
    }

    fn applies(&self, op: Op, key: &str) -> bool {
        self.op == op && self.key.matches(key)
    }

    fn hits(&self, seen: u64) -> bool {
        match self.calls {
            Calls::Every => true,
            Calls::First(n) => seen <= n,
            Calls::Nth(n) => seen == n,
        }
    }
}

/// Bytes of GET bodies the caller still holds: every chunk handed out is counted until its
/// last `Bytes` handle is dropped.
#[derive(Debug, Default)]
struct Live {
    now: AtomicU64,
    peak: AtomicU64,
}

/// Owner of one handed-out chunk.
struct Tracked {
    bytes: Bytes,
    live: Arc<Live>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live
            .now
            .fetch_sub(self.bytes.len() as u64, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct State {
    /// Each fault with the number of calls it matched so far.
    faults: Mutex<Vec<(Fault, u64)>>,
    calls: [AtomicU64; 5],
    injected: AtomicU64,
    bytes_requested: AtomicU64,
    live: Arc<Live>,
}

/// A wrapper that injects [`Fault`]s into another client and counts what it is asked.
/// Cheap to clone; clones share faults and counters, so a test can keep one and hand the
/// other to the code under test.
#[derive(Debug, Clone)]
pub struct FaultyClient {
    inner: Arc<dyn ObjectClient>,
    state: Arc<State>,
}

impl FaultyClient {
    /// Wraps `inner` with no faults.
    pub fn new(inner: Arc<dyn ObjectClient>) -> Self {
        FaultyClient {
            inner,
            state: Arc::default(),
        }
    }

    /// Adds a fault (builder form of [`FaultyClient::inject`]).
    pub fn with(self, fault: Fault) -> Self {
        self.inject(fault);
        self
    }

    /// Adds a fault from now on. When several match a call, the first added that hits wins;
    /// every matching fault counts the call.
    pub fn inject(&self, fault: Fault) {
        self.faults().push((fault, 0));
    }

    /// Removes every fault; counters are kept.
    pub fn clear(&self) {
        self.faults().clear();
    }

    /// Calls of `op` so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.state.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of every operation so far.
    pub fn total_calls(&self) -> u64 {
        Op::ALL.iter().map(|op| self.calls(*op)).sum()
    }

    /// Faults that took effect so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Sum of the lengths of the ranges of successful GETs (the object size for whole ones).
    pub fn bytes_requested(&self) -> u64 {
        self.state.bytes_requested.load(Ordering::SeqCst)
    }

    /// Bytes of GET bodies handed out and not yet dropped by the caller.
    pub fn live_bytes(&self) -> u64 {
        self.state.live.now.load(Ordering::SeqCst)
    }

    /// The most [`FaultyClient::live_bytes`] ever was.
    pub fn peak_live_bytes(&self) -> u64 {
        self.state.live.peak.load(Ordering::SeqCst)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Vec<(Fault, u64)>> {
        self.state
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and returns the effect of the fault that hits it, if any.
    fn enter(&self, op: Op, key: &str) -> Option<Effect> {
        self.state.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let mut hit = None;
        for (fault, seen) in self.faults().iter_mut() {
            if fault.applies(op, key) {
                *seen += 1;
                if hit.is_none() && fault.hits(*seen) {
                    hit = Some(fault.effect.clone());
                }
            }
        }
        hit
    }

    /// The error of a `Status` effect, counted as injected; other effects pass.
    fn fail(
        &self,
        op: Op,
        bucket: &str,
        key: &str,
        effect: &Option<Effect>,
    ) -> Result<(), ObjectError> {
        if let Some(Effect::Status { status, code }) = effect {
            self.state.injected.fetch_add(1, Ordering::SeqCst);
            return Err(ObjectError::Service {
                operation: op.operation(),
                bucket: bucket.into(),
                key: key.into(),
                status: *status,
                code: code.clone(),
                message: "injected fault".into(),
            });
        }
        Ok(())
    }

    /// Counts held bytes, then applies a body effect.
    fn body(
        &self,
        body: ByteStream,
        bucket: &str,
        key: &str,
        effect: Option<Effect>,
    ) -> ByteStream {
        let live = self.state.live.clone();
        let tracked = body.map(move |chunk| {
            chunk.map(|bytes| {
                let len = bytes.len() as u64;
                let now = live.now.fetch_add(len, Ordering::SeqCst) + len;
                live.peak.fetch_max(now, Ordering::SeqCst);
                Bytes::from_owner(Tracked {
                    bytes,
                    live: live.clone(),
                })
            })
        });
        let (after, reset) = match effect {
            Some(Effect::Truncate { after }) => (after, false),
            Some(Effect::Reset { after }) => (after, true),
            _ => return tracked.boxed(),
        };
        let state = self.state.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        // Pass chunks through until `after` bytes went out, cutting the last one; then end or
        // fail. A body shorter than `after` is left alone.
        tracked
            .scan((0u64, false), move |(sent, done), item| {
                let out = match item {
                    _ if *done => None,
                    Ok(bytes) if *sent + bytes.len() as u64 >= after => {
                        *done = true;
                        state.injected.fetch_add(1, Ordering::SeqCst);
                        let head = bytes.slice(..(after - *sent) as usize);
                        let mut out = Vec::new();
                        if !head.is_empty() {
                            out.push(Ok(head));
                        }
                        if reset {
                            out.push(Err(ObjectError::Io {
                                operation: "GetObject",
                                bucket: bucket.clone(),
                                key: key.clone(),
                                source: std::io::Error::new(
                                    std::io::ErrorKind::ConnectionReset,
                                    "injected fault: connection reset",
                                ),
                            }));
                        }
                        Some(out)
                    }
                    Ok(bytes) => {
                        *sent += bytes.len() as u64;
                        Some(vec![Ok(bytes)])
                    }
                    Err(e) => Some(vec![Err(e)]),
                };
                futures::future::ready(out)
            })
            .flat_map(futures::stream::iter)
            .boxed()
    }
}

#[async_trait]
impl ObjectClient for FaultyClient {
    fn describe(&self) -> String {
        format!("faulty view of {}", self.inner.describe())
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ObjectError> {
        let effect = self.enter(Op::List, prefix);
        self.fail(Op::List, bucket, prefix, &effect)?;
        self.inner
            .list_page(bucket, prefix, delimiter, continuation)
            .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError> {
        let effect = self.enter(Op::Head, key);
        self.fail(Op::Head, bucket, key, &effect)?;
        self.inner.head(bucket, key).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, ObjectError> {
        let effect = self.enter(Op::Get, key);
        self.fail(Op::Get, bucket, key, &effect)?;
        let mut got = self.inner.get(bucket, key, range.clone()).await?;
        let len = range.map_or(got.meta.size, |r| r.end - r.start);
        self.state.bytes_requested.fetch_add(len, Ordering::SeqCst);
        got.body = self.body(got.body, bucket, key, effect);
        Ok(got)
    }

    async fn put(&self, bucket: &str, key: &str, body: PutBody) -> Result<ObjectMeta, ObjectError> {
        let effect = self.enter(Op::Put, key);
        self.fail(Op::Put, bucket, key, &effect)?;
        self.inner.put(bucket, key, body).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let effect = self.enter(Op::Delete, key);
        self.fail(Op::Delete, bucket, key, &effect)?;
        self.inner.delete(bucket, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectClientExt;
    use crate::mock::MemStore;

    fn store() -> MemStore {
        let mem = MemStore::new().chunk_size(4);
        mem.insert("b", "dir/a.csv", &b"0123456789"[..]);
        mem.insert("b", "dir/b.bin", &b"abcdefghij"[..]);
        mem
    }

    async fn body(c: &FaultyClient, key: &str) -> (Vec<u8>, Option<ObjectError>) {
        let mut got = c.get("b", key, None).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = got.body.next().await {
            match chunk {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn errors_hit_the_chosen_calls_and_keys() {
        let c = FaultyClient::new(Arc::new(store()))
            .with(Fault::error(Op::Get, 500, "InternalError").key("dir/a.csv"))
            .with(Fault::error(Op::Put, 503, "SlowDown").times(2))
            .with(Fault::error(Op::Head, 500, "InternalError").nth(2));
        let err = c.get_bytes("b", "dir/a.csv").await.unwrap_err();
        assert!(
            matches!(&err, ObjectError::Service { status: 500, key, operation: "GetObject", .. } if key == "dir/a.csv"),
            "{err}"
        );
        assert!(err.is_retryable());
        assert_eq!(
            &c.get_bytes("b", "dir/b.bin").await.unwrap()[..],
            b"abcdefghij"
        );

        for _ in 0..2 {
            let err = c
                .put("b", "new", PutBody::Bytes(Bytes::new()))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ObjectError::Service { status: 503, .. }),
                "{err}"
            );
        }
        c.put("b", "new", PutBody::Bytes(Bytes::new()))
            .await
            .unwrap();

        assert!(c.head("b", "new").await.is_ok());
        assert!(c.head("b", "new").await.is_err(), "the second head fails");
        assert!(c.head("b", "new").await.is_ok());

        assert_eq!(
            (c.calls(Op::Get), c.calls(Op::Put), c.calls(Op::Head)),
            (2, 3, 3)
        );
        assert_eq!(c.injected(), 4);
        assert_eq!(c.total_calls(), 8);
        assert_eq!(c.bytes_requested(), 10, "only the successful get counts");
    }

    #[tokio::test]
    async fn bodies_are_truncated_or_reset_mid_chunk() {
        let c = FaultyClient::new(Arc::new(store()));
        c.inject(Fault::truncate(6).key_suffix(".csv"));
        c.inject(Fault::reset(5).key_contains("b.b").times(1));
        assert_eq!(body(&c, "dir/a.csv").await.0, b"012345");
        assert!(matches!(
            c.get_bytes("b", "dir/a.csv").await,
            Err(ObjectError::Truncated {
                got: 6,
                expected: 10,
                ..
            })
        ));
        let (head, err) = body(&c, "dir/b.bin").await;
        assert_eq!(head, b"abcde");
        let err = err.expect("a reset");
        assert!(err.is_retryable(), "{err}");
        assert!(
            matches!(&err, ObjectError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionReset)
        );
        let (whole, err) = body(&c, "dir/b.bin").await;
        assert!(whole == b"abcdefghij" && err.is_none(), "only once");
        c.clear();
        assert_eq!(body(&c, "dir/a.csv").await.0, b"0123456789");
        assert_eq!(c.injected(), 3);
    }

    #[tokio::test]
    async fn held_bytes_are_counted_until_dropped() {
        let c = FaultyClient::new(Arc::new(store()));
        let mut got = c.get("b", "dir/a.csv", Some(2..10)).await.unwrap();
        let first = got.body.next().await.unwrap().unwrap();
        let second = got.body.next().await.unwrap().unwrap();
        assert_eq!(c.live_bytes(), 8);
        drop(first);
        assert_eq!(c.live_bytes(), 4);
        drop(second);
        assert_eq!((c.live_bytes(), c.peak_live_bytes()), (0, 8));
        assert_eq!(c.bytes_requested(), 8);
    }

    #[tokio::test]
    async fn the_wrapped_store_is_never_seen_as_local() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::DirStore::embedded(dir.path());
        disk.put("bkt", "k", PutBody::Bytes(Bytes::from_static(b"x")))
            .await
            .unwrap();
        assert!(disk.local_file("bkt", "k").is_some());
        let c = FaultyClient::new(Arc::new(disk));
        assert!(c.local_file("bkt", "k").is_none());
    }
}
