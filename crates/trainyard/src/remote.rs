//! A minimal client of trainyard's own API, for the CLI's `--endpoint` mode.
//!
//! It speaks the same protocol as boto3 (`POST /`, `X-Amz-Target`, JSON 1.1) over plain HTTP,
//! which is what a loopback or LAN trainyard server offers. With credentials
//! ([`Remote::signing`]) every request is SigV4-signed by [`crate::authz::sigv4::sign`], the
//! signer whose output the server's verifier checks, so the CLI works against a server with
//! an `iam.json`; without, requests go unsigned, which only a server without one accepts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use time::OffsetDateTime;

use crate::authz::sigv4::{ClientCredentials, SignError, sign};

/// An error answer of the server, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with an error shape.
    #[error("{code}: {message}")]
    Api {
        /// `__type`.
        code: String,
        /// `message`.
        message: String,
    },
    /// The request could not be signed.
    #[error("signing the request to {endpoint}: {source}")]
    Sign {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: SignError,
    },
    /// The request did not complete.
    #[error("calling {endpoint}: {message}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
}

/// A trainyard server.
#[derive(Debug, Clone)]
pub struct Remote {
    endpoint: String,
    uri: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    signing: Option<Signing>,
}

/// Who signs, and for which region (`Debug` shows no secret).
#[derive(Debug, Clone)]
struct Signing {
    credentials: ClientCredentials,
    region: String,
}

impl Remote {
    /// A client of `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str) -> Result<Self, RemoteError> {
        let transport = |message: String| RemoteError::Transport {
            endpoint: endpoint.to_string(),
            message,
        };
        if !endpoint.starts_with("http://") {
            return Err(transport(
                "only http:// endpoints are supported by the CLI".into(),
            ));
        }
        let uri: hyper::Uri = endpoint
            .parse()
            .map_err(|e| transport(format!("invalid endpoint: {e}")))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Remote {
            endpoint: endpoint.to_string(),
            uri,
            client,
            signing: None,
        })
    }

    /// Signs every request with `credentials` for `region` (the credential scope's region).
    pub fn signing(mut self, credentials: ClientCredentials, region: &str) -> Self {
        self.signing = Some(Signing {
            credentials,
            region: region.to_owned(),
        });
        self
    }

    /// Calls one operation (`SageMaker.DescribeTrainingJob`, ...).
    pub async fn call(&self, target: &str, body: &Value) -> Result<Value, RemoteError> {
        let transport = |message: String| RemoteError::Transport {
            endpoint: self.endpoint.clone(),
            message,
        };
        let body = Bytes::from(body.to_string());
        let mut req = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Full::new(body.clone()))
            .map_err(|e| transport(e.to_string()))?;
        if let Some(signing) = &self.signing {
            self.sign(&mut req, target, &body, signing)?;
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| transport(format!("invalid response ({status}): {e}")))?;
        if status.is_success() {
            Ok(value)
        } else {
            let code = value["__type"].as_str().unwrap_or("UnknownError");
            let code = code.rsplit('#').next().unwrap_or(code).to_string();
            let message = value["message"]
                .as_str()
                .or(value["Message"].as_str())
                .unwrap_or("")
                .to_string();
            Err(RemoteError::Api { code, message })
        }
    }

    /// Signs `req` as the service its target belongs to (`logs` for the CloudWatch Logs
    /// operations, `sagemaker` for the others), with the endpoint's authority as `host`.
    fn sign(
        &self,
        req: &mut hyper::Request<Full<Bytes>>,
        target: &str,
        body: &[u8],
        signing: &Signing,
    ) -> Result<(), RemoteError> {
        let failed = |source| RemoteError::Sign {
            endpoint: self.endpoint.clone(),
            source,
        };
        let host = self
            .uri
            .authority()
            .and_then(|a| hyper::header::HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| failed(SignError::MissingHost))?;
        req.headers_mut().insert(hyper::header::HOST, host);
        let service = if target.starts_with("Logs_") {
            "logs"
        } else {
            "sagemaker"
        };
        let path = self.uri.path().to_owned();
        let query = self.uri.query().unwrap_or("").to_owned();
        sign(
            "POST",
            &path,
            &query,
            req.headers_mut(),
            body,
            &signing.credentials,
            (&signing.region, service),
            OffsetDateTime::now_utc(),
        )
        .map_err(failed)
    }
}
