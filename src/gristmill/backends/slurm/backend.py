"""Slurm backend: ``sbatch --array`` submissions, one ``squeue`` (+ at most one ``sacct``) per poll.

Ready jobs of one task with the same resources become one array (see
:mod:`gristmill.backends.batch.arrays`); resources are passed as ``sbatch`` options
on an argv list, never through a shell or ``#SBATCH`` lines, so no value is
ever re-parsed. Status comes from one ``squeue --states=all`` call for every
live job; jobs that already left the queue are looked up with one ``sacct``
call, or — where accounting is not configured — one ``scontrol show job``.
The worker wrapper's result file is the source of truth where it exists.

What a job used comes from sacct where accounting is on: jobs squeue lists as finished
are asked about in the same one ``sacct`` call as those gone from it, for ``TotalCPU``
(user + system seconds of all the job's steps) and the batch step's ``MaxRSS``, with
``AllocCPUS``, ``ReqMem`` and ``NodeList``. These are the scheduler's numbers and win
over the wrapper's own measurement for CPU time and peak memory
(:func:`gristmill.engine.outcome.with_usage`); where sacct has none yet (slurmdbd lags
a few seconds behind a job's end) the wrapper's stand, marked as such. A finished job
is never held back waiting for its accounting.

Memory limits are classified as OOM whether the site enforces them with
cgroups (``OUT_OF_MEMORY``) or with jobacct polling (``FAILED`` with
``JobLaunchFailure``/signal 9 and "exceeded memory limit" in the job's log).
A time limit or an ``scancel`` reaches the wrapper as SIGTERM; the element
runner reads slurmstepd's ``*** JOB ... CANCELLED AT ... [DUE TO TIME LIMIT] ***``
line and records TIMEOUT or CANCELLED accordingly (see :func:`why_stopped`).
Array elements cancelled while pending leave no record anywhere; the backend
remembers what it cancelled.

Preemption and node failure are the cluster's doing: PREEMPTED, NODE_FAIL and BOOT_FAIL
are reported as such, and the engine runs the node again as it was. By default jobs are
submitted ``--no-requeue``, so such a job ends and gristmill submits a new attempt (each
run of a task is one recorded attempt); with the ``requeue`` option Slurm runs the same
job again and squeue shows it pending under its id, which is only ever QUEUED here, never
an end: gristmill never submits it a second time. A job pending for a reason that never
clears (:data:`UNSCHEDULABLE`) keeps Slurm's reason in its status, or with
``fail_on_unschedulable`` is cancelled and fails with it.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from gristmill.backends.base import SCHEDULER, JobHandle, JobStatus
from gristmill.backends.batch.arrays import Array, element_command, throttle
from gristmill.backends.batch.backend import ArrayBackend, element_runs, lookup, unstarted
from gristmill.backends.batch.commands import CommandRunner
from gristmill.backends.batch.element import SCHEDULER_DECIDES, log_tail, verdict
from gristmill.backends.slurm.partitions import parse_partitions
from gristmill.backends.slurm.settings import SETTINGS
from gristmill.errors import BackendError
from gristmill.resources import Resources, format_duration, format_memory_mb, parse_memory
from gristmill.states import JobState

#: Transient states: the job is not over. A job Slurm requeued (after preemption with
#: ``PreemptMode=REQUEUE``, a node failure, ``scontrol requeue``) passes through
#: REQUEUED/REQUEUE_FED/REQUEUE_HOLD back to PENDING under the same id, and runs again:
#: gristmill waits for it and never submits it a second time.
_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
           "SUSPENDED", "STOPPED"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_FINAL = {
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.NODE_FAIL,  # its node could not boot: the cluster's fault
    "NODE_FAIL": JobState.NODE_FAIL,
    "REVOKED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.OOM,
    "TIMEOUT": JobState.TIMEOUT,
    # The job's own ``--deadline`` passed: more runtime cannot help, so not a TIMEOUT.
    "DEADLINE": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.PREEMPTED,
}
#: Why each end that is not the task's own came (the attempt's reason).
_ENDED_BY_SLURM = {
    "PREEMPTED": "PREEMPTED: Slurm preempted the job for one of higher priority",
    "NODE_FAIL": "NODE_FAIL: the job's node failed",
    "BOOT_FAIL": "BOOT_FAIL: the job's node could not boot",
    "DEADLINE": "DEADLINE: the job's --deadline passed before it could finish",
}
_OOM_LINE = "exceeded memory limit"
#: sbatch errors after which the job may exist all the same: the request reached
#: slurmctld, its answer did not come back (``Socket timed out on send/recv operation``,
#: ``Zero Bytes were transmitted or received``). "Unable to contact slurm controller
#: (connect failure)" is not one of them: nothing was sent, and sbatch may be retried.
IN_DOUBT = re.compile(r"Socket timed out|Zero Bytes were transmitted|Connection reset")
#: Seconds taken off this host's clock for sacct's ``--starttime`` of an array it
#: submitted: the controller's clock may be a little behind.
CLOCK_SKEW = 300

#: squeue reasons (``%r``) of a pending job that waiting never satisfies: it asks for more
#: than its partition, QOS or association allows one job, names an account, QOS or
#: constraint that does not exist, or depends on a job that failed. (Limits on how many
#: jobs or how much in total run at once, such as ``QOSMaxJobsPerUserLimit``, clear as
#: other jobs end and are not in it.)
UNSCHEDULABLE = re.compile(
    r"^(Partition(TimeLimit|NodeLimit|Config)|(QOS|Assoc)Max\w*PerJob\w*|QOSMin\w*"
    r"|InvalidAccount|InvalidQOS|BadConstraints|DependencyNeverSatisfied)\b"
)


#: sbatch's reason when a submit limit refused a job: the association's or QOS's
#: MaxSubmitJobs / GrpSubmitJobs (``sbatch: error: AssocMaxSubmitJobLimit``, then "Job
#: violates accounting/QOS policy (job submit limit, ...)"). That last line alone is also
#: printed for a size or time limit, which never clears, so only the reason word counts.
SUBMIT_LIMIT = re.compile(r"\b((?:Assoc|QOS)\w*Submit\w*Limit)\b")


def submit_limit_refusal(stderr: str) -> str | None:
    """The reason word (``AssocMaxSubmitJobLimit``...) if sbatch was refused for a submit
    limit, else None."""
    match = SUBMIT_LIMIT.search(stderr)
    return match.group(1) if match else None


def _positive(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def parse_submit_limit(
    assoc: str, qos: str, *, account: str | None, partition: str | None,
    qos_name: str | None = None,
) -> tuple[int | None, str | None]:
    """The smallest submit limit of the user's association and its QOS; and the QOS's name.

    ``assoc`` is ``sacctmgr -nP show user NAME withassoc format=`` :data:`ASSOC_FORMAT`;
    ``qos`` is ``sacctmgr -nP show qos format=`` :data:`QOS_FORMAT` (may be empty: the
    first call then only names the QOS to ask about). The association is the one of
    ``account`` (the user's default account when None) and of ``partition`` or of all
    partitions. Limits counting other users' jobs (GrpSubmitJobs) are upper bounds too.
    """
    limits: list[int] = []
    names: set[str] = set()
    for line in assoc.splitlines():
        parts = line.split("|")
        if len(parts) < 8:
            continue
        _, default_account, _, acct, part, max_submit, grp_submit, default_qos = parts[:8]
        qos_list = parts[8] if len(parts) > 8 else ""
        if acct != (account or default_account) or part not in ("", partition or ""):
            continue
        limits.extend(x for x in (_positive(max_submit), _positive(grp_submit)) if x)
        choices = [q for q in qos_list.split(",") if q]
        names.add(qos_name or default_qos or (choices[0] if len(choices) == 1 else ""))
    name = next(iter(names)) if len(names) == 1 and "" not in names else None
    for line in qos.splitlines():
        parts = line.split("|")
        if len(parts) >= 3 and parts[0] == name:
            limits.extend(x for x in (_positive(parts[1]), _positive(parts[2])) if x)
    return (min(limits) if limits else None), name


#: What :func:`parse_submit_limit` reads of the user's associations, and of their QOS.
ASSOC_FORMAT = ("User,DefaultAccount,Cluster,Account,Partition,MaxSubmitJobs,GrpSubmitJobs,"
                "DefaultQOS,QOS")
QOS_FORMAT = "Name,MaxSubmitJobsPerUser,GrpSubmitJobs"
#: Seconds each sacctmgr call may take when the backend reads the submit limit.
LIMIT_READ_TIMEOUT = 15.0


def unschedulable(reason: str) -> bool:
    """Whether a pending job's squeue reason says it can never start as submitted."""
    return bool(UNSCHEDULABLE.match(reason.strip()))


def slurm_state(text: str) -> JobState:
    """Map a Slurm state (``CANCELLED by 0`` included) to the protocol's states."""
    word = text.strip().split()[0].rstrip("+") if text.strip() else "PENDING"
    if word in _QUEUED:
        return JobState.QUEUED
    if word in _RUNNING:
        return JobState.RUNNING
    return _FINAL.get(word, JobState.FAILED)


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """``"3:0"`` → (3, None); ``"0:9"`` → (0, 9); ``"0:125"`` (Slurm's OOM mark) → (0, None)."""
    code, _, sig = text.strip().partition(":")
    try:
        exit_code = int(code)
        signal = int(sig) if sig else 0
    except ValueError:
        return None, None
    return exit_code, (signal if 0 < signal < 65 else None)


def parse_rss(text: str) -> int | None:
    """sacct's ``MaxRSS`` (``219680K``) in bytes."""
    text = text.strip()
    if not text:
        return None
    try:
        return parse_memory(text)
    except ValueError:
        return None


_RANGE = re.compile(r"^(\d+)_\[([^\]]*)\]$")


def expand_ids(job_id: str) -> list[str]:
    """``"21_[1-3,7%2]"`` (elements folded into one row) → ``["21_1", "21_2", "21_3", "21_7"]``."""
    match = _RANGE.match(job_id)
    if not match:
        return [job_id]
    array, spec = match.group(1), match.group(2).partition("%")[0]
    out: list[str] = []
    for part in filter(None, spec.split(",")):
        first, _, last = part.partition("-")
        if first.isdigit() and (last or first).isdigit():
            out.extend(f"{array}_{t}" for t in range(int(first), int(last or first) + 1))
    return out


def compact_ids(job_ids: Sequence[str]) -> list[str]:
    """``["7_0", "7_1", "7_2", "7_5", "9"]`` → ``["9", "7_[0-2,5]"]``: one word per array.

    Keeps ``scancel``'s argv short however many elements a run cancels.
    """
    runs, plain = element_runs(job_ids)
    return plain + [
        f"{array}_[{','.join(str(a) if a == b else f'{a}-{b}' for a, b in spans)}]"
        for array, spans in runs.items()
    ]


@attrs.frozen
class SlurmRecord:
    """What Slurm says about one job (array element)."""

    state: JobState
    raw_state: str = ""
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    peak_rss: int | None = None
    host: str | None = None
    elapsed: float | None = None
    cpu_time: float | None = None  # TotalCPU, seconds
    alloc_cpus: int | None = None  # AllocCPUS
    req_mem: int | None = None  # ReqMem, bytes (per node, or per CPU with a ``c`` suffix)
    submitted: str = ""  # squeue's SubmitTime (%V), local time, ``2026-12-08T02:36:03``
    name: str = ""  # squeue's job name (%j): the task's

    def status(self, reason: str, state: JobState | None = None) -> JobStatus:
        """What the backend reports for this record: sacct's usage marked as the scheduler's."""
        measured = self.cpu_time is not None or self.peak_rss is not None
        return JobStatus(self.state if state is None else state, self.exit_code, self.signal,
                         self.peak_rss, self.elapsed, self.host, reason, self.cpu_time,
                         SCHEDULER if measured else None)


#: What :func:`parse_squeue` reads: id, state, reason, node, submit time, job name (last:
#: a name may hold ``|``).
SQUEUE_FORMAT = "%i|%T|%r|%N|%V|%j"


def parse_squeue(text: str) -> dict[str, SlurmRecord]:
    """Lines of ``squeue -h -r -t all -o`` :data:`SQUEUE_FORMAT` (or its first four fields)."""
    out: dict[str, SlurmRecord] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 5)
        if len(parts) < 2 or not parts[0]:
            continue
        parts += [""] * (6 - len(parts))
        job_id, state, reason = parts[0], parts[1], parts[2]
        host = parts[3] if parts[3] not in ("", "(null)") else None
        submitted = parts[4] if _TIMESTAMP.match(parts[4]) else ""
        for one in expand_ids(job_id):
            out[one] = SlurmRecord(slurm_state(state), state, reason, host=host,
                                   submitted=submitted, name=parts[5])
    return out


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def parse_elapsed(text: str) -> float | None:
    """sacct's ``Elapsed`` (``[D-]HH:MM:SS``) in seconds."""
    text = text.strip()
    if not text:
        return None
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        while len(parts) < 3:
            parts.insert(0, 0)
        hours, minutes, seconds = parts[-3:]
        return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    except ValueError:
        return None


