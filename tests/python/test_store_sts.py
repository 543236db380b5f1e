"""ABAC with the object store's own STS (`TRAINYARD_STORE_STS`): a job's data plane signs with
temporary credentials from `AssumeRole` of its execution role (with its session tags), so the
store enforces the role's policies itself, not only trainyard.

The store and its STS are moto in server mode with request authentication on (it checks
signatures and evaluates IAM policies once its first setup calls are done). trainyard's own
policy for the role is deliberately permissive here, so a denial can only come from the store.
"""

import json
import os
import socket
import subprocess
import time

import boto3
import pytest

from conftest import Server, job, wait_status

ACCOUNT = "123456789012"  # moto's account
SETUP_CALLS = 8  # exactly the calls of moto_store() before authentication starts

pytestmark = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v moto_server"], capture_output=True).returncode != 0,
    reason="moto_server is not installed (tests/python/requirements.txt)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def moto_store(tmp_path):
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(["moto_server", "-p", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
    doc = lambda *st: json.dumps({"Version": "2012-10-17", "Statement": list(st)})
    iam.create_user(UserName="trainyard")
    key = iam.create_access_key(UserName="trainyard")["AccessKey"]
    iam.put_user_policy(UserName="trainyard", PolicyName="service", PolicyDocument=doc(
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession", "s3:*"], "Resource": "*"}))
    iam.create_role(RoleName="exec", AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/trainyard"},
         "Action": ["sts:AssumeRole", "sts:TagSession"]}))
    # The store's policy for the role: tenant a's prefix only.
    iam.put_role_policy(RoleName="exec", PolicyName="tenant-a", PolicyDocument=doc(
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::shared/a/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared"}))
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="a/data.csv", Body=b"rows of a\n")
    s3.put_object(Bucket="shared", Key="b/data.csv", Body=b"rows of b\n")
    yield {"url": url, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    proc.terminate()
    proc.wait(timeout=10)


def iam_json():
    user = lambda name, key, tenant: {
        "UserName": name, "Tags": [{"Key": "tenant-id", "Value": tenant}],
        "AccessKeys": [{"AccessKeyId": key, "SecretAccessKey": f"secret-of-{name}-0123456789"}],
        "Policies": [{"PolicyName": "assume", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
             "Resource": f"arn:aws:iam::{ACCOUNT}:role/job-creator"}]}}]}
    return {"AccountId": ACCOUNT,
            "Users": [user("alice", "AKIAALICE00000000001", "a"), user("bob", "AKIABOB000000000001", "b")],
            "Roles": [
                {"RoleName": "job-creator", "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:user/alice"]},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                    "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}}]},
                 "Policies": [{"PolicyName": "sm", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                     {"Effect": "Allow", "Action": ["sagemaker:*", "iam:PassRole"], "Resource": "*"}]}}]},
                {"RoleName": "exec", "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
                 # trainyard's own check lets every object through: the store decides.
                 "Policies": [{"PolicyName": "all", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                     {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]}]}


def tenant_session(server, user, tenant):
    sts = boto3.client("sts", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id="AKIAALICE00000000001", aws_secret_access_key="secret-of-alice-0123456789")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/job-creator", RoleSessionName="jobs",
                        Tags=[{"Key": "tenant-id", "Value": tenant}])["Credentials"]
    return boto3.client("sagemaker", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def store_job(name, tenant):
    # Prefixes without a `/`: moto miscomputes the signature of a query holding one.
    req = job(name, "cat /opt/ml/input/data/train/data.csv > /opt/ml/model/seen",
              data=f"s3://shared/{tenant}", output="s3://shared/a/out")
    req["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/exec"
    req["SessionChainingConfig"] = {"EnableSessionTagChaining": True}
    return req


def server(home, moto, sts):
    (home / "iam.json").write_text(json.dumps(iam_json()))
    env = {"TRAINYARD_STORE": "s3", "AWS_ENDPOINT_URL": moto["url"], "AWS_ACCESS_KEY_ID": moto["key"],
           "AWS_SECRET_ACCESS_KEY": moto["secret"], "AWS_REGION": "us-east-1", "TRAINYARD_ACCOUNT_ID": ACCOUNT}
    if sts:
        env["TRAINYARD_STORE_STS"] = moto["url"]
    return Server(home, env=env).start()


def test_the_store_enforces_the_job_role_through_its_own_sts(home, moto_store):
    s = server(home, moto_store, sts=True)
    try:
        sm = tenant_session(s, "alice", "a")
        sm.create_training_job(**store_job("own-prefix", "a"))
        d = wait_status(sm, "own-prefix", {"Completed", "Failed"})
        assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
        sm.create_training_job(**store_job("other-prefix", "b"))
        d = wait_status(sm, "other-prefix", {"Completed", "Failed"})
        assert d["TrainingJobStatus"] == "Failed"
        assert "AccessDenied" in d["FailureReason"] and "b/data.csv" in d["FailureReason"], d["FailureReason"]
    finally:
        s.stop()


def test_without_the_store_sts_only_trainyards_check_applies(home, moto_store):
    s = server(home, moto_store, sts=False)
    try:
        sm = tenant_session(s, "alice", "a")
        sm.create_training_job(**store_job("unchecked", "b"))
        d = wait_status(sm, "unchecked", {"Completed", "Failed"})
        assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    finally:
        s.stop()
