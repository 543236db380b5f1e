//! The behaviour every [`ObjectClient`] must show, as public async test functions.
//!
//! The data plane is written against the trait, not against a backend, so each backend must
//! agree on the details it relies on: byte-wise key order (`a-c` before `a/b`), pages of at
//! most 1,000 keys with working continuation, common prefixes, keys that look like paths but
//! are not (`x/../y`, `a//b`, `dir/`) coming back verbatim, exact ranged reads and precise
//! errors. Writing the checks once and running them against every backend (the embedded
//! store always, a real S3-compatible server when one is configured) is what keeps the
//! backends interchangeable; this is the pattern of object_store's `integration.rs`.
//!
//! Each function takes the client, a bucket that exists (or, for the embedded store, may be
//! created by the first write) and a prefix unique to the run, writes only under that prefix,
//! deletes what it wrote, and panics with a message naming the backend when a check fails.
//! [`run_all`] runs them in sequence, each under its own sub-prefix, and reports how long
//! each took.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::{ObjectClient, ObjectClientExt, ObjectError, ObjectMeta, PutBody};

/// Size of the object [`large_object`] writes: above the S3 client's default multipart
/// threshold (16 MiB), so that path is exercised too.
pub const LARGE_OBJECT_SIZE: usize = 20 << 20;

/// Keys [`unusual_keys`] stores and expects back verbatim (each under the test prefix).
pub const UNUSUAL_KEYS: &[&str] = &[
    "with space",
    "two  spaces ",
    "plus+sign",
    "a+b c",
    "percent%20literal",
    "unicode-é-日本語",
    "emoji-😀",
    "x/../y",
    "./dot",
    "dots/..",
    "double//slash",
    "folder-marker/",
    "question?mark",
    "hash#tag",
    "amp&eq=1",
    "tilde~colon:semi;",
    "quote'dq\"",
    "angle<>brackets",
    "back\\slash",
    "tab\tchar",
];

/// A prefix no earlier run has used: `base` followed by a time- and process-based nonce and
/// `/`.
pub fn unique_prefix(base: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{base}{nanos:x}-{}/", std::process::id())
}

/// Deterministic, non-repeating test bytes: the same `(len, seed)` always gives the same data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (i ^ u64::from(seed) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> 56) as u8
        })
        .collect()
}

/// Runs every check under its own sub-prefix of `prefix`; returns each check's name and
/// duration.
pub async fn run_all(
    client: &dyn ObjectClient,
    bucket: &str,
    prefix: &str,
) -> Vec<(&'static str, Duration)> {
    let mut timings = Vec::new();
    macro_rules! case {
        ($name:ident) => {{
            let started = Instant::now();
            $name(client, bucket, &format!("{prefix}{}/", stringify!($name))).await;
            let took = started.elapsed();
            tracing::info!(
                case = stringify!($name),
                ms = took.as_millis() as u64,
                "conformance case passed"
            );
            timings.push((stringify!($name), took));
        }};
    }
    case!(put_get_head_delete);
    case!(empty_objects);
    case!(not_found);
    case!(missing_bucket);
    case!(ranged_gets);
    case!(listing_order);
    case!(delimiter_listing);
    case!(unusual_keys);
    case!(pagination);
    case!(large_object);
    case!(concurrent_ranged_gets);
    timings
}

