use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

/// Reads the step counter from the checkpoint directory, increments it, writes it back, and
/// then keeps running for a while so the test can watch the upload happen mid-run.
fn counting_job(name: &str, local: Option<&str>, linger: u32) -> serde_json::Value {
    let dir = local.unwrap_or("/opt/ml/checkpoints");
    let script = format!(
        "d={dir}; n=$(cat $d/step 2>/dev/null || echo 0); n=$((n+1)); echo $n > $d/step.tmp && mv $d/step.tmp $d/step; \
         mkdir -p $d/nested && echo weights-$n > $d/nested/w.bin; rm -f $d/old.txt; echo step $n; sleep {linger}"
    );
    let mut j = job(name, &script, None);
    j["CheckpointConfig"] = json!({"S3Uri": "s3://ckpt/runs/exp1"});
    if let Some(l) = local {
        j["CheckpointConfig"]["LocalPath"] = json!(l);
    }
    j
}

#[test]
fn checkpoints_are_restored_synced_while_running_and_resumed_by_the_next_job() {
    let h = Home::new();
    h.data("seed", &[("old.txt", b"stale")]);
    assert!(
        h.run(&["s3", "cp", "--recursive", "seed", "s3://ckpt/runs/exp1/"])
            .status
            .success()
    );

    // First job: uploads happen while it still runs.
    let path = h.work.path().join("first.json");
    std::fs::write(&path, counting_job("ckpt-1", None, 4).to_string()).unwrap();
    let mut child = h
        .cmd(&["train", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let step = h.object("ckpt", "runs/exp1/step");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !step.exists() {
        assert!(
            Instant::now() < deadline,
            "checkpoint not uploaded while the job ran"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before its checkpoint was seen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&step).unwrap(), "1\n");
    assert_eq!(
        std::fs::read_to_string(h.object("ckpt", "runs/exp1/nested/w.bin")).unwrap(),
        "weights-1\n"
    );
    assert!(
        !h.object("ckpt", "runs/exp1/old.txt").exists(),
        "a restored file deleted by the job is deleted in the store"
    );

    // Second job with the same URI resumes from the first one's step, at a custom LocalPath.
    let out = h.train(&counting_job("ckpt-2", Some("/opt/ml/custom-ckpt"), 0));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("step 2"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&step).unwrap(), "2\n");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored 2 checkpoint files"),
        "{}",
        text(&out)
    );
}
