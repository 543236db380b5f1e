//! Configuration of the S3 client: where the endpoint is, how to sign, how to address buckets,
//! how hard to retry and how to split uploads.
//!
//! One typed struct, [`S3Config`], so the binary maps its own configuration file onto it in one
//! place and tests build it field by field. [`S3Config::from_env`] exists for the command line
//! and the real-server tests: it follows the variables and shared files the AWS CLI and SDKs
//! read, so a user's existing setup works unchanged. Secrets never appear in `Debug` output:
//! [`S3Credentials`] prints its secret key and session token redacted.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::profile::{self, FileKind, Profile};
use super::retry::RetryConfig;

/// Region used when neither the environment nor the profile names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How a request names its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressingStyle {
    /// Path style for a custom endpoint (what S3-compatible servers expect), virtual-hosted
    /// for AWS. Default.
    #[default]
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    VirtualHosted,
}

/// Static credentials for SigV4 signing.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key id (`AKIA...`); an identifier, printed in `Debug`.
    pub access_key_id: String,
    /// Secret access key; never printed.
    pub secret_access_key: String,
    /// Session token of temporary credentials; never printed.
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// Long-term credentials (no session token).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Everything [`S3Client`](crate::S3Client) needs to talk to one S3-compatible service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Custom endpoint URL (`http://127.0.0.1:3900`, `https://minio.example`); `None` means
    /// AWS itself, resolved from the region. Default: `None`.
    pub endpoint: Option<String>,
    /// Signing region; S3-compatible servers usually insist on their configured one.
    /// Default: `us-east-1`.
    pub region: String,
    /// Path-style or virtual-hosted requests. Directory buckets are always addressed
    /// virtual-hosted, as S3 Express requires. Default: [`AddressingStyle::Auto`].
    pub addressing_style: AddressingStyle,
    /// Whether a plain `http://` endpoint that is not on loopback is accepted. Loopback
    /// endpoints (`localhost`, `127.0.0.0/8`, `[::1]`) are always accepted. Default: `false`.
    pub allow_http: bool,
    /// Signing credentials; `None` sends unsigned (anonymous) requests. Default: `None`.
    pub credentials: Option<S3Credentials>,
    /// Retry policy applied to every request. Default: [`RetryConfig::default`].
    pub retry: RetryConfig,
    /// Limit on establishing a TCP (and TLS) connection. Default: 10 s.
    pub connect_timeout: Duration,
    /// Limit from sending a request to the first byte of its response, request body
    /// included. Default: 120 s.
    pub response_timeout: Duration,
    /// How long a response or request body may make no progress before the transfer is
    /// abandoned (and, for a get, resumed). Default: 20 s.
    pub stall_timeout: Duration,
    /// Files larger than this are uploaded with multipart upload. Default: 16 MiB.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (at least 5 MiB; grown when a file would need more
    /// than 10,000 parts). Default: 16 MiB.
    pub multipart_part_size: u64,
    /// Parts of one multipart upload in flight at once. Default: 4.
    pub upload_concurrency: usize,
    /// Sign with temporary credentials of this role, obtained with `credentials` as the
    /// caller (see `assume_role.rs`). Default: `None` (sign with `credentials`).
    pub assume_role: Option<super::assume_role::AssumeRole>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: DEFAULT_REGION.to_string(),
            addressing_style: AddressingStyle::Auto,
            allow_http: false,
            credentials: None,
            retry: RetryConfig::default(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            stall_timeout: Duration::from_secs(20),
            multipart_threshold: 16 << 20,
            multipart_part_size: 16 << 20,
            upload_concurrency: 4,
            assume_role: None,
        }
    }
}

