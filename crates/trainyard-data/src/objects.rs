//! Expanding a channel into the objects it delivers, each with its path in the channel.
//!
//! The relative path of an object under an `S3Prefix` follows `doc/contract/data.md` §1.1: the prefix is
//! treated as a folder when it ends in `/` or the key continues with `/`; otherwise (a partial
//! last component, or the prefix naming the object itself) the object keeps its full basename.
//! Keys are untrusted input, so every relative path is checked by [`safe_relative_path`] before
//! anything is written: a key such as `train/../../etc/cron.d/x` must never leave the directory.

use std::collections::HashSet;
use std::path::PathBuf;

use futures::StreamExt;
use trainyard_s3::{ObjectClient, is_directory_bucket};

use crate::DataError;

/// One object of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelObject {
    /// Bucket.
    pub bucket: String,
    /// Full key.
    pub key: String,
    /// Size from the listing.
    pub size: u64,
    /// ETag from the listing, if any.
    pub etag: Option<String>,
    /// Path inside the channel directory, `/`-separated.
    pub rel_path: String,
}

/// The path of `key` inside a channel whose S3Prefix key part is `prefix` (§1.1).
pub fn relative_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        return key.to_string();
    }
    if prefix.ends_with('/') {
        return key[prefix.len().min(key.len())..].to_string();
    }
    if let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
        return rest.to_string();
    }
    let dir_len = prefix.rfind('/').map(|i| i + 1).unwrap_or(0);
    key[dir_len.min(key.len())..].to_string()
}

/// Checks that `rel` is a plain relative path that stays inside the channel directory.
pub fn safe_relative_path(key: &str, rel: &str) -> Result<PathBuf, DataError> {
    let bad = |reason| {
        Err(DataError::UnsafeKey {
            key: key.to_string(),
            reason,
        })
    };
    if rel.is_empty() {
        return bad("its path in the channel is empty");
    }
    if rel.starts_with('/') {
        return bad("its path in the channel is absolute");
    }
    if rel.contains('\0') {
        return bad("it contains a NUL byte");
    }
    for seg in rel.split('/') {
        match seg {
            "" => return bad("it contains an empty path segment ('//')"),
            "." | ".." => return bad("it contains a '.' or '..' path segment"),
            s if s.len() > 255 => return bad("a path segment is longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(PathBuf::from(rel))
}

/// Checks that no two objects land on the same path and no object's path is another's
/// directory; also the case `doc/contract/data.md` §1.1 names: an object equal to the prefix alongside
/// objects under `prefix/`.
pub fn check_collisions(prefix: &str, objects: &[ChannelObject]) -> Result<(), DataError> {
    let mut files: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for o in objects {
        if let Some(other) = files.insert(o.rel_path.as_str(), o.key.as_str()) {
            if other != o.key {
                return Err(DataError::Collision {
                    first: other.to_string(),
                    second: o.key.clone(),
                });
            }
        }
    }
    let mut dirs: HashSet<&str> = HashSet::new();
    for o in objects {
        let mut p = o.rel_path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if !dirs.insert(p) {
                break;
            }
        }
    }
    for o in objects {
        if dirs.contains(o.rel_path.as_str()) {
            let other = objects
                .iter()
                .find(|x| x.rel_path.starts_with(&format!("{}/", o.rel_path)))
                .map(|x| x.key.clone());
            return Err(DataError::Collision {
                first: o.key.clone(),
                second: other.unwrap_or_default(),
            });
        }
    }
    if !prefix.is_empty() && !prefix.ends_with('/') {
        if let Some(exact) = objects.iter().find(|o| o.key == prefix) {
            let under = format!("{prefix}/");
            if let Some(child) = objects.iter().find(|o| o.key.starts_with(&under)) {
                return Err(DataError::Collision {
                    first: exact.key.clone(),
                    second: child.key.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Lists an S3Prefix channel: every object whose key starts with `prefix` (plain string
/// prefix), folder markers (keys ending in `/`) skipped, in ascending key order, with relative
/// paths computed and checked.
pub async fn list_prefix(
    client: &dyn ObjectClient,
    bucket: &str,
    prefix: &str,
    uri: &str,
) -> Result<Vec<ChannelObject>, DataError> {
    let mut out = Vec::new();
    let mut stream = client.list_all(bucket, prefix);
    while let Some(item) = stream.next().await {
        let meta = item.map_err(|source| DataError::List {
            uri: uri.to_string(),
            source,
        })?;
        if meta.key.ends_with('/') {
            continue;
        }
        let rel_path = relative_path(prefix, &meta.key);
        safe_relative_path(&meta.key, &rel_path)?;
        out.push(ChannelObject {
            bucket: bucket.to_string(),
            rel_path,
            size: meta.size,
            etag: meta.etag,
            key: meta.key,
        });
    }
    if is_directory_bucket(bucket) || !out.is_sorted_by(|a, b| a.key.as_bytes() <= b.key.as_bytes())
    {
        // Directory buckets list in no particular order; the contract is key order.
        out.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    }
    if out.is_empty() {
        return Err(DataError::NoObjects {
            uri: uri.to_string(),
        });
    }
    check_collisions(prefix, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_contract_table() {
        let cases = [
            ("data/train/", "data/train/a/b.csv", "a/b.csv"),
            ("data/train", "data/train/a/b.csv", "a/b.csv"),
            ("data/train", "data/train-data.csv", "train-data.csv"),
            ("data/train", "data/train", "train"),
            ("train", "train.csv", "train.csv"),
            ("", "x/y", "x/y"),
            ("data/train", "data/training/x", "training/x"),
        ];
        for (prefix, key, want) in cases {
            assert_eq!(
                relative_path(prefix, key),
                want,
                "prefix {prefix:?} key {key:?}"
            );
        }
    }

    #[test]
    fn escaping_keys_are_refused() {
        for (key, rel) in [
            ("p/../x", "../x"),
            ("p//etc", "/etc"),
            ("p/a//b", "a//b"),
            ("p/./a", "./a"),
            ("p/", ""),
            ("p/a/..", "a/.."),
        ] {
            assert!(
                matches!(
                    safe_relative_path(key, rel),
                    Err(DataError::UnsafeKey { .. })
                ),
                "{rel:?}"
            );
        }
        assert_eq!(
            safe_relative_path("p/a b/ü.csv", "a b/ü.csv").unwrap(),
            PathBuf::from("a b/ü.csv")
        );
    }

    fn obj(key: &str, rel: &str) -> ChannelObject {
        ChannelObject {
            bucket: "b".into(),
            key: key.into(),
            size: 0,
            etag: None,
            rel_path: rel.into(),
        }
    }

    #[test]
    fn collisions_are_detected() {
        assert!(check_collisions("p/", &[obj("p/a", "a"), obj("p/b", "b")]).is_ok());
        assert!(check_collisions("p/", &[obj("p/a", "a"), obj("p/a/b", "a/b")]).is_err());
        assert!(
            check_collisions("d/train", &[obj("d/train", "train"), obj("d/train/x", "x")]).is_err()
        );
        assert!(check_collisions("p/", &[obj("p/x", "x"), obj("q/x", "x")]).is_err());
    }
}
