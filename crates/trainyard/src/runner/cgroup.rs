//! A control group per host: its memory limit, and the set of everything the host started.
//!
//! Why: a host of type `ml.m5.large` has 8 GiB; a training process that needs more must be
//! killed for running out of memory, as it would be on SageMaker, instead of pushing the whole
//! machine (and trainyard with it) into swap or the global OOM killer. And a process that
//! leaves its process group (`setsid`, a daemon) is still in the cgroup, so ending a host ends
//! all of it ([`HostCgroup::kill_all`]), as ending a container does. What: one cgroup per
//! host under trainyard's own cgroup, with the limit of `instance_types.rs` (or none, for
//! `local` types: the cgroup then only tracks the processes); the process joins
//! it between fork and exec (it writes `0`, "myself", to `cgroup.procs`), so everything it
//! starts is inside from the first instruction. Both hierarchies are handled: cgroup v2 (the
//! `memory` controller enabled in trainyard's subtree; when trainyard's own cgroup holds
//! processes, trainyard first moves itself into a `trainyard` leaf, as v2's
//! no-internal-processes rule requires) and the v1 `memory` hierarchy. When neither can be
//! written (no root, no memory controller), the job runs without a limit and its log says why.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Which hierarchy a cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One host's cgroup.
#[derive(Debug)]
pub struct HostCgroup {
    path: PathBuf,
    version: Version,
}

/// Where trainyard's own cgroup is, and in which hierarchy.
fn own_cgroup() -> Result<(PathBuf, Version), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let root = Path::new("/sys/fs/cgroup");
    // Pure v2: `0::/path` and the controllers file at the root.
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        if let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) {
            return Ok((root.join(path.trim_start_matches('/')), Version::V2));
        }
    }
    // v1: `N:memory:/path` (possibly `N:cpu,memory:/path`).
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        if let (Some(ctrls), Some(path)) = (ctrls, path) {
            if ctrls.split(',').any(|c| c == "memory") {
                let mount = root.join("memory");
                if mount.join("memory.limit_in_bytes").exists() {
                    return Ok((mount.join(path.trim_start_matches('/')), Version::V1));
                }
            }
        }
    }
    Err("no cgroup memory controller is available to this process".into())
}

/// Makes the memory controller available to children of `base` (v2).
fn enable_v2_memory(base: &Path) -> Result<(), String> {
    let control = base.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&control).unwrap_or_default();
    if current.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    match std::fs::write(&control, "+memory") {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // Processes in `base` itself (trainyard): move trainyard into a leaf, retry.
            let leaf = base.join("trainyard");
            std::fs::create_dir_all(&leaf)
                .and_then(|()| std::fs::write(leaf.join("cgroup.procs"), "0"))
                .map_err(|e| format!("moving trainyard into {}: {e}", leaf.display()))?;
            std::fs::write(&control, "+memory").map_err(|e| {
                format!(
                    "enabling the memory controller in {}: {e} (other processes share trainyard's cgroup)",
                    control.display()
                )
            })
        }
        Err(e) => Err(format!(
            "enabling the memory controller in {}: {e}",
            control.display()
        )),
    }
}

