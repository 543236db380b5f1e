//! Issue 15 item 6: the disk filling during a job. `$TRAINYARD_HOME` (database, store, job
//! trees, logs) is a small tmpfs, the job fills it, and the job must end `Failed` with
//! `ClientError: No space left on device` naming where, not stay `InProgress` for ever; a job
//! submitted while the disk is full is refused naming the cause.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{FOREIGN_ENV, Home, Server, job, text};

/// A tmpfs of `size` mounted over `dir`, unmounted when dropped.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "feature tmpfs: cannot mount a tmpfs here (root needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Writes a file until the disk is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![7u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
}

#[test]
#[cfg_attr(
    not(feature = "tmpfs"),
    ignore = "needs --features tmpfs (root, to mount a small tmpfs)"
)]
fn a_disk_that_fills_during_a_job_fails_it_with_the_reason() {
    let h = Home::new();
    let _mount = Tmpfs::mount(h.home.path(), "24m");
    // Fills the disk from inside the job, then carries on as if nothing happened: whatever of
    // the server's writes fails next (the log, the archive, the status) must end the job.
    let script = "dd if=/dev/zero of=/opt/ml/model/fill bs=64k 2>/dev/null; \
                  for i in 1 2 3 4 5 6 7 8; do echo still training $i; done; exit 0";
    let path = h.work.path().join("fills.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&job("fills-the-disk", script, None)).unwrap(),
    )
    .unwrap();
    let mut child = h
        .cmd(&["train", "--quiet", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the job never ended on a full disk: {:?}",
                h.describe_opt("fills-the-disk")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let desc = h.describe("fills-the-disk");
    assert_eq!(
        desc["TrainingJobStatus"],
        "Failed",
        "{desc:#}\n{}",
        text(&out)
    );
    let reason = desc["FailureReason"].as_str().unwrap_or_default();
    eprintln!("failure reason on a full disk: {reason}");
    assert!(
        reason.starts_with("ClientError: No space left on device: writing the training log"),
        "{reason}\n{}",
        text(&out)
    );

    // The same without a line of output after the disk filled: packing the archive or the
    // status write is what fails now, whichever comes first (the database's reserve lets the
    // job end either way).
    let found = Command::new("find")
        .arg(h.home.path())
        .args(["-name", "fill", "-delete"])
        .status()
        .unwrap();
    assert!(found.success());
    let quiet = "dd if=/dev/zero of=/opt/ml/model/fill bs=64k 2>/dev/null; exit 0";
    let out = h.train(&job("fills-quietly", quiet, None));
    assert!(!out.status.success(), "{}", text(&out));
    let desc = h.describe("fills-quietly");
    let reason = desc["FailureReason"].as_str().unwrap_or_default();
    eprintln!("failure reason on a full disk, no output: {reason}");
    assert_eq!(
        desc["TrainingJobStatus"],
        "Failed",
        "{desc:#}\n{}",
        text(&out)
    );
    assert!(
        reason.starts_with("ClientError: No space left on device: ")
            && (reason.contains("trainyard.db") || reason.contains("writing the artifacts")),
        "{reason}\n{}",
        text(&out)
    );

    // Still full (the jobs' trees are kept): a new job is refused, naming the cause.
    fill(&h.home.path().join("ballast"));
    let out = h.train(&job("on-a-full-disk", "true", None));
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("No space left on device") && err.contains("trainyard.db"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("InternalFailure"), "{}", text(&out));
}

#[test]
#[cfg_attr(
    not(feature = "tmpfs"),
    ignore = "needs --features tmpfs (root, to mount a small tmpfs)"
)]
fn create_on_a_full_disk_answers_service_unavailable_naming_the_database() {
    let h = Home::new();
    let _mount = Tmpfs::mount(h.home.path(), "16m");
    let server = Server::start(&h);
    fill(&h.home.path().join("ballast"));
    let path = h.work.path().join("late.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&job("late", "true", None)).unwrap(),
    )
    .unwrap();
    let mut cmd = h.cmd(&[
        "--endpoint",
        server.url.as_str(),
        "train",
        path.to_str().unwrap(),
    ]);
    for name in FOREIGN_ENV {
        cmd.env_remove(name);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ServiceUnavailable")
            && err.contains("No space left on device")
            && err.contains("trainyard.db"),
        "{}",
        text(&out)
    );
}
