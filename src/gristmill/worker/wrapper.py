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

from gristmill.states import JobState
from gristmill.worker.monitor import Monitor, become_subreaper, transient
from gristmill.worker.result import AttemptResult, write_result

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from gristmill.worker.result import PathLike

#: The wrapper's exit code when the attempt could not start for want of the node's
#: resources (EX_TEMPFAIL): the scheduler's record says "try again", as the result does.
EXIT_LOST = 75
#: Seconds between tries of a start that lacked resources: doubling from the first to the last.
START_BACKOFF = (0.1, 5.0)


class _Options:
    """The wrapper's options, as argparse would give them."""

    def __init__(self, *, result: str, stdout: str, stderr: str, key: str | None,
                 mem: int | None, runtime: float | None, grace: float, patience: float) -> None:
        self.result, self.stdout, self.stderr, self.key = result, stdout, stderr, key
        self.mem, self.runtime, self.grace, self.patience = mem, runtime, grace, patience


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
            return result.evolve(reason=f"{result.reason} (the node lacked "
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


def parse_memory(text: str) -> int:
    """:func:`gristmill.units.parse_memory`, imported only for a ``--mem`` (units imports re)."""
    from gristmill import units

    return units.parse_memory(text)


#: The wrapper's options, each converted as the command line gives it.
_CONVERT: dict[str, Callable[[str], object]] = {
    "--result": str, "--stdout": str, "--stderr": str, "--key": str, "--mem": parse_memory,
    "--runtime": float, "--grace": float, "--patience": float,
}
_DEFAULTS: dict[str, Any] = {
    "key": None, "mem": None, "runtime": None, "grace": 5.0, "patience": 300.0,
}


def _parser() -> argparse.ArgumentParser:
    import argparse

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
    return parser


def _plain_options(words: Sequence[str]) -> dict[str, Any] | None:
    """The options when written as every backend writes them (``--name value`` or
    ``--name=value``, all valid, the three files given); ``None`` for anything else.

    argparse costs ~7 ms of CPU to build (its formatter imports shutil, which imports
    bz2 and lzma) in every attempt; it now reads only what this does not: abbreviations,
    ``--help``, mistakes, for which it gives its usual messages.
    """
    options: dict[str, Any] = dict(_DEFAULTS)
    it = iter(words)
    for word in it:
        name, equals, value = word.partition("=")
        convert = _CONVERT.get(name)
        if convert is None:
            return None
        if not equals:
            value = next(it, "-")
            if value.startswith("-"):  # argparse would read an option or refuse it
                return None
        try:
            options[name[2:]] = convert(value)
        except ValueError:  # SpecError is one
            return None
    return options if {"result", "stdout", "stderr"} <= set(options) else None


def main(args: Sequence[str] | None = None) -> int:
    """Run one attempt from the command line and write its result; exit as the task did.

    ``python -m gristmill.worker --result R --stdout O --stderr E [--key KEY] [--mem BYTES]
    [--runtime SECONDS] [--grace SECONDS] [--patience SECONDS] -- argv...``. ``--key``
    names the attempt in the result (every backend gives it; the engine believes only a
    result naming the attempt it expects). SIGTERM, SIGINT or SIGHUP to the wrapper
    cancels the attempt (and CANCELLED is recorded).
    """
    words = list(sys.argv[1:] if args is None else args)
    split = words.index("--") if "--" in words else len(words)
    command = words[split + 1 :]
    found = _plain_options(words[:split]) if command else None
    if found is None:
        parser = _parser()
        parsed, extra = parser.parse_known_args(words[:split])
        if extra or not command:
            parser.error(f"give the command to run after `--` (got {' '.join(extra) or 'none'})")
        found = vars(parsed)
    options = _Options(**found)
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
