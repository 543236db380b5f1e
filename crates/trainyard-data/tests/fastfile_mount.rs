//! FastFile through a real FUSE mount, backed by the embedded directory store.
//!
//! These tests mount for real and read through the kernel, so they need `/dev/fuse` and the
//! `fusermount3` binary (Debian package `fuse3`). They are ignored without the `fuse-mount`
//! feature; with it, a test fails when either is missing. The store is wrapped so that
//! `local_file` is hidden: every byte has to come through ranged GETs, as it would from S3.
//!
//! Modules, in order: listing and whole-file reads; random preads (property test); many small
//! files with concurrent readers; a file larger than the cache budget; read-only refusals;
//! unmount and stale-mount cleanup; storage failures.
#![cfg(feature = "fuse")]

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use trainyard_data::fastfile::{
    FastFileConfig, MountEntry, MountHandle, MountState, clean_stale_mount, mount, mount_prefix,
    mount_state,
};
use trainyard_data::{ChannelObject, list_prefix, shard};
use trainyard_s3::{DirStore, ObjectClient, PutBody};

const BUCKET: &str = "data";

/// Fails the test, saying what is missing, unless real mounts can run here.
fn require_fuse(test: &str) {
    let dev = Path::new("/dev/fuse").exists();
    let helper = Command::new("fusermount3")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        dev && helper,
        "{test}: needs /dev/fuse ({}) and fusermount3 ({}; Debian package fuse3), or build \
         without the fuse-mount feature",
        if dev { "present" } else { "missing" },
        if helper { "present" } else { "missing" },
    );
}

/// Deterministic content of the object called `key`.
fn content(key: &str, len: usize) -> Vec<u8> {
    let mut h = DefaultHasher::new();
    h.write(key.as_bytes());
    let mut x = h.finish() | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A store with objects, a mount directory, and a runtime for async calls.
struct Env {
    _dir: tempfile::TempDir,
    store: DirStore,
    client: Arc<dyn ObjectClient>,
    mnt: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::embedded(dir.path().join("store"));
        let mnt = dir.path().join("mnt");
        Env {
            client: Arc::new(store.remote_view()),
            store,
            mnt,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    /// Writes an object straight into the store's directory (fast for many objects).
    fn put(&self, key: &str, data: &[u8]) {
        let path = self.store.object_path(BUCKET, key).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// Lists `prefix` as the runner does and mounts host `host` of `hosts`.
    fn mount(
        &self,
        prefix: &str,
        config: &FastFileConfig,
        host: usize,
        hosts: usize,
    ) -> MountHandle {
        let uri = format!("s3://{BUCKET}/{prefix}");
        let objects: Vec<ChannelObject> = self
            .rt
            .block_on(list_prefix(&*self.client, BUCKET, prefix, &uri))
            .unwrap();
        let entries = shard(objects, host, hosts)
            .into_iter()
            .map(MountEntry::from)
            .collect();
        mount(config, self.client.clone(), entries, &self.mnt).unwrap()
    }
}

fn mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o555
            );
            walk(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            out.insert(rel, path);
        }
    }
}

fn hash_reader(mut r: impl Read, buf_size: usize) -> (u64, u64) {
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; buf_size];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return (h.finish(), total);
        }
        h.write(&buf[..n]);
        total += n as u64;
    }
}

