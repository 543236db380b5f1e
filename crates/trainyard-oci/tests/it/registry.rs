//! Pulls from a real registry on loopback: Debian's docker-registry started by
//! scripts/registry-up.sh (one anonymous, one with basic auth), with the test images of
//! scripts/test-images.sh. Feature `registry`; without its environment these tests fail.

use std::path::PathBuf;

use trainyard_oci::{ImageError, ImageStore, PullAuth, StoreSettings};

use crate::common::{Progress, TestImage, store_images, unique};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the registries with scripts/registry-up.sh and push the \
             test images with scripts/test-images.sh (scripts/test.sh does both), or leave out \
             the registry feature (TRAINYARD_SKIP_REGISTRY=1)"
        )
    })
}

fn store(root: PathBuf) -> ImageStore {
    ImageStore::open(root, StoreSettings::default()).unwrap()
}

/// GET requests for `blob` in the registry's access log.
fn blob_gets(state: &str, blob: &str) -> usize {
    let log = std::fs::read_to_string(PathBuf::from(state).join("registry.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{blob} ")))
        .count()
}

#[tokio::test]
#[cfg_attr(
    not(feature = "registry"),
    ignore = "needs a registry (feature registry)"
)]
async fn pull_by_tag_then_by_digest() {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let t = tempfile::tempdir().unwrap();
    let s = store(t.path().join("store"));
    let p = Progress::default();
    let reference = format!("{registry}/trainyard-test/byo:latest");
    let image = s
        .pull(&reference, &PullAuth::Default, &p.f())
        .await
        .unwrap();
    assert_eq!(image.config.entrypoint, ["train"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/opt/ml/code"));
    assert!(
        image
            .config
            .env
            .contains(&("TRAINYARD_BYO".into(), "1".into()))
    );
    assert!(image.rootfs.join("usr/local/bin/train").is_file());
    assert!(image.rootfs.join("usr/bin/python3").exists());
    assert_eq!(image.source, registry);
    let text = p.text();
    assert!(
        text.contains(&format!("resolved to {}", image.digest)),
        "{text}"
    );
    assert!(text.contains("layer 2/2"), "{text}");
    // By digest: present, no network needed.
    let p2 = Progress::default();
    let pinned = format!("{registry}/trainyard-test/byo@{}", image.digest);
    let again = s.pull(&pinned, &PullAuth::Default, &p2.f()).await.unwrap();
    assert_eq!(again.rootfs, image.rootfs);
    assert!(p2.text().contains("already present"), "{}", p2.text());
    // By digest into an empty store: pulled.
    let s2 = store(t.path().join("store2"));
    let fresh = s2.pull(&pinned, &PullAuth::Default, &|_| {}).await.unwrap();
    assert_eq!(fresh.digest, image.digest);
    // base shares its layer with byo: already present.
    let p3 = Progress::default();
    let base = s
        .pull(
            &format!("{registry}/trainyard-test/base"),
            &PullAuth::Default,
            &p3.f(),
        )
        .await
        .unwrap();
    assert!(base.config.entrypoint.is_empty());
    assert!(
        p3.text().contains("layer 1/1") && p3.text().contains("already present"),
        "{}",
        p3.text()
    );
}

#[tokio::test]
#[cfg_attr(
    not(feature = "registry"),
    ignore = "needs a registry (feature registry)"
)]
async fn basic_auth_right_wrong_and_missing() {
    let registry = env("TRAINYARD_TEST_AUTH_REGISTRY");
    let creds = env("TRAINYARD_TEST_AUTH_CREDS");
    let (user, pass) = creds.split_once(':').unwrap();
    let t = tempfile::tempdir().unwrap();
    let s = store(t.path().join("store"));
    let reference = format!("{registry}/trainyard-test/base:latest");
    let right = PullAuth::Basic {
        username: user.into(),
        password: pass.into(),
    };
    let image = s.pull(&reference, &right, &|_| {}).await.unwrap();
    assert!(image.rootfs.join("usr/bin/python3").exists());

    let s2 = store(t.path().join("store2"));
    let wrong = PullAuth::Basic {
        username: user.into(),
        password: "wrong".into(),
    };
    let err = s2.pull(&reference, &wrong, &|_| {}).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&registry) && msg.contains(&reference) && msg.contains(user),
        "{msg}"
    );
    assert!(!msg.contains("wrong"), "the password leaked: {msg}");
    // No credentials (an empty docker config): refused too, saying so.
    let cfg = t.path().join("config.json");
    std::fs::write(&cfg, "{}").unwrap();
    let s3 = ImageStore::open(
        t.path().join("store3"),
        StoreSettings {
            docker_config: Some(cfg.clone()),
            ..StoreSettings::default()
        },
    )
    .unwrap();
    let err = s3
        .pull(&reference, &PullAuth::Default, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::Unauthorized { .. })
            && err.to_string().contains("no credentials"),
        "{err}"
    );
    // Credentials from the docker config's auths.
    use std::io::Write;
    let b64 = {
        let raw = format!("{user}:{pass}");
        let mut out = String::new();
        let mut enc = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        enc.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
        std::io::Read::read_to_string(&mut enc.stdout.take().unwrap(), &mut out).unwrap();
        enc.wait().unwrap();
        out
    };
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    let image = s3
        .pull(&reference, &PullAuth::Default, &|_| {})
        .await
        .unwrap();
    assert!(image.rootfs.join("usr/bin/python3").exists());
    assert!(store_images(&t.path().join("store2")).is_empty());
}

