//! Ranged gets whose body survives a broken connection.
//!
//! A downloader reads many large ranges at once; on a busy server some responses are cut off
//! (reset, idle timeout, a stalled transfer). Restarting such a get from its first byte would
//! waste what already arrived and, if the caller has already written those bytes, would be
//! wrong. So the body stream counts the bytes it has handed out and, when the response ends
//! early or fails with a retryable error, issues a new ranged GET from exactly that byte, with
//! `If-Match` on the ETag of the first response so that a resumed body can never splice two
//! versions of an object together. Retries are counted per run of failures without progress
//! and bounded by [`RetryConfig::max_attempts`](super::RetryConfig); when they are used up, or
//! the failure is final, the stream yields the error, and a body that ends short always yields
//! [`ObjectError::Truncated`], never a silently short result.
//!
//! S3 cannot express an empty range (`bytes=5-4` is ignored and the whole object returned), so
//! empty ranges are answered from a HEAD. A range reaching past the end of the object is an
//! [`ObjectError::InvalidRange`] here, as in every other backend, although S3 itself would
//! clip it.

use std::ops::Range;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::stream::StreamExt;

use super::errors::{Target, transport_kind};
use super::{Inner, S3Client, size_of, system_time, unquote_etag};
use crate::ObjectError;
use crate::client::{GetObject, ObjectClient, ObjectMeta};

/// A response whose headers have arrived.
struct Opened {
    meta: ObjectMeta,
    /// Offset of the body's first byte in the object.
    start: u64,
    body: ByteStream,
}

