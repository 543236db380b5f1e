"""Multi-tenant ABAC end to end: STS AssumeRole with session tags, signed SageMaker calls, tag
chaining to the job, and every object access of every input mode checked against the shared
execution role's policy."""

import datetime
import json
import os
import time
import uuid

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, job, wait_status

ACCOUNT = "000000000000"
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/exec"
CREATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/job-creator"


# Each tenant creates only jobs tagged with its tenant, and sees and acts on only those.
STRICT_CREATOR = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["sagemaker:ListTrainingJobs", "iam:PassRole", "logs:*", "cloudwatch:*"], "Resource": "*"},
    {"Effect": "Allow", "Action": "sagemaker:CreateTrainingJob", "Resource": "*",
     "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}},
    {"Effect": "Allow", "Action": ["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:UpdateTrainingJob"],
     "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}},
]}


# File systems (filesystems.json) tagged with a tenant are mounted only by that tenant's jobs:
# the creator and the job's session both need the mount actions on them.
TENANT_FILE_SYSTEMS = {
    "Sid": "TenantFileSystems", "Effect": "Allow",
    "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "fsx:DescribeFileSystems"],
    "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}}


class EmbeddedData:
    """The tenants' shared bucket in the server's embedded store."""

    bucket = "shared-bucket"
    root = ""
    env = {}

    def __init__(self, home):
        self.home = home

    def put(self, key, body):
        path = self.home / "store" / self.bucket / self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)

    def exists(self, key):
        return (self.home / "store" / self.bucket / self.root / key).exists()

    def any_under(self, key):
        return (self.home / "store" / self.bucket / self.root / key).exists()


class GarageData:
    """The tenants' data on the real S3 server (garage) the test script started, under a
    prefix of its own; the trainyard server is pointed at it as its object store."""

    def __init__(self, home):
        self.bucket = os.environ["TRAINYARD_TEST_S3_BUCKET"]
        self.root = f"abac-{uuid.uuid4().hex[:12]}/"
        endpoint = os.environ["TRAINYARD_TEST_S3_ENDPOINT"]
        self.env = {"AWS_ENDPOINT_URL": endpoint, "TRAINYARD_STORE": "s3"}
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))

    def put(self, key, body):
        self.s3.put_object(Bucket=self.bucket, Key=self.root + key, Body=body.encode())

    def exists(self, key):
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.root + key)
            return True
        except ClientError:
            return False

    def any_under(self, key):
        return self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.root + key).get("KeyCount", 0) > 0

    def cleanup(self):
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.root):
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])


STORES = [
    "embedded",
    pytest.param("garage", marks=pytest.mark.skipif(
        not os.environ.get("TRAINYARD_TEST_S3_ENDPOINT"),
        reason="no real S3 server (scripts/test.sh starts garage and sets TRAINYARD_TEST_S3_ENDPOINT)")),
]


