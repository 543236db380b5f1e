#!/usr/bin/env bash
# Container image start benchmark: trainyard against `podman run` (and `docker run` when a
# docker daemon answers), one image of a few hundred MB from a real registry on loopback.
#
#   bench/images.sh
#
# Needs what .ci/run installs (docker-registry, skopeo, umoci, mmdebstrap, runc, podman,
# python3, a Rust toolchain). Builds trainyard (release) unless BENCH_SKIP_BUILD=1, builds
# the test images once (scripts/test-images.sh, cached), starts Debian's docker-registry on a
# free loopback port (scripts/registry-up.sh), pushes the benchmark image there, then per
# repetition, interleaved:
#
#   trainyard cold   $TRAINYARD_HOME/images removed; `trainyard train job.json` (TrainingImage
#                    = the registry reference, File mode, no channels, ContainerEntrypoint
#                    python3 -c "print(MARKER)")
#   podman cold      `podman rmi` first; `podman run --rm --tls-verify=false REF python3 -c ...`
#   trainyard warm   the same job, the image in trainyard's store
#   podman warm      the same run, the image in podman's storage
#
# (the order of the two tools is swapped every other repetition). Measured: seconds from
# starting the command to the first output line holding the marker, the whole command, and
# client CPU (user + sys of the command and the children it waited for). podman uses a private
# storage (--root/--runroot in the work directory): trainyard looks in the machine's
# containers-storage before any registry (crates/trainyard-oci/src/local.rs), so an image
# podman pulled into the default storage would turn trainyard's "cold" pull into a local copy.
# After the runs, a profile of one cold pull: trainyard's own job-log lines (resolve, download,
# unpack) and the same steps done by standard tools on the same blob (curl, sha256sum, gzip,
# tar), to show where the time goes.
#
# Knobs (environment):
#   BENCH_REPS=5            repetitions (each: cold and warm of every tool)
#   BENCH_IMAGE=toolkit     toolkit: the sagemaker-training image of scripts/test-images.sh
#                           (one gzip layer, ~170 MB compressed); data: base + one layer of
#                           BENCH_DATA_MB MiB of random bytes (incompressible)
#   BENCH_DATA_MB=300
#   BENCH_TOOLS="trainyard podman"   (docker is added when `docker info` answers)
#   BENCH_DIR=              work directory (default a new one under $TMPDIR, removed at exit)
#   BENCH_KEEP=0            1: keep BENCH_DIR
#   BENCH_SKIP_BUILD=0      1: use TRAINYARD_BIN as it is
#   TRAINYARD_BIN=${CARGO_TARGET_DIR:-target}/release/trainyard
#   BENCH_RESULTS=          also copy the raw results TSV here
#   PODMAN_RUN_FLAGS=       extra `podman run` flags (default: --runtime runc, plus --ulimit
#                           nofile/nproc at this shell's hard limits without CAP_SYS_RESOURCE)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMER="$REPO/bench/images_time.py"
REPS=${BENCH_REPS:-5}
IMAGE_KIND=${BENCH_IMAGE:-toolkit}
DATA_MB=${BENCH_DATA_MB:-300}
TOOLS=${BENCH_TOOLS:-"trainyard podman"}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TY=${TRAINYARD_BIN:-$TARGET_DIR/release/trainyard}
MARKER=TRAINYARD-BENCH-FIRST-LINE

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }

[[ $REPS =~ ^[1-9][0-9]?$ ]] || die "BENCH_REPS must be 1..99"
[[ $IMAGE_KIND == toolkit || $IMAGE_KIND == data ]] || die "BENCH_IMAGE must be toolkit or data"
for tool in docker-registry skopeo umoci mmdebstrap runc podman python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (see .ci/run for the packages)"
done

