//! Reference-model tests: random operation sequences against [`FastFs`] and a plain map.
//!
//! Streams, windows, the seek-back tail and the budget fallbacks have many edge cases
//! (chunk boundaries, reads straddling requests, skips inside the window, an exhausted
//! budget). Rather than enumerating them, proptest generates a small tree with random
//! contents and a random sequence of lookups, readdirs, opens, sequential and random reads and
//! releases, runs it against the file system with deliberately tiny windows and budgets, and
//! compares every answer with a `BTreeMap` of paths to bytes (mountpoint-s3's `reftests` idea).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Arc;

use proptest::prelude::*;

use crate::ChannelObject;
use crate::fastfile::{FastFileConfig, FastFs, FileKind, MountEntry, ROOT_INO};
use trainyard_s3::mock::MemStore;

/// The model: file paths and their bytes; directories are implied.
#[derive(Debug, Clone)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn dirs(&self) -> BTreeSet<String> {
        let mut dirs = BTreeSet::from([String::new()]);
        for path in self.files.keys() {
            let mut p = path.as_str();
            while let Some((d, _)) = p.rsplit_once('/') {
                dirs.insert(d.to_string());
                p = d;
            }
        }
        dirs
    }

    /// Children of `dir` ("" is the root) with whether each is a directory.
    fn children(&self, dir: &str) -> BTreeMap<String, bool> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out = BTreeMap::new();
        for path in self.files.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((name, _)) => out.insert(name.to_string(), true),
                    None => out.insert(rest.to_string(), false),
                };
            }
        }
        out
    }

    /// What a path lookup must give: `Ok(Some(size))` for a file, `Ok(None)` for a
    /// directory, `Err(errno)` otherwise.
    fn resolve(&self, path: &str) -> Result<Option<u64>, i32> {
        if let Some(data) = self.files.get(path) {
            return Ok(Some(data.len() as u64));
        }
        if self.dirs().contains(path) {
            return Ok(None);
        }
        let mut p = String::new();
        for seg in path.split('/') {
            if self.files.contains_key(&p) {
                return Err(libc::ENOTDIR);
            }
            p = if p.is_empty() {
                seg.to_string()
            } else {
                format!("{p}/{seg}")
            };
        }
        Err(libc::ENOENT)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Lookup(Vec<u8>),
    Readdir(usize),
    Open(usize),
    ReadAt(usize, u64, u32),
    ReadNext(usize, u32),
    Release(usize),
}

const SEGMENTS: [&str; 5] = ["a", "b", "c.bin", "d", "e e"];

fn segment_path(segs: &[u8]) -> String {
    segs.iter()
        .map(|s| SEGMENTS[*s as usize % SEGMENTS.len()])
        .collect::<Vec<_>>()
        .join("/")
}

