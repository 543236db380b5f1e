//! `trainyard s3 ls|cp`: put data into the object store and look at it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use trainyard::cli::S3Command;
use trainyard::config::Settings;
use trainyard::storage::Storage;
use trainyard_data::Progress;
use trainyard_s3::{Location, ObjectClientExt, PutBody};

use super::{Exit, USAGE};

pub async fn s3(command: S3Command) -> Result<u8> {
    let settings = Settings::from_env()?;
    let storage = Storage::new(&settings).context("configuring object storage")?;
    let cwd = std::env::current_dir()?;
    let parse = |uri: &str| Location::parse(uri, &cwd).map_err(|e| Exit(USAGE, e.to_string()));
    match command {
        S3Command::Ls { uri, recursive } => {
            let r = storage.resolve(&parse(&uri)?);
            let mut out = std::io::stdout().lock();
            if recursive {
                for o in r.client.list_vec(&r.bucket, &r.key).await? {
                    writeln!(out, "{:>12} {}", o.size, o.key)?;
                }
                return Ok(0);
            }
            let strip = r.key.rfind('/').map(|i| i + 1).unwrap_or(0);
            let mut token = None;
            loop {
                let page = r
                    .client
                    .list_page(&r.bucket, &r.key, Some("/"), token.as_deref())
                    .await?;
                for p in &page.common_prefixes {
                    writeln!(out, "{:>12} {}", "PRE", &p[strip..])?;
                }
                for o in &page.objects {
                    writeln!(out, "{:>12} {}", o.size, &o.key[strip..])?;
                }
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => return Ok(0),
                }
            }
        }
        S3Command::Cp {
            src,
            dst,
            recursive,
        } => match (src.starts_with("s3://"), dst.starts_with("s3://")) {
            (false, true) => {
                let r = storage.resolve(&parse(&dst)?);
                let src = PathBuf::from(&src);
                if recursive {
                    let mut n = 0u64;
                    for (path, rel) in walk_files(&src)? {
                        r.client
                            .put(&r.bucket, &join_key(&r.key, &rel), PutBody::File(path))
                            .await?;
                        n += 1;
                    }
                    println!("uploaded {n} files to {dst}");
                } else {
                    if src.is_dir() {
                        bail!(Exit(
                            USAGE,
                            format!("{} is a directory (use --recursive)", src.display())
                        ));
                    }
                    let key = if r.key.is_empty() || r.key.ends_with('/') {
                        format!(
                            "{}{}",
                            r.key,
                            src.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        )
                    } else {
                        r.key.clone()
                    };
                    r.client
                        .put(&r.bucket, &key, PutBody::File(src.clone()))
                        .await?;
                    println!("upload: {} to s3://{}/{key}", src.display(), r.bucket);
                }
                Ok(0)
            }
            (true, false) => {
                let r = storage.resolve(&parse(&src)?);
                let dst = PathBuf::from(&dst);
                if recursive {
                    let prefix = if r.key.is_empty() || r.key.ends_with('/') {
                        r.key.clone()
                    } else {
                        format!("{}/", r.key)
                    };
                    let objects =
                        trainyard_data::list_prefix(&*r.client, &r.bucket, &prefix, &src).await?;
                    let sum = trainyard_data::download(
                        r.client.clone(),
                        &objects,
                        &dst,
                        &Default::default(),
                        &Progress::default(),
                    )
                    .await?;
                    println!(
                        "downloaded {} objects, {} bytes in {:.2} s ({:.1} MB/s)",
                        sum.objects,
                        sum.bytes,
                        sum.seconds,
                        sum.mb_per_s()
                    );
                } else {
                    let bytes = r.client.get_bytes(&r.bucket, &r.key).await?;
                    let target = if dst.is_dir() {
                        dst.join(r.key.rsplit('/').next().unwrap_or(&r.key))
                    } else {
                        dst
                    };
                    std::fs::write(&target, &bytes)
                        .with_context(|| format!("writing {}", target.display()))?;
                }
                Ok(0)
            }
            _ => Err(Exit(
                USAGE,
                "exactly one of SRC and DST must be an s3:// URI".into(),
            )
            .into()),
        },
    }
}

fn join_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        format!("{prefix}{rel}")
    } else {
        format!("{prefix}/{rel}")
    }
}

fn walk_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
                out.push((p, rel));
            }
        }
    }
    out.sort();
    Ok(out)
}
