"""Clients other than raw boto3: the aws CLI, trainyard's own CLI in --endpoint mode, and the
SageMaker Python SDK."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, REPO, job, wait_status, write_json


def aws(server, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDCLI", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run(["aws", "--endpoint-url", server.url, "--output", "json", *args], env=env, capture_output=True, text=True)
    return out


@pytest.mark.skipif(shutil.which("aws") is None, reason="aws CLI not installed")
def test_aws_cli(server, tmp_path):
    req = write_json(tmp_path / "job.json", job("cli-job"))
    out = aws(server, "sagemaker", "create-training-job", "--cli-input-json", f"file://{req}")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["TrainingJobArn"].endswith("training-job/cli-job")
    wait_status(server.client(), "cli-job", {"Completed"})
    out = aws(server, "sagemaker", "describe-training-job", "--training-job-name", "cli-job")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["TrainingJobStatus"] == "Completed"
    out = aws(server, "sagemaker", "list-training-jobs", "--name-contains", "cli")
    assert [j["TrainingJobName"] for j in json.loads(out.stdout)["TrainingJobSummaries"]] == ["cli-job"]
    out = aws(server, "sagemaker", "describe-training-job", "--training-job-name", "missing")
    assert out.returncode != 0 and "ValidationException" in out.stderr


def test_trainyard_cli_against_the_server(server, tmp_path):
    env = dict(os.environ, TRAINYARD_ENDPOINT=server.url)
    req = write_json(tmp_path / "job.json", job("remote-cli", "echo from-the-job; echo 'loss=0.5'"))
    out = subprocess.run([BIN, "train", str(req)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "from-the-job" in out.stdout and "Completed - Training job completed" in out.stdout
    assert "metric loss = 0.5" in out.stdout
    out = subprocess.run([BIN, "jobs", "describe", "remote-cli"], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout)["TrainingJobStatus"] == "Completed"
    out = subprocess.run([BIN, "logs", "remote-cli"], env=env, capture_output=True, text=True)
    assert out.stdout.splitlines() == ["from-the-job", "loss=0.5"]
    sm = server.client()
    sm.create_training_job(**job("follow-me", "for i in 1 2 3; do echo tick $i; sleep 0.3; done"))
    out = subprocess.run([BIN, "logs", "-f", "follow-me"], env=env, capture_output=True, text=True, timeout=60)
    assert [l for l in out.stdout.splitlines() if l.startswith("tick")] == ["tick 1", "tick 2", "tick 3"]
    bad = write_json(tmp_path / "bad.json", {**job("bad_name")})
    out = subprocess.run([BIN, "train", str(bad)], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "ValidationException" in out.stderr


SDK_CONFIG = """SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def test_sagemaker_python_sdk_estimator(server, tmp_path, monkeypatch):
    # The SDK reports telemetry to AWS unless told not to; tests talk to loopback only.
    cfg = tmp_path / "sagemaker-config.yaml"
    cfg.write_text(SDK_CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(cfg))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    sagemaker = pytest.importorskip("sagemaker")
    import boto3
    from sagemaker.estimator import Estimator

    # The SDK turns file:// inputs into local mode's FileDataSource, which is not part of the
    # service API; real jobs read s3:// channels, here from the embedded store.
    data = server.home / "store" / "sdk-bucket" / "data"
    data.mkdir(parents=True)
    (data / "d.csv").write_text("1,2\n")
    boto_session = boto3.Session(aws_access_key_id="AKIDSDK", aws_secret_access_key="x", region_name="us-east-1")
    sm = boto_session.client("sagemaker", endpoint_url=server.url)
    session = sagemaker.Session(boto_session=boto_session, sagemaker_client=sm, default_bucket="sdk-bucket")
    est = Estimator(
        image_uri="host",
        role="arn:aws:iam::000000000000:role/trainyard-test",
        instance_count=1,
        instance_type="ml.m5.large",
        output_path="s3://sdk-bucket/output",
        sagemaker_session=session,
        container_entry_point=["sh", "-c", "cat /opt/ml/input/data/train/d.csv > /opt/ml/model/copy.csv;"
                               " echo loss=0.5; echo loss=0.25"],
        metric_definitions=[{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        hyperparameters={"epochs": 3},
        max_run=600,
        disable_profiler=True,
    )
    est.fit({"train": "s3://sdk-bucket/data/"}, wait=True, logs=False)
    d = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Completed"
    assert d["HyperParameters"]["epochs"] == "3"
    assert d["ModelArtifacts"]["S3ModelArtifacts"].startswith("s3://sdk-bucket/output/")
    assert est.model_data == d["ModelArtifacts"]["S3ModelArtifacts"]
    assert (server.home / "store/sdk-bucket/output" / d["TrainingJobName"] / "output/model.tar.gz").exists()
    # TrainingJobAnalytics reads the extracted values from CloudWatch (its client has no
    # endpoint argument: AWS_ENDPOINT_URL points it at the server), averaged per 60 s period.
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    from sagemaker.analytics import TrainingJobAnalytics
    df = TrainingJobAnalytics(d["TrainingJobName"], metric_names=["loss"], sagemaker_session=session).dataframe()
    assert list(df["metric_name"]) == ["loss"]
    assert list(df["value"]) == [pytest.approx(0.375)]