/// Put, head, get, overwrite, delete, and delete again (a no-op), with bytes and with a file.
pub async fn put_get_head_delete(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let key = format!("{prefix}object.txt");
    let put = client
        .put(
            bucket,
            &key,
            PutBody::Bytes(Bytes::from_static(b"hello world")),
        )
        .await
        .unwrap_or_else(|e| panic!("{who}: put {key}: {e}"));
    assert_eq!(put.key, key, "{who}: put returns the key");
    assert_eq!(put.size, 11, "{who}: put returns the size");

    let head = client
        .head(bucket, &key)
        .await
        .unwrap_or_else(|e| panic!("{who}: head {key}: {e}"));
    assert_eq!(
        (head.key.as_str(), head.size),
        (key.as_str(), 11),
        "{who}: head"
    );
    let etag = head.etag.clone().unwrap_or_default();
    assert!(
        !etag.is_empty() && !etag.contains('"'),
        "{who}: head gives an ETag without quotes, got {:?}",
        head.etag
    );
    if let Some(put_etag) = &put.etag {
        assert_eq!(put_etag, &etag, "{who}: put and head agree on the ETag");
    }
    let age = SystemTime::now()
        .duration_since(head.last_modified)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(3600),
        "{who}: last_modified is recent, got {:?}",
        head.last_modified
    );

    let got = client
        .get(bucket, &key, None)
        .await
        .unwrap_or_else(|e| panic!("{who}: get: {e}"));
    assert_eq!(got.meta.size, 11, "{who}: get meta size");
    assert_eq!(
        got.meta.etag.as_deref(),
        Some(etag.as_str()),
        "{who}: get ETag"
    );
    assert_eq!(
        collect(got.body).await.ok().as_deref(),
        Some(&b"hello world"[..]),
        "{who}: get body"
    );

    client
        .put(
            bucket,
            &key,
            PutBody::Bytes(Bytes::from_static(b"replaced")),
        )
        .await
        .unwrap_or_else(|e| panic!("{who}: overwrite: {e}"));
    let body = client
        .get_bytes(bucket, &key)
        .await
        .unwrap_or_else(|e| panic!("{who}: get after overwrite: {e}"));
    assert_eq!(
        &body[..],
        b"replaced",
        "{who}: overwrite replaces the object"
    );
    assert_eq!(
        client.head(bucket, &key).await.map(|m| m.size).ok(),
        Some(8),
        "{who}: head after overwrite"
    );

    let file_key = format!("{prefix}from-file.bin");
    let data = pattern(100_000, 1);
    let path = temp_file(&data).await;
    let res = client
        .put(bucket, &file_key, PutBody::File(path.clone()))
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    let meta = res.unwrap_or_else(|e| panic!("{who}: put file: {e}"));
    assert_eq!(meta.size, 100_000, "{who}: put file size");
    let back = client
        .get_bytes(bucket, &file_key)
        .await
        .unwrap_or_else(|e| panic!("{who}: get file object: {e}"));
    assert!(
        back[..] == data[..],
        "{who}: file object reads back bit-exact"
    );

    for k in [&key, &file_key] {
        client
            .delete(bucket, k)
            .await
            .unwrap_or_else(|e| panic!("{who}: delete {k}: {e}"));
        let err = client
            .head(bucket, k)
            .await
            .expect_err("head after delete must fail");
        assert!(
            err.is_not_found(),
            "{who}: head after delete is NotFound, got {err}"
        );
        client
            .delete(bucket, k)
            .await
            .unwrap_or_else(|e| panic!("{who}: deleting a missing object succeeds, got {e}"));
    }
    assert_empty(client, bucket, prefix).await;
}

/// Zero-byte objects: put, head, get (whole and `0..0`), list, from bytes and from a file.
pub async fn empty_objects(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let key = format!("{prefix}empty");
    let meta = client
        .put(bucket, &key, PutBody::Bytes(Bytes::new()))
        .await
        .unwrap_or_else(|e| panic!("{who}: put empty: {e}"));
    assert_eq!(meta.size, 0);
    assert_eq!(
        client.head(bucket, &key).await.map(|m| m.size).ok(),
        Some(0),
        "{who}: head empty"
    );
    let got = client
        .get(bucket, &key, None)
        .await
        .unwrap_or_else(|e| panic!("{who}: get empty: {e}"));
    assert_eq!(got.meta.size, 0);
    assert_eq!(
        collect(got.body).await.ok().map(|b| b.len()),
        Some(0),
        "{who}: empty body"
    );
    let got = client
        .get(bucket, &key, Some(0..0))
        .await
        .unwrap_or_else(|e| panic!("{who}: get 0..0 of empty: {e}"));
    assert_eq!(
        collect(got.body).await.ok().map(|b| b.len()),
        Some(0),
        "{who}: empty range of empty object"
    );
    assert_eq!(
        client.get_bytes(bucket, &key).await.map(|b| b.len()).ok(),
        Some(0)
    );

    let file_key = format!("{prefix}empty-file");
    let path = temp_file(&[]).await;
    let res = client
        .put(bucket, &file_key, PutBody::File(path.clone()))
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    res.unwrap_or_else(|e| panic!("{who}: put empty file: {e}"));

    let listed = list_keys(client, bucket, prefix).await;
    assert_eq!(
        listed,
        [key.clone(), file_key.clone()],
        "{who}: empty objects are listed"
    );
    let sizes: Vec<u64> = client
        .list_vec(bucket, prefix)
        .await
        .unwrap_or_default()
        .iter()
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [0, 0], "{who}: listed sizes of empty objects");
    delete_all(client, bucket, prefix).await;
}

