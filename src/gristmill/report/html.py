"""``gristmill report``: one self-contained HTML file that shows a run.

The file must open from a cluster's shared file system or an email attachment with no
network, so everything is inside it: plotly.js (from the ``plotly`` package, an optional
extra), the styles, the script and the data. It shows the run's provenance, the
task-level DAG, per task the memory and runtime used as a share of what was asked
(exact quartiles, whatever the run's size) beside ``resources --suggest``'s values, a
timeline of attempts, failures clustered by reason, and every attempt in a paged table.

Two limits keep a report of a million attempts within seconds and megabytes:

- the timeline draws the attempts of a sample of nodes (every attempt of each sampled
  node, so retries stay visible) when there are more than :data:`TIMELINE_LIMIT`
  attempts; the page says so, and every other figure counts every attempt;
- the attempt table's columns are packed as integer arrays (times in centiseconds,
  memory in tenths of a MiB, repeated text as indices into a list), gzipped and
  base64-encoded; the browser unpacks them (``DecompressionStream``) and builds only
  the rows of the page shown.

And a million attempts are read without a Python object per attempt: SQLite computes
the per-task figures (:mod:`.aggregate`), the node index and the counts on a connection
of its own, in a thread, while this one reads the attempts' columns 1,000 rows at a time
and derives each table column at once (:class:`AttemptColumns`) along with the values
the boxes draw (:class:`Spreads`); the timeline's sample is a range of the primary
key's index, and only failed attempts are read for the clusters. The tests hold every
column and figure to the plain per-row definitions.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import operator
import os
import re
import sys
import tempfile
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import attrs

from gristmill.errors import GristmillError, RunDirError
from gristmill.report.aggregate import TaskFigures, task_figures
from gristmill.report.attempts import (
    Columns,
    NodeIndex,
    argv_of,
    causes,
    count_attempts,
    iter_columns,
    retry_causes,
)
from gristmill.report.dag import dag_svg, task_edges
from gristmill.report.failures import tail
from gristmill.report.stats import RunStats, failure_stats, pattern, quantiles, retry_columns
from gristmill.report.summary import STATE_ORDER, human_seconds, task_order
from gristmill.report.usage import suggest_entry
from gristmill.runs.metadata import load_run_metadata
from gristmill.store.db import Store

#: Above this many attempts the timeline draws a sample of nodes.
TIMELINE_LIMIT = 10_000
#: Distinct reasons kept word for word in the table; past it, their pattern.
_REASONS = 50_000
_STATES = ["SUCCEEDED", "FAILED", "OOM", "TIMEOUT", "CANCELLED", "LOST", "PREEMPTED",
           "NODE_FAIL", "QUEUED", "RUNNING"]
#: Task colours (plotly's default qualitative palette).
PALETTE = ["#636efa", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880",
           "#ff97ff", "#fecb52", "#ef553b"]
MISSING_PLOTLY = ("the HTML report needs plotly, which gristmill installs as an extra: "
                  "pip install 'gristmill[report]'")


def plotly_js() -> str:
    """plotly.js, to inline; a clear error naming the extra when plotly is missing."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise GristmillError(MISSING_PLOTLY) from None
    return str(get_plotlyjs())


