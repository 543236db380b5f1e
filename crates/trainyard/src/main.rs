//! The `trainyard` binary: parses arguments, runs the command, owns exit codes and printing.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use trainyard::cli::{Cli, Command, JobsCommand, S3Command};
use trainyard::config::Settings;
use trainyard::db::{JobRecord, JobStore, SqliteStore};
use trainyard::jobs::describe::{describe, format_time, summary};
use trainyard::jobs::spec::CreateTrainingJobRequest;
use trainyard::jobs::{SubmitError, submit};
use trainyard::runner::{Observer, RunContext, Runner};
use trainyard::storage::Storage;
use trainyard_data::Progress;
use trainyard_s3::{Location, ObjectClientExt, PutBody};

/// Exit code for a failed job or operation.
const FAILED: u8 = 1;
/// Exit code for invalid usage or an invalid request.
const USAGE: u8 = 2;

/// An error that decides its own exit code.
#[derive(Debug)]
struct Exit(u8, String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAINYARD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trainyard: starting the async runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(Exit(code, msg)) = e.downcast_ref::<Exit>() {
                eprintln!("trainyard: {msg}");
                return ExitCode::from(*code);
            }
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("trainyard: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let settings = Settings::from_env()?;
    let store: Arc<dyn JobStore> = Arc::new(
        SqliteStore::open(&settings.db_path())
            .with_context(|| format!("opening {}", settings.db_path().display()))?,
    );
    let storage = Storage::new(&settings);
    match cli.command {
        Command::Train {
            job,
            name,
            unique,
            quiet,
        } => train(settings, store, storage, &job, name, unique, quiet).await,
        Command::Jobs {
            command: JobsCommand::List { json },
        } => {
            let jobs = store.list()?;
            let mut out = std::io::stdout().lock();
            if json {
                let body = serde_json::json!({"TrainingJobSummaries": jobs.iter().map(summary).collect::<Vec<_>>()});
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
            println!("{}", serde_json::to_string_pretty(&describe(&job))?);
            Ok(0)
        }
        Command::Logs { name, host } => {
            let job = find(&*store, &name)?;
            logs(&settings.job_dir(&job.name), host.as_deref())?;
            Ok(0)
        }
        Command::S3 { command } => s3(&storage, command).await,
    }
}

fn find(store: &dyn JobStore, name: &str) -> Result<JobRecord> {
    store
        .get(name)?
        .ok_or_else(|| Exit(FAILED, format!("training job {name:?} does not exist")).into())
}

#[allow(
    clippy::too_many_arguments,
    reason = "the train subcommand's arguments"
)]
async fn train(
    settings: Settings,
    store: Arc<dyn JobStore>,
    storage: Storage,
    job: &Path,
    name: Option<String>,
    unique: bool,
    quiet: bool,
) -> Result<u8> {
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
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let rec = match submit(&settings, &*store, &storage, req, &cwd).await {
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
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        eprintln!("trainyard: stopping the training job (signal received)");
        let _ = stop_tx.send(true);
    });
    let runner = Runner::new(settings, store, storage);
    let name = rec.name.clone();
    let fin = runner
        .run(
            &name,
            RunContext {
                observer: observer.clone(),
                stop: stop_rx,
                workdir: cwd,
            },
        )
        .await?;
    let out = describe(&fin);
    if let Some(uri) = out["ModelArtifacts"]["S3ModelArtifacts"].as_str() {
        if fin.phase.status() != trainyard::jobs::state::JobStatus::Failed {
            println!("trainyard: model artifacts: {uri}");
        }
    }
    for m in &fin.metrics {
        println!("trainyard: metric {} = {}", m.name, m.value);
    }
    match fin.phase.status() {
        trainyard::jobs::state::JobStatus::Completed => Ok(0),
        status => {
            let reason = fin
                .failure_reason
                .clone()
                .unwrap_or_else(|| fin.phase.secondary().to_string());
            eprintln!(
                "trainyard: training job {} {}: {reason}",
                fin.name,
                status.as_str().to_lowercase()
            );
            Ok(FAILED)
        }
    }
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

fn logs(job_dir: &Path, host: Option<&str>) -> Result<()> {
    let dir = job_dir.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("no logs in {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let mut out = std::io::stdout().lock();
    let hosts: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_stem().is_some_and(|s| s != "platform"))
        .collect();
    if let Some(h) = host {
        let f = hosts
            .iter()
            .find(|p| p.file_stem().is_some_and(|s| s == h))
            .ok_or_else(|| Exit(FAILED, format!("no log for host {h}")))?;
        out.write_all(&std::fs::read(f)?)?;
        return Ok(());
    }
    for f in &hosts {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in std::fs::read_to_string(f)?.lines() {
            if hosts.len() > 1 {
                writeln!(out, "[{stem}] {line}")?
            } else {
                writeln!(out, "{line}")?
            }
        }
    }
    Ok(())
}

