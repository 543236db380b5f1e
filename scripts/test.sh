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
if [[ -z "${TRAINYARD_SKIP_SLURM:-}" ]]; then
  eval "$(scripts/slurm-up.sh)"
  cleanup+=("scripts/slurm-down.sh '$TRAINYARD_TEST_SLURM_STATE'")
fi

cargo test --workspace --all-features --locked

# API tests: real boto3, aws CLI and SageMaker SDK clients against a real `trainyard serve`.
if ! python3 -c 'import boto3, pytest, sagemaker, sagemaker_training, moto' 2>/dev/null || ! command -v aws >/dev/null; then
  python3 -m pip install -q -r tests/python/requirements.txt
fi
TRAINYARD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/trainyard" python3 -m pytest -q tests/python