pub(super) async fn get(
    client: &S3Client,
    bucket: &str,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<GetObject, ObjectError> {
    let inner = &client.inner;
    let invalid = |r: &Range<u64>, size: u64| ObjectError::InvalidRange {
        bucket: bucket.to_string(),
        key: key.to_string(),
        start: r.start,
        end: r.end,
        size,
    };
    if let Some(r) = range.as_ref().filter(|r| r.start >= r.end) {
        let meta = client.head(bucket, key).await?;
        if r.start > r.end || r.start > meta.size {
            return Err(invalid(r, meta.size));
        }
        return Ok(GetObject {
            meta,
            body: futures::stream::empty().boxed(),
        });
    }
    let t = Target {
        operation: "GetObject",
        bucket,
        key,
    };
    let opened = inner
        .retry()
        .run(t.operation, || open(inner, t, range.clone(), None))
        .await;
    let opened = match (opened, &range) {
        (Err(ObjectError::Service { status: 416, .. }), Some(r)) => {
            let size = client.head(bucket, key).await?.size;
            return Err(invalid(r, size));
        }
        (other, _) => other?,
    };
    let end = match &range {
        Some(r) if r.end > opened.meta.size => return Err(invalid(r, opened.meta.size)),
        Some(r) => r.end,
        None => opened.meta.size,
    };
    let body = Body {
        inner: Arc::clone(inner),
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: opened.meta.etag.clone(),
        first: opened.start,
        pos: opened.start,
        end,
        response: Some(opened.body),
        failures: 0,
        done: false,
    };
    Ok(GetObject {
        meta: opened.meta,
        body: futures::stream::unfold(body, |mut b| async move {
            let item = b.next_chunk().await?;
            Some((item, b))
        })
        .boxed(),
    })
}

/// Sends one GET (ranged when `range` is given, conditional when `if_match` is given) and
/// reads its headers.
async fn open(
    inner: &Inner,
    t: Target<'_>,
    range: Option<Range<u64>>,
    if_match: Option<&str>,
) -> Result<Opened, ObjectError> {
    let mut req = inner.sdk(t.bucket).get_object().bucket(t.bucket).key(t.key);
    if let Some(r) = &range {
        req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
    }
    if let Some(etag) = if_match {
        req = req.if_match(format!("\"{etag}\""));
    }
    let out = req.send().await.map_err(|e| t.sdk(e))?;
    let len = size_of(out.content_length())
        .ok_or_else(|| t.client("the response has no Content-Length"))?;
    let (start, size) = match (&range, out.content_range()) {
        (_, Some(cr)) => {
            let (first, _last, total) = parse_content_range(cr)
                .ok_or_else(|| t.client(format!("unparsable Content-Range `{cr}`")))?;
            (first, total)
        }
        (None, None) => (0, len),
        // A server that ignores Range sends the whole object; from offset 0 that still works.
        (Some(r), None) if r.start == 0 => (0, len),
        (Some(_), None) => {
            return Err(t.client("the server ignored the Range header"));
        }
    };
    if let Some(r) = &range
        && start != r.start
    {
        return Err(t.client(format!(
            "asked for bytes from {} but the response starts at {start}",
            r.start
        )));
    }
    Ok(Opened {
        meta: ObjectMeta {
            key: t.key.to_string(),
            size,
            last_modified: system_time(out.last_modified()),
            etag: unquote_etag(out.e_tag()),
        },
        start,
        body: out.body,
    })
}

/// Parses `bytes FIRST-LAST/TOTAL`.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// State of a get body: where it is, where it must end, and the response it reads from.
struct Body {
    inner: Arc<Inner>,
    bucket: String,
    key: String,
    etag: Option<String>,
    /// First byte of the requested range, for error messages.
    first: u64,
    /// Next byte to hand out.
    pos: u64,
    /// One past the last byte to hand out.
    end: u64,
    /// The response being read; `None` after a failure, until it is resumed.
    response: Option<ByteStream>,
    /// Failures since the last byte that made progress.
    failures: u32,
    done: bool,
}

impl Body {
    fn target(&self) -> Target<'_> {
        Target {
            operation: "GetObject",
            bucket: &self.bucket,
            key: &self.key,
        }
    }

    fn truncated(&self) -> ObjectError {
        ObjectError::Truncated {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            got: self.pos - self.first,
            expected: self.end - self.first,
        }
    }

    /// The next chunk, `None` at the end, or the error that ends the stream.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ObjectError>> {
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.end {
                self.done = true;
                self.response = None;
                return None;
            }
            let Some(response) = self.response.as_mut() else {
                let t = Target {
                    operation: "GetObject",
                    bucket: &self.bucket,
                    key: &self.key,
                };
                match open(
                    &self.inner,
                    t,
                    Some(self.pos..self.end),
                    self.etag.as_deref(),
                )
                .await
                {
                    Ok(opened) => self.response = Some(opened.body),
                    Err(e) => {
                        if let Some(e) = self.fail(e).await {
                            return Some(Err(e));
                        }
                    }
                }
                continue;
            };
            match response.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(mut chunk)) => {
                    let room = self.end - self.pos;
                    if chunk.len() as u64 > room {
                        // INVARIANT: room < chunk.len() <= usize::MAX, so it fits.
                        chunk.truncate(room as usize);
                    }
                    self.pos += chunk.len() as u64;
                    self.failures = 0;
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.response = None;
                    let err = match transport_kind(&e) {
                        Some(kind) if kind != std::io::ErrorKind::UnexpectedEof => {
                            self.target().io(kind, e.to_string())
                        }
                        // A body that fails without an OS error to show for it was cut short.
                        _ => self.truncated(),
                    };
                    if let Some(e) = self.fail(err).await {
                        return Some(Err(e));
                    }
                }
                None => {
                    self.response = None;
                    let err = self.truncated();
                    if let Some(e) = self.fail(err).await {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Records a failure: waits and returns `None` when the body should be resumed, or
    /// returns the error that ends the stream.
    async fn fail(&mut self, err: ObjectError) -> Option<ObjectError> {
        self.failures += 1;
        let retry = self.inner.retry();
        if !retry.should_retry(self.failures, &err) {
            self.done = true;
            return Some(err);
        }
        let delay = retry.backoff(self.failures);
        tracing::debug!(
            bucket = %self.bucket,
            key = %self.key,
            at = self.pos,
            end = self.end,
            attempt = self.failures,
            error = %err,
            "resuming get body"
        );
        tokio::time::sleep(delay).await;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(parse_content_range("bytes 0-99/1234"), Some((0, 99, 1234)));
        assert_eq!(parse_content_range("bytes 5-5/6"), Some((5, 5, 6)));
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
