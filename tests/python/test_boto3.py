"""The SageMaker training API as boto3 sees it: shapes, waiters, errors, listing."""

import datetime
import time

import pytest
from botocore.exceptions import ClientError, WaiterError

from conftest import Server, job, wait_status


def test_create_wait_describe(server):
    sm = server.client()
    arn = sm.create_training_job(**job("boto-basic"))["TrainingJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:training-job/boto-basic"
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="boto-basic", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    d = sm.describe_training_job(TrainingJobName="boto-basic")
    assert d["TrainingJobStatus"] == "Completed" and d["SecondaryStatus"] == "Completed"
    # botocore parsed these as timestamps and numbers: the response matches its model.
    for key in ("CreationTime", "TrainingStartTime", "TrainingEndTime", "LastModifiedTime"):
        assert isinstance(d[key], datetime.datetime), key
    assert d["TrainingEndTime"] >= d["TrainingStartTime"] >= d["CreationTime"]
    assert isinstance(d["TrainingTimeInSeconds"], int) and d["TrainingTimeInSeconds"] >= 1
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]] == ["Starting", "Training", "Uploading", "Completed"]
    assert all(isinstance(t["StartTime"], datetime.datetime) for t in d["SecondaryStatusTransitions"])
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == "s3://out/jobs/boto-basic/output/model.tar.gz"
    assert d["HyperParameters"] == {"epochs": "2"}
    assert d["StoppingCondition"]["MaxRuntimeInSeconds"] == 300
    assert d["FinalMetricDataList"][0]["MetricName"] == "loss"
    assert d["FinalMetricDataList"][0]["Value"] == pytest.approx(0.25)
    assert "Tags" not in d, "Tags are not a member of DescribeTrainingJobResponse"
    assert d["ResponseMetadata"]["RequestId"]
    assert (server.home / "store/out/jobs/boto-basic/output/model.tar.gz").exists()


def test_failed_job_and_waiter_failure(server):
    sm = server.client()
    sm.create_training_job(**job("boto-fails", "echo 'no GPU found' > /opt/ml/output/failure; exit 1"))
    with pytest.raises(WaiterError):
        sm.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName="boto-fails", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    d = sm.describe_training_job(TrainingJobName="boto-fails")
    assert d["TrainingJobStatus"] == "Failed"
    assert d["FailureReason"] == "no GPU found"


def test_stop_a_running_job(server):
    sm = server.client()
    sm.create_training_job(**job("boto-stop", sleep=60))
    wait_status(sm, "boto-stop", {"Training"})
    assert sm.stop_training_job(TrainingJobName="boto-stop")["ResponseMetadata"]["HTTPStatusCode"] == 200
    d = sm.describe_training_job(TrainingJobName="boto-stop")
    assert d["TrainingJobStatus"] in ("Stopping", "Stopped")
    sm.stop_training_job(TrainingJobName="boto-stop")  # stopping twice is a no-op
    d = wait_status(sm, "boto-stop", {"Stopped"})
    assert d["SecondaryStatus"] == "Stopped"
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]][-2:] == ["Stopping", "Stopped"]
    with pytest.raises(ClientError) as e:
        sm.stop_training_job(TrainingJobName="boto-stop")
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_every_error_type_maps_to_its_exception_class(server):
    sm = server.client()
    with pytest.raises(ClientError) as e:
        sm.describe_training_job(TrainingJobName="does-not-exist")
    assert e.value.response["Error"] == {"Code": "ValidationException", "Message": "Requested resource not found."}
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.stop_training_job(TrainingJobName="does-not-exist")
    sm.create_training_job(**job("dup"))
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_training_job(**job("dup"))
    with pytest.raises(sm.exceptions.ResourceLimitExceeded):
        sm.create_training_job(**job("too-big", count=server.capacity + 1))
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**job("bad_name"))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "Value 'bad_name' at 'trainingJobName'" in e.value.response["Error"]["Message"]
    bad = job("bad-limit")
    bad["StoppingCondition"]["MaxRuntimeInSeconds"] = 2_419_201
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**bad)
    assert "stoppingCondition.maxRuntimeInSeconds" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        sm.create_training_job(**job("no-data", data="s3://empty-bucket/nothing/"))
    assert "No S3 objects found under S3 URL" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        sm.list_training_jobs(NextToken="forged")
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_list_filters_sorting_and_pagination(server):
    sm = server.client()
    names = [f"list-{i:02d}" for i in range(23)]
    mid = None
    for i, n in enumerate(names):
        if i == 11:
            # botocore sends timestamps in whole seconds: leave a gap around the cutoff.
            time.sleep(1.1)
            mid = datetime.datetime.now(datetime.timezone.utc)
            time.sleep(1.1)
        sm.create_training_job(**job(n))
    sm.create_training_job(**job("other-fails", "exit 3"))
    for n in names + ["other-fails"]:
        wait_status(sm, n, {"Completed", "Failed"})
    pages = sm.get_paginator("list_training_jobs").paginate(NameContains="LIST", PaginationConfig={"PageSize": 10})
    got = [s["TrainingJobName"] for p in pages for s in p["TrainingJobSummaries"]]
    assert got == names, "ascending creation order by default, all pages, no duplicates"
    first = sm.list_training_jobs(MaxResults=10)
    assert len(first["TrainingJobSummaries"]) == 10 and "NextToken" in first
    desc = sm.list_training_jobs(SortBy="Name", SortOrder="Descending", MaxResults=3)
    assert [s["TrainingJobName"] for s in desc["TrainingJobSummaries"]] == ["other-fails", "list-22", "list-21"]
    failed = sm.list_training_jobs(StatusEquals="Failed")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in failed] == ["other-fails"]
    s = failed[0]
    assert isinstance(s["CreationTime"], datetime.datetime) and s["SecondaryStatus"] == "Failed"
    after = sm.list_training_jobs(CreationTimeAfter=mid, NameContains="list", MaxResults=100)["TrainingJobSummaries"]
    assert [x["TrainingJobName"] for x in after] == names[11:]
    assert sm.list_training_jobs(WarmPoolStatusEquals="Available")["TrainingJobSummaries"] == []


