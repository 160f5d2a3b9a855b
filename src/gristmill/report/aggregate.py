"""Per-task figures of a run's attempts, computed by SQLite: what the end-of-run summary
prints and the HTML report's task table shows, exact, in under two seconds for a million
attempts.

The end-of-run summary runs at the end of every ``gristmill run``; a pass over every
attempt in Python took a minute and a half for a million of them under load. Here SQLite
does the work in two statements over the attempts table, and Python touches only their
small results:

- one ``GROUP BY resources, task``: counts (OOMs and TIMEOUTs among them), minimum and
  maximum run time, the largest peak (of all attempts and of the successful ones).
  Requests are read from the few distinct ``resources`` texts, not from every attempt's
  JSON; the largest share of a request used is the group's largest use over its
  request (``100 * peak / mem`` grows with the peak, so the largest peak gives the
  largest share, the very same float);
- one lookup of each retry's previous attempt (by primary key) for retries by cause.

The median run time is exact too, without sorting a million values: a sample of the
attempts (every k-th row, a few thousand primary-key reads) brackets each large task's
median; the aggregate statement also counts the run times below the bracket and lists
the rows inside it; those few are read and sorted, and the median is picked at its exact
rank. Should the bracket miss the median (a sample can mislead), or a task be too small
to sample, the task's run times are all read and sorted instead: slower, never wrong.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import attrs

from gristmill.report.attempts import RERUN, cause, cause_family, requests_of, sql_of
from gristmill.store.db import Store

#: Under this share of the request used at most, a task is over-allocated.
OVER = 0.5
#: Over this share used at most (or any OOM/TIMEOUT), a task is under-allocated.
UNDER = 0.9
#: Rows the median's sample reads (primary-key reads, spread evenly over the table).
SAMPLE = 16_384
#: A task needs this many sampled run times for its median to be bracketed.
MIN_SAMPLED = 64
#: Tasks bracketed at most (the largest): each adds a branch to every row's evaluation.
MAX_BRACKETED = 32
#: The bracket's half-width in standard deviations of the sample median's rank.
SIGMAS = 4.5


def flag(exceeded: int, top: float | None) -> str:
    """``under`` when attempts ran out (``exceeded``) or the largest share used ``top``
    (percent) is above :data:`UNDER`; ``over`` when it is below :data:`OVER`; else ``""``."""
    if exceeded:
        return "under"
    if top is None:
        return ""
    if top > 100 * UNDER:
        return "under"
    if top < 100 * OVER:
        return "over"
    return ""


def median_ranks(n: int) -> tuple[int, int, float]:
    """The ranks (0-based) of the two values a median of ``n`` sorted values interpolates
    between, and the weight of the second: the same arithmetic as :func:`.stats.quantiles`."""
    pos = 0.5 * (n - 1)
    low = int(pos)
    return low, min(low + 1, n - 1), pos - low


def interpolate(low: float, high: float, weight: float) -> float:
    """``low`` moved ``weight`` of the way to ``high`` (linear interpolation, as numpy)."""
    return low + (high - low) * weight


@attrs.frozen
class TaskFigures:
    """What one task's attempts did, as the summary and the report show it."""

    task: str
    attempts: int = 0
    ooms: int = 0  #: attempts that ran out of memory
    timeouts: int = 0  #: attempts that ran out of time
    #: Attempts after a node's first, by the family of their cause (``OOM``, ``exit code``).
    retries: Mapping[str, int] = attrs.field(factory=dict)
    #: Run time of the attempts that ran: minimum, median, maximum (seconds).
    wall: tuple[float, float, float] | None = None
    peak: int | None = None  #: the largest peak RSS, in bytes
    mem_requested: int | None = None  #: the most any attempt asked for
    runtime_requested: float | None = None
    cores_requested: int | None = None
    mem_pct: float | None = None  #: the largest peak as a percentage of its request
    runtime_pct: float | None = None  #: the longest run as a percentage of its limit
    #: Peak memory and run time of successful attempts (what ``--suggest`` fits).
    ok_peak: int | None = None
    ok_elapsed: float | None = None
    #: CPU efficiency, in percent: CPU time over run time times the cores asked for (1 when
    #: none were), over the attempts whose CPU time is known; None when none is.
    cpu_eff: float | None = None

    def retries_total(self) -> int:
        return sum(self.retries.values())

    def mem_flag(self) -> str:
        """``under`` (an OOM, or a peak above 90% of the request), ``over`` (every peak
        below 50%), else ``""``."""
        return flag(self.ooms, self.mem_pct)

    def runtime_flag(self) -> str:
        """As :meth:`mem_flag`, for runtime (TIMEOUT instead of OOM)."""
        return flag(self.timeouts, self.runtime_pct)


