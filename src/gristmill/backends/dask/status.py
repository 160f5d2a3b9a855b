"""How the dask backend reads an attempt's state: result files, futures, the scheduler.

The result file the attempt writes is the truth whenever it exists. Without one, a
future dask finished or failed says how the task ended, and for jobs the backend holds
no future of (adopted from an earlier engine, or dropped by dask without being asked)
:class:`Tracker` asks the scheduler for their task states, all in one call.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import attrs

from gristmill.backends.base import JobHandle, JobStatus
from gristmill.backends.batch.commands import Vanished
from gristmill.backends.dask.task import cancel_marker
from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, read_result

RUNNING = JobStatus(JobState.RUNNING)
#: Scheduler task states of a task that has not ended yet.
_WAITING = ("processing", "released", "waiting", "queued", "no-worker")


def key_of(handle: JobHandle) -> str:
    """The dask key in a job id ``<key>@<scheduler address>``."""
    return handle.job_id.partition("@")[0]


def file_status(handle: JobHandle) -> JobStatus | None:
    """What the attempt's result file says; ``None`` while there is none, LOST when it is
    corrupt or another attempt's."""
    try:
        result = read_result(handle.result_path, key=handle.key)
    except BackendError as exc:
        return JobStatus(JobState.LOST, reason=str(exc))
    return None if result is None else JobStatus.from_result(result)


def ended(handle: JobHandle, future: Any, state: str, cancelled: bool) -> JobStatus | None:
    """How a task whose future is no longer pending ended; ``None`` when dask dropped it
    unasked (a scheduler restart, a lost connection) and only the scheduler can tell."""
    status = file_status(handle)
    if status is not None:
        return status
    if state == "finished":  # the result file is not visible here (yet): ask the worker
        with contextlib.suppress(Exception):
            return JobStatus.from_result(AttemptResult.from_dict(future.result(timeout=30)))
        return None
    if state == "error":
        return JobStatus(JobState.FAILED, reason=explain(future.exception(timeout=30)))
    if cancelled:
        return JobStatus(JobState.CANCELLED, reason="cancelled")
    return None


def explain(exc: BaseException | None) -> str:
    """A failed dask task's exception, said for people (with the fix when we know it)."""
    text = f"the dask task raised {type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError):
        return f"{text}; install gristmill and the tasks' package on every dask worker"
    if type(exc).__name__ == "KilledWorker":
        return f"{text}; the workers that ran it died (out of memory? killed?)"
    return text


@attrs.define
class Tracker:
    """Jobs followed by key through the scheduler: one ``get_task_status`` per ``every`` s.

    A key the scheduler no longer knows is what its result file says, CANCELLED when its
    ``.cancel`` marker is there, or LOST once it has had neither for ``lost_after`` s.
    """

    address: str
    lost_after: float
    every: float = 1.0
    keys: set[str] = attrs.field(factory=set)
    running: set[str] = attrs.field(factory=set)  # reported RUNNING
    vanished: Vanished = attrs.field(init=False)
    next_look: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.vanished = Vanished(grace=self.lost_after)

    def poll(self, client: Any, handles: Sequence[JobHandle]) -> dict[JobHandle, JobStatus]:
        """The handles whose state changed; ``{}`` when asked again within ``every`` s."""
        now = time.monotonic()
        if now < self.next_look:
            return {}
        self.next_look = now + self.every
        keys = [key_of(h) for h in handles]
        try:
            states = client.sync(client.scheduler.get_task_status, keys=keys)
        except (OSError, RuntimeError) as exc:
            raise BackendError(f"cannot reach the dask scheduler at {self.address}: {exc}",
                               transient=True) from None
        out: dict[JobHandle, JobStatus] = {}
        for handle, key in zip(handles, keys):
            state = states.get(key)
            if state in _WAITING:
                self.vanished.seen(key)
                if state == "processing" and key not in self.running:
                    self.running.add(key)  # on a worker: running or about to
                    out[handle] = RUNNING
                continue
            status = file_status(handle)
            if status is None and os.path.exists(cancel_marker(handle.result_path)):
                status = JobStatus(JobState.CANCELLED, reason="cancelled before it started")
            elif status is None and state == "erred":
                status = JobStatus(JobState.FAILED, reason=(
                    "dask reports the task failed; its exception is in the dask worker's log"))
            elif status is None and self.vanished.missing(key):
                status = lost(handle, self.address)
            if status is not None:
                out[handle] = status
                self.keys.discard(key)
                self.running.discard(key)
                self.vanished.seen(key)
        return out


def lost(handle: JobHandle, address: str) -> JobStatus:
    return JobStatus(JobState.LOST, reason=(
        f"the dask scheduler at {address} does not know task {key_of(handle)} and it left "
        f"no result at {handle.result_path}"))
