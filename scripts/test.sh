#!/usr/bin/env bash
# Runs trainyard's whole test suite: unit tests, integration tests that run real jobs through
# the binary, and the storage conformance suite against garage, a third-party S3-compatible
# server started here on loopback (installed with cargo on first use; see S3 tests below).
#
#   scripts/test.sh                 # everything
#   TRAINYARD_SKIP_S3_SERVER=1 scripts/test.sh   # without the real S3 server
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${TRAINYARD_SKIP_S3_SERVER:-}" ]]; then
  state=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-test-s3.XXXXXX")
  eval "$(scripts/s3-server-up.sh "$state")"
  trap 'scripts/s3-server-down.sh "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
fi

cargo test --workspace --all-features --locked
