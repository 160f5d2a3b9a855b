"""Run attempts in their own process groups and watch them all from one thread.

:class:`Monitor` takes exits through pidfds on one ``poll`` set (no sleep loop),
treats runtime limits as deadlines (SIGTERM to the group, SIGKILL after ``grace``),
samples the RSS of every process in each group from /proc, and classifies how each
attempt ended. :func:`gristmill.worker.wrapper.run_attempt` drives it for one attempt; the
local backend's supervisor drives it for many.

Why an RSS watchdog and not ``RLIMIT_AS``: the address-space limit counts *virtual*
memory, and numpy/BLAS thread pools, the JVM and glibc's per-thread arenas reserve far
more than they ever touch, so RLIMIT_AS kills healthy tasks long before they use the
memory they asked for. It also applies per process, where a task's children share
its budget. The watchdog measures what a scheduler's cgroup would (resident memory of
the whole process tree) at the cost of sampling: the interval starts at 0.2 s and
doubles every 2 s of a task's age up to 1 s, so a burst shorter than that can slip by.

What an attempt leaves running is killed when it ends: its process group, and every
other process it started, however it got away (a daemon's double fork, ``setsid`` and
``env -i``). Three records say what belongs to an attempt:

- its *descendant tree*: every scan of /proc (the one the memory watchdog makes, at the
  same schedule, now for every attempt) records each attempt's descendants by pid and
  start time, so a process keeps its attempt after its parent is gone;
- with ``reaper=True`` (the local supervisor and ``python -m gristmill.worker`` are child
  subreapers, :func:`become_subreaper`), the *orphans reparented to us*: any child of
  ours that is not an attempt leader is a stray an attempt left. It belongs to the
  attempt whose ``GRISTMILL_ATTEMPT`` token its environment carries, else to the one
  whose tree recorded it, else to every attempt that was running when it started (an
  ``env -i`` daemon that slipped between two scans): it is killed when the last of those
  ends, never while one of them still runs and may need it;
- its process group.

At its end each attempt's strays and recorded descendants are frozen (SIGSTOP, which
stops a fork in flight), their descendants found until no new one appears, and all of
them SIGKILLed: nothing can fork its way out between the scan and the kill. With no
tree recorded and no stray, the end of an attempt costs one read of our children list.
:meth:`Monitor.close` kills whatever strays remain, before the owner exits.

CPU time (:attr:`AttemptResult.cpu_time`, user + system seconds) counts the attempt's whole
process tree, from what the kernel reports when a process is reaped: a process's
``wait4`` rusage holds its own time and that of every descendant it (or they, in turn)
reaped. So the leader's ``wait4`` counts the leader and all it waited for (a
``subprocess.run``, a shell's pipeline, a pool's workers joined). What it did not wait
for is reparented to us when we are a child subreaper (``reaper=True``), and we reap it:
its time (and its own reaped descendants') is added to the attempt it belongs to, by the
same rules that say whose a stray is — whether it ended on its own before the attempt did
or was killed when the attempt ended (those are reaped before the result is made, waiting
at most a second for them to die). Not counted: a stray that may belong to several
running attempts (an ``env -i`` daemon between two scans: it is counted for none rather
than for each), what a killed process did not reap of its own (a descendant whose parent
is outside the attempt's tree) and, without ``reaper``, anything reparented to init.
Reading ``/proc/<pid>/stat`` of the live tree instead would miss every process that
ended between two samples; ``wait4`` misses none that we or the tree reap.

Logs made only when written (``lazy_logs=True``, the local supervisor's setting): an
attempt's stdout and stderr are pipes that the monitor copies into the log files,
creating each file when the first byte comes. Creating a file costs 0.03 to 0.6 ms on
ext4 (more after many deletions), twice per attempt, where most tasks of a large map
write nothing; a pipe costs a few microseconds. A file that cannot be created or
written (a full disk) makes the attempt FAILED, naming the file: the task itself no
longer sees the error. The pipes are drained when the attempt ends, before its result
is made, so the result never precedes the last of its output. Without ``lazy_logs``
(``python -m gristmill.worker``, one attempt per process) the task writes its files
itself.

Starting an attempt can fail for want of file descriptors or processes (``EMFILE``,
``ENFILE``, ``EAGAIN``, ``ENOMEM``): the machine's fault, not the task's. Such a start
ends LOST with the reason (:func:`transient`), and the caller waits and tries again
instead of spending the task's retries; any other failure to start is FAILED.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import resource
import select
import signal
import sys
import time

from gristmill.states import JobState
from gristmill.worker.procfs import (
    children,
    descendants,
    environ,
    own_peak_rss,
    start_time,
    stat_fields,
    table,
    ticks_now,
)
from gristmill.worker.result import AttemptResult, open_retrying

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence

    from gristmill.worker.procfs import Proc
    from gristmill.worker.result import PathLike

_RESET_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(signal, name)
)  # Python ignores these; a task must start with the defaults, as subprocess does.
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux


def human_size(num_bytes: int) -> str:
    """``503316480`` → ``"480M"``: short and approximate, for reasons."""
    for unit, size in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if num_bytes >= size:
            return f"{num_bytes / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"{num_bytes}B"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def sample_interval(age: float) -> float:
    """Seconds between RSS samples for an attempt ``age`` seconds old: 0.2 s doubling to 1 s."""
    return min(1.0, 0.2 * (1 << min(3, int(age / 2.0))))


def group_rss(pgids: Sequence[int], procs: Mapping[int, Proc]) -> dict[int, int]:
    """Resident bytes of every process in each process group of a :func:`table`."""
    totals = dict.fromkeys(pgids, 0)
    page = os.sysconf("SC_PAGE_SIZE")
    for proc in procs.values():
        if proc.pgrp in totals:
            totals[proc.pgrp] += proc.rss * page
    return totals


#: errnos of a start that failed for want of the machine's resources (descriptors,
#: processes, memory): they come back when other work ends, so the start is tried again.
TRANSIENT_ERRNOS = frozenset(
    (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS)
)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a start failing for want of resources, not for the task's fault."""
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