def parse_cpu_time(text: str) -> float | None:
    """sacct's ``TotalCPU`` (``[D-][HH:]MM:SS[.mmm]``: ``00:01.234``, ``1-02:03:04``) in seconds."""
    text = text.strip()
    if not text:
        return None
    days, _, clock = text.rpartition("-")
    try:
        *whole, seconds = clock.split(":")
        if not 1 <= len(whole) <= 2:
            return None
        hours, minutes = ([0] + [int(p) for p in whole])[-2:]
        value = int(days or 0) * 86400 + hours * 3600 + minutes * 60 + float(seconds)
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_count(text: str) -> int | None:
    """sacct's ``AllocCPUS`` (``1``); None when empty (a step line) or junk."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def parse_req_mem(text: str) -> int | None:
    """sacct's ``ReqMem`` (``200M``; ``4Gc``/``4Gn`` before Slurm 21.08) in bytes."""
    return parse_rss(text.strip().rstrip("cn"))


def parse_host(text: str) -> str | None:
    """sacct's ``NodeList``: the node (or Slurm's range of nodes); None before one is assigned."""
    text = text.strip()
    return None if not text or text in ("None assigned", "(null)") else text


#: What :func:`parse_sacct` reads, in this order. Job lines carry the state, TotalCPU
#: (all the job's steps), AllocCPUS, ReqMem and NodeList; ``.batch`` lines MaxRSS.
SACCT_FORMAT = "JobID,State,ExitCode,MaxRSS,Elapsed,TotalCPU,AllocCPUS,ReqMem,NodeList"


