//! The FIFO side of one epoch: turns the prefetcher's pieces into the bytes the reader sees.
//!
//! Each payload goes through up to two transformations, both streaming: gunzip (`Gzip`
//! channels, multi-member streams decoded to the end) and RecordIO framing (`RecordIO`
//! channels). Framing needs to know where each part ends before writing its header (see
//! [`crate::recordio`]), so a payload is buffered up to `recordio_buffer` bytes; one that ends
//! within that is framed from memory, a longer one is framed while a *scout*, a second
//! sequential read of the same object (decompressed again for gzip), finds the part boundaries
//! ahead of the bytes being written. The scout keeps no data, so memory stays bounded.
//!
//! Writes go through a small buffer so that the many tiny pieces of small records (8-byte
//! headers, labels, padding) become few system calls; large chunks bypass it. The buffer is
//! flushed whenever the prefetcher has nothing ready, so a slow store never holds back bytes
//! the reader could already have.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_compression::tokio::bufread::GzipDecoder;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader};
use trainyard_s3::ObjectClient;

use super::fetch::{ObjRef, Piece, object_stream};
use crate::DataError;
use crate::recordio::{BoundaryFinder, Framer, MAGIC_BYTES, frame_bytes};

/// Why an epoch stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum Halt {
    /// The reader closed the FIFO (EPIPE): the epoch ends, the next one begins.
    #[error("the reader closed the FIFO")]
    ReaderClosed,
    /// The prefetcher stopped sending in the middle of an object; its own result says why.
    #[error("prefetch ended in the middle of an object")]
    Starved,
    /// Delivery failed.
    #[error(transparent)]
    Failed(DataError),
}

impl From<DataError> for Halt {
    fn from(e: DataError) -> Self {
        Halt::Failed(e)
    }
}

type Chunks<'a> = BoxStream<'a, Result<Bytes, Halt>>;

/// Settings of the writer, fixed for the channel.
#[derive(Debug)]
pub(super) struct WriterCtx {
    pub client: Arc<dyn ObjectClient>,
    pub channel: String,
    pub gzip: bool,
    pub recordio: bool,
    pub recordio_buffer: usize,
    pub body_retries: u32,
}

impl WriterCtx {
    fn internal(&self, reason: &str) -> Halt {
        Halt::Failed(DataError::Pipe {
            channel: self.channel.clone(),
            reason: reason.to_string(),
        })
    }
}

/// Writes one epoch into an open FIFO.
pub(super) struct EpochWriter<'a, W> {
    out: &'a mut W,
    ctx: &'a WriterCtx,
    fifo: PathBuf,
    /// Bytes written to the FIFO (framing included).
    pub bytes: u64,
    /// Payloads (objects or augmented-manifest values) written whole.
    pub records: u64,
}

impl<'a, W: AsyncWrite + Unpin + Send> EpochWriter<'a, W> {
    pub fn new(out: &'a mut W, ctx: &'a WriterCtx, fifo: PathBuf) -> Self {
        EpochWriter {
            out,
            ctx,
            fifo,
            bytes: 0,
            records: 0,
        }
    }