// --- listing and whole-file reads -------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn listing_and_whole_files_match_the_store() {
    require_fuse("listing_and_whole_files_match_the_store");
    let env = Env::new();
    let sizes = [0usize, 1, 4095, 4096, 131_073, (1 << 20) + 3, 5 << 20];
    let mut want = BTreeMap::new();
    for (i, size) in sizes.iter().enumerate() {
        for rel in [
            format!("f{i}.bin"),
            format!("dir a/sub{}/g{i}", i % 3),
            format!("deep/x/y/z/h{i}.csv"),
        ] {
            let key = format!("train/{rel}");
            let data = content(&key, *size);
            env.put(&key, &data);
            want.insert(rel, data);
        }
    }
    env.put("train-other/not-mine", b"x");
    env.rt
        .block_on(env.store.put(
            BUCKET,
            "train/folder-marker/",
            PutBody::Bytes(Vec::new().into()),
        ))
        .unwrap();
    let h = env.mount("train/", &FastFileConfig::default(), 0, 1);

    let mut got = BTreeMap::new();
    walk(&env.mnt, &env.mnt, &mut got);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "directory tree equals the keys under the prefix"
    );
    let me = fs::metadata("/proc/self").unwrap();
    for (rel, data) in &want {
        let path = &got[rel];
        let meta = fs::metadata(path).unwrap();
        assert_eq!(meta.len(), data.len() as u64, "{rel}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "{rel}");
        assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
        assert!(fs::read(path).unwrap() == *data, "{rel} bytes differ");
    }
    let root: Vec<String> = fs::read_dir(&env.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(root[0], "deep");
    assert!(fs::metadata(env.mnt.join("missing")).unwrap_err().kind() == io::ErrorKind::NotFound);

    let st = nix::sys::statvfs::statvfs(&env.mnt).unwrap();
    assert!(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    assert_eq!(
        st.files(),
        (want.len() + 1 + 1 + 3 + 1 + 3) as u64,
        "inodes: files and dirs"
    );
    assert!(h.fs().cache_peak() <= 256 << 20);
    h.unmount().unwrap();
    assert!(!mounted(&env.mnt));
}

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn shards_expose_only_the_hosts_objects() {
    require_fuse("shards_expose_only_the_hosts_objects");
    let env = Env::new();
    for i in 0..7 {
        env.put(&format!("p/{i}"), &[i as u8]);
    }
    let h = env.mount("p/", &FastFileConfig::default(), 1, 3);
    let mut names: Vec<String> = fs::read_dir(&env.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["1", "4"]);
    assert_eq!(fs::read(env.mnt.join("4")).unwrap(), [4]);
    drop(h);
    assert!(!mounted(&env.mnt), "dropping the handle unmounts");
}

// --- random preads ----------------------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn random_preads_match_the_source() {
    require_fuse("random_preads_match_the_source");
    let env = Env::new();
    let size = 24 << 20;
    let data = Arc::new(content("r/big", size));
    env.put("r/big", &data);
    env.put("r/small", &data[..10_000]);
    let h = env.mount("r/", &FastFileConfig::default(), 0, 1);
    let big = File::open(env.mnt.join("big")).unwrap();
    let small = File::open(env.mnt.join("small")).unwrap();
    let mut runner = TestRunner::new(PropConfig {
        cases: 300,
        failure_persistence: None,
        ..PropConfig::default()
    });
    runner
        .run(
            &(0u64..(size as u64 + 5000), 0usize..300_000, any::<bool>()),
            |(offset, len, use_small)| {
                let (file, limit) = if use_small {
                    (&small, 10_000usize)
                } else {
                    (&big, size)
                };
                let offset = if use_small { offset % 12_000 } else { offset };
                let mut buf = vec![0u8; len];
                let mut filled = 0;
                loop {
                    let n = file
                        .read_at(&mut buf[filled..], offset + filled as u64)
                        .unwrap();
                    if n == 0 || filled + n == len {
                        filled += n;
                        break;
                    }
                    filled += n;
                }
                let start = (offset as usize).min(limit);
                let end = (offset as usize + len).min(limit);
                prop_assert_eq!(filled, end - start);
                prop_assert!(
                    buf[..filled] == data[start..end],
                    "bytes at {} len {}",
                    offset,
                    len
                );
                Ok(())
            },
        )
        .unwrap();
    drop((big, small));
    h.unmount().unwrap();
}

// --- many small files, concurrent readers ------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn ten_thousand_small_files_with_concurrent_readers() {
    require_fuse("ten_thousand_small_files_with_concurrent_readers");
    let env = Env::new();
    let n = 10_000;
    let keys: Vec<String> = (0..n)
        .map(|i| format!("s/d{:02}/file-{i:05}", i % 50))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        env.put(k, &content(k, 100 + (i * 37) % 4000));
    }
    let started = Instant::now();
    let h = env.mount("s/", &FastFileConfig::default(), 0, 1);
    let mount_time = started.elapsed();
    let mnt = Arc::new(env.mnt.clone());
    let keys = Arc::new(keys);
    let readers = 8;
    let started = Instant::now();
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let (mnt, keys) = (mnt.clone(), keys.clone());
            std::thread::spawn(move || {
                for (i, key) in keys.iter().enumerate().skip(r).step_by(readers) {
                    let got = fs::read(mnt.join(&key[2..])).unwrap();
                    assert!(got == content(key, 100 + (i * 37) % 4000), "{key}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "10,000 small files: mounted in {mount_time:?}, read by {readers} threads in {:?}",
        started.elapsed()
    );
    assert_eq!(fs::read_dir(env.mnt.join("d07")).unwrap().count(), 200);
    assert_eq!(h.fs().open_handles(), 0, "every handle released");
    h.unmount().unwrap();
}

// --- larger than the cache budget ---------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn a_file_larger_than_the_budget_reads_back_by_hash() {
    require_fuse("a_file_larger_than_the_budget_reads_back_by_hash");
    let env = Env::new();
    let size = 96 << 20;
    let data = content("big/file", size);
    env.put("big/file", &data);
    let want = {
        let mut h = DefaultHasher::new();
        for chunk in data.chunks(1 << 20) {
            h.write(chunk);
        }
        h.finish()
    };
    drop(data);
    let budget = 8 << 20;
    let config = FastFileConfig::default().with_cache_budget(budget);
    let h = env.mount("big/", &config, 0, 1);
    let (got, len) = hash_reader(File::open(env.mnt.join("file")).unwrap(), 1 << 20);
    assert_eq!(len, size as u64);
    assert_eq!(got, want, "hash of the bytes read through the mount");
    assert!(
        h.fs().cache_peak() <= budget,
        "peak {} > budget",
        h.fs().cache_peak()
    );
    assert!(h.fs().cache_peak() > 0, "readahead was used");
    h.unmount().unwrap();
}

// --- read-only ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn every_write_is_refused_with_erofs() {
    require_fuse("every_write_is_refused_with_erofs");
    let env = Env::new();
    env.put("w/a/file", b"hello");
    let h = env.mount("w/", &FastFileConfig::default(), 0, 1);
    let m = &env.mnt;
    let erofs = |r: io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(
        OpenOptions::new()
            .write(true)
            .open(m.join("a/file"))
            .map(drop),
        "open for write",
    );
    erofs(
        OpenOptions::new()
            .append(true)
            .open(m.join("a/file"))
            .map(drop),
        "open for append",
    );
    erofs(File::create(m.join("a/file")).map(drop), "truncate");
    erofs(File::create(m.join("new")).map(drop), "create");
    erofs(fs::create_dir(m.join("d")), "mkdir");
    erofs(fs::remove_file(m.join("a/file")), "unlink");
    erofs(fs::remove_dir(m.join("a")), "rmdir");
    erofs(fs::rename(m.join("a/file"), m.join("a/moved")), "rename");
    erofs(
        std::os::unix::fs::symlink("a/file", m.join("link")),
        "symlink",
    );
    erofs(fs::hard_link(m.join("a/file"), m.join("hard")), "link");
    erofs(
        fs::set_permissions(m.join("a/file"), fs::Permissions::from_mode(0o644)),
        "chmod",
    );
    erofs(
        nix::unistd::truncate(&m.join("a/file"), 0).map_err(io::Error::from),
        "truncate(2)",
    );
    assert_eq!(fs::read(m.join("a/file")).unwrap(), b"hello", "unchanged");
    h.unmount().unwrap();
}

