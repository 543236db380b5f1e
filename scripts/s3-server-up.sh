#!/usr/bin/env bash
# Starts garage 2.5.0, a third-party S3-compatible server, on loopback for trainyard's
# real-server tests and benchmarks, creates a test bucket, and prints `export` lines:
#
#   eval "$(scripts/s3-server-up.sh [STATE_DIR])"
#   cargo test -p trainyard-s3 --test s3_server
#   scripts/s3-server-down.sh          # uses $TRAINYARD_TEST_S3_STATE
#
# Why garage: it checks signatures, keeps connections alive and passed 73 of 74 S3 behaviour
# checks on this kind of machine (shared/S3-SERVERS.md). The configuration is the one
# measured there. If `garage` is not on PATH it is built with cargo (about 8-12 minutes on
# 2 cores, once per machine); a build already running (e.g. started by another session) is
# waited for instead of starting a second one.
#
# STATE_DIR holds garage.toml, meta/, data/, garage.log and garage.pid; without it a fresh
# temporary directory is used (and removed by s3-server-down.sh). Ports and keys can be
# changed with the environment variables below. Everything except the export lines goes to
# stderr.
set -euo pipefail

GARAGE_VERSION=2.5.0
S3_PORT=${TRAINYARD_GARAGE_S3_PORT:-3900}
RPC_PORT=${TRAINYARD_GARAGE_RPC_PORT:-3901}
ADMIN_PORT=${TRAINYARD_GARAGE_ADMIN_PORT:-3903}
BUCKET=${TRAINYARD_TEST_S3_BUCKET:-trainyard-test}
REGION=us-east-1
# garage needs 8+ alphanumerics for the access key and 16+ characters for the secret.
export GARAGE_DEFAULT_ACCESS_KEY=${TRAINYARD_GARAGE_ACCESS_KEY:-testaccesskey01}
export GARAGE_DEFAULT_SECRET_KEY=${TRAINYARD_GARAGE_SECRET_KEY:-testsecretkey0123456789}
ENDPOINT="http://127.0.0.1:${S3_PORT}"

log() { printf 's3-server-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- garage binary -----------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
have_garage() {
  command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"
}
other_build_running() {
  # A `cargo install garage` started by someone else (not this script's own children).
  pgrep -f 'cargo install garage' >/dev/null 2>&1
}
if ! have_garage; then
  if other_build_running; then
    log "a build of garage is already running; waiting for it (up to 30 minutes)"
    for _ in $(seq 1 360); do
      have_garage && break
      other_build_running || break
      sleep 5
    done
  fi
  if ! have_garage; then
    log "installing garage $GARAGE_VERSION with cargo (about 8-12 minutes on 2 cores)"
    cargo install garage --version "$GARAGE_VERSION" --locked \
      --no-default-features --features bundled-libs,lmdb >&2
  fi
  have_garage || die "garage $GARAGE_VERSION is not on PATH after installing"
fi

# --- state directory and configuration -----------------------------------------------------
if [[ $# -ge 1 && -n "$1" ]]; then
  ROOT=$1
  mkdir -p "$ROOT"
else
  ROOT=$(mktemp -d "${TMPDIR:-/tmp}/trainyard-garage.XXXXXX")
  touch "$ROOT/.created-by-s3-server-up"
fi
ROOT=$(cd "$ROOT" && pwd)

if [[ -f "$ROOT/garage.pid" ]] && kill -0 "$(cat "$ROOT/garage.pid")" 2>/dev/null; then
  die "garage is already running from $ROOT (pid $(cat "$ROOT/garage.pid")); stop it with scripts/s3-server-down.sh $ROOT"
fi
for port in "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use; set TRAINYARD_GARAGE_S3_PORT, TRAINYARD_GARAGE_RPC_PORT, TRAINYARD_GARAGE_ADMIN_PORT"
  fi
done

mkdir -p "$ROOT/meta" "$ROOT/data"
cat > "$ROOT/garage.toml" <<TOML
metadata_dir = "$ROOT/meta"
data_dir = "$ROOT/data"
db_engine = "lmdb"
compression_level = "none"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:${RPC_PORT}"
rpc_public_addr = "127.0.0.1:${RPC_PORT}"
rpc_secret = "$(printf '%064d' 0 | tr 0 7)"
[s3_api]
s3_region = "${REGION}"
api_bind_addr = "127.0.0.1:${S3_PORT}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:${ADMIN_PORT}"
admin_token = "test-admin-token"
TOML

# --- start ----------------------------------------------------------------------------------
# setsid: the server outlives this script and the shell that eval'ed it.
setsid garage -c "$ROOT/garage.toml" server --single-node --default-access-key \
  > "$ROOT/garage.log" 2>&1 < /dev/null &
echo $! > "$ROOT/garage.pid"
log "garage started (pid $(cat "$ROOT/garage.pid")), state in $ROOT, log in $ROOT/garage.log"

# Signed S3 requests with curl's SigV4 support (curl >= 7.75); no Python start-up per poll.
# Every request here has an empty body; garage wants its hash in x-amz-content-sha256.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
    --aws-sigv4 "aws:amz:${REGION}:s3" \
    -H "x-amz-content-sha256: ${EMPTY_SHA256}" \
    --user "${GARAGE_DEFAULT_ACCESS_KEY}:${GARAGE_DEFAULT_SECRET_KEY}" "$@"
}

# The S3 port opens before the one-node layout is committed: poll ListBuckets until it
# answers 200 (at most 100 x 0.2 s).
ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$(cat "$ROOT/garage.pid")" 2>/dev/null; then
    tail -n 20 "$ROOT/garage.log" >&2
    die "garage exited during start-up"
  fi
  if [[ $(s3 "$ENDPOINT/" 2>/dev/null || true) == 200 ]]; then
    ready=1
    break
  fi
  sleep 0.2
done
[[ -n "$ready" ]] || { tail -n 20 "$ROOT/garage.log" >&2; die "ListBuckets did not answer within 20 s"; }

# CreateBucket; 409 BucketAlreadyOwnedByYou when the state directory is reused.
code=$(s3 -X PUT "$ENDPOINT/$BUCKET")
case "$code" in
  200|409) ;;
  *) die "CreateBucket $BUCKET answered HTTP $code" ;;
esac
[[ $(s3 -I "$ENDPOINT/$BUCKET") == 200 ]] || die "HeadBucket $BUCKET failed after creating it"
log "bucket $BUCKET ready at $ENDPOINT"

cat <<EXPORTS
export TRAINYARD_TEST_S3_ENDPOINT='$ENDPOINT'
export TRAINYARD_TEST_S3_BUCKET='$BUCKET'
export TRAINYARD_TEST_S3_STATE='$ROOT'
export AWS_ACCESS_KEY_ID='$GARAGE_DEFAULT_ACCESS_KEY'
export AWS_SECRET_ACCESS_KEY='$GARAGE_DEFAULT_SECRET_KEY'
export AWS_REGION='$REGION'
EXPORTS
