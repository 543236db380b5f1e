"""The job sandbox attacked from inside (issue 15): a tenant's job under iam.json runs a probe
that tries everything a hostile job would (the server's secrets, the database, another tenant's
objects and job, the server's environment, the host's system directories, its network) and
writes what it could do into its model; the test downloads that report as the tenant and
asserts every attempt was refused. Also: a `setsid` daemon does not outlive its job, network
isolation without iam.json takes the store away, and a server under iam.json that cannot run
containers refuses jobs instead of running them unsandboxed."""

import io
import json
import os
import re
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import BIN, REPO, Server, job, wait_status
from test_abac import ACCOUNT, CREATOR_ROLE, EXEC_ROLE, EmbeddedData, iam_config, tenant_session

CAP_SYS_ADMIN = 21
CAP_NET_RAW = 13
# Docker's default set less CAP_NET_RAW (runner/container.rs CAPABILITIES).
ALLOWED_CAPS = 0x00000000A80425FB & ~(1 << CAP_NET_RAW)
ID_BASE = 1_000_000_000

# Runs as the job's first process; stdlib only (the host runtime's Python). Every attempt is
# recorded as {"ok": bool, ...}; the test asserts on them.
PROBE = r'''
import json, os, socket, subprocess, sys, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
report = {}

def attempt(name, fn):
    try:
        got = fn()
        report[name] = {"ok": True, "got": got if isinstance(got, (str, int, list)) else repr(got)[:300]}
    except BaseException as e:
        report[name] = {"ok": False, "err": repr(e)[:300]}

def read(path, limit=300):
    with open(path, "rb") as f:
        return f.read(65536).decode(errors="replace")[:limit]

def write(path):
    with open(path, "w") as f:
        f.write("written by a job")
    return path

for name, path in json.loads(hp["read"]).items():
    attempt("read:" + name, lambda p=path: read(p))
for name, path in json.loads(hp["list"]).items():
    attempt("list:" + name, lambda p=path: os.listdir(p))
for name, path in json.loads(hp["write"]).items():
    attempt("write:" + name, lambda p=path: write(p))

# The environment of every process it can see (its own included): no server secrets.
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
report["pids"] = pids
report["cmdlines"] = {}
leaks = []
for pid in pids:
    try:
        report["cmdlines"][str(pid)] = read("/proc/%d/cmdline" % pid).replace("\0", " ")
        env = open("/proc/%d/environ" % pid, "rb").read()
    except OSError:
        continue
    for marker in (b"TRAINYARD_", b"AWS_SECRET", b"AWS_ACCESS_KEY", "".join(json.loads(hp["secret_marker"])).encode()):
        if marker in env:
            leaks.append("%d:%s" % (pid, marker.decode()))
report["environ_leaks"] = leaks
report["ppid"] = os.getppid()
attempt("read:parent_environ", lambda: read("/proc/%d/environ" % os.getppid()))

report["uid"] = os.getuid()
report["uid_map"] = read("/proc/self/uid_map").split()
status = read("/proc/self/status", None)
report["cap_eff"] = int(next(l.split()[1] for l in status.splitlines() if l.startswith("CapEff")), 16)
report["cap_bnd"] = int(next(l.split()[1] for l in status.splitlines() if l.startswith("CapBnd")), 16)
attempt("mount_tmpfs", lambda: subprocess.run(["mount", "-t", "tmpfs", "x", "/mnt"], check=True, capture_output=True).returncode)

def connect(host, port):
    s = socket.create_connection((host, int(port)), timeout=3)
    s.close()
    return "%s:%s" % (host, port)

for name, (host, port) in json.loads(hp["connect"]).items():
    attempt("connect:" + name, lambda h=host, p=port: connect(h, p))
gateway = open("/etc/hosts").read().split("algo-1")[0].split()[-1].rsplit(".", 1)[0] + ".1"
report["bridge"] = gateway
attempt("connect:bridge_listener", lambda: connect(gateway, hp["listener_port"]))
attempt("connect:bridge_server", lambda: connect(gateway, hp["server_port"]))
report["interfaces"] = sorted(n for _, n in socket.if_nameindex())
# IPv6: a link-local address on eth0 would reach this machine's end of the bridge.
report["ipv6_addresses"] = read("/proc/net/if_inet6", None).splitlines() if os.path.exists("/proc/net/if_inet6") else []
report["ipv6_routes"] = [l for l in read("/proc/net/ipv6_route", None).splitlines() if not l.rstrip().endswith(" lo")] if os.path.exists("/proc/net/ipv6_route") else []
attempt("connect:ipv6_all_nodes", lambda: socket.create_connection(("ff02::1%eth0", int(hp["listener_port"])), timeout=3).close())
# Frames of its own onto the link (CAP_NET_RAW) would bypass the routing table.
attempt("packet_socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())
attempt("raw_ip_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
report["routes"] = read("/proc/net/route", None).splitlines()[1:]

os.makedirs("/opt/ml/model", exist_ok=True)
json.dump(report, open("/opt/ml/model/report.json", "w"), indent=1)
print("probe done")
'''


