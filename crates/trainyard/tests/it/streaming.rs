//! Pipe and FastFile channels and manifests, through real jobs: real FIFOs read by a Python
//! process, a real FUSE mount, the embedded store.

use serde_json::{Value, json};

use crate::common::*;

/// Reads `<channel>_0 .. _<epochs-1>` (each fully, or only `partial` bytes of epoch 0), and
/// records what each epoch carried, hex-encoded, parsing RecordIO when asked.
const READER: &str = r#"
import json, os, socket, struct, sys, time
channel, epochs, partial, recordio = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
out = {}
for e in range(epochs):
    path = f"/opt/ml/input/data/{channel}_{e}"
    for _ in range(200):
        if os.path.exists(path): break
        time.sleep(0.05)
    with open(path, "rb") as f:
        if e == 0 and partial > 0:
            out[e] = f.read(partial).hex()
            continue
        data = f.read()
    if recordio:
        recs, i = [], 0
        while i < len(data):
            magic, lrec = struct.unpack_from("<II", data, i)
            assert magic == 0xCED7230A, hex(magic)
            cflag, n = lrec >> 29, lrec & ((1 << 29) - 1)
            assert cflag == 0
            recs.append(data[i + 8:i + 8 + n].hex())
            i += 8 + n + ((4 - n % 4) % 4)
        out[e] = recs
    else:
        out[e] = data.hex()
json.dump(out, open(f"/opt/ml/model/{socket.gethostname()}-{channel}.json", "w"))
"#;

fn pipe_job(
    h: &Home,
    name: &str,
    channel: Value,
    epochs: u32,
    partial: u32,
    recordio: bool,
) -> Value {
    h.data(".", &[("reader.py", READER.as_bytes())]);
    let ch_name = channel["ChannelName"].as_str().unwrap().to_string();
    let mut j = job(name, "", None);
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("Pipe");
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!([
        "python3",
        "reader.py",
        ch_name,
        epochs.to_string(),
        partial.to_string(),
        if recordio { "1" } else { "0" }
    ]);
    j["InputDataConfig"] = json!([channel]);
    j
}

