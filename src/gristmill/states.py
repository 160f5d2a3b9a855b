"""The two state machines' vocabularies: a node's state and an attempt's (a job's) state.

A leaf module: the DSL, engine, store, backends and worker all speak these, so none
of them has to import another layer for an enum.
"""

from __future__ import annotations

import enum


class NodeState(enum.IntEnum):
    """A node's state; a retried attempt goes back to READY.

    The transitions and when each happens: docs/architecture.md, "Node states".
    """

    PENDING = 0
    READY = 1
    SUBMITTED = 2
    RUNNING = 3
    DONE = 4
    FAILED = 5
    UPSTREAM_FAILED = 6
    CANCELLED = 7

    @property
    def final(self) -> bool:
        return self in (NodeState.DONE, NodeState.FAILED, NodeState.UPSTREAM_FAILED)


class JobState(enum.Enum):
    """What a backend can say about one job.

    LOST, PREEMPTED and NODE_FAIL are the infrastructure's doing, not the task's: the
    engine runs such an attempt again as it was, without spending the task's retries
    (docs/architecture.md, "Retry, escalation").
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    OOM = "OOM"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    LOST = "LOST"
    PREEMPTED = "PREEMPTED"  # the scheduler stopped it for a job of higher priority
    NODE_FAIL = "NODE_FAIL"  # the node it ran on (or was to boot on) failed

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)