# --- work directory, clean-up ------------------------------------------------------------------
if [[ -n "${BENCH_DIR:-}" ]]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-images.XXXXXX")
fi
WORK=$(cd "$WORK" && pwd)
REG_STATE="$WORK/registry"
PODMAN=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run")
cleanup() {
  local rc=$?
  set +e
  "${PODMAN[@]}" rm -af >/dev/null 2>&1
  "${PODMAN[@]}" rmi -af >/dev/null 2>&1
  "${PODMAN[@]}" system reset -f >/dev/null 2>&1
  [[ -f "$REG_STATE/registry.pid" ]] && "$REPO/scripts/registry-down.sh" "$REG_STATE"
  [[ "${BENCH_KEEP:-0}" != 1 ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building trainyard (release) into $TARGET_DIR"
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p trainyard) >&2
fi
[[ -x "$TY" ]] || die "no trainyard binary at $TY"

# --- registry and image ------------------------------------------------------------------------
eval "$("$REPO/scripts/registry-up.sh" "$REG_STATE")"
REGISTRY=$TRAINYARD_TEST_REGISTRY
eval "$(env -u TRAINYARD_TEST_REGISTRY -u TRAINYARD_TEST_AUTH_REGISTRY "$REPO/scripts/test-images.sh")"
LAYOUT=$TRAINYARD_TEST_IMAGES_DIR
REF="$REGISTRY/trainyard-bench/$IMAGE_KIND:latest"
if [[ $IMAGE_KIND == toolkit ]]; then
  skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:toolkit" "docker://$REF" >&2
else
  log "building base + a layer of $DATA_MB MiB of random bytes"
  skopeo copy -q "oci:$LAYOUT:base" "oci:$WORK/layout:data" >&2
  mkdir -p "$WORK/datalayer/data"
  head -c "$((DATA_MB << 20))" /dev/urandom >"$WORK/datalayer/data/blob.bin"
  tar -C "$WORK/datalayer" --owner=0 --group=0 --numeric-owner -cf "$WORK/data.tar" data
  rm -rf "$WORK/datalayer"
  umoci raw add-layer --image "$WORK/layout:data" --history.created_by "random $DATA_MB MiB" "$WORK/data.tar"
  rm -f "$WORK/data.tar"
  skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout:data" "docker://$REF" >&2
  rm -rf "$WORK/layout"
fi
MANIFEST=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/trainyard-bench/$IMAGE_KIND/manifests/latest")
read -r LAYERS COMPRESSED BIG_LAYER < <(python3 -c '
import json, sys
m = json.loads(sys.argv[1])
ls = m["layers"]
big = max(ls, key=lambda l: l["size"])
print(len(ls), sum(l["size"] for l in ls), big["digest"])' "$MANIFEST")
log "image $REF: $LAYERS layer(s), $COMPRESSED bytes compressed"

# --- tools -------------------------------------------------------------------------------------
if command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1; then
  DOCKER_NOTE="docker: a daemon answers; timed as docker run"
  TOOLS="$TOOLS docker"
else
  DOCKER_NOTE="docker: no daemon answers \`docker info\` here; not timed"
fi
log "$DOCKER_NOTE"

export TRAINYARD_HOME="$WORK/home"
mkdir -p "$TRAINYARD_HOME"
job_json() { # name -> job.json
  python3 - "$1" "$REF" "$MARKER" <<'PY'
import json, sys
name, ref, marker = sys.argv[1:]
print(json.dumps({
  "TrainingJobName": name,
  "RoleArn": "arn:aws:iam::000000000000:role/trainyard-execution",
  "AlgorithmSpecification": {"TrainingImage": ref, "TrainingInputMode": "File",
                             "ContainerEntrypoint": ["python3", "-c", f"print('{marker}', flush=True)"]},
  "OutputDataConfig": {"S3OutputPath": "s3://trainyard-bench/images-output"},
  "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
  "StoppingCondition": {"MaxRuntimeInSeconds": 1800}}))
PY
}
RUN_CMD=(python3 -c "print('$MARKER', flush=True)")
# podman's flags. runc, as trainyard (crun refuses hybrid cgroup hierarchies, which this machine
# kind has). Rlimits: podman asks for nofile 1048576 and nproc 4194304 by default, which needs
# CAP_SYS_RESOURCE; without it (sandboxed machines) runc's setrlimit fails, so ask for the
# hard limits this shell has (nproc at most 32768: conmon lowers its own to that).
if [[ -z "${PODMAN_RUN_FLAGS+x}" ]]; then
  PODMAN_RUN_FLAGS="--runtime runc"
  cap_eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
  if (( (0x$cap_eff >> 24 & 1) == 0 )); then # CAP_SYS_RESOURCE is bit 24
    nproc=$(ulimit -Hu)
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
    PODMAN_RUN_FLAGS+=" --ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=$nproc:$nproc"
  fi
fi
log "podman run flags: $PODMAN_RUN_FLAGS"
JOBN=0
run_one() { # tool case -> "first wall cpu rc", output in $WORK/last.log
  local tool=$1 case=$2
  case $tool in
    trainyard)
      [[ $case == cold ]] && rm -rf "$TRAINYARD_HOME/images"
      JOBN=$((JOBN + 1))
      job_json "bench-images-$(date +%s)-$JOBN" >"$WORK/job.json"
      python3 "$TIMER" run "$MARKER" "$WORK/last.log" -- "$TY" train "$WORK/job.json"
      ;;
    podman)
      [[ $case == cold ]] && "${PODMAN[@]}" rmi -f "$REF" >/dev/null 2>&1
      python3 "$TIMER" run "$MARKER" "$WORK/last.log" -- \
        "${PODMAN[@]}" run --rm --tls-verify=false $PODMAN_RUN_FLAGS "$REF" "${RUN_CMD[@]}"
      ;;
    docker)
      [[ $case == cold ]] && docker rmi -f "$REF" >/dev/null 2>&1
      python3 "$TIMER" run "$MARKER" "$WORK/last.log" -- docker run --rm "$REF" "${RUN_CMD[@]}"
      ;;
  esac
}
check() { # tool case result
  local first rc
  read -r first _ _ rc <<<"$3"
  if [[ $rc != 0 || $first == -1.000 ]]; then
    tail -n 30 "$WORK/last.log" >&2
    die "$1 $2: exit $rc, marker seen: $([[ $first == -1.000 ]] && echo no || echo yes)"
  fi
}

