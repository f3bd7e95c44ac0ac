#!/usr/bin/env bash
# A real Prometheus and Alertmanager for tests and CI (Debian packages, no systemd, no Docker).
#
# Usage:
#   bash .ci/prometheus.sh install                 # apt-get the packages if missing (idempotent)
#   bash .ci/prometheus.sh start [PROM_PORT [AM_PORT]]   # default 19090 19093; prints
#                                                  #   PROMETHEUS_URL=... and ALERTMANAGER_URL=...
#   bash .ci/prometheus.sh stop                    # stops both (by pid) and deletes their data
#   bash .ci/prometheus.sh status                  # exit 0 + "running ..." or exit 3
#
#   eval "$(bash .ci/prometheus.sh start)"        # exports PROMETHEUS_URL, ALERTMANAGER_URL
#
# `start` writes a temporary configuration: Prometheus on 127.0.0.1:PROM_PORT scrapes itself
# every 1 s (plus the targets of $PROMETHEUS_SCRAPE, "host:port[,host:port...]", as job
# "scrape") and sends alerts to Alertmanager on 127.0.0.1:AM_PORT (clustering off), which
# routes them to $AUTOCNC_WEBHOOK_URL when set (group_wait 1s), else to a receiver without
# notifications. Give your own files with $PROMETHEUS_CONFIG / $ALERTMANAGER_CONFIG. The
# test suite starts its own instances with per-test configurations (tests/test_prometheus_live.py)
# and only needs `install`.
#
# Environment:
#   AUTOCNC_PROMETHEUS_HOME   state dir (pids, logs, configs, data)   [~/.cache/autocnc/prometheus]
#   PROMETHEUS_BIN / ALERTMANAGER_BIN   the binaries        [prometheus / prometheus-alertmanager]
#   PROMETHEUS_START_TIMEOUT  seconds to wait for readiness            [60]
set -euo pipefail

HOME_DIR="${AUTOCNC_PROMETHEUS_HOME:-${HOME:-/tmp}/.cache/autocnc/prometheus}"
PROM="${PROMETHEUS_BIN:-prometheus}"
AM="${ALERTMANAGER_BIN:-prometheus-alertmanager}"
TIMEOUT="${PROMETHEUS_START_TIMEOUT:-60}"
PACKAGES=(prometheus prometheus-alertmanager)

log() { echo "prometheus.sh: $*" >&2; }

install() {
  if command -v "$PROM" >/dev/null 2>&1 && command -v "$AM" >/dev/null 2>&1; then
    log "already installed: $("$PROM" --version 2>&1 | head -n1); $("$AM" --version 2>&1 | head -n1)"
    return 0
  fi
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  log "installing ${PACKAGES[*]} (apt-get)"
  # the packages' own service start is refused without systemd; the binaries are what we use
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${PACKAGES[@]}" >&2
  command -v "$PROM" >/dev/null && command -v "$AM" >/dev/null \
    || { log "installed, but $PROM / $AM are not on PATH"; exit 1; }
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_ready() {  # URL LOGFILE PIDFILE
  local deadline=$((SECONDS + TIMEOUT))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    if ! alive "$3"; then log "exited during start; see $2"; tail -n 20 "$2" >&2; return 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then log "not ready after ${TIMEOUT}s; see $2"; return 1; fi
    sleep 0.2
  done
}

start() {
  local prom_port="${1:-19090}" am_port="${2:-19093}"
  if alive "$HOME_DIR/prometheus.pid" || alive "$HOME_DIR/alertmanager.pid"; then
    log "already running (stop it first)"; exit 1
  fi
  command -v "$PROM" >/dev/null && command -v "$AM" >/dev/null \
    || { log "not installed: run 'bash .ci/prometheus.sh install'"; exit 1; }
  rm -rf "$HOME_DIR/data" && mkdir -p "$HOME_DIR/data/prometheus" "$HOME_DIR/data/alertmanager"
  local prom_cfg="${PROMETHEUS_CONFIG:-$HOME_DIR/prometheus.yml}"
  local am_cfg="${ALERTMANAGER_CONFIG:-$HOME_DIR/alertmanager.yml}"
  if [ -z "${PROMETHEUS_CONFIG:-}" ]; then
    local extra=""
    if [ -n "${PROMETHEUS_SCRAPE:-}" ]; then
      extra="  - job_name: scrape
    static_configs: [{targets: [$(echo "$PROMETHEUS_SCRAPE" | sed 's/[^,][^,]*/"&"/g')]}]"
    fi
    cat > "$prom_cfg" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
alerting:
  alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$am_port"]}]}]
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$prom_port"]}]
$extra
EOF
  fi
  if [ -z "${ALERTMANAGER_CONFIG:-}" ]; then
    if [ -n "${AUTOCNC_WEBHOOK_URL:-}" ]; then
      cat > "$am_cfg" <<EOF
route: {receiver: autocnc, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers:
  - name: autocnc
    webhook_configs: [{url: "$AUTOCNC_WEBHOOK_URL", send_resolved: true}]
EOF
    else
      printf 'route: {receiver: none}\nreceivers: [{name: none}]\n' > "$am_cfg"
    fi
  fi
  "$AM" --config.file="$am_cfg" --storage.path="$HOME_DIR/data/alertmanager" \
    --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address="" \
    > "$HOME_DIR/alertmanager.log" 2>&1 &
  echo $! > "$HOME_DIR/alertmanager.pid"
  "$PROM" --config.file="$prom_cfg" --storage.tsdb.path="$HOME_DIR/data/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" > "$HOME_DIR/prometheus.log" 2>&1 &
  echo $! > "$HOME_DIR/prometheus.pid"
  if ! wait_ready "http://127.0.0.1:$am_port/-/ready" "$HOME_DIR/alertmanager.log" \
        "$HOME_DIR/alertmanager.pid" \
     || ! wait_ready "http://127.0.0.1:$prom_port/-/ready" "$HOME_DIR/prometheus.log" \
        "$HOME_DIR/prometheus.pid"; then
    stop; exit 1
  fi
  echo "PROMETHEUS_URL=http://127.0.0.1:$prom_port"
  echo "ALERTMANAGER_URL=http://127.0.0.1:$am_port"
}

stop_one() {  # PIDFILE NAME
  if alive "$1"; then
    local pid; pid="$(cat "$1")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "$2 stopped (pid $pid)"
  fi
  rm -f "$1"
}

stop() {
  stop_one "$HOME_DIR/prometheus.pid" prometheus
  stop_one "$HOME_DIR/alertmanager.pid" alertmanager
  rm -rf "$HOME_DIR/data"
}

status() {
  local up=0
  alive "$HOME_DIR/prometheus.pid" && { echo "running prometheus pid $(cat "$HOME_DIR/prometheus.pid")"; up=1; }
  alive "$HOME_DIR/alertmanager.pid" && { echo "running alertmanager pid $(cat "$HOME_DIR/alertmanager.pid")"; up=1; }
  [ "$up" = 1 ] || { echo "not running"; exit 3; }
}

mkdir -p "$HOME_DIR"
case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start [PROM_PORT [AM_PORT]]|stop|status" >&2; exit 2 ;;
esac
