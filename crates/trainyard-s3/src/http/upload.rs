//! Uploads: a single PUT for small bodies, multipart for large files.
//!
//! Model and checkpoint archives can be many GiB, so a file above
//! [`S3Config::multipart_threshold`](super::S3Config) is sent as parts of
//! `multipart_part_size` bytes, `upload_concurrency` of them in flight at once. Each part is
//! read from the file into memory just before it is sent (so the SDK can sign its payload and
//! a retry can resend it without rereading), which bounds memory to `upload_concurrency`
//! parts whatever the file size. A failed upload is aborted, so no orphaned parts keep
//! costing storage. Files at or below the threshold are read whole and sent with one PUT,
//! which is cheaper than three multipart requests.

use std::path::Path;
use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::stream::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::errors::Target;
use super::{Inner, unquote_etag};
use crate::ObjectError;
use crate::client::{ObjectMeta, PutBody};

/// Most parts one multipart upload may have.
const MAX_PARTS: u64 = 10_000;

pub(super) async fn put(
    inner: &Inner,
    bucket: &str,
    key: &str,
    body: PutBody,
) -> Result<ObjectMeta, ObjectError> {
    let t = Target {
        operation: "PutObject",
        bucket,
        key,
    };
    let path = match body {
        PutBody::Bytes(bytes) => return put_single(inner, t, bytes).await,
        PutBody::File(path) => path,
    };
    let io = |e: std::io::Error| ObjectError::Io {
        operation: "PutObject",
        bucket: bucket.to_string(),
        key: key.to_string(),
        source: std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())),
    };
    let len = tokio::fs::metadata(&path).await.map_err(io)?.len();
    if len <= inner.config.multipart_threshold {
        let data = tokio::fs::read(&path).await.map_err(io)?;
        if data.len() as u64 != len {
            return Err(t.client(format!(
                "`{}` changed size while it was read",
                path.display()
            )));
        }
        return put_single(inner, t, Bytes::from(data)).await;
    }
    multipart(inner, bucket, key, &path, len).await
}

async fn put_single(inner: &Inner, t: Target<'_>, bytes: Bytes) -> Result<ObjectMeta, ObjectError> {
    let sdk = inner.sdk(t.bucket);
    let size = bytes.len() as u64;
    let out = inner
        .retry()
        .run(t.operation, || async {
            sdk.put_object()
                .bucket(t.bucket)
                .key(t.key)
                .content_length(size as i64)
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await
                .map_err(|e| t.sdk(e))
        })
        .await?;
    Ok(ObjectMeta {
        key: t.key.to_string(),
        size,
        last_modified: SystemTime::now(),
        etag: unquote_etag(out.e_tag()),
    })
}

/// The part size for a file of `len` bytes: the configured size, grown so that the file
/// needs at most [`MAX_PARTS`] parts.
fn part_size_for(len: u64, configured: u64) -> u64 {
    configured.max(len.div_ceil(MAX_PARTS))
}

async fn multipart(
    inner: &Inner,
    bucket: &str,
    key: &str,
    path: &Path,
    len: u64,
) -> Result<ObjectMeta, ObjectError> {
    let sdk = inner.sdk(bucket);
    let t = Target {
        operation: "CreateMultipartUpload",
        bucket,
        key,
    };
    let created = inner
        .retry()
        .run(t.operation, || async {
            sdk.create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| t.sdk(e))
        })
        .await?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| t.client("the response has no UploadId"))?
        .to_string();
    let part_size = part_size_for(len, inner.config.multipart_part_size);
    let parts = len.div_ceil(part_size);
    tracing::debug!(
        bucket,
        key,
        len,
        part_size,
        parts,
        "multipart upload started"
    );

    let result = async {
        let mut done: Vec<CompletedPart> = futures::stream::iter(0..parts)
            .map(|i| {
                let offset = i * part_size;
                let size = part_size.min(len - offset);
                upload_part(inner, bucket, key, &upload_id, path, i + 1, offset, size)
            })
            .buffer_unordered(inner.config.upload_concurrency)
            .try_collect()
            .await?;
        done.sort_by_key(|p| p.part_number());
        let t = Target {
            operation: "CompleteMultipartUpload",
            bucket,
            key,
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(done))
            .build();
        inner
            .retry()
            .run(t.operation, || async {
                sdk.complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(completed.clone())
                    .send()
                    .await
                    .map_err(|e| t.sdk(e))
            })
            .await
    }
    .await;

    match result {
        Ok(out) => Ok(ObjectMeta {
            key: key.to_string(),
            size: len,
            last_modified: SystemTime::now(),
            etag: unquote_etag(out.e_tag()),
        }),
        Err(err) => {
            let t = Target {
                operation: "AbortMultipartUpload",
                bucket,
                key,
            };
            let aborted = inner
                .retry()
                .run(t.operation, || async {
                    sdk.abort_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .send()
                        .await
                        .map_err(|e| t.sdk(e))
                })
                .await;
            if let Err(abort_err) = aborted {
                tracing::warn!(bucket, key, error = %abort_err, "could not abort a failed multipart upload; its parts remain until a lifecycle rule removes them");
            }
            Err(err)
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one part of one upload, all needed"
)]
async fn upload_part(
    inner: &Inner,
    bucket: &str,
    key: &str,
    upload_id: &str,
    path: &Path,
    number: u64,
    offset: u64,
    size: u64,
) -> Result<CompletedPart, ObjectError> {
    let t = Target {
        operation: "UploadPart",
        bucket,
        key,
    };
    let io = |e: std::io::Error| ObjectError::Io {
        operation: "UploadPart",
        bucket: bucket.to_string(),
        key: key.to_string(),
        source: std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())),
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    // INVARIANT: size <= part size, which is far below usize::MAX on 64-bit targets.
    let mut buf = vec![0u8; size as usize];
    file.read_exact(&mut buf).await.map_err(io)?;
    let data = Bytes::from(buf);
    let number = i32::try_from(number).map_err(|_| t.client("too many parts"))?;
    let sdk = inner.sdk(bucket);
    let out = inner
        .retry()
        .run(t.operation, || async {
            sdk.upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(size as i64)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| t.sdk(e))
        })
        .await?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_to_stay_within_ten_thousand_parts() {
        let mib = 1u64 << 20;
        assert_eq!(part_size_for(100 * mib, 16 * mib), 16 * mib);
        let huge = 1u64 << 40; // 1 TiB
        let p = part_size_for(huge, 16 * mib);
        assert!(huge.div_ceil(p) <= MAX_PARTS);
        assert!(p > 16 * mib);
    }
}
