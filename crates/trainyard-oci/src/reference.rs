//! Where an image comes from: a registry reference with docker's defaults, or an `oci:`
//! layout on disk.
//!
//! Registry references are parsed by `oci-client`'s `Reference` (docker's grammar and
//! defaults: `python` is `docker.io/library/python:latest`; ECR hosts are ordinary hosts).
//! `oci:DIR[:TAG]` follows skopeo's transport syntax. Nothing else is accepted: other
//! transports would be other code paths to secure.

use std::net::IpAddr;
use std::path::PathBuf;

use oci_client::Reference;

use crate::ImageError;

/// A parsed image reference.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A registry image (possibly also in the local containers-storage).
    Registry(Reference),
    /// An OCI image layout directory and the tag in its `index.json` (`None`: its only image).
    Layout { dir: PathBuf, tag: Option<String> },
}

pub(crate) fn parse(reference: &str) -> Result<Source, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    if let Some(rest) = reference.strip_prefix("oci:") {
        // skopeo: oci:PATH[:REF]; a ':' after the last '/' starts the tag.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (dir, tag) = match rest[slash..].find(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if dir.is_empty() {
            return Err(invalid("oci: needs a directory".into()));
        }
        return Ok(Source::Layout {
            dir: PathBuf::from(dir),
            tag: tag.filter(|t| !t.is_empty()),
        });
    }
    if reference.contains("://") {
        return Err(invalid(
            "only [registry/]repository[:tag|@sha256:digest] and oci:DIR[:TAG] are accepted".into(),
        ));
    }
    let parsed: Reference = reference.parse().map_err(|e| invalid(format!("{e}")))?;
    if let Some(d) = parsed.digest()
        && digest_hex(d).is_none()
    {
        return Err(invalid(format!("digest {d} is not sha256:<64 hex digits>")));
    }
    Ok(Source::Registry(parsed))
}

/// The hex of a `sha256:<64 hex>` digest; `None` for anything else.
pub(crate) fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// Whether `registry` (`host[:port]`) is reached over plain HTTP: loopback always, others when
/// listed (as `host` or `host:port`).
pub(crate) fn plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback || insecure.iter().any(|i| i == registry || i == host)
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => registry,
    }
}

/// Whether the reference names a registry host, as docker decides: the first component has a
/// `.` or `:` or is `localhost`. `python:3` has none; podman looks such names up under
/// `localhost/` in its own store.
pub(crate) fn names_registry(reference: &str) -> bool {
    match reference.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(r: &str) -> Reference {
        match parse(r).unwrap() {
            Source::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_defaults_and_ecr() {
        let r = reg("python");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/python");
        assert_eq!(r.tag(), Some("latest"));
        let r = reg("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-train:latest");
        assert_eq!(r.registry(), "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(r.repository(), "my-train");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = reg(&format!("127.0.0.1:5000/t/base@{d}"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.digest(), Some(d.as_str()));
        assert!(parse("127.0.0.1:5000/t/base@sha256:abc").is_err());
        assert!(parse("Upper/Case").is_err());
        assert!(parse("docker://x/y").is_err());
    }

    #[test]
    fn oci_layouts() {
        match parse("oci:/var/img:byo").unwrap() {
            Source::Layout { dir, tag } => {
                assert_eq!(dir, PathBuf::from("/var/img"));
                assert_eq!(tag.as_deref(), Some("byo"));
            }
            other => panic!("{other:?}"),
        }
        match parse("oci:rel/dir").unwrap() {
            Source::Layout { dir, tag } => {
                assert_eq!(dir, PathBuf::from("rel/dir"));
                assert_eq!(tag, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed() {
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("registry.example:5000", &[]));
        assert!(plain_http(
            "registry.example:5000",
            &["registry.example".into()]
        ));
        assert!(!plain_http("docker.io", &["registry.example".into()]));
    }

    #[test]
    fn registry_names() {
        assert!(!names_registry("python:3"));
        assert!(!names_registry("team/train"));
        assert!(names_registry("localhost/train"));
        assert!(names_registry("127.0.0.1:5000/x"));
        assert!(names_registry("ghcr.io/x/y"));
    }
}
