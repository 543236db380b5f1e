use serde_json::{Value, json};

use crate::common::*;

/// The script records what it sees into /opt/ml/model; the test reads the archive.
const PROBE: &str = r#"
set -e
cd /opt/ml
cp input/config/hyperparameters.json input/config/inputdataconfig.json input/config/resourceconfig.json model/
cat input/data/train/a.csv > model/a.csv
env > model/env.txt
hostname > model/hostname.txt
getent hosts algo-1 > model/hosts.txt
test -d output/data && test -d model && echo ok > model/dirs.txt
"#;

#[test]
fn the_process_sees_the_sagemaker_container_contract() {
    let h = Home::new();
    h.data("data", &[("a.csv", b"1,2\n")]);
    h.data(".", &[("probe.sh", PROBE.as_bytes())]);
    let mut j = job("contract", "", Some("file://data/"));
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["sh", "probe.sh"]);
    j["HyperParameters"] = json!({"epochs": "3", "lr": "0.1", "sagemaker_program": "\"train.py\""});
    j["Environment"] = json!({"MY_SETTING": "on", "TRAINING_JOB_NAME": "spoofed"});
    j["InputDataConfig"][0]["ContentType"] = json!("text/csv");
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));

    let files = untar(&h.object("out", "jobs/contract/output/model.tar.gz"));
    let get = |n: &str| file_text(&files, n);
    let hp: Value = serde_json::from_str(&get("hyperparameters.json")).unwrap();
    assert_eq!(
        hp,
        json!({"epochs": "3", "lr": "0.1", "sagemaker_program": "\"train.py\""})
    );
    let idc: Value = serde_json::from_str(&get("inputdataconfig.json")).unwrap();
    assert_eq!(
        idc,
        json!({"train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}})
    );
    let rc: Value = serde_json::from_str(&get("resourceconfig.json")).unwrap();
    assert_eq!(rc["current_host"], "algo-1");
    assert_eq!(rc["hosts"], json!(["algo-1"]));
    assert_eq!(rc["current_instance_type"], "ml.m5.large");
    assert_eq!(get("a.csv"), "1,2\n");
    assert_eq!(get("hostname.txt").trim(), "algo-1");
    assert!(get("hosts.txt").contains("algo-1"));
    assert_eq!(get("dirs.txt").trim(), "ok");

    let env: std::collections::BTreeMap<String, String> = get("env.txt")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env["TRAINING_JOB_NAME"], "contract");
    assert_eq!(
        env["TRAINING_JOB_ARN"],
        "arn:aws:sagemaker:us-east-1:000000000000:training-job/contract"
    );
    assert_eq!(env["MY_SETTING"], "on");
    assert_eq!(env["SM_CHANNEL_TRAIN"], "/opt/ml/input/data/train");
    assert_eq!(env["SM_MODEL_DIR"], "/opt/ml/model");
    assert_eq!(env["SM_CHANNELS"], r#"["train"]"#);
    assert_eq!(env["SM_HPS"], r#"{"epochs":3,"lr":0.1}"#);
    assert_eq!(env["SM_HP_LR"], "0.1");
    assert_eq!(env["SM_USER_ARGS"], r#"["--epochs","3","--lr","0.1"]"#);
    assert_eq!(env["SM_CURRENT_HOST"], "algo-1");
    assert!(
        !env.keys().any(|k| k.starts_with("TRAINYARD_")),
        "trainyard's own settings leak into the job"
    );
}

#[test]
fn entrypoint_defaults_to_train_as_docker_run_image_train() {
    let h = Home::new();
    let bin = h.work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("train");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"invoked as $0 with $# args\"\necho done > /opt/ml/model/ran\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut j = job("default-train", "", None);
    j["AlgorithmSpecification"]
        .as_object_mut()
        .unwrap()
        .remove("ContainerEntrypoint");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let file = h.work.path().join("j.json");
    std::fs::write(&file, j.to_string()).unwrap();
    let out = h
        .cmd(&["train", file.to_str().unwrap()])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("with 0 args"),
        "{}",
        text(&out)
    );
}

#[test]
fn without_isolation_the_process_finds_its_files_through_sm_paths() {
    let h = Home::new();
    h.data("data", &[("a.csv", b"x")]);
    let script = "cat \"$SM_CHANNEL_TRAIN/a.csv\" > \"$SM_MODEL_DIR/copy\"; test -d /opt/ml/model/ || echo no-opt-ml > \"$SM_MODEL_DIR/note\"; echo \"$SM_CHANNEL_TRAIN\" > \"$SM_MODEL_DIR/channel\"";
    let j = job("no-isolation", script, Some("file://data/"));
    let path = h.work.path().join("j.json");
    std::fs::write(&path, j.to_string()).unwrap();
    let out = h
        .cmd(&["train", path.to_str().unwrap()])
        .env("TRAINYARD_ISOLATION", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Jobs cannot run in containers here (TRAINYARD_ISOLATION=off)"),
        "{}",
        text(&out)
    );
    let files = untar(&h.object("out", "jobs/no-isolation/output/model.tar.gz"));
    let get = |n: &str| file_text(&files, n);
    assert_eq!(get("copy"), "x");
    let channel = get("channel");
    assert!(
        channel.starts_with(h.home.path().to_str().unwrap())
            && channel.trim_end().ends_with("/algo-1/input/data/train"),
        "{channel}"
    );
    let platform =
        std::fs::read_to_string(h.home.path().join("jobs/no-isolation/logs/platform.log")).unwrap();
    assert!(
        platform.contains("SM_* paths"),
        "the job log says so: {platform}"
    );
}
