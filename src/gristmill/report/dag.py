"""The task-level DAG of a run as a small static SVG: one box per task, with its nodes'
counts by state, and an edge wherever a unit of one task waits for a unit of another.

It is drawn from the store's units table, so it needs neither the workflow's code nor
Graphviz. Tasks are placed in columns by their longest distance from a source (a simple
layered layout: workflows have few tasks, and their DAG at task level is small even when
the node DAG has millions of edges).
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape

from gristmill.store.db import Store

_BOX_W, _BOX_H, _GAP_X, _GAP_Y = 190, 64, 70, 24
_FILL = {"failed": "#fde2e1", "done": "#e3f4e1", "open": "#eef2f8"}
_STROKE = {"failed": "#c0392b", "done": "#2e8540", "open": "#51627a"}


def task_edges(store: Store) -> tuple[list[str], set[tuple[str, str]]]:
    """Tasks in recording order and (upstream task, downstream task) edges."""
    tasks: dict[str, None] = {}
    task_of_unit: dict[int, str] = {}
    edges: set[tuple[str, str]] = set()
    rows = list(store.conn.execute("SELECT id, task, definition FROM units ORDER BY id"))
    for unit, task, _ in rows:
        tasks.setdefault(task, None)
        task_of_unit[unit] = task
    for _unit, task, definition in rows:
        try:
            after = json.loads(definition).get("after") or []
        except (ValueError, AttributeError):
            after = []
        for ref in after:
            source = task_of_unit.get(ref[0] if isinstance(ref, list) else ref)
            if source is not None and source != task:
                edges.add((source, task))
    return list(tasks), edges


def _layers(tasks: list[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Each task's column: the longest path to it from a task with no upstream."""
    upstream: dict[str, set[str]] = defaultdict(set)
    for src, dst in edges:
        upstream[dst].add(src)
    layer: dict[str, int] = {}

    def depth(task: str, seen: frozenset[str]) -> int:
        if task in layer:
            return layer[task]
        parents = [p for p in upstream[task] if p not in seen]  # a cycle cannot recur
        layer[task] = 1 + max((depth(p, seen | {task}) for p in parents), default=-1)
        return layer[task]

    for task in tasks:
        depth(task, frozenset())
    return layer


def dag_svg(tasks: list[str], edges: set[tuple[str, str]],
            counts: dict[str, dict[str, int]]) -> str:
    """The SVG text; ``counts`` is task → node state name → number of nodes."""
    layer = _layers(tasks, edges)
    columns: dict[int, list[str]] = defaultdict(list)
    for task in tasks:
        columns[layer[task]].append(task)
    height = max(len(c) for c in columns.values()) if columns else 1
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        offset = (height - len(members)) * (_BOX_H + _GAP_Y) // 2
        for row, task in enumerate(members):
            pos[task] = (10 + col * (_BOX_W + _GAP_X), 10 + offset + row * (_BOX_H + _GAP_Y))
    width = 20 + len(columns) * (_BOX_W + _GAP_X) - _GAP_X
    total_h = 20 + height * (_BOX_H + _GAP_Y) - _GAP_Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="gm-dag" width="{width}" '
           f'height="{total_h}" viewBox="0 0 {width} {total_h}" role="img" '
           'aria-label="task graph">',
           '<defs><marker id="gm-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="#51627a"/></marker></defs>']
    for src, dst in sorted(edges):
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        sx, sy = float(x1 + _BOX_W), y1 + _BOX_H / 2
        ex, ey = float(x2), y2 + _BOX_H / 2
        if ex <= sx:  # drawn back to an earlier column: only a cycle would; keep it visible
            ex, ey = x2 + _BOX_W / 2, y2 + _BOX_H
        mid = (sx + ex) / 2
        out.append(f'<path class="gm-edge" d="M {sx} {sy} C {mid} {sy}, {mid} {ey}, {ex} {ey}" '
                   'fill="none" stroke="#51627a" stroke-width="1.5" '
                   'marker-end="url(#gm-arrow)"/>')
    for task in tasks:
        x, y = pos[task]
        by_state = counts.get(task, {})
        total = sum(by_state.values())
        kind = "failed" if by_state.get("FAILED") else (
            "done" if total and by_state.get("DONE") == total else "open")
        detail = " · ".join(f"{n:,} {s.lower()}" for s, n in sorted(
            by_state.items(), key=lambda kv: -kv[1])[:3])
        out.append(
            f'<g class="gm-task" data-task="{escape(task)}">'
            f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="8" '
            f'fill="{_FILL[kind]}" stroke="{_STROKE[kind]}" stroke-width="1.5"/>'
            f'<text x="{x + _BOX_W / 2}" y="{y + 24}" text-anchor="middle" '
            f'font-weight="bold" font-size="14">{escape(task)} ({total:,})</text>'
            f'<text x="{x + _BOX_W / 2}" y="{y + 46}" text-anchor="middle" '
            f'font-size="11">{escape(detail)}</text></g>')
    out.append("</svg>")
    return "".join(out)
