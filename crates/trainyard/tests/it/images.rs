//! Jobs whose `TrainingImage` is an OCI image: pulled from a real registry on loopback
//! (Debian's `docker-registry`, started by `scripts/registry-up.sh`) holding the images
//! `scripts/test-images.sh` builds from Debian packages, and run in their containers.
//!
//! Without the `registry` feature these are ignored; with it, a missing registry fails them.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("feature registry: {key} is not set (scripts/test.sh starts the registries and pushes the test images)")
    })
}

fn image(name: &str) -> String {
    format!(
        "{}/trainyard-test/{name}:latest",
        env("TRAINYARD_TEST_REGISTRY")
    )
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A copy of test image `name` under a repository no other test uses, so that the
/// registry's access log counts only this test's pulls.
fn private_copy(name: &str) -> String {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let target = format!("{registry}/trainyard-it/{}:1", unique(name));
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}", image(name)))
        .arg(format!("docker://{target}"))
        .output()
        .expect("feature registry: skopeo is needed");
    assert!(out.status.success(), "{}", text(&out));
    target
}

/// Layer and config downloads of `repository` recorded in the registry's access log.
fn blob_gets(repository: &str) -> usize {
    let log = std::fs::read_to_string(
        std::path::Path::new(&env("TRAINYARD_TEST_REGISTRY_STATE")).join("registry.log"),
    )
    .unwrap();
    let needle = format!("\"GET /v2/{repository}/blobs/sha256:");
    log.lines()
        .filter(|l| l.contains(&needle) && l.contains("HTTP/1.1\" 200"))
        .count()
}

/// Runs `script` (too long for `ContainerEntrypoint`'s 256 characters) with the image's
/// `python3`, delivered as the File channel `code`.
fn python_job(h: &Home, name: &str, image: &str, script: &str) -> Value {
    let dir = format!("code-{name}");
    h.data(&dir, &[("probe.py", script.as_bytes())]);
    let mut j = image_job(name, image);
    j["AlgorithmSpecification"]["ContainerEntrypoint"] =
        json!(["python3", "/opt/ml/input/data/code/probe.py"]);
    j["InputDataConfig"] = json!([{
        "ChannelName": "code",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": format!("file://{dir}/")}}
    }]);
    j
}

fn image_job(name: &str, image: &str) -> Value {
    let mut j = job(name, "", None);
    j["AlgorithmSpecification"] = json!({"TrainingImage": image, "TrainingInputMode": "File"});
    j
}

