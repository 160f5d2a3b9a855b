"""The Backend protocol: the only thing the engine knows about where work runs.

It is batch-first: ``submit`` takes every ready job of a dispatch cycle at once
(so a scheduler backend can pack arrays) and ``poll`` answers for every live job
with one scheduler query. Backends never touch the run store; the engine
records whatever they report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from gristmill.resources import Resources
from gristmill.states import JobState

if TYPE_CHECKING:
    from gristmill.worker.result import AttemptResult


@attrs.frozen
class JobRequest:
    """One attempt of one node, fully resolved: what to run, with what, where to log."""

    key: str  # engine-chosen, unique per attempt within a run ("<node>.<attempt>")
    task: str
    job_name: str
    argv: tuple[str, ...]
    resources: Resources
    stdout: Path
    stderr: Path
    result_path: Path  # where the worker wrapper writes its AttemptResult
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None
    #: Keys of requests in the same ``submit`` call that must succeed first. Only a
    #: backend declaring ``Capabilities.dag`` gets any; others only see ready nodes.
    after: tuple[str, ...] = ()
    #: How many times a ``dag`` backend may run this node before it counts as failed;
    #: other backends get 1, the engine retrying by itself.
    max_attempts: int = 1


@attrs.frozen
class JobHandle:
    """A backend's name for a submitted attempt; enough to poll, cancel or re-adopt it.

    It holds only strings so the engine can persist it and rebuild it after a crash.
    """

    backend: str
    job_id: str
    key: str
    result_path: str


@attrs.frozen
class JobStatus:
    """A backend's answer for one job at one poll."""

    state: JobState
    exit_code: int | None = None
    signal: int | None = None
    peak_rss: int | None = None  # bytes
    elapsed: float | None = None  # seconds
    host: str | None = None
    reason: str = ""

    @classmethod
    def from_result(cls, result: AttemptResult) -> JobStatus:
        """What a finished attempt's result file says, as a backend reports it."""
        return cls(
            state=result.state, exit_code=result.exit_code, signal=result.signal,
            peak_rss=result.peak_rss, elapsed=result.elapsed, host=result.host,
            reason=result.reason,
        )


@attrs.frozen
class Capabilities:
    """What a backend can do, declared as data (as Snakemake's executor settings do)."""

    arrays: bool = False  # packs similar jobs into one scheduler call
    reattach: bool = True  # can re-adopt live jobs after an engine restart
    enforces_memory: bool = False
    enforces_runtime: bool = False
    #: Runs dependencies and retries itself (jobmon): the engine hands it every node
    #: left to run in one ``submit``, with ``after`` and ``max_attempts`` filled in,
    #: and then only mirrors the states it reports.
    dag: bool = False


@runtime_checkable
class Backend(Protocol):
    """Where attempts run. See docs/architecture.md, "The backend protocol"."""

    name: str
    capabilities: Capabilities

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """Start every job; one handle per job, in order. May pack arrays."""
        ...

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """The state of every handle, from ONE scheduler query. Omitted handles are unchanged."""
        ...

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Stop every job named, whatever its state; unknown ones are ignored."""
        ...

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Re-adopt jobs submitted by an earlier engine on the same run."""
        ...

    def wait(self, timeout: float) -> None:
        """Block until something may have changed, at most ``timeout`` seconds.

        A scheduler backend simply sleeps; the local backend wakes as soon as an
        attempt ends, so short tasks are not slowed down by a poll interval.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (helper processes, connections); jobs keep running."""
        ...


class SleepingWaitMixin:
    """``wait`` for backends that can only learn of changes by polling."""

    def wait(self, timeout: float) -> None:
        time.sleep(max(0.0, timeout))
