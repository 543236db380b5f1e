//! Stage 4a, isolation: what a host's process sees and may use.
//!
//! Why apart from spawning: the decisions (can this machine give a private `/opt/ml`? do the
//! hosts get a network each? how much memory? which directories are bound where?) are made
//! once per job or per host, and logged, before any process starts; [`super::supervise`]
//! then only applies them. The mechanics stay in `process` (namespaces, binds), `network`
//! (per-job bridge) and `cgroup` (memory limits).

use std::path::PathBuf;

use super::cgroup::HostCgroup;
use super::jobdir::Journal;
use super::layout::{self, HostLayout};
use super::network::JobNetwork;
use super::plan::{ChannelSource, JobPlan};
use super::process::{self, Bind, OPT_ML};
use crate::config::Settings;
use crate::jobs::failure::FailureReason;
use crate::warm_pools::{self, WarmPool};

/// Whether processes get a private mount namespace with their tree at `/opt/ml` (one probe
/// per job); when they cannot, the job log says why and where their files are instead.
pub async fn isolated(settings: &Settings, host: &HostLayout, journal: &Journal) -> bool {
    match probe(settings, host).await {
        Ok(()) => true,
        Err(why) => {
            journal.info(&format!(
                "A private mount namespace is not available ({why}): processes see their files through the SM_* paths under {} instead of /opt/ml",
                host.root.display()
            ));
            false
        }
    }
}

/// Can this machine give a process a private `/opt/ml` (it needs `CAP_SYS_ADMIN`)? The
/// reason when not.
async fn probe(settings: &Settings, host: &HostLayout) -> Result<(), String> {
    if !settings.isolation {
        return Err("TRAINYARD_ISOLATION=off".to_string());
    }
    process::ensure_mount_point().map_err(|e| format!("cannot create {OPT_ML}: {e}"))?;
    process::probe(&process::Isolation {
        host_tree: host.root.clone(),
        hosts_file: host.hosts_file.clone(),
        hostname: host.name.clone(),
        binds: Vec::new(),
        netns: None,
    })
    .await
    .map_err(|e| e.to_string())
}

/// The network of a multi-host job on this machine: one namespace per host on a per-job
/// bridge, so `algo-1..N` are distinct machines that find each other by name. A warm pool's
/// network is named after the pool and outlives the job. `None`: the hosts share loopback
/// (one host, no namespaces, or the network could not be made; the log says which).
pub fn job_network(
    settings: &Settings,
    plan: &JobPlan,
    hosts: &mut [HostLayout],
    isolated: bool,
    pool: Option<&WarmPool>,
    journal: &Journal,
) -> Result<Option<JobNetwork>, FailureReason> {
    if hosts.len() < 2 {
        return Ok(None);
    }
    if !isolated {
        journal.info("Hosts share this machine's loopback network (no namespaces)");
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
