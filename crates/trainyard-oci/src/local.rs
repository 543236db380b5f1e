//! Images in the local containers-storage: what `podman build` or `buildah` made and never
//! pushed, used before any registry, as `podman run` would.
//!
//! Read through Debian's `skopeo` (`skopeo copy containers-storage:REF oci:DIR:img`) rather
//! than by parsing containers-storage ourselves: its layout and locking are podman's business.
//! The copied layout is imported like any `oci:` layout (every blob verified). A store
//! identity (the sha256 of the image's manifest as containers-storage holds it, from
//! `skopeo inspect --raw`) is recorded in the index so that the next pull of an unchanged
//! image copies nothing. When skopeo or the storage directory is absent, or the image is not
//! there, the registry is used, silently.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::reference::names_registry;
use crate::store::Ctx;
use crate::{Image, ImageError, ImageStore};

/// The image `reference` from containers-storage, if it is there.
pub(crate) async fn from_containers_storage(
    store: &ImageStore,
    reference: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<Image>, ImageError> {
    if !storage_exists() || which("skopeo").is_none() {
        return Ok(None);
    }
    let mut candidates = vec![reference.to_string()];
    if !names_registry(reference) {
        candidates.insert(0, format!("localhost/{reference}"));
    }
    for candidate in candidates {
        let transport = format!("containers-storage:{candidate}");
        let Some(raw) = skopeo(&["inspect", "--raw", &transport]).await else {
            continue;
        };
        let id = format!("containers-storage:{}", hex::encode(Sha256::digest(&raw)));
        let ctx = Ctx {
            image: reference,
            source_name: "containers-storage".to_string(),
            progress,
        };
        if let Some(key) = store.key_for_source(&id).await?
            && let Some(image) = store.present_key(&key, &ctx).await?
        {
            return Ok(Some(image));
        }
        progress(&format!(
            "{reference}: found in the local containers-storage as {candidate}"
        ));
        let dir = store.tmp_dir("skopeo")?;
        let layout = dir.join("oci");
        let dest = format!("oci:{}:img", layout.display());
        let copied = skopeo(&["copy", "-q", &transport, &dest]).await.is_some();
        let result = if copied {
            store
                .import_layout(&layout, Some("img"), &ctx, Some(&id))
                .await
                .map(Some)
        } else {
            Err(ImageError::Local {
                image: reference.to_string(),
                source_name: "containers-storage".to_string(),
                detail: format!("skopeo copy {transport} failed"),
            })
        };
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    Ok(None)
}

/// Runs skopeo; its stdout when it succeeds within two minutes, `None` otherwise.
async fn skopeo(args: &[&str]) -> Option<Vec<u8>> {
    let child = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(120), child).await {
        Ok(Ok(out)) if out.status.success() => Some(out.stdout),
        Ok(Ok(out)) => {
            tracing::debug!(?args, stderr = %String::from_utf8_lossy(&out.stderr), "skopeo failed");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(?args, error = %e, "skopeo did not run");
            None
        }
        Err(_) => {
            tracing::warn!(?args, "skopeo took more than two minutes; skipped");
            None
        }
    }
}

/// Whether this user has a containers-storage (so inspecting it creates nothing).
fn storage_exists() -> bool {
    let rootful = Path::new("/var/lib/containers/storage");
    let rootless =
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share/containers/storage"));
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        rootful.is_dir()
    } else {
        rootless.is_some_and(|p| p.is_dir())
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
