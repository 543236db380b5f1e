"""CreateTrainingJob's request shape, checked against botocore's own SageMaker service model at
test time (the model is not copied into the repository).

Every member of the request, nested ones included, is sent with a value of the wrong type and,
where the model has them, a value outside its enum, too short or too long, out of range, or
breaking its pattern, and with each required member left out. The server must answer
`ValidationException` naming the member, and no job may exist afterwards: a malformed member
that is stored is echoed by DescribeTrainingJob, and from then on every SDK fails parsing it.
Then requests that set the optional configurations validly are accepted, and their Describe and
List responses are checked against the output shapes, member by member.

The junk is put in the request body as JSON by a `before-call` hook of a client built with
`parameter_validation=False`: botocore's serializer would otherwise reshape it (a string given
for a list is sent as a list of characters) or fail on it (a string given for a structure).
"""

import copy
import json
import re

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import job

MODEL = botocore.session.get_session().get_service_model("sagemaker")
REQUEST = MODEL.operation_model("CreateTrainingJob").input_shape
MAX_DEPTH = 6
FIRST_KEY = object()  # a path step meaning "the first entry of this map"

DATA = "s3://shape-data/train/"
ARN = "arn:aws:sagemaker:us-east-1:000000000000"
HUB = "arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub"


def rule(name):
    return {
        "RuleConfigurationName": name,
        "LocalPath": "/opt/ml/processing/output/rule",
        "S3OutputPath": "s3://out/rules",
        "RuleEvaluatorImage": "rules:latest",
        "InstanceType": "ml.m5.large",
        "VolumeSizeInGB": 10,
        "RuleParameters": {"rule_to_invoke": "LossNotDecreasing"},
    }


