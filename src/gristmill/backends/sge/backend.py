"""Grid Engine backend: ``qsub -t 1-N`` arrays, one ``qstat -xml`` per poll, ``qacct -j`` after.

Built like the Slurm backend (:mod:`gristmill.backends.slurm.backend`): ready jobs of one
task with the same resources become one array (:mod:`gristmill.backends.batch.arrays`),
every option is a separate argv word (no shell, no ``#$`` lines). Grid Engine
numbers array tasks from 1, so element ``$SGE_TASK_ID`` runs manifest entry
``SGE_TASK_ID - 1``; a handle's job id is ``<job>_<task>`` with that 1-based task,
as the element runner writes it to ``<result>.handle``.

A finished job leaves ``qstat`` at once; its only record is ``qacct -j`` (which
has it within a few seconds, hence the :class:`Vanished` grace). ``qacct`` is asked
once per poll at most (:func:`qacct_argv`), and only for jobs that left the queue
*without* a worker result file: the result file
is the source of truth, and jobs the scheduler kills (``h_rt``, ``qdel``: SIGKILL)
are exactly those that leave none. The wrapper enforces each task's runtime itself
(``h_rt`` is the runtime plus ``h_rt_margin``), because at ``h_rt`` Grid Engine kills
only the job's process group and the task, in a group of its own, would survive.
How qacct's fields map:

* ``failed 0`` — exit_status 0 is SUCCEEDED, anything else FAILED;
* ``failed 37`` (qmaster enforced h_rt/h_cpu/h_vmem; exit 137) — TIMEOUT;
* ``failed 100`` (assumedly after job: killed from outside, i.e. ``qdel``) — CANCELLED;
* ``failed 21`` (in recognising job: the host's daemon lost the job) — NODE_FAIL;
* ``failed 25`` (rescheduling) — no end: the task runs again under the same id (it
  shows ``Rq``/``Rr`` in qstat meanwhile), so that record is passed over;
* any other ``failed`` code (the job could not be set up) — FAILED with qacct's text.

Memory is requested as ``-l h_vmem=`` (default) or ``-l m_mem_free=`` (option
``memory_resource``). ``h_vmem`` is a setrlimit on virtual memory, so a task over
it is not killed: its allocation fails and it usually exits 1 (Python raises
MemoryError). Nothing in qacct says "memory"; so a FAILED attempt whose task's
stderr ends with a recognised allocation failure (:data:`OOM_MARKS`) is reported
as OOM, every other one stays FAILED.

What a job used comes from the same qacct record when qacct is asked: ``cpu`` (user +
system seconds of every process of the job, the wrapper included, as the execution
daemon accounts them) is the attempt's CPU time, marked as the scheduler's; the peak
memory stays ``maxvmem`` (virtual memory: qacct has no resident peak of the whole
job), ``ru_wallclock`` the elapsed time and ``hostname`` the host. Where the result
file exists qacct is not asked (it would cost one ``qacct`` per array and poll), and
the worker's own measurement stands.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from gristmill.backends.base import SCHEDULER, JobHandle, JobStatus
from gristmill.backends.batch.arrays import Array, element_command, throttle
from gristmill.backends.batch.backend import ArrayBackend, element_runs, lookup, unstarted
from gristmill.backends.batch.commands import CommandRunner
from gristmill.backends.isolated import GRISTMILL_PARENT
from gristmill.backends.sge.settings import SETTINGS
from gristmill.errors import BackendError
from gristmill.resources import format_memory_mb, parse_memory
from gristmill.states import JobState

#: Allocation failures in a task's stderr that mean it hit its memory limit (h_vmem).
OOM_MARKS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
_TIMEOUT_FAILED = 37
_CANCELLED_FAILED = 100
#: ``failed 21`` (in recognising job): the execution daemon no longer knows the job, as
#: after its host went down or rebooted; the host's fault, not the task's.
_HOST_FAILED = 21
#: ``failed 25`` (rescheduling): the record of a run Grid Engine stopped to run the task
#: again under the same id; no end of it.
_RESCHEDULED_FAILED = 25
_MEMORY_RESOURCES = ("h_vmem", "m_mem_free")


def sge_state(code: str) -> JobState:
    """Map a qstat state code (``qw``, ``hqw``, ``r``, ``t``, ``dr``, ``Eqw``...) to a JobState.

    ``E`` (error: the job cannot start until an admin clears it) is FAILED; jobs
    being deleted (``d``) count as running until they leave the queue. ``R`` marks a
    task Grid Engine rescheduled (its host failed, or ``qmod -rj``): it runs again under
    the same id, so ``Rq`` is waiting (QUEUED) and ``Rr`` running, never an end.
    """
    if "E" in code:
        return JobState.FAILED
    if "q" in code:
        return JobState.QUEUED
    if any(c in code for c in "rtsSTd"):
        return JobState.RUNNING
    return JobState.QUEUED


def expand_tasks(spec: str) -> list[int]:
    """qstat's task list of pending elements (``1-4:1``, ``3,4``, ``7``) as numbers."""
    out: list[int] = []
    for part in filter(None, spec.split(",")):
        span, _, step = part.partition(":")
        first, _, last = span.partition("-")
        try:
            out.extend(range(int(first), int(last or first) + 1, int(step or 1)))
        except ValueError:
            continue
    return out


