//! The image store: single-flight pulls, verified blobs, atomic unpacks, leases and LRU
//! eviction.
//!
//! Concurrency, inside a process and between processes of one machine:
//! - A pull holds an in-process async lock keyed by the reference, then one keyed by the image
//!   (manifest digest), then an exclusive `flock` on `locks/<key>.lock`: whoever comes second
//!   finds the image present and downloads nothing.
//! - A lease is an in-process count plus a shared `flock` on `locks/<key>.lease`, taken
//!   *before* the pull checks presence and held until the [`Image`] is dropped. Eviction takes
//!   that lock exclusively without waiting, so it never removes an image anybody holds, and a
//!   pull never sees a half-removed tree (removal renames the tree away first).
//! - Blobs are opened before use; an eviction removing a shared blob meanwhile does not hurt
//!   the open file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::error::IoContext;
use crate::index::{self, Entry};
use crate::reference::{self, Source, digest_hex};
use crate::registry::Remote;
use crate::unpack::{self, UnpackError};
use crate::{ImageError, PullAuth, RunConfig, StoreSettings, config, local};

/// The images of one machine, under one root directory (`$TRAINYARD_HOME/images`).
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    settings: StoreSettings,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    leases: Mutex<HashMap<String, usize>>,
    tmp_counter: AtomicU64,
}

/// A pulled image, ready to run. Holding it keeps the image from eviction.
#[derive(Debug)]
pub struct Image {
    /// The manifest digest (`sha256:...`).
    pub digest: String,
    /// The reference as asked for.
    pub reference: String,
    /// Where it came from: `registry HOST`, `containers-storage` or `oci:DIR`.
    pub source: String,
    /// The unpacked root file system. Never write to it: mount an overlay over it.
    pub rootfs: PathBuf,
    /// The image's run configuration.
    pub config: RunConfig,
    _lease: Lease,
}

/// Keeps an image from eviction while alive (in-process count + shared `flock`).
#[derive(Debug)]
struct Lease {
    inner: Arc<Inner>,
    key: String,
    _file: File,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut leases) = self.inner.leases.lock()
            && let Some(n) = leases.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                leases.remove(&self.key);
            }
        }
    }
}

/// `images/<key>/image.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ImageMeta {
    digest: String,
    config: RunConfig,
    blobs: Vec<(String, u64)>,
    rootfs_bytes: u64,
}

