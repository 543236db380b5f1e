//! [`FaultProxy`]: an HTTP proxy on loopback that injects the failures real object storage
//! produces between a client and a real S3-compatible server.
//!
//! Retry and resumption logic has to meet real HTTP failures, not only the mock client's: a
//! `503 SlowDown` or `500 InternalError` answer, a response whose connection closes before
//! `Content-Length` bytes arrived, a connection reset mid-body. The proxy produces them at two
//! levels. A [`ProxyPlan`] chooses GETs to answer with an error or to cut in half (every nth
//! GET cycling through a list of faults, and every GET of a key containing a given string).
//! [`FaultProxy::cut_connections`] arms the next connections to be cut at the byte level after
//! a set number of response bytes, with a FIN or an RST. Everything else is forwarded
//! verbatim, `Host` header included, so SigV4 signatures stay valid.
//!
//! The proxy runs on its own runtime, so synchronous tests (which drive the trainyard binary)
//! and `#[tokio::test]`s use it alike; dropping it stops it.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream URL is not an `http://host:port` URL.
    #[error("upstream {url:?} is not an http://host:port URL")]
    Upstream {
        /// The URL as given.
        url: String,
    },
    /// Binding the loopback listener or building the runtime failed.
    #[error("starting the fault proxy: {0}")]
    Io(#[from] io::Error),
}

/// One HTTP-level failure a [`ProxyPlan`] injects into a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFault {
    /// `503 SlowDown`, without asking the server.
    SlowDown,
    /// `500 InternalError`, without asking the server.
    Internal,
    /// The server's answer with half its body, then the connection fails.
    Truncate,
}

/// Which GETs fail: every `every`-th GET takes the next fault of `faults` in turn; GETs whose
/// path contains `always_fail` always answer `500 InternalError`.
#[derive(Debug, Clone, Default)]
pub struct ProxyPlan {
    /// Period of the cycling faults (0: none).
    pub every: u64,
    /// The faults cycled through.
    pub faults: Vec<HttpFault>,
    /// A path fragment whose GETs always fail.
    pub always_fail: Option<String>,
}

/// How [`FaultProxy::cut_connections`] ends an armed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Response bytes (headers included) forwarded before the cut.
    pub after: usize,
    /// An RST instead of a FIN.
    pub reset: bool,
}

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    gets: AtomicU64,
    ranged_gets: AtomicU64,
    injected: AtomicU64,
    cuts: AtomicUsize,
    forwarded: AtomicUsize,
}

impl ProxyStats {
    /// GET requests received.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// GET requests with a `Range` header.
    pub fn ranged_gets(&self) -> u64 {
        self.ranged_gets.load(Ordering::SeqCst)
    }

    /// HTTP-level faults injected by the plan.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Connections cut since the last [`FaultProxy::cut_connections`].
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Response bytes written to clients since the last [`FaultProxy::cut_connections`].
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// Connections still to be cut, and how.
#[derive(Debug, Default)]
struct Arming {
    left: usize,
    cut: Option<Cut>,
}

/// A running proxy. Stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    url: String,
    stats: Arc<ProxyStats>,
    arming: Arc<Mutex<Arming>>,
    rt: Option<tokio::runtime::Runtime>,
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str, plan: ProxyPlan) -> Result<Self, ProxyError> {
        let upstream_uri: hyper::Uri = upstream.parse().map_err(|_| ProxyError::Upstream {
            url: upstream.to_string(),
        })?;
        if upstream_uri.scheme_str() != Some("http") || upstream_uri.authority().is_none() {
            return Err(ProxyError::Upstream {
                url: upstream.to_string(),
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let stats = Arc::new(ProxyStats::default());
        let arming = Arc::new(Mutex::new(Arming::default()));
        let shared = Arc::new(Shared {
            client: Client::builder(TokioExecutor::new()).build_http(),
            plan,
            stats: stats.clone(),
            upstream: upstream_uri,
        });
        let armed = arming.clone();
        rt.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let cut = {
                    let mut a = armed.lock().unwrap_or_else(PoisonError::into_inner);
                    if a.left > 0 {
                        a.left -= 1;
                        a.cut
                    } else {
                        None
                    }
                };
                let io = Downstream {
                    io: Some(sock),
                    cut,
                    sent: 0,
                    stats: shared.stats.clone(),
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            url,
            stats,
            arming,
            rt: Some(rt),
        })
    }

    /// The proxy's endpoint, `http://127.0.0.1:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Cuts the next `connections` accepted connections as `cut` says, and resets the
    /// [`ProxyStats::cuts`] and [`ProxyStats::forwarded`] counters. A client that pools
    /// connections keeps using uncut ones it already has; use a fresh client after arming.
    pub fn cut_connections(&self, connections: usize, cut: Cut) {
        let mut a = self.arming.lock().unwrap_or_else(PoisonError::into_inner);
        self.stats.cuts.store(0, Ordering::SeqCst);
        self.stats.forwarded.store(0, Ordering::SeqCst);
        *a = Arming {
            left: connections,
            cut: Some(cut),
        };
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Not `drop(rt)`: that blocks, which panics inside an async test.
            rt.shutdown_background();
        }
    }
}

