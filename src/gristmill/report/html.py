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
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import zlib
from array import array
from collections.abc import Mapping
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import attrs

from gristmill.errors import GristmillError, RunDirError
from gristmill.report.attempts import AttemptRow, argv_of, count_attempts, iter_attempts
from gristmill.report.dag import dag_svg, task_edges
from gristmill.report.failures import tail
from gristmill.report.stats import RunStats, TaskStats, quantiles, retry_columns
from gristmill.report.summary import STATE_ORDER, human_seconds, task_order
from gristmill.report.usage import suggest_entry
from gristmill.runs.metadata import load_run_metadata
from gristmill.store.db import Store

#: Above this many attempts the timeline draws a sample of nodes.
TIMELINE_LIMIT = 10_000
#: Distinct reasons kept word for word in the table; past it, their pattern.
_REASONS = 50_000
_STATES = ["SUCCEEDED", "FAILED", "OOM", "TIMEOUT", "CANCELLED", "LOST", "QUEUED", "RUNNING"]
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


class _Index:
    """Text → small integer, for columns of repeated text."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._of: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        found = self._of.get(text)
        if found is None:
            found = self._of[text] = len(self.values)
            self.values.append(text)
        return found

    def __len__(self) -> int:
        return len(self.values)


def _cs(value: float | None) -> int:
    """Seconds as centiseconds, to three significant digits (a table shows no more, and
    fewer digits pack smaller); -1 for unknown."""
    if value is None:
        return -1
    return int(_significant(value * 100))


def _significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (whole numbers at least)."""
    if value < 10**digits:
        return float(round(value))
    scale = 10 ** (len(str(int(value))) - digits)
    return float(round(value / scale) * scale)


class AttemptColumns:
    """Every attempt as packed columns for the page's table (see the module docstring)."""

    #: name → array type code; the page reads them in this order.
    COLUMNS = {"node": "i", "task": "i", "attempt": "i", "state": "i", "cause": "i",
               "retry": "i", "exit": "i", "host": "i", "reason": "i", "submit": "i",
               "wait": "i", "elapsed": "i", "peak": "i", "mem": "i", "runtime": "i"}
    #: Columns stored as differences from the previous row (they mostly grow).
    DELTA = ("node", "submit")

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.cols = {name: array(code) for name, code in self.COLUMNS.items()}
        self.tasks, self.states, self.causes = _Index(), _Index(), _Index()
        self.hosts, self.reasons = _Index(), _Index()
        for state in _STATES:
            self.states(state)
        self.causes("")
        self.names: list[str] = []

    def add(self, row: AttemptRow) -> None:
        c = self.cols
        c["node"].append(-1 if row.node is None else row.node)
        c["task"].append(self.tasks(row.task))
        c["attempt"].append(row.attempt)
        c["state"].append(self.states(row.state))
        c["cause"].append(self.causes(row.cause))
        c["retry"].append(self.causes(row.retry_cause))
        c["exit"].append(-1 if row.exit_code is None else row.exit_code)
        c["host"].append(self.hosts(row.host or ""))
        reason = row.reason
        if len(self.reasons) >= _REASONS and reason not in self.reasons._of:
            from gristmill.report.stats import pattern

            reason = pattern(reason)
        c["reason"].append(self.reasons(reason))
        c["submit"].append(round((row.submitted - self.origin) * 10) * 10)  # to 0.1 s
        started = row.started
        c["wait"].append(-1 if started is None else _cs(started - row.submitted))
        c["elapsed"].append(_cs(row.elapsed))
        c["peak"].append(-1 if not row.peak_rss else int(_significant(row.peak_rss * 10 / 2**20)))
        c["mem"].append(-1 if not row.mem else round(row.mem / 2**20))
        c["runtime"].append(-1 if not row.runtime else round(row.runtime))
        self.names.append(row.job_name)

    def packed(self) -> dict[str, Any]:
        """The columns as one base64 text of gzipped bytes, and what the page needs to read
        it: the column order, the row count, the lists the indices point into."""
        raw = bytearray()
        for name in self.COLUMNS:
            column = self.cols[name]
            if name in self.DELTA:
                column = _deltas(column)
            if sys.byteorder != "little":
                column = array(column.typecode, column)
                column.byteswap()
            raw += column.tobytes()
        raw += "\n".join(self.names).encode()
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip stream
        blob = packer.compress(bytes(raw)) + packer.flush()
        return {
            "rows": len(self.names), "columns": list(self.COLUMNS), "delta": list(self.DELTA),
            "tasks": self.tasks.values, "states": self.states.values,
            "causes": self.causes.values, "hosts": self.hosts.values,
            "reasons": self.reasons.values, "origin": self.origin,
            "blob": base64.b64encode(blob).decode("ascii"),
        }


def _deltas(column: array[int]) -> array[int]:
    out = array("i", column)
    for i in range(len(out) - 1, 0, -1):
        out[i] -= column[i - 1]
    return out


