#!/usr/bin/env bash
# FastFile benchmark: trainyard's FUSE mount (`trainyard mount`) against `rclone mount` and
# `s3fs`, all reading the same objects from garage 2.5.0 on loopback (127.0.0.1:3920).
#
#   bench/fastfile.sh
#
# Sets (uploaded once with s5cmd; see bench/s3_common.sh): large = 4 x 512 MiB, small =
# 20,000 x 64 KiB (bench/helper.py gen, incompressible), tiny = 100,000 empty objects.
# Per repetition and tool (order rotated each repetition), each test on a fresh mount with the
# page cache dropped first:
#   large: mount large/, time from launching the mount to the first byte of f000000.bin
#          (bash builtin `read -n1` polled every ~2 ms), then `dd bs=1M` of the 4 files in turn
#   small: mount small/, `find -type f -print0 | xargs -0 -P8 -n100 cat >/dev/null`
#   tiny:  mount tiny/, time until the mount point is up, then until `ls -f` lists all objects
# and peak RSS of the FUSE process (VmHWM) at the end of each test.
#
# Knobs: BENCH_REPS=1, BENCH_TOOLS="trainyard rclone s3fs", BENCH_TESTS="large small tiny",
# BENCH_LIST_TIMEOUT=300 (s, per listing), plus those of bench/s3_common.sh.
set -euo pipefail
NAME=fastfile
REPS=${BENCH_REPS:-1}
TOOLS=${BENCH_TOOLS:-"trainyard rclone s3fs"}
TESTS=${BENCH_TESTS:-"large small tiny"}
LIST_TIMEOUT=${BENCH_LIST_TIMEOUT:-300}
SETS_NEEDED=$TESTS
[[ $REPS =~ ^[1-9]$ ]] || { echo "BENCH_REPS must be 1..9" >&2; exit 2; }

missing=()
command -v rclone >/dev/null || missing+=(rclone)
command -v s3fs >/dev/null || missing+=(s3fs)
command -v fusermount3 >/dev/null || missing+=(fuse3)
if ((${#missing[@]})); then
  echo "[fastfile] installing ${missing[*]}" >&2
  apt-get update >&2 && apt-get install -y "${missing[@]}" >&2
fi

# shellcheck source=bench/s3_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/s3_common.sh"

MNT="$WORK/mnt"
mkdir -p "$MNT"
MPID=""
stop_mount() { # unmount $MNT and end the FUSE process $MPID (bounded waits)
  local pid=$MPID
  [[ -n "$pid" ]] || return 0
  if [[ $CUR_TOOL == trainyard ]]; then
    kill -TERM "$pid" 2>/dev/null || true
  else
    fusermount3 -u "$MNT" 2>/dev/null || true
  fi
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$CUR_TOOL (pid $pid) still running after unmount; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  mountpoint -q "$MNT" && fusermount3 -u -z "$MNT" 2>/dev/null
  MPID=""
}
CUR_TOOL=""
CLEANUP_HOOKS+=("stop_mount")

RCLONE_CONF="$WORK/rclone.conf"
cat >"$RCLONE_CONF" <<EOF
[gar]
type = s3
provider = Other
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
endpoint = $EP
region = us-east-1
force_path_style = true
EOF
S3FS_PW="$WORK/s3fs.passwd"
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$S3FS_PW"
chmod 600 "$S3FS_PW"

start_mount() { # tool prefix -> MPID, T0
  local tool=$1 p=$2
  CUR_TOOL=$tool
  T0=$(now)
  case $tool in
    trainyard) "$TY" mount "s3://$BUCKET/$p/" "$MNT" >"$WORK/mount.log" 2>&1 & ;;
    # rclone's S3 backend fails on AWS_CA_BUNDLE ("unsupported transport"); plain http anyway
    rclone) env -u AWS_CA_BUNDLE rclone mount --config "$RCLONE_CONF" "gar:$BUCKET/$p" "$MNT" --read-only \
      --vfs-cache-mode off >"$WORK/mount.log" 2>&1 & ;;
    s3fs) s3fs "$BUCKET:/$p" "$MNT" -f -o "ro,url=$EP,use_path_request_style,passwd_file=$S3FS_PW,endpoint=us-east-1" \
      >"$WORK/mount.log" 2>&1 & ;;
  esac
  MPID=$!
}
wait_mounted() { # -> seconds from T0 until the mount is up ("mounted at" for trainyard)
  for _ in $(seq 1 6000); do
    kill -0 "$MPID" 2>/dev/null || { cat "$WORK/mount.log" >&2; die "$CUR_TOOL exited while mounting"; }
    if [[ $CUR_TOOL == trainyard ]]; then
      grep -q 'mounted at' "$WORK/mount.log" && { elapsed "$T0"; return; }
    elif mountpoint -q "$MNT"; then
      elapsed "$T0"; return
    fi
    sleep 0.01
  done
  die "$CUR_TOOL: not mounted after 60 s"
}
first_byte() { # file -> seconds from T0 until one byte of it has been read
  local f=$1 c deadline
  deadline=$(awk -v a="$T0" 'BEGIN {printf "%d", a + 60}')
  while :; do
    if IFS= read -r -d '' -n 1 c 2>/dev/null <"$f"; then elapsed "$T0"; return; fi
    kill -0 "$MPID" 2>/dev/null || { cat "$WORK/mount.log" >&2; die "$CUR_TOOL exited while mounting"; }
    (($(date +%s) < deadline)) || { tail -n 20 "$WORK/mount.log" >&2; die "$CUR_TOOL: no byte of $f within 60 s"; }
    sleep 0.002
  done
}
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$MPID/status" 2>/dev/null || echo 0; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }

RESULTS="$WORK/fastfile.tsv"
: >"$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; } # tool rep metric value load1
LOADS=()
read -ra TOOL_ARR <<<"$TOOLS"
nt=${#TOOL_ARR[@]}
log "start: $(uptime)"
for rep in $(seq 1 "$REPS"); do
  for t in $TESTS; do
    for i in $(seq 0 $((nt - 1))); do
      tool=${TOOL_ARR[$(((i + rep - 1) % nt))]}
      drop_caches
      l=$(load1)
      LOADS+=("$l")
      g0=$(cpu_s "$GARAGE_PID")
      case $t in
        large)
          start_mount "$tool" large
          fb=$(first_byte "$MNT/f000000.bin")
          up=$(wait_mounted)
          rec "$tool" "$rep" first_byte_s "$fb" "$l"
          rec "$tool" "$rep" large_mount_s "$up" "$l"
          c0=$(cpu_s "$MPID")
          ts=$(now)
          for k in $(seq 0 $((LARGE_N - 1))); do
            dd if="$MNT/$(printf 'f%06d.bin' "$k")" of=/dev/null bs=1M status=none
          done
          secs=$(elapsed "$ts")
          rec "$tool" "$rep" large_s "$secs" "$l"
          rec "$tool" "$rep" large_MBps "$(awk -v s="$secs" -v b=$((LARGE_N * LARGE_SIZE)) 'BEGIN {printf "%.1f", b / s / 1e6}')" "$l"
          rec "$tool" "$rep" large_fuse_cpu_s "$(awk -v a="$c0" -v b="$(cpu_s "$MPID")" 'BEGIN {printf "%.2f", b - a}')" "$l"
          rec "$tool" "$rep" large_hwm_MiB "$(($(hwm_kib) / 1024))" "$l"
          msg="first byte ${fb} s, $((LARGE_N)) x $LARGE_SIZE B in ${secs} s"
          ;;
        small)
          start_mount "$tool" small
          up=$(wait_mounted)
          c0=$(cpu_s "$MPID")
          ts=$(now)
          find "$MNT/" -type f -print0 | xargs -0 -P8 -n100 cat >/dev/null
          secs=$(elapsed "$ts")
          n=$(find "$MNT/" -type f | wc -l)
          [[ $n == "$SMALL_N" ]] || die "$tool: $n files under small/, expected $SMALL_N"
          rec "$tool" "$rep" small_s "$secs" "$l"
          rec "$tool" "$rep" small_files_per_s "$(awk -v s="$secs" -v n="$SMALL_N" 'BEGIN {printf "%.0f", n / s}')" "$l"
          rec "$tool" "$rep" small_fuse_cpu_s "$(awk -v a="$c0" -v b="$(cpu_s "$MPID")" 'BEGIN {printf "%.2f", b - a}')" "$l"
          rec "$tool" "$rep" small_hwm_MiB "$(($(hwm_kib) / 1024))" "$l"
          msg="$SMALL_N files in ${secs} s"
          ;;
        tiny)
          start_mount "$tool" "$(set_prefix tiny)"
          up=$(wait_mounted)
          n=$(timeout "$LIST_TIMEOUT" ls -f "$MNT/" | wc -l) || true
          lst=$(elapsed "$T0")
          n=$((n - 2)) # . and ..
          if [[ $n != "$TINY_N" ]]; then
            log "$tool: listed $n of $TINY_N entries (timeout ${LIST_TIMEOUT} s?)"
            lst=">$lst"
          fi
          rec "$tool" "$rep" tiny_mount_s "$up" "$l"
          rec "$tool" "$rep" tiny_listed_s "$lst" "$l"
          rec "$tool" "$rep" tiny_hwm_MiB "$(($(hwm_kib) / 1024))" "$l"
          msg="mounted in ${up} s, $n entries listed ${lst} s after launch"
          ;;
      esac
      rec "$tool" "$rep" "${t}_garage_cpu_s" "$(awk -v a="$g0" -v b="$(cpu_s "$GARAGE_PID")" 'BEGIN {printf "%.2f", b - a}')" "$l"
      stop_mount
      log "rep $rep $t $tool: $msg (load1 $l)"
    done
  done
