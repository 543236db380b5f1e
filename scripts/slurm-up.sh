#!/usr/bin/env bash
# Starts a real one-node Slurm cluster (munged, slurmctld, slurmd) on loopback for trainyard's
# Slurm integration tests, and prints `export` lines:
#
#   eval "$(scripts/slurm-up.sh [STATE_DIR])"
#   sbatch --parsable --wrap hostname; squeue; scontrol show job ID
#   scripts/slurm-down.sh              # uses $TRAINYARD_TEST_SLURM_STATE
#
# Why: the Slurm backend talks to sbatch/squeue/scontrol/scancel, and only a real controller
# shows their real output, job states and timings. Debian 12's slurm-wlm (22.05) and munge
# packages are installed with apt-get if the binaries are missing (seconds to a minute, once
# per machine); start-up itself takes about 1 s. Everything runs as root without systemd or cgroups (proctrack/linuxproc,
# task/none), so it works in a container.
#
# STATE_DIR holds slurm.conf, the controller's state, slurmd's spool, logs and pid files;
# without it a fresh temporary directory is used (and removed by slurm-down.sh). munged is
# shared machine-wide (/run/munge): a running one is reused, otherwise it is started here
# and slurm-down.sh stops it again once no slurmctld or slurmd is left on the machine.
#
# No accounting database: `sacct` does not work (accounting_storage/none). Finished jobs stay
# visible in `scontrol show job` for MinJobAge seconds (TRAINYARD_SLURM_MIN_JOB_AGE, default
# 300 like Slurm's own default), and every finished job gets one line in
# STATE_DIR/jobcomp.log (jobcomp/filetxt) for good. The partition `debug` oversubscribes each
# core up to 4 times (OverSubscribe=FORCE:4), so several jobs run at once on 2 cores; but
# one job asking for more tasks than the node's CPUs is accepted and then stays PENDING
# (Reason=PartitionConfig) for ever, unless it uses --overcommit or TRAINYARD_SLURM_CPUS is
# raised (slurmd accepts a CPU count above the hardware's: config_overrides).
#
# Environment: TRAINYARD_SLURMCTLD_PORT (6817), TRAINYARD_SLURMD_PORT (6818),
# TRAINYARD_SLURM_MIN_JOB_AGE (300), TRAINYARD_SLURM_CPUS (nproc),
# TRAINYARD_SLURM_UP_TIMEOUT (60 s). Everything except the export lines goes to stderr.
set -euo pipefail

CTLD_PORT=${TRAINYARD_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${TRAINYARD_SLURMD_PORT:-6818}
MIN_JOB_AGE=${TRAINYARD_SLURM_MIN_JOB_AGE:-300}
CPUS=${TRAINYARD_SLURM_CPUS:-$(nproc)}
UP_TIMEOUT=${TRAINYARD_SLURM_UP_TIMEOUT:-60}
PARTITION=debug
CLUSTER=trainyard-test
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge

log() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (slurmd runs jobs as their users; munged and /run/munge need root)"
export PATH="$PATH:/usr/sbin:/sbin"

# --- packages ----------------------------------------------------------------------------
missing=()
for bin in sbatch srun squeue scontrol scancel sinfo slurmctld slurmd munged munge unmunge; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "missing ${missing[*]}; installing slurm-wlm and munge with apt-get"
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o DPkg::Lock::Timeout=600 slurm-wlm munge >&2
  }
  if ! apt_install; then
    log "install failed; running apt-get update and trying again"
    DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 >&2
    apt_install
  fi
  for bin in "${missing[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin is still missing after installing"
  done
fi

# A live process with this pid whose command name is $2 (zombies do not count).
alive() {
  local pid=$1 name=$2 stat
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat == *"($name)"* ]] || return 1
  [[ $(awk '{print $3}' <<<"${stat##*)}") != Z ]]
}
pid_of() { if [[ -f "$1" ]]; then tr -d ' \n' < "$1"; fi; }

