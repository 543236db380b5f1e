"""kill -9 of the server: no accepted job is lost, none stays InProgress for ever."""

import os
import threading
import time

from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ConnectionClosedError, ReadTimeoutError

from conftest import Server, job, wait_status


def alive_with_env(marker: bytes):
    """Pids of processes whose environment contains `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def test_kill_during_a_running_job_and_a_burst_of_creates(home):
    server = Server(home, capacity=2).start()
    try:
        run_crash_test(server)
    finally:
        server.stop()


def run_crash_test(server):
    sm = server.client(config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
    # The process scan below sees the whole machine: the name must be this run's alone.
    running = f"crash-running-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    sm.create_training_job(**job(running, sleep=120))
    wait_status(sm, running, {"Training"}, timeout=120)
    marker = f"TRAINING_JOB_NAME={running}\0".encode()
    # Training is recorded just before the process is spawned: wait for it to exist.
    deadline = time.time() + 30
    while not alive_with_env(marker) and time.time() < deadline:
        time.sleep(0.05)
    assert alive_with_env(marker), "the training process should be running"

    accepted, lock = [], threading.Lock()

    def burst(i):
        name = f"burst-{i:03d}"
        try:
            sm.create_training_job(**job(name))
            with lock:
                accepted.append(name)
        except (ClientError, EndpointConnectionError, ConnectionClosedError, ReadTimeoutError):
            pass

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    server.kill9()
    for t in threads:
        t.join()

    server.start()
    sm = server.client()
    d = sm.describe_training_job(TrainingJobName=running)
    assert d["TrainingJobStatus"] == "Failed"
    assert "server restarted" in d["FailureReason"]
    deadline = time.time() + 10
    while alive_with_env(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive_with_env(marker), "the orphaned training process must be killed"

    # Every accepted create survived, and every job reaches a terminal status.
    listed = {s["TrainingJobName"] for p in sm.get_paginator("list_training_jobs").paginate() for s in p["TrainingJobSummaries"]}
    assert set(accepted) <= listed, f"lost: {set(accepted) - listed}"
    for name in listed:
        d = wait_status(sm, name, {"Completed", "Failed", "Stopped"}, timeout=120)
        transitions = d["SecondaryStatusTransitions"]
        for a, b in zip(transitions, transitions[1:]):
            assert a["EndTime"] == b["StartTime"], f"{name}: history has a gap"


def test_kill_while_jobs_are_queued(home):
    server = Server(home, capacity=1).start()
    try:
        run_queued_test(server)
    finally:
        server.stop()


def run_queued_test(server):
    sm = server.client()
    sm.create_training_job(**job("q-run", sleep=60))
    wait_status(sm, "q-run", {"Training"}, timeout=120)
    sm.create_training_job(**job("q-wait"))
    wait_status(sm, "q-wait", {"Pending"}, timeout=120)
    server.kill9()
    server.start()
    sm = server.client()
    assert sm.describe_training_job(TrainingJobName="q-run")["TrainingJobStatus"] == "Failed"
    d = wait_status(sm, "q-wait", {"Completed"}, timeout=180)
    assert d["TrainingJobStatus"] == "Completed", "a queued job runs after the restart"


def mounts_under(path):
    """Mount points at or below `path` (this test shares the server's mount namespace)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" ")[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == str(path) or p.startswith(str(path) + "/")]


def test_kill_during_a_fastfile_job_leaves_no_mount_or_host_tree(home):
    """After kill -9, the FastFile mount of the killed job answers ENOTCONN until someone
    detaches it: the restarted server does, and removes the job's host trees, keeping its logs."""
    data = home / "store" / "crash-bucket" / "ff"
    data.mkdir(parents=True)
    (data / "a.csv").write_text("1,2\n")
    server = Server(home, capacity=2).start()
    try:
        sm = server.client()
        name = f"crash-fastfile-{os.getpid()}"
        req = job(name, "ls /opt/ml/input/data/train; exec sleep 120", data="s3://crash-bucket/ff/")
        req["AlgorithmSpecification"]["TrainingInputMode"] = "FastFile"
        sm.create_training_job(**req)
        wait_status(sm, name, {"Training"}, timeout=120)
        job_dir = home / "jobs" / name
        deadline = time.time() + 30
        while not mounts_under(job_dir) and time.time() < deadline:
            time.sleep(0.05)
        assert mounts_under(job_dir), "the FastFile channel should be mounted"
        server.kill9()
        assert mounts_under(job_dir), "a killed server leaves its mount behind"

        server.start()
        d = server.client().describe_training_job(TrainingJobName=name)
        assert d["TrainingJobStatus"] == "Failed"
        assert mounts_under(job_dir) == [], "the restarted server detaches dead mounts"
        assert sorted(p.name for p in job_dir.iterdir()) == ["logs"], "host trees are removed"
    finally:
        server.stop()
