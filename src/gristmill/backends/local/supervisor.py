"""The local backend's supervisor: one process that runs a LocalBackend's jobs.

:class:`gristmill.backends.local.backend.LocalBackend` starts it once, as a fresh interpreter
that imports this module without running ``gristmill/__init__.py`` (so it imports
only this module, the monitor and their leaves). Requests come in as JSON lines on
one pipe (``{"op": "run", "key": ..., ...}``, ``{"op": "cancel", "ids": [...]}``,
``{"op": "ack", "ids": [...]}``); events go out on another: ``{"id", "pid"}`` when a job
starts, ``{"id", "r"}`` (its result) when it ends, ``{"error"}`` if the loop itself
fails, ``{"warn"}`` and ``{"info"}`` for the engine's log.

Results travel over the pipe; a result *file* is written only where the pipe may not
be enough. The engine acknowledges the results it has recorded in its store (``ack``);
while it runs, the result of a job costs no file at all. When the engine goes away (EOF)
the supervisor writes the file of every result not acknowledged (the engine may have
died before recording it), and from then on the file of every job that ends, for the
next engine to read. If the supervisor itself dies, the engine learns nothing more
from it: the jobs it held are LOST (they run again), never DONE. Log files are made
only when a task writes to them (:class:`gristmill.worker.monitor.Monitor`,
``lazy_logs``): a task that writes nothing leaves no file.

The jobs it holds are *queued* (FIFO, started while cores and memory allow) or
*running* (a :class:`gristmill.worker.monitor.Monitor` attempt); see the local backend's
module doc for the policy. On EOF of the request pipe it becomes an orphan: it writes
the result files the engine did not acknowledge, runs what it holds to completion
(writing each result file), looks for ``<result>.cancel`` files twice a second, and
exits when nothing is left, killing whatever its attempts left behind first (it is a
child subreaper: everything they daemonize comes back to it).

A job that cannot start for want of file descriptors, processes or memory (the
monitor's LOST start) stays at the head of the queue: the supervisor tries it again
after a pause (:data:`START_BACKOFF`) or as soon as a running attempt ends, and tells
the engine once when it starts waiting and once when the job starts. Only a job that
waits longer than :data:`START_PATIENCE` is reported, LOST. The task's retries are
never spent on the machine's shortage.
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

from gristmill.states import JobState
from gristmill.worker.atomic import write_attempt_file
from gristmill.worker.monitor import TOKEN_VAR, Monitor, become_subreaper, transient
from gristmill.worker.procfs import start_time, ticks_now
from gristmill.worker.result import AttemptResult, write_result
from gristmill.worker.warm import START_TIMEOUT, Warm, hang_message

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from gristmill.worker.monitor import _Pump

CANCEL_SCAN = 0.5  # seconds between looks at adopted jobs (.cancel files, result files)
#: Seconds between tries to start a job while the machine lacks descriptors or processes:
#: the first pause, doubled at each failure up to the last. An attempt that ends frees
#: what it held, so its end is a try as well.
START_BACKOFF = (0.05, 2.0)
#: Seconds one job may fail to start for want of resources before it is reported LOST
#: (the engine then submits it again, within its own retries for lost attempts).
START_PATIENCE = 600.0


class _Job:
    """One job the supervisor holds (a plain class: the supervisor starts without attrs)."""

    __slots__ = ("argv", "attempt", "cores", "cwd", "env", "err", "fork", "key", "mem", "need_mem",
                 "out", "res", "runtime")

    def __init__(self, key: int, argv: list[str], out: str, err: str, res: str, mem: int | None,
                 runtime: float | None, cores: int, need_mem: int, env: dict[str, str] | None,
                 cwd: str | None, attempt: str | None, fork: str | None = None) -> None:
        self.fork = fork  # the task's module:qualname when it runs from a warm interpreter
        self.key = key
        self.argv = argv
        self.out = out
        self.err = err
        self.res = res
        self.mem = mem
        self.runtime = runtime
        self.cores = cores  # clamped to the machine, so an oversized job runs alone
        self.need_mem = need_mem
        self.env = env
        self.cwd = cwd
        self.attempt = attempt  # the engine's key of the attempt, written into its result


class _Launch:
    """A job being forked from a warm interpreter, until its node says ``started``."""

    __slots__ = ("born", "buffer", "deadline", "ends", "job", "pid", "pumps", "started", "status",
                 "t0", "token", "warm")

    def __init__(self, job: _Job, warm: Warm, ends: list[int], pumps: list[_Pump],
                 status: int) -> None:
        self.job, self.warm, self.pumps = job, warm, pumps
        self.ends = ends  # stdout, stderr and status write ends, until sent
        self.status = status  # the status pipe's read end
        self.buffer = b""
        self.pid: int | None = None  # the node, once the middle process said it forked
        self.deadline: float | None = None  # set when the request is sent
        self.started, self.t0 = time.time(), time.monotonic()
        self.born = 0  # clock ticks when it was sent (procfs.ticks_now)
        self.token = ""


class _Supervisor:
    """The loop behind a LocalBackend: takes requests, starts jobs as resources allow, reports."""

    def __init__(self, requests: int, events: int, max_cores: int, max_mem: int,
                 grace: float, *, reaper: bool = False) -> None:
        self.requests, self.events = requests, events
        self.max_cores, self.max_mem = max_cores, max_mem
        self.monitor = Monitor(grace=grace, reaper=reaper, lazy_logs=True)
        self.queue: deque[int] = deque()
        self.jobs: dict[int, _Job] = {}  # queued and running
        #: Results told to the engine that it has not acknowledged: (file, result, attempt).
        self.unacked: dict[int, tuple[str, AttemptResult, str | None]] = {}
        self.reaper = reaper  # needed to fork nodes: they must be reparented to us
        self.warms: dict[str, Warm] = {}  # task entry -> its warm interpreter
        self.warm_fds: dict[int, Warm] = {}
        self.launches: dict[int, _Launch] = {}  # job key -> its launch in flight
        self.launch_fds: dict[int, _Launch] = {}  # status pipe -> launch
        self.running: set[int] = set()
        self.used_cores = self.used_mem = 0
        self.inbuf = b""
        self.outbuf = bytearray()
        self.writing = False  # events fd registered for POLLOUT
        self.orphan = False  # no engine will send more
        self.next_scan = 0.0
        self.start_at = 0.0  # no start is tried before this (monotonic): resources lacked
        self.backoff = START_BACKOFF[0]
        self.waiting_since: float | None = None  # the head job's first failed start
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
            return self.loop()
        finally:
            for warm in list(self.warms.values()):
                warm.close()  # it exits at EOF; the monitor reaps it
            self.monitor.close()

    def loop(self) -> int:
        try:
            while not (self.orphan and not self.jobs):
                for fd, _ in self.monitor.wait(self.timeout()):
                    if fd in self.launch_fds:
                        self.read_status(self.launch_fds[fd])
                    elif fd in self.warm_fds:
                        self.read_warm(self.warm_fds[fd])
                    elif fd == self.requests:
                        self.read_requests()
                    elif fd == self.wake_r:  # SIGTERM: cancel everything and leave
                        os.read(self.wake_r, 512)
                        self.stop_reading()
                        for key in list(self.jobs):
                            self.cancel(key)
                if self.launches:
                    self.check_launches()
                done = [(self.release(key), result) for key, result in self.monitor.service()]
                if done:
                    self.start_at = 0.0  # what they held is free: worth a try at once
                if self.orphan and time.monotonic() >= self.next_scan:
                    self.scan_cancel_files()
                self.start_ready()  # before reporting, so freed cores do not idle
                for job, result in done:
                    self.report(job, result)
                self.flush()
        except Exception as exc:  # a bug: fail the jobs loudly rather than leave them hanging
            import traceback

            reason = f"gristmill local supervisor failed: {type(exc).__name__}: {exc}"
            where = traceback.format_exc()
            self.persist_unacked()  # the engine may not read what follows
            self.orphan = True  # so every result below is written to its file too
            for key, result in self.monitor.abort(reason):
                if key in self.jobs:
                    self.report(self.release(key), result)
            for key in list(self.jobs):
                self.report(self.release(key), _unstarted(JobState.FAILED, reason))
            self.emit({"error": f"{reason}\n{where}"})
            if self.events >= 0:
                os.set_blocking(self.events, True)
            self.flush()
            return 1
        return 0

    def timeout(self) -> float | None:
        """Seconds until the loop must look again by itself (``None``: only on events)."""
        now, due = time.monotonic(), []
        if self.orphan:
            due.append(self.next_scan)
        if self.queue and self.start_at > now:
            due.append(self.start_at)
        due.extend(launch.deadline for launch in self.launches.values()
                   if launch.deadline is not None)
        return max(0.0, min(due) - now) if due else None

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
                    message.get("key"), message.get("fork"),
                )
                self.jobs[job.key] = job
                self.queue.append(job.key)
            elif message["op"] == "cancel":
                for key in message["ids"]:
                    self.cancel(key)
            elif message["op"] == "ack":  # recorded by the engine: no file needed
                for key in message["ids"]:
                    self.unacked.pop(key, None)

    def stop_reading(self) -> None:
        """No engine will send more. Leave ``<result>.handle`` naming each job we hold,
        for an engine that died before it recorded the job ids."""
        if self.orphan:
            return
        self.monitor.poller.unregister(self.requests)
        os.close(self.requests)
        self.orphan = True
        self.persist_unacked()
        prefix = f"{os.getpid()}.{start_time(os.getpid()) or 0}."
        for job in self.jobs.values():
            with contextlib.suppress(OSError):
                write_attempt_file(job.res + ".handle", f"{prefix}{job.key}\n")

    def cancel(self, key: int) -> None:
        if key in self.launches:
            self.end_launch(key, JobState.CANCELLED, "cancelled before it started")
        elif key in self.running:
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
                self.waiting_since = None  # (not start_at: the machine is as short as it was)
                continue
            if self.running and (self.used_cores + job.cores > self.max_cores
                                 or self.used_mem + job.need_mem > self.max_mem):
                return  # FIFO: nothing overtakes the head of the queue
            if time.monotonic() < self.start_at:
                return  # the machine lacked resources a moment ago: wait a little
            env = None if not job.env else {**self.monitor.environ, **job.env}
            if job.fork is not None and self.reaper:
                failed = self.launch(key, job)
            else:
                failed = self.monitor.start(key, job.argv, stdout=job.out, stderr=job.err,
                                            mem_limit=job.mem, runtime_limit=job.runtime,
                                            env=env, cwd=job.cwd)
            if failed is not None and failed.state is JobState.LOST and self.wait_for_resources(
                    job, failed.reason):
                return
            self.queue.popleft()
            if self.waiting_since is not None:
                waited = time.monotonic() - self.waiting_since
                self.waiting_since, self.backoff = None, START_BACKOFF[0]
                if failed is None:
                    self.emit({"info": f"job {job.attempt or key} started after waiting "
                                       f"{waited:.1f} s for the machine's resources"})
                elif failed.state is JobState.LOST:
                    failed = failed.evolve(reason=f"{failed.reason} (waited "
                                          f"{waited:.0f} s for the machine's resources)")
            if failed is not None:
                self.report(self.release(key), failed)
                continue
            self.running.add(key)
            self.used_cores += job.cores
            self.used_mem += job.need_mem
            if key not in self.launches:  # a launch says so once its node has started
                self.emit({"id": key, "pid": self.monitor.pid(key)})

    # -- warm launches (launch: fork), see gristmill.worker.warm ---------------------------

    def launch(self, key: int, job: _Job) -> AttemptResult | None:
        """Ask the task's warm interpreter (started if need be) to fork the job; ``None``
        once asked (or queued until it is ready), else why it could not be."""
        assert job.fork is not None
        warm = self.warms.get(job.fork)
        if warm is None:
            try:
                warm = Warm(job.fork, env=self.monitor.environ, cwd=job.cwd or os.getcwd())
            except OSError as exc:
                state = JobState.LOST if transient(exc) else JobState.FAILED
                return _unstarted(state, f"launch: fork: cannot start a Python for {job.fork}: "
                                         f"{exc}")
            self.warms[job.fork] = warm
            self.warm_fds[warm.fd] = warm
            self.monitor.poller.register(warm.fd, select.POLLIN)
            self.monitor.keep(warm.pid)
        opened = self.monitor.open_logs(job.out, job.err)
        if len(opened) == 2:
            what, error = opened
            assert isinstance(error, OSError)
            state = JobState.LOST if transient(error) else JobState.FAILED
            return _unstarted(state, f"cannot open {what} log: {error}")
        out_w, err_w, pumps = opened
        try:
            status_r, status_w = os.pipe()
        except OSError as exc:
            for fd in {out_w, err_w}:
                os.close(fd)
            for pump in pumps:
                pump.close()
            return _unstarted(JobState.LOST, f"cannot start {job.fork}: {exc}")
        os.set_blocking(status_r, False)
        launch = _Launch(job, warm, [out_w, err_w, status_w], pumps, status_r)
        self.launches[key] = launch
        self.launch_fds[status_r] = launch
        self.monitor.poller.register(status_r, select.POLLIN)
        if warm.state == "ready":
            failed = self.send(launch)
            if failed is not None:  # not started: the caller reports it
                self.drop_launch(launch)
                self.monitor.unexpect(key)
                for pump in launch.pumps:
                    pump.close()
                return _unstarted(JobState.LOST, failed)
        return None

    def send(self, launch: _Launch) -> str | None:
        """Hand the launch to its warm interpreter; from now on its node has
        :data:`START_TIMEOUT` seconds to start. Why it could not be handed, or None."""
        job = launch.job
        launch.t0, launch.started = time.monotonic(), time.time()
        launch.token = f"{os.getpid()}.{job.key}.{launch.started!r}"
        env = {**self.monitor.environ, **(job.env or {}), TOKEN_VAR: launch.token}
        out, err, status = launch.ends
        launch.born = ticks_now()
        self.monitor.expect(job.key, launch.born)
        try:
            launch.warm.launch(job.argv, stdout=out, stderr=err, status=status, env=env,
                               cwd=job.cwd)
        except OSError as exc:
            return f"launch: fork: the warm interpreter of {job.fork} has gone ({exc})"
        finally:
            for fd in set(launch.ends):
                os.close(fd)
            launch.ends = []
        launch.deadline = launch.t0 + START_TIMEOUT
        return None

    def read_status(self, launch: _Launch) -> None:
        """What the middle process (``forked <pid>``) and the node (``started``) said."""
        try:
            data = os.read(launch.status, 512)
        except BlockingIOError:
            return
        *lines, launch.buffer = (launch.buffer + data).split(b"\n")
        for line in lines:
            if line.startswith(b"forked "):
                launch.pid = int(line.split()[1])
            elif line == b"started" and launch.pid is not None:
                self.node_started(launch)
                return
        if not data:  # every writer has gone without a start
            why = ("the node exited before it started" if launch.pid is not None else
                   f"the warm interpreter of {launch.job.fork} could not fork the node")
            self.end_launch(launch.job.key, JobState.FAILED, f"launch: fork: {why}")

    def node_started(self, launch: _Launch) -> None:
        job = launch.job
        assert launch.pid is not None
        self.drop_launch(launch)
        self.monitor.watch(job.key, launch.pid, None, mem_limit=job.mem,
                           runtime_limit=job.runtime, started=launch.started, t0=launch.t0,
                           floor=0, token=launch.token, born=launch.born, pumps=launch.pumps)
        self.monitor.unexpect(job.key)
        self.emit({"id": job.key, "pid": launch.pid})

    def drop_launch(self, launch: _Launch) -> None:
        self.launches.pop(launch.job.key, None)
        if launch.status >= 0:
            self.monitor.poller.unregister(launch.status)
            del self.launch_fds[launch.status]
            os.close(launch.status)
            launch.status = -1
        for fd in set(launch.ends):
            os.close(fd)
        launch.ends = []

    def end_launch(self, key: int, state: JobState, reason: str, text: str = "") -> None:
        """The launch of job ``key`` failed (or was cancelled): its node, if forked, is
        killed; ``text`` (default: the reason) goes to its stderr log."""
        launch = self.launches[key]
        self.drop_launch(launch)
        self.monitor.unexpect(key)
        if launch.pid is not None:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(launch.pid, signal.SIGKILL)
        if state is not JobState.CANCELLED:
            line = (text or reason).rstrip("\n") + "\n"
            launch.pumps[-1].write(f"gristmill: {line}".encode())
        for pump in launch.pumps:
            pump.close()
        self.report(self.release(key), _unstarted(state, reason))

    def check_launches(self) -> None:
        """Fail the launches whose node did not start in time (see :func:`hang_message`)."""
        now = time.monotonic()
        for launch in list(self.launches.values()):
            if launch.deadline is None or now < launch.deadline:
                continue
            if launch.job.key not in self.launches:
                continue  # ended with its warm interpreter below
            warm = launch.warm
            self.end_launch(launch.job.key, JobState.FAILED, hang_message(warm.entry, warm.threads))
            if launch.pid is None:  # stuck before the node was forked: so is the interpreter
                self.stop_warm(warm, f"launch: fork: the warm interpreter of {warm.entry} was "
                                     "stopped after a fork hung")

    def read_warm(self, warm: Warm) -> None:
        """A warm interpreter said ``ready`` (send what waits), or ``error``/ended (fail
        what waits for it)."""
        warm.read()
        if warm.state == "ready":
            for launch in list(self.launches.values()):
                if launch.warm is warm and launch.deadline is None:
                    failed = self.send(launch)
                    if failed is not None:
                        self.end_launch(launch.job.key, JobState.LOST, failed)
        elif warm.state == "gone":
            if warm.error:
                self.stop_warm(warm, f"launch: fork: {warm.summary}", text=warm.error,
                               state=JobState.FAILED)
            else:
                self.stop_warm(warm, f"launch: fork: the warm interpreter of {warm.entry} "
                                     "exited")

    def stop_warm(self, warm: Warm, reason: str, *, text: str = "",
                  state: JobState = JobState.LOST) -> None:
        """Stop a warm interpreter; its launches not yet forked end ``state``."""
        if self.warms.get(warm.entry) is warm:
            del self.warms[warm.entry]
        if warm.fd in self.warm_fds:
            self.monitor.poller.unregister(warm.fd)
            del self.warm_fds[warm.fd]
        warm.stop()
        for launch in list(self.launches.values()):
            if launch.warm is warm and launch.pid is None:
                self.end_launch(launch.job.key, state, reason, text)

    def wait_for_resources(self, job: _Job, reason: str) -> bool:
        """The head job could not start for want of resources: pause before the next
        try; whether to keep it waiting (False once it waited :data:`START_PATIENCE`)."""
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
            self.emit({"warn": f"job {job.attempt or job.key} cannot start yet ({reason}): "
                               "the machine is short of descriptors, processes or memory; "
                               "waiting for them (the task's retries are not spent)"})
        elif now - self.waiting_since > START_PATIENCE:
            return False
        self.start_at = now + self.backoff
        self.backoff = min(START_BACKOFF[1], self.backoff * 2)
        return True

    def release(self, key: int) -> _Job:
        """Forget a job that ended (or will never start) and free what it held."""
        job = self.jobs.pop(key)
        if key in self.running:
            self.running.discard(key)
            self.used_cores -= job.cores
            self.used_mem -= job.need_mem
        return job

    def report(self, job: _Job, result: AttemptResult) -> None:
        """Tell the engine how the job ended; an orphan writes its result file first."""
        data = result.to_dict()  # the monitor's result names no attempt: this one is
        if job.attempt is not None:
            data["key"] = job.attempt
        message: dict[str, object] = {"id": job.key, "r": data}
        if self.orphan:
            try:
                write_result(job.res, result, key=job.attempt)
            except OSError as exc:
                message["werr"] = f"{job.res}: {exc}"
            for suffix in (".cancel", ".handle"):
                with contextlib.suppress(OSError):
                    os.unlink(job.res + suffix)
        else:
            self.unacked[job.key] = (job.res, result, job.attempt)
        self.emit(message)

    def persist_unacked(self) -> None:
        """Write the result file of every result the engine did not acknowledge: it may
        have died before recording them, and the next engine reads them there."""
        for path, result, attempt in self.unacked.values():
            try:
                write_result(path, result, key=attempt)
            except OSError as exc:  # nobody to tell but the engine that may be gone
                self.emit({"warn": f"could not write a job's result file: {path}: {exc}"})
        self.unacked.clear()

    def scan_cancel_files(self) -> None:
        """Orphaned: a later engine asks for cancellation with ``<result>.cancel`` files."""
        self.next_scan = time.monotonic() + CANCEL_SCAN
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

    parser = argparse.ArgumentParser(prog="python -m gristmill.backends.local.supervisor",
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
    reaper = become_subreaper()  # what an attempt daemonizes comes back to us, to be killed
    return _Supervisor(options.requests_fd, options.events_fd, options.max_cores,
                       options.max_mem, options.grace, reaper=reaper).run()


if __name__ == "__main__":
    sys.exit(main())
