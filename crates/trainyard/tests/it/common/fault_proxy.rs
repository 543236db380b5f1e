//! An HTTP proxy on loopback between trainyard and the S3 server that injects the failures
//! real object storage produces: 503 SlowDown, 500 InternalError, and bodies cut short (the
//! connection closes before Content-Length bytes arrived). It forwards everything else
//! verbatim, Host header included, so SigV4 signatures stay valid.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One injected failure kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    SlowDown,
    Internal,
    Truncate,
}

/// Which GETs fail: every `every`-th GET cycles through `faults`; GETs of keys containing
/// `always_fail` always answer 500.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub every: u64,
    pub faults: Vec<Fault>,
    pub always_fail: Option<String>,
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub gets: AtomicU64,
    pub ranged_gets: AtomicU64,
    pub injected: AtomicU64,
}

pub struct FaultProxy {
    pub url: String,
    pub stats: Arc<Stats>,
    _rt: tokio::runtime::Runtime,
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

impl FaultProxy {
    pub fn start(upstream: &str, plan: Plan) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let upstream: hyper::Uri = upstream.parse().unwrap();
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let plan = Arc::new(plan);
        let st = stats.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (client, plan, st, upstream) =
                    (client.clone(), plan.clone(), st.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, plan, st, upstream) =
                            (client.clone(), plan.clone(), st.clone(), upstream.clone());
                        async move {
                            Ok::<_, Infallible>(handle(req, &client, &plan, &st, &upstream).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        FaultProxy {
            url: format!("http://{addr}"),
            stats,
            _rt: rt,
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    plan: &Plan,
    st: &Stats,
    upstream: &hyper::Uri,
) -> Response<Body> {
    let is_get = req.method() == hyper::Method::GET;
    let mut fault = None;
    if is_get {
        let n = st.gets.fetch_add(1, Ordering::Relaxed) + 1;
        if req.headers().contains_key("range") {
            st.ranged_gets.fetch_add(1, Ordering::Relaxed);
        }
        if plan
            .always_fail
            .as_ref()
            .is_some_and(|k| req.uri().path().contains(k.as_str()))
        {
            fault = Some(Fault::Internal);
        } else if plan.every > 0 && n % plan.every == 0 && !plan.faults.is_empty() {
            fault = Some(plan.faults[((n / plan.every) as usize) % plan.faults.len()]);
        }
    }
    match fault {
        Some(Fault::SlowDown) => {
            st.injected.fetch_add(1, Ordering::Relaxed);
            return full(
                503,
                "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            );
        }
        Some(Fault::Internal) => {
            st.injected.fetch_add(1, Ordering::Relaxed);
            return full(
                500,
                "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>",
            );
        }
        _ => {}
    }
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("http://{}{}", upstream.authority().unwrap(), pq)
        .parse()
        .unwrap();
    let resp = match client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            return full(
                502,
                &format!("<Error><Code>BadGateway</Code><Message>{e}</Message></Error>"),
            );
        }
    };
    let (parts, body) = resp.into_parts();
    let len: Option<u64> = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if fault == Some(Fault::Truncate) && parts.status.is_success() && len.is_some_and(|l| l > 1) {
        st.injected.fetch_add(1, Ordering::Relaxed);
        // Send half the bytes, then fail the body: hyper drops the connection mid-response.
        let cut = len.unwrap() / 2;
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let half = bytes.slice(..(cut as usize).min(bytes.len()));
        let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = vec![
            Ok(Frame::data(half)),
            Err("injected: connection cut".into()),
        ];
        return Response::from_parts(
            parts,
            BodyExt::boxed(StreamBody::new(futures::stream::iter(frames))),
        );
    }
    Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed(),
    )
}