/// Missing keys: head, get and ranged get fail with NotFound; delete succeeds; an empty prefix
/// lists nothing.
pub async fn not_found(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let key = format!("{prefix}never-written");
    let err = client
        .head(bucket, &key)
        .await
        .expect_err("head of a missing key must fail");
    assert!(
        err.is_not_found(),
        "{who}: head of a missing key is NotFound, got {err}"
    );
    let err = client
        .get(bucket, &key, None)
        .await
        .expect_err("get of a missing key must fail");
    assert!(
        err.is_not_found(),
        "{who}: get of a missing key is NotFound, got {err}"
    );
    let err = client
        .get(bucket, &key, Some(0..10))
        .await
        .expect_err("ranged get of a missing key must fail");
    assert!(
        err.is_not_found(),
        "{who}: ranged get of a missing key is NotFound, got {err}"
    );
    client
        .delete(bucket, &key)
        .await
        .unwrap_or_else(|e| panic!("{who}: delete of a missing key succeeds, got {e}"));
    assert_empty(client, bucket, prefix).await;
    assert!(!err.is_retryable(), "{who}: NotFound is not retryable");
}

/// Listing a bucket that does not exist fails with NoSuchBucket.
pub async fn missing_bucket(client: &dyn ObjectClient, _bucket: &str, _prefix: &str) {
    let who = client.describe();
    let missing = format!("trainyard-missing-{}", &unique_prefix("")[..12]);
    match client.list_page(&missing, "", None, None).await {
        Err(ObjectError::NoSuchBucket { bucket }) => assert_eq!(bucket, missing),
        other => {
            panic!("{who}: listing missing bucket {missing} gives NoSuchBucket, got {other:?}")
        }
    }
}

/// Ranged gets at the start, middle and end, empty ranges, and ranges outside the object.
pub async fn ranged_gets(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let key = format!("{prefix}ranges.bin");
    let data = pattern(10_000, 2);
    client
        .put(bucket, &key, PutBody::Bytes(Bytes::from(data.clone())))
        .await
        .unwrap_or_else(|e| panic!("{who}: put: {e}"));
    for r in [
        0..1,
        0..100,
        5_000..6_000,
        9_999..10_000,
        0..10_000,
        1..9_999,
        10..10,
        10_000..10_000,
    ] {
        let got = read_range(client, bucket, &key, Some(r.clone()))
            .await
            .unwrap_or_else(|e| panic!("{who}: range {r:?}: {e}"));
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "{who}: range {r:?} bytes"
        );
    }
    let got = client
        .get(bucket, &key, Some(100..200))
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        got.meta.size, 10_000,
        "{who}: a ranged get reports the full object size"
    );
    for r in [
        10_000..10_001,
        9_000..10_001,
        10_001..10_002,
        20_000..30_000,
        // A reversed range (start after end) is invalid too.
        Range { start: 6, end: 5 },
    ] {
        match client.get(bucket, &key, Some(r.clone())).await {
            Err(ObjectError::InvalidRange {
                start, end, size, ..
            }) => {
                assert_eq!(
                    (start, end, size),
                    (r.start, r.end, 10_000),
                    "{who}: range {r:?} error fields"
                );
            }
            Err(e) => panic!("{who}: range {r:?} is InvalidRange, got {e}"),
            Ok(_) => panic!("{who}: range {r:?} is InvalidRange, got a body"),
        }
    }
    delete_all(client, bucket, prefix).await;
}