class _Index(dict[Any, int]):
    """Text → small integer, for columns of repeated text: ``column`` maps a whole column
    through the dict, calling Python code only for a text not seen before."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []  #: the texts, by their integer

    def __missing__(self, text: str) -> int:
        found = self[text] = len(self.texts)
        self.texts.append(text)
        return found

    def __call__(self, text: str) -> int:
        return self[text]

    def column(self, texts: Sequence[Any]) -> list[int]:
        return list(map(self.__getitem__, texts))


class _Hosts(_Index):
    """Hosts, where an attempt with none (None) has the empty text."""

    def __missing__(self, text: str | None) -> int:
        if text is None:
            found = self[None] = self[""]
            return found
        return super().__missing__(text)


class _Reasons(_Index):
    """Reasons word for word until :data:`_REASONS` are kept, then their pattern (so that
    the list of a million distinct reasons stays small)."""

    def __init__(self) -> None:
        super().__init__()
        self._pattern: dict[str, int] = {}  #: reasons past the limit → their pattern's index

    def __missing__(self, text: str) -> int:
        if len(self.texts) < _REASONS:
            return super().__missing__(text)
        found = self._pattern.get(text)
        if found is None:
            blanked = pattern(text)
            found = self.get(blanked)  # (get: no __missing__)
            if found is None:
                found = super().__missing__(blanked)
            self._pattern[text] = found
        return found


def _cs(value: float | None) -> int:
    """Seconds as centiseconds, to three significant digits (a table shows no more, and
    fewer digits pack smaller); -1 for unknown."""
    if value is None:
        return -1
    return int(_significant(value * 100))


def _cs_column(values: Sequence[float | None]) -> list[int]:
    """:func:`_cs` of each value, inlined (a million attempts, two columns): below 1000
    rounded; below 2**53 rounded to three digits at the scale of its digit count
    (:func:`_significant` without a call); beyond, by :func:`_significant3`."""
    powers, scales = _POWERS, _SCALES
    return [-1 if v is None else round(x) if (x := v * 100) < 1000
            else round(x / (k := scales[bisect_right(powers, x)])) * k if x < _EXACT
            else _significant3(x) for v in values]


def _peak_column(values: Sequence[int | None]) -> list[int]:
    """Peaks in tenths of a MiB to three significant digits, -1 for none (as
    :func:`_cs_column`)."""
    powers, scales, mib = _POWERS, _SCALES, 2**20
    return [-1 if not v else round(x) if (x := v * 10 / mib) < 1000
            else round(x / (k := scales[bisect_right(powers, x)])) * k if x < _EXACT
            else _significant3(x) for v in values]


def _significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (whole numbers at least)."""
    if value < 10**digits:
        return float(round(value))
    scale = 10 ** (len(str(int(value))) - digits)
    return float(round(value / scale) * scale)


#: 10, 100, ...: ``bisect_right(_POWERS, x) + 1`` is how many digits ``int(x)`` has (x >= 1).
_POWERS = [float(10**i) for i in range(1, 23)]
#: The scale of three significant digits, by ``bisect_right(_POWERS, x)`` (x >= 100).
_SCALES = [0, 0] + [10**i for i in range(21)]
#: Below this, ``round(x / k) * k`` is the same whole number as a float or an int.
_EXACT = float(2**53)


def _significant3(value: float) -> int:
    """``int(_significant(value))`` for ``value`` >= 1000, counting digits by bisection
    rather than by writing the number out."""
    if value >= 1e22:
        return int(_significant(value))
    scale = 10 ** (bisect_right(_POWERS, value) + 1 - 3)
    return int(float(round(value / scale) * scale))


