//! Stage 4a, the container every host's process runs in: an OCI bundle run by `runc`.
//!
//! Why a container for every job, the `host` runtime's included: a job is a tenant's code.
//! Run as the server's uid 0 on the host's file system, it could read `iam.json`, the
//! database, other jobs' trees and the server's environment. In its container it is uid 0 of
//! its own user namespace (an unprivileged uid outside, so the host's files keep their
//! permissions against it), sees its own processes (PID namespace, its own `/proc`), its own
//! network namespace, and a root file system holding only what the job needs: an image's
//! unpacked layers under a per-host overlay, or, for the `host` runtime, an empty skeleton with
//! the host's system directories and the job's code bound read-only.
//!
//! Why `runc` and not a home-made sandbox: it is the reference OCI runtime, a Debian package,
//! and it already gets the order of namespaces, mounts, `pivot_root`, capabilities and
//! `no_new_privs` right. `crun` would do as well but refuses hybrid cgroup hierarchies (cgroup
//! v1 controllers with a populated v2 mount), which machines like CI's have. The bundle's
//! `config.json` is written with the `oci-spec` crate's types, so what we hand `runc` is the
//! specification's shape, checked by serde, not hand-made JSON.
//!
//! What stays outside: data movement (downloads, FastFile, Pipe, uploads) is done by the
//! server in the host's tree before and after; the container only sees `/opt/ml`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use tokio::process::Command;

use super::process::{Bind, OPT_ML};

/// Where `runc` keeps the state of trainyard's containers (apart from anyone else's).
pub const STATE_ROOT: &str = "/run/trainyard/runc";

/// Where containers' root file systems are mounted (see `Container::mounted_root`).
const ROOTS: &str = "/run/trainyard/roots";

/// How the job's user ids map to the host: uid and gid 0 inside are `base` outside, for
/// `size` ids. The same range for every job: a job never sees another's files (they are not
/// in its root file system), and images are unpacked once, shifted into this range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// The host uid/gid of the container's 0.
    pub base: u32,
    /// How many ids are mapped.
    pub size: u32,
}

impl IdMap {
    /// trainyard's range: far above the uids a distribution hands out (`/etc/subuid` ranges
    /// start at 100000 and come in blocks of 65536).
    pub const DEFAULT: IdMap = IdMap {
        base: 1_000_000_000,
        size: 65_536,
    };

    /// The host id of container id `inside`.
    pub fn outside(&self, inside: u32) -> u32 {
        self.base + inside.min(self.size - 1)
    }
}

/// The root file system of a container.
#[derive(Debug, Clone)]
pub enum Root {
    /// The `host` runtime: an empty, read-only skeleton; `read_only` host directories bound
    /// at their own paths (symbolic links among them, such as `/bin -> usr/bin`, copied as
    /// links); `/tmp` a private tmpfs.
    Host {
        /// Host paths the job may read.
        read_only: Vec<PathBuf>,
    },
    /// An image: its unpacked layers (never written) under a per-host writable overlay.
    Image {
        /// The unpacked image.
        lower: PathBuf,
    },
}

/// The network a container is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// A new namespace with only loopback: no route anywhere.
    Own,
    /// The namespace at this path (the job's network, made by `network.rs`).
    Join(PathBuf),
    /// The host's network (a Slurm node's host, whose address names it).
    Host,
}

/// Everything one host's container is made of.
#[derive(Debug, Clone)]
pub struct Container {
    /// `runc`'s container id (unique on the machine).
    pub id: String,
    /// The bundle directory (outside the host's tree).
    pub bundle: PathBuf,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// Its root file system.
    pub root: Root,
    /// The host's tree, bound at `/opt/ml`.
    pub host_tree: PathBuf,
    /// Bound at `/etc/hosts`.
    pub hosts_file: PathBuf,
    /// `algo-k`.
    pub hostname: String,
    /// File-system channels and caches, bound after `/opt/ml`.
    pub binds: Vec<Bind>,
    /// Its network.
    pub network: Net,
    /// The id mapping.
    pub ids: IdMap,
    /// The uid and gid the process runs as, inside.
    pub user: (u32, u32),
    /// The cgroup (path under each hierarchy's root) the container's processes go into.
    pub cgroup: Option<String>,
    /// Paths hidden inside (a read-only empty tmpfs over each), such as trainyard's home when
    /// it lies under a bound directory.
    pub masked: Vec<PathBuf>,
}