class Timeline:
    """The attempts the timeline draws: all of them, or every attempt of sampled nodes."""

    def __init__(self, total: int, limit: int = TIMELINE_LIMIT) -> None:
        self.total = total
        self.fraction = 1.0 if total <= limit else limit / total
        self._cut = int(self.fraction * 16**8)
        self.rows: list[tuple[str, str, int, str, str, float, float | None, float | None]] = []

    def add(self, row: AttemptRow) -> None:
        if self.fraction < 1.0 and int(row.identity[:8], 16) >= self._cut:
            return
        self.rows.append((row.identity, row.task, row.attempt, row.state, row.job_name,
                          row.submitted, row.started, row.ended))

    @property
    def sampled(self) -> bool:
        return self.fraction < 1.0


# -- figures (plotly.js figure specs) -----------------------------------------------------------


def _box_figure(stats: list[TaskStats], which: str, title: str, colors: dict[str, str]
                ) -> dict[str, Any]:
    """Per task, the share of the request used, as a box of exact quartiles."""
    data = []
    for ts in stats:
        values = ts.mem_pct if which == "mem" else ts.runtime_pct
        q = quantiles(values)
        if q is None:
            continue
        data.append({
            "type": "box", "name": ts.task, "x": [ts.task], "q1": [q.q1], "median": [q.median],
            "q3": [q.q3], "lowerfence": [q.low], "upperfence": [q.high], "mean": [q.mean],
            "marker": {"color": colors[ts.task]}, "boxpoints": False,
            "hovertemplate": f"{ts.task}: %{{y:.1f}}% ({q.n:,} attempts)<extra></extra>",
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


def _provenance(run_dir: Path, meta: Mapping[str, Any], stats: RunStats
                ) -> list[tuple[str, str]]:
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
    rows += [("first submission", _when(stats.first_submit)),
             ("last attempt ended", _when(stats.last_end)),
             ("hosts", f"{len(stats.hosts):,}")]
    return rows


def _task_rows(stats: RunStats, counts: dict[tuple[str, str], int], order: list[str]
               ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    states = [s for s in STATE_ORDER if any(k[1] == s for k in counts)]
    causes = retry_columns(stats.tasks.values())
    out = []
    for task in order:
        ts = stats.tasks.get(task) or TaskStats(task)
        wall = quantiles(ts.elapsed)
        peak = quantiles(ts.peak)
        out.append({
            "task": task, "nodes": {s: counts.get((task, s), 0) for s in states},
            "attempts": ts.attempts, "retries": {c: ts.retries.get(c, 0) for c in causes},
            "wall": None if wall is None else [wall.low, wall.median, wall.high],
            "peak": None if peak is None else [peak.median, peak.high],
            "mem": ts.mem_requested, "runtime": ts.runtime_requested,
            "cores": ts.cores_requested,
            "mem_pct": max(ts.mem_pct, default=None),
            "runtime_pct": max(ts.runtime_pct, default=None),
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
    """The HTML text of the report of ``run_dir``, how many attempts, and the timeline."""
    script = plotly_js()
    store = Store.open(run_dir, readonly=True)
    try:
        meta = store.meta()
        total = count_attempts(store)
        first = store.conn.execute("SELECT min(submitted) FROM attempts").fetchone()[0]
        origin = float(first) if first is not None else time.time()
        stats = RunStats()
        timeline = Timeline(total, timeline_limit)
        table = AttemptColumns(origin)
        add_stats, add_timeline, add_table = stats.add, timeline.add, table.add
        for row in iter_attempts(store):
            add_stats(row)
            add_timeline(row)
            add_table(row)
        counts = store.counts()
        order = task_order(store)
        order += sorted(set(stats.tasks) - set(order))
        dag_tasks, edges = task_edges(store)
        failures = _failures(store, stats)
    finally:
        store.close()
    colors = {task: PALETTE[i % len(PALETTE)] for i, task in enumerate(order)}
    by_task: dict[str, dict[str, int]] = {}
    for (task, state), n in counts.items():
        by_task.setdefault(task, {})[state] = n
    states, causes, task_rows = _task_rows(stats, counts, order)
    ordered = [stats.tasks[t] for t in order if t in stats.tasks]
    node_counts: dict[str, int] = {}
    for (_, state), n in counts.items():
        node_counts[state] = node_counts.get(state, 0) + n
    data = {
        "title": str(meta.get("workflow", run_dir.name)),
        "provenance": _provenance(run_dir, meta, stats),
        "counts": {s: node_counts[s] for s in STATE_ORDER if s in node_counts},
        "attempts": total, "states": states, "causes": causes, "tasks": task_rows,
        "colors": colors, "failures": failures, "failed_attempts": stats.failed_attempts,
        "unread": stats.unread,
        "timeline": {"shown": len(timeline.rows), "total": total, "sampled": timeline.sampled},
        "figures": {
            "mem": _box_figure(ordered, "mem", "Peak memory, % of the memory asked for", colors),
            "runtime": _box_figure(ordered, "runtime", "Run time, % of the runtime limit",
                                   colors),
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
