//! Pipe mode end to end: real FIFOs, real reader processes (`python3`, `cat`, `cmp`), the
//! embedded directory store behind a test client that can fail on demand and counts the bytes
//! the producer holds.
//!
//! Sections: helpers (store, reader script, producer harness); delivery (epochs, RecordIO,
//! gzip, augmented manifests); order (shuffle, sharding); readers that leave early; failures;
//! large objects with bounded memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use trainyard_data::manifest::{AugmentedLine, parse_augmented_manifest};
use trainyard_data::recordio::{self, MAGIC_BYTES};
use trainyard_data::{
    ChannelObject, DataError, HostShard, PipeChannel, PipeOptions, PipeProducer, PipeSource,
    PipeSummary, list_prefix,
};
use trainyard_s3::mock::{Fault, FaultyClient, Op};
use trainyard_s3::{DirStore, ObjectClient, PutBody};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The embedded store seen without its local-file shortcut, through the shared test wrapper
/// that injects faults, counts GETs and the bytes the producer holds.
fn test_store(dir: &Path) -> FaultyClient {
    FaultyClient::new(Arc::new(DirStore::embedded(dir.join("store"))))
}

/// Stores `data` at `key` in the test bucket.
async fn put(store: &FaultyClient, key: &str, data: impl Into<Bytes>) {
    store
        .put("bkt", key, PutBody::Bytes(data.into()))
        .await
        .unwrap();
}

/// The reader: reads `<base>_<e>` for each epoch (waiting for it to appear, as the TF
/// PipeModeDataset does), writes raw epochs to `<out>/<e>.bin`, parses RecordIO epochs with its
/// own parser (dmlc semantics: the magic is re-inserted between parts), and prints JSON.
const READER: &str = r#"
import json, os, struct, sys, time
base, epochs, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
early = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
MAGIC = 0xCED7230A

def parse(data):
    recs, i, cur = [], 0, None
    while i < len(data):
        magic, lrec = struct.unpack_from("<II", data, i)
        if magic != MAGIC:
            raise SystemExit("bad magic at %d" % i)
        i += 8
        cflag, n = lrec >> 29, lrec & ((1 << 29) - 1)
        part = data[i:i + n]
        if len(part) != n:
            raise SystemExit("truncated record")
        i += n + (4 - n % 4) % 4
        if cflag == 0:
            recs.append(part)
        elif cflag == 1:
            cur = part + struct.pack("<I", MAGIC)
        elif cflag == 2:
            cur += part + struct.pack("<I", MAGIC)
        else:
            recs.append(cur + part)
            cur = None
    if cur is not None or i != len(data):
        raise SystemExit("stream ends inside a record")
    return [r.hex() for r in recs]

result = []
for e in range(epochs):
    path = "%s_%d" % (base, e)
    deadline = time.time() + 60
    while not os.path.exists(path):
        if time.time() > deadline:
            raise SystemExit("no " + path)
        time.sleep(0.005)
    with open(path, "rb", buffering=0) as f:
        if str(e) in early:
            data = f.read(early[str(e)])
            result.append({"early": len(data)})
            continue
        chunks = []
        while True:
            c = f.read(1 << 20)
            if not c:
                break
            chunks.append(c)
        data = b"".join(chunks)
    with open(os.path.join(out, "%d.bin" % e), "wb") as f:
        f.write(data)
    result.append({"len": len(data), "records": parse(data) if mode == "recordio" else None})
print(json.dumps(result))
"#;

/// One channel being served, with its reader.
struct Harness {
    dir: PathBuf,
    stop: watch::Sender<bool>,
    run: tokio::task::JoinHandle<Result<PipeSummary, DataError>>,
}

impl Harness {
    fn start(
        client: Arc<dyn ObjectClient>,
        channel: PipeChannel,
        dir: &Path,
        opts: PipeOptions,
    ) -> Self {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let producer = PipeProducer::prepare(client, channel, &data_dir, opts).unwrap();
        assert!(producer.fifo_path(0).exists(), "prepare creates _0");
        let (stop, rx) = watch::channel(false);
        Harness {
            dir: data_dir,
            stop,
            run: tokio::spawn(producer.run(rx)),
        }
    }

    fn base(&self, channel: &str) -> PathBuf {
        self.dir.join(channel)
    }

