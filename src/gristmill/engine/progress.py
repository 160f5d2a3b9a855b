"""What a run looks like while it runs, for whoever watches (the CLI's live display).

The engine hands an :class:`Observer` a :class:`Snapshot` at most every
``observer.interval`` seconds, and a :class:`Failure` for each node that failed for
good. A snapshot counts node states per task straight from the engine's one-byte-per-
node state array (``bytes.count`` over each unit's contiguous id range), so it costs
about a millisecond per million nodes and nothing between snapshots: the engine's
loop is not slowed by being watched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import attrs

from gristmill.graph.resolved import Graph
from gristmill.states import NodeState

_COUNTED = (NodeState.PENDING, NodeState.READY, NodeState.SUBMITTED, NodeState.RUNNING,
            NodeState.DONE, NodeState.FAILED, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED)


@attrs.frozen
class TaskProgress:
    """One task's nodes by state."""

    task: str
    total: int
    waiting: int  # PENDING and READY: not handed to the backend yet
    queued: int  # SUBMITTED: handed over, not known to run yet
    running: int
    done: int
    failed: int  # FAILED, UPSTREAM_FAILED and CANCELLED

    @property
    def finished(self) -> int:
        return self.done + self.failed


@attrs.frozen
class Snapshot:
    """Every task's progress, the time the run has taken and an estimate of what is left."""

    tasks: tuple[TaskProgress, ...]
    elapsed: float
    #: Seconds left at the pace nodes finished in this run so far (None: no pace yet).
    eta: float | None
    final: bool = False

    @property
    def total(self) -> TaskProgress:
        sums = [sum(getattr(t, f) for t in self.tasks)
                for f in ("total", "waiting", "queued", "running", "done", "failed")]
        return TaskProgress("all", *sums)


@attrs.frozen
class Failure:
    """A node that failed for good: which, and why (as the store records it)."""

    task: str
    job_name: str
    reason: str


class Observer(Protocol):
    """Receives progress while an engine runs (see :func:`snapshot`)."""

    #: Seconds at least between two snapshots.
    interval: float

    def update(self, snapshot: Snapshot) -> None: ...

    def failed(self, failure: Failure) -> None: ...


def snapshot(graph: Graph, states: bytearray, *, started: float, finished_before: int,
             final: bool = False) -> Snapshot:
    """Count ``states`` per task; ``finished_before``: nodes already final when the run
    (this engine) started, which do not count towards its pace."""
    counts: dict[str, list[int]] = {}
    names = [unit.task.name for unit in graph.workflow.units]
    for unit, name in enumerate(names):
        lo = graph.starts[unit]
        part = states[lo:lo + graph.owned[unit]]
        by_state = [part.count(int(s)) for s in _COUNTED]
        into = counts.setdefault(name, [0] * len(_COUNTED))
        for i, n in enumerate(by_state):
            into[i] += n
    tasks = []
    for name, (pending, ready, submitted, running, done, failed, upstream, cancelled) \
            in counts.items():
        tasks.append(TaskProgress(
            task=name, total=pending + ready + submitted + running + done + failed + upstream
            + cancelled, waiting=pending + ready, queued=submitted, running=running, done=done,
            failed=failed + upstream + cancelled))
    elapsed = max(time.monotonic() - started, 1e-9)
    result = Snapshot(tuple(tasks), elapsed, None, final)
    total = result.total
    finished_now = total.finished - finished_before
    left = total.total - total.finished
    eta = left * elapsed / finished_now if finished_now > 0 and not final else None
    return attrs.evolve(result, eta=eta)


def finished_count(states: bytearray, codes: Sequence[int] = (
        NodeState.DONE, NodeState.FAILED, NodeState.UPSTREAM_FAILED)) -> int:
    """How many nodes are final: the baseline of a run's pace."""
    return sum(states.count(int(code)) for code in codes)
