//! Commands against a trainyard server (`--endpoint`): the same output as the local mode,
//! obtained through the API (CreateTrainingJob, DescribeTrainingJob, the log operations).
//!
//! Requests are signed with the standard AWS credential environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`; the scope's region from
//! `AWS_REGION`, `AWS_DEFAULT_REGION` or `TRAINYARD_REGION`, default `us-east-1`), so the CLI
//! works against a server with an `iam.json` as boto3 does; without credentials they go
//! unsigned, and a refusal says which variables to set.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use trainyard::api::LOG_GROUP;
use trainyard::authz::sigv4::ClientCredentials;
use trainyard::cli::{Command, JobsCommand};
use trainyard::identity::Secret;
use trainyard::jobs::describe::format_time;
use trainyard::jobs::state::JobStatus;
use trainyard::remote::{Remote, RemoteError};
use trainyard_s3::Location;

use super::local::final_code;
use super::{Exit, FAILED, USAGE, interrupted, read_request};

fn api_error(e: RemoteError) -> anyhow::Error {
    match &e {
        RemoteError::Api { code, .. }
            if code == "ValidationException"
                || code == "ResourceInUse"
                || code == "ResourceLimitExceeded" =>
        {
            Exit(USAGE, e.to_string()).into()
        }
        RemoteError::Api { code, .. } if code == "MissingAuthenticationTokenException" => Exit(
            FAILED,
            format!(
                "{e} (the server requires signed requests: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for temporary credentials)"
            ),
        )
        .into(),
        RemoteError::Api { code, .. }
            if code == "UnrecognizedClientException" || code == "InvalidSignatureException" =>
        {
            Exit(
                FAILED,
                format!("{e} (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)"),
            )
            .into()
        }
        _ => Exit(FAILED, e.to_string()).into(),
    }
}

/// A variable of the environment, unless unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Credentials and region from the standard AWS environment; `None` without credentials.
fn credentials_from_env() -> Result<Option<(ClientCredentials, String)>> {
    let (key, secret) = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (None, None) => return Ok(None),
        (Some(key), Some(secret)) => (key, secret),
        (Some(_), None) => {
            return Err(Exit(
                USAGE,
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            )
            .into());
        }
        (None, Some(_)) => {
            return Err(Exit(
                USAGE,
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
            )
            .into());
        }
    };
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION", "TRAINYARD_REGION"]
        .into_iter()
        .find_map(var)
        .unwrap_or_else(|| "us-east-1".into());
    let credentials = ClientCredentials {
        access_key_id: key,
        secret_access_key: Secret::new(secret),
        session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
    };
    Ok(Some((credentials, region)))
}

pub async fn run(command: Command, endpoint: &str) -> Result<u8> {
    let mut api = Remote::new(endpoint).map_err(api_error)?;
    if let Some((credentials, region)) = credentials_from_env()? {
        tracing::debug!(%region, "signing requests with the AWS_* credentials");
        api = api.signing(credentials, &region);
    }
    match command {
        Command::Train {
            job,
            name,
            unique,
            quiet,
        } => {
            let mut req = serde_json::to_value(read_request(&job, name, unique)?)?;
            absolutize_file_uris(&mut req)?;
            let name = req["TrainingJobName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let created = api
                .call("SageMaker.CreateTrainingJob", &req)
                .await
                .map_err(api_error)?;
            println!(
                "trainyard: created training job {name} ({})",
                created["TrainingJobArn"].as_str().unwrap_or("")
            );
            follow(&api, &name, !quiet, true).await
        }
        Command::Jobs {
            command: JobsCommand::List { json },
        } => {
            let mut all = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({"MaxResults": 100});
                if let Some(t) = &token {
                    body["NextToken"] = json!(t);
                }
                let page = api
                    .call("SageMaker.ListTrainingJobs", &body)
                    .await
                    .map_err(api_error)?;
                all.extend(
                    page["TrainingJobSummaries"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                match page["NextToken"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"TrainingJobSummaries": all}))?
                );
            } else {
                println!(
                    "{:<40} {:<11} {:<19} CREATED",
                    "NAME", "STATUS", "SECONDARY"
                );
                for j in &all {
                    println!(
                        "{:<40} {:<11} {:<19} {}",
                        j["TrainingJobName"].as_str().unwrap_or(""),
                        j["TrainingJobStatus"].as_str().unwrap_or(""),
                        j["SecondaryStatus"].as_str().unwrap_or(""),
                        format_time(j["CreationTime"].as_f64().unwrap_or(0.0))
                    );
                }
            }
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Describe { name },
        } => {
            let d = api
                .call(
                    "SageMaker.DescribeTrainingJob",
                    &json!({"TrainingJobName": name}),
                )
                .await
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Update { name, keep_alive },
        } => {
            let out = api
                .call(
                    "SageMaker.UpdateTrainingJob",
                    &json!({"TrainingJobName": name, "ResourceConfig": {"KeepAlivePeriodInSeconds": keep_alive}}),
                )
                .await
                .map_err(api_error)?;
            println!("{}", out["TrainingJobArn"].as_str().unwrap_or_default());
            Ok(0)
        }
        Command::Jobs {
            command: JobsCommand::Stop { name },
        } => {
            api.call(
                "SageMaker.StopTrainingJob",
                &json!({"TrainingJobName": name}),
            )
            .await
            .map_err(api_error)?;
            println!("trainyard: stopping {name}");
            Ok(0)
        }
        Command::Logs {
            name,
            host,
            follow: true,
        } if host.is_none() => follow(&api, &name, true, false).await,
        Command::Logs {
            name,
            host,
            follow: f,
        } => {
            if f {
                return Err(Exit(USAGE, "--follow shows every host; drop --host".into()).into());
            }
            let mut cursor = LogCursor::default();
            cursor.poll(&api, &name, host.as_deref(), true).await?;
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

/// Relative `file://` URIs mean the client's directory, so they are made absolute here.
fn absolutize_file_uris(req: &mut Value) -> Result<()> {
    let cwd = std::env::current_dir()?;
    let fix = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            if let Ok(Location::File(p)) = Location::parse(s, &cwd) {
                let slash = if s.ends_with('/') && !p.to_string_lossy().ends_with('/') {
                    "/"
                } else {
                    ""
                };
                *v = json!(format!("file://{}{slash}", p.display()));
            }
        }
    };
    fix(&mut req["OutputDataConfig"]["S3OutputPath"]);
    if let Some(chs) = req.get_mut("InputDataConfig").and_then(Value::as_array_mut) {
        for ch in chs {
            if let Some(s3) = ch.pointer_mut("/DataSource/S3DataSource/S3Uri") {
                fix(s3);
            }
        }
    }
    Ok(())
}

