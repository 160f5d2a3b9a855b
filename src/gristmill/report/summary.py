"""The table ``gristmill run`` and ``resume`` print when a run ends.

Per task: nodes by final state, attempts and retries by cause, wall time (min, median,
max), peak memory (max) against the memory asked for and runtime against the limit, with
a flag where the request was far too large or too small; then the first failures (why,
the last stderr lines, the command to rerun one by hand) and the commands that show more.
Everything comes from the store, so the same table can be printed for any finished run
(:func:`render_summary`). The per-task figures are SQLite's
(:mod:`~gristmill.report.aggregate`): about two seconds after a run of a million attempts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gristmill.report.aggregate import TaskFigures, task_figures
from gristmill.report.failures import failure_report
from gristmill.report.stats import retry_columns
from gristmill.states import NodeState
from gristmill.store.db import AttemptRecord, Store

#: Node states in the order the table shows them.
STATE_ORDER = [s.name for s in NodeState]
STATE_STYLE = {
    "PENDING": "dim", "READY": "cyan", "SUBMITTED": "blue", "RUNNING": "yellow",
    "DONE": "green", "FAILED": "bold red", "UPSTREAM_FAILED": "red", "CANCELLED": "magenta",
}
_FLAG_STYLE = {"under": "bold red", "over": "yellow"}


#: Columns a table may use when the output is not a terminal (a log file, a pipe): wide
#: enough that the summary and status tables do not wrap, which would garble them there.
LOG_WIDTH = 180


def console() -> Console:
    """A console for the CLI's tables: the terminal's width, or :data:`LOG_WIDTH` columns
    when writing to a file or a pipe (where rich would otherwise assume 80)."""
    made = Console(soft_wrap=False)
    if not made.is_terminal:
        made.width = max(made.width, LOG_WIDTH)
    return made


def human_bytes(value: float | None) -> str:
    """``1536 * 2**20`` → ``1.5G``; binary units, as memory requests are written."""
    if value is None:
        return "—"
    for unit, size in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if value >= size:
            shown = value / size
            return f"{shown:.1f}{unit}" if shown < 10 else f"{shown:.0f}{unit}"
    return f"{value:.0f}B"


def human_seconds(value: float | None) -> str:
    """``0.31`` → ``0.31s``, ``75`` → ``1m15s``, ``7322`` → ``2h02m``."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.0f}s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _used_of(used: str, asked: str, pct: float | None, flag: str) -> Text:
    """``301M / 256M (118%)``, flagged ``under``/``over`` in colour."""
    text = Text(used if asked == "—" else f"{used} / {asked}")
    if pct is not None:
        text.append(f" ({pct:.0f}%)")
    if flag:
        text.append(f" {flag}", style=_FLAG_STYLE[flag])
    return text


def task_table(figures: Mapping[str, TaskFigures], counts: dict[tuple[str, str], int],
               order: list[str]) -> Table:
    """One row per task (in ``order``; tasks without attempts too), then ``all``."""
    by_task: dict[str, dict[str, int]] = defaultdict(dict)
    for (task, state), n in counts.items():
        by_task[task][state] = n
    states = [s for s in STATE_ORDER if any(s in c for c in by_task.values())]
    causes = retry_columns(figures.values())
    table = Table(show_edge=False, pad_edge=False, title_justify="left")
    table.add_column("task")
    for state in states:
        table.add_column(state, justify="right", style=STATE_STYLE.get(state, ""))
    table.add_column("attempts", justify="right")
    for cause in causes:
        table.add_column(f"retry {cause}", justify="right")
    table.add_column("wall min / median / max", justify="right")
    table.add_column("peak mem / asked", justify="right")
    table.add_column("longest / limit", justify="right")
    table.add_column("CPU eff", justify="right")
    totals: dict[str, int] = defaultdict(int)
    for task in order:
        nodes = by_task.get(task, {})
        for state, n in nodes.items():
            totals[state] += n
        ts = figures.get(task) or TaskFigures(task)
        wall = ts.wall
        table.add_row(
            task, *(str(nodes.get(s, "")) for s in states), str(ts.attempts),
            *(str(ts.retries.get(c, "") or "") for c in causes),
            "—" if wall is None else " / ".join(human_seconds(v) for v in wall),
            _used_of(human_bytes(ts.peak), human_bytes(ts.mem_requested), ts.mem_pct,
                     ts.mem_flag()),
            _used_of(human_seconds(None if wall is None else wall[2]),
                     human_seconds(ts.runtime_requested), ts.runtime_pct, ts.runtime_flag()),
            "—" if ts.cpu_eff is None else f"{ts.cpu_eff:.0f}%",
        )
    if len(order) > 1:
        table.add_row(Text("all", style="bold"), *(str(totals.get(s, "")) for s in states),
                      str(sum(t.attempts for t in figures.values())),
                      *(str(sum(t.retries.get(c, 0) for t in figures.values()) or "")
                        for c in causes), "", "", "", "")
    return table


def task_order(store: Store) -> list[str]:
    """Task names in the order their units were recorded (upstream first)."""
    seen: dict[str, None] = {}
    for (task,) in store.conn.execute("SELECT task FROM units ORDER BY id"):
        seen.setdefault(task, None)
    return list(seen)


def render_summary(run_dir: Path, *, failures: int = 3) -> RenderableType:
    """The summary of the run in ``run_dir``: the per-task table, the first ``failures``
    failed nodes, and where to look next."""
    store = Store.open(run_dir, readonly=True, check=False)
    try:
        figures = task_figures(store)
        counts = store.counts()
        order = task_order(store)
        order += sorted(set(figures) - set(order))  # attempts of tasks no longer there
        failed: list[AttemptRecord] = []
        for _, _, _, attempt in store.last_attempts([NodeState.FAILED]):
            if len(failed) >= failures:
                break
            if attempt is not None:
                failed.append(attempt)
        n_failed = sum(n for (_, state), n in counts.items() if state == "FAILED")
    finally:
        store.close()
    parts: list[RenderableType] = [task_table(figures, counts, order)]
    if n_failed:
        parts.append(Text(f"\n{n_failed} node(s) failed" + ("; the first:" if failed else ""),
                          style="bold red"))
        for attempt in failed:
            # Never wrapped: the rerun command must survive a copy and paste.
            parts.append(Text("\n".join(failure_report(attempt, lines=5)), no_wrap=True,
                              overflow="ignore"))
        if n_failed > len(failed):
            parts.append(Text(f"... and {n_failed - len(failed)} more: gristmill status "
                              f"{run_dir} --failures {n_failed}"))
    parts.append(Text(f"\nreport: gristmill report {run_dir}   "
                      f"trace: gristmill trace {run_dir}", style="dim"))
    return Group(*parts)
