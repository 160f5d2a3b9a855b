"""Draw a workflow as Graphviz dot or Mermaid, one box per unit.

A ``map`` group is one box with its count, so a million-node fan-out draws as
two boxes and an edge, not a million.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

from gristmill.errors import GristmillError

if TYPE_CHECKING:
    from gristmill.dsl.nodes import Unit
    from gristmill.dsl.workflow import Workflow


def _label(unit: Unit, node_args: list[str]) -> str:
    """A group's task, count and varying arguments; a single node's node args."""
    if unit.is_group:
        varying = ", ".join(unit.columns)
        return f"{unit.task.name} x{unit.size} (by {varying})"
    shown = ", ".join(f"{k}={unit.const[k]}" for k in node_args if k in unit.const)
    return f"{unit.task.name}({shown})" if shown else unit.task.name


def _labels(wf: Workflow) -> list[str]:
    node_args = wf.graph().node_args  # resolving also validates the graph (cycles)
    return [_label(unit, node_args.get(unit.task.key, [])) for unit in wf.units]


def _edges(wf: Workflow) -> list[tuple[int, int, str]]:
    edges: list[tuple[int, int, str]] = []
    for unit in wf.units:
        for src, element in dict.fromkeys(unit.after):
            edges.append((src, unit.index, "" if element is None else f"[{element}]"))
    return edges


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(wf: Workflow) -> str:
    """Graphviz dot text of the workflow's units."""
    labels = _labels(wf)
    lines = [f'digraph "{_escape(wf.name)}" {{', "  rankdir=LR;", "  node [shape=box];"]
    for unit in wf.units:
        style = ", style=\"rounded,filled\", fillcolor=\"#e8eef7\"" if unit.is_group else ""
        lines.append(f'  u{unit.index} [label="{_escape(labels[unit.index])}"{style}];')
    for src, dst, label in _edges(wf):
        extra = f' [label="{label}"]' if label else ""
        lines.append(f"  u{src} -> u{dst}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", " ")


def to_mermaid(wf: Workflow) -> str:
    """Mermaid flowchart text of the workflow's units."""
    labels = _labels(wf)
    lines = ["flowchart LR"]
    for unit in wf.units:
        text = _mermaid_text(labels[unit.index])
        shape = f'[["{text}"]]' if unit.is_group else f'["{text}"]'
        lines.append(f"  u{unit.index}{shape}")
    for src, dst, label in _edges(wf):
        arrow = f"-->|{label}|" if label else "-->"
        lines.append(f"  u{src} {arrow} u{dst}")
    return "\n".join(lines) + "\n"


def to_svg(wf: Workflow) -> str:
    """SVG of the workflow, drawn by Graphviz's ``dot`` (which must be on ``PATH``)."""
    dot = shutil.which("dot")
    if dot is None:
        raise GristmillError(
            "drawing SVG needs Graphviz's 'dot' program on PATH (apt-get install graphviz, "
            "brew install graphviz or conda install graphviz); or print --format dot and "
            "render it elsewhere"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(wf), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GristmillError(f"Graphviz's dot failed (exit {done.returncode}): {done.stderr}")
    return done.stdout