    /// Runs the Python reader over `epochs` epochs and returns its JSON and the epochs' bytes.
    async fn read(
        &self,
        channel: &str,
        epochs: usize,
        mode: &str,
        early: &str,
    ) -> (serde_json::Value, Vec<Vec<u8>>) {
        let out = self.dir.join(format!("out-{channel}"));
        std::fs::create_dir_all(&out).unwrap();
        let child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(READER)
            .arg(self.base(channel))
            .arg(epochs.to_string())
            .arg(mode)
            .arg(&out)
            .arg(early)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("reader timed out")
            .unwrap();
        assert!(
            output.status.success(),
            "reader failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let bytes = (0..epochs)
            .map(|e| std::fs::read(out.join(format!("{e}.bin"))).unwrap_or_default())
            .collect();
        (json, bytes)
    }

    async fn stop(self) -> Result<PipeSummary, DataError> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.run)
            .await
            .expect("producer did not stop")
            .unwrap()
    }
}

fn channel(name: &str, source: PipeSource) -> PipeChannel {
    PipeChannel {
        name: name.into(),
        source,
        shard: None,
        shuffle_seed: None,
        gzip: false,
        recordio: false,
    }
}

async fn objects(store: &FaultyClient, prefix: &str) -> Vec<ChannelObject> {
    list_prefix(store, "bkt", prefix, &format!("s3://bkt/{prefix}"))
        .await
        .unwrap()
}

fn records_of(json: &serde_json::Value, epoch: usize) -> Vec<Vec<u8>> {
    json[epoch]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex_decode(h.as_str().unwrap()))
        .collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn small_opts() -> PipeOptions {
    PipeOptions {
        open_poll: Duration::from_millis(5),
        ..PipeOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_epochs_are_delivered_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("ds/a.csv", b"1,2\n3,4\n".to_vec()),
        ("ds/b/c.bin", noise(1, 300_000)),
        ("ds/empty", vec![]),
        ("ds/z", b"last".to_vec()),
    ];
    for (k, v) in &contents {
        put(&store, k, v.clone()).await;
    }
    let objs = objects(&store, "ds/").await;
    let want: Vec<u8> = contents.iter().flat_map(|(_, v)| v.clone()).collect();
    // Small parts so that one object spans several ranged GETs.
    let opts = PipeOptions {
        part_size: 64 << 10,
        ..small_opts()
    };
    let h = Harness::start(
        Arc::new(store),
        channel("train", PipeSource::Objects(objs)),
        d.path(),
        opts,
    );
    let (json, epochs) = h.read("train", 2, "raw", "{}").await;
    assert_eq!(json[0]["len"], want.len());
    assert!(epochs[0] == want, "epoch 0");
    assert!(epochs[1] == want, "epoch 1");
    // The producer moves on to epoch 2 and removes the finished FIFOs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.dir.join("train_2").exists() {
        assert!(Instant::now() < deadline, "train_2 was not created");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!h.dir.join("train_0").exists() && !h.dir.join("train_1").exists());
    let data_dir = h.dir.clone();
    let summary = h.stop().await.unwrap();
    assert_eq!(summary.epochs_completed, 2);
    assert_eq!(summary.records, 8);
    assert_eq!(summary.bytes, 2 * want.len() as u64);
    assert!(
        !data_dir.join("train_2").exists(),
        "stop removes the current FIFO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordio_records_parse_with_an_independent_reader() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    let mut with_magic = b"abcd".to_vec();
    with_magic.extend_from_slice(&MAGIC_BYTES);
    with_magic.extend_from_slice(b"tail!");
    let payloads: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        vec![],
        with_magic,
        [&MAGIC_BYTES[..], &MAGIC_BYTES].concat(),
        noise(2, 70_001),
    ];
    for (i, p) in payloads.iter().enumerate() {
        put(&store, &format!("rec/{i}"), p.clone()).await;
    }
    let objs = objects(&store, "rec/").await;
    let mut ch = channel("rio", PipeSource::Objects(objs));
    ch.recordio = true;
    let h = Harness::start(Arc::new(store), ch, d.path(), small_opts());
    let (json, epochs) = h.read("rio", 1, "recordio", "{}").await;
    assert!(records_of(&json, 0) == payloads, "records differ");
    let want: Vec<u8> = payloads.iter().flat_map(|p| recordio::encode(p)).collect();
    assert!(epochs[0] == want, "exact bytes");
    assert_eq!(&epochs[0][..16], b"\x0a\x23\xd7\xce\x05\0\0\0hello\0\0\0");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_objects_are_decompressed_including_multi_member_streams() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    let plain = [noise(3, 200_000), b"second member".to_vec(), b"x".to_vec()];
    put(&store, "gz/0.gz", gzip(&plain[0])).await;
    put(
        &store,
        "gz/1.gz",
        [gzip(b"second "), gzip(b"member")].concat(),
    )
    .await;
    put(&store, "gz/2.gz", gzip(b"x")).await;
    let objs = objects(&store, "gz/").await;
    let mut ch = channel("gz", PipeSource::Objects(objs.clone()));
    ch.gzip = true;
    let opts = PipeOptions {
        part_size: 16 << 10,
        ..small_opts()
    };
    let store = Arc::new(store);
    let h = Harness::start(store.clone(), ch.clone(), d.path(), opts.clone());
    let (_, epochs) = h.read("gz", 1, "raw", "{}").await;
    assert!(epochs[0] == plain.concat(), "gzip epoch differs");
    h.stop().await.unwrap();

    // The same with RecordIO: one record per decompressed object.
    ch.name = "gzrio".into();
    ch.recordio = true;
    let d2 = tempfile::tempdir().unwrap();
    let h = Harness::start(store, ch, d2.path(), opts);
    let (json, _) = h.read("gzrio", 1, "recordio", "{}").await;
    assert!(records_of(&json, 0) == plain, "gzip records differ");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn augmented_manifest_records_in_recordio() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    let images = [noise(4, 5000), noise(5, 7), noise(6, 40_000)];
    for (i, img) in images.iter().enumerate() {
        put(&store, &format!("img/{i}.jpg"), img.clone()).await;
    }
    let manifest = br#"{"source-ref": "s3://bkt/img/0.jpg", "label": 1, "other": "ignored"}
{"label": "cat", "source-ref": "s3://bkt/img/1.jpg"}

