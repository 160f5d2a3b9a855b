#!/usr/bin/env bash
# ci/jobmon/start.sh - start a local jobmon server (jobmon-server 3.2.2, Flask, SQLite) on 127.0.0.1.
#   eval "$(bash ci/jobmon/start.sh)"    # the client environment on stdout, logs on stderr
# Knobs (environment):
#   JOBMON_KIT_DIR     database, log, pid and port files [/tmp/gristmill-jobmon]
#   JOBMON_KIT_PORT    port to listen on [a free one]
#   JOBMON_KIT_VENV    the server's own venv [~/.cache/gristmill/jobmon-server-3.2.2]; the server
#                      pins jobmon-core==3.2.2 while jobmon-client 3.3.0 needs core >= 3.4, so
#                      server and client cannot share one environment
#   JOBMON_KIT_PYTHON  interpreter that creates that venv [python3]
# Idempotent: a server already answering for JOBMON_KIT_DIR is reused. Stop it with stop.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${JOBMON_KIT_DIR:-/tmp/gristmill-jobmon}
VENV=${JOBMON_KIT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gristmill/jobmon-server-3.2.2}
PY=${JOBMON_KIT_PYTHON:-python3}
log() { echo "[gristmill-jobmon $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
T0=$(now)
mkdir -p "$DIR"

if ! "$VENV/bin/python" -c "import jobmon.server, pymysql" >/dev/null 2>&1; then
  log "creating the server venv $VENV with jobmon-server==3.2.2 (log $DIR/pip.log)"
  "$PY" -m venv "$VENV" >"$DIR/pip.log" 2>&1 || die "cannot create a venv with $PY, see $DIR/pip.log"
  "$VENV/bin/python" -m pip install --disable-pip-version-check jobmon-server==3.2.2 >>"$DIR/pip.log" 2>&1 \
    || die "pip install jobmon-server==3.2.2 failed, see $DIR/pip.log"
  log "server venv ready after $(echo "$(now) - $T0" | bc) s"
fi

healthy() {  # every route answers 500 unless the request says it carries JSON
  "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/health", data=b"{}", method="GET",
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=2) as resp:
    sys.exit(0 if b"OK" in resp.read() else 1)
PY
}
alive() { local pid; [ -s "$DIR/server.pid" ] && pid=$(cat "$DIR/server.pid") && [ -d "/proc/$pid" ] \
  && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "jobmon/server.py"; }

if alive && [ -s "$DIR/port" ] && healthy "http://127.0.0.1:$(cat "$DIR/port")"; then
  log "reusing the server on port $(cat "$DIR/port") (pid $(cat "$DIR/server.pid"))"
else
  PORT=${JOBMON_KIT_PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  echo "$PORT" > "$DIR/port"
  setsid "$VENV/bin/python" "$HERE/server.py" --db "$DIR/jobmon.db" --port "$PORT" \
    >"$DIR/server.log" 2>&1 </dev/null &
  echo $! > "$DIR/server.pid"
  for _ in $(seq 1 600); do
    healthy "http://127.0.0.1:$PORT" && break
    alive || die "the server exited, see $DIR/server.log"
    sleep 0.1
  done
  healthy "http://127.0.0.1:$PORT" || die "the server did not answer within 60 s, see $DIR/server.log"
  log "server up on port $PORT (pid $(cat "$DIR/server.pid")) after $(echo "$(now) - $T0" | bc) s"
fi
echo "export JOBMON__HTTP__SERVICE_URL=http://127.0.0.1:$(cat "$DIR/port")"
