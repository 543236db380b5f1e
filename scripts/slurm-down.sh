#!/usr/bin/env bash
# Stops the one-node Slurm cluster that scripts/slurm-up.sh started.
#
#   scripts/slurm-down.sh [STATE_DIR]     # default: $TRAINYARD_TEST_SLURM_STATE
#
# Jobs still queued or running are cancelled first, then slurmd and slurmctld (the pids in
# STATE_DIR, and only if they are those daemons) get TERM, then KILL after 10 s; any
# slurmstepd of this cluster still left (found by SLURM_CONF=STATE_DIR/slurm.conf in its
# environment) is killed with its job's processes. munged is stopped only if a slurm-up.sh
# started it (TRAINYARD_SLURM_UP_STARTED_MUNGED=1 in its environment; STATE_DIR records it
# too) and no other slurmctld or slurmd is still running on the machine. A state directory that slurm-up.sh created as a temporary
# directory is removed (unless TRAINYARD_SLURM_KEEP_STATE=1); one the caller named is kept.
# Nothing outside STATE_DIR is removed. Running it again is harmless.
set -euo pipefail

log() { printf 'slurm-down: %s\n' "$*" >&2; }
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=${1:-${TRAINYARD_TEST_SLURM_STATE:-}}
if [[ -z "$ROOT" ]]; then
  log "error: give the state directory or set TRAINYARD_TEST_SLURM_STATE"
  exit 2
fi
if [[ ! -d "$ROOT" ]]; then
  log "no state directory $ROOT; nothing to stop"
  exit 0
fi
ROOT=$(cd "$ROOT" && pwd)
CONF=$ROOT/slurm.conf

# A live process with this pid whose command name is $2 (zombies do not count).
alive() {
  local pid=$1 name=$2 stat
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat == *"($name)"* ]] || return 1
  [[ $(awk '{print $3}' <<<"${stat##*)}") != Z ]]
}
pid_of() { if [[ -f "$1" ]]; then tr -d ' \n' < "$1"; fi; }
# Live processes named $1 (zombies excluded).
live_named() {
  local p
  for p in $(pgrep -x "$1" 2>/dev/null || true); do
    alive "$p" "$1" && echo "$p"
  done
}

# TERM to each "name pid" pair at once (each daemon takes about 2 s to stop), then KILL
# whatever is left after 10 s.
stop_pids() {
  local pair pid name left
  for pair in "$@"; do
    read -r name pid <<<"$pair"
    if alive "$pid" "$name"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 50); do
    left=""
    for pair in "$@"; do
      read -r name pid <<<"$pair"
      alive "$pid" "$name" && left=1
    done
    [[ -z "$left" ]] && break
    sleep 0.2
  done
  for pair in "$@"; do
    read -r name pid <<<"$pair"
    [[ -n "$pid" ]] || continue
    if alive "$pid" "$name"; then
      log "$name (pid $pid) did not stop after TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name (pid $pid) stopped"
  done
}

# --- jobs -------------------------------------------------------------------------------------
ctld_pid=$(pid_of "$ROOT/slurmctld.pid")
if [[ -f "$CONF" ]] && alive "$ctld_pid" slurmctld; then
  export SLURM_CONF=$CONF
  jobs=$(timeout 15 squeue -h -o '%A' 2>/dev/null || true)
  if [[ -n "$jobs" ]]; then
    log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
    # shellcheck disable=SC2086
    timeout 15 scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 75); do
      [[ -z "$(timeout 15 squeue -h -o '%A' 2>/dev/null || true)" ]] && break
      sleep 0.2
    done
  fi
fi

# --- daemons ----------------------------------------------------------------------------------
slurmd_pid=$(pid_of "$ROOT/slurmd.pid")
alive "$slurmd_pid" slurmd || slurmd_pid=""
alive "$ctld_pid" slurmctld || ctld_pid=""
stop_pids "slurmd $slurmd_pid" "slurmctld $ctld_pid"

# slurmstepd processes outlive slurmd; kill this cluster's with everything under them.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$child"
    descendants "$child"
  done
}
for p in $(live_named slurmstepd); do
  if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$CONF"; then
    victims="$p $(descendants "$p" | tr '\n' ' ')"
    log "killing leftover slurmstepd (pid $p) and its processes: $victims"
    # shellcheck disable=SC2086
    kill -KILL $victims 2>/dev/null || true
  fi
done

# --- munged -----------------------------------------------------------------------------------
# Stopped if a slurm-up.sh started it (this one or another state directory's: the marker is
# in munged's environment) and no Slurm daemon is left that still needs it.
munged_pid=$(pid_of /run/munge/munged.pid)
if alive "$munged_pid" munged && tr '\0' '\n' < "/proc/$munged_pid/environ" 2>/dev/null \
    | grep -qx 'TRAINYARD_SLURM_UP_STARTED_MUNGED=1'; then
  others=$(live_named slurmctld; live_named slurmd)
  if [[ -n "$others" ]]; then
    log "other Slurm daemons still use munged (pids $(tr '\n' ' ' <<<"$others")); leaving it running"
  else
    stop_pids "munged $munged_pid"
  fi
fi
rm -f "$ROOT/.munged-started-by-slurm-up"
rm -f "$ROOT/slurmctld.pid" "$ROOT/slurmd.pid" "$ROOT/munged.pid"

if [[ -f "$ROOT/.created-by-slurm-up" && ${TRAINYARD_SLURM_KEEP_STATE:-0} != 1 ]]; then
  rm -rf "$ROOT"
  log "removed $ROOT"
fi