def parse_sacct(text: str) -> dict[str, SlurmRecord]:
    """Lines of ``sacct --parsable2 --noheader --format=`` :data:`SACCT_FORMAT` (or its
    first five fields, as gristmill asked before: the rest is then unknown).

    Job lines carry the state and what the job used; the ``.batch`` step line carries
    MaxRSS and the signal that ended the script (``0:15`` on a timeout, ``0:9`` on a
    kill), and its TotalCPU where the job line has none.
    """
    jobs: dict[str, SlurmRecord] = {}
    steps: dict[str, tuple[int | None, int | None, float | None]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        parts += [""] * (9 - len(parts))
        job_id, state, exit_text = parts[0], parts[1], parts[2]
        rss = parse_rss(parts[3])
        cpu = parse_cpu_time(parts[5])
        exit_code, signal = parse_exit_code(exit_text)
        if "." in job_id:
            base, _, step = job_id.partition(".")
            if step == "batch":
                steps[base] = (rss, signal, cpu)
            continue
        for one in expand_ids(job_id):
            jobs[one] = SlurmRecord(
                slurm_state(state), state, "", exit_code, signal, rss, parse_host(parts[8]),
                parse_elapsed(parts[4]), cpu, parse_count(parts[6]), parse_req_mem(parts[7]),
            )
    for job_id, (rss, step_signal, step_cpu) in steps.items():
        record = jobs.get(job_id)
        if record is not None:
            jobs[job_id] = attrs.evolve(
                record, peak_rss=rss or record.peak_rss, signal=record.signal or step_signal,
                cpu_time=record.cpu_time if record.cpu_time is not None else step_cpu,
            )
    return jobs


def _with_usage(queued: SlurmRecord | None, accounted: SlurmRecord | None) -> SlurmRecord | None:
    """squeue's record of a finished job with what sacct says it used (its state stays
    squeue's: sacct may lag behind it)."""
    if queued is None or accounted is None:
        return queued
    return attrs.evolve(
        queued, peak_rss=accounted.peak_rss, cpu_time=accounted.cpu_time,
        alloc_cpus=accounted.alloc_cpus, req_mem=accounted.req_mem,
        host=accounted.host or queued.host, elapsed=accounted.elapsed or queued.elapsed,
    )


_KV = re.compile(r"(\w+)=(\S*)")


def parse_scontrol(text: str) -> dict[str, SlurmRecord]:
    """``scontrol show job -o`` (one line per job; array elements named ``A_T``)."""
    out: dict[str, SlurmRecord] = {}
    for line in text.splitlines():
        fields = dict(_KV.findall(line))
        if "JobId" not in fields:
            continue
        job_id = fields["JobId"]
        if fields.get("ArrayJobId") and fields.get("ArrayTaskId"):
            job_id = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            if not fields["ArrayTaskId"].isdigit():  # pending elements folded: 5_3-4%1
                job_id = f"{fields['ArrayJobId']}_[{fields['ArrayTaskId']}]"
        exit_code, signal = parse_exit_code(fields.get("ExitCode", ""))
        host = fields.get("BatchHost") or None
        for one in expand_ids(job_id):
            out[one] = SlurmRecord(
                slurm_state(fields.get("JobState", "")), fields.get("JobState", ""),
                fields.get("Reason", ""), exit_code, signal, None, host,
            )
    return out


def _flag(value: bool | str) -> bool:
    """An option given as text (spec, ``--option``) or as a bool (the CLI's flag)."""
    return value if isinstance(value, bool) else value.strip().lower() in ("1", "true", "yes")


_KILL_LINE = re.compile(r"\*\*\* JOB \d+ ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))? \*\*\*")


def job_log(log_dir: Path, job_id: str) -> Path:
    """Where Slurm writes the batch script's own output for array element ``A_T``."""
    return log_dir / f"slurm-{job_id}.out"


#: How the element runner reads :func:`job_log` after a signal (rules for
#: :func:`gristmill.backends.batch.element.verdict`): jobacct's memory kill first (it
#: also writes a plain CANCELLED line), then the last kill line slurmstepd wrote.
STOP_RULES: list[dict[str, Any]] = [
    {"pattern": re.escape(_OOM_LINE),
     "outcomes": {"": ["OOM", "Slurm killed the job: exceeded memory limit"]}},
    {"pattern": _KILL_LINE.pattern,
     "outcomes": {"TIME LIMIT": ["TIMEOUT", "Slurm cancelled the job: time limit"],
                  "DEADLINE": ["FAILED", "Slurm cancelled the job: its --deadline passed"],
                  # Slurm may run the job again under the same id (requeue): its record,
                  # not this run's result, is how the attempt ends.
                  "PREEMPTION": [SCHEDULER_DECIDES, "Slurm preempted the job"],
                  "JOB REQUEUE": [SCHEDULER_DECIDES, "Slurm requeued the job"],
                  "": ["CANCELLED", "cancelled through Slurm (scancel)"]}},
]


def why_stopped(log: Path) -> tuple[JobState, str] | None:
    """Why slurmstepd signalled the job, from the line it writes to the job's log first.

    ``*** JOB 11 ON vm CANCELLED AT <time> DUE TO TIME LIMIT ***`` is a TIMEOUT,
    the same line without ``DUE TO`` an ``scancel``. (``scontrol`` only says
    COMPLETING by then, and sacct may lag or be off.) None for ``DUE TO PREEMPTION``
    and ``DUE TO JOB REQUEUE`` too: Slurm may run the job again, so only its own
    record (PREEMPTED, or the job queued again) says how the attempt ends.
    """
    found = verdict(log_tail(log), STOP_RULES)
    if found is None or found[0] == SCHEDULER_DECIDES:
        return None
    return JobState(found[0]), found[1]


def sbatch_argv(
    array: Array,
    script: Path,
    *,
    partition: str | None = None,
    account: str | None = None,
    max_concurrent: int | None = None,
    mem_overhead: int = 0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``sbatch`` command for one array: every value a separate argv word."""
    res = array.resources
    array_spec = f"0-{array.size - 1}"
    limit = throttle(max_concurrent, array.size)
    if limit is not None:
        array_spec += f"%{limit}"
    log = job_log(array.log_dir, "%A_%a")
    argv = [
        "sbatch", "--parsable", f"--job-name={array.task}", f"--array={array_spec}",
        f"--output={log}", f"--error={log}", f"--cpus-per-task={res.cores or 1}",
    ]
    if res.mem is not None:
        argv.append(f"--mem={format_memory_mb(res.mem + mem_overhead)}M")
    if array.runtime is not None:  # a chunk's element: its jobs' runtimes added up
        argv.append(f"--time={format_duration(array.runtime)}")
    queue = res.queue or partition
    if queue:
        argv.append(f"--partition={queue}")
    project = res.project or account
    if project:
        argv.append(f"--account={project}")
    if res.gpus:
        argv.append(f"--gres=gpu:{res.gpus}")
    for flag, value in res.extra:
        argv.append(f"--{flag.lstrip('-')}" + (f"={value}" if value != "" else ""))
    argv.extend(extra)
    argv.append(str(script))
    return argv


def batch_script(manifest: Path, python: str) -> str:
    """The batch script of an array: run the element named by the array index."""
    return (
        "#!/bin/bash\n"
        "# gristmill array: each element runs one attempt from the manifest\n"
        + element_command(python, manifest, "SLURM_ARRAY_TASK_ID")
        + "\n"
    )


class SlurmBackend(ArrayBackend):
    """Runs attempts as Slurm array jobs. Options come from the spec's ``workflow.options``."""

    name = "slurm"
    scheduler = "Slurm"
    id_env = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
    cancel_command = "scancel"
    settings = SETTINGS
    capabilities = attrs.evolve(ArrayBackend.capabilities, submit_limit=True)

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        batch_size: int | str = 1000,
        max_concurrent: int | str | None = None,
        mem_overhead: str | int = "64M",
        sbatch_flags: Sequence[str] | str = (),
        python: str = sys.executable,
        command_timeout: float | str = 60.0,
        lost_after: float | str = 180.0,
        poll_min: float | str = 5.0,
        poll_max: float | str = 60.0,
        accounting: bool | str | None = None,
        requeue: bool | str = False,
        fail_on_unschedulable: bool | str = False,
        runner: CommandRunner | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, python=python, command_timeout=command_timeout,
                         lost_after=lost_after, poll_min=poll_min, poll_max=poll_max,
                         runner=runner)
        self.partition = partition
        self.account = account
        self.max_concurrent = int(max_concurrent) if max_concurrent else None
        self.mem_overhead = parse_memory(mem_overhead) if mem_overhead not in (0, "0") else 0
        self.sbatch_flags = (
            sbatch_flags.split() if isinstance(sbatch_flags, str) else list(sbatch_flags)
        )
        self._config: dict[str, str] | None = None
        self._accounting = None if accounting is None else _flag(accounting)
        self.requeue = _flag(requeue)
        self.fail_on_unschedulable = _flag(fail_on_unschedulable)
        self._warned: set[str] = set()  # arrays already reported unschedulable
        #: Array id -> (job name, earliest submit time as squeue prints it), as far as known.
        self._arrays: dict[str, tuple[str, str]] = {}
        self._submit_limit: int | None = None
        self._limit_read = False
        self._partitions: tuple[dict[str, int | None], str | None] | None = None

    # -- cluster configuration ---------------------------------------------------------

    def config(self) -> dict[str, str]:
        """``scontrol show config`` as a dict, read once."""
        if self._config is None:
            proc = self.runner.run(["scontrol", "show", "config"])
            config: dict[str, str] = {}
            for line in proc.stdout.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    config[key.strip()] = value.strip()
            self._config = config
        return self._config

    @property
    def max_array_size(self) -> int:
        """Elements per array: MaxArraySize bounds the largest index (size - 1)."""
        try:
            return max(1, int(self.config().get("MaxArraySize", "1001")))
        except ValueError:
            return 1001

    def time_limit(self, resources: Resources) -> int | None:
        """The ``MaxTime`` of the partition a job with ``resources`` goes to, read once
        (``scontrol show partition``); None when unlimited or it cannot be read."""
        if self._partitions is None:
            try:
                proc = self.runner.run(["scontrol", "show", "partition", "--oneliner"])
                self._partitions = parse_partitions(proc.stdout)
            except BackendError as exc:
                logger.warning("cannot read Slurm's partition time limits ({}): chunks are "
                               "not capped by them", exc)
                self._partitions = ({}, None)
        limits, default = self._partitions
        return limits.get(resources.queue or self.partition or default or "")

    @property
    def accounting(self) -> bool:
        if self._accounting is None:
            storage = self.config().get("AccountingStorageType", "")
            self._accounting = bool(storage) and not storage.endswith("/none")
        return self._accounting

    # -- submit limits --------------------------------------------------------------------

    def submit_limit(self) -> int | None:
        """How many jobs this user may hold in the account gristmill submits to: the
        smallest of the association's ``MaxSubmitJobs``/``GrpSubmitJobs`` and its QOS's
        ``MaxSubmitJobsPerUser``/``GrpSubmitJobs``, read once with sacctmgr.

        Without accounting, or when sacctmgr fails or is slow, the limit is unknown
        (None): a refusal then teaches the engine (:meth:`limit_refusal`).
        """
        if self._limit_read:
            return self._submit_limit
        self._limit_read = True
        try:
            self._submit_limit = self._read_submit_limit()
        except BackendError as exc:
            logger.info("could not read Slurm's submit limit ({}); learning it from sbatch "
                        "if it refuses", exc)
            return None
        if self._submit_limit is not None:
            logger.info("Slurm lets this user hold {} job(s) at once in the account; gristmill "
                        "holds no more", self._submit_limit)
        return self._submit_limit

    def _read_submit_limit(self) -> int | None:
        if not self.accounting:
            return None
        runner = attrs.evolve(self.runner, attempts=1,
                              timeout=min(self.runner.timeout, LIMIT_READ_TIMEOUT))
        user = pwd.getpwuid(os.getuid()).pw_name
        cluster = self.config().get("ClusterName", "")
        assoc = runner.run(["sacctmgr", "--noheader", "--parsable2", "show", "user", user,
                            "withassoc", *([f"cluster={cluster}"] if cluster else []),
                            f"format={ASSOC_FORMAT}"]).stdout
        qos_flag = next((f.partition("=")[2] for f in self.sbatch_flags
                         if f.startswith("--qos=")), None)
        kw = {"account": self.account, "partition": self.partition, "qos_name": qos_flag}
        limit, qos = parse_submit_limit(assoc, "", **kw)
        if qos:
            qos_rows = runner.run(["sacctmgr", "--noheader", "--parsable2", "show", "qos", qos,
                                   f"format={QOS_FORMAT}"]).stdout
            limit, _ = parse_submit_limit(assoc, qos_rows, **kw)
        return limit

    def known_submit_limit(self) -> int | None:
        return self._submit_limit

    def limit_refusal(self, stderr: str) -> str | None:
        return submit_limit_refusal(stderr)

    # -- the scheduler's commands ----------------------------------------------------------

    def stop_log(self, array: Array) -> tuple[str, list[dict[str, Any]]]:
        return str(job_log(array.log_dir, "{id}")), STOP_RULES

    def batch_script(self, manifest: Path) -> str:
        return batch_script(manifest, self.python)

    def submit_argv(self, array: Array, script: Path) -> list[str]:
        """``sbatch`` for one array; ``--no-requeue`` unless the ``requeue`` option is on.

        Without requeue, a job preempted or whose node failed ends (PREEMPTED, NODE_FAIL)
        and gristmill submits the node again as a new attempt, so every run of a task is
        one recorded attempt. With it, Slurm runs the same job again and gristmill waits
        for it. Site flags come after, so an ``sbatch_flags`` ``--requeue`` wins.
        """
        requeue = "--requeue" if self.requeue else "--no-requeue"
        return sbatch_argv(
            array, script, partition=self.partition, account=self.account,
            max_concurrent=self.max_concurrent, mem_overhead=self.mem_overhead,
            extra=[requeue, *self.sbatch_flags],
        )

    def parse_job_id(self, stdout: str) -> str:
        return stdout.strip().split(";")[0]

    def submission_in_doubt(self, stderr: str) -> bool:
        """sbatch's request went out and no answer came back (slurmctld busy or stopped)."""
        return bool(IN_DOUBT.search(stderr))

    def find_scripts(self, scripts: Sequence[Path]) -> dict[Path, str] | None:
        """One ``squeue --user`` listing array ids and batch scripts (``%F|%o``)."""
        proc = self.runner.run(
            ["squeue", "--noheader", "--states=all", f"--user={os.getuid()}",
             "--format=%F|%o"], attempts=1)
        wanted = {str(script): script for script in scripts}
        found: dict[Path, str] = {}
        for line in proc.stdout.splitlines():
            array, _, command = line.strip().partition("|")
            if command in wanted and array.isdigit():
                found[wanted[command]] = array
        return found

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["scancel", *compact_ids(ids)]

    # -- status --------------------------------------------------------------------------

    def statuses(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """One ``squeue`` for every live job; one ``sacct`` for those that finished."""
        if not handles:
            return {}
        by_id = {h.job_id: h for h in handles}
        array_ids = sorted({h.job_id.split("_")[0] for h in handles})
        proc = self.runner.run(
            ["squeue", "--noheader", "--array", "--states=all", f"--format={SQUEUE_FORMAT}",
             f"--jobs={','.join(array_ids)}"],
            ok=lambda p: p.returncode == 0 or "Invalid job id" in p.stderr, attempts=1,
        )
        queue = parse_squeue(proc.stdout) if proc.returncode == 0 else {}
        for job_id, row in queue.items():
            self._learn(job_id.partition("_")[0], row.name, row.submitted)
        records = {job_id: lookup(queue, job_id) for job_id in by_id}
        gone = [job_id for job_id, record in records.items() if record is None]
        ended = [job_id for job_id, record in records.items()
                 if record is not None and record.state.finished]
        if ended and not self.accounting:
            ended = []  # scontrol says nothing of what a job used
        if gone or ended:
            finished = self._finished([*gone, *ended])
            records.update({job_id: lookup(finished, job_id) for job_id in gone})
            for job_id in ended:
                records[job_id] = _with_usage(records[job_id], lookup(finished, job_id))
        out: dict[JobHandle, JobStatus] = {}
        never: list[JobHandle] = []
        for job_id, handle in by_id.items():
            record = records[job_id]
            if record is None:
                status = self.worker_result(handle) or self.unknown(handle)
                if status is not None:
                    out[handle] = status
                continue
            self.vanished.seen(job_id)
            out[handle] = self._status(handle, record)
            if record.state is JobState.QUEUED and unschedulable(record.reason):
                never.append(handle)
        if never:
            out.update(self._unschedulable(never, out))
        return out

    def _unschedulable(
        self, handles: Sequence[JobHandle], statuses: Mapping[JobHandle, JobStatus]
    ) -> dict[JobHandle, JobStatus]:
        """Jobs pending for a reason that waiting never satisfies (:data:`UNSCHEDULABLE`).

        With ``fail_on_unschedulable`` they are cancelled (one ``scancel``) and fail with
        Slurm's reason; otherwise they stay queued, their status carries the reason, and
        the log says so once per array.
        """
        if not self.fail_on_unschedulable:
            for handle in handles:
                array = handle.job_id.partition("_")[0]
                if array not in self._warned:
                    self._warned.add(array)
                    logger.warning(
                        "Slurm job {} is pending for a reason that waiting will not clear "
                        "({}); cancel it, or pass --slurm-fail-on-unschedulable to fail such "
                        "jobs", array, statuses[handle].reason)
            return {}
        self.runner.run(self.cancel_argv([h.job_id for h in handles]),
                        ok=lambda p: p.returncode in (0, 1))
        return {handle: JobStatus(JobState.FAILED, reason=(
            f"Slurm can never start the job as submitted ({statuses[handle].reason}); it was "
            "cancelled: ask for what the partition, QOS and account allow one job"))
            for handle in handles}

    def _learn(self, array: str, name: str, submitted: str) -> None:
        """Remember an array's job name and earliest submit time (for :meth:`sacct_filter`)."""
        known = self._arrays.get(array)
        if known is None or (submitted and (not known[1] or submitted < known[1])):
            self._arrays[array] = (name or (known[0] if known else ""), submitted)

    def _submit_array(self, array: Array) -> str:
        """Submit as every batch backend does, remembering the array's name and when."""
        before = time.time() - CLOCK_SKEW
        job_id = super()._submit_array(array)
        self._learn(job_id, array.task, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                      time.localtime(before)))
        return job_id

    def sacct_filter(self, arrays: Sequence[str]) -> list[str]:
        """How ``sacct`` is told which jobs: the shorter of two filters, never element ids.

        ``--jobs=<array ids>`` names each array once, however many elements it has; after
        many retries (each a new array) ``--name=<task names> --user=<uid>`` is shorter.
        Both carry ``--starttime`` at the earliest submission when it is known (squeue's
        SubmitTime, or the submission's own clock less :data:`CLOCK_SKEW`), so sacct
        never searches the cluster's whole history nor returns an older job that had
        the same id.
        """
        known = [self._arrays.get(a, ("", "")) for a in arrays]
        starts = [submitted for _, submitted in known]
        start = [f"--starttime={min(starts)}"] if all(starts) else []
        by_ids = [f"--jobs={','.join(sorted(arrays))}", *start]
        names = sorted({name for name, _ in known})
        if start and all(name and "," not in name for name in names):
            by_name = [f"--name={','.join(names)}", f"--user={os.getuid()}", *start]
            if len(" ".join(by_name)) < len(" ".join(by_ids)):
                return by_name
        return by_ids

    def _finished(self, job_ids: Sequence[str]) -> dict[str, SlurmRecord]:
        """Jobs no longer in squeue (or finished in it, for their usage): one sacct call,
        or scontrol without accounting."""
        if self.accounting:
            proc = self.runner.run(
                ["sacct", "--parsable2", "--noheader", f"--format={SACCT_FORMAT}",
                 *self.sacct_filter(sorted({j.split("_")[0] for j in job_ids}))],
                attempts=1,
            )
            return parse_sacct(proc.stdout)
        proc = self.runner.run(
            ["scontrol", "--oneliner", "show", "job"],
            ok=lambda p: p.returncode == 0 or "Invalid job id" in p.stderr, attempts=1,
        )
        return parse_scontrol(proc.stdout)

    def _status(self, handle: JobHandle, record: SlurmRecord) -> JobStatus:
        state = record.state
        # A job just submitted is pending for reason "None" until the scheduler looks at it.
        reason = (record.raw_state if state.finished
                  else "" if record.reason == "None" else record.reason)
        if state in (JobState.FAILED, JobState.CANCELLED) and self._exceeded_memory(handle):
            state, reason = JobState.OOM, f"{record.raw_state}: exceeded memory limit"
        elif state is JobState.OOM:
            reason = "OUT_OF_MEMORY"
        elif state is JobState.TIMEOUT:
            reason = f"{record.raw_state}: time limit reached"
        elif state.finished:
            reason = _ENDED_BY_SLURM.get(record.raw_state.split(" ")[0], reason)
        return unstarted(record.status(reason, state))

    def _exceeded_memory(self, handle: JobHandle) -> bool:
        """jobacct enforcement leaves "exceeded memory limit" in the job's own log."""
        return _OOM_LINE in log_tail(job_log(Path(handle.result_path).parent, handle.job_id))