/// What runs in the container.
#[derive(Debug, Clone)]
pub struct Program {
    /// argv; `argv[0]` is looked up in the container's `PATH`.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside.
    pub cwd: PathBuf,
}

/// Docker's default capability set less `CAP_NET_RAW` (as podman's): what an unprivileged
/// container gets, only within its user namespace. Without `CAP_NET_RAW` a job cannot write
/// frames of its own onto its link (a packet socket bypasses its routing table and would reach
/// this machine's end of the job bridge); `ping` is what it costs.
const CAPABILITIES: [Capability; 13] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn mount(dest: &Path, typ: &str, source: &Path, options: &[&str]) -> io::Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(invalid)
}

fn bind(source: &Path, dest: &Path, read_only: bool) -> io::Result<Mount> {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if read_only {
        options.push("ro");
    }
    mount(dest, "bind", source, &options)
}

impl Container {
    fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Where the root file system is mounted for `runc`: a path the container's user can
    /// traverse (trainyard's home may be in a directory only the server's user enters, and
    /// `runc` binds the root onto itself from inside the user namespace).
    fn mounted_root(&self) -> PathBuf {
        Path::new(ROOTS).join(&self.id)
    }

    /// The bundle's `config.json`.
    pub fn spec(&self, program: &Program) -> io::Result<Spec> {
        let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts()
            .into_iter()
            .filter(|m| {
                // The host's cgroup tree is not the job's business.
                m.destination() != Path::new("/sys/fs/cgroup")
            })
            .map(|m| {
                if m.destination() == Path::new("/sys") && self.network != Net::Own {
                    // sysfs can only be mounted by the owner of the network namespace; in
                    // one made outside the container, the host's is shown read-only.
                    bind(Path::new("/sys"), Path::new("/sys"), true)
                } else if m.destination() == Path::new("/dev/shm") {
                    // PyTorch's DataLoader workers share tensors through /dev/shm: the
                    // kernel's default tmpfs size (half of memory; the cgroup still counts
                    // it), not runc's 64 MiB.
                    mount(
                        Path::new("/dev/shm"),
                        "tmpfs",
                        Path::new("shm"),
                        &["nosuid", "nodev", "mode=1777"],
                    )
                } else {
                    Ok(m)
                }
            })
            .collect::<io::Result<_>>()?;
        if let Root::Host { read_only } = &self.root {
            // First, so that host paths under /tmp (a job's code there) land on top of it.
            mounts.push(mount(
                Path::new("/tmp"),
                "tmpfs",
                Path::new("tmpfs"),
                &["nosuid", "nodev", "mode=1777"],
            )?);
            let mut dirs: Vec<&PathBuf> = read_only.iter().filter(|d| !is_symlink(d)).collect();
            // Parents before children, so a nested path is not hidden by its parent's bind.
            dirs.sort_by_key(|d| d.components().count());
            for dir in dirs {
                mounts.push(bind(dir, dir, true)?);
            }
        }
        mounts.push(bind(&self.host_tree, Path::new(OPT_ML), false)?);
        mounts.push(bind(&self.hosts_file, Path::new("/etc/hosts"), true)?);
        for b in &self.binds {
            mounts.push(bind(&b.source, &b.target, b.read_only)?);
        }

        let mut namespaces: Vec<LinuxNamespace> = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::User,
            LinuxNamespaceType::Cgroup,
        ]
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<_, _>>()
        .map_err(invalid)?;
        let net = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        match &self.network {
            Net::Own => namespaces.push(net.build().map_err(invalid)?),
            Net::Join(path) => namespaces.push(net.path(path.clone()).build().map_err(invalid)?),
            Net::Host => {}
        }

