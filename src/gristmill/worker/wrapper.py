"""Run one attempt of a task and record how it ended; ``python -m gristmill.worker``.

:func:`run_attempt` runs ``argv`` once through a :class:`gristmill.worker.monitor.Monitor`
(own process group, runtime and memory limits) and returns its
:class:`gristmill.worker.result.AttemptResult`. ``python -m gristmill.worker`` does the same
inside a Slurm or Grid Engine batch job and writes the result file the backend reads.
The result type, the result file and the monitor live in :mod:`gristmill.worker.result` and
:mod:`gristmill.worker.monitor`; their names are re-exported here.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Mapping, Sequence

from gristmill.worker.monitor import Monitor
from gristmill.worker.result import AttemptResult, PathLike, write_result


def run_attempt(
    argv: Sequence[str], *, stdout: PathLike, stderr: PathLike, mem_limit: int | None = None,
    runtime_limit: float | None = None, env: Mapping[str, str] | None = None,
    cwd: PathLike | None = None, grace: float = 5.0,
) -> AttemptResult:
    """Run ``argv`` once in its own process group, enforcing the limits, and say how it ended."""
    monitor = Monitor(grace=grace)
    return _drive(monitor, argv, stdout, stderr, mem_limit, runtime_limit, env, cwd, None)


def _drive(
    monitor: Monitor, argv: Sequence[str], stdout: PathLike, stderr: PathLike,
    mem_limit: int | None, runtime_limit: float | None, env: Mapping[str, str] | None,
    cwd: PathLike | None, cancel_fd: int | None,
) -> AttemptResult:
    result = monitor.start(0, argv, stdout=stdout, stderr=stderr, mem_limit=mem_limit,
                           runtime_limit=runtime_limit, env=env, cwd=cwd)
    while result is None:
        for fd, _ in monitor.wait():
            if fd == cancel_fd:
                os.read(fd, 512)
                monitor.cancel(0)
        for _, finished in monitor.service():
            result = finished
    return result


def exit_status(result: AttemptResult) -> int:
    """The shell's view of an attempt: its exit code, or 128 + the signal that killed it."""
    if result.exit_code is not None:
        return result.exit_code
    return 128 + result.signal if result.signal is not None else 1


def main(args: Sequence[str] | None = None) -> int:
    """Run one attempt from the command line and write its result; exit as the task did.

    ``python -m gristmill.worker --result R --stdout O --stderr E [--key KEY] [--mem BYTES]
    [--runtime SECONDS] [--grace SECONDS] -- argv...``. ``--key`` names the attempt in the
    result (every backend gives it; the engine believes only a result naming the attempt
    it expects). SIGTERM, SIGINT or SIGHUP to the wrapper cancels the attempt (and
    CANCELLED is recorded).
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
    options, extra = parser.parse_known_args(words[:split])
    if extra or not command:
        parser.error(f"give the command to run after `--` (got {' '.join(extra) or 'none'})")
    monitor = Monitor(grace=options.grace)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # the wakeup fd carries it to the loop
    monitor.poller.register(wake_r, select.POLLIN)
    result = _drive(monitor, command, options.stdout, options.stderr, options.mem,
                    options.runtime, None, None, wake_r)
    write_result(options.result, result, key=options.key)
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
