//! `trainyard serve`: the API server with its scheduler.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use trainyard::api::{AppState, app};
use trainyard::cluster::slurm::{SlurmConfig, SlurmExecutor};
use trainyard::config::{ExecutorKind, Settings};
use trainyard::db::{JobStore, SqliteStore};
use trainyard::executor::Executor;
use trainyard::runner::Runner;
use trainyard::scheduler::Scheduler;
use trainyard::storage::Storage;

use super::interrupted;

pub async fn serve(listen: SocketAddr, capacity: usize, strict: bool) -> Result<u8> {
    let settings = Settings::from_env()?;
    let store: Arc<dyn JobStore> = Arc::new(
        SqliteStore::open(&settings.db_path())
            .with_context(|| format!("opening {}", settings.db_path().display()))?,
    );
    let storage = Storage::new(&settings).context("configuring object storage")?;
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let identity = trainyard::identity::Identity::load(&settings.home, &settings.account_id)
        .context("loading access control ($TRAINYARD_HOME/iam.json)")?
        .map(Arc::new);
    match &identity {
        Some(_) => tracing::info!(
            "access control on: requests must be signed by keys of iam.json; jobs run as their execution role"
        ),
        None => tracing::warn!(
            "no iam.json: request signatures are not verified and jobs access storage unchecked"
        ),
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let runner = Runner::new(settings.clone(), store.clone(), storage.clone())
        .with_identity(identity.clone());
    let executor = match settings.executor {
        ExecutorKind::Local => Executor::Local(Box::new(runner)),
        ExecutorKind::Slurm => {
            let config = SlurmConfig::resolve(&settings.slurm, addr)?;
            tracing::info!(callback = %config.callback_url, "jobs run on Slurm");
            Executor::Slurm(Arc::new(SlurmExecutor::new(runner, config)))
        }
    };
    let scheduler = Scheduler::new(
        settings.clone(),
        store.clone(),
        executor,
        capacity,
        workdir.clone(),
    );
    let recovered = scheduler
        .recover()
        .context("settling jobs left by a previous server")?;
    if recovered > 0 {
        tracing::warn!("settled {recovered} job(s) left running by a previous server");
    }
    scheduler.start();
    let state = Arc::new(AppState {
        settings: settings.clone(),
        store,
        storage,
        scheduler,
        strict,
        sandbox_check: true,
        workdir: workdir.to_string_lossy().into_owned(),
        s3: trainyard::api::s3::Endpoint::new(&settings, identity.clone()),
        identity,
    });
    if state.identity.is_some() {
        // The container probe, once, now rather than in the first CreateTrainingJob.
        let settings = settings.clone();
        tokio::spawn(async move {
            match trainyard::runner::isolation::refusal(&settings).await {
                Some(why) => tracing::error!("{why}"),
                None => tracing::info!("jobs run in containers"),
            }
        });
    }
    tracing::info!(home = %settings.home.display(), capacity, "trainyard listening on http://{addr}");
    println!("trainyard: listening on http://{addr}");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(interrupted())
        .await
        .context("serving")?;
    Ok(0)
}