async fn s3(storage: &Storage, command: S3Command) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    match command {
        S3Command::Ls { uri, recursive } => {
            let loc = Location::parse(&uri, &cwd).map_err(|e| Exit(USAGE, e.to_string()))?;
            let r = storage.resolve(&loc);
            let mut out = std::io::stdout().lock();
            if recursive {
                for o in r.client.list_vec(&r.bucket, &r.key).await? {
                    writeln!(out, "{:>12} {}", o.size, o.key)?;
                }
            } else {
                let mut token = None;
                loop {
                    let page = r
                        .client
                        .list_page(&r.bucket, &r.key, Some("/"), token.as_deref())
                        .await?;
                    for p in &page.common_prefixes {
                        writeln!(
                            out,
                            "{:>12} {}",
                            "PRE",
                            &p[r.key.rfind('/').map(|i| i + 1).unwrap_or(0)..]
                        )?;
                    }
                    for o in &page.objects {
                        writeln!(
                            out,
                            "{:>12} {}",
                            o.size,
                            &o.key[r.key.rfind('/').map(|i| i + 1).unwrap_or(0)..]
                        )?;
                    }
                    match page.next_token {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
            }
            Ok(0)
        }
        S3Command::Cp {
            src,
            dst,
            recursive,
        } => {
            let is_remote = |s: &str| s.starts_with("s3://");
            match (is_remote(&src), is_remote(&dst)) {
                (false, true) => {
                    let loc =
                        Location::parse(&dst, &cwd).map_err(|e| Exit(USAGE, e.to_string()))?;
                    let r = storage.resolve(&loc);
                    let src = PathBuf::from(&src);
                    if recursive {
                        let mut n = 0u64;
                        for (path, rel) in walk_files(&src)? {
                            let key = join_key(&r.key, &rel);
                            r.client.put(&r.bucket, &key, PutBody::File(path)).await?;
                            n += 1;
                        }
                        println!("uploaded {n} files to {dst}");
                    } else {
                        if src.is_dir() {
                            bail!(Exit(
                                USAGE,
                                format!("{} is a directory (use --recursive)", src.display())
                            ));
                        }
                        let key = if r.key.is_empty() || r.key.ends_with('/') {
                            format!(
                                "{}{}",
                                r.key,
                                src.file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default()
                            )
                        } else {
                            r.key.clone()
                        };
                        r.client
                            .put(&r.bucket, &key, PutBody::File(src.clone()))
                            .await?;
                        println!("upload: {} to s3://{}/{key}", src.display(), r.bucket);
                    }
                    Ok(0)
                }
                (true, false) => {
                    let loc =
                        Location::parse(&src, &cwd).map_err(|e| Exit(USAGE, e.to_string()))?;
                    let r = storage.resolve(&loc);
                    let dst = PathBuf::from(&dst);
                    if recursive {
                        let prefix = if r.key.is_empty() || r.key.ends_with('/') {
                            r.key.clone()
                        } else {
                            format!("{}/", r.key)
                        };
                        let objects =
                            trainyard_data::list_prefix(&*r.client, &r.bucket, &prefix, &src)
                                .await?;
                        let sum = trainyard_data::download(
                            r.client.clone(),
                            &objects,
                            &dst,
                            &Default::default(),
                            &Progress::default(),
                        )
                        .await?;
                        println!(
                            "downloaded {} objects, {} bytes in {:.2} s ({:.1} MB/s)",
                            sum.objects,
                            sum.bytes,
                            sum.seconds,
                            sum.mb_per_s()
                        );
                    } else {
                        let bytes = r.client.get_bytes(&r.bucket, &r.key).await?;
                        let target = if dst.is_dir() {
                            dst.join(r.key.rsplit('/').next().unwrap_or(&r.key))
                        } else {
                            dst
                        };
                        std::fs::write(&target, &bytes)
                            .with_context(|| format!("writing {}", target.display()))?;
                    }
                    Ok(0)
                }
                _ => Err(Exit(
                    USAGE,
                    "exactly one of SRC and DST must be an s3:// URI".into(),
                )
                .into()),
            }
        }
    }
}

fn join_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        format!("{prefix}{rel}")
    } else {
        format!("{prefix}/{rel}")
    }
}

fn walk_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
                out.push((p, rel));
            }
        }
    }
    out.sort();
    Ok(out)
}
