"""The local backend: a resource-aware process pool run by one supervisor process.

Each ``LocalBackend`` starts one small supervisor, once: the engine writes job requests
to it as JSON lines on one pipe and it answers on another ("started", then each
result). The supervisor (:mod:`gristmill.backends.local.supervisor`) holds the job
states:

- *queued*: submitted, waiting for cores and memory; started in submission (FIFO)
  order while the running jobs' cores sum to at most ``max_cores`` and their memory
  to at most ``max_mem`` (unset memory counts 0, unset cores 1). A job asking more
  than the machine is clamped to the machine, so it runs alone on all of it.
- *running*: a :class:`gristmill.worker.monitor.Monitor` attempt in its own process group,
  runtime and memory limits enforced.
- *finished*: the engine told over the pipe, with the result. ``wait`` blocks on that
  pipe, so a short task ends with no poll delay.

No file is needed for a result the engine has recorded: the backend acknowledges each
result (``ack``) on its next ``submit`` or ``wait``, calls the engine makes only after
it has committed what the ``poll`` before them reported. A result not acknowledged when
the engine goes away is written to its result file by the supervisor (see there), and
a task that writes nothing leaves no log file: readers take a missing log for an empty
one.

When the engine goes away (EOF on the request pipe: ``close()``, a crash, ``kill
-9``) the supervisor writes the result files the engine did not acknowledge, runs what
it holds to completion, writes every result file and exits. A later engine re-adopts
those jobs with ``attach``: a job id is ``<supervisor pid>.<its start time>.<n>``, so
an adopted job is RUNNING while that very process lives (a reused pid has another start
time), then what its result file says, or LOST. ``cancel`` on an adopted job leaves
``<result file>.cancel``, which an orphaned supervisor looks for twice a second.

Why a fresh interpreter rather than a fork of the engine: either happens once per
backend, and the ~60 ms boot overlaps the engine's own start, while a fork would
inherit the engine's threads, locks and open files (a run-dir lock would outlive the
engine) and make its whole heap copy-on-write (13 ms to fork a 700 MB engine here).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from loguru import logger

from gristmill.backends.base import Capabilities, JobHandle, JobRequest, JobStatus
from gristmill.backends.local.settings import SETTINGS
from gristmill.backends.local.supervisor import CANCEL_SCAN
from gristmill.errors import BackendError, SpecError
from gristmill.resources import format_memory, parse_memory
from gristmill.states import JobState
from gristmill.worker.atomic import write_attempt_file
from gristmill.worker.monitor import MAX_WAIT, human_size
from gristmill.worker.procfs import alive, mem_total, start_time, stat_fields
from gristmill.worker.result import AttemptResult, read_result

# Imports the supervisor without running gristmill/__init__.py, whatever that grows to
# import: it needs only its own module, the monitor and their leaves.
_BOOT = (
    "import sys, types; pkg = types.ModuleType('gristmill'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['gristmill'] = pkg; from gristmill.backends.local.supervisor import main; "
    "sys.exit(main(sys.argv[2:]))"
)
_RUNNING = JobStatus(JobState.RUNNING)
_N = TypeVar("_N", int, float)


def _supervisor_of(job_id: str) -> tuple[int, int]:
    """The (pid, start time) of the supervisor that ran ``job_id``."""
    parts = job_id.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise BackendError(
            f"job id {job_id!r} was not made by the local backend (expected pid.start.n); "
            "resume the run with the backend that submitted it"
        )
    return int(parts[0]), int(parts[1])


def _number(kind: type[_N], value: str | float, what: str) -> _N:
    """An option's value as ``kind``; text such as "0.5" is parsed, garbage is a SpecError."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise SpecError(
            f"local backend option {what}={value!r} is not a number; give e.g. {what}=2"
        ) from None


