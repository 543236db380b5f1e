#!/usr/bin/env bash
# API latency benchmark of `trainyard serve`: 200 concurrent CreateTrainingJob calls, then
# DescribeTrainingJob calls from a pool of client threads, all on loopback. One command:
#
#   bench/api.sh
#
# Builds trainyard (release), starts `trainyard serve` on a free 127.0.0.1 port with a
# temporary TRAINYARD_HOME (embedded store; jobs are trivial: image `host`, entry point
# `true`, no input channels), runs bench/api_load.py against it, stops the server at exit.
# See bench/README.md for what is measured.
#
# Knobs (environment):
#   BENCH_CREATES=200  BENCH_DESCRIBES=5000  BENCH_CONCURRENCY=16  (describe client threads)
#   BENCH_CAPACITY=2               --capacity of the server (hosts running at once)
#   BENCH_SKIP_BUILD=0             1: use TRAINYARD_BIN as it is
#   TRAINYARD_BIN=target/release/trainyard
#   BENCH_JSON=                    also write the results as JSON here
#   BENCH_NICE=                    e.g. -10: raise this script's autogroup priority (root), so
#                                  that other work on the machine disturbs the run less
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TY=${TRAINYARD_BIN:-$REPO/target/release/trainyard}
CREATES=${BENCH_CREATES:-200}
DESCRIBES=${BENCH_DESCRIBES:-5000}
CONC=${BENCH_CONCURRENCY:-16}
CAPACITY=${BENCH_CAPACITY:-2}

log() { printf '[api %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-api-bench.XXXXXX")
SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PATH="$HOME/.cargo/bin:$PATH"
if [[ -n "${BENCH_NICE:-}" ]]; then # server and clients are children: they inherit it
  if [[ -w /proc/$$/autogroup ]]; then
    echo "$BENCH_NICE" >"/proc/$$/autogroup"
  else
    renice -n "$BENCH_NICE" -p $$ >/dev/null
  fi
fi
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building trainyard (release)"
  (cd "$REPO" && cargo build --release -p trainyard) >&2
fi
[[ -x "$TY" ]] || die "no trainyard binary at $TY"
python3 -c 'import http.client, json, threading' || die "python3 is needed"

# The embedded store, whatever the caller's environment says.
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export TRAINYARD_STORE=embedded TRAINYARD_HOME="$WORK/home" TRAINYARD_LOG=${TRAINYARD_LOG:-warn}
PORT=$(python3 "$REPO/bench/helper.py" ports 1)
mkdir -p "$WORK/cwd"
(cd "$WORK/cwd" && exec "$TY" serve --listen "127.0.0.1:$PORT" --capacity "$CAPACITY") \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ready=""
for _ in $(seq 1 100); do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited"; }
  if curl -s -o /dev/null --max-time 2 -X POST -H 'X-Amz-Target: SageMaker.ListTrainingJobs' \
    -d '{}' "http://127.0.0.1:$PORT/"; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || die "the server did not answer within 10 s"
log "trainyard serve on 127.0.0.1:$PORT (pid $SERVER_PID, capacity $CAPACITY), home $TRAINYARD_HOME"

load_before=$(uptime)
cpu0=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SERVER_PID/stat")
echo
echo "## API: trainyard serve on loopback ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "client: Python $(python3 -c 'import platform; print(platform.python_version())') http.client, raw AWS JSON 1.1 requests (unsigned server: no iam.json),"
echo "one keep-alive connection per client thread or process; creates: $CREATES threads at once;"
echo "describes: $DESCRIBES per phase from $CONC clients (threads of one process, or processes); server --capacity $CAPACITY"
[[ -n "${BENCH_NICE:-}" ]] && echo "autogroup nice ${BENCH_NICE} (BENCH_NICE)"
echo
set +e
python3 "$REPO/bench/api_load.py" --endpoint "http://127.0.0.1:$PORT" --creates "$CREATES" \
  --describes "$DESCRIBES" --concurrency "$CONC" --server-pid "$SERVER_PID" ${BENCH_JSON:+--json "$BENCH_JSON"}
rc=$?
set -e
cpu1=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SERVER_PID/stat")
echo
echo "server CPU during the run: $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f", b - a}') s"
echo "load before: $load_before"
echo "load after:  $(uptime)"
if grep -qiE 'error|panic' "$WORK/server.log"; then
  log "the server logged errors:"
  grep -iE 'error|panic' "$WORK/server.log" | head -20 >&2
fi
exit "$rc"