/// Where each log stream has been read up to.
#[derive(Debug, Default)]
struct LogCursor {
    tokens: BTreeMap<String, String>,
}

impl LogCursor {
    /// Prints new lines of every stream (or one host's); returns whether any were printed.
    async fn poll(
        &mut self,
        api: &Remote,
        job: &str,
        host: Option<&str>,
        print: bool,
    ) -> Result<bool> {
        let streams = api
            .call(
                "Logs_20140328.DescribeLogStreams",
                &json!({"logGroupName": LOG_GROUP, "logStreamNamePrefix": format!("{job}/")}),
            )
            .await
            .map_err(api_error)?;
        let names: Vec<String> = streams["logStreams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["logStreamName"].as_str().map(str::to_string))
            .filter(|n| {
                host.is_none_or(|h| {
                    n.split('/')
                        .nth(1)
                        .is_some_and(|rest| rest.starts_with(&format!("{h}-")))
                })
            })
            .collect();
        let multi = names.len() > 1;
        let mut any = false;
        for name in names {
            let host_label = name
                .split('/')
                .nth(1)
                .and_then(|r| r.rsplit_once('-'))
                .map(|(h, _)| h.to_string())
                .unwrap_or_default();
            loop {
                let mut body = json!({"logGroupName": LOG_GROUP, "logStreamName": name, "startFromHead": true});
                if let Some(t) = self.tokens.get(&name) {
                    body["nextToken"] = json!(t);
                }
                let page = api
                    .call("Logs_20140328.GetLogEvents", &body)
                    .await
                    .map_err(api_error)?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                if let Some(t) = page["nextForwardToken"].as_str() {
                    self.tokens.insert(name.clone(), t.to_string());
                }
                if events.is_empty() {
                    break;
                }
                any = true;
                if print {
                    for e in events {
                        let m = e["message"].as_str().unwrap_or("");
                        if multi {
                            println!("[{host_label}] {m}")
                        } else {
                            println!("{m}")
                        }
                    }
                }
            }
        }
        Ok(any)
    }
}

/// Follows a job until it ends: status changes, and log lines when `logs`. Ctrl-C stops the
/// job when `stop_on_interrupt` (the job was started by this command), else just detaches.
async fn follow(api: &Remote, name: &str, logs: bool, stop_on_interrupt: bool) -> Result<u8> {
    let mut seen = 0usize;
    let mut cursor = LogCursor::default();
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let mut stop_sent = false;
    loop {
        let d = api
            .call(
                "SageMaker.DescribeTrainingJob",
                &json!({"TrainingJobName": name}),
            )
            .await
            .map_err(api_error)?;
        let transitions = d["SecondaryStatusTransitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in transitions.iter().skip(seen) {
            println!(
                "{} {} - {}",
                format_time(t["StartTime"].as_f64().unwrap_or(0.0)),
                t["Status"].as_str().unwrap_or(""),
                t["StatusMessage"].as_str().unwrap_or("")
            );
        }
        seen = transitions.len();
        if logs {
            cursor.poll(api, name, None, true).await?;
        }
        let status = d["TrainingJobStatus"].as_str().and_then(JobStatus::parse);
        if let Some(status) = status.filter(|s| s.is_terminal()) {
            if let Some(m) = d["FinalMetricDataList"].as_array() {
                for m in m {
                    println!(
                        "trainyard: metric {} = {}",
                        m["MetricName"].as_str().unwrap_or(""),
                        m["Value"]
                    );
                }
            }
            if status != JobStatus::Failed {
                println!(
                    "trainyard: model artifacts: {}",
                    d["ModelArtifacts"]["S3ModelArtifacts"]
                        .as_str()
                        .unwrap_or("")
                );
            }
            let reason = d["FailureReason"]
                .as_str()
                .or(d["SecondaryStatus"].as_str())
                .unwrap_or("")
                .to_string();
            return Ok(final_code(status, name, &reason));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut interrupt, if !stop_sent => {
                if !stop_on_interrupt {
                    return Ok(0);
                }
                eprintln!("trainyard: stopping the training job (signal received)");
                api.call("SageMaker.StopTrainingJob", &json!({"TrainingJobName": name})).await.map_err(api_error)?;
                stop_sent = true;
            }
        }
    }
}
