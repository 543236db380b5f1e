#!/usr/bin/env bash
# Stops the registry that scripts/registry-up.sh started from STATE.
#
#   scripts/registry-down.sh STATE
#
# Only the process recorded in STATE/registry.pid is signalled, and only if it is a
# docker-registry process: TERM, then KILL after 10 s. STATE itself is kept (the caller made
# it and removes it).
set -euo pipefail

log() { printf 'registry-down: %s\n' "$*" >&2; }

ROOT=${1:-}
if [[ -z "$ROOT" ]]; then
  log "error: give the state directory"
  exit 2
fi
if [[ ! -f "$ROOT/registry.pid" ]]; then
  log "no $ROOT/registry.pid; nothing to stop"
  exit 0
fi
pid=$(cat "$ROOT/registry.pid")
if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q docker-registry; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "docker-registry (pid $pid) did not stop after TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  log "docker-registry (pid $pid) stopped"
else
  log "docker-registry (pid $pid) is not running"
fi
rm -f "$ROOT/registry.pid"
