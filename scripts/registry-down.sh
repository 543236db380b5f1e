#!/usr/bin/env bash
# Stops the registry that scripts/registry-up.sh started from STATE.
#
#   scripts/registry-down.sh STATE
#
# Only the process recorded in STATE/registry.pid is signalled, and only if it is a
# docker-registry process: TERM, then KILL after 10 s. STATE itself is kept (the caller made
# it and removes it).
set -euo pipefail

# shellcheck source=scripts/stop-pid.sh
source "$(dirname "$0")/stop-pid.sh"
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
stop_pid "$ROOT/registry.pid" docker-registry
