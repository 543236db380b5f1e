#!/usr/bin/env bash
# Start-time gain of warm pools: the same job run repeatedly without a keep-alive period
# (every run cold) and with one (every run after the first takes over the previous run's
# pool). One command:
#
#   bench/warm_pool.sh
#
# The job is what makes start-up expensive in practice: a 2-host job (so each run needs its
# job network) whose script first prepares its dependencies in the persistent cache
# directory (a Python virtual environment, the way `pip install` into a cache is used with
# warm pools) when they are not there yet, then trains for no time at all. Measured: wall
# time of `trainyard train` per run (median of the runs after the first), on the embedded
# store with a temporary TRAINYARD_HOME. Prints both medians and their ratio.
#
# Knobs (environment):
#   BENCH_RUNS=5          runs per variant
#   BENCH_HOSTS=2         InstanceCount
#   BENCH_SKIP_BUILD=0    1: use TRAINYARD_BIN as it is
#   TRAINYARD_BIN=target/release/trainyard
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TY=${TRAINYARD_BIN:-$REPO/target/release/trainyard}
RUNS=${BENCH_RUNS:-5}
HOSTS=${BENCH_HOSTS:-2}

log() { printf '[warm_pool %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building trainyard (release)"
  (cd "$REPO" && cargo build --release -q --bin trainyard)
fi
command -v python3 >/dev/null || { log "error: python3 is needed"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-warm-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export TRAINYARD_HOME="$WORK/home"
cd "$WORK"
cat > job.sh <<'EOF'
cache="${SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY:-/tmp/no-pool-$TRAINING_JOB_NAME-$(hostname)}"
if [ "$BENCH_DEPS" = 1 ] && [ ! -x "$cache/venv/bin/python" ]; then
  python3 -m venv "$cache/venv"
fi
echo "loss=0.1"
EOF

job_json() { # name keep_alive deps
  cat <<EOF
{"TrainingJobName": "$1", "RoleArn": "arn:aws:iam::000000000000:role/bench",
 "AlgorithmSpecification": {"TrainingImage": "host", "TrainingInputMode": "File",
                            "ContainerEntrypoint": ["sh", "$WORK/job.sh"]},
 "OutputDataConfig": {"S3OutputPath": "s3://bench/out"},
 "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": $HOSTS, "VolumeSizeInGB": 1,
                    "KeepAlivePeriodInSeconds": $2},
 "Environment": {"BENCH_DEPS": "$3"},
 "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
EOF
}

run_variant() { # label keep_alive deps -> prints one wall time per run
  local label=$1 keep=$2 deps=$3 i start end
  for i in $(seq 1 "$RUNS"); do
    job_json "$label-$i" "$keep" "$deps" > "$label-$i.json"
    start=$(date +%s.%N)
    "$TY" train --quiet "$label-$i.json" >"$label-$i.log" 2>&1 || { cat "$label-$i.log" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc
  done
}

median_after_first() { tail -n +2 | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for deps in 0 1; do
  what=$([[ $deps == 1 ]] && echo "dependencies prepared in the cache (python3 -m venv)" || echo "infrastructure only (hosts, network)")
  log "$what: $RUNS cold runs (no KeepAlivePeriodInSeconds), $RUNS with KeepAlivePeriodInSeconds=600, $HOSTS hosts"
  cold=$(run_variant "cold$deps" 0 "$deps")
  warm=$(run_variant "warm$deps" 600 "$deps")
  c=$(median_after_first <<<"$cold")
  w=$(median_after_first <<<"$warm")
  echo "== $what"
  echo "runs (s)   cold: $(echo $cold | tr '\n' ' ')"
  echo "runs (s)   warm: $(echo $warm | tr '\n' ' ')"
  printf 'median of runs 2..%d: cold %.3f s, warm %.3f s; warm starts are %.1fx faster\n' \
    "$RUNS" "$c" "$w" "$(echo "$c / $w" | bc -l)"
done
if grep -q "network is reused" "$TRAINYARD_HOME"/jobs/warm0-2/logs/platform.log; then
  echo "warm runs reused the pool's network"
else
  echo "note: no job network here (no namespaces); only the cache was reused"
fi