@attrs.frozen
class SgeRecord:
    """What Grid Engine says about one job (array task)."""

    state: JobState
    raw_state: str = ""
    exit_code: int | None = None
    signal: int | None = None
    peak_vmem: int | None = None
    host: str | None = None
    elapsed: float | None = None
    reason: str = ""
    cpu_time: float | None = None  # qacct's ``cpu``: user + system seconds of the whole job
    #: qstat's submission (pending) or start time (running), ``2026-11-29T10:23:23``.
    seen: str = ""


def parse_qstat_xml(text: str) -> dict[str, SgeRecord]:
    """``qstat -xml``: job ``J`` task ``T`` as ``"J_T"``; a job without tasks as ``"J"``."""
    if not text.strip():
        return {}
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BackendError(f"qstat -xml printed XML that does not parse: {exc}",
                           transient=True) from None
    out: dict[str, SgeRecord] = {}
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        if not number:
            continue
        code = (job.findtext("state") or "").strip()
        queue = (job.findtext("queue_name") or "").strip()
        host = queue.partition("@")[2] or None
        seen = min(filter(_ISO.match, ((job.findtext(tag) or "").strip() for tag in
                                       ("JB_submission_time", "JAT_start_time"))), default="")
        record = SgeRecord(sge_state(code), code, host=host, reason=f"state {code}",
                           seen=seen)
        tasks = (job.findtext("tasks") or "").strip()
        if not tasks:
            out[number] = record
        for task in expand_tasks(tasks):
            out[f"{number}_{task}"] = record
    return out


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
#: Seconds taken off this host's clock for qacct's ``-b`` of an array it submitted: the
#: qmaster's clock may be a little behind.
CLOCK_SKEW = 300


def qacct_begin(iso: str) -> str:
    """qacct's ``-b`` time (``[[CC]YY]MMDDhhmm[.SS]``) from ``2026-11-29T10:23:23``."""
    return f"{iso[0:4]}{iso[5:7]}{iso[8:10]}{iso[11:13]}{iso[14:16]}.{iso[17:19]}"


def qacct_argv(jobs: Sequence[str], earliest: str | None, owner: str) -> list[str]:
    """One ``qacct`` for the jobs that left qstat: ``-j JOB`` for one; for several, every
    job of ``owner`` that ended since ``earliest`` (``-E -b``), or all of the owner's jobs
    when that is not known (qacct reads its whole accounting file either way)."""
    if len(jobs) == 1:
        return ["qacct", "-j", jobs[0]]
    since = ["-E", "-b", qacct_begin(earliest)] if earliest else []
    return ["qacct", "-o", owner, *since, "-j"]


