"""The local backend: a resource-aware process pool run by one supervisor process.

Each ``LocalBackend`` starts one small supervisor, once: the engine writes job requests
to it as JSON lines on one pipe and it answers on another ("started", then each
result). The supervisor holds the job states:

- *queued*: submitted, waiting for cores and memory; started in submission (FIFO)
  order while the running jobs' cores sum to at most ``max_cores`` and their memory
  to at most ``max_mem`` (unset memory counts 0, unset cores 1). A job asking more
  than the machine is clamped to the machine, so it runs alone on all of it.
- *running*: a :class:`gristmill.worker.Monitor` attempt in its own process group,
  runtime and memory limits enforced.
- *finished*: result file written atomically, then the engine told. ``wait`` blocks on
  that pipe, so a short task ends with no poll delay.

When the engine goes away (EOF on the request pipe: ``close()``, a crash, ``kill
-9``) the supervisor runs what it holds to completion, writes every result file and
exits. A later engine re-adopts those jobs with ``attach``: a job id is ``<supervisor
pid>.<its start time>.<n>``, so an adopted job is RUNNING while that very process
lives (a reused pid has another start time), then what its result file says, or LOST.
``cancel`` on an adopted job leaves ``<result file>.cancel``, which an orphaned
supervisor looks for twice a second.

Why a fresh interpreter rather than a fork of the engine: either happens once per
backend, and the ~80 ms boot overlaps the engine's own start, while a fork would
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
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from loguru import logger

from gristmill.backends.base import Capabilities, JobHandle, JobRequest, JobState, JobStatus
from gristmill.errors import BackendError, SpecError
from gristmill.resources import format_memory
from gristmill.worker import AttemptResult, Monitor, human_size, read_result, write_result

# Imports this module without running gristmill/__init__.py, whatever that grows to
# import: the supervisor needs only this module, the worker and their leaves.
_BOOT = (
    "import sys, types; pkg = types.ModuleType('gristmill'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['gristmill'] = pkg; from gristmill.backends.local import main; "
    "sys.exit(main(sys.argv[2:]))"
)
_CANCEL_SCAN = 0.5  # seconds between looks at adopted jobs (.cancel files, result files)
_RUNNING = JobStatus(JobState.RUNNING)


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, ppid, pgrp, ...); ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    """When live process ``pid`` started (clock ticks since boot); ``None`` if gone or a zombie."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] in (b"Z", b"X") else int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """Whether the process with this ``pid`` and ``start`` time still runs."""
    if os.path.isdir("/proc/self"):
        return _start_time(pid) == start
    try:  # no procfs: the pid is all there is
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _mem_total() -> int:
    """The machine's memory in bytes (MemTotal)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _write_marker(path: str, text: str) -> None:
    """Write a small file next to a result file, making its folder if need be."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def _supervisor_of(job_id: str) -> tuple[int, int]:
    """The (pid, start time) of the supervisor that ran ``job_id``."""
    parts = job_id.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise BackendError(
            f"job id {job_id!r} was not made by the local backend (expected pid.start.n); "
            "resume the run with the backend that submitted it"
        )
    return int(parts[0]), int(parts[1])


class LocalBackend:
    """Runs attempts on this machine within ``max_cores`` and ``max_mem``; see the module doc.

    ``close()`` leaves submitted jobs to finish (the supervisor then exits);
    ``shutdown(cancel=True)`` stops them and waits. As a context manager it closes.
    """

    name = "local"
    capabilities = Capabilities(
        arrays=False, reattach=True, enforces_memory=True, enforces_runtime=True
    )

    def __init__(
        self, *, max_cores: int | None = None, max_mem: int | None = None,
        strict_resources: bool = False, grace: float = 5.0,
    ) -> None:
        self.max_cores = (os.cpu_count() or 1) if max_cores is None else max_cores
        self.max_mem = _mem_total() if max_mem is None else max_mem
        if self.max_cores < 1 or self.max_mem < 1 or grace < 0:
            raise SpecError(
                f"LocalBackend(max_cores={max_cores!r}, max_mem={max_mem!r}, grace={grace!r}): "
                "cores and memory must be at least 1 and grace at least 0"
            )
        self.strict_resources = strict_resources
        self.grace = grace
        self._seq = 0
        self._outstanding: dict[int, str] = {}  # ours not finished -> result file
        self._pids: dict[int, int] = {}  # ours running -> pid (= its process group)
        self._ids: dict[str, int] = {}  # job id -> n, until poll reports it finished
        self._news: dict[int, JobStatus] = {}  # changes poll has not reported yet
        self._adopted: set[str] = set()
        self._warned: set[str] = set()
        self._buffer = b""
        self._closed = self._gone = False
        self._cwd = os.getcwd()  # the supervisor's, so jobs run here unless told otherwise
        self._start_supervisor()

    def _start_supervisor(self) -> None:
        req_r, self._requests = os.pipe()
        self._events, ev_w = os.pipe()
        os.set_blocking(self._events, False)
        self._poller = select.poll()
        self._poller.register(self._events, select.POLLIN)
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-c", _BOOT, package, "--requests-fd", str(req_r),
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
        self._prefix = f"{self.supervisor_pid}.{_start_time(self.supervisor_pid) or 0}."

    # -- the Backend protocol ---------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """Hand every job to the supervisor, which starts them as cores and memory allow."""
        if self._closed:
            raise BackendError("this LocalBackend is closed; create a new one to submit jobs")
        for job in jobs:
            self._check_size(job)
        cwd = os.getcwd()
        default_cwd = None if cwd == self._cwd else cwd
        lines, handles = [], []
        for job in jobs:
            self._seq += 1
            res = os.path.abspath(job.result_path)
            lines.append(json.dumps({
                "op": "run", "id": self._seq, "argv": list(job.argv),
                "out": os.path.abspath(job.stdout), "err": os.path.abspath(job.stderr),
                "res": res, "mem": job.resources.mem, "rt": job.resources.runtime,
                "cores": job.resources.cores or 1, "env": dict(job.env) or None,
                "cwd": default_cwd if job.cwd is None else os.path.abspath(job.cwd),
            }, separators=(",", ":")))
            job_id = f"{self._prefix}{self._seq}"
            self._outstanding[self._seq] = res
            self._ids[job_id] = self._seq
            handles.append(JobHandle(self.name, job_id, job.key, res))
        if lines:
            self._send("\n".join(lines) + "\n")
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """The handles whose state changed since the poll that last reported them.

        Omitted handles are unchanged (a job never reported is still QUEUED), so a poll
        over thousands of live jobs costs a dict lookup each. A finished job is reported
        once; asked again, its result file answers. Adopted jobs are looked up on disk.
        """
        self._drain()
        out: dict[JobHandle, JobStatus] = {}
        ids, news = self._ids, self._news
        for handle in handles:
            seq = ids.get(handle.job_id)
            if seq is None:
                if handle.job_id.startswith(self._prefix):  # ours, already reported finished
                    out[handle] = self._file_status(handle) or self._lost(handle)
                else:
                    out[handle] = self._adopted_status(handle)
            elif seq in news:
                status = out[handle] = news.pop(seq)
                if status.state.finished:
                    del ids[handle.job_id]
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
                    _write_marker(handle.result_path + ".cancel", "")
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
        if self._drain():
            return
        on_disk = self._adopted or (self._closed and self._ids)
        limit = max(0.0, min(timeout, _CANCEL_SCAN) if on_disk else timeout)
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

    def _send(self, text: str) -> None:
        data = memoryview(text.encode())
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except BrokenPipeError:
            self._drain()
            raise BackendError(
                f"the local supervisor (pid {self.supervisor_pid}) has exited; the jobs it "
                "held are reported LOST; create a new LocalBackend to go on"
            ) from None

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
            self._news[seq] = AttemptResult.from_dict(message["r"]).to_status()
            if "werr" in message:
                logger.warning("could not write a job's result file: {}", message["werr"])
        elif "pid" in message and seq in self._outstanding:
            self._pids[seq] = message["pid"]
            self._news[seq] = _RUNNING
        elif "error" in message:
            logger.error("the local supervisor failed: {}", message["error"])

    def _supervisor_gone(self) -> None:
        """The supervisor died under us: kill what it left running; the rest is LOST."""
        self._poller.unregister(self._events)
        os.close(self._events)
        self._events, self._gone = -1, True
        for pid in self._pids.values():
            fields = _stat_fields(pid)
            if fields is not None and int(fields[2]) == pid:  # still the group it led
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        self._reap(0.0)
        for seq, res in self._outstanding.items():
            handle = JobHandle(self.name, f"{self._prefix}{seq}", "", res)
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
        try:
            result = read_result(handle.result_path)
        except BackendError as exc:
            return JobStatus(JobState.LOST, reason=str(exc))
        return None if result is None else result.to_status()

    def _adopted_status(self, handle: JobHandle) -> JobStatus:
        status = self._file_status(handle)
        if status is None:
            try:
                pid, start = _supervisor_of(handle.job_id)
            except BackendError as exc:
                return JobStatus(JobState.LOST, reason=str(exc))
            if _alive(pid, start):
                return _RUNNING
            status = self._file_status(handle) or self._lost(handle)  # it may just have ended
        self._adopted.discard(handle.job_id)
        return status


# -- the supervisor process -------------------------------------------------------------


@attrs.define
class _Job:
    key: int
    argv: list[str]
    out: str
    err: str
    res: str
    mem: int | None
    runtime: float | None
    cores: int  # clamped to the machine, so an oversized job runs alone
    need_mem: int
    env: dict[str, str] | None
    cwd: str | None


class _Supervisor:
    """The loop behind a LocalBackend: takes requests, starts jobs as resources allow, reports."""

    def __init__(self, requests: int, events: int, max_cores: int, max_mem: int,
                 grace: float) -> None:
        self.requests, self.events = requests, events
        self.max_cores, self.max_mem = max_cores, max_mem
        self.monitor = Monitor(grace=grace)
        self.queue: deque[int] = deque()
        self.jobs: dict[int, _Job] = {}  # queued and running
        self.running: set[int] = set()
        self.used_cores = self.used_mem = 0
        self.inbuf = b""
        self.outbuf = bytearray()
        self.writing = False  # events fd registered for POLLOUT
        self.orphan = False  # no engine will send more
        self.next_scan = 0.0
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: None)  # the wakeup fd brings it to the loop
        for fd in (requests, events):
            os.set_inheritable(fd, False)  # tasks must not hold the engine's pipes open
        os.set_blocking(events, False)
        self.monitor.poller.register(requests, select.POLLIN)
        self.monitor.poller.register(self.wake_r, select.POLLIN)

    def run(self) -> int:
        try:
            while not (self.orphan and not self.jobs):
                timeout = max(0.0, self.next_scan - time.monotonic()) if self.orphan else None
                for fd, _ in self.monitor.wait(timeout):
                    if fd == self.requests:
                        self.read_requests()
                    elif fd == self.wake_r:  # SIGTERM: cancel everything and leave
                        os.read(self.wake_r, 512)
                        self.stop_reading()
                        for key in list(self.jobs):
                            self.cancel(key)
                done = [(self.release(key), result) for key, result in self.monitor.service()]
                if self.orphan and time.monotonic() >= self.next_scan:
                    self.scan_cancel_files()
                self.start_ready()  # before reporting, so freed cores do not idle
                for job, result in done:
                    self.report(job, result)
                self.flush()
        except Exception as exc:  # a bug: fail the jobs loudly rather than leave them hanging
            reason = f"gristmill local supervisor failed: {type(exc).__name__}: {exc}"
            for key, result in self.monitor.abort(reason):
                self.report(self.release(key), result)
            for key in list(self.jobs):
                self.report(self.release(key), _unstarted(JobState.FAILED, reason))
            self.emit({"error": reason})
            if self.events >= 0:
                os.set_blocking(self.events, True)
            self.flush()
            return 1
        return 0

    def read_requests(self) -> None:
        data = os.read(self.requests, 1 << 20)
        if not data:  # the engine closed us or died: finish what we hold, then exit
            self.stop_reading()
            return
        *lines, self.inbuf = (self.inbuf + data).split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message["op"] == "run":
                job = _Job(
                    message["id"], message["argv"], message["out"], message["err"],
                    message["res"], message["mem"], message["rt"],
                    min(message["cores"], self.max_cores),
                    min(message["mem"] or 0, self.max_mem), message["env"], message["cwd"],
                )
                self.jobs[job.key] = job
                self.queue.append(job.key)
            elif message["op"] == "cancel":
                for key in message["ids"]:
                    self.cancel(key)

    def stop_reading(self) -> None:
        """No engine will send more. Leave ``<result>.handle`` naming each job we hold,
        for an engine that died before it recorded the job ids."""
        if self.orphan:
            return
        self.monitor.poller.unregister(self.requests)
        os.close(self.requests)
        self.orphan = True
        prefix = f"{os.getpid()}.{_start_time(os.getpid()) or 0}."
        for job in self.jobs.values():
            with contextlib.suppress(OSError):
                _write_marker(job.res + ".handle", f"{prefix}{job.key}\n")

    def cancel(self, key: int) -> None:
        if key in self.running:
            self.monitor.cancel(key)
        elif key in self.jobs:
            self.report(self.release(key),
                        _unstarted(JobState.CANCELLED, "cancelled before it started"))

    def start_ready(self) -> None:
        while self.queue:
            key = self.queue[0]
            job = self.jobs.get(key)
            if job is None:  # cancelled while queued
                self.queue.popleft()
                continue
            if self.running and (self.used_cores + job.cores > self.max_cores
                                 or self.used_mem + job.need_mem > self.max_mem):
                return  # FIFO: nothing overtakes the head of the queue
            self.queue.popleft()
            env = None if not job.env else {**self.monitor.environ, **job.env}
            failed = self.monitor.start(key, job.argv, stdout=job.out, stderr=job.err,
                                        mem_limit=job.mem, runtime_limit=job.runtime,
                                        env=env, cwd=job.cwd)
            if failed is not None:
                self.report(self.release(key), failed)
                continue
            self.running.add(key)
            self.used_cores += job.cores
            self.used_mem += job.need_mem
            self.emit({"id": key, "pid": self.monitor.pid(key)})

    def release(self, key: int) -> _Job:
        """Forget a job that ended (or will never start) and free what it held."""
        job = self.jobs.pop(key)
        if key in self.running:
            self.running.discard(key)
            self.used_cores -= job.cores
            self.used_mem -= job.need_mem
        return job

    def report(self, job: _Job, result: AttemptResult) -> None:
        """Write the job's result file, then tell the engine."""
        message: dict[str, object] = {"id": job.key, "r": result.to_dict()}
        try:
            write_result(job.res, result)
        except OSError as exc:
            message["werr"] = f"{job.res}: {exc}"
        if self.orphan:
            for suffix in (".cancel", ".handle"):
                with contextlib.suppress(OSError):
                    os.unlink(job.res + suffix)
        self.emit(message)

    def scan_cancel_files(self) -> None:
        """Orphaned: a later engine asks for cancellation with ``<result>.cancel`` files."""
        self.next_scan = time.monotonic() + _CANCEL_SCAN
        for key, job in list(self.jobs.items()):
            if os.path.exists(job.res + ".cancel"):
                self.cancel(key)

    def emit(self, message: dict[str, object]) -> None:
        if self.events >= 0:
            self.outbuf += json.dumps(message, separators=(",", ":")).encode() + b"\n"

    def flush(self) -> None:
        """Write what the pipe takes without blocking; the rest waits for POLLOUT."""
        while self.outbuf and self.events >= 0:
            try:
                written = os.write(self.events, self.outbuf)
            except BlockingIOError:
                break
            except OSError:  # the engine is gone: nobody to tell
                self.outbuf.clear()
                if self.writing:
                    self.monitor.poller.unregister(self.events)
                os.close(self.events)
                self.events, self.writing = -1, False
                return
            del self.outbuf[:written]
        if bool(self.outbuf) != self.writing:
            self.writing = not self.writing
            if self.writing:
                self.monitor.poller.register(self.events, select.POLLOUT)
            else:
                self.monitor.poller.unregister(self.events)


def _unstarted(state: JobState, reason: str) -> AttemptResult:
    now = time.time()
    return AttemptResult(state, None, None, None, 0.0, os.uname().nodename, now, now, reason)


def main(args: Sequence[str] | None = None) -> int:
    """The supervisor's entry point; ``LocalBackend`` starts it with its pipes' fds."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gristmill.backends.local",
                                     description="Supervisor of a LocalBackend; not run by hand.")
    for flag in ("--requests-fd", "--events-fd", "--max-cores", "--max-mem"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    options = parser.parse_args(args)
    # Hold nothing of the engine's but our two pipes (posix_spawn passes on every
    # inheritable fd), nor its stderr once booted: someone may wait for their EOF.
    low, high = sorted((options.requests_fd, options.events_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    return _Supervisor(options.requests_fd, options.events_fd, options.max_cores,
                       options.max_mem, options.grace).run()


if __name__ == "__main__":
    sys.exit(main())
