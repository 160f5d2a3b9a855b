"""``python -m gristmill.backends.batch.element MANIFEST INDEX``: run one array element.

This is what each element of a Slurm or Grid Engine array runs. It looks its entry
up in the array's manifest (written by :func:`.arrays.write_manifest`), records which
scheduler job it is (the ``.handle`` marker next to the result file, so a restarted
engine can re-adopt it), and runs the attempt under the worker wrapper.

What differs between schedulers comes from the manifest as data, never from an
import of a scheduler's backend: the environment variables that carry the job and
task ids, and the rules that read the scheduler's own log when the attempt was
stopped by a signal (Slurm writes ``CANCELLED AT … DUE TO TIME LIMIT`` there).

An element of a chunked array (manifest version 3, entries ``{"nodes": [...]}``) runs
its jobs one after another (:func:`run_chunk`), each as an element of its own would
be: its ``.handle`` marker, its own wrapper run with its own runtime and memory limit,
its result file. It also appends to a progress file (:func:`progress_path`) one line
as each job starts (``S key``) and one as its result is final (``E key``), so the
engine tells the job running from those still waiting and takes each result as soon
as it is written, with one small read per element and poll. A job that already has a
result is skipped (the scheduler requeued the element); a signal to the element (its
time limit, ``scancel``, preemption) stops it from starting the next job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from gristmill.worker.result import AttemptResult
    from gristmill.worker.warm import Warm

#: A stop rule's state meaning "this run's result is no verdict; the scheduler's record
#: is": the scheduler stopped the job and may run it again under the same id and
#: attempt (Slurm's preemption, or a requeue), so a result left by the stopped run would
#: be taken for the end of an attempt that is to run again.
SCHEDULER_DECIDES = "SCHEDULER"
#: The manifest format :func:`read_manifest` reads; 1 (gristmill 0.1) is still read.
MANIFEST_VERSION = 2
#: The format of a chunked array's manifest: each entry holds a list of jobs.
CHUNK_MANIFEST_VERSION = 3
_LEGACY_IDS = (("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"), ("JOB_ID", "SGE_TASK_ID"))


def read_manifest(path: str | os.PathLike[str], index: int) -> tuple[dict[str, Any],
                                                                   dict[str, Any]]:
    """(the element's entry, the manifest's ``scheduler`` block) for ``index``.

    A chunked array's manifest (version 3) is a header line holding each element's
    offset, then one line per element: only the header and that line are read.
    """
    with open(path, "rb") as fh:
        try:
            data = json.loads(fh.readline())
        except ValueError:  # a manifest of several lines: gristmill 0.1 may have written one
            fh.seek(0)
            data = json.load(fh)
        version = data.get("version")
        if version == CHUNK_MANIFEST_VERSION:
            offsets = data["offsets"]
            if not 0 <= index < len(offsets):
                raise IndexError(f"{path}: no element {index} (the array has {len(offsets)})")
            fh.seek(offsets[index], 1)
            entry: dict[str, Any] = json.loads(fh.readline())
            return entry, data.get("scheduler") or {}
    if version not in (1, MANIFEST_VERSION):
        raise ValueError(f"{path}: manifest version {version} is not supported")
    jobs = data["jobs"]
    if not 0 <= index < len(jobs):
        raise IndexError(f"{path}: no element {index} (the array has {len(jobs)})")
    entry = jobs[index]
    scheduler: dict[str, Any] = data.get("scheduler") or {}
    return entry, scheduler


def element_id(scheduler: Mapping[str, Any]) -> str | None:
    """``<job>_<task>`` from the environment variables the manifest names."""
    pairs = [(scheduler["job_env"], scheduler["task_env"])] if scheduler else _LEGACY_IDS
    for job_env, task_env in pairs:
        job_id, task_id = os.environ.get(job_env), os.environ.get(task_env)
        if job_id and task_id:
            return f"{job_id}_{task_id}"
    return None


def log_tail(path: str | os.PathLike[str], size: int = 16384) -> str:
    """The last ``size`` bytes of a log ("" when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def verdict(text: str, rules: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(state name, reason) that a scheduler's log gives for stopping a job, or None.

    Each rule is ``{"pattern": regex, "outcomes": {group value: [state, reason]}}``;
    rules are tried in order, and for each only its *last* match counts (a log may
    hold several kill lines; the last one is why the job stopped). The key is the
    pattern's first group, or "" when it has none or it did not take part.
    """
    for rule in rules:
        last = None
        for last in re.finditer(rule["pattern"], text):  # noqa: B007 -- the last one counts
            pass
        if last is None:
            continue
        key = (last.group(1) or "") if last.re.groups else ""
        outcome = rule["outcomes"].get(key)
        if outcome is not None:
            return str(outcome[0]), str(outcome[1])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one element; exit as its attempt did (2 when the manifest cannot be read)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.stderr.write("usage: python -m gristmill.backends.batch.element MANIFEST INDEX\n")
        return 2
    try:
        entry, scheduler = read_manifest(args[0], int(args[1]))
    except (OSError, ValueError, IndexError, KeyError) as exc:
        sys.stderr.write(f"gristmill: cannot read array element: {exc}\n")
        return 2
    if "nodes" in entry:
        return run_chunk(entry["nodes"], scheduler, os.path.dirname(os.path.abspath(args[0])))
    from gristmill.worker.atomic import write_atomic

    # The handle marker tells a restarted engine which job this attempt is, even when
    # the engine died before it recorded the job id.
    job = element_id(scheduler)
    if job is not None:
        with contextlib.suppress(OSError):
            write_atomic(entry["result"] + ".handle", f"{job}\n")
    # A result already here is an earlier run's of this very attempt (every attempt has a
    # path of its own): the scheduler requeued the job. It is no verdict on this run, and
    # an engine re-adopting the attempt meanwhile would take it for one.
    with contextlib.suppress(OSError):
        os.unlink(entry["result"])
    for key, value in (entry.get("env") or {}).items():
        os.environ[key] = value
    if entry.get("cwd"):
        os.chdir(entry["cwd"])
    from gristmill.worker.wrapper import main as run_wrapper

    limits = ["--runtime", str(entry["runtime"])] if entry.get("runtime") else []
    # Every manifest entry names its attempt (version 1 did too): the result carries it.
    key = ["--key", entry["key"]] if entry.get("key") else []
    code = run_wrapper(
        ["--result", entry["result"], "--stdout", entry["stdout"], "--stderr", entry["stderr"],
         *key, *limits, "--", *entry["argv"]]
    )
    if job is not None and scheduler.get("stop_log"):
        explain_signal(entry["result"], scheduler["stop_log"].replace("{id}", job),
                       scheduler.get("stop_rules") or (), key=entry.get("key"))
    return code


def progress_path(log_dir: str | os.PathLike[str], job: str) -> str:
    """Where chunk element ``job`` (``<array>_<index>``) logs which of its jobs started
    and ended (the engine reads it: :meth:`~.backend.ArrayBackend.poll`)."""
    return os.path.join(log_dir, f"chunk-{job}.progress")


class _Stop:
    """Whether the element was signalled (SIGTERM, SIGINT, SIGHUP): start nothing more.

    The handler also feeds the wakeup pipe, through which the wrapper's loop cancels the
    job running now (as the wrapper does for an element of one job).
    """

    def __init__(self) -> None:
        self.signalled = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.signalled = signum


class _Forks:
    """The chunk's warm interpreter (``launch: fork``, :mod:`gristmill.worker.warm`) and
    the one monitor its nodes run under.

    The task is imported once per element, when its first node runs; each node is then a
    fork, reparented to the element (a child subreaper) and watched as a spawned job is:
    its own process group, logs, limits, exit status, CPU time and peak memory. One
    monitor serves the whole chunk because a monitor's ``close`` kills every child that
    leads no job, and the warm interpreter is such a child (it is ``keep``-ed: never taken
    for what a node left behind). What a node does leave behind still dies with it: the
    monitor kills the node's group and the strays carrying its token when it ends.

    A failure that would repeat for every node ends the chunk's later fork nodes at once
    with the same reason (:attr:`failure`): the task cannot be imported, or a fork hung
    (a lock held by a thread of the warm interpreter). When no interpreter can be started
    at all, or its import outlasted a node's runtime, the nodes run as ``exec``.
    """

    def __init__(self, wake_r: int, stop: _Stop, environ: Mapping[str, str], home: str) -> None:
        import select

        from gristmill.worker.monitor import Monitor

        self.monitor = Monitor(grace=5.0, reaper=True)
        self.monitor.poller.register(wake_r, select.POLLIN)
        self.wake_r, self.stop = wake_r, stop
        self.environ, self.home = dict(environ), home
        self.warm: Warm | None = None
        #: (state, reason, text for the node's stderr) that every later fork node ends with.
        self.failure: tuple[str, str, str] | None = None
        self.exec = False  # run the remaining nodes as their command lines say

    def close(self) -> None:
        if self.warm is not None:
            self.warm.stop()
        self.monitor.close()

    def run(self, entry: Mapping[str, Any]) -> AttemptResult | None:
        """Fork the node and watch it to its end; its result, or None: run it as exec."""
        from gristmill.worker.warm import Warm

        if self.exec:
            return None
        if self.failure is not None:
            return _failed(entry, *self.failure)
        runtime = float(entry["runtime"]) if entry.get("runtime") else None
        began = time.monotonic()
        warm = self._ready(entry, None if runtime is None else began + runtime)
        if not isinstance(warm, Warm):
            return warm
        return self._launch(warm, entry, runtime)

    def _ready(self, entry: Mapping[str, Any],
               deadline: float | None) -> Warm | AttemptResult | None:
        """The warm interpreter, once it imported the task (started if need be); or how
        the node ends without it; or None (run it as exec)."""
        import select

        from gristmill.states import JobState
        from gristmill.worker.monitor import transient
        from gristmill.worker.warm import Warm

        if self.warm is None:
            try:
                self.warm = Warm(str(entry["fork"]), env=self.environ,
                                 cwd=entry.get("cwd") or self.home)
            except OSError as exc:  # no process to be had: the node starts as it would have
                self.exec = not transient(exc)
                return None
            self.monitor.keep(self.warm.pid)
        warm = self.warm
        poller = select.poll()
        poller.register(warm.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while warm.state == "starting":
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._drop()
                self.exec = True  # each node imports under its own runtime limit instead
                reason = (f"launch: fork: the warm interpreter of {warm.entry} did not import "
                          "it within the node's runtime limit")
                return _failed(entry, JobState.TIMEOUT.value, reason, reason)
            for fd, _ in poller.poll(None if left is None else max(1, int(left * 1000))):
                if fd == self.wake_r:
                    os.read(self.wake_r, 512)
                    if self.stop.signalled:
                        return _failed(entry, JobState.CANCELLED.value,
                                       "cancelled before it started", "")
                else:
                    warm.read()
        if warm.state == "ready":
            return warm
        self._drop()
        if warm.error:
            self.failure = (JobState.FAILED.value, f"launch: fork: {warm.summary}", warm.error)
        else:
            why = f"launch: fork: the warm interpreter of {warm.entry} exited"
            self.failure = (JobState.FAILED.value, why, why)
        return _failed(entry, *self.failure)

    def _drop(self) -> None:
        if self.warm is not None:
            self.warm.stop()
            self.warm = None

    def _launch(self, warm: Warm, entry: Mapping[str, Any],
                runtime: float | None) -> AttemptResult | None:
        """Hand the node to ``warm``, wait for it to start, then watch it to its end."""
        from gristmill.states import JobState
        from gristmill.worker.monitor import TOKEN_VAR, transient
        from gristmill.worker.procfs import ticks_now
        from gristmill.worker.warm import START_TIMEOUT, hang_message

        monitor = self.monitor
        opened = monitor.open_logs(entry["stdout"], entry["stderr"])
        if len(opened) == 2:
            what, error = opened
            assert isinstance(error, OSError)
            state = JobState.LOST if transient(error) else JobState.FAILED
            return _failed(entry, state.value, f"cannot open {what} log: {error}", "")
        out_fd, err_fd, _ = opened
        try:
            status_r, status_w = os.pipe()
        except OSError as exc:
            for fd in {out_fd, err_fd}:
                os.close(fd)
            return _failed(entry, JobState.LOST.value, f"cannot start {warm.entry}: {exc}", "")
        started, t0 = time.time(), time.monotonic()
        token = f"{os.getpid()}.0.{started!r}"
        born = ticks_now()
        monitor.expect(0, born)
        try:
            warm.launch(entry["argv"], stdout=out_fd, stderr=err_fd, status=status_w,
                        env={**os.environ, TOKEN_VAR: token}, cwd=entry.get("cwd"))
        except OSError:  # the warm interpreter has gone: start it again for the next node
            self._drop()
            monitor.unexpect(0)
            os.close(status_r)
            return None
        finally:
            for fd in {out_fd, err_fd, status_w}:
                os.close(fd)
        pid, said = self._await_start(status_r, t0 + START_TIMEOUT)
        if said == "started" and pid is not None:
            monitor.watch(0, pid, None, mem_limit=entry.get("mem"), runtime_limit=runtime,
                          started=started, t0=t0, floor=0, token=token, born=born, pumps=[])
            monitor.unexpect(0)
            return self._watch()
        monitor.unexpect(0)
        _bury(pid)
        if said == "signalled":
            return _failed(entry, JobState.CANCELLED.value, "cancelled before it started", "")
        if said == "hung":
            if pid is None:  # stuck before the node was forked: so is the interpreter
                self._drop()
            message = hang_message(warm.entry, warm.threads)
            self.failure = (JobState.FAILED.value, message, message)
            return _failed(entry, *self.failure)
        why = ("the node exited before it started" if pid is not None else
               f"the warm interpreter of {warm.entry} could not fork the node")
        return _failed(entry, JobState.FAILED.value, f"launch: fork: {why}",
                       f"launch: fork: {why}")

    def _await_start(self, status: int, deadline: float) -> tuple[int | None, str]:
        """The node's pid (once the middle process said it) and how its start went:
        ``started``, ``eof`` (every writer gone first), ``hung`` or ``signalled``."""
        import select

        poller = select.poll()
        poller.register(status, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        pid: int | None = None
        buffer = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return pid, "hung"
                for fd, _ in poller.poll(max(1, int(left * 1000))):
                    if fd == self.wake_r:
                        os.read(self.wake_r, 512)
                        if self.stop.signalled:
                            return pid, "signalled"
                        continue
                    data = os.read(status, 512)
                    if not data:
                        return pid, "eof"
                    *lines, buffer = (buffer + data).split(b"\n")
                    for line in lines:
                        if line.startswith(b"forked "):
                            pid = int(line.split()[1])
                        elif line == b"started" and pid is not None:
                            return pid, "started"
        finally:
            os.close(status)

    def _watch(self) -> AttemptResult:
        """Drive the monitor until the node ends (a signal to the element cancels it)."""
        result = None
        while result is None:
            for fd, _ in self.monitor.wait():
                if fd == self.wake_r:
                    os.read(fd, 512)
                    self.monitor.cancel(0)
            for _, finished in self.monitor.service():
                result = finished
        return result


def _failed(entry: Mapping[str, Any], state: str, reason: str, text: str) -> AttemptResult:
    """A fork node's end without a run of its own; ``text`` goes to its stderr log."""
    from gristmill.states import JobState
    from gristmill.worker.result import AttemptResult

    if text:
        with contextlib.suppress(OSError):
            fd = os.open(entry["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o666)
            try:
                os.write(fd, f"gristmill: {text.rstrip()}\n".encode())
            finally:
                os.close(fd)
    now = time.time()
    return AttemptResult(JobState(state), None, None, None, 0.0, os.uname().nodename, now, now,
                         reason)


def _bury(pid: int | None) -> None:
    """Kill a forked node that never started, and reap it once it is the element's child
    (its middle process exits at once; a second is plenty)."""
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # not ours yet (or reaped): look again
            pass
        time.sleep(0.002)


def run_chunk(nodes: Sequence[Mapping[str, Any]], scheduler: Mapping[str, Any],
              log_dir: str) -> int:
    """Run a chunk element's jobs one after another; 0 unless a signal stopped it.

    Each job's outcome is in its own result file, so the element's exit code says only
    whether it got through its list (``128 + signal`` when it was stopped).
    """

    from gristmill.worker.monitor import become_subreaper

    job = element_id(scheduler)
    progress = None
    if job is not None:
        with contextlib.suppress(OSError):
            progress = os.open(progress_path(log_dir, job),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    stop = _Stop()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    reaper = become_subreaper()
    home = os.getcwd()
    environ = dict(os.environ)
    forks = _Forks(wake_r, stop, environ, home) if reaper and sys.platform == "linux" and any(
        entry.get("fork") for entry in nodes) else None
    try:
        for entry in nodes:
            if stop.signalled:
                break
            # Each job runs in the environment and directory the element started with.
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(home)
            run_node(entry, scheduler, job, progress, wake_r, reaper, stop, forks)
    finally:
        if forks is not None:
            forks.close()
        if progress is not None:
            os.close(progress)
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
    return 128 + stop.signalled if stop.signalled else 0


def _note(progress: int | None, mark: str, key: str) -> None:
    """Append ``S key`` or ``E key`` to the element's progress file (one write: atomic)."""
    if progress is not None:
        with contextlib.suppress(OSError):
            os.write(progress, f"{mark} {key}\n".encode())


def run_node(entry: Mapping[str, Any], scheduler: Mapping[str, Any], job: str | None,
             progress: int | None, wake_r: int, reaper: bool, stop: _Stop,
             forks: _Forks | None = None) -> None:
    """Run one job of a chunk as the wrapper runs an element of one job.

    Skipped when its result file is already there: the scheduler ran this element
    before (a requeue) and the job finished then; its outcome stands. A job whose entry
    names its task's ``fork`` entry is forked from the chunk's warm interpreter
    (``forks``) when there is one, else started as its command line says.
    """
    import select

    from gristmill.worker.atomic import write_attempt_file
    from gristmill.worker.monitor import Monitor
    from gristmill.worker.wrapper import _drive, _write

    result = entry["result"]
    key = entry.get("key")
    if os.path.exists(result):
        return
    if job is not None:
        with contextlib.suppress(OSError):
            write_attempt_file(result + ".handle", f"{job}\n", fsync=False)
    _note(progress, "S", key or "")
    for name, value in (entry.get("env") or {}).items():
        os.environ[name] = value
    if entry.get("cwd"):
        os.chdir(entry["cwd"])
    runtime = entry.get("runtime")
    outcome = forks.run(entry) if forks is not None and entry.get("fork") else None
    if outcome is None:
        monitor = Monitor(grace=5.0, reaper=reaper)
        monitor.poller.register(wake_r, select.POLLIN)
        try:
            outcome = _drive(monitor, entry["argv"], entry["stdout"], entry["stderr"],
                             entry.get("mem"), float(runtime) if runtime else None, None,
                             None, wake_r, 300.0)
        finally:
            monitor.close()  # what the job left behind dies with it, before the next starts
    if not _write(result, outcome, key, 300.0):
        return
    if stop.signalled and job is not None and scheduler.get("stop_log"):
        explain_signal(result, scheduler["stop_log"].replace("{id}", job),
                       scheduler.get("stop_rules") or (), key=key, chunk=True)
    if os.path.exists(result):
        _note(progress, "E", key or "")


def explain_signal(result_path: str, log: str, rules: Sequence[Mapping[str, Any]], *,
                   key: str | None, chunk: bool = False) -> None:
    """Turn "stopped by a signal" in the attempt's result into the scheduler's reason.

    At a time limit, as on ``scancel``, Slurm sends SIGTERM to every process of
    the job: the wrapper records CANCELLED, or FAILED "killed by SIGTERM" when
    the task died before the wrapper saw its own signal. Only the scheduler's log
    says which it was, and the result file is what the engine believes, so correct
    it now, before the job ends (the wrapper ignores SIGTERM; the scheduler's
    SIGKILL comes some seconds later). When the scheduler preempted or requeued the job
    (:data:`SCHEDULER_DECIDES`) the result is removed instead: the scheduler's record
    says how the attempt ends, or the job runs again and writes its own.

    In a ``chunk`` the scheduler's time limit is the element's (its jobs' runtimes added
    up), not this job's, whose own limit the wrapper enforces: a job it stopped is LOST
    (run again, the task's retries kept), not a TIMEOUT of the task.
    """
    from gristmill.errors import BackendError
    from gristmill.states import JobState
    from gristmill.worker.result import read_result, write_result

    try:
        result = read_result(result_path, key=key)
    except BackendError:  # corrupt, or another attempt's: the engine's to report
        return
    if result is None or not (
        result.state is JobState.CANCELLED or result.signal == signal.SIGTERM
    ):
        return
    found = verdict(log_tail(log), rules)
    if found is None or found[0] == result.state.value:
        return
    if found[0] == SCHEDULER_DECIDES:
        with contextlib.suppress(OSError):
            os.unlink(result_path)
        return
    if chunk and found[0] == JobState.TIMEOUT.value:
        found = (JobState.LOST.value, f"{found[1]}, the chunk's job's limit and not this "
                 "node's: it runs again")
    write_result(result_path, result.evolve(state=JobState(found[0]), reason=found[1]),
                 key=result.key or key)


if __name__ == "__main__":
    sys.exit(main())
