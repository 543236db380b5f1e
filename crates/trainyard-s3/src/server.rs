//! The S3 REST endpoint of the embedded store (feature `server`).
//!
//! SageMaker's SDKs upload code and data to S3 before they train, so a self-hosted trainyard
//! must speak S3 for its own store. The protocol (routing, request parsing, XML, error
//! documents, SigV4 with presigned URLs and `aws-chunked` bodies) belongs to the `s3s`
//! crate; this module is only the backend: [`StoreEndpoint`] implements `s3s::S3` over the
//! same [`DirStore`] the data plane reads, so an object put here is the object a job's
//! channel downloads. Who may call is decided outside, by the `s3s` auth and access hooks
//! the binary installs.
//!
//! How the store's rules carry over:
//!
//! * **Atomic writes.** Every body (`PutObject`, `CopyObject`, a completed multipart upload)
//!   is written to a temporary file under `root/.tmp/` and renamed into place
//!   ([`DirStore::commit_file`]); a failed or refused write (bad checksum, client gone) leaves
//!   the previous object untouched and nothing partial visible.
//! * **Keys.** Keys are stored exactly as the store's key codec stores them. Writes refuse the
//!   keys no job could download safely ([`check_writable_key`]: `.`/`..` segments, a leading
//!   `/`, NUL); reads and deletes take any key, so such an object put by other means can still
//!   be looked at and removed.
//! * **Checksums.** `Content-MD5` and the `x-amz-checksum-*` values (in headers, or in the
//!   trailer of an `aws-chunked` body, which `s3s` decodes and verifies the signatures of) are
//!   computed over the bytes as they stream and compared before the rename: a mismatch is
//!   `BadDigest` and the object is not written. Checksums are not stored (the store keeps
//!   plain files), so `GetObject` returns none and clients skip response validation.
//! * **ETags.** The store's ETag (modification time and size) everywhere, so a conditional
//!   request uses the same value a listing or the data plane sees. It is not an MD5 digest,
//!   as S3's is not for multipart or encrypted objects.
//! * **Buckets** are the directories under the root. `ExpectedBucketOwner` is compared with the
//!   installation's account id; every bucket belongs to it.
//! * **Multipart uploads** live under `root/.uploads/<upload id>/` (the bucket and key, one file
//!   per part); completing one concatenates the parts into a temporary file and commits it.
//!
//! Not kept: user metadata, `Content-Type` and other stored headers, versions, tags, ACLs.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, BucketLocationConstraint,
    Checksum, ChecksumAlgorithm, CommonPrefix, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopySource,
    CreateBucketInput, CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput,
    DeleteBucketInput, DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput,
    DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, ETag, ETagCondition,
    Error as S3ErrorDto, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput,
    GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, ListPartsInput, ListPartsOutput, Object, Owner, Part, PutObjectInput,
    PutObjectOutput, StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::client::ObjectMeta;
use crate::{DirStore, ObjectError};

/// How many keys a listing page holds at most, as S3.
const MAX_KEYS: usize = 1000;
/// The smallest part but the last, as S3.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// Read size of object bodies.
const CHUNK: usize = 1 << 20;

/// The embedded store as an `s3s` backend.
#[derive(Debug, Clone)]
pub struct StoreEndpoint {
    store: DirStore,
    account_id: String,
    region: String,
}

impl StoreEndpoint {
    /// The endpoint of `store` (an embedded [`DirStore`]), owned by `account_id` in `region`.
    pub fn new(store: DirStore, account_id: impl Into<String>, region: impl Into<String>) -> Self {
        StoreEndpoint {
            store,
            account_id: account_id.into(),
            region: region.into(),
        }
    }

    fn uploads_dir(&self) -> PathBuf {
        self.store.root().join(".uploads")
    }

    fn upload_dir(&self, upload_id: &str) -> S3Result<PathBuf> {
        // INVARIANT: upload ids are hex; anything else never names a directory here.
        if upload_id.is_empty()
            || upload_id.len() > 64
            || !upload_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(s3_error!(NoSuchUpload));
        }
        let dir = self.uploads_dir().join(upload_id);
        if !dir.is_dir() {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(dir)
    }

