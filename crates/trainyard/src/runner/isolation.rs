//! Stage 4a, isolation: what a host's process sees and may use.
//!
//! Why apart from spawning: the decisions (can this machine give a private `/opt/ml`? do the
//! hosts get a network each? how much memory? which directories are bound where?) are made
//! once per job or per host, and logged, before any process starts; [`super::supervise`]
//! then only applies them. The mechanics stay in `process` (namespaces, binds), `network`
//! (per-job bridge) and `cgroup` (memory limits).

use std::path::{Path, PathBuf};

use super::cgroup::HostCgroup;
use super::container;
use super::host::ProcessEnv;
use super::jobdir::Journal;
use super::layout::{self, HostLayout};
use super::network::JobNetwork;
use super::plan::{ChannelSource, JobPlan};
use super::process::{Bind, OPT_ML};
use crate::config::Settings;
use crate::jobs::failure::FailureReason;
use crate::warm_pools::{self, WarmPool};

/// Whether this machine runs the job in containers (one probe per server); when it cannot,
/// the job log says why and where the processes' files are instead. A job under access
/// control (`access_control`: its grant has a principal) is never run outside its container:
/// it fails instead (the API refuses such jobs at submission already, [`refusal`]; this holds
/// when the machine changed since, or on a cluster node).
pub async fn isolated(
    settings: &Settings,
    host: &HostLayout,
    journal: &Journal,
    access_control: bool,
) -> Result<bool, FailureReason> {
    let sandbox = sandbox(settings).await;
    let decided = decide(sandbox.clone(), access_control);
    if let (Err(why), Ok(false)) = (&sandbox, &decided) {
        journal.info(&format!(
            "Jobs cannot run in containers here ({why}): processes run on the host and see their files through the SM_* paths under {} instead of /opt/ml",
            host.root.display()
        ));
    }
    decided.map_err(FailureReason::internal)
}

/// Containers or not, from the probe's answer: without one, a job under access control is
/// refused, anything else runs on the host.
fn decide(sandbox: Result<(), String>, access_control: bool) -> Result<bool, String> {
    match sandbox {
        Ok(()) => Ok(true),
        Err(why) if access_control => Err(unsandboxed(&why)),
        Err(_) => Ok(false),
    }
}

fn unsandboxed(why: &str) -> String {
    format!(
        "this installation has access control (iam.json), so a job runs only in its container, and this machine cannot run containers ({why}); the job is not run outside one"
    )
}

/// Why `CreateTrainingJob` must be refused on an installation with access control: its jobs
/// run only in containers, and this server's machine cannot run them (the local executor), or
/// containers are turned off (`TRAINYARD_ISOLATION=off`, which the Slurm nodes share; they
/// probe themselves and fail the job otherwise). The probe runs once per server
/// (`trainyard serve` starts it at startup); `None`: the job may be submitted.
pub async fn refusal(settings: &Settings) -> Option<String> {
    let why = match settings.executor {
        crate::config::ExecutorKind::Local => sandbox(settings).await.err()?,
        crate::config::ExecutorKind::Slurm if !settings.isolation => {
            "TRAINYARD_ISOLATION=off".to_string()
        }
        crate::config::ExecutorKind::Slurm => return None,
    };
    Some(format!(
        "This trainyard server refuses training jobs: {}",
        unsandboxed(&why).replacen("the job is", "a job is", 1)
    ))
}

/// Can this machine run a job's container? The reason when not.
pub async fn sandbox(settings: &Settings) -> Result<(), String> {
    if !settings.isolation {
        return Err("TRAINYARD_ISOLATION=off".to_string());
    }
    container::available(&settings.container_runtime, &settings.home.join("run")).await
}

