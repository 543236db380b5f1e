//! Stage 3b, materialise the image: a job's `TrainingImage` pulled into the machine's image
//! store and turned into what its container runs.
//!
//! Why a stage of its own: pulling is per machine, not per job (the store is shared, pulls of
//! the same image are made once however many jobs and hosts ask), can take minutes, and has
//! its own failures, each of which must name the image, the registry and the cause. The
//! store itself is `trainyard-oci`; this module decides the store's settings, reports
//! progress in the job log and applies the image's configuration with `docker run`
//! semantics (`doc/contract/container.md`): its ENV under the job's environment, its WORKDIR,
//! its USER.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use trainyard_oci::{ImageError, ImageStore, PullAuth, StoreSettings};

use super::container::IdMap;
use super::jobdir::Journal;
use crate::config::Settings;
use crate::jobs::failure::FailureReason;

/// The machine's image store under `$TRAINYARD_HOME/images` (one per home, opened once).
pub fn store(settings: &Settings) -> Result<ImageStore, String> {
    static STORES: OnceLock<Mutex<HashMap<PathBuf, ImageStore>>> = OnceLock::new();
    let root = settings.home.join("images");
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(s) = stores.get(&root) {
        return Ok(s.clone());
    }
    let store = ImageStore::open(
        root.clone(),
        StoreSettings {
            budget_bytes: settings.images_budget_bytes,
            insecure_registries: settings.insecure_registries.clone(),
            id_shift: Some(trainyard_oci::IdShift {
                base: IdMap::DEFAULT.base,
            }),
            docker_config: None,
        },
    )
    .map_err(|e| e.to_string())?;
    stores.insert(root, store.clone());
    Ok(store)
}

/// Pulls `reference` (once per machine however many ask), logging progress and the resolved
/// digest. A failure names the image, where it was looked for and why; nothing of a failed
/// pull is used.
pub async fn pull(
    settings: &Settings,
    reference: &str,
    journal: &Journal,
) -> Result<trainyard_oci::Image, FailureReason> {
    let store = store(settings).map_err(|e| {
        FailureReason::internal(format!(
            "opening the image store in {}: {e}",
            settings.home.join("images").display()
        ))
    })?;
    journal.info(&format!("Pulling the training image {reference}"));
    let started = std::time::Instant::now();
    let progress = |line: &str| journal.info(line);
    let image = store
        .pull(reference, &PullAuth::Default, &progress)
        .await
        .map_err(|e| pull_failure(reference, e))?;
    journal.info(&format!(
        "Training image {reference} is {} from {} ({:.1} s)",
        image.digest,
        image.source,
        started.elapsed().as_secs_f64()
    ));
    Ok(image)
}

/// SageMaker fails a job whose image cannot be pulled as the client's error.
fn pull_failure(reference: &str, e: ImageError) -> FailureReason {
    match e {
        ImageError::Io { .. } => {
            FailureReason::internal(format!("pulling the training image {reference}: {e}"))
        }
        e => FailureReason::client(format!("cannot pull the training image: {e}")),
    }
}

/// What the container of an image runs as and in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageProcess {
    /// The image's ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// The base environment: the image's ENV, with docker's `PATH` and `HOME` when it sets
    /// none.
    pub env: Vec<(String, String)>,
    /// WORKDIR, else `/`.
    pub cwd: PathBuf,
    /// USER as (uid, gid) inside.
    pub user: (u32, u32),
}

/// The image's configuration applied: `docker run` semantics.
pub fn process(image: &trainyard_oci::Image) -> Result<ImageProcess, FailureReason> {
    let cfg = &image.config;
    let user = match cfg.user.as_deref().filter(|u| !u.is_empty()) {
        None => (0, 0),
        Some(u) => resolve_user(&image.rootfs, u).map_err(|e| {
            FailureReason::client(format!(
                "the training image {} names USER {u:?}: {e}",
                image.reference
            ))
        })?,
    };
    let mut env = cfg.env.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        let home = if user.0 == 0 {
            "/root".to_string()
        } else {
            home_of(&image.rootfs, user.0).unwrap_or_else(|| "/".into())
        };
        env.push(("HOME".into(), home));
    }
    let cwd = cfg
        .working_dir
        .as_deref()
        .filter(|w| w.starts_with('/'))
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    Ok(ImageProcess {
        entrypoint: cfg.entrypoint.clone(),
        env,
        cwd,
        user,
    })
}

/// Reads a file of the image's `/etc` without following a symbolic link out of it (the
/// image is the job's: its `/etc/passwd` could point at the host's files).
fn image_etc(rootfs: &Path, name: &str) -> Option<String> {
    let etc = rootfs.join("etc");
    let file = etc.join(name);
    for p in [&etc, &file] {
        if std::fs::symlink_metadata(p).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&file)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// One line of an image's `/etc/passwd`.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// The image's accounts (lines that do not parse are skipped, as libc skips them).
fn accounts(rootfs: &Path) -> Vec<Account> {
    image_etc(rootfs, "passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Account {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or_else(String::new, |h| h.to_string()),
            })
        })
        .collect()
}

/// `USER` as docker reads it: `uid`, `uid:gid`, `name`, `name:group`, names looked up in the
/// image's `/etc/passwd` and `/etc/group`.
fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let accounts = accounts(rootfs);
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, accounts.iter().find(|a| a.uid == uid).map(|a| a.gid)),
        Err(_) => match accounts.iter().find(|a| a.name == u) {
            Some(a) => (a.uid, Some(a.gid)),
            None => return Err(format!("no user {u:?} in the image's /etc/passwd")),
        },
    };
    let gid = match g {
        None => primary_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => image_etc(rootfs, "group")
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .ok_or_else(|| format!("no group {g:?} in the image's /etc/group"))?,
        },
    };
    if uid >= IdMap::DEFAULT.size || gid >= IdMap::DEFAULT.size {
        return Err(format!(
            "ids above {} are not mapped into the job's user namespace",
            IdMap::DEFAULT.size - 1
        ));
    }
    Ok((uid, gid))
}

fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    accounts(rootfs)
        .into_iter()
        .find(|a| a.uid == uid && !a.home.is_empty())
        .map(|a| a.home)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ntrainer:x:1000:1001:T:/home/trainer:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nml:x:1001:\nvideo:x:44:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn users_resolve_as_docker_does() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), "0").unwrap(), (0, 0));
        assert_eq!(resolve_user(r.path(), "trainer").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(r.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(r.path(), "trainer:video").unwrap(), (1000, 44));
        assert_eq!(resolve_user(r.path(), "1234:5").unwrap(), (1234, 5));
        assert_eq!(resolve_user(r.path(), "4242").unwrap(), (4242, 0));
        assert!(resolve_user(r.path(), "nobody-here").is_err());
        assert!(resolve_user(r.path(), "trainer:nogroup").is_err());
        assert!(resolve_user(r.path(), "70000").is_err());
        assert_eq!(home_of(r.path(), 1000).as_deref(), Some("/home/trainer"));
    }

    #[test]
    fn a_passwd_linked_out_of_the_image_is_not_read() {
        let r = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), r.path().join("etc/passwd"))
            .unwrap();
        assert!(resolve_user(r.path(), "evil").is_err());
    }
}
