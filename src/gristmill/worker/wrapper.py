"""Run one attempt of a task and record how it ended; ``python -m gristmill.worker``.

:func:`run_attempt` runs ``argv`` once through a :class:`gristmill.worker.monitor.Monitor`
(own process group, runtime and memory limits) and returns its
:class:`gristmill.worker.result.AttemptResult`. ``python -m gristmill.worker`` does the same
inside a Slurm or Grid Engine batch job and writes the result file the backend reads.
The result type, the result file and the monitor live in :mod:`gristmill.worker.result` and
:mod:`gristmill.worker.monitor`; their names are re-exported here.

``python -m gristmill.worker`` is a child subreaper: whatever the task daemonizes, even
with ``setsid`` and an emptied environment, is reparented to it and killed when the
attempt ends. A start that fails for want of descriptors, processes or memory (a busy
node) is tried again with a growing pause for up to ``--patience`` seconds; if the node
never recovers, the result is LOST (the engine runs the attempt again without spending
the task's retries) and the exit code :data:`EXIT_LOST`.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gristmill.states import JobState
from gristmill.worker.monitor import Monitor, become_subreaper, transient
from gristmill.worker.result import AttemptResult, PathLike, write_result

#: The wrapper's exit code when the attempt could not start for want of the node's
#: resources (EX_TEMPFAIL): the scheduler's record says "try again", as the result does.
EXIT_LOST = 75
#: Seconds between tries of a start that lacked resources: doubling from the first to the last.
START_BACKOFF = (0.1, 5.0)


def run_attempt(
    argv: Sequence[str], *, stdout: PathLike, stderr: PathLike, mem_limit: int | None = None,
    runtime_limit: float | None = None, env: Mapping[str, str] | None = None,
    cwd: PathLike | None = None, grace: float = 5.0,
) -> AttemptResult:
    """Run ``argv`` once in its own process group, enforcing the limits, and say how it ended.

    In the calling process, which is not made a subreaper (it may have children of its
    own): a daemon the task detaches is killed only if a scan of /proc saw it first.
    A start that lacks resources is not tried again: the result is LOST.
    """
    monitor = Monitor(grace=grace)
    try:
        return _drive(monitor, argv, stdout, stderr, mem_limit, runtime_limit, env, cwd, None)
    finally:
        monitor.close()


def _drive(
    monitor: Monitor, argv: Sequence[str], stdout: PathLike, stderr: PathLike,
    mem_limit: int | None, runtime_limit: float | None, env: Mapping[str, str] | None,
    cwd: PathLike | None, cancel_fd: int | None, patience: float = 0.0,
) -> AttemptResult:
    result = _start(monitor, argv, stdout, stderr, mem_limit, runtime_limit, env, cwd,
                    cancel_fd, patience)
    while result is None:
        for fd, _ in monitor.wait():
            if fd == cancel_fd:
                os.read(fd, 512)
                monitor.cancel(0)
        for _, finished in monitor.service():
            result = finished
    return result


def _start(
    monitor: Monitor, argv: Sequence[str], stdout: PathLike, stderr: PathLike,
    mem_limit: int | None, runtime_limit: float | None, env: Mapping[str, str] | None,
    cwd: PathLike | None, cancel_fd: int | None, patience: float,
) -> AttemptResult | None:
    """Start the attempt, trying again for up to ``patience`` seconds while the node lacks
    resources; ``None`` once it runs, else the result (LOST when patience ran out).

    A signal on ``cancel_fd`` while waiting ends it CANCELLED, as it would a running task.
    """
    give_up, pause = time.monotonic() + patience, START_BACKOFF[0]
    while True:
        result = monitor.start(0, argv, stdout=stdout, stderr=stderr, mem_limit=mem_limit,
                               runtime_limit=runtime_limit, env=env, cwd=cwd)
        if result is None or result.state is not JobState.LOST:
            return result
        left = give_up - time.monotonic()
        if left <= 0:
            if patience <= 0:
                return result
            return attrs.evolve(result, reason=f"{result.reason} (the node lacked "
                                f"resources for {patience:g} s)")
        logger = _logger()
        logger.warning("{}; the node is short of descriptors, processes or memory: trying "
                       "again in {:.1f} s", result.reason, min(pause, left))
        if cancel_fd is not None:
            ready = select.select([cancel_fd], [], [], min(pause, left))[0]
            if ready:
                os.read(cancel_fd, 512)
                now = time.time()
                return AttemptResult(JobState.CANCELLED, None, None, None, 0.0, monitor.host,
                                     now, now, "cancelled before it started")
        else:
            time.sleep(min(pause, left))
        pause = min(START_BACKOFF[1], pause * 2)


def _logger() -> Any:
    """loguru's logger, gristmill's records enabled: the wrapper is a program, and what it
    says lands in the job's log. Imported only when needed: the wrapper's start stays light."""
    from loguru import logger

    logger.enable("gristmill")
    return logger


def _write(path: str, result: AttemptResult, key: str | None, patience: float) -> bool:
    """Write the result, trying again while descriptors lack; whether it was written."""
    give_up, pause = time.monotonic() + patience, START_BACKOFF[0]
    while True:
        try:
            write_result(path, result, key=key)
            return True
        except OSError as exc:
            if not transient(exc):
                raise
            if time.monotonic() >= give_up:
                _logger().error("cannot write the result file {}: {}", path, exc)
                return False
            _logger().warning("cannot write the result file {} yet: {}", path, exc)
        time.sleep(pause)
        pause = min(START_BACKOFF[1], pause * 2)


def exit_status(result: AttemptResult) -> int:
    """The shell's view of an attempt: its exit code, or 128 + the signal that killed it
    (:data:`EXIT_LOST` for an attempt the node had no resources to start)."""
    if result.state is JobState.LOST:
        return EXIT_LOST
    if result.exit_code is not None:
        return result.exit_code
    return 128 + result.signal if result.signal is not None else 1


def main(args: Sequence[str] | None = None) -> int:
    """Run one attempt from the command line and write its result; exit as the task did.

    ``python -m gristmill.worker --result R --stdout O --stderr E [--key KEY] [--mem BYTES]
    [--runtime SECONDS] [--grace SECONDS] [--patience SECONDS] -- argv...``. ``--key``
    names the attempt in the result (every backend gives it; the engine believes only a
    result naming the attempt it expects). SIGTERM, SIGINT or SIGHUP to the wrapper
    cancels the attempt (and CANCELLED is recorded).
    """
    import argparse

    from gristmill.resources import parse_memory

    words = list(sys.argv[1:] if args is None else args)
    split = words.index("--") if "--" in words else len(words)
    command = words[split + 1 :]
    parser = argparse.ArgumentParser(prog="python -m gristmill.worker",
                                     usage="%(prog)s --result R --stdout O --stderr E "
                                     "[--key KEY] [--mem BYTES] [--runtime SECONDS] -- argv...")
    parser.add_argument("--result", required=True, help="where to write the attempt's result")
    parser.add_argument("--stdout", required=True)
    parser.add_argument("--stderr", required=True)
    parser.add_argument("--key", help="the attempt the result belongs to (the engine's key)")
    parser.add_argument("--mem", type=parse_memory, help="memory limit (bytes or e.g. 10G)")
    parser.add_argument("--runtime", type=float, help="runtime limit in seconds")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--patience", type=float, default=300.0,
                        help="seconds to keep trying a start the node lacks resources for")
    options, extra = parser.parse_known_args(words[:split])
    if extra or not command:
        parser.error(f"give the command to run after `--` (got {' '.join(extra) or 'none'})")
    monitor = Monitor(grace=options.grace, reaper=become_subreaper())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # the wakeup fd carries it to the loop
    monitor.poller.register(wake_r, select.POLLIN)
    try:
        result = _drive(monitor, command, options.stdout, options.stderr, options.mem,
                        options.runtime, None, None, wake_r, options.patience)
    finally:
        monitor.close()  # what the task left behind dies with the attempt, not with the job
    if not _write(options.result, result, options.key, options.patience):
        return EXIT_LOST  # no result: whatever the task did, the node lost its record
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
