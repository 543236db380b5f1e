#!/usr/bin/env bash
# Pipe-mode benchmark: throughput of a trainyard Pipe-mode FIFO read to the end, against
# `s5cmd cat` into a FIFO read the same way and the server's raw GET ceiling, all from
# garage 2.5.0 on loopback (127.0.0.1:3920).
#
#   bench/pipe.sh
#
# Sets (uploaded once with s5cmd; see bench/s3_common.sh): large = 4 x 512 MiB, small =
# 20,000 x 64 KiB. Per repetition and set, tools interleaved (order rotated), page cache dropped
# before each run (garage's data files live on disk):
#   trainyard   `trainyard train job.json`: TrainingImage host, TrainingInputMode Pipe, one
#               S3Prefix channel `train`; the entrypoint is a Python reader that opens
#               /opt/ml/input/data/train_0, reads it to EOF in 1 MiB reads and prints bytes and
#               seconds (from before open() to EOF); MB/s from that. The whole job's wall time
#               is recorded too.
#   s5cmd-cat   mkfifo F; s5cmd cat 's3://bucket/SET/*' > F & cat F > /dev/null (defaults)
#   raw         s5cmd --numworkers 256 cp --concurrency 16 --part-size 8 's3://bucket/SET/*'
#               to a tmpfs directory (/dev/shm), i.e. the most the server gives this machine
#
# Knobs: BENCH_REPS=1, BENCH_TOOLS="trainyard s5cmd-cat raw", BENCH_SETS="large small", plus
# those of bench/s3_common.sh.
set -euo pipefail
NAME=pipe
REPS=${BENCH_REPS:-1}
TOOLS=${BENCH_TOOLS:-"trainyard s5cmd-cat raw"}
SETS=${BENCH_SETS:-"large small"}
SETS_NEEDED=$SETS
[[ $REPS =~ ^[1-9]$ ]] || { echo "BENCH_REPS must be 1..9" >&2; exit 2; }

# shellcheck source=bench/s3_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/s3_common.sh"

RAW_DIR=$(mktemp -d /dev/shm/trainyard-pipe-raw.XXXXXX)
BG=""
CLEANUP_HOOKS+=('[[ -n "$BG" ]] && kill "$BG" 2>/dev/null; rm -rf "$RAW_DIR" "$WORK/fifo"')

READER='
import os, sys, time
p = os.path.join(os.environ.get("SM_INPUT_DIR", "/opt/ml/input"), "data", "train_0")
t0 = time.monotonic()
fd = os.open(p, os.O_RDONLY)
buf = bytearray(1 << 20)
n = 0
first = None
while True:
    k = os.readv(fd, [buf])
    if k == 0:
        break
    if first is None:
        first = time.monotonic() - t0
    n += k
dt = time.monotonic() - t0
print(f"PIPE_RESULT bytes={n} seconds={dt:.3f} first_byte_s={first or 0:.3f} MBps={n / dt / 1e6:.1f}", flush=True)
'
printf '%s' "$READER" >"$WORK/pipe_reader.py" # entrypoint members are limited to 256 characters
job_json() { # set name -> job.json
  python3 - "$1" "$2" "$BUCKET" "$WORK/pipe_reader.py" <<'PY'
import json, sys
s, name, bucket, reader = sys.argv[1:]
print(json.dumps({
  "TrainingJobName": name,
  "RoleArn": "arn:aws:iam::000000000000:role/trainyard-execution",
  "AlgorithmSpecification": {"TrainingImage": "host", "TrainingInputMode": "Pipe",
                             "ContainerEntrypoint": ["python3", reader]},
  "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
      "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{s}/"}}}],
  "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/pipe-output"},
  "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
  "StoppingCondition": {"MaxRuntimeInSeconds": 1800}}))
PY
}