class AttemptColumns:
    """Every attempt as packed columns for the page's table (see the module docstring),
    filled a batch of attempt columns at a time (:meth:`add`)."""

    #: name → array type code; the page reads them in this order.
    COLUMNS = {"node": "i", "task": "i", "attempt": "i", "state": "i", "cause": "i",
               "retry": "i", "exit": "i", "host": "i", "reason": "i", "submit": "i",
               "wait": "i", "elapsed": "i", "peak": "i", "mem": "i", "runtime": "i"}
    #: Columns stored as differences from the previous row (they mostly grow).
    DELTA = ("node", "submit")
    #: The attempt columns (:data:`~gristmill.report.attempts.COLUMN_SQL`) it reads; the
    #: node ids are found from the identities once the :class:`NodeIndex` is made
    #: (:meth:`set_nodes`), so that it can be made meanwhile.
    NEEDS = ("identity", "task", "attempt", "state", "exit_code", "signal", "previous", "host",
             "reason", "submitted", "queue_wait", "elapsed", "peak_rss", "mem", "runtime",
             "job_name")

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.cols = {name: array(code) for name, code in self.COLUMNS.items()}
        self.tasks, self.states, self.causes = _Index(), _Index(), _Index()
        self.hosts, self.reasons = _Hosts(), _Reasons()
        for state in _STATES:
            self.states(state)
        self.causes("")
        self.names: list[str] = []
        self._keys = array("Q")  #: each attempt's node key (:meth:`NodeIndex.key`)

    @property
    def rows(self) -> int:
        return len(self.names)

    def add(self, c: Columns) -> None:
        """Append a batch of attempts (:attr:`NEEDS` columns), each column at once."""
        cols, origin, mib = self.cols, self.origin, 2**20
        self._keys.extend(map(NodeIndex.key, c["identity"]))
        cols["task"].extend(self.tasks.column(c["task"]))
        cols["attempt"].extend(c["attempt"])
        cols["state"].extend(self.states.column(c["state"]))
        cols["cause"].extend(self.causes.column(causes(c)))
        cols["retry"].extend(self.causes.column(retry_causes(c)))
        cols["exit"].extend([-1 if v is None else v for v in c["exit_code"]])
        cols["host"].extend(self.hosts.column(c["host"]))
        cols["reason"].extend(self.reasons.column(c["reason"]))
        cols["submit"].extend([round((v - origin) * 10) * 10 for v in c["submitted"]])  # 0.1 s
        cols["wait"].extend(_cs_column(c["queue_wait"]))
        cols["elapsed"].extend(_cs_column(c["elapsed"]))
        cols["peak"].extend(_peak_column(c["peak_rss"]))
        cols["mem"].extend([-1 if not v else round(v / mib) for v in c["mem"]])
        cols["runtime"].extend([-1 if not v else round(v) for v in c["runtime"]])
        self.names.extend(c["job_name"])

    def set_nodes(self, nodes: NodeIndex) -> None:
        """Fill the node column (-1 for an attempt of a node no longer in the graph)."""
        self.cols["node"] = array("i", nodes.ids_of(self._keys))
        self._keys = array("Q")

    def packed(self) -> dict[str, Any]:
        """The columns as one base64 text of gzipped bytes, and what the page needs to read
        it: the column order, the row count, the lists the indices point into. The bytes
        are compressed a column at a time, never joined uncompressed."""
        # 31: a gzip stream. Level 5 with the most memory: a million attempts pack in a
        # second, 2% larger than level 6 takes in 2.5 s.
        packer = zlib.compressobj(5, zlib.DEFLATED, 31, 9)
        chunks = []
        for name in self.COLUMNS:
            column = self.cols[name]
            if name in self.DELTA:
                column = _deltas(column)
            if sys.byteorder != "little":
                column = array(column.typecode, column)
                column.byteswap()
            chunks.append(packer.compress(column))
        chunks.append(packer.compress("\n".join(self.names).encode()))
        chunks.append(packer.flush())
        return {
            "rows": self.rows, "columns": list(self.COLUMNS), "delta": list(self.DELTA),
            "tasks": self.tasks.texts, "states": self.states.texts,
            "causes": self.causes.texts, "hosts": self.hosts.texts,
            "reasons": self.reasons.texts, "origin": self.origin,
            "blob": base64.b64encode(b"".join(chunks)).decode("ascii"),
        }


def _deltas(column: array[int]) -> array[int]:
    """Each value less the one before it (the first as it is)."""
    out = array(column.typecode, column[:1])
    out.extend(map(operator.sub, itertools.islice(column, 1, None), column))
    return out