/// Where blobs come from during one pull.
pub(crate) enum BlobSource<'a> {
    Remote(&'a Remote),
    Layout(&'a Path),
}

/// What a pull is, for messages.
pub(crate) struct Ctx<'a> {
    pub image: &'a str,
    pub source_name: String,
    pub progress: &'a (dyn Fn(&str) + Send + Sync),
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: PathBuf, settings: StoreSettings) -> Result<Self, ImageError> {
        // reqwest's rustls needs a process-wide crypto provider; ring, as the rest of
        // trainyard. Already installed (by us or the binary) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for dir in ["blobs/sha256", "images", "locks", "tmp"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).ctx("creating", &p)?;
        }
        // Leftovers of pulls that died: never read, safe to remove when nobody holds the
        // pull lock, but another process may be mid-pull, so only old ones go.
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 24 * 3600);
                if old {
                    let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
                }
            }
        }
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                settings,
                flights: Mutex::new(HashMap::new()),
                leases: Mutex::new(HashMap::new()),
                tmp_counter: AtomicU64::new(0),
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Resolves, pulls (once, however many ask at the same moment), verifies and unpacks
    /// `reference`, and leases it. `progress` receives lines for the job log.
    ///
    /// Sources, in order: `oci:DIR[:TAG]` layouts; the local containers-storage (through
    /// `skopeo`, skipped when either is absent); the registry.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &PullAuth,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let span = tracing::info_span!("image_pull", reference);
        async {
            let source = reference::parse(reference)?;
            let flight = self.flight(format!("ref:{reference}"));
            let _ref_guard = flight.lock().await;
            match source {
                Source::Layout { dir, tag } => {
                    let ctx = Ctx {
                        image: reference,
                        source_name: format!("oci:{}", dir.display()),
                        progress,
                    };
                    self.import_layout(&dir, tag.as_deref(), &ctx, None).await
                }
                Source::Registry(r) => {
                    if let Some(image) =
                        local::from_containers_storage(self, reference, progress).await?
                    {
                        return Ok(image);
                    }
                    self.pull_registry(reference, r, auth, progress).await
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn pull_registry(
        &self,
        reference: &str,
        r: oci_client::Reference,
        auth: &PullAuth,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let s = &self.inner.settings;
        let ctx = Ctx {
            image: reference,
            source_name: r.resolve_registry().to_string(),
            progress,
        };
        // Pinned by digest and present: no network at all.
        if let Some(d) = r.digest()
            && let Some(image) = self.present(&self.key(d)?, d, reference, &ctx).await?
        {
            return Ok(image);
        }
        let remote = Remote::new(
            reference,
            r,
            auth,
            &s.insecure_registries,
            s.docker_config.as_deref(),
        )
        .await?;
        let (manifest, digest) = remote.resolve().await?;
        progress(&format!(
            "{reference}: resolved to {digest} in registry {}",
            remote.registry()
        ));
        self.ensure(&digest, &manifest, &BlobSource::Remote(&remote), &ctx, None)
            .await
    }

    /// The image `key` if unpacked, leased; `None` otherwise.
    async fn present(
        &self,
        key: &str,
        digest: &str,
        reference: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Image>, ImageError> {
        let lease = self.lease(key).await?;
        match self.read_meta(key) {
            Some(meta) => {
                (ctx.progress)(&format!("{reference}: {digest} already present"));
                self.touch(key, reference, &meta, None).await?;
                Ok(Some(self.image(
                    key,
                    reference,
                    &ctx.source_name,
                    meta,
                    lease,
                )))
            }
            None => Ok(None),
        }
    }

    /// Makes image `digest` (with `manifest`) present, fetching blobs from `blobs`, and
    /// returns it leased. `local_id` records a local source identity in the index.
    pub(crate) async fn ensure(
        &self,
        digest: &str,
        manifest: &OciImageManifest,
        blobs: &BlobSource<'_>,
        ctx: &Ctx<'_>,
        local_id: Option<&str>,
    ) -> Result<Image, ImageError> {
        let key = self.key(digest)?;
        let flight = self.flight(format!("image:{key}"));
        let _guard = flight.lock().await;
        let _pull_lock = self.file_lock(&format!("{key}.lock"), false).await?;
        let lease = self.lease(&key).await?;
        if let Some(meta) = self.read_meta(&key) {
            (ctx.progress)(&format!("{}: {digest} already present", ctx.image));
            self.touch(&key, ctx.image, &meta, local_id).await?;
            return Ok(self.image(&key, ctx.image, &ctx.source_name, meta, lease));
        }

        let total: u64 = manifest.layers.iter().map(|l| l.size.max(0) as u64).sum();
        if total > self.inner.settings.budget_bytes {
            return Err(ImageError::OverBudget {
                image: ctx.image.to_string(),
                needed: total,
                budget: self.inner.settings.budget_bytes,
            });
        }
        (ctx.progress)(&format!(
            "{}: pulling {} layers, {} compressed",
            ctx.image,
            manifest.layers.len(),
            human(total)
        ));

        let config_file = self
            .fetch_blob(blobs, &manifest.config, "config", ctx)
            .await?;
        let config_bytes = read_all(config_file, &self.blob_path(&manifest.config.digest))?;
        let parsed = config::parse(&config_bytes).map_err(|what| ImageError::Unsupported {
            image: ctx.image.to_string(),
            source_name: ctx.source_name.clone(),
            what,
        })?;
        if parsed.platform != "linux/amd64" {
            return Err(ImageError::Unsupported {
                image: ctx.image.to_string(),
                source_name: ctx.source_name.clone(),
                what: format!(
                    "the image is for {}, trainyard runs linux/amd64",
                    parsed.platform
                ),
            });
        }
        if parsed.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Unsupported {
                image: ctx.image.to_string(),
                source_name: ctx.source_name.clone(),
                what: format!(
                    "the manifest has {} layers but the config {} diff_ids",
                    manifest.layers.len(),
                    parsed.diff_ids.len()
                ),
            });
        }
        let mut layer_files = Vec::new();
        for (i, layer) in manifest.layers.iter().enumerate() {
            let compression =
                compression(&layer.media_type).ok_or_else(|| ImageError::Unsupported {
                    image: ctx.image.to_string(),
                    source_name: ctx.source_name.clone(),
                    what: format!("layer {} has media type {}", layer.digest, layer.media_type),
                })?;
            let present = self.blob_path(&layer.digest).exists();
            let file = self.fetch_blob(blobs, layer, "layer", ctx).await?;
            (ctx.progress)(&format!(
                "{}: layer {}/{} {} {}",
                ctx.image,
                i + 1,
                manifest.layers.len(),
                short(&layer.digest),
                if present {
                    "already present".to_string()
                } else {
                    format!("{} downloaded", human(layer.size.max(0) as u64))
                }
            ));
            layer_files.push((
                file,
                layer.digest.clone(),
                compression,
                parsed.diff_ids[i].clone(),
            ));
        }

        // Unpack into a private temporary directory, renamed into place when complete.
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .inner
            .root
            .join("tmp")
            .join(format!("unpack-{key}-{}-{n}", std::process::id()));
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs).ctx("creating", &rootfs)?;
        let shift = self.inner.settings.id_shift.map_or(0, |s| s.base);
        let image_name = ctx.image.to_string();
        let rootfs_for_task = rootfs.clone();
        let started = std::time::Instant::now();
        let unpacked = tokio::task::spawn_blocking(move || -> Result<u64, ImageError> {
            for (file, digest, compression, diff_id) in layer_files {
                apply_layer(
                    file,
                    &digest,
                    compression,
                    &diff_id,
                    &rootfs_for_task,
                    shift,
                    &image_name,
                )?;
            }
            disk_usage(&rootfs_for_task)
        })
        .await
        .map_err(|e| ImageError::io("unpacking", &rootfs, io::Error::other(e)));
        let rootfs_bytes = match unpacked.and_then(|r| r) {
            Ok(b) => b,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let mut blob_list = vec![(
            digest_hex(&manifest.config.digest)
                .unwrap_or_default()
                .to_string(),
            manifest.config.size.max(0) as u64,
        )];
        for l in &manifest.layers {
            blob_list.push((
                digest_hex(&l.digest).unwrap_or_default().to_string(),
                l.size.max(0) as u64,
            ));
        }
        let meta = ImageMeta {
            digest: digest.to_string(),
            config: parsed.run,
            blobs: blob_list,
            rootfs_bytes,
        };
        let meta_path = tmp.join("image.json");
        let meta_bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| ImageError::io("encoding", &meta_path, io::Error::other(e)))?;
        fs::write(&meta_path, meta_bytes).ctx("writing", &meta_path)?;
        let dest = self.image_dir(&key);
        fs::rename(&tmp, &dest).ctx("renaming into", &dest)?;
        (ctx.progress)(&format!(
            "{}: unpacked {} in {:.1} s",
            ctx.image,
            human(rootfs_bytes),
            started.elapsed().as_secs_f64()
        ));
        self.touch(&key, ctx.image, &meta, local_id).await?;
        self.evict(&key, ctx).await?;
        Ok(self.image(&key, ctx.image, &ctx.source_name, meta, lease))
    }

    /// Downloads (or copies) one blob into `blobs/sha256/`, verified, and opens it.
    async fn fetch_blob(
        &self,
        source: &BlobSource<'_>,
        desc: &OciDescriptor,
        what: &'static str,
        ctx: &Ctx<'_>,
    ) -> Result<File, ImageError> {
        let hex = digest_hex(&desc.digest).ok_or_else(|| ImageError::Unsupported {
            image: ctx.image.to_string(),
            source_name: ctx.source_name.clone(),
            what: format!("{what} digest {} is not sha256", desc.digest),
        })?;
        let path = self.blob_path(&desc.digest);
        match File::open(&path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("opening", &path, e)),
        }
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .inner
            .root
            .join("tmp")
            .join(format!("blob-{hex}-{}-{n}", std::process::id()));
        let result = self.download(source, desc, &tmp, ctx).await;
        let (actual, size, transfer_error) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let expected_size = desc.size.max(0) as u64;
        let mismatch = if actual != hex {
            Some((
                desc.digest.clone(),
                format!("sha256:{actual} ({size} bytes)"),
            ))
        } else if size != expected_size {
            Some((format!("{expected_size} bytes"), format!("{size} bytes")))
        } else {
            None
        };
        if let Some((expected, actual)) = mismatch {
            let _ = fs::remove_file(&tmp);
            // A transfer cut short is a registry failure, not corruption.
            if let Some(detail) = transfer_error
                && size < expected_size
            {
                return Err(ImageError::Registry {
                    image: ctx.image.to_string(),
                    registry: ctx.source_name.clone(),
                    detail: format!("downloading {what} {}: {detail}", desc.digest),
                });
            }
            return Err(ImageError::DigestMismatch {
                image: ctx.image.to_string(),
                source_name: ctx.source_name.clone(),
                what,
                digest: desc.digest.clone(),
                expected,
                actual,
            });
        }
        fs::rename(&tmp, &path).ctx("renaming into", &path)?;
        File::open(&path).ctx("opening", &path)
    }

    /// Streams a blob into `tmp`, returning (sha256 hex, bytes, transfer error if any).
    async fn download(
        &self,
        source: &BlobSource<'_>,
        desc: &OciDescriptor,
        tmp: &Path,
        ctx: &Ctx<'_>,
    ) -> Result<(String, u64, Option<String>), ImageError> {
        let mut out = tokio::fs::File::create(tmp).await.ctx("creating", tmp)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut transfer_error = None;
        match source {
            BlobSource::Remote(remote) => {
                let mut stream = remote
                    .client
                    .pull_blob_stream(&remote.reference, desc)
                    .await
                    .map_err(|e| remote.error(e))?;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            hasher.update(&bytes);
                            size += bytes.len() as u64;
                            out.write_all(&bytes).await.ctx("writing", tmp)?;
                        }
                        Err(e) => {
                            // oci-client's own digest check ends the stream with an error;
                            // the comparison below reports it with the digests.
                            transfer_error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            BlobSource::Layout(dir) => {
                let hex = digest_hex(&desc.digest).unwrap_or_default();
                let src = dir.join("blobs/sha256").join(hex);
                let mut f = tokio::fs::File::open(&src)
                    .await
                    .map_err(|e| ImageError::Local {
                        image: ctx.image.to_string(),
                        source_name: ctx.source_name.clone(),
                        detail: format!("blob {}: {e}", desc.digest),
                    })?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf)
                        .await
                        .ctx("reading", &src)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    out.write_all(&buf[..n]).await.ctx("writing", tmp)?;
                }
            }
        }
        out.flush().await.ctx("writing", tmp)?;
        out.sync_all().await.ctx("syncing", tmp)?;
        Ok((hex::encode(hasher.finalize()), size, transfer_error))
    }

    /// Records use of `key` under `reference` (and a local source identity).
    async fn touch(
        &self,
        key: &str,
        reference: &str,
        meta: &ImageMeta,
        local_id: Option<&str>,
    ) -> Result<(), ImageError> {
        let root = self.inner.root.clone();
        let key = key.to_string();
        let reference = reference.to_string();
        let entry = Entry {
            digest: meta.digest.clone(),
            last_used_ms: index::now_ms(),
            rootfs_bytes: meta.rootfs_bytes,
            blobs: meta.blobs.clone(),
        };
        let local_id = local_id.map(str::to_string);
        blocking(move || {
            let mut locked = index::lock(&root)?;
            locked.index.refs.insert(reference, key.clone());
            if let Some(id) = local_id {
                locked.index.sources.insert(id, key.clone());
            }
            locked.index.images.insert(key, entry);
            locked.save()
        })
        .await
    }

    /// The key an image's local source identity was imported under, if still present.
    pub(crate) async fn key_for_source(&self, id: &str) -> Result<Option<String>, ImageError> {
        let root = self.inner.root.clone();
        let id = id.to_string();
        let key = blocking(move || Ok(index::lock(&root)?.index.sources.get(&id).cloned())).await?;
        Ok(key.filter(|k| self.image_dir(k).join("image.json").exists()))
    }

    /// A present image by key, leased (for local sources already imported).
    pub(crate) async fn present_key(
        &self,
        key: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Image>, ImageError> {
        let digest = self.read_meta(key).map(|m| m.digest).unwrap_or_default();
        self.present(key, &digest, ctx.image, ctx).await
    }

    /// Evicts least recently used images nobody holds until the store fits its budget.
    async fn evict(&self, keep: &str, ctx: &Ctx<'_>) -> Result<(), ImageError> {
        let inner = self.inner.clone();
        let keep = keep.to_string();
        let lines = blocking(move || {
            let mut lines = Vec::new();
            let mut locked = index::lock(&inner.root)?;
            let budget = inner.settings.budget_bytes;
            let mut usage = locked.index.usage();
            if usage <= budget {
                return Ok(lines);
            }
            let mut order: Vec<(u64, String)> = locked
                .index
                .images
                .iter()
                .filter(|(k, _)| **k != keep)
                .map(|(k, e)| (e.last_used_ms, k.clone()))
                .collect();
            order.sort();
            for (_, key) in order {
                if usage <= budget {
                    break;
                }
                let held_here = inner
                    .leases
                    .lock()
                    .map(|l| l.get(&key).copied().unwrap_or(0) > 0)
                    .unwrap_or(true);
                if held_here {
                    continue;
                }
                let lease_path = inner.root.join("locks").join(format!("{key}.lease"));
                let Ok(lease_file) = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lease_path)
                else {
                    continue;
                };
                if fs4::FileExt::try_lock(&lease_file).is_err() {
                    continue; // held by another process
                }
                let dir = inner.root.join("images").join(&key);
                let trash = inner
                    .root
                    .join("tmp")
                    .join(format!("evict-{key}-{}", std::process::id()));
                if dir.exists() {
                    fs::rename(&dir, &trash).ctx("renaming", &dir)?;
                    fs::remove_dir_all(&trash).ctx("removing", &trash)?;
                }
                if let Some(entry) = locked.index.remove(&key) {
                    for (hex, _) in &entry.blobs {
                        let shared = locked
                            .index
                            .images
                            .values()
                            .any(|e| e.blobs.iter().any(|(h, _)| h == hex));
                        if !shared {
                            let _ = fs::remove_file(inner.root.join("blobs/sha256").join(hex));
                        }
                    }
                    lines.push(format!(
                        "evicted {} (last used {} ms ago)",
                        entry.digest,
                        index::now_ms().saturating_sub(entry.last_used_ms)
                    ));
                }
                usage = locked.index.usage();
            }
            locked.save()?;
            if usage > budget {
                lines.push(format!(
                    "image store holds {} over its budget of {}: every other image is in use",
                    human(usage),
                    human(budget)
                ));
            }
            Ok(lines)
        })
        .await?;
        for line in lines {
            tracing::info!("{line}");
            (ctx.progress)(&format!("{}: {line}", ctx.image));
        }
        Ok(())
    }

    fn image(
        &self,
        key: &str,
        reference: &str,
        source: &str,
        meta: ImageMeta,
        lease: Lease,
    ) -> Image {
        Image {
            digest: meta.digest,
            reference: reference.to_string(),
            source: source.to_string(),
            rootfs: self.image_dir(key).join("rootfs"),
            config: meta.config,
            _lease: lease,
        }
    }

    /// Takes a lease on `key` (shared lock, waiting for an eviction in progress).
    async fn lease(&self, key: &str) -> Result<Lease, ImageError> {
        let file = self.file_lock(&format!("{key}.lease"), true).await?;
        if let Ok(mut leases) = self.inner.leases.lock() {
            *leases.entry(key.to_string()).or_default() += 1;
        }
        Ok(Lease {
            inner: self.inner.clone(),
            key: key.to_string(),
            _file: file,
        })
    }

    async fn file_lock(&self, name: &str, shared: bool) -> Result<File, ImageError> {
        let path = self.inner.root.join("locks").join(name);
        blocking(move || {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx("opening", &path)?;
            if shared {
                fs4::FileExt::lock_shared(&f).ctx("locking", &path)?;
            } else {
                fs4::FileExt::lock(&f).ctx("locking", &path)?;
            }
            Ok(f)
        })
        .await
    }

    fn flight(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        flights.retain(|_, m| Arc::strong_count(m) > 1);
        flights.entry(key).or_default().clone()
    }

    /// The directory name of image `digest`: its hex, plus the id shift it was unpacked with.
    fn key(&self, digest: &str) -> Result<String, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::InvalidReference {
            reference: digest.to_string(),
            reason: "not a sha256 digest".into(),
        })?;
        Ok(match self.inner.settings.id_shift {
            Some(s) if s.base != 0 => format!("{hex}-s{}", s.base),
            _ => hex.to_string(),
        })
    }

    fn image_dir(&self, key: &str) -> PathBuf {
        self.inner.root.join("images").join(key)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.inner
            .root
            .join("blobs/sha256")
            .join(digest_hex(digest).unwrap_or("invalid"))
    }

    fn read_meta(&self, key: &str) -> Option<ImageMeta> {
        let bytes = fs::read(self.image_dir(key).join("image.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn tmp_dir(&self, prefix: &str) -> Result<PathBuf, ImageError> {
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let p = self
            .inner
            .root
            .join("tmp")
            .join(format!("{prefix}-{}-{n}", std::process::id()));
        fs::create_dir_all(&p).ctx("creating", &p)?;
        Ok(p)
    }

    /// Imports the image tagged `tag` from the OCI layout at `dir`.
    pub(crate) async fn import_layout(
        &self,
        dir: &Path,
        tag: Option<&str>,
        ctx: &Ctx<'_>,
        local_id: Option<&str>,
    ) -> Result<Image, ImageError> {
        let local = |detail: String| ImageError::Local {
            image: ctx.image.to_string(),
            source_name: ctx.source_name.clone(),
            detail,
        };
        let index_path = dir.join("index.json");
        let index_bytes =
            fs::read(&index_path).map_err(|e| local(format!("{}: {e}", index_path.display())))?;
        let index: oci_client::manifest::OciImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|e| local(format!("{}: {e}", index_path.display())))?;
        let chosen = match tag {
            Some(t) => index.manifests.iter().find(|m| {
                m.annotations
                    .as_ref()
                    .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                    .is_some_and(|n| n == t)
            }),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        };
        let Some(entry) = chosen else {
            return Err(ImageError::UnknownTag {
                image: ctx.image.to_string(),
                registry: ctx.source_name.clone(),
                tag: tag
                    .unwrap_or("(none; the layout holds several images)")
                    .to_string(),
            });
        };
        let mut digest = entry.digest.clone();
        let mut manifest_bytes = self.layout_blob(dir, &digest, ctx)?;
        // A nested index (multi-platform layout): pick linux/amd64.
        if let Ok(nested) =
            serde_json::from_slice::<oci_client::manifest::OciImageIndex>(&manifest_bytes)
            && !nested.manifests.is_empty()
        {
            let pick = nested.manifests.iter().find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os.to_string() == "linux" && p.architecture.to_string() == "amd64"
                })
            });
            let Some(pick) = pick else {
                return Err(ImageError::Unsupported {
                    image: ctx.image.to_string(),
                    source_name: ctx.source_name.clone(),
                    what: format!("the image index {digest} has no linux/amd64 image"),
                });
            };
            digest = pick.digest.clone();
            manifest_bytes = self.layout_blob(dir, &digest, ctx)?;
        }
        let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| local(format!("manifest {digest}: {e}")))?;
        (ctx.progress)(&format!(
            "{}: resolved to {digest} in {}",
            ctx.image, ctx.source_name
        ));
        self.ensure(&digest, &manifest, &BlobSource::Layout(dir), ctx, local_id)
            .await
    }

    /// A small blob of a layout (manifest, index), verified.
    fn layout_blob(&self, dir: &Path, digest: &str, ctx: &Ctx<'_>) -> Result<Vec<u8>, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::Unsupported {
            image: ctx.image.to_string(),
            source_name: ctx.source_name.clone(),
            what: format!("digest {digest} is not sha256"),
        })?;
        let path = dir.join("blobs/sha256").join(hex);
        let bytes = fs::read(&path).map_err(|e| ImageError::Local {
            image: ctx.image.to_string(),
            source_name: ctx.source_name.clone(),
            detail: format!("{}: {e}", path.display()),
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != hex {
            return Err(ImageError::DigestMismatch {
                image: ctx.image.to_string(),
                source_name: ctx.source_name.clone(),
                what: "manifest",
                digest: digest.to_string(),
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(bytes)
    }
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Reads through to a hasher: the uncompressed stream's digest is the layer's diff_id.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn apply_layer(
    file: File,
    digest: &str,
    compression: Compression,
    diff_id: &str,
    rootfs: &Path,
    shift: u32,
    image: &str,
) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::BadLayer {
        image: image.to_string(),
        digest: digest.to_string(),
        reason,
    };
    let buffered = io::BufReader::with_capacity(1 << 20, file);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| bad(format!("zstd: {e}")))?,
        ),
    };
    let mut reader = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
    };
    match unpack::unpack_layer(&mut reader, rootfs, shift) {
        Ok(stats) => {
            tracing::debug!(
                digest,
                entries = stats.entries,
                skipped_devices = stats.skipped_devices,
                "layer applied"
            );
        }
        Err(UnpackError::Refused(reason)) => return Err(bad(reason)),
        Err(UnpackError::Io(path, e)) => return Err(ImageError::io("unpacking into", path, e)),
    }
    // The tar end marker may be followed by padding: the diff_id covers all of it.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|e| bad(format!("reading past the end: {e}")))?;
    let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
    if actual != diff_id {
        return Err(ImageError::DigestMismatch {
            image: image.to_string(),
            source_name: "the image config".to_string(),
            what: "uncompressed layer",
            digest: digest.to_string(),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Bytes a tree occupies on disk, each hard-linked inode once.
fn disk_usage(root: &Path) -> Result<u64, ImageError> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).ctx("reading", &dir)? {
            let entry = entry.ctx("reading", &dir)?;
            let meta = entry.metadata().ctx("inspecting", entry.path())?;
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

fn read_all(mut f: File, path: &Path) -> Result<Vec<u8>, ImageError> {
    let mut v = Vec::new();
    f.read_to_end(&mut v).ctx("reading", path)?;
    Ok(v)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::io("running", "a blocking task", io::Error::other(e)))?
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

pub(crate) fn human(bytes: u64) -> String {
    const MB: f64 = 1_000_000.0;
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / MB)
    } else {
        format!("{:.1} kB", bytes as f64 / 1000.0)
    }
}
