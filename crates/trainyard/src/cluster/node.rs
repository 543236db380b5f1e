//! `trainyard host run`: one host of a job, on the cluster node the cluster manager chose.
//!
//! Why: the same data plane must run on every node (channels, `/opt/ml`, checkpoints, the
//! process), and the node may share nothing with the server but the network. What: the node
//! registers its address, waits until every host has, receives the job's request and the
//! host table, and runs its host with the local [`Runner`] restricted to that host: its shard
//! of every channel, the config files naming the real node addresses, checkpoints synced
//! from here. What happens is sent to the server as it happens ([`RemoteObserver`]); at the
//! end the host's model and output directories are sent as tarballs, which the server merges
//! across hosts and uploads. SIGTERM (what `scancel` sends) stops the host as
//! `StopTrainingJob` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::protocol::{self, Assignment, Event, EventBatch, HostExit, Registration};
use crate::config::Settings;
use crate::db::{JobRecord, JobStore, SqliteStore};
use crate::jobs::spec::CreateTrainingJobRequest;
use crate::runner::{HostAssignment, Observer, RunContext, Runner};
use crate::storage::Storage;

/// Calls the server on behalf of one host.
#[derive(Debug, Clone)]
pub struct HostClient {
    server: String,
    job: String,
    index: usize,
    token: String,
    client: Client<HttpConnector, BoxBody<Bytes, std::io::Error>>,
}

fn full(bytes: Bytes) -> BoxBody<Bytes, std::io::Error> {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A file as a request body, read 1 MiB at a time (artifacts can be large).
async fn file_body(path: &Path) -> std::io::Result<BoxBody<Bytes, std::io::Error>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut f = file?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(StreamBody::new(chunks).boxed())
}

impl HostClient {
    /// A client for host `index` of `job` at `server` (`http://host:port`).
    pub fn new(server: &str, job: &str, index: usize, token: &str) -> Self {
        HostClient {
            server: server.trim_end_matches('/').to_string(),
            job: job.to_string(),
            index,
            token: token.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: hyper::Method,
        what: &str,
        body: BoxBody<Bytes, std::io::Error>,
    ) -> Result<(hyper::StatusCode, Bytes)> {
        let uri = format!(
            "{}{}",
            self.server,
            protocol::path(&self.job, self.index, what)
        );
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/octet-stream")
            .body(body)?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("{method} {uri}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn expect_ok(
        &self,
        method: hyper::Method,
        what: &str,
        body: BoxBody<Bytes, std::io::Error>,
    ) -> Result<Bytes> {
        let (status, bytes) = self.call(method, what, body).await?;
        if !status.is_success() {
            bail!(
                "the server refused {what} of host {}: {status} {}",
                self.index + 1,
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes)
    }

    /// Says where this host is reachable.
    pub async fn register(&self, address: &str) -> Result<()> {
        let body = serde_json::to_vec(&Registration {
            address: address.to_string(),
        })?;
        self.expect_ok(hyper::Method::POST, "register", full(body.into()))
            .await
            .map(|_| ())
    }

    /// Waits until every host registered, then returns the assignment.
    pub async fn assignment(&self, timeout: Duration) -> Result<Assignment> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (status, bytes) = self
                .call(hyper::Method::GET, "assignment", full(Bytes::new()))
                .await?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).context("reading the assignment");
            }
            if status != hyper::StatusCode::CONFLICT || tokio::time::Instant::now() > deadline {
                bail!(
                    "no assignment for host {}: {status} {}",
                    self.index + 1,
                    String::from_utf8_lossy(&bytes)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends events, in order.
    pub async fn send(&self, events: Vec<Event>) -> Result<()> {
        let body = serde_json::to_vec(&EventBatch { events })?;
        self.expect_ok(hyper::Method::POST, "events", full(body.into()))
            .await
            .map(|_| ())
    }

    /// Sends one artifact tarball, streamed from the file.
    pub async fn put_artifact(&self, file: &str, path: &Path) -> Result<()> {
        let body = file_body(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        self.expect_ok(hyper::Method::PUT, &format!("artifacts/{file}"), body)
            .await
            .map(|_| ())
    }
}

/// Forwards what the local runner reports to the server, in batches.
#[derive(Debug)]
struct RemoteObserver {
    tx: mpsc::UnboundedSender<Event>,
}

impl Observer for RemoteObserver {
    fn phase(&self, job: &JobRecord, message: &str) {
        let _ = self
            .tx
            .send(Event::Phase(job.phase.secondary().to_string()));
        let _ = self.tx.send(Event::Info(message.to_string()));
    }
    fn log(&self, _host: &str, line: &str) {
        let _ = self.tx.send(Event::Log(line.to_string()));
    }
    fn info(&self, message: &str) {
        let _ = self.tx.send(Event::Info(message.to_string()));
    }
}

/// Sends queued events every 200 ms until the queue closes or the host's end is sent.
async fn forward(client: HostClient, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(e)) => batch.push(e),
            Ok(None) => open = false,
            Err(_) => {}
        }
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
            if batch.len() >= 1000 {
                break;
            }
        }
        if batch.iter().any(|e| matches!(e, Event::Exit(_))) {
            open = false;
        }
        if !batch.is_empty() {
            if let Err(e) = client.send(batch).await {
                tracing::warn!("sending host events: {e:#}");
            }
        }
    }
}

