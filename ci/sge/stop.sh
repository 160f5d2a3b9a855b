#!/usr/bin/env bash
# ci/sge/stop.sh - delete all jobs, then stop sge_execd and sge_qmaster by their pid files (kill by PID only).
set -uo pipefail
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
SPOOL=/var/spool/gridengine
log() { echo "[gristmill-sge $(date +%T)] $*" >&2; }
pid_of() { local pid; [ -s "$2" ] && pid=$(cat "$2") && [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$1" && echo "$pid"; }
stop_one() {
  local pid i
  pid=$(pid_of "$1" "$2") || return 0
  log "stopping $1 (pid $pid)"; kill -TERM "$pid"
  for i in $(seq 1 40); do [ -d "/proc/$pid" ] || return 0; sleep 0.5; done
  log "$1 still alive, SIGKILL"; kill -KILL "$pid"
}
cd /tmp
if pid_of sge_qmaster "$SPOOL/qmaster/qmaster.pid" >/dev/null; then
  qdel -f -u '*' >/dev/null 2>&1
  for i in $(seq 1 20); do [ -z "$(qstat -u '*' 2>/dev/null)" ] && break; sleep 0.5; done
fi
for pf in "$SPOOL"/execd/*/execd.pid; do [ -e "$pf" ] && stop_one sge_execd "$pf"; done
stop_one sge_qmaster "$SPOOL/qmaster/qmaster.pid"
log "stopped"
