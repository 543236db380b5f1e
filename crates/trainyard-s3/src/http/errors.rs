//! Translation of SDK errors into [`ObjectError`], in one place.
//!
//! Callers act on the variant (a missing key is the user's problem, a reset connection is
//! retried, a denial is reported with the action that was denied), so the translation must be
//! precise: the HTTP status and S3 error code decide service errors, and for transport
//! failures the error chain is searched for the operating-system error (or hyper's own
//! classification) so that [`ObjectError::is_retryable`] sees the real `io::ErrorKind`
//! (`ConnectionRefused`, `ConnectionReset`, `TimedOut`, `UnexpectedEof`, ...).
//!
//! A HEAD answer has no body and so no S3 error code: a 404 to HEAD is always
//! [`ObjectError::NotFound`], even when it is the bucket that is missing.

use std::error::Error as StdError;
use std::io;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ObjectError;

/// The bucket and key (or prefix) an operation concerned, for error context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Operation name, e.g. `GetObject`.
    pub operation: &'static str,
    /// Bucket name.
    pub bucket: &'a str,
    /// Key or prefix.
    pub key: &'a str,
}

impl Target<'_> {
    pub(crate) fn io(&self, kind: io::ErrorKind, message: String) -> ObjectError {
        ObjectError::Io {
            operation: self.operation,
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            source: io::Error::new(kind, message),
        }
    }

    pub(crate) fn client(&self, message: impl Into<String>) -> ObjectError {
        ObjectError::Client {
            operation: self.operation,
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            message: message.into(),
        }
    }

    /// The error for an HTTP error answer with S3 error `code`.
    pub(crate) fn status(&self, status: u16, code: &str, message: &str) -> ObjectError {
        match (status, code) {
            (_, "NoSuchBucket") => ObjectError::NoSuchBucket {
                bucket: self.bucket.to_string(),
            },
            (404, "NoSuchKey" | "NotFound" | "") | (_, "NoSuchKey") => ObjectError::NotFound {
                bucket: self.bucket.to_string(),
                key: self.key.to_string(),
            },
            (403, _) | (_, "AccessDenied") => ObjectError::AccessDenied {
                action: iam_action(self.operation).to_string(),
                resource: if self.operation == "ListObjectsV2" {
                    format!("arn:aws:s3:::{}", self.bucket)
                } else {
                    format!("arn:aws:s3:::{}/{}", self.bucket, self.key)
                },
                message: match (code, message) {
                    ("", "") => format!("HTTP {status}"),
                    (c, "") => c.to_string(),
                    ("", m) => m.to_string(),
                    (c, m) => format!("{c}: {m}"),
                },
            },
            _ => ObjectError::Service {
                operation: self.operation,
                bucket: self.bucket.to_string(),
                key: self.key.to_string(),
                status,
                code: code.to_string(),
                message: message.to_string(),
            },
        }
    }

    /// Translates an SDK error.
    pub(crate) fn sdk<E>(&self, err: SdkError<E, HttpResponse>) -> ObjectError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(ctx) => self.status(
                ctx.raw().status().as_u16(),
                ctx.err().code().unwrap_or(""),
                ctx.err().message().unwrap_or(""),
            ),
            SdkError::TimeoutError(_) => self.io(
                io::ErrorKind::TimedOut,
                DisplayErrorContext(&err).to_string(),
            ),
            SdkError::DispatchFailure(d) => {
                let fallback = if d.is_timeout() {
                    Some(io::ErrorKind::TimedOut)
                } else if d.is_io() {
                    Some(io::ErrorKind::ConnectionAborted)
                } else {
                    None
                };
                let kind = if d.is_user() {
                    None
                } else {
                    transport_kind(&err).or(fallback)
                };
                match kind {
                    Some(kind) => self.io(kind, DisplayErrorContext(&err).to_string()),
                    None => self.client(DisplayErrorContext(&err).to_string()),
                }
            }
            SdkError::ResponseError(_) => match transport_kind(&err) {
                Some(kind) => self.io(kind, DisplayErrorContext(&err).to_string()),
                None => self.client(DisplayErrorContext(&err).to_string()),
            },
            _ => self.client(DisplayErrorContext(&err).to_string()),
        }
    }
}

/// The IAM action an operation needs, for [`ObjectError::AccessDenied`].
fn iam_action(operation: &str) -> &'static str {
    match operation {
        "ListObjectsV2" => "s3:ListBucket",
        "HeadObject" | "GetObject" => "s3:GetObject",
        "DeleteObject" => "s3:DeleteObject",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        _ => "s3:PutObject",
    }
}

/// The `io::ErrorKind` a transport failure amounts to: the first specific operating-system
/// error in the chain, else hyper's classification of the failure, else `None`.
pub(crate) fn transport_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut hyper_kind = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            match ioe.get_ref() {
                // A wrapper (kind `Other` around another error): look inside.
                Some(inner) if ioe.kind() == io::ErrorKind::Other => {
                    cur = Some(inner);
                    continue;
                }
                _ => return Some(ioe.kind()),
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            let kind = if h.is_timeout() {
                Some(io::ErrorKind::TimedOut)
            } else if h.is_incomplete_message() {
                Some(io::ErrorKind::UnexpectedEof)
            } else if h.is_body_write_aborted() {
                Some(io::ErrorKind::BrokenPipe)
            } else if h.is_canceled() || h.is_closed() {
                Some(io::ErrorKind::ConnectionAborted)
            } else {
                None
            };
            hyper_kind = hyper_kind.or(kind);
        }
        cur = e.source();
    }
    hyper_kind
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target<'static> = Target {
        operation: "GetObject",
        bucket: "bkt",
        key: "a/b",
    };

    #[test]
    fn statuses_map_onto_variants() {
        assert!(T.status(404, "NoSuchKey", "").is_not_found());
        assert!(T.status(404, "", "").is_not_found());
        assert!(matches!(
            T.status(404, "NoSuchBucket", ""),
            ObjectError::NoSuchBucket { .. }
        ));
        match T.status(403, "AccessDenied", "no") {
            ObjectError::AccessDenied {
                action, resource, ..
            } => {
                assert_eq!(action, "s3:GetObject");
                assert_eq!(resource, "arn:aws:s3:::bkt/a/b");
            }
            other => panic!("{other:?}"),
        }
        let slow = T.status(503, "SlowDown", "reduce your request rate");
        assert!(matches!(slow, ObjectError::Service { status: 503, .. }));
        assert!(slow.is_retryable());
        assert!(T.status(500, "InternalError", "").is_retryable());
        assert!(!T.status(400, "InvalidArgument", "").is_retryable());
    }

    #[test]
    fn finds_the_os_error_in_a_chain() {
        #[derive(Debug)]
        struct Wrap(io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let inner = io::Error::other(Wrap(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let outer = Wrap(inner);
        assert_eq!(
            transport_kind(&outer),
            Some(io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(transport_kind(&std::fmt::Error), None);
    }
}
