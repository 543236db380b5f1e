#!/usr/bin/env python3
"""API load generator for bench/api.sh: CreateTrainingJob and DescribeTrainingJob latency
against `trainyard serve` on loopback, plus checks that nothing was lost or duplicated.

    api_load.py --endpoint http://127.0.0.1:PORT [--creates 200] [--describes 5000]
                [--concurrency 16] [--prefix NAME] [--wait-seconds 300]

Client: raw HTTP/1.1 with Python's http.client, one persistent (keep-alive) connection per
thread, requests shaped as the AWS JSON 1.1 protocol (X-Amz-Target, a SigV4-shaped
Authorization header whose credential scope the server records; the server does not verify
signatures yet). This keeps client overhead far below boto3's (signing, model validation,
parsing). Latency is measured per request from just before the request is written to just after
the whole response body is read, with time.perf_counter_ns. The pagination check is done twice:
with raw requests (MaxResults=7) and with boto3's own ListTrainingJobs paginator.

Phases (in order):
  create           N threads released together by a barrier, one CreateTrainingJob each
  describe-busy    DescribeTrainingJob round-robin over the created jobs while they run
  (wait until every job has ended)
  baseline         an unknown X-Amz-Target: the same server path without the store (the floor),
                   then describe-idle (no job running); both with C threads of this process,
                   then with C forked processes (no GIL between the clients), then describe-idle
                   with C/2 processes
  describe-seq     DescribeTrainingJob from a single client, one request at a time
With --server-pid, each phase also reports the server's CPU time per request.
Exit status 1 if any check fails.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDTRAINYARDBENCH/20261123/us-east-1/sagemaker/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64)


class Conn:
    def __init__(self, endpoint):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.c.connect()

    def call(self, target, body):
        data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            "X-Amz-Date": "20261123T000000Z",
            "Authorization": AUTH,
        }
        t0 = time.perf_counter_ns()
        self.c.request("POST", "/", body=data, headers=headers)
        r = self.c.getresponse()
        raw = r.read()
        t1 = time.perf_counter_ns()
        try:
            out = json.loads(raw) if raw else {}
        except ValueError:
            out = {"_raw": raw[:200].decode(errors="replace")}
        return r.status, out, (t1 - t0) / 1e6


def job_body(name):
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/trainyard-bench",
        "AlgorithmSpecification": {
            "TrainingImage": "host",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["true"],
        },
        "OutputDataConfig": {"S3OutputPath": "s3://trainyard-bench/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Phase:
    def __init__(self, name, threads):
        self.name, self.threads = name, threads
        self.lat, self.errors, self.wall = [], [], 0.0
        self.server_us = float("nan")

    def row(self):
        n = len(self.lat)
        return {
            "phase": self.name, "requests": n, "threads": self.threads,
            "errors": len(self.errors),
            "p50_ms": pct(self.lat, 50), "p90_ms": pct(self.lat, 90), "p99_ms": pct(self.lat, 99),
            "max_ms": max(self.lat) if self.lat else float("nan"),
            "req_per_s": n / self.wall if self.wall else float("nan"),
            "server_cpu_us_per_req": self.server_us,
        }


SERVER_PID = None


def server_cpu():
    """utime+stime of the server process in seconds (None if unknown)."""
    if not SERVER_PID:
        return None
    with open(f"/proc/{SERVER_PID}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def run_pool(endpoint, phase, threads, work, per_thread, procs=False):
    """Runs work(conn, i) for i in the given per-worker index lists, `threads` workers at once:
    threads of this process, or (procs=True) forked processes with one connection each, so
    that the client's GIL does not serialize the requests."""
    c0 = server_cpu()
    if procs:
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(threads + 1)
        q = ctx.Queue()

        def child(k):
            conn = Conn(endpoint)
            lat, errs = [], []
            barrier.wait()
            for i in per_thread[k]:
                ok, ms, err = work(conn, i)
                lat.append(ms)
                if not ok:
                    errs.append(err)
            q.put((lat, errs))

        ps = [ctx.Process(target=child, args=(k,)) for k in range(threads)]
        for p in ps:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        for _ in ps:
            lat, errs = q.get(timeout=600)
            phase.lat.extend(lat)
            phase.errors.extend(errs)
        phase.wall = time.perf_counter() - t0
        for p in ps:
            p.join()
    else:
        lock = threading.Lock()
        conns = [Conn(endpoint) for _ in range(threads)]
        barrier = threading.Barrier(threads + 1)

        def worker(k):
            lat, errs = [], []
            barrier.wait()
            for i in per_thread[k]:
                ok, ms, err = work(conns[k], i)
                lat.append(ms)
                if not ok:
                    errs.append(err)
            with lock:
                phase.lat.extend(lat)
                phase.errors.extend(errs)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        phase.wall = time.perf_counter() - t0
        for c in conns:
            c.c.close()
    c1 = server_cpu()
    if c0 is not None and phase.lat:
        phase.server_us = (c1 - c0) * 1e6 / len(phase.lat)


