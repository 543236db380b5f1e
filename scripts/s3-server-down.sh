#!/usr/bin/env bash
# Stops the garage server that scripts/s3-server-up.sh started.
#
#   scripts/s3-server-down.sh [STATE_DIR]     # default: $TRAINYARD_TEST_S3_STATE
#
# Only the process recorded in STATE_DIR/garage.pid is signalled, and only if it is a garage
# process: TERM, then KILL after 10 s. A state directory that s3-server-up.sh created as a
# temporary directory is removed; one the caller named is kept (its data survives a restart).
set -euo pipefail

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
  pid=$(cat "$ROOT/garage.pid")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q garage; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "garage (pid $pid) did not stop after TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "garage (pid $pid) stopped"
  else
    log "garage (pid $pid) is not running"
  fi
  rm -f "$ROOT/garage.pid"
fi

if [[ -f "$ROOT/.created-by-s3-server-up" ]]; then
  rm -rf "$ROOT"
  log "removed $ROOT"
fi
