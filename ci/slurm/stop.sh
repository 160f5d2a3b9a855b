#!/usr/bin/env bash
# ci/slurm/stop.sh - stop the daemons ci/slurm/start.sh started (by pid file, kill by PID; never
# by name, so a system-wide munged/mariadb is never touched). Cancels all jobs first so no job
# processes / slurmstepd are left behind. Safe to run when nothing is running.
#   SLURM_KIT_DIR   state dir [/tmp/gristmill-slurm]
#   SLURM_KIT_WIPE=1  also delete the state dir afterwards
set -uo pipefail
KIT_DIR=${SLURM_KIT_DIR:-/tmp/gristmill-slurm}
RUN=$KIT_DIR/run
export SLURM_CONF=$KIT_DIR/etc/slurm.conf
log() { echo "[gristmill-slurm $(date +%T)] $*" >&2; }

pid_of() {  # pid_of NAME PIDFILE -> prints pid if the pid file names a live process matching NAME
  local pf=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$1" || return 1
  echo "$pid"
}

stop_one() {  # stop_one NAME PIDFILE
  local name=$1 pf=$2 pid i
  if pid=$(pid_of "$name" "$pf"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
    if [ -d "/proc/$pid" ]; then log "$name did not exit, SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null; sleep 0.5; fi
  fi
  rm -f "$pf"
}

# 1. cancel every job and wait for job processes to go (only if our slurmctld is up)
if pid_of slurmctld "$RUN/slurmctld.pid" >/dev/null && [ -f "$SLURM_CONF" ]; then
  jobs=$(squeue -h -o %A -t PD,R,CG,S 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    log "cancelling $(echo "$jobs" | wc -l) job(s)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
  fi
  for i in $(seq 1 40); do
    [ -z "$(squeue -h -t R,CG,S 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
# leftover step processes on the node (scontrol listpids asks our slurmd): kill them by PID
if pid_of slurmd "$RUN/slurmd.pid" >/dev/null; then
  for p in $(scontrol listpids 2>/dev/null | awk 'NR>1 && $1 ~ /^[0-9]+$/ {print $1}'); do
    kill -KILL "$p" 2>/dev/null
  done
fi

# 2. daemons, reverse start order
stop_one slurmd    "$RUN/slurmd.pid"
stop_one slurmctld "$RUN/slurmctld.pid"
stop_one slurmdbd  "$RUN/slurmdbd.pid"
stop_one mariadbd  "$RUN/mariadbd.pid"
stop_one munged    "$RUN/munged.pid"

if [ "${SLURM_KIT_WIPE:-0}" = 1 ]; then log "wiping $KIT_DIR"; rm -rf "$KIT_DIR"; fi
log "stopped"
