#!/usr/bin/env bash
# Builds trainyard's small test images from Debian's packages, once, and pushes them to the
# test registries:
#
#   eval "$(scripts/registry-up.sh "$state")"
#   scripts/test-images.sh            # builds on first use (minutes), then only pushes
#
# Images (OCI layouts, one per image, under $TRAINYARD_TEST_IMAGES, default
# ~/.cache/trainyard/test-images/<hash of this script>/):
#
#   base     Debian bookworm minbase + python3; no ENTRYPOINT.
#   byo      base + one layer with /usr/local/bin/train (prints its argv and the SM_* variables,
#            writes /opt/ml/model/out.txt); ENTRYPOINT ["train"], WORKDIR /opt/ml/code,
#            ENV TRAINYARD_BYO=1: the "bring your own container" shape.
#   toolkit  Debian bookworm minbase + python3-pip + `pip install sagemaker-training`, as AWS
#            framework images have it (one layer; the wheels are built on this machine).
#
# Why these tools: mmdebstrap builds a root file system from Debian's packages without a
# container engine, umoci packs it as an OCI layout without a daemon, and skopeo copies layouts
# to any registry (plain HTTP with --dest-tls-verify=false). The cache key is this script's
# hash, so editing the script rebuilds; delete the directory to rebuild by hand.
#
# Pushed to $TRAINYARD_TEST_REGISTRY (anonymous) and, when set, $TRAINYARD_TEST_AUTH_REGISTRY
# with $TRAINYARD_TEST_AUTH_CREDS (user:pass), as trainyard-test/<image>:latest. Without either
# variable the script only builds. Prints `export TRAINYARD_TEST_IMAGES_DIR=...` (the layouts).
# Everything else goes to stderr.
set -euo pipefail

log() { printf 'test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in mmdebstrap umoci skopeo; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y mmdebstrap umoci skopeo)"
done

SCRIPT_HASH=$(sha256sum "$0" | cut -c1-16)
CACHE=${TRAINYARD_TEST_IMAGES:-$HOME/.cache/trainyard/test-images}
OUT="$CACHE/$SCRIPT_HASH"
MIRROR=${TRAINYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# Reproducible-ish timestamps: the same build yields the same image config dates.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

# Smaller root file systems: no documentation, manual pages or translations.
SLIM_DPKG=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
CLEAN_HOOK='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/root/.cache'

build() {
  local work=$1
  local layout="$work/oci"

  log "building base (mmdebstrap $SUITE minbase + python3)"
  mmdebstrap --variant=minbase --include=python3 "${SLIM_DPKG[@]}" \
    --customize-hook="$CLEAN_HOOK" \
    "$SUITE" "$work/base.tar" "$MIRROR" >&2

  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  umoci raw add-layer --image "$layout:base" --history.created_by 'mmdebstrap minbase python3' \
    "$work/base.tar"
  umoci config --image "$layout:base" --os linux --architecture amd64 \
    --config.env 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --config.cmd /bin/sh

  log "building byo (base + /usr/local/bin/train)"
  mkdir -p "$work/byo/usr/local/bin"
  cat > "$work/byo/usr/local/bin/train" <<'PY'
#!/usr/bin/python3
"""trainyard's BYO test program: shows what the container contract handed it."""
import json, os, sys

print("argv=" + json.dumps(sys.argv), flush=True)
print("cwd=" + os.getcwd(), flush=True)
for key in sorted(os.environ):
    if key.startswith("SM_") or key.startswith("TRAINYARD_"):
        print(f"env {key}={os.environ[key]}", flush=True)
os.makedirs("/opt/ml/model", exist_ok=True)
with open("/opt/ml/model/out.txt", "w") as out:
    out.write(json.dumps({"argv": sys.argv, "cwd": os.getcwd()}) + "\n")
print("byo: done", flush=True)
PY
  chmod 0755 "$work/byo/usr/local/bin/train"
  tar -C "$work/byo" --owner=0 --group=0 --numeric-owner --mtime=@"$SOURCE_DATE_EPOCH" \
    --sort=name -cf "$work/byo.tar" usr
  umoci raw add-layer --image "$layout:base" --tag byo --history.created_by 'COPY train' \
    "$work/byo.tar"
  umoci config --image "$layout:byo" --config.entrypoint train --clear config.cmd \
    --config.workingdir /opt/ml/code --config.env TRAINYARD_BYO=1

  log "building toolkit (minbase + python3-pip + pip install sagemaker-training)"
  # Wheels are built on this machine (its pip configuration, CA bundle and compiler: the
  # toolkit has a C extension) and installed offline in the root file system, so the image
  # needs neither gcc nor network access during the build. Host and image must both run
  # Python 3.11 (bookworm's); checked here.
  python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "building the toolkit image needs python3 3.11 on this machine (bookworm's), for the wheels"
  python3 -m pip wheel -q --wheel-dir "$work/wheels" sagemaker-training >&2
  mmdebstrap --variant=minbase --include=python3,python3-pip \
    "${SLIM_DPKG[@]}" \
    --customize-hook="cp -r '$work/wheels' \"\$1/tmp/wheels\"" \
    --customize-hook='chroot "$1" python3 -m pip install -q --no-index --find-links /tmp/wheels --no-cache-dir --break-system-packages sagemaker-training' \
    --customize-hook='rm -rf "$1/tmp/wheels"' \
    --customize-hook="$CLEAN_HOOK" \
    "$SUITE" "$work/toolkit.tar" "$MIRROR" >&2
  umoci new --image "$layout:toolkit"
  umoci raw add-layer --image "$layout:toolkit" \
    --history.created_by 'mmdebstrap minbase python3-pip + pip install sagemaker-training' \
    "$work/toolkit.tar"
  umoci config --image "$layout:toolkit" --os linux --architecture amd64 \
    --config.env 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --config.cmd /bin/sh
  umoci gc --layout "$layout"
  rm -f "$work"/*.tar
  rm -rf "$work/byo" "$work/wheels"
}

if [[ ! -f "$OUT/done" ]]; then
  mkdir -p "$CACHE"
  # One build at a time on this machine; a second caller waits and reuses the result.
  exec 9>"$CACHE/.build.lock"
  flock 9
  if [[ ! -f "$OUT/done" ]]; then
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    start=$SECONDS
    build "$work"
    rm -rf "$OUT"
    mv "$work" "$OUT"
    trap - EXIT
    touch "$OUT/done"
    log "built in $((SECONDS - start)) s: $(du -sh "$OUT/oci" | cut -f1) in $OUT/oci"
  fi
  flock -u 9
fi

push() {
  local registry=$1
  shift
  local image
  for image in base byo toolkit; do
    skopeo copy -q --dest-tls-verify=false "$@" \
      "oci:$OUT/oci:$image" "docker://$registry/trainyard-test/$image:latest" >&2
  done
  log "pushed base, byo, toolkit to $registry/trainyard-test"
}
[[ -n "${TRAINYARD_TEST_REGISTRY:-}" ]] && push "$TRAINYARD_TEST_REGISTRY"
if [[ -n "${TRAINYARD_TEST_AUTH_REGISTRY:-}" ]]; then
  push "$TRAINYARD_TEST_AUTH_REGISTRY" --dest-creds "${TRAINYARD_TEST_AUTH_CREDS:?TRAINYARD_TEST_AUTH_CREDS (user:pass) is needed with TRAINYARD_TEST_AUTH_REGISTRY}"
fi
echo "export TRAINYARD_TEST_IMAGES_DIR='$OUT/oci'"