/// Smallest part S3 accepts for any but the last part of a multipart upload.
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// Why an [`S3Config`] could not be built or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error("invalid S3 endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A plain-HTTP endpoint off loopback without `allow_http`.
    #[error(
        "refusing plain-HTTP S3 endpoint `{endpoint}` that is not on loopback; set `allow_http` (AWS_ALLOW_HTTP=true) to allow it"
    )]
    InsecureEndpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// A setting has a value outside its range.
    #[error("invalid value `{value}` for {name}: {reason}")]
    InvalidValue {
        /// Setting or variable name.
        name: String,
        /// The value as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The profile named by `AWS_PROFILE` is in neither shared file.
    #[error("AWS profile `{profile}` not found in {files}")]
    ProfileNotFound {
        /// Profile name.
        profile: String,
        /// The files searched.
        files: String,
    },
    /// An access key without its secret, or the other way round.
    #[error(
        "incomplete credentials in {origin}: both an access key id and a secret access key are needed"
    )]
    IncompleteCredentials {
        /// Where they were found (`environment`, `profile dev`).
        origin: String,
    },
    /// The profile gets its credentials in a way this client does not implement.
    #[error(
        "AWS profile `{profile}` uses `{setting}`, which trainyard does not support; export static credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) instead"
    )]
    UnsupportedProfile {
        /// Profile name.
        profile: String,
        /// The unsupported setting, e.g. `sso_session`.
        setting: String,
    },
    /// A shared configuration file exists but cannot be read.
    #[error("cannot read `{}`: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl S3Config {
    /// Configuration for a custom endpoint with static credentials; everything else default.
    pub fn for_endpoint(endpoint: impl Into<String>, credentials: S3Credentials) -> Self {
        S3Config {
            endpoint: Some(endpoint.into()),
            credentials: Some(credentials),
            ..S3Config::default()
        }
    }

    /// Sets [`S3Config::endpoint`].
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets [`S3Config::region`].
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets [`S3Config::credentials`].
    pub fn with_credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`S3Config::assume_role`].
    pub fn with_assume_role(mut self, role: super::assume_role::AssumeRole) -> Self {
        self.assume_role = Some(role);
        self
    }

    /// Sets [`S3Config::retry`].
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`S3Config::addressing_style`].
    pub fn with_addressing_style(mut self, style: AddressingStyle) -> Self {
        self.addressing_style = style;
        self
    }

    /// Reads the configuration the AWS CLI would use, from the process environment and the
    /// shared files:
    ///
    /// * endpoint: `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, then the profile's
    ///   `s3.endpoint_url` or `endpoint_url`;
    /// * region: `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the profile's `region`, then
    ///   `us-east-1`;
    /// * credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`),
    ///   then the profile (`AWS_PROFILE`, default `default`) in `AWS_SHARED_CREDENTIALS_FILE`
    ///   (default `~/.aws/credentials`) and `AWS_CONFIG_FILE` (default `~/.aws/config`), the
    ///   credentials file winning; none at all means anonymous requests;
    /// * addressing: `AWS_S3_ADDRESSING_STYLE` (`auto`, `path`, `virtual`), then the profile's
    ///   `s3.addressing_style`;
    /// * `AWS_ALLOW_HTTP=true` allows a plain-HTTP endpoint off loopback.
    ///
    /// A profile named explicitly by `AWS_PROFILE` must exist.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] with the variables taken from `lookup` instead of the process
    /// environment (the shared files are still read from disk).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let home = var("HOME").map(PathBuf::from);
        let aws_file = |env: &str, name: &str| {
            var(env)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let explicit_profile = var("AWS_PROFILE");
        let profile_name = explicit_profile.clone().unwrap_or_else(|| "default".into());
        let cred_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let conf_file = aws_file("AWS_CONFIG_FILE", "config");
        let from_creds = load_profile(cred_file.as_deref(), FileKind::Credentials, &profile_name)?;
        let from_conf = load_profile(conf_file.as_deref(), FileKind::Config, &profile_name)?;
        if explicit_profile.is_some() && from_creds.is_none() && from_conf.is_none() {
            let files: Vec<String> = [&cred_file, &conf_file]
                .into_iter()
                .flatten()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            return Err(ConfigError::ProfileNotFound {
                profile: profile_name,
                files: files.join(" and "),
            });
        }
        // The credentials file wins over the config file for the same key.
        let mut prof: Profile = from_conf.unwrap_or_default();
        prof.extend(from_creds.unwrap_or_default());

        let mut cfg = S3Config {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| prof.get("s3.endpoint_url").cloned())
                .or_else(|| prof.get("endpoint_url").cloned()),
            ..S3Config::default()
        };
        if let Some(region) = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| prof.get("region").cloned())
        {
            cfg.region = region;
        }
        if let Some((name, style)) = var("AWS_S3_ADDRESSING_STYLE")
            .map(|v| ("AWS_S3_ADDRESSING_STYLE", v))
            .or_else(|| {
                prof.get("s3.addressing_style")
                    .map(|v| ("s3.addressing_style", v.clone()))
            })
        {
            cfg.addressing_style = parse_style(name, &style)?;
        }
        if let Some(v) = var("AWS_ALLOW_HTTP") {
            cfg.allow_http = parse_bool("AWS_ALLOW_HTTP", &v)?;
        }
        cfg.credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(S3Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::IncompleteCredentials {
                    origin: "environment".into(),
                });
            }
            (None, None) => profile_credentials(&profile_name, &prof, explicit_profile.is_some())?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the endpoint and the upload settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(ep) = &self.endpoint {
            let (scheme, host) = split_endpoint(ep)?;
            if scheme == "http" && !self.allow_http && !is_loopback(host) {
                return Err(ConfigError::InsecureEndpoint {
                    endpoint: ep.clone(),
                });
            }
        }
        if self.region.trim().is_empty() {
            return Err(invalid("region", &self.region, "must not be empty"));
        }
        if self.multipart_part_size < MIN_PART_SIZE {
            return Err(invalid(
                "multipart_part_size",
                &self.multipart_part_size.to_string(),
                "must be at least 5 MiB",
            ));
        }
        if self.upload_concurrency == 0 {
            return Err(invalid("upload_concurrency", "0", "must be at least 1"));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "0", "must be at least 1"));
        }
        Ok(())
    }

    /// Whether requests to `bucket` use path-style addressing.
    pub(crate) fn path_style_for(&self, bucket: &str) -> bool {
        if crate::is_directory_bucket(bucket) {
            return false;
        }
        match self.addressing_style {
            AddressingStyle::Path => true,
            AddressingStyle::VirtualHosted => false,
            AddressingStyle::Auto => self.endpoint.is_some(),
        }
    }
}

fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(name, v, "expected true or false")),
    }
}

fn parse_style(name: &str, v: &str) -> Result<AddressingStyle, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(AddressingStyle::Auto),
        "path" => Ok(AddressingStyle::Path),
        "virtual" | "virtual-hosted" | "virtual_hosted" => Ok(AddressingStyle::VirtualHosted),
        _ => Err(invalid(name, v, "expected auto, path or virtual")),
    }
}

/// Reads one profile from one shared file; a missing file is no error.
fn load_profile(
    path: Option<&Path>,
    kind: FileKind,
    name: &str,
) -> Result<Option<Profile>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::ReadFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Ok(profile::parse(&text, kind).remove(name))
}

/// Static credentials from a profile. A profile that was asked for by name but can only get
/// credentials some other way (SSO, role assumption, a helper process) is an error rather than
/// a silent fall-back to anonymous requests.
fn profile_credentials(
    name: &str,
    prof: &Profile,
    explicit: bool,
) -> Result<Option<S3Credentials>, ConfigError> {
    let id = prof.get("aws_access_key_id").filter(|v| !v.is_empty());
    let secret = prof.get("aws_secret_access_key").filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(S3Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: prof.get("aws_session_token").cloned(),
        })),
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::IncompleteCredentials {
            origin: format!("profile `{name}`"),
        }),
        (None, None) => {
            let other = [
                "role_arn",
                "sso_session",
                "sso_start_url",
                "credential_process",
                "web_identity_token_file",
            ]
            .into_iter()
            .find(|k| prof.contains_key(*k));
            match other {
                Some(setting) if explicit || name == "default" => {
                    Err(ConfigError::UnsupportedProfile {
                        profile: name.into(),
                        setting: setting.into(),
                    })
                }
                _ => Ok(None),
            }
        }
    }
}

/// Splits `scheme://host[:port][/path]` into scheme and host (port removed, IPv6 brackets
/// kept).
fn split_endpoint(endpoint: &str) -> Result<(&str, &str), ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| bad("expected http://host[:port] or https://host[:port]"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => return Err(bad("unclosed `[` in the host")),
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials do not belong in the endpoint URL"));
    }
    Ok((scheme, host))
}

