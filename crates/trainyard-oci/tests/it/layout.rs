//! Pulls from `oci:` layouts: what registry pulls share (verification, unpack, leases,
//! eviction, single-flight) without a registry.

use trainyard_oci::{ImageError, ImageStore, PullAuth, StoreSettings};

use crate::common::{Progress, TestImage, store_images, unique};

fn settings(budget: u64) -> StoreSettings {
    StoreSettings {
        budget_bytes: budget,
        ..StoreSettings::default()
    }
}

#[tokio::test]
async fn layout_pull_unpacks_layers_and_config() {
    let t = tempfile::tempdir().unwrap();
    let marker = unique("layout");
    let img = TestImage::new(
        &[
            &[
                ("etc/", None),
                ("etc/os", Some("base")),
                ("etc/gone", Some("x")),
            ],
            &[
                ("etc/.wh.gone", Some("")),
                ("app/train", Some(marker.as_str())),
            ],
        ],
        &["/app/train"],
    );
    let digest = img.write_layout(&t.path().join("layout"), "v1");
    let store = ImageStore::open(t.path().join("store"), settings(1 << 30)).unwrap();
    let p = Progress::default();
    let reference = format!("oci:{}:v1", t.path().join("layout").display());
    let image = store
        .pull(&reference, &PullAuth::Default, &p.f())
        .await
        .unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.config.entrypoint, ["/app/train"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/w"));
    assert!(image.config.env.contains(&("X".into(), "1".into())));
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("app/train")).unwrap(),
        marker
    );
    assert!(image.rootfs.join("etc/os").exists());
    assert!(!image.rootfs.join("etc/gone").exists());
    assert!(p.text().contains(&digest), "{}", p.text());
    // Again: nothing to do.
    let p2 = Progress::default();
    let again = store
        .pull(&reference, &PullAuth::Default, &p2.f())
        .await
        .unwrap();
    assert_eq!(again.rootfs, image.rootfs);
    assert!(p2.text().contains("already present"), "{}", p2.text());
    // An unknown tag names the layout.
    let err = store
        .pull(
            &format!("oci:{}:nope", t.path().join("layout").display()),
            &PullAuth::Default,
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::UnknownTag { .. }), "{err}");
}

#[tokio::test]
async fn corrupted_layer_is_refused_and_nothing_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let marker = unique("corrupt");
    let img = TestImage::new(&[&[("f", Some(marker.as_str()))]], &["/f"]);
    let layout = t.path().join("layout");
    img.write_layout(&layout, "v1");
    let layer = crate::common::sha256(&img.layers[0]);
    let blob = layout
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let store_root = t.path().join("store");
    let store = ImageStore::open(store_root.clone(), settings(1 << 30)).unwrap();
    let err = store
        .pull(
            &format!("oci:{}:v1", layout.display()),
            &PullAuth::Default,
            &|_| {},
        )
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch { digest, .. } => assert_eq!(digest, &layer),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("oci:"), "{err}");
    assert_eq!(store_images(&store_root), Vec::<String>::new());
    assert!(
        !store_root
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .exists()
    );
    // Truncated: same refusal.
    std::fs::write(&blob, &bytes[..mid]).unwrap();
    let err = store
        .pull(
            &format!("oci:{}:v1", layout.display()),
            &PullAuth::Default,
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(store_images(&store_root), Vec::<String>::new());
}

