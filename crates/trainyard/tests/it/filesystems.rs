use serde_json::json;

use crate::common::*;

fn fs_channel(name: &str, id: &str, ty: &str, dir: &str, mode: &str) -> serde_json::Value {
    json!({"ChannelName": name, "DataSource": {"FileSystemDataSource": {
        "FileSystemId": id, "FileSystemType": ty, "DirectoryPath": dir, "FileSystemAccessMode": mode}}})
}

fn configure(h: &Home) -> std::path::PathBuf {
    let root = h.data(
        "efs",
        &[
            ("datasets/train/a.txt", b"from efs"),
            ("other/secret", b"no"),
        ],
    );
    h.data("fsx", &[("scratch/.keep", b"")]);
    std::fs::write(
        h.home.path().join("filesystems.json"),
        json!({"fs-0123abcd": root, "fs-89abcdef": {"path": h.work.path().join("fsx"), "mount_name": "mnt1"}}).to_string(),
    )
    .unwrap();
    root
}

#[test]
fn file_system_channels_are_bound_read_only_or_read_write() {
    let h = Home::new();
    let root = configure(&h);
    let script = "cat /opt/ml/input/data/ro/a.txt > /opt/ml/model/read.txt; \
                  (touch /opt/ml/input/data/ro/new 2>&1 || true) > /opt/ml/model/ro-write.txt; \
                  echo written > /opt/ml/input/data/rw/out.txt; \
                  cat /opt/ml/input/config/inputdataconfig.json > /opt/ml/model/idc.json";
    let mut j = job("fs-modes", script, None);
    j["InputDataConfig"] = json!([
        fs_channel("ro", "fs-0123abcd", "EFS", "/datasets/train", "ro"),
        fs_channel("rw", "fs-89abcdef", "FSxLustre", "/mnt1/scratch", "rw"),
    ]);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let model = untar(&h.object("out", "jobs/fs-modes/output/model.tar.gz"));
    let get = |n: &str| file_text(&model, n);
    assert_eq!(get("read.txt"), "from efs");
    assert!(
        get("ro-write.txt").contains("Read-only file system"),
        "{}",
        get("ro-write.txt")
    );
    assert!(!root.join("datasets/train/new").exists());
    assert_eq!(
        std::fs::read_to_string(h.work.path().join("fsx/scratch/out.txt")).unwrap(),
        "written\n"
    );
    let idc: serde_json::Value = serde_json::from_str(&get("idc.json")).unwrap();
    assert_eq!(idc["ro"]["S3DistributionType"], "FullyReplicated");
    assert_eq!(idc["rw"]["TrainingInputMode"], "File");
    // The job never copied the file system: its data stays where it was.
    assert!(root.join("other/secret").exists());
}

#[test]
fn bad_file_system_sources_are_refused_at_submission() {
    let h = Home::new();
    configure(&h);
    for (name, ch, needle) in [
        (
            "fs-unknown",
            fs_channel("c", "fs-11111111", "EFS", "/", "ro"),
            "FileSystemId fs-11111111 is not configured",
        ),
        (
            "fs-escape",
            fs_channel("c", "fs-0123abcd", "EFS", "/datasets/../../fsx", "ro"),
            "leads outside the file system",
        ),
        (
            "fs-mountname",
            fs_channel("c", "fs-89abcdef", "FSxLustre", "/scratch", "rw"),
            "must begin with the mount name",
        ),
        (
            "fs-missing",
            fs_channel("c", "fs-0123abcd", "EFS", "/nope", "ro"),
            "No such file",
        ),
    ] {
        let mut j = job(name, "true", None);
        j["InputDataConfig"] = json!([ch]);
        let out = h.train(&j);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{name}: {}",
            text(&out)
        );
    }
}
