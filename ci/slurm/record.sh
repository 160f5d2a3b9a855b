#!/usr/bin/env bash
# ci/slurm/record.sh - record REAL Slurm client outputs for the golden-file parser tests in
# tests/backends/data/slurm/ (see INDEX.md there for what each file is).
#
#   bash ci/slurm/record.sh            # as root; ~4 minutes; restarts the test cluster 4 times
#
# Runs the same scenarios (ok, exit3, oom, cancel_running, array, pending, pending_dep; timeout
# in the first mode only, it takes ~90 s) in three cluster modes, each started clean
# (SLURM_KIT_CLEAN=1, so job ids restart at 1 and squeue shows only that mode's jobs):
#   cgroup   SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=cgroup
#   jobacct  SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=jobacct
#   noacct   SLURM_KIT_ACCOUNTING=0 SLURM_KIT_MEM_ENFORCE=cgroup SLURM_KIT_MIN_JOB_AGE=30
#            (short MinJobAge so a purged job id can be recorded within a minute)
# At the end the cluster is restarted clean in the default config (accounting on, memory
# enforcement auto) and left running. Every wait is bounded; a scenario that does not reach the
# expected state in time is logged as a WARNING and recorded as it is.
#
# Then, on that default cluster (production knobs: partitions low/high with preemption, submit
# limits enforced), the `prod` scenarios are recorded into $RECORD_OUT/prod/ (own INDEX.md and
# commands.tsv): sbatch refused by a submit limit (association and QOS), sacctmgr's view of the
# limits, preemption with and without requeue, a job pending for a reason that never clears, and
# a node set DOWN under running jobs. RECORD_ONLY=prod records only these, on the cluster as it
# runs (no restart; it waits, bounded, for other users' jobs to leave the node first).
#
# Env: RECORD_OUT (output dir) [tests/backends/data/slurm], RECORD_MODES ["cgroup jobacct noacct"],
#      RECORD_ONLY (prod: only the prod scenarios), SLURM_KIT_DIR as for start.sh. cgroup modes need
#      a writable cgroup-v1 memory hierarchy.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${RECORD_OUT:-$ROOT/tests/backends/data/slurm}
MODES=${RECORD_MODES:-"cgroup jobacct noacct"}
KIT_DIR=${SLURM_KIT_DIR:-/tmp/gristmill-slurm}
WORK=$KIT_DIR/record
TERMINAL='^(COMPLETED|FAILED|TIMEOUT|CANCELLED|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)$'
SCENARIOS="ok exit3 oom timeout cancel_running array pending pending_dep"
SQ_FMT='%i|%T|%r|%N'
SACCT_X_FMT=JobID,JobIDRaw,State,ExitCode,Elapsed,NodeList,Reason
SACCT_STEPS_FMT=JobID,State,ExitCode,MaxRSS,Elapsed
# what the backend asks sacct (gristmill.backends.slurm.backend.SACCT_FORMAT)
SACCT_GM_FMT=JobID,State,ExitCode,MaxRSS,Elapsed,TotalCPU,AllocCPUS,ReqMem,NodeList
SACCT_FULL_FMT=JobID,JobIDRaw,JobName,State,ExitCode,DerivedExitCode,Reason,MaxRSS,ReqMem,Elapsed,Timelimit,NodeList,Start,End
T0=$(date +%s)
MODE=none