{"source-ref": "s3://bkt/img/2.jpg", "label": {"k": [1, 2]}}
"#;
    let names = ["source-ref".to_string(), "label".to_string()];
    let lines: Vec<AugmentedLine> =
        parse_augmented_manifest("s3://bkt/m.jsonl", manifest, &names).unwrap();
    let mut ch = channel("aug", PipeSource::Augmented(lines));
    ch.recordio = true;
    let h = Harness::start(Arc::new(store), ch, d.path(), small_opts());
    let (json, _) = h.read("aug", 1, "recordio", "{}").await;
    let want: Vec<Vec<u8>> = vec![
        images[0].clone(),
        b"1".to_vec(),
        images[1].clone(),
        b"cat".to_vec(),
        images[2].clone(),
        br#"{"k":[1,2]}"#.to_vec(),
    ];
    assert!(records_of(&json, 0) == want, "augmented records differ");
    let summary = h.stop().await.unwrap();
    assert_eq!(summary.records, 6);
}

// ---------------------------------------------------------------------------------------------
// Order: shuffle and shard

/// Twenty one-line objects `obj-00` … `obj-19`.
async fn numbered(store: &FaultyClient) -> Vec<ChannelObject> {
    for i in 0..20 {
        put(store, &format!("n/{i:02}"), format!("obj-{i:02}\n")).await;
    }
    objects(store, "n/").await
}

