#!/usr/bin/env bash
# ci/slurm/start.sh - start gristmill's test cluster: a REAL single-node Slurm (munged,
# [mariadb + slurmdbd], slurmctld, slurmd) as plain background daemons (no systemd, no docker),
# all state under $SLURM_KIT_DIR. Used by `nox -s slurm` and CI; see ci/slurm/README.md.
#
#   eval "$(bash ci/slurm/start.sh)"   # logs go to stderr, the env a client needs goes to stdout
#   source "$SLURM_KIT_DIR/env.sh"     # same env, written by start.sh
#
# Must run as root (installs Debian packages if missing, starts daemons as root/munge/mysql).
# Idempotent: daemons already running (per pid file) are left alone; if the generated config
# differs from the one they run with, the cluster is restarted (stop.sh) first.
#
# Knobs (env):
#   SLURM_KIT_DIR             state dir                              [/tmp/gristmill-slurm]
#   SLURM_KIT_ACCOUNTING      1 = mariadb+slurmdbd (sacct works), 0 = none (jobcomp/filetxt only) [1]
#   SLURM_KIT_MEM_ENFORCE     auto | cgroup | jobacct | none          [auto]
#                             cgroup  = task/cgroup + proctrack/cgroup, cgroup v1 only (kernel OOM killer,
#                                       job ends OUT_OF_MEMORY)
#                             jobacct = jobacct_gather/linux + OverMemoryKill (works w/o cgroups, polls
#                                       RSS every 1 s, job ends FAILED/JobLaunchFailure)
#                             none    = no memory enforcement
#                             auto    = cgroup if a writable cgroup-v1 memory+freezer hierarchy exists,
#                                       else jobacct
#   SLURM_KIT_CPUS            CPUs the node advertises (may exceed real cores) [8]
#   SLURM_KIT_REAL_MEMORY     MB the node advertises                  [MemTotal - 2 GiB, max 16000]
#   SLURM_KIT_DEF_MEM_PER_CPU default MB per CPU when a job gives no --mem [100]
#   SLURM_KIT_MIN_JOB_AGE     seconds a finished job stays in squeue/scontrol [300] (Slurm default 300)
#   SLURM_KIT_MAX_ARRAY_SIZE  MaxArraySize (max index+1)              [1001] (Slurm default 1001)
#   SLURM_KIT_KILL_WAIT       seconds between SIGTERM and SIGKILL on timeout/cancel [5] (Slurm default 30)
#   SLURM_KIT_CTLD_PORT / SLURM_KIT_SLURMD_PORT / SLURM_KIT_DBD_PORT / SLURM_KIT_MYSQL_PORT
#                             [6817 / 6818 / 6819 / 3307]
#   SLURM_KIT_CLEAN=1         wipe job state + accounting DB before starting
#   SLURM_KIT_TIMEOUT         seconds to wait for the node to become idle [90]
#   SLURM_KIT_PREEMPT         1 = PreemptType=preempt/partition_prio, PreemptMode=REQUEUE: jobs in
#                             partition `high` (PriorityTier=10) preempt jobs in `low` (tier 1);
#                             0 = no preemption                       [1]
#   SLURM_KIT_HIGH_MAX_TIME   MaxTime of partition `high`, minutes    [10]
#   SLURM_KIT_ENFORCE         AccountingStorageEnforce (needs accounting; empty = none)
#                             [associations,limits]
#   SLURM_KIT_USERS           login names given an association (account `gristmill`) besides root
#                             and every user with 1000 <= uid < 60000 [empty]
set -euo pipefail

KIT_DIR=${SLURM_KIT_DIR:-/tmp/gristmill-slurm}
ACCOUNTING=${SLURM_KIT_ACCOUNTING:-1}
MEM_ENFORCE=${SLURM_KIT_MEM_ENFORCE:-auto}
CPUS=${SLURM_KIT_CPUS:-8}
DEF_MEM_PER_CPU=${SLURM_KIT_DEF_MEM_PER_CPU:-100}
MIN_JOB_AGE=${SLURM_KIT_MIN_JOB_AGE:-300}
MAX_ARRAY_SIZE=${SLURM_KIT_MAX_ARRAY_SIZE:-1001}
KILL_WAIT=${SLURM_KIT_KILL_WAIT:-5}
CTLD_PORT=${SLURM_KIT_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_KIT_SLURMD_PORT:-6818}
DBD_PORT=${SLURM_KIT_DBD_PORT:-6819}
MYSQL_PORT=${SLURM_KIT_MYSQL_PORT:-3307}
TIMEOUT=${SLURM_KIT_TIMEOUT:-90}
PREEMPT=${SLURM_KIT_PREEMPT:-1}
HIGH_MAX_TIME=${SLURM_KIT_HIGH_MAX_TIME:-10}
ENFORCE=${SLURM_KIT_ENFORCE-associations,limits}
EXTRA_USERS=${SLURM_KIT_USERS:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "[gristmill-slurm $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
case "$ACCOUNTING" in 0|1) ;; *) die "SLURM_KIT_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'" ;; esac
case "$PREEMPT" in 0|1) ;; *) die "SLURM_KIT_PREEMPT must be 0 or 1, got '$PREEMPT'" ;; esac
case "$HIGH_MAX_TIME" in ''|*[!0-9]*) die "SLURM_KIT_HIGH_MAX_TIME must be whole minutes, got '$HIGH_MAX_TIME'" ;; esac
if [ "$ACCOUNTING" = 0 ]; then ENFORCE=; fi  # enforcement needs slurmdbd's associations
T0=$(date +%s)