def _max(a: Any, b: Any) -> Any:
    """The larger of two values where None is no value (``max`` keeps the first of equals)."""
    if b is None:
        return a
    if a is None or b > a:
        return b
    return a


def _min(a: Any, b: Any) -> Any:
    if b is None:
        return a
    if a is None or b < a:
        return b
    return a


@attrs.define
class _Task:
    """A task's figures while the groups of the aggregate statement are folded in."""

    task: str
    attempts: int = 0
    ooms: int = 0
    timeouts: int = 0
    timed: int = 0  #: attempts with a run time
    low: float | None = None
    high: float | None = None
    below: int = 0  #: run times below the median's bracket
    window: list[int] = attrs.Factory(list)  #: rows whose run time is inside it
    values: dict[str, Any] = attrs.Factory(dict)
    cpu: float = 0.0  #: CPU seconds of the attempts whose CPU time is known
    cpu_wall: float = 0.0  #: their run time times the cores each asked for

    def fold(self, name: str, value: Any) -> None:
        """Keep the larger of ``value`` and what ``name`` holds (None is no value)."""
        self.values[name] = _max(self.values.get(name), value)


# Grouped by resources first: SQLite sorts the attempts by the key, and the few distinct
# resources texts mostly decide a comparison there.
_GROUPS = """
SELECT task, resources, count(*), sum(state = 'OOM'), sum(state = 'TIMEOUT'), count(elapsed),
       min(elapsed), max(elapsed), max(nullif(peak_rss, 0)),
       max(nullif(peak_rss, 0)) FILTER (WHERE state = 'SUCCEEDED'),
       max(elapsed) FILTER (WHERE state = 'SUCCEEDED'),
       sum(elapsed < {low}),
       json_group_array(rowid) FILTER (WHERE elapsed >= {low} AND elapsed <= {high}),
       sum({cpu}) FILTER (WHERE {cpu} IS NOT NULL AND elapsed > 0),
       sum(elapsed) FILTER (WHERE {cpu} IS NOT NULL AND elapsed > 0)
FROM attempts a GROUP BY resources, task
"""

# Retries by their previous attempt's outcome. The retry is read from the primary key's
# index alone (identity, attempt: a fraction of the table to scan); its task is the
# previous attempt's, since a node's identity digests its task.
_RETRIES = """
SELECT p.task, p.state, p.exit_code, p.signal, count(*)
FROM attempts x JOIN attempts p ON p.identity = x.identity AND p.attempt = x.attempt - 1
WHERE x.attempt > 1 GROUP BY p.task, p.state, p.exit_code, p.signal
"""


def task_figures(store: Store) -> dict[str, TaskFigures]:
    """Every task's figures over every attempt in ``store`` (see the module docstring)."""
    brackets = _brackets(store)
    # The low bound appears twice in the statement: numbered parameters bind it once.
    low_sql, args = _case(brackets, 0, math.inf, 1)
    high_sql, high_args = _case(brackets, 1, -math.inf, len(args) + 1)
    sql = _GROUPS.format(low=low_sql, high=high_sql, cpu=sql_of(store, "cpu_time"))
    args += high_args
    tasks: dict[str, _Task] = {}
    requests: dict[str, tuple[Any, Any, Any]] = {}
    for (task, resources, n, ooms, timeouts, timed, low, high, peak, ok_peak, ok_elapsed, below,
         window, cpu, cpu_elapsed) in store.conn.execute(sql, args):
        t = tasks.get(task)
        if t is None:
            t = tasks[task] = _Task(task)
        t.attempts += n
        t.ooms += ooms
        t.timeouts += timeouts
        t.timed += timed
        t.low, t.high = _min(t.low, low), _max(t.high, high)
        t.below += below or 0
        t.window += json.loads(window)
        found = requests.get(resources)
        if found is None:
            found = requests[resources] = requests_of(store, resources)
        mem, cores, runtime = found
        if cpu_elapsed:
            t.cpu += cpu
            t.cpu_wall += cpu_elapsed * (cores or 1)
        t.fold("peak", peak)
        t.fold("mem", mem or None)
        t.fold("cores", cores or None)
        t.fold("runtime", runtime or None)
        if peak and mem:
            t.fold("mem_pct", 100 * peak / mem)
        if high is not None and runtime:
            t.fold("runtime_pct", 100 * high / runtime)
        t.fold("ok_peak", ok_peak)
        t.fold("ok_elapsed", ok_elapsed)
    retries: dict[str, dict[str, int]] = defaultdict(dict)
    for task, state, exit_code, sig, n in store.conn.execute(_RETRIES):
        family = cause_family(RERUN if state == "SUCCEEDED" else cause(state, exit_code, sig))
        retries[task][family] = retries[task].get(family, 0) + n
    medians = _medians(store, tasks, set(brackets))
    out = {}
    for name, t in tasks.items():
        v = t.values
        wall = None if t.low is None or t.high is None else (t.low, medians[name], t.high)
        out[name] = TaskFigures(
            name, t.attempts, t.ooms, t.timeouts, dict(retries.get(name, {})), wall, v["peak"],
            v["mem"], v["runtime"], v["cores"], v.get("mem_pct"), v.get("runtime_pct"),
            v.get("ok_peak"), v.get("ok_elapsed"), cpu_efficiency(t.cpu, t.cpu_wall))
    return out


