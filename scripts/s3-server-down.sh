#!/usr/bin/env bash
# Stops the garage server that scripts/s3-server-up.sh started.
#
#   scripts/s3-server-down.sh [STATE_DIR]     # default: $TRAINYARD_TEST_S3_STATE
#
# Only the process recorded in STATE_DIR/garage.pid is signalled, and only if it is a garage
# process: TERM, then KILL after 10 s. A state directory that s3-server-up.sh created as a
# temporary directory is removed; one the caller named is kept (its data survives a restart).
set -euo pipefail

# shellcheck source=scripts/stop-pid.sh
source "$(dirname "$0")/stop-pid.sh"
log() { printf 's3-server-down: %s\n' "$*" >&2; }

ROOT=${1:-${TRAINYARD_TEST_S3_STATE:-}}
if [[ -z "$ROOT" ]]; then
  log "error: give the state directory or set TRAINYARD_TEST_S3_STATE"
  exit 2
fi
if [[ ! -d "$ROOT" ]]; then
  log "no state directory $ROOT; nothing to stop"
  exit 0
fi

if [[ -f "$ROOT/garage.pid" ]]; then
  stop_pid "$ROOT/garage.pid" garage
fi

if [[ -f "$ROOT/.created-by-s3-server-up" ]]; then
  rm -rf "$ROOT"
  log "removed $ROOT"
fi
