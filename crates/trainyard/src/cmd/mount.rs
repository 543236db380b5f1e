//! `trainyard mount`: a FastFile channel's view of a prefix, for exploring a dataset.

use std::path::Path;

use anyhow::{Context, Result};
use trainyard::config::Settings;
use trainyard::storage::Storage;
use trainyard_data::fastfile::{
    FastFileConfig, check_folder_prefix, list_mount_entries, mount as mount_fs,
};
use trainyard_s3::Location;

use super::{Exit, USAGE, interrupted};

pub async fn mount(uri: &str, dir: &Path, cache_mib: u64) -> Result<u8> {
    let settings = Settings::from_env()?;
    let storage = Storage::new(&settings).context("configuring object storage")?;
    let loc =
        Location::parse(uri, &std::env::current_dir()?).map_err(|e| Exit(USAGE, e.to_string()))?;
    let res = storage.resolve(&loc);
    let started = std::time::Instant::now();
    let entries = list_mount_entries(&*res.client, &res.bucket, &res.key)
        .await
        .with_context(|| format!("listing {uri}"))?;
    let objects: Vec<_> = entries.iter().map(|e| e.object.clone()).collect();
    check_folder_prefix(&res.key, &objects).map_err(|e| Exit(USAGE, e.to_string()))?;
    let n = entries.len();
    let cfg = FastFileConfig {
        cache_budget: cache_mib << 20,
        ..Default::default()
    };
    let (client, target) = (res.client.clone(), dir.to_path_buf());
    let handle = tokio::task::spawn_blocking(move || mount_fs(&cfg, client, entries, &target))
        .await?
        .with_context(|| format!("mounting at {}", dir.display()))?;
    println!(
        "trainyard: {uri} mounted at {} ({n} objects, ready in {:.3} s); Ctrl-C to unmount",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    interrupted().await;
    tokio::task::spawn_blocking(move || handle.unmount())
        .await?
        .context("unmounting")?;
    println!("trainyard: unmounted {}", dir.display());
    Ok(0)
}
