//! `trainyard host run`: one host of a job, on the cluster node the cluster manager chose.
//!
//! Why: the same data plane must run on every node (channels, `/opt/ml`, checkpoints, the
//! process), and the node may share nothing with the server but the network. What: the node
//! registers its address, waits until every host has, receives the job's request, the host
//! table and the server's grant (the job principal under ABAC), plans the job as the server
//! would and runs its one [`HostRun`]: its shard of every channel, the config files naming
//! the real node addresses, checkpoints synced from here, every object access checked
//! against the grant. There is no job database here: the phases it reaches and what it
//! prints are sent to the server as they happen, and the server's lifecycle moves the job.
//! At the end the host's model and output directories are sent as archives, whose entries
//! the server copies into the job's one `model.tar.gz`. SIGTERM (what `scancel` sends) stops
//! the host as `StopTrainingJob` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::protocol::{self, Assignment, Event, EventBatch, HostExit, Registration};
use crate::config::Settings;
use crate::db::JobRecord;
use crate::jobs::failure::FailureReason;
use crate::jobs::spec::CreateTrainingJobRequest;
use crate::jobs::state::Phase;
use crate::lifecycle::Observer;
use crate::runner::artifacts::Source;
use crate::runner::host::{HostEnd, HostReporter, HostRun, ProcessEnv};
use crate::runner::inputs::Listings;
use crate::runner::jobdir::{JobDir, Journal};
use crate::runner::logs::Metrics;
use crate::runner::plan::JobPlan;
use crate::runner::supervise::{HostResult, PidFile};
use crate::runner::{authorize, isolation, layout};
use crate::storage::Storage;