@attrs.define
class _Spread:
    """One task's values whose quartiles the report draws (as :class:`.stats.TaskStats`
    keeps them: peaks that are known, and shares of requests where both are known)."""

    peak: array[float] = attrs.Factory(lambda: array("d"))
    mem_pct: array[float] = attrs.Factory(lambda: array("d"))
    runtime_pct: array[float] = attrs.Factory(lambda: array("d"))

    def extend(self, peak: Sequence[Any], mem: Sequence[Any], elapsed: Sequence[Any],
               runtime: Sequence[Any]) -> None:
        self.peak.extend([p for p in peak if p])
        self.mem_pct.extend([100 * p / m for p, m in zip(peak, mem) if p and m])
        self.runtime_pct.extend([100 * e / r for e, r in zip(elapsed, runtime)
                                 if e is not None and r])


class Spreads(dict[str, _Spread]):
    """Per task, the values of the report's distributions, filled a batch at a time."""

    def __missing__(self, task: str) -> _Spread:
        made = self[task] = _Spread()
        return made

    def add(self, c: Columns) -> None:
        tasks = c["task"]
        if len(set(tasks)) == 1:  # a batch of one task, the common case
            self[tasks[0]].extend(c["peak_rss"], c["mem"], c["elapsed"], c["runtime"])
            return
        rows: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            rows.setdefault(task, []).append(i)
        for task, at in rows.items():
            self[task].extend(*([col[i] for i in at] for col in (
                c["peak_rss"], c["mem"], c["elapsed"], c["runtime"])))


class Timeline:
    """The attempts the timeline draws: all of them, or every attempt of sampled nodes."""

    #: The attempt columns it reads, in the order of :attr:`rows`' tuples.
    NEEDS = ("identity", "task", "attempt", "state", "job_name", "submitted", "started",
             "ended")

    def __init__(self, total: int, limit: int = TIMELINE_LIMIT) -> None:
        self.total = total
        self.fraction = 1.0 if total <= limit else limit / total
        self._cut = int(self.fraction * 16**8)
        self.rows: list[tuple[str, str, int, str, str, float, float | None, float | None]] = []

    @property
    def sampled(self) -> bool:
        return self.fraction < 1.0

    def read(self, store: Store) -> None:
        """Read the attempts it draws from ``store``: the nodes whose identity's first 32
        bits are below the sample's cut, found on the primary key's index (identities
        are lowercase hex, so that is a range of their text), then in submission order."""
        where: str = ""
        args: tuple[str, ...] = ()
        if self.sampled:  # (a tuple of one text or none)
            where, args = "a.identity >= '' AND a.identity < ?", (f"{self._cut:08x}",)
        for c in iter_columns(store, self.NEEDS, where=where, args=args):
            self.rows.extend(zip(*(c[n] for n in self.NEEDS)))


# -- figures (plotly.js figure specs) -----------------------------------------------------------


def _box_figure(spreads: Mapping[str, _Spread], order: list[str], which: str, title: str,
                colors: dict[str, str]) -> dict[str, Any]:
    """Per task, the share of the request used, as a box of exact quartiles."""
    data = []
    for task in order:
        spread = spreads.get(task)
        if spread is None:
            continue
        q = quantiles(spread.mem_pct if which == "mem" else spread.runtime_pct)
        if q is None:
            continue
        data.append({
            "type": "box", "name": task, "x": [task], "q1": [q.q1], "median": [q.median],
            "q3": [q.q3], "lowerfence": [q.low], "upperfence": [q.high], "mean": [q.mean],
            "marker": {"color": colors[task]}, "boxpoints": False,
            "hovertemplate": f"{task}: %{{y:.1f}}% ({q.n:,} attempts)<extra></extra>",
        })
    return {"data": data, "layout": {
        "title": {"text": title}, "showlegend": False, "height": 360,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
        "yaxis": {"title": {"text": "% of request"}, "rangemode": "tozero", "ticksuffix": "%"},
        "shapes": [
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 100, "y1": 100,
             "line": {"color": "#c0392b", "dash": "dash", "width": 1}},
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 50, "y1": 50,
             "line": {"color": "#d4a017", "dash": "dot", "width": 1}},
        ],
    }}