    /// The upload's directory, checked to belong to `bucket`/`key`.
    fn upload_for(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<PathBuf> {
        let dir = self.upload_dir(upload_id)?;
        let b = fs::read(dir.join("bucket")).map_err(internal)?;
        let k = fs::read(dir.join("key")).map_err(internal)?;
        if b != bucket.as_bytes() || k != key.as_bytes() {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(dir)
    }

    fn check_owner(&self, expected: Option<&str>) -> S3Result<()> {
        match expected {
            Some(owner) if owner != self.account_id => Err(s3_error!(
                AccessDenied,
                "the bucket is owned by account {}, not {owner}",
                self.account_id
            )),
            _ => Ok(()),
        }
    }

    fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        if crate::validate_bucket_name(bucket).is_ok() && self.store.bucket_dir(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "the bucket `{bucket}` does not exist"
            ))
        }
    }

    fn owner(&self) -> Owner {
        Owner {
            display_name: Some(self.account_id.clone()),
            id: Some(self.account_id.clone()),
        }
    }

    /// Streams `body` into a new temporary file, hashing as it goes; returns the file, its
    /// size and the checksums asked for. The file is removed on failure.
    async fn receive(
        &self,
        body: StreamingBlob,
        mut hasher: Hashes,
    ) -> S3Result<(PathBuf, u64, Hashes)> {
        let tmp = self.store.temp_path().map_err(internal)?;
        let file = fs::File::create(&tmp).map_err(internal)?;
        let mut writer = io::BufWriter::with_capacity(CHUNK, file);
        let mut body = body;
        let mut size = 0u64;
        let result: S3Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    S3Error::with_message(S3ErrorCode::IncompleteBody, format!("{e}"))
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                // Small writes into the buffer; the file system sees 1 MiB writes.
                writer.write_all(&chunk).map_err(internal)?;
            }
            writer.flush().map_err(internal)?;
            Ok(())
        }
        .await;
        drop(writer);
        match result {
            Ok(()) => Ok((tmp, size, hasher)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    async fn commit(&self, bucket: &str, key: &str, tmp: PathBuf) -> S3Result<ObjectMeta> {
        let store = self.store.clone();
        let (b, k) = (bucket.to_owned(), key.to_owned());
        blocking(move || store.commit_file(&b, &k, &tmp).map_err(object_error)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> S3Result<(PathBuf, ObjectMeta)> {
        let store = self.store.clone();
        let (b, k) = (bucket.to_owned(), key.to_owned());
        blocking(move || store.head_file(&b, &k).map_err(object_error)).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max_keys: Option<i32>,
    ) -> S3Result<Listing> {
        self.bucket_exists(bucket)?;
        let store = self.store.clone();
        let (b, p) = (bucket.to_owned(), prefix.to_owned());
        let all = blocking(move || store.walk_all(&b, &p).map_err(object_error)).await?;
        let max = max_keys.map_or(MAX_KEYS, |m| usize::try_from(m).unwrap_or(0).min(MAX_KEYS));
        Ok(paginate(all, prefix, delimiter, after, max))
    }
}

/// One page of a listing, in S3's sense: objects and common prefixes together at most
/// `max_keys` entries, in key order.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    /// The objects of the page.
    pub objects: Vec<ObjectMeta>,
    /// The common prefixes of the page (with a delimiter).
    pub prefixes: Vec<String>,
    /// Whether more entries follow.
    pub truncated: bool,
    /// The last key or prefix of the page: where the next page starts after.
    pub last: Option<String>,
}

/// Pages `all` (every object under `prefix`, in key order) after the key `after`, rolling keys
/// that contain `delimiter` after the prefix into common prefixes.
pub fn paginate(
    all: Vec<ObjectMeta>,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> Listing {
    let mut page = Listing::default();
    let delimiter = delimiter.filter(|d| !d.is_empty());
    for obj in all {
        if obj.key.as_str() <= after || !obj.key.starts_with(prefix) {
            continue;
        }
        let common = delimiter.and_then(|d| {
            obj.key[prefix.len()..]
                .find(d)
                .map(|i| obj.key[..prefix.len() + i + d.len()].to_owned())
        });
        if let Some(cp) = &common {
            if page.prefixes.last() == Some(cp) {
                continue;
            }
            // A prefix the previous page ended on is done.
            if after.starts_with(cp.as_str()) {
                continue;
            }
        }
        if page.objects.len() + page.prefixes.len() == max_keys {
            page.truncated = true;
            break;
        }
        match common {
            Some(cp) => {
                page.last = Some(cp.clone());
                page.prefixes.push(cp);
            }
            None => {
                page.last = Some(obj.key.clone());
                page.objects.push(obj);
            }
        }
    }
    page
}

/// Refuses keys that a write must not create: `.` or `..` segments, a leading `/`, NUL, or
/// more than 1024 bytes (S3's limit). The data plane refuses to download such keys, so an
/// upload of one could never be read by a job.
pub fn check_writable_key(key: &str) -> S3Result<()> {
    let refuse = |why: &str| {
        Err(s3_error!(
            InvalidArgument,
            "the key `{}` is refused: {why}",
            key.escape_debug()
        ))
    };
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.len() > 1024 {
        return Err(s3_error!(KeyTooLongError));
    }
    if key.starts_with('/') {
        return refuse("it starts with '/'");
    }
    if key.contains('\0') {
        return refuse("it contains NUL");
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return refuse("it has a '.' or '..' segment");
    }
    Ok(())
}

/// The checksums of a body, computed as it streams: MD5 always (for `Content-MD5` and part
/// ETags), the `x-amz-checksum-*` algorithms the request names.
struct Hashes {
    md5: s3s::crypto::Md5,
    checksums: s3s::checksum::ChecksumHasher,
}

impl Hashes {
    fn for_request(
        algorithm: Option<&ChecksumAlgorithm>,
        given: &Checksum,
        trailer: Option<&str>,
    ) -> S3Result<Self> {
        use s3s::crypto::Checksum as _;
        let mut checksums = s3s::checksum::ChecksumHasher::default();
        let mut want = |name: &str| -> S3Result<()> {
            match name.to_ascii_uppercase().as_str() {
                "CRC32" => checksums.crc32 = Some(Default::default()),
                "CRC32C" => checksums.crc32c = Some(Default::default()),
                "SHA1" => checksums.sha1 = Some(Default::default()),
                "SHA256" => checksums.sha256 = Some(Default::default()),
                "CRC64NVME" => checksums.crc64nvme = Some(Default::default()),
                other => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "unsupported checksum algorithm `{other}`"
                    ));
                }
            }
            Ok(())
        };
        if let Some(a) = algorithm {
            want(a.as_str())?;
        }
        for (value, name) in [
            (&given.checksum_crc32, "CRC32"),
            (&given.checksum_crc32c, "CRC32C"),
            (&given.checksum_sha1, "SHA1"),
            (&given.checksum_sha256, "SHA256"),
            (&given.checksum_crc64nvme, "CRC64NVME"),
        ] {
            if value.is_some() {
                want(name)?;
            }
        }
        if let Some(t) = trailer.and_then(|t| t.strip_prefix("x-amz-checksum-")) {
            want(t)?;
        }
        Ok(Hashes {
            md5: s3s::crypto::Md5::new(),
            checksums,
        })
    }

    fn update(&mut self, data: &[u8]) {
        use s3s::crypto::Checksum as _;
        self.md5.update(data);
        self.checksums.update(data);
    }

    /// Checks the digests against what the client sent (headers, then trailers); returns the
    /// MD5 in hex and the checksums.
    fn verify(
        self,
        content_md5: Option<&str>,
        mut given: Checksum,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> S3Result<(String, Checksum)> {
        use s3s::crypto::Checksum as _;
        let md5 = self.md5.finalize();
        if let Some(expected) = content_md5 {
            let ok = base64_decode(expected).is_some_and(|d| d[..] == md5[..]);
            if !ok {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                ));
            }
        }
        if let Some(trailers) = trailers.and_then(|t| t.take()) {
            let read = |name: &str| -> S3Result<Option<String>> {
                trailers
                    .get(name)
                    .map(|v| {
                        v.to_str()
                            .map(str::to_owned)
                            .map_err(|_| s3_error!(InvalidArgument, "invalid trailer `{name}`"))
                    })
                    .transpose()
            };
            given.checksum_crc32 = read("x-amz-checksum-crc32")?.or(given.checksum_crc32);
            given.checksum_crc32c = read("x-amz-checksum-crc32c")?.or(given.checksum_crc32c);
            given.checksum_sha1 = read("x-amz-checksum-sha1")?.or(given.checksum_sha1);
            given.checksum_sha256 = read("x-amz-checksum-sha256")?.or(given.checksum_sha256);
            given.checksum_crc64nvme =
                read("x-amz-checksum-crc64nvme")?.or(given.checksum_crc64nvme);
        }
        let got = self.checksums.finalize();
        for (name, expected, computed) in [
            ("CRC32", &given.checksum_crc32, &got.checksum_crc32),
            ("CRC32C", &given.checksum_crc32c, &got.checksum_crc32c),
            ("SHA1", &given.checksum_sha1, &got.checksum_sha1),
            ("SHA256", &given.checksum_sha256, &got.checksum_sha256),
            (
                "CRC64NVME",
                &given.checksum_crc64nvme,
                &got.checksum_crc64nvme,
            ),
        ] {
            if let Some(expected) = expected
                && computed.as_ref() != Some(expected)
            {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} you specified did not match the calculated checksum"
                ));
            }
        }
        Ok((hex(&md5), got))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn checksum_of_put(input: &PutObjectInput) -> Checksum {
    Checksum {
        checksum_crc32: input.checksum_crc32.clone(),
        checksum_crc32c: input.checksum_crc32c.clone(),
        checksum_sha1: input.checksum_sha1.clone(),
        checksum_sha256: input.checksum_sha256.clone(),
        checksum_crc64nvme: input.checksum_crc64nvme.clone(),
        ..Default::default()
    }
}

