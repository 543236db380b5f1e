//! Commands on the embedded default: jobs run in this process, records are read from SQLite.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use trainyard::cli::{Command, JobsCommand};
use trainyard::config::Settings;
use trainyard::db::{JobRecord, JobStore, SqliteStore};
use trainyard::jobs::describe::{describe, format_time, summary};
use trainyard::jobs::state::JobStatus;
use trainyard::jobs::{SubmitError, submit};
use trainyard::runner::logs::parse_event;
use trainyard::runner::{Observer, RunContext, Runner};
use trainyard::storage::Storage;
use trainyard_data::Progress;

use super::{Exit, FAILED, USAGE, interrupted, read_request};

pub async fn run(command: Command) -> Result<u8> {
    let settings = Settings::from_env()?;
    let store: Arc<dyn JobStore> = Arc::new(
        SqliteStore::open(&settings.db_path())
            .with_context(|| format!("opening {}", settings.db_path().display()))?,
    );
    match command {
        Command::Train {
            job,
            name,
            unique,
            quiet,
        } => {
            let req = read_request(&job, name, unique)?;
            train(settings, store, req, quiet).await
        }
        Command::Jobs {
            command: JobsCommand::List { json },
        } => {
            let jobs = store.summaries()?;
            let pools = store.warm_pools()?;
            let pool_of = |name: &str| pools.iter().find(|p| p.job.eq_ignore_ascii_case(name));
            let mut out = std::io::stdout().lock();
            if json {
                let body = serde_json::json!({"TrainingJobSummaries": jobs.iter().map(|j| summary(j, pool_of(&j.name))).collect::<Vec<_>>()});
                writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
            } else {
                writeln!(
                    out,
                    "{:<40} {:<11} {:<19} CREATED",
                    "NAME", "STATUS", "SECONDARY"
                )?;
                for j in &jobs {
                    writeln!(
                        out,
                        "{:<40} {:<11} {:<19} {}",
                        j.name,
                        j.phase.status(),
                        j.phase.secondary(),
                        format_time(j.creation_time)
                    )?;
                }
            }
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Describe { name },
        } => {
            let job = find(&*store, &name)?;
            let pool = store.warm_pool(&job.name)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&describe(&job, pool.as_ref()))?
            );
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Update { name, keep_alive },
        } => {
            let job = find(&*store, &name)?;
            trainyard::warm_pools::update_keep_alive(&*store, &job.name, keep_alive)
                .map_err(|e| Exit(USAGE, e))?;
            trainyard::warm_pools::reap(&settings, &*store)?;
            println!("{}", job.arn);
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Stop { .. },
        } => Err(Exit(
            USAGE,
            "stopping a job needs a server (--endpoint); a local `trainyard train` stops on Ctrl-C"
                .into(),
        )
        .into()),
        Command::Logs { name, host, follow } => {
            if follow {
                return Err(Exit(USAGE, "--follow needs a server (--endpoint)".into()).into());
            }
            let job = find(&*store, &name)?;
            print_logs(&settings.job_dir(&job.name), host.as_deref())?;
            Ok(0)
        }
        Command::Serve { .. }
        | Command::S3 { .. }
        | Command::Mount { .. }
        | Command::Host { .. } => {
            unreachable!("dispatched before")
        }
    }
}

fn find(store: &dyn JobStore, name: &str) -> Result<JobRecord> {
    store
        .get(name)?
        .ok_or_else(|| Exit(FAILED, format!("training job {name:?} does not exist")).into())
}