def split(n, threads):
    return [list(range(k, n, threads)) for k in range(threads)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--creates", type=int, default=200)
    ap.add_argument("--describes", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--prefix", default=f"bench{int(time.time())}")
    ap.add_argument("--wait-seconds", type=float, default=300)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--server-pid", type=int, help="to report the server's CPU per request")
    a = ap.parse_args()
    global SERVER_PID
    SERVER_PID = a.server_pid
    names = [f"{a.prefix}-{i:04d}" for i in range(a.creates)]
    phases, problems = [], []

    # --- create: all at once -------------------------------------------------------------
    created = {}
    results = {}

    def create(conn, i):
        st, out, ms = conn.call("SageMaker.CreateTrainingJob", job_body(names[i]))
        results[i] = (st, out)
        if st == 200 and out.get("TrainingJobArn"):
            created[names[i]] = out["TrainingJobArn"]
            return True, ms, None
        return False, ms, f"{names[i]}: HTTP {st} {out}"

    ph = Phase("create", a.creates)
    run_pool(a.endpoint, ph, a.creates, create, [[i] for i in range(a.creates)])
    phases.append(ph)
    unanswered = [names[i] for i in range(a.creates) if i not in results]
    unclear = [names[i] for i, (st, out) in results.items()
               if not (st == 200 and out.get("TrainingJobArn")) and not out.get("__type")]
    arns = list(created.values())
    if unanswered:
        problems.append(f"{len(unanswered)} creates got no answer")
    if unclear:
        problems.append(f"{len(unclear)} creates failed without an error type: {unclear[:3]}")
    if len(set(arns)) != len(arns):
        problems.append("duplicate ARNs returned")
    for n, arn in created.items():
        if not arn.endswith(f":training-job/{n}"):
            problems.append(f"ARN {arn} does not name {n}")
            break
    print(f"create: {len(created)} ARNs, {len(ph.errors)} errors"
          + (f" (first: {ph.errors[0]})" if ph.errors else ""), file=sys.stderr)
    ok_names = [n for n in names if n in created]
    if not ok_names:
        print("no job was created", file=sys.stderr)
        return 1

    def describer(conn, i):
        n = ok_names[i % len(ok_names)]
        st, out, ms = conn.call("SageMaker.DescribeTrainingJob", {"TrainingJobName": n})
        if st == 200 and out.get("TrainingJobName") == n:
            return True, ms, None
        return False, ms, f"{n}: HTTP {st} {str(out)[:200]}"

    # --- describe while the jobs run -----------------------------------------------------
    ph = Phase("describe-busy", a.concurrency)
    run_pool(a.endpoint, ph, a.concurrency, describer, split(a.describes, a.concurrency))
    phases.append(ph)

    # --- wait for every job to end -------------------------------------------------------
    conn = Conn(a.endpoint)
    t0 = time.monotonic()
    statuses = {}
    while time.monotonic() - t0 < a.wait_seconds:
        statuses = {}
        for n in ok_names:
            st, out, _ = conn.call("SageMaker.DescribeTrainingJob", {"TrainingJobName": n})
            statuses[n] = out.get("TrainingJobStatus", f"HTTP {st}")
        if all(s in ("Completed", "Failed", "Stopped") for s in statuses.values()):
            break
        time.sleep(1)
    waited = time.monotonic() - t0
    counts = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    print(f"jobs ended after {waited:.1f} s more: {counts}", file=sys.stderr)
    if counts.get("Completed", 0) != len(ok_names):
        problems.append(f"not every job Completed: {counts}")

    # --- the floor: a request that never reaches the store -------------------------------
    def unknown(conn, i):
        st, out, ms = conn.call("SageMaker.NoSuchOperation", {})
        return st == 400 and "UnknownOperation" in str(out.get("__type", "")), ms, f"HTTP {st} {out}"

    desc_n = split(a.describes, a.concurrency)
    for procs in (False, True):
        kind = "processes" if procs else "threads"
        ph = Phase(f"baseline: unknown op ({kind})", a.concurrency)
        run_pool(a.endpoint, ph, a.concurrency, unknown, desc_n, procs)
        phases.append(ph)
        ph = Phase(f"describe-idle ({kind})", a.concurrency)
        run_pool(a.endpoint, ph, a.concurrency, describer, desc_n, procs)
        phases.append(ph)
    half = max(1, a.concurrency // 2)
    ph = Phase("describe-idle (processes)", half)
    run_pool(a.endpoint, ph, half, describer, split(a.describes, half), True)
    phases.append(ph)
    ph = Phase("describe-seq", 1)
    run_pool(a.endpoint, ph, 1, describer, split(min(a.describes, 2000), 1))
    phases.append(ph)

    # --- listing: exactly the created jobs, each once --------------------------------------
    listed, token, pages = [], None, 0
    while pages < 1000:
        body = {"MaxResults": 7, "NameContains": a.prefix, "SortBy": "Name"}
        if token:
            body["NextToken"] = token
        st, out, _ = conn.call("SageMaker.ListTrainingJobs", body)
        pages += 1
        if st != 200:
            problems.append(f"ListTrainingJobs: HTTP {st} {out}")
            break
        listed += [s["TrainingJobName"] for s in out.get("TrainingJobSummaries", [])]
        token = out.get("NextToken")
        if not token:
            break
    if sorted(listed) != sorted(ok_names) or len(set(listed)) != len(listed):
        problems.append(f"raw pagination listed {len(listed)} ({len(set(listed))} distinct), "
                        f"expected {len(ok_names)}")
    print(f"list (raw, MaxResults=7): {len(listed)} jobs in {pages} pages, "
          f"{len(set(listed))} distinct", file=sys.stderr)
    try:
        import boto3
        sm = boto3.client("sagemaker", endpoint_url=a.endpoint, region_name="us-east-1",
                          aws_access_key_id="AKIDTRAINYARDBENCH", aws_secret_access_key="x" * 40)
        got = []
        for page in sm.get_paginator("list_training_jobs").paginate(NameContains=a.prefix):
            got += [s["TrainingJobName"] for s in page["TrainingJobSummaries"]]
        if sorted(got) != sorted(ok_names):
            problems.append(f"boto3 paginator listed {len(got)} ({len(set(got))} distinct)")
        print(f"list (boto3 paginator): {len(got)} jobs, {len(set(got))} distinct", file=sys.stderr)
    except ImportError:
        print("list (boto3 paginator): skipped, no boto3", file=sys.stderr)

    # --- report --------------------------------------------------------------------------
    rows = [p.row() for p in phases]
    print("| phase | requests | concurrent clients | errors | p50 ms | p90 ms | p99 ms | max ms | requests/s | server CPU µs/request |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['requests']} | {r['threads']} | {r['errors']} | {r['p50_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['req_per_s']:.0f} | "
              f"{r['server_cpu_us_per_req']:.0f} |")
    for p in phases:
        if p.name.startswith("describe") and p.errors:
            problems.append(f"{p.name}: {len(p.errors)} errors, first {p.errors[0]}")
    idle = next(r for r in rows if r["phase"] == "describe-idle (threads)")
    idlep = next(r for r in rows if r["phase"] == "describe-idle (processes)")
    print()
    print(f"created {len(created)}/{a.creates} jobs ({len(set(arns))} distinct ARNs), "
          f"{len(phases[0].errors)} create errors; "
          f"ListTrainingJobs returned {len(listed)} ({len(set(listed))} distinct)")
    for label, r in (("threads", idle), ("processes", idlep)):
        print(f"Describe p99 (idle, {a.concurrency} client {label}): {r['p99_ms']:.2f} ms "
              f"(target < 5 ms: {'met' if r['p99_ms'] < 5 else 'NOT met'})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"phases": rows, "problems": problems}, f, indent=1)
    if problems:
        print("CHECKS FAILED: " + "; ".join(problems))
        return 1
    print("checks: all passed (no create lost or duplicated, every job listed once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