fn trailer_name(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// The store's errors in S3's codes. Messages name the key; I/O details go to the log only.
fn object_error(e: ObjectError) -> S3Error {
    match e {
        ObjectError::NoSuchBucket { bucket } => {
            s3_error!(NoSuchBucket, "the bucket `{bucket}` does not exist")
        }
        ObjectError::NotFound { key, .. } => {
            s3_error!(NoSuchKey, "the key `{key}` does not exist")
        }
        ObjectError::InvalidKey { key, reason } => {
            s3_error!(InvalidArgument, "the key `{key}` is refused: {reason}")
        }
        ObjectError::InvalidRange { .. } => s3_error!(InvalidRange),
        ObjectError::AccessDenied { .. } => s3_error!(AccessDenied),
        other => internal(other),
    }
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!("S3 endpoint: {e}");
    s3_error!(
        InternalError,
        "the store failed; the server log has the cause"
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> S3Result<T> + Send + 'static,
) -> S3Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(internal(e)))
}

fn etag(meta: &ObjectMeta) -> ETag {
    ETag::Strong(meta.etag.clone().unwrap_or_default())
}

/// Evaluates `If-Match`, `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since` as
/// RFC 9110 and S3 do: `If-Match` takes precedence over `If-Unmodified-Since`, `If-None-Match`
/// over `If-Modified-Since`. A failed `If-None-Match`/`If-Modified-Since` is 304 for reads.
fn check_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let current = etag(meta);
    let modified = time::OffsetDateTime::from(meta.last_modified);
    // HTTP dates have one-second resolution.
    let modified = modified.replace_nanosecond(0).unwrap_or(modified);
    let since = |t: &Timestamp| time::OffsetDateTime::from(t.clone());
    if let Some(cond) = if_match {
        let ok = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.strong_cmp(&current),
        };
        if !ok {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if let Some(t) = if_unmodified_since
        && modified > since(t)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    if let Some(cond) = if_none_match {
        let matches = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.weak_cmp(&current),
        };
        if matches {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = if_modified_since
        && modified <= since(t)
    {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

/// A blocking reader of `len` bytes of `file` from its current position, as a stream that
/// `s3s` can send (it wants `Sync`).
fn file_stream(file: fs::File, len: u64) -> StreamingBlob {
    let stream = futures::stream::unfold((Some(file), len), |(file, remaining)| async move {
        let file = file?;
        if remaining == 0 {
            return None;
        }
        let want = remaining.min(CHUNK as u64) as usize;
        let read =
            tokio::task::spawn_blocking(move || crate::dir_store::read_chunk(file, want)).await;
        match read {
            Ok((_, Ok(buf))) if buf.is_empty() => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object truncated while read",
                )),
                (None, 0),
            )),
            Ok((file, Ok(buf))) => {
                let n = buf.len() as u64;
                Some((Ok(Bytes::from(buf)), (Some(file), remaining - n)))
            }
            Ok((_, Err(e))) => Some((Err(e), (None, 0))),
            Err(e) => Some((Err(io::Error::other(e)), (None, 0))),
        }
    });
    StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream))
}

