"""Multi-tenant ABAC end to end: STS AssumeRole with session tags, signed SageMaker calls, tag
chaining to the job, and every object access of every input mode checked against the shared
execution role's policy."""

import json
import time

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, job, wait_status

ACCOUNT = "000000000000"
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/exec"
CREATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/job-creator"


def iam_config():
    tenant_data = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TenantObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": "arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*"},
            {"Sid": "TenantList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared-bucket",
             "Condition": {"StringLike": {"s3:prefix": ["${aws:PrincipalTag/tenant-id}/*", "${aws:PrincipalTag/tenant-id}/"]}}},
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
             "Policies": [{"PolicyName": "sagemaker", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": ["sagemaker:*", "iam:PassRole", "logs:*"], "Resource": "*"}]}}]},
            {"RoleName": "exec",
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                 "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                 "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
             "Policies": [{"PolicyName": "tenant-data", "PolicyDocument": tenant_data}]},
        ],
    }


@pytest.fixture
def abac(home):
    (home / "iam.json").write_text(json.dumps(iam_config()))
    for tenant in ("a", "b"):
        d = home / "store" / "shared-bucket" / tenant / "train"
        d.mkdir(parents=True)
        (d / "data.csv").write_text(f"rows of tenant {tenant}\n")
    s = Server(home).start()
    yield s
    s.stop()


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


def tenant_job(name, tenant_in, tenant_out, mode="File", chaining=True):
    script = {
        "File": "cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen",
        "FastFile": "cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen",
        "Pipe": "cat /opt/ml/input/data/train_0 > /opt/ml/model/seen",
    }[mode]
    req = job(name, script, data=f"s3://shared-bucket/{tenant_in}/train/", output=f"s3://shared-bucket/{tenant_out}/out")
    req["RoleArn"] = EXEC_ROLE
    req["AlgorithmSpecification"]["TrainingInputMode"] = mode
    if chaining:
        req["SessionChainingConfig"] = {"EnableSessionTagChaining": True}
    return req


@pytest.mark.parametrize("mode", ["File", "FastFile", "Pipe"])
def test_a_tenant_reads_and_writes_only_its_own_prefix(abac, mode):
    sm = tenant_session(abac, "alice", "a")
    name = f"a-own-{mode.lower()}"
    sm.create_training_job(**tenant_job(name, "a", "a", mode))
    d = wait_status(sm, name, {"Completed", "Failed"})
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    assert "SessionChainingConfig" not in d, "not a member of DescribeTrainingJobResponse"
    assert (abac.home / f"store/shared-bucket/a/out/{name}/output/model.tar.gz").exists()

    # Reading the other tenant's prefix is refused when the job is created (its listing).
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**tenant_job(f"a-reads-b-{mode.lower()}", "b", "a", mode))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "s3:ListBucket" in e.value.response["Error"]["Message"]


def test_writing_to_another_tenant_fails_the_job_naming_the_action(abac):
    sm = tenant_session(abac, "alice", "a")
    sm.create_training_job(**tenant_job("a-writes-b", "a", "b"))
    d = wait_status(sm, "a-writes-b", {"Completed", "Failed"})
    assert d["TrainingJobStatus"] == "Failed"
    assert "s3:PutObject" in d["FailureReason"] and "shared-bucket/b/out" in d["FailureReason"], d["FailureReason"]
    assert not (abac.home / "store/shared-bucket/b/out").exists()


def test_without_tag_chaining_the_job_has_no_tags_and_is_denied(abac):
    sm = tenant_session(abac, "alice", "a")
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**tenant_job("a-unchained", "a", "a", chaining=False))
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
    sm.create_training_job(**tenant_job("b-own", "b", "b"))
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
        user_client(abac, "sagemaker", "alice").create_training_job(**tenant_job("direct", "a", "a"))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
