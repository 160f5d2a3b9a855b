#!/usr/bin/env bash
# ci/sge/start.sh - start gristmill's test cluster: a REAL single-node (Son of) Grid Engine 8.1.9 from Debian's gridengine-* packages,
# as plain background daemons (no systemd). Uses Debian's cell: SGE_ROOT=/var/lib/gridengine SGE_CELL=default,
# spool in /var/spool/gridengine (system paths: the Debian packages hard-wire them).
#   eval "$(bash ci/sge/start.sh)"    # env on stdout, logs on stderr
# Idempotent: running daemons are left alone, config is (re)applied every time.
#   SGE_SLOTS   slots of all.q [8]
# Fixes over the Debian defaults are explained in ci/sge/README.md.
set -euo pipefail
SLOTS=${SGE_SLOTS:-8}
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
HOST=$(hostname)
SPOOL=/var/spool/gridengine
log() { echo "[gristmill-sge $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
T0=$(date +%s)

missing=()
for p in gridengine-master gridengine-exec gridengine-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (log /tmp/gristmill-sge-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  own_policy=0
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1; }
  apt-cache show gridengine-master >/dev/null 2>&1 || apt-get update -q >>/tmp/gristmill-sge-apt.log 2>&1
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/gristmill-sge-apt.log 2>&1 \
    || { apt-get update -q >>/tmp/gristmill-sge-apt.log 2>&1; apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/gristmill-sge-apt.log 2>&1; }
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed after $(( $(date +%s) - T0 ))s"
fi
[ -d "$SPOOL/spooldb" ] || /usr/share/gridengine/scripts/init_cluster "$SGE_ROOT" "$SGE_CELL" "$SPOOL/spooldb" sgeadmin >&2

COMMON=$SGE_ROOT/$SGE_CELL/common
# the Debian postinst leaves act_qmaster empty when installed non-interactively
echo "$HOST" > "$COMMON/act_qmaster"
# 127.0.0.1 resolves to "localhost" first in /etc/hosts: without this alias qmaster rejects every client with
# "access denied (client IP resolved to host name "localhost". This is not identical to clients host name "vm")"
echo "$HOST localhost" > "$COMMON/host_aliases"
chown sgeadmin:sgeadmin "$COMMON/act_qmaster" "$COMMON/host_aliases"

alive() { local pid; [ -s "$2" ] && pid=$(cat "$2") && [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$1"; }
wait_for() { local end=$(( $(date +%s) + $1 )); shift; until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge $end ] && return 1; sleep 0.5; done; }

cd /tmp
if ! alive sge_qmaster "$SPOOL/qmaster/qmaster.pid"; then
  log "starting sge_qmaster"; /usr/sbin/sge_qmaster
fi
wait_for 30 qconf -sh || die "qmaster not answering, see $SPOOL/qmaster/messages"

TMP=$(mktemp -d)
# global config: allow root jobs (min_uid 1000 by default), no mail, fast load reports, and kill a
# job's every process (its own process groups too) at h_rt/qdel: ENABLE_ADDGRP_KILL
qconf -sconf global > "$TMP/global"
sed -i -e 's/^min_uid .*/min_uid                      0/' -e 's/^min_gid .*/min_gid                      0/' \
       -e 's|^mailer .*|mailer                       /bin/true|' -e 's/^load_report_time .*/load_report_time             00:00:05/' \
       -e 's/^execd_params .*/execd_params                 ENABLE_ADDGRP_KILL=true/' "$TMP/global"
qconf -Mconf "$TMP/global" >/dev/null          # file NAME must be "global"
qconf -ssconf > "$TMP/sched"                    # scheduler: run every second instead of every 15 s
sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
       -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$TMP/sched"
qconf -Msconf "$TMP/sched" >/dev/null
# m_mem_free, the memory request of Univa Grid Engine sites, as a consumable (SoGE lacks it)
qconf -sc > "$TMP/complex"
grep -q '^m_mem_free ' "$TMP/complex" || echo "m_mem_free mfree MEMORY <= YES YES 0 0" >> "$TMP/complex"
qconf -Mc "$TMP/complex" >/dev/null
MEM_KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
qconf -ss 2>/dev/null | grep -qx "$HOST" || qconf -as "$HOST" >/dev/null
printf 'hostname %s\nload_scaling NONE\ncomplex_values m_mem_free=%sK\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$HOST" "$MEM_KB" > "$TMP/exechost"
if qconf -se "$HOST" >/dev/null 2>&1; then qconf -Me "$TMP/exechost" >/dev/null; else qconf -Ae "$TMP/exechost" >/dev/null; fi
# load_thresholds NONE: a busy test machine (load > 1.75 per core) must not keep jobs waiting
qconf -sq | sed -e 's/^qname .*/qname                 all.q/' -e "s/^hostlist .*/hostlist              $HOST/" \
  -e "s/^slots .*/slots                 $SLOTS/" -e 's|^shell .*|shell                 /bin/bash|' -e 's/^pe_list .*/pe_list               NONE/' \
  -e 's/^load_thresholds .*/load_thresholds       NONE/' > "$TMP/all.q"
if qconf -sq all.q >/dev/null 2>&1; then qconf -Mq "$TMP/all.q" >/dev/null; else qconf -Aq "$TMP/all.q" >/dev/null; fi
rm -rf "$TMP"

EXECD_PID=$(ls "$SPOOL"/execd/*/execd.pid 2>/dev/null | head -1 || true)
if [ -z "$EXECD_PID" ] || ! alive sge_execd "$EXECD_PID"; then
  log "starting sge_execd"; /usr/sbin/sge_execd
fi
# ready = execd reported load (qhost LOAD column is "-" until then) and queue instance has no u/E/d state
ready() { qhost -h "$HOST" | awk -v h="$HOST" '$1==h && $7!="-" {ok=1} END {exit !ok}' && \
          ! qstat -f -q all.q | awk 'NR>2 && $1 ~ /^all.q@/ {print $6}' | grep -q '[uEd]'; }
wait_for 60 ready || die "exec host never came up: $(qstat -f 2>&1 | tail -2)"
log "grid engine up in $(( $(date +%s) - T0 ))s: $(qstat -f | grep all.q@)"
echo "export SGE_ROOT=$SGE_ROOT"
echo "export SGE_CELL=$SGE_CELL"