async fn train(
    settings: Settings,
    store: Arc<dyn JobStore>,
    req: trainyard::jobs::spec::CreateTrainingJobRequest,
    quiet: bool,
) -> Result<u8> {
    let storage = Storage::new(&settings).context("configuring object storage")?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    // Without a server, expired warm pools are released by the next command that runs a job.
    trainyard::warm_pools::reap(&settings, &*store).context("releasing expired warm pools")?;
    let rec = match submit(&settings, &*store, &storage, req, &cwd, None).await {
        Ok(r) => r,
        Err(e @ (SubmitError::Parse(_) | SubmitError::Invalid(_) | SubmitError::InUse(_))) => {
            return Err(Exit(USAGE, e.to_string()).into());
        }
        Err(e) => return Err(e.into()),
    };
    let observer = Arc::new(CliObserver::new(quiet, rec.request.instance_count() > 1));
    println!("trainyard: created training job {} ({})", rec.name, rec.arn);
    observer.phase(
        &rec,
        rec.transitions
            .last()
            .map(|t| t.message.as_str())
            .unwrap_or(""),
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        interrupted().await;
        eprintln!("trainyard: stopping the training job (signal received)");
        let _ = stop_tx.send(true);
    });
    let lifecycle = trainyard::lifecycle::Lifecycle::new(store.clone(), observer.clone());
    let runner = Runner::new(settings, store, storage);
    let run = runner
        .run(
            &rec.name,
            RunContext {
                observer: observer.clone(),
                stop: stop_rx,
                workdir: cwd,
            },
        )
        .await;
    // A run that could not record its end (a full disk under the database) still ends the job.
    let fin = match run {
        Ok(fin) => fin,
        Err(e) => match lifecycle
            .fail_after(&rec.name, &e, Some(std::time::Duration::from_secs(60)))
            .await
        {
            Some(fin) => fin,
            None => return Err(e.into()),
        },
    };
    let out = describe(&fin, None);
    if fin.phase.status() != JobStatus::Failed {
        if let Some(uri) = out["ModelArtifacts"]["S3ModelArtifacts"].as_str() {
            println!("trainyard: model artifacts: {uri}");
        }
    }
    for m in &fin.metrics {
        println!("trainyard: metric {} = {}", m.name, m.value);
    }
    Ok(final_code(
        fin.phase.status(),
        &fin.name,
        fin.failure_reason
            .as_deref()
            .unwrap_or(fin.phase.secondary()),
    ))
}

/// 0 for Completed; otherwise prints why and returns 1.
pub fn final_code(status: JobStatus, name: &str, reason: &str) -> u8 {
    if status == JobStatus::Completed {
        return 0;
    }
    eprintln!(
        "trainyard: training job {name} {}: {reason}",
        status.as_str().to_lowercase()
    );
    FAILED
}

/// Prints progress the way the SageMaker SDK's `logs=True` does.
#[derive(Debug)]
struct CliObserver {
    quiet: bool,
    multi_host: bool,
    bars: std::sync::Mutex<Vec<(String, ProgressBar, tokio::task::JoinHandle<()>)>>,
}

impl CliObserver {
    fn new(quiet: bool, multi_host: bool) -> Self {
        CliObserver {
            quiet,
            multi_host,
            bars: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Observer for CliObserver {
    fn phase(&self, job: &JobRecord, message: &str) {
        println!(
            "{} {} - {}",
            format_time(job.last_modified_time),
            job.phase.secondary(),
            message
        );
    }

    fn log(&self, host: &str, line: &str) {
        if self.quiet {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = if self.multi_host {
            writeln!(out, "[{host}] {line}")
        } else {
            writeln!(out, "{line}")
        };
    }

    fn info(&self, message: &str) {
        println!("trainyard: {message}");
    }

    fn download_started(&self, channel: &str, progress: Arc<Progress>) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("channel {channel}"));
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                use std::sync::atomic::Ordering::Relaxed;
                b.set_length(progress.bytes_total.load(Relaxed));
                b.set_position(progress.bytes_done.load(Relaxed));
                b.set_message(format!(
                    "{}/{} objects",
                    progress.objects_done.load(Relaxed),
                    progress.objects_total.load(Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        self.bars.lock().unwrap_or_else(|p| p.into_inner()).push((
            channel.to_string(),
            bar,
            ticker,
        ));
    }

    fn download_finished(&self, channel: &str) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = bars.iter().position(|(c, _, _)| c == channel) {
            let (_, bar, ticker) = bars.remove(i);
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

fn print_logs(job_dir: &trainyard::runner::jobdir::JobDir, host: Option<&str>) -> Result<()> {
    let dir = job_dir.logs();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("no logs in {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "log")
                && p.file_stem().is_some_and(|s| s != "platform")
        })
        .collect();
    files.sort();
    if let Some(h) = host {
        files.retain(|p| p.file_stem().is_some_and(|s| s == h));
        if files.is_empty() {
            return Err(Exit(FAILED, format!("no log for host {h}")).into());
        }
    }
    let mut out = std::io::stdout().lock();
    let prefix = files.len() > 1;
    for f in &files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for stored in std::fs::read_to_string(f)?.lines() {
            let line = parse_event(stored).1;
            if prefix {
                writeln!(out, "[{stem}] {line}")?
            } else {
                writeln!(out, "{line}")?
            }
        }
    }
    Ok(())
}