fn model_strategy() -> impl Strategy<Value = Model> {
    prop::collection::vec(
        (
            prop::collection::vec(0u8..5, 1..4),
            0usize..70_000,
            any::<u8>(),
        ),
        1..10,
    )
    .prop_map(|specs| {
        let mut files = BTreeMap::new();
        for (segs, len, seed) in specs {
            let data = (0..len)
                .map(|i| (i as u32).wrapping_mul(2_246_822_519).to_le_bytes()[2] ^ seed)
                .collect();
            files.insert(segment_path(&segs), data);
        }
        // A path that is also another file's directory would be a collision; keep the deeper.
        let dirs = Model {
            files: files.clone(),
        }
        .dirs();
        files.retain(|p, _| !dirs.contains(p));
        Model { files }
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => prop::collection::vec(0u8..5, 1..4).prop_map(Op::Lookup),
        1 => any::<usize>().prop_map(Op::Readdir),
        2 => any::<usize>().prop_map(Op::Open),
        3 => (any::<usize>(), 0u64..80_000, 1u32..40_000).prop_map(|(h, o, l)| Op::ReadAt(h, o, l)),
        6 => (any::<usize>(), prop_oneof![Just(4096u32), 1u32..20_000]).prop_map(|(h, l)| Op::ReadNext(h, l)),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// Walks `path` from the root.
fn resolve(fs: &FastFs, path: &str) -> Result<Option<u64>, i32> {
    let mut attr = fs.getattr(ROOT_INO).map_err(|e| e.errno())?;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        attr = fs
            .lookup(attr.ino, OsStr::new(seg))
            .map_err(|e| e.errno())?;
    }
    Ok((attr.kind == FileKind::File).then_some(attr.size))
}

/// The inode of `path` ("" is the root), failing the case if it does not resolve.
fn ino_of(fs: &FastFs, path: &str) -> Result<u64, TestCaseError> {
    let mut ino = ROOT_INO;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        ino = fs
            .lookup(ino, OsStr::new(seg))
            .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?
            .ino;
    }
    Ok(ino)
}

fn run(model: Model, ops: Vec<Op>, budget: u64, chunk: usize) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mem = MemStore::new().chunk_size(chunk);
    let entries: Vec<MountEntry> = model
        .files
        .iter()
        .map(|(path, data)| {
            let key = format!("prefix/{path}");
            mem.insert("bkt", &key, data.clone());
            MountEntry::from(ChannelObject {
                bucket: "bkt".into(),
                key,
                size: data.len() as u64,
                etag: None,
                rel_path: path.clone(),
            })
        })
        .collect();
    let config = FastFileConfig::default()
        .with_cache_budget(budget)
        .with_initial_window(4096)
        .with_max_window(64 << 10)
        .with_max_request(16 << 10)
        .with_min_request(1024)
        .with_seek_back(8192);
    let fs = FastFs::new(&config, Arc::new(mem), entries)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let paths: Vec<&String> = model.files.keys().collect();
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    // Open handles: (fh, path, model cursor).
    let mut open: Vec<(u64, String, u64)> = Vec::new();

    for op in ops {
        match op {
            Op::Lookup(segs) => {
                let path = segment_path(&segs);
                prop_assert_eq!(resolve(&fs, &path), model.resolve(&path), "lookup {}", path);
            }
            Op::Readdir(i) => {
                let dir = &dirs[i % dirs.len()];
                let ino = ino_of(&fs, dir)?;
                // Read in two pieces to check offsets resume correctly.
                let first: Vec<_> = fs
                    .readdir(ino, 0)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .take(3)
                    .map(|e| (e.name.to_string(), e.kind, e.next_offset))
                    .collect();
                let resume = first.last().map_or(0, |e| e.2);
                let rest: Vec<_> = fs
                    .readdir(ino, resume)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .map(|e| (e.name.to_string(), e.kind, e.next_offset))
                    .collect();
                let got: BTreeMap<String, bool> = first
                    .into_iter()
                    .chain(rest)
                    .filter(|e| e.0 != "." && e.0 != "..")
                    .map(|e| (e.0, e.1 == FileKind::Directory))
                    .collect();
                prop_assert_eq!(got, model.children(dir), "readdir {}", dir);
            }
            Op::Open(i) => {
                let path = paths[i % paths.len()];
                let ino = ino_of(&fs, path)?;
                let fh = fs
                    .open(ino, libc::O_RDONLY)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                open.push((fh, path.clone(), 0));
            }
            Op::ReadAt(..) | Op::ReadNext(..) if open.is_empty() => {}
            Op::ReadAt(h, offset, len) => {
                let idx = h % open.len();
                let (fh, path, cursor) = &mut open[idx];
                let data = &model.files[path.as_str()];
                let got = rt
                    .block_on(fs.read(*fh, offset, len))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let start = (offset as usize).min(data.len());
                let end = (offset as usize + len as usize).min(data.len());
                prop_assert_eq!(
                    &got[..],
                    &data[start..end],
                    "pread {} at {} len {}",
                    path,
                    offset,
                    len
                );
                *cursor = end as u64;
            }
            Op::ReadNext(h, len) => {
                let idx = h % open.len();
                let (fh, path, cursor) = &mut open[idx];
                let data = &model.files[path.as_str()];
                let got = rt
                    .block_on(fs.read(*fh, *cursor, len))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let start = (*cursor as usize).min(data.len());
                let end = (*cursor as usize + len as usize).min(data.len());
                prop_assert_eq!(
                    &got[..],
                    &data[start..end],
                    "read {} at {} len {}",
                    path,
                    cursor,
                    len
                );
                *cursor = end as u64;
            }
            Op::Release(h) => {
                if !open.is_empty() {
                    let (fh, _, _) = open.swap_remove(h % open.len());
                    fs.release(fh)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
        }
        prop_assert!(
            fs.cache_peak() <= budget,
            "budget exceeded: {}",
            fs.cache_peak()
        );
    }
    for (fh, _, _) in open {
        fs.release(fh)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    prop_assert_eq!(fs.cache_used(), 0, "budget returned after release");
    Ok(())
}

proptest! {
    // 96 cases by default; `PROPTEST_CASES` still raises it for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fastfs_matches_the_reference_model(
        model in model_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..60),
        budget in prop_oneof![Just(8u64 << 10), Just(40u64 << 10), Just(1u64 << 20)],
        chunk in prop_oneof![Just(1000usize), Just(4096), Just(65_536)],
    ) {
        run(model, ops, budget, chunk)?;
    }
}