def test_capacity_queues_jobs_as_pending(home):
    server = Server(home, capacity=1).start()
    try:
        sm = server.client()
        sm.create_training_job(**job("cap-a", sleep=2))
        wait_status(sm, "cap-a", {"Training"})
        sm.create_training_job(**job("cap-b"))
        d = wait_status(sm, "cap-b", {"Pending"})
        assert "Waiting for capacity" in d["SecondaryStatusTransitions"][-1]["StatusMessage"]
        d = wait_status(sm, "cap-b", {"Completed"}, timeout=30)
        assert [t["Status"] for t in d["SecondaryStatusTransitions"]][:3] == ["Starting", "Pending", "Starting"]
    finally:
        server.stop()


def test_logs_through_the_cloudwatch_operations(server):
    sm = server.client()
    sm.create_training_job(**job("logged", "for i in 1 2 3; do echo line $i; done"))
    wait_status(sm, "logged", {"Completed"})
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="logged/")
    name = streams["logStreams"][0]["logStreamName"]
    assert name.startswith("logged/algo-1-")
    ev = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=name, startFromHead=True)
    assert [e["message"] for e in ev["events"]] == ["line 1", "line 2", "line 3"]
    again = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=name, nextToken=ev["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == ev["nextForwardToken"]


def test_metrics_through_cloudwatch_as_training_job_analytics_reads_them(server):
    sm = server.client()
    script = "for v in 0.9 0.5 0.25; do echo loss=$v; echo acc=$v; sleep 0.2; done"
    req = job("metered", script)
    req["AlgorithmSpecification"]["MetricDefinitions"].append({"Name": "acc", "Regex": "acc=([0-9.]+)"})
    sm.create_training_job(**req)
    d = wait_status(sm, "metered", {"Completed"})
    cw = server.client("cloudwatch")
    ns, dims = "/aws/sagemaker/TrainingJobs", [{"Name": "TrainingJobName", "Value": "metered"}]
    listed = cw.list_metrics(Namespace=ns, Dimensions=dims)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["acc", "loss"]
    assert all(m["Dimensions"] == dims and m["Namespace"] == ns for m in listed)
    # What SDK v2's TrainingJobAnalytics asks: one-second periods over the training window.
    start = d["TrainingStartTime"] - datetime.timedelta(seconds=1)
    end = d["TrainingEndTime"] + datetime.timedelta(seconds=1)
    stats = cw.get_metric_statistics(Namespace=ns, MetricName="loss", Dimensions=dims, StartTime=start,
                                     EndTime=end, Period=1, Statistics=["Average", "SampleCount"])
    points = sorted(stats["Datapoints"], key=lambda p: p["Timestamp"])
    assert sum(p["SampleCount"] for p in points) == 3
    assert all(isinstance(p["Timestamp"], datetime.datetime) for p in points)
    assert start <= points[0]["Timestamp"] <= points[-1]["Timestamp"] <= end
    # One period over everything: the average of every extracted value.
    whole = cw.get_metric_statistics(Namespace=ns, MetricName="loss", Dimensions=dims, StartTime=start,
                                     EndTime=end, Period=3600, Statistics=["Average", "Minimum", "Maximum"])
    [p] = whole["Datapoints"]
    assert p["Average"] == pytest.approx((0.9 + 0.5 + 0.25) / 3)
    assert (p["Minimum"], p["Maximum"]) == (pytest.approx(0.25), pytest.approx(0.9))
    data = cw.get_metric_data(StartTime=start, EndTime=end, ScanBy="TimestampAscending", MetricDataQueries=[
        {"Id": "loss", "MetricStat": {"Metric": {"Namespace": ns, "MetricName": "loss", "Dimensions": dims},
                                      "Period": 3600, "Stat": "Maximum"}}])
    [r] = data["MetricDataResults"]
    assert r["Id"] == "loss" and r["StatusCode"] == "Complete" and r["Values"] == [pytest.approx(0.9)]
    # Another job's name, or another namespace, has no datapoints.
    other = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="loss", Dimensions=dims, StartTime=start,
                                     EndTime=end, Period=60, Statistics=["Average"])
    assert other["Datapoints"] == []