log() { echo "[record +$(( $(date +%s) - T0 ))s $MODE] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "ERROR: must run as root (start.sh installs packages, starts daemons)"; exit 1; }
mkdir -p "$OUT" "$WORK"
if [ "${RECORD_ONLY:-}" != prod ]; then
  rm -f "$OUT"/*.txt "$OUT"/*.json "$OUT"/commands.tsv
  printf 'file\tmode\texit_code\tcommand\n' > "$OUT/commands.tsv"
fi

qj() { python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@"; }  # shell-quoted argv

cap() {  # cap FILE CMD... : stdout -> $OUT/FILE; non-empty stderr -> FILE.stderr.txt; logged in commands.tsv
  local f=$1 err rc; shift
  err=$(mktemp)
  "$@" > "$OUT/$f" 2> "$err"; rc=$?
  if [ -s "$err" ]; then mv "$err" "$OUT/${f%.*}.stderr.txt"; else rm -f "$err"; fi
  [ "$rc" = 0 ] || log "WARNING: exit $rc from: $(qj "$@")"
  printf '%s\t%s\t%s\t%s\n' "$f" "$MODE" "$rc" "$(qj "$@")" >> "$OUT/commands.tsv"
  return "$rc"
}
cap3() {  # cap3 BASE CMD... : for expected errors - always BASE.stdout.txt, BASE.stderr.txt, BASE.rc.txt
  local b=$1 rc; shift
  "$@" > "$OUT/$b.stdout.txt" 2> "$OUT/$b.stderr.txt"; rc=$?
  echo "$rc" > "$OUT/$b.rc.txt"
  printf '%s\t%s\t%s\t%s\n' "$b.{stdout,stderr,rc}.txt" "$MODE" "$rc" "$(qj "$@")" >> "$OUT/commands.tsv"
}
wait_until() {  # wait_until SECONDS WHAT CMD... -> 0 when CMD succeeds, 1 (+ WARNING) after SECONDS
  local end=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$end" ]; then log "WARNING: gave up waiting for $what"; return 1; fi
    sleep 1
  done
}

states() { squeue -h -t all -r -j "$1" -o %T 2>/dev/null; }
is_done() { local s; s=$(states "$1"); [ -n "$s" ] && ! grep -qvE "$TERMINAL" <<<"$s"; }
is_running() { states "$1" | grep -qx RUNNING; }
is_gone() { [ -z "$(squeue -h -t all -j "$1" 2>/dev/null)" ]; }
sacct_done() {  # sacct_done ID N -> sacct has N job rows, all in a final state
  local s; s=$(sacct -X -n -P -j "$1" -o State 2>/dev/null | cut -d' ' -f1)
  [ "$(grep -cE "$TERMINAL" <<<"$s")" -ge "$2" ] && ! grep -qvE "$TERMINAL" <<<"$s"
}

snap() {  # snap SCENARIO [STAGE]: the squeue/scontrol views of one job (all tasks of an array)
  local p="$1_$MODE${2:+.$2}" id=${ID[$1]}
  cap "$p.squeue.txt"   squeue --noheader --states=all --format="$SQ_FMT" -j "$id"
  cap "$p.squeue_r.txt" squeue --noheader --states=all --format="$SQ_FMT" -r -j "$id"
  cap "$p.scontrol.txt" scontrol show job -o "$id"
}
finish() {  # finish SCENARIO: final squeue/scontrol view, job log, jobcomp lines
  local s=$1 raw
  snap "$s"
  DONE[$s]=1
  [ -f "$WORK/$MODE/$s-${ID[$s]}.out" ] && cp "$WORK/$MODE/$s-${ID[$s]}.out" "$OUT/${s}_$MODE.joblog.txt"
  raw=$(grep -o '^JobId=[0-9]*' "$OUT/${s}_$MODE.scontrol.txt" | cut -d= -f2 | paste -sd'|')
  RAW[$s]=$raw
  log "$s (${ID[$s]}): $(tr '\n' ' ' < "$OUT/${s}_$MODE.squeue_r.txt")"
}

start_mode() {  # start_mode MODE: restart the cluster clean in MODE, export its env
  local env
  case "$1" in
    cgroup)  env=(SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=cgroup) ;;
    jobacct) env=(SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=jobacct) ;;
    noacct)  env=(SLURM_KIT_ACCOUNTING=0 SLURM_KIT_MEM_ENFORCE=cgroup SLURM_KIT_MIN_JOB_AGE=30) ;;
    default) env=() ;;
    *) log "ERROR: unknown mode $1"; return 1 ;;
  esac
  log "starting cluster: ${env[*]:-defaults} (clean)"
  local out; out=$(env -u SLURM_KIT_ACCOUNTING -u SLURM_KIT_MEM_ENFORCE -u SLURM_KIT_MIN_JOB_AGE \
    "${env[@]}" SLURM_KIT_CLEAN=1 SLURM_KIT_DIR="$KIT_DIR" bash "$HERE/start.sh") || return 1
  eval "$out"
}

record_mode() {
  MODE=$1
  start_mode "$MODE" || { log "ERROR: cluster did not start in mode $MODE"; return 1; }
  rm -rf "${WORK:?}/$MODE"; mkdir -p "$WORK/$MODE"; cd "$WORK/$MODE" || return 1
  declare -gA ID=() DONE=() RAW=()
  local jc=$KIT_DIR/log/jobcomp.txt jc0 s
  jc0=$(wc -l < "$jc" 2>/dev/null || echo 0)
  cap "config_$MODE.txt" bash -c "scontrol show config | grep -i -E 'MaxArraySize|MinJobAge|MaxJobCount'"

  sb() {  # sb SCENARIO SBATCH-ARGS... -> ID[SCENARIO]; job output in $WORK/$MODE/${OPAT:-SCENARIO-%j.out}
    local s=$1; shift
    cap "${s}_$MODE.sbatch.txt" sbatch --parsable -J "$s" -o "$WORK/$MODE/${OPAT:-$s-%j.out}" "$@"
    ID[$s]=$(cat "$OUT/${s}_$MODE.sbatch.txt")
    SUB[$s]=$(qj "$@")
  }
  declare -gA SUB=()
  # bytearray(n) zero-fills, so every page is touched and counted in RSS
  sb ok --mem=200M --wrap 'python3 -c "import time; x = bytearray(50 * 1024**2); time.sleep(3)"'
  sb exit3 --wrap 'exit 3'
  sb oom --mem=100M --wrap 'python3 -c "import time; x = bytearray(300 * 1024**2); time.sleep(10)"'
  [ "$MODE" = cgroup ] && sb timeout --time=1 --wrap 'sleep 120'
  sb cancel_running --wrap 'sleep 300'
  # shellcheck disable=SC2016  # $SLURM_ARRAY_TASK_ID is for the job's shell
  OPAT=array-%A_%a.out sb array --array=0-4 --wrap 'sleep 4; if [ "$SLURM_ARRAY_TASK_ID" = 3 ]; then exit 2; fi'
  sb pending --begin=now+3600 --wrap true
  sb pending_dep "--dependency=afterok:${ID[pending]}" --wrap true
  log "submitted: $(for k in $SCENARIOS; do [ -n "${ID[$k]:-}" ] && printf '%s=%s ' "$k" "${ID[$k]}"; done)"
  [ "$MODE" = cgroup ] && cap3 "array_too_big_$MODE.sbatch" sbatch --parsable --array=0-1001 --wrap true

  sleep 1
  snap array submitted
  local cancelled=0 timeout_seen=0 array_seen=0 deadline
  deadline=$(( $(date +%s) + $( [ "$MODE" = cgroup ] && echo 240 || echo 90 ) ))
  while :; do
    if [ $array_seen = 0 ] && [ -z "${DONE[array]:-}" ] && is_running "${ID[array]}"; then
      snap array running; array_seen=1
    fi
    for s in ok exit3 oom timeout cancel_running array; do
      [ -n "${ID[$s]:-}" ] && [ -z "${DONE[$s]:-}" ] && is_done "${ID[$s]}" && finish "$s"
    done
    if [ $cancelled = 0 ] && is_running "${ID[cancel_running]}"; then
      sleep 1; snap cancel_running running
      cap "all_$MODE.live.squeue.json" squeue --json
      scancel "${ID[cancel_running]}"; cancelled=1; log "scancel ${ID[cancel_running]} (running)"
    fi
    if [ -n "${ID[timeout]:-}" ] && [ $timeout_seen = 0 ] && is_running "${ID[timeout]}"; then
      snap timeout running; timeout_seen=1
    fi
    local left=0
    for s in ok exit3 oom timeout cancel_running array; do
      [ -n "${ID[$s]:-}" ] && [ -z "${DONE[$s]:-}" ] && left=1
    done
    [ $left = 0 ] && break
    [ "$(date +%s)" -ge $deadline ] && { log "WARNING: scenarios still unfinished at the deadline"; break; }
    sleep 1
  done
  snap pending pending
  snap pending_dep pending

  # the whole queue at once (what one poll of the backend sees), then accounting
  cap "all_$MODE.squeue.txt"   squeue --noheader --states=all --format="$SQ_FMT"
  cap "all_$MODE.squeue_r.txt" squeue --noheader --states=all --format="$SQ_FMT" -r
  cap "all_$MODE.squeue.json"  squeue --json
  cap "all_$MODE.scontrol.txt" scontrol show job -o
  local ids; ids=$(for s in "${ID[@]}"; do echo "$s"; done | sort -n | paste -sd,)

  if [ "$MODE" = noacct ]; then
    cap3 "ok_$MODE.sacct_x" sacct -X -P -n --format="$SACCT_X_FMT" -j "${ID[ok]}"
    cap3 "ok_$MODE.sacct_steps" sacct -P -n --format="$SACCT_STEPS_FMT" -j "${ID[ok]}"
    # purged job ids: wait until MinJobAge (30 s here) drops the finished ok job from slurmctld
    log "waiting for job ${ID[ok]} to be purged (MinJobAge=30)"
    if wait_until 150 "purge of job ${ID[ok]}" is_gone "${ID[ok]}"; then
      cap3 "purged_$MODE.squeue" squeue --noheader --states=all --format="$SQ_FMT" -j "${ID[ok]}"
      cap3 "purged_mixed_$MODE.squeue" squeue --noheader --states=all --format="$SQ_FMT" -j "${ID[ok]},${ID[pending]}"
      cap3 "purged_$MODE.scontrol" scontrol show job -o "${ID[ok]}"
      cap3 "unknown_$MODE.squeue" squeue --noheader --states=all --format="$SQ_FMT" -j 999999
    fi
  fi

  scancel "${ID[pending]}" "${ID[pending_dep]}"; log "scancel pending jobs"
  for s in pending pending_dep; do
    wait_until 30 "$s cancelled" is_done "${ID[$s]}"; finish "$s"
  done

  if [ "$MODE" != noacct ]; then
    for s in $SCENARIOS; do
      [ -n "${ID[$s]:-}" ] || continue
      local n=1; [ "$s" = array ] && n=5
      wait_until 30 "sacct rows of $s" sacct_done "${ID[$s]}" $n
      cap "${s}_$MODE.sacct_x.txt"     sacct -X -P -n --format="$SACCT_X_FMT" -j "${ID[$s]}"
      cap "${s}_$MODE.sacct_steps.txt" sacct -P -n --format="$SACCT_STEPS_FMT" -j "${ID[$s]}"
      cap "${s}_$MODE.sacct_gm.txt" sacct -P -n --format="$SACCT_GM_FMT" -j "${ID[$s]}"
    done
    cap "all_$MODE.sacct_full.txt" sacct -P --format="$SACCT_FULL_FMT" -j "$ids"
    cap "all_$MODE.sacct.json" sacct --json -j "$ids"
  fi

  # jobcomp/filetxt (always on): lines this mode added, and per scenario
  sleep 1
  tail -n +"$(( jc0 + 1 ))" "$jc" > "$OUT/all_$MODE.jobcomp.txt"
  printf '%s\t%s\t%s\t%s\n' "all_$MODE.jobcomp.txt" "$MODE" 0 "tail -n +$(( jc0 + 1 )) $jc" >> "$OUT/commands.tsv"
  for s in $SCENARIOS; do
    [ -n "${ID[$s]:-}" ] || continue
    [ -n "${RAW[$s]:-}" ] || continue
    grep -E "^JobId=(${RAW[$s]}) " "$OUT/all_$MODE.jobcomp.txt" > "$OUT/${s}_$MODE.jobcomp.txt"
    printf '%s\t%s\t%s\t%s\n' "${s}_$MODE.jobcomp.txt" "$MODE" 0 "grep -E '^JobId=(${RAW[$s]}) ' $jc" >> "$OUT/commands.tsv"
  done
  for s in $SCENARIOS; do
    [ -n "${ID[$s]:-}" ] || continue
    printf '| %s | %s | %s | `sbatch --parsable -J %s -o ... %s` |\n' "$MODE" "$s" "${ID[$s]}" "$s" "${SUB[$s]}" >> "$WORK/jobs.md"
  done
  cd "$ROOT" || return 1
}


# ---------------------------------------------------------------- prod scenarios
others_running() {  # jobs of other users or runs on the node (not ours: named gm-rec-*)
  [ -n "$(squeue -h -t R,CG -o '%j' 2>/dev/null | grep -v '^gm-rec-')" ]
}
record_prod() {
  MODE=prod
  local P=$OUT/prod O=$OUT
  mkdir -p "$P"; rm -f "$P"/*.txt; OUT=$P
  printf 'file\tmode\texit_code\tcommand\n' > "$OUT/commands.tsv"
  rm -rf "${WORK:?}/prod"; mkdir -p "$WORK/prod"; cd "$WORK/prod" || return 1
  local LA=gristmill-limits QOS=gristmill-limited me; me=$(id -un)
  cap config.txt bash -c "scontrol show config | grep -E '^(Preempt|AccountingStorageEnforce|JobRequeue|EnforcePartLimits)'"
  cap partitions.txt scontrol show partition -o
  # -- submit limits, on a dedicated association only (user root, account gristmill-limits)
  trap 'sacctmgr -i modify user "$me" where account=$LA set MaxSubmitJobs=-1 qos-=$QOS >/dev/null 2>&1; sacctmgr -i delete qos $QOS >/dev/null 2>&1' RETURN
  sacctmgr -i modify user "$me" where account=$LA set MaxSubmitJobs=3 >/dev/null
  cap limit.assoc.txt sacctmgr --noheader --parsable2 show user "$me" withassoc format=User,DefaultAccount,Cluster,Account,Partition,MaxSubmitJobs,GrpSubmitJobs,DefaultQOS,QOS
  cap limit.qos.txt sacctmgr --noheader --parsable2 show qos normal format=Name,MaxSubmitJobsPerUser,GrpSubmitJobs
  local ids=()
  for i in 1 2 3; do ids+=("$(sbatch --parsable -J gm-rec-limit -A $LA -o /dev/null --begin=now+600 --wrap true)"); done
  cap3 limit_single.sbatch sbatch --parsable -J gm-rec-limit -A $LA -o /dev/null --wrap true
  cap3 limit_array.sbatch sbatch --parsable -J gm-rec-limit -A $LA -o /dev/null --array=0-1 --wrap true
  cap limit.squeue.txt squeue --noheader --format="$SQ_FMT" -A $LA
  scancel "${ids[@]}"; wait_until 30 "limit jobs gone" bash -c "[ -z \"\$(squeue -h -A $LA)\" ]"
  # an array of N elements counts N jobs: 0-2 fits the limit of 3, one more does not
  local arr; arr=$(sbatch --parsable -J gm-rec-limit -A $LA -o /dev/null --begin=now+600 --array=0-2 --wrap true)
  cap3 limit_after_array.sbatch sbatch --parsable -J gm-rec-limit -A $LA -o /dev/null --wrap true
  scancel "$arr"
  sacctmgr -i modify user "$me" where account=$LA set MaxSubmitJobs=-1 >/dev/null
  sacctmgr -i add qos $QOS MaxSubmitJobsPerUser=1 >/dev/null
  sacctmgr -i modify user "$me" where account=$LA set qos+=$QOS >/dev/null
  cap limit_qos.qos.txt sacctmgr --noheader --parsable2 show qos $QOS format=Name,MaxSubmitJobsPerUser,GrpSubmitJobs
  arr=$(sbatch --parsable -J gm-rec-limit -A $LA --qos=$QOS -o /dev/null --begin=now+600 --wrap true)
  cap3 limit_qos.sbatch sbatch --parsable -J gm-rec-limit -A $LA --qos=$QOS -o /dev/null --wrap true
  scancel "$arr"
  sacctmgr -i modify user "$me" where account=$LA set qos-=$QOS >/dev/null
  sacctmgr -i delete qos $QOS >/dev/null
  trap - RETURN
  # -- a job that can never start: over the partition's MaxTime, and over the node's memory
  local never; never=$(sbatch --parsable -J gm-rec-never -p high --time=20 -o /dev/null --wrap true)
  sleep 3
  cap unschedulable.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -j "$never"
  cap unschedulable.scontrol.txt scontrol show job -o "$never"
  scancel "$never"
  cap3 too_much_mem.sbatch sbatch --parsable -J gm-rec-never --mem=10T -o /dev/null --wrap true
  # -- preemption: `low` jobs (no requeue: an array; requeue: one job), then a `high` job that
  # needs the whole node
  wait_until 180 "other jobs to leave the node" bash -c "$(declare -f others_running); ! others_running"
  local low req high
  # --priority (root only): ahead of other users' jobs already pending in `debug`
  low=$(sbatch --parsable -J gm-rec-low -p low --priority=4294967000 --no-requeue -c 2 --array=0-2 -o "$WORK/prod/low-%A_%a.out" --wrap 'sleep 120')
  req=$(sbatch --parsable -J gm-rec-low -p low --priority=4294967000 --requeue -c 2 -o "$WORK/prod/req-%j.out" --wrap 'echo start; sleep 20')
  wait_until 180 "low jobs running" bash -c "[ \"\$(squeue -h -t R -p low | wc -l)\" -ge 4 ]"
  cap preempt.before.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -r -j "$low,$req"
  high=$(sbatch --parsable -J gm-rec-high -p high -c 8 -o /dev/null --wrap 'sleep 5')
  wait_until 60 "high job running" bash -c "squeue -h -t R -j $high | grep -q ."
  cap preempt.during.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -r -j "$low,$req,$high"
  cap preempt.during.scontrol.txt scontrol show job -o "$req"
  wait_until 120 "requeued job done" bash -c "squeue -h -t CD -j $req | grep -q ."
  cap preempt.after.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -r -j "$low,$req,$high"
  cap preempt.after.scontrol.txt scontrol show job -o "$req"
  cp "$WORK/prod/req-$req.out" "$OUT/preempt.requeued.joblog.txt" 2>/dev/null
  cp "$WORK/prod/low-${low}_0.out" "$OUT/preempt.preempted.joblog.txt" 2>/dev/null
  sleep 5
  cap preempt.sacct_gm.txt sacct -P -n --format="$SACCT_GM_FMT" -j "$low,$req,$high"
  cap preempt.sacct_dup.txt sacct -P -n --duplicates --format="$SACCT_GM_FMT" -j "$req"
  # -- node failure under running jobs (no requeue: an array; requeue: one job)
  local node=${SLURM_KIT_NODE:-$(hostname -s)}
  wait_until 180 "other jobs to leave the node" bash -c "$(declare -f others_running); ! others_running"
  low=$(sbatch --parsable -J gm-rec-down --priority=4294967000 --no-requeue --array=0-1 -o /dev/null --wrap 'sleep 120')
  req=$(sbatch --parsable -J gm-rec-down --priority=4294967000 --requeue -o /dev/null --wrap 'sleep 10')
  wait_until 180 "jobs running" bash -c "[ \"\$(squeue -h -t R -n gm-rec-down | wc -l)\" -ge 3 ]"
  scontrol update nodename="$node" state=DOWN reason=gristmill-record
  sleep 2
  cap node_down.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -r -j "$low,$req"
  cap node_down.sinfo.txt sinfo -h -o '%N|%T|%E'
  scontrol update nodename="$node" state=RESUME
  wait_until 120 "requeued job done" bash -c "squeue -h -t CD -j $req | grep -q ."
  cap node_down.after.squeue.txt squeue --noheader --states=all --format="$SQ_FMT" -r -j "$low,$req"
  sleep 5
  cap node_down.sacct_gm.txt sacct -P -n --format="$SACCT_GM_FMT" -j "$low,$req"
  scancel -n gm-rec-low,gm-rec-down,gm-rec-high 2>/dev/null
  prod_index > "$OUT/INDEX.md"
  OUT=$O
  cd "$ROOT" || return 1
}

prod_index() {
  cat <<EOF
# Recorded Slurm outputs on the production-like cluster

Real outputs of Slurm $(sinfo --version 2>/dev/null | awk '{print $2}') recorded by \`RECORD_ONLY=prod bash ci/slurm/record.sh\`
(or at the end of a full record.sh run) on the test cluster with its production knobs
(ci/slurm/README.md, "Production knobs"), on $(date -u +%Y-%m-%d), while other users' jobs may run.
Do not edit by hand; \`commands.tsv\` lists every file with its exact command and exit code.

| file | what |
| --- | --- |
| config.txt, partitions.txt | the preemption and enforcement settings; \`scontrol show partition -o\` |
| limit.assoc.txt | \`sacctmgr -nP show user root withassoc format=User,DefaultAccount,Cluster,Account,Partition,MaxSubmitJobs,GrpSubmitJobs,DefaultQOS,QOS\` with MaxSubmitJobs=3 on account gristmill-limits |
| limit.qos.txt, limit_qos.qos.txt | \`sacctmgr -nP show qos <name> format=Name,MaxSubmitJobsPerUser,GrpSubmitJobs\` (normal; a QOS with MaxSubmitJobsPerUser=1) |
| limit_single.sbatch.* | a 4th job while 3 are held (MaxSubmitJobs=3): refused |
| limit_array.sbatch.* | an array of 2 while 3 are held: refused whole |
| limit_after_array.sbatch.* | one job while an array of 3 is held: refused (an array of N counts N) |
| limit_qos.sbatch.* | a 2nd job under the QOS's MaxSubmitJobsPerUser=1 |
| limit.squeue.txt | the 3 held jobs (\`--begin=now+600\`) |
| unschedulable.* | \`--time=20\` in partition high (MaxTime=10): PENDING / PartitionTimeLimit |
| too_much_mem.sbatch.* | \`--mem=10T\`: refused at submission |
| preempt.{before,during,after}.squeue.txt, .scontrol.txt | a \`--no-requeue\` array (3 x 2 CPUs) and a \`--requeue\` job in low, preempted by an 8-CPU job in high |
| preempt.sacct_gm.txt, preempt.sacct_dup.txt | sacct with the backend's format (\`$SACCT_GM_FMT\`); \`--duplicates\` for the requeued job |
| preempt.*.joblog.txt | the preempted element's and the requeued job's own output |
| node_down.* | \`scontrol update nodename=<node> state=DOWN\` under a \`--no-requeue\` array and a \`--requeue\` job |
EOF
}

if [ "${RECORD_ONLY:-}" = prod ]; then
  record_prod || log "ERROR: the prod scenarios failed"
  log "done in $(( $(date +%s) - T0 ))s"
  exit 0
fi

: > "$WORK/jobs.md"
for m in $MODES; do record_mode "$m" || log "ERROR: mode $m failed, continuing"; done
MODE=default
start_mode default || log "ERROR: could not restart the cluster in the default config"
log "sinfo: $(sinfo -h -o '%P %a %D %T' 2>&1)"
record_prod || log "ERROR: the prod scenarios failed"

cat > "$OUT/INDEX.md" <<EOF
# Recorded Slurm outputs

Real outputs of Slurm $(sinfo --version 2>/dev/null | awk '{print $2}') client commands, recorded by
\`ci/slurm/record.sh\` on the project's single-node test cluster (ci/slurm/README.md) on
$(date -u +%Y-%m-%d). Regenerate with \`sudo bash ci/slurm/record.sh\`; do not edit by hand.
\`commands.tsv\` lists every file with its mode, the exact command and its exit code.

## Modes (the cluster was restarted clean for each, so job ids start at 1)
| mode | start.sh knobs | memory limit enforced by |
| --- | --- | --- |
| cgroup | SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=cgroup | kernel OOM killer in the job's memory cgroup |
| jobacct | SLURM_KIT_ACCOUNTING=1 SLURM_KIT_MEM_ENFORCE=jobacct | slurmstepd polling RSS every 1 s (OverMemoryKill) |
| noacct | SLURM_KIT_ACCOUNTING=0 SLURM_KIT_MEM_ENFORCE=cgroup SLURM_KIT_MIN_JOB_AGE=30 | cgroup; no slurmdbd, so sacct fails |

## Scenarios (job name = scenario; timeout only in cgroup mode)
| mode | scenario | job id | submitted with |
| --- | --- | --- | --- |
$(cat "$WORK/jobs.md")

\`ok\` allocates 50 MB for 3 s (so MaxRSS is non-zero); \`oom\` allocates 300 MB under --mem=100M;
\`array\` tasks sleep 4 s, task 3 then exits 2; \`cancel_running\` is scancel'ed 1 s after it is seen RUNNING; \`pending\`
waits for its begin time and \`pending_dep\` depends on it (both scancel'ed at the end).

## Files: \`<scenario>_<mode>[.<stage>].<kind>\`
No stage = the job's final state (captured as soon as squeue showed it finished). Stages:
\`submitted\` (array, 1 s after submission), \`running\` (cancel_running just before scancel;
timeout and array when a task is first seen running), \`pending\` (pending, pending_dep before scancel).

| kind | command (\`<id>\` = the job id from .sbatch.txt) |
| --- | --- |
| sbatch.txt | \`sbatch --parsable -J <scenario> -o ... <args>\` (stdout: the job id) |
| squeue.txt | \`squeue --noheader --states=all --format='%i\|%T\|%r\|%N' -j <id>\` |
| squeue_r.txt | same with \`-r\` (one line per array task) |
| scontrol.txt | \`scontrol show job -o <id>\` (one line per job / array task) |
| sacct_x.txt | \`sacct -X -P -n --format=$SACCT_X_FMT -j <id>\` |
| sacct_steps.txt | \`sacct -P -n --format=$SACCT_STEPS_FMT -j <id>\` (with steps: MaxRSS is on .batch) |
| jobcomp.txt | the job's lines of \`\$SLURM_KIT_DIR/log/jobcomp.txt\` (jobcomp/filetxt, on in every mode) |
| joblog.txt | the job's own stdout+stderr file (Slurm's kill messages land here) |

Whole-queue files per mode (what one poll sees): \`all_<mode>.squeue.txt\`, \`.squeue_r.txt\` (same
squeue format, no -j), \`all_<mode>.scontrol.txt\` (\`scontrol show job -o\`), \`all_<mode>.squeue.json\`
and \`all_<mode>.live.squeue.json\` (\`squeue --json\`, at the end / while cancel_running ran),
\`all_<mode>.sacct_full.txt\` (\`sacct -P --format=$SACCT_FULL_FMT -j <all ids>\`, with header),
\`all_<mode>.sacct.json\` (\`sacct --json -j <all ids>\`), \`all_<mode>.jobcomp.txt\`,
\`config_<mode>.txt\` (\`scontrol show config | grep -i -E 'MaxArraySize|MinJobAge|MaxJobCount'\`).

Expected errors are stored as \`<base>.stdout.txt\`, \`<base>.stderr.txt\`, \`<base>.rc.txt\` (exit code):
\`ok_noacct.sacct_x\` / \`ok_noacct.sacct_steps\` (sacct without accounting storage),
\`purged_noacct.squeue\` (\`squeue ... -j <id purged after MinJobAge>\`), \`purged_mixed_noacct.squeue\`
(\`-j <purged id>,<pending id>\`), \`purged_noacct.scontrol\`, \`unknown_noacct.squeue\` (\`-j 999999\`),
\`array_too_big_cgroup.sbatch\` (\`--array=0-1001\` with MaxArraySize=1001).
Any other \`*.stderr.txt\` is stderr a command printed next to its normal output.
EOF
log "done in $(( $(date +%s) - T0 ))s; $(ls "$OUT" | wc -l) files in $OUT"