fn open_at(path: &Path, start: u64) -> S3Result<fs::File> {
    use std::io::Seek;
    let mut file = fs::File::open(path).map_err(internal)?;
    file.seek(io::SeekFrom::Start(start)).map_err(internal)?;
    Ok(file)
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn s3_object(meta: ObjectMeta, encode: bool) -> Object {
    Object {
        e_tag: Some(etag(&meta)),
        last_modified: Some(timestamp(meta.last_modified)),
        size: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
        key: Some(url_encode_if(meta.key, encode)),
        storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
            s3s::dto::ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// `EncodingType=url`: keys and prefixes percent-encoded (all but unreserved and `/`).
fn url_encode_if(text: String, encode: bool) -> String {
    if !encode {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn wants_url(encoding: Option<&s3s::dto::EncodingType>) -> bool {
    encoding.is_some_and(|e| e.as_str().eq_ignore_ascii_case("url"))
}

#[async_trait::async_trait]
impl S3 for StoreEndpoint {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.store.root().to_path_buf();
        let region = self.region.clone();
        let buckets = blocking(move || {
            let mut out = Vec::new();
            let entries = match fs::read_dir(&root) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(internal(e)),
            };
            for entry in entries {
                let entry = entry.map_err(internal)?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() || crate::validate_bucket_name(&name).is_err() {
                    continue;
                }
                let created = meta.created().or_else(|_| meta.modified()).ok();
                out.push(Bucket {
                    name: Some(name),
                    creation_date: created.map(timestamp),
                    bucket_region: Some(region.clone()),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner()),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        crate::validate_bucket_name(&bucket)
            .map_err(|why| s3_error!(InvalidBucketName, "{why}"))?;
        let dir = self.store.bucket_dir(&bucket);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "the bucket `{bucket}` already exists and is yours"
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(internal)?;
            }
            Err(e) => return Err(internal(e)),
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        self.check_owner(req.input.expected_bucket_owner.as_deref())?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        self.check_owner(req.input.expected_bucket_owner.as_deref())?;
        // us-east-1 is the empty constraint, as S3 answers it.
        let constraint = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: constraint,
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        self.bucket_exists(&bucket)?;
        self.check_owner(req.input.expected_bucket_owner.as_deref())?;
        match fs::remove_dir(self.store.bucket_dir(&bucket)) {
            Ok(()) => Ok(S3Response::new(DeleteBucketOutput {})),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Err(s3_error!(
                BucketNotEmpty,
                "the bucket `{bucket}` is not empty"
            )),
            Err(e) => Err(internal(e)),
        }
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailer = trailer_name(&req.headers);
        let input = req.input;
        let early: S3Result<()> = async {
            check_writable_key(&input.key)?;
            self.bucket_exists(&input.bucket)?;
            self.check_owner(input.expected_bucket_owner.as_deref())?;
            if input.if_match.is_some() || input.if_none_match.is_some() {
                match self.head(&input.bucket, &input.key).await {
                    Ok((_, meta)) => check_write_conditions(
                        Some(&meta),
                        input.if_match.as_ref(),
                        input.if_none_match.as_ref(),
                    )?,
                    Err(e) if e.code() == &S3ErrorCode::NoSuchKey => check_write_conditions(
                        None,
                        input.if_match.as_ref(),
                        input.if_none_match.as_ref(),
                    )?,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = early {
            // The refused body is still read to its end: answering before it is consumed
            // leaves the client's next request on this connection to be read from inside it.
            if let Some(mut body) = input.body {
                while body.next().await.is_some() {}
            }
            return Err(e);
        }
        let given = checksum_of_put(&input);
        let hashes = Hashes::for_request(
            input.checksum_algorithm.as_ref(),
            &given,
            trailer.as_deref(),
        )?;
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, io::Error>>())
        });
        let (tmp, _size, hashes) = self.receive(body, hashes).await?;
        let (_, checksum) =
            match hashes.verify(input.content_md5.as_deref(), given, req.trailing_headers) {
                Ok(v) => v,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            };
        let meta = self.commit(&input.bucket, &input.key, tmp).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&meta)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GetObject by part number is not supported"
            ));
        }
        let (path, meta) = self.head(&input.bucket, &input.key).await?;
        check_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (range, content_range) = match &input.range {
            None => (0..meta.size, None),
            Some(r) => {
                let range = r.check(meta.size)?;
                let cr = format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size);
                (range, Some(cr))
            }
        };
        let len = range.end - range.start;
        let start = range.start;
        let file = blocking(move || open_at(&path, start)).await?;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(file_stream(file, len)),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&meta)),
            last_modified: Some(timestamp(meta.last_modified)),
            content_type: Some("binary/octet-stream".into()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let (_, meta) = self.head(&input.bucket, &input.key).await?;
        check_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (len, content_range) = match &input.range {
            None => (meta.size, None),
            Some(r) => {
                let range = r.check(meta.size)?;
                let cr = format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size);
                (range.end - range.start, Some(cr))
            }
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&meta)),
            last_modified: Some(timestamp(meta.last_modified)),
            content_type: Some("binary/octet-stream".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.bucket_exists(&input.bucket)?;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let store = self.store.clone();
        blocking(move || {
            store
                .delete_file(&input.bucket, &input.key)
                .map_err(object_error)
        })
        .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket_exists(&input.bucket)?;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let store = self.store.clone();
        let bucket = input.bucket.clone();
        let keys: Vec<String> = input.delete.objects.into_iter().map(|o| o.key).collect();
        let (deleted, errors) = blocking(move || {
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            for key in keys {
                match store.delete_file(&bucket, &key) {
                    Ok(()) => {
                        if !quiet {
                            deleted.push(DeletedObject {
                                key: Some(key),
                                ..Default::default()
                            });
                        }
                    }
                    Err(e) => {
                        let err = object_error(e);
                        errors.push(S3ErrorDto {
                            code: Some(err.code().as_str().to_owned()),
                            message: err.message().map(str::to_owned),
                            key: Some(key),
                            version_id: None,
                        });
                    }
                }
            }
            Ok((deleted, errors))
        })
        .await?;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket {
            bucket: src_bucket,
            key: src_key,
            version_id,
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "copy sources other than bucket/key"
            ));
        };
        if version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(NoSuchVersion, "the store keeps no versions"));
        }
        check_writable_key(&input.key)?;
        self.bucket_exists(&input.bucket)?;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        self.check_owner(input.expected_source_bucket_owner.as_deref())?;
        let (src_path, src_meta) = self.head(src_bucket, src_key).await?;
        check_conditions(
            &src_meta,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| {
            if e.code() == &S3ErrorCode::NotModified {
                s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )
            } else {
                e
            }
        })?;
        let tmp = self.store.temp_path().map_err(internal)?;
        let tmp2 = tmp.clone();
        blocking(move || fs::copy(&src_path, &tmp2).map(|_| ()).map_err(internal)).await?;
        let meta = self.commit(&input.bucket, &input.key, tmp).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&meta)),
                last_modified: Some(timestamp(meta.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => decode_token(t)?,
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        let page = self
            .list(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                &after,
                input.max_keys,
            )
            .await?;
        let encode = wants_url(input.encoding_type.as_ref());
        let key_count = page.objects.len() + page.prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(url_encode_if(prefix, encode)),
            delimiter: input.delimiter.map(|d| url_encode_if(d, encode)),
            max_keys: Some(input.max_keys.unwrap_or(MAX_KEYS as i32)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page
                .truncated
                .then(|| page.last.as_deref().map(encode_token))
                .flatten(),
            start_after: input.start_after.map(|s| url_encode_if(s, encode)),
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| s3_object(o, encode))
                    .collect(),
            ),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(url_encode_if(p, encode)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input.marker.clone().unwrap_or_default();
        let page = self
            .list(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                &after,
                input.max_keys,
            )
            .await?;
        let encode = wants_url(input.encoding_type.as_ref());
        // S3 gives NextMarker only with a delimiter; clients use the last key otherwise.
        let next_marker = (page.truncated && input.delimiter.is_some())
            .then(|| page.last.clone().map(|m| url_encode_if(m, encode)))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(url_encode_if(prefix, encode)),
            marker: Some(url_encode_if(after, encode)),
            delimiter: input.delimiter.map(|d| url_encode_if(d, encode)),
            max_keys: Some(input.max_keys.unwrap_or(MAX_KEYS as i32)),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| s3_object(o, encode))
                    .collect(),
            ),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(url_encode_if(p, encode)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_writable_key(&input.key)?;
        self.bucket_exists(&input.bucket)?;
        self.check_owner(input.expected_bucket_owner.as_deref())?;
        let upload_id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let dir = self.uploads_dir().join(&upload_id);
        fs::create_dir_all(&dir).map_err(internal)?;
        fs::write(dir.join("bucket"), input.bucket.as_bytes()).map_err(internal)?;
        fs::write(dir.join("key"), input.key.as_bytes()).map_err(internal)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailer = trailer_name(&req.headers);
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let dir = self.upload_for(&input.upload_id, &input.bucket, &input.key)?;
        let given = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            ..Default::default()
        };
        let hashes = Hashes::for_request(
            input.checksum_algorithm.as_ref(),
            &given,
            trailer.as_deref(),
        )?;
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, io::Error>>())
        });
        let (tmp, _size, hashes) = self.receive(body, hashes).await?;
        let (md5, checksum) =
            match hashes.verify(input.content_md5.as_deref(), given, req.trailing_headers) {
                Ok(v) => v,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            };
        let part = dir.join(format!("part-{:05}", input.part_number));
        let write = || -> io::Result<()> {
            fs::write(
                dir.join(format!("part-{:05}.etag", input.part_number)),
                &md5,
            )?;
            fs::rename(&tmp, &part)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(internal(e));
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(md5)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let dir = self.upload_for(&input.upload_id, &input.bucket, &input.key)?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let mut parts = read_parts(&dir)?;
        parts.retain(|p| p.part_number.unwrap_or(0) > marker);
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker),
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            owner: Some(self.owner()),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let dir = self.upload_for(&input.upload_id, &input.bucket, &input.key)?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        if input.if_match.is_some() || input.if_none_match.is_some() {
            let current = match self.head(&input.bucket, &input.key).await {
                Ok((_, meta)) => Some(meta),
                Err(e) if e.code() == &S3ErrorCode::NoSuchKey => None,
                Err(e) => return Err(e),
            };
            check_write_conditions(
                current.as_ref(),
                input.if_match.as_ref(),
                input.if_none_match.as_ref(),
            )?;
        }
        let stored = read_parts(&dir)?;
        let mut files = Vec::with_capacity(requested.len());
        let mut previous = 0;
        for (i, part) in requested.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order"
                ));
            }
            previous = number;
            let Some(have) = stored.iter().find(|p| p.part_number == Some(number)) else {
                return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
            };
            if let (Some(want), Some(got)) = (&part.e_tag, &have.e_tag)
                && want.value() != got.value()
            {
                return Err(s3_error!(
                    InvalidPart,
                    "the ETag of part {number} does not match the uploaded part"
                ));
            }
            let size = have.size.unwrap_or(0) as u64;
            if i + 1 < requested.len() && size < MIN_PART {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {number} is smaller than the minimum allowed size (5 MiB)"
                ));
            }
            files.push(dir.join(format!("part-{number:05}")));
        }
        let tmp = self.store.temp_path().map_err(internal)?;
        let tmp2 = tmp.clone();
        blocking(move || {
            let concat = || -> io::Result<()> {
                let mut out = fs::File::create(&tmp2)?;
                for f in &files {
                    io::copy(&mut fs::File::open(f)?, &mut out)?;
                }
                out.sync_data()
            };
            concat().map_err(|e| {
                let _ = fs::remove_file(&tmp2);
                internal(e)
            })
        })
        .await?;
        let meta = self.commit(&input.bucket, &input.key, tmp).await?;
        let _ = fs::remove_dir_all(&dir);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&meta)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let dir = self.upload_for(&input.upload_id, &input.bucket, &input.key)?;
        fs::remove_dir_all(&dir).map_err(internal)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// `If-Match`/`If-None-Match` on a write (S3's conditional writes): 412 when they fail.
