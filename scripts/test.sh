#!/usr/bin/env bash
# Runs trainyard's whole test suite: unit tests, integration tests that run real jobs through
# the binary, the storage conformance suite against garage (a third-party S3-compatible server
# started here on loopback, built with cargo on first use), and the API tests in Python with
# real boto3 / aws CLI / SageMaker SDK clients (installed with pip on first use), including
# jobs on a real one-node Slurm cluster (slurm-wlm and munge, installed with apt on first use).
#
#   scripts/test.sh                 # everything
#   TRAINYARD_SKIP_S3_SERVER=1 scripts/test.sh   # without the real S3 server
#   TRAINYARD_SKIP_SLURM=1 scripts/test.sh       # without the Slurm cluster
#   TRAINYARD_SKIP_NETNS=1 scripts/test.sh       # on a machine without network namespaces
#   TRAINYARD_SKIP_CGROUPS=1 scripts/test.sh     # ... without a cgroup memory controller
#   TRAINYARD_SKIP_FUSE=1 scripts/test.sh        # ... without /dev/fuse and fusermount3
#   TRAINYARD_SKIP_REGISTRY=1 scripts/test.sh    # without the OCI registries and test images
#   TRAINYARD_SKIP_PODMAN=1 scripts/test.sh      # ... without podman (locally built images)
#   TRAINYARD_SKIP_TMPFS=1 scripts/test.sh       # ... where tests cannot mount a tmpfs (not root)
#
# Tests that need an environment sit behind cargo features (real-s3, netns, cgroups,
# fuse-mount, registry, podman, tmpfs): without the feature they are reported as ignored, with it a missing environment
# fails them. So everything runs with --all-features, and a skip variable leaves out its
# feature by name.
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup=()
run_cleanup() {
  local c
  for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
}
trap run_cleanup EXIT
if [[ -z "${TRAINYARD_SKIP_S3_SERVER:-}" ]]; then
  state=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-test-s3.XXXXXX")
  eval "$(scripts/s3-server-up.sh "$state")"
  cleanup+=("scripts/s3-server-down.sh '$state'; rm -rf '$state'")
fi
if [[ -z "${TRAINYARD_SKIP_REGISTRY:-}" ]]; then
  # Two real registries on loopback (anonymous and basic auth), and the test images, built
  # once with mmdebstrap and cached (scripts/test-images.sh), pushed to both.
  reg_state=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-test-registry.XXXXXX")
  eval "$(scripts/registry-up.sh "$reg_state/anon")"
  cleanup+=("scripts/registry-down.sh '$reg_state/anon'; rm -rf '$reg_state'")
  eval "$(scripts/registry-up.sh "$reg_state/auth" --htpasswd trainyard:test-password)"
  cleanup=("scripts/registry-down.sh '$reg_state/auth'" "${cleanup[@]}")
  eval "$(scripts/test-images.sh)"
fi
if [[ -z "${TRAINYARD_SKIP_SLURM:-}" ]]; then
  eval "$(scripts/slurm-up.sh)"
  cleanup+=("scripts/slurm-down.sh '$TRAINYARD_TEST_SLURM_STATE'")
fi

skipped=()
[[ -n "${TRAINYARD_SKIP_S3_SERVER:-}" ]] && skipped+=(real-s3)
[[ -n "${TRAINYARD_SKIP_NETNS:-}" ]] && skipped+=(netns)
[[ -n "${TRAINYARD_SKIP_CGROUPS:-}" ]] && skipped+=(cgroups)
[[ -n "${TRAINYARD_SKIP_FUSE:-}" ]] && skipped+=(fuse-mount)
[[ -n "${TRAINYARD_SKIP_REGISTRY:-}" ]] && skipped+=(registry)
[[ -n "${TRAINYARD_SKIP_PODMAN:-}" ]] && skipped+=(podman)
[[ -n "${TRAINYARD_SKIP_TMPFS:-}" ]] && skipped+=(tmpfs)
if ((${#skipped[@]})); then
  # Every feature of every workspace crate but the skipped ones and those that enable them.
  features=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
skip = set(sys.argv[1:])
out = []
for pkg in json.load(sys.stdin)["packages"]:
    for name, enables in sorted(pkg["features"].items()):
        if name == "default" or name in skip:
            continue
        if any(e.split("/")[-1].lstrip("?") in skip for e in enables):
            continue
        out.append(pkg["name"] + "/" + name)
print(",".join(out))
' "${skipped[@]}")
  echo "test.sh: without features ${skipped[*]}: --features $features" >&2
  feature_args=(--features "$features")
else
  feature_args=(--all-features)
fi
cargo test --workspace "${feature_args[@]}" --locked

# API tests: real boto3, aws CLI and SageMaker SDK clients against a real `trainyard serve`.
if ! python3 -c 'import boto3, pytest, sagemaker, sagemaker_training, moto' 2>/dev/null || ! command -v aws >/dev/null; then
  python3 -m pip install -q -r tests/python/requirements.txt
fi
# SageMaker SDK v3 pins conflict with v2's, so it gets a venv of its own
# (tests/python/test_s3_endpoint.py runs ModelTrainer there).
sdk_v3="${TRAINYARD_SDK_V3_VENV:-$HOME/.cache/trainyard/venv-sagemaker-v3}"
if ! "$sdk_v3/bin/python" -c 'import sagemaker.train' 2>/dev/null; then
  python3 -m venv "$sdk_v3"
  "$sdk_v3/bin/pip" install -q sagemaker==3.27.0
fi
export TRAINYARD_SDK_V3_VENV="$sdk_v3"
# A Python test skipped for a missing environment fails unless that environment was skipped
# on purpose (tests/python/conftest.py, TRAINYARD_TEST_STRICT).
strict=1
[[ -n "${TRAINYARD_SKIP_S3_SERVER:-}${TRAINYARD_SKIP_SLURM:-}${TRAINYARD_SKIP_NETNS:-}${TRAINYARD_SKIP_CGROUPS:-}${TRAINYARD_SKIP_FUSE:-}${TRAINYARD_SKIP_REGISTRY:-}${TRAINYARD_SKIP_PODMAN:-}${TRAINYARD_SKIP_TMPFS:-}" ]] && strict=
TRAINYARD_TEST_STRICT=$strict TRAINYARD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/trainyard" \
  python3 -m pytest -q tests/python