# ---------------------------------------------------------------- 1. packages
PKGS=(slurm-wlm slurmctld slurmd slurm-client munge)
[ "$ACCOUNTING" = 1 ] && PKGS+=(slurmdbd mariadb-server mariadb-client)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$KIT_DIR/log"; APTLOG=$KIT_DIR/log/apt.log
  log "installing: ${missing[*]} (log: $APTLOG)"
  export DEBIAN_FRONTEND=noninteractive
  # keep the packages' init scripts from starting system-wide daemons (only if nobody else set a policy)
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  # apt-get update only when the package lists do not know slurmctld (fresh machine) or install fails
  if ! apt-cache show slurmctld >/dev/null 2>&1; then
    log "apt-get update"; apt-get update -q >>"$APTLOG" 2>&1 || { tail -20 "$APTLOG" >&2; die "apt-get update failed"; }
  fi
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$APTLOG" 2>&1; then
    log "install failed, retrying after apt-get update"
    apt-get update -q >>"$APTLOG" 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$APTLOG" 2>&1 \
      || { [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -20 "$APTLOG" >&2; die "apt-get install failed"; }
  fi
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed after $(( $(date +%s) - T0 ))s"
fi

# ---------------------------------------------------------------- 2. config
ETC=$KIT_DIR/etc RUN=$KIT_DIR/run LOGD=$KIT_DIR/log
CONF=$ETC/slurm.conf
MUNGE_SOCK=$KIT_DIR/munge/munge.socket
HOST=$(hostname -s)

if [ "${SLURM_KIT_CLEAN:-0}" = 1 ]; then
  log "SLURM_KIT_CLEAN=1: stopping and wiping $KIT_DIR/state and $KIT_DIR/mysql"
  bash "$HERE/stop.sh" >&2 || true
  rm -rf "$KIT_DIR/state" "$KIT_DIR/mysql"
fi

mkdir -p "$ETC" "$RUN" "$LOGD" "$KIT_DIR/state/ctld" "$KIT_DIR/state/slurmd" "$KIT_DIR/munge"
chmod 755 "$KIT_DIR" "$ETC" "$RUN" "$LOGD"

if [ "$MEM_ENFORCE" = auto ]; then
  MEM_ENFORCE=jobacct
  if [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/freezer ] \
     && mkdir /sys/fs/cgroup/memory/.gristmill_probe 2>/dev/null; then
    rmdir /sys/fs/cgroup/memory/.gristmill_probe; MEM_ENFORCE=cgroup
  fi
fi

if [ -n "${SLURM_KIT_REAL_MEMORY:-}" ]; then
  REAL_MEMORY=$SLURM_KIT_REAL_MEMORY
else
  total_mb=$(( $(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
  REAL_MEMORY=$(( total_mb - 2048 )); [ $REAL_MEMORY -gt 16000 ] && REAL_MEMORY=16000
  [ $REAL_MEMORY -lt 1000 ] && REAL_MEMORY=1000
fi

case "$MEM_ENFORCE" in
  cgroup)
    PROCTRACK=proctrack/cgroup; TASK=task/cgroup
    JAG="JobAcctGatherType=jobacct_gather/linux"$'\n'"JobAcctGatherFrequency=task=1" ;;
  jobacct)
    PROCTRACK=proctrack/linuxproc; TASK=task/none
    JAG="JobAcctGatherType=jobacct_gather/linux"$'\n'"JobAcctGatherFrequency=task=1"$'\n'"JobAcctGatherParams=OverMemoryKill" ;;
  none)
    PROCTRACK=proctrack/linuxproc; TASK=task/none
    JAG="JobAcctGatherType=jobacct_gather/linux"$'\n'"JobAcctGatherFrequency=task=2" ;;
  *) die "SLURM_KIT_MEM_ENFORCE must be auto|cgroup|jobacct|none, got '$MEM_ENFORCE'" ;;