// --- lifecycle ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn unmount_leaves_no_mount_even_when_busy() {
    require_fuse("unmount_leaves_no_mount_even_when_busy");
    let env = Env::new();
    env.put("u/f", &content("u/f", 100_000));
    let config = FastFileConfig::default().with_unmount_timeout(Duration::from_millis(300));

    let h = env.mount("u/", &config, 0, 1);
    assert!(mounted(&env.mnt));
    assert_eq!(mount_state(&env.mnt).unwrap(), MountState::Live);
    h.unmount().unwrap();
    assert!(!mounted(&env.mnt), "clean unmount");
    assert_eq!(mount_state(&env.mnt).unwrap(), MountState::NotMounted);

    // Busy: a file is still open when the handle goes away.
    let h = env.mount("u/", &config, 0, 1);
    let open = File::open(env.mnt.join("f")).unwrap();
    let mut first = [0u8; 10];
    open.read_at(&mut first, 0).unwrap();
    let started = Instant::now();
    h.unmount().unwrap();
    eprintln!("busy unmount returned after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!mounted(&env.mnt), "busy mount detached lazily");
    drop(open);

    // And the path can be mounted again straight away.
    let h = env.mount("u/", &config, 0, 1);
    assert_eq!(
        fs::read(env.mnt.join("f")).unwrap(),
        content("u/f", 100_000)
    );
    drop(h);
    assert!(!mounted(&env.mnt));
}

