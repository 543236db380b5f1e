"""A job whose TrainingImage is an OCI image, created with boto3 against `trainyard serve`:
pulled from a real registry on loopback (scripts/registry-up.sh, images from
scripts/test-images.sh), run in its container, described as SageMaker describes it."""

import json
import os
import tarfile

import pytest

from conftest import job, wait_status

REGISTRY = os.environ.get("TRAINYARD_TEST_REGISTRY")
pytestmark = pytest.mark.skipif(not REGISTRY, reason="no test registry (scripts/test.sh starts one)")


def test_an_image_job_through_boto3(server):
    sm = server.client()
    req = job("boto-image")
    req["AlgorithmSpecification"] = {
        "TrainingImage": f"{REGISTRY}/trainyard-test/byo:latest",
        "TrainingInputMode": "File",
        "MetricDefinitions": [],
    }
    sm.create_training_job(**req)
    d = wait_status(sm, "boto-image", {"Completed", "Failed"}, timeout=300)
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    assert d["AlgorithmSpecification"]["TrainingImage"] == f"{REGISTRY}/trainyard-test/byo:latest"
    training = [t for t in d["SecondaryStatusTransitions"] if t["Status"] == "Training"]
    assert training[0]["StatusMessage"] == "Training image download completed. Training in progress."
    model = server.home / "store/out/jobs/boto-image/output/model.tar.gz"
    with tarfile.open(model) as tar:
        out = json.loads(tar.extractfile("out.txt").read())
    assert out == {"argv": ["/usr/local/bin/train", "train"], "cwd": "/opt/ml/code"}
    logs = server.client("logs")
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                       logStreamNamePrefix="boto-image/")["logStreams"][0]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=stream["logStreamName"], startFromHead=True)["events"]
    assert any("byo: done" in e["message"] for e in events), events


def test_a_bad_reference_is_refused_at_creation(server):
    sm = server.client()
    req = job("boto-bad-image")
    req["AlgorithmSpecification"]["TrainingImage"] = "Not A Reference!"
    with pytest.raises(sm.exceptions.ClientError) as e:
        sm.create_training_job(**req)
    assert "trainingImage" in str(e.value) and "ValidationException" in str(e.value)