esac

if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK"   # = munge socket for talking to slurmdbd (AuthInfo is not used there)
  if [ -n "$ENFORCE" ]; then ACCT+=$'\n'"AccountingStorageEnforce=$ENFORCE"; fi
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi

# Partitions: `debug` is the default and is never preempted (concurrent test runs on this shared
# cluster must not lose jobs by surprise); `low` is the preemptible partition a preemption test
# submits to; `high` outranks both in scheduling and preempts `low` (PreemptMode=REQUEUE: a job
# that may be requeued goes back to PENDING, one submitted with --no-requeue ends PREEMPTED).
if [ "$PREEMPT" = 1 ]; then
  PREEMPT_CONF="PreemptType=preempt/partition_prio
PreemptMode=REQUEUE"
  DEBUG_PREEMPT=" PreemptMode=OFF"
else
  PREEMPT_CONF="PreemptType=preempt/none"
  DEBUG_PREEMPT=""
fi

cat > "$CONF.new" <<EOF
# generated by gristmill ci/slurm/start.sh - edits are overwritten
ClusterName=gristmill
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
StateSaveLocation=$KIT_DIR/state/ctld
SlurmdSpoolDir=$KIT_DIR/state/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=$PROCTRACK
TaskPlugin=$TASK
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
MinJobAge=$MIN_JOB_AGE
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=100000
KillWait=$KILL_WAIT
OverTimeLimit=0
InactiveLimit=0
Waittime=0
$JAG
$ACCT
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGD/jobcomp.txt
NodeName=$HOST NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEMORY State=UNKNOWN
$PREEMPT_CONF
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE PriorityTier=1$DEBUG_PREEMPT State=UP
PartitionName=low Nodes=$HOST MaxTime=INFINITE PriorityTier=1 State=UP
PartitionName=high Nodes=$HOST MaxTime=$HIGH_MAX_TIME PriorityTier=10 State=UP
EOF

cat > "$ETC/cgroup.conf.new" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
ConstrainDevices=no
EOF

DBD_PASS=gristmill-slurm
cat > "$ETC/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGD/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DBD_PASS
StorageLoc=slurm_acct_db
EOF

alive() {  # alive NAME PIDFILE -> pid file names a live process whose command matches NAME
  local pf=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$1"
}

changed=0
for f in slurm.conf cgroup.conf slurmdbd.conf; do
  if ! cmp -s "$ETC/$f.new" "$ETC/$f"; then changed=1; fi
done
if [ $changed = 1 ] && { alive slurmctld "$RUN/slurmctld.pid" || alive slurmd "$RUN/slurmd.pid" || alive slurmdbd "$RUN/slurmdbd.pid"; }; then
  log "config changed while daemons are running: restarting the cluster"
  bash "$HERE/stop.sh" >&2
fi
for f in slurm.conf cgroup.conf slurmdbd.conf; do mv -f "$ETC/$f.new" "$ETC/$f"; done
chmod 644 "$CONF" "$ETC/cgroup.conf"; chmod 600 "$ETC/slurmdbd.conf"
export SLURM_CONF=$CONF

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.5
  done
}

# ---------------------------------------------------------------- 3. munged
chown munge:munge "$KIT_DIR/munge"; chmod 755 "$KIT_DIR/munge"  # 755: non-root clients must reach the socket
if [ ! -s "$KIT_DIR/munge/munge.key" ]; then
  mungekey --create --keyfile="$KIT_DIR/munge/munge.key"
  chown munge:munge "$KIT_DIR/munge/munge.key"; chmod 400 "$KIT_DIR/munge/munge.key"
fi
if ! alive munged "$RUN/munged.pid"; then
  log "starting munged"
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  touch "$RUN/munged.pid"; chown munge "$RUN/munged.pid"
  runuser -u munge -- /usr/sbin/munged --force \
    --socket="$MUNGE_SOCK" --key-file="$KIT_DIR/munge/munge.key" \
    --pid-file="$RUN/munged.pid" --log-file="$KIT_DIR/munge/munged.log" \
    --seed-file="$KIT_DIR/munge/munged.seed"
  wait_for 10 munged bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'" \
    || die "munged did not come up, see $KIT_DIR/munge/munged.log"
fi

