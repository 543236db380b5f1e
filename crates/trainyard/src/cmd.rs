//! The subcommands. `local` runs jobs in this process on the embedded default, `remote` drives
//! a trainyard server through its API (`--endpoint`), `serve` is that server, `s3` the store
//! helper. What both modes share (reading a request file) lives here.

mod local;
mod mount;
mod remote;
mod s3;
mod serve;

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use trainyard::cli::{Cli, Command, HostCommand};
use trainyard::jobs::spec::CreateTrainingJobRequest;

/// Exit code for a failed job or operation.
pub const FAILED: u8 = 1;
/// Exit code for invalid usage or an invalid request.
pub const USAGE: u8 = 2;

/// An error that decides its own exit code.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// `serve` logs its requests and jobs; other commands stay quiet unless asked.
pub fn default_log_filter(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<u8> {
    match (cli.command, cli.endpoint) {
        (
            Command::Serve {
                listen,
                capacity,
                strict,
            },
            _,
        ) => serve::serve(listen, capacity, strict).await,
        (Command::S3 { command }, _) => s3::s3(command).await,
        (
            Command::Host {
                command: HostCommand::Run { server, job, host },
            },
            _,
        ) => {
            let token = std::env::var(trainyard::cluster::protocol::TOKEN_ENV).map_err(|_| {
                Exit(
                    USAGE,
                    format!(
                        "{} is not set (the executor passes the job token to its tasks)",
                        trainyard::cluster::protocol::TOKEN_ENV
                    ),
                )
            })?;
            let settings = trainyard::config::Settings::from_env()?;
            let base = settings.slurm.scratch.clone();
            let allocation = std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| "local".into());
            let scratch = base.join(format!("{job}-algo-{}-{allocation}", host + 1));
            Ok(
                trainyard::cluster::node::run_host(settings, &server, &job, host, &token, scratch)
                    .await?,
            )
        }
        (
            Command::Mount {
                uri,
                dir,
                cache_mib,
            },
            _,
        ) => mount::mount(&uri, &dir, cache_mib).await,
        (command, Some(endpoint)) => remote::run(command, &endpoint).await,
        (command, None) => local::run(command).await,
    }
}

/// Reads a request file (`-` for stdin), applying `--name` and `--unique`.
pub fn read_request(
    job: &Path,
    name: Option<String>,
    unique: bool,
) -> Result<CreateTrainingJobRequest> {
    let text = if job == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the request from stdin")?;
        s
    } else {
        std::fs::read_to_string(job).with_context(|| format!("reading {}", job.display()))?
    };
    let mut req = CreateTrainingJobRequest::from_json(&text).map_err(|e| {
        Exit(
            USAGE,
            format!("{}: ValidationException: {e}", job.display()),
        )
    })?;
    if let Some(n) = name {
        req.training_job_name = n;
    }
    if unique {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]-[hour]-[minute]-[second]-[subsecond digits:3]"
        );
        let stamp = time::OffsetDateTime::now_utc().format(&fmt)?;
        let base: String = req
            .training_job_name
            .chars()
            .take(63 - stamp.len() - 1)
            .collect();
        req.training_job_name = format!("{}-{stamp}", base.trim_end_matches('-'));
    }
    Ok(req)
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