        let map = |size| {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(self.ids.base)
                .size(size)
                .build()
                .map_err(invalid)
        };
        let mut masked = oci_spec::runtime::get_default_maskedpaths();
        masked.extend(self.masked.iter().map(|p| p.to_string_lossy().into_owned()));
        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .uid_mappings(vec![map(self.ids.size)?])
            .gid_mappings(vec![map(self.ids.size)?])
            .masked_paths(masked)
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
        if let Some(cg) = &self.cgroup {
            linux = linux.cgroups_path(PathBuf::from(cg));
        }

        let caps: std::collections::HashSet<Capability> = CAPABILITIES.into_iter().collect();
        let capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .build()
            .map_err(invalid)?;
        let rlimit = |typ, value: u64| {
            PosixRlimitBuilder::default()
                .typ(typ)
                .hard(value)
                .soft(value)
                .build()
                .map_err(invalid)
        };
        let process = ProcessBuilder::default()
            .terminal(false)
            .user(
                UserBuilder::default()
                    .uid(self.user.0)
                    .gid(self.user.1)
                    .build()
                    .map_err(invalid)?,
            )
            .args(program.argv.clone())
            .env(
                program
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
            .cwd(program.cwd.clone())
            .capabilities(capabilities)
            .rlimits(vec![
                rlimit(
                    PosixRlimitType::RlimitNofile,
                    raised(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        open_files_limit(),
                    ),
                )?,
                rlimit(
                    PosixRlimitType::RlimitMemlock,
                    raised(nix::sys::resource::Resource::RLIMIT_MEMLOCK, u64::MAX),
                )?,
            ])
            .no_new_privileges(true)
            .build()
            .map_err(invalid)?;
        oci_spec::runtime::SpecBuilder::default()
            .version("1.0.2")
            .root(
                RootBuilder::default()
                    .path(self.mounted_root())
                    .readonly(matches!(self.root, Root::Host { .. }))
                    .build()
                    .map_err(invalid)?,
            )
            .hostname(self.hostname.clone())
            .mounts(mounts)
            .process(process)
            .linux(linux.build().map_err(invalid)?)
            .build()
            .map_err(invalid)
    }

    /// Writes the bundle: `config.json` and the root file system (the skeleton, or the
    /// image's overlay mounted). The host's tree must have been handed to the container's
    /// user already ([`hand_over`]).
    pub fn prepare(&self, program: &Program) -> io::Result<()> {
        // A container of the same id left by a server that was killed or stopped mid-job
        // (job names are unique per installation, so it is a leftover).
        delete(&self.runtime, &self.id);
        let _ = self.remove_bundle();
        std::fs::create_dir_all(self.rootfs())?;
        std::fs::create_dir_all(ROOTS)?;
        for dir in [
            Path::new(ROOTS),
            Path::new(ROOTS).parent().unwrap_or(Path::new("/")),
        ] {
            // Traversable, not listable: `runc` makes its state directory 0700.
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        }
        std::fs::create_dir_all(self.mounted_root())?;
        match &self.root {
            Root::Host { read_only } => {
                self.skeleton(read_only, program)?;
                nix::mount::mount(
                    Some(&self.rootfs()),
                    &self.mounted_root(),
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)?;
            }
            Root::Image { lower } => self.overlay(lower)?,
        }
        let spec = self.spec(program)?;
        spec.save(self.bundle.join("config.json"))
            .map_err(io::Error::other)?;
        let (uid, gid) = (self.ids.outside(self.user.0), self.ids.outside(self.user.1));
        for b in self.binds.iter().filter(|b| !b.read_only) {
            // A warm pool's cache: the job writes it.
            chown_tree(&b.source, uid, gid)?;
        }
        Ok(())
    }

