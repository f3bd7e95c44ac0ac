#!/usr/bin/env bash
# Start/stop a throwaway Neo4j 5.26 LTS (Community) for tests and CI, without Docker.
#
# Usage:
#   bash .ci/neo4j.sh start [PORT]    # default 7687; prints bolt://127.0.0.1:PORT on stdout
#   bash .ci/neo4j.sh stop [PORT]     # stops it and deletes its data (no PORT: every one this
#                                     #   checkout started); ok if not running
#   bash .ci/neo4j.sh status [PORT]   # exit 0 + "running ..." lines, or exit 3 + "not running"
#   bash .ci/neo4j.sh resolve         # only download the jars (Maven Central)
#
#   export NEO4J_URI="$(bash .ci/neo4j.sh start)"
#
# Each checkout keeps its own state (pid, log, data) per port, under the checkout's
# .ci/state/neo4j/PORT/ (ignored by git): two checkouts on one machine run their own Neo4j
# on two ports without touching each other's, and `stop` only stops this checkout's.
# The jars are shared by every checkout: they come from Maven Central via .ci/neo4j/pom.xml
# (org.neo4j.test:neo4j-harness) into ~/.cache/autocnc/neo4j/lib, fetched once (under a lock).
# The server is .ci/neo4j/Launcher.java, run as a single-file source program (Java 17+):
# Bolt on 127.0.0.1 only, no auth, no TLS, no HTTP, LOAD CSV from file URLs disabled.
# Each start uses a fresh data directory, deleted on stop.
#
# Environment:
#   AUTOCNC_NEO4J_HOME      state root (PORT/ below it)               [<checkout>/.ci/state/neo4j]
#   AUTOCNC_NEO4J_LIB       the shared jar cache                      [~/.cache/autocnc/neo4j/lib]
#   NEO4J_START_TIMEOUT     seconds to wait for readiness             [600]
#   NEO4J_PROGRESS_EVERY    seconds between progress lines (stderr)   [5]
#   NEO4J_JAVA              java executable                           [java]
#   NEO4J_JAVA_OPTS         extra JVM options                         [-Xmx1g -Xms256m]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CHECKOUT="$(dirname "$SCRIPT_DIR")"
NEO4J_CI_DIR="$SCRIPT_DIR/neo4j"
POM="$NEO4J_CI_DIR/pom.xml"
LAUNCHER="$NEO4J_CI_DIR/Launcher.java"

NEO4J_VERSION="$(sed -n 's:.*<neo4j.version>\(.*\)</neo4j.version>.*:\1:p' "$POM" | head -n1)"
[ -n "$NEO4J_VERSION" ] || { echo "neo4j.sh: cannot read <neo4j.version> from $POM" >&2; exit 1; }

CACHE_DIR="${HOME:-/tmp}/.cache/autocnc/neo4j"
LIB_DIR="${AUTOCNC_NEO4J_LIB:-$CACHE_DIR/lib}"
STAMP="$LIB_DIR/.autocnc-complete"
STATE_ROOT="${AUTOCNC_NEO4J_HOME:-$CHECKOUT/.ci/state/neo4j}"
# Before state was per checkout, one instance's files lay directly in this directory; such
# an instance (started from this checkout) is still found by stop and status.
LEGACY_DIR="${AUTOCNC_NEO4J_HOME:-$CACHE_DIR}"
START_TIMEOUT="${NEO4J_START_TIMEOUT:-600}"
PROGRESS_EVERY="${NEO4J_PROGRESS_EVERY:-5}"
JAVA="${NEO4J_JAVA:-java}"
read -r -a JAVA_OPTS <<< "${NEO4J_JAVA_OPTS:--Xmx1g -Xms256m}"

log() { echo "neo4j.sh: $*" >&2; }

check_port() {
  case "$1" in ''|*[!0-9]*) log "invalid port: $1"; exit 2 ;; esac
  [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || { log "invalid port: $1"; exit 2; }
}

# flock FD FILE: wait for the lock on FILE (no-op without flock)
take_lock() {
  local fd="$1" file="$2"
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$file")"
  eval "exec $fd>\"\$file\""
  flock -w 900 "$fd" || { log "could not lock $file"; exit 1; }
}

# per-port instance files
set_instance() {
  INSTANCE_DIR="$STATE_ROOT/$1"
  PID_FILE="$INSTANCE_DIR/neo4j.pid"
  URI_FILE="$INSTANCE_DIR/neo4j.uri"
  DATA_FILE="$INSTANCE_DIR/neo4j.datadir"
  LOG_FILE="$INSTANCE_DIR/neo4j.log"
}