/// Whether `host` (from [`split_endpoint`]) names this machine.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        return true;
    }
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_variables_win() {
        let cfg = S3Config::from_lookup(lookup(&[
            ("HOME", "/nonexistent"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3900"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "garage"),
            ("AWS_ACCESS_KEY_ID", "GKid"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
            ("AWS_SESSION_TOKEN", "token-value"),
        ]))
        .unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(cfg.region, "garage");
        let c = cfg.credentials.as_ref().unwrap();
        assert_eq!(c.access_key_id, "GKid");
        assert_eq!(c.session_token.as_deref(), Some("token-value"));
        assert!(cfg.path_style_for("bkt"));
        assert!(!cfg.path_style_for("data--usw2-az1--x-s3"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut cfg = S3Config::for_endpoint(
            "http://127.0.0.1:3900",
            S3Credentials::new("GKid", "very-secret-value"),
        );
        if let Some(c) = cfg.credentials.as_mut() {
            c.session_token = Some("token-value".into());
        }
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(shown.contains("GKid"));
        assert!(!shown.contains("very-secret-value"));
        assert!(!shown.contains("token-value"));
    }

    #[test]
    fn profiles_come_from_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let conf = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\
             [dev]\naws_access_key_id = K\naws_secret_access_key = S\n",
        )
        .unwrap();
        std::fs::write(
            &conf,
            "[profile dev]\nregion = eu-central-1\naws_access_key_id = fromconfig\n\
             s3 =\n  addressing_style = virtual\n  endpoint_url = https://s3.example.test\n\
             [profile sso]\nsso_session = corp\n",
        )
        .unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", conf.to_str().unwrap()),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v: Vec<(&str, &str)> = files.to_vec();
            v.extend_from_slice(extra);
            S3Config::from_lookup(lookup(&v))
        };
        let cfg = with(&[("AWS_PROFILE", "dev")]).unwrap();
        assert_eq!(cfg.region, "eu-central-1");
        assert_eq!(cfg.endpoint.as_deref(), Some("https://s3.example.test"));
        assert_eq!(cfg.addressing_style, AddressingStyle::VirtualHosted);
        assert_eq!(cfg.credentials.unwrap().access_key_id, "K");

        let cfg = with(&[]).unwrap();
        assert_eq!(cfg.region, DEFAULT_REGION);
        assert_eq!(cfg.credentials.unwrap().access_key_id, "D");

        assert!(matches!(
            with(&[("AWS_PROFILE", "missing")]),
            Err(ConfigError::ProfileNotFound { .. })
        ));
        assert!(matches!(
            with(&[("AWS_PROFILE", "sso")]),
            Err(ConfigError::UnsupportedProfile { .. })
        ));
        assert!(matches!(
            with(&[("AWS_ACCESS_KEY_ID", "only-id")]),
            Err(ConfigError::IncompleteCredentials { .. })
        ));
    }

    #[test]
    fn no_credentials_anywhere_means_anonymous() {
        let cfg = S3Config::from_lookup(lookup(&[("HOME", "/nonexistent")])).unwrap();
        assert!(cfg.credentials.is_none());
        assert!(cfg.endpoint.is_none());
        assert!(!cfg.path_style_for("bkt"));
    }

    #[test]
    fn plain_http_is_for_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:3900",
            "http://localhost:9000/",
            "http://[::1]:3900",
            "https://s3.example.test",
        ] {
            S3Config::default().with_endpoint(ok).validate().unwrap();
        }
        let far = S3Config::default().with_endpoint("http://10.1.2.3:9000");
        assert!(matches!(
            far.validate(),
            Err(ConfigError::InsecureEndpoint { .. })
        ));
        S3Config {
            allow_http: true,
            ..far
        }
        .validate()
        .unwrap();
        for bad in ["ftp://x", "127.0.0.1:3900", "http://", "http://u:p@host"] {
            assert!(matches!(
                S3Config::default().with_endpoint(bad).validate(),
                Err(ConfigError::InvalidEndpoint { .. })
            ));
        }
    }

    #[test]
    fn rejects_parts_below_the_s3_minimum() {
        let cfg = S3Config {
            multipart_part_size: 1 << 20,
            ..S3Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::InvalidValue { .. })
        ));
    }
}
