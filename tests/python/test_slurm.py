"""Jobs placed on a real Slurm cluster (slurmctld + slurmd on this machine, started by
scripts/slurm-up.sh) through `TRAINYARD_EXECUTOR=slurm`: each host is a Slurm task running
`trainyard host run`, which takes its channels straight from the object store (garage), so
nothing is shared with the server but the network.
"""

import io
import json
import os
import subprocess
import tarfile
import time
import uuid

import boto3
import pytest

from conftest import Server, job, wait_status

pytestmark = [
    pytest.mark.skipif(not os.environ.get("SLURM_CONF"),
                       reason="no Slurm cluster (scripts/test.sh starts one with scripts/slurm-up.sh)"),
    pytest.mark.skipif(not os.environ.get("TRAINYARD_TEST_S3_ENDPOINT"),
                       reason="nodes read channels from a real S3 server (scripts/test.sh starts garage)"),
]

TINY = {"instance_types": {
    "ml.slurm.tiny": {"vcpus": 1, "memory_mib": 256, "slurm_partition": "debug"},
    # More CPUs per host than the one-node test cluster has.
    "ml.slurm.huge": {"vcpus": 64, "memory_mib": 256, "slurm_partition": "debug"},
}}


class Data:
    def __init__(self):
        self.bucket = os.environ.get("TRAINYARD_TEST_S3_BUCKET", "trainyard-test")
        self.root = f"slurm-{uuid.uuid4().hex[:10]}"
        self.s3 = boto3.client("s3", endpoint_url=os.environ["TRAINYARD_TEST_S3_ENDPOINT"], region_name="us-east-1")

    def uri(self, key):
        return f"s3://{self.bucket}/{self.root}/{key}"

    def put(self, key, body):
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.root}/{key}", Body=body)

    def model(self, name):
        body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.root}/out/{name}/output/model.tar.gz")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as t:
            return {m.name: t.extractfile(m).read().decode("latin-1") for m in t.getmembers() if m.isfile()}

    def cleanup(self):
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.root + "/"):
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])


@pytest.fixture
def cluster(home):
    (home / "instance-types.json").write_text(json.dumps(TINY))
    data = Data()
    env = {"TRAINYARD_EXECUTOR": "slurm", "TRAINYARD_STORE": "s3",
           "AWS_ENDPOINT_URL": os.environ["TRAINYARD_TEST_S3_ENDPOINT"],
           "TRAINYARD_SLURM_SCRATCH": str(home / "node-scratch")}
    s = Server(home, capacity=8, env=env).start()
    s.data = data
    s.env = env
    yield s
    s.stop()
    for name in slurm_jobs():
        subprocess.run(["scancel", "--name", name], capture_output=True)
    data.cleanup()


def slurm_jobs():
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith("trainyard-")]


def slurm_job(name, home):
    return (home / "jobs" / name / "slurm" / "job_id").read_text().strip()


def slurm_fields(job_id):
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


def slurm_state(job_id):
    return slurm_fields(job_id).get("JobState")


def request(data, name, script, count=1, mode="File", sharded=False):
    req = job(name, script, count=count, output=data.uri("out"))
    req["ResourceConfig"]["InstanceType"] = "ml.slurm.tiny"
    req["AlgorithmSpecification"]["TrainingInputMode"] = mode
    req["InputDataConfig"] = [{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": data.uri("train/"),
        "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated"}}}]
    return req


def platform_log(home, name):
    return (home / "jobs" / name / "logs" / "platform.log").read_text()


def test_a_one_host_file_job_runs_as_a_slurm_task(cluster, home):
    d = cluster.data
    d.put("train/a.csv", b"1,2\n3,4\n")
    sm = cluster.client()
    script = ("cat /opt/ml/input/data/train/a.csv > /opt/ml/model/seen.csv; "
              "echo \"$SLURM_JOB_ID\" > /opt/ml/model/slurm-id; hostname > /opt/ml/model/host; echo loss=0.125")
    sm.create_training_job(**request(d, "slurm-one", script))
    desc = wait_status(sm, "slurm-one", {"Completed", "Failed"}, timeout=180)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    model = d.model("slurm-one")
    assert model["seen.csv"] == "1,2\n3,4\n"
    assert model["slurm-id"].strip() == slurm_job("slurm-one", home), "ran inside the Slurm allocation"
    assert model["host"].strip() == "algo-1"
    assert {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]} == {"loss": 0.125}
    statuses = [t["Status"] for t in desc["SecondaryStatusTransitions"]]
    assert "Training" in statuses and statuses[-1] == "Completed", statuses
    assert "Submitted to Slurm as job" in platform_log(home, "slurm-one")
    # The instance-type table's row shaped the allocation.
    fields = slurm_fields(slurm_job("slurm-one", home))
    assert fields["Partition"] == "debug" and fields["NumTasks"] == "1" and fields["MinMemoryCPU"] == "256M", fields
    logs = (home / "jobs" / "slurm-one" / "logs" / "algo-1.log").read_text()
    assert "loss=0.125" in logs


