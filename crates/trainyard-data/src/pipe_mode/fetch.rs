//! The prefetcher of one epoch: fetches the epoch's payloads ahead of the FIFO writer, many
//! requests at once, and hands them over strictly in delivery order.
//!
//! The FIFO is one sequential stream, so the only way to go faster than one GET at a time is to
//! fetch ahead. The prefetcher walks the epoch's payloads in order, cuts every object into ranges
//! of `part_size`, and for each range first takes that many bytes from a byte budget (a
//! semaphore), then spawns the ranged GET and queues its handle. The writer awaits the handles
//! in queue order and returns the bytes to the budget once they are written. Because the budget
//! is taken *in order* by this single task, the range the writer needs next can never be starved
//! by ranges behind it, and memory is bounded by the budget whatever the object or dataset size.
//! A second semaphore bounds the requests in flight, so a dataset of tiny objects cannot open
//! thousands of connections. Objects whose size is unknown (augmented-manifest `-ref`s) get a
//! HEAD request first; those run concurrently ahead of the range loop.
//!
//! A transient storage error in the middle of a body is retried by requesting the rest of the
//! range again (the client already retries whole requests); past `body_retries` it is an error
//! naming the key.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinError, JoinHandle};
use trainyard_s3::{ByteStream, ObjectClient, ObjectError};

use crate::DataError;

/// An object to deliver, with its size.
#[derive(Debug)]
pub(super) struct ObjRef {
    pub bucket: String,
    pub key: String,
    pub size: u64,
}

/// One payload of the epoch, before its size is known.
#[derive(Debug)]
pub(super) enum Payload {
    /// Bytes already in memory (an augmented-manifest value).
    Inline(Bytes),
    /// An object; `size` is `None` when it must be asked for.
    Object {
        bucket: String,
        key: String,
        size: Option<u64>,
    },
}

/// What the prefetcher hands the writer, in delivery order.
#[derive(Debug)]
pub(super) enum Piece {
    /// A whole payload from memory.
    Inline(Bytes),
    /// An object begins; exactly `parts` [`Piece::Range`]s follow.
    Object { obj: Arc<ObjRef>, parts: usize },
    /// The next range of the current object.
    Range(Task<Result<Fetched, DataError>>),
}

/// The bytes of one range, holding their share of the byte budget until dropped.
#[derive(Debug)]
pub(super) struct Fetched {
    pub chunks: VecDeque<Bytes>,
    _budget: OwnedSemaphorePermit,
}

