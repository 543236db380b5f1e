"""Fixtures for the API tests: a real `trainyard serve` process on a free loopback port, with
its own TRAINYARD_HOME, and real boto3 clients pointed at it."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With TRAINYARD_TEST_STRICT set (scripts/test.sh sets it unless an environment is skipped
    on purpose), a test skipped because its environment is missing fails instead: a suite
    that did not run must not look green."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("TRAINYARD_TEST_STRICT") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in strict mode (TRAINYARD_TEST_STRICT): {report.longrepr}"
BIN = os.environ.get("TRAINYARD_BIN", str(REPO / "target" / "debug" / "trainyard"))


class Server:
    """One trainyard server process; can be killed and restarted on the same home."""

    def __init__(self, home: Path, capacity: int = 4, port: int = 0, env=None):
        self.home = home
        self.capacity = capacity
        self.port = port
        self.env = env or {}
        self.proc = None
        self.log = open(home / "server.log", "ab")

    def start(self):
        env = dict(os.environ, TRAINYARD_HOME=str(self.home), TRAINYARD_STOP_GRACE_SECONDS="2", **self.env)
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--capacity", str(self.capacity)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.log,
        )
        line = self.proc.stdout.readline().decode()
        assert "listening on http://" in line, f"server did not start: {line!r}"
        self.url = line.strip().rsplit(" ", 1)[-1]
        self.port = int(self.url.rsplit(":", 1)[-1])
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, service="sagemaker", **kw):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="AKIDTRAINYARDTEST", aws_secret_access_key="not-checked-yet", **kw,
        )


@pytest.fixture
def home(tmp_path):
    return tmp_path


@pytest.fixture
def server(home):
    s = Server(home).start()
    yield s
    s.stop()


def job(name, script="echo hello; echo 'loss=0.25'", *, sleep=None, count=1, data=None, output="s3://out/jobs"):
    """A CreateTrainingJob request running `sh -c script` on the host image."""
    if sleep is not None:
        script = f"echo started; exec sleep {sleep}"
    req = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/trainyard-test",
        "AlgorithmSpecification": {
            "TrainingImage": "host",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        },
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "HyperParameters": {"epochs": "2"},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    if data:
        req["InputDataConfig"] = [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": data, "S3DataDistributionType": "FullyReplicated"}}}]
    return req


def wait_status(sm, name, statuses, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = sm.describe_training_job(TrainingJobName=name)
        if d["TrainingJobStatus"] in statuses or d["SecondaryStatus"] in statuses:
            return d
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {statuses}: {d['TrainingJobStatus']}/{d['SecondaryStatus']}")


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path