def cpu_efficiency(cpu: float, wall: float) -> float | None:
    """CPU time as a percentage of run time times cores, to a tenth (None without any)."""
    return round(100 * cpu / wall, 1) if wall > 0 else None



def _case(brackets: Mapping[str, tuple[float, float]], which: int, default: float,
          first: int) -> tuple[str, list[Any]]:
    """``CASE task WHEN ... END`` giving each bracketed task's bound ``which`` (0: low,
    1: high), ``default`` (which brackets no row) for the others; its parameters are
    numbered from ``first``."""
    parts: list[str] = []
    args: list[Any] = []
    for task, bounds in brackets.items():
        parts.append(f"WHEN ?{first + len(args)} THEN ?{first + len(args) + 1}")
        args += [task, bounds[which]]
    if not parts:
        return f"?{first}", [default]
    return f"(CASE task {' '.join(parts)} ELSE ?{first + len(args)} END)", [*args, default]


def _brackets(store: Store) -> dict[str, tuple[float, float]]:
    """For the largest tasks, run times below and above which their median surely is,
    from a sample of every k-th row of the table."""
    low, high = store.conn.execute("SELECT min(rowid), max(rowid) FROM attempts").fetchone()
    if low is None:
        return {}
    step = max(1, (high - low + 1) // SAMPLE)
    sampled: dict[str, list[float]] = defaultdict(list)
    for task, elapsed in store.conn.execute(
        "WITH RECURSIVE r(x) AS (SELECT ?1 UNION ALL SELECT x + ?2 FROM r WHERE x + ?2 <= ?3) "
        "SELECT a.task, a.elapsed FROM r JOIN attempts a ON a.rowid = r.x "
        "WHERE a.elapsed IS NOT NULL", (low, step, high)):
        sampled[task].append(elapsed)
    largest = sorted((t for t, v in sampled.items() if len(v) >= MIN_SAMPLED),
                     key=lambda t: -len(sampled[t]))[:MAX_BRACKETED]
    out = {}
    for task in largest:
        values = sorted(sampled[task])
        n = len(values)
        # The sample median's rank in the sample has a standard deviation of sqrt(n) / 2.
        width = int(SIGMAS * math.sqrt(n) / 2) + 1
        out[task] = (values[max(0, n // 2 - width)], values[min(n - 1, n // 2 + width)])
    return out


def _medians(store: Store, tasks: Mapping[str, _Task], bracketed: set[str]
             ) -> dict[str, float]:
    """Each task's exact median run time: from its bracket's rows where the bracket holds
    the median's ranks, else from every run time of the task."""
    out: dict[str, float] = {}
    unbracketed = []
    for name, t in tasks.items():
        if not t.timed:
            continue
        first, second, weight = median_ranks(t.timed)
        if name in bracketed and t.window:
            window = sorted(row[0] for row in store.conn.execute(
                "SELECT elapsed FROM attempts WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps(t.window),)))
            if t.below <= first and second < t.below + len(window):
                out[name] = interpolate(window[first - t.below], window[second - t.below],
                                        weight)
                continue
        unbracketed.append(name)
    if unbracketed:
        values: dict[str, list[float]] = defaultdict(list)
        marks = ", ".join("?" for _ in unbracketed)
        for task, elapsed in store.conn.execute(
            f"SELECT task, elapsed FROM attempts WHERE elapsed IS NOT NULL AND task IN ({marks})",
            unbracketed):
            values[task].append(elapsed)
        for name in unbracketed:
            ordered = sorted(values[name])
            first, second, weight = median_ranks(len(ordered))
            out[name] = interpolate(ordered[first], ordered[second], weight)
    return out