#[tokio::test]
#[cfg_attr(
    not(feature = "registry"),
    ignore = "needs a registry (feature registry)"
)]
async fn unknown_tag_and_repository_name_the_registry() {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let t = tempfile::tempdir().unwrap();
    let s = store(t.path().join("store"));
    let err = s
        .pull(
            &format!("{registry}/trainyard-test/base:no-such-tag"),
            &PullAuth::Default,
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::UnknownTag { .. }), "{err}");
    assert!(
        err.to_string().contains(&registry) && err.to_string().contains("no-such-tag"),
        "{err}"
    );
    let err = s
        .pull(
            &format!("{registry}/trainyard-test/no-such-repo:latest"),
            &PullAuth::Default,
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::UnknownRepository { .. } | ImageError::UnknownTag { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&registry), "{err}");
    // Nothing listens on port 1: a registry error naming it.
    let err = s
        .pull("127.0.0.1:1/x/y:z", &PullAuth::Default, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::Registry { .. }) && err.to_string().contains("127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(feature = "registry"),
    ignore = "needs a registry (feature registry)"
)]
async fn layer_corrupted_in_the_registry_is_refused() {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let state = env("TRAINYARD_TEST_REGISTRY_STATE");
    let marker = unique("corrupt");
    let img = TestImage::new(&[&[("f", Some(marker.as_str()))]], &["/f"]);
    let repo = "trainyard-it/corrupt";
    img.push(&registry, repo, &marker, None).await;
    let layer = crate::common::sha256(&img.layers[0]);
    let hex = layer.trim_start_matches("sha256:");
    let data = PathBuf::from(&state).join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();

    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(root.clone());
    let reference = format!("{registry}/{repo}:{marker}");
    let err = s
        .pull(&reference, &PullAuth::Default, &|_| {})
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch { digest, .. } => assert_eq!(digest, &layer),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains(&registry) && err.to_string().contains(&reference),
        "{err}"
    );
    assert!(store_images(&root).is_empty(), "{:?}", store_images(&root));
    assert!(!root.join("blobs/sha256").join(hex).exists());
}

#[tokio::test]
#[cfg_attr(
    not(feature = "registry"),
    ignore = "needs a registry (feature registry)"
)]
async fn concurrent_pulls_download_once() {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let state = env("TRAINYARD_TEST_REGISTRY_STATE");
    let marker = unique("flight");
    let big: String = marker.repeat(200_000 / marker.len());
    let img = TestImage::new(&[&[("f", Some(big.as_str()))]], &["/f"]);
    let repo = "trainyard-it/flight";
    let digest = img.push(&registry, repo, &marker, None).await;
    let layer = crate::common::sha256(&img.layers[0]);
    let before = blob_gets(&state, &layer);

    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    // One store shared by two jobs, and a second store object on the same root standing for
    // another process of the machine.
    let s1 = store(root.clone());
    let s2 = store(root.clone());
    let reference = format!("{registry}/{repo}:{marker}");
    let by_digest = format!("{registry}/{repo}@{digest}");
    let (a, b, c) = tokio::join!(
        s1.pull(&reference, &PullAuth::Default, &|_| {}),
        s1.pull(&reference, &PullAuth::Default, &|_| {}),
        s2.pull(&by_digest, &PullAuth::Default, &|_| {}),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.rootfs, b.rootfs);
    assert_eq!(a.rootfs, c.rootfs);
    // The registry writes its access log line when the response ends.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        blob_gets(&state, &layer) - before,
        1,
        "the layer was downloaded more than once"
    );
    // A next job pulls nothing.
    drop((a, b, c));
    let p = Progress::default();
    s1.pull(&reference, &PullAuth::Default, &p.f())
        .await
        .unwrap();
    assert_eq!(blob_gets(&state, &layer) - before, 1);
    assert!(p.text().contains("already present"), "{}", p.text());
}