init_state_root() {
  mkdir -p "$STATE_ROOT"
  if [ -z "${AUTOCNC_NEO4J_HOME:-}" ] && [ ! -f "$CHECKOUT/.ci/state/.gitignore" ]; then
    echo '*' > "$CHECKOUT/.ci/state/.gitignore"   # the state never enters git
  fi
}

lib_complete() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$NEO4J_VERSION" ] \
    && [ -f "$LIB_DIR/neo4j-harness-$NEO4J_VERSION.jar" ]
}

resolve() {
  lib_complete && return 0
  take_lock 8 "$LIB_DIR.lock"   # one download for all checkouts; the others wait for it
  lib_complete && return 0
  command -v mvn >/dev/null 2>&1 || { log "mvn not found (needed once to fetch the jars)"; exit 1; }
  log "resolving org.neo4j.test:neo4j-harness:$NEO4J_VERSION into $LIB_DIR ..."
  local tmp="$LIB_DIR.tmp.$$" t0=$SECONDS
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Plugin pinned by full coordinates: a bare dependency:copy-dependencies resolves 2.8 on
  # Maven 3.8.7, which fails.
  # (Maven 3.8 -q prints bare ESC[0m codes; strip them. pipefail keeps mvn's status.)
  if ! mvn -B -q -f "$POM" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime < /dev/null 2>&1 \
      | sed 's/\x1b\[[0-9;]*m//g' >&2; then
    rm -rf "$tmp"
    log "jar resolution failed"
    exit 1
  fi
  [ -f "$tmp/neo4j-harness-$NEO4J_VERSION.jar" ] || { rm -rf "$tmp"; log "neo4j-harness jar missing after resolution"; exit 1; }
  echo "$NEO4J_VERSION" > "$tmp/.autocnc-complete"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  log "resolved $(ls "$LIB_DIR" | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $((SECONDS - t0)) s"
  exec 8>&-
}

# pid alive and really this checkout's launcher (guards against pid reuse and against
# another checkout's Neo4j)
our_pid_alive() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qxF "$LAUNCHER" || return 1
  fi
  return 0
}

read_pid() { [ -f "$1" ] && cat "$1" 2>/dev/null || true; }

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# cleanup_state DIR: the data directory and the files of the instance in DIR
cleanup_state() {
  local dir="$1" data=""
  [ -f "$dir/neo4j.datadir" ] && data="$(cat "$dir/neo4j.datadir")"
  if [ -n "$data" ] && [ -d "$data" ]; then
    rm -rf "$data"
  fi
  rm -f "$dir/neo4j.pid" "$dir/neo4j.uri" "$dir/neo4j.datadir"
}

stop_pid() {
  local pid="$1" waited=0
  if our_pid_alive "$pid"; then
    log "stopping pid $pid ..."
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do
      sleep 0.5; waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit after 30 s; killing"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
  fi
}

# the instance of the old layout, when it is this checkout's and (with a port) on that port
legacy_pid() {
  local pid; pid="$(read_pid "$LEGACY_DIR/neo4j.pid")"
  our_pid_alive "$pid" || return 0
  if [ -n "${1:-}" ] && [ "$(cat "$LEGACY_DIR/neo4j.uri" 2>/dev/null)" != "bolt://127.0.0.1:$1" ]; then
    return 0
  fi
  echo "$pid"
}