_ERROR_REASON = re.compile(r"^error reason\s+(\d+):\s+(?:\S+ \S+ \[[^\]]*\]: )?(.*)$")


def parse_error_reasons(text: str) -> dict[tuple[str, str], str]:
    """``qstat -j JOBS``: (job, task) -> why the task is in error state (``Eqw``).

    Each job's section starts at ``job_number:``; a reason line reads ``error reason
    <task>: <date> <time> [uid:pid]: error: ...``.
    """
    out: dict[tuple[str, str], str] = {}
    job = ""
    for line in text.splitlines():
        if line.startswith("job_number:"):
            job = line.partition(":")[2].strip()
            continue
        found = _ERROR_REASON.match(line)
        if found and job:
            out[(job, found.group(1))] = found.group(2).strip()
    return out


_MEM_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_QACCT_MEM = re.compile(r"^([\d.]+)\s*([KMGT]?B)$")


def parse_qacct_memory(text: str) -> int | None:
    """qacct's ``maxvmem`` (``8.176MB``) in bytes; None for 0 (sub-second jobs) or junk."""
    match = _QACCT_MEM.match(text.strip())
    if not match:
        return None
    value = int(float(match.group(1)) * _MEM_UNITS[match.group(2)])
    return value or None


def qacct_state(failed: int, exit_status: int | None) -> JobState:
    """How a finished job ended, from qacct's ``failed`` code and ``exit_status``."""
    if failed == _TIMEOUT_FAILED:
        return JobState.TIMEOUT
    if failed == _CANCELLED_FAILED:
        return JobState.CANCELLED
    if failed == _HOST_FAILED:
        return JobState.NODE_FAIL
    if failed == 0 and exit_status == 0:
        return JobState.SUCCEEDED
    return JobState.FAILED


def parse_qacct(text: str) -> dict[str, SgeRecord]:
    """``qacct -j JOB``: one block per task, separated by ``=====`` lines."""
    out: dict[str, SgeRecord] = {}
    for block in re.split(r"^=+\s*$", text, flags=re.MULTILINE):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                fields[key] = value.strip()
        number = fields.get("jobnumber", "")
        if not number.isdigit():
            continue
        task = fields.get("taskid", "undefined")
        failed_text = fields.get("failed", "0")
        try:
            failed = int(failed_text.split()[0])
        except (ValueError, IndexError):
            failed = -1
        if failed == _RESCHEDULED_FAILED:  # a run before a reschedule: the task goes on
            continue
        try:
            exit_code: int | None = int(fields.get("exit_status", "").split()[0])
        except (ValueError, IndexError):
            exit_code = None
        signal = exit_code - 128 if exit_code is not None and 128 < exit_code < 193 else None
        elapsed = _seconds(fields.get("ru_wallclock", ""))
        reason = f"failed {failed_text}" if failed else f"exit_status {exit_code}"
        state = qacct_state(failed, exit_code)
        if state is JobState.TIMEOUT:
            reason = f"time limit reached ({reason})"
        elif state is JobState.CANCELLED:
            reason = f"cancelled through Grid Engine, qdel ({reason})"
        elif state is JobState.NODE_FAIL:
            reason = f"the job's host lost it ({reason})"
        key = f"{number}_{task}" if task.isdigit() else number
        out[key] = SgeRecord(
            state, failed_text, exit_code, signal,
            parse_qacct_memory(fields.get("maxvmem", "")),
            fields.get("hostname") or None, elapsed, reason, _seconds(fields.get("cpu", "")),
        )
    return out