/// What every connection's handler needs.
struct Shared {
    client: Client<HttpConnector, Incoming>,
    plan: ProxyPlan,
    stats: Arc<ProxyStats>,
    upstream: hyper::Uri,
}

fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>");
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp
}

impl Shared {
    /// The plan's fault for this request, counting GETs.
    fn fault(&self, req: &Request<Incoming>) -> Option<HttpFault> {
        if req.method() != hyper::Method::GET {
            return None;
        }
        let n = self.stats.gets.fetch_add(1, Ordering::SeqCst) + 1;
        if req.headers().contains_key(hyper::header::RANGE) {
            self.stats.ranged_gets.fetch_add(1, Ordering::SeqCst);
        }
        let plan = &self.plan;
        if plan
            .always_fail
            .as_deref()
            .is_some_and(|k| req.uri().path().contains(k))
        {
            Some(HttpFault::Internal)
        } else if plan.every > 0 && n % plan.every == 0 && !plan.faults.is_empty() {
            Some(plan.faults[((n / plan.every) as usize) % plan.faults.len()])
        } else {
            None
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let fault = self.fault(&req);
        match fault {
            Some(HttpFault::SlowDown) => {
                self.stats.injected.fetch_add(1, Ordering::SeqCst);
                return error_response(503, "SlowDown", "Please reduce your request rate.");
            }
            Some(HttpFault::Internal) => {
                self.stats.injected.fetch_add(1, Ordering::SeqCst);
                return error_response(500, "InternalError", "We encountered an internal error.");
            }
            Some(HttpFault::Truncate) | None => {}
        }
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let authority = self
            .upstream
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        parts.uri = match format!("http://{authority}{target}").parse() {
            Ok(uri) => uri,
            Err(e) => return error_response(400, "InvalidURI", &e.to_string()),
        };
        let resp = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(e) => return error_response(502, "BadGateway", &e.to_string()),
        };
        let (parts, body) = resp.into_parts();
        let len: Option<u64> = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if fault == Some(HttpFault::Truncate) && parts.status.is_success() {
            if let Some(len) = len.filter(|l| *l > 1) {
                self.stats.injected.fetch_add(1, Ordering::SeqCst);
                // Half the bytes, then a failed body: hyper drops the connection mid-response.
                // The pause lets hyper flush the half before it sees the error.
                let bytes = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let half = bytes.slice(..((len / 2) as usize).min(bytes.len()));
                type Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;
                let frames = futures::stream::iter([Ok::<_, _>(Frame::data(half))]).chain(
                    futures::stream::once(async {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Item::Err("injected: connection cut".into())
                    }),
                );
                return Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)));
            }
        }
        Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed(),
        )
    }
}

/// The client side of one connection: counts response bytes and, when armed, cuts the
/// connection after [`Cut::after`] of them.
struct Downstream {
    /// `None` once an RST cut closed the socket.
    io: Option<TcpStream>,
    cut: Option<Cut>,
    sent: usize,
    stats: Arc<ProxyStats>,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "connection cut by the fault proxy",
    )
}