    /// Writes every piece until the prefetcher closes the queue.
    pub async fn run(&mut self, rx: &mut mpsc::Receiver<Piece>) -> Result<(), Halt> {
        loop {
            let piece = match rx.try_recv() {
                Ok(p) => p,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush().await?;
                    match rx.recv().await {
                        Some(p) => p,
                        None => break,
                    }
                }
            };
            match piece {
                Piece::Inline(b) => self.inline(b).await?,
                Piece::Object { obj, parts } => self.object(obj, parts, rx).await?,
                Piece::Range(_) => return Err(self.ctx.internal("a range outside an object")),
            }
            self.records += 1;
        }
        self.flush().await
    }

    /// Writes all of `b`, counting bytes as the FIFO (or the write buffer) accepts them.
    async fn write(&mut self, mut b: &[u8]) -> Result<(), Halt> {
        while !b.is_empty() {
            match self.out.write(b).await {
                Ok(0) => return Err(self.io_halt(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.bytes += n as u64;
                    b = &b[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_halt(e)),
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Halt> {
        self.out.flush().await.map_err(|e| self.io_halt(e))
    }

    fn io_halt(&self, e: io::Error) -> Halt {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Halt::ReaderClosed
        } else {
            Halt::Failed(DataError::Io {
                path: self.fifo.clone(),
                source: e,
            })
        }
    }

    async fn inline(&mut self, b: Bytes) -> Result<(), Halt> {
        if self.ctx.recordio {
            for piece in frame_bytes(&b) {
                self.write(&piece).await?;
            }
            Ok(())
        } else {
            self.write(&b).await
        }
    }

    async fn object(
        &mut self,
        obj: Arc<ObjRef>,
        parts: usize,
        rx: &mut mpsc::Receiver<Piece>,
    ) -> Result<(), Halt> {
        if self.ctx.gzip && obj.size == 0 {
            return Err(Halt::Failed(DataError::Gzip {
                key: obj.key.clone(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "the object is empty"),
            }));
        }
        let raw = queued_body(rx, parts, &self.ctx.channel);
        let data = if self.ctx.gzip {
            gunzip(raw, obj.key.clone())
        } else {
            raw
        };
        if !self.ctx.recordio {
            let mut data = data;
            while let Some(chunk) = data.next().await {
                self.write(&chunk?).await?;
            }
            return Ok(());
        }
        let (client, retries, gzip) = (
            self.ctx.client.clone(),
            self.ctx.body_retries,
            self.ctx.gzip,
        );
        let scout_obj = obj.clone();
        let scout = move |from: u64| -> Chunks<'static> {
            if gzip {
                let compressed =
                    object_stream(client, scout_obj.clone(), 0, scout_obj.size, retries)
                        .map_err(Halt::Failed)
                        .boxed();
                skip_bytes(gunzip(compressed, scout_obj.key.clone()), from)
            } else {
                object_stream(client, scout_obj.clone(), from, scout_obj.size, retries)
                    .map_err(Halt::Failed)
                    .boxed()
            }
        };
        self.framed(data, &obj.key, scout).await
    }

    /// Writes `data` as one RecordIO record (see the module doc for the scout).
    async fn framed(
        &mut self,
        mut data: Chunks<'_>,
        key: &str,
        scout: impl FnOnce(u64) -> Chunks<'static>,
    ) -> Result<(), Halt> {
        let mut head = Vec::new();
        let mut held = 0usize;
        let mut complete = false;
        while held < self.ctx.recordio_buffer {
            match data.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    held += chunk.len();
                    head.push(chunk);
                }
                None => {
                    complete = true;
                    break;
                }
            }
        }
        let head_stream = futures::stream::iter(head.clone().into_iter().map(Ok));
        let mut lookahead: Chunks<'_> = if complete {
            head_stream.boxed()
        } else {
            tracing::debug!(
                key,
                buffered = held,
                "framing a large payload with a scout read"
            );
            head_stream.chain(scout(held as u64)).boxed()
        };
        let mut body = Cursor {
            chunks: futures::stream::iter(head.into_iter().map(Ok))
                .chain(data)
                .boxed(),
            pending: Bytes::new(),
        };
        let ctx = self.ctx;
        let changed = |what: &str| {
            Halt::Failed(DataError::Pipe {
                channel: ctx.channel.clone(),
                reason: format!("{key}: {what} (did the object change while being read?)"),
            })
        };
        let mut finder = BoundaryFinder::new();
        let mut framer = Framer::new();
        loop {
            let boundary = loop {
                if let Some(b) = finder.boundary(framer.part_start()) {
                    break b;
                }
                match lookahead.next().await {
                    Some(chunk) => finder.feed(chunk?),
                    None => finder.finish(),
                }
            };
            let part = framer.next_part(boundary);
            self.write(&part.header()).await?;
            let mut left = u64::from(part.len);
            while left > 0 {
                let Some(chunk) = body.take(left).await? else {
                    return Err(changed("the payload ended early"));
                };
                left -= chunk.len() as u64;
                self.write(&chunk).await?;
            }
            if part.skip > 0 {
                let mut magic = Vec::with_capacity(4);
                while magic.len() < 4 {
                    let Some(chunk) = body.take(4 - magic.len() as u64).await? else {
                        return Err(changed("the payload ended early"));
                    };
                    magic.extend_from_slice(&chunk);
                }
                if magic != MAGIC_BYTES {
                    return Err(changed("the payload differs between two reads"));
                }
            }
            if part.last {
                self.write(&[0u8; 3][..part.padding()]).await?;
                if body.take(1).await?.is_some() {
                    return Err(changed("the payload is longer than expected"));
                }
                return Ok(());
            }
        }
    }
}

/// A chunk stream read by byte counts.
struct Cursor<'a> {
    chunks: Chunks<'a>,
    pending: Bytes,
}