def test_a_running_job_s_metrics_are_readable_before_it_ends(server):
    sm = server.client()
    sm.create_training_job(**job("metered-live", "echo loss=0.5; exec sleep 60"))
    wait_status(sm, "metered-live", {"Training"})
    cw = server.client("cloudwatch")
    now = datetime.datetime.now(datetime.timezone.utc)
    window = dict(Namespace="/aws/sagemaker/TrainingJobs", MetricName="loss", Period=60, Statistics=["Maximum"],
                  Dimensions=[{"Name": "TrainingJobName", "Value": "metered-live"}],
                  StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5))
    deadline = time.time() + 20
    while not (points := cw.get_metric_statistics(**window)["Datapoints"]) and time.time() < deadline:
        time.sleep(0.5)
    assert [p["Maximum"] for p in points] == [pytest.approx(0.5)]
    assert sm.describe_training_job(TrainingJobName="metered-live")["TrainingJobStatus"] == "InProgress"
    sm.stop_training_job(TrainingJobName="metered-live")
    wait_status(sm, "metered-live", {"Stopped"})


def test_warm_pool_lifecycle_through_boto3(server):
    sm = server.client()
    script = ('c="$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"; cat "$c/who" 2>/dev/null; '
              'echo "$TRAINING_JOB_NAME" > "$c/who"')
    first = job("wp-boto-1", script)
    first["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 600
    sm.create_training_job(**first)
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="wp-boto-1", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    d = wait_warm(sm, "wp-boto-1", "Available")
    assert d["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600

    second = job("wp-boto-2", script)
    second["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 120
    sm.create_training_job(**second)
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="wp-boto-2", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    reused = sm.describe_training_job(TrainingJobName="wp-boto-1")["WarmPoolStatus"]
    assert reused["Status"] == "Reused" and reused["ReusedByJob"] == "wp-boto-2"
    wait_warm(sm, "wp-boto-2", "Available")
    listed = sm.list_training_jobs(WarmPoolStatusEquals="Reused")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in listed] == ["wp-boto-1"]
    assert listed[0]["WarmPoolStatus"]["ReusedByJob"] == "wp-boto-2"
    # The second job's log shows what the first left in the cache.
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix="wp-boto-2/")["logStreams"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"], startFromHead=True)["events"]
    assert any(e["message"].strip() == "wp-boto-1" for e in events), events

    arn = sm.update_training_job(TrainingJobName="wp-boto-2",
                                 ResourceConfig={"KeepAlivePeriodInSeconds": 0})["TrainingJobArn"]
    assert arn.endswith(":training-job/wp-boto-2")
    assert sm.describe_training_job(TrainingJobName="wp-boto-2")["WarmPoolStatus"]["Status"] == "Terminated"
    with pytest.raises(sm.exceptions.ClientError) as e:
        sm.update_training_job(TrainingJobName="wp-boto-2", ResourceConfig={"KeepAlivePeriodInSeconds": 60})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.update_training_job(TrainingJobName="wp-nope", ResourceConfig={"KeepAlivePeriodInSeconds": 60})


def test_an_expired_warm_pool_is_released_by_the_server(server):
    sm = server.client()
    req = job("wp-expire", "echo cached > $SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY/x")
    req["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 1
    sm.create_training_job(**req)
    wait_warm(sm, "wp-expire", "Available")
    pool = server.home / "warm-pools" / "wp-expire"
    assert (pool / "algo-1" / "x").exists()
    # The period ends after 1 s; the server's reaper runs every 5 s.
    wait_warm(sm, "wp-expire", "Terminated")
    deadline = time.time() + 15
    while pool.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not pool.exists(), "the expired pool's cache is released without any other call"


def wait_warm(sm, name, status, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = sm.describe_training_job(TrainingJobName=name)
        if d.get("WarmPoolStatus", {}).get("Status") == status:
            return d
        time.sleep(0.1)
    raise AssertionError(f"{name}: warm pool never {status}: {d.get('WarmPoolStatus')}")
