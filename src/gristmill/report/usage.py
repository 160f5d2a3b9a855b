"""Requested against used, per task: what ``gristmill status`` shows, and the sizing rule
of ``gristmill resources --suggest``.

``status`` refreshes every few seconds while an engine writes the store, so its figures
come from one aggregate SQL query (maxima and counts; no quantiles, which need every
value): about a second for a million attempts, against several for a pass in Python.
The summary and the report add the exact median and quartiles (:mod:`.aggregate`).
"""

from __future__ import annotations

import math

import attrs

from gristmill.resources import format_duration, format_memory
from gristmill.store.db import Store

#: Default factors over the largest successful peak and run, as ``--suggest`` uses them.
MEM_HEADROOM = 1.25
TIME_HEADROOM = 1.5


@attrs.frozen
class TaskUsage:
    """One task's largest request and largest use over its ended attempts."""

    task: str
    ended: int
    mem_requested: int | None
    peak_rss: int | None
    runtime_requested: float | None
    elapsed: float | None
    ooms: int
    timeouts: int

    @property
    def mem_pct(self) -> float | None:
        """The largest peak as a percentage of the largest request."""
        if not self.peak_rss or not self.mem_requested:
            return None
        return 100 * self.peak_rss / self.mem_requested

    @property
    def runtime_pct(self) -> float | None:
        if self.elapsed is None or not self.runtime_requested:
            return None
        return 100 * self.elapsed / self.runtime_requested


_QUERY = """
SELECT task, count(*), max(json_extract(resources, '$.mem')), max(peak_rss),
       max(json_extract(resources, '$.runtime')), max(elapsed),
       sum(state = 'OOM'), sum(state = 'TIMEOUT')
FROM attempts WHERE ended IS NOT NULL GROUP BY task
"""


def task_usage(store: Store) -> dict[str, TaskUsage]:
    """Requested and used per task, over the attempts that ended (one query)."""
    return {row[0]: TaskUsage(*row) for row in store.conn.execute(_QUERY)}


def suggest_entry(peak: float | None, elapsed: float | None, *,
                  mem_headroom: float = MEM_HEADROOM,
                  time_headroom: float = TIME_HEADROOM) -> dict[str, str]:
    """Memory and runtime that cover ``peak`` bytes and ``elapsed`` seconds with headroom:
    memory rounded up to a mebibyte, runtime to a minute (at least one)."""
    entry: dict[str, str] = {}
    if peak:
        entry["mem"] = format_memory(max(1, math.ceil(peak * mem_headroom / 2**20)) * 2**20)
    if elapsed:
        entry["runtime"] = format_duration(max(60, math.ceil(elapsed * time_headroom / 60) * 60))
    return entry
