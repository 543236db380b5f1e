"""The real `sagemaker-training` toolkit (PyPI) runs unchanged as a job's entry point.

A SageMaker framework image runs `train`, the toolkit's console script; in script mode the
toolkit downloads `sagemaker_submit_directory` (a source tarball in the object store), reads
the three config files under /opt/ml/input/config and runs `sagemaker_program` with the user's
hyperparameters as arguments and the SM_* variables in its environment. Here the `host` image
does the same (its default command is `train`), against garage as the object store, through
`trainyard train`.
"""

import io
import json
import os
import subprocess
import tarfile
import uuid

import boto3
import pytest

from conftest import BIN, REPO

pytestmark = [
    pytest.mark.skipif(not os.environ.get("TRAINYARD_TEST_S3_ENDPOINT"),
                       reason="no real S3 server (scripts/test.sh starts garage)"),
]

USER_SCRIPT = r'''
import argparse, json, os, sys

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning-rate", type=float)
parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
args = parser.parse_args()

train = os.environ["SM_CHANNEL_TRAIN"]
rows = sum(len(open(os.path.join(train, f)).read().splitlines()) for f in sorted(os.listdir(train)))
hps = json.loads(os.environ["SM_HPS"])
report = {
    "argv": sys.argv[1:],
    "epochs": args.epochs,
    "learning_rate": args.learning_rate,
    "rows": rows,
    "train_dir": train,
    "hps": hps,
    "current_host": os.environ["SM_CURRENT_HOST"],
    "hosts": json.loads(os.environ["SM_HOSTS"]),
    "module_dir": os.environ.get("SM_MODULE_DIR"),
    "helper": open(os.path.join(os.path.dirname(__file__), "helper.txt")).read().strip(),
}
for epoch in range(args.epochs):
    print(f"epoch={epoch} loss={1.0 / (epoch + 1):.3f}", flush=True)
with open(os.path.join(args.model_dir, "report.json"), "w") as f:
    json.dump(report, f)
'''


def toolkit_available():
    return subprocess.run(["python3", "-c", "import sagemaker_training"], capture_output=True).returncode == 0


def source_tarball():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, body in (("train.py", USER_SCRIPT), ("helper.txt", "shipped with the source\n")):
            info = tarfile.TarInfo(name)
            data = body.encode()
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_script_mode_through_the_real_toolkit(tmp_path):
    assert toolkit_available(), "sagemaker-training is not installed (tests/python/requirements.txt)"
    endpoint = os.environ["TRAINYARD_TEST_S3_ENDPOINT"]
    bucket = os.environ.get("TRAINYARD_TEST_S3_BUCKET", "trainyard-test")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    root = f"toolkit-{uuid.uuid4().hex[:12]}"
    s3.put_object(Bucket=bucket, Key=f"{root}/code/sourcedir.tar.gz", Body=source_tarball())
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"{root}/train/part-{i}.csv", Body=b"a,b\n" * (i + 1))

    name = f"toolkit-{uuid.uuid4().hex[:8]}"
    request = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/trainyard-test",
        # No entry point: the image's command, `train`, is the toolkit's.
        "AlgorithmSpecification": {
            "TrainingImage": "host",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        },
        # As the SageMaker Python SDK sends them: every value JSON-encoded.
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/{root}/code/sourcedir.tar.gz"),
            "sagemaker_region": json.dumps("us-east-1"),
            "sagemaker_container_log_level": "20",
            "epochs": "3",
            "learning-rate": "0.05",
        },
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{root}/train/",
            "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{root}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(request))
    env = dict(os.environ, TRAINYARD_HOME=str(tmp_path / "home"), TRAINYARD_STORE="s3",
               AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1")
    run = subprocess.run([BIN, "train", str(job_file)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    # The toolkit's own log lines reached the job's log.
    assert "Invoking user script" in run.stdout + run.stderr, run.stdout

    archive = s3.get_object(Bucket=bucket, Key=f"{root}/output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as t:
        report = json.load(t.extractfile("report.json"))
    assert report["argv"] == ["--epochs", "3", "--learning-rate", "0.05"], report["argv"]
    assert report["epochs"] == 3 and report["learning_rate"] == 0.05
    assert report["rows"] == 1 + 2 + 3
    assert report["train_dir"] == "/opt/ml/input/data/train"
    assert report["hps"] == {"epochs": 3, "learning-rate": 0.05}
    assert report["current_host"] == "algo-1" and report["hosts"] == ["algo-1"]
    assert report["helper"] == "shipped with the source"

    described = subprocess.run([BIN, "jobs", "describe", name], cwd=REPO, env=env,
                               capture_output=True, text=True, check=True)
    d = json.loads(described.stdout)
    assert d["TrainingJobStatus"] == "Completed"
    assert {m["MetricName"]: m["Value"] for m in d["FinalMetricDataList"]}["loss"] == pytest.approx(0.333)

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root + "/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