# --- state directory -----------------------------------------------------------------------
if [[ $# -ge 1 && -n "$1" ]]; then
  ROOT=$1
  mkdir -p "$ROOT"
else
  ROOT=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-slurm.XXXXXX")
  touch "$ROOT/.created-by-slurm-up"
fi
ROOT=$(cd "$ROOT" && pwd)
CONF=$ROOT/slurm.conf

for d in slurmctld slurmd; do
  if alive "$(pid_of "$ROOT/$d.pid")" "$d"; then
    die "$d is already running from $ROOT (pid $(pid_of "$ROOT/$d.pid")); stop it with scripts/slurm-down.sh $ROOT"
  fi
done
for port in "$CTLD_PORT" "$SLURMD_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use; set TRAINYARD_SLURMCTLD_PORT and TRAINYARD_SLURMD_PORT"
  fi
done

# --- munge ----------------------------------------------------------------------------------
munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_works; then
  log "munged is already running; using it"
else
  if [[ ! -s "$MUNGE_KEY" ]]; then
    log "writing a new munge key to $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
  fi
  # Debian's unit would create these; without systemd nothing does.
  install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0700 /var/log/munge
  # munged forks and its parent exits once the daemon is ready (or failed). setsid: it
  # outlives this script; runuser: it refuses to run as root without --force. The variable
  # in its environment tells slurm-down.sh (of any state directory) that it may stop it.
  export TRAINYARD_SLURM_UP_STARTED_MUNGED=1
  if ! setsid runuser -u munge -- munged </dev/null >>"$ROOT/munged.out" 2>&1; then
    log "munged as user munge failed ($(tail -n 1 "$ROOT/munged.out")); trying as root with --force"
    setsid munged --force </dev/null >>"$ROOT/munged.out" 2>&1 || true
  fi
  unset TRAINYARD_SLURM_UP_STARTED_MUNGED
  for _ in $(seq 1 50); do munge_works && break; sleep 0.2; done
  munge_works || { cat "$ROOT/munged.out" >&2; die "munged did not start"; }
  cp "$MUNGE_RUN/munged.pid" "$ROOT/munged.pid"
  touch "$ROOT/.munged-started-by-slurm-up"
  log "munged started (pid $(pid_of "$ROOT/munged.pid"))"
fi

# --- slurm.conf -------------------------------------------------------------------------------
NODE=$(hostname -s)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
mkdir -p "$ROOT/ctld" "$ROOT/slurmd" "$ROOT/tmp"
cat > "$CONF" <<CONF
# Written by trainyard scripts/slurm-up.sh: one node, loopback, no cgroups, no accounting.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/slurmd
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$ROOT/slurmctld.log
SlurmdLogFile=$ROOT/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$ROOT/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start a submitted batch job within about 1 s instead of 3 s.
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$ROOT/jobcomp.log
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
KillWait=5
PropagateResourceLimits=NONE
MailProg=/bin/true
# The node's CPUs/RealMemory below win over what slurmd detects (no drain on mismatch).
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF=$CONF

# --- start ------------------------------------------------------------------------------------
start=$(date +%s)
rm -f "$ROOT/slurmctld.pid" "$ROOT/slurmd.pid"
# Both daemonize and write their pid files; setsid keeps them out of the caller's session.
# TRAINYARD_TEST_SLURM_STATE in their environment marks them (and the slurmstepd processes
# they start) as this cluster's for slurm-down.sh.
TRAINYARD_TEST_SLURM_STATE=$ROOT setsid slurmctld -f "$CONF" </dev/null >>"$ROOT/slurmctld.out" 2>&1 \
  || { tail -n 20 "$ROOT/slurmctld.out" "$ROOT/slurmctld.log" >&2 2>/dev/null; die "slurmctld failed to start"; }
TRAINYARD_TEST_SLURM_STATE=$ROOT setsid slurmd -f "$CONF" -N "$NODE" </dev/null >>"$ROOT/slurmd.out" 2>&1 \
  || { tail -n 20 "$ROOT/slurmd.out" "$ROOT/slurmd.log" >&2 2>/dev/null; die "slurmd failed to start"; }

state=""
deadline=$((start + UP_TIMEOUT))
while :; do
  state=$(sinfo -h -N -n "$NODE" -p "$PARTITION" -o '%T' 2>/dev/null | head -n 1 || true)
  [[ $state == idle ]] && break
  for d in slurmctld slurmd; do
    if [[ -f "$ROOT/$d.pid" ]] && ! alive "$(pid_of "$ROOT/$d.pid")" "$d"; then
      tail -n 20 "$ROOT/$d.log" >&2 2>/dev/null || true
      die "$d exited during start-up (log: $ROOT/$d.log)"
    fi
  done
  if (( $(date +%s) >= deadline )); then
    tail -n 20 "$ROOT/slurmctld.log" "$ROOT/slurmd.log" >&2 2>/dev/null || true
    die "node $NODE is not idle after ${UP_TIMEOUT}s (state: '${state:-no answer}')"
  fi
  sleep 0.5
done
log "slurmctld (pid $(pid_of "$ROOT/slurmctld.pid")) and slurmd (pid $(pid_of "$ROOT/slurmd.pid")) up in $(( $(date +%s) - start ))s; node $NODE idle in partition $PARTITION; state in $ROOT"

cat <<EXPORTS
export SLURM_CONF='$CONF'
export TRAINYARD_TEST_SLURM_STATE='$ROOT'
export TRAINYARD_TEST_SLURM_PARTITION='$PARTITION'
export TRAINYARD_TEST_SLURM_NODE='$NODE'
EXPORTS
