"""S3 REST of the embedded store on the server's own address (issue 16): real boto3, the aws
CLI, the SageMaker SDKs v2 and v3, with and without iam.json. Data put through the endpoint is
the data jobs read."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import boto3.exceptions
import pytest
from botocore.exceptions import ClientError

from conftest import Server, wait_status

ACCOUNT = "000000000000"
# SDK v3 (sagemaker 3.x) conflicts with v2's pins, so scripts/test.sh installs it in a venv of
# its own; the ModelTrainer test runs there.
V3_PYTHON = Path(os.environ.get("TRAINYARD_SDK_V3_VENV", Path.home() / ".cache/trainyard/venv-sagemaker-v3")) / "bin/python"


def traversable(home):
    """Jobs run in a runc container whose user namespace must reach the home: pytest's 0700
    temporary directories would make the container probe fail and jobs run without /opt/ml."""
    for d in [home, *home.parents]:
        if d == Path("/tmp") or d == Path("/"):
            break
        d.chmod(0o755)


@pytest.fixture
def server(home):
    traversable(home)
    s = Server(home).start()
    yield s
    s.stop()


def s3_client(server, **kw):
    return server.client("s3", **kw)


def test_sts_answers_the_default_identity_without_iam_json(server):
    ident = server.client("sts").get_caller_identity()
    assert ident["Account"] == ACCOUNT
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    with pytest.raises(ClientError) as e:
        server.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/x", RoleSessionName="session")
    assert "iam.json" in str(e.value)


def test_buckets_objects_ranges_conditions_and_listings(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="ep-bucket")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="ep-bucket")
    assert e.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    s3.head_bucket(Bucket="ep-bucket", ExpectedBucketOwner=ACCOUNT)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="ep-bucket", ExpectedBucketOwner="111122223333")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.get_bucket_location(Bucket="ep-bucket")["LocationConstraint"] is None
    assert "ep-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    put = s3.put_object(Bucket="ep-bucket", Key="data/a.txt", Body=b"0123456789")
    # What was put is a plain file of the embedded store, where jobs read it.
    assert (server.home / "store/ep-bucket/data/a.txt").read_bytes() == b"0123456789"
    got = s3.get_object(Bucket="ep-bucket", Key="data/a.txt", Range="bytes=2-5")
    assert got["Body"].read() == b"2345" and got["ContentRange"] == "bytes 2-5/10"
    assert s3.get_object(Bucket="ep-bucket", Key="data/a.txt", Range="bytes=-3")["Body"].read() == b"789"
    head = s3.head_object(Bucket="ep-bucket", Key="data/a.txt")
    assert head["ContentLength"] == 10 and head["ETag"] == put["ETag"]
    # Conditional GETs.
    assert s3.get_object(Bucket="ep-bucket", Key="data/a.txt", IfMatch=put["ETag"])["Body"].read() == b"0123456789"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ep-bucket", Key="data/a.txt", IfMatch='"other"')
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ep-bucket", Key="data/a.txt", IfNoneMatch=put["ETag"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ep-bucket", Key="data/a.txt", IfModifiedSince=head["LastModified"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    # Conditional write: If-None-Match: * refuses to overwrite.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ep-bucket", Key="data/a.txt", Body=b"x", IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    # A wrong checksum is refused and leaves the object as it was.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ep-bucket", Key="data/a.txt", Body=b"new", ChecksumCRC32="AAAAAA==")
    assert e.value.response["Error"]["Code"] == "BadDigest"
    assert (server.home / "store/ep-bucket/data/a.txt").read_bytes() == b"0123456789"
    # Hostile keys are refused.
    for key in ("../escape", "a/../../b", "/abs"):
        with pytest.raises(ClientError):
            s3.put_object(Bucket="ep-bucket", Key=key, Body=b"x")
    assert not (server.home / "store/escape").exists()

    s3.copy_object(Bucket="ep-bucket", Key="copy/a.txt", CopySource={"Bucket": "ep-bucket", "Key": "data/a.txt"})
    assert s3.get_object(Bucket="ep-bucket", Key="copy/a.txt")["Body"].read() == b"0123456789"

    for i in range(7):
        s3.put_object(Bucket="ep-bucket", Key=f"many/{i:02d}", Body=b"x")
    s3.put_object(Bucket="ep-bucket", Key="many/sub/x", Body=b"x")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="ep-bucket", Prefix="many/", PaginationConfig={"PageSize": 3}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == [f"many/{i:02d}" for i in range(7)] + ["many/sub/x"]
    assert len(pages) == 3
    top = s3.list_objects_v2(Bucket="ep-bucket", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["copy/", "data/", "many/"]
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket="ep-bucket", Prefix="many/", Delimiter="/", PaginationConfig={"PageSize": 4}))
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == [f"many/{i:02d}" for i in range(7)]
    assert [c["Prefix"] for p in v1 for c in p.get("CommonPrefixes", [])] == ["many/sub/"]

    out = s3.delete_objects(Bucket="ep-bucket", Delete={"Objects": [{"Key": f"many/{i:02d}"} for i in range(7)]})
    assert len(out["Deleted"]) == 7
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="ep-bucket", Prefix="many/")["Contents"]] == ["many/sub/x"]
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="ep-bucket")
    assert e.value.response["Error"]["Code"] == "BucketNotEmpty"


def test_multipart_upload_file_and_the_aws_cli(server, tmp_path):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="big-bucket")
    data = os.urandom(21 * 1024 * 1024 + 5)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    s3.upload_file(str(src), "big-bucket", "in/big.bin")  # default TransferConfig: multipart over 8 MiB
    assert (server.home / "store/big-bucket/in/big.bin").read_bytes() == data
    assert not list((server.home / "store/.uploads").iterdir())
    dst = tmp_path / "back.bin"
    s3.download_file("big-bucket", "in/big.bin", str(dst))
    assert dst.read_bytes() == data
    # A multipart upload that is aborted leaves nothing.
    up = s3.create_multipart_upload(Bucket="big-bucket", Key="in/aborted")
    s3.upload_part(Bucket="big-bucket", Key="in/aborted", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 1024)
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="big-bucket", Key="in/aborted", UploadId=up["UploadId"])["Parts"]] == [1]
    s3.abort_multipart_upload(Bucket="big-bucket", Key="in/aborted", UploadId=up["UploadId"])
    with pytest.raises(ClientError):
        s3.head_object(Bucket="big-bucket", Key="in/aborted")

    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDCLI", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    aws = ["aws", "--endpoint-url", server.url, "s3"]
    subprocess.run(aws + ["cp", "--only-show-errors", str(src), "s3://big-bucket/cli/big.bin"], env=env, check=True)
    assert (server.home / "store/big-bucket/cli/big.bin").read_bytes() == data
    ls = subprocess.run(aws + ["ls", "--recursive", "s3://big-bucket/"], env=env, check=True, capture_output=True, text=True).stdout
    assert "cli/big.bin" in ls and "in/big.bin" in ls
    subprocess.run(aws + ["rm", "--only-show-errors", "s3://big-bucket/cli/big.bin"], env=env, check=True)
    assert not (server.home / "store/big-bucket/cli/big.bin").exists()


def test_data_put_through_the_endpoint_is_what_a_job_reads(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="job-data")
    s3.put_object(Bucket="job-data", Key="train/d.csv", Body=b"7,8,9\n")
    from conftest import job
    sm = server.client()
    sm.create_training_job(**job("ep-read", "cat /opt/ml/input/data/train/d.csv > /opt/ml/model/seen",
                                 data="s3://job-data/train/", output="s3://job-data/out"))
    d = wait_status(sm, "ep-read", {"Completed", "Failed"}, timeout=180)
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    key = "out/ep-read/output/model.tar.gz"
    assert s3.head_object(Bucket="job-data", Key=key)["ContentLength"] > 0


TENANT_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:aws:s3:::shared/${aws:PrincipalTag/tenant-id}/*"},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared",
     "Condition": {"StringLike": {"s3:prefix": ["${aws:PrincipalTag/tenant-id}/*", "${aws:PrincipalTag/tenant-id}/"]}}},
]}


@pytest.fixture
def tenants(home):
    user = lambda name, key, tenant: {
        "UserName": name, "AccessKeys": [{"AccessKeyId": key, "SecretAccessKey": f"secret-of-{name}-0123456789"}],
        "Tags": [{"Key": "tenant-id", "Value": tenant}],
        "Policies": [{"PolicyName": "data", "PolicyDocument": TENANT_POLICY},
                     {"PolicyName": "assume", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                         {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]}}],
    }
    (home / "iam.json").write_text(json.dumps({
        "AccountId": ACCOUNT,
        "Users": [user("alice", "AKIAALICE00000000001", "a"), user("bob", "AKIABOB000000000001", "b")],
        "Roles": [{"RoleName": "tenant",
                   "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                       "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                       "Action": ["sts:AssumeRole", "sts:TagSession"],
                       "Condition": {"StringEquals": {"aws:RequestTag/tenant-id": "${aws:PrincipalTag/tenant-id}"}}}]},
                   "Policies": [{"PolicyName": "data", "PolicyDocument": TENANT_POLICY}]}],
    }))
    for t in ("a", "b"):
        p = home / "store/shared" / t / "x.csv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"tenant {t}\n")
    traversable(home)
    s = Server(home).start()
    yield s
    s.stop()


def tenant_s3(server, name, key):
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=f"secret-of-{name}-0123456789")


def denied(call):
    with pytest.raises(ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == "AccessDenied", e.value.response
    return e.value


def test_abac_tenants_reach_only_their_prefix_through_the_endpoint(tenants, tmp_path):
    alice = tenant_s3(tenants, "alice", "AKIAALICE00000000001")
    assert alice.get_object(Bucket="shared", Key="a/x.csv")["Body"].read() == b"tenant a\n"
    alice.put_object(Bucket="shared", Key="a/new.csv", Body=b"mine")
    assert [o["Key"] for o in alice.list_objects_v2(Bucket="shared", Prefix="a/")["Contents"]] == ["a/new.csv", "a/x.csv"]
    # Multipart (upload_file over 8 MiB) is authorized as s3:PutObject on the key.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))
    alice.upload_file(str(big), "shared", "a/big.bin")
    assert (tenants.home / "store/shared/a/big.bin").read_bytes() == big.read_bytes()
    # Tenant b's prefix: no get, no put, no list, no copy out of it.
    denied(lambda: alice.get_object(Bucket="shared", Key="b/x.csv"))
    denied(lambda: alice.put_object(Bucket="shared", Key="b/evil.csv", Body=b"x"))
    denied(lambda: alice.list_objects_v2(Bucket="shared", Prefix="b/"))
    denied(lambda: alice.list_objects_v2(Bucket="shared"))
    denied(lambda: alice.copy_object(Bucket="shared", Key="a/stolen", CopySource={"Bucket": "shared", "Key": "b/x.csv"}))
    with pytest.raises(boto3.exceptions.S3UploadFailedError):
        alice.upload_file(str(big), "shared", "b/big.bin")
    assert not (tenants.home / "store/shared/b/evil.csv").exists()
    assert not (tenants.home / "store/shared/a/stolen").exists()
    assert not (tenants.home / "store/shared/b/big.bin").exists()
    # A wrong secret, an unknown key and an unsigned request are refused.
    wrong = boto3.client("s3", endpoint_url=tenants.url, region_name="us-east-1",
                         aws_access_key_id="AKIAALICE00000000001", aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as e:
        wrong.get_object(Bucket="shared", Key="a/x.csv")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{tenants.url}/shared/a/x.csv")
    assert e.value.code == 403
    # Presigned URLs are verified too.
    url = alice.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "a/x.csv"}, ExpiresIn=60)
    assert urllib.request.urlopen(url).read() == b"tenant a\n"
    bad = alice.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "b/x.csv"}, ExpiresIn=60)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad)
    assert e.value.code == 403
    # An STS session with tags: the session's tags decide, its token is checked.
    sts = boto3.client("sts", endpoint_url=tenants.url, region_name="us-east-1",
                       aws_access_key_id="AKIABOB000000000001", aws_secret_access_key="secret-of-bob-0123456789")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/tenant", RoleSessionName="bob-data",
                            Tags=[{"Key": "tenant-id", "Value": "b"}])["Credentials"]
    session = boto3.client("s3", endpoint_url=tenants.url, region_name="us-east-1",
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"])
    assert session.get_object(Bucket="shared", Key="b/x.csv")["Body"].read() == b"tenant b\n"
    denied(lambda: session.get_object(Bucket="shared", Key="a/x.csv"))
    tokenless = boto3.client("s3", endpoint_url=tenants.url, region_name="us-east-1",
                             aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
    with pytest.raises(ClientError):
        tokenless.get_object(Bucket="shared", Key="b/x.csv")


SDK_CONFIG = """SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""

