"""Draw a workflow as Graphviz dot or Mermaid, one box per unit.

A ``map`` group is one box with its count, so a million-node fan-out draws as
two boxes and an edge, not a million.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.workflow import Unit, Workflow


def _label(unit: Unit) -> str:
    if unit.is_group:
        varying = ", ".join(unit.columns)
        return f"{unit.task.name} x{unit.size} (by {varying})"
    node_args = ", ".join(f"{k}={v}" for k, v in unit.const.items())
    return f"{unit.task.name}({node_args})" if node_args else unit.task.name


def _edges(wf: Workflow) -> list[tuple[int, int, str]]:
    edges: list[tuple[int, int, str]] = []
    for unit in wf.units:
        for src, element in dict.fromkeys(unit.after):
            edges.append((src, unit.index, "" if element is None else f"[{element}]"))
    return edges


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(wf: Workflow) -> str:
    """Graphviz dot text of the workflow's units."""
    wf.graph()  # validates (cycles) before drawing
    lines = [f'digraph "{_escape(wf.name)}" {{', "  rankdir=LR;", "  node [shape=box];"]
    for unit in wf.units:
        style = ", style=\"rounded,filled\", fillcolor=\"#e8eef7\"" if unit.is_group else ""
        lines.append(f'  u{unit.index} [label="{_escape(_label(unit))}"{style}];')
    for src, dst, label in _edges(wf):
        extra = f' [label="{label}"]' if label else ""
        lines.append(f"  u{src} -> u{dst}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(wf: Workflow) -> str:
    """Mermaid flowchart text of the workflow's units."""
    wf.graph()
    lines = ["flowchart LR"]
    for unit in wf.units:
        text = _mermaid_text(_label(unit))
        lines.append(f'  u{unit.index}[["{text}"]]' if unit.is_group else f'  u{unit.index}["{text}"]')
    for src, dst, label in _edges(wf):
        arrow = f"-->|{label}|" if label else "-->"
        lines.append(f"  u{src} {arrow} u{dst}")
    return "\n".join(lines) + "\n"