# --- runs --------------------------------------------------------------------------------------
read -ra TOOL_ARR <<<"$TOOLS"
nt=${#TOOL_ARR[@]}
log "warm-up (not timed): one cold and one warm run of each tool"
for tool in "${TOOL_ARR[@]}"; do
  for case in cold warm; do check "$tool" "$case" "$(run_one "$tool" "$case")"; done
done
RESULTS="$WORK/images.tsv"
echo "# tool case rep first_line_s wall_s client_cpu_s load1" >"$RESULTS"
TY_LOGS="$WORK/trainyard-cold-logs"
mkdir -p "$TY_LOGS"
LOADS=()
log "timing: $REPS reps of cold then warm, tools [$TOOLS]; $(uptime)"
for rep in $(seq 1 "$REPS"); do
  for case in cold warm; do
    for i in $(seq 0 $((nt - 1))); do
      tool=${TOOL_ARR[$(((i + rep - 1) % nt))]} # swap the order every repetition
      load=$(cut -d' ' -f1 /proc/loadavg)
      LOADS+=("$load")
      res=$(run_one "$tool" "$case")
      check "$tool" "$case" "$res"
      read -r first wall cpu _ <<<"$res"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$case" "$rep" "$first" "$wall" "$cpu" "$load" >>"$RESULTS"
      log "rep $rep $case $tool: first line ${first} s, command ${wall} s, client CPU ${cpu} s (load1 $load)"
      [[ $tool == trainyard ]] && cp "$WORK/last.log" "$TY_LOGS/$case-$rep.log"
    done
  done
done
[[ -n "${BENCH_RESULTS:-}" ]] && cp "$RESULTS" "$BENCH_RESULTS"

# --- profile of a cold pull --------------------------------------------------------------------
# trainyard's job-log lines of the image pull, on the run's clock (seconds since the command
# started).
profile_lines() {
  grep -E 'created training job|Downloading the training image|Pulling the training image|resolved to|pulling [0-9]+ layers|layer [0-9]+/|unpacked|already present|Training in progress|'"$MARKER" "$1" |
    sed -E 's/sha256:([0-9a-f]{12})[0-9a-f]+/sha256:\1…/g; s/ \(arn:[^)]*\)//'
}
BLOB="$WORK/blob"
t=$(now)
curl -sf -o "$BLOB" "http://$REGISTRY/v2/trainyard-bench/$IMAGE_KIND/blobs/$BIG_LAYER"
T_CURL=$(elapsed "$t")
t=$(now)
sha256sum "$BLOB" >/dev/null
T_SHA=$(elapsed "$t")
t=$(now)
gzip -dc "$BLOB" >"$WORK/layer.tar"
T_GUNZIP=$(elapsed "$t")
UNCOMPRESSED=$(stat -c %s "$WORK/layer.tar")
t=$(now)
sha256sum "$WORK/layer.tar" >/dev/null
T_SHA_TAR=$(elapsed "$t")
mkdir -p "$WORK/untar"
t=$(now)
tar -C "$WORK/untar" --numeric-owner -xf "$WORK/layer.tar"
T_UNTAR=$(elapsed "$t")
FILES=$(find "$WORK/untar" | wc -l)
rm -rf "$WORK/untar" "$WORK/layer.tar" "$BLOB"
t=$(now)
skopeo inspect --raw "containers-storage:$REF" >/dev/null 2>&1 || true
T_SKOPEO=$(elapsed "$t")
"${PODMAN[@]}" rmi -f "$REF" >/dev/null 2>&1
t=$(now)
"${PODMAN[@]}" pull -q --tls-verify=false "$REF" >/dev/null
T_PODMAN_PULL=$(elapsed "$t")

# --- report ------------------------------------------------------------------------------------
echo
echo "## Image start: trainyard vs podman run, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Image $IMAGE_KIND: $LAYERS layer(s), $COMPRESSED B compressed, largest layer $UNCOMPRESSED B"
echo "uncompressed ($FILES entries); Debian docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') on loopback;"
echo "trainyard $(git -C "$REPO" rev-parse --short HEAD) ($TY), runc $(runc --version | awk 'NR==1 {print $3}'),"
echo "$(podman --version) (storage $("${PODMAN[@]}" info --format '{{.Store.GraphDriverName}}' 2>/dev/null), \`podman run $PODMAN_RUN_FLAGS\`),"
echo "$DOCKER_NOTE. Load: other work shares the machine (see load1)."
echo "$REPS interleaved repetitions after an untimed warm-up; page cache not dropped (the registry's"
echo "blobs stay cached for every tool). Time = from starting the command to the first line the"
echo "container prints; client CPU = user+sys of the command and the children it waited for"
echo "(podman's conmon and the container's processes are not its waited-for children)."
echo
python3 "$TIMER" report "$RESULTS"
echo
echo "load during the runs (1-min averages): min $(printf '%s\n' "${LOADS[@]}" | sort -n | head -1), max $(printf '%s\n' "${LOADS[@]}" | sort -n | tail -1); now: $(uptime)"
echo
echo "### Where a cold start goes"
echo
for case in cold warm; do
  [[ " $TOOLS " == *" trainyard "* ]] || break
  echo "trainyard $case, phases from its job log (medians of the $REPS timed runs):"
  echo
  python3 "$TIMER" phases "$MARKER" "$TY_LOGS/$case"-*.log
  echo
done
if [[ " $TOOLS " == *" trainyard "* ]]; then
  echo "The job log of the last cold run (seconds since the command started):"
  echo
  echo '```'
  profile_lines "$TY_LOGS/cold-$REPS.log"
  echo '```'
  echo
fi
echo
echo "The same steps with standard tools on the largest layer (one run each, seconds):"
echo
echo "| step | seconds |"
echo "|---|---|"
echo "| curl GET of the blob from the registry to a file | $T_CURL |"
echo "| sha256sum of the compressed blob | $T_SHA |"
echo "| gzip -dc to a file | $T_GUNZIP |"
echo "| sha256sum of the uncompressed tar (the diff_id) | $T_SHA_TAR |"
echo "| tar -x of the uncompressed tar | $T_UNTAR |"
echo "| skopeo inspect containers-storage:REF (trainyard's local-storage lookup, image absent) | $T_SKOPEO |"
echo "| podman pull (cold), for podman's split of pull and run | $T_PODMAN_PULL |"
