#!/usr/bin/env bash
# Start/stop a throwaway Neo4j 5.26 LTS (Community) for tests and CI, without Docker.
#
# Usage:
#   bash .ci/neo4j.sh start [PORT]   # default 7687; prints bolt://127.0.0.1:PORT on stdout
#   bash .ci/neo4j.sh stop           # stops it and deletes its data; ok if not running
#   bash .ci/neo4j.sh status         # exit 0 + "running ..." or exit 3 + "not running"
#   bash .ci/neo4j.sh resolve        # only download the jars (Maven Central)
#
#   export NEO4J_URI="$(bash .ci/neo4j.sh start)"
#
# Jars come from Maven Central via .ci/neo4j/pom.xml (org.neo4j.test:neo4j-harness) and are
# kept in $AUTOCNC_NEO4J_HOME/lib (default ~/.cache/autocnc/neo4j/lib), outside the repo.
# The server is .ci/neo4j/Launcher.java, run as a single-file source program (Java 17+):
# Bolt on 127.0.0.1 only, no auth, no TLS, no HTTP, LOAD CSV from file URLs disabled.
# Each start uses a fresh data directory, deleted on stop.
#
# Environment:
#   AUTOCNC_NEO4J_HOME      state dir (lib/, neo4j.pid, neo4j.log, data)  [~/.cache/autocnc/neo4j]
#   NEO4J_START_TIMEOUT     seconds to wait for readiness                  [180]
#   NEO4J_JAVA              java executable                                [java]
#   NEO4J_JAVA_OPTS         extra JVM options                              [-Xmx1g -Xms256m]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NEO4J_CI_DIR="$SCRIPT_DIR/neo4j"
POM="$NEO4J_CI_DIR/pom.xml"
LAUNCHER="$NEO4J_CI_DIR/Launcher.java"

NEO4J_VERSION="$(sed -n 's:.*<neo4j.version>\(.*\)</neo4j.version>.*:\1:p' "$POM" | head -n1)"
[ -n "$NEO4J_VERSION" ] || { echo "neo4j.sh: cannot read <neo4j.version> from $POM" >&2; exit 1; }

NEO4J_HOME_DIR="${AUTOCNC_NEO4J_HOME:-${HOME:-/tmp}/.cache/autocnc/neo4j}"
LIB_DIR="$NEO4J_HOME_DIR/lib"
STAMP="$LIB_DIR/.autocnc-complete"
PID_FILE="$NEO4J_HOME_DIR/neo4j.pid"
URI_FILE="$NEO4J_HOME_DIR/neo4j.uri"
DATA_FILE="$NEO4J_HOME_DIR/neo4j.datadir"
LOG_FILE="$NEO4J_HOME_DIR/neo4j.log"
LOCK_FILE="$NEO4J_HOME_DIR/lock"
START_TIMEOUT="${NEO4J_START_TIMEOUT:-180}"
JAVA="${NEO4J_JAVA:-java}"
read -r -a JAVA_OPTS <<< "${NEO4J_JAVA_OPTS:--Xmx1g -Xms256m}"

log() { echo "neo4j.sh: $*" >&2; }

lock() {
  mkdir -p "$NEO4J_HOME_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || { log "could not lock $LOCK_FILE"; exit 1; }
  fi
}

lib_complete() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$NEO4J_VERSION" ] \
    && [ -f "$LIB_DIR/neo4j-harness-$NEO4J_VERSION.jar" ]
}

resolve() {
  if lib_complete; then
    return 0
  fi
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
}

# pid alive and really our launcher (guards against pid reuse)
our_pid_alive() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'Launcher.java' || return 1
  fi
  return 0
}

read_pid() { [ -f "$PID_FILE" ] && cat "$PID_FILE" 2>/dev/null || true; }

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

cleanup_state() {
  local data=""
  [ -f "$DATA_FILE" ] && data="$(cat "$DATA_FILE")"
  if [ -n "$data" ] && [ -d "$data" ]; then
    rm -rf "$data"
  fi
  rm -f "$PID_FILE" "$URI_FILE" "$DATA_FILE"
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

cmd_start() {
  local port="${1:-7687}"
  case "$port" in ''|*[!0-9]*) log "invalid port: $port"; exit 2 ;; esac
  lock
  local pid; pid="$(read_pid)"
  if our_pid_alive "$pid"; then
    local uri; uri="$(cat "$URI_FILE" 2>/dev/null || echo "bolt://127.0.0.1:$port")"
    if [ "$uri" != "bolt://127.0.0.1:$port" ]; then
      log "already running (pid $pid) on $uri, not on port $port"
    else
      log "already running (pid $pid)"
    fi
    echo "$uri"
    return 0
  fi
  cleanup_state   # stale pid file / data dir from a crashed run

  command -v "$JAVA" >/dev/null 2>&1 || { log "java not found"; exit 1; }
  resolve

  if port_open "$port"; then
    log "port $port on 127.0.0.1 is already in use by another process"
    exit 1
  fi

  local data; data="$(mktemp -d "$NEO4J_HOME_DIR/data.XXXXXX")"
  echo "$data" > "$DATA_FILE"
  local t0=$SECONDS
  # fd 9 (the lock) must not leak into the long-lived JVM.
  nohup "$JAVA" "${JAVA_OPTS[@]}" -cp "$LIB_DIR/*" "$LAUNCHER" "$port" "$data" \
    > "$LOG_FILE" 2>&1 < /dev/null 9>&- &
  pid=$!
  echo "$pid" > "$PID_FILE"
  log "launched pid $pid (log: $LOG_FILE), waiting up to ${START_TIMEOUT}s for bolt://127.0.0.1:$port"

  local ready=0 why="did not become ready within ${START_TIMEOUT}s"
  while [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      why="exited during startup"
      break
    fi
    if grep -q "^NEO4J READY " "$LOG_FILE" 2>/dev/null && port_open "$port"; then
      ready=1
      break
    fi
    sleep 0.5
  done

  if [ "$ready" != 1 ]; then
    log "Neo4j (pid $pid) $why; last 50 lines of $LOG_FILE:"
    tail -n 50 "$LOG_FILE" >&2 || true
    stop_pid "$pid"
    cleanup_state
    exit 1
  fi
  echo "bolt://127.0.0.1:$port" > "$URI_FILE"
  log "ready after $((SECONDS - t0)) s"
  echo "bolt://127.0.0.1:$port"
}

cmd_stop() {
  lock
  local pid; pid="$(read_pid)"
  if [ -n "$pid" ]; then
    stop_pid "$pid"
  else
    log "not running"
  fi
  cleanup_state
}

cmd_status() {
  local pid; pid="$(read_pid)"
  if our_pid_alive "$pid"; then
    echo "running pid $pid $(cat "$URI_FILE" 2>/dev/null || echo '(starting)')"
    return 0
  fi
  echo "not running"
  return 3
}

case "${1:-}" in
  start)   shift; cmd_start "$@" ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  resolve) lock; resolve; echo "$LIB_DIR" ;;
  *) echo "usage: $0 {start [PORT]|stop|status|resolve}" >&2; exit 2 ;;
esac