impl AsyncRead for Downstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Downstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let limit = match this.cut {
            Some(c) if this.sent >= c.after => return Poll::Ready(Err(cut_error())),
            Some(c) => (c.after - this.sent).min(buf.len()),
            None => buf.len(),
        };
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(cut_error()));
        };
        let n = match Pin::new(&mut *io).poll_write(cx, &buf[..limit]) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        this.sent += n;
        this.stats.forwarded.fetch_add(n, Ordering::SeqCst);
        if let Some(c) = this.cut.filter(|c| c.after == this.sent) {
            this.stats.cuts.fetch_add(1, Ordering::SeqCst);
            if c.reset {
                // Closing with zero linger sends an RST and no FIN.
                if let Some(io) = this.io.take() {
                    let _ = io.set_zero_linger();
                }
            } else {
                // FIN now; the read side stays open until hyper drops the connection.
                let _ = Pin::new(io).poll_shutdown(cx);
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering every request with `body` (keep-alive, Content-Length).
    async fn upstream(body: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if conn.write_all(head.as_bytes()).await.is_err()
                                || conn.write_all(body).await.is_err()
                            {
                                return;
                            }
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        url
    }

    /// Sends one GET on a fresh connection and returns everything read until the proxy
    /// closes it (or the read error).
    async fn raw_get(proxy: &FaultProxy, path: &str) -> (Vec<u8>, Option<io::ErrorKind>) {
        let addr = proxy.url().trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => return (out, Some(e.kind())),
            }
        }
    }

    fn status(resp: &[u8]) -> u16 {
        std::str::from_utf8(&resp[9..12]).unwrap().parse().unwrap()
    }

    const BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plan_fails_truncates_and_forwards_gets() {
        let up = upstream(BODY).await;
        let proxy = FaultProxy::start(
            &up,
            ProxyPlan {
                every: 2,
                faults: vec![HttpFault::SlowDown, HttpFault::Truncate],
                always_fail: Some("broken".into()),
            },
        )
        .unwrap();
        // GET 1 passes, GET 2 is a (2/2 % 2 = 1) Truncate, GET 4 a SlowDown.
        let (resp, _) = raw_get(&proxy, "/b/k").await;
        assert_eq!(status(&resp), 200);
        assert!(resp.ends_with(BODY));
        let (resp, _) = raw_get(&proxy, "/b/k").await;
        assert_eq!(status(&resp), 200);
        assert!(
            !resp.ends_with(BODY) && resp.ends_with(&BODY[..BODY.len() / 2]),
            "{}",
            String::from_utf8_lossy(&resp)
        );
        let _ = raw_get(&proxy, "/b/k").await;
        let (resp, _) = raw_get(&proxy, "/b/k").await;
        assert_eq!(status(&resp), 503);
        assert!(String::from_utf8_lossy(&resp).contains("<Code>SlowDown</Code>"));
        let (resp, _) = raw_get(&proxy, "/b/broken-key").await;
        assert_eq!(status(&resp), 500);
        assert_eq!(
            (
                proxy.stats().gets(),
                proxy.stats().injected(),
                proxy.stats().ranged_gets()
            ),
            (5, 3, 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn armed_connections_are_cut_with_a_fin_or_a_reset() {
        let up = upstream(BODY).await;
        let proxy = FaultProxy::start(&up, ProxyPlan::default()).unwrap();
        let (whole, err) = raw_get(&proxy, "/b/k").await;
        assert_eq!(err, None);
        proxy.cut_connections(
            1,
            Cut {
                after: 20,
                reset: false,
            },
        );
        let (cut, err) = raw_get(&proxy, "/b/k").await;
        assert_eq!((cut.len(), err), (20, None), "FIN after 20 bytes");
        assert!(cut.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let (again, _) = raw_get(&proxy, "/b/k").await;
        assert!(
            again.len() == whole.len() && again.ends_with(BODY),
            "only the armed connection is cut"
        );
        assert_eq!(proxy.stats().cuts(), 1);
        assert_eq!(proxy.stats().forwarded(), 20 + whole.len());

        proxy.cut_connections(
            1,
            Cut {
                after: 20,
                reset: true,
            },
        );
        let (cut, err) = raw_get(&proxy, "/b/k").await;
        assert!(cut.len() <= 20 && whole.starts_with(&cut));
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
        assert_eq!(proxy.stats().cuts(), 1);
    }

    #[test]
    fn only_http_upstreams_are_accepted() {
        assert!(matches!(
            FaultProxy::start("https://example.com", ProxyPlan::default()),
            Err(ProxyError::Upstream { .. })
        ));
        assert!(matches!(
            FaultProxy::start("not a url", ProxyPlan::default()),
            Err(ProxyError::Upstream { .. })
        ));
    }
}
