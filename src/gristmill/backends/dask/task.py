"""What a dask worker runs for one gristmill attempt: the worker wrapper, in a worker thread.

:func:`run_attempt` is the function :class:`gristmill.backends.dask.backend.DaskBackend` submits.
It drives a :class:`gristmill.worker.monitor.Monitor` exactly as ``python -m gristmill.worker``
does (own process group, runtime and memory limits, exit code, signal, peak RSS), writes
the result file, and returns the result as a dict. It needs no interpreter of its own,
so a short task costs a ``posix_spawn``, not a Python start-up.

Cancelling: dask cannot interrupt a running task, so the backend leaves
``<result>.cancel`` (the same marker the local backend uses) and the loop here looks for
it every :data:`CANCEL_SCAN` seconds, then stops the attempt (SIGTERM, SIGKILL after the
grace). A task that starts after its marker was written ends CANCELLED without running.

It tells the client when it starts with a dask event on :data:`TOPIC` (pushed to every
subscribed client, no polling), and tags the attempt's processes with
``GRISTMILL_DASK_KEY=<key>`` in their environment so that a later engine can find what
an engine's own, now dead, ``LocalCluster`` left running on this machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import attrs

from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.monitor import Monitor
from gristmill.worker.procfs import environ, pids
from gristmill.worker.result import AttemptResult, read_result, write_result

#: Seconds between looks for the ``.cancel`` marker of a running attempt.
CANCEL_SCAN = 0.25
#: The dask event topic on which attempts announce that they started.
TOPIC = "gristmill"
#: Environment variable carrying the dask key into every process of an attempt.
KEY_VAR = "GRISTMILL_DASK_KEY"


@attrs.frozen
class AttemptSpec:
    """Everything a worker needs to run one attempt; plain values, so it pickles small."""

    key: str  # the dask key
    attempt: str  # the engine's key of the attempt, written into its result
    argv: tuple[str, ...]
    stdout: str
    stderr: str
    result: str
    mem: int | None
    runtime: float | None
    env: tuple[tuple[str, str], ...]
    cwd: str | None
    grace: float


def cancel_marker(result_path: str) -> str:
    return result_path + ".cancel"


def run_attempt(spec: AttemptSpec) -> dict[str, object]:
    """Run one attempt on this worker, write its result file and return the result.

    When dask runs the task again (its worker died after the attempt ended), the result
    file already written is returned instead of running the command twice.
    """
    with contextlib.suppress(BackendError):  # corrupt, or another attempt's: run it
        done = read_result(spec.result, key=spec.attempt)
        if done is not None:
            return done.to_dict()
    _announce(spec.key)
    marker = cancel_marker(spec.result)
    monitor = Monitor(grace=spec.grace)
    if os.path.exists(marker):
        now = time.time()
        result = AttemptResult(JobState.CANCELLED, None, None, None, 0.0, monitor.host, now,
                               now, "cancelled before it started")
    else:
        result = _drive(monitor, spec, marker)
    result = result.evolve(key=spec.attempt)
    write_result(spec.result, result, key=spec.attempt)
    with contextlib.suppress(OSError):
        os.unlink(marker)
    return result.to_dict()


def _drive(monitor: Monitor, spec: AttemptSpec, marker: str) -> AttemptResult:
    """Run the attempt to its end, stopping it once ``marker`` appears."""
    env = {**monitor.environ, **dict(spec.env), KEY_VAR: spec.key}
    cwd = None if spec.cwd is None or spec.cwd == os.getcwd() else spec.cwd
    result = monitor.start(0, spec.argv, stdout=spec.stdout, stderr=spec.stderr,
                           mem_limit=spec.mem, runtime_limit=spec.runtime, env=env, cwd=cwd)
    cancelled = False
    while result is None:
        monitor.wait(CANCEL_SCAN)
        if not cancelled and os.path.exists(marker):
            monitor.cancel(0)
            cancelled = True
        for _, finished in monitor.service():
            result = finished
    return result


def _announce(key: str) -> None:
    """Tell subscribed clients that ``key`` started (a no-op outside a dask worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(TOPIC, {"key": key})


def stop_orphans(keys: set[str]) -> dict[str, list[int]]:
    """Kill this machine's processes whose environment names one of ``keys``; pids by key.

    They are attempts of a dead engine's LocalCluster: nothing watches them any more.
    """
    prefix = KEY_VAR.encode() + b"="
    found: dict[str, list[int]] = {}
    for pid in pids():
        key = next((e[len(prefix):].decode(errors="replace") for e in environ(pid)
                    if e.startswith(prefix)), None)
        if key not in keys:
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            found.setdefault(key, []).append(pid)
    return found
