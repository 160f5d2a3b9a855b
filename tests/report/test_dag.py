"""The task-level DAG, drawn from the store's units."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from gristmill.report.dag import dag_svg, task_edges
from gristmill.store.db import Store


def test_tasks_and_edges_come_from_the_units(mixed_run: Path) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        tasks, edges = task_edges(store)
    finally:
        store.close()
    assert tasks == ["hog", "exit_with", "append_line"]
    assert edges == {("exit_with", "append_line")}


def test_the_svg_has_a_box_per_task_with_counts_and_an_arrow_per_edge() -> None:
    svg = dag_svg(["fit", "validate", "report"], {("fit", "validate"), ("validate", "report"),
                                                   ("fit", "report")},
                  {"fit": {"DONE": 1000}, "validate": {"FAILED": 1},
                   "report": {"UPSTREAM_FAILED": 1}})
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    boxes = root.findall("s:g", ns)
    assert [b.get("data-task") for b in boxes] == ["fit", "validate", "report"]
    labels = ["".join(b.itertext()) for b in boxes]
    assert labels[0] == "fit (1,000)1,000 done"
    assert "1 failed" in labels[1]
    assert len(root.findall("s:path", ns)) == 3
    xs = {b.get("data-task"): float(b.find("s:rect", ns).get("x")) for b in boxes}  # type: ignore[union-attr]
    assert xs["fit"] < xs["validate"] < xs["report"]  # columns by longest path


def test_names_are_escaped() -> None:
    svg = dag_svg(["a<b>&"], set(), {"a<b>&": {"DONE": 1}})
    assert "a&lt;b&gt;&amp;" in svg
    ET.fromstring(svg)