fn check_write_conditions(
    current: Option<&ObjectMeta>,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let failed = || {
        Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ))
    };
    if let Some(cond) = if_none_match
        && current.is_some()
        && (cond.is_any()
            || cond
                .as_etag()
                .zip(current)
                .is_some_and(|(e, m)| e.weak_cmp(&etag(m))))
    {
        return failed();
    }
    if let Some(cond) = if_match {
        match current {
            None => return Err(s3_error!(NoSuchKey, "the key does not exist")),
            Some(m) => {
                if let Some(e) = cond.as_etag()
                    && !e.strong_cmp(&etag(m))
                {
                    return failed();
                }
            }
        }
    }
    Ok(())
}

fn read_parts(dir: &Path) -> S3Result<Vec<Part>> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).map_err(internal)? {
        let entry = entry.map_err(internal)?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix("part-"))
            .filter(|n| !n.contains('.'))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let meta = entry.metadata().map_err(internal)?;
        let md5 =
            fs::read_to_string(dir.join(format!("part-{number:05}.etag"))).unwrap_or_default();
        parts.push(Part {
            part_number: Some(number),
            size: Some(i64::try_from(meta.len()).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(md5)),
            last_modified: meta.modified().ok().map(timestamp),
            ..Default::default()
        });
    }
    parts.sort_by_key(|p| p.part_number);
    Ok(parts)
}

