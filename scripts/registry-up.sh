#!/usr/bin/env bash
# Starts a real OCI registry (Debian's `docker-registry`, the CNCF distribution registry 2.8)
# on a free loopback port for trainyard's image tests, and prints `export` lines:
#
#   eval "$(scripts/registry-up.sh STATE)"                       # anonymous
#   eval "$(scripts/registry-up.sh STATE2 --htpasswd user:pass)" # basic auth
#   scripts/test-images.sh                                       # push the test images
#   cargo test -p trainyard-oci --features registry
#   scripts/registry-down.sh STATE
#
# Anonymous:  TRAINYARD_TEST_REGISTRY=127.0.0.1:PORT, TRAINYARD_TEST_REGISTRY_STATE=STATE
# --htpasswd: TRAINYARD_TEST_AUTH_REGISTRY=127.0.0.1:PORT, TRAINYARD_TEST_AUTH_CREDS=user:pass,
#             TRAINYARD_TEST_AUTH_REGISTRY_STATE=STATE
#
# STATE holds config.yml, data/ (the registry's storage: tests corrupt blobs there),
# registry.log (its access log: tests count blob GETs there) and registry.pid. Plain HTTP on
# loopback, as docker and trainyard allow without configuration. Everything except the export
# lines goes to stderr. If `docker-registry` is missing: apt-get install -y docker-registry
# apache2-utils (htpasswd, for --htpasswd).
set -euo pipefail

log() { printf 'registry-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 1 && -n "$1" ]] || die "usage: registry-up.sh STATE [--htpasswd USER:PASS]"
ROOT=$1
shift
CREDS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --htpasswd) CREDS=${2:?--htpasswd needs USER:PASS}; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
command -v docker-registry >/dev/null || die "docker-registry is missing (apt-get install -y docker-registry)"

mkdir -p "$ROOT/data"
ROOT=$(cd "$ROOT" && pwd)
if [[ -f "$ROOT/registry.pid" ]] && kill -0 "$(cat "$ROOT/registry.pid")" 2>/dev/null; then
  die "a registry is already running from $ROOT (pid $(cat "$ROOT/registry.pid")); stop it with scripts/registry-down.sh $ROOT"
fi

# A free port: bind port 0, read it, release it (the registry binds it right after).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR="127.0.0.1:$PORT"

AUTH=""
if [[ -n "$CREDS" ]]; then
  command -v htpasswd >/dev/null || die "htpasswd is missing (apt-get install -y apache2-utils)"
  # The registry accepts bcrypt entries only.
  htpasswd -Bbn "${CREDS%%:*}" "${CREDS#*:}" > "$ROOT/htpasswd" 2>/dev/null
  AUTH="auth:
  htpasswd:
    realm: trainyard-test
    path: $ROOT/htpasswd"
fi

cat > "$ROOT/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $ROOT/data
  delete:
    enabled: true
  cache:
    blobdescriptor: ""
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
$AUTH
YAML

# setsid: the registry outlives this script and the shell that eval'ed it. The registry
# writes its application and access logs to stderr.
setsid docker-registry serve "$ROOT/config.yml" > "$ROOT/registry.log" 2>&1 < /dev/null &
echo $! > "$ROOT/registry.pid"
log "docker-registry started (pid $(cat "$ROOT/registry.pid")) on $ADDR, state in $ROOT"

ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$(cat "$ROOT/registry.pid")" 2>/dev/null; then
    tail -n 20 "$ROOT/registry.log" >&2
    die "docker-registry exited during start-up"
  fi
  # /v2/ answers 200 (anonymous) or 401 (basic auth) once the registry serves.
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADDR/v2/" || true)
  if [[ $code == 200 || $code == 401 ]]; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || { tail -n 20 "$ROOT/registry.log" >&2; die "the registry did not answer /v2/ within 10 s"; }

if [[ -n "$CREDS" ]]; then
  cat <<EXPORTS
export TRAINYARD_TEST_AUTH_REGISTRY='$ADDR'
export TRAINYARD_TEST_AUTH_CREDS='$CREDS'
export TRAINYARD_TEST_AUTH_REGISTRY_STATE='$ROOT'
EXPORTS
else
  cat <<EXPORTS
export TRAINYARD_TEST_REGISTRY='$ADDR'
export TRAINYARD_TEST_REGISTRY_STATE='$ROOT'
EXPORTS
fi