done

echo
echo "## FastFile: FUSE mounts over garage 2.5.0 on loopback ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "large = $LARGE_N x $LARGE_SIZE B (dd bs=1M, one file after another), small = $SMALL_N x $SMALL_SIZE B"
echo "(find | xargs -P8 cat), tiny = $TINY_N empty objects; $REPS run(s), page cache dropped before each:"
echo "$([[ $DROP == 1 && -w /proc/sys/vm/drop_caches ]] && echo yes || echo no). Medians. $(rclone version 2>/dev/null | head -1), $(s3fs --version 2>/dev/null | head -1 | sed 's/Amazon Simple Storage Service File System/s3fs/')"
echo
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tools = list(dict.fromkeys(r[0] for r in rows))
metrics = list(dict.fromkeys(r[2] for r in rows))
def med(tool, m):
    v = [r[3] for r in rows if r[0] == tool and r[2] == m]
    if not v: return None
    if any(x.startswith(">") for x in v): return v[0]
    return statistics.median(float(x) for x in v)
fmt = lambda v: "-" if v is None else (v if isinstance(v, str) else f"{v:g}")
print("| metric | " + " | ".join(tools) + " |")
print("|---|" + "---|" * len(tools))
for m in metrics:
    print(f"| {m} | " + " | ".join(fmt(med(t, m)) for t in tools) + " |")
loads = [float(r[4]) for r in rows]
print(f"\nload1 at the start of the runs: min {min(loads)}, median {statistics.median(loads)}, max {max(loads)}")
if "trainyard" in tools and len(tools) > 1:
    peers = [t for t in tools if t != "trainyard"]
    print()
    for m, higher in (("large_MBps", True), ("small_files_per_s", True), ("first_byte_s", False),
                      ("tiny_listed_s", False), ("large_hwm_MiB", False), ("small_hwm_MiB", False)):
        ty = med("trainyard", m)
        pv = [(med(p, m), p) for p in peers]
        pv = [(v, p) for v, p in pv if isinstance(v, float)]
        if not isinstance(ty, float) or not pv: continue
        best, bp = (max if higher else min)(pv)
        ratio = (ty / best) if higher else (best / ty if ty else float("inf"))
        print(f"- {m}: trainyard {ty:g} vs best peer {bp} {best:g}: {ratio:.2f}x {'better' if ratio >= 1 else 'worse'}")
    fb = med("trainyard", "first_byte_s")
    lm = med("trainyard", "large_MBps")
    best = max((med(p, "large_MBps") or 0) for p in peers)
    print(f"\ntargets: sequential >= 2x best peer: {'met' if lm >= 2 * best else 'MISSED'} ({lm / best:.2f}x); "
          f"first byte < 50 ms: {'met' if fb < 0.05 else 'MISSED'} ({fb * 1000:.0f} ms)")
PY
echo
echo "now: $(uptime)"