impl Cursor<'_> {
    /// Up to `max` (> 0) next bytes, or `None` at the end.
    async fn take(&mut self, max: u64) -> Result<Option<Bytes>, Halt> {
        while self.pending.is_empty() {
            match self.chunks.next().await {
                Some(chunk) => self.pending = chunk?,
                None => return Ok(None),
            }
        }
        let n = (max as usize).min(self.pending.len());
        Ok(Some(self.pending.split_to(n)))
    }
}

/// The bytes of the current object: the chunks of its next `parts` queued ranges.
fn queued_body<'a>(
    rx: &'a mut mpsc::Receiver<Piece>,
    parts: usize,
    channel: &'a str,
) -> Chunks<'a> {
    struct State<'r> {
        rx: &'r mut mpsc::Receiver<Piece>,
        left: usize,
        current: Option<super::fetch::Fetched>,
        channel: &'r str,
    }
    let state = State {
        rx,
        left: parts,
        current: None,
        channel,
    };
    futures::stream::try_unfold(state, |mut st| async move {
        loop {
            if let Some(f) = &mut st.current {
                if let Some(chunk) = f.chunks.pop_front() {
                    return Ok(Some((chunk, st)));
                }
                // Returns this range's bytes to the budget.
                st.current = None;
            }
            if st.left == 0 {
                return Ok(None);
            }
            match st.rx.recv().await {
                Some(Piece::Range(task)) => {
                    st.left -= 1;
                    let fetched = task.await.map_err(|e| {
                        Halt::Failed(DataError::Pipe {
                            channel: st.channel.to_string(),
                            reason: format!("internal task failed: {e}"),
                        })
                    })??;
                    st.current = Some(fetched);
                }
                Some(_) => {
                    return Err(Halt::Failed(DataError::Pipe {
                        channel: st.channel.to_string(),
                        reason: "a payload arrived in the middle of an object".into(),
                    }));
                }
                None => return Err(Halt::Starved),
            }
        }
    })
    .boxed()
}

/// Decompresses a gzip stream (all members) on the fly, in bounded pieces.
fn gunzip(compressed: Chunks<'_>, key: String) -> Chunks<'_> {
    let reader = StreamReader::new(compressed.map_err(io::Error::other));
    let mut decoder = GzipDecoder::new(reader);
    decoder.multiple_members(true);
    ReaderStream::with_capacity(decoder, 256 << 10)
        .map_err(move |e| from_io(e, &key))
        .boxed()
}

/// Recovers a [`Halt`] that travelled through an `io::Error`, or reports a decoding error.
fn from_io(e: io::Error, key: &str) -> Halt {
    if e.get_ref().is_some_and(|inner| inner.is::<Halt>()) {
        if let Some(Ok(halt)) = e.into_inner().map(|inner| inner.downcast::<Halt>()) {
            return *halt;
        }
        return Halt::Failed(DataError::Gzip {
            key: key.to_string(),
            source: io::Error::other("an error was lost while decompressing"),
        });
    }
    Halt::Failed(DataError::Gzip {
        key: key.to_string(),
        source: e,
    })
}

/// `chunks` without its first `n` bytes.
fn skip_bytes(chunks: Chunks<'static>, n: u64) -> Chunks<'static> {
    let mut left = n;
    chunks
        .try_filter_map(move |mut chunk| {
            let drop = left.min(chunk.len() as u64);
            left -= drop;
            let _ = chunk.split_to(drop as usize);
            futures::future::ready(Ok((!chunk.is_empty()).then_some(chunk)))
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> Chunks<'static> {
        let v: Vec<Result<Bytes, Halt>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn skip_bytes_crosses_chunks() {
        let got: Vec<Bytes> = skip_bytes(chunks(&[b"ab", b"cde", b"f"]), 3)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), b"def");
    }

    #[tokio::test]
    async fn gunzip_decodes_members_and_reports_garbage() {
        use std::io::Write;
        let mut all = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            all.extend(enc.finish().unwrap());
        }
        let (a, b) = all.split_at(7);
        let s = futures::stream::iter(vec![
            Ok(Bytes::copy_from_slice(a)),
            Ok(Bytes::copy_from_slice(b)),
        ])
        .boxed();
        let got: Vec<Bytes> = gunzip(s, "k".into()).try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello world");

        let bad = chunks(&[b"this is not gzip"]);
        let err = gunzip(bad, "k".into())
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(matches!(err, Halt::Failed(DataError::Gzip { .. })), "{err}");
    }

    #[tokio::test]
    async fn gunzip_passes_storage_errors_through() {
        let s = futures::stream::iter(vec![Err(Halt::Starved)]).boxed();
        let err = gunzip(s, "k".into())
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(matches!(err, Halt::Starved), "{err}");
    }
}