fn ids(epoch: &[u8]) -> Vec<usize> {
    String::from_utf8(epoch.to_vec())
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("obj-").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_is_deterministic_and_differs_per_epoch() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(test_store(d.path()));
    let objs = numbered(&store).await;
    let mut ch = channel("shuf", PipeSource::Objects(objs));
    ch.shuffle_seed = Some(1234);
    let mut seen = Vec::new();
    for run in 0..2 {
        let dir = d.path().join(format!("run{run}"));
        let h = Harness::start(store.clone(), ch.clone(), &dir, small_opts());
        let (_, epochs) = h.read("shuf", 3, "raw", "{}").await;
        h.stop().await.unwrap();
        seen.push(epochs.iter().map(|e| ids(e)).collect::<Vec<_>>());
    }
    assert_eq!(seen[0], seen[1], "same seed, same sequence of epochs");
    let epochs = &seen[0];
    for (e, order) in epochs.iter().enumerate() {
        assert_eq!(
            order,
            &trainyard_data::shuffle::permutation(20, 1234, e as u64)
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..20).collect::<Vec<_>>(),
            "each epoch has every object once"
        );
    }
    assert_ne!(epochs[0], epochs[1]);
    assert_ne!(epochs[1], epochs[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_partition_the_objects_every_epoch() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(test_store(d.path()));
    let objs = numbered(&store).await;
    for seed in [None, Some(99)] {
        let mut per_host = Vec::new();
        for host in 0..2 {
            let mut ch = channel("sh", PipeSource::Objects(objs.clone()));
            ch.shard = Some(HostShard {
                index: host,
                count: 2,
            });
            ch.shuffle_seed = seed;
            let dir = d.path().join(format!("{seed:?}-{host}"));
            let h = Harness::start(store.clone(), ch, &dir, small_opts());
            let (_, epochs) = h.read("sh", 2, "raw", "{}").await;
            h.stop().await.unwrap();
            per_host.push(epochs.iter().map(|e| ids(e)).collect::<Vec<_>>());
        }
        for (e, (a, b)) in per_host[0].iter().zip(&per_host[1]).enumerate() {
            assert_eq!((a.len(), b.len()), (10, 10));
            let mut all: Vec<usize> = a.iter().chain(b).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..20).collect::<Vec<_>>(), "seed {seed:?} epoch {e}");
        }
        match seed {
            None => {
                assert_eq!(per_host[0][0], (0..20).step_by(2).collect::<Vec<_>>());
                assert_eq!(per_host[0][0], per_host[0][1], "same shard every epoch");
            }
            Some(_) => {
                let mut e0 = per_host[0][0].clone();
                let mut e1 = per_host[0][1].clone();
                e0.sort_unstable();
                e1.sort_unstable();
                assert_ne!(e0, e1, "a host's share changes between shuffled epochs");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Readers that leave early

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_closing_reader_ends_the_epoch_and_the_next_is_whole() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    // More than the pipe buffer, so the writer is still writing when the reader leaves.
    let data = [noise(7, 3 << 20), noise(8, 2 << 20)];
    put(&store, "e/0", data[0].clone()).await;
    put(&store, "e/1", data[1].clone()).await;
    let objs = objects(&store, "e/").await;
    let h = Harness::start(
        Arc::new(store),
        channel("early", PipeSource::Objects(objs)),
        d.path(),
        small_opts(),
    );
    let (json, epochs) = h.read("early", 2, "raw", r#"{"0": 10}"#).await;
    assert_eq!(json[0]["early"], 10);
    assert!(epochs[1] == data.concat(), "epoch 1 is complete");
    let summary = h.stop().await.unwrap();
    assert_eq!(summary.epochs_closed_early, 1);
    assert_eq!(summary.epochs_completed, 1);
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_an_error_and_never_a_clean_eof() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path()).with(Fault::error(Op::Get, 500, "InternalError").key("f/b"));
    put(&store, "f/a", noise(9, 100_000)).await;
    put(&store, "f/b", b"never delivered".to_vec()).await;
    put(&store, "f/c", b"nor this".to_vec()).await;
    let objs = objects(&store, "f/").await;
    let opts = PipeOptions {
        body_retries: 2,
        ..small_opts()
    };
    let store = Arc::new(store);
    let data_dir = d.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let producer = PipeProducer::prepare(
        store.clone(),
        channel("fail", PipeSource::Objects(objs)),
        &data_dir,
        opts,
    )
    .unwrap();
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(producer.run(rx));
    let mut reader = tokio::process::Command::new("cat")
        .arg(data_dir.join("fail_0"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the producer reports the failure")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, DataError::Object { key, source } if key == "f/b" && source.is_retryable()),
        "{err}"
    );
    assert!(err.to_string().contains("f/b"), "{err}");
    assert!(store.calls(Op::Get) >= 3, "the GET was retried");
    // The reader has not been told the epoch is over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        reader.try_wait().unwrap().is_none(),
        "reader saw EOF after a failure"
    );
    assert!(data_dir.join("fail_0").exists());
    // Once the runner stops the job, the write end is released.
    stop.send(true).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), reader.wait_with_output())
        .await
        .expect("reader released after stop")
        .unwrap();
    assert!(
        out.stdout == noise(9, 100_000),
        "the reader got {} bytes, want only the object before the failure",
        out.stdout.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_gzip_object_fails_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    put(&store, "g/0", gzip(b"fine")).await;
    put(&store, "g/1", b"plain text, not gzip".to_vec()).await;
    let objs = objects(&store, "g/").await;
    let mut ch = channel("gzbad", PipeSource::Objects(objs));
    ch.gzip = true;
    let data_dir = d.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let producer = PipeProducer::prepare(Arc::new(store), ch, &data_dir, small_opts()).unwrap();
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(producer.run(rx));
    let reader = tokio::process::Command::new("cat")
        .arg(data_dir.join("gzbad_0"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, DataError::Gzip { key, .. } if key == "g/1"),
        "{err}"
    );
    stop.send(true).unwrap();
    let out = reader.wait_with_output().await.unwrap();
    assert_eq!(out.stdout, b"fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_is_resumed_where_it_stopped() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path())
        // The first body breaks after its first 1 MiB chunk; later GETs work.
        .with(Fault::reset(1 << 20).key("r/big").times(1));
    let data = noise(10, 3 << 20);
    put(&store, "r/big", data.clone()).await;
    let objs = objects(&store, "r/").await;
    let h = Harness::start(
        Arc::new(store),
        channel("resume", PipeSource::Objects(objs)),
        d.path(),
        small_opts(),
    );
    let (_, epochs) = h.read("resume", 1, "raw", "{}").await;
    assert!(epochs[0] == data, "resumed body differs");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ref_fails_before_any_reader_opens() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    put(&store, "img/0.jpg", b"jpeg".to_vec()).await;
    let manifest = br#"{"source-ref": "s3://bkt/img/0.jpg", "label": 0}
{"source-ref": "s3://bkt/img/missing.jpg", "label": 1}"#;
    let names = ["source-ref".to_string(), "label".to_string()];
    let lines = parse_augmented_manifest("s3://bkt/m", manifest, &names).unwrap();
    let data_dir = d.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let (_stop, rx) = watch::channel(false);
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        trainyard_data::serve_pipe(
            Arc::new(store),
            channel("aug", PipeSource::Augmented(lines)),
            &data_dir,
            small_opts(),
            rx,
        ),
    )
    .await
    .expect("the failure is reported without a reader")
    .unwrap_err();
    assert!(
        matches!(&err, DataError::Object { key, source } if key == "img/missing.jpg" && source.is_not_found()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_the_middle_of_an_epoch_returns_the_summary() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path());
    put(&store, "s/big", noise(12, 4 << 20)).await;
    let objs = objects(&store, "s/").await;
    let h = Harness::start(
        Arc::new(store),
        channel("slow", PipeSource::Objects(objs)),
        d.path(),
        small_opts(),
    );
    // A reader that takes a few bytes and then sits on the open FIFO.
    let mut reader = tokio::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, time; f = open(sys.argv[1], 'rb', buffering=0); f.read(10); print('read', flush=True); time.sleep(60)")
        .arg(h.dir.join("slow_0"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut out, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"read");
    let fifo = h.dir.join("slow_0");
    let started = Instant::now();
    let summary = h.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(summary.epochs_completed, 0);
    assert!(summary.bytes > 0 && summary.bytes < 4 << 20, "{summary:?}");
    assert!(!fifo.exists(), "stop removes the FIFO");
    reader.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Large objects, bounded memory

/// Puts a `len`-byte object generated 1 MiB at a time, with the magic planted at the given
/// aligned offsets, and returns its bytes for comparison.
async fn put_large(store: &FaultyClient, key: &str, len: usize, magics: &[usize]) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    for i in 0..len.div_ceil(1 << 20) {
        let n = (len - data.len()).min(1 << 20);
        data.extend_from_slice(&noise(100 + i as u64, n));
    }
    for &m in magics {
        data[m..m + 4].copy_from_slice(&MAGIC_BYTES);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &data).unwrap();
    store
        .put("bkt", key, PutBody::File(file.path().to_path_buf()))
        .await
        .unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_object_streams_with_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(test_store(d.path()));
    let len = 64 << 20;
    let data = put_large(&store, "big/x", len, &[]).await;
    let source = d.path().join("expected.bin");
    std::fs::write(&source, &data).unwrap();
    drop(data);
    let objs = objects(&store, "big/").await;
    let opts = PipeOptions {
        prefetch_bytes: 8 << 20,
        part_size: 2 << 20,
        ..small_opts()
    };
    let h = Harness::start(
        store.clone(),
        channel("big", PipeSource::Objects(objs)),
        d.path(),
        opts,
    );
    // Epoch 0: compared byte for byte by cmp(1).
    let cmp = tokio::process::Command::new("cmp")
        .arg(h.dir.join("big_0"))
        .arg(&source)
        .status()
        .await
        .unwrap();
    assert!(cmp.success(), "epoch 0 differs from the object");
    // Epoch 1: throughput into cat > /dev/null.
    let started = Instant::now();
    let cat = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while [ ! -p {0} ]; do sleep 0.001; done; cat {0} > /dev/null",
            h.dir.join("big_1").display()
        ))
        .status()
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(cat.success());
    eprintln!(
        "64 MiB through the FIFO into cat: {:.3} s, {:.0} MB/s",
        secs,
        len as f64 / 1e6 / secs
    );
    let summary = h.stop().await.unwrap();
    assert_eq!(summary.bytes, 2 * len as u64);
    let peak = store.peak_live_bytes();
    eprintln!("peak bytes held: {} MiB", peak >> 20);
    assert!(peak <= 9 << 20, "held {peak} bytes with an 8 MiB budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recordio_payload_is_framed_exactly_with_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(test_store(d.path()));
    let len = 24 << 20;
    // Magics before and after the in-memory cap, at a range boundary, at a 1 MiB chunk
    // boundary and as the last word.
    let magics = [
        8,
        1 << 20,
        (3 << 20) - 4,
        5 << 20,
        (9 << 20) + 12,
        (20 << 20) + 4,
        len - 4,
    ];
    let data = put_large(&store, "bigrio/x", len, &magics).await;
    let want = recordio::encode(&data);
    assert_eq!(recordio::parts(&data).len(), magics.len() + 1);
    drop(data);
    let objs = objects(&store, "bigrio/").await;
    let mut ch = channel("bigrio", PipeSource::Objects(objs));
    ch.recordio = true;
    let opts = PipeOptions {
        prefetch_bytes: 8 << 20,
        part_size: 2 << 20,
        recordio_buffer: 4 << 20,
        ..small_opts()
    };
    let h = Harness::start(store.clone(), ch, d.path(), opts);
    let (_, epochs) = h.read("bigrio", 1, "raw", "{}").await;
    assert!(epochs[0] == want, "framing differs from recordio::encode");
    h.stop().await.unwrap();
    let peak = store.peak_live_bytes();
    eprintln!("peak bytes held (RecordIO, scout): {} MiB", peak >> 20);
    assert!(peak <= 14 << 20, "held {peak} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_gzip_recordio_payload_uses_a_second_decompression() {
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(test_store(d.path()));
    let len = 6 << 20;
    let mut data = noise(11, len);
    for m in [400, (3 << 20) + 8, len - 4] {
        data[m..m + 4].copy_from_slice(&MAGIC_BYTES);
    }
    put(&store, "bgz/x.gz", gzip(&data)).await;
    let objs = objects(&store, "bgz/").await;
    let mut ch = channel("bgz", PipeSource::Objects(objs));
    ch.recordio = true;
    ch.gzip = true;
    let opts = PipeOptions {
        part_size: 1 << 20,
        recordio_buffer: 1 << 20,
        ..small_opts()
    };
    let h = Harness::start(store.clone(), ch, d.path(), opts);
    let (json, epochs) = h.read("bgz", 1, "recordio", "{}").await;
    assert!(epochs[0] == recordio::encode(&data), "framing differs");
    assert!(
        records_of(&json, 0) == vec![data],
        "python reassembly differs"
    );
    h.stop().await.unwrap();
}