# ---------------------------------------------------------------- 4. mariadb + slurmdbd
if [ "$ACCOUNTING" = 1 ]; then
  MYSQL_DIR=$KIT_DIR/mysql MYSQL_SOCK=$RUN/mysqld.sock
  if [ ! -d "$MYSQL_DIR/mysql" ]; then
    log "initialising mariadb datadir"
    mkdir -p "$MYSQL_DIR"; chown mysql:mysql "$MYSQL_DIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MYSQL_DIR" \
      --auth-root-authentication-method=normal --skip-test-db > "$LOGD/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed, see $LOGD/mariadb-install.log"
  fi
  if ! alive mariadbd "$RUN/mariadbd.pid"; then
    log "starting mariadbd on 127.0.0.1:$MYSQL_PORT"
    chown mysql "$RUN"  # mariadbd writes its pid file + socket here
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$MYSQL_DIR" \
      --socket="$MYSQL_SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
      --pid-file="$RUN/mariadbd.pid" --log-error="$LOGD/mariadbd.log" \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --skip-name-resolve </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb mariadb-admin --no-defaults -S "$MYSQL_SOCK" -uroot ping \
      || die "mariadbd did not come up, see $LOGD/mariadbd.log"
    mariadb --no-defaults -S "$MYSQL_SOCK" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBD_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
  fi
  if ! alive slurmdbd "$RUN/slurmdbd.pid"; then
    log "starting slurmdbd on 127.0.0.1:$DBD_PORT"
    /usr/sbin/slurmdbd  # daemonizes; finds slurmdbd.conf next to $SLURM_CONF
    wait_for 60 slurmdbd sacctmgr -i list cluster \
      || die "slurmdbd did not answer, see $LOGD/slurmdbd.log"
  fi
  # register the cluster before slurmctld starts (otherwise it logs errors until it is added)
  if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx gristmill; then
    sacctmgr -i add cluster gristmill >&2
  fi
  # Associations: with AccountingStorageEnforce=associations a user without one cannot submit.
  # root keeps its own (account root); every login user gets one in account `gristmill`; account
  # `gristmill-limits` (user root) is where tests put submit limits without limiting anyone else.
  has_assoc() {  # has_assoc ACCOUNT USER
    sacctmgr -nP show assoc where cluster=gristmill account="$1" user="$2" format=user 2>/dev/null | grep -qx "$2"
  }
  for acct in gristmill gristmill-limits; do
    if ! sacctmgr -nP show account "$acct" format=account 2>/dev/null | grep -qx "$acct"; then
      sacctmgr -i add account "$acct" cluster=gristmill description="gristmill tests" organization=gristmill >&2
    fi
  done
  users=$(awk -F: '$3 >= 1000 && $3 < 60000 {print $1}' /etc/passwd)
  for u in $users $EXTRA_USERS; do
    id -u "$u" >/dev/null 2>&1 || die "SLURM_KIT_USERS: no such user '$u'"
    has_assoc gristmill "$u" || sacctmgr -i add user "$u" account=gristmill cluster=gristmill >&2
  done
  has_assoc gristmill-limits root || sacctmgr -i add user root account=gristmill-limits cluster=gristmill >&2
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
if ! alive slurmctld "$RUN/slurmctld.pid"; then
  log "starting slurmctld"
  /usr/sbin/slurmctld -f "$CONF"
fi
wait_for 30 slurmctld scontrol ping || die "slurmctld not answering, see $LOGD/slurmctld.log"
if ! alive slurmd "$RUN/slurmd.pid"; then
  log "starting slurmd (node $HOST, CPUs=$CPUS RealMemory=$REAL_MEMORY, mem enforcement=$MEM_ENFORCE)"
  /usr/sbin/slurmd -f "$CONF"
fi

node_ready() {
  local st; st=$(sinfo -h -n "$HOST" -o %T 2>/dev/null) || return 1
  case "$st" in
    idle|mixed|allocated|completing) return 0 ;;
    down*|drain*|*fail*|unknown*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1; return 1 ;;
    *) return 1 ;;
  esac
}
wait_for "$TIMEOUT" node node_ready \
  || die "node $HOST never became idle: $(sinfo -h -o '%T %E' 2>&1); see $LOGD/slurmd.log $LOGD/slurmctld.log"

cat > "$KIT_DIR/env.sh" <<EOF
export SLURM_CONF=$CONF
export SLURM_KIT_DIR=$KIT_DIR
export SLURM_KIT_NODE=$HOST
export SLURM_KIT_ACCOUNTING=$ACCOUNTING
export SLURM_KIT_MEM_ENFORCE=$MEM_ENFORCE
EOF
log "cluster up in $(( $(date +%s) - T0 ))s: $(sinfo -h -o '%P %a %D %T %c CPUs %m MB')"
cat "$KIT_DIR/env.sh"