/// This node's address as the server (and so the other nodes) reach it: the local address
/// of a route to the server.
pub fn local_address(server: &str) -> Result<String> {
    let uri: hyper::Uri = server.parse().context("parsing the server URL")?;
    let host = uri.host().context("the server URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect((host, port))
        .with_context(|| format!("finding a route to {host}:{port}"))?;
    Ok(sock.local_addr()?.ip().to_string())
}

/// Runs host `index` of `job` here; returns the process exit code (0 when the host
/// completed).
pub async fn run_host(
    server: &str,
    job: &str,
    index: usize,
    token: &str,
    scratch: PathBuf,
) -> Result<u8> {
    let client = HostClient::new(server, job, index, token);
    let address = local_address(server)?;
    client.register(&address).await?;
    let assignment = client.assignment(Duration::from_secs(600)).await?;
    let request: CreateTrainingJobRequest =
        serde_json::from_value(assignment.request.clone()).context("reading the job request")?;

    let mut settings = Settings::from_env()?;
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    settings.home = scratch.clone();
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::in_memory()?);
    let arn = format!(
        "arn:aws:sagemaker:{}:{}:training-job/{}",
        settings.region,
        settings.account_id,
        job.to_ascii_lowercase()
    );
    store.create(job, &arn, &request, "Starting on a cluster node", None)?;
    let storage = Storage::new(&settings).context("configuring object storage")?;
    let runner = Runner::new(settings.clone(), store, storage).keeping_artifacts();

    let (tx, rx) = mpsc::unbounded_channel();
    let forwarder = tokio::spawn(forward(client.clone(), rx));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            let _ = stop_tx.send(true);
        }
    });
    let observer = Arc::new(RemoteObserver { tx: tx.clone() });
    let ctx = RunContext {
        observer,
        stop: stop_rx,
        workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        host: Some(HostAssignment {
            index,
            addresses: assignment.addresses.clone(),
        }),
    };
    let fin = runner.run(job, ctx).await?;

    // The host's artifacts, for the server to merge.
    let [model, output] = runner.artifact_dirs(job, index);
    for (file, dir) in [("model.tar.gz", model), ("output.tar.gz", output)] {
        let dest = scratch.join(file);
        crate::runner::artifacts::pack(&[dir], &dest).with_context(|| format!("packing {file}"))?;
        client.put_artifact(file, &dest).await?;
    }
    let exit = HostExit {
        status: fin.phase.status().as_str().to_string(),
        failure_reason: fin.failure_reason.clone(),
        metrics: fin
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value, m.timestamp))
            .collect(),
    };
    let completed = exit.status == "Completed";
    let _ = tx.send(Event::Exit(exit));
    drop(tx);
    drop(runner);
    let _ = forwarder.await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(if completed { 0 } else { 1 })
}
