//! A minimal client of trainyard's own API, for the CLI's `--endpoint` mode.
//!
//! It speaks the same protocol as boto3 (`POST /`, `X-Amz-Target`, JSON 1.1) over plain HTTP,
//! which is what a loopback or LAN trainyard server offers. Requests are not signed: the
//! server does not verify signatures yet (see the README).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
        })
    }

    /// Calls one operation (`SageMaker.DescribeTrainingJob`, ...).
    pub async fn call(&self, target: &str, body: &Value) -> Result<Value, RemoteError> {
        let transport = |message: String| RemoteError::Transport {
            endpoint: self.endpoint.clone(),
            message,
        };
        let req = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| transport(e.to_string()))?;
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
}