def full(name):
    """A valid request that sets every optional member trainyard accepts."""
    r = job(name, data=DATA)
    r["AlgorithmSpecification"].update({
        "ContainerArguments": ["--epochs", "2"],
        "EnableSageMakerMetricsTimeSeries": False,
        "TrainingImageConfig": {"TrainingRepositoryAccessMode": "Vpc"},
    })
    ch = r["InputDataConfig"][0]
    ch.update({"ContentType": "text/csv", "CompressionType": "None", "RecordWrapperType": "None",
               "InputMode": "File", "ShuffleConfig": {"Seed": 7}})
    ch["DataSource"]["S3DataSource"].update({
        "ModelAccessConfig": {"AcceptEula": True},
        "HubAccessConfig": {"HubContentArn": f"{HUB}/Model/base/1.0.0"},
    })
    r["OutputDataConfig"].update({"KmsKeyId": "alias/out", "CompressionType": "GZIP"})
    rc = r["ResourceConfig"]
    rc.update({
        "VolumeKmsKeyId": "alias/vol",
        "TrainingPlanArn": f"{ARN}:training-plan/plan-with-a-long-enough-name",
        "InstancePlacementConfig": {
            "EnableMultipleJobs": False,
            "PlacementSpecifications": [{"UltraServerId": "us-1", "InstanceCount": 1}]},
    })
    members = REQUEST.members["ResourceConfig"].members
    if "InstancePreferences" in members:  # newer models only
        rc["InstancePreferences"] = [{"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                      "TrainingPlanArns": [f"{ARN}:training-plan/plan-with-a-long-enough-name"]}]
    if "SelectedInstanceType" in members:
        rc.update({"SelectedInstanceType": "ml.m5.large", "SelectedInstanceCount": 1})
    r["StoppingCondition"].update({"MaxWaitTimeInSeconds": 600, "MaxPendingTimeInSeconds": 7200})
    serverless = {"BaseModelArn": f"{HUB}/Model/base/1.0.0", "AcceptEula": True, "JobType": "FineTuning",
                  "CustomizationTechnique": "SFT", "Peft": "LORA", "EvaluationType": "BenchmarkEvaluation",
                  "EvaluatorArn": "evaluator"}
    if "SequenceLength" in REQUEST.members["ServerlessJobConfig"].members:
        serverless["SequenceLength"] = "8K"
    r.update({
        "Environment": {"MODE": "test"},
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        "EnableNetworkIsolation": False,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://out/checkpoints", "LocalPath": "/opt/ml/checkpoints"},
        "DebugHookConfig": {
            "LocalPath": "/opt/ml/output/tensors", "S3OutputPath": "s3://out/tensors",
            "HookParameters": {"save_interval": "100"},
            "CollectionConfigurations": [{"CollectionName": "losses", "CollectionParameters": {"save_interval": "10"}}],
        },
        "DebugRuleConfigurations": [rule("loss")],
        "TensorBoardOutputConfig": {"LocalPath": "/opt/ml/output/tensorboard", "S3OutputPath": "s3://out/tb"},
        "ExperimentConfig": {"ExperimentName": "exp", "TrialName": "trial",
                             "TrialComponentDisplayName": "component", "RunName": "run"},
        "ProfilerConfig": {"S3OutputPath": "s3://out/profiler", "ProfilingIntervalInMilliseconds": 500,
                           "ProfilingParameters": {"DataloaderProfilingConfig": "{}"}, "DisableProfiler": False},
        "ProfilerRuleConfigurations": [rule("cpu")],
        "RetryStrategy": {"MaximumRetryAttempts": 2},
        "RemoteDebugConfig": {"EnableRemoteDebug": False},
        "InfraCheckConfig": {"EnableInfraCheck": False},
        "SessionChainingConfig": {"EnableSessionTagChaining": False},
        "ServerlessJobConfig": serverless,
        "MlflowConfig": {"MlflowResourceArn": f"{ARN}:mlflow-tracking-server/mlflow",
                         "MlflowExperimentName": "exp", "MlflowRunName": "run"},
        "ModelPackageConfig": {"ModelPackageGroupArn": f"{ARN}:model-package-group/group",
                               "SourceModelPackageArn": f"{ARN}:model-package/group/1"},
    })
    return r


def algorithm(name):
    r = job(name)
    del r["AlgorithmSpecification"]["TrainingImage"]
    r["AlgorithmSpecification"]["AlgorithmName"] = "my-algorithm"
    return r


def lambda_credentials(name):
    r = job(name)
    r["AlgorithmSpecification"]["TrainingImageConfig"] = {
        "TrainingRepositoryAccessMode": "Vpc",
        "TrainingRepositoryAuthConfig": {
            "TrainingRepositoryCredentialsProviderArn": "arn:aws:lambda:us-east-1:000000000000:function:creds"},
    }
    return r


def heterogeneous(name):
    r = job(name, data=DATA)
    r["ResourceConfig"] = {"InstanceGroups": [{"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                               "InstanceGroupName": "g1"}], "VolumeSizeInGB": 1}
    r["InputDataConfig"][0]["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["g1"]
    return r


def file_system(name):
    r = job(name)
    r["InputDataConfig"] = [{"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {
        "FileSystemId": "fs-0123456789abcdef0", "FileSystemAccessMode": "ro",
        "FileSystemType": "EFS", "DirectoryPath": "/data"}}}]
    return r


def dataset(name):
    r = job(name)
    r["InputDataConfig"] = [{"ChannelName": "ds", "DataSource": {"DatasetSource": {
        "DatasetArn": f"{HUB}/DataSet/data/1.0.0"}}}]
    return r


def augmented(name):
    r = job(name)
    r["InputDataConfig"] = [{"ChannelName": "train", "InputMode": "Pipe", "DataSource": {"S3DataSource": {
        "S3DataType": "AugmentedManifestFile", "S3Uri": "s3://shape-data/manifest.jsonl",
        "AttributeNames": ["source-ref"]}}}]
    return r


# Each valid base request and why the server refuses it as it is (None: it is accepted).
# Mutations start from the first base that has the member (or, failing that, its parent).
BASES = [
    (full, None),
    (augmented, None),
    (algorithm, "AlgorithmName (marketplace algorithms) is not supported"),
    (heterogeneous, "heterogeneous clusters (InstanceGroups) are not supported"),
    (lambda_credentials, "a Lambda credentials provider is not supported"),
    (dataset, "DatasetSource is not supported"),
    (file_system, "FileSystemId fs-0123456789abcdef0 is not configured on this trainyard"),
]


def lookup(value, path):
    for step in path:
        if step is FIRST_KEY:
            if not isinstance(value, dict) or not value:
                raise KeyError(step)
            step = next(iter(value))
        value = value[step]
    return value


def resolve(value, path):
    """`path` with FIRST_KEY steps replaced by the key they stand for."""
    out = []
    for step in path:
        if step is FIRST_KEY:
            step = next(iter(value))
        out.append(step)
        value = value[step]
    return out


def put(req, path, new):
    parent = lookup(req, path[:-1])
    parent[resolve(req, path)[-1] if path[-1] is FIRST_KEY else path[-1]] = new


def python_pattern(pattern):
    """The model's Java pattern in Python's syntax, narrowed to ASCII where Java names a class."""
    return (pattern.replace(r"\p{L}", "a-zA-Z").replace(r"\p{Z}", " ").replace(r"\p{N}", "0-9")
            .replace(r"\p{Alnum}", "a-zA-Z0-9"))


def matches(pattern, text):
    try:
        return re.fullmatch(python_pattern(pattern), text, re.DOTALL if pattern == r"[\S\s]*" else 0)
    except re.error:
        return None


def bad_values(shape):
    """(kind, value) pairs a member of `shape` must refuse."""
    t, meta = shape.type_name, shape.metadata
    out = []
    if t == "string":
        out.append(("type", 123))
        if shape.enum:
            out.append(("enum", "NOT-IN-ENUM"))
        if "max" in meta:
            out.append(("too long", "a" * (meta["max"] + 1)))
        if meta.get("min", 0) > 0:
            out.append(("too short", "a" * (meta["min"] - 1)))
        if "pattern" in meta:
            text = "#" * max(meta.get("min", 0), 1)
            if len(text) <= meta.get("max", len(text)) and not matches(meta["pattern"], text):
                out.append(("pattern", text))
    elif t in ("integer", "long"):
        out.append(("type", "x"))
        if "min" in meta:
            out.append(("below min", meta["min"] - 1))
        if "max" in meta:
            out.append(("above max", meta["max"] + 1))
    elif t == "boolean":
        out.append(("type", "x"))
    elif t in ("structure", "list", "map"):
        out.append(("type", "x"))
    else:
        raise AssertionError(f"no bad values for {t}")
    return out


def generate():
    """Every case: (description, base builder, path, new value or DELETE, member name)."""
    cases, uncovered = [], []

    def base_for(path):
        for build, _ in BASES:
            try:
                lookup(build("probe"), path)
                return build
            except (KeyError, IndexError, TypeError):
                pass
        for build, _ in BASES:
            try:
                parent = lookup(build("probe"), path[:-1])
                if isinstance(parent, dict) and isinstance(path[-1], str):
                    return build
            except (KeyError, IndexError, TypeError):
                pass
        return None

    def add(desc, path, new, name):
        build = base_for(path)
        if build is None:
            uncovered.append(desc)
            return
        if new is DELETE:
            try:
                lookup(build("probe"), path)
            except (KeyError, IndexError, TypeError):
                uncovered.append(desc)
                return
        cases.append((desc, build, path, new, name))

    def walk(shape, path, name, depth, required):
        label = ".".join("*" if s is FIRST_KEY else str(s) for s in path)
        for kind, value in bad_values(shape):
            add(f"{label}: {kind}", path, value, name)
        if required:
            add(f"{label}: missing", path, DELETE, name)
        if shape.type_name == "list":
            meta = shape.metadata
            if "max" in meta:
                add(f"{label}: too many", path, ("repeat", meta["max"] + 1), name)
            if meta.get("min", 0) > 0:
                add(f"{label}: too few", path, [], name)
        if shape.type_name == "map" and "max" in shape.metadata:
            add(f"{label}: too many", path, ("entries", shape.metadata["max"] + 1), name)
        if depth >= MAX_DEPTH:
            return
        if shape.type_name == "structure":
            for m, ms in shape.members.items():
                walk(ms, path + [m], m, depth + 1, m in shape.required_members)
        elif shape.type_name == "list":
            walk(shape.member, path + [0], name, depth + 1, False)
        elif shape.type_name == "map":
            for kind, key in bad_values(shape.key):
                if kind != "type":  # JSON keys are always strings
                    add(f"{label}.key: {kind}", path, ("key", key), name)
            walk(shape.value, path + [FIRST_KEY], name, depth + 1, False)

    for m, ms in REQUEST.members.items():
        walk(ms, [m], m, 1, m in REQUEST.required_members)
    return cases, uncovered


DELETE = object()
CASES, UNCOVERED = generate()


def build_case(build, path, new, name_for_job):
    req = build(name_for_job)
    if new is DELETE:
        parent = lookup(req, path[:-1])
        del parent[resolve(req, path)[-1]]
    elif isinstance(new, tuple) and new[0] == "repeat":
        items = lookup(req, path)
        put(req, path, [copy.deepcopy(items[0]) for _ in range(new[1])])
    elif isinstance(new, tuple) and new[0] == "entries":
        first = next(iter(lookup(req, path).values()))
        put(req, path, {f"k{i}": first for i in range(new[1])})
    elif isinstance(new, tuple) and new[0] == "key":
        m = lookup(req, path)
        k = next(iter(m))
        m[new[1]] = m.pop(k)
    else:
        put(req, path, new)
    return req


# What the message must say for each kind of case, in SageMaker's wording. The model's instance
# type enums grow with every release, so trainyard checks their form (a pattern) instead.
RULES = {
    "type": ("Member must be a",),
    "enum": ("Member must satisfy enum value set", "Member must satisfy regular expression pattern"),
    "too long": ("length less than or equal to",),
    "too short": ("length greater than or equal to",),
    "too many": ("length less than or equal to",),
    "too few": ("length greater than or equal to",),
    "pattern": ("Member must satisfy regular expression pattern",),
    "below min": ("value greater than or equal to",),
    "above max": ("value less than or equal to",),
    "missing": ("Member must not be null",),
}


def raw_client(server):
    """A client that sends `state['body']` as the CreateTrainingJob body, unchanged."""
    sm = server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))
    state = {}

    def swap(params, **_):
        params["body"] = json.dumps(state["body"]).encode()

    sm.meta.events.register("before-call.sagemaker.CreateTrainingJob", swap)
    return sm, state


def create_raw(sm, state, body):
    state["body"] = body
    return sm.create_training_job(TrainingJobName="placeholder", RoleArn="placeholder",
                                  OutputDataConfig={"S3OutputPath": "placeholder"})


@pytest.fixture
def shaped(server):
    data = server.home / "store" / "shape-data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "part-0.csv").write_text("1,2\n")
    (data / "manifest.jsonl").write_text(json.dumps({"source-ref": "s3://shape-data/train/part-0.csv"}) + "\n")
    return server


def test_every_base_request_is_accepted_or_refused_for_its_documented_reason(shaped):
    sm, state = raw_client(shaped)
    for i, (build, refusal) in enumerate(BASES):
        name = f"base-{i}"
        if refusal is None:
            create_raw(sm, state, build(name))
        else:
            with pytest.raises(ClientError) as e:
                create_raw(sm, state, build(name))
            assert e.value.response["Error"]["Code"] == "ValidationException"
            assert refusal in e.value.response["Error"]["Message"], e.value.response["Error"]["Message"]


def test_every_malformed_member_is_refused_by_name_and_never_stored(shaped):
    assert not UNCOVERED, f"members no base request can carry: {UNCOVERED}"
    sm, state = raw_client(shaped)
    failures = []
    for i, (desc, build, path, new, name) in enumerate(CASES):
        job_name = f"shape-{i}"
        req = build_case(build, path, new, job_name)
        try:
            create_raw(sm, state, req)
            failures.append(f"{desc}: accepted")
            continue
        except ClientError as e:
            err = e.response["Error"]
        msg = err.get("Message", "")
        if err.get("Code") != "ValidationException":
            failures.append(f"{desc}: {err}")
        elif name.lower() not in msg.lower():
            failures.append(f"{desc}: message does not name {name}: {msg}")
        elif "not supported" in msg:
            failures.append(f"{desc}: refused as unsupported, not for its shape: {msg}")
        elif not any(r in msg for r in RULES[desc.rsplit(": ", 1)[1]]):
            failures.append(f"{desc}: message does not state the rule: {msg}")
        with pytest.raises(ClientError) as gone:
            sm.describe_training_job(TrainingJobName=job_name)
        assert gone.value.response["Error"]["Message"] == "Requested resource not found."
    print(f"\n{len(CASES)} generated cases, {len(CASES) - len(failures)} refused as expected")
    assert not failures, f"{len(failures)} of {len(CASES)} cases failed:\n" + "\n".join(failures)
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []


def conform(value, shape, path, errors):
    """Checks a raw JSON response value against an output shape of the model."""
    t, meta = shape.type_name, shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            return errors.append(f"{path}: {value!r} is not a structure")
        errors.extend(f"{path}.{k}: not a member of {shape.name}" for k in value if k not in shape.members)
        errors.extend(f"{path}.{r}: required" for r in shape.required_members if r not in value)
        for k, v in value.items():
            if k in shape.members:
                conform(v, shape.members[k], f"{path}.{k}", errors)
    elif t == "list":
        if not isinstance(value, list):
            return errors.append(f"{path}: {value!r} is not a list")
        if not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            errors.append(f"{path}: {len(value)} items")
        for i, v in enumerate(value):
            conform(v, shape.member, f"{path}[{i}]", errors)
    elif t == "map":
        if not isinstance(value, dict):
            return errors.append(f"{path}: {value!r} is not a map")
        for k, v in value.items():
            conform(k, shape.key, f"{path} key", errors)
            conform(v, shape.value, f"{path}[{k!r}]", errors)
    elif t == "string":
        if not isinstance(value, str):
            return errors.append(f"{path}: {value!r} is not a string")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} not in enum")
        if not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            errors.append(f"{path}: length {len(value)}")
        if "pattern" in meta and matches(meta["pattern"], value) is None:
            try:
                re.compile(python_pattern(meta["pattern"]))
                errors.append(f"{path}: {value!r} breaks {meta['pattern']}")
            except re.error:
                pass  # a Java construct Python lacks: not checkable here
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return errors.append(f"{path}: {value!r} is not an integer")
        if not meta.get("min", value) <= value <= meta.get("max", value):
            errors.append(f"{path}: {value} out of range")
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: {value!r} is not a number")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: {value!r} is not a boolean")
    elif t == "timestamp":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: {value!r} is not an epoch timestamp")
    else:
        errors.append(f"{path}: unexpected shape type {t}")


