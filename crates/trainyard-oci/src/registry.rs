//! Talking to a registry: credentials, manifest resolution (with linux/amd64 selection from an
//! index) and the mapping of `oci-client`'s errors to [`ImageError`]s that name the image, the
//! registry and the cause.
//!
//! The HTTP, the token dance (bearer challenge, then basic) and the digest check of manifests
//! are `oci-client`'s; trainyard decides only the scheme (plain HTTP for loopback and
//! configured insecure registries), where credentials come from, and which platform to run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::reference::plain_http;
use crate::{ImageError, PullAuth};

/// One pull's view of one registry.
pub(crate) struct Remote {
    pub client: Client,
    pub reference: Reference,
    pub auth: RegistryAuth,
    /// Which credentials were used, for messages ("no credentials", "basic credentials of
    /// user X", "docker config credentials of user X").
    pub auth_desc: String,
    /// The user's spelling of the image, for messages.
    pub image: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("reference", &self.reference.whole())
            .field("auth", &self.auth_desc)
            .finish()
    }
}

impl Remote {
    pub(crate) async fn new(
        image: &str,
        reference: Reference,
        auth: &PullAuth,
        insecure: &[String],
        docker_config: Option<&Path>,
    ) -> Result<Remote, ImageError> {
        let registry = reference.resolve_registry().to_string();
        let protocol = if plain_http(&registry, insecure) {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("trainyard/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        });
        let (auth, auth_desc) = match auth {
            PullAuth::Basic { username, password } => (
                RegistryAuth::Basic(username.clone(), password.clone()),
                format!("basic credentials of user {username}"),
            ),
            PullAuth::Default => {
                let server = reference.registry().to_string();
                let config = docker_config.map(Path::to_path_buf);
                let found =
                    tokio::task::spawn_blocking(move || docker_credentials(&server, config))
                        .await
                        .map_err(|e| ImageError::Credentials {
                            image: image.to_string(),
                            registry: registry.clone(),
                            detail: e.to_string(),
                        })?
                        .map_err(|detail| ImageError::Credentials {
                            image: image.to_string(),
                            registry: registry.clone(),
                            detail,
                        })?;
                match found {
                    Some((user, pass, path)) => {
                        let desc = format!("credentials of user {user} from {}", path.display());
                        (RegistryAuth::Basic(user, pass), desc)
                    }
                    None => (RegistryAuth::Anonymous, "no credentials".to_string()),
                }
            }
        };
        Ok(Remote {
            client,
            reference,
            auth,
            auth_desc,
            image: image.to_string(),
        })
    }

    pub(crate) fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// The linux/amd64 image manifest the reference names, and its digest.
    pub(crate) async fn resolve(&self) -> Result<(OciImageManifest, String), ImageError> {
        let (manifest, digest) = self
            .client
            .pull_manifest(&self.reference, &self.auth)
            .await
            .map_err(|e| self.error(e))?;
        match manifest {
            OciManifest::Image(m) => Ok((m, digest)),
            OciManifest::ImageIndex(index) => {
                let chosen = index.manifests.iter().find(|m| {
                    m.platform.as_ref().is_some_and(|p| {
                        p.os.to_string() == "linux" && p.architecture.to_string() == "amd64"
                    })
                });
                let Some(entry) = chosen else {
                    let offered: Vec<String> = index
                        .manifests
                        .iter()
                        .map(|m| match &m.platform {
                            Some(p) => format!("{}/{}", p.os, p.architecture),
                            None => "unknown platform".to_string(),
                        })
                        .collect();
                    return Err(ImageError::Unsupported {
                        image: self.image.clone(),
                        source_name: self.registry().to_string(),
                        what: format!(
                            "the image index {digest} has no linux/amd64 image (it offers: {})",
                            offered.join(", ")
                        ),
                    });
                };
                let pinned = self.reference.clone_with_digest(entry.digest.clone());
                match self
                    .client
                    .pull_manifest(&pinned, &self.auth)
                    .await
                    .map_err(|e| self.error(e))?
                {
                    (OciManifest::Image(m), d) => Ok((m, d)),
                    (OciManifest::ImageIndex(_), d) => Err(ImageError::Unsupported {
                        image: self.image.clone(),
                        source_name: self.registry().to_string(),
                        what: format!("the linux/amd64 entry {d} is itself an index"),
                    }),
                }
            }
        }
    }

    /// Maps an `oci-client` error to what the user has to fix.
    pub(crate) fn error(&self, e: OciDistributionError) -> ImageError {
        let image = self.image.clone();
        let registry = self.registry().to_string();
        let tag = self
            .reference
            .digest()
            .or(self.reference.tag())
            .unwrap_or("latest")
            .to_string();
        let unauthorized = |answer: String| ImageError::Unauthorized {
            image: image.clone(),
            registry: registry.clone(),
            detail: format!("sent {}; {answer}", self.auth_desc),
        };
        match e {
            OciDistributionError::UnauthorizedError { url } => {
                unauthorized(format!("401 Unauthorized for {url}"))
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                unauthorized(format!("token service: {reason}"))
            }
            OciDistributionError::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.contains(&&OciErrorCode::NameUnknown) {
                    ImageError::UnknownRepository {
                        image,
                        registry,
                        repository: self.reference.repository().to_string(),
                    }
                } else if codes.contains(&&OciErrorCode::ManifestUnknown)
                    || codes.contains(&&OciErrorCode::NotFound)
                {
                    ImageError::UnknownTag {
                        image,
                        registry,
                        tag,
                    }
                } else if codes.contains(&&OciErrorCode::Unauthorized)
                    || codes.contains(&&OciErrorCode::Denied)
                {
                    unauthorized(format!("{envelope} for {url}"))
                } else {
                    ImageError::Registry {
                        image,
                        registry,
                        detail: format!("{envelope} for {url}"),
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => ImageError::UnknownTag {
                image,
                registry,
                tag,
            },
            OciDistributionError::DigestError(d) => ImageError::DigestMismatch {
                image,
                source_name: registry,
                what: "manifest",
                digest: tag,
                expected: "the digest asked for".to_string(),
                actual: d.to_string(),
            },
            OciDistributionError::RequestError(r) => ImageError::Registry {
                image,
                registry,
                detail: format!("request failed: {}", error_chain(&r)),
            },
            other => ImageError::Registry {
                image,
                registry,
                detail: other.to_string(),
            },
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Credentials for `server` from the docker configuration: `(user, password, config path)`;
/// `None` when there is no configuration or it has nothing for `server`.
fn docker_credentials(
    server: &str,
    config: Option<PathBuf>,
) -> Result<Option<(String, String, PathBuf)>, String> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let path = match config {
        Some(p) => p,
        None => match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker/config.json"),
                None => return Ok(None),
            },
        },
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    // Docker Hub's credentials are stored under its v1 URL.
    let key = if server == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        server
    };
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), key) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(Some((u, p, path))),
        Ok(DockerCredential::IdentityToken(_)) => {
            tracing::warn!(
                server,
                "docker config holds an identity token, which trainyard does not use; pulling anonymously"
            );
            Ok(None)
        }
        Err(E::NoCredentialConfigured) => Ok(None),
        Err(e) => Err(format!("{} ({})", e, path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config.json");
        // "user:pa:ss" in base64: the password may hold colons.
        std::fs::write(
            &path,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#,
        )
        .unwrap();
        let got = docker_credentials("127.0.0.1:5000", Some(path.clone())).unwrap();
        let (u, p, _) = got.unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("user", "pa:ss"));
        assert!(
            docker_credentials("other:5000", Some(path))
                .unwrap()
                .is_none()
        );
        assert!(
            docker_credentials("x", Some(t.path().join("missing.json")))
                .unwrap()
                .is_none()
        );
    }
}
