"""The part of a batch-scheduler backend that does not depend on the scheduler.

Slurm and Grid Engine differ in their commands and in what their status tools
print; they share everything else: packing ready jobs into arrays with a
manifest, all-or-nothing submission (arrays already accepted are withdrawn when
a later one of the same batch fails), element ids ``<job>_<index>``, the worker's
result file as the source of truth, remembering what was cancelled while still
pending (schedulers keep no record of those), and LOST only after a grace time.
A subclass supplies the scheduler-specific steps as abstract methods (as submitit's
executors do): the batch script, the submission argv, reading the job id back, the
cancel argv, the status query (``poll``), and the array size limit.
"""

from __future__ import annotations

import abc
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from loguru import logger

from gristmill.backends.base import (
    Capabilities,
    JobHandle,
    JobRequest,
    JobStatus,
    SleepingWaitMixin,
    SubmitLimitError,
)
from gristmill.backends.batch.arrays import Array, pack, write_manifest
from gristmill.backends.batch.commands import CommandRunner, CommandTimeoutError, Vanished
from gristmill.backends.batch.element import progress_path
from gristmill.errors import BackendError
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import read_result
from gristmill.worker.wrapper import EXIT_LOST

R = TypeVar("R")


def element_runs(job_ids: Sequence[str]) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """Element ids ``A_T`` grouped per array into runs of adjacent indices, and plain ids.

    ``["7_0", "7_1", "7_2", "7_5", "9"]`` → ``({"7": [(0, 2), (5, 5)]}, ["9"])``: what a
    cancel command needs to name thousands of elements in a few words.
    """
    numbers: dict[str, set[int]] = {}
    plain: list[str] = []
    for job_id in job_ids:
        array, _, index = job_id.partition("_")
        if index.isdigit():
            numbers.setdefault(array, set()).add(int(index))
        else:
            plain.append(job_id)
    runs: dict[str, list[tuple[int, int]]] = {}
    for array, indices in numbers.items():
        spans: list[list[int]] = []
        for n in sorted(indices):
            if spans and n == spans[-1][1] + 1:
                spans[-1][1] = n
            else:
                spans.append([n, n])
        runs[array] = [(a, b) for a, b in spans]
    return runs, plain


def lookup(records: Mapping[str, R], job_id: str) -> R | None:
    """The record of element ``A_T``, or of its array ``A`` while the element has none.

    An array whose elements never started (held, or cancelled while pending) is
    listed as one row named after the array.
    """
    record = records.get(job_id)
    if record is None and "_" in job_id:
        record = records.get(job_id.partition("_")[0])
    return record