fn reason(h: &Home, name: &str) -> String {
    h.describe(name)["FailureReason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn a_byo_image_runs_its_entrypoint_with_train_as_docker_run_does() {
    let h = Home::new();
    h.data("data", &[("a.csv", b"1,2\n"), ("b.csv", b"3,4\n")]);
    let mut j = image_job("byo", &image("byo"));
    j["InputDataConfig"] = json!([{
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://data/"}}
    }]);
    j["HyperParameters"] = json!({"epochs": "3"});
    j["Environment"] = json!({"MY_SETTING": "on"});
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // ENTRYPOINT ["train"] with `train` as its argument; WORKDIR and ENV of the image.
    assert!(
        stdout.contains(r#"argv=["/usr/local/bin/train", "train"]"#),
        "{stdout}"
    );
    assert!(stdout.contains("cwd=/opt/ml/code"), "{stdout}");
    assert!(stdout.contains("env TRAINYARD_BYO=1"), "{stdout}");
    assert!(
        stdout.contains("env SM_CHANNEL_TRAIN=/opt/ml/input/data/train"),
        "{stdout}"
    );
    assert!(stdout.contains("env SM_HP_EPOCHS=3"), "{stdout}");
    let files = untar(&h.object("out", "jobs/byo/output/model.tar.gz"));
    assert!(file_text(&files, "out.txt").contains("/opt/ml/code"));
    // SageMaker's messages around the pull, the digest in the log.
    let d = h.describe("byo");
    let transitions = d["SecondaryStatusTransitions"].as_array().unwrap();
    let training = transitions
        .iter()
        .find(|t| t["Status"] == "Training")
        .unwrap();
    assert_eq!(
        training["StatusMessage"],
        "Training image download completed. Training in progress."
    );
    let log = std::fs::read_to_string(h.home.path().join("jobs/byo/logs/platform.log")).unwrap();
    assert!(log.contains("Pulling the training image"), "{log}");
    assert!(log.contains("is sha256:"), "{log}");
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn the_toolkit_image_runs_a_script_with_hyperparameters_and_reports_its_metric() {
    let h = Home::new();
    h.data(
        "code",
        &[(
            "train.py",
            br#"
import argparse, os
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.add_argument("--learning-rate", type=float)
a = p.parse_args()
print(f"script: epochs={a.epochs} lr={a.learning_rate}", flush=True)
print(f"val_loss={0.5 / a.epochs:.4f}", flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write(str(a.epochs))
"#,
        )],
    );
    let mut j = image_job("toolkit", &image("toolkit"));
    // The toolkit copies sagemaker_submit_directory to /opt/ml/code when it is a directory.
    j["InputDataConfig"] = json!([{
        "ChannelName": "code",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://code/"}}
    }]);
    j["HyperParameters"] = json!({
        "epochs": "4",
        "learning-rate": "0.1",
        "sagemaker_program": "\"train.py\"",
        "sagemaker_submit_directory": "\"/opt/ml/input/data/code\""
    });
    j["AlgorithmSpecification"]["MetricDefinitions"] =
        json!([{"Name": "validation:loss", "Regex": "val_loss=([0-9.]+)"}]);
    j["StoppingCondition"]["MaxRuntimeInSeconds"] = json!(300);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("script: epochs=4 lr=0.1"),
        "{}",
        text(&out)
    );
    let d = h.describe("toolkit");
    let metrics = d["FinalMetricDataList"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["MetricName"] == "validation:loss" && m["Value"] == 0.125),
        "{d:#}"
    );
    let files = untar(&h.object("out", "jobs/toolkit/output/model.tar.gz"));
    assert_eq!(file_text(&files, "model.txt"), "4");
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn two_hosts_shard_their_data_and_reach_each_other_by_name_in_their_containers() {
    let h = Home::new();
    h.data(
        "data",
        &[
            ("0.txt", b"a"),
            ("1.txt", b"b"),
            ("2.txt", b"c"),
            ("3.txt", b"d"),
        ],
    );
    let script = r#"
import os, socket, sys, time
me = os.environ["SM_CURRENT_HOST"]
files = sorted(os.listdir("/opt/ml/input/data/train"))
if me == "algo-1":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7777)); s.listen(1); s.settimeout(60)
    c, _ = s.accept(); got = c.recv(100).decode()
    open("/opt/ml/model/report.txt", "w").write(f"{me} {files} heard {got}\n")
else:
    for _ in range(300):
        try:
            c = socket.create_connection(("algo-1", 7777), timeout=1); break
        except OSError:
            time.sleep(0.2)
    c.sendall(f"{me}:{files}".encode())
"#;
    let mut j = python_job(&h, "two-hosts", &image("base"), script);
    j["ResourceConfig"]["InstanceCount"] = json!(2);
    j["InputDataConfig"].as_array_mut().unwrap().push(json!({
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://data/",
                                        "S3DataDistributionType": "ShardedByS3Key"}}
    }));
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/two-hosts/output/model.tar.gz"));
    assert_eq!(
        file_text(&files, "report.txt").trim(),
        "algo-1 ['0.txt', '2.txt'] heard algo-2:['1.txt', '3.txt']"
    );
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn fastfile_pipe_and_checkpoints_work_inside_an_image() {
    let h = Home::new();
    h.put("data", "ff/a.txt", b"fast");
    h.put("data", "pipe/r.txt", b"piped");
    h.put("ckpt", "run/step", b"1");
    let script = r#"
import os
ff = open("/opt/ml/input/data/ff/a.txt").read()
pipe = open("/opt/ml/input/data/stream_0", "rb").read().decode()
step = int(open("/opt/ml/checkpoints/step").read()) + 1
open("/opt/ml/checkpoints/step", "w").write(str(step))
open("/opt/ml/model/seen.txt", "w").write(f"{ff} {pipe} {step} uid={os.getuid()}")
"#;
    let mut j = python_job(&h, "modes", &image("base"), script);
    let channels = j["InputDataConfig"].as_array_mut().unwrap();
    channels.push(json!(
        {"ChannelName": "ff", "InputMode": "FastFile",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/ff/"}}}));
    channels.push(json!(
        {"ChannelName": "stream", "InputMode": "Pipe",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/pipe/"}}}));
    j["CheckpointConfig"] = json!({"S3Uri": "s3://ckpt/run"});
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/modes/output/model.tar.gz"));
    assert_eq!(file_text(&files, "seen.txt"), "fast piped 2 uid=0");
    assert_eq!(
        std::fs::read_to_string(h.object("ckpt", "run/step")).unwrap(),
        "2"
    );
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn concurrent_jobs_on_one_image_pull_it_once_and_the_next_pulls_nothing() {
    let h = Home::new();
    let reference = private_copy("base");
    let repository = reference
        .split_once('/')
        .unwrap()
        .1
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string();
    let run = |name: &str| {
        let mut j = image_job(name, &reference);
        j["AlgorithmSpecification"]["ContainerEntrypoint"] =
            json!(["sh", "-c", "echo ran > /opt/ml/model/ran"]);
        let path = h.work.path().join(format!("{name}.json"));
        std::fs::write(&path, j.to_string()).unwrap();
        h.cmd(&["train", path.to_str().unwrap()]).spawn().unwrap()
    };
    let (mut a, mut b) = (run("same-image-a"), run("same-image-b"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    // One config blob and one layer: each fetched once although two jobs asked at once.
    let after_two = blob_gets(&repository);
    assert_eq!(after_two, 2, "blob downloads of {repository}");
    assert!(run("same-image-c").wait().unwrap().success());
    assert_eq!(
        blob_gets(&repository),
        after_two,
        "a cached image pulls nothing"
    );
}

#[test]
#[cfg_attr(not(feature = "registry"), ignore = "needs --features registry")]
fn images_that_cannot_be_pulled_fail_the_job_naming_image_registry_and_cause() {
    let h = Home::new();
    let marker = h.home.path().join("must-not-exist");
    let started = format!("touch {}", marker.display());
    let fail = |name: &str, image: &str, home_env: &[(&str, &str)]| {
        let mut j = image_job(name, image);
        j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["sh", "-c", &started]);
        let path = h.work.path().join(format!("{name}.json"));
        std::fs::write(&path, j.to_string()).unwrap();
        let mut cmd = h.cmd(&["train", path.to_str().unwrap()]);
        cmd.envs(home_env.iter().copied());
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{}", text(&out));
        assert_eq!(h.describe(name)["TrainingJobStatus"], "Failed");
        reason(&h, name)
    };
    let registry = env("TRAINYARD_TEST_REGISTRY");

    let r = fail(
        "unknown-tag",
        &format!("{registry}/trainyard-test/base:no-such-tag"),
        &[],
    );
    assert!(
        r.starts_with("ClientError: ") && r.contains("no-such-tag") && r.contains(&registry),
        "{r}"
    );

    // Basic auth with the wrong password from the docker configuration.
    let auth = env("TRAINYARD_TEST_AUTH_REGISTRY");
    let docker = h.work.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let write_config = |creds: &str| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(creds);
        std::fs::write(
            docker.join("config.json"),
            json!({"auths": {auth.clone(): {"auth": token}}}).to_string(),
        )
        .unwrap();
    };
    write_config("trainyard:wrong-password");
    let docker_env = [("DOCKER_CONFIG", docker.to_str().unwrap())];
    let r = fail(
        "wrong-password",
        &format!("{auth}/trainyard-test/base:latest"),
        &docker_env,
    );
    assert!(r.starts_with("ClientError: ") && r.contains(&auth), "{r}");
    // ... and the right one works.
    write_config(&env("TRAINYARD_TEST_AUTH_CREDS"));
    let mut j = image_job(
        "right-password",
        &format!("{auth}/trainyard-test/base:latest"),
    );
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["true"]);
    let path = h.work.path().join("right.json");
    std::fs::write(&path, j.to_string()).unwrap();
    let out = h
        .cmd(&["train", path.to_str().unwrap()])
        .envs(docker_env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A layer corrupted inside the registry's storage.
    let corrupt = corrupted_image();
    let r = fail("corrupt-layer", &corrupt, &[]);
    assert!(
        r.starts_with("ClientError: ") && r.contains(&registry) && r.contains("sha256:"),
        "{r}"
    );
    assert!(!marker.exists(), "no process started for a failed pull");

    // A type whose GPUs this machine lacks is refused at submission.
    let mut j = image_job("gpu", &image("base"));
    j["ResourceConfig"]["InstanceType"] = json!("ml.g4dn.xlarge");
    let path = h.work.path().join("gpu.json");
    std::fs::write(&path, j.to_string()).unwrap();
    let out = h.cmd(&["train", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("GPU"), "{}", text(&out));
    assert!(h.describe_opt("gpu").is_none());
}

/// A one-layer image of its own pushed to the registry, its layer then damaged in the
/// registry's storage directory.
fn corrupted_image() -> String {
    let registry = env("TRAINYARD_TEST_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let payload = dir.path().join("payload");
    std::fs::write(&payload, unique("payload").repeat(1000)).unwrap();
    let sh = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    let l = layout.to_str().unwrap();
    sh(&["umoci", "init", "--layout", l]);
    sh(&["umoci", "new", "--image", &format!("{l}:1")]);
    sh(&[
        "umoci",
        "insert",
        "--image",
        &format!("{l}:1"),
        payload.to_str().unwrap(),
        "/payload",
    ]);
    let reference = format!("{registry}/trainyard-it/{}:1", unique("corrupt"));
    sh(&[
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{l}:1"),
        &format!("docker://{reference}"),
    ]);
    // The layer is the manifest's only one: find it through the layout's index.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let hex = layer.trim_start_matches("sha256:");
    let data = std::path::Path::new(&env("TRAINYARD_TEST_REGISTRY_STATE")).join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    reference
}

#[test]
#[cfg_attr(not(feature = "podman"), ignore = "needs --features podman")]
fn an_image_built_locally_and_never_pushed_runs() {
    // What `podman build` leaves: an image in the local containers-storage only.
    let name = format!("localhost/trainyard-it/{}:1", unique("local"));
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:byo", env("TRAINYARD_TEST_IMAGES_DIR")))
        .arg(format!("containers-storage:{name}"))
        .output()
        .expect("feature podman: skopeo is needed");
    assert!(out.status.success(), "{}", text(&out));
    let h = Home::new();
    let out = h.train(&image_job("local-image", &name));
    let _ = Command::new("podman").args(["rmi", &name]).output();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("byo: done"),
        "{}",
        text(&out)
    );
    let log =
        std::fs::read_to_string(h.home.path().join("jobs/local-image/logs/platform.log")).unwrap();
    assert!(log.contains("containers-storage"), "{log}");
}