/// What the `host` runtime shows a job of the host, decided once per job.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// Bound read-only at their own paths: the system directories, the Python installation
    /// trainyard finds on its `PATH`, the configured `host_paths`, the job's code directory.
    pub read_only: Vec<PathBuf>,
    /// Hidden inside: trainyard's home (its database, `iam.json`, the store, other jobs),
    /// wherever it lies under those.
    pub masked: Vec<PathBuf>,
    /// The environment the runtime starts from (instead of the server's own): `PATH` over
    /// what is visible, `HOME`, the locale.
    pub env: Vec<(String, String)>,
}

/// The `host` runtime's view for a job whose code is in `workdir`.
pub fn host_view(settings: &Settings, workdir: &Path) -> HostView {
    let python = python_prefixes(&settings.host_env);
    let mut read_only = container::system_dirs();
    read_only.extend(python.iter().cloned());
    read_only.extend(settings.host_paths.iter().cloned());
    read_only.push(workdir.to_path_buf());
    let mut seen = std::collections::BTreeSet::new();
    read_only.retain(|p| std::fs::symlink_metadata(p).is_ok() && seen.insert(p.clone()));
    let home = std::fs::canonicalize(&settings.home).unwrap_or_else(|_| settings.home.clone());
    let masked = if read_only.iter().any(|p| home.starts_with(p)) {
        vec![home]
    } else {
        Vec::new()
    };
    // trainyard's own `PATH` where it is visible inside, with Python's directory where
    // `python3` was found on it (a pyenv shim's, say), then the standard directories.
    let server_path = settings
        .host_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::env::split_paths(v).collect::<Vec<_>>())
        .unwrap_or_default();
    let python_bins: Vec<PathBuf> = python.iter().map(|p| p.join("bin")).collect();
    let mut path: Vec<PathBuf> = Vec::new();
    let mut python_placed = false;
    for dir in server_path {
        if !python_placed && dir.join("python3").exists() {
            path.extend(python_bins.iter().cloned());
            python_placed = true;
        }
        if read_only.iter().any(|r| dir.starts_with(r)) {
            path.push(dir);
        }
    }
    if !python_placed {
        path.splice(0..0, python_bins);
    }
    path.extend(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .map(PathBuf::from),
    );
    let mut seen = std::collections::BTreeSet::new();
    path.retain(|p| seen.insert(p.clone()));
    let path: Vec<String> = path
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut env = vec![
        ("PATH".to_string(), path.join(":")),
        ("HOME".to_string(), "/root".to_string()),
    ];
    env.extend(
        settings
            .host_env
            .iter()
            // A Slurm task's own variables (`SLURM_JOB_ID`, ...), as jobs on the cluster read them.
            .filter(|(k, _)| {
                k == "LANG" || k == "TZ" || k.starts_with("LC_") || k.starts_with("SLURM_")
            })
            .cloned(),
    );
    HostView {
        read_only,
        masked,
        env,
    }
}

/// The installation prefixes of the `python3` on trainyard's `PATH` (a virtual environment's
/// and its base), found once: jobs of the `host` runtime run Python scripts with it.
fn python_prefixes(host_env: &[(String, String)]) -> Vec<PathBuf> {
    static FOUND: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let path = host_env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys; print(sys.prefix); print(sys.base_prefix)",
                ])
                .env_clear()
                .env("PATH", path)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output();
            let Some(out) = out.ok().filter(|o| o.status.success()) else {
                return Vec::new();
            };
            let mut dirs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute() && !p.starts_with("/usr") && p != Path::new("/"))
                .collect();
            dirs.dedup();
            dirs
        })
        .clone()
}