@pytest.mark.skipif(not os.environ.get("TRAINYARD_TEST_REGISTRY"),
                    reason="no test registry (scripts/test.sh starts one)")
def test_an_image_runs_on_the_slurm_nodes(cluster, home):
    """The node pulls the job's image into its own store and runs it, as the local executor
    does."""
    d = cluster.data
    d.put("train/a.csv", b"1,2\n")
    sm = cluster.client()
    req = request(d, "slurm-image", "unused")
    req["AlgorithmSpecification"] = {
        "TrainingImage": f"{os.environ['TRAINYARD_TEST_REGISTRY']}/trainyard-test/byo:latest",
        "TrainingInputMode": "File",
    }
    sm.create_training_job(**req)
    desc = wait_status(sm, "slurm-image", {"Completed", "Failed"}, timeout=300)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    out = json.loads(d.model("slurm-image")["out.txt"])
    assert out == {"argv": ["/usr/local/bin/train", "train"], "cwd": "/opt/ml/code"}
    logs = (home / "jobs" / "slurm-image" / "logs" / "algo-1.log").read_text()
    assert "env SM_CHANNEL_TRAIN=/opt/ml/input/data/train" in logs


def test_two_hosts_with_a_sharded_pipe_channel(cluster, home):
    d = cluster.data
    for i in range(4):
        d.put(f"train/part-{i}", f"record {i}\n".encode())
    sm = cluster.client()
    script = ("h=$(hostname); m=/opt/ml/model; cat /opt/ml/input/data/train_0 > $m/$h.txt; "
              "cp /opt/ml/input/config/resourceconfig.json $m/$h.rc.json; "
              "getent hosts algo-1 algo-2 > $m/$h.hosts; head -c 3000000 /dev/urandom > $m/$h.bin")
    sm.create_training_job(**request(d, "slurm-two", script, count=2, mode="Pipe", sharded=True))
    desc = wait_status(sm, "slurm-two", {"Completed", "Failed"}, timeout=240)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    model = d.model("slurm-two")
    got = sorted(model["algo-1.txt"].splitlines() + model["algo-2.txt"].splitlines())
    assert got == [f"record {i}" for i in range(4)], model
    assert model["algo-1.txt"] and model["algo-2.txt"], "each host streamed its own shard"
    # Several MiB per host travel to the server as streamed tarballs.
    assert len(model["algo-1.bin"]) == len(model["algo-2.bin"]) == 3000000
    rc = json.loads(model["algo-2.rc.json"])
    assert rc["current_host"] == "algo-2" and rc["hosts"] == ["algo-1", "algo-2"]
    assert "algo-1" in model["algo-2.hosts"] and "algo-2" in model["algo-2.hosts"]


def test_stop_becomes_scancel(cluster, home):
    d = cluster.data
    d.put("train/a", b"x")
    sm = cluster.client()
    sm.create_training_job(**request(d, "slurm-stop", "echo started; exec sleep 300"))
    wait_status(sm, "slurm-stop", {"Training"}, timeout=120)
    job_id = slurm_job("slurm-stop", home)
    sm.stop_training_job(TrainingJobName="slurm-stop")
    desc = wait_status(sm, "slurm-stop", {"Stopped", "Failed", "Completed"}, timeout=120)
    assert desc["TrainingJobStatus"] == "Stopped", desc.get("FailureReason")
    assert f"scancel --signal=TERM {job_id}" in platform_log(home, "slurm-stop")
    assert slurm_state(job_id) not in ("RUNNING", "PENDING")


def test_a_killed_task_fails_the_job_naming_the_host(cluster, home):
    d = cluster.data
    d.put("train/a", b"x")
    sm = cluster.client()
    # algo-2's `trainyard host run` (the task itself) dies of SIGKILL. The job cannot do it
    # from inside its container (it sees only its own processes), so the test does.
    script = "echo started; exec sleep 60"
    sm.create_training_job(**request(d, "slurm-killed", script, count=2))
    wait_status(sm, "slurm-killed", {"Training"}, timeout=120)
    deadline = time.time() + 60
    killed = False
    while not killed and time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"host" in cmd and b"run" in cmd and b"slurm-killed" in cmd and b"SLURM_PROCID=1" in env:
                os.kill(int(pid), 9)
                killed = True
        time.sleep(0.2)
    assert killed, "algo-2's task was never found"
    desc = wait_status(sm, "slurm-killed", {"Completed", "Failed", "Stopped"}, timeout=180)
    assert desc["TrainingJobStatus"] == "Failed"
    reason = desc["FailureReason"]
    assert "algo-2" in reason and "Slurm job" in reason, reason


