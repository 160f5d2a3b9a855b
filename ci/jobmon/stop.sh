#!/usr/bin/env bash
# ci/jobmon/stop.sh - stop the server ci/jobmon/start.sh started (by its pid file only).
#   JOBMON_KIT_DIR as for start.sh; JOBMON_KIT_WIPE=1 also deletes the database.
set -uo pipefail
DIR=${JOBMON_KIT_DIR:-/tmp/gristmill-jobmon}
log() { echo "[gristmill-jobmon $(date +%T)] $*" >&2; }
pid=$(cat "$DIR/server.pid" 2>/dev/null) || { log "no server.pid in $DIR"; exit 0; }
if [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "jobmon/server.py"; then
  log "stopping the server (pid $pid)"; kill -TERM "$pid"
  for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && { log "still alive, SIGKILL"; kill -KILL "$pid"; }
fi
rm -f "$DIR/server.pid" "$DIR/port"
[ "${JOBMON_KIT_WIPE:-0}" = 1 ] && rm -f "$DIR"/jobmon.db*
log "stopped"