def traversable(path):
    for d in [path, *path.parents]:
        if d in (Path("/tmp"), Path("/")):
            break
        d.chmod(0o755)


class CodeDirServer(Server):
    """A server whose working directory (the host runtime's code directory, bound read-only
    into every job) holds its home: the home must be masked inside."""

    def __init__(self, code, home, env=None):
        super().__init__(home, env=env)
        self.code = code

    def start(self):
        env = dict(os.environ, TRAINYARD_HOME=str(self.home), TRAINYARD_STOP_GRACE_SECONDS="2", **self.env)
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--capacity", "4"],
            cwd=self.code, env=env, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        assert "listening on http://" in line, f"server did not start: {line!r}"
        self.url = line.strip().rsplit(" ", 1)[-1]
        self.port = int(self.url.rsplit(":", 1)[-1])
        return self


def sandbox_iam(data):
    """test_abac's tenants, with the creator role also allowed to read its tenant's objects
    (the test downloads the job's report as the tenant)."""
    cfg = iam_config(data)
    creator = next(r for r in cfg["Roles"] if r["RoleName"] == "job-creator")
    creator["Policies"].append({"PolicyName": "own-objects", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{data.bucket}/" + "${aws:PrincipalTag/tenant-id}/*", f"arn:aws:s3:::{data.bucket}"]}]}})
    return cfg


@pytest.fixture
def tenants(tmp_path):
    code = tmp_path / "code"
    home = code / "home"
    home.mkdir(parents=True)
    traversable(home)
    data = EmbeddedData(home)
    (home / "iam.json").write_text(json.dumps(sandbox_iam(data)))
    for tenant in ("a", "b"):
        data.put(f"{tenant}/train/data.csv", f"SECRET-ROWS-OF-{tenant}\n")
    (code / "probe.py").write_text(PROBE)
    s = CodeDirServer(code, home).start()
    s.data = data
    yield s
    s.stop()


def tenant_s3(server, user, tenant):
    sts = boto3.client("sts", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id={"alice": "AKIAALICE00000000001", "bob": "AKIABOB000000000001"}[user],
                       aws_secret_access_key=f"secret-of-{user}-0123456789")
    c = sts.assume_role(RoleArn=CREATOR_ROLE, RoleSessionName=f"{user}-s3", DurationSeconds=900,
                        Tags=[{"Key": "tenant-id", "Value": tenant}])["Credentials"]
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def tenant_req(name, tenant, argv, hyper=None):
    req = job(name, output=f"s3://shared-bucket/{tenant}/out")
    req["RoleArn"] = EXEC_ROLE
    req["AlgorithmSpecification"]["ContainerEntrypoint"] = argv
    req["Tags"] = [{"Key": "tenant-id", "Value": tenant}]
    req["SessionChainingConfig"] = {"EnableSessionTagChaining": True}
    req["HyperParameters"] = hyper or {}
    return req


def model_file(s3, tenant, name, member):
    body = s3.get_object(Bucket="shared-bucket", Key=f"{tenant}/out/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as t:
        return t.extractfile(member).read()


def host_addresses():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [a.split("/")[0] for a in re.findall(r"inet (\S+)", out) if not a.startswith(("127.", "169.254."))]


def test_a_tenants_job_cannot_reach_the_server_the_store_the_host_or_other_jobs(tenants):
    home, data = tenants.home, tenants.data
    # Container ids and cgroups are named after jobs, machine-wide: names unique per run.
    victim, prober = f"b-victim-{uuid.uuid4().hex[:8]}", f"a-probe-{uuid.uuid4().hex[:8]}"
    # Tenant B's job, running, with a secret in its tree.
    sm_b = tenant_session(tenants, "bob", "b")
    sm_b.create_training_job(**tenant_req(victim, "b", ["sh", "-c", "echo SECRET-OF-B-JOB > /opt/ml/model/secret; exec sleep 120"]))
    b_secret = home / "jobs" / victim / "algo-1/model/secret"
    deadline = time.time() + 60
    while not b_secret.exists():
        assert time.time() < deadline, "b's job never wrote its secret"
        time.sleep(0.2)

    # Something on the host listening on every address: the job must not reach it either.
    listener = socket.socket(socket.AF_INET6)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind(("::", 0))
    listener.listen(16)
    lport = listener.getsockname()[1]

    targets = {
        "iam_json": home / "iam.json",
        "database": home / "trainyard.db",
        "b_objects": home / "store/shared-bucket/b/train/data.csv",
        "a_objects_directly": home / "store/shared-bucket/a/train/data.csv",
        "b_job_tree": b_secret,
        "b_job_log": home / "jobs" / victim / "logs/algo-1.log",
        "server_log": home / "server.log",
        "shadow": "/etc/shadow",
        "proc1_environ_of_host": "/proc/1/environ",  # inside: the job's own first process
        "root_home": "/root/.bash_history",
    }
    listings = {"home": home, "store": home / "store", "jobs": home / "jobs", "root": "/root",
                "run_trainyard": "/run/trainyard", "run_netns": "/run/netns"}
    writes = {"etc": "/etc/trainyard-probe", "etc_cron": "/etc/cron.d/trainyard-probe",
              "usr": "/usr/trainyard-probe", "usr_local_bin": "/usr/local/bin/trainyard-probe",
              "code_dir": tenants.code / "written-by-job", "home": home / "written-by-job",
              "b_store": home / "store/shared-bucket/b/written-by-job", "root_fs": "/trainyard-probe"}
    connect = {"server": ["127.0.0.1", tenants.port], "host_listener_loopback": ["127.0.0.1", lport],
               "metadata": ["169.254.169.254", 80]}
    for i, a in enumerate(host_addresses()):
        connect[f"host_address_{i}"] = [a, lport]
        connect[f"host_address_{i}_server"] = [a, tenants.port]
    if os.environ.get("TRAINYARD_TEST_S3_ENDPOINT"):
        u = os.environ["TRAINYARD_TEST_S3_ENDPOINT"].split("//")[1].split("/")[0]
        connect["garage"] = [u.split(":")[0], int(u.split(":")[1])]
    hyper = {
        "read": json.dumps({k: str(v) for k, v in targets.items()}),
        "list": json.dumps({k: str(v) for k, v in listings.items()}),
        "write": json.dumps({k: str(v) for k, v in writes.items()}),
        "connect": json.dumps(connect),
        "listener_port": str(lport),
        "server_port": str(tenants.port),
        # iam.json's secret keys (split: the hyperparameters are in the job's environment too)
        "secret_marker": json.dumps(["secret-", "of-"]),
    }
    sm_a = tenant_session(tenants, "alice", "a")
    sm_a.create_training_job(**tenant_req(prober, "a", ["python3", "probe.py"], hyper))
    d = wait_status(sm_a, prober, {"Completed", "Failed"}, timeout=180)
    sm_b.stop_training_job(TrainingJobName=victim)
    listener.close()
    wait_status(sm_b, victim, {"Stopped", "Failed", "Completed"}, timeout=60)
    log = (home / "jobs" / prober / "logs/platform.log").read_text() if (home / "jobs" / prober / "logs/platform.log").exists() else ""
    assert d["TrainingJobStatus"] == "Completed", (d.get("FailureReason"), log)

    report = json.loads(model_file(tenant_s3(tenants, "alice", "a"), "a", prober, "report.json"))
    print(json.dumps(report, indent=1))  # shown with -s, and on failure
    allowed = {"read:proc1_environ_of_host", "read:parent_environ"}  # its own processes
    reached = {k: v for k, v in report.items()
               if ":" in k and not k.startswith("list:") and isinstance(v, dict) and v.get("ok") and k not in allowed}
    # Listings: the home is an empty mask; /root shows at most the mount points of the Python
    # installation bound inside (pyenv's); the rest does not exist inside.
    lists = {k[5:]: v for k, v in report.items() if k.startswith("list:")}
    assert lists["home"].get("got", []) == [], lists["home"]
    assert set(lists["root"].get("got", [])) <= {".pyenv", ".local"}, lists["root"]
    for k in ("store", "jobs", "run_trainyard", "run_netns"):
        assert not lists[k]["ok"], (k, lists[k])
    assert not reached, f"the job could do what it must not: {json.dumps(reached, indent=1)}"
    for k in ("mount_tmpfs", "packet_socket", "raw_ip_socket"):
        assert not report[k]["ok"], (k, report[k])
    # Nothing of the server's or the store's secrets in any environment it can see.
    assert report["environ_leaks"] == [], report["environ_leaks"]
    # Its own processes only: it is pid 1 of its own namespace.
    assert report["cmdlines"].get("1", "").startswith("python3 probe.py"), report["cmdlines"]
    assert all("probe.py" in c or c.startswith("mount") for c in report["cmdlines"].values()), report["cmdlines"]
    assert max(report["pids"]) < 100, report["pids"]
    # uid 0 inside is an unprivileged uid outside.
    assert report["uid"] == 0
    assert report["uid_map"][:2] == ["0", str(ID_BASE)], report["uid_map"]
    # No capability beyond Docker's default set, and never CAP_SYS_ADMIN.
    assert report["cap_eff"] & ~ALLOWED_CAPS == 0, hex(report["cap_eff"])
    assert report["cap_bnd"] & ~ALLOWED_CAPS == 0, hex(report["cap_bnd"])
    assert not report["cap_eff"] & (1 << CAP_SYS_ADMIN)
    # Its network: loopback and its eth0 on the job bridge, no default route.
    assert report["interfaces"] == ["eth0", "lo"], report["interfaces"]
    assert not any(r.split()[1] == "00000000" for r in report["routes"]), report["routes"]
    assert report["ipv6_addresses"] == [] and report["ipv6_routes"] == [], (report["ipv6_addresses"], report["ipv6_routes"])
    # And on the host, nothing was written.
    for path in writes.values():
        assert not Path(path).exists(), path


def host_processes_with(marker):
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                pass
    return found


def test_a_setsid_daemon_does_not_outlive_its_job(tenants):
    marker = f"trainyard-daemon-{uuid.uuid4().hex}"
    sm = tenant_session(tenants, "alice", "a")
    name, stopped = f"a-daemon-{marker[-8:]}", f"a-daemon-stop-{marker[-8:]}"
    # The daemon's argv carries the marker (the job cannot know its host pid).
    daemon = lambda m: f"setsid python3 -c 'import time; time.sleep(600)' {m} </dev/null &"
    script = (f"{daemon(marker)} "
              "sleep 1; echo daemon started; cat /proc/[0-9]*/cmdline | tr '\\0' ' ' > /opt/ml/model/procs")
    sm.create_training_job(**tenant_req(name, "a", ["sh", "-c", script]))
    d = wait_status(sm, name, {"Completed", "Failed"}, timeout=120)
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    procs = model_file(tenant_s3(tenants, "alice", "a"), "a", name, "procs").decode()
    assert f"python3 -c import time; time.sleep(600) {marker}" in procs, f"the daemon never ran: {procs}"
    deadline = time.time() + 10
    while host_processes_with(marker):
        assert time.time() < deadline, f"the daemon outlived its job: pids {host_processes_with(marker)}"
        time.sleep(0.2)

    # And when the job is stopped while the daemon and the main process run.
    marker2 = marker + "-stopped"
    script = f"{daemon(marker2)} echo started; exec sleep 600"
    sm.create_training_job(**tenant_req(stopped, "a", ["sh", "-c", script]))
    wait_status(sm, stopped, {"Training"})
    deadline = time.time() + 30
    while not host_processes_with(marker2):
        assert time.time() < deadline, "the daemon never started"
        time.sleep(0.2)
    sm.stop_training_job(TrainingJobName=stopped)
    d = wait_status(sm, stopped, {"Stopped", "Failed", "Completed"}, timeout=60)
    assert d["TrainingJobStatus"] == "Stopped", d
    deadline = time.time() + 10
    while host_processes_with(marker2):
        assert time.time() < deadline, f"the daemon outlived its stopped job: {host_processes_with(marker2)}"
        time.sleep(0.2)


def test_under_iam_json_a_machine_without_containers_refuses_jobs_at_submission(tmp_path):
    home = tmp_path
    data = EmbeddedData(home)
    (home / "iam.json").write_text(json.dumps(sandbox_iam(data)))
    data.put("a/train/data.csv", "rows\n")
    s = Server(home, env={"TRAINYARD_ISOLATION": "off"}).start()
    try:
        sm = tenant_session(s, "alice", "a")
        with pytest.raises(ClientError) as e:
            sm.create_training_job(**tenant_req("a-unsandboxed", "a", ["sh", "-c", "id > /opt/ml/model/id"]))
        msg = e.value.response["Error"]["Message"]
        assert "TRAINYARD_ISOLATION=off" in msg and "container" in msg, msg
        assert not (home / "jobs/a-unsandboxed").exists()
        with pytest.raises(ClientError) as e:
            sm.describe_training_job(TrainingJobName="a-unsandboxed")
        assert e.value.response["Error"]["Code"] == "ValidationException"
    finally:
        s.stop()


GARAGE = pytest.mark.skipif(
    not os.environ.get("TRAINYARD_TEST_S3_ENDPOINT"),
    reason="no real S3 server (scripts/test.sh starts garage and sets TRAINYARD_TEST_S3_ENDPOINT)")

NET_PROBE = r'''
import json, os, socket, urllib.request
ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "%s"
host, port = ep.split("//")[1].split("/")[0].split(":")
r = {"endpoint_env": "AWS_ENDPOINT_URL_S3" in os.environ,
     "credentials": sorted(k for k in os.environ if k.startswith("AWS_") and ("KEY" in k or "TOKEN" in k))}
try:
    socket.create_connection((host, int(port)), timeout=3).close()
    r["reached"] = True
except OSError as e:
    r["reached"] = False
    r["err"] = repr(e)
json.dump(r, open("/opt/ml/model/net.json", "w"))
'''


@GARAGE
def test_network_isolation_takes_the_store_away_from_a_single_tenant_job(tmp_path):
    endpoint = os.environ["TRAINYARD_TEST_S3_ENDPOINT"]
    bucket = os.environ["TRAINYARD_TEST_S3_BUCKET"]
    prefix = f"sandbox-{uuid.uuid4().hex[:12]}"
    traversable(tmp_path)
    s = Server(tmp_path, env={"AWS_ENDPOINT_URL": endpoint, "TRAINYARD_STORE": "s3"}).start()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    try:
        sm = s.client()
        results = {}
        run = uuid.uuid4().hex[:8]
        for kind, isolated in (("net-open", False), ("net-isolated", True)):
            name = f"{kind}-{run}"
            req = job(name, output=f"s3://{bucket}/{prefix}/out")
            # The probe comes as a hyperparameter (entrypoint members are at most 256 long).
            req["AlgorithmSpecification"]["ContainerEntrypoint"] = [
                "python3", "-c", "import json; exec(json.load(open('/opt/ml/input/config/hyperparameters.json'))['probe'])"]
            req["HyperParameters"] = {"probe": NET_PROBE % endpoint}
            if isolated:
                req["EnableNetworkIsolation"] = True
            sm.create_training_job(**req)
            d = wait_status(sm, name, {"Completed", "Failed"}, timeout=120)
            assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/out/{name}/output/model.tar.gz")["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(body)) as t:
                results[kind] = json.loads(t.extractfile("net.json").read())
        assert results["net-open"]["reached"], results
        assert results["net-open"]["endpoint_env"], results
        assert "AWS_SECRET_ACCESS_KEY" in results["net-open"]["credentials"], results
        assert not results["net-isolated"]["reached"], results
        assert not results["net-isolated"]["endpoint_env"], results
        assert results["net-isolated"]["credentials"] == [], results
    finally:
        s.stop()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
