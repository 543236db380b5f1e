//! An image built with `podman build` and never pushed is used from containers-storage,
//! without any registry. Feature `podman` (podman and skopeo installed, containers-storage
//! usable by this user).

use trainyard_oci::{ImageStore, PullAuth, StoreSettings};

use crate::common::{Progress, unique};

#[tokio::test]
#[cfg_attr(not(feature = "podman"), ignore = "needs podman (feature podman)")]
async fn locally_built_image_is_used_without_a_registry() {
    let t = tempfile::tempdir().unwrap();
    let marker = unique("podman");
    std::fs::write(t.path().join("marker.txt"), &marker).unwrap();
    std::fs::write(
        t.path().join("Containerfile"),
        "FROM scratch\nCOPY marker.txt /marker.txt\nENV FROM_PODMAN=1\nENTRYPOINT [\"/train\"]\n",
    )
    .unwrap();
    let name = format!("trainyard-it-{}", std::process::id());
    let tag = format!("{name}:latest");
    let out = std::process::Command::new("podman")
        .args(["build", "-q", "-t", &tag])
        .arg(t.path())
        .output()
        .expect("podman must be installed when the podman feature is on");
    assert!(
        out.status.success(),
        "podman build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ImageStore::open(t.path().join("store"), StoreSettings::default()).unwrap();
    let p = Progress::default();
    // A short name, as the user typed it for podman: no registry named, none reachable.
    let result = store.pull(&tag, &PullAuth::Default, &p.f()).await;
    let p2 = Progress::default();
    let again = store.pull(&tag, &PullAuth::Default, &p2.f()).await;
    let _ = std::process::Command::new("podman")
        .args(["rmi", "-f", &tag])
        .output();
    let image = result.unwrap();
    assert_eq!(image.source, "containers-storage");
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("marker.txt")).unwrap(),
        marker
    );
    assert_eq!(image.config.entrypoint, ["/train"]);
    assert!(
        image
            .config
            .env
            .contains(&("FROM_PODMAN".into(), "1".into()))
    );
    assert!(p.text().contains("containers-storage"), "{}", p.text());
    let again = again.unwrap();
    assert_eq!(again.digest, image.digest);
    assert!(p2.text().contains("already present"), "{}", p2.text());
}