def iam_config(data, strict=False):
    tenant = "${aws:PrincipalTag/tenant-id}"
    tenant_data = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TenantObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": f"arn:aws:s3:::{data.bucket}/{data.root}{tenant}/*"},
            {"Sid": "TenantList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{data.bucket}",
             "Condition": {"StringLike": {"s3:prefix": [f"{data.root}{tenant}/*", f"{data.root}{tenant}/"]}}},
            TENANT_FILE_SYSTEMS,
        ],
    }
    user = lambda name, key, tenant: {
        "UserName": name,
        "AccessKeys": [{"AccessKeyId": key, "SecretAccessKey": f"secret-of-{name}-0123456789"}],
        "Tags": [{"Key": "tenant-id", "Value": tenant}],
        "Policies": [{"PolicyName": "assume", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": CREATOR_ROLE}]}}],
    }
    return {
        "AccountId": ACCOUNT,
        "Users": [user("alice", "AKIAALICE00000000001", "a"), user("bob", "AKIABOB000000000001", "b")],
        "Roles": [
            {"RoleName": "job-creator",
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                 "Effect": "Allow",
                 "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:iam::{ACCOUNT}:user/bob"]},
                 "Action": ["sts:AssumeRole", "sts:TagSession"],
                 "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}}]},
             "Policies": [{"PolicyName": "sagemaker", "PolicyDocument": STRICT_CREATOR if strict else {"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": ["sagemaker:*", "iam:PassRole", "logs:*"], "Resource": "*"},
                 TENANT_FILE_SYSTEMS]}}]},
            {"RoleName": "exec",
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                 "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                 "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
             "Policies": [{"PolicyName": "tenant-data", "PolicyDocument": tenant_data}]},
        ],
    }


@pytest.fixture(params=STORES)
def abac(home, request):
    data = EmbeddedData(home) if request.param == "embedded" else GarageData(home)
    (home / "iam.json").write_text(json.dumps(iam_config(data)))
    for tenant in ("a", "b"):
        data.put(f"{tenant}/train/data.csv", f"rows of tenant {tenant}\n")
    s = Server(home, env=data.env).start()
    s.data = data
    yield s
    s.stop()
    if hasattr(data, "cleanup"):
        data.cleanup()


def user_client(server, service, name):
    key = {"alice": "AKIAALICE00000000001", "bob": "AKIABOB000000000001"}[name]
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=f"secret-of-{name}-0123456789")


def tenant_session(server, user, tenant):
    sts = user_client(server, "sts", user)
    creds = sts.assume_role(RoleArn=CREATOR_ROLE, RoleSessionName=f"{user}-jobs", DurationSeconds=900,
                            Tags=[{"Key": "tenant-id", "Value": tenant}])["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    return boto3.client("sagemaker", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def tenant_job(data, name, tenant_in, tenant_out, mode="File", chaining=True):
    script = {
        "File": "cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen",
        "FastFile": "cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen",
        "Pipe": "cat /opt/ml/input/data/train_0 > /opt/ml/model/seen",
    }[mode]
    base = f"s3://{data.bucket}/{data.root}"
    req = job(name, script, data=f"{base}{tenant_in}/train/", output=f"{base}{tenant_out}/out")
    req["RoleArn"] = EXEC_ROLE
    req["AlgorithmSpecification"]["TrainingInputMode"] = mode
    if chaining:
        req["SessionChainingConfig"] = {"EnableSessionTagChaining": True}
    return req


@pytest.mark.parametrize("mode", ["File", "FastFile", "Pipe"])
def test_a_tenant_reads_and_writes_only_its_own_prefix(abac, mode):
    sm = tenant_session(abac, "alice", "a")
    name = f"a-own-{mode.lower()}"
    sm.create_training_job(**tenant_job(abac.data, name, "a", "a", mode))
    d = wait_status(sm, name, {"Completed", "Failed"})
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    assert "SessionChainingConfig" not in d, "not a member of DescribeTrainingJobResponse"
    assert abac.data.exists(f"a/out/{name}/output/model.tar.gz")

    # Reading the other tenant's prefix is refused when the job is created (its listing).
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**tenant_job(abac.data, f"a-reads-b-{mode.lower()}", "b", "a", mode))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "s3:ListBucket" in e.value.response["Error"]["Message"]


def test_writing_to_another_tenant_fails_the_job_naming_the_action(abac):
    sm = tenant_session(abac, "alice", "a")
    sm.create_training_job(**tenant_job(abac.data, "a-writes-b", "a", "b"))
    d = wait_status(sm, "a-writes-b", {"Completed", "Failed"})
    assert d["TrainingJobStatus"] == "Failed"
    denied = f"{abac.data.bucket}/{abac.data.root}b/out"
    assert "s3:PutObject" in d["FailureReason"] and denied in d["FailureReason"], d["FailureReason"]
    assert not abac.data.any_under("b/out")


def test_without_tag_chaining_the_job_has_no_tags_and_is_denied(abac):
    sm = tenant_session(abac, "alice", "a")
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**tenant_job(abac.data, "a-unchained", "a", "a", chaining=False))
    assert "s3:ListBucket" in e.value.response["Error"]["Message"]


def test_tenants_cannot_assume_each_others_tags(abac):
    sts = user_client(abac, "sts", "alice")
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=CREATOR_ROLE, RoleSessionName="sneaky", Tags=[{"Key": "tenant-id", "Value": "b"}])
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    ident = user_client(abac, "sts", "bob").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/bob" and ident["Account"] == ACCOUNT
    # Bob's tenant works on its own data.
    sm = tenant_session(abac, "bob", "b")
    sm.create_training_job(**tenant_job(abac.data, "b-own", "b", "b"))
    assert wait_status(sm, "b-own", {"Completed", "Failed"})["TrainingJobStatus"] == "Completed"


def test_unsigned_unknown_and_forged_requests_are_refused(abac):
    unsigned = boto3.client("sagemaker", endpoint_url=abac.url, region_name="us-east-1",
                            config=Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(ClientError) as e:
        unsigned.list_training_jobs()
    assert e.value.response["Error"]["Code"].startswith("MissingAuthenticationToken")
    unknown = boto3.client("sagemaker", endpoint_url=abac.url, region_name="us-east-1",
                           aws_access_key_id="AKIAUNKNOWN000000001", aws_secret_access_key="x")
    with pytest.raises(ClientError) as e:
        unknown.list_training_jobs()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    forged = boto3.client("sagemaker", endpoint_url=abac.url, region_name="us-east-1",
                          aws_access_key_id="AKIAALICE00000000001", aws_secret_access_key="wrong-secret")
    with pytest.raises(ClientError) as e:
        forged.list_training_jobs()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    sts = boto3.client("sts", endpoint_url=abac.url, region_name="us-east-1",
                       aws_access_key_id="AKIAALICE00000000001", aws_secret_access_key="wrong-secret")
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=CREATOR_ROLE, RoleSessionName="forged")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    # A tenant's user without the creation role may not create jobs at all.
    with pytest.raises(ClientError) as e:
        user_client(abac, "sagemaker", "alice").create_training_job(**tenant_job(abac.data, "direct", "a", "a"))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_a_warm_pool_is_reused_only_with_identical_session_tags(abac):
    alice, bob = tenant_session(abac, "alice", "a"), tenant_session(abac, "bob", "b")

    def pooled(sm, name, tenant):
        req = tenant_job(abac.data, name, tenant, tenant)
        req["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 600
        sm.create_training_job(**req)
        assert wait_status(sm, name, {"Completed", "Failed"})["TrainingJobStatus"] == "Completed"

    def pool_status(sm, name):
        for _ in range(100):
            status = sm.describe_training_job(TrainingJobName=name).get("WarmPoolStatus")
            if status and status["Status"] != "InUse":
                return status
            time.sleep(0.1)
        raise AssertionError(f"{name} has no settled warm pool status")

    pooled(alice, "a-pool-1", "a")
    assert pool_status(alice, "a-pool-1")["Status"] == "Available"
    # Same role, image and resources, other tenant's tags: a cold start, the pool stays.
    pooled(bob, "b-pool-1", "b")
    assert pool_status(alice, "a-pool-1")["Status"] == "Available"
    pooled(alice, "a-pool-2", "a")
    reused = pool_status(alice, "a-pool-1")
    assert reused["Status"] == "Reused" and reused["ReusedByJob"] == "a-pool-2"
    assert pool_status(bob, "b-pool-1")["Status"] == "Available"


@pytest.fixture
def strict(home):
    data = EmbeddedData(home)
    (home / "iam.json").write_text(json.dumps(iam_config(data, strict=True)))
    for tenant in ("a", "b"):
        data.put(f"{tenant}/train/data.csv", f"rows of tenant {tenant}\n")
    s = Server(home).start()
    s.data = data
    yield s
    s.stop()


def test_tenants_see_and_act_on_only_their_own_jobs(strict):
    alice, bob = tenant_session(strict, "alice", "a"), tenant_session(strict, "bob", "b")

    def tagged(name, tenant, tag):
        req = tenant_job(strict.data, name, tenant, tenant)
        req["AlgorithmSpecification"]["ContainerEntrypoint"] = ["sh", "-c", "echo secret-of-" + tenant + "; sleep 30"]
        req["Tags"] = [{"Key": "tenant-id", "Value": tag}]
        return req

    alice.create_training_job(**tagged("a-job", "a", "a"))
    bob.create_training_job(**tagged("b-job", "b", "b"))
    # A job must carry its creator's tenant tag.
    with pytest.raises(ClientError) as e:
        alice.create_training_job(**tagged("a-as-b", "a", "b"))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    wait_status(alice, "a-job", {"Training"})
    wait_status(bob, "b-job", {"Training"})

    assert [j["TrainingJobName"] for j in alice.list_training_jobs()["TrainingJobSummaries"]] == ["a-job"]
    assert [j["TrainingJobName"] for j in bob.list_training_jobs()["TrainingJobSummaries"]] == ["b-job"]
    for call in (lambda: bob.describe_training_job(TrainingJobName="a-job"),
                 lambda: bob.stop_training_job(TrainingJobName="a-job")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "training-job/a-job" in e.value.response["Error"]["Message"]
    assert alice.describe_training_job(TrainingJobName="a-job")["TrainingJobStatus"] == "InProgress"

    # Logs: a tenant reads its own job's stream, not the other's.
    creds = lambda sm: dict(aws_access_key_id=sm._request_signer._credentials.access_key,
                            aws_secret_access_key=sm._request_signer._credentials.secret_key,
                            aws_session_token=sm._request_signer._credentials.token)
    logs_b = boto3.client("logs", endpoint_url=strict.url, region_name="us-east-1", **creds(bob))
    group = "/aws/sagemaker/TrainingJobs"
    with pytest.raises(ClientError) as e:
        logs_b.describe_log_streams(logGroupName=group, logStreamNamePrefix="a-job/")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        logs_b.get_log_events(logGroupName=group, logStreamName="a-job/algo-1-0")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    streams = logs_b.describe_log_streams(logGroupName=group, logStreamNamePrefix="b-job/")["logStreams"]
    assert streams, "bob sees his own job's streams"

    # Metrics: the same rule, through the job named by the TrainingJobName dimension.
    cw_b = boto3.client("cloudwatch", endpoint_url=strict.url, region_name="us-east-1", **creds(bob))
    window = dict(Namespace=group, MetricName="loss", Period=60, Statistics=["Average"],
                  StartTime=datetime.datetime(2000, 1, 1), EndTime=datetime.datetime(2100, 1, 1))
    with pytest.raises(ClientError) as e:
        cw_b.get_metric_statistics(Dimensions=[{"Name": "TrainingJobName", "Value": "a-job"}], **window)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    own = cw_b.get_metric_statistics(Dimensions=[{"Name": "TrainingJobName", "Value": "b-job"}], **window)
    assert own["Datapoints"] == []
    listed = cw_b.list_metrics(Namespace=group)["Metrics"]
    assert all(m["Dimensions"][0]["Value"] != "a-job" for m in listed)

    alice.stop_training_job(TrainingJobName="a-job")
    bob.stop_training_job(TrainingJobName="b-job")
    wait_status(alice, "a-job", {"Stopped"})
    wait_status(bob, "b-job", {"Stopped"})


@pytest.fixture
def file_systems(home, tmp_path):
    """Two file systems, one per tenant, tagged in filesystems.json (issue 15 item 3)."""
    data = EmbeddedData(home)
    (home / "iam.json").write_text(json.dumps(iam_config(data)))
    for tenant in ("a", "b"):
        data.put(f"{tenant}/train/data.csv", f"rows of tenant {tenant}\n")
        root = tmp_path / f"fs-{tenant}"
        root.mkdir()
        (root / "secret.txt").write_text(f"file system of tenant {tenant}\n")
    (home / "filesystems.json").write_text(json.dumps({
        "fs-aaaa1111": {"path": str(tmp_path / "fs-a"), "tags": {"tenant-id": "a"}},
        "fs-bbbb2222": {"path": str(tmp_path / "fs-b"), "tags": {"tenant-id": "b"}},
    }))
    s = Server(home).start()
    s.data = data
    yield s
    s.stop()


def test_a_tenant_mounts_only_its_own_file_system(file_systems):
    sm = tenant_session(file_systems, "alice", "a")

    def with_fs(name, fs_id, mode="ro"):
        req = tenant_job(file_systems.data, name, "a", "a")
        req["AlgorithmSpecification"]["ContainerEntrypoint"] = [
            "sh", "-c", "cat /opt/ml/input/data/fs/secret.txt > /opt/ml/model/seen"]
        req["InputDataConfig"].append({"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {
            "FileSystemId": fs_id, "FileSystemType": "EFS", "FileSystemAccessMode": mode,
            "DirectoryPath": "/"}}})
        return req

    sm.create_training_job(**with_fs("a-own-fs", "fs-aaaa1111"))
    d = wait_status(sm, "a-own-fs", {"Completed", "Failed"})
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")

    for mode in ("ro", "rw"):
        with pytest.raises(ClientError) as e:
            sm.create_training_job(**with_fs(f"a-mounts-b-{mode}", "fs-bbbb2222", mode))
        error = e.value.response["Error"]
        assert error["Code"] == "AccessDeniedException", error
        assert "elasticfilesystem:ClientMount" in error["Message"], error
        assert "file-system/fs-bbbb2222" in error["Message"], error
    names = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert names == ["a-own-fs"], names