cmd_start() {
  local port="${1:-7687}"
  check_port "$port"
  init_state_root
  set_instance "$port"
  take_lock 9 "$INSTANCE_DIR/lock"
  local pid; pid="$(read_pid "$PID_FILE")"
  if our_pid_alive "$pid"; then
    log "already running (pid $pid)"
    echo "bolt://127.0.0.1:$port"
    return 0
  fi
  pid="$(legacy_pid "$port")"
  if [ -n "$pid" ]; then
    log "already running (pid $pid, state in $LEGACY_DIR)"
    echo "bolt://127.0.0.1:$port"
    return 0
  fi
  cleanup_state "$INSTANCE_DIR"   # stale pid file / data dir from a crashed run

  command -v "$JAVA" >/dev/null 2>&1 || { log "java not found"; exit 1; }
  resolve

  if port_open "$port"; then
    log "port $port on 127.0.0.1 is already in use by another process (another checkout's" \
        "Neo4j? pick another port: bash .ci/neo4j.sh start PORT)"
    exit 1
  fi

  local data; data="$(mktemp -d "$INSTANCE_DIR/data.XXXXXX")"
  echo "$data" > "$DATA_FILE"
  local t0=$SECONDS
  # fds 8 and 9 (the locks) must not leak into the long-lived JVM.
  nohup "$JAVA" "${JAVA_OPTS[@]}" -cp "$LIB_DIR/*" "$LAUNCHER" "$port" "$data" \
    > "$LOG_FILE" 2>&1 < /dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" > "$PID_FILE"
  log "launched pid $pid (log: $LOG_FILE), waiting up to ${START_TIMEOUT}s for bolt://127.0.0.1:$port"

  local ready=0 why="did not become ready within ${START_TIMEOUT}s" next=$((SECONDS + PROGRESS_EVERY))
  while [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      why="exited during startup"
      break
    fi
    if grep -q "^NEO4J READY " "$LOG_FILE" 2>/dev/null && port_open "$port"; then
      ready=1
      break
    fi
    if [ "$SECONDS" -ge "$next" ]; then
      local last; last="$(tail -n 1 "$LOG_FILE" 2>/dev/null | cut -c1-120)"
      log "waiting for bolt://127.0.0.1:$port: $((SECONDS - t0)) s of ${START_TIMEOUT} s" \
          "(pid $pid running${last:+; log: $last})"
      next=$((SECONDS + PROGRESS_EVERY))
    fi
    sleep 0.5
  done

  if [ "$ready" != 1 ]; then
    log "Neo4j (pid $pid) $why; last 50 lines of $LOG_FILE:"
    tail -n 50 "$LOG_FILE" >&2 || true
    stop_pid "$pid"
    cleanup_state "$INSTANCE_DIR"
    exit 1
  fi
  echo "bolt://127.0.0.1:$port" > "$URI_FILE"
  log "ready after $((SECONDS - t0)) s"
  echo "bolt://127.0.0.1:$port"
}

# the ports with an instance directory under the state root
known_ports() {
  [ -d "$STATE_ROOT" ] || return 0
  local d
  for d in "$STATE_ROOT"/*/; do
    d="$(basename "$d")"
    case "$d" in ''|*[!0-9]*) ;; *) echo "$d" ;; esac
  done
}

stop_one() {
  set_instance "$1"
  take_lock 9 "$INSTANCE_DIR/lock"
  local pid; pid="$(read_pid "$PID_FILE")"
  if [ -n "$pid" ]; then
    stop_pid "$pid"
  fi
  cleanup_state "$INSTANCE_DIR"
  exec 9>&-
}

cmd_stop() {
  local ports stopped=0 port pid
  if [ -n "${1:-}" ]; then
    check_port "$1"
    ports="$1"
  else
    ports="$(known_ports)"
  fi
  for port in $ports; do
    set_instance "$port"
    our_pid_alive "$(read_pid "$PID_FILE")" && stopped=1
    stop_one "$port"
  done
  pid="$(legacy_pid "${1:-}")"
  if [ -n "$pid" ]; then
    stop_pid "$pid"
    cleanup_state "$LEGACY_DIR"
    stopped=1
  fi
  [ "$stopped" = 1 ] || log "not running"
}

cmd_status() {
  local ports running=0 port pid
  if [ -n "${1:-}" ]; then
    check_port "$1"
    ports="$1"
  else
    ports="$(known_ports)"
  fi
  for port in $ports; do
    set_instance "$port"
    pid="$(read_pid "$PID_FILE")"
    if our_pid_alive "$pid"; then
      echo "running pid $pid $(cat "$URI_FILE" 2>/dev/null || echo "(starting on port $port)")"
      running=1
    fi
  done
  pid="$(legacy_pid "${1:-}")"
  if [ -n "$pid" ]; then
    echo "running pid $pid $(cat "$LEGACY_DIR/neo4j.uri" 2>/dev/null) (state in $LEGACY_DIR)"
    running=1
  fi
  [ "$running" = 1 ] && return 0
  echo "not running"
  return 3
}

case "${1:-}" in
  start)   shift; cmd_start "$@" ;;
  stop)    shift; cmd_stop "$@" ;;
  status)  shift; cmd_status "$@" ;;
  resolve) resolve; echo "$LIB_DIR" ;;
  *) echo "usage: $0 {start [PORT]|stop [PORT]|status [PORT]|resolve}" >&2; exit 2 ;;
esac
