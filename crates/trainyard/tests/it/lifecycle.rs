use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[test]
fn a_failure_file_becomes_the_failure_reason() {
    let h = Home::new();
    let script = "echo 'model diverged at step 7' > /opt/ml/output/failure; echo partial > /opt/ml/model/ckpt; exit 3";
    let out = h.train(&job("fails-with-file", script, None));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("model diverged at step 7"),
        "{}",
        text(&out)
    );
    let d = h.describe("fails-with-file");
    assert_eq!(d["TrainingJobStatus"], "Failed");
    assert_eq!(d["SecondaryStatus"], "Failed");
    assert_eq!(d["FailureReason"], "model diverged at step 7");
    assert_eq!(
        statuses(&d),
        ["Starting", "Training", "Uploading", "Failed"]
    );
    assert!(d["TrainingEndTime"].as_f64().is_some());
    // A failed job still uploads what it wrote, best effort.
    assert_eq!(
        untar(&h.object("out", "jobs/fails-with-file/output/model.tar.gz")),
        [("ckpt".to_string(), b"partial\n".to_vec())]
    );
}

#[test]
fn without_a_failure_file_the_reason_is_the_stderr_tail() {
    let h = Home::new();
    let script = "echo 'Traceback: ValueError: bad shape (3, 4)' >&2; exit 2";
    let out = h.train(&job("fails-stderr", script, None));
    assert_eq!(out.status.code(), Some(1));
    let reason = h.describe("fails-stderr")["FailureReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("AlgorithmError: algo-1 exit code 2"),
        "{reason}"
    );
    assert!(reason.contains("ValueError: bad shape (3, 4)"), "{reason}");
}

#[test]
fn a_long_failure_file_is_cut_at_1024_characters() {
    let h = Home::new();
    let script = "python3 -c \"open('/opt/ml/output/failure','w').write('x'*5000)\"; exit 1";
    h.train(&job("fails-long", script, None));
    assert_eq!(
        h.describe("fails-long")["FailureReason"]
            .as_str()
            .unwrap()
            .len(),
        1024
    );
}

#[test]
fn a_failure_file_is_ignored_when_the_process_succeeds() {
    let h = Home::new();
    let out = h.train(&job(
        "ok-with-failure-file",
        "echo note > /opt/ml/output/failure",
        None,
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        h.describe("ok-with-failure-file")["TrainingJobStatus"],
        "Completed"
    );
}

#[test]
fn max_runtime_stops_the_job_and_still_uploads() {
    let h = Home::new();
    let mut j = job(
        "too-slow",
        "echo started; echo saved > /opt/ml/model/m; exec sleep 60",
        None,
    );
    j["StoppingCondition"] = json!({"MaxRuntimeInSeconds": 1});
    let t = Instant::now();
    let out = h.train(&j);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the runtime limit was not enforced"
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = h.describe("too-slow");
    assert_eq!(d["TrainingJobStatus"], "Stopped");
    assert_eq!(d["SecondaryStatus"], "MaxRuntimeExceeded");
    assert_eq!(
        statuses(&d),
        ["Starting", "Training", "Stopping", "MaxRuntimeExceeded"]
    );
    assert!(d.get("FailureReason").is_none());
    assert_eq!(
        untar(&h.object("out", "jobs/too-slow/output/model.tar.gz")),
        [("m".to_string(), b"saved\n".to_vec())]
    );
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let h = Home::new();
    // The shell ignores TERM; its child sleep would outlive it without a group kill.
    let mut j = job("stubborn", "trap '' TERM; sleep 60 & sleep 60", None);
    j["StoppingCondition"] = json!({"MaxRuntimeInSeconds": 1});
    let t = Instant::now();
    let out = h.train(&j);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "took {took:?}: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sending SIGKILL"),
        "{}",
        text(&out)
    );
    assert_eq!(
        h.describe("stubborn")["SecondaryStatus"],
        "MaxRuntimeExceeded"
    );
}

