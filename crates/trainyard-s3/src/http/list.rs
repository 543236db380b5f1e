//! Listing: ListObjectsV2 pages mapped onto [`ListPage`], plus the rules directory buckets
//! need.
//!
//! Keys are requested URL-encoded (`encoding-type=url`) from general-purpose buckets, because
//! a key may hold characters XML 1.0 cannot carry; they are decoded here (`+` is a space, as
//! S3 encodes it) only when the response confirms the encoding, so a server that ignores the
//! parameter still works.
//!
//! S3 Express One Zone directory buckets list in no particular order and accept only prefixes
//! that end in `/` (data.md §9). For them a prefix such as `data/train` is listed as its
//! parent folder `data/` and filtered here, every page is sorted, and [`list_all`] gathers the
//! whole listing and sorts it before yielding anything, since pages of an unordered listing
//! cannot be merged in order otherwise. For general-purpose buckets `list_all` streams page by
//! page and holds one page in memory.

use futures::stream::{BoxStream, StreamExt};

use super::errors::Target;
use super::{Inner, size_of, system_time, unquote_etag};
use crate::client::{ListPage, ObjectMeta};
use crate::{ObjectError, is_directory_bucket};

pub(super) async fn list_page(
    inner: &Inner,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    continuation: Option<&str>,
) -> Result<ListPage, ObjectError> {
    let t = Target {
        operation: "ListObjectsV2",
        bucket,
        key: prefix,
    };
    let directory = is_directory_bucket(bucket);
    let delimiter = delimiter.filter(|d| !d.is_empty());
    if directory && delimiter.is_some_and(|d| d != "/") {
        return Err(t.client("directory buckets support only `/` as delimiter"));
    }
    let request_prefix = if directory {
        parent_folder(prefix)
    } else {
        prefix
    };
    let sdk = inner.sdk(bucket);
    let out = inner
        .retry()
        .run(t.operation, || async {
            let mut req = sdk
                .list_objects_v2()
                .bucket(bucket)
                .set_delimiter(delimiter.map(str::to_string))
                .set_continuation_token(continuation.map(str::to_string));
            if !request_prefix.is_empty() {
                req = req.prefix(request_prefix);
            }
            if !directory {
                req = req.encoding_type(aws_sdk_s3::types::EncodingType::Url);
            }
            req.send().await.map_err(|e| t.sdk(e))
        })
        .await?;
    let encoded = matches!(
        out.encoding_type(),
        Some(aws_sdk_s3::types::EncodingType::Url)
    );
    let decode = |s: &str| -> Result<String, ObjectError> {
        if encoded {
            url_decode(s).ok_or_else(|| t.client(format!("undecodable key `{s}` in listing")))
        } else {
            Ok(s.to_string())
        }
    };
    let mut page = ListPage::default();
    for o in out.contents() {
        let Some(key) = o.key() else { continue };
        page.objects.push(ObjectMeta {
            key: decode(key)?,
            size: size_of(o.size()).unwrap_or(0),
            last_modified: system_time(o.last_modified()),
            etag: unquote_etag(o.e_tag()),
        });
    }
    for cp in out.common_prefixes() {
        if let Some(p) = cp.prefix() {
            page.common_prefixes.push(decode(p)?);
        }
    }
    if out.is_truncated() == Some(true) {
        match out.next_continuation_token() {
            Some(token) if !token.is_empty() => page.next_token = Some(token.to_string()),
            _ => return Err(t.client("truncated listing without a continuation token")),
        }
    }
    if directory {
        restrict_and_sort(&mut page, prefix);
    }
    Ok(page)
}

pub(super) fn list_all<'a>(
    inner: &'a Inner,
    bucket: &'a str,
    prefix: &'a str,
) -> BoxStream<'a, Result<ObjectMeta, ObjectError>> {
    let pages = futures::stream::unfold(Some(None::<String>), move |token| async move {
        let token = token?;
        match list_page(inner, bucket, prefix, None, token.as_deref()).await {
            Ok(page) => {
                let next = page.next_token.map(Some);
                Some((Ok(page.objects), next))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    if !is_directory_bucket(bucket) {
        return pages
            .flat_map(|page| match page {
                Ok(objects) => {
                    futures::stream::iter(objects.into_iter().map(Ok).collect::<Vec<_>>())
                }
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .boxed();
    }
    futures::stream::once(async move {
        let mut all = Vec::new();
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.next().await {
            match page {
                Ok(objects) => all.extend(objects),
                Err(e) => return vec![Err(e)],
            }
        }
        all.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        all.into_iter().map(Ok).collect()
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

/// The folder a directory bucket can list for `prefix`: everything up to and including its
/// last `/` (empty for a prefix without one).
fn parent_folder(prefix: &str) -> &str {
    match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    }
}

/// Keeps the entries of a parent-folder listing that match `prefix`, in byte-wise order.
fn restrict_and_sort(page: &mut ListPage, prefix: &str) {
    page.objects.retain(|o| o.key.starts_with(prefix));
    page.common_prefixes.retain(|p| p.starts_with(prefix));
    page.objects
        .sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    page.common_prefixes.sort_unstable();
}

/// Decodes an `encoding-type=url` value: `%XX` escapes and `+` for a space.
fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size: 0,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: None,
        }
    }

    #[test]
    fn decodes_url_encoded_keys() {
        assert_eq!(url_decode("a+b%2Bc%20d").as_deref(), Some("a b+c d"));
        assert_eq!(url_decode("x/../y").as_deref(), Some("x/../y"));
        assert_eq!(url_decode("%C3%A9t%C3%A9").as_deref(), Some("été"));
        assert_eq!(url_decode("bad%2"), None);
        assert_eq!(url_decode("bad%zz"), None);
        assert_eq!(url_decode("%FF"), None);
    }

    #[test]
    fn directory_buckets_list_the_parent_folder() {
        assert_eq!(parent_folder("data/train"), "data/");
        assert_eq!(parent_folder("data/train/"), "data/train/");
        assert_eq!(parent_folder("train"), "");
        let mut page = ListPage {
            objects: [
                "data/zz",
                "data/train/b",
                "data/tr",
                "data/train-x.csv",
                "data/train/a",
            ]
            .into_iter()
            .map(meta)
            .collect(),
            common_prefixes: vec!["data/training/".into(), "data/other/".into()],
            next_token: Some("t".into()),
        };
        restrict_and_sort(&mut page, "data/train");
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["data/train-x.csv", "data/train/a", "data/train/b"]);
        assert_eq!(page.common_prefixes, ["data/training/"]);
        assert_eq!(page.next_token.as_deref(), Some("t"));
    }
}