def _timeline_figure(timeline: Timeline, origin: float, colors: dict[str, str]
                     ) -> dict[str, Any]:
    """One lane per node, its attempts side by side: a thin grey segment while an attempt
    queued, a thick one in its task's colour while it ran (red when it did not succeed).

    Segments are lines (one SVG path per trace, ``null`` between segments), not bars (one
    SVG element each): ten thousand attempts draw in a fraction of a second.
    """
    lanes: dict[str, int] = {}
    traces: dict[str, dict[str, Any]] = {}

    def trace(name: str, color: str, width: float, hover: bool) -> dict[str, Any]:
        found = traces.get(name)
        if found is None:
            found = traces[name] = {
                "type": "scatter", "mode": "lines", "name": name, "x": [], "y": [],
                "line": {"color": color, "width": width}, "connectgaps": False,
                **({"text": [], "hovertemplate": "%{text}<extra></extra>"} if hover
                   else {"hoverinfo": "skip"}),
            }
        return found

    rows = sorted(timeline.rows, key=lambda r: (r[5], r[2]))
    for identity, *_ in rows:
        lanes.setdefault(identity, len(lanes))
    height = min(900, max(260, 80 + 6 * len(lanes)))
    width = max(1.0, min(14.0, 0.7 * (height - 80) / max(1, len(lanes))))
    queued = trace("queued", "#b8c2cc", max(1.0, width / 3), False)
    for identity, task, attempt, state, job, submitted, started, ended in rows:
        lane = lanes[identity]
        end = ended if ended is not None else time.time()
        start = started if started is not None else end
        queued["x"] += [round(submitted - origin, 1), round(start - origin, 1), None]
        queued["y"] += [lane, lane, None]
        ok = state == "SUCCEEDED"
        ran = trace(task if ok else "did not succeed", colors[task] if ok else "#d62728",
                    width, True)
        label = f"{escape(job)} #{attempt} {state}, ran {human_seconds(end - start)}"
        ran["x"] += [round(start - origin, 1), round(end - origin, 1), None]
        ran["y"] += [lane, lane, None]
        ran["text"] += [label, label, None]
    ordered = [t for name, t in traces.items() if name not in ("queued", "did not succeed")]
    ordered += [traces[n] for n in ("did not succeed", "queued") if n in traces]
    return {"data": ordered, "layout": {
        "height": height, "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "xaxis": {"title": {"text": "seconds since the first submission"}, "rangemode": "tozero",
                  "zeroline": False},
        "yaxis": {"title": {"text": "node"}, "autorange": "reversed", "showticklabels": False,
                  "showgrid": False, "zeroline": False},
        "legend": {"orientation": "h", "y": 1.08},
    }}


# -- the page -------------------------------------------------------------------------------


@attrs.frozen
class ReportInfo:
    """What :func:`write_report` wrote."""

    path: Path
    attempts: int
    bytes: int
    seconds: float
    timeline_attempts: int
    sampled: bool


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _provenance(run_dir: Path, meta: Mapping[str, Any], first_submit: float | None,
                last_end: float | None, hosts: int) -> list[tuple[str, str]]:
    """(label, value) rows about the run: what, who, where, which code, when."""
    try:
        md: Any = load_run_metadata(run_dir)
    except RunDirError:
        md = None
    args = meta.get("args") or {}
    rows = [
        ("workflow", str(meta.get("workflow", "?"))),
        ("function", str(meta.get("function", "?"))),
        ("parameters", ", ".join(f"{k}={v}" for k, v in args.items()) or "—"),
        ("backend", str(meta.get("backend", "?")) + (
            f" ({', '.join(f'{k}={v}' for k, v in (meta.get('backend_options') or {}).items())})"
            if meta.get("backend_options") else "")),
        ("run directory", str(run_dir)),
    ]
    if md is not None:
        import shlex

        rows += [
            ("command", shlex.join(md.argv) if md.argv else "—"),
            ("user", md.user or "—"), ("host", md.host or "—"),
            ("working directory", md.cwd or "—"),
            ("package", f"{md.package or '—'} {md.package_version or ''}".strip()),
            ("git commit", (md.git_commit or "—") + (" (dirty)" if md.git_dirty else "")),
            ("gristmill", md.tool_version or "—"), ("python", md.python_version),
            ("started", md.started_at), ("ended", md.ended_at or "— (running?)"),
            ("status", md.status), ("resumes", str(len(md.history))),
        ]
        if md.jobmon_tool_version:
            rows.append(("tool version", md.jobmon_tool_version))
    rows += [("first submission", _when(first_submit)),
             ("last attempt ended", _when(last_end)),
             ("hosts", f"{hosts:,}")]
    return rows


