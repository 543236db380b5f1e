//! Test images built in memory: layers as tar bytes, pushed to a registry or written as an
//! OCI layout, with unique content so that each test's blobs are its own.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// A layer entry: path and content (a directory when the content is `None`).
pub type Files<'a> = &'a [(&'a str, Option<&'a str>)];

pub fn tar_layer(files: Files<'_>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        match content {
            Some(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, path, c.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An image: gzip layers and a config with the given entrypoint.
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
}

impl TestImage {
    pub fn new(layers: &[Files<'_>], entrypoint: &[&str]) -> TestImage {
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| tar_layer(l)).collect();
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/bin", "X=1"], "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        TestImage {
            layers: tars.iter().map(|t| gzip(t)).collect(),
            config: serde_json::to_vec(&config).unwrap(),
        }
    }

    /// Manifest JSON and its digest.
    pub fn manifest(&self) -> (Vec<u8>, String) {
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(l), "size": l.len()}))
            .collect();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&self.config), "size": self.config.len()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = sha256(&bytes);
        (bytes, d)
    }

    /// Writes an OCI layout at `dir` with this image tagged `tag`; returns the manifest digest.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> String {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let d = sha256(data);
            std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        };
        put(&self.config);
        for l in &self.layers {
            put(l);
        }
        let (m, digest) = self.manifest();
        put(&m);
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": m.len(),
                           "annotations": {"org.opencontainers.image.ref.name": tag}}],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        digest
    }

    /// Pushes to `registry` (plain HTTP) as `repo:tag`; returns the manifest digest.
    pub async fn push(
        &self,
        registry: &str,
        repo: &str,
        tag: &str,
        creds: Option<(&str, &str)>,
    ) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![registry.to_string()]),
            ..Default::default()
        });
        let reference: oci_client::Reference = format!("{registry}/{repo}:{tag}").parse().unwrap();
        let auth = match creds {
            Some((u, p)) => oci_client::secrets::RegistryAuth::Basic(u.into(), p.into()),
            None => oci_client::secrets::RegistryAuth::Anonymous,
        };
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| oci_client::client::ImageLayer::oci_v1_gzip(l.clone(), None))
            .collect();
        let config = oci_client::client::Config::oci_v1(self.config.clone(), None);
        client
            .push(&reference, &layers, config, &auth, None)
            .await
            .unwrap();
        let (_, digest) = client.pull_manifest(&reference, &auth).await.unwrap();
        digest
    }
}

/// A unique string, so each test's layers (and blob digests) are its own.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Collects progress lines.
#[derive(Clone, Default)]
pub struct Progress(pub Arc<Mutex<Vec<String>>>);

impl Progress {
    pub fn f(&self) -> impl Fn(&str) + Send + Sync + use<> {
        let lines = self.0.clone();
        move |l: &str| lines.lock().unwrap().push(l.to_string())
    }
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Files and directories under a store root's `images/` (unpacked images) and `tmp/`.
pub fn store_images(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["images", "tmp"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            for e in rd.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}