/// Listings come in byte-wise key order (`a-c` < `a/b` < `a0`, upper case before lower case,
/// multi-byte UTF-8 last).
pub async fn listing_order(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let names = ["z", "a/b", "é", "a-c", "aa", "B", "a0", "a/b-c", "a.b", "~"];
    put_empty_all(client, bucket, prefix, &names).await;
    let mut expected: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        list_keys(client, bucket, prefix).await,
        expected,
        "{who}: byte-wise order"
    );
    let page = client
        .list_page(bucket, prefix, None, None)
        .await
        .unwrap_or_else(|e| panic!("{who}: list_page: {e}"));
    let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(keys, expected, "{who}: one page, byte-wise order");
    assert!(
        page.next_token.is_none(),
        "{who}: a short listing has no continuation token"
    );
    // A prefix is a plain string prefix, not a folder.
    let a = list_keys(client, bucket, &format!("{prefix}a")).await;
    let expected_a: Vec<String> = expected
        .iter()
        .filter(|k| k[prefix.len()..].starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(
        a, expected_a,
        "{who}: prefix `a` matches `a-c`, `a/b`, `aa` alike"
    );
    delete_all(client, bucket, prefix).await;
}

/// Delimiter listings: objects directly under the prefix plus common prefixes, for a prefix
/// with and without a trailing `/`.
pub async fn delimiter_listing(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let names = ["p/a", "p/b/c", "p/b/d", "p/c/e/f", "p/z", "p-x", "q"];
    put_empty_all(client, bucket, prefix, &names).await;
    let (objects, prefixes) = list_delimited(client, bucket, &format!("{prefix}p/")).await;
    assert_eq!(
        objects,
        [format!("{prefix}p/a"), format!("{prefix}p/z")],
        "{who}: objects under p/"
    );
    assert_eq!(
        prefixes,
        [format!("{prefix}p/b/"), format!("{prefix}p/c/")],
        "{who}: common prefixes under p/"
    );
    let (objects, prefixes) = list_delimited(client, bucket, &format!("{prefix}p")).await;
    assert_eq!(objects, [format!("{prefix}p-x")], "{who}: objects under p");
    assert_eq!(
        prefixes,
        [format!("{prefix}p/")],
        "{who}: common prefixes under p"
    );
    let (objects, prefixes) = list_delimited(client, bucket, prefix).await;
    assert_eq!(
        objects,
        [format!("{prefix}p-x"), format!("{prefix}q")],
        "{who}: objects at the top"
    );
    assert_eq!(
        prefixes,
        [format!("{prefix}p/")],
        "{who}: common prefixes at the top"
    );
    delete_all(client, bucket, prefix).await;
}

/// Keys with spaces, `+`, `%`, unicode, and path-like segments (`x/../y`, `a//b`, `dir/`) are
/// stored, listed, read and deleted verbatim.
pub async fn unusual_keys(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let keys: Vec<String> = UNUSUAL_KEYS
        .iter()
        .map(|k| format!("{prefix}{k}"))
        .collect();
    for k in &keys {
        client
            .put(
                bucket,
                k,
                PutBody::Bytes(Bytes::from(k.clone().into_bytes())),
            )
            .await
            .unwrap_or_else(|e| panic!("{who}: put {k:?}: {e}"));
    }
    let mut expected = keys.clone();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        list_keys(client, bucket, prefix).await,
        expected,
        "{who}: unusual keys listed verbatim, in order"
    );
    for k in &keys {
        let body = client
            .get_bytes(bucket, k)
            .await
            .unwrap_or_else(|e| panic!("{who}: get {k:?}: {e}"));
        assert_eq!(&body[..], k.as_bytes(), "{who}: body of {k:?}");
        let meta = client
            .head(bucket, k)
            .await
            .unwrap_or_else(|e| panic!("{who}: head {k:?}: {e}"));
        assert_eq!(
            (meta.key.as_str(), meta.size),
            (k.as_str(), k.len() as u64),
            "{who}: head {k:?}"
        );
        // A prefix that is itself an unusual key matches that key.
        let listed = list_keys(client, bucket, k).await;
        assert!(
            listed.first() == Some(k),
            "{who}: listing prefix {k:?} starts with the key itself, got {listed:?}"
        );
    }
    delete_all(client, bucket, prefix).await;
}