impl HostCgroup {
    /// Creates the cgroup of host `host` of `job`, with a memory limit of `limit` bytes when
    /// given.
    pub fn create(job: &str, host: &str, limit: Option<u64>) -> Result<Self, String> {
        let (base, version) = own_cgroup()?;
        if version == Version::V2 {
            enable_v2_memory(&base)?;
        }
        let path = base.join(format!("ty-{job}-{host}"));
        // A leftover of a crashed run with the same name is empty (with perhaps the
        // container runtime's child); recreate it.
        let _ = std::fs::remove_dir(path.join("c"));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let cg = HostCgroup { path, version };
        let set = |file: &str, value: &str| {
            std::fs::write(cg.path.join(file), value)
                .map_err(|e| format!("writing {value} to {}: {e}", cg.path.join(file).display()))
        };
        let Some(limit) = limit else {
            return Ok(cg);
        };
        let limited = match version {
            Version::V2 => set("memory.max", &limit.to_string()).and_then(|()| {
                // No swapping past the limit: the job is killed, as on an instance without swap.
                if cg.path.join("memory.swap.max").exists() {
                    set("memory.swap.max", "0")
                } else {
                    Ok(())
                }
            }),
            Version::V1 => set("memory.limit_in_bytes", &limit.to_string()).and_then(|()| {
                if cg.path.join("memory.memsw.limit_in_bytes").exists() {
                    set("memory.memsw.limit_in_bytes", &limit.to_string())
                } else {
                    Ok(())
                }
            }),
        };
        match limited {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    /// The `cgroup.procs` file, opened for the child to write itself into before exec.
    pub fn procs(&self) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))
    }

    /// Where a container runtime puts the host's container: a child of this cgroup (path
    /// from the hierarchy's root, as `linux.cgroupsPath` wants it), so the limit set here
    /// holds for it and the runtime may create and remove its own cgroup.
    pub fn runtime_path(&self) -> Option<String> {
        let mount = match self.version {
            Version::V1 => Path::new("/sys/fs/cgroup/memory"),
            Version::V2 => Path::new("/sys/fs/cgroup"),
        };
        let rel = self.path.strip_prefix(mount).ok()?;
        Some(format!("/{}/c", rel.display()))
    }

    /// Whether the kernel killed a process of this cgroup for exceeding the limit. `killed`:
    /// the main process died of SIGKILL, which on cgroup v1 together with the limit having
    /// been hit counts too (the runtime's own cgroup, which counted the kill, is gone by now).
    pub fn oom_killed(&self, killed: bool) -> bool {
        let counter = |file: &str, key: &str| {
            std::fs::read_to_string(self.path.join(file))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix(key))
                .any(|n| n.trim().parse::<u64>().unwrap_or(0) > 0)
        };
        match self.version {
            Version::V2 => counter("memory.events", "oom_kill "),
            Version::V1 => {
                let value = |file: &str| {
                    std::fs::read_to_string(self.path.join(file))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                };
                // The kill is counted in the runtime's child cgroup, gone by now; the limit
                // having been reached is what this one shows.
                let reached = matches!(
                    (value("memory.max_usage_in_bytes"), value("memory.limit_in_bytes")),
                    (Some(used), Some(limit)) if used >= limit
                );
                counter("memory.oom_control", "oom_kill ")
                    || (killed
                        && (reached
                            || value("memory.failcnt").is_some_and(|n| n > 0)
                            || value("memory.memsw.failcnt").is_some_and(|n| n > 0)))
            }
        }
    }

    /// The processes in the cgroup and in its children (a container runtime's).
    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&self.path)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_dir())
        {
            out.extend(
                std::fs::read_to_string(entry.path().join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok()),
            );
        }
        out
    }

    /// Kills every process of the cgroup, including those that left the host's process group,
    /// and waits (briefly) until none is left; returns how many were still there.
    pub fn kill_all(&self) -> usize {
        let kill_file = self.path.join("cgroup.kill");
        if self.version == Version::V2 && kill_file.exists() {
            let _ = std::fs::write(&kill_file, "1");
        }
        let mut found = 0;
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return found;
            }
            found = found.max(pids.len());
            // A process forking meanwhile shows up in the next round.
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        found
    }

    /// Removes the cgroup (its processes have ended).
    pub fn remove(&self) {
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => return,
            }
        }
    }
}

impl Drop for HostCgroup {
    fn drop(&mut self) {
        self.kill_all();
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        not(feature = "cgroups"),
        ignore = "needs --features cgroups (a cgroup memory controller)"
    )]
    fn a_limited_cgroup_reports_no_oom_until_one_happens() {
        let cg = HostCgroup::create(
            &format!("unit-{}", std::process::id()),
            "algo-1",
            Some(64 << 20),
        )
        .unwrap_or_else(|e| {
            panic!("feature cgroups: no writable cgroup memory controller here: {e}")
        });
        assert!(!cg.oom_killed(true));
        assert!(cg.procs().is_ok());
        let path = cg.path.clone();
        drop(cg);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    #[cfg_attr(
        not(feature = "cgroups"),
        ignore = "needs --features cgroups (a writable cgroup hierarchy)"
    )]
    fn kill_all_ends_processes_that_left_their_process_group() {
        let cg = HostCgroup::create(&format!("kill-{}", std::process::id()), "algo-1", None)
            .unwrap_or_else(|e| panic!("feature cgroups: no writable cgroup hierarchy here: {e}"));
        // Joined between fork and exec, as a host's process joins its cgroup.
        let spec = super::super::process::Spec {
            argv: ["sh", "-c", "setsid sleep 300 & setsid sleep 301 & wait"]
                .map(String::from)
                .to_vec(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: PathBuf::from("/"),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut child = super::super::process::spawn(&spec, Some(cg.procs().unwrap())).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cg.pids().len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(cg.pids().len(), 3, "sh and two daemons in the cgroup");
        assert_eq!(cg.kill_all(), 3);
        assert!(cg.pids().is_empty());
        let _ = rt.block_on(child.wait());
    }
}
