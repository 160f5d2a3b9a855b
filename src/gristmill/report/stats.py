"""Exact per-task aggregates of a run's attempts, gathered in one pass in Python, and
failure clusters.

:class:`TaskStats` is the plain definition of every per-task figure, one attempt at a
time: the summary and the report get the same figures from SQLite
(:mod:`~gristmill.report.aggregate`, many times faster), and the tests hold the two
equal. The values a quantile needs are kept in typed arrays (8 bytes each), never as
Python objects, and sorted once at the end.

Failures are clustered by what a person would fix at once: the cause (OOM, TIMEOUT, an
exit code, a signal, LOST), the reason with its numbers blanked out, and the pattern of
the last line of stderr (in a Python task, the exception). Reading stderr costs a file
open per failed attempt, so only the first :data:`STDERR_READS` failures are read; past
that, attempts are clustered by cause and reason alone, and the report says so.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import attrs

from gristmill.report.aggregate import OVER, UNDER, TaskFigures, cpu_efficiency, flag
from gristmill.report.attempts import (
    CAUSE_ORDER,
    OOM,
    TIMEOUT,
    AttemptRow,
    NodeIndex,
    cause_family,
    causes,
    iter_columns,
)
from gristmill.report.failures import tail
from gristmill.states import NodeState
from gristmill.store.db import Store

__all__ = ["OVER", "UNDER", "Cluster", "Quantiles", "RunStats", "TaskStats", "failure_stats",
           "gather", "quantiles", "retry_columns"]

#: Failed attempts whose stderr is read to cluster them by their last line.
STDERR_READS = 20_000
#: How much of the end of a log is read for its last lines.
_TAIL_BYTES = 16 * 1024
#: The states of attempts that have no cause (:func:`.attempts.cause` is ``""``).
_NO_CAUSE = ("SUCCEEDED", "QUEUED", "RUNNING", "SUBMITTED")


_HEX = re.compile(r"\b(?=[0-9a-f]*[0-9])[0-9a-f]{8,}\b|0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def pattern(text: str) -> str:
    """``text`` with ids and numbers blanked (``draw 17 failed`` → ``draw N failed``), so
    that failures differing only in them cluster together."""
    return _NUMBER.sub("N", _HEX.sub("X", text.strip()))[:200]


def error_line(lines: Sequence[str]) -> str:
    """The line of a log that says what went wrong: the last line that is not blank."""
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return ""


class Quantiles(NamedTuple):
    """Five numbers of a distribution, plus how many values and their mean."""

    n: int
    low: float
    q1: float
    median: float
    q3: float
    high: float
    mean: float


def quantiles(values: array[float] | Sequence[float]) -> Quantiles | None:
    """Exact quartiles (linear interpolation, as numpy's default); None for no values."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None

    def at(q: float) -> float:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return Quantiles(n, ordered[0], at(0.25), at(0.5), at(0.75), ordered[-1], sum(ordered) / n)


@attrs.define
class TaskStats:
    """What one task's attempts did; filled by :meth:`add`, one attempt at a time."""

    task: str
    attempts: int = 0
    by_state: Counter[str] = attrs.Factory(Counter)
    #: Attempts after a node's first, by the family of their cause (:data:`CAUSE_ORDER`).
    retries: Counter[str] = attrs.Factory(Counter)
    elapsed: array[float] = attrs.Factory(lambda: array("d"))
    peak: array[float] = attrs.Factory(lambda: array("d"))
    mem_pct: array[float] = attrs.Factory(lambda: array("d"))
    runtime_pct: array[float] = attrs.Factory(lambda: array("d"))
    mem_requested: int | None = None  #: the most any attempt asked for
    runtime_requested: float | None = None
    cores_requested: int | None = None
    #: Peak memory and elapsed time of successful attempts (what ``--suggest`` fits).
    ok_peak: int | None = None
    ok_elapsed: float | None = None
    first_submit: float | None = None
    last_end: float | None = None
    cpu: float = 0.0  #: CPU seconds of the attempts whose CPU time is known
    cpu_wall: float = 0.0  #: their run time times the cores each asked for

    def add(self, row: AttemptRow) -> None:
        self.attempts += 1
        self.by_state[row.state] += 1
        if row.cpu_time is not None and row.elapsed:
            self.cpu += row.cpu_time
            self.cpu_wall += row.elapsed * (row.cores or 1)
        if row.attempt > 1 and row.previous_state is not None:
            self.retries[cause_family(row.retry_cause)] += 1
        if row.mem and (self.mem_requested is None or row.mem > self.mem_requested):
            self.mem_requested = row.mem
        if row.runtime and (self.runtime_requested is None
                            or row.runtime > self.runtime_requested):
            self.runtime_requested = row.runtime
        if row.cores and (self.cores_requested is None or row.cores > self.cores_requested):
            self.cores_requested = row.cores
        if row.elapsed is not None:
            self.elapsed.append(row.elapsed)
            if row.runtime:
                self.runtime_pct.append(100 * row.elapsed / row.runtime)
        if row.peak_rss:
            self.peak.append(row.peak_rss)
            if row.mem:
                self.mem_pct.append(100 * row.peak_rss / row.mem)
        if row.state == "SUCCEEDED":
            if row.peak_rss and (self.ok_peak is None or row.peak_rss > self.ok_peak):
                self.ok_peak = row.peak_rss
            if row.elapsed is not None and (self.ok_elapsed is None
                                            or row.elapsed > self.ok_elapsed):
                self.ok_elapsed = row.elapsed
        if self.first_submit is None or row.submitted < self.first_submit:
            self.first_submit = row.submitted
        if row.ended is not None and (self.last_end is None or row.ended > self.last_end):
            self.last_end = row.ended

    def retries_total(self) -> int:
        return sum(self.retries.values())

    def mem_flag(self) -> str:
        """``under`` (an OOM, or a peak above 90% of the request), ``over`` (every peak
        below 50%), else ``""``."""
        return _flag(self.by_state.get(OOM, 0), self.mem_pct)

    def runtime_flag(self) -> str:
        """As :meth:`mem_flag`, for runtime (TIMEOUT instead of OOM)."""
        return _flag(self.by_state.get(TIMEOUT, 0), self.runtime_pct)

    def figures(self) -> TaskFigures:
        """The figures the summary and the report show, from this one-pass definition."""
        wall = quantiles(self.elapsed)
        return TaskFigures(
            self.task, self.attempts, self.by_state.get(OOM, 0),
            self.by_state.get(TIMEOUT, 0), dict(self.retries),
            None if wall is None else (wall.low, wall.median, wall.high),
            None if not self.peak else int(max(self.peak)), self.mem_requested,
            self.runtime_requested, self.cores_requested, max(self.mem_pct, default=None),
            max(self.runtime_pct, default=None), self.ok_peak, self.ok_elapsed,
            cpu_efficiency(self.cpu, self.cpu_wall))


def _flag(exceeded: int, pct: array[float]) -> str:
    return flag(exceeded, max(pct, default=None))


@attrs.define
class Cluster:
    """Failed attempts that failed the same way; one is kept as the sample."""

    cause: str
    reason: str  #: the reason's pattern (:func:`pattern`)
    line: str  #: the pattern of the last stderr line; "" when not read
    attempts: int = 0
    #: Nodes whose final attempt is in this cluster and that ended FAILED.
    final: int = 0
    tasks: Counter[str] = attrs.Factory(Counter)
    sample_key: str = ""
    sample_job: str = ""
    sample_node: int | None = None
    sample_stderr: str = ""
    sample_reason: str = ""


@attrs.define
class RunStats:
    """Per-task aggregates and failure clusters of every attempt of a run."""

    tasks: dict[str, TaskStats] = attrs.Factory(dict)
    clusters: dict[tuple[str, str, str], Cluster] = attrs.Factory(dict)
    attempts: int = 0
    failed_attempts: int = 0
    #: Failed attempts clustered without reading their stderr (past :data:`STDERR_READS`).
    unread: int = 0
    first_submit: float | None = None
    last_end: float | None = None
    hosts: Counter[str] = attrs.Factory(Counter)

    def add(self, row: AttemptRow) -> None:
        self.attempts += 1
        stats = self.tasks.get(row.task)
        if stats is None:
            stats = self.tasks[row.task] = TaskStats(row.task)
        stats.add(row)
        if row.host:
            self.hosts[row.host] += 1
        if self.first_submit is None or row.submitted < self.first_submit:
            self.first_submit = row.submitted
        if row.ended is not None and (self.last_end is None or row.ended > self.last_end):
            self.last_end = row.ended
        why = row.cause
        if why:
            self._add_failure(row, why)

    def _add_failure(self, row: AttemptRow, why: str) -> None:
        self.add_failure(why, key=row.key, job_name=row.job_name, node=row.node,
                         task=row.task, reason=row.reason, stderr=row.stderr,
                         final=row.last and row.node_state == NodeState.FAILED)

    def add_failure(self, why: str, *, key: str, job_name: str, node: int | None, task: str,
                    reason: str, stderr: str, final: bool) -> None:
        """Count one attempt that did not succeed (``why`` is its cause) in its cluster;
        ``final``: it is its node's last attempt and the node FAILED."""
        self.failed_attempts += 1
        line = ""
        if self.failed_attempts <= STDERR_READS:
            line = pattern(error_line(tail(stderr, 5, size=_TAIL_BYTES)))
        else:
            self.unread += 1
        cluster_key = (why, pattern(reason), line)
        cluster = self.clusters.get(cluster_key)
        if cluster is None:
            cluster = self.clusters[cluster_key] = Cluster(
                why, cluster_key[1], line, sample_key=key, sample_job=job_name,
                sample_node=node, sample_stderr=stderr, sample_reason=reason)
        cluster.attempts += 1
        cluster.tasks[task] += 1
        if final:
            cluster.final += 1
            if cluster.final == 1:  # the sample becomes a node that failed for good
                cluster.sample_key, cluster.sample_job = key, job_name
                cluster.sample_node, cluster.sample_stderr = node, stderr
                cluster.sample_reason = reason

    def ordered_clusters(self) -> list[Cluster]:
        """Clusters, the ones that failed most nodes for good first, then by attempts."""
        return sorted(self.clusters.values(), key=lambda c: (-c.final, -c.attempts, c.cause))


#: The attempt columns :func:`failure_stats` reads.
_FAILURE_COLUMNS = ("key", "job_name", "node", "node_state", "task", "reason", "stderr",
                    "last", "state", "exit_code", "signal")


def failure_stats(store: Store, nodes: NodeIndex | None = None) -> RunStats:
    """The failure clusters of every attempt in ``store`` (and the failed-attempt counts):
    only the attempts that did not succeed are read, in the order they were submitted.
    ``nodes`` is the run's node index when the caller has one."""
    stats = RunStats()
    marks = ", ".join("?" for _ in _NO_CAUSE)
    failed = int(NodeState.FAILED)
    for c in iter_columns(store, _FAILURE_COLUMNS, where=f"a.state NOT IN ({marks})",
                          args=_NO_CAUSE, nodes=nodes):
        for why, key, job, node, state, task, reason, stderr, last in zip(
                causes(c), c["key"], c["job_name"], c["node"], c["node_state"], c["task"],
                c["reason"], c["stderr"], c["last"]):
            if why:
                stats.add_failure(why, key=key, job_name=job, node=node, task=task,
                                  reason=reason, stderr=stderr,
                                  final=bool(last) and state == failed)
    return stats


def gather(rows: Iterable[AttemptRow]) -> RunStats:
    """One pass over ``rows`` into a :class:`RunStats`."""
    stats = RunStats()
    add = stats.add
    for row in rows:
        add(row)
    return stats


def retry_columns(stats: Iterable[TaskStats | TaskFigures]) -> list[str]:
    """The retry causes that occur in ``stats``, in :data:`CAUSE_ORDER` (others last)."""
    seen: set[str] = set()
    for task in stats:
        seen.update(k for k, v in task.retries.items() if v)
    return [c for c in CAUSE_ORDER if c in seen] + sorted(seen - set(CAUSE_ORDER))