def _task_rows(figures: Mapping[str, TaskFigures], spreads: Mapping[str, _Spread],
               counts: dict[tuple[str, str], int], order: list[str]
               ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    states = [s for s in STATE_ORDER if any(k[1] == s for k in counts)]
    causes = retry_columns(figures.values())
    out = []
    for task in order:
        ts = figures.get(task) or TaskFigures(task)
        spread = spreads.get(task)
        peak = None if spread is None else quantiles(spread.peak)
        out.append({
            "task": task, "nodes": {s: counts.get((task, s), 0) for s in states},
            "attempts": ts.attempts, "retries": {c: ts.retries.get(c, 0) for c in causes},
            "wall": None if ts.wall is None else list(ts.wall),
            "peak": None if peak is None else [peak.median, peak.high],
            "mem": ts.mem_requested, "runtime": ts.runtime_requested,
            "cores": ts.cores_requested,
            "mem_pct": ts.mem_pct, "runtime_pct": ts.runtime_pct,
            "mem_flag": ts.mem_flag(), "runtime_flag": ts.runtime_flag(),
            "suggest": suggest_entry(ts.ok_peak, ts.ok_elapsed),
        })
    return states, causes, out


def _failures(store: Store, stats: RunStats, limit: int = 50) -> list[dict[str, Any]]:
    import shlex

    out = []
    for cluster in stats.ordered_clusters()[:limit]:
        out.append({
            "cause": cluster.cause, "reason": cluster.reason, "line": cluster.line,
            "attempts": cluster.attempts, "final": cluster.final,
            "tasks": dict(cluster.tasks.most_common(5)), "job": cluster.sample_job,
            "node": cluster.sample_node, "sample_reason": cluster.sample_reason,
            "stderr_path": cluster.sample_stderr,
            "stderr": tail(cluster.sample_stderr, 15, size=16 * 1024),
            "rerun": shlex.join(argv_of(store, cluster.sample_key)),
        })
    return out


def _json_for_script(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` can close it)."""
    return json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")


def build_report(run_dir: Path, *, timeline_limit: int = TIMELINE_LIMIT
                 ) -> tuple[str, int, Timeline]:
    """The HTML text of the report of ``run_dir``, how many attempts, and the timeline.

    Per-task figures come from SQLite (:func:`.aggregate.task_figures`); one pass over the
    attempts' columns fills the packed table and the distributions the boxes draw; the
    timeline's sample and the failed attempts are read by queries of their own.
    """
    script = plotly_js()
    # What SQLite computes (the node index, per-task figures, counts, the task graph) is
    # made on a connection of its own in a thread while this one packs the attempt
    # table: SQLite lets go of the interpreter while it works, so on a second core the
    # two overlap.
    with ThreadPoolExecutor(1, thread_name_prefix="gristmill-report") as pool:
        side = pool.submit(_from_sqlite, run_dir)
        try:
            store = Store.open(run_dir, readonly=True)
        except BaseException:
            side.cancel()
            raise
        try:
            meta = store.meta()
            total = count_attempts(store)
            first, last = store.conn.execute(
                "SELECT min(submitted), max(ended) FROM attempts").fetchone()
            origin = float(first) if first is not None else time.time()
            table = AttemptColumns(origin)
            spreads = Spreads()
            for columns in iter_columns(store, AttemptColumns.NEEDS):
                table.add(columns)
                spreads.add(columns)
            timeline = Timeline(total, timeline_limit)
            timeline.read(store)
            nodes, figures, counts, order, (dag_tasks, edges) = side.result()
            table.set_nodes(nodes)
            stats = failure_stats(store, nodes)
            del nodes
            failures = _failures(store, stats)
        finally:
            store.close()
    order += sorted(set(figures) - set(order))
    colors = {task: PALETTE[i % len(PALETTE)] for i, task in enumerate(order)}
    by_task: dict[str, dict[str, int]] = {}
    for (task, state), n in counts.items():
        by_task.setdefault(task, {})[state] = n
    states, causes, task_rows = _task_rows(figures, spreads, counts, order)
    node_counts: dict[str, int] = {}
    for (_, state), n in counts.items():
        node_counts[state] = node_counts.get(state, 0) + n
    hosts = sum(1 for host in table.hosts.texts if host)
    data = {
        "title": str(meta.get("workflow", run_dir.name)),
        "provenance": _provenance(run_dir, meta, first, last, hosts),
        "counts": {s: node_counts[s] for s in STATE_ORDER if s in node_counts},
        "attempts": total, "states": states, "causes": causes, "tasks": task_rows,
        "colors": colors, "failures": failures, "failed_attempts": stats.failed_attempts,
        "unread": stats.unread,
        "timeline": {"shown": len(timeline.rows), "total": total, "sampled": timeline.sampled},
        "figures": {
            "mem": _box_figure(spreads, order, "mem", "Peak memory, % of the memory asked for",
                               colors),
            "runtime": _box_figure(spreads, order, "runtime",
                                   "Run time, % of the runtime limit", colors),
            "timeline": _timeline_figure(timeline, origin, colors),
        },
        "generated": _when(time.time()),
    }
    packed = table.packed()
    blob = packed.pop("blob")
    data["table"] = packed
    values = {"TITLE": escape(str(data["title"])), "STYLE": _asset("report.css"), "PLOTLY": script,
              "DAG": dag_svg(dag_tasks, edges, by_task), "DATA": _json_for_script(data),
              "TABLE": blob, "APP": _asset("report.js")}
    # One pass over the template: no value is searched for placeholders again.
    page = re.sub(r"@@([A-Z]+)@@", lambda m: values[m.group(1)], _asset("page.html"))
    return page, total, timeline


def _from_sqlite(run_dir: Path) -> tuple[NodeIndex, dict[str, TaskFigures],
                                         dict[tuple[str, str], int], list[str],
                                         tuple[list[str], set[tuple[str, str]]]]:
    """What the report needs that SQLite computes, read on a connection of its own."""
    store = Store.open(run_dir, readonly=True, check=False)  # the other one checks it
    try:
        return (NodeIndex(store), task_figures(store), store.counts(), task_order(store),
                task_edges(store))
    finally:
        store.close()


def write_report(run_dir: Path, output: Path, *, timeline_limit: int = TIMELINE_LIMIT
                 ) -> ReportInfo:
    """Write the report of ``run_dir`` to ``output`` (atomically: a reader never sees half)."""
    start = time.perf_counter()
    page, total, timeline = build_report(run_dir, timeline_limit=timeline_limit)
    output = output.resolve()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    except OSError as exc:
        raise GristmillError(f"cannot write the report to {output}: {exc.strerror}; choose "
                             "another place with -o") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return ReportInfo(output, total, output.stat().st_size, time.perf_counter() - start,
                      len(timeline.rows), timeline.sampled)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _asset(name: str) -> str:
    """A file of the page (template, style, script), shipped beside this module."""
    return (Path(__file__).parent / "assets" / name).read_text(encoding="utf-8")
