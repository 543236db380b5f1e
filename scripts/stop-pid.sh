# Sourced by the *-down.sh scripts: stop_pid PIDFILE NAME stops the process recorded in PIDFILE
# if it is still NAME (a recycled pid is left alone): TERM, up to 10 s, then KILL; the pid file
# is removed. Uses the caller's `log`.
stop_pid() {
  local file=$1 name=$2 pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$name"; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop after TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name (pid $pid) stopped"
  else
    log "$name (pid $pid) is not running"
  fi
  rm -f "$file"
}