RESULTS="$WORK/pipe.tsv"
: >"$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >>"$RESULTS"; } # tool set rep metric value load1
total_bytes() { if [[ $1 == large ]]; then echo $((LARGE_N * LARGE_SIZE)); else echo $((SMALL_N * SMALL_SIZE)); fi; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / s / 1e6}'; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
LOADS=()
read -ra TOOL_ARR <<<"$TOOLS"
nt=${#TOOL_ARR[@]}
log "start: $(uptime)"
for rep in $(seq 1 "$REPS"); do
  for s in $SETS; do
    bytes=$(total_bytes "$s")
    for i in $(seq 0 $((nt - 1))); do
      tool=${TOOL_ARR[$(((i + rep - 1) % nt))]}
      rm -rf "${RAW_DIR:?}"/*
      drop_caches
      l=$(load1)
      LOADS+=("$l")
      g0=$(cpu_s "$GARAGE_PID")
      case $tool in
        trainyard)
          name="pipe-$s-$rep-$(date +%s)"
          job_json "$s" "$name" >"$WORK/job.json"
          ts=$(now)
          if ! timeout 1800 "$TY" train "$WORK/job.json" >"$WORK/last.log" 2>&1; then
            tail -n 30 "$WORK/last.log" >&2
            die "trainyard job $name failed"
          fi
          wall=$(elapsed "$ts")
          line=$(grep -o 'PIPE_RESULT.*' "$WORK/last.log" | tail -n1)
          [[ -n "$line" ]] || { tail -n 30 "$WORK/last.log" >&2; die "no PIPE_RESULT in the job output"; }
          got=$(sed 's/.*bytes=\([0-9]*\).*/\1/' <<<"$line")
          secs=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")
          fb=$(sed 's/.*first_byte_s=\([0-9.]*\).*/\1/' <<<"$line")
          [[ $got == "$bytes" ]] || die "trainyard $s: read $got bytes from the FIFO, expected $bytes"
          rec "$tool" "$s" "$rep" job_wall_s "$wall" "$l"
          rec "$tool" "$s" "$rep" first_byte_s "$fb" "$l"
          msg="read $got B in $secs s (job wall $wall s)"
          ;;
        s5cmd-cat)
          rm -f "$WORK/fifo"
          mkfifo "$WORK/fifo"
          ts=$(now)
          s5cmd --log error cat "s3://$BUCKET/$s/*" >"$WORK/fifo" &
          BG=$!
          got=$(dd if="$WORK/fifo" of=/dev/null bs=1M 2>&1 | awk '/bytes/ {print $1}')
          wait "$BG" || die "s5cmd cat failed"
          BG=""
          secs=$(elapsed "$ts")
          [[ $got == "$bytes" ]] || die "s5cmd cat $s: $got bytes through the FIFO, expected $bytes"
          msg="read $got B in $secs s"
          ;;
        raw)
          ts=$(now)
          s5cmd --log error --numworkers 256 cp --concurrency 16 --part-size 8 "s3://$BUCKET/$s/*" "$RAW_DIR/"
          secs=$(elapsed "$ts")
          got=$(du -sb "$RAW_DIR" | awk '{print $1}')
          msg="copied to tmpfs in $secs s"
          ;;
      esac
      rec "$tool" "$s" "$rep" seconds "$secs" "$l"
      rec "$tool" "$s" "$rep" MBps "$(mbps "$bytes" "$secs")" "$l"
      rec "$tool" "$s" "$rep" objects_per_s "$(awk -v s="$secs" -v n="$([[ $s == large ]] && echo "$LARGE_N" || echo "$SMALL_N")" 'BEGIN {printf "%.0f", n / s}')" "$l"
      rec "$tool" "$s" "$rep" garage_cpu_s "$(awk -v a="$g0" -v b="$(cpu_s "$GARAGE_PID")" 'BEGIN {printf "%.2f", b - a}')" "$l"
      log "rep $rep $s $tool: $msg (load1 $l)"
    done
  done
done
rm -rf "${RAW_DIR:?}"/*

echo
echo "## Pipe mode: FIFO throughput from garage 2.5.0 on loopback ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "large = $LARGE_N x $LARGE_SIZE B, small = $SMALL_N x $SMALL_SIZE B; $REPS run(s), page cache dropped"
echo "before each: $([[ $DROP == 1 && -w /proc/sys/vm/drop_caches ]] && echo yes || echo no). Medians. trainyard = reader in"
echo "a real Pipe-mode job (seconds from open() to EOF); s5cmd-cat = s5cmd $(s5cmd version) cat into a FIFO,"
echo "read by dd; raw = s5cmd --numworkers 256 cp --concurrency 16 --part-size 8 to tmpfs."
echo
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tools = list(dict.fromkeys(r[0] for r in rows))
sets = list(dict.fromkeys(r[1] for r in rows))
def med(t, s, m):
    v = [float(r[4]) for r in rows if r[0] == t and r[1] == s and r[3] == m]
    return statistics.median(v) if v else None
f = lambda v: "-" if v is None else f"{v:g}"
print("| set | tool | seconds | MB/s | objects/s | first byte s | job wall s | garage CPU s | vs raw |")
print("|---|---|---|---|---|---|---|---|---|")
for s in sets:
    raw = med("raw", s, "MBps")
    for t in tools:
        m = med(t, s, "MBps")
        ratio = f"{m / raw:.2f}x" if raw and m else "-"
        print(f"| {s} | {t} | {f(med(t, s, 'seconds'))} | {f(m)} | {f(med(t, s, 'objects_per_s'))} | "
              f"{f(med(t, s, 'first_byte_s'))} | {f(med(t, s, 'job_wall_s'))} | {f(med(t, s, 'garage_cpu_s'))} | {ratio} |")
loads = [float(r[5]) for r in rows]
print(f"\nload1 at the start of the runs: min {min(loads)}, median {statistics.median(loads)}, max {max(loads)}")
print()
for s in sets:
    ty, raw, cat = med("trainyard", s, "MBps"), med("raw", s, "MBps"), med("s5cmd-cat", s, "MBps")
    if ty and raw:
        print(f"- {s}: trainyard / raw ceiling = {ty / raw:.2f} (target >= 0.9: {'met' if ty >= 0.9 * raw else 'MISSED'})"
              + (f"; trainyard / s5cmd cat = {ty / cat:.2f}" if cat else ""))
PY
echo
echo "now: $(uptime)"
