//! FastFile measurements: tree build time, sequential throughput, random-read latency and
//! peak memory, through a real mount over the embedded store.
//!
//! They are `#[ignore]`d because they take time and disk (a 512 MiB object) and their numbers
//! only mean something in a release build with nothing else running:
//!
//! ```text
//! cargo test -p trainyard-data --release --test fastfile_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! `FASTFILE_BENCH_MIB` changes the size of the large object (default 512) and
//! `FASTFILE_BENCH_BUDGET_MIB` the cache budget of the memory test (default 64). Each test prints
//! one `fastfile-bench:` line.
#![cfg(feature = "fuse")]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trainyard_data::ChannelObject;
use trainyard_data::fastfile::{FastFileConfig, FastFs, MountEntry, MountHandle, mount};
use trainyard_s3::{DirStore, ObjectClient};

const BUCKET: &str = "bench";

fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("--version")
            .output()
            .is_ok();
    if !ok {
        eprintln!("skipping: needs /dev/fuse and fusermount3 (Debian package fuse3)");
    }
    ok
}

fn big_size() -> u64 {
    std::env::var("FASTFILE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512u64)
        << 20
}

struct Bench {
    _dir: tempfile::TempDir,
    client: Arc<dyn ObjectClient>,
    mnt: PathBuf,
    size: u64,
}

/// A store holding one large object `big`, written 1 MiB at a time.
fn with_big_object() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::embedded(dir.path().join("store"));
    let path = store.object_path(BUCKET, "big").unwrap();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let size = big_size();
    let mut f = File::create(&path).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    Bench {
        client: Arc::new(store.remote_view()),
        mnt: dir.path().join("mnt"),
        _dir: dir,
        size,
    }
}

fn entry(key: &str, rel: &str, size: u64) -> MountEntry {
    MountEntry::from(ChannelObject {
        bucket: BUCKET.into(),
        key: key.into(),
        size,
        etag: None,
        rel_path: rel.into(),
    })
}

fn mount_big(b: &Bench, config: &FastFileConfig) -> MountHandle {
    mount(
        config,
        b.client.clone(),
        vec![entry("big", "big", b.size)],
        &b.mnt,
    )
    .unwrap()
}

fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn tree_build_for_100k_objects() {
    let entries: Vec<MountEntry> = (0..100_000)
        .map(|i| {
            let rel = format!("shard-{:03}/part-{i:06}.tfrecord", i % 1000);
            entry(&format!("train/{rel}"), &rel, 1 << 20)
        })
        .collect();
    let client: Arc<dyn ObjectClient> = Arc::new(DirStore::embedded("/nonexistent"));
    let started = Instant::now();
    let fs = FastFs::new(&FastFileConfig::default(), client.clone(), entries.clone()).unwrap();
    let build = started.elapsed();
    assert_eq!(fs.file_count(), 100_000);
    let mut mount_time = Duration::ZERO;
    if fuse_available() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let h = mount(
            &FastFileConfig::default(),
            client,
            entries,
            &dir.path().join("m"),
        )
        .unwrap();
        mount_time = started.elapsed();
        assert_eq!(
            fs::read_dir(dir.path().join("m/shard-007"))
                .unwrap()
                .count(),
            100
        );
        h.unmount().unwrap();
    }
    eprintln!(
        "fastfile-bench: tree build for 100,000 objects {:.1} ms; mount() including the tree {:.1} ms",
        build.as_secs_f64() * 1e3,
        mount_time.as_secs_f64() * 1e3
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn sequential_read_throughput() {
    if !fuse_available() {
        return;
    }
    let b = with_big_object();
    let h = mount_big(&b, &FastFileConfig::default());
    let started = Instant::now();
    let mut f = File::open(b.mnt.join("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(total, b.size);
    let rust = b.size as f64 / secs / 1e6;
    drop(f);
    h.unmount().unwrap();

    // dd on a fresh mount (cold page cache).
    let h = mount_big(&b, &FastFileConfig::default());
    let started = Instant::now();
    let out = Command::new("dd")
        .arg(format!("if={}", b.mnt.join("big").display()))
        .args(["of=/dev/null", "bs=1M"])
        .output()
        .unwrap();
    let dd_secs = started.elapsed().as_secs_f64();
    assert!(out.status.success());
    h.unmount().unwrap();
    eprintln!(
        "fastfile-bench: sequential read of {} MiB: Rust read(1 MiB) {rust:.0} MB/s, dd bs=1M {:.0} MB/s",
        b.size >> 20,
        b.size as f64 / dd_secs / 1e6
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn random_4k_pread_latency() {
    if !fuse_available() {
        return;
    }
    let b = with_big_object();
    let h = mount_big(&b, &FastFileConfig::default());
    let f = File::open(b.mnt.join("big")).unwrap();
    let pages = b.size / 4096;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut lat = Vec::with_capacity(2000);
    let mut buf = [0u8; 4096];
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % pages) * 4096;
        let started = Instant::now();
        assert_eq!(f.read_at(&mut buf, off).unwrap(), 4096);
        lat.push(started.elapsed());
    }
    drop(f);
    h.unmount().unwrap();
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    eprintln!(
        "fastfile-bench: random 4 KiB pread over {} MiB: mean {:?}, p50 {:?}, p99 {:?}, max {:?}",
        b.size >> 20,
        mean,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn peak_rss_reading_past_the_budget() {
    if !fuse_available() {
        return;
    }
    let b = with_big_object();
    let budget = std::env::var("FASTFILE_BENCH_BUDGET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64u64)
        << 20;
    let h = mount_big(&b, &FastFileConfig::default().with_cache_budget(budget));
    let before = status_kib("VmHWM:");
    let mut f = File::open(b.mnt.join("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert_eq!(total, b.size);
    let after = status_kib("VmHWM:");
    let peak = h.fs().cache_peak();
    drop(f);
    h.unmount().unwrap();
    assert!(peak <= budget);
    eprintln!(
        "fastfile-bench: reading {} MiB with a {} MiB budget: peak RSS {} MiB (before reading {} MiB), cache peak {} MiB",
        b.size >> 20,
        budget >> 20,
        after >> 10,
        before >> 10,
        peak >> 20
    );
}