def test_describe_and_list_of_accepted_requests_match_the_output_shapes(shaped):
    sm, state = raw_client(shaped)
    checked = shaped.client()  # validates requests and parses responses with the model
    raw = {}

    def keep(http_response, model, **_):
        raw[model.name] = json.loads(http_response.content)

    checked.meta.events.register("after-call.sagemaker.*", keep)
    accepted = []
    for i, (build, refusal) in enumerate(BASES):
        if refusal is None:
            req = build(f"accepted-{i}")
            checked.create_training_job(**req)
            accepted.append(req)
    waiter = checked.get_waiter("training_job_completed_or_stopped")
    describe = MODEL.operation_model("DescribeTrainingJob").output_shape
    errors = []
    for req in accepted:
        name = req["TrainingJobName"]
        waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        d = checked.describe_training_job(TrainingJobName=name)
        conform(raw["DescribeTrainingJob"], describe, name, errors)
        # What was accepted is echoed as sent (defaults may be added, nothing changed).
        for member in ("DebugHookConfig", "DebugRuleConfigurations", "ProfilerConfig",
                       "ProfilerRuleConfigurations", "TensorBoardOutputConfig", "ExperimentConfig",
                       "RetryStrategy", "ServerlessJobConfig", "MlflowConfig", "ModelPackageConfig"):
            if member in req:
                assert raw["DescribeTrainingJob"][member] == req[member], member
        assert d["TrainingJobName"] == name
    listed = checked.list_training_jobs()
    conform(raw["ListTrainingJobs"], MODEL.operation_model("ListTrainingJobs").output_shape, "list", errors)
    assert {s["TrainingJobName"] for s in listed["TrainingJobSummaries"]} == {r["TrainingJobName"] for r in accepted}
    assert not errors, "\n".join(errors)