def _seconds(text: str) -> float | None:
    """qacct's ``ru_wallclock`` or ``cpu`` (``0.121s``, ``4``) in seconds; None for junk."""
    try:
        value = float(text.strip().rstrip("s"))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _owner() -> str:
    """This user's name, as qacct's ``-o`` takes it."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def qdel_argv(job_ids: Sequence[str]) -> list[str]:
    """``qdel J -t 1-3 J -t 7 K``: one call, one ``-t`` range per run of adjacent tasks."""
    runs, plain = element_runs(job_ids)
    argv = ["qdel", *plain]
    for job, spans in runs.items():
        for a, b in spans:
            argv.extend([job, "-t", str(a) if a == b else f"{a}-{b}"])
    return argv


def job_name(task: str) -> str:
    """A name qsub accepts: no ``/ : @ \\ * ?``, not starting with a digit."""
    name = re.sub(r"[/:@\\*?\s]", "_", task) or "gristmill"
    return f"g{name}" if name[0].isdigit() else name


def qsub_argv(
    array: Array,
    script: Path,
    *,
    queue: str | None = None,
    project: str | None = None,
    max_concurrent: int | None = None,
    memory_resource: str = "h_vmem",
    mem_overhead: int = 0,
    pe: str = "smp",
    shell: str = "/bin/bash",
    extra: Sequence[str] = (),
    h_rt_margin: int = 0,
) -> list[str]:
    """The ``qsub`` command for one array: every value a separate argv word.

    ``h_rt`` is the task's runtime plus ``h_rt_margin``: the worker wrapper enforces
    the runtime itself, and ``h_rt`` only stops a wrapper that could not.
    """
    res = array.resources
    log = array.log_dir / "sge-$JOB_ID.$TASK_ID"
    argv = [
        "qsub", "-terse", "-V", "-b", "n", "-S", shell, "-N", job_name(array.task),
        "-t", f"1-{array.size}", "-o", f"{log}.out", "-e", f"{log}.err",
    ]
    limit = throttle(max_concurrent, array.size)
    if limit is not None:
        argv.extend(["-tc", str(limit)])
    if res.cores and res.cores > 1:
        argv.extend(["-pe", pe, str(res.cores)])
    if res.mem is not None:
        argv.extend(["-l", f"{memory_resource}={format_memory_mb(res.mem + mem_overhead)}M"])
    if array.runtime is not None:  # a chunk's element: its jobs' runtimes added up
        argv.extend(["-l", f"h_rt={math.ceil(array.runtime) + h_rt_margin}"])
    if res.queue or queue:
        argv.extend(["-q", str(res.queue or queue)])
    if res.project or project:
        argv.extend(["-P", str(res.project or project)])
    if res.gpus:
        argv.extend(["-l", f"gpu={res.gpus}"])
    for flag, value in res.extra:
        argv.append(f"-{flag.lstrip('-')}")
        if value != "":
            argv.append(value)
    argv.extend(extra)
    argv.append(str(script))
    return argv


def batch_script(manifest: Path, python: str, shell: str | None = None) -> str:
    """The job script of an array: run manifest entry ``SGE_TASK_ID - 1``.

    Without ``shell`` the script is Python, run by ``python`` itself (``-S python``):
    Grid Engine starts every shell named in ``login_shells`` (bash and sh by default)
    as a login shell, which sources the user's profile in every task; that is slow,
    may change PATH or PYTHONPATH, and (pyenv's rehash lock) can even hang.
    """
    if shell is not None:
        return (
            "#!" + shell + "\n"
            "# gristmill array: each task runs one attempt from the manifest\n"
            + element_command(python, manifest, "SGE_TASK_ID", first=1)
            + "\n"
        )
    return (
        f"#!{python} -I\n"  # isolated: nothing in the job's directory shadows the stdlib
        "# gristmill array: each task runs one attempt from the manifest\n"
        "import os, sys\n"
        f"sys.path.append({str(GRISTMILL_PARENT)!r})\n"
        "from gristmill.backends.batch.element import main\n"
        f"sys.exit(main([{str(manifest)!r}, str(int(os.environ['SGE_TASK_ID']) - 1)]))\n"
    )


def task_stderr(result_path: str) -> Path:
    """The task's stderr next to its result file (the engine names both from one stem)."""
    if result_path.endswith(".result.json"):
        return Path(result_path[: -len(".result.json")] + ".err")
    return Path(result_path + ".err")


def ran_out_of_memory(stderr: Path, size: int = 8192) -> bool:
    """Whether the end of a task's stderr shows an allocation failure."""
    try:
        with open(stderr, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(mark in tail for mark in OOM_MARKS)


class SgeBackend(ArrayBackend):
    """Runs attempts as Grid Engine array jobs; options come from ``workflow.options``."""

    name = "sge"
    scheduler = "Grid Engine"
    id_env = ("JOB_ID", "SGE_TASK_ID")
    cancel_command = "qdel"
    settings = SETTINGS
    first_index = 1
    # At h_rt, sge_shepherd SIGKILLs the job's process group only; the task runs in a
    # group of its own (so the wrapper can stop all of it), and would outlive the job.
    # So the wrapper enforces the runtime, and h_rt gets a margin as a backstop.
    wrapper_runtime = True

    def __init__(
        self,
        *,
        queue: str | None = None,
        project: str | None = None,
        batch_size: int | str = 1000,
        max_concurrent: int | str | None = None,
        memory_resource: str = "h_vmem",
        mem_overhead: str | int = "256M",
        pe: str = "smp",
        shell: str | None = None,
        qsub_flags: Sequence[str] | str = (),
        python: str = sys.executable,
        command_timeout: float | str = 60.0,
        lost_after: float | str = 180.0,
        poll_min: float | str = 5.0,
        poll_max: float | str = 60.0,
        h_rt_margin: int | str = 60,
        runner: CommandRunner | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, python=python, command_timeout=command_timeout,
                         lost_after=lost_after, poll_min=poll_min, poll_max=poll_max,
                         runner=runner)
        self.h_rt_margin = int(h_rt_margin)
        if self.h_rt_margin < 0:
            raise BackendError(f"sge option h_rt_margin={h_rt_margin!r}: give seconds >= 0")
        self.queue = queue
        self.project = project
        self.max_concurrent = int(max_concurrent) if max_concurrent else None
        if memory_resource not in _MEMORY_RESOURCES:
            raise BackendError(f"sge option memory_resource={memory_resource!r}: give one of "
                               f"{', '.join(_MEMORY_RESOURCES)}")
        self.memory_resource = memory_resource
        self.mem_overhead = parse_memory(mem_overhead) if mem_overhead not in (0, "0") else 0
        self.pe = pe
        self.shell = shell
        self.qsub_flags = qsub_flags.split() if isinstance(qsub_flags, str) else list(qsub_flags)
        self._max_tasks: int | None = None
        #: Job id -> the earliest time qstat showed it queued or running (ISO, local time).
        self._seen: dict[str, str] = {}

    @property
    def max_array_size(self) -> int:
        """Tasks per array allowed by the global config's ``max_aj_tasks`` (read once)."""
        if self._max_tasks is None:
            proc = self.runner.run(["qconf", "-sconf"])
            found = re.search(r"^max_aj_tasks\s+(\d+)", proc.stdout, flags=re.MULTILINE)
            self._max_tasks = max(1, int(found.group(1))) if found else 75000
        return self._max_tasks

    # -- the scheduler's commands ----------------------------------------------------------

    def batch_script(self, manifest: Path) -> str:
        return batch_script(manifest, self.python, self.shell)

    def submit_argv(self, array: Array, script: Path) -> list[str]:
        return qsub_argv(
            array, script, queue=self.queue, project=self.project,
            max_concurrent=self.max_concurrent, memory_resource=self.memory_resource,
            mem_overhead=self.mem_overhead, pe=self.pe, shell=self.shell or self.python,
            extra=self.qsub_flags, h_rt_margin=self.h_rt_margin,
        )

    def parse_job_id(self, stdout: str) -> str:
        return stdout.strip().split(".")[0]

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return qdel_argv(ids)

    # -- status --------------------------------------------------------------------------

    def statuses(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """One ``qstat -xml``; one ``qacct`` for every array with tasks gone and no result."""
        if not handles:
            return {}
        proc = self.runner.run(["qstat", "-xml"], attempts=1)
        queue = parse_qstat_xml(proc.stdout)
        for job_id, row in queue.items():
            self._learn(job_id.partition("_")[0], row.seen)
        out: dict[JobHandle, JobStatus] = {}
        gone: list[JobHandle] = []
        stuck: list[JobHandle] = []
        for handle in handles:
            record = lookup(queue, handle.job_id)
            if record is not None:
                self.vanished.seen(handle.job_id)
                out[handle] = JobStatus(record.state, host=record.host, reason=record.reason)
                if "E" in record.raw_state:
                    stuck.append(handle)
                continue
            result = self.worker_result(handle)
            if result is not None:
                out[handle] = self._memory(handle, result)
            else:
                gone.append(handle)
        finished: dict[str, SgeRecord] = {}
        jobs = sorted({h.job_id.partition("_")[0] for h in gone})
        if jobs:  # one qacct per poll, whatever the number of arrays
            seen = [self._seen.get(job, "") for job in jobs]
            done = self.runner.run(
                qacct_argv(jobs, min(seen) if all(seen) else None, _owner()),
                ok=lambda p: p.returncode == 0 or "not found" in p.stderr, attempts=1)
            finished.update(parse_qacct(done.stdout))
        for handle in gone:
            record = lookup(finished, handle.job_id)
            if record is not None:
                self.vanished.seen(handle.job_id)
                out[handle] = unstarted(self._memory(handle, JobStatus(
                    record.state, record.exit_code, record.signal, record.peak_vmem,
                    record.elapsed, record.host, record.reason, record.cpu_time,
                    SCHEDULER if record.cpu_time is not None else None,
                )))
            else:
                status = self.unknown(handle)
                if status is not None:
                    out[handle] = status
        if stuck:
            out.update(self._clear_errors(stuck))
        return out

    def _learn(self, job: str, seen: str) -> None:
        """Remember the earliest time a job is known to have been queued or running."""
        if seen and (job not in self._seen or seen < self._seen[job]):
            self._seen[job] = seen

    def _submit_array(self, array: Array) -> str:
        """Submit as every batch backend does, remembering when (for qacct's ``-b``)."""
        before = time.time() - CLOCK_SKEW
        job = super()._submit_array(array)
        self._learn(job, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(before)))
        return job

    def submission_in_doubt(self, stderr: str) -> bool:
        """qsub's request reached the qmaster and its answer did not come back."""
        return "failed receiving gdi request response" in stderr

    def _clear_errors(self, stuck: Sequence[JobHandle]) -> dict[JobHandle, JobStatus]:
        """Tasks in error state (``Eqw``) never start until an admin clears them: say why
        (one ``qstat -j``) and delete them (one ``qdel``), so none is left in the queue."""
        jobs = sorted({h.job_id.partition("_")[0] for h in stuck})
        detail = self.runner.run(["qstat", "-j", ",".join(jobs)],
                                 ok=lambda p: p.returncode in (0, 1))
        reasons = parse_error_reasons(detail.stdout)
        self.runner.run(self.cancel_argv([h.job_id for h in stuck]),
                        ok=lambda p: p.returncode in (0, 1))
        out: dict[JobHandle, JobStatus] = {}
        for handle in stuck:
            job, _, task = handle.job_id.partition("_")
            why = reasons.get((job, task)) or reasons.get((job, "")) or "no reason given"
            out[handle] = JobStatus(JobState.FAILED, reason=(
                f"Grid Engine put the task in error state (Eqw) and it was deleted: {why}"))
        return out

    def _memory(self, handle: JobHandle, status: JobStatus) -> JobStatus:
        """FAILED with an allocation failure in the task's stderr: OOM (h_vmem is a setrlimit)."""
        if status.state is JobState.FAILED and ran_out_of_memory(
            task_stderr(handle.result_path)
        ):
            return attrs.evolve(status, state=JobState.OOM, reason=(
                f"{status.reason}: the task could not allocate memory "
                f"(over its {self.memory_resource} limit)"))
        return status