    /// The read-only skeleton of the `host` runtime: the mount points, and the host's
    /// top-level symbolic links (`/bin -> usr/bin` on merged-/usr systems).
    fn skeleton(&self, read_only: &[PathBuf], program: &Program) -> io::Result<()> {
        let root = self.rootfs();
        for dir in ["proc", "dev", "sys", "tmp", "etc", "opt/ml", "root"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        for p in read_only {
            let at = inside(p);
            match std::fs::read_link(p) {
                Ok(target) => {
                    if let Some(parent) = at.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::os::unix::fs::symlink(target, &at)?;
                }
                Err(_) if p.is_dir() => std::fs::create_dir_all(&at)?,
                Err(_) => {
                    if let Some(parent) = at.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&at, b"")?;
                }
            }
        }
        // Mount points of the binds that are not under /opt/ml (the rest are made in the
        // host's tree), and the working directory.
        for b in &self.binds {
            if !b.target.starts_with(OPT_ML) {
                std::fs::create_dir_all(inside(&b.target))?;
            }
        }
        if !program.cwd.starts_with(OPT_ML) && !inside(&program.cwd).exists() {
            std::fs::create_dir_all(inside(&program.cwd))?;
        }
        std::fs::write(root.join("etc/hosts"), b"")?;
        Ok(())
    }

    /// Mounts the image's layers read-only under a writable upper directory of this host.
    fn overlay(&self, lower: &Path) -> io::Result<()> {
        let upper = self.bundle.join("upper");
        let work = self.bundle.join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        // The image's root directory belongs to the container's root.
        let root_id = self.ids.outside(0);
        std::os::unix::fs::lchown(&upper, Some(root_id), Some(root_id))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            overlay_path(lower)?,
            overlay_path(&upper)?,
            overlay_path(&work)?
        );
        nix::mount::mount(
            Some("overlay"),
            &self.mounted_root(),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(io::Error::from)?;
        // Mount points the image may lack.
        for dir in ["opt/ml", "etc"] {
            let d = self.mounted_root().join(dir);
            if !d.exists() {
                std::fs::create_dir_all(&d)?;
                std::os::unix::fs::lchown(&d, Some(root_id), Some(root_id))?;
            }
        }
        let hosts = self.mounted_root().join("etc/hosts");
        if std::fs::symlink_metadata(&hosts).is_err() {
            std::fs::write(&hosts, b"")?;
        }
        Ok(())
    }

    /// `runc run`: runs the container in the foreground; its output is the process's, and
    /// `runc` exits with its status. SIGTERM sent to `runc` is forwarded to the container's
    /// first process.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(STATE_ROOT)
            .arg("run")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(self.bundle.join("pid"))
            .arg(&self.id)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Whether the container's process was started (`runc` wrote its pid): when not, a
    /// failure is the runtime's, not the job's.
    pub fn started(&self) -> bool {
        self.bundle.join("pid").exists()
    }

    /// SIGKILL to everything in the container (its PID namespace dies with its first process).
    pub fn kill(&self) {
        kill(&self.runtime, &self.id);
    }

    /// Deletes the container (killing what is left), unmounts its overlay and removes the
    /// bundle.
    pub fn remove(&self) {
        delete(&self.runtime, &self.id);
        let _ = self.remove_bundle();
    }