MODEL_TRAINER = r'''
import sys, boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, SourceCode
# The SDK derives its default bucket name from STS with a hard-coded
# https://sts.REGION.amazonaws.com endpoint (sts_regional_endpoint), which AWS_ENDPOINT_URL does
# not override, so the default bucket's name is given; creating it goes through the endpoint.
session = Session(boto_session=boto3.Session(region_name="us-east-1"),
                  default_bucket="sagemaker-us-east-1-000000000000")
trainer = ModelTrainer(
    sagemaker_session=session,
    training_image="host",
    role="arn:aws:iam::000000000000:role/SageMakerRole",
    source_code=SourceCode(source_dir=sys.argv[1], entry_script="train.py"),
    compute=Compute(instance_type="ml.m5.large", instance_count=1),
    base_job_name="model-trainer",
)
trainer.train(input_data_config=[InputData(channel_name="train", data_source=sys.argv[2])], wait=True, logs=True)
job = trainer._latest_training_job
print("RESULT", job.training_job_name, job.training_job_status, job.model_artifacts.s3_model_artifacts)
'''

TRAIN_SCRIPT = r'''
import json, os
d = os.environ["SM_CHANNEL_TRAIN"]
rows = [open(os.path.join(d, f)).read() for f in sorted(os.listdir(d))]
print(f"loss={1.0 / (1 + len(rows)):.4f}")
json.dump({"rows": rows}, open("/opt/ml/model/model.json", "w"))
'''