/// Why a node could not run its host or talk to the server.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The server could not be reached.
    #[error("{call}: {source}")]
    Unreachable {
        /// Method and URL.
        call: String,
        /// Why.
        source: hyper_util::client::legacy::Error,
    },
    /// The request could not be built or the answer read.
    #[error("{call}: {message}")]
    Protocol {
        /// Method and URL.
        call: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error.
    #[error("the server refused {what} of host {host}: {status} {body}")]
    Refused {
        /// The call.
        what: String,
        /// 1-based host number.
        host: usize,
        /// HTTP status.
        status: hyper::StatusCode,
        /// The server's message.
        body: String,
    },
    /// A body was not the JSON it should be.
    #[error("{what}: {source}")]
    Json {
        /// What was read or written.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A local file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server URL is not usable.
    #[error("the server URL {0:?} is not an http://host:port URL")]
    BadServerUrl(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

type Result<T, E = NodeError> = std::result::Result<T, E>;

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
        let call = format!("{method} {uri}");
        let protocol = |message: String| NodeError::Protocol {
            call: call.clone(),
            message,
        };
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/octet-stream")
            .body(body)
            .map_err(|e| protocol(format!("building the request: {e}")))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|source| NodeError::Unreachable {
                call: call.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| protocol(format!("reading the answer: {e}")))?
            .to_bytes();
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
            return Err(NodeError::Refused {
                what: what.to_string(),
                host: self.index + 1,
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(bytes)
    }

    /// Says where this host is reachable.
    pub async fn register(&self, address: &str) -> Result<()> {
        let body = serde_json::to_vec(&Registration {
            address: address.to_string(),
        })
        .map_err(|source| NodeError::Json {
            what: "writing the registration",
            source,
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
                return serde_json::from_slice(&bytes).map_err(|source| NodeError::Json {
                    what: "reading the assignment",
                    source,
                });
            }
            if status != hyper::StatusCode::CONFLICT || tokio::time::Instant::now() > deadline {
                return Err(NodeError::Refused {
                    what: "the assignment".to_string(),
                    host: self.index + 1,
                    status,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends events, in order.
    pub async fn send(&self, events: Vec<Event>) -> Result<()> {
        let body =
            serde_json::to_vec(&EventBatch { events }).map_err(|source| NodeError::Json {
                what: "writing events",
                source,
            })?;
        self.expect_ok(hyper::Method::POST, "events", full(body.into()))
            .await
            .map(|_| ())
    }

    /// Sends one artifact tarball, streamed from the file.
    pub async fn put_artifact(&self, file: &str, path: &Path) -> Result<()> {
        let body = file_body(path)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        self.expect_ok(hyper::Method::PUT, &format!("artifacts/{file}"), body)
            .await
            .map(|_| ())
    }
}

/// Forwards what the host reports to the server, in batches.
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

/// Tells the server the phases the host reaches; the server's lifecycle moves the job. A
/// node learns of a stop from SIGTERM (what `scancel` sends), so it goes on unless stopped.
#[derive(Debug)]
struct RemoteReporter {
    tx: mpsc::UnboundedSender<Event>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl HostReporter for RemoteReporter {
    fn reached(&self, phase: Phase) -> bool {
        let _ = self.tx.send(Event::Phase(phase.secondary().to_string()));
        !*self.stop.borrow()
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
    let bad = || NodeError::BadServerUrl(server.to_string());
    let uri: hyper::Uri = server.parse().map_err(|_| bad())?;
    let host = uri.host().ok_or_else(bad)?;
    let port = uri.port_u16().unwrap_or(80);
    let route = io(format!("finding a route to {host}:{port}"));
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect((host, port)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_err(route)?;
    Ok(sock.ip().to_string())
}

/// Runs host `index` of `job` here; returns the process exit code (0 when the host
/// completed).
pub async fn run_host(
    mut settings: Settings,
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
    let request: CreateTrainingJobRequest = serde_json::from_value(assignment.request.clone())
        .map_err(|source| NodeError::Json {
            what: "reading the job request",
            source,
        })?;

    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
    settings.home = scratch.clone();
    let dir = JobDir::at(scratch.join("job"));
    dir.reset().map_err(io("preparing the job directory"))?;

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
    let observer: Arc<dyn Observer> = Arc::new(RemoteObserver { tx: tx.clone() });
    let journal = Arc::new(
        dir.journal(observer)
            .map_err(io("opening the platform log"))?,
    );
    let prepared = prepare(
        &settings,
        &assignment,
        &request,
        &dir,
        index,
        &journal,
        &tx,
        &stop_rx,
    )
    .await;
    let (end, metrics) = match prepared {
        Ok(run) => {
            let metrics = run.metrics.clone();
            let end = run.run(stop_rx).await;
            let values = metrics
                .values()
                .into_iter()
                .map(|m| (m.name, m.value, m.timestamp))
                .collect();
            (end, values)
        }
        Err(reason) => (
            HostEnd {
                index,
                result: HostResult::Failed(reason),
                trained: false,
            },
            Vec::new(),
        ),
    };

    // The host's artifacts, for the server to merge.
    let host_root = dir.host_root(index);
    for (file, sub) in [
        ("model.tar.gz", layout::MODEL_DIR),
        ("output.tar.gz", layout::OUTPUT_DATA_DIR),
    ] {
        let dest = dir.artifact(file);
        let source = Source::dir(&host_root, sub);
        crate::runner::artifacts::pack(&[source], &dest).map_err(io(format!("packing {file}")))?;
        client.put_artifact(file, &dest).await?;
    }
    let (status, failure_reason) = match &end.result {
        HostResult::Completed => ("Completed", None),
        HostResult::Stopped => ("Stopped", None),
        HostResult::Failed(r) => ("Failed", Some(r.to_wire())),
    };
    let exit = HostExit {
        status: status.to_string(),
        failure_reason,
        metrics,
        trained: end.trained,
    };
    let completed = end.result == HostResult::Completed;
    let _ = tx.send(Event::Exit(exit));
    drop(tx);
    drop(journal);
    let _ = forwarder.await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(if completed { 0 } else { 1 })
}

/// Plans the job and prepares this node's host: the same stages as a local run, with the
/// node's addresses for `algo-k` and the server's grant for the data plane.
#[allow(clippy::too_many_arguments, reason = "one call site, the run's parts")]
async fn prepare(
    settings: &Settings,
    assignment: &Assignment,
    request: &CreateTrainingJobRequest,
    dir: &JobDir,
    index: usize,
    journal: &Arc<Journal>,
    tx: &mpsc::UnboundedSender<Event>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<HostRun, FailureReason> {
    let plan = Arc::new(JobPlan::build(settings, &assignment.arn, request)?);
    let base = Storage::new(settings)
        .map_err(|e| FailureReason::internal(format!("configuring object storage: {e}")))?;
    let (storage, share_credentials) =
        authorize::storage(settings, &base, &assignment.grant, &plan.name)?;
    let mut host = layout::prepare_host(dir, request, index)
        .map_err(|e| FailureReason::internal(format!("preparing the host directory: {e}")))?;
    // The hosts are cluster nodes: `algo-k` names node k's address.
    let entries: String = assignment
        .addresses
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{addr}\t{}\n", crate::runner::jobdir::host_name(i)))
        .collect();
    layout::use_network(&mut host, request, &entries)
        .map_err(|e| FailureReason::internal(format!("writing the host's network files: {e}")))?;
    let isolated = isolation::isolated(settings, &host, journal, !share_credentials).await?;
    let cgroup = isolation::host_cgroups(&plan, std::slice::from_ref(&host), journal)
        .pop()
        .flatten();
    let binds = isolation::binds(settings, &plan, &host, isolated, None, journal)?;
    let workdir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let env = ProcessEnv::new(settings, share_credentials, workdir, journal);
    let run = HostRun {
        metrics: Arc::new(Metrics::new(&plan.metric_definitions)),
        plan,
        layout: host,
        dir: dir.clone(),
        storage,
        listings: Arc::new(Listings::default()),
        journal: journal.clone(),
        reporter: Arc::new(RemoteReporter {
            tx: tx.clone(),
            stop: stop.clone(),
        }),
        isolated,
        // The node's own address is `algo-k` to the others.
        network: crate::runner::container::Net::Host,
        cgroup,
        binds,
        warm_pool_cache: false,
        env: Arc::new(env),
        pids: Arc::new(PidFile::new(dir.pids())),
    };
    Ok(run)
}