/// A spawned task that is aborted when its handle is dropped, so abandoning an epoch cancels
/// every request of it.
#[derive(Debug)]
pub(super) struct Task<T>(JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    pub fn spawn(f: impl Future<Output = T> + Send + 'static) -> Self {
        Task(tokio::spawn(f))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// What the prefetcher of every epoch of a channel shares.
#[derive(Debug)]
pub(super) struct FetchCtx {
    pub client: Arc<dyn ObjectClient>,
    pub channel: String,
    pub part_size: u64,
    pub requests: Arc<Semaphore>,
    pub lookahead: usize,
    pub body_retries: u32,
}

impl FetchCtx {
    pub fn task_failed(&self, e: JoinError) -> DataError {
        DataError::Pipe {
            channel: self.channel.clone(),
            reason: format!("internal task failed: {e}"),
        }
    }
}

/// Fetches `payloads` in order into `tx`, taking each range's bytes from `budget` first.
/// Returns when every piece is queued, when the writer went away (not an error: the epoch was
/// abandoned), or with the first error that is not tied to a range (a failed HEAD).
pub(super) async fn fetch_epoch(
    ctx: Arc<FetchCtx>,
    payloads: impl Iterator<Item = Payload> + Send + 'static,
    budget: Arc<Semaphore>,
    tx: mpsc::Sender<Piece>,
) -> Result<(), DataError> {
    let resolved = futures::stream::iter(payloads)
        .map(|p| {
            let ctx = ctx.clone();
            async move {
                match p {
                    Payload::Inline(b) => Ok(Piece::Inline(b)),
                    Payload::Object {
                        bucket,
                        key,
                        size: Some(size),
                    } => Ok(object_piece(&ctx, bucket, key, size)),
                    Payload::Object {
                        bucket,
                        key,
                        size: None,
                    } => {
                        let (client, requests) = (ctx.client.clone(), ctx.requests.clone());
                        let (b, k) = (bucket.clone(), key.clone());
                        // Spawned so that HEADs progress while this task waits for budget.
                        let head = Task::spawn(async move {
                            let _req = requests.acquire_owned().await;
                            client.head(&b, &k).await
                        });
                        match head.await {
                            Ok(Ok(meta)) => Ok(object_piece(&ctx, bucket, key, meta.size)),
                            Ok(Err(source)) => Err(DataError::Object { key, source }),
                            Err(e) => Err(ctx.task_failed(e)),
                        }
                    }
                }
            }
        })
        .buffered(ctx.lookahead.max(1));
    futures::pin_mut!(resolved);
    while let Some(piece) = resolved.next().await {
        let piece = piece?;
        let Piece::Object { obj, parts } = &piece else {
            if tx.send(piece).await.is_err() {
                return Ok(());
            }
            continue;
        };
        let (obj, parts) = (obj.clone(), *parts);
        if tx.send(piece).await.is_err() {
            return Ok(());
        }
        for i in 0..parts as u64 {
            let start = i * ctx.part_size;
            let end = (start + ctx.part_size).min(obj.size);
            let want = u32::try_from(end - start).expect("part size is at most 1 GiB");
            let Ok(permit) = budget.clone().acquire_many_owned(want).await else {
                return Ok(());
            };
            let task = Task::spawn(fetch_range(ctx.clone(), obj.clone(), start, end, permit));
            if tx.send(Piece::Range(task)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn object_piece(ctx: &FetchCtx, bucket: String, key: String, size: u64) -> Piece {
    Piece::Object {
        parts: size.div_ceil(ctx.part_size) as usize,
        obj: Arc::new(ObjRef { bucket, key, size }),
    }
}

async fn fetch_range(
    ctx: Arc<FetchCtx>,
    obj: Arc<ObjRef>,
    start: u64,
    end: u64,
    budget: OwnedSemaphorePermit,
) -> Result<Fetched, DataError> {
    let _req = ctx.requests.acquire().await;
    let mut chunks = VecDeque::new();
    let mut body = object_stream(ctx.client.clone(), obj, start, end, ctx.body_retries);
    while let Some(chunk) = body.next().await {
        chunks.push_back(chunk?);
    }
    Ok(Fetched {
        chunks,
        _budget: budget,
    })
}

/// Bytes `start..end` of `obj` as a stream, resuming after transient body errors (at most
/// `retries` times in all) and checking that the object still has the expected size.
pub(super) fn object_stream(
    client: Arc<dyn ObjectClient>,
    obj: Arc<ObjRef>,
    start: u64,
    end: u64,
    retries: u32,
) -> BoxStream<'static, Result<Bytes, DataError>> {
    let state = BodyState {
        client,
        obj,
        off: start,
        end,
        retries_left: retries,
        attempt: 0,
        body: None,
    };
    futures::stream::try_unfold(state, |mut st| async move {
        loop {
            if st.off >= st.end {
                return Ok(None);
            }
            let mut body = match st.body.take() {
                Some(b) => b,
                None => match st
                    .client
                    .get(&st.obj.bucket, &st.obj.key, Some(st.off..st.end))
                    .await
                {
                    Ok(got) if got.meta.size != st.obj.size => {
                        return Err(DataError::SizeMismatch {
                            key: st.obj.key.clone(),
                            expected: st.obj.size,
                            got: got.meta.size,
                        });
                    }
                    Ok(got) => got.body,
                    Err(e) => {
                        st.retry(e).await?;
                        continue;
                    }
                },
            };
            match body.next().await {
                Some(Ok(chunk)) if chunk.len() as u64 > st.end - st.off => {
                    return Err(DataError::SizeMismatch {
                        key: st.obj.key.clone(),
                        expected: st.end,
                        got: st.off + chunk.len() as u64,
                    });
                }
                Some(Ok(chunk)) => {
                    st.off += chunk.len() as u64;
                    st.body = Some(body);
                    if !chunk.is_empty() {
                        return Ok(Some((chunk, st)));
                    }
                }
                Some(Err(e)) => st.retry(e).await?,
                None => {
                    let e = ObjectError::Truncated {
                        operation: "GetObject",
                        bucket: st.obj.bucket.clone(),
                        key: st.obj.key.clone(),
                        got: st.off,
                        expected: st.end,
                    };
                    st.retry(e).await?;
                }
            }
        }
    })
    .boxed()
}

struct BodyState {
    client: Arc<dyn ObjectClient>,
    obj: Arc<ObjRef>,
    off: u64,
    end: u64,
    retries_left: u32,
    attempt: u32,
    body: Option<ByteStream>,
}

impl BodyState {
    /// Waits before resuming after `e`, or fails when `e` is permanent or retries are spent.
    async fn retry(&mut self, e: ObjectError) -> Result<(), DataError> {
        if !e.is_retryable() || self.retries_left == 0 {
            return Err(DataError::Object {
                key: self.obj.key.clone(),
                source: e,
            });
        }
        self.retries_left -= 1;
        self.attempt += 1;
        let delay = Duration::from_millis(50 << self.attempt.min(5));
        tracing::warn!(
            key = %self.obj.key,
            offset = self.off,
            error = %e,
            ?delay,
            "resuming object body after a transient error"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