#[tokio::test]
async fn eviction_spares_leased_images_and_evicts_lru() {
    let t = tempfile::tempdir().unwrap();
    // Three images of ~300 kB unpacked each (incompressible content).
    let mut refs = Vec::new();
    for i in 0..3 {
        let content: String = (0..300_000u32)
            .map(|n| {
                char::from(
                    b'a' + ((n.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) % 26)
                        as u8,
                )
            })
            .collect();
        let img = TestImage::new(&[&[("blob", Some(content.as_str()))]], &["/blob"]);
        let dir = t.path().join(format!("l{i}"));
        img.write_layout(&dir, "v");
        refs.push(format!("oci:{}:v", dir.display()));
    }
    // Room for about two images (unpacked tree + blobs).
    let store_root = t.path().join("store");
    let store = ImageStore::open(store_root.clone(), settings(1_000_000)).unwrap();
    let a = store
        .pull(&refs[0], &PullAuth::Default, &|_| {})
        .await
        .unwrap();
    let b = store
        .pull(&refs[1], &PullAuth::Default, &|_| {})
        .await
        .unwrap();
    drop(b);
    // a is held, b is not: pulling c evicts b, never a.
    let p = Progress::default();
    let c = store
        .pull(&refs[2], &PullAuth::Default, &p.f())
        .await
        .unwrap();
    assert!(a.rootfs.join("blob").exists());
    assert!(c.rootfs.join("blob").exists());
    assert!(p.text().contains("evicted"), "{}", p.text());
    let images = store_images(&store_root)
        .into_iter()
        .filter(|s| s.starts_with("images/"))
        .count();
    assert_eq!(images, 2);
    // With everything held, the store goes over budget rather than evicting a held image.
    let p = Progress::default();
    let b = store
        .pull(&refs[1], &PullAuth::Default, &p.f())
        .await
        .unwrap();
    assert!(
        a.rootfs.join("blob").exists()
            && b.rootfs.join("blob").exists()
            && c.rootfs.join("blob").exists()
    );
    assert!(p.text().contains("over its budget"), "{}", p.text());
}

#[tokio::test]
async fn concurrent_pulls_unpack_once() {
    let t = tempfile::tempdir().unwrap();
    let marker = unique("flight");
    let img = TestImage::new(&[&[("f", Some(marker.as_str()))]], &["/f"]);
    let layout = t.path().join("layout");
    img.write_layout(&layout, "v1");
    let reference = format!("oci:{}:v1", layout.display());
    let root = t.path().join("store");
    // Two stores on one root stand for two processes: the file locks serialize them.
    let s1 = ImageStore::open(root.clone(), settings(1 << 30)).unwrap();
    let s2 = ImageStore::open(root.clone(), settings(1 << 30)).unwrap();
    let (p1, p2, p3) = (
        Progress::default(),
        Progress::default(),
        Progress::default(),
    );
    let (f1, f2, f3) = (p1.f(), p2.f(), p3.f());
    let (a, b, c) = tokio::join!(
        s1.pull(&reference, &PullAuth::Default, &f1),
        s1.pull(&reference, &PullAuth::Default, &f2),
        s2.pull(&reference, &PullAuth::Default, &f3),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.rootfs, b.rootfs);
    assert_eq!(a.rootfs, c.rootfs);
    let unpacked = [p1.text(), p2.text(), p3.text()]
        .iter()
        .filter(|t| t.contains("unpacked"))
        .count();
    assert_eq!(
        unpacked,
        1,
        "{}\n--\n{}\n--\n{}",
        p1.text(),
        p2.text(),
        p3.text()
    );
}

#[tokio::test]
async fn hostile_layer_is_refused_naming_the_image() {
    let t = tempfile::tempdir().unwrap();
    let img = TestImage::new(&[&[("ok", Some("x"))]], &["/ok"]);
    // Replace the layer with one whose entry escapes the root (hand-written header).
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    let name = b"../escape";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"x"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut img = img;
    let diff_id = crate::common::sha256(&tar);
    img.layers = vec![crate::common::gzip(&tar)];
    let mut cfg: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    cfg["rootfs"]["diff_ids"] = serde_json::json!([diff_id]);
    img.config = serde_json::to_vec(&cfg).unwrap();
    let layout = t.path().join("layout");
    img.write_layout(&layout, "v1");
    let root = t.path().join("store");
    let store = ImageStore::open(root.clone(), settings(1 << 30)).unwrap();
    let reference = format!("oci:{}:v1", layout.display());
    let err = store
        .pull(&reference, &PullAuth::Default, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
    assert!(
        err.to_string().contains("escapes") && err.to_string().contains(&reference),
        "{err}"
    );
    assert_eq!(store_images(&root), Vec::<String>::new());
    assert!(!t.path().join("escape").exists() && !root.join("escape").exists());
}