/// The network of a job on this machine: one namespace per host on a per-job bridge, so
/// `algo-1..N` are distinct machines that find each other by name, and a single host is
/// contained too. A warm pool's network is named after the pool and outlives the job. `None`:
/// the hosts share loopback (no containers here, or the network could not be made; the log
/// says which) when there are several, or a lone container gets a loopback of its own.
pub fn job_network(
    settings: &Settings,
    plan: &JobPlan,
    hosts: &mut [HostLayout],
    isolated: bool,
    pool: Option<&WarmPool>,
    journal: &Journal,
) -> Result<Option<JobNetwork>, FailureReason> {
    if !isolated {
        if hosts.len() > 1 {
            journal.info("Hosts share this machine's loopback network (no namespaces)");
        }
        return Ok(None);
    }
    let net_name = pool.map(|p| warm_pools::network_name(&p.pool_id));
    let adopted = net_name
        .as_deref()
        .and_then(|n| JobNetwork::adopt(n, hosts.len()));
    let reused = adopted.is_some();
    let created = match adopted {
        Some(net) => Ok(net),
        None => JobNetwork::create(net_name.as_deref().unwrap_or(&plan.name), hosts.len()),
    };
    let mut net = match created {
        Ok(net) => net,
        Err(e) => {
            journal.info(&format!(
                "Hosts share this machine's loopback network (no job network: {e})"
            ));
            return Ok(None);
        }
    };
    if let Some(p) = pool {
        net.keep();
        let dir = warm_pools::pool_dir(settings, &p.pool_id);
        let _ =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("network"), b""));
    }
    if reused {
        journal.info("The warm pool's network is reused");
    }
    for host in hosts.iter_mut() {
        layout::use_network(host, &plan.request, &net.hosts_entries()).map_err(|e| {
            FailureReason::internal(format!("writing {}'s network files: {e}", host.name))
        })?;
    }
    journal.info(&format!(
        "Hosts have their own network namespaces: {}",
        (0..hosts.len())
            .map(|i| format!("algo-{}={}", i + 1, net.address(i)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Some(net))
}

/// What a job's network reaches besides its hosts: with `EnableNetworkIsolation`, nothing;
/// else, on an installation without access control whose jobs get the object store's
/// credentials, the store's loopback endpoint at the same address inside (the job's
/// `AWS_ENDPOINT_URL_S3` works unchanged). Under access control jobs get no credentials and
/// no route: their data moves through trainyard, checked against their session.
pub fn reach_store(net: &mut JobNetwork, plan: &JobPlan, env: &ProcessEnv, journal: &Journal) {
    if plan.request.enable_network_isolation.unwrap_or(false) {
        journal.info("Network isolation: the hosts reach only each other");
        return;
    }
    if env.credentials.is_none() {
        return;
    }
    let Some(endpoint) = env.s3_endpoint.as_deref() else {
        return;
    };
    let Ok(url) = url::Url::parse(endpoint) else {
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        _ => false,
    };
    let Some(port) = url.port_or_known_default().filter(|_| loopback) else {
        journal.info(&format!(
            "The object store at {endpoint} is not on this machine's loopback: the hosts cannot reach it"
        ));
        return;
    };
    match net.forward(port) {
        Ok(()) => journal.info(&format!(
            "The hosts reach the object store at {endpoint} (this installation has no access control), and nothing else outside the job"
        )),
        Err(e) => journal.info(&format!(
            "The hosts cannot reach the object store at {endpoint}: {e}"
        )),
    }
}

/// One cgroup per host: memory-limited by the instance type, or only tracking the host's
/// processes (a `local` type), so that ending a host ends everything it started. `None`
/// entries: no writable cgroup hierarchy here, which the log says once.
pub fn host_cgroups(
    plan: &JobPlan,
    hosts: &[HostLayout],
    journal: &Journal,
) -> Vec<Option<HostCgroup>> {
    let limit = plan.memory_limit;
    let mut out = Vec::new();
    for host in hosts {
        match HostCgroup::create(&plan.name, &host.name, limit) {
            Ok(cg) => out.push(Some(cg)),
            Err(e) => {
                match limit {
                    Some(limit) => journal.info(&format!(
                        "Memory is not limited to {}'s ({} MiB): {e}",
                        plan.instance_type,
                        limit >> 20
                    )),
                    None => journal.info(&format!(
                        "Processes a host leaves behind outside its process group cannot be tracked: {e}"
                    )),
                }
                return hosts.iter().map(|_| None).collect();
            }
        }
    }
    if let Some(limit) = limit {
        journal.info(&format!(
            "Each host's memory is limited to {} MiB ({}: {} MiB less trainyard's reserve)",
            limit >> 20,
            plan.instance_type,
            plan.instance_memory_mib
        ));
    }
    out
}

/// The directories bound into a host's view: file-system channels at
/// `/opt/ml/input/data/<channel>` (read-only for `ro`) and a warm pool's persistent cache at
/// `/opt/ml/sagemaker/warmpoolcache`. Without a mount namespace they become symbolic links in
/// the host tree instead (an `ro` channel's mode is then not enforced, and the log says so).
pub fn binds(
    settings: &Settings,
    plan: &JobPlan,
    host: &HostLayout,
    isolated: bool,
    pool: Option<&WarmPool>,
    journal: &Journal,
) -> Result<Vec<Bind>, FailureReason> {
    let io = |what: &str, e: std::io::Error| FailureReason::internal(format!("{what}: {e}"));
    let mut out = Vec::new();
    let file_systems = plan.channels.iter().filter_map(|ch| match &ch.source {
        ChannelSource::FileSystem { path, read_only } => Some((&ch.name, path, *read_only)),
        ChannelSource::S3 { .. } => None,
    });
    for (channel, source, read_only) in file_systems {
        let source = source.clone();
        let dir = host.channel_dir(channel);
        if isolated {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io(&format!("creating {}", dir.display()), e))?;
            out.push(Bind {
                source,
                target: PathBuf::from(OPT_ML).join("input/data").join(channel),
                read_only,
            });
        } else {
            let _ = std::fs::remove_dir(&dir);
            std::os::unix::fs::symlink(&source, &dir)
                .map_err(|e| io(&format!("linking {}", dir.display()), e))?;
            if read_only {
                journal.info(&format!(
                    "{}: channel {channel} is linked to {} without a mount namespace, so its read-only mode is not enforced",
                    host.name,
                    source.display()
                ));
            }
        }
    }
    if let Some(p) = pool {
        let source = warm_pools::cache_dir(settings, &p.pool_id, host.index)
            .map_err(|e| io("warm pool cache", e))?;
        let inside = host.root.join("sagemaker/warmpoolcache");
        if isolated {
            std::fs::create_dir_all(&inside).map_err(|e| io("warm pool cache", e))?;
            out.push(Bind {
                source,
                target: PathBuf::from(warm_pools::CACHE_MOUNT),
                read_only: false,
            });
        } else {
            std::fs::create_dir_all(host.root.join("sagemaker"))
                .map_err(|e| io("warm pool cache", e))?;
            std::os::unix::fs::symlink(&source, &inside).map_err(|e| io("warm pool cache", e))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_under_access_control_never_runs_outside_its_container() {
        assert_eq!(decide(Ok(()), true), Ok(true));
        assert_eq!(decide(Ok(()), false), Ok(true));
        // Single tenant: the host, as before (the job log says why).
        assert_eq!(decide(Err("no runc".into()), false), Ok(false));
        let refused = decide(Err("TRAINYARD_ISOLATION=off".into()), true).unwrap_err();
        assert!(refused.contains("TRAINYARD_ISOLATION=off"), "{refused}");
        assert!(refused.contains("iam.json"), "{refused}");
        assert!(refused.contains("not run outside"), "{refused}");
    }

    #[tokio::test]
    async fn submission_is_refused_naming_the_cause_when_containers_are_off() {
        let home = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_home(home.path()).unwrap();
        settings.isolation = false;
        let why = refusal(&settings).await.expect("refused");
        assert!(why.contains("TRAINYARD_ISOLATION=off"), "{why}");
        assert!(why.contains("cannot run containers"), "{why}");
        settings.executor = crate::config::ExecutorKind::Slurm;
        assert!(refusal(&settings).await.is_some());
    }
}