def test_sdk_v3_model_trainer_end_to_end(server, tmp_path):
    assert V3_PYTHON.exists(), f"SDK v3 venv missing at {V3_PYTHON} (scripts/test.sh installs it)"
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TRAIN_SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1,2\n")
    (data / "b.csv").write_text("3,4\n")
    cfg = tmp_path / "sagemaker-config.yaml"
    cfg.write_text(SDK_CONFIG)
    script = tmp_path / "run.py"
    script.write_text(MODEL_TRAINER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="AKIDDUMMY", AWS_SECRET_ACCESS_KEY="dummy",
               AWS_DEFAULT_REGION="us-east-1", SAGEMAKER_USER_CONFIG_OVERRIDE=str(cfg))
    out = subprocess.run([str(V3_PYTHON), str(script), str(src), str(data)], env=env, capture_output=True,
                         text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")][-1]
    _, name, status, artifact = line.split()
    assert status == "Completed"
    assert artifact.startswith("s3://sagemaker-us-east-1-000000000000/")
    # The SDK created its default bucket and uploaded code and data through the endpoint.
    s3 = server.client("s3")
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="sagemaker-us-east-1-000000000000") for o in p.get("Contents", [])]
    assert any(k.endswith("train.py") for k in keys), keys
    assert any(k.endswith("a.csv") for k in keys), keys
    import io, tarfile
    bucket, key = artifact[len("s3://"):].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as t:
        model = json.load(t.extractfile("model.json"))
    assert model["rows"] == ["1,2\n", "3,4\n"]