/// More than one page: 1,100 empty objects, pages of at most 1,000 keys, continuation tokens
/// that neither skip nor repeat.
pub async fn pagination(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    const N: usize = 1_100;
    let who = client.describe();
    let names: Vec<String> = (0..N).map(|i| format!("k{i:05}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    put_empty_all(client, bucket, prefix, &refs).await;
    let first = client
        .list_page(bucket, prefix, None, None)
        .await
        .unwrap_or_else(|e| panic!("{who}: first page: {e}"));
    assert!(
        first.objects.len() <= 1_000,
        "{who}: a page has at most 1,000 keys, got {}",
        first.objects.len()
    );
    assert!(
        first.next_token.is_some(),
        "{who}: 1,100 keys need a second page"
    );
    let mut all: Vec<String> = first.objects.into_iter().map(|o| o.key).collect();
    let mut token = first.next_token;
    let mut pages = 1;
    while let Some(t) = token {
        let page = client
            .list_page(bucket, prefix, None, Some(&t))
            .await
            .unwrap_or_else(|e| panic!("{who}: page {}: {e}", pages + 1));
        all.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next_token;
        pages += 1;
        assert!(pages <= N, "{who}: pagination does not end");
    }
    let expected: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    assert_eq!(
        all.len(),
        N,
        "{who}: every key listed exactly once over {pages} pages"
    );
    assert_eq!(
        all, expected,
        "{who}: pages in order without gaps or repeats"
    );
    assert_eq!(
        list_keys(client, bucket, prefix).await,
        expected,
        "{who}: list_all over pages"
    );
    delete_all(client, bucket, prefix).await;
}

/// A multi-MiB object written from a file (multipart on S3) and one written from memory read
/// back bit-exact, whole and across part boundaries.
pub async fn large_object(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let who = client.describe();
    let key = format!("{prefix}large.bin");
    let data = pattern(LARGE_OBJECT_SIZE, 3);
    let path = temp_file(&data).await;
    let res = client.put(bucket, &key, PutBody::File(path.clone())).await;
    let _ = tokio::fs::remove_file(&path).await;
    let put = res.unwrap_or_else(|e| panic!("{who}: put large file: {e}"));
    assert_eq!(put.size, LARGE_OBJECT_SIZE as u64);
    let head = client
        .head(bucket, &key)
        .await
        .unwrap_or_else(|e| panic!("{who}: head large: {e}"));
    assert_eq!(
        head.size, LARGE_OBJECT_SIZE as u64,
        "{who}: large object size"
    );
    if let (Some(a), Some(b)) = (&put.etag, &head.etag) {
        assert_eq!(a, b, "{who}: put and head agree on the large object's ETag");
    }
    let whole = read_range(client, bucket, &key, None)
        .await
        .unwrap_or_else(|e| panic!("{who}: get large: {e}"));
    assert!(
        whole.len() == data.len() && whole == data,
        "{who}: large object reads back bit-exact"
    );
    let boundary = 16u64 << 20;
    for r in [
        boundary - 10..boundary + 10,
        0..(5 << 20) + 1,
        (LARGE_OBJECT_SIZE as u64 - 3)..LARGE_OBJECT_SIZE as u64,
    ] {
        let got = read_range(client, bucket, &key, Some(r.clone()))
            .await
            .unwrap_or_else(|e| panic!("{who}: range {r:?}: {e}"));
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "{who}: large range {r:?}"
        );
    }
    let mem_key = format!("{prefix}from-memory.bin");
    let mem = Bytes::from(pattern(6 << 20, 4));
    client
        .put(bucket, &mem_key, PutBody::Bytes(mem.clone()))
        .await
        .unwrap_or_else(|e| panic!("{who}: put 6 MiB: {e}"));
    let back = client
        .get_bytes(bucket, &mem_key)
        .await
        .unwrap_or_else(|e| panic!("{who}: get 6 MiB: {e}"));
    assert!(back == mem, "{who}: 6 MiB object reads back bit-exact");
    delete_all(client, bucket, prefix).await;
}

/// Many ranged gets of one object in flight at once, as the File-mode downloader issues them.
pub async fn concurrent_ranged_gets(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    const CHUNK: u64 = 64 << 10;
    let who = client.describe();
    let key = format!("{prefix}shared.bin");
    let data = pattern(4 << 20, 5);
    client
        .put(bucket, &key, PutBody::Bytes(Bytes::from(data.clone())))
        .await
        .unwrap_or_else(|e| panic!("{who}: put: {e}"));
    let key = key.as_str();
    let ranges: Vec<Range<u64>> = (0..data.len() as u64 / CHUNK)
        .map(|i| i * CHUNK..(i + 1) * CHUNK)
        .collect();
    let results: Vec<(Range<u64>, Vec<u8>)> = stream::iter(ranges)
        .map(|r| async move {
            let got = read_range(client, bucket, key, Some(r.clone())).await?;
            Ok::<_, ObjectError>((r, got))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{who}: concurrent ranged gets: {e}"));
    assert_eq!(results.len(), 64);
    for (r, got) in results {
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "{who}: concurrent range {r:?}"
        );
    }
    delete_all(client, bucket, prefix).await;
}

async fn collect(mut body: crate::ByteStream) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn read_range(
    client: &dyn ObjectClient,
    bucket: &str,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, ObjectError> {
    let got = client.get(bucket, key, range).await?;
    collect(got.body).await
}

async fn list_keys(client: &dyn ObjectClient, bucket: &str, prefix: &str) -> Vec<String> {
    let listed: Vec<ObjectMeta> = client
        .list_vec(bucket, prefix)
        .await
        .unwrap_or_else(|e| panic!("{}: list {prefix:?}: {e}", client.describe()));
    listed.into_iter().map(|m| m.key).collect()
}

/// Objects and common prefixes of a delimited listing, over all pages.
async fn list_delimited(
    client: &dyn ObjectClient,
    bucket: &str,
    prefix: &str,
) -> (Vec<String>, Vec<String>) {
    let (mut objects, mut prefixes) = (Vec::new(), BTreeSet::new());
    let mut token = None;
    loop {
        let page = client
            .list_page(bucket, prefix, Some("/"), token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{}: delimited list {prefix:?}: {e}", client.describe()));
        objects.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        token = page.next_token;
        if token.is_none() {
            return (objects, prefixes.into_iter().collect());
        }
    }
}

async fn put_empty_all(client: &dyn ObjectClient, bucket: &str, prefix: &str, names: &[&str]) {
    stream::iter(names.iter().map(|n| format!("{prefix}{n}")))
        .map(|k| async move {
            client
                .put(bucket, &k, PutBody::Bytes(Bytes::new()))
                .await
                .map_err(|e| format!("put {k:?}: {e}"))
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", client.describe()));
}

/// Deletes everything under `prefix` and checks that nothing is left.
pub async fn delete_all(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let keys = list_keys(client, bucket, prefix).await;
    stream::iter(keys)
        .map(|k| async move {
            client
                .delete(bucket, &k)
                .await
                .map_err(|e| format!("delete {k:?}: {e}"))
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", client.describe()));
    assert_empty(client, bucket, prefix).await;
}

async fn assert_empty(client: &dyn ObjectClient, bucket: &str, prefix: &str) {
    let left = list_keys(client, bucket, prefix).await;
    assert!(
        left.is_empty(),
        "{}: nothing left under {prefix:?}, found {left:?}",
        client.describe()
    );
}

/// Writes `data` to a fresh file in the system temporary directory.
async fn temp_file(data: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "trainyard-conformance-{}",
        unique_prefix("").trim_end_matches('/')
    ));
    tokio::fs::write(&path, data)
        .await
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirStore;

    #[test]
    fn patterns_are_deterministic_and_seeded() {
        assert_eq!(pattern(1000, 1), pattern(1000, 1));
        assert_ne!(pattern(1000, 1), pattern(1000, 2));
        let p = pattern(1 << 16, 0);
        assert!(
            p.windows(256)
                .take(10)
                .all(|w| w.iter().any(|&b| b != w[0]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_store_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::embedded(dir.path());
        let timings = run_all(&store, "conformance", &unique_prefix("run-")).await;
        assert_eq!(timings.len(), 11);
    }
}