#: The longest single wait, in seconds: every deadline further off is waited for in steps.
MAX_WAIT = 3600.0

#: Environment variable naming the attempt a process belongs to (inherited by its children).
TOKEN_VAR = "GRISTMILL_ATTEMPT"


def become_subreaper() -> bool:
    """Have orphaned descendants reparented to this process (Linux), so :class:`Monitor`
    can find what an attempt's daemonized children left running; whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Attempt:
    """One running attempt, as the monitor tracks it (a plain class: no attrs in a wrapper)."""

    __slots__ = ("born", "deadline", "exited", "floor", "forced", "key", "kill_at", "mem_limit",
                 "next_sample", "peak", "pid", "pidfd", "proc", "pumps", "runtime_limit",
                 "started", "stray_cpu", "t0", "token", "tree", "verdict")

    def __init__(self, key: int, pid: int, pidfd: int | None,
                 proc: subprocess.Popen[bytes] | None, mem_limit: int | None,
                 runtime_limit: float | None, started: float, t0: float,
                 deadline: float | None, next_sample: float | None, *, floor: int = 0,
                 token: str = "", born: int = 0) -> None:
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.proc = proc  # only when spawned through subprocess (cwd set)
        self.mem_limit = mem_limit
        self.runtime_limit = runtime_limit
        self.started = started
        self.t0 = t0
        self.deadline = deadline
        self.next_sample = next_sample
        self.verdict: JobState | None = None  # OOM, TIMEOUT or CANCELLED once we act on it
        self.kill_at: float | None = None  # SIGKILL follows the SIGTERM at this time
        self.forced = False  # SIGTERM was not enough
        self.exited = False
        self.peak = 0  # sampled group RSS
        self.floor = floor  # our own peak RSS at spawn; see _finish
        self.token = token  # TOKEN_VAR's value in its environment
        self.born = born  # clock ticks since boot just before the spawn (procfs.ticks_now)
        self.tree: dict[int, int] = {}  # descendants seen by a scan: pid -> start
        self.stray_cpu = 0.0  # CPU seconds of its strays reaped so far (see "CPU time")
        self.pumps: list[_Pump] = []  # its log pipes (lazy_logs)


class _Pump:
    """One log pipe of an attempt: what comes out of it is appended to ``path``, which is
    created when the first byte comes (see "Logs made only when written")."""

    __slots__ = ("error", "fd", "out", "path", "polled", "stream")

    def __init__(self, fd: int, path: str, stream: str) -> None:
        self.fd = fd  # the read end, non-blocking; -1 once closed
        self.polled = False  # registered on the monitor's poller (else read every 10 ms)
        self.path = path
        self.stream = stream  # "stdout", "stderr" or "output" (both to one file)
        self.out = -1  # the log file, once opened
        self.error = ""  # why the output could not be written, for the result

    def pump(self, limit: int = 16) -> bool:
        """Copy what the pipe holds (at most ``limit`` reads of 64 KiB, so one chatty
        attempt cannot hold up the others); False at end of file."""
        for _ in range(limit):
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.write(data)
        return True

    def write(self, data: bytes) -> None:
        if self.error:
            return  # the output is lost already; keep the pipe flowing
        try:
            if self.out < 0:
                self.out = open_retrying(self.path, _LOG_FLAGS)
            view = memoryview(data)
            while view:
                view = view[os.write(self.out, view):]
        except OSError as exc:
            self.error = f"its {self.stream} could not be written to {self.path}: " + (
                exc.strerror or str(exc))

    def close(self) -> None:
        for fd in (self.fd, self.out):
            if fd >= 0:
                os.close(fd)
        self.fd = self.out = -1


class _Stray:
    """A child of ours that no attempt leads: what an attempt left, reparented to us."""

    __slots__ = ("owners", "start")

    def __init__(self, start: int, owners: set[int]) -> None:
        self.start = start
        self.owners = owners  # the keys of the running attempts it may belong to


class Monitor:
    """Runs attempts in their own process groups and watches them all from one thread.

    Drive it with ``wait`` (blocks on the pidfds and any fd the caller registered on
    ``poller``) then ``service`` (reaps, enforces limits, returns finished results), and
    ``close`` before the process exits. Without pidfds (not Linux) ``wait`` wakes every
    10 ms and ``service`` checks each pid.

    ``lazy_logs=True`` gives each attempt pipes for stdout and stderr and creates its log
    files only when it writes to them (see the module doc).

    ``reaper=True`` says this process is a child subreaper whose children are all
    attempts: any other child is something an attempt left (see the module doc), and is
    killed with it. Leave it False in a process that has children of its own.
    """

    def __init__(self, *, grace: float = 5.0, reaper: bool = False,
                 lazy_logs: bool = False) -> None:
        self.grace = grace
        self.reaper = reaper
        self.lazy_logs = lazy_logs
        self.poller = select.poll()
        self.host = os.uname().nodename
        self._attempts: dict[int, _Attempt] = {}
        self._by_fd: dict[int, _Attempt] = {}
        self._pidfd = hasattr(os, "pidfd_open")
        self._unwatched = 0  # attempts without a pidfd (none could be opened): polled
        self._strays: dict[int, _Stray] = {}
        self._tokens: dict[bytes, int] = {}  # TOKEN_VAR's value -> the running attempt's key
        self._paths: dict[tuple[str, str | None], str] = {}  # (name, PATH) -> path
        self.environ = dict(os.environ)  # a plain dict spawns faster than os.environ
        self._pumps: dict[int, _Pump] = {}  # read end -> its pump (lazy_logs)
        self._polled = 0  # how many of them are on the poller
        self._helpers: set[int] = set()  # children that are no attempt and no stray (keep)
        self._expected: dict[int, int] = {}  # launches whose child may reach us: key -> born
        self._devnull = -1  # /dev/null, opened once: every attempt's stdin
        self._floor: tuple[float, int] = (-1.0, 0)  # (when read, our own peak RSS)

    def __len__(self) -> int:
        return len(self._attempts)

    def pid(self, key: int) -> int | None:
        attempt = self._attempts.get(key)
        return None if attempt is None else attempt.pid

    def start(
        self, key: int, argv: Sequence[str], *, stdout: PathLike, stderr: PathLike,
        mem_limit: int | None = None, runtime_limit: float | None = None,
        env: Mapping[str, str] | None = None, cwd: PathLike | None = None,
    ) -> AttemptResult | None:
        """Start an attempt; ``None`` once running, or the result when it could not start.

        ``env`` is the whole environment (default: this process's); logs are appended.
        A start that failed for want of descriptors, processes or memory is LOST (the
        caller tries again later, see :func:`transient`); any other failure is FAILED.
        """
        started, t0 = time.time(), time.monotonic()
        if not argv:
            return self._unstarted(started, t0, None, "empty command line")
        opened = self.open_logs(stdout, stderr)
        if isinstance(opened, tuple) and len(opened) == 2:
            what, exc = opened
            return self._unstarted(started, t0, None, f"cannot open {what} log: {exc}", exc)
        out_fd, err_fd, pumps = opened
        token = f"{os.getpid()}.{key}.{started!r}"
        tagged = dict(self.environ if env is None else env)
        tagged[TOKEN_VAR] = token
        born = ticks_now()
        spare = -1
        try:
            # The descriptor the pidfd will take, held from before the spawn: once the
            # task runs, running out of descriptors can no longer stop us watching it.
            spare = os.dup(out_fd) if self._pidfd else -1
            pid, proc = self._spawn(list(argv), out_fd, err_fd, tagged, cwd)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or env
            if transient(exc):
                failed = self._unstarted(started, t0, None, f"cannot start {argv[0]}: {exc}", exc)
            else:
                code, reason = _spawn_failure(exc, argv[0], cwd)
                os.write(err_fd, f"gristmill: {reason}\n".encode())
                failed = self._unstarted(started, t0, code, reason)
            for fd in {out_fd, err_fd, spare} - {-1}:
                os.close(fd)
            for pump in pumps:  # what was said above reaches the log
                pump.pump(limit=1024)
                pump.close()
            return failed
        for fd in {out_fd, err_fd, spare} - {-1}:
            os.close(fd)
        self.watch(key, pid, proc, mem_limit=mem_limit, runtime_limit=runtime_limit,
                    started=started, t0=t0, floor=self._own_floor(t0), token=token, born=born,
                    pumps=pumps)
        return None

    def open_logs(
        self, stdout: PathLike, stderr: PathLike
    ) -> tuple[int, int, list[_Pump]] | tuple[str, OSError]:
        """The stdout and stderr fds an attempt gets (one when both name one file) and
        their pumps (``lazy_logs``); or which log failed to open, and why."""
        same = os.path.abspath(stdout) == os.path.abspath(stderr)
        if self.lazy_logs:
            pumps: list[_Pump] = []
            ends: list[int] = []
            try:
                for stream, path in (("output" if same else "stdout", stdout), ("stderr", stderr)):
                    if same and stream == "stderr":
                        break
                    read, write = os.pipe()
                    os.set_blocking(read, False)
                    pumps.append(_Pump(read, os.fspath(path), stream))
                    ends.append(write)
            except OSError as exc:
                for fd in ends:
                    os.close(fd)
                for pump in pumps:
                    pump.close()
                return ("stdout" if not ends else "stderr"), exc
            return ends[0], ends[-1], pumps
        try:
            out_fd = open_retrying(os.fspath(stdout), _LOG_FLAGS)
        except OSError as exc:
            return "stdout", exc
        try:
            err_fd = out_fd if same else open_retrying(os.fspath(stderr), _LOG_FLAGS)
        except OSError as exc:
            os.close(out_fd)
            return "stderr", exc
        return out_fd, err_fd, []

    def _own_floor(self, now: float) -> int:
        """What a child is charged at its exec: our own memory's peak, not what was charged
        to us at ours (a supervisor spawned by a large engine starts small). Read again at
        most every 0.5 s: it only grows, slowly, and reading it costs ~35 us a start."""
        when, floor = self._floor
        if now - when >= 0.5 or when < 0:
            found = own_peak_rss()
            if found is None:
                found = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
            floor = found
            self._floor = (now, floor)
        return floor

    def watch(
        self, key: int, pid: int, proc: subprocess.Popen[bytes] | None, *,
        mem_limit: int | None, runtime_limit: float | None, started: float, t0: float,
        floor: int, token: str, born: int, pumps: list[_Pump],
    ) -> None:
        """Watch ``pid``, our child leading its own process group, as attempt ``key``
        (:meth:`start` spawns it; a warm launch forks it, :mod:`gristmill.worker.warm`)."""
        pidfd = self._open_pidfd(pid)
        deadline = None if runtime_limit is None else t0 + runtime_limit
        attempt = _Attempt(key, pid, pidfd, proc, mem_limit, runtime_limit, started, t0,
                           deadline, t0 + sample_interval(0.0), floor=floor, token=token,
                           born=born)
        attempt.pumps = pumps
        # poll() refuses more descriptors than RLIMIT_NOFILE: past half of it, pipes are
        # read every 10 ms instead (a machine running hundreds of attempts at once).
        room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2 - 8 - len(self._by_fd)
        for pump in pumps:
            self._pumps[pump.fd] = pump
            if self._polled < room:
                self.poller.register(pump.fd, select.POLLIN)
                pump.polled = True
                self._polled += 1
        self._attempts[key] = attempt
        self._tokens[token.encode()] = key
        if pidfd is not None:
            self._by_fd[pidfd] = attempt
            self.poller.register(pidfd, select.POLLIN)
        else:
            self._unwatched += 1

    def _spawn(
        self, argv: list[str], out_fd: int, err_fd: int,
        env: Mapping[str, str] | None, cwd: PathLike | None,
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """posix_spawn (the fastest way here: ~0.6 ms vs ~1.5 ms for Popen); Popen for ``cwd``."""
        if cwd is not None or not hasattr(os, "posix_spawn"):
            import subprocess  # only here: ~9 ms of every wrapper's start otherwise

            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd, cwd=cwd,
                env=env, start_new_session=True,
            )
            return proc.pid, proc
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        actions = [
            (os.POSIX_SPAWN_DUP2, self._devnull, 0),
            (os.POSIX_SPAWN_DUP2, out_fd, 1),
            (os.POSIX_SPAWN_DUP2, err_fd, 2),
        ]
        environ = self.environ if env is None else env
        path = argv[0] if "/" in argv[0] else self._which(argv[0], environ.get("PATH"))
        try:
            pid = os.posix_spawn(path, argv, environ, file_actions=actions, setpgroup=0,
                                 setsigdef=_RESET_SIGNALS)
        except FileNotFoundError:
            if self._paths.pop((argv[0], environ.get("PATH")), None) is None:
                raise
            return self._spawn(argv, out_fd, err_fd, env, cwd)  # it moved since we looked
        return pid, None

    def _which(self, name: str, search: str | None) -> str:
        """Where ``name`` is on the task's PATH (as execvpe would look), cached."""
        found = self._paths.get((name, search))
        if found is None:
            for folder in (os.defpath if search is None else search).split(os.pathsep):
                candidate = os.path.join(folder or ".", name)
                if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                    found = self._paths[name, search] = candidate
                    break
            else:
                raise FileNotFoundError(2, "command not found", name)
        return found

    def _open_pidfd(self, pid: int) -> int | None:
        if not self._pidfd:
            return None
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):  # no pidfds here:
                self._pidfd = False  # check each pid from now on
            return None  # out of descriptors after all: this one attempt is polled

    def _unstarted(
        self, started: float, t0: float, code: int | None, reason: str,
        exc: BaseException | None = None,
    ) -> AttemptResult:
        state = JobState.LOST if exc is not None and transient(exc) else JobState.FAILED
        return AttemptResult(state, code, None, None, time.monotonic() - t0,
                             self.host, started, time.time(), reason)

    def cancel(self, key: int) -> None:
        """SIGTERM the attempt's process group, SIGKILL after ``grace``; it ends CANCELLED."""
        attempt = self._attempts.get(key)
        if attempt is None or attempt.verdict is JobState.CANCELLED:
            return
        attempt.verdict = JobState.CANCELLED
        _killpg(attempt.pid, signal.SIGTERM)
        if attempt.kill_at is None:
            attempt.kill_at = time.monotonic() + self.grace

    def timeout(self) -> float | None:
        """Seconds until the next deadline, SIGKILL or RSS sample; ``None`` for none."""
        soonest = math.inf
        for attempt in self._attempts.values():
            if attempt.exited:
                return 0.0
            if attempt.verdict is None and attempt.deadline is not None:
                soonest = min(soonest, attempt.deadline)
            if attempt.kill_at is not None:
                soonest = min(soonest, attempt.kill_at)
            if attempt.next_sample is not None:
                soonest = min(soonest, attempt.next_sample)
        wait = None if soonest == math.inf else max(0.0, soonest - time.monotonic())
        if (self._attempts and (self._unwatched or not self._pidfd)) or (
                len(self._pumps) > self._polled):
            wait = 0.01 if wait is None else min(wait, 0.01)
        return wait

    def wait(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Block until an attempt ends, a limit is due, or a caller's fd is ready.

        Returns the ``(fd, event)`` pairs of the caller's own fds.
        """
        due = self.timeout()
        if due is None or (timeout is not None and timeout < due):
            due = timeout
        if due is not None:  # poll() takes a C int of milliseconds (~596 h); wake and re-check
            due = min(due, MAX_WAIT)
        try:
            events = self.poller.poll(None if due is None else math.ceil(due * 1000))
        except OSError as exc:  # EINVAL: RLIMIT_NOFILE was lowered under our feet
            if exc.errno != errno.EINVAL or not self._polled:
                raise
            for stale in self._pumps.values():
                if stale.polled:
                    self.poller.unregister(stale.fd)
                    stale.polled = False
            self._polled = 0
            return self.wait(timeout)
        for unpolled in list(self._pumps.values()):
            if not unpolled.polled and not unpolled.pump():
                self._unpump(unpolled)
        mine: list[tuple[int, int]] = []
        for fd, event in events:
            attempt = self._by_fd.get(fd)
            if attempt is not None:
                attempt.exited = True
                continue
            pump = self._pumps.get(fd)
            if pump is None:
                mine.append((fd, event))
            elif not pump.pump():  # every writer has gone: stop watching the pipe
                self._unpump(pump)
        return mine

    def _unpump(self, pump: _Pump) -> None:
        """Stop watching ``pump``'s pipe and close it (its log file too)."""
        if pump.fd >= 0:
            if pump.polled:
                self.poller.unregister(pump.fd)
                self._polled -= 1
                pump.polled = False
            del self._pumps[pump.fd]
        pump.close()

    def service(self) -> list[tuple[int, AttemptResult]]:
        """Reap ended attempts, enforce runtime and memory limits; the finished results."""
        done = []
        for attempt in list(self._attempts.values()):
            if not attempt.exited and attempt.pidfd is None:
                attempt.exited = _has_exited(attempt.pid)
            if attempt.exited:
                done.append((attempt.key, self._finish(attempt)))
        now = time.monotonic()
        sample = False
        for attempt in self._attempts.values():
            if attempt.verdict is None and attempt.deadline is not None and now >= attempt.deadline:
                attempt.verdict = JobState.TIMEOUT
                _killpg(attempt.pid, signal.SIGTERM)
                attempt.kill_at = now + self.grace
            if attempt.kill_at is not None and now >= attempt.kill_at:
                _killpg(attempt.pid, signal.SIGKILL)
                attempt.kill_at, attempt.forced = None, True
            if attempt.next_sample is not None and now >= attempt.next_sample:
                sample = True
        if sample:
            self._scan(now)
        return done

    def _scan(self, now: float) -> None:
        """One /proc scan: every attempt's descendants, strays, and the memory watchdog."""
        procs = table()
        if self.reaper:
            self._adopt(procs)
        totals = group_rss([a.pid for a in self._attempts.values()], procs)
        for attempt in self._attempts.values():
            if attempt.next_sample is None:
                continue  # killed for its memory: no more samples
            attempt.next_sample = now + sample_interval(now - attempt.t0)
            _record_tree(attempt, procs)
            limit = attempt.mem_limit
            if limit is None:
                continue
            rss = totals.get(attempt.pid, 0)
            attempt.peak = max(attempt.peak, rss)
            if rss > limit and attempt.verdict is not JobState.CANCELLED:
                attempt.verdict = JobState.OOM
                _killpg(attempt.pid, signal.SIGKILL)
                attempt.next_sample, attempt.kill_at = None, None

    def keep(self, pid: int) -> None:
        """``pid``, a child of ours that is no attempt (a warm interpreter), is not a stray:
        it is left alone while it lives and reaped when it ends."""
        self._helpers.add(pid)

    def expect(self, key: int, born: int) -> None:
        """A launch (:mod:`gristmill.worker.warm`) may hand us a child for attempt ``key``
        from now on (``born``, :func:`~gristmill.worker.procfs.ticks_now`): until
        :meth:`unexpect`, children born since are not taken for strays."""
        self._expected[key] = born

    def unexpect(self, key: int) -> None:
        self._expected.pop(key, None)

    def _adopt(self, procs: Mapping[int, Proc] | None = None) -> None:
        """Take note of the children of ours no attempt leads (strays), and whose they are;
        reap those that exited, kill those no running attempt can own."""
        leaders = {a.pid for a in self._attempts.values()}
        orphans: dict[int, int] = {}
        expected = min(self._expected.values(), default=None)
        for pid in children(os.getpid()):
            if pid in leaders:
                continue
            if pid in self._helpers:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        self._helpers.discard(pid)
                continue
            proc = None if procs is None else procs.get(pid)
            start = start_time(pid) if proc is None or proc.zombie else proc.start
            if expected is not None and (_born(pid) if start is None else start) >= expected:
                continue  # may be a launched child not yet known (even one that already
                # ended, whose exit status is its attempt's): judged once it is known
            if start is None:  # exited (a zombie): reap it, its CPU time to its attempt
                known = self._strays.pop(pid, None)
                self._reap_stray(pid, None if known is None else known.owners)
                continue
            known = self._strays.get(pid)
            if known is not None and known.start == start:
                continue
            owners = self._owners(pid, start)
            if owners:
                self._strays[pid] = _Stray(start, owners)
            else:
                orphans[pid] = start
        if orphans:  # left by attempts that have all ended: kill them now
            self._strays.update((pid, _Stray(start, set())) for pid, start in orphans.items())
            _kill_trees(orphans)

    def _reap_stray(self, pid: int, owners: set[int] | None) -> bool:
        """Reap exited stray ``pid`` (no wait) and add its CPU time to the one running
        attempt it belongs to (``owners``, or found now); whether it was reaped."""
        if owners is None:
            fields = stat_fields(pid)  # a zombie keeps its stat line until reaped
            try:
                owners = set() if fields is None else self._owners(pid, int(fields[19]))
            except (ValueError, IndexError):
                owners = set()
        try:
            reaped, _, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # gone already (reaped elsewhere)
        if not reaped:
            return False
        if len(owners) == 1:
            (key,) = owners
            attempt = self._attempts.get(key)
            if attempt is not None:
                attempt.stray_cpu += usage.ru_utime + usage.ru_stime
        return True

    def _reap_killed(self, attempt: _Attempt, killed: set[int]) -> None:
        """Reap what was killed at the end of ``attempt`` as it becomes our child (within a
        second), adding its CPU time to the attempt; what its own parent reaps or what is
        not ours is left alone."""
        pending = set(killed)
        deadline = time.monotonic() + 1.0
        while pending:
            ours = set(children(os.getpid())) & pending
            for pid in ours:
                self._strays.pop(pid, None)
                if self._reap_stray(pid, {attempt.key}):
                    pending.discard(pid)
            pending = {pid for pid in pending if pid in ours or os.path.exists(f"/proc/{pid}")}
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.002)

    def _owners(self, pid: int, start: int) -> set[int]:
        """The running attempts stray ``pid`` may belong to (see the module doc)."""
        prefix = TOKEN_VAR.encode() + b"="
        for entry in environ(pid):
            if entry.startswith(prefix):
                key = self._tokens.get(entry[len(prefix) :])
                if key is not None:
                    return {key}
                if entry[len(prefix) :].startswith(f"{os.getpid()}.".encode()):
                    return set()  # the token of one of ours that has ended
                break  # another monitor's token (a nested gristmill): judge by ancestry
        running = self._attempts.values()
        recorded = {a.key for a in running if a.tree.get(pid) == start}
        return recorded or {a.key for a in running if a.born <= start}

    def _finish(self, attempt: _Attempt) -> AttemptResult:
        # The leader is a zombie until wait4, so its pgid cannot be reused yet: kill
        # whatever it left running in its group first (a forked `sleep 1000 &`).
        _killpg(attempt.pid, signal.SIGKILL)
        killed = self._kill_leftovers(attempt)
        try:
            _, status, usage = os.wait4(attempt.pid, 0)
        except ChildProcessError:  # reaped elsewhere: how it ended is not known
            return self._gone(attempt)
        if killed and self.reaper:
            self._reap_killed(attempt, killed)
        ended, elapsed = time.time(), time.monotonic() - attempt.t0
        cpu = usage.ru_utime + usage.ru_stime + attempt.stray_cpu
        self._forget(attempt)
        if attempt.proc is not None:
            attempt.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        lost_output = ""
        for pump in attempt.pumps:  # the last of its output, before its result
            if pump.fd >= 0:  # to its end, or what is there if a stray still holds it
                pump.pump(limit=1024)
            lost_output = lost_output or pump.error
            self._unpump(pump)
        # Linux charges the spawner's peak RSS to a child at exec (the vforked child
        # shares our mm then), so ru_maxrss at or below our own peak says nothing.
        peak = attempt.peak
        if usage.ru_maxrss * _MAXRSS_UNIT > attempt.floor:
            peak = max(peak, usage.ru_maxrss * _MAXRSS_UNIT)
        state, code, sig, reason = _classify(attempt, status, peak, self.grace)
        if lost_output:
            if state is JobState.SUCCEEDED:
                state = JobState.FAILED
            reason = f"{reason}; {lost_output}"
        return AttemptResult(state, code, sig, peak or None, elapsed, self.host, attempt.started,
                             ended, reason, cpu_time=round(cpu, 6))

    def _forget(self, attempt: _Attempt) -> None:
        """Stop tracking an ended attempt: its key, its token and its pidfd (or count)."""
        del self._attempts[attempt.key]
        del self._tokens[attempt.token.encode()]
        if attempt.pidfd is not None:
            self.poller.unregister(attempt.pidfd)
            del self._by_fd[attempt.pidfd]
            os.close(attempt.pidfd)
        else:
            self._unwatched -= 1

    def _gone(self, attempt: _Attempt) -> AttemptResult:
        """Forget an attempt whose process was reaped by someone else: LOST (run again)."""
        self._forget(attempt)
        for pump in attempt.pumps:
            pump.pump(limit=1024)
            self._unpump(pump)
        now = time.time()
        return AttemptResult(JobState.LOST, None, None, None, time.monotonic() - attempt.t0,
                             self.host, attempt.started, now,
                             f"process {attempt.pid} was reaped before its exit could be read")

    def _kill_leftovers(self, attempt: _Attempt) -> set[int]:
        """Kill what the ending ``attempt`` left outside its process group: its recorded
        descendants, and the strays no other running attempt may own; the pids killed."""
        if self.reaper:
            self._adopt()  # while the attempt still counts as running: its orphans are its
        roots = dict(attempt.tree)
        for pid, stray in self._strays.items():
            if attempt.key in stray.owners:
                stray.owners.discard(attempt.key)
                if not stray.owners:
                    roots[pid] = stray.start
        # The roots too: one our SIGKILL to the group reached first may already be a
        # zombie, which _kill_trees no longer sees, yet it is ours to reap and count.
        return set(roots) | _kill_trees(roots) if roots else set()

    def close(self) -> None:
        """Kill every stray and recorded descendant left, before the owner exits.

        A reaper also kills any other child that is not an attempt leader, and reaps
        them all (within a second: SIGKILLed processes die at once unless stuck in the
        kernel), so none outlives it as a zombie of init.
        """
        for pump in list(self._pumps.values()):
            pump.pump()
            self._unpump(pump)
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        roots = {pid: stray.start for pid, stray in self._strays.items()}
        for attempt in self._attempts.values():
            roots.update(attempt.tree)
        leaders = {a.pid for a in self._attempts.values()}
        mine = [pid for pid in children(os.getpid()) if pid not in leaders] if self.reaper else []
        for pid in mine:
            start = start_time(pid)
            if start is not None:
                roots[pid] = start
        if roots:
            _kill_trees(roots)
        self._strays.clear()
        deadline = time.monotonic() + 1.0
        for pid in mine:
            with contextlib.suppress(ChildProcessError):
                while not os.waitpid(pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                    time.sleep(0.002)

    def abort(self, reason: str) -> list[tuple[int, AttemptResult]]:
        """SIGKILL every attempt and reap it as FAILED with ``reason`` (for fatal errors)."""
        results = []
        for attempt in list(self._attempts.values()):
            _killpg(attempt.pid, signal.SIGKILL)
            result = self._finish(attempt)
            failed = result.evolve(state=JobState.FAILED, reason=reason)
            results.append((attempt.key, failed))
        return results


def _record_tree(attempt: _Attempt, procs: Mapping[int, Proc]) -> None:
    """Add the attempt's live descendants to its tree; forget those that ended."""
    leader = procs.get(attempt.pid)
    tree = {pid: start for pid, start in attempt.tree.items()
            if pid in procs and procs[pid].start == start and not procs[pid].zombie}
    if leader is not None:
        for pid in descendants({attempt.pid: leader.start}, procs) - {attempt.pid}:
            tree[pid] = procs[pid].start
    attempt.tree = tree


#: Rounds of freeze-and-look before the kill: each finds the children the last one froze.
_KILL_ROUNDS = 16


def _kill_trees(roots: Mapping[int, int]) -> set[int]:
    """SIGKILL ``roots`` (pid -> start time) and all their descendants; the pids killed.

    Each is frozen first (SIGSTOP: a fork in flight fails and is not restarted until
    it resumes), then /proc is read again for children of the frozen, until a look
    finds none new; then all are killed. A process that kept forking while being
    killed one by one could otherwise leave a child behind.
    """
    frozen: set[int] = set()
    pinned = dict(roots)
    for _ in range(_KILL_ROUNDS):
        procs = table()
        found = descendants(pinned, procs) - frozen
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
            pinned[pid] = procs[pid].start
        frozen |= found
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return frozen


def _classify(
    attempt: _Attempt, status: int, peak: int, grace: float
) -> tuple[JobState, int | None, int | None, str]:
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    forced = f" (ignored SIGTERM; killed by SIGKILL after {grace:g} s)" if attempt.forced else ""
    limit, verdict = attempt.mem_limit, attempt.verdict
    if verdict is JobState.CANCELLED:
        return JobState.CANCELLED, code, sig, "cancelled" + forced
    if verdict is JobState.TIMEOUT:
        from gristmill.units import format_duration  # imports re: only for a timeout

        limit_text = format_duration(math.ceil(attempt.runtime_limit or 0))
        return JobState.TIMEOUT, code, sig, f"exceeded runtime {limit_text}{forced}"
    # Ours, or a SIGKILL from elsewhere (the kernel's OOM killer) at the limit.
    if verdict is JobState.OOM or (sig == signal.SIGKILL and limit is not None and peak >= limit):
        reason = f"exceeded memory limit {human_size(limit or 0)} (peak {human_size(peak)})"
        return JobState.OOM, code, sig, reason
    if sig is not None:
        return JobState.FAILED, code, sig, f"killed by {signal_name(sig)}"
    state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
    return state, code, sig, f"exit code {code}"


def _spawn_failure(
    exc: OSError | ValueError, program: str, cwd: PathLike | None
) -> tuple[int | None, str]:
    if not isinstance(exc, OSError):  # no command line can carry a NUL byte
        return 126, f"cannot run {program}: {exc} in its arguments or environment"
    if cwd is not None and exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
        return None, f"cannot enter working directory {os.fspath(cwd)}: {exc.strerror}"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return 127, f"command not found: {program}"
    if isinstance(exc, PermissionError):
        return 126, f"permission denied: {program}"
    return 126, f"cannot run {program}: {exc.strerror or exc}"


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` ended, without reaping it (so its process group stays ours); a pid
    that is no child of ours (reaped elsewhere) has ended too."""
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return False  # pragma: no cover - every Unix we support has waitid


def _born(pid: int) -> int:
    """The start time of ``pid``, a zombie among them (it keeps its stat line); 0 if gone."""
    fields = stat_fields(pid)
    try:
        return 0 if fields is None else int(fields[19])
    except (ValueError, IndexError):
        return 0