def test_sdk_v2_estimator_uploads_its_source_dir_through_the_endpoint(server, tmp_path, monkeypatch):
    cfg = tmp_path / "sagemaker-config.yaml"
    cfg.write_text(SDK_CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(cfg))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    sagemaker = pytest.importorskip("sagemaker")
    from sagemaker.estimator import Estimator
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('loss=0.5')\n")
    (src / "helper.txt").write_text("shipped\n")
    boto_session = boto3.Session(aws_access_key_id="AKIDSDK", aws_secret_access_key="x", region_name="us-east-1")
    session = sagemaker.Session(boto_session=boto_session, default_bucket="sdk-v2-bucket")
    s3 = boto_session.client("s3")
    s3.create_bucket(Bucket="sdk-v2-bucket")
    s3.put_object(Bucket="sdk-v2-bucket", Key="data/d.csv", Body=b"1,2\n")
    est = Estimator(
        image_uri="host",
        role="arn:aws:iam::000000000000:role/trainyard-test",
        instance_count=1,
        instance_type="ml.m5.large",
        entry_point="train.py",
        source_dir=str(src),
        output_path="s3://sdk-v2-bucket/output",
        sagemaker_session=session,
        # The job reads the source archive the SDK uploaded, from its `code` channel.
        container_entry_point=["sh", "-c", "cd /opt/ml/input/data/code && tar xzf sourcedir.tar.gz && python3 train.py && cp helper.txt /opt/ml/model/"],
        max_run=600,
        disable_profiler=True,
    )
    submit = None

    def fit():
        est.fit({"train": "s3://sdk-v2-bucket/data/"}, wait=True, logs=False)

    # The SDK uploads sourcedir.tar.gz to s3://sdk-v2-bucket/<job>/source/ through the endpoint
    # and names it in the hyperparameters; the test hands it to the job as a channel too.
    orig = est._prepare_for_training

    def prepare(*a, **kw):
        orig(*a, **kw)
        nonlocal submit
        submit = est.uploaded_code.s3_prefix

    est._prepare_for_training = prepare
    orig_start = sagemaker.estimator._TrainingJob.start_new

    def start_new(estimator, inputs, experiment_config):
        inputs = dict(inputs, code=submit.rsplit("/", 1)[0] + "/")
        return orig_start(estimator, inputs, experiment_config)

    monkeypatch.setattr(sagemaker.estimator._TrainingJob, "start_new", start_new)
    fit()
    d = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    assert json.loads(d["HyperParameters"]["sagemaker_submit_directory"]) == submit
    bucket, key = submit[len("s3://"):].split("/", 1)
    assert (server.home / "store" / bucket / key).exists()