    fn remove_bundle(&self) -> io::Result<()> {
        let root = self.mounted_root();
        detach_root(&root);
        match std::fs::remove_dir_all(&self.bundle) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn kill(runtime: &Path, id: &str) {
    let _ = std::process::Command::new(runtime)
        .args(["--root", STATE_ROOT, "kill", id, "KILL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn delete(runtime: &Path, id: &str) {
    let _ = std::process::Command::new(runtime)
        .args(["--root", STATE_ROOT, "delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Deletes the containers a killed server left of a job (ids starting with `prefix`).
pub fn remove_leftovers(runtime: &Path, prefix: &str) -> Vec<String> {
    let Ok(out) = std::process::Command::new(runtime)
        .args(["--root", STATE_ROOT, "list", "--quiet"])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    for id in &ids {
        delete(runtime, id);
    }
    // Root file systems of containers that never started or outlived their runtime.
    if let Ok(rd) = std::fs::read_dir(ROOTS) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                detach_root(&e.path());
            }
        }
    }
    ids
}

/// Detaches every mount stacked on a container's root mount point and removes it.
fn detach_root(root: &Path) {
    while nix::mount::umount2(root, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    let _ = std::fs::remove_dir(root);
}

/// The container id of host `host` of a job: `runc` wants it short and of `[\w+-.]`; job
/// names are up to 63 characters of `[a-zA-Z0-9-]`, so the id is derived from them.
pub fn container_id(job: &str, host: &str) -> String {
    format!("{}{host}", container_prefix(job))
}

/// The prefix of every container id of a job.
pub fn container_prefix(job: &str) -> String {
    format!("ty-{}-", super::network::job_id(job))
}

fn overlay_path(p: &Path) -> io::Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| invalid(format!("{} is not UTF-8", p.display())))?;
    if s.contains([',', ':']) {
        return Err(invalid(format!(
            "{s}: overlay directories cannot contain ',' or ':'"
        )));
    }
    Ok(s.to_string())
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// The open-files limit jobs get: SageMaker's containers run with a high one; the kernel's
/// `nr_open` caps it.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
        .min(1 << 20)
}

/// The most of `resource` a container can get: `want`, when this process may raise its own
/// hard limit that far (a user namespace cannot go above what it started with), else the
/// hard limit it has.
fn raised(resource: nix::sys::resource::Resource, want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(resource) else {
        return want;
    };
    if hard >= want || setrlimit(resource, soft.min(want), want).is_ok() {
        want
    } else {
        hard
    }
}

/// Hands a host's tree to the container's user `(uid, gid)` inside, before anything is
/// mounted in it: what the server makes in it later (Pipe FIFOs, FastFile mounts) takes the
/// owner of the directory it is made in.
pub fn hand_over(tree: &Path, ids: IdMap, user: (u32, u32)) -> io::Result<()> {
    chown_tree(tree, ids.outside(user.0), ids.outside(user.1))
}

/// Changes the owner of a tree the server made, without following symbolic links and
/// without touching other file systems (a mount in it).
fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::symlink_metadata(root)?.dev();
    for entry in walkdir::WalkDir::new(root).same_file_system(true) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.metadata().map_err(io::Error::other)?.dev() != dev {
            continue;
        }
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Whether this machine can run containers, checked once per server: `runc` is there and a
/// container with a user namespace starts. The reason when not.
/// Concurrent first callers wait for the one probe (two would run containers of the same id).
pub async fn available(runtime: &Path, scratch: &Path) -> Result<(), String> {
    static PROBE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();
    PROBE.get_or_init(|| probe(runtime, scratch)).await.clone()
}

async fn probe(runtime: &Path, scratch: &Path) -> Result<(), String> {
    let dir = scratch.join(format!("probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tree")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("hosts"), b"").map_err(|e| e.to_string())?;
    let c = Container {
        id: format!("ty-probe-{}", std::process::id()),
        bundle: dir.join("bundle"),
        runtime: runtime.to_path_buf(),
        root: Root::Host {
            read_only: system_dirs(),
        },
        host_tree: dir.join("tree"),
        hosts_file: dir.join("hosts"),
        hostname: "probe".into(),
        binds: Vec::new(),
        network: Net::Own,
        ids: IdMap::DEFAULT,
        user: (0, 0),
        cgroup: None,
        masked: Vec::new(),
    };
    let program = Program {
        argv: vec!["true".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: PathBuf::from("/"),
    };
    let result = async {
        c.prepare(&program)
            .map_err(|e| format!("preparing a container: {e}"))?;
        let out = c
            .command()
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", runtime.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} run: {}",
                runtime.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
    .await;
    c.remove();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The host's system directories the `host` runtime shows read-only (those that exist).
pub fn system_dirs() -> Vec<PathBuf> {
    [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
    ]
    .into_iter()
    .map(PathBuf::from)
    .filter(|p| std::fs::symlink_metadata(p).is_ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(root: Root) -> Container {
        Container {
            id: container_id("job-1", "algo-1"),
            bundle: PathBuf::from("/srv/ty/jobs/job-1/algo-1.bundle"),
            runtime: PathBuf::from("runc"),
            root,
            host_tree: PathBuf::from("/srv/ty/jobs/job-1/algo-1"),
            hosts_file: PathBuf::from("/srv/ty/jobs/job-1/algo-1.hosts"),
            hostname: "algo-1".into(),
            binds: vec![Bind {
                source: PathBuf::from("/data/fs"),
                target: PathBuf::from("/opt/ml/input/data/fs"),
                read_only: true,
            }],
            network: Net::Join(PathBuf::from("/run/netns/ty-x-1")),
            ids: IdMap::DEFAULT,
            user: (0, 0),
            cgroup: Some("/trainyard/ty-job-1-algo-1/c".into()),
            masked: vec![PathBuf::from("/srv/ty")],
        }
    }

    fn program() -> Program {
        Program {
            argv: vec!["train".into()],
            env: vec![("A".into(), "1".into())],
            cwd: PathBuf::from("/opt/ml/code"),
        }
    }

    #[test]
    fn the_spec_isolates_and_maps_root_to_the_unprivileged_range() {
        let spec = container(Root::Host {
            read_only: vec![PathBuf::from("/usr")],
        })
        .spec(&program())
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let linux = &json["linux"];
        let kinds: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for k in ["pid", "user", "mount", "network", "uts", "ipc", "cgroup"] {
            assert!(kinds.contains(&k), "{k} namespace in {kinds:?}");
        }
        let net = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert_eq!(net["path"], "/run/netns/ty-x-1");
        assert_eq!(linux["uidMappings"][0]["hostID"], 1_000_000_000u64);
        assert_eq!(linux["uidMappings"][0]["containerID"], 0);
        assert!(
            linux["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/srv/ty")
        );
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["hostname"], "algo-1");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        for cap in [
            "CAP_SYS_ADMIN",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_SYS_PTRACE",
        ] {
            assert!(!caps.iter().any(|c| c == cap), "{cap} in {caps:?}");
        }
        let mounts = json["mounts"].as_array().unwrap();
        let find = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
        let opt_ml = find("/opt/ml").unwrap();
        assert_eq!(opt_ml["source"], "/srv/ty/jobs/job-1/algo-1");
        assert!(
            !opt_ml["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "ro")
        );
        let usr = find("/usr").unwrap();
        assert!(usr["options"].as_array().unwrap().iter().any(|o| o == "ro"));
        let fs = find("/opt/ml/input/data/fs").unwrap();
        assert!(fs["options"].as_array().unwrap().iter().any(|o| o == "ro"));
        assert!(find("/sys/fs/cgroup").is_none());
        let shm = find("/dev/shm").unwrap();
        assert!(
            !shm["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o.as_str().unwrap().starts_with("size="))
        );
        // /opt/ml comes before the binds under it.
        let pos = |d: &str| mounts.iter().position(|m| m["destination"] == d).unwrap();
        assert!(pos("/opt/ml") < pos("/opt/ml/input/data/fs"));
    }

    #[test]
    fn an_image_root_is_writable_and_has_no_host_directories() {
        let spec = container(Root::Image {
            lower: PathBuf::from("/srv/ty/images/x/rootfs"),
        })
        .spec(&program())
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["readonly"], false);
        assert!(
            !json["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/usr")
        );
    }

    #[test]
    fn ids_are_valid_for_runc_and_per_job() {
        let a = container_id("my-job", "algo-1");
        assert!(a.starts_with(&container_prefix("my-job")));
        assert_ne!(container_prefix("my-job"), container_prefix("my-job2"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        );
    }

    #[test]
    fn id_map_clamps_to_its_range() {
        assert_eq!(IdMap::DEFAULT.outside(0), 1_000_000_000);
        assert_eq!(IdMap::DEFAULT.outside(1000), 1_000_001_000);
        assert_eq!(IdMap::DEFAULT.outside(u32::MAX), 1_000_065_535);
    }
}
