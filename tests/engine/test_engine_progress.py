"""Progress snapshots from the engine's state array (no engine, no backend)."""

from __future__ import annotations

import time
from types import ModuleType

from gristmill.engine.progress import TaskProgress, finished_count, snapshot
from gristmill.states import NodeState


def test_a_snapshot_counts_each_task_by_state(et: ModuleType) -> None:
    graph = et.spans_task_limited(stamps="s", n=4).graph()
    states = bytearray(graph.n_nodes)
    order = [NodeState.DONE, NodeState.RUNNING, NodeState.SUBMITTED, NodeState.FAILED,
             NodeState.READY, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED, NodeState.DONE]
    for node, state in enumerate(order):
        states[node] = state
    shot = snapshot(graph, states, started=time.monotonic() - 10, finished_before=0)
    by_task = {p.task: p for p in shot.tasks}
    assert by_task["span_limited"] == TaskProgress("span_limited", 4, 0, 1, 1, 1, 1)
    assert by_task["span"] == TaskProgress("span", 4, 1, 0, 0, 1, 2)
    assert shot.total == TaskProgress("all", 8, 1, 1, 1, 2, 3)


def test_the_eta_follows_this_runs_pace_only(et: ModuleType) -> None:
    graph = et.spans(stamps="s", n=10).graph()
    states = bytearray([NodeState.DONE] * 6 + [NodeState.READY] * 4)
    before = 4  # four were DONE when the run (a resume) started
    assert finished_count(states) == 6
    shot = snapshot(graph, states, started=time.monotonic() - 20, finished_before=before)
    assert shot.eta is not None
    assert 39 < shot.eta < 41  # 2 finished in 20 s: 4 left take 40 s
    assert snapshot(graph, states, started=time.monotonic(), finished_before=6).eta is None
    final = snapshot(graph, states, started=time.monotonic() - 20, finished_before=before,
                     final=True)
    assert final.eta is None
