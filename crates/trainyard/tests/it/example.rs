use std::path::Path;

use crate::common::*;

#[test]
fn the_bundled_example_trains_and_uploads_its_model() {
    let h = Home::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = h
        .cmd(&["train", "examples/job.json", "--unique"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("train.py: 400 rows from /opt/ml/input/data/train"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Completed - Training job completed"),
        "{stdout}"
    );

    let list = h.run(&["jobs", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let name = list["TrainingJobSummaries"][0]["TrainingJobName"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("example-linear-"), "{name}");

    let d = h.describe(&name);
    assert_eq!(d["TrainingJobStatus"], "Completed");
    assert_eq!(
        statuses(&d),
        [
            "Starting",
            "Downloading",
            "Training",
            "Uploading",
            "Completed"
        ]
    );
    assert_eq!(d["HyperParameters"]["epochs"], "200");
    assert!(
        d["FinalMetricDataList"][0]["Value"].as_f64().unwrap() < 0.2,
        "{d}"
    );
    let model = d["ModelArtifacts"]["S3ModelArtifacts"].as_str().unwrap();
    assert_eq!(
        model,
        format!("s3://trainyard-examples/output/{name}/output/model.tar.gz")
    );

    let files = untar(&h.object(
        "trainyard-examples",
        &format!("output/{name}/output/model.tar.gz"),
    ));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "model.json");
    let m: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    assert!(
        (m["w"].as_f64().unwrap() - 3.0).abs() < 0.1
            && (m["b"].as_f64().unwrap() - 2.0).abs() < 0.1,
        "{m}"
    );
    let output = untar(&h.object(
        "trainyard-examples",
        &format!("output/{name}/output/output.tar.gz"),
    ));
    assert_eq!(output[0].0, "summary.txt");
    assert!(String::from_utf8_lossy(&output[0].1).starts_with("rows=400 "));

    let logs = h.run(&["logs", &name]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("epoch=200 train_mse="),
        "{}",
        text(&logs)
    );
}