fn result(h: &Home, job: &str, file: &str) -> Value {
    let files = untar(&h.object("out", &format!("jobs/{job}/output/model.tar.gz")));
    serde_json::from_str(&file_text(&files, file)).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn s3_channel(name: &str, uri: &str) -> Value {
    json!({"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}})
}

#[test]
fn pipe_mode_streams_every_epoch_in_key_order() {
    let h = Home::new();
    for (k, v) in [("p/b", "BB"), ("p/a", "A"), ("p/c/d", "CCC")] {
        h.put("data", k, v.as_bytes());
    }
    let out = h.train(&pipe_job(
        &h,
        "pipe-epochs",
        s3_channel("train", "s3://data/p/"),
        2,
        0,
        false,
    ));
    assert!(out.status.success(), "{}", text(&out));
    let r = result(&h, "pipe-epochs", "algo-1-train.json");
    assert_eq!(r["0"], hex(b"ABBCCC"));
    assert_eq!(r["1"], hex(b"ABBCCC"));
    let idc =
        std::fs::read_to_string(h.home.path().join("jobs/pipe-epochs/logs/platform.log")).unwrap();
    assert!(!idc.contains("failed"), "{idc}");
}

#[test]
fn an_early_closing_reader_gets_the_next_epoch_whole() {
    let h = Home::new();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    h.put("data", "e/x", &big);
    let out = h.train(&pipe_job(
        &h,
        "pipe-early",
        s3_channel("train", "s3://data/e/"),
        2,
        10,
        false,
    ));
    assert!(out.status.success(), "{}", text(&out));
    let r = result(&h, "pipe-early", "algo-1-train.json");
    assert_eq!(r["0"], hex(&big[..10]));
    assert_eq!(
        r["1"].as_str().unwrap().len(),
        big.len() * 2,
        "epoch 1 is complete"
    );
}

#[test]
fn gzip_recordio_shuffle_and_sharding_over_two_hosts() {
    use std::io::Write;
    let h = Home::new();
    let mut plain = Vec::new();
    for i in 0..6u8 {
        let body = vec![b'a' + i; 5 + i as usize];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        h.put("data", &format!("g/{i}.gz"), &gz.finish().unwrap());
        plain.push(hex(&body));
    }
    let mut ch = s3_channel("train", "s3://data/g/");
    ch["CompressionType"] = json!("Gzip");
    ch["RecordWrapperType"] = json!("RecordIO");
    ch["ShuffleConfig"] = json!({"Seed": 7});
    ch["DataSource"]["S3DataSource"]["S3DataDistributionType"] = json!("ShardedByS3Key");
    let mut j = pipe_job(&h, "pipe-gz", ch, 2, 0, true);
    j["ResourceConfig"]["InstanceCount"] = json!(2);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let (a, b) = (
        result(&h, "pipe-gz", "algo-1-train.json"),
        result(&h, "pipe-gz", "algo-2-train.json"),
    );
    for epoch in ["0", "1"] {
        let mut all: Vec<String> = a[epoch]
            .as_array()
            .unwrap()
            .iter()
            .chain(b[epoch].as_array().unwrap())
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            all.len(),
            6,
            "each record exactly once across hosts in epoch {epoch}"
        );
        all.sort();
        let mut want = plain.clone();
        want.sort();
        assert_eq!(all, want, "gunzipped payloads, RecordIO-framed");
    }
    assert_ne!(a["0"], a["1"], "the shuffle differs between epochs");
}

#[test]
fn augmented_manifest_yields_one_record_per_attribute() {
    let h = Home::new();
    h.put("data", "img/1.jpg", b"JPEG-ONE");
    h.put("data", "img/2.jpg", b"JPEG-TWO!");
    let manifest = "{\"source-ref\": \"s3://data/img/1.jpg\", \"label\": 1, \"other\": \"x\"}\n\n{\"source-ref\": \"s3://data/img/2.jpg\", \"label\": \"cat\"}\n";
    h.put("data", "manifests/train.manifest", manifest.as_bytes());
    let ch = json!({"ChannelName": "train", "RecordWrapperType": "RecordIO", "DataSource": {"S3DataSource": {
        "S3DataType": "AugmentedManifestFile", "S3Uri": "s3://data/manifests/train.manifest", "AttributeNames": ["source-ref", "label"]}}});
    let out = h.train(&pipe_job(&h, "augmented", ch, 1, 0, true));
    assert!(out.status.success(), "{}", text(&out));
    let r = result(&h, "augmented", "algo-1-train.json");
    assert_eq!(
        r["0"],
        json!([hex(b"JPEG-ONE"), hex(b"1"), hex(b"JPEG-TWO!"), hex(b"cat")])
    );
}

#[test]
fn a_malformed_augmented_manifest_fails_with_its_line() {
    let h = Home::new();
    h.put("data", "m/bad.manifest", b"{\"label\": 1}\nnot json\n");
    let ch = json!({"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "AugmentedManifestFile", "S3Uri": "s3://data/m/bad.manifest", "AttributeNames": ["label"]}}});
    let out = h.train(&pipe_job(&h, "bad-manifest", ch, 1, 0, false));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let reason = h.describe("bad-manifest")["FailureReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("ClientError: channel train:") && reason.contains("line 2"),
        "{reason}"
    );
}

#[test]
fn manifest_file_in_file_mode_places_entries_at_their_paths() {
    let h = Home::new();
    h.put("data", "raw/a.csv", b"1");
    h.put("data", "raw/sub/b.csv", b"22");
    h.put(
        "data",
        "lists/m.json",
        br#"[{"prefix": "s3://data/raw/"}, "sub/b.csv", "a.csv"]"#,
    );
    let mut j = job(
        "manifest-file",
        "cd /opt/ml/input/data/train && find . -type f | LC_ALL=C sort > /opt/ml/model/files",
        None,
    );
    j["InputDataConfig"] = json!([{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://data/lists/m.json"}}}]);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/manifest-file/output/model.tar.gz"));
    assert_eq!(
        String::from_utf8(files[0].1.clone()).unwrap(),
        "./a.csv\n./sub/b.csv\n"
    );
}

fn mounts_under(path: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy().into_owned();
    info.lines()
        .filter(|l| l.contains(&p))
        .map(str::to_string)
        .collect()
}

#[test]
fn fastfile_channels_are_read_only_mounts_removed_when_the_job_ends() {
    let h = Home::new();
    for (k, v) in [("ff/train/a.txt", "alpha"), ("ff/train/sub/b.txt", "beta")] {
        h.put("data", k, v.as_bytes());
    }
    let script = "cd /opt/ml/input/data/train && find . -type f | LC_ALL=C sort > /opt/ml/model/files && cat sub/b.txt > /opt/ml/model/b && \
                  (touch new 2>&1 || true) > /opt/ml/model/write && grep -c fuse /proc/self/mountinfo > /opt/ml/model/fuse-mounts";
    let mut j = job("fastfile", script, None);
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("FastFile");
    j["InputDataConfig"] = json!([s3_channel("train", "s3://data/ff/train/")]);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/fastfile/output/model.tar.gz"));
    let get = |n: &str| file_text(&files, n);
    assert_eq!(get("files"), "./a.txt\n./sub/b.txt\n");
    assert_eq!(get("b"), "beta");
    assert!(
        get("write").contains("Read-only file system"),
        "{}",
        get("write")
    );
    assert!(get("fuse-mounts").trim().parse::<u32>().unwrap() >= 1);
    assert!(
        mounts_under(&h.home.path().join("jobs/fastfile")).is_empty(),
        "stale mount left behind"
    );

    // A failing job unmounts too.
    let mut j = job(
        "fastfile-fails",
        "ls /opt/ml/input/data/train >/dev/null; exit 3",
        None,
    );
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("FastFile");
    j["InputDataConfig"] = json!([s3_channel("train", "s3://data/ff/train/")]);
    assert_eq!(h.train(&j).status.code(), Some(1));
    assert!(
        mounts_under(&h.home.path().join("jobs/fastfile-fails")).is_empty(),
        "stale mount after a failure"
    );

    // The folder rule: a prefix that is not at a '/' boundary is refused when it is ambiguous.
    h.put("data", "ff/train-extra/c.txt", b"c");
    let mut j = job("fastfile-partial", "true", None);
    j["AlgorithmSpecification"]["TrainingInputMode"] = json!("FastFile");
    j["InputDataConfig"] = json!([s3_channel("train", "s3://data/ff/train")]);
    assert_eq!(h.train(&j).status.code(), Some(1));
    assert!(
        h.describe("fastfile-partial")["FailureReason"]
            .as_str()
            .unwrap()
            .contains("ClientError")
    );
}

#[test]
fn trainyard_mount_serves_a_prefix_until_sigterm() {
    use std::io::BufRead;
    let h = Home::new();
    h.put("data", "explore/x/y.txt", b"hello mount");
    let dir = h.work.path().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = h
        .cmd(&["mount", "s3://data/explore/", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains("mounted at") && first.contains("1 objects"),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("x/y.txt")).unwrap(),
        "hello mount"
    );
    assert!(std::fs::write(dir.join("new"), b"x").is_err());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(mounts_under(&dir).is_empty(), "unmounted on SIGTERM");
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
}