/// Continuation tokens are the last key or prefix of the page, hex-encoded so that any key
/// survives the trip through a query string.
fn encode_token(last: &str) -> String {
    hex(last.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The continuation token provided is incorrect"
        )
    };
    if token.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objs(keys: &[&str]) -> Vec<ObjectMeta> {
        keys.iter()
            .map(|k| ObjectMeta {
                key: (*k).to_owned(),
                size: 1,
                last_modified: SystemTime::UNIX_EPOCH,
                etag: Some("e".into()),
            })
            .collect()
    }

    #[test]
    fn pages_roll_up_common_prefixes_and_resume_after_them() {
        let all = objs(&["p/a", "p/b/1", "p/b/2", "p/c", "p/d/1", "p/e"]);
        let first = paginate(all.clone(), "p/", Some("/"), "", 2);
        assert_eq!(
            first.objects.iter().map(|o| &o.key[..]).collect::<Vec<_>>(),
            ["p/a"]
        );
        assert_eq!(first.prefixes, ["p/b/"]);
        assert!(first.truncated);
        let last = first.last.unwrap();
        let second = paginate(all.clone(), "p/", Some("/"), &last, 2);
        assert_eq!(
            second
                .objects
                .iter()
                .map(|o| &o.key[..])
                .collect::<Vec<_>>(),
            ["p/c"]
        );
        assert_eq!(second.prefixes, ["p/d/"]);
        assert!(second.truncated);
        let third = paginate(all, "p/", Some("/"), &second.last.unwrap(), 2);
        assert_eq!(
            third.objects.iter().map(|o| &o.key[..]).collect::<Vec<_>>(),
            ["p/e"]
        );
        assert!(!third.truncated);
    }

    #[test]
    fn a_full_last_page_is_not_truncated() {
        let page = paginate(objs(&["a", "b"]), "", None, "", 2);
        assert_eq!(page.objects.len(), 2);
        assert!(!page.truncated);
    }

    #[test]
    fn hostile_keys_are_refused_for_writes() {
        for key in ["../x", "a/../b", "a/./b", "/abs", "a\0b", ""] {
            assert!(check_writable_key(key).is_err(), "{key:?}");
        }
        for key in ["a/b.csv", "a//b", "x..y/z", "100%.csv", "a/b/"] {
            assert!(check_writable_key(key).is_ok(), "{key:?}");
        }
    }

    #[test]
    fn continuation_tokens_round_trip_any_key() {
        for key in ["a/b", "ü/%20 x", ""] {
            assert_eq!(decode_token(&encode_token(key)).unwrap(), key);
        }
        assert!(decode_token("zz").is_err());
    }

    #[test]
    fn content_md5_is_checked() {
        let given = Checksum::default();
        let mut h = Hashes::for_request(None, &given, None).unwrap();
        h.update(b"hello");
        // base64 of md5("hello")
        assert!(
            h.verify(Some("XUFAKrxLKna5cZ2REBfFkg=="), given.clone(), None)
                .is_ok()
        );
        let mut h = Hashes::for_request(None, &given, None).unwrap();
        h.update(b"hellO");
        assert!(
            h.verify(Some("XUFAKrxLKna5cZ2REBfFkg=="), given, None)
                .is_err()
        );
    }
}