#[test]
fn sigterm_to_the_cli_stops_the_job() {
    let h = Home::new();
    let j = job("stop-me", "echo ready; exec sleep 60", None);
    let path = h.work.path().join("stop.json");
    std::fs::write(&path, j.to_string()).unwrap();
    let mut child = h
        .cmd(&["train", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = h.describe_opt("stop-me");
        if d.as_ref()
            .is_some_and(|d| d["SecondaryStatus"] == "Training")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached Training: {}",
            d.map_or("no record".to_string(), |d| format!(
                "{} {}",
                d["SecondaryStatus"], d["FailureReason"]
            ))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let d = h.describe("stop-me");
    assert_eq!(d["TrainingJobStatus"], "Stopped");
    assert_eq!(
        statuses(&d),
        ["Starting", "Training", "Stopping", "Stopped"]
    );
}

#[test]
fn a_duplicate_name_is_refused_as_resource_in_use() {
    let h = Home::new();
    assert!(h.train(&job("twice", "true", None)).status.success());
    let out = h.train(&job("TWICE", "true", None));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ResourceInUse"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_program_fails_the_job_with_a_reason() {
    let h = Home::new();
    let mut j = job("no-such-program", "", None);
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["/nonexistent/train"]);
    let out = h.train(&j);
    assert_eq!(out.status.code(), Some(1));
    let reason = h.describe("no-such-program")["FailureReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("/nonexistent/train") && reason.to_lowercase().contains("no such file"),
        "{reason}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "cgroups"),
    ignore = "needs --features cgroups (a cgroup memory controller)"
)]
fn a_host_is_limited_to_its_instance_types_memory() {
    let h = Home::new();
    std::fs::write(
        h.home.path().join("instance-types.json"),
        r#"{"instance_types": {"ml.tiny.test": {"vcpus": 1, "memory_mib": 1024}}}"#,
    )
    .unwrap();
    let alloc = |mib: u32| {
        format!("python3 -c 'b = bytearray({mib} * 1024 * 1024); print(\"allocated {mib} MiB\")'")
    };
    let mut small = job("mem-ok", &alloc(200), None);
    small["ResourceConfig"]["InstanceType"] = json!("ml.tiny.test");
    let out = h.train(&small);
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(h.home.path().join("jobs/mem-ok/logs/platform.log")).unwrap();
    assert!(
        !log.contains("Memory is not limited"),
        "feature cgroups: no writable cgroup memory controller here\n{log}"
    );
    assert!(
        log.contains("limited to 768 MiB (ml.tiny.test: 1024 MiB"),
        "{log}"
    );

    let mut big = job("mem-oom", &alloc(1500), None);
    big["ResourceConfig"]["InstanceType"] = json!("ml.tiny.test");
    let out = h.train(&big);
    assert!(!out.status.success());
    let d = h.describe("mem-oom");
    assert_eq!(d["TrainingJobStatus"], "Failed");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.contains("algo-1 ran out of memory") && reason.contains("ml.tiny.test"),
        "{reason}"
    );

    // A type the table does not have is refused at submission, naming the table.
    let mut unknown = job("mem-unknown", "true", None);
    unknown["ResourceConfig"]["InstanceType"] = json!("ml.zz.huge");
    let out = h.train(&unknown);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("InstanceType \"ml.zz.huge\" is not in the instance-type table"),
        "{}",
        text(&out)
    );
}

/// A process that leaves the host's process group (`setsid`) and keeps the output open ends
/// with the host: the job completes, and nothing of it is left running.
#[test]
#[cfg_attr(
    not(feature = "cgroups"),
    ignore = "needs --features cgroups (the host's cgroup finds the daemon)"
)]
fn a_daemon_the_job_leaves_behind_ends_with_it() {
    let h = Home::new();
    let marker = format!("{}.{}", 900 + std::process::id() % 100, std::process::id());
    let script = format!("setsid sleep {marker} & echo started");
    let path = h
        .data("jobs", &[("leaves-a-daemon.json", b"")])
        .join("leaves-a-daemon.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&job("leaves-a-daemon", &script, None)).unwrap(),
    )
    .unwrap();
    let mut child = h
        .cmd(&["train", "--quiet", path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = std::process::Command::new("pkill")
                .args(["-f", &format!("sleep {marker}")])
                .status();
            panic!("the job is still running 60 s after its main process exited");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(
        h.describe("leaves-a-daemon")["TrainingJobStatus"],
        "Completed"
    );
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

/// The highest resident set `pid` reached so far, in KiB (`VmHWM`), while it exists.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `script` as a job and returns the CLI's (the job's supervisor's) peak RSS in KiB.
fn supervisor_peak(h: &Home, name: &str, script: &str) -> u64 {
    let path = h.work.path().join(format!("{name}.json"));
    std::fs::write(&path, job(name, script, None).to_string()).unwrap();
    let mut child = h
        .cmd(&["train", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

#[test]
fn output_without_newlines_does_not_grow_the_supervisor() {
    let h = Home::new();
    // The same 64 MiB, as 1 KiB lines and as one line; the job then waits, pipe open.
    let lines = supervisor_peak(
        &h,
        "flood-lines",
        "head -c 67108864 /dev/zero | tr '\\0' x | fold -w 1024; sleep 1",
    );
    let one = supervisor_peak(
        &h,
        "flood-one-line",
        "head -c 67108864 /dev/zero | tr '\\0' x; sleep 1",
    );
    assert!(
        one < lines + 24 * 1024,
        "one 64 MiB line raised the peak RSS to {one} KiB (1 KiB lines: {lines} KiB)"
    );
    // Nothing was dropped: 256 events of at most 262,118 bytes hold the line.
    let out = h.run(&["logs", "flood-one-line"]);
    assert!(out.status.success(), "{}", text(&out));
    let lens: Vec<usize> = out.stdout.split(|b| *b == b'\n').map(<[u8]>::len).collect();
    assert!(lens.iter().all(|n| *n <= 262_118), "{:?}", &lens[..4]);
    assert_eq!(lens.iter().sum::<usize>(), 64 << 20);
}

#[test]
fn a_failure_file_linked_to_a_host_file_is_not_read() {
    let h = Home::new();
    let secret = h.work.path().join("secret");
    std::fs::write(&secret, "root:$6$not-for-tenants").unwrap();
    let script = format!(
        "ln -s {} /opt/ml/output/failure; echo 'Traceback: boom' >&2; exit 4",
        secret.display()
    );
    let out = h.train(&job("failure-symlink", &script, None));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let reason = h.describe("failure-symlink")["FailureReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!reason.contains("not-for-tenants"), "{reason}");
    assert!(reason.contains("Traceback: boom"), "{reason}");
    let platform =
        std::fs::read_to_string(h.home.path().join("jobs/failure-symlink/logs/platform.log"))
            .unwrap();
    assert!(
        platform.contains("/opt/ml/output/failure is a symbolic link: ignored"),
        "{platform}"
    );
}
