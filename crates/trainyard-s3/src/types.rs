//! Object locations: `s3://bucket/key` URIs, path-style `https://endpoint/bucket/key` URIs and
//! `file://` paths, parsed once at the edge so the rest of trainyard handles typed values.
//!
//! Bucket names follow the S3 naming rules; S3 Express One Zone directory buckets
//! (`name--azid--x-s3`) are recognised so listing can compensate for their unordered output.

use std::fmt;
use std::path::PathBuf;

/// Why a URI could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?}: {reason}")]
pub struct UriError {
    /// The URI as given.
    pub uri: String,
    /// The rule it breaks.
    pub reason: String,
}

/// A bucket and a key (or key prefix) in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Uri {
    /// Bucket name.
    pub bucket: String,
    /// Key or prefix; may be empty.
    pub key: String,
}

impl S3Uri {
    /// Parses `s3://bucket/key` or a path-style `http(s)://host[:port]/bucket/key`.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let err = |reason: &str| UriError {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let (bucket, key) = if let Some(rest) = uri.strip_prefix("s3://") {
            rest.split_once('/').unwrap_or((rest, ""))
        } else if let Some(rest) = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))
        {
            let (_host, path) = rest
                .split_once('/')
                .ok_or_else(|| err("path-style URI has no bucket"))?;
            path.split_once('/').unwrap_or((path, ""))
        } else {
            return Err(err("must start with s3:// or https://"));
        };
        validate_bucket_name(bucket).map_err(|reason| err(&reason))?;
        Ok(S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// A URI for `key` in the same bucket.
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        S3Uri {
            bucket: self.bucket.clone(),
            key: key.into(),
        }
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Where a channel's data or a job's output lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Object storage (embedded store or an S3 endpoint, by configuration).
    S3(S3Uri),
    /// A local directory tree, as SageMaker local mode's `file://` URIs. The path is absolute;
    /// its last component may be a partial name, as with S3 prefixes.
    File(PathBuf),
}

impl Location {
    /// Parses `s3://`, path-style `https://` or `file://` URIs. A relative `file://` path
    /// (`file://data/train`, `file://./data`) is resolved against `base`, as local mode does
    /// against its working directory.
    pub fn parse(uri: &str, base: &std::path::Path) -> Result<Self, UriError> {
        if let Some(rest) = uri.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(UriError {
                    uri: uri.to_string(),
                    reason: "file:// URI has no path".into(),
                });
            }
            let path = PathBuf::from(rest);
            let path = if path.is_absolute() {
                path
            } else {
                base.join(path)
            };
            return Ok(Location::File(normalize(&path)));
        }
        S3Uri::parse(uri).map(Location::S3)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::S3(u) => u.fmt(f),
            Location::File(p) => write!(f, "file://{}", p.display()),
        }
    }
}

/// Removes `.` components and resolves `..` lexically, keeping a trailing `/` (it matters for
/// prefix semantics).
fn normalize(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if path.as_os_str().to_string_lossy().ends_with('/')
        && !out.as_os_str().to_string_lossy().ends_with('/')
    {
        let mut s = out.into_os_string();
        s.push("/");
        out = PathBuf::from(s);
    }
    out
}

/// Checks S3's bucket naming rules (general purpose and directory buckets).
pub fn validate_bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err(format!(
            "bucket name {bucket:?} must be 3 to 63 characters long"
        ));
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "bucket name {bucket:?} may contain only lowercase letters, digits, '.' and '-'"
        ));
    }
    let first = bucket.as_bytes()[0];
    let last = bucket.as_bytes()[bucket.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "bucket name {bucket:?} must begin and end with a letter or digit"
        ));
    }
    if bucket.contains("..") {
        return Err(format!(
            "bucket name {bucket:?} must not contain two adjacent periods"
        ));
    }
    Ok(())
}

/// Whether `bucket` names an S3 Express One Zone directory bucket (`base--zone-id--x-s3`).
pub fn is_directory_bucket(bucket: &str) -> bool {
    let Some(rest) = bucket.strip_suffix("--x-s3") else {
        return false;
    };
    let Some((base, zone)) = rest.rsplit_once("--") else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    ok(base) && ok(zone) && base.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_path_style_uris() {
        let u = S3Uri::parse("s3://my-bucket/data/train/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("my-bucket", "data/train/")
        );
        let u = S3Uri::parse("s3://my-bucket").unwrap();
        assert_eq!(u.key, "");
        let u = S3Uri::parse("http://127.0.0.1:3900/bkt/a/b").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("bkt", "a/b"));
        assert!(S3Uri::parse("gs://x/y").is_err());
        assert!(S3Uri::parse("s3://UPPER/y").is_err());
        assert!(S3Uri::parse("s3://ab/y").is_err());
    }

    #[test]
    fn file_uris_resolve_against_base() {
        let base = std::path::Path::new("/work/proj");
        assert_eq!(
            Location::parse("file://examples/data/", base).unwrap(),
            Location::File(PathBuf::from("/work/proj/examples/data/"))
        );
        assert_eq!(
            Location::parse("file:///abs/./x/../y", base).unwrap(),
            Location::File(PathBuf::from("/abs/y"))
        );
    }

    #[test]
    fn recognises_directory_buckets() {
        assert!(is_directory_bucket("my-data--usw2-az1--x-s3"));
        assert!(!is_directory_bucket("my-data"));
        assert!(!is_directory_bucket("--usw2-az1--x-s3"));
    }
}