class ArrayBackend(SleepingWaitMixin, abc.ABC):
    """Submits job arrays to a batch scheduler; see the module docstring."""

    name = "array"
    scheduler = "the scheduler"  # for messages: "Slurm", "Grid Engine"
    cancel_command = "false"  # withdraws whole arrays: ``scancel ID ...``, ``qdel ID ...``
    first_index = 0  # the scheduler's first array index (Grid Engine counts from 1)
    wrapper_runtime = False  # the worker wrapper enforces each task's runtime (see arrays)
    #: The environment variables in which an element finds its job id and task id.
    id_env: tuple[str, str] = ("", "")
    #: Each status query is a command the controller answers for every user of the
    #: cluster (squeue, qstat): at most one every ``poll_min`` seconds (5 by default),
    #: one every ``poll_max`` (60) while nothing changes (see gristmill.engine.polling).
    capabilities = Capabilities(reattach=True, poll_min=5.0, poll_max=60.0,
                                chunks=True)

    def __init__(
        self,
        *,
        batch_size: int | str = 1000,
        python: str = sys.executable,
        command_timeout: float | str = 60.0,
        lost_after: float | str = 180.0,
        poll_min: float | str = 5.0,
        poll_max: float | str = 60.0,
        runner: CommandRunner | None = None,
    ) -> None:
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise BackendError(f"{self.name} option batch_size={batch_size!r}: give at least 1")
        self.python = python
        self.runner = runner or CommandRunner(timeout=float(command_timeout))
        self.vanished = Vanished(grace=float(lost_after))
        self._cancelled: set[str] = set()  # elements cancelled while pending leave no record
        self.capabilities = poll_bounds(self.name, type(self).capabilities, poll_min, poll_max)
        #: Provisional array id -> its script, for submissions whose answer was lost
        #: (:meth:`_in_doubt`); and provisional id -> the real one, once found.
        self._unconfirmed: dict[str, Path] = {}
        self._confirmed: dict[str, str] = {}
        #: Elements that run several jobs (a task's ``chunk``): their jobs are told apart.
        self._chunks: set[str] = set()
        #: Per chunk element: bytes of its progress file read, jobs started, jobs ended.
        self._progress: dict[str, tuple[int, set[str], set[str]]] = {}

    # -- what a scheduler supplies ------------------------------------------------------

    @property
    @abc.abstractmethod
    def max_array_size(self) -> int:
        """How many elements one array may hold on this cluster."""

    @abc.abstractmethod
    def batch_script(self, manifest: Path) -> str:
        """The script each element runs (it looks itself up in ``manifest``)."""

    @abc.abstractmethod
    def submit_argv(self, array: Array, script: Path) -> list[str]:
        """The submission command for one array, one argv word per value."""

    @abc.abstractmethod
    def parse_job_id(self, stdout: str) -> str:
        """The array's job id from what the submission command printed."""

    @abc.abstractmethod
    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        """One command cancelling every element named."""

    @abc.abstractmethod
    def statuses(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """Every handle's state from one status query (handles with real ids only)."""

    def limit_refusal(self, stderr: str) -> str | None:
        """The scheduler's words when a submission's ``stderr`` says a submit limit refused
        it (the user holds as many jobs as allowed), else None. Such a refusal is not
        retried at once: the engine waits for jobs to end (:class:`SubmitLimitError`)."""
        return None

    def known_submit_limit(self) -> int | None:
        """The submit limit the backend read from the scheduler, if it did."""
        return None

    def time_limit(self, resources: Resources) -> int | None:
        """The time limit of the partition or queue jobs with ``resources`` go to, in
        seconds; None when there is none or it cannot be read (a chunk is then not capped)."""
        return None

    def stop_log(self, array: Array) -> tuple[str, list[dict[str, Any]]] | None:
        """Where the scheduler logs why it signalled an element, and how to read it.

        ``(path with "{id}" for the element id, rules for``
        :func:`gristmill.backends.batch.element.verdict` ``)``, or None when the
        scheduler writes no such line.
        """
        return None

    def manifest_scheduler(self, array: Array) -> dict[str, Any]:
        """What the element runner needs to know of this scheduler (see :mod:`.element`)."""
        log = self.stop_log(array)
        return {
            "job_env": self.id_env[0], "task_env": self.id_env[1],
            "stop_log": log[0] if log else None, "stop_rules": log[1] if log else [],
        }

    # -- shared ---------------------------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """One array per (task, resources) group, split at the size limits; all or nothing.

        The engine counts a failed call as "none submitted", so the arrays of this
        batch that were already accepted are withdrawn before the error is raised.
        """
        limit = min(self.batch_size, self.max_array_size)
        handles: dict[str, JobHandle] = {}
        submitted: list[str] = []
        try:
            for array in pack(jobs, max_elements=limit, time_limit=self.time_limit):
                job_id = self._submit_array(array)
                submitted.append(job_id)
                first, per = self.first_index, array.per_element
                for position, job in enumerate(array.jobs):
                    handles[job.key] = JobHandle(
                        self.name, f"{job_id}_{position // per + first}", job.key,
                        str(job.result_path),
                    )
                if array.chunked:
                    self._chunks.update(f"{job_id}_{i + first}" for i in range(array.size))
        except BackendError as exc:
            if not submitted:
                raise
            try:
                self.runner.run([self.cancel_command, *submitted],
                                ok=lambda p: p.returncode in (0, 1))
            except BackendError as undo:
                logger.error("could not withdraw {} jobs {}: {}", self.scheduler, submitted, undo)
            message = (f"{exc} (the {len(submitted)} array(s) of the same batch already "
                       f"submitted were cancelled: {' '.join(submitted)})")
            if isinstance(exc, SubmitLimitError):
                raise SubmitLimitError(message, limit=exc.limit) from None
            raise BackendError(message, transient=exc.transient) from None
        return [handles[job.key] for job in jobs]

    def _submit_array(self, array: Array) -> str:
        """Write the array's manifest and script, submit it; the array's job id."""
        stem = f"array-{array.jobs[0].key}"
        manifest = array.log_dir / f"{stem}.json"
        script = array.log_dir / f"{stem}.sh"
        try:
            write_manifest(array, manifest, runtime=self.wrapper_runtime,
                           scheduler=self.manifest_scheduler(array))
            script.write_text(self.batch_script(manifest))
        except OSError as exc:
            raise BackendError(f"cannot write {exc.filename or manifest}: {exc.strerror}; "
                               "free space or fix permissions in the run directory") from None
        # Never retried after a timeout nor after an error that says the request may
        # have arrived: the scheduler may have accepted it anyway (see _in_doubt); nor
        # after a submit limit's refusal: only jobs ending make room.
        try:
            proc = self.runner.run(
                self.submit_argv(array, script), retry_timeouts=False,
                ok=lambda p: (p.returncode == 0 or self.submission_in_doubt(p.stderr)
                              or self.limit_refusal(p.stderr) is not None),
            )
        except CommandTimeoutError as exc:
            return self._in_doubt(array, script, str(exc))
        if proc.returncode != 0 and self.limit_refusal(proc.stderr) is not None:
            limit = self.known_submit_limit()
            raise SubmitLimitError(
                f"{self.scheduler} refused {array.size} job(s) of {array.task} for a submit "
                f"limit ({self.limit_refusal(proc.stderr)}"
                + (f", {limit} jobs" if limit else "") + "): they are submitted when jobs "
                "of this user end",
                limit=limit,
            )
        if proc.returncode != 0:
            return self._in_doubt(array, script, proc.stderr.strip()[:500])
        job_id = self.parse_job_id(proc.stdout)
        if not job_id.isdigit():
            raise BackendError(
                f"{self.scheduler} answered {proc.stdout.strip()!r} to a submission, "
                "not a job id"
            )
        logger.debug("submitted {} x{} as {} job {}{}", array.task, array.size, self.scheduler,
                     job_id, f" ({len(array.jobs)} jobs, up to {array.per_element} per element)"
                     if array.chunked else "")
        return job_id

    # -- submissions whose answer was lost ------------------------------------------------

    def submission_in_doubt(self, stderr: str) -> bool:
        """Whether a failed submission's error leaves open that it was accepted (the
        request reached the controller, its answer did not come back)."""
        return False

    def find_scripts(self, scripts: Sequence[Path]) -> dict[Path, str] | None:
        """The array id of each batch script the scheduler knows (one query); None when
        it cannot tell (then only the element's marker confirms). Raises
        :class:`BackendError` when the scheduler does not answer."""
        return None

    def _in_doubt(self, array: Array, script: Path, why: str) -> str:
        """A submission whose answer was lost: a provisional array id, never a resubmission.

        The controller may have accepted the array (a client timeout, a socket timeout
        while it was busy or stopped): submitting it again could run every element twice.
        So its jobs are handed to the engine as submitted, under the provisional id
        ``?array-<key>``, and :meth:`confirm` later finds the real one, from the marker an
        element leaves when it starts or from the scheduler's own list of scripts. An
        array the scheduler still does not know ``lost_after`` seconds after it answers
        again was never accepted: its jobs are LOST, and run again as new attempts.
        """
        provisional = f"{UNCONFIRMED}{script.stem}"
        self._unconfirmed[provisional] = script
        logger.warning(
            "{} did not confirm the submission of {} ({} job(s) of {}): {}; it may have "
            "been accepted, so it is not submitted again: gristmill looks for it once {} "
            "answers", self.scheduler, script, array.size, array.task, why, self.scheduler)
        return provisional

    def confirm(self, handles: Sequence[JobHandle]) -> dict[JobHandle, JobHandle | None]:
        """Handles under a provisional id (:meth:`_in_doubt`) with their real id.

        ``None`` while the array is not found yet. Looks first at the markers elements
        leave when they start (free), then asks the scheduler once for every array
        still unconfirmed.
        """
        out: dict[JobHandle, JobHandle | None] = {}
        arrays: dict[str, list[JobHandle]] = {}
        for handle in handles:
            arrays.setdefault(handle.job_id.partition("_")[0], []).append(handle)
        pending: dict[str, list[JobHandle]] = {}
        for array, group in arrays.items():
            real = self._confirmed.get(array) or next(
                filter(None, map(_marked_array, group)), None)
            if real is None:
                pending[array] = group
                continue
            self._confirm(array, real)
            for handle in group:
                out[handle] = attrs.evolve(
                    handle, job_id=f"{real}_{handle.job_id.partition('_')[2]}")
        if not pending:
            return out
        scripts = {array: self._unconfirmed.get(array) or _script_of(array, group[0])
                   for array, group in pending.items()}
        found = self.find_scripts(sorted(set(scripts.values())))
        for array, group in pending.items():
            real = None if found is None else found.get(scripts[array])
            if real is not None:
                self._confirm(array, real)
            for handle in group:
                index = handle.job_id.partition("_")[2]
                out[handle] = (attrs.evolve(handle, job_id=f"{real}_{index}") if real
                               else None)
            # A scheduler that cannot list scripts (None) has only the grace to go by.
            if real is None and self.vanished.missing(array):
                for handle in group:
                    out[handle] = attrs.evolve(handle, job_id=LOST_ID)
        return out

    def _confirm(self, provisional: str, real: str) -> None:
        if provisional not in self._confirmed:
            logger.warning("{} had accepted {} after all, as job {}", self.scheduler,
                           self._unconfirmed.get(provisional, provisional), real)
            self._confirmed[provisional] = real
            self._unconfirmed.pop(provisional, None)

    def _with_confirmed(
        self, handles: Sequence[JobHandle]
    ) -> tuple[list[JobHandle], dict[JobHandle, JobHandle], dict[JobHandle, JobStatus]]:
        """(handles to ask the scheduler about, real handle -> the engine's, statuses known
        already): provisional ids replaced by real ones where found; jobs of an array never
        accepted are LOST; those not found yet are left out (unchanged)."""
        provisional = [h for h in handles if h.job_id.startswith(UNCONFIRMED)]
        if not provisional:
            return list(handles), {}, {}
        real = self.confirm(provisional)
        asked = [h for h in handles if not h.job_id.startswith(UNCONFIRMED)]
        back: dict[JobHandle, JobHandle] = {}
        known: dict[JobHandle, JobStatus] = {}
        for handle, found in real.items():
            if found is None:
                continue
            if found.job_id == LOST_ID:
                known[handle] = JobStatus(JobState.LOST, reason=(
                    f"{self.scheduler} lost the answer to the submission of this job and, "
                    f"answering again, has no record of it: it was never accepted"))
                continue
            asked.append(found)
            back[found] = handle
        return asked, back, known

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """The protocol's ``poll``: :meth:`statuses`, once submissions in doubt are found."""
        if not handles:
            return {}
        asked, back, known = self._with_confirmed(handles)
        found = self._element_statuses(asked) if asked else {}
        return {**{back.get(h, h): status for h, status in found.items()}, **known}

    # -- status ------------------------------------------------------------------------------

    def _element_statuses(
        self, handles: Sequence[JobHandle]
    ) -> Mapping[JobHandle, JobStatus]:
        """Every handle's state from one status query (handles with real ids only).

        The scheduler is asked about each element once (:meth:`statuses`). A job of
        a chunk has its own state: DONE or FAILED from its result file as soon as it is
        written, RUNNING while the element runs it, otherwise unchanged (queued); when the
        element ended, a job it never finished is not the task's failure (:meth:`unrun`).
        The scheduler's accounting covers the whole element, so a chunk's jobs report
        only the worker's numbers.
        """
        if not handles:
            return {}
        groups: dict[str, list[JobHandle]] = {}
        for handle in handles:
            groups.setdefault(handle.job_id, []).append(handle)
        if not self._chunks and len(groups) == len(handles):
            return self.statuses(handles)
        firsts = [members[0] for members in groups.values()]
        elements = self.statuses(firsts)
        out: dict[JobHandle, JobStatus] = {}
        for job_id, members in groups.items():
            status = elements.get(members[0])
            if status is None:
                continue
            if job_id not in self._chunks and len(members) == 1:
                out[members[0]] = status
                continue
            out.update(self._chunk_statuses(job_id, members, status))
        return out

    def _chunk_statuses(self, job_id: str, members: Sequence[JobHandle],
                        element: JobStatus) -> dict[JobHandle, JobStatus]:
        """Each job's state in a chunk element whose own state is ``element``."""
        out: dict[JobHandle, JobStatus] = {}
        if element.state.finished:
            self._progress.pop(job_id, None)
            for handle in members:
                result = self.worker_result(handle)
                if result is None or (_signalled(result) and element.state in (
                        JobState.PREEMPTED, JobState.NODE_FAIL)):
                    result = self.unrun(handle, element)  # the element's end stopped it
                out[handle] = result
            return out
        started, ended = self._read_progress(job_id, Path(members[0].result_path).parent)
        running = element.state is JobState.RUNNING
        for handle in members:
            if handle.key in ended:
                result = self.worker_result(handle)
                # A job stopped by a signal waits for the element's end, which may explain
                # it (a preemption, a node failure).
                if result is not None and not _signalled(result):
                    out[handle] = result
                    continue
            if running and handle.key in started:
                out[handle] = JobStatus(JobState.RUNNING, host=element.host)
        return out

    def _read_progress(self, job_id: str, log_dir: Path) -> tuple[set[str], set[str]]:
        """The jobs a chunk element started and ended so far, reading only what is new."""
        offset, started, ended = self._progress.get(job_id) or (0, set(), set())
        try:
            with open(progress_path(log_dir, job_id), "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            data = b""
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        for line in whole.decode(errors="replace").splitlines():
            mark, _, key = line.partition(" ")
            (started if mark == "S" else ended).add(key)
        self._progress[job_id] = (offset + len(whole), started, ended)
        return started, ended

    def unrun(self, handle: JobHandle, element: JobStatus) -> JobStatus:
        """A job of a chunk without a result when its element ended: not the task's doing.

        The element's time limit, an ``scancel``, a preemption or a node failure stopped
        it before the job began or while it ran. Preempted and node-failed elements keep
        the scheduler's state (run again as they were, :data:`~gristmill.engine.outcome.
        PREEMPT_RETRIES`); an element gristmill cancelled stays cancelled; anything else is
        LOST (run again, the task's retries kept).
        """
        why = f"its chunk's job {handle.job_id} ended ({element.describe()}) before it finished"
        if element.state in (JobState.PREEMPTED, JobState.NODE_FAIL):
            return JobStatus(element.state, host=element.host, reason=why)
        if element.state is JobState.CANCELLED and handle.job_id in self._cancelled:
            return JobStatus(JobState.CANCELLED, reason=element.reason)
        return JobStatus(JobState.LOST, reason=f"{why}; it runs again")

    def worker_result(self, handle: JobHandle) -> JobStatus | None:
        """What the worker wrapper recorded for the attempt, if it finished.

        A result naming another attempt is no news of this one (the engine records the
        attempt LOST when it reads the file).
        """
        try:
            result = read_result(handle.result_path, key=handle.key)
        except BackendError as exc:  # corrupt or another attempt's: the job counts as lost
            logger.warning("{}", exc)
            return None
        if result is None:
            return None
        self.vanished.seen(handle.job_id)
        return JobStatus.from_result(result)

    def unknown(self, handle: JobHandle) -> JobStatus | None:
        """A job no status source lists and with no result: cancelled, LOST, or not yet."""
        if handle.job_id in self._cancelled:
            return JobStatus(JobState.CANCELLED, reason=f"cancelled before it started "
                             f"({self.scheduler} keeps no record of such array elements)")
        if self.vanished.missing(handle.job_id):
            return JobStatus(JobState.LOST, reason=f"{self.scheduler} has no record of the job")
        return None

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        asked, _, _ = self._with_confirmed(handles)
        ids = list(dict.fromkeys(h.job_id for h in asked
                                 if h.job_id and h.job_id != "unknown"))
        if ids:
            self.runner.run(self.cancel_argv(ids), ok=lambda p: p.returncode in (0, 1))
            self._cancelled.update(ids)

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Note which elements are chunks (several jobs, or a progress file); polling is
        otherwise stateless, any job id can be asked about."""
        count: dict[str, int] = {}
        for handle in handles:
            count[handle.job_id] = count.get(handle.job_id, 0) + 1
        for handle in handles:
            job_id = handle.job_id
            if count[job_id] > 1 or (job_id not in self._chunks and Path(progress_path(
                    Path(handle.result_path).parent, job_id)).exists()):
                self._chunks.add(job_id)

    def close(self) -> None:
        """Nothing held between calls."""

    @property
    def calls(self) -> Mapping[str, int]:
        return dict(self.runner.calls)


#: How a provisional array id begins (a submission whose answer was lost): never a
#: scheduler's id, which is a number.
UNCONFIRMED = "?"
#: The id :meth:`ArrayBackend.confirm` gives jobs of an array the scheduler never accepted.
LOST_ID = f"{UNCONFIRMED}lost"


def _marked_array(handle: JobHandle) -> str | None:
    """The array id an element wrote next to its result when it started (``A_T``)."""
    try:
        text = Path(handle.result_path + ".handle").read_text().strip()
    except OSError:
        return None
    array = text.partition("_")[0]
    return array if array.isdigit() else None


def _script_of(provisional: str, handle: JobHandle) -> Path:
    """The batch script of a provisional array (``?array-<key>``), next to its results;
    how a restarted engine finds it again."""
    return Path(handle.result_path).parent / f"{provisional.removeprefix(UNCONFIRMED)}.sh"


def poll_bounds(name: str, declared: Capabilities, poll_min: float | str,
                poll_max: float | str) -> Capabilities:
    """A batch backend's ``declared`` capabilities with its ``poll_min``/``poll_max``
    options (everything else it declares, such as Slurm's ``submit_limit``, kept)."""
    try:
        least, most = float(poll_min), float(poll_max)
    except ValueError:
        raise BackendError(f"{name} options poll_min={poll_min!r}, poll_max={poll_max!r}: "
                           "give seconds, e.g. poll_min=5 poll_max=60") from None
    if not (0 <= least <= most) or most == float("inf"):
        raise BackendError(
            f"{name} options poll_min={least:g}, poll_max={most:g}: give 0 <= poll_min <= "
            f"poll_max seconds (--{name}-poll-min, --{name}-poll-max), e.g. 5 and 60")
    return attrs.evolve(declared, poll_min=least, poll_max=most)


def _signalled(status: JobStatus) -> bool:
    """A job the wrapper saw cancelled, or die of SIGTERM: the scheduler may say why."""
    return status.state is JobState.CANCELLED or status.signal == signal.SIGTERM


def unstarted(status: JobStatus) -> JobStatus:
    """A job the scheduler saw fail with the wrapper's EX_TEMPFAIL and no result file: the
    node ran out of file descriptors or processes before the attempt could start or be
    recorded. That is LOST (run again, the task's retries kept), not the task's failure.
    A task's own exit 75 never gets here: its result file says how it ended.
    """
    if status.state is JobState.FAILED and status.exit_code == EXIT_LOST:
        return JobStatus(JobState.LOST, status.exit_code, status.signal, status.peak_rss,
                         status.elapsed, status.host,
                         f"the attempt could not start on {status.host or 'its node'}, "
                         "short of file descriptors or processes, nor record that; run again")
    return status