/// Not a test on its own: mounts at `$FASTFILE_STALE_HELPER` and waits to be killed, so that
/// `stale_mounts_are_detected_and_cleaned` can produce a real stale mount.
#[test]
#[ignore = "helper process for stale_mounts_are_detected_and_cleaned"]
fn stale_mount_helper() {
    let Some(mnt) = std::env::var_os("FASTFILE_STALE_HELPER") else {
        return;
    };
    let client: Arc<dyn ObjectClient> = Arc::new(DirStore::embedded("/nonexistent"));
    let _h = mount(
        &FastFileConfig::default(),
        client,
        Vec::new(),
        Path::new(&mnt),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn stale_mounts_are_detected_and_cleaned() {
    require_fuse("stale_mounts_are_detected_and_cleaned");
    let env = Env::new();
    env.put("st/f", b"fresh");
    fs::create_dir_all(&env.mnt).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stale_mount_helper", "--ignored", "--nocapture"])
        .env("FASTFILE_STALE_HELPER", &env.mnt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted(&env.mnt) {
        assert!(Instant::now() < deadline, "helper never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let e = fs::metadata(&env.mnt).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    assert_eq!(mount_state(&env.mnt).unwrap(), MountState::Stale);

    assert!(clean_stale_mount(&env.mnt).unwrap());
    assert!(!mounted(&env.mnt));
    assert_eq!(mount_state(&env.mnt).unwrap(), MountState::NotMounted);
    assert!(!clean_stale_mount(&env.mnt).unwrap());

    // mount() cleans up by itself, too: leave another stale mount and mount over it.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stale_mount_helper", "--ignored", "--nocapture"])
        .env("FASTFILE_STALE_HELPER", &env.mnt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !mounted(&env.mnt) {
        assert!(Instant::now() < deadline, "helper never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let h = env.mount("st/", &FastFileConfig::default(), 0, 1);
    assert_eq!(fs::read(env.mnt.join("f")).unwrap(), b"fresh");
    h.unmount().unwrap();
    assert!(!mounted(&env.mnt));
}

// --- storage failures --------------------------------------------------------------------------

#[test]
#[cfg_attr(
    not(feature = "fuse-mount"),
    ignore = "needs --features fuse-mount (/dev/fuse, fusermount3)"
)]
fn a_deleted_object_reads_as_eio_and_the_rest_still_works() {
    require_fuse("a_deleted_object_reads_as_eio_and_the_rest_still_works");
    let env = Env::new();
    env.put("e/gone", &content("e/gone", 50_000));
    env.put("e/kept", &content("e/kept", 50_000));
    let h = env
        .rt
        .block_on(mount_prefix(
            &FastFileConfig::default(),
            env.client.clone(),
            BUCKET,
            "e/",
            &env.mnt,
        ))
        .unwrap();
    let mtime = fs::metadata(env.mnt.join("gone"))
        .unwrap()
        .modified()
        .unwrap();
    let stored = fs::metadata(env.store.object_path(BUCKET, "e/gone").unwrap())
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, stored, "mtime from the listing");
    fs::remove_file(env.store.object_path(BUCKET, "e/gone").unwrap()).unwrap();
    let e = fs::read(env.mnt.join("gone")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(
        fs::read(env.mnt.join("kept")).unwrap(),
        content("e/kept", 50_000)
    );
    h.unmount().unwrap();
}