class LocalBackend:
    """Runs attempts on this machine within ``max_cores`` and ``max_mem``; see the module doc.

    ``close()`` leaves submitted jobs to finish (the supervisor then exits);
    ``shutdown(cancel=True)`` stops them and waits. As a context manager it closes.
    """

    name = "local"
    #: ``max_inflight`` follows ``max_cores``: each instance sets its own (``__init__``).
    capabilities = Capabilities(reattach=True)
    settings = SETTINGS

    def __init__(
        self, *, max_cores: int | str | None = None, max_mem: int | str | None = None,
        strict_resources: bool | str = False, grace: float | str = 5.0,
    ) -> None:
        # Options may come as text (``--option grace=0.5``, ``--option max_mem=8G``).
        self.max_cores = (
            (os.cpu_count() or 1) if max_cores is None else _number(int, max_cores, "max_cores")
        )
        self.max_mem = mem_total() if max_mem is None else parse_memory(max_mem, what="max_mem")
        self.grace = _number(float, grace, "grace")
        if self.max_cores < 1 or self.max_mem < 1 or self.grace < 0:
            raise SpecError(
                f"LocalBackend(max_cores={max_cores!r}, max_mem={max_mem!r}, grace={grace!r}): "
                "cores and memory must be at least 1 and grace at least 0"
            )
        if isinstance(strict_resources, str):
            strict_resources = strict_resources.strip().lower() in ("1", "true", "yes", "on")
        self.strict_resources = strict_resources
        # The engine keeps at most this many jobs handed over: enough that the supervisor
        # always has the next one queued, few enough that each engine cycle stays cheap.
        self.capabilities = attrs.evolve(
            LocalBackend.capabilities, max_inflight=max(16, 4 * self.max_cores)
        )
        self._seq = 0
        self._outstanding: dict[int, tuple[str, str]] = {}  # ours not finished -> key, result
        self._pids: dict[int, int] = {}  # ours running -> pid (= its process group)
        self._ids: dict[str, int] = {}  # job id -> n, until poll reports it finished
        self._news: dict[int, JobStatus] = {}  # changes poll has not reported yet
        self._adopted: set[str] = set()
        self._warned: set[str] = set()
        self._buffer = b""
        #: Finished jobs ``poll`` reported since the last ``submit`` or ``wait``: recorded
        #: by the engine once it calls either, then acknowledged (see the module doc).
        self._reported: dict[str, tuple[int, JobStatus]] = {}
        self._closed = self._gone = False
        self._cwd = os.getcwd()  # the supervisor's, so jobs run here unless told otherwise
        self._start_supervisor()

    def _start_supervisor(self) -> None:
        req_r, self._requests = os.pipe()
        self._events, ev_w = os.pipe()
        os.set_blocking(self._events, False)
        self._poller = select.poll()
        self._poller.register(self._events, select.POLLIN)
        package = str(Path(__file__).resolve().parents[2])  # src/gristmill
        # -I: neither the working directory nor PYTHONPATH (a project's types.py, say)
        # can shadow the standard library inside the supervisor; gristmill comes by path.
        argv = [sys.executable, "-I", "-c", _BOOT, package, "--requests-fd", str(req_r),
                "--events-fd", str(ev_w), "--max-cores", str(self.max_cores),
                "--max-mem", str(self.max_mem), "--grace", repr(self.grace)]
        os.set_inheritable(req_r, True)
        os.set_inheritable(ev_w, True)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
        try:  # its own session: Ctrl-C and hangups of the terminal do not reach it
            try:
                self.supervisor_pid = os.posix_spawn(
                    sys.executable, argv, os.environ, setsid=True, file_actions=actions)
            except NotImplementedError:  # no POSIX_SPAWN_SETSID: a process group will do
                self.supervisor_pid = os.posix_spawn(
                    sys.executable, argv, os.environ, setpgroup=0, file_actions=actions)
        finally:
            os.close(req_r)
            os.close(ev_w)
        self._prefix = f"{self.supervisor_pid}.{start_time(self.supervisor_pid) or 0}."

    # -- the Backend protocol ---------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """Hand every job to the supervisor, which starts them as cores and memory allow."""
        if self._closed:
            raise BackendError("this LocalBackend is closed; create a new one to submit jobs")
        self._drain()
        if self._gone:  # a task may still hold the request pipe open, so EPIPE is not enough
            raise self._gone_error()
        for job in jobs:
            self._check_size(job)
        cwd = os.getcwd()
        default_cwd = None if cwd == self._cwd else cwd
        lines, handles = self._acks(), []
        for job in jobs:
            self._seq += 1
            res = os.path.abspath(job.result_path)
            lines.append(json.dumps({
                "op": "run", "id": self._seq, "key": job.key, "argv": list(job.argv),
                "out": os.path.abspath(job.stdout), "err": os.path.abspath(job.stderr),
                "res": res, "mem": job.resources.mem, "rt": job.resources.runtime,
                "cores": job.resources.cores or 1, "env": dict(job.env) or None,
                "cwd": default_cwd if job.cwd is None else os.path.abspath(job.cwd),
                "fork": job.fork_entry,
            }, separators=(",", ":")))
            job_id = f"{self._prefix}{self._seq}"
            self._outstanding[self._seq] = (job.key, res)
            self._ids[job_id] = self._seq
            handles.append(JobHandle(self.name, job_id, job.key, res))
        if lines:
            self._send("\n".join(lines) + "\n")
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """The handles whose state changed since the poll that last reported them.

        Omitted handles are unchanged (a job never reported is still QUEUED), so a poll
        over thousands of live jobs costs a dict lookup each. A finished job is reported
        again until the engine acknowledged it, then only if a result file says how it
        ended (it is omitted otherwise: unchanged). Adopted jobs are looked up on disk.
        """
        self._drain()
        out: dict[JobHandle, JobStatus] = {}
        ids, news = self._ids, self._news
        for handle in handles:
            seq = ids.get(handle.job_id)
            if seq is None:
                if handle.job_id in self._reported:  # reported, not yet recorded: again
                    out[handle] = self._reported[handle.job_id][1]
                elif handle.job_id.startswith(self._prefix):  # ours, reported and recorded:
                    status = self._file_status(handle)  # unchanged, unless a file says more
                    if status is not None:
                        out[handle] = status
                else:
                    out[handle] = self._adopted_status(handle)
            elif seq in news:
                status = out[handle] = news.pop(seq)
                if status.state.finished:
                    del ids[handle.job_id]
                    self._reported[handle.job_id] = (seq, status)
            elif self._closed:  # no more news: look on disk, as for adopted jobs
                status = self._adopted_status(handle)
                if status.state.finished:
                    out[handle] = status
                    del ids[handle.job_id]
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Stop the jobs: queued ones never start, running ones get SIGTERM, then SIGKILL."""
        ids = []
        for handle in handles:
            ours = handle.job_id.startswith(self._prefix)
            seq = self._ids.get(handle.job_id)
            if ours and (seq is None or self._gone):
                continue  # finished, or lost with its supervisor
            if ours and not self._closed:
                if seq in self._outstanding:
                    ids.append(seq)
            elif not os.path.exists(handle.result_path):
                try:  # adopted, or ours after close(): the orphaned supervisor looks for it
                    write_attempt_file(handle.result_path + ".cancel", "")
                except OSError as exc:
                    logger.warning("cannot ask for job {} to be cancelled: {}", handle.key, exc)
        if ids:
            self._send(json.dumps({"op": "cancel", "ids": ids}) + "\n")

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Re-adopt jobs of an earlier engine; they are watched through their result files."""
        for handle in handles:
            if handle.backend != self.name:
                raise BackendError(
                    f"job {handle.key} was submitted to the {handle.backend!r} backend, not "
                    "'local'; resume the run with that backend"
                )
            if not handle.job_id.startswith(self._prefix):  # a bad id reads as LOST
                self._adopted.add(handle.job_id)

    def wait(self, timeout: float) -> None:
        """Block until one of our jobs changes, at most ``timeout`` (adopted ones: 0.5 s)."""
        acks = self._acks()
        if acks and not self._closed and not self._gone:
            with contextlib.suppress(BrokenPipeError):  # gone: _drain finds out below
                os.write(self._requests, acks[0].encode() + b"\n")  # short: written whole
        if self._drain():
            return
        on_disk = self._adopted or (self._closed and self._ids)
        limit = max(0.0, min(timeout, CANCEL_SCAN) if on_disk else min(timeout, MAX_WAIT))
        if self._events < 0:
            time.sleep(limit)
        else:
            self._poller.poll(int(limit * 1000))
            self._drain()

    def close(self) -> None:
        """Take no more work; submitted jobs still run to completion and leave results."""
        if self._closed:
            return
        self._closed = True
        self._drain()
        os.close(self._requests)  # EOF: the supervisor finishes what it holds, then exits
        if not self._outstanding:
            self._reap(1.0)
        if self._events >= 0:
            os.close(self._events)
            self._events = -1

    def shutdown(self, *, cancel: bool = False) -> None:
        """``close()``; with ``cancel``, cancel every job first and wait (grace + 2 s) for them."""
        if cancel and not self._closed and not self._gone and self._outstanding:
            self._send(json.dumps({"op": "cancel", "ids": list(self._outstanding)}) + "\n")
            self.close()
            self._reap(self.grace + 2.0)
        else:
            self.close()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- engine-side helpers ------------------------------------------------------------

    def _check_size(self, job: JobRequest) -> None:
        cores, mem = job.resources.cores or 1, job.resources.mem or 0
        over = []
        if cores > self.max_cores:
            over.append(f"cores={cores} (the local backend has {self.max_cores})")
        if mem > self.max_mem:
            have = human_size(self.max_mem)
            over.append(f"mem={format_memory(mem)} (the local backend has {have})")
        if not over:
            return
        if self.strict_resources:
            raise BackendError(
                f"task {job.task!r} asks for {' and '.join(over)}; lower its resources (in "
                "the spec file or with resources=) or drop --strict-resources to run it "
                "alone on the whole machine"
            )
        if job.task not in self._warned:
            self._warned.add(job.task)
            logger.warning(
                "task {!r} asks for {}; each of its jobs will run alone on the whole machine",
                job.task, " and ".join(over),
            )

    def _acks(self) -> list[str]:
        """The ``ack`` line for what ``poll`` reported since the last one ([] for none).

        Called from ``submit`` and ``wait`` only: the engine calls them after it has
        committed what the poll before reported, and never between a poll and that commit.
        """
        if not self._reported:
            return []
        ids = [seq for seq, _ in self._reported.values()]
        self._reported.clear()
        return [json.dumps({"op": "ack", "ids": ids}, separators=(",", ":"))]

    def _send(self, text: str) -> None:
        data = memoryview(text.encode())
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except BrokenPipeError:
            self._drain()
            raise self._gone_error() from None

    def _gone_error(self) -> BackendError:
        return BackendError(
            f"the local supervisor (pid {self.supervisor_pid}) has exited; the jobs it "
            "held are reported LOST; create a new LocalBackend to go on"
        )

    def _drain(self) -> bool:
        """Take in what the supervisor said; whether anything new came."""
        if self._events < 0:
            return False
        chunks = []
        while True:
            try:
                chunk = os.read(self._events, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self._supervisor_gone()
                break
            chunks.append(chunk)
        if not chunks:
            return False
        *lines, self._buffer = (self._buffer + b"".join(chunks)).split(b"\n")
        for line in lines:
            self._event(json.loads(line))
        return bool(lines)

    def _event(self, message: dict[str, Any]) -> None:
        seq: int = message.get("id", 0)
        if "r" in message:
            self._outstanding.pop(seq, None)
            self._pids.pop(seq, None)
            self._news[seq] = JobStatus.from_result(AttemptResult.from_dict(message["r"]))
            if "werr" in message:
                logger.warning("could not write a job's result file: {}", message["werr"])
        elif "pid" in message and seq in self._outstanding:
            self._pids[seq] = message["pid"]
            self._news[seq] = _RUNNING
        elif "error" in message:
            logger.error("the local supervisor failed: {}", message["error"])
        elif "warn" in message:
            logger.warning("{}", message["warn"])
        elif "info" in message:
            logger.info("{}", message["info"])

    def _supervisor_gone(self) -> None:
        """The supervisor died under us: kill what it left running; the rest is LOST."""
        self._poller.unregister(self._events)
        os.close(self._events)
        self._events, self._gone = -1, True
        for pid in self._pids.values():
            fields = stat_fields(pid)
            if fields is not None and int(fields[2]) == pid:  # still the group it led
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        self._reap(0.0)
        for seq, (key, res) in self._outstanding.items():
            handle = JobHandle(self.name, f"{self._prefix}{seq}", key, res)
            self._news[seq] = self._file_status(handle) or self._lost(handle)
        if self._outstanding:
            logger.error("the local supervisor (pid {}) died with {} jobs unfinished",
                         self.supervisor_pid, len(self._outstanding))
        self._outstanding.clear()

    def _reap(self, timeout: float) -> None:
        """Collect the exited supervisor (our child), waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self.supervisor_pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid or time.monotonic() >= deadline:
                return
            time.sleep(0.002)

    def _lost(self, handle: JobHandle) -> JobStatus:
        return JobStatus(JobState.LOST, reason=(
            f"the local supervisor (pid {handle.job_id.split('.')[0]}) ended before job "
            f"{handle.job_id} did and left no result at {handle.result_path}"
        ))

    def _file_status(self, handle: JobHandle) -> JobStatus | None:
        """What the job's result file says; LOST when it is corrupt or another attempt's."""
        try:
            result = read_result(handle.result_path, key=handle.key)
        except BackendError as exc:
            return JobStatus(JobState.LOST, reason=str(exc))
        return None if result is None else JobStatus.from_result(result)

    def _adopted_status(self, handle: JobHandle) -> JobStatus:
        status = self._file_status(handle)
        if status is None:
            try:
                pid, start = _supervisor_of(handle.job_id)
            except BackendError as exc:
                return JobStatus(JobState.LOST, reason=str(exc))
            if alive(pid, start):
                return _RUNNING
            status = self._file_status(handle) or self._lost(handle)  # it may just have ended
        self._adopted.discard(handle.job_id)
        return status