def test_the_server_restarts_while_a_slurm_job_runs(cluster, home):
    d = cluster.data
    d.put("train/a", b"x")
    sm = cluster.client()
    sm.create_training_job(**request(d, "slurm-restart", "sleep 6; echo done > /opt/ml/model/done"))
    wait_status(sm, "slurm-restart", {"Training"}, timeout=120)
    cluster.kill9()
    time.sleep(1)
    cluster.start()
    sm = cluster.client()
    desc = wait_status(sm, "slurm-restart", {"Completed", "Failed"}, timeout=180)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert "re-attached to Slurm job" in platform_log(home, "slurm-restart")
    assert d.model("slurm-restart")["done"].strip() == "done"


def test_a_host_larger_than_the_cluster_fails_instead_of_waiting_for_ever(cluster, home):
    d = cluster.data
    d.put("train/a", b"x")
    sm = cluster.client()
    req = request(d, "slurm-huge", "true")
    req["ResourceConfig"]["InstanceType"] = "ml.slurm.huge"
    sm.create_training_job(**req)
    desc = wait_status(sm, "slurm-huge", {"Completed", "Failed"}, timeout=120)
    assert desc["TrainingJobStatus"] == "Failed"
    reason = desc["FailureReason"]
    # Either Slurm refuses the submission, or (as Slurm 22.05 does) accepts it and would keep it
    # pending for ever, which trainyard ends.
    assert ("CapacityError" in reason and "PartitionConfig" in reason) or "submitting to Slurm" in reason, reason
    assert not [n for n in slurm_jobs() if n == "trainyard-slurm-huge"], "nothing left queued"


@pytest.fixture
def abac_cluster(home):
    """The Slurm executor with iam.json: tenants' jobs run on the nodes with the server's grant."""
    from test_abac import GarageData, iam_config

    (home / "instance-types.json").write_text(json.dumps(TINY))
    data = GarageData(home)
    (home / "iam.json").write_text(json.dumps(iam_config(data)))
    for tenant in ("a", "b"):
        data.put(f"{tenant}/train/data.csv", f"rows of tenant {tenant}\n")
    env = dict(data.env, TRAINYARD_EXECUTOR="slurm", TRAINYARD_SLURM_SCRATCH=str(home / "node-scratch"))
    s = Server(home, capacity=8, env=env).start()
    s.data = data
    yield s
    s.stop()
    for name in slurm_jobs():
        subprocess.run(["scancel", "--name", name], capture_output=True)
    data.cleanup()


def test_abac_holds_on_the_slurm_nodes(abac_cluster, home):
    from test_abac import tenant_job, tenant_session

    d = abac_cluster.data
    sm = tenant_session(abac_cluster, "alice", "a")
    # The job reads its tenant's data on the node, and its processes get no store credentials
    # there (they would bypass the checks).
    script = ("cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen; "
              "echo \"$SLURM_JOB_ID\" > /opt/ml/model/slurm-id; "
              "if [ -n \"$AWS_SECRET_ACCESS_KEY\" ]; then echo leaked > /opt/ml/model/credentials; fi")
    req = tenant_job(d, "slurm-abac-own", "a", "a")
    req["AlgorithmSpecification"]["ContainerEntrypoint"] = ["sh", "-c", script]
    req["ResourceConfig"]["InstanceType"] = "ml.slurm.tiny"
    sm.create_training_job(**req)
    desc = wait_status(sm, "slurm-abac-own", {"Completed", "Failed"}, timeout=180)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    body = d.s3.get_object(Bucket=d.bucket, Key=f"{d.root}a/out/slurm-abac-own/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as t:
        model = {m.name: t.extractfile(m).read().decode() for m in t.getmembers() if m.isfile()}
    assert model["seen"] == "rows of tenant a\n"
    assert model["slurm-id"].strip() == slurm_job("slurm-abac-own", home), "ran inside the Slurm allocation"
    assert "credentials" not in model, "the store's credentials reached the job's processes"

    # The node itself refuses what the job's principal may not do: restoring checkpoints from
    # the other tenant's prefix is checked on the node, against the server's grant.
    req = tenant_job(d, "slurm-abac-ckpt", "a", "a")
    req["ResourceConfig"]["InstanceType"] = "ml.slurm.tiny"
    req["CheckpointConfig"] = {"S3Uri": f"s3://{d.bucket}/{d.root}b/ckpt/"}
    sm.create_training_job(**req)
    desc = wait_status(sm, "slurm-abac-ckpt", {"Completed", "Failed"}, timeout=180)
    assert desc["TrainingJobStatus"] == "Failed"
    assert "s3:ListBucket" in desc["FailureReason"] and "checkpoints" in desc["FailureReason"], desc["FailureReason"]
    assert slurm_job("slurm-abac-ckpt", home), "it ran on Slurm"
